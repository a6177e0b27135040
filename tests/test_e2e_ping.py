"""ping/pong (scenario 8): the client answers every server ping so the session survives
many intervals (the dev server ends a session with no pong within two intervals), answers
``ping {stats: true}`` with its stats, and never reports ping/pong to
on_signaling_message."""
from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import server_call, server_session, wait_until

INTERVAL = 0.2


@pytest.mark.parametrize("dc_signaling", [False, True], ids=["ws", "hybrid"])
def test_ping_pong_keeps_session(sdk, make_server, channel_id, clients, dc_signaling):
    server = make_server(ping_interval=INTERVAL)
    c = clients(sdk, server, channel_id, data_channel_signaling=dc_signaling).connect()
    sess = server_session(server, c.connection_id)
    assert wait_until(lambda: sess.counters.pings >= 6, 5), sess.counters.pings
    # every ping was answered (the last one may be in flight)
    assert wait_until(lambda: sess.counters.pongs >= sess.counters.pings - 1, 2)
    assert sess.counters.pongs >= 5
    assert sess.state == "established"
    assert c.disconnects == [] and c.ws_closes == []
    types = {t for _, _, t in c.signaling_types()}
    assert "ping" not in types and "pong" not in types
    code, _ = c.disconnect()
    assert code == 0


@pytest.mark.parametrize("dc_signaling", [False, True], ids=["ws", "hybrid"])
def test_ping_with_stats(sdk, make_server, channel_id, clients, dc_signaling):
    """ping {stats: true} → the client sends its stats (pong.stats on the WebSocket, or
    a stats message on the DC stats channel, as sora-cpp-sdk does after switched)."""
    server = make_server(ping_interval=None)  # only the ping the test sends
    c = clients(sdk, server, channel_id, data_channel_signaling=dc_signaling).connect()
    sess = server_session(server, c.connection_id)
    assert sess.client_stats is None
    assert server_call(server, lambda: sess.send_ws({"type": "ping", "stats": True}))
    assert wait_until(lambda: sess.client_stats is not None, 5)
    stats = sess.client_stats
    assert isinstance(stats, list) and stats
    assert all(isinstance(s, dict) and {"id", "type", "timestamp"} <= set(s) for s in stats)
    types = {s["type"] for s in stats}
    assert {"peer-connection", "transport", "candidate-pair"} <= types, types
    assert sess.state == "established" and c.disconnects == []


def test_no_pong_ends_session_ffi(ffi, make_server, channel_id, clients, ws_mitm):
    """Counter-check of the test above: when pongs are dropped on the way, the server ends
    the session (4408 PONG-TIMEOUT) and the client reports WEBSOCKET_ONCLOSE."""
    server = make_server(ping_interval=INTERVAL)
    import json

    def drop_pongs(direction, msg):
        if direction == "c2s" and isinstance(msg, str) and json.loads(msg).get("type") == "pong":
            return []
        return None

    mitm = ws_mitm(server.signaling_url, drop_pongs)
    c = clients(ffi, mitm.url, channel_id).connect()
    code, message = c.wait_disconnected(5)
    assert code == int(ffi.SoraSignalingErrorCode.WEBSOCKET_ONCLOSE)
    assert "wscode=4408" in message and "PONG-TIMEOUT" in message
    assert c.ws_closes == [(4408, "PONG-TIMEOUT")]


def test_ping_timeout_ends_a_session_whose_server_went_silent(ffi, channel_id, clients):
    """sora_ffi's `ping_timeout`: the server (a process of its own) is frozen with SIGSTOP,
    so its pings stop without a close; the session ends with WEBSOCKET_ONERROR within
    about ping_timeout. Without the option the session waits (the official behaviour), and
    a server that never pings is never taken for dead."""
    from sora_ffi.devserver.process import DevServerProcess

    with DevServerProcess("--ping-interval", str(INTERVAL), "--no-api") as server:
        watched = clients(ffi, server.signaling_url, channel_id, ping_timeout=0.5).connect()
        plain = clients(ffi, server.signaling_url, channel_id).connect()
        time.sleep(4 * INTERVAL)  # a few pings: the interval is known
        os.kill(server.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            code, message = watched.wait_disconnected(5)
            elapsed = time.monotonic() - t0
            time.sleep(0.5)
            assert plain.disconnects == []  # no ping_timeout: still waiting
        finally:
            os.kill(server.pid, signal.SIGCONT)
    assert code == int(ffi.SoraSignalingErrorCode.WEBSOCKET_ONERROR), message
    assert "No ping from the server" in message and "ping_timeout" in message
    assert 0.3 < elapsed < 1.5, elapsed
    assert watched.ws_closes == [(0, "")]


def test_ping_timeout_waits_for_a_server_that_never_pings(ffi, make_server, channel_id, clients):
    server = make_server(ping_interval=None)
    c = clients(ffi, server.signaling_url, channel_id, ping_timeout=0.2).connect()
    time.sleep(1.0)
    assert c.disconnects == [] and c.ws_closes == []
    assert c.disconnect()[0] == 0


@pytest.mark.parametrize("bad", [0, -1, 0.05, 1e9, float("nan"), "5", True])
def test_bad_ping_timeouts_are_refused(ffi, bad):
    with pytest.raises((TypeError, ValueError), match="ping_timeout"):
        ffi.Sora().create_connection(["ws://127.0.0.1:9/signaling"], "recvonly", "c", ping_timeout=bad)
