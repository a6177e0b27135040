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
from sora_ffi.gateway import Gateway, GatewayOptions

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

    def __init__(self, reply: dict, delay: float = 0.0):
        self.reply = reply
        self.seen: list = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.seen.append(body)
                time.sleep(delay)
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

    def make(reply, delay=0.0):
        h = SessionHook(reply, delay)
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
        assert gw.app.streams_finished == 1  # its body was ended, not cut
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
    pytest.param({"audio_streaming": True}, False, True, False, id="on-unset-0-subscribers"),
    pytest.param({"audio_streaming": True}, True, True, True, id="on-unset-subscribers"),
    pytest.param({"audio_streaming": True, "audio_streaming_auto": False}, False, True, False,
                 id="on-not-auto-0-subscribers"),
    pytest.param({"audio_streaming": True, "audio_streaming_auto": False}, True, True, True,
                 id="on-not-auto-subscribers"),
    pytest.param({"audio_streaming_auto": True}, True, False, False, id="auto-without-on-ignored"),
    pytest.param({"audio_streaming": False}, True, False, False, id="off"),
    pytest.param({"audio_streaming": False, "audio_streaming_auto": True}, True, False, False,
                 id="off-auto"),
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
        with Gateway(port=port):
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


# ------------------------------------------------------------------ bad input
class AsgiServer:
    """Hypercorn serving ``app`` (ASGI) on a free port, in a thread: h2c and HTTP/1.1."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.graceful_timeout = 0.2
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(serve(self.app, config, shutdown_trigger=self._stop.wait))
        except* (RuntimeError, asyncio.CancelledError):  # stopped or cancelled
            pass
        except* KeyError:
            # Hypercorn's h2 protocol raises KeyError for DATA on a stream it has answered
            # and forgotten (an app that replies 503 before the request body ends); the
            # client is right to keep sending until it reads the answer.
            pass

    def __enter__(self):
        self._thread.start()
        assert wait_until(lambda: _port_open(self.port), 5)
        return self

    def __exit__(self, *exc):
        def stop():
            self._stop.set()
            for task in asyncio.all_tasks(self._loop):  # an app that never returns, too
                task.cancel()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(1)
        if self._thread.is_alive():  # Hypercorn still waiting on a stream that never ends
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class BadGateway:
    """An ASGI gateway that answers each stream with junk around two good lines, then ends
    the response; records each request's headers."""

    GOOD = {"type": "test", "message": "still here"}
    ERROR = {"type": "error", "reason": "the recognizer gave up"}

    def __init__(self):
        self.requests: list = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.requests.append({k.decode(): v.decode("latin-1") for k, v in scope["headers"]})

        async def drain():  # a gateway reads the audio (Hypercorn stops reading the
            while (await receive())["type"] != "http.disconnect":  # socket otherwise)
                pass
        reader = asyncio.ensure_future(drain())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        junk = [b"not json\n", b"\xff\xfe\x00\x01 binary\n", b"[1, 2]\n",
                b"x" * (10 * 1024 * 1024) + b"\n"]
        for chunk in junk + [json.dumps(self.GOOD).encode() + b"\n",
                             json.dumps(self.ERROR).encode() + b"\n"]:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        reader.cancel()


def test_malformed_gateway_responses_are_dropped_and_nothing_ends(ffi, make_server, clients, channel_id):
    """Non-JSON, binary, a non-object and a 10 MB line are dropped (and logged); the good
    lines around them, the gateway's own error object included, are pushed; the request is
    made again when the response ends. Request headers carry the stream's identity and a
    UTF-8 language code as is."""
    bad = BadGateway()
    with AsgiServer(bad) as gw:
        server = make_server(audio_streaming_url=gw.url + "/speech")
        listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
        start_streaming(server, channel_id)
        spk = speaker(clients, ffi, server, channel_id, client_id="talker",
                      audio_streaming_language_code="日本語-JP").connect()
        with Pump(spk.source):
            assert wait_until(lambda: len(bad.requests) >= 2 and len(results_of(listener)) >= 4)
        got = [r.result for r in results_of(listener)]
        assert got[:4] == [bad.GOOD, bad.ERROR, bad.GOOD, bad.ERROR]
        h = bad.requests[0]
        assert h["sora-channel-id"] == channel_id and h["sora-connection-id"] == spk.connection_id
        assert h["sora-client-id"] == "talker" and h["sora-session-id"]
        assert h["sora-audio-streaming-language-code"].encode("latin-1").decode() == "日本語-JP"
        assert listener.disconnects == [] and spk.disconnects == []


class SilentGateway:
    """Takes the request and never answers nor reads."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            await asyncio.sleep(3600)


def test_a_gateway_that_never_answers_harms_nothing(ffi, make_server, clients, channel_id):
    with AsgiServer(SilentGateway()) as gw:
        server = make_server(audio_streaming_url=gw.url + "/speech")
        listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
        start_streaming(server, channel_id)
        spk = speaker(clients, ffi, server, channel_id).connect()
        with Pump(spk.source):
            assert wait_until(lambda: streaming_state(server, channel_id)["counters"].get(
                spk.connection_id, (0,))[0] >= 50)  # the audio went into the request
            inbound = lambda: sum(s.get("packetsReceived", 0)  # noqa: E731
                                  for s in json.loads(listener.conn.get_stats()) if s.get("type") == "inbound-rtp")
            before = inbound()
            assert wait_until(lambda: inbound() > before + 20)  # forwarding goes on
    assert results_of(listener) == []
    assert listener.disconnects == [] and spk.disconnects == []


def test_a_hung_gateway_is_found_by_ping_and_left(ffi, make_server, clients, channel_id):
    """A gateway that accepts the TCP connection and then does nothing (a hung process)
    answers no HTTP/2 PING: the request is given up and made again."""
    listener_sock = socket.socket()
    listener_sock.bind(("127.0.0.1", 0))
    listener_sock.listen(8)
    accepted: list = []
    threading.Thread(target=lambda: [accepted.append(listener_sock.accept()) for _ in range(3)],
                     daemon=True).start()
    try:
        server = make_server(audio_streaming_url=f"http://127.0.0.1:{listener_sock.getsockname()[1]}/speech",
                             audio_streaming_keepalive=0.5)
        clients(ffi, server, channel_id, "recvonly", audio=True).connect()
        start_streaming(server, channel_id)
        spk = speaker(clients, ffi, server, channel_id).connect()
        with Pump(spk.source):
            assert wait_until(lambda: len(accepted) == 1)
            assert wait_until(lambda: len(accepted) == 2, timeout=4)  # PING: 0.5 s + 1 s
        assert spk.disconnects == []
    finally:
        for conn, _ in accepted:
            conn.close()
        listener_sock.close()


def test_an_http1_only_gateway_is_retried_and_harms_nothing(ffi, make_server, clients, channel_id):
    """HTTP/2 to a server that speaks only HTTP/1.1: it refuses the preface, the request
    fails and is made again after a back-off; the sessions go on."""
    hits: list = []

    class H1(BaseHTTPRequestHandler):
        def do_POST(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

        def send_error(self, code, message=None, explain=None):
            hits.append(code)
            super().send_error(code, message, explain)

    h1 = HTTPServer(("127.0.0.1", 0), H1)
    threading.Thread(target=h1.serve_forever, daemon=True).start()
    try:
        server = make_server(audio_streaming_url=f"http://127.0.0.1:{h1.server_address[1]}/speech")
        listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
        start_streaming(server, channel_id)
        spk = speaker(clients, ffi, server, channel_id).connect()
        with Pump(spk.source):
            assert wait_until(lambda: len(hits) >= 2)  # refused, then tried again
        assert results_of(listener) == []
        assert listener.disconnects == [] and spk.disconnects == []
    finally:
        h1.shutdown()
        h1.server_close()


def _h2_post(url: str, path: str, body: bytes) -> tuple:
    """One HTTP/2 (prior knowledge) POST with ``body``: (status, response body)."""
    import h2.config
    import h2.connection
    import h2.events

    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", path), (":scheme", "http"),
                          (":authority", f"{host}:{port}")])
    conn.send_data(1, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    status, out, done = None, b"", False
    while not done:
        data = sock.recv(65536)
        if not data:
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                out += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, 1)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                done = True
        sock.sendall(conn.data_to_send())
    sock.close()
    return status, out


@pytest.mark.parametrize("length", [0x1000000, 0xFFFFFFFF, 0])
def test_gateway_refuses_a_framed_payload_length_out_of_range(gateways, length):
    import struct
    gw = gateways(options=GatewayOptions(framed=True))
    good = struct.pack(">QQI", 1, 1, 3) + b"\xfc\xff\xfe"
    status, body = _h2_post(gw.url, "/test", good + struct.pack(">QQI", 2, 2, length) + b"x" * 64)
    lines = [json.loads(x) for x in body.splitlines()]
    assert status == 200
    assert lines[0] == {"type": "test", "message": "n: 3"}
    assert lines[1]["type"] == "error" and f"payload length {length}" in lines[1]["reason"]
    assert len(lines) == 2


def test_gateway_answers_http1_and_unknown_paths_clearly(gateways):
    import urllib.error
    import urllib.request
    gw = gateways()
    assert urllib.request.urlopen(gw.url + "/.ok", timeout=5).status == 200
    for path, method, code in (("/speech", "POST", 400), ("/nope", "GET", 404), ("/test", "GET", 405)):
        req = urllib.request.Request(gw.url + path, data=b"x" if method == "POST" else None, method=method)
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=5)
        assert ei.value.code == code, path
    # an unsupported language: an error line, and the response ends
    status, body = _h2_post(gw.url, "/speech", b"")
    assert status == 200 and json.loads(body)["type"] == "error"


def test_framed_reader_reassembles_records_split_anywhere():
    import struct
    from sora_ffi.gateway import FramedReader, FramingError

    records = b"".join(struct.pack(">QQI", 10 + i, i, n) + bytes([i]) * n for i, n in enumerate((1, 7, 300)))
    for cut in range(1, len(records)):
        r = FramedReader()
        got = list(r.feed(records[:cut])) + list(r.feed(records[cut:]))
        r.finish()
        assert [(p.timestamp_us, p.sequence_number, p.payload) for p in got] == [
            (10, 0, b"\x00"), (11, 1, b"\x01" * 7), (12, 2, b"\x02" * 300)]
    r = FramedReader()
    assert len(list(r.feed(records[:30]))) == 1
    with pytest.raises(FramingError, match="ended inside a record"):
        r.finish()


@pytest.mark.parametrize("code,why", [
    ("", "INVALID-PARAMETER: audio_streaming_language_code must not be empty"),
    ("x" * 256, "INVALID-PARAMETER: audio_streaming_language_code is longer than 255 bytes"),
    ("\ud800", "INVALID-MESSAGE: string holds a lone UTF-16 surrogate"),
    ("en\nUS", "INVALID-PARAMETER: audio_streaming_language_code must not contain control characters"),
    (5, "INVALID-PARAMETER: audio_streaming_language_code must be a string")])
def test_bad_language_codes_are_refused_at_connect(make_server, code, why):
    """The dev server refuses them with a clear reason (they go into an HTTP header)."""
    from websockets.asyncio.client import connect as ws_connect

    server = make_server(audio_streaming_url="http://127.0.0.1:9/speech")

    async def run():
        async with ws_connect(server.signaling_url) as ws:
            await ws.send(json.dumps({"type": "connect", "role": "sendonly", "channel_id": "c",
                                      "audio": True, "video": False,
                                      "audio_streaming_language_code": code}))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code, ws.close_reason

    close_code, reason = asyncio.run(run())
    assert (close_code, reason) == (4400, why)


def test_audio_streaming_api_bad_requests(ffi, make_server, gateways, clients, channel_id):
    gw = gateways()
    server = make_server(audio_streaming_url=gw.url + "/test")
    bare = make_server()  # no gateway configured
    c = clients(ffi, server, channel_id, "recvonly").connect()
    clients(ffi, bare, channel_id, "recvonly").connect()
    cases = [
        (server, "Sora_20221221.StartAudioStreaming", {}, 400, "channel_id"),
        (server, "Sora_20221221.StartAudioStreaming", {"channel_id": 5}, 400, "channel_id"),
        (server, "Sora_20221221.StartAudioStreaming", {"channel_id": "nope"}, 404, "nope"),
        (server, "Sora_20221221.StopAudioStreaming", {"channel_id": channel_id}, 400, "not started"),
        (server, "Sora_20221221.SubscribeAudioStreamingResultPush", {"channel_id": channel_id}, 400,
         "connection_id"),
        (server, "Sora_20221221.UnsubscribeAudioStreamingResultPush",
         {"channel_id": channel_id, "connection_id": "X" * 26}, 404, "X" * 26),
        (server, "Sora_20230628.ListAudioStreamingResultPushState", {"channel_id": []}, 400, "channel_id"),
        (server, "Sora_20230628.TerminateSession", {"channel_id": channel_id, "session_id": "S"}, 404, "S"),
        (server, "Sora_20230628.TerminateSession", {"channel_id": channel_id}, 400, "session_id"),
        (bare, "Sora_20221221.StartAudioStreaming", {"channel_id": channel_id}, 400, "not configured"),
    ]
    for srv, target, body, status, text in cases:
        got_status, got = srv.api(target, body)
        assert got_status == status and text in got["message"], (target, body, got_status, got)
    assert c.disconnects == []


def test_stream_audio_refuses_bad_configs(make_server):
    """The C ABI's checks (through cffi): a clear error for each, nothing started."""
    from sora_ffi._native import EventQueue, ShimError, ffi as cffi, lib
    from sora_ffi.devserver.peerloop import Peer

    queue = EventQueue(0)
    peer = Peer(queue, {})
    try:
        track = peer.add_track("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n"
                               "a=rtpmap:111 opus/48000/2\r\n")
        bad = [
            ({}, "url"), ({"url": "ftp://x/"}, "not http"), ({"url": "http://[::1]:5/"}, "IPv6"),
            ({"url": "http://127.0.0.1:5/", "ca_cert": "x"}, "http:// gateway"),
            ({"url": "https://127.0.0.1:5/", "ca_cert": "not pem"}, "TLS: ca_cert"),
            ({"url": "http://127.0.0.1:5/", "headers": {"a b": "c"}}, "header name"),
            ({"url": "http://127.0.0.1:5/", "headers": {"x": "a\nb"}}, "cannot be sent"),
            ({"url": "http://127.0.0.1:5/", "headers": {"x": "y" * 20000}}, "exceed"),
            ({"url": "http://127.0.0.1:5/", "retry_interval_ms": 0}, "retry_interval_ms"),
            ({"url": "http://127.0.0.1:5/", "queue_packets": 0}, "queue_packets"),
            ({"url": "http://127.0.0.1:5/", "keepalive_ms": 50}, "keepalive_ms"),
            ({"url": "http://127.0.0.1:5/", "bogus": 1}, "unknown field"),
        ]
        for cfg, why in bad:
            with pytest.raises(ShimError, match=why):
                peer.stream_audio(track, queue, cfg)
        out = cffi.new("uint64_t *")
        assert lib.sora_peer_stream_audio(cffi.NULL, track, queue.ptr, b"{}", out) < 0
        assert lib.sora_peer_stream_audio(peer._ptr, track, queue.ptr, b"not json", out) < 0
        assert lib.sora_peer_stream_audio(peer._ptr, track, queue.ptr, cffi.NULL, out) < 0
        assert lib.sora_peer_stream_audio(peer._ptr, track, cffi.NULL, b'{"url":"http://a/"}', out) < 0
        assert lib.sora_peer_stream_audio(peer._ptr, track, queue.ptr, b'{"url":"http://a/"}', cffi.NULL) < 0
        assert lib.sora_audio_stream_stop(123456789) < 0
        p = cffi.new("uint64_t *")
        assert lib.sora_audio_stream_counters(123456789, p, p, p) < 0
        # one stream per track; a stopped one can be started again
        sid = peer.stream_audio(track, queue, {"url": "http://127.0.0.1:9/"})
        with pytest.raises(ShimError, match="already streamed"):
            peer.stream_audio(track, queue, {"url": "http://127.0.0.1:9/"})
        assert lib.sora_audio_stream_counters(sid, p, p, cffi.NULL) < 0
        assert lib.sora_audio_stream_stop(sid) == 0
        assert lib.sora_audio_stream_stop(sid) < 0
        lib.sora_audio_stream_stop(peer.stream_audio(track, queue, {"url": "http://127.0.0.1:9/"}))
    finally:
        peer.close_and_destroy()
        queue.close()


def test_opus_decoder_bad_input():
    from sora_ffi._opus import OpusDecoder

    d = OpusDecoder(16000, 1)
    with pytest.raises(ValueError):
        d.decode(b"\xff" * 5)
    with pytest.raises(TypeError):
        d.decode("text")
    assert d.decode(b"\xfc\xff\xfe").shape == (320, 1)  # still decoding after a bad packet
    with pytest.raises(ValueError):
        OpusDecoder(44100, 1)
    with pytest.raises(ValueError):
        OpusDecoder(16000, 3)
    with pytest.raises(TypeError):
        OpusDecoder(16000.0, 1)


# ------------------------------------------------------------------------ TLS
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from test_tls_proxy import Pki

    p = Pki(tmp_path_factory.mktemp("pki"))
    p.client_cert_file = p._write("client.pem", p.client_cert)
    p.client_key_file = p._write("client.key", p.client_key)
    p.other_ca_file = p._write("other-ca.pem", p.other_ca_pem)
    return p


@pytest.mark.parametrize("case", ["mtls", "wrong-ca", "no-client-cert"])
def test_https_gateway_with_client_certificate(ffi, make_server, gateways, clients, channel_id, pki, case):
    """h2 over TLS (ALPN) with our certificate checked by the gateway and the gateway's by
    the CA given; a CA that did not sign the gateway's, or no client certificate for a
    gateway that requires one, streams nothing and ends no session."""
    gw = gateways(tls_cert=pki.server_cert, tls_key=pki.server_key, client_ca=pki.ca_file)
    assert gw.url.startswith("https://")
    tls = {"audio_streaming_ca": pki.other_ca_file if case == "wrong-ca" else pki.ca_file}
    if case != "no-client-cert":
        tls.update(audio_streaming_tls_cert=pki.client_cert_file, audio_streaming_tls_key=pki.client_key_file)
    server = make_server(audio_streaming_url=gw.url + "/test", **tls)
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)
    spk = speaker(clients, ffi, server, channel_id).connect()
    with Pump(spk.source):
        if case == "mtls":
            assert wait_until(lambda: len(results_of(listener)) >= 10)
        else:
            time.sleep(1.0)
            assert results_of(listener) == [] and gw.app.streams_started == 0
    assert listener.disconnects == [] and spk.disconnects == []


class StatusGateway:
    """Answers every stream with one status and no body."""

    def __init__(self, status: int):
        self.status = status
        self.requests = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        self.requests += 1
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_a_gateway_answering_non_200_is_retried_with_back_off(ffi, make_server, clients, channel_id):
    bad = StatusGateway(503)
    with AsgiServer(bad) as gw:
        server = make_server(audio_streaming_url=gw.url + "/speech")
        listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
        start_streaming(server, channel_id)
        spk = speaker(clients, ffi, server, channel_id).connect()
        with Pump(spk.source):
            assert wait_until(lambda: bad.requests >= 2)  # after 0.5 s
            time.sleep(1.0)
        # backing off: 0.5, 1, 2 s apart, not a request per packet
        assert 2 <= bad.requests <= 4, bad.requests
        assert results_of(listener) == []
        assert listener.disconnects == [] and spk.disconnects == []


def test_asyncio_results_iterators(ffi, make_server, gateways, channel_id):
    """`AsyncConnection.audio_streaming_results()`: every iterator gets every result (with
    the speaker's connection id), and they end when the session ends."""
    from sora_ffi import aio

    gw = gateways()
    server = make_server(audio_streaming_url=gw.url + "/test")

    async def run():
        sora = ffi.Sora()
        source = sora.create_audio_source(1, RATE)
        url = [server.signaling_url]
        async with aio.connect(sora, signaling_urls=url, role="recvonly", channel_id=channel_id,
                               audio=True, video=False) as listener:
            first, second = listener.audio_streaming_results(), listener.audio_streaming_results()
            await asyncio.to_thread(start_streaming, server, channel_id)
            async with aio.connect(sora, signaling_urls=url, role="sendonly", channel_id=channel_id,
                                   audio=True, video=False, audio_source=source,
                                   audio_streaming_language_code="en-US") as spk:
                with Pump(source):
                    a = [await anext(first) for _ in range(5)]
                    b = [await anext(second) for _ in range(5)]
                speaker_id = spk.connection_id
            await listener.disconnect()
            rest = [r async for r in first]  # ends with the session
        return a, b, rest, speaker_id

    a, b, rest, speaker_id = asyncio.run(run())
    assert a == b and {r.connection_id for r in a} == {speaker_id}
    assert all(r.result["type"] == "test" and r.text.startswith("n: ") and not r.is_final for r in a)
    assert all(r.connection_id == speaker_id for r in rest)


def test_a_late_webhook_reply_does_not_undo_the_api(ffi, make_server, gateways, session_hooks,
                                                    clients, channel_id):
    """StartAudioStreaming while session.created's reply is still coming: the reply (auto
    on) comes after the API's decision and is ignored."""
    gw = gateways()
    hook = session_hooks({"audio_streaming": True, "audio_streaming_auto": True}, delay=0.5)
    server = make_server(audio_streaming_url=gw.url + "/test", session_webhook=hook.url,
                         default_audio_streaming_result_push=False)
    clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)
    time.sleep(1.0)  # the reply has come by now
    assert hook.types() == ["session.created"]
    state = streaming_state(server, channel_id)
    assert state["enabled"] is True and state["auto"] is False
    assert server.api("Sora_20221221.StopAudioStreaming", {"channel_id": channel_id}) == (200, {})


class LastWords:
    """A recognizer plug-in that says nothing until the audio ends, then how much it heard:
    a stream that is stopped must still get the gateway's answer to its end."""

    def __init__(self, language_code):
        self.samples = 0

    def feed(self, pcm):
        self.samples += len(pcm)
        return []

    def finish(self):
        return [{"type": "last", "message": f"{self.samples} samples", "is_final": True}]


def test_a_speaker_leaving_gets_the_gateways_answer_to_the_end(ffi, make_server, gateways, clients,
                                                               channel_id):
    gw = gateways(options=GatewayOptions(recognizer=LastWords))
    server = make_server(audio_streaming_url=gw.url + "/speech")
    listener = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    start_streaming(server, channel_id)
    spk = speaker(clients, ffi, server, channel_id).connect()
    with Pump(spk.source):
        assert wait_until(lambda: gw.app.streams_open == 1)
        time.sleep(0.5)
    spk.disconnect()
    got = wait_until(lambda: results_of(listener))
    assert [r.result["type"] for r in got] == ["last"] and got[0].connection_id == spk.connection_id
    assert int(got[0].text.split()[0]) >= 16000 * 0.4
    assert gw.app.streams_finished == 1
