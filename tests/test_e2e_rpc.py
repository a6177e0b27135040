"""JSON-RPC on the `rpc` DataChannel (issue 8 §2 and §7): the dev server offers
`rpc_methods` granted by a JWT, answers PutSignalingNotifyMetadata(Item) with the push
they cause, and errors as JSON-RPC does; `SoraConnection.send_rpc` sends requests and
notifications, returns False before the channel is open, and `on_rpc` gets the raw reply,
malformed or not."""
from __future__ import annotations

import json
import time

import jwt
import pytest

from conftest import server_call, server_session

SECRET = "rpc-secret-long-enough-for-hs256-32b"
PUT = "2025.2.0/PutSignalingNotifyMetadata"
PUT_ITEM = "2025.2.0/PutSignalingNotifyMetadataItem"


@pytest.fixture
def rpc_server(make_server):
    return make_server(jwt_secret=SECRET)


def rpc_client(s, server, channel_id, clients, methods=(PUT, PUT_ITEM), **kw):
    claims = {"channel_id": channel_id, "exp": int(time.time() + 60), "rpc_methods": list(methods)}
    md = {"access_token": jwt.encode(claims, SECRET, algorithm="HS256")}
    c = clients(s, server, channel_id, metadata=md, data_channel_signaling=True,
                signaling_notify_metadata={"name": "a"}, **kw)
    return c


def replies(c, n):
    c.wait_for(lambda: len(c.rpcs) >= n, 5, f"{n} rpc replies")
    return [json.loads(r) for r in c.rpcs]


def test_offer_grants_methods_and_the_rpc_channel_opens(ffi, rpc_server, channel_id, clients):
    c = rpc_client(ffi, rpc_server, channel_id, clients)
    assert c.conn.send_rpc(1, PUT, {"metadata": {}}) is False  # not connected: not open
    c.connect()
    assert c.offer["rpc_methods"] == [PUT, PUT_ITEM]
    c.wait_dc("rpc")


def test_put_metadata_and_item_with_push(ffi, rpc_server, channel_id, clients):
    other = rpc_client(ffi, rpc_server, channel_id, clients).connect()
    c = rpc_client(ffi, rpc_server, channel_id, clients).connect()
    c.wait_dc("rpc")
    assert c.conn.send_rpc(1, PUT, {"metadata": {"name": "b", "n": 1}, "push": True})
    assert replies(c, 1)[0] == {"jsonrpc": "2.0", "id": 1, "result": {"name": "b", "n": 1}}
    # every member, the caller too, gets the change as a push
    expected = {"type": "signaling_notify_metadata_ext", "action": "PutMetadata",
                "connection_id": c.connection_id, "metadata": {"name": "b", "n": 1}}
    for member in (other, c):
        assert member.wait_for(lambda m=member: m.pushes and m.pushes[0], 5, "push")["data"] == expected
    assert c.conn.send_rpc(2, PUT_ITEM, {"key": "n", "value": 2})  # no push: nobody told
    assert replies(c, 2)[1]["result"] == {"name": "b", "n": 2}
    time.sleep(0.2)
    assert len(other.pushes) == 1
    sess = server_session(rpc_server, c.connection_id)
    assert server_call(rpc_server, lambda: sess.params.signaling_notify_metadata) == {"name": "b", "n": 2}
    # a notification (id None) gets no reply
    assert c.conn.send_rpc(None, PUT_ITEM, {"key": "x", "value": True})
    time.sleep(0.2)
    assert len(c.rpcs) == 2


def test_put_metadata_item_as_sora_js_sdk_calls_it(ffi, rpc_server, channel_id, clients):
    """sora-js-sdk's RPC end-to-end page: `Sora_20201124.PutSignalingNotifyMetadataItem`
    {key, value, push: true} sent as a notification; both pages get the push it checks."""
    method = "Sora_20201124.PutSignalingNotifyMetadataItem"
    pages = [rpc_client(ffi, rpc_server, channel_id, clients, methods=(method,)).connect() for _ in range(2)]
    pages[0].wait_dc("rpc")
    assert pages[0].conn.send_rpc(None, method, {"key": "abc", "value": "test-value-from-page1", "push": True})
    for page in pages:
        data = page.wait_for(lambda p=page: p.pushes and p.pushes[0], 5, "push")["data"]
        assert data == {"type": "signaling_notify_metadata_ext", "action": "PutMetadataItem",
                        "connection_id": pages[0].connection_id, "key": "abc", "value": "test-value-from-page1"}
    assert pages[0].rpcs == []  # a notification: no reply


@pytest.mark.parametrize("method,params,code", [
    ("2025.2.0/NoSuchMethod", {}, -32601),
    ("2025.2.0/RequestSimulcastRid", {"rid": "r0"}, -32601),  # not granted here
    (PUT, {"push": True}, -32602),
    (PUT_ITEM, {"key": 5, "value": 1}, -32602),
    (PUT, ["not", "an", "object"], -32602),
])
def test_errors(ffi, rpc_server, channel_id, clients, method, params, code):
    c = rpc_client(ffi, rpc_server, channel_id, clients).connect()
    c.wait_dc("rpc")
    assert c.conn.send_rpc(7, method, params)
    reply = replies(c, 1)[0]
    assert reply["id"] == 7 and reply["error"]["code"] == code


def test_malformed_requests_get_json_rpc_errors_and_raw_replies_reach_on_rpc(
        ffi, rpc_server, channel_id, clients):
    c = rpc_client(ffi, rpc_server, channel_id, clients).connect()
    c.wait_dc("rpc")
    assert c.conn.send_data_channel("rpc", b"{not json")
    assert replies(c, 1)[0]["error"]["code"] == -32700
    # the server sends garbage: on_rpc gets the bytes as they came, nothing breaks
    sess = server_session(rpc_server, c.connection_id)
    assert server_call(rpc_server, lambda: sess.send_dc("rpc", b"\xff garbage", True))
    c.wait_for(lambda: len(c.rpcs) >= 2, 5, "raw reply")
    assert c.rpcs[1] == b"\xff garbage"
    assert c.disconnects == []


@pytest.mark.parametrize("args,exc", [
    ((1.5, PUT), TypeError), ((True, PUT), TypeError), ((1, 5), TypeError), ((1, ""), ValueError),
    ((1, PUT, "params"), TypeError), ((1, PUT, {"x": float("nan")}), ValueError),
    ((1, PUT, {"x": object()}), ValueError),
])
def test_send_rpc_bad_arguments(ffi, server, channel_id, args, exc):
    conn = ffi.Sora().create_connection(signaling_urls=[server.signaling_url],
                                        role="sendrecv", channel_id=channel_id)
    with pytest.raises(exc):
        conn.send_rpc(*args)


def test_without_rpc_methods_there_is_no_rpc_channel(ffi, server, channel_id, clients):
    c = clients(ffi, server, channel_id, data_channel_signaling=True).connect()
    assert "rpc_methods" not in c.offer
    assert c.conn.send_rpc(1, PUT, {"metadata": {}}) is False
