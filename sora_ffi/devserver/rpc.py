"""JSON-RPC 2.0 on the `rpc` DataChannel (sora-protocol.md §2.15): the methods the dev
server implements, for the connections whose `rpc_methods` grant them.

* `2025.2.0/PutSignalingNotifyMetadata` `{metadata, push?}`: replaces the connection's
  `signaling_notify_metadata`; result: the new metadata.
* `2025.2.0/PutSignalingNotifyMetadataItem` `{key, value, push?}`: sets one key of it.
* `2025.2.0/RequestSimulcastRid` `{rid, sender_connection_id?}`: the simulcast layer
  (`none`, `r0`..`r2`; only those of `simulcast_rpc_rids` when the connect or its auth gave
  that list) the caller gets of one sender, or of every sender; result:
  `{channel_id, receiver_connection_id, rid, sender_connection_id?}`.
* `2025.2.0/RequestSpotlightRid` `{spotlight_focus_rid, spotlight_unfocus_rid,
  send_connection_id?}`: the layers a spotlight connection gets of focused / unfocused
  senders (of one sender, or of all); `2025.2.0/ResetSpotlightRid` `{send_connection_id?}`
  goes back to the connect's. Results: `{channel_id, recv_connection_id, ...}`.

Both are also answered under the names `Sora_20201124.PutSignalingNotifyMetadata(Item)`,
which sora-js-sdk's RPC end-to-end page uses. With `push: true` every established member
of the channel (the caller too) gets a push `{"type": "signaling_notify_metadata_ext",
"action": "PutMetadataItem", "connection_id", "key", "value"}` (what that page expects
[V]); for the whole metadata `"action": "PutMetadata", "metadata"` [I]. Without it the
change shows in later notifies (`data` of newcomers) only. Errors are JSON-RPC errors:
-32600 invalid request, -32601 method not found or not granted, -32602 invalid params.
Requests without `id` are notifications and get no answer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from .sdp import REQUESTABLE_RIDS

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _push(params: dict) -> bool:
    push = params.get("push", False)
    if not isinstance(push, bool):
        raise RpcError(INVALID_PARAMS, "push must be a boolean")
    return push


def put_metadata(s: "Session", params: dict) -> Any:
    if "metadata" not in params:
        raise RpcError(INVALID_PARAMS, "metadata is required")
    push = _push(params)
    s.set_notify_metadata(params["metadata"], {"action": "PutMetadata", "metadata": params["metadata"]} if push else None)
    return params["metadata"]


def put_metadata_item(s: "Session", params: dict) -> Any:
    key = params.get("key")
    if not isinstance(key, str) or "value" not in params:
        raise RpcError(INVALID_PARAMS, "key (a string) and value are required")
    current = s.params.signaling_notify_metadata
    if current is not None and not isinstance(current, dict):
        raise RpcError(INVALID_PARAMS, "the signaling_notify_metadata is not an object")
    metadata = {**(current or {}), key: params["value"]}
    push = _push(params)
    s.set_notify_metadata(metadata, {"action": "PutMetadataItem", "key": key, "value": params["value"]} if push else None)
    return metadata


def _sender(s: "Session", params: dict, key: str) -> Optional[str]:
    """The sender a layer request names under ``key`` (None: every sender)."""
    sender = params.get(key)
    if sender is not None and (not isinstance(sender, str) or s.channel is None
                               or sender not in s.channel.sessions):
        raise RpcError(INVALID_PARAMS, f"{key} is not a connection of the channel")
    return sender


def request_simulcast_rid(s: "Session", params: dict) -> Any:
    rid = params.get("rid")
    if rid not in REQUESTABLE_RIDS:
        raise RpcError(INVALID_PARAMS, "rid must be none, r0, r1 or r2")
    allowed = s.params.simulcast_rpc_rids
    if allowed is not None and rid not in allowed:
        raise RpcError(INVALID_PARAMS, f"rid {rid} is not in simulcast_rpc_rids {allowed}")
    sender = _sender(s, params, "sender_connection_id")
    s.request_rid(rid, sender)
    result = {"channel_id": s.params.channel_id, "receiver_connection_id": s.connection_id,
              "rid": rid}
    if sender is not None:
        result["sender_connection_id"] = sender
    return result


def _spotlight_sender(s: "Session", params: dict) -> Optional[str]:
    if not s.params.spotlight:
        raise RpcError(INVALID_PARAMS, "the connection did not connect with spotlight")
    return _sender(s, params, "send_connection_id")


def request_spotlight_rid(s: "Session", params: dict) -> Any:
    sender = _spotlight_sender(s, params)
    rids = tuple(params.get(k) for k in ("spotlight_focus_rid", "spotlight_unfocus_rid"))
    if any(r not in REQUESTABLE_RIDS for r in rids):
        raise RpcError(INVALID_PARAMS, "spotlight_focus_rid and spotlight_unfocus_rid must be none, r0, r1 or r2")
    s.request_spotlight_rids(rids, sender)
    result = {"channel_id": s.params.channel_id, "recv_connection_id": s.connection_id,
              "spotlight_focus_rid": rids[0], "spotlight_unfocus_rid": rids[1]}
    if sender is not None:
        result["send_connection_id"] = sender
    return result


def reset_spotlight_rid(s: "Session", params: dict) -> Any:
    sender = _spotlight_sender(s, params)
    s.request_spotlight_rids(None, sender)
    result = {"channel_id": s.params.channel_id, "recv_connection_id": s.connection_id}
    if sender is not None:
        result["send_connection_id"] = sender
    return result


METHODS: dict[str, Callable[["Session", dict], Any]] = {
    "2025.2.0/PutSignalingNotifyMetadata": put_metadata,
    "2025.2.0/PutSignalingNotifyMetadataItem": put_metadata_item,
    # the names sora-js-sdk's own RPC end-to-end page calls them by
    "Sora_20201124.PutSignalingNotifyMetadata": put_metadata,
    "Sora_20201124.PutSignalingNotifyMetadataItem": put_metadata_item,
    "2025.2.0/RequestSimulcastRid": request_simulcast_rid,
    "2025.2.0/RequestSpotlightRid": request_spotlight_rid,
    "2025.2.0/ResetSpotlightRid": reset_spotlight_rid,
}


def handle(s: "Session", msg: Any) -> Optional[dict]:
    """One request from `s`: the response to send, or None (a notification)."""
    rid = msg.get("id") if isinstance(msg, dict) else None
    notification = not isinstance(msg, dict) or "id" not in msg
    try:
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" \
                or not isinstance(msg.get("method"), str):
            raise RpcError(INVALID_REQUEST, "Invalid Request")
        method = msg["method"]
        granted = s.params.rpc_methods or []
        fn = METHODS.get(method)
        if fn is None or method not in granted:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        params = msg.get("params", {})
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object")
        result = fn(s, params)
    except RpcError as e:
        if notification and e.code != INVALID_REQUEST:
            return None
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": e.code, "message": e.message}}
    if notification:
        return None
    return {"jsonrpc": "2.0", "id": rid, "result": result}
