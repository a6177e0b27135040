"""Audio streaming end to end (issue 12): clients speak, the dev server streams each
publisher's Opus to a gateway over HTTP/2 (natively, off the forwarding plane), and the
gateway's results come back to the subscribed clients as pushes. Against our gateway
(`sora_ffi.gateway`: the `test` service's byte counts, PocketSphinx recognizing espeak-ng),
and against gateways that misbehave."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from conftest import new_sora, wait_until
from sora_ffi.aio import parse_audio_streaming_result
from sora_ffi.gateway import AsyncGateway, Gateway, GatewayOptions

pytestmark = pytest.mark.timeout(60)

RATE = 48000
FRAME = RATE // 100  # 10 ms


# ------------------------------------------------------------------ helpers
@pytest.fixture
def gateways():
    """``gateways(**Gateway kwargs)`` → a started Gateway, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda **kw: stack.enter_context(Gateway(**kw))


class Pump:
    """Pushes noise (10 ms frames) into an audio source at the pace of real time, in a
    thread, while running; counts what it pushed."""

    def __init__(self, source):
        self.source = source
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        rng = np.random.default_rng(7)
        start = time.monotonic()
        while not self._stop.is_set():
            self.source.on_data((rng.standard_normal((FRAME, 1)) * 3000).astype(np.int16))
            self.frames += 1
            time.sleep(max(0.0, start + self.frames / 100 - time.monotonic()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)


def results_of(client) -> list:
    """The audio streaming results among a Client's pushes."""
    out = []
    for p in list(client.pushes):
        r = parse_audio_streaming_result(json.dumps(p))
        if r is not None:
            out.append(r)
    return out


def speaker(clients, sdk, url, channel_id, **kw):
    """A sendonly client of ``sdk`` with an audio source (``.source``)."""
    sora = new_sora(sdk)
    source = sora.create_audio_source(1, RATE)
    kw.setdefault("audio_streaming_language_code", "en-US")
    c = clients(sdk, url, channel_id, "sendonly", sora=sora, audio=True, audio_source=source, **kw)
    c.source = source
    return c


def streaming_state(server, channel_id) -> dict:
    def read(core):
        ch = core.channels.get(channel_id)
        if ch is None:
            return {}
        st = ch.audio_streaming
        return {"enabled": st.enabled, "auto": st.auto, "streams": sorted(st.streams),
                "counters": {cid: st.counters(cid) for cid in st.streams}}
    return server.call(read)


def start_streaming(server, channel_id):
    assert server.api("Sora_20221221.StartAudioStreaming", {"channel_id": channel_id}) == (200, {})


def bytes_counted(results) -> int:
    return sum(int(r.result["message"].split()[1]) for r in results if r.result.get("type") == "test")


class SessionHook:
    """A session webhook endpoint: records what it gets, answers session.created with
    ``reply``."""

    def __init__(self, reply: dict):
        self.reply = reply
        self.seen: list = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.seen.append(body)
                out = json.dumps(hook.reply if body.get("type") == "session.created" else {}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.srv = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/session"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def types(self) -> list:
        return [b["type"] for b in self.seen]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def session_hooks():
    made = []

    def make(reply):
        h = SessionHook(reply)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------- the path, end to end
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_every_opus_byte_sent_reaches_the_gateway(ffi, make_server, gateways, clients, channel_id, framed):
    """The `test` service answers each packet with its size: their sum equals the Opus
    bytes the speaker sent (outbound-rtp bytesSent) and the server's count, and every
    subscriber (the recvonly listener and the speaker itself) gets every result."""
    gw = gateways(options=GatewayOptions(framed=framed))
    server = make_server(audio_streaming_url=gw.url + "/test", audio_streaming_header=framed)
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)  # before the speaker joins: from its first packet
    spk = speaker(clients, ffi, server, channel_id).connect()
    for _ in range(50):
        spk.source.on_data(np.full((FRAME, 1), 1000, np.int16))
    with Pump(spk.source):
        time.sleep(0.5)

    def outbound():
        stats = [s for s in json.loads(spk.conn.get_stats()) if s.get("type") == "outbound-rtp"]
        return sum(s["packetsSent"] for s in stats), sum(s["bytesSent"] for s in stats)
    last = None  # until the sender has sent everything it had
    while (now := outbound()) != last:
        last = now
        time.sleep(0.3)
    packets, sent = last
    assert packets >= 40
    got = lambda: [r for r in results_of(listener) if r.connection_id == spk.connection_id]  # noqa: E731
    assert wait_until(lambda: bytes_counted(got()) >= sent), (bytes_counted(got()), sent)
    assert bytes_counted(got()) == sent and len(got()) == packets
    st = streaming_state(server, channel_id)
    assert st["counters"][spk.connection_id] == (packets, sent, 0)
    assert wait_until(lambda: bytes_counted(results_of(spk)) == sent)  # the speaker is subscribed too
    assert gw.app.streams_started == 1


@pytest.mark.skipif(not __import__("sora_ffi.examples.speech", fromlist=["x"]).espeak_available(),
                    reason="espeak-ng is not installed")
def test_spoken_english_is_recognized_and_pushed():
    """`python -m sora_ffi.examples.transcribe`'s path: espeak-ng speaks into a sendonly
    client, the dev server streams to our gateway, PocketSphinx recognizes it, and the
    recvonly listener receives the results (partial and final) as pushes naming the
    speaker. Most of the sentence's words come back."""
    from sora_ffi.examples.transcribe import DEFAULT_TEXT, transcribe

    out = io.StringIO()
    summary = asyncio.run(transcribe(DEFAULT_TEXT, out=out))
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    results = [x for x in lines if x.get("type") == "audio_streaming_result"]
    assert results and lines[-1] == summary
    assert {r["result"]["type"] for r in results} == {"pocketsphinx"}
    assert any(r["result"].get("is_final") for r in results)
    assert summary["word_accuracy"] >= 0.5, summary
    print("word accuracy", summary)


def test_a_connection_without_a_language_code_is_never_streamed(ffi, make_server, gateways, clients,
                                                                 channel_id):
    gw = gateways()
    server = make_server(audio_streaming_url=gw.url + "/test")
    clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)
    mute = speaker(clients, ffi, server, channel_id, audio_streaming_language_code=None).connect()
    loud = speaker(clients, ffi, server, channel_id).connect()
    with Pump(mute.source), Pump(loud.source):
        assert wait_until(lambda: gw.app.streams_started == 1)
        time.sleep(0.5)
    assert streaming_state(server, channel_id)["streams"] == [loud.connection_id]
    assert gw.app.streams_started == 1
    assert {r.connection_id for r in results_of(loud)} == {loud.connection_id}


def test_joining_and_leaving_mid_stream(ffi, make_server, gateways, clients, channel_id):
    """A speaker joining while streaming is on gets its own request; one leaving ends its
    request; the others go on."""
    gw = gateways()
    server = make_server(audio_streaming_url=gw.url + "/test")
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)
    a = speaker(clients, ffi, server, channel_id).connect()
    with Pump(a.source):
        assert wait_until(lambda: gw.app.streams_open == 1)
        b = speaker(clients, ffi, server, channel_id).connect()
        with Pump(b.source):
            assert wait_until(lambda: gw.app.streams_open == 2)
            assert wait_until(lambda: {r.connection_id for r in results_of(listener)}
                              == {a.connection_id, b.connection_id})
        b.disconnect()
        assert wait_until(lambda: gw.app.streams_open == 1)
        n = len(results_of(listener))
        assert wait_until(lambda: len(results_of(listener)) > n + 10)  # a goes on
    assert streaming_state(server, channel_id)["streams"] == [a.connection_id]
    assert listener.disconnects == [] and a.disconnects == []


@pytest.mark.parametrize("speaker_sdk,listener_sdk", [
    ("sora_sdk", "sora_ffi"), ("sora_ffi", "sora_sdk"), ("sora_sdk", "sora_sdk")])
def test_the_official_sdk_as_speaker_and_as_subscriber(make_server, gateways, clients, channel_id,
                                                       official, speaker_sdk, listener_sdk):
    import importlib
    gw = gateways()
    server = make_server(audio_streaming_url=gw.url + "/test")
    listener = clients(importlib.import_module(listener_sdk), server, channel_id, "recvonly",
                       audio=True).connect()
    start_streaming(server, channel_id)
    spk = speaker(clients, importlib.import_module(speaker_sdk), server, channel_id).connect()
    with Pump(spk.source):
        assert wait_until(lambda: len(results_of(listener)) >= 20)
    assert {r.connection_id for r in results_of(listener)} == {spk.connection_id}
    assert all(r.result["type"] == "test" and r.result["message"].startswith("n: ")
               for r in results_of(listener))


# -------------------------------------------------- Sora's tables, by session webhook
# (reply to session.created, default subscription, stream expected, results expected)
TABLE = [
    pytest.param({"audio_streaming": True, "audio_streaming_auto": True}, False, False, False,
                 id="on-auto-0-subscribers"),
    pytest.param({"audio_streaming": True, "audio_streaming_auto": True}, True, True, True,
                 id="on-auto-subscribers"),
    pytest.param({"audio_streaming": True}, False, True, False, id="on-0-subscribers"),
    pytest.param({"audio_streaming": True, "audio_streaming_auto": False}, True, True, True,
                 id="on-subscribers"),
    pytest.param({"audio_streaming_auto": True}, True, False, False, id="auto-without-on-ignored"),
    pytest.param({"audio_streaming": False}, True, False, False, id="off"),
    pytest.param({}, True, False, False, id="unset"),
]


@pytest.mark.parametrize("reply,subscribed,streamed,delivered", TABLE)
def test_session_webhook_flags(ffi, make_server, gateways, session_hooks, clients, channel_id,
                               reply, subscribed, streamed, delivered):
    gw = gateways()
    hook = session_hooks(reply)
    server = make_server(audio_streaming_url=gw.url + "/test", session_webhook=hook.url,
                         default_audio_streaming_result_push=subscribed)
    spk = speaker(clients, ffi, server, channel_id).connect()
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    assert wait_until(lambda: "session.created" in hook.types())
    with Pump(spk.source):
        if streamed:
            assert wait_until(lambda: gw.app.streams_started == 1)
        if delivered:
            assert wait_until(lambda: len(results_of(listener)) >= 5 and len(results_of(spk)) >= 5)
        time.sleep(0.5)
    assert (gw.app.streams_started == 1) is streamed
    assert bool(results_of(listener)) is delivered and bool(results_of(spk)) is delivered
    state = streaming_state(server, channel_id)
    assert state["enabled"] is (reply.get("audio_streaming") is True)
    assert state["auto"] is (reply.get("audio_streaming") is True and reply.get("audio_streaming_auto") is True)


def test_auto_follows_the_subscriptions_and_refuses_start_stop(ffi, make_server, gateways,
                                                               session_hooks, clients, channel_id):
    """With audio_streaming_auto, the first subscription starts the streams and the last
    unsubscription stops them; Start/StopAudioStreaming are refused; TerminateSession ends
    the session, with the audio streaming webhooks around the session's."""
    gw = gateways()
    hook = session_hooks({"audio_streaming": True, "audio_streaming_auto": True})
    server = make_server(audio_streaming_url=gw.url + "/test", session_webhook=hook.url,
                         default_audio_streaming_result_push=False, audio_streaming_webhooks=True)
    spk = speaker(clients, ffi, server, channel_id).connect()
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    target = {"channel_id": channel_id, "connection_id": listener.connection_id}
    with Pump(spk.source):
        assert wait_until(lambda: "audio-streaming.started" in hook.types())
        time.sleep(0.3)
        assert gw.app.streams_started == 0
        for api in ("StartAudioStreaming", "StopAudioStreaming"):
            status, body = server.api(f"Sora_20221221.{api}", {"channel_id": channel_id})
            assert status == 400 and "audio_streaming_auto" in body["message"], (api, body)

        assert server.api("Sora_20221221.SubscribeAudioStreamingResultPush", target) == (200, {})
        assert wait_until(lambda: gw.app.streams_open == 1)
        assert wait_until(lambda: len(results_of(listener)) >= 5)
        assert results_of(spk) == []  # not subscribed
        assert server.api("Sora_20230628.ListAudioStreamingResultPushState", {"channel_id": channel_id}) == (
            200, [{"connection_id": spk.connection_id, "subscribe": False},
                  {"connection_id": listener.connection_id, "subscribe": True}])

        assert server.api("Sora_20221221.UnsubscribeAudioStreamingResultPush", target) == (200, {})
        assert wait_until(lambda: gw.app.streams_open == 0)
        n = len(results_of(listener))
        time.sleep(0.3)
        assert len(results_of(listener)) == n

    session_id = hook.seen[0]["session_id"]
    assert server.api("Sora_20230628.TerminateSession",
                      {"channel_id": channel_id, "session_id": session_id}) == (200, {})
    spk.wait_disconnected()
    listener.wait_disconnected()
    assert wait_until(lambda: "session.destroyed" in hook.types())
    assert hook.types() == ["session.created", "audio-streaming.started",
                            "audio-streaming.stopped", "session.destroyed"]
    started, stopped = hook.seen[1], hook.seen[2]
    assert started["data"]["audio_streaming_auto"] is True
    assert "audio_streaming_started_timestamp" in started["data"]
    assert "audio_streaming_stopped_timestamp" in stopped["data"]
    assert {b["session_id"] for b in hook.seen} == {session_id}
    assert {b["channel_id"] for b in hook.seen} == {channel_id}
    assert hook.seen[-1]["total_connections"] == 2 and hook.seen[-1]["max_connections"] == 2


def test_stop_resets_subscriptions_and_start_again(ffi, make_server, gateways, clients, channel_id):
    gw = gateways()
    server = make_server(audio_streaming_url=gw.url + "/test")
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    spk = speaker(clients, ffi, server, channel_id).connect()
    target = {"channel_id": channel_id, "connection_id": listener.connection_id}
    assert server.api("Sora_20221221.UnsubscribeAudioStreamingResultPush", target) == (200, {})
    with Pump(spk.source):
        start_streaming(server, channel_id)
        assert server.api("Sora_20221221.StartAudioStreaming", {"channel_id": channel_id})[0] == 400
        assert wait_until(lambda: len(results_of(spk)) >= 5)
        assert results_of(listener) == []
        assert server.api("Sora_20221221.StopAudioStreaming", {"channel_id": channel_id}) == (200, {})
        assert wait_until(lambda: gw.app.streams_open == 0)
        assert server.api("Sora_20221221.StopAudioStreaming", {"channel_id": channel_id})[0] == 400
        # every subscription is back to the default (subscribed)
        assert server.api("Sora_20230628.ListAudioStreamingResultPushState",
                          {"channel_id": channel_id})[1] == [
            {"connection_id": listener.connection_id, "subscribe": True},
            {"connection_id": spk.connection_id, "subscribe": True}]
        start_streaming(server, channel_id)
        assert wait_until(lambda: len(results_of(listener)) >= 5)
    assert gw.app.streams_started == 2


# ------------------------------------------------------------ gateway failures
def test_gateway_down_at_start_then_killed_and_restarted(ffi, make_server, clients, channel_id):
    """Nothing listens at first: the request is retried; the gateway comes up: results
    flow; it dies mid-stream and comes back on the same port: they flow again. No session
    ends, and the media keeps being forwarded throughout."""
    port = free_port()
    server = make_server(audio_streaming_url=f"http://127.0.0.1:{port}/test")
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)
    spk = speaker(clients, ffi, server, channel_id).connect()
    with Pump(spk.source):
        time.sleep(0.8)
        assert results_of(listener) == []
        with Gateway(port=port) as gw:
            assert wait_until(lambda: len(results_of(listener)) >= 5)
        time.sleep(0.3)  # what was in flight lands
        n = len(results_of(listener))
        time.sleep(0.5)
        assert len(results_of(listener)) == n  # gone
        with Gateway(port=port) as gw2:
            assert wait_until(lambda: len(results_of(listener)) >= n + 10)
            assert gw2.app.streams_started == 1
        inbound = lambda: sum(s.get("packetsReceived", 0) for s in json.loads(listener.conn.get_stats())  # noqa: E731
                              if s.get("type") == "inbound-rtp")
        before = inbound()
        assert wait_until(lambda: inbound() > before + 10)
    assert listener.disconnects == [] and spk.disconnects == []
