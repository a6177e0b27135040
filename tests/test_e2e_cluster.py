"""Redirect (Sora clustering) and several signaling URLs (scenarios 6 and 7)."""
from __future__ import annotations

import socket
import time

import pytest

from conftest import closed_port_url, wait_until

WS = 0
SENT, RECEIVED = 0, 1


@pytest.fixture
def black_hole():
    """A URL whose TCP port accepts connections but never answers the WS handshake."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield f"ws://127.0.0.1:{s.getsockname()[1]}/signaling"
    finally:
        s.close()


@pytest.mark.parametrize("dc_signaling", [False, True], ids=["ws", "dc"])
def test_redirect(sdk, make_server, channel_id, clients, dc_signaling):
    target = make_server()
    front = make_server(redirect_to=target.signaling_url)
    kw = {"data_channel_signaling": True} if dc_signaling else {}
    c = clients(sdk, front, channel_id, **kw).connect()
    sig = c.signaling_types()
    assert sig[:5] == [(WS, SENT, "connect"), (WS, RECEIVED, "redirect"),
                       (WS, SENT, "connect"), (WS, RECEIVED, "offer"), (WS, SENT, "answer")]
    first, redirect, second = (m for _, _, m in c.signaling[:3])
    assert redirect == {"type": "redirect", "location": target.signaling_url}
    assert "redirect" not in first and second["redirect"] is True
    assert {k: v for k, v in second.items() if k != "redirect"} == first
    # connected on the target, not on the front node
    assert [x["connection_id"] for x in target.connections(channel_id)] == [c.connection_id]
    assert front.connections(channel_id) == []
    # the redirected WebSocket is closed by the client itself (sora_sdk: SELF-CLOSED)
    assert c.ws_closes == [(1000, "SELF-CLOSED")]
    if sdk.__name__ == "sora_ffi":
        info = c.conn._info()  # contact/connected URLs (sora_ffi addition)
        assert info["contact_url"] == front.signaling_url
        assert info["connected_url"] == target.signaling_url
    code, _ = c.disconnect()
    assert code == int(sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED)
    assert c.ws_closes[-1] == (1000, "TYPE-DISCONNECT")


def test_redirect_target_down(sdk, make_server, channel_id, clients):
    front = make_server(redirect_to=closed_port_url())
    c = clients(sdk, front, channel_id)
    c.connect(wait=False)
    code, _ = c.wait_disconnected()
    assert code == int(sdk.SoraSignalingErrorCode.WEBSOCKET_HANDSHAKE_FAILED)
    assert [t for _, _, t in c.signaling_types()] == ["connect", "redirect"]


def test_one_dead_one_live(sdk, server, channel_id, clients):
    urls = [closed_port_url(), server.signaling_url, closed_port_url()]
    t0 = time.monotonic()
    c = clients(sdk, urls, channel_id).connect()
    assert time.monotonic() - t0 < 3
    assert [x["connection_id"] for x in server.connections(channel_id)] == [c.connection_id]
    assert [t for _, _, t in c.signaling_types()][:3] == ["connect", "offer", "answer"]
    assert c.disconnects == []
    if sdk.__name__ == "sora_ffi":
        assert c.conn._info()["connected_url"] == server.signaling_url


def test_black_hole_and_live(sdk, server, channel_id, clients, black_hole):
    """The handshakes race: a URL that never answers does not delay the live one."""
    t0 = time.monotonic()
    c = clients(sdk, [black_hole, server.signaling_url], channel_id).connect()
    assert time.monotonic() - t0 < 3
    assert [x["connection_id"] for x in server.connections(channel_id)] == [c.connection_id]


def test_several_servers_one_wins(sdk, make_server, channel_id, clients):
    """Two live servers: exactly one gets the session (the other WebSocket is dropped)."""
    s1, s2 = make_server(), make_server()
    c = clients(sdk, [s1.signaling_url, s2.signaling_url], channel_id).connect()
    on = [s for s in (s1, s2) if s.connections(channel_id)]
    assert len(on) == 1
    assert [x["connection_id"] for x in on[0].connections(channel_id)] == [c.connection_id]
    assert [t for _, _, t in c.signaling_types()].count("connect") == 1
    code, _ = c.disconnect()
    assert code == 0
    assert wait_until(lambda: not s1.connections(channel_id) and not s2.connections(channel_id), 5)


def test_all_dead(sdk, channel_id, clients):
    c = clients(sdk, [closed_port_url(), closed_port_url()], channel_id)
    t0 = time.monotonic()
    c.connect(wait=False)
    code, message = c.wait_disconnected(5)
    assert time.monotonic() - t0 < 2
    assert code == int(sdk.SoraSignalingErrorCode.WEBSOCKET_HANDSHAKE_FAILED)
    assert message
    assert c.signaling == [] and c.offer is None and c.ws_closes == []
    assert c.event_names() == ["disconnect"]
