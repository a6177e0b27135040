"""Connecting in each role, with and without DataChannel signaling, for both SDKs:
on_set_offer, on_signaling_message, notify order and counts, on_switched, on_data_channel,
re-offer/re-answer and on_track (scenario 1)."""
from __future__ import annotations

import re

import pytest

from conftest import CLIENT_DISCONNECT_MESSAGE, wait_until

ROLES = ("sendrecv", "sendonly", "recvonly")
SYSTEM_LABELS = ["signaling", "notify", "push", "stats"]
ID_RE = re.compile(r"^[0-9A-Z]{26}$")

WS, DC = 0, 1  # SoraSignalingType
SENT, RECEIVED = 0, 1  # SoraSignalingDirection


@pytest.mark.parametrize("dc_signaling", [False, True], ids=["ws", "dc"])
@pytest.mark.parametrize("role", ROLES)
def test_connect_role(sdk, server, channel_id, clients, role, dc_signaling):
    kw = {}
    if dc_signaling:
        kw = {"data_channel_signaling": True,
              "data_channels": [{"label": "#chat", "direction": "sendrecv"}]}
    a = clients(sdk, server, channel_id, role, client_id="alice",
                signaling_notify_metadata={"name": "Alice"}, **kw).connect()

    # -- on_set_offer: the offer as JSON, with the fields the official clients rely on
    o = a.offer
    assert o["type"] == "offer"
    assert ID_RE.match(o["connection_id"]) and ID_RE.match(o["session_id"])
    assert o["client_id"] == "alice"
    assert o["bundle_id"] == o["connection_id"]
    assert o["channel_id"] == channel_id
    assert o["config"] == {"iceServers": [], "iceTransportPolicy": "all"}
    assert o["simulcast"] is False and o["spotlight"] is False
    assert o["sdp"].startswith("v=0\r\n") and "m=application" in o["sdp"]
    assert ("mid" in o) == (role != "recvonly")  # only sending roles get upstream mids
    assert o["data_channel_signaling"] is dc_signaling
    if dc_signaling:
        labels = [d["label"] for d in o["data_channels"]]
        assert labels == SYSTEM_LABELS + ["#chat"]
        assert all(d["compress"] is False for d in o["data_channels"])

    # -- own connection.created: first in channel, nobody else in data
    own = a.wait_notify("connection.created", connection_id=a.connection_id)
    assert a.notifies[0] is own
    assert own["type"] == "notify"
    assert own["role"] == role and own["client_id"] == "alice"
    assert own["channel_connections"] == 1
    assert own[f"channel_{role}_connections"] == 1
    assert own["data"] == []
    assert own["metadata"] == {"name": "Alice"}

    # -- on_signaling_message: connect SENT, offer RECEIVED, answer SENT on the WebSocket
    sig = a.signaling_types()
    assert sig[:3] == [(WS, SENT, "connect"), (WS, RECEIVED, "offer"), (WS, SENT, "answer")]
    assert all(t in ("candidate",) for _, _, t in sig[3:]), sig  # trickled candidates only
    connect_msg = a.signaling[0][2]
    assert connect_msg["role"] == role and connect_msg["channel_id"] == channel_id
    assert connect_msg["client_id"] == "alice"
    assert connect_msg["signaling_notify_metadata"] == {"name": "Alice"}
    assert connect_msg["audio"] is False and connect_msg["video"] is False
    if dc_signaling:
        assert connect_msg["data_channel_signaling"] is True
        assert connect_msg["data_channels"][0]["label"] == "#chat"
    assert a.signaling[1][2] == o  # the received offer is the one on_set_offer got

    # -- DataChannel signaling: data channels (system and '#'), then switched
    if dc_signaling:
        a.wait_for(lambda: a.switched, what="switched")
        assert a.switched == [{"type": "switched", "ignore_disconnect_websocket": False}]
        a.wait_for(lambda: len(a.data_channels) == 5, what="5 data channels")
        assert sorted(a.data_channels) == sorted(SYSTEM_LABELS + ["#chat"])
    else:
        assert a.switched == [] and a.data_channels == []

    # -- a second member: its own created lists alice; alice hears about it
    b = clients(sdk, server, channel_id, "recvonly", client_id="bob", **kw).connect()
    own_b = b.wait_notify("connection.created", connection_id=b.connection_id)
    assert own_b["channel_connections"] == 2
    assert own_b["channel_recvonly_connections"] == (2 if role == "recvonly" else 1)
    assert [(d["connection_id"], d["client_id"]) for d in own_b["data"]] == [
        (a.connection_id, "alice")]
    about_b = a.wait_notify("connection.created", connection_id=b.connection_id)
    assert about_b["client_id"] == "bob" and about_b["role"] == "recvonly"
    assert about_b["channel_connections"] == 2
    assert sum(about_b[f"channel_{r}_connections"] for r in ROLES) == 2

    # -- bob leaves: alice gets connection.destroyed with the new count
    code, message = b.disconnect()
    assert code == int(sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED)
    assert message == CLIENT_DISCONNECT_MESSAGE["hybrid" if dc_signaling else "ws"]
    gone = a.wait_notify("connection.destroyed", connection_id=b.connection_id)
    assert gone["channel_connections"] == 1 and gone["client_id"] == "bob"
    assert [(n["event_type"], n["connection_id"]) for n in a.notifies] == [
        ("connection.created", a.connection_id),
        ("connection.created", b.connection_id),
        ("connection.destroyed", b.connection_id),
    ]
    last = b.signaling[-1]
    assert last[:2] == ((DC if dc_signaling else WS), SENT)
    assert last[2]["type"] == "disconnect"

    code, message = a.disconnect()
    assert code == int(sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED)
    assert a.ws_closes == [(1000, "TYPE-DISCONNECT")]
    assert wait_until(lambda: server.connections(channel_id) == [], 5)
    # ping/pong and switched never reach on_signaling_message
    assert not any(t in ("ping", "pong", "switched") for _, _, t in a.signaling_types())


def test_callback_argument_types(sdk, server, channel_id, clients):
    """Callbacks receive the SDK's own enum types (IntEnum with the official values)."""
    a = clients(sdk, server, channel_id)
    raw = {}
    orig = a.conn.on_disconnect
    a.conn.on_signaling_message = lambda t, d, m: raw.setdefault("sig", (t, d, m))
    a.conn.on_disconnect = lambda c, m: (raw.setdefault("disc", (c, m)), orig(c, m))
    a.connect()
    a.disconnect()
    t, d, m = raw["sig"]
    assert isinstance(t, sdk.SoraSignalingType) and t == sdk.SoraSignalingType.WEBSOCKET
    assert isinstance(d, sdk.SoraSignalingDirection) and d == sdk.SoraSignalingDirection.SENT
    assert isinstance(m, str)
    c, msg = raw["disc"]
    assert isinstance(c, sdk.SoraSignalingErrorCode)
    assert c == sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED and int(c) == 0
    assert isinstance(msg, str)


@pytest.mark.parametrize("dc_signaling", [False, True], ids=["ws", "dc"])
def test_reoffer_and_tracks(sdk, server, channel_id, clients, dc_signaling):
    """A media sender joining makes the server re-offer to the existing member: re-offer is
    RECEIVED and re-answer SENT (on the DataChannel once switched), and on_track reports the
    sender's audio and video with stream_id = the sender's connection id."""
    kw = {"data_channel_signaling": True} if dc_signaling else {}
    a = clients(sdk, server, channel_id, "recvonly", audio=True, video=True, **kw).connect()
    if dc_signaling:
        a.wait_for(lambda: a.switched, what="switched")
    b = clients(sdk, server, channel_id, "sendonly", audio=True, video=True, **kw).connect()
    assert b.offer["mid"] == {"audio": "0", "video": "1"}
    a.wait_notify("connection.created", connection_id=b.connection_id)
    path = DC if dc_signaling else WS
    a.wait_for(lambda: (path, SENT, "re-answer") in a.signaling_types(), what="re-answer")
    sig = a.signaling_types()
    assert sig.index((path, RECEIVED, "re-offer")) < sig.index((path, SENT, "re-answer"))
    reoffer = next(m for t, d, m in a.signaling if m.get("type") == "re-offer")
    assert f"a=msid:{b.connection_id} " in reoffer["sdp"]
    a.wait_for(lambda: len(a.tracks) >= 2, what="2 tracks")
    assert sorted((t.kind, t.stream_id) for t in a.tracks) == [
        ("audio", b.connection_id), ("video", b.connection_id)]
    assert all(t.state == sdk.SoraTrackState.LIVE for t in a.tracks)
    b.disconnect()
    a.wait_notify("connection.destroyed", connection_id=b.connection_id)
    a.wait_for(lambda: [t for t, d, m in a.signaling
                        if m.get("type") == "re-offer"].__len__() >= 2, what="leave re-offer")


def test_newer_connect_parameters_are_sent(sdk, server, channel_id, clients):
    """video_h265_params and simulcast_request_rid (sora_sdk 2025.x) go into `connect`, as
    the official SDK sends them."""
    c = clients(sdk, server, channel_id, "recvonly", video=True,
                video_h265_params={"level_id": 93}, simulcast_request_rid="r1").connect()
    connect = next(m for t, d, m in c.signaling if d == 0 and m.get("type") == "connect")
    assert connect["video"]["h265_params"] == {"level_id": 93}
    assert connect["simulcast_request_rid"] == "r1"


def test_connections_started_at_once_all_establish(ffi, server, channel_id):
    """100 recvonly audio+video connections over 10 channels, each connect() on its own
    thread, released together (benchmarks/connect.py times the same thing): every one
    establishes (wait_connected: offer applied, peer connected, its own
    connection.created received), and none fails. This is where the DTLS certificate race
    of libdatachannel used to fail connections (cshim/patches)."""
    import threading

    sora = ffi.Sora()
    n, channels = 100, 10
    failed: list = []
    conns = []
    for i in range(n):
        conn = sora.create_connection(signaling_urls=[server.signaling_url], role="recvonly",
                                      channel_id=f"{channel_id}-{i % channels}", audio=True, video=True)
        conn.on_disconnect = lambda code, message: failed.append((int(code), message))
        conns.append(conn)
    go = threading.Barrier(n)
    threads = [threading.Thread(target=lambda c=c: (go.wait(), c.connect())) for c in conns]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        established = [c.wait_connected(20) for c in conns]
        assert all(established), f"{established.count(False)} not established"
        assert not failed
        assert wait_until(lambda: len(server.connections()) == n, 10)
    finally:
        for conn in conns:
            conn.disconnect()
    assert wait_until(lambda: server.connections() == [], 20)


def test_no_connect_waits_for_a_dtls_retransmission(ffi, channel_id):
    """100 connects in a row, each established in well under a second. The remote's first
    DTLS flight can arrive before our own ICE check has succeeded, i.e. before our DTLS
    transport exists; libdatachannel dropped it and the handshake waited for OpenSSL's
    1 s retransmission: 2-6 % of connects to a dev server in its own process (as here; in
    this process the race is rarer). cshim/patches/libdatachannel-keep-early-dtls-flight.patch
    keeps such a flight for DTLS."""
    from sora_ffi.devserver import DevServerProcess

    with DevServerProcess() as server:
        slow = _slow_connects_in_a_row(ffi.Sora(), server.signaling_url, channel_id, 100)
    assert not slow, f"connects that waited (index, ms): {slow}"


def _slow_connects_in_a_row(sora, url: str, channel_id: str, n: int) -> list:
    """(index, ms) of each of n connects in a row that took 0.8 s or more."""
    import time

    slow = []
    for i in range(n):
        conn = sora.create_connection(signaling_urls=[url], role="recvonly",
                                      channel_id=channel_id, audio=True, video=True)
        start = time.monotonic()
        conn.connect()
        try:
            assert conn.wait_connected(10), f"connect {i} was not established"
            took = time.monotonic() - start
            if took >= 0.8:  # OpenSSL's first retransmission comes after 1 s
                slow.append((i, round(took * 1000)))
        finally:
            conn.disconnect()
    return slow
