"""Dev-server specifics end to end, complementing the cross-SDK suites (test_e2e_*.py):
notify contents and counts across roles, m-section reconciliation (port 0, codecs,
bundle_id), serialised re-offers, concurrent joins, messaging transforms, auth overrides,
server stop, and protocol errors / timeouts seen by raw WebSocket clients and the CLI.

The official ``sora_sdk`` is the reference client here (``official`` fixture; skipped where
it is not installed); the raw tests need only the shim."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import wait_until
from sora_ffi.devserver import DevServer, sdp

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

WS, DC = 0, 1
SENT, RECEIVED = 0, 1
SECRET = "devserver-test-secret-0123456789abcdef0123456789abcdef"
AV = {"audio": True, "video": True}


def _reoffers(c):
    return [m for t, d, m in c.signaling if isinstance(m, dict) and m.get("type") == "re-offer"]


def _tracks(c):
    return sorted((t.kind, t.stream_id) for t in c.tracks)


# ------------------------------------------------------------ with the official SDK
@pytest.mark.parametrize("dc_signaling", [False, True], ids=["ws", "dc"])
def test_members_notifies_and_sections(official, server, channel_id, clients, dc_signaling):
    kw = {"data_channel_signaling": True} if dc_signaling else {}
    a = clients(official, server, channel_id, "sendrecv", **AV, **kw).connect()
    own = a.wait_notify("connection.created", connection_id=a.connection_id)
    assert own["channel_connections"] == 1 and own["data"] == []
    assert a.offer["mid"] == {"audio": "0", "video": "1"}

    b = clients(official, server, channel_id, "recvonly", **AV, **kw).connect()
    own_b = b.wait_notify("connection.created", connection_id=b.connection_id)
    assert own_b["channel_connections"] == 2
    assert [d["connection_id"] for d in own_b["data"]] == [a.connection_id]
    # b's first offer already carries a's media
    assert f"a=msid:{a.connection_id} " in b.offer["sdp"]
    b.wait_for(lambda: len(b.tracks) == 2, what="a's tracks")
    assert _tracks(b) == [("audio", a.connection_id), ("video", a.connection_id)]
    about_b = a.wait_notify("connection.created", connection_id=b.connection_id)
    assert about_b["role"] == "recvonly" and about_b["channel_connections"] == 2
    assert about_b["channel_recvonly_connections"] == 1
    assert about_b["channel_sendrecv_connections"] == 1
    assert "data" not in about_b
    assert _reoffers(a) == []  # a recvonly joiner brings no media: no re-offer

    c = clients(official, server, channel_id, "sendonly", video_codec_type="VP8", **AV,
                **kw).connect()
    assert "m=video" not in c.offer["sdp"].split("m=application")[1]  # sendonly: no downstream
    for x in (a, b):
        x.wait_for(lambda x=x: ("video", c.connection_id) in _tracks(x), what="c's video")
        assert len(_reoffers(x)) == 1
        assert "VP8/90000" in _reoffers(x)[0]["sdp"]
    c.disconnect()
    for x in (a, b):
        gone = x.wait_notify("connection.destroyed", connection_id=c.connection_id)
        assert gone["channel_connections"] == 2
        x.wait_for(lambda x=x: len(_reoffers(x)) == 2, what="leave re-offer")
        last = _reoffers(x)[-1]["sdp"]
        assert "m=audio 0 " in last and "m=video 0 " in last
        bundle = next(line for line in last.split("\r\n") if line.startswith("a=group:BUNDLE"))
        assert bundle == "a=group:BUNDLE 0 1 2"  # the removed mids 3 and 4 left the bundle
    # re-offers went over the WebSocket, or the signaling DataChannel after switched
    assert {t for t, d, m in a.signaling if isinstance(m, dict)
            and m.get("type") == "re-offer"} == {DC if dc_signaling else WS}


def test_bundle_id_siblings(official, server, channel_id, clients):
    kw = {"data_channel_signaling": True,
          "data_channels": [{"label": "#m", "direction": "sendrecv"}]}
    a = clients(official, server, channel_id, "sendrecv", bundle_id="B", **AV, **kw).connect()
    b = clients(official, server, channel_id, "sendrecv", bundle_id="B", **AV, **kw).connect()
    c = clients(official, server, channel_id, "sendrecv", **AV, **kw).connect()
    own_b = b.wait_notify("connection.created", connection_id=b.connection_id)
    assert own_b["data"] == [] and own_b["channel_connections"] == 2
    assert own_b["bundle_id"] == "B"
    c.wait_for(lambda: len(c.tracks) == 4, what="tracks of a and b")
    for x in (a, b):
        x.wait_for(lambda x=x: ("video", c.connection_id) in _tracks(x), what="c's tracks")
        x.wait_dc("#m")
    time.sleep(0.3)
    assert [t.stream_id for t in a.tracks] == [c.connection_id] * 2
    assert not any(n["connection_id"] == b.connection_id for n in a.notifies)
    c.wait_dc("#m")
    assert a.conn.send_data_channel("#m", b"from a")
    c.wait_messages(1)
    time.sleep(0.3)
    assert c.messages == [("#m", b"from a")] and b.messages == []


def test_concurrent_joins_reconcile(official, server, channel_id, clients):
    """Senders joining at once: every member ends up with exactly the others' media and
    never has two re-offers outstanding (each re-offer is answered before the next)."""
    members = [clients(official, server, channel_id, "sendrecv", **AV) for _ in range(4)]
    for m in members:
        m.connect(wait=False)
    for m in members:
        m.wait_connected()
    for m in members:
        want = sorted((k, o.connection_id) for o in members if o is not m
                      for k in ("audio", "video"))
        m.wait_for(lambda m=m, want=want: _tracks(m) == want, what=f"tracks {want}")

        def kinds(m=m):
            return [x.get("type") for t, d, x in m.signaling
                    if isinstance(x, dict) and x.get("type") in ("re-offer", "re-answer")]
        m.wait_for(lambda: len(kinds()) % 2 == 0, what="last re-answer")
        assert kinds() == ["re-offer", "re-answer"] * (len(kinds()) // 2), kinds()
    for m in members[:2]:
        m.disconnect()

    def port0(m):
        offers = _reoffers(m)
        return offers and sum(1 for line in offers[-1]["sdp"].split("\r\n")
                              if line.startswith("m=") and line.split()[1] == "0")
    for m in members[2:]:
        m.wait_for(lambda m=m: port0(m) == 4, what="port 0 for both leavers' sections")


def test_messaging_transforms(official, server, channel_id, clients):
    """compress on the sender's label is undone; each receiver gets its own header/compress."""
    sender = clients(official, server, channel_id, "sendonly", data_channel_signaling=True,
                     data_channels=[{"label": "#m", "direction": "sendonly", "compress": True}])
    plain = clients(official, server, channel_id, "recvonly", data_channel_signaling=True,
                    data_channels=[{"label": "#m", "direction": "recvonly",
                                    "header": [{"type": "sender_connection_id"}]}])
    both = clients(official, server, channel_id, "sendrecv", data_channel_signaling=True,
                   data_channels=[{"label": "#m", "direction": "sendrecv", "compress": True,
                                   "header": [{"type": "sender_connection_id"}]}])
    for c in (sender, plain, both):
        c.connect()
        c.wait_dc("#m")
    assert sender.offer["data_channels"][-1] == {"label": "#m", "direction": "sendonly",
                                                 "compress": True}
    assert sender.conn.send_data_channel("#m", "はむ".encode())
    sid = sender.connection_id.encode()
    assert plain.wait_messages(1) == [("#m", sid + "はむ".encode())]
    assert both.wait_messages(1) == [("#m", sid + "はむ".encode())]
    payload = bytes(range(256)) * 20
    assert both.conn.send_data_channel("#m", payload)
    assert plain.wait_messages(2)[1] == ("#m", both.connection_id.encode() + payload)
    time.sleep(0.3)
    assert sender.messages == [] and len(both.messages) == 1  # never back, never to sendonly
    st, stats = server.api("Sora_20170529.GetStatsConnection",
                           {"channel_id": channel_id, "connection_id": plain.connection_id})
    dc = next(s for s in stats if s.get("type") == "data-channel" and s["label"] == "#m")
    assert st == 200 and dc["messagesSent"] == 2 and dc["state"] == "open"


def test_jwt_overrides_reach_the_offer(official, make_server, channel_id, clients):
    import jwt

    server = make_server(jwt_secret=SECRET)
    token = jwt.encode({"channel_id": channel_id, "exp": int(time.time()) + 60,
                        "video": False, "audio_codec_type": "OPUS", "metadata": {"granted": 1},
                        "client_id": "from-jwt", "signaling_notify_metadata": {"n": "jwt"},
                        "data_channel_signaling": True,
                        "data_channels": [{"label": "#granted", "direction": "recvonly"}]},
                       SECRET, algorithm="HS256")
    c = clients(official, server, channel_id, "recvonly", metadata={"access_token": token},
                **AV).connect()
    o = c.offer
    assert o["video"] is False and o["audio"] is True and "m=video" not in o["sdp"]
    assert o["metadata"] == {"granted": 1} and o["client_id"] == "from-jwt"
    assert o["data_channel_signaling"] is True
    assert [d["label"] for d in o["data_channels"]][-1] == "#granted"
    own = c.wait_notify("connection.created", connection_id=c.connection_id)
    assert own["metadata"] == {"n": "jwt"} and own["client_id"] == "from-jwt"


def test_server_stop_ends_everyone(official, channel_id, clients):
    server = DevServer(ping_interval=5.0).start()
    try:
        a = clients(official, server, channel_id, "sendrecv", **AV).connect()
        b = clients(official, server, channel_id, "sendrecv", **AV, data_channel_signaling=True,
                    ignore_disconnect_websocket=True).connect()
        b.wait_for(lambda: b.ws_closes, what="SELF-CLOSED")
    finally:
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 8
    a.wait_disconnected()
    b.wait_disconnected()
    assert a.ws_closes == [(1001, "SERVER-SHUTDOWN")]
    assert [m for t, d, m in b.signaling if isinstance(m, dict) and m.get("type") == "close"] \
        == [{"type": "close", "code": 1001, "reason": "SERVER-SHUTDOWN"}]


# ----------------------------------------------------------------- raw clients
async def _closed(ws, timeout=5):
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize("first,fragment", [
    ("not json", "JSON"),
    ('{"type":"connect","channel_id":"x"}', "role"),
    ('{"type":"connect","role":"sendrecv"}', "channel_id"),
    ('{"type":"connect","role":"admin","channel_id":"x"}', "role"),
    ('{"type":"connect","role":"sendrecv","channel_id":"x","video":{"codec_type":"MPEG"}}',
     "codec_type"),
    ('{"type":"connect","role":"sendrecv","channel_id":"x","data_channels":[{"label":"x"}]}',
     "label"),
    ('{"type":"answer","sdp":""}', "connect"),
    ("[1,2]", "type"),
])
def test_bad_connect_closes_4400(server, first, fragment):
    async def go():
        async with ws_connect(server.signaling_url) as ws:
            await ws.send(first)
            return await _closed(ws)
    code, reason = asyncio.run(go())
    assert code == 4400 and fragment in reason


def test_binary_frame_closes_4400(server):
    async def go():
        async with ws_connect(server.signaling_url) as ws:
            await ws.send(b'{"type":"connect"}')
            return await _closed(ws)
    assert asyncio.run(go())[0] == 4400


def test_unknown_path_is_404(server):
    async def go():
        async with ws_connect(server.signaling_url.replace("/signaling", "/other")):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus) as ei:
        asyncio.run(go())
    assert ei.value.response.status_code == 404


def test_jwt_missing_token_closes_4401(make_server):
    server = make_server(jwt_secret=SECRET)

    async def go():
        async with ws_connect(server.signaling_url) as ws:
            await ws.send(json.dumps({"type": "connect", "role": "recvonly", "channel_id": "c"}))
            return await _closed(ws)
    code, reason = asyncio.run(go())
    assert code == 4401 and "access_token" in reason


class RawPeerClient:
    """A WebSocket client with a shim SoraPeer as its WebRTC side (answers offers itself)."""

    def __init__(self, url):
        from sora_ffi._native import EventQueue
        from sora_ffi.devserver.peerloop import Peer

        self.url = url
        self.queue = EventQueue(0)
        self.peer = Peer(self.queue, {"bind_address": "127.0.0.1"})
        self.ws = None

    async def answer(self, sdp, kind="answer"):
        self.peer.set_remote_description(sdp, "offer")
        self.peer.set_local_description("answer")
        await asyncio.sleep(0.05)
        await self.ws.send(json.dumps({"type": kind, "sdp": self.peer.local_description()}))

    async def recv(self, timeout=5):
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    def close(self):
        self.peer.close_and_destroy()
        self.queue.destroy()


def test_replacing_a_section_keeps_its_mid_in_the_bundle():
    """sora_peer_replace_track: in the re-offer after an answer the section keeps its place
    and mid (not rejected) with the new content; another kind or mid, a foreign track and
    the retired old id are refused."""
    from sora_ffi._native import EventQueue, ShimError
    from sora_ffi.devserver.peerloop import Peer

    queue = EventQueue(0)
    offerer = Peer(queue, {"bind_address": "127.0.0.1"})
    answerer = Peer(queue, {"bind_address": "127.0.0.1"})
    try:
        a = offerer.add_track(sdp.audio_section("0", "sendonly", msid=("S", "a"), ssrc=11, cname="S"))
        offerer.add_track(sdp.video_section("1", "sendonly", msid=("S", "v"), ssrc=12, cname="S"))
        offerer.set_local_description("offer")
        answerer.set_remote_description(offerer.local_description(), "offer")
        answerer.set_local_description("answer")
        offerer.set_remote_description(answerer.local_description(), "answer")

        with pytest.raises(ShimError, match="a=mid:0"):
            offerer.replace_track(a, sdp.audio_section("5", "inactive"))
        with pytest.raises(ShimError, match="kind and mid"):
            offerer.replace_track(a, sdp.video_section("0", "inactive"))
        with pytest.raises(ShimError, match="not one of this peer's"):
            offerer.replace_track(a + 1000, sdp.audio_section("0", "inactive"))
        for garbage in ("", "not sdp at all", "m=\r\na=mid:\r\n", "x" * 1_000_000):
            with pytest.raises(ShimError, match="kind and mid"):
                offerer.replace_track(a, garbage)
        # NULL arguments through the C ABI: an error status, never a crash
        from sora_ffi._native import ffi, lib
        out = ffi.new("int32_t *")
        assert lib.sora_peer_replace_track(ffi.NULL, a, b"m=audio 9 X 111\r\na=mid:0\r\n", out) < 0
        with offerer._lock:
            assert lib.sora_peer_replace_track(offerer._ptr, a, ffi.NULL, out) < 0
        a2 = offerer.replace_track(a, sdp.audio_section("0", "inactive"))
        assert a2 != a
        for retired in (lambda: offerer.remove_track(a),
                        lambda: offerer.replace_track(a, sdp.audio_section("0", "inactive")),
                        lambda: answerer.forward_track(1, offerer, a)):
            with pytest.raises(ShimError, match="was replaced"):
                retired()

        offerer.set_local_description("offer")
        reoffer = offerer.local_description()
        assert sdp.bundle_tag(reoffer) == "0"
        assert [(kind, port != 0, mid) for kind, port, mid in sdp.sections(reoffer)] == [
            ("audio", True, "0"), ("video", True, "1")]
        audio = reoffer.split("a=mid:0\r\n")[1].split("m=")[0]
        assert "a=inactive" in audio and "msid" not in audio and "a=ssrc" not in audio
    finally:
        offerer.close_and_destroy()
        answerer.close_and_destroy()
        queue.destroy()


def _without_candidates(sdp_text: str) -> str:
    return "".join(line + "\r\n" for line in sdp_text.split("\r\n")
                   if line and not line.startswith("a=candidate") and line != "a=end-of-candidates")


def test_no_re_offer_before_the_peer_connection_is_up(make_server, ffi):
    """A connection still setting up its peer connection (here: an answer without
    candidates, so ICE never connects) gets no re-offer when a sender joins its channel;
    it is reconciled once established. A re-offer during ICE/DTLS made libdatachannel
    clients lose their peer connection now and then (2-9 in 1600 connects of two loops
    sharing channels)."""
    server = make_server(ping_interval=None, establish_timeout=5)

    async def scenario():
        c = RawPeerClient(server.signaling_url)
        try:
            async with ws_connect(server.signaling_url) as ws:
                c.ws = ws
                await ws.send(json.dumps({"type": "connect", "role": "recvonly", "channel_id": "r",
                                          "audio": True, "video": True}))
                offer = await c.recv()
                assert offer["type"] == "offer"
                c.peer.set_remote_description(_without_candidates(offer["sdp"]), "offer")
                c.peer.set_local_description("answer")
                await asyncio.sleep(0.05)
                await ws.send(json.dumps({"type": "answer",
                                          "sdp": _without_candidates(c.peer.local_description())}))

                def join_a_sender():
                    sender = ffi.Sora().create_connection(
                        signaling_urls=[server.signaling_url], role="sendonly", channel_id="r",
                        audio=True, video=False)
                    sender.connect()
                    assert sender.wait_connected(10)
                    return sender
                sender = await asyncio.to_thread(join_a_sender)
                got = []
                with contextlib.suppress(asyncio.TimeoutError):
                    while True:
                        got.append((await c.recv(timeout=1.0))["type"])
                # the server holds the change for it, to be sent once it is established
                pending = await asyncio.to_thread(server.call, lambda core: [
                    (x.state, x.renegotiate_pending) for x in core.sessions
                    if x.connection_id == offer["connection_id"]])
                await asyncio.to_thread(sender.disconnect)
                return got, pending
        finally:
            c.close()

    got, pending = asyncio.run(scenario())
    assert "re-offer" not in got, got
    assert pending == [("connecting", True)], pending


def test_pong_timeout_and_establish_timeout(make_server):
    """A client that answers but never pongs is closed 4408 PONG-TIMEOUT after two ping
    intervals; one that never answers 4408 CONNECTION-TIMEOUT."""
    server = make_server(ping_interval=0.3, establish_timeout=1.5)

    async def answering_client():
        c = RawPeerClient(server.signaling_url)
        try:
            async with ws_connect(server.signaling_url) as ws:
                c.ws = ws
                await ws.send(json.dumps({"type": "connect", "role": "recvonly",
                                          "channel_id": "p"}))
                offer = await c.recv()
                assert offer["type"] == "offer"
                await c.answer(offer["sdp"])
                pings, t0 = 0, time.monotonic()
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        m = await c.recv()
                        if m["type"] == "ping":
                            assert m == {"type": "ping", "stats": False}
                            pings += 1
                return ws.close_code, ws.close_reason, pings, time.monotonic() - t0
        finally:
            c.close()

    code, reason, pings, elapsed = asyncio.run(answering_client())
    assert (code, reason) == (4408, "PONG-TIMEOUT")
    assert pings >= 2 and elapsed < 1.5

    async def silent_client():
        async with ws_connect(server.signaling_url) as ws:
            await ws.send(json.dumps({"type": "connect", "role": "recvonly", "channel_id": "p"}))
            assert json.loads(await ws.recv())["type"] == "offer"
            return await _closed(ws, 5)

    assert asyncio.run(silent_client()) == (4408, "CONNECTION-TIMEOUT")
    assert wait_until(lambda: server.connections() == [], 5)


def test_reoffers_are_serialised(official, server, channel_id, clients):
    """While a re-offer is unanswered, joins and leaves only accumulate: the next re-offer
    comes after the re-answer and carries everything at once."""
    result = {}
    joined = threading.Event()
    go_on = threading.Event()

    async def raw():
        c = RawPeerClient(server.signaling_url)
        try:
            async with ws_connect(server.signaling_url) as ws:
                c.ws = ws
                await ws.send(json.dumps({"type": "connect", "role": "recvonly",
                                          "channel_id": channel_id}))
                await c.answer((await c.recv())["sdp"])
                joined.set()
                msgs = []

                async def until(pred):
                    while True:
                        m = await c.recv(10)
                        msgs.append(m)
                        if pred(m):
                            return m
                first = await until(lambda m: m["type"] == "re-offer")
                go_on.set()  # two more senders join now; keep this re-offer unanswered
                await asyncio.sleep(1.0)
                result["during"] = [m["type"] for m in msgs if m["type"] == "re-offer"]
                await c.answer(first["sdp"], "re-answer")
                second = await until(lambda m: m["type"] == "re-offer")
                await c.answer(second["sdp"], "re-answer")
                result["first"], result["second"] = first["sdp"], second["sdp"]
                await ws.send(json.dumps({"type": "disconnect"}))
                result["close"] = await _closed(ws)
        finally:
            c.close()

    t = threading.Thread(target=lambda: asyncio.run(raw()))
    t.start()
    try:
        assert joined.wait(10)
        s1 = clients(official, server, channel_id, "sendonly", **AV).connect()
        assert go_on.wait(10)
        s2 = clients(official, server, channel_id, "sendonly", **AV).connect()
        s3 = clients(official, server, channel_id, "sendonly", **AV).connect()
    finally:
        t.join(20)
    assert result["during"] == ["re-offer"]
    assert f"a=msid:{s1.connection_id} " in result["first"]
    assert s2.connection_id not in result["first"]
    for s in (s1, s2, s3):
        assert f"a=msid:{s.connection_id} " in result["second"]
    assert result["close"] == (1000, "TYPE-DISCONNECT")


def test_cli_first_line_and_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sora_ffi.devserver", "--port", "0", "--ping-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        info = json.loads(proc.stdout.readline())
        assert info["signaling_url"].startswith("ws://127.0.0.1:")
        assert info["signaling_url"].endswith("/signaling")
        assert info["api_url"].startswith("http://127.0.0.1:")

        async def go():
            async with ws_connect(info["signaling_url"]) as ws:
                await ws.send("{")
                return await _closed(ws)
        assert asyncio.run(go())[0] == 4400
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_devserver_process_serves_a_client_and_stops(tmp_path):
    """DevServerProcess (what the benchmarks use): the child's URL works for a real client,
    its log goes where asked, and stop() ends the process."""
    import sora_ffi
    from sora_ffi.devserver import DevServerProcess

    log = tmp_path / "server.log"
    with DevServerProcess("--ping-interval", "1", "-v", log=str(log)) as server:
        proc = server._proc
        sora = sora_ffi.Sora()
        conn = sora.create_connection(signaling_urls=[server.signaling_url], role="recvonly",
                                      channel_id="process", audio=True, video=False)
        conn.connect()
        try:
            assert conn.wait_connected(10)
        finally:
            conn.disconnect()
    assert proc is not None and proc.poll() is not None
    assert "process" in log.read_text()  # -v logs the session's channel


def test_devserver_process_ends_with_the_process_that_started_it():
    """A parent killed without cleanup (os._exit, SIGKILL) closes the server's stdin pipe,
    and the server stops by itself instead of running on as an orphan."""
    parent = ("import os\nfrom sora_ffi.devserver import DevServerProcess\n"
              "s = DevServerProcess().start()\nprint(s.pid, flush=True)\nos._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])

    def running() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        assert wait_until(lambda: not running(), 10), "the orphaned dev server is still running"
    finally:
        if running():
            os.kill(pid, signal.SIGKILL)


def test_devserver_process_that_cannot_start_raises():
    from sora_ffi.devserver import DevServerProcess

    with pytest.raises(RuntimeError, match="did not start"):
        DevServerProcess("--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem").start()
