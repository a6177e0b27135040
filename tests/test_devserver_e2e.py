"""End-to-end tests of the dev server: the official ``sora_sdk`` (libwebrtc) and raw
WebSocket clients against ``DevServer``. Needs the built shim; the ``sora_sdk`` tests are
skipped where the official SDK is not installed."""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import zlib

import pytest

from sora_ffi.devserver import DevServer

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

try:
    import sora_sdk
except ImportError:  # pragma: no cover - depends on the environment
    sora_sdk = None

needs_sora_sdk = pytest.mark.skipif(sora_sdk is None, reason="sora_sdk is not installed")

SECRET = "devserver-test-secret-0123456789abcdef0123456789abcdef"


def wait_until(pred, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


@pytest.fixture
def server():
    with DevServer(ping_interval=1.0) as s:
        yield s


_channel_seq = iter(range(1, 1 << 30))


@pytest.fixture
def channel_id(request):
    return f"{request.node.name}-{next(_channel_seq)}"


class Client:
    """A ``sora_sdk`` connection with its callbacks recorded."""

    def __init__(self, url, channel_id, role="sendrecv", **kw):
        self.sora = sora_sdk.Sora()
        self.conn = self.sora.create_connection(
            signaling_urls=[url] if isinstance(url, str) else url,
            role=role, channel_id=channel_id, **kw)
        self.connection_id = None
        self.offer = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.switched = None
        self.ws_close = None
        self.disconnect_info = None
        self.notifies = queue.Queue()
        self.pushes = queue.Queue()
        self.messages = queue.Queue()
        self.data_channels = set()
        self.tracks = []
        self.signaling = []
        c = self.conn
        c.on_set_offer = self._on_set_offer
        c.on_notify = self._on_notify
        c.on_push = lambda m: self.pushes.put(json.loads(m))
        c.on_message = lambda label, data: self.messages.put((label, bytes(data)))
        c.on_data_channel = self.data_channels.add
        c.on_switched = lambda m: setattr(self, "switched", json.loads(m))
        c.on_ws_close = lambda code, reason: setattr(self, "ws_close", (code, reason))
        c.on_disconnect = self._on_disconnect
        c.on_track = lambda t: self.tracks.append((t.kind, t.stream_id))
        c.on_signaling_message = lambda t, d, m: self.signaling.append((int(t), int(d), json.loads(m)))

    def _on_set_offer(self, raw):
        m = json.loads(raw)
        self.offer = m
        self.connection_id = m["connection_id"]

    def _on_notify(self, raw):
        m = json.loads(raw)
        self.notifies.put(m)
        if m.get("event_type") == "connection.created" and m.get("connection_id") == self.connection_id:
            self.connected.set()

    def _on_disconnect(self, code, message):
        self.disconnect_info = (code, message)
        self.disconnected.set()

    def connect(self, timeout=10):
        self.conn.connect()
        assert self.connected.wait(timeout), f"not connected: {self.disconnect_info}"
        return self

    def wait_notify(self, event_type, timeout=5, **match):
        deadline = time.monotonic() + timeout
        while True:
            m = self.notifies.get(timeout=max(0.01, deadline - time.monotonic()))
            if m.get("event_type") == event_type and all(m.get(k) == v for k, v in match.items()):
                return m

    def wait_dc(self, label, timeout=5):
        assert wait_until(lambda: label in self.data_channels, timeout), self.data_channels

    def disconnect(self):
        self.conn.disconnect()
        self.disconnected.wait(10)

    def received(self, kind, direction):
        return [m for t, d, m in self.signaling if m.get("type") == kind and d == direction]


@pytest.fixture
def clients():
    made = []

    def make(*a, **kw):
        c = Client(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        with contextlib.suppress(Exception):
            c.conn.disconnect()
    for c in made:
        c.disconnected.wait(5)


# ----------------------------------------------------------------- sora_sdk tests
@needs_sora_sdk
@pytest.mark.parametrize("dc_signaling", [False, True])
def test_two_clients_notify_reoffer_and_leave(server, channel_id, clients, dc_signaling):
    a = clients(server.signaling_url, channel_id, "sendrecv",
                data_channel_signaling=dc_signaling).connect()
    own = a.wait_notify("connection.created", connection_id=a.connection_id)
    assert own["channel_connections"] == 1 and own["data"] == []
    offer = a.offer
    for key in ("sdp", "connection_id", "client_id", "bundle_id", "session_id", "channel_id"):
        assert isinstance(offer[key], str), key
    assert len(offer["connection_id"]) == 26 and len(offer["session_id"]) == 26
    assert offer["config"] == {"iceServers": [], "iceTransportPolicy": "all"}
    assert offer["mid"] == {"audio": "0", "video": "1"}
    assert offer["simulcast"] is False and offer["spotlight"] is False
    assert offer["data_channel_signaling"] is dc_signaling
    if dc_signaling:
        labels = [d["label"] for d in offer["data_channels"]]
        assert labels == ["signaling", "notify", "push", "stats"]
        assert all("compress" in d for d in offer["data_channels"])
        # switched (WebSocket) and the notify (DataChannel) race, as with Sora
        assert wait_until(lambda: a.switched is not None)
        assert a.switched == {"type": "switched", "ignore_disconnect_websocket": False}

    b = clients(server.signaling_url, channel_id, "recvonly",
                data_channel_signaling=dc_signaling).connect()
    own_b = b.wait_notify("connection.created", connection_id=b.connection_id)
    assert own_b["channel_connections"] == 2
    assert [d["connection_id"] for d in own_b["data"]] == [a.connection_id]
    assert "mid" not in b.offer
    # b's offer already carries a's media; b gets tracks with a's connection id as stream id
    assert wait_until(lambda: sorted(b.tracks) == [("audio", a.connection_id),
                                                   ("video", a.connection_id)])
    about_b = a.wait_notify("connection.created", connection_id=b.connection_id)
    assert about_b["channel_connections"] == 2 and about_b["role"] == "recvonly"
    assert about_b["channel_recvonly_connections"] == 1
    assert about_b["channel_sendrecv_connections"] == 1
    # a recvonly joiner triggers no re-offer to a
    assert a.received("re-offer", 1) == []

    c = clients(server.signaling_url, channel_id, "sendonly", video_codec_type="VP8",
                data_channel_signaling=dc_signaling).connect()
    for x in (a, b):
        assert wait_until(lambda: ("video", c.connection_id) in x.tracks), x.tracks
    assert len(a.received("re-offer", 1)) == 1 and len(b.received("re-offer", 1)) == 1
    reoffer = a.received("re-offer", 1)[0]["sdp"]
    assert f"a=msid:{c.connection_id} " in reoffer and "VP8/90000" in reoffer

    st, conns = server.api("Sora_20201013.ListChannelConnections", {"channel_id": channel_id})
    assert st == 200
    assert {x["connection_id"] for x in conns} == {a.connection_id, b.connection_id,
                                                   c.connection_id}

    c.disconnect()
    assert c.ws_close == (1000, "TYPE-DISCONNECT")
    assert c.disconnect_info[0] == sora_sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED
    for x in (a, b):
        gone = x.wait_notify("connection.destroyed", connection_id=c.connection_id)
        assert gone["channel_connections"] == 2
        assert wait_until(lambda: len(x.received("re-offer", 1)) == 2)
        last = x.received("re-offer", 1)[-1]["sdp"]
        assert "m=video 0 " in last and "m=audio 0 " in last
    # transport of re-offers: WebSocket, or DataChannel after switched
    assert all(t == (1 if dc_signaling else 0)
               for t, d, m in a.signaling if m.get("type") == "re-offer")


@needs_sora_sdk
def test_messaging_compress_and_header(server, channel_id, clients):
    sender = clients(server.signaling_url, channel_id, "sendonly", audio=False, video=False,
                     data_channel_signaling=True,
                     data_channels=[{"label": "#m", "direction": "sendonly", "compress": True}])
    plain = clients(server.signaling_url, channel_id, "recvonly", data_channel_signaling=True,
                    data_channels=[{"label": "#m", "direction": "recvonly",
                                    "header": [{"type": "sender_connection_id"}]}])
    both = clients(server.signaling_url, channel_id, "sendrecv", audio=False, video=False,
                   data_channel_signaling=True,
                   data_channels=[{"label": "#m", "direction": "sendrecv", "compress": True}])
    for c in (sender, plain, both):
        c.connect()
        c.wait_dc("#m")
    assert sender.offer["data_channels"][-1] == {"label": "#m", "direction": "sendonly",
                                                 "compress": True}
    assert sender.conn.send_data_channel("#m", b"spam")
    assert sender.conn.send_data_channel("#m", "はむ".encode())
    assert plain.messages.get(timeout=5) == ("#m", sender.connection_id.encode() + b"spam")
    assert plain.messages.get(timeout=5) == ("#m", sender.connection_id.encode() + "はむ".encode())
    assert both.messages.get(timeout=5) == ("#m", b"spam")
    assert both.messages.get(timeout=5) == ("#m", "はむ".encode())
    # sendrecv -> recvonly (plain) ; never back to the sender; not to a sendonly one
    assert both.conn.send_data_channel("#m", b"x" * 5000)
    assert plain.messages.get(timeout=5) == ("#m", both.connection_id.encode() + b"x" * 5000)
    time.sleep(0.3)
    assert both.messages.empty() and sender.messages.empty()
    st, stats = server.api("Sora_20170529.GetStatsConnection",
                           {"channel_id": channel_id, "connection_id": plain.connection_id})
    assert st == 200
    m = next(s for s in stats if s.get("type") == "data-channel" and s["label"] == "#m")
    assert m["messagesSent"] == 3 and m["state"] == "open"


@needs_sora_sdk
def test_push_api(server, channel_id, clients):
    a = clients(server.signaling_url, channel_id, "recvonly").connect()
    b = clients(server.signaling_url, channel_id, "recvonly", data_channel_signaling=True,
                client_id="bob").connect()
    assert server.api("Sora_20160711.PushChannel",
                      {"channel_id": channel_id, "data": {"n": 1}}) == (200, {})
    assert a.pushes.get(timeout=5) == {"type": "push", "data": {"n": 1}}
    assert b.pushes.get(timeout=5) == {"type": "push", "data": {"n": 1}}
    assert server.api("Sora_20160711.PushConnection", {
        "channel_id": channel_id, "connection_id": a.connection_id, "data": {"n": 2}})[0] == 200
    assert a.pushes.get(timeout=5)["data"] == {"n": 2}
    assert server.api("Sora_20160711.PushClient", {
        "channel_id": channel_id, "client_id": "bob", "data": {"n": 3}})[0] == 200
    assert b.pushes.get(timeout=5)["data"] == {"n": 3}
    assert server.api("Sora_20201120.PushChannelByRole", {
        "channel_id": channel_id, "role": "recvonly", "data": {"n": 4}})[0] == 200
    assert a.pushes.get(timeout=5)["data"] == {"n": 4}
    assert b.pushes.get(timeout=5)["data"] == {"n": 4}
    assert server.api("Sora_20160711.PushConnection", {
        "channel_id": channel_id, "connection_id": "0" * 26, "data": {}})[0] == 404
    assert server.api("Sora_20241218.RequestKeyFrame", {
        "channel_id": channel_id, "connection_id": a.connection_id}) == (200, {})


@needs_sora_sdk
@pytest.mark.parametrize("mode", ["websocket", "hybrid", "datachannel-only"])
def test_disconnect_api(server, channel_id, clients, mode):
    kw = {"websocket": {}, "hybrid": {"data_channel_signaling": True},
          "datachannel-only": {"data_channel_signaling": True,
                               "ignore_disconnect_websocket": True}}[mode]
    c = clients(server.signaling_url, channel_id, "recvonly", **kw).connect()
    if mode == "datachannel-only":
        assert wait_until(lambda: c.ws_close is not None)
        assert c.ws_close == (1000, "SELF-CLOSED")
    st, _ = server.api("Sora_20151104.DisconnectConnection",
                       {"channel_id": channel_id, "connection_id": c.connection_id})
    assert st == 200
    assert c.disconnected.wait(8)
    assert c.disconnect_info[0] == sora_sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED
    assert "DISCONNECTED-API" in c.disconnect_info[1]
    if mode == "datachannel-only":
        close = c.received("close", 1)
        assert close == [{"type": "close", "code": 1000, "reason": "DISCONNECTED-API"}]
    else:
        assert c.ws_close == (1000, "DISCONNECTED-API")
    assert wait_until(lambda: server.connections(channel_id) == [])


@needs_sora_sdk
@pytest.mark.parametrize("mode", ["websocket", "hybrid", "datachannel-only"])
def test_client_disconnect(server, channel_id, clients, mode):
    kw = {"websocket": {}, "hybrid": {"data_channel_signaling": True},
          "datachannel-only": {"data_channel_signaling": True,
                               "ignore_disconnect_websocket": True}}[mode]
    c = clients(server.signaling_url, channel_id, "sendrecv", **kw).connect()
    if mode == "datachannel-only":
        assert wait_until(lambda: c.ws_close is not None)
    c.disconnect()
    assert c.disconnect_info[0] == sora_sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED, c.disconnect_info
    if mode != "datachannel-only":
        assert c.ws_close == (1000, "TYPE-DISCONNECT")
    assert wait_until(lambda: server.connections(channel_id) == [])


@needs_sora_sdk
@pytest.mark.parametrize("mode", ["websocket", "datachannel-only"])
def test_jwt_lifetime_and_overrides(channel_id, clients, mode):
    import jwt

    kw = {} if mode == "websocket" else {"data_channel_signaling": True,
                                         "ignore_disconnect_websocket": True}
    with DevServer(jwt_secret=SECRET) as server:
        token = jwt.encode({"channel_id": channel_id, "exp": int(time.time()) + 60,
                            "connection_lifetime": 2, "video": False,
                            "metadata": {"granted": True}, "client_id": "from-jwt"},
                           SECRET, algorithm="HS256")
        c = clients(server.signaling_url, channel_id, "recvonly",
                    metadata={"access_token": token}, **kw).connect()
        assert c.offer["video"] is False and c.offer["metadata"] == {"granted": True}
        assert c.offer["client_id"] == "from-jwt"
        assert "m=video" not in c.offer["sdp"]
        assert c.disconnected.wait(6)
        if mode == "websocket":
            assert c.ws_close == (1000, "LIFETIME-EXPIRED")
        else:
            assert c.received("close", 1)[0]["reason"] == "LIFETIME-EXPIRED"
        assert c.disconnect_info[0] == sora_sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED

        bad = clients(server.signaling_url, channel_id, "recvonly",
                      metadata={"access_token": jwt.encode(
                          {"channel_id": "other", "exp": int(time.time()) + 60},
                          SECRET, algorithm="HS256")})
        bad.conn.connect()
        assert bad.disconnected.wait(10)
        assert bad.disconnect_info[0] == sora_sdk.SoraSignalingErrorCode.WEBSOCKET_ONCLOSE
        assert bad.ws_close[0] == 4401 and "channel_id" in bad.ws_close[1]


@needs_sora_sdk
def test_redirect(channel_id, clients):
    with DevServer() as target:
        with DevServer(redirect_to=target.signaling_url) as front:
            c = clients(front.signaling_url, channel_id, "recvonly").connect()
            assert c.received("redirect", 1) == [{"type": "redirect",
                                                  "location": target.signaling_url}]
            connects = [m for t, d, m in c.signaling if m.get("type") == "connect"]
            assert connects[-1].get("redirect") is True
            assert [x["connection_id"] for x in target.connections(channel_id)] == [c.connection_id]
            assert front.connections() == []
            c.disconnect()


@needs_sora_sdk
def test_server_stop_ends_clients(channel_id, clients):
    server = DevServer().start()
    try:
        a = clients(server.signaling_url, channel_id, "sendrecv").connect()
        b = clients(server.signaling_url, channel_id, "sendrecv", data_channel_signaling=True,
                    ignore_disconnect_websocket=True).connect()
    finally:
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 8
    assert a.disconnected.wait(5) and b.disconnected.wait(5)
    assert a.ws_close == (1001, "SERVER-SHUTDOWN")
    assert b.received("close", 1)[0]["reason"] == "SERVER-SHUTDOWN"


@needs_sora_sdk
def test_mtls(tmp_path, channel_id, clients):
    pki = _make_pki(tmp_path)
    with DevServer(tls_cert=pki["server_cert"], tls_key=pki["server_key"],
                   client_ca=pki["ca_cert"]) as server:
        assert server.signaling_url.startswith("wss://")
        assert server.api_url.startswith("https://")
        ca = open(pki["ca_cert"], "rb").read()
        good = clients(server.signaling_url, channel_id, "recvonly", ca_cert=ca,
                       client_cert=open(pki["client_cert"], "rb").read(),
                       client_key=open(pki["client_key"], "rb").read()).connect()
        good.disconnect()
        assert good.disconnect_info[0] == sora_sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED
        nocert = clients(server.signaling_url, channel_id, "recvonly", ca_cert=ca)
        nocert.conn.connect()
        assert nocert.disconnected.wait(10)
        assert nocert.disconnect_info[0] != sora_sdk.SoraSignalingErrorCode.CLOSE_SUCCEEDED
        import ssl
        ctx = ssl.create_default_context(cafile=pki["ca_cert"])
        st, v = server.api("Sora_20201013.ListConnections", {}, ssl_context=ctx)
        assert st == 200 and v == []


def _make_pki(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(path, data):
        path.write_bytes(data)
        return str(path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("devserver test CA"))
          .issuer_name(name("devserver test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca_cert": write(d / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))}
    import ipaddress

    for who, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                       ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(f"devserver test {who}"))
             .issuer_name(ca.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if who == "server":
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        out[f"{who}_cert"] = write(d / f"{who}.pem", cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}_key"] = write(d / f"{who}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return out


# ------------------------------------------------------------- raw WebSocket tests
async def _closed(ws, timeout=5):
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code, ws.close_reason


@pytest.mark.parametrize("first,code,fragment", [
    ("not json", 4400, "JSON"),
    ('{"type":"connect","channel_id":"x"}', 4400, "role"),
    ('{"type":"connect","role":"sendrecv"}', 4400, "channel_id"),
    ('{"type":"connect","role":"admin","channel_id":"x"}', 4400, "role"),
    ('{"type":"answer","sdp":""}', 4400, "connect"),
    ('[1,2]', 4400, "type"),
])
def test_bad_connect_closes_4400(server, first, code, fragment):
    async def go():
        async with ws_connect(server.signaling_url) as ws:
            await ws.send(first)
            return await _closed(ws)
    got_code, reason = asyncio.run(go())
    assert got_code == code and fragment in reason


def test_unknown_path_is_404(server):
    url = server.signaling_url.replace("/signaling", "/other")

    async def go():
        async with ws_connect(url):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus) as ei:
        asyncio.run(go())
    assert ei.value.response.status_code == 404


def test_jwt_missing_token_closes_4401():
    with DevServer(jwt_secret=SECRET) as server:
        async def go():
            async with ws_connect(server.signaling_url) as ws:
                await ws.send(json.dumps({"type": "connect", "role": "recvonly",
                                          "channel_id": "c"}))
                return await _closed(ws)
        code, reason = asyncio.run(go())
    assert code == 4401 and "access_token" in reason


def test_ping_and_pong_timeout_and_establish_timeout():
    """A client that answers but never pongs is closed with 4408 PONG-TIMEOUT; one that
    never answers with 4408 CONNECTION-TIMEOUT."""
    from sora_ffi._native import EventQueue
    from sora_ffi.devserver.peerloop import Peer

    with DevServer(ping_interval=0.3, establish_timeout=1.5) as server:
        async def answering_client():
            q = EventQueue(0)
            peer = Peer(q, {"bind_address": "127.0.0.1"})
            try:
                async with ws_connect(server.signaling_url) as ws:
                    await ws.send(json.dumps({"type": "connect", "role": "recvonly",
                                              "channel_id": "p"}))
                    offer = json.loads(await ws.recv())
                    assert offer["type"] == "offer"
                    peer.set_remote_description(offer["sdp"], "offer")
                    peer.set_local_description("answer")
                    await asyncio.sleep(0.2)
                    await ws.send(json.dumps({"type": "answer",
                                              "sdp": peer.local_description()}))
                    pings = 0
                    t0 = time.monotonic()
                    with contextlib.suppress(websockets.ConnectionClosed):
                        while True:
                            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                            if m["type"] == "ping":
                                assert m == {"type": "ping", "stats": False}
                                pings += 1
                    return ws.close_code, ws.close_reason, pings, time.monotonic() - t0
            finally:
                peer.close_and_destroy()
                q.destroy()

        code, reason, pings, elapsed = asyncio.run(answering_client())
        assert (code, reason) == (4408, "PONG-TIMEOUT")
        assert pings >= 2 and elapsed < 1.5

        async def silent_client():
            async with ws_connect(server.signaling_url) as ws:
                await ws.send(json.dumps({"type": "connect", "role": "recvonly",
                                          "channel_id": "p"}))
                assert json.loads(await ws.recv())["type"] == "offer"
                return await _closed(ws, 5)

        assert asyncio.run(silent_client()) == (4408, "CONNECTION-TIMEOUT")
        assert wait_until(lambda: server.connections() == [])


def test_cli_first_line_and_sigterm():
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sora_ffi.devserver", "--port", "0", "--ping-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        info = json.loads(line)
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
