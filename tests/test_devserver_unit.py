"""Unit tests for the dev server's pure-Python parts (no native shim needed)."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from sora_ffi.devserver import api, auth, ids, sdp
from sora_ffi.devserver.params import (
    DataChannelSpec,
    ProtocolError,
    parse_connect,
    parse_data_channels,
)

jwt = pytest.importorskip("jwt")


# ------------------------------------------------------------------------ ids
def test_ids_shape_and_roundtrip():
    seen = set()
    for _ in range(200):
        i = ids.new_id()
        assert len(i) == 26
        assert ids.is_valid(i)
        assert all(c in ids.ALPHABET for c in i)
        assert len(ids.decode(i)) == 16
        assert ids.encode(ids.decode(i)) == i
        seen.add(i)
    assert len(seen) == 200


def test_ids_known_examples_are_valid():
    # Examples from the Sora documentation.
    for example in ("WCJC78EWK935N7P7Z8FYAKFW9M", "Q2N1VZBSK56ZSFB6B3PXJ0CJDC"):
        assert ids.is_valid(example)
        assert ids.encode(ids.decode(example)) == example


def test_ids_encode_bits():
    assert ids.encode(b"\x00" * 16) == "0" * 26
    assert ids.encode(b"\xff" * 16) == "Z" * 25 + "W"  # last char: 3 bits 111 + 00
    assert not ids.is_valid("Z" * 26)  # low padding bits set
    assert not ids.is_valid("U" * 26)  # U is not in the alphabet


# ------------------------------------------------------------------------ SDP
def _attrs(section: str) -> list:
    return section.split("\r\n")


def test_upstream_audio_section():
    s = sdp.audio_section("0", "recvonly")
    lines = _attrs(s)
    assert lines[0] == "m=audio 9 UDP/TLS/RTP/SAVPF 111"
    assert "a=mid:0" in lines and "a=recvonly" in lines
    assert "a=rtpmap:111 opus/48000/2" in lines
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in lines
    assert not any(line.startswith("a=ssrc") for line in lines)
    assert not any(line.startswith("a=msid") for line in lines)
    assert s.endswith("\r\n")


def test_upstream_video_codecs():
    for name, pt, fmtp in [
        ("VP9", 98, "profile-id=0"),
        ("VP8", 96, None),
        ("AV1", 45, "level-idx=5;profile=0;tier=0"),
        ("H264", 102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
    ]:
        s = sdp.video_section("1", "recvonly", sdp.VideoCodec(name=name))
        lines = _attrs(s)
        assert lines[0] == f"m=video 9 UDP/TLS/RTP/SAVPF {pt}"
        assert f"a=rtpmap:{pt} {name}/90000" in lines
        for fb in ("goog-remb", "nack", "nack pli", "ccm fir"):
            assert f"a=rtcp-fb:{pt} {fb}" in lines
        if fmtp:
            assert f"a=fmtp:{pt} {fmtp}" in lines
        else:
            assert not any(line.startswith("a=fmtp") for line in lines)


def test_upstream_bitrate_announced_by_remb():
    assert sdp.upstream_bitrate(2500) == 2_500_000  # video.bit_rate is kbps
    assert sdp.upstream_bitrate(None) == sdp.DEFAULT_UPSTREAM_BPS == 5_000_000
    # simulcast: the active encodings of offer.encodings together
    assert sdp.upstream_bitrate(1000, simulcast=True) == 100_000 + 233_333 + 600_000
    # Sora's split at 1500 kbps (sora-js-sdk's simulcast_rid test): 150, 350, 900 kbps
    assert [e["maxBitrate"] for e in sdp.simulcast_encodings(1500)] == [150_000, 350_000, 900_000]
    assert sdp.upstream_bitrate(None, simulcast=True) == 150_000 + 350_000 + 900_000
    assert sdp.upstream_bitrate(1000, True, [{"rid": "r2", "active": False}]) == 333_333
    assert sdp.upstream_bitrate(1000, True, [{"rid": "r2", "maxBitrate": 3_000_000}]) == 3_333_333
    everything_off = [{"rid": r, "active": False} for r in ("r0", "r1", "r2")]
    assert sdp.upstream_bitrate(1000, True, everything_off) == 1_000_000


def test_simulcast_upstream_and_encodings():
    s = sdp.video_section("1", "recvonly", simulcast=True, bit_rate_kbps=1000)
    lines = _attrs(s)
    assert "b=AS:1000" in lines
    assert ["a=rid:r0 recv", "a=rid:r1 recv", "a=rid:r2 recv"] == [
        line for line in lines if line.startswith("a=rid:")]
    assert "a=simulcast:recv r0;r1;r2" in lines
    assert any("rtp-stream-id" in line for line in lines)
    enc = sdp.simulcast_encodings(1000, [{"rid": "r2", "active": False}])
    assert [e["rid"] for e in enc] == ["r0", "r1", "r2"]
    assert enc[2]["active"] is False and enc[2]["maxBitrate"] == 600_000
    assert enc[0]["scaleResolutionDownBy"] == 4.0


def test_inactive_encodings_are_paused_in_the_offer():
    paused = sdp.paused_rids(1000, [{"rid": "r1", "active": False}, {"rid": "r9", "active": False}])
    assert paused == ["r1"]
    s = sdp.video_section("1", "recvonly", simulcast=True, paused_rids=paused)
    assert "a=simulcast:recv r0;~r1;r2" in _attrs(s)
    assert "a=rid:r1 recv" in _attrs(s)  # still a layer of the section, paused


def test_simulcast_answers_are_told_by_their_rid_extension():
    def answer(*lines):
        return "\r\n".join(["v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0",
                              "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", *lines, ""])
    rid = "a=extmap:12 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
    assert sdp.simulcast_send_rid_ext(answer(rid, "a=simulcast:send r0;r1;r2"), "1") == 12
    assert sdp.simulcast_send_rid_ext(answer(rid, "a=simulcast:send r0;r1;r2"), "0") is None
    assert sdp.simulcast_send_rid_ext(answer(rid, "a=ssrc:5 cname:x"), "1") is None  # one stream
    assert sdp.simulcast_send_rid_ext(answer("a=simulcast:send r0;r1"), "1") is None  # no RIDs
    assert sdp.section_ssrc(answer("a=ssrc:5 cname:x"), "1") == 5


def test_downstream_sections_have_msid_and_ssrc():
    cid = ids.new_id()
    a = _attrs(sdp.audio_section("3", "sendonly", msid=(cid, "ta"), ssrc=1234, cname=cid))
    assert "a=sendonly" in a
    assert f"a=msid:{cid} ta" in a
    assert f"a=ssrc:1234 cname:{cid}" in a
    assert f"a=ssrc:1234 msid:{cid} ta" in a
    v = _attrs(sdp.video_section("4", "sendonly", sdp.VideoCodec("VP8"), msid=(cid, "tv"),
                                 ssrc=99, cname=cid))
    assert "a=mid:4" in v and f"a=msid:{cid} tv" in v and "a=ssrc:99 cname:" + cid in v


def test_codec_from_connect():
    assert sdp.VideoCodec.from_connect(True).name == "VP9"
    c = sdp.VideoCodec.from_connect({"codec_type": "h264",
                                     "h264_params": {"profile_level_id": "42001F"}})
    assert c.name == "H264" and c.h264_profile_level_id == "42001f"
    assert sdp.VideoCodec.from_connect({"codec_type": "VP9",
                                        "vp9_params": {"profile_id": 2}}).fmtp() == "profile-id=2"
    c = sdp.VideoCodec.from_connect({"codec_type": "H265", "h265_params": {
        "level_id": "120", "profile_id": 2, "tier_flag": 1, "tx_mode": "MRST"}})
    assert c.fmtp() == "level-id=120;profile-id=2;tier-flag=1;tx-mode=MRST"
    assert sdp.VideoCodec.from_connect({"codec_type": "H265"}).fmtp() == \
        "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"
    for bad in ({"level_id": 256}, {"level_id": "x"}, {"profile_id": True}, {"tier_flag": 2},
                {"tx_mode": "SRMT"}):
        with pytest.raises(ValueError):
            sdp.VideoCodec.from_connect({"codec_type": "H265", "h265_params": bad})
    with pytest.raises(ValueError):
        sdp.VideoCodec.from_connect({"codec_type": "THEORA"})
    with pytest.raises(ValueError):
        sdp.VideoCodec.from_connect({"vp9_params": {"profile_id": 7}})
    o = sdp.OpusParams.from_connect({"opus_params": {"stereo": True, "usedtx": True}})
    assert "stereo=1" in o.fmtp() and "usedtx=1" in o.fmtp()


def test_sections_and_mids():
    offer = ("v=0\r\no=- 1 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
             + sdp.audio_section("0", "recvonly") + sdp.video_section("1", "recvonly")
             + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n"
             + "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:3\r\n")
    assert sdp.sections(offer) == [("audio", 9, "0"), ("video", 9, "1"),
                                   ("application", 9, "2"), ("audio", 0, "3")]
    assert sdp.max_numeric_mid(offer) == 3
    assert sdp.bundle_tag(offer) is None
    assert sdp.bundle_tag(offer.replace("t=0 0\r\n", "t=0 0\r\na=group:BUNDLE 1 2\r\n")) == "1"


# --------------------------------------------------------------------- connect
def test_parse_connect_minimal_defaults():
    p = parse_connect({"type": "connect", "role": "sendrecv", "channel_id": "c"})
    assert p.audio and p.video and p.video_codec.name == "VP9"
    assert not p.data_channel_signaling and not p.simulcast
    assert p.server_data_channels() == []
    p = parse_connect({"type": "connect", "role": "recvonly", "channel_id": "c"},
                      default_data_channel_signaling=True)
    assert p.data_channel_signaling
    assert [d.label for d in p.server_data_channels()] == ["signaling", "notify", "push", "stats"]


@pytest.mark.parametrize("msg,fragment", [
    ([], "JSON object"),
    ({"type": "offer"}, "type connect"),
    ({"type": "connect", "channel_id": "c"}, "role is required"),
    ({"type": "connect", "role": "viewer", "channel_id": "c"}, "invalid role"),
    ({"type": "connect", "role": "sendrecv"}, "channel_id is required"),
    ({"type": "connect", "role": "sendrecv", "channel_id": ""}, "channel_id"),
    ({"type": "connect", "role": "sendrecv", "channel_id": "x" * 256}, "255"),
    ({"type": "connect", "role": "sendrecv", "channel_id": "c", "audio": "yes"}, "audio"),
    ({"type": "connect", "role": "sendrecv", "channel_id": "c",
      "video": {"codec_type": "MPEG2"}}, "codec_type"),
    ({"type": "connect", "role": "sendrecv", "channel_id": "c",
      "data_channel_signaling": "yes"}, "data_channel_signaling"),
    ({"type": "connect", "role": "sendrecv", "channel_id": "c", "client_id": 5}, "client_id"),
])
def test_parse_connect_rejects(msg, fragment):
    with pytest.raises(ProtocolError) as ei:
        parse_connect(msg)
    assert ei.value.code == 4400
    assert fragment in ei.value.reason


def test_data_channels_parsing():
    specs = parse_data_channels([
        {"label": "#a", "direction": "sendonly", "compress": True,
         "header": [{"type": "sender_connection_id"}]},
        {"label": "#b", "max_retransmits": 3, "ordered": False, "protocol": "p"},
        {"label": "signaling", "compress": True},
    ])
    a, b, sig = specs
    assert a.can_send and not a.can_receive and a.compress and a.sender_header
    assert b.direction == "sendrecv" and b.dc_options() == {
        "ordered": False, "max_retransmits": 3, "protocol": "p"}
    assert a.offer_entry()["compress"] is True and "header" in a.offer_entry()
    for bad in ([{"label": "chat"}], [{"label": "#a"}, {"label": "#a"}],
                [{"label": "#a", "direction": "up"}], [{"label": "#a", "compress": 1}],
                [{"label": "#a", "max_retransmits": 1, "max_packet_life_time": 5}], "x"):
        with pytest.raises(ProtocolError):
            parse_data_channels(bad)


def test_server_data_channels_with_overrides():
    p = parse_connect({
        "type": "connect", "role": "sendonly", "channel_id": "c",
        "data_channel_signaling": True, "ignore_disconnect_websocket": True,
        "data_channels": [{"label": "#m", "direction": "recvonly"},
                          {"label": "notify", "compress": True, "direction": "recvonly"}],
        "rpc_methods": ["2025.2.0/RequestSimulcastRid"],
    })
    entries = [d.offer_entry() for d in p.server_data_channels()]
    assert [e["label"] for e in entries] == ["signaling", "notify", "push", "stats", "rpc", "#m"]
    assert all("compress" in e for e in entries)
    assert entries[1] == {"label": "notify", "direction": "sendrecv", "compress": True}
    assert p.ignore_disconnect_websocket


def test_ignore_disconnect_websocket_needs_dc_signaling():
    p = parse_connect({"type": "connect", "role": "sendonly", "channel_id": "c",
                       "ignore_disconnect_websocket": True})
    assert not p.ignore_disconnect_websocket


# ------------------------------------------------------------------------ JWT
SECRET = "0123456789abcdef" * 4 + "-dev"


def _token(secret=SECRET, **claims):
    payload = {"channel_id": "room", "exp": int(time.time()) + 60}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm="HS256")


def test_jwt_ok_and_overrides():
    claims = auth.verify_jwt(_token(video=False, connection_lifetime=3), SECRET, "room")
    assert auth.jwt_overrides(claims) == {"video": False, "connection_lifetime": 3}


@pytest.mark.parametrize("token,fragment", [
    (None, "missing"),
    ("", "missing"),
    ("not.a.jwt", "invalid"),
    (lambda: _token(secret="another-secret-0123456789abcdef0123456789"), "invalid"),
    (lambda: _token(exp=int(time.time()) - 5), "expired"),
    (lambda: _token(exp=None), "exp"),
    (lambda: _token(channel_id="elsewhere"), "mismatch"),
    (lambda: _token(channel_id=None), "channel_id"),
    (lambda: jwt.encode({"channel_id": "room", "exp": int(time.time()) + 60}, SECRET,
                        algorithm="HS512"), "invalid"),
])
def test_jwt_rejects(token, fragment):
    if callable(token):
        token = token()
    with pytest.raises(auth.AuthError) as ei:
        auth.verify_jwt(token, SECRET, "room")
    assert fragment in ei.value.reason


def test_apply_overrides():
    connect = {"type": "connect", "role": "sendrecv", "channel_id": "room",
               "audio": {"codec_type": "OPUS", "bit_rate": 32}, "video": True,
               "metadata": {"access_token": "x"}}
    out, extras = auth.apply_overrides(connect, {
        "audio": False, "video_codec_type": "AV1", "video_bit_rate": 800,
        "client_id": "alice", "metadata": {"granted": 1}, "connection_lifetime": 3,
        "data_channel_signaling": True, "signaling_notify_metadata": {"n": 1},
    })
    assert out["audio"] is False
    assert out["video"] == {"codec_type": "AV1", "bit_rate": 800}
    assert out["client_id"] == "alice" and out["data_channel_signaling"] is True
    assert out["metadata"] == {"access_token": "x"}  # connect metadata untouched
    assert extras == {"auth_metadata": {"granted": 1}, "connection_lifetime": 3.0}
    assert connect["audio"] == {"codec_type": "OPUS", "bit_rate": 32}  # input not mutated
    p = parse_connect(out)
    assert not p.audio and p.video_codec.name == "AV1" and p.video_bit_rate == 800
    out2, _ = auth.apply_overrides({"audio": {"bit_rate": 32}}, {"audio": True})
    assert out2["audio"] == {"bit_rate": 32}


class _Hook(BaseHTTPRequestHandler):
    reply = {"allowed": True}
    status = 200
    seen: list = []

    def do_POST(self):  # noqa: N802
        n = int(self.headers["Content-Length"])
        _Hook.seen.append(json.loads(self.rfile.read(n)))
        body = json.dumps(_Hook.reply).encode()
        self.send_response(_Hook.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def webhook():
    srv = HTTPServer(("127.0.0.1", 0), _Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Hook.seen = []
    yield f"http://127.0.0.1:{srv.server_address[1]}/auth"
    srv.shutdown()
    srv.server_close()


def test_webhook_accept_reject_and_errors(webhook):
    connect = {"type": "connect", "role": "sendonly", "channel_id": "room",
               "metadata": {"k": "v"}, "video": {"codec_type": "VP8"}, "sora_client": "x"}
    body = auth.webhook_request(connect, connection_id="C" * 26, session_id="S" * 26,
                                counts={"channel_connections": 0}, version="v")
    assert body["channel_id"] == "room" and body["role"] == "sendonly"
    assert body["video_codec_type"] == "VP8" and body["metadata"] == {"k": "v"}
    assert body["connection_id"] == "C" * 26 and body["channel_connections"] == 0

    _Hook.status, _Hook.reply = 200, {"allowed": True, "client_id": "bob", "audio": False}
    assert asyncio.run(auth.call_webhook(webhook, body)) == {"client_id": "bob", "audio": False}
    assert _Hook.seen[-1]["channel_id"] == "room"

    _Hook.reply = {"allowed": False, "reason": "NOPE"}
    with pytest.raises(auth.AuthError) as ei:
        asyncio.run(auth.call_webhook(webhook, body))
    assert ei.value.reason == "NOPE"

    _Hook.reply = {"something": 1}
    with pytest.raises(auth.AuthError):
        asyncio.run(auth.call_webhook(webhook, body))

    _Hook.status, _Hook.reply = 500, {"allowed": True}
    with pytest.raises(auth.AuthError):
        asyncio.run(auth.call_webhook(webhook, body))

    with pytest.raises(auth.AuthError):
        asyncio.run(auth.call_webhook("http://127.0.0.1:9/none", body, timeout=1))


# ------------------------------------------------------------------------ API
class _FakeSession:
    def __init__(self, cid, role="sendrecv", client_id=None, established=True):
        self.connection_id = cid
        self.client_id = client_id or cid
        self.role = role
        self.state = "established" if established else "connecting"
        self.is_established = established
        self.pushed = []
        self.ended = None
        self.keyframe_requested = False
        self.upstream_tracks = {}  # no media sections: RequestKeyFrame has no track to PLI
        self.peer = None

    def send_push(self, data):
        self.pushed.append(data)
        return True

    async def end(self, code, reason, **kw):
        self.ended = (code, reason)

    def api_info(self):
        return {"connection_id": self.connection_id, "role": self.role}

    def stats(self):
        return [{"type": "peer-connection", "id": "P"}]


class _FakeChannel:
    def __init__(self, sessions):
        self.sessions = {s.connection_id: s for s in sessions}


class _FakeCore:
    def __init__(self, channels):
        self._channels = channels
        self.tasks = []

        class _Ch:
            @staticmethod
            def get(cid):
                return channels.get(cid)

            @staticmethod
            def all_sessions():
                return [s for c in channels.values() for s in c.sessions.values()]

        self.channels = _Ch()

    def spawn(self, coro):
        self.tasks.append(asyncio.ensure_future(coro))

    def end_sessions(self, sessions, code, reason):
        for s in list(sessions):
            self.spawn(s.end(code, reason))


def _run_api(core, target, body, method="POST", raw=None):
    async def go():
        payload = raw if raw is not None else json.dumps(body).encode()
        headers = {"x-sora-target": target} if target else {}
        res = await api.dispatch(core, method, headers, payload)
        await asyncio.gather(*core.tasks)
        core.tasks.clear()
        return res
    return asyncio.run(go())


def test_api_dispatch():
    a = _FakeSession("A" * 26, "sendrecv", client_id="alice")
    b = _FakeSession("B" * 26, "recvonly")
    c = _FakeSession("C" * 26, "sendonly", established=False)
    core = _FakeCore({"room": _FakeChannel([a, b, c])})

    st, v = _run_api(core, "Sora_20201013.ListChannelConnections", {"channel_id": "room"})
    assert st == 200 and [x["connection_id"] for x in v] == ["A" * 26, "B" * 26]
    st, v = _run_api(core, "Sora_20201013.ListChannelConnections", {"channel_id": "none"})
    assert st == 404
    st, v = _run_api(core, "Sora_20160711.PushChannel", {"channel_id": "room", "data": {"x": 1}})
    assert st == 200 and a.pushed == [{"x": 1}] and b.pushed == [{"x": 1}]
    st, v = _run_api(core, "Sora_20160711.PushConnection",
                     {"channel_id": "room", "connection_id": "B" * 26, "data": 5})
    assert st == 200 and b.pushed[-1] == 5
    st, v = _run_api(core, "Sora_20160711.PushClient",
                     {"channel_id": "room", "client_id": "alice", "data": "hi"})
    assert st == 200 and a.pushed[-1] == "hi"
    st, v = _run_api(core, "Sora_20201120.PushChannelByRole",
                     {"channel_id": "room", "role": "recvonly", "data": 7})
    assert st == 200 and b.pushed[-1] == 7 and a.pushed[-1] == "hi"
    st, v = _run_api(core, "Sora_20201120.PushChannelByRole",
                     {"channel_id": "room", "role": "boss", "data": 7})
    assert st == 400
    st, v = _run_api(core, "Sora_20160711.PushChannel", {"channel_id": "room"})
    assert st == 400 and "data" in v["message"]
    st, v = _run_api(core, "Sora_20170529.GetStatsConnection",
                     {"channel_id": "room", "connection_id": "A" * 26})
    assert st == 200 and v[0]["type"] == "peer-connection"
    st, v = _run_api(core, "Sora_20241218.RequestKeyFrame",
                     {"channel_id": "room", "connection_id": "A" * 26})
    assert st == 200 and v == {} and a.keyframe_requested
    st, v = _run_api(core, "Sora_20241218.RequestKeyFrame",
                     {"channel_id": "room", "connection_id": "Z" * 26})
    assert st == 404
    st, v = _run_api(core, "Sora_20151104.DisconnectConnection",
                     {"channel_id": "room", "connection_id": "A" * 26})
    assert st == 200 and a.ended == (1000, "DISCONNECTED-API")
    st, v = _run_api(core, "Sora_20151104.DisconnectChannel", {"channel_id": "room"})
    assert st == 200 and b.ended == (1000, "DISCONNECTED-API") and c.ended
    # errors
    assert _run_api(core, "Sora_20990101.Nope", {})[0] == 400
    assert _run_api(core, None, {})[0] == 400
    assert _run_api(core, "Sora_20160711.PushChannel", None, raw=b"{nope")[0] == 400
    assert _run_api(core, "Sora_20160711.PushChannel", None, raw=b"[1]")[0] == 400
    assert _run_api(core, "Sora_20160711.PushChannel", {"channel_id": 3, "data": 1})[0] == 400
    assert _run_api(core, "Sora_20160711.PushChannel", {}, method="GET")[0] == 405


def test_api_http_roundtrip():
    """The API over HTTP/1.1 (aiohttp): keep-alive, chunked bodies, errors."""
    a = _FakeSession("A" * 26)
    core = _FakeCore({"room": _FakeChannel([a])})

    async def go():
        runner, port = await api.start_server(core, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}/"
        loop = asyncio.get_running_loop()
        st, v = await loop.run_in_executor(None, api.api_request, url,
                                           "Sora_20201013.ListChannelConnections",
                                           {"channel_id": "room"})
        assert st == 200 and v == [{"connection_id": "A" * 26, "role": "sendrecv"}]
        st, v = await loop.run_in_executor(None, api.api_request, url,
                                           "Sora_20201013.ListChannelConnections",
                                           {"channel_id": "x"})
        assert st == 404 and v["error_type"] == "NOT-FOUND"
        # raw keep-alive + chunked
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"channel_id": "room", "data": {"k": 1}}).encode()
        req = (b"POST / HTTP/1.1\r\nHost: x\r\nx-sora-target: Sora_20160711.PushChannel\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        writer.write(req + req)
        await writer.drain()
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            n = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                    .split(b":")[1])
            assert json.loads(await reader.readexactly(n)) == {}
        big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20)
        writer.write(big + b"{" * (2 << 20))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        n = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0]
                .split(b":")[1])
        assert "larger than" in json.loads(await reader.readexactly(n))["message"]
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.split()[1] == b"400", head
        writer.close()
        await runner.cleanup()
        assert a.pushed == [{"k": 1}, {"k": 1}]

    asyncio.run(go())


# ------------------------------------------------------------------- messaging
def test_relay_rules():
    from sora_ffi.devserver.channel import Channel
    from sora_ffi.devserver.session import DataChannelState

    class S:
        def __init__(self, cid, specs, bundle=None):
            self.connection_id = cid
            self.bundle_id = bundle or cid
            self.messaging = {s.label: s for s in specs}
            self.got = []

            self.dropped = []

        def send_dc(self, label, data, binary):
            self.got.append((label, data, binary))
            return True

        def drop_dc_message(self, st, why):
            self.dropped.append((st.spec.label, why))

        def dc(self, label):
            return DataChannelState(dc_id=1, spec=self.messaging[label])

    ch = Channel("room")
    sender = S("A" * 26, [DataChannelSpec("#t", "sendrecv", compress=True)])
    plain = S("B" * 26, [DataChannelSpec("#t", "recvonly")])
    hdr = S("C" * 26, [DataChannelSpec("#t", "sendrecv", compress=True,
                                       header=[{"type": "sender_connection_id"}])])
    sendonly = S("D" * 26, [DataChannelSpec("#t", "sendonly")])
    sibling = S("E" * 26, [DataChannelSpec("#t", "recvonly")], bundle="A" * 26)
    other_label = S("F" * 26, [DataChannelSpec("#u", "recvonly")])
    for s in (sender, plain, hdr, sendonly, sibling, other_label):
        ch.sessions[s.connection_id] = s

    n = ch.relay(sender, sender.dc("#t"), zlib.compress(b"hello"), True)
    assert n == 2
    assert plain.got == [("#t", b"hello", True)]
    label, data, binary = hdr.got[0]
    assert binary and zlib.decompress(data) == b"A" * 26 + b"hello"
    assert sendonly.got == [] and sibling.got == [] and other_label.got == [] and sender.got == []
    # a recvonly connection cannot send
    assert ch.relay(plain, plain.dc("#t"), b"x", False) == 0
    # text stays text when nothing is transformed
    ch.relay(sendonly, sendonly.dc("#t"), b"txt", False)
    assert plain.got[-1] == ("#t", b"txt", False)
    # undecodable compressed input is dropped
    assert ch.relay(sender, sender.dc("#t"), b"not zlib", True) == 0
    assert sender.dropped and sender.dropped[0][0] == "#t"  # counted and logged


# ------------------------------------------------------------ channel joins at scale
class _Member:
    """What Channel needs of a session: role, notifies received, re-offer requests."""

    def __init__(self, n, role):
        from sora_ffi.devserver.params import ConnectParams

        self.connection_id = self.client_id = self.bundle_id = f"c{n}"
        self.role = role
        self.params = ConnectParams(role=role, channel_id="big", audio=True, video=False)
        self.is_established = False
        self.notifies: list = []
        self.renegotiations = 0

    def notify_info(self):
        return {"role": self.role, "connection_id": self.connection_id}

    def notify_entry(self):
        return {"connection_id": self.connection_id}

    def send_notify(self, msg):
        self.notifies.append(msg)

    def request_renegotiation(self):
        self.renegotiations += 1


def test_channel_join_and_leave_cost_is_linear():
    """1000 recvonly joins ask no one for a re-offer (a receiver changes no one's tracks) and
    send each notify once per member, encoded once; a sender's join and leave re-offer to
    everyone."""
    from sora_ffi.devserver.channel import Channel

    ch = Channel("big")
    members = []
    for n in range(1000):
        m = _Member(n, "recvonly")
        ch.add(m)
        m.is_established = True
        ch.on_established(m)
        members.append(m)
    assert sum(m.renegotiations for m in members) == 0
    # member k: its own created (a dict with data) + one text notify per later joiner
    for k in (0, 500, 999):
        own, *about = members[k].notifies
        assert own["event_type"] == "connection.created" and len(own["data"]) == k
        assert len(about) == 999 - k
        assert all(isinstance(t, str) for t in about)
    last = json.loads(members[0].notifies[-1])
    assert last["connection_id"] == "c999" and last["channel_connections"] == 1000
    assert members[0].notifies[-1] is members[500].notifies[-1]  # encoded once

    sender = _Member(1000, "sendonly")
    ch.add(sender)
    sender.is_established = True
    ch.on_established(sender)
    assert all(m.renegotiations == 1 for m in members)
    ch.remove(members[0], was_established=True)
    assert all(m.renegotiations == 1 for m in members)
    left = json.loads(members[1].notifies[-1])
    assert left["event_type"] == "connection.destroyed" and left["connection_id"] == "c0"
    ch.remove(sender, was_established=True)
    assert all(m.renegotiations == 2 for m in members[1:])


def test_forwarding_filters_by_priority_then_order():
    from sora_ffi.devserver import filters

    def rule(field, op, *values):
        return {"field": field, "operator": op, "values": list(values)}

    fs = filters.parse_filters(None, [
        {"action": "block", "rules": [[rule("kind", "is_in", "video")]]},  # priority 32767
        {"action": "allow", "priority": 5, "rules": [[rule("client_id", "is_in", "vip")]]},
    ])
    assert [f.action for f in fs] == ["allow", "block"]  # lower priority number first
    assert filters.forwards(fs, "C1", "vip", "video")  # the allow filter decides first
    assert not filters.forwards(fs, "C2", "other", "video")  # blocked
    assert not filters.forwards(fs, "C2", "other", "audio")  # an allow filter exists: whitelist
    only_block = filters.parse_filters({"rules": [[rule("connection_id", "is_not_in", "C1")],
                                                   [rule("kind", "is_in", "audio")]]}, None)
    assert filters.forwards(only_block, "C1", "x", "video")
    assert not filters.forwards(only_block, "C1", "x", "audio")  # second OR-ed group
    assert not filters.forwards(only_block, "C2", "x", "video")
    assert filters.forwards([], "C", "x", "video")
    for bad in ({"rules": [[rule("kind", "is_in", 1)]]}, {"rules": [[]]}, {"priority": -1, "rules": [[rule("kind", "is_in")]]},
                {"action": "allow", "rules": [[{"field": "kind"}]]}):
        with pytest.raises(ValueError):
            filters.parse_filters(bad, None)
    with pytest.raises(ValueError):
        filters.parse_filters({"rules": [[rule("kind", "is_in")]]}, [])


def test_transport_cc_is_offered_upstream_only():
    up = _attrs(sdp.video_section("1", "recvonly", transport_cc=True))
    assert f"a=extmap:3 {sdp.EXT_TWCC[1]}" in up and "a=rtcp-fb:98 transport-cc" in up
    audio = _attrs(sdp.audio_section("0", "recvonly", transport_cc=True))
    assert f"a=extmap:3 {sdp.EXT_TWCC[1]}" in audio and "a=rtcp-fb:111 transport-cc" in audio
    down = sdp.video_section("2", "sendonly", msid=("c", "t"), ssrc=5)
    assert "transport" not in down
    answer = "m=video 9 X 96\r\na=mid:1\r\na=extmap:7/sendrecv " + sdp.EXT_TWCC[1] + "\r\n"
    assert sdp.section_extmap_id(answer, "1", sdp.EXT_TWCC[1]) == 7
    assert sdp.section_extmap_id(answer, "2", sdp.EXT_TWCC[1]) is None


@pytest.mark.parametrize("bad", [
    {"rid": "r3"}, {"rid": "r1", "scaleResolutionDownBy": 0}, {"rid": "r1", "scaleResolutionDownBy": -2},
    {"rid": "r0", "maxBitrate": 0}, {"rid": "r0", "maxBitrate": "1000"}, {"rid": "r0", "active": "no"},
    {"rid": "r2", "scaleResolutionDownTo": {"maxWidth": 0, "maxHeight": 10}},
    {"rid": "r2", "scale_resolution_down_to": {"max_width": 640}}, "r0",
])
def test_malformed_simulcast_encodings_are_refused(bad):
    from sora_ffi.devserver.params import ProtocolError, parse_connect
    base = {"type": "connect", "role": "sendonly", "channel_id": "c", "simulcast": True}
    with pytest.raises(ProtocolError, match="INVALID-PARAMETER: simulcast_encodings"):
        parse_connect({**base, "simulcast_encodings": [bad]})
    for many in ([{"rid": "r0"}, {"rid": "r0"}], [{"rid": f"r{i % 3}"} for i in range(10)]):
        with pytest.raises(ProtocolError, match="given twice"):
            parse_connect({**base, "simulcast_encodings": many})


def test_scale_resolution_down_to_in_either_spelling():
    from sora_ffi.devserver.params import parse_connect
    base = {"type": "connect", "role": "sendonly", "channel_id": "c", "simulcast": True}
    p = parse_connect({**base, "simulcast_encodings": [
        {"rid": "r2", "scale_resolution_down_to": {"max_width": 640, "max_height": 360}},
        {"rid": "r1", "scaleResolutionDownTo": {"maxWidth": 320, "maxHeight": 180}, "active": False}]})
    enc = {e["rid"]: e for e in sdp.simulcast_encodings(1000, p.simulcast_encodings)}
    assert enc["r2"]["scaleResolutionDownTo"] == {"maxWidth": 640, "maxHeight": 360}
    assert enc["r1"]["scaleResolutionDownTo"] == {"maxWidth": 320, "maxHeight": 180}
    assert "scale_resolution_down_to" not in enc["r2"]
    assert sdp.paused_rids(1000, p.simulcast_encodings) == ["r1"]


def test_grants_map_onto_the_connect():
    from sora_ffi.devserver.grants import BLOCK_ALL, GrantError, apply_grants

    base = {"role": "sendrecv", "forwarding_filter": {"rules": []}, "data_channels": [
        {"label": "#a", "direction": "sendrecv"}, {"label": "#b", "direction": "sendonly"},
        {"label": "#c", "direction": "recvonly"}, {"label": "signaling", "direction": "sendrecv"}]}
    msg = json.loads(json.dumps(base))
    apply_grants(msg, {"can_subscribe": False, "can_publish_data": False, "room_join": True})
    assert msg["forwarding_filters"] == [BLOCK_ALL] and "forwarding_filter" not in msg
    assert msg["data_channels"] == [{"label": "#a", "direction": "recvonly"},
                                    {"label": "#c", "direction": "recvonly"},
                                    {"label": "signaling", "direction": "sendrecv"}]
    msg = json.loads(json.dumps(base))
    apply_grants(msg, {})  # nothing refused: unchanged
    assert msg == base
    for grants, match in (({"room_join": False}, "room_join"), ({"can_publish": False}, "can_publish"),
                          ({"can_fly": True}, "unknown"), ({"can_publish": "no"}, "boolean"), ([], "object")):
        with pytest.raises(GrantError, match=match):
            apply_grants(json.loads(json.dumps(base)), grants)
    recv = {"role": "recvonly"}
    apply_grants(recv, {"can_publish": False})  # a recvonly join needs no can_publish
    assert recv == {"role": "recvonly"}
