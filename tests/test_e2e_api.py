"""The dev server's HTTP API against both SDKs: push (on_push), DisconnectConnection
(server-initiated end in WS-only, hybrid and DataChannel-only sessions),
ListChannelConnections and GetStatsConnection (scenario 3)."""
from __future__ import annotations

import json

import pytest

from conftest import MODES, SERVER_DISCONNECT_PREFIX, mode_kwargs, wait_until

WS, DC = 0, 1
SENT, RECEIVED = 0, 1


def _pair(sdk, server, channel_id, clients, mode):
    kw = mode_kwargs(mode)
    a = clients(sdk, server, channel_id, "sendonly", client_id="alice", **kw).connect()
    b = clients(sdk, server, channel_id, "recvonly", client_id="bob", **kw).connect()
    if mode == "dconly":  # the client closes its WebSocket after switched
        for c in (a, b):
            c.wait_for(lambda c=c: c.ws_closes, what="ws close after switched")
            assert c.ws_closes == [(1000, "SELF-CLOSED")]
    return a, b


@pytest.mark.parametrize("mode", MODES)
def test_push(sdk, server, channel_id, clients, mode):
    a, b = _pair(sdk, server, channel_id, clients, mode)
    data = {"text": "お知らせ", "n": [1, 2.5, None, True], "nested": {"k": "v"}}
    assert server.api("Sora_20160711.PushChannel", {"channel_id": channel_id, "data": data}) == (200, {})
    for c in (a, b):
        c.wait_for(lambda c=c: c.pushes, what="channel push")
        assert c.pushes == [{"type": "push", "data": data}]
    assert server.api("Sora_20160711.PushConnection", {
        "channel_id": channel_id, "connection_id": b.connection_id, "data": "only bob"}) == (200, {})
    b.wait_for(lambda: len(b.pushes) == 2, what="connection push")
    assert b.pushes[1] == {"type": "push", "data": "only bob"}
    assert server.api("Sora_20160711.PushClient", {
        "channel_id": channel_id, "client_id": "alice", "data": [1]}) == (200, {})
    assert server.api("Sora_20201120.PushChannelByRole", {
        "channel_id": channel_id, "role": "recvonly", "data": {"role": "recvonly"}}) == (200, {})
    a.wait_for(lambda: len(a.pushes) == 2, what="client push")
    b.wait_for(lambda: len(b.pushes) == 3, what="role push")
    assert a.pushes[1] == {"type": "push", "data": [1]}
    assert b.pushes[2] == {"type": "push", "data": {"role": "recvonly"}}
    # pushes never show up as notifies or signaling messages, and nothing else arrived
    assert len(a.pushes) == 2 and len(b.pushes) == 3
    assert not any(m.get("type") == "push" for _, _, m in a.signaling + b.signaling)
    # a push to a connection that is not there is an API error, not a client event
    st, body = server.api("Sora_20160711.PushConnection", {
        "channel_id": channel_id, "connection_id": "X" * 26, "data": 1})
    assert st == 404 and body["error_type"] == "NOT-FOUND"


@pytest.mark.parametrize("mode", MODES)
def test_disconnect_connection_api(sdk, server, channel_id, clients, mode):
    a, b = _pair(sdk, server, channel_id, clients, mode)
    assert server.api("Sora_20151104.DisconnectConnection", {
        "channel_id": channel_id, "connection_id": b.connection_id}) == (200, {})
    code, message = b.wait_disconnected()
    assert code == int(sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED)
    assert message.startswith(SERVER_DISCONNECT_PREFIX[mode]), message
    assert "DISCONNECTED-API" in message, message
    if mode == "dconly":
        # no WebSocket left: the server said so with a close message on DC signaling
        closes = [(t, d, m) for t, d, m in b.signaling if m.get("type") == "close"]
        assert closes == [(DC, RECEIVED, {"type": "close", "code": 1000,
                                          "reason": "DISCONNECTED-API"})]
        assert b.ws_closes == [(1000, "SELF-CLOSED")]
    else:
        assert b.ws_closes == [(1000, "DISCONNECTED-API")]
        assert not any(m.get("type") == "close" for _, _, m in b.signaling)
    # the client does not answer a server-side end with its own disconnect
    assert not any(m.get("type") == "disconnect" for _, _, m in b.signaling)
    gone = a.wait_notify("connection.destroyed", connection_id=b.connection_id)
    assert gone["channel_connections"] == 1
    assert a.disconnects == []  # the other member is untouched
    assert wait_until(lambda: [c["connection_id"] for c in server.connections(channel_id)]
                      == [a.connection_id], 5)


def test_list_channel_connections(sdk, sdk2, server, channel_id, clients):
    a = clients(sdk, server, channel_id, "sendonly", client_id="alice",
                signaling_notify_metadata={"who": "a"}).connect()
    b = clients(sdk2, server, channel_id, "recvonly", client_id="bob",
                data_channel_signaling=True).connect()
    st, conns = server.api("Sora_20201013.ListChannelConnections", {"channel_id": channel_id})
    assert st == 200
    by_id = {c["connection_id"]: c for c in conns}
    assert set(by_id) == {a.connection_id, b.connection_id}
    ca, cb = by_id[a.connection_id], by_id[b.connection_id]
    assert (ca["role"], ca["client_id"], ca["session_id"]) == (
        "sendonly", "alice", a.offer["session_id"])
    assert (cb["role"], cb["client_id"], cb["session_id"]) == (
        "recvonly", "bob", b.offer["session_id"])
    assert ca["channel_id"] == cb["channel_id"] == channel_id
    assert ca["data_channel_signaling"] is False and cb["data_channel_signaling"] is True
    assert ca["signaling_notify_metadata"] == {"who": "a"}
    assert ca["audio"] is False and ca["video"] is False
    b.disconnect()
    assert wait_until(lambda: [c["connection_id"] for c in server.api(
        "Sora_20201013.ListChannelConnections", {"channel_id": channel_id})[1]]
        == [a.connection_id], 5)


def test_get_stats_connection(sdk, server, channel_id, clients):
    a = clients(sdk, server, channel_id, data_channel_signaling=True,
                data_channels=[{"label": "#s", "direction": "sendrecv"}]).connect()
    b = clients(sdk, server, channel_id, data_channel_signaling=True,
                data_channels=[{"label": "#s", "direction": "sendrecv"}]).connect()
    a.wait_dc("#s")
    b.wait_dc("#s")
    assert a.conn.send_data_channel("#s", b"12345") is True
    b.wait_messages(1)
    st, stats = server.api("Sora_20170529.GetStatsConnection", {
        "channel_id": channel_id, "connection_id": a.connection_id})
    assert st == 200 and isinstance(stats, list)
    json.dumps(stats)  # plain JSON
    pc = [s for s in stats if s["type"] == "peer-connection"]
    assert len(pc) == 1 and pc[0]["connectionState"] == "connected"
    dcs = {s["label"]: s for s in stats if s["type"] == "data-channel"}
    assert set(dcs) == {"signaling", "notify", "push", "stats", "#s"}
    assert dcs["#s"]["state"] == "open"
    assert dcs["#s"]["messagesReceived"] == 1 and dcs["#s"]["bytesReceived"] == 5
    # and the client's own get_stats() is W3C-shaped JSON too
    own = json.loads(a.conn.get_stats())
    assert isinstance(own, list) and own
    assert all(isinstance(s, dict) and {"id", "type", "timestamp"} <= set(s) for s in own)
    types = {s["type"] for s in own}
    assert {"peer-connection", "transport", "candidate-pair", "data-channel"} <= types
    own_dcs = {s.get("label"): s for s in own if s["type"] == "data-channel"}
    assert own_dcs["#s"]["messagesSent"] >= 1 and own_dcs["#s"]["bytesSent"] >= 5
