"""The dev server's HTTP API, modelled on Sora's (``POST /`` + ``x-sora-target``).

Served by aiohttp (HTTP/1.1: keep-alive, Content-Length or chunked bodies, 1 MiB limit;
malformed requests get aiohttp's 400).

Replies are JSON. Errors: 400 (bad JSON, missing/invalid fields, unknown target), 404
(unknown channel or connection), 405 (not POST), 413 (body too large), each with
``{"error_type": ..., "message": ...}``.

Targets: see :data:`TARGETS`.
"""
from __future__ import annotations

import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, Optional

from aiohttp import web

from . import strictjson
from .api_base import (MAX_BODY, ROLES, ApiError, bad_request, find_channel, find_connection, not_found,
                       parse_body, require_present, require_str)
from .audio_streaming import StreamingError
from .filter_api import TARGETS as FILTER_TARGETS
from .sdp import REQUESTABLE_RIDS as RIDS

if TYPE_CHECKING:  # pragma: no cover
    from .server import AsyncDevServer

log = logging.getLogger("sora_ffi.devserver")


def _live(sessions) -> list:
    return [s for s in sessions if s.state in ("offering", "connecting", "established")]


async def disconnect_connection(core, params):
    s = find_connection(core, params)
    core.spawn(s.end(1000, "DISCONNECTED-API"))
    return {}


async def disconnect_channel(core, params):
    ch = find_channel(core, params)
    core.end_sessions(ch.sessions.values(), 1000, "DISCONNECTED-API")
    return {}


async def disconnect_client(core, params):
    ch = find_channel(core, params)
    client_id = require_str(params, "client_id")
    targets = [s for s in ch.sessions.values() if s.client_id == client_id]
    if not targets:
        raise not_found(f"client {client_id!r} not found")
    core.end_sessions(targets, 1000, "DISCONNECTED-API")
    return {}


async def push_channel(core, params):
    ch = find_channel(core, params)
    data = require_present(params, "data")
    for s in _live(ch.sessions.values()):
        s.send_push(data)
    return {}


async def push_connection(core, params):
    s = find_connection(core, params)
    data = require_present(params, "data")
    s.send_push(data)
    return {}


async def push_client(core, params):
    ch = find_channel(core, params)
    client_id = require_str(params, "client_id")
    data = require_present(params, "data")
    targets = [s for s in _live(ch.sessions.values()) if s.client_id == client_id]
    if not targets:
        raise not_found(f"client {client_id!r} not found")
    for s in targets:
        s.send_push(data)
    return {}


async def push_channel_by_role(core, params):
    ch = find_channel(core, params)
    role = require_str(params, "role")
    if role not in ROLES:
        raise bad_request(f"invalid role {role!r}")
    data = require_present(params, "data")
    for s in _live(ch.sessions.values()):
        if s.role == role:
            s.send_push(data)
    return {}


async def list_channel_connections(core, params):
    ch = find_channel(core, params)
    return [s.api_info() for s in ch.sessions.values() if s.is_established]


async def list_connections(core, params):
    return [s.api_info() for s in core.channels.all_sessions() if s.is_established]


async def get_stats_connection(core, params):
    s = find_connection(core, params)
    return s.stats()


async def request_key_frame(core, params):
    s = find_connection(core, params)
    s.keyframe_requested = True
    track = s.upstream_tracks.get("video")
    if track is not None and s.peer is not None and not s.peer.closed:
        s.peer.request_keyframe(track)  # PLI to the sender
    return {}


def _receiver_and_sender(core, params: dict, receiver_key: str, sender_key: str) -> tuple:
    """(channel, the receiving session, the sender's connection_id or None) of a layer
    request; 404 for a connection the channel does not have."""
    ch = find_channel(core, params)
    receiver_id = require_str(params, receiver_key)
    receiver = ch.sessions.get(receiver_id)
    if receiver is None:
        raise not_found(f"connection {receiver_id!r} not found")
    sender_id = params.get(sender_key)
    if sender_id is not None and (not isinstance(sender_id, str) or ch.sessions.get(sender_id) is None):
        raise not_found(f"connection {sender_id!r} not found")
    return ch, receiver, sender_id


def _request_rid(core, params: dict, receiver_key: str, sender_key: str, reset: bool = False) -> dict:
    """Sets (or with ``reset`` clears) the simulcast layer a receiver gets of one sender
    (``sender_key`` given) or of every sender; the answer echoes the request."""
    ch, receiver, sender_id = _receiver_and_sender(core, params, receiver_key, sender_key)
    receiver_id = receiver.connection_id
    rid = None
    if not reset:
        rid = params.get("rid")
        if rid == "auto":
            raise bad_request("rid 'auto' needs a bandwidth estimate per receiver, which the "
                              "dev server does not have")
        if rid not in RIDS:
            raise bad_request("rid must be none, r0, r1 or r2")
    receiver.request_rid(rid, sender_id)
    out = {"channel_id": ch.channel_id, receiver_key: receiver_id}
    if rid is not None:
        out["rid"] = rid
    if sender_id is not None:
        out[sender_key] = sender_id
    return out


async def request_simulcast_rid(core, params):
    return _request_rid(core, params, "receiver_connection_id", "sender_connection_id")


async def request_rtp_stream(core, params):
    return _request_rid(core, params, "recv_connection_id", "send_connection_id")


async def reset_rtp_stream(core, params):
    return _request_rid(core, params, "recv_connection_id", "send_connection_id", reset=True)


# ------------------------------------------------------------------ spotlight
def _spotlight(core, params: dict):
    """(channel, its Spotlight) — 400 when no spotlight connection started one."""
    ch = find_channel(core, params)
    if ch.spotlight is None:
        raise bad_request(f"channel {ch.channel_id!r} has no spotlight connection")
    return ch, ch.spotlight


def _spotlight_sender(ch, spot, params: dict) -> str:
    cid = require_str(params, "connection_id")
    if cid not in spot.speakers:
        raise not_found(f"connection {cid!r} is not a sender of the spotlight channel")
    return cid


async def focus_spotlight(core, params, fixed: bool = False):
    ch, spot = _spotlight(core, params)
    cid = _spotlight_sender(ch, spot, params)
    try:
        ch.apply_spotlight(spot.focus(cid, time.monotonic(), fixed=fixed))
    except ValueError as e:
        raise bad_request(str(e)) from None
    return {"channel_id": ch.channel_id, "connection_id": cid}


async def focus_spotlight_fixed(core, params):
    return await focus_spotlight(core, params, fixed=True)


async def unfocus_spotlight(core, params):
    ch, spot = _spotlight(core, params)
    cid = _spotlight_sender(ch, spot, params)
    ch.apply_spotlight(spot.unfocus(cid, time.monotonic()))
    return {"channel_id": ch.channel_id, "connection_id": cid}


async def change_spotlight_number(core, params):
    ch, spot = _spotlight(core, params)
    number = params.get("spotlight_number")
    if not isinstance(number, int) or isinstance(number, bool):
        raise bad_request("spotlight_number must be an integer")
    try:
        ch.apply_spotlight(spot.set_number(number, time.monotonic()))
    except ValueError as e:
        raise bad_request(str(e)) from None
    return {"channel_id": ch.channel_id, "spotlight_number": number}


def _spotlight_rids(params: dict) -> tuple:
    rids = tuple(params.get(k) for k in ("spotlight_focus_rid", "spotlight_unfocus_rid"))
    if any(r not in RIDS for r in rids):
        raise bad_request("spotlight_focus_rid and spotlight_unfocus_rid must be none, r0, r1 or r2")
    return rids


async def request_spotlight_rid(core, params, reset: bool = False):
    ch, receiver, sender_id = _receiver_and_sender(core, params, "recv_connection_id", "send_connection_id")
    receiver_id = receiver.connection_id
    if not receiver.params.spotlight:
        raise bad_request(f"connection {receiver_id!r} did not connect with spotlight")
    rids = None if reset else _spotlight_rids(params)
    receiver.request_spotlight_rids(rids, sender_id)
    out = {"channel_id": ch.channel_id, "recv_connection_id": receiver_id}
    if rids is not None:
        out["spotlight_focus_rid"], out["spotlight_unfocus_rid"] = rids
    if sender_id is not None:
        out["send_connection_id"] = sender_id
    return out


async def reset_spotlight_rid(core, params):
    return await request_spotlight_rid(core, params, reset=True)


# ---------------------------------------------------------------- audio streaming
def _streaming(core, params: dict):
    ch = find_channel(core, params)
    if ch.audio_streaming is None:  # pragma: no cover - every served channel has one
        raise bad_request("audio streaming is not available")
    return ch, ch.audio_streaming


def _streaming_call(fn: Callable) -> None:
    try:
        fn()
    except StreamingError as e:
        raise bad_request(str(e)) from None


async def start_audio_streaming(core, params):
    _, st = _streaming(core, params)
    _streaming_call(st.api_start)
    return {}


async def stop_audio_streaming(core, params):
    _, st = _streaming(core, params)
    _streaming_call(st.api_stop)
    return {}


async def _set_subscription(core, params, on: bool):
    s = find_connection(core, params)
    s.channel.audio_streaming.api_subscribe(s.connection_id, on)
    return {}


async def subscribe_audio_streaming_result_push(core, params):
    return await _set_subscription(core, params, True)


async def unsubscribe_audio_streaming_result_push(core, params):
    return await _set_subscription(core, params, False)


async def list_audio_streaming_result_push_state(core, params):
    _, st = _streaming(core, params)
    return st.api_list()


async def terminate_session(core, params):
    """Ends every connection of the session (the way out of an auto-streaming session)."""
    ch = find_channel(core, params)
    session_id = require_str(params, "session_id")
    if session_id != ch.session_id:
        raise not_found(f"session {session_id!r} not found in channel {ch.channel_id!r}")
    core.end_sessions(ch.sessions.values(), 1000, "DISCONNECTED-API")
    return {}


TARGETS: dict = {
    "Sora_20151104.DisconnectConnection": disconnect_connection,
    "Sora_20151104.DisconnectChannel": disconnect_channel,
    "Sora_20151104.DisconnectClient": disconnect_client,
    "Sora_20160711.PushChannel": push_channel,
    "Sora_20160711.PushConnection": push_connection,
    "Sora_20160711.PushClient": push_client,
    "Sora_20201120.PushChannelByRole": push_channel_by_role,
    "Sora_20201013.ListChannelConnections": list_channel_connections,
    "Sora_20201013.ListConnections": list_connections,
    "Sora_20170529.GetStatsConnection": get_stats_connection,
    "Sora_20241218.RequestKeyFrame": request_key_frame,
    "Sora_20201005.RequestRtpStream": request_rtp_stream,
    "Sora_20201005.ResetRtpStream": reset_rtp_stream,
    "Sora_20251210.RequestSimulcastRid": request_simulcast_rid,
    "Sora_20251217.RequestSimulcastRid": request_simulcast_rid,
    "Sora_20200807.FocusSpotlight": focus_spotlight,
    "Sora_20200807.FocusSpotlightFixed": focus_spotlight_fixed,
    "Sora_20200807.UnfocusSpotlight": unfocus_spotlight,
    "Sora_20200807.ChangeSpotlightNumber": change_spotlight_number,
    "Sora_20211215.RequestSpotlightRid": request_spotlight_rid,
    "Sora_20211215.ResetSpotlightRid": reset_spotlight_rid,
    "Sora_20221221.StartAudioStreaming": start_audio_streaming,
    "Sora_20221221.StopAudioStreaming": stop_audio_streaming,
    "Sora_20221221.SubscribeAudioStreamingResultPush": subscribe_audio_streaming_result_push,
    "Sora_20221221.UnsubscribeAudioStreamingResultPush": unsubscribe_audio_streaming_result_push,
    "Sora_20230628.ListAudioStreamingResultPushState": list_audio_streaming_result_push_state,
    "Sora_20230628.TerminateSession": terminate_session,
    **FILTER_TARGETS,
}


async def dispatch(core: "AsyncDevServer", method: str, headers: dict, body: bytes) -> tuple:
    """Returns ``(status, json_value)`` for one request."""
    try:
        if method != "POST":
            raise ApiError(405, "METHOD-NOT-ALLOWED", "use POST")
        target = headers.get("x-sora-target")
        if not target:
            raise bad_request("missing x-sora-target header")
        handler: Optional[Callable] = TARGETS.get(target)
        if handler is None:
            raise bad_request(f"unknown x-sora-target {target!r}")
        params = parse_body(body)
        return 200, await handler(core, params)
    except ApiError as e:
        return e.status, e.body()


# ------------------------------------------------------------------------ HTTP
def _json_response(status: int, value: Any) -> "web.Response":
    headers = {"Server": "sora_ffi-devserver"}
    if status == 405:
        headers["Allow"] = "POST"
    return web.Response(status=status, body=strictjson.dumps(value).encode(),
                        content_type="application/json", headers=headers)


def make_app(core: "AsyncDevServer") -> "web.Application":
    """The API as an aiohttp application: every path, every method, JSON replies."""

    async def handle(request: "web.Request") -> "web.Response":
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json_response(413, {"error_type": "BAD-REQUEST",
                                        "message": f"body larger than {MAX_BODY} bytes"})
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            status, value = await dispatch(core, request.method, headers, body)
        except Exception:
            log.exception("API request failed")
            status, value = 500, {"error_type": "INTERNAL-ERROR", "message": "internal error"}
        log.debug("API %s %s -> %d", request.method, headers.get("x-sora-target"), status)
        return _json_response(status, value)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def start_server(core: "AsyncDevServer", host: str, port: int,
                       ssl_context: Optional[ssl.SSLContext] = None) -> tuple:
    """Serves the API: ``(runner, bound port)``; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(make_app(core), access_log=None, handle_signals=False,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


# --------------------------------------------------------------------- client
def api_request(url: str, target: str, body: Any = None, *, timeout: float = 10.0,
                ssl_context: Optional[ssl.SSLContext] = None) -> tuple:
    """Blocking helper for tests: POST ``body`` to ``url`` → ``(status, json_value)``."""
    data = json.dumps({} if body is None else body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "x-sora-target": target})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return e.code, json.loads(payload)
        except ValueError:
            return e.code, payload.decode(errors="replace")
