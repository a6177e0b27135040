"""A hostile signaling server against the sora_ffi client: seeded mutations of every
message a server sends (before and after a real offer), garbage, huge and deep messages,
binary frames and redirect loops. Each session must end with exactly one on_disconnect
with a sensible code, quickly, and never crash or hang the process; a server that sent a
good offer may send one bad message without ending the session (docs/limits.md)."""
from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import pytest
from websockets.asyncio.client import connect as ws_connect

from hostile import DEEP, mutate_message

CASES = 300
BATCH = 20
CLOSE_SUCCEEDED, INTERNAL_ERROR, INVALID_PARAMETER, WEBSOCKET_HANDSHAKE_FAILED = 0, 2, 3, 4
PEER_CONNECTION_STATE_FAILED, ICE_FAILED = 7, 8
SENSIBLE = {CLOSE_SUCCEEDED, INTERNAL_ERROR, INVALID_PARAMETER, WEBSOCKET_HANDSHAKE_FAILED,
            PEER_CONNECTION_STATE_FAILED, ICE_FAILED}


@pytest.fixture(scope="module")
def real_offer():
    """An offer from the dev server (audio, video, DataChannel signaling, a compressed
    messaging label) with its candidates removed, so a client applying it never connects."""
    from sora_ffi.devserver import DevServer

    async def grab(url):
        async with ws_connect(url, ping_interval=None) as ws:
            await ws.send(json.dumps({
                "type": "connect", "role": "sendrecv", "channel_id": "offer-template",
                "audio": True, "video": {"codec_type": "VP8"}, "data_channel_signaling": True,
                "data_channels": [{"label": "#c", "direction": "sendrecv", "compress": True}]}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    with DevServer() as server:
        offer = asyncio.run(grab(server.signaling_url))
    assert offer["type"] == "offer"
    offer["sdp"] = "".join(line for line in offer["sdp"].splitlines(True)
                           if not line.startswith(("a=candidate", "a=end-of-candidates")))
    return offer


class Recorder:
    """One sora_ffi connection and what its callbacks reported."""

    def __init__(self, sora, url):
        self.conn = sora.create_connection(signaling_urls=[url], role="sendrecv",
                                           channel_id="hostile", audio=False, video=False)
        self.disconnects: list = []
        self.pushes: list = []
        self.done = threading.Event()
        self.conn.on_disconnect = self._on_disconnect
        self.conn.on_push = self.pushes.append

    def _on_disconnect(self, code, message):
        self.disconnects.append((int(code), message))
        self.done.set()


class Scripts:
    """The fake server: connection /case/N plays script N after the client's connect, then
    closes the WebSocket when the client says disconnect."""

    def __init__(self):
        self.scripts: dict = {}
        self.played: dict = {}
        self.connects: dict = {}

    async def handler(self, fake, ws):
        case = ws.request.path.rsplit("/", 1)[-1]
        self.connects[case] = self.connects.get(case, 0) + 1
        await ws.recv()
        for frame in self.scripts[case](fake.url.replace("/signaling", f"/case/{case}")):
            await ws.send(frame)
        self.played.setdefault(case, threading.Event()).set()
        async for m in ws:
            if isinstance(m, str) and '"disconnect"' in m:
                await ws.close(1000, "")
                return


def run_cases(ffi, fake_ws_server, scripts: list, grace: float = 0.15) -> list:
    """Runs each script against a fresh connection (BATCH at a time); returns Recorders."""
    s = Scripts()
    fake = fake_ws_server(s.handler)
    sora = ffi.Sora()
    recorders = []
    for start in range(0, len(scripts), BATCH):
        batch = []
        for i, script in enumerate(scripts[start:start + BATCH], start):
            s.scripts[str(i)] = script
            s.played[str(i)] = threading.Event()
            r = Recorder(sora, fake.url.replace("/signaling", f"/case/{i}"))
            r.conn.connect()
            batch.append((str(i), r))
        for case, r in batch:
            s.played[case].wait(5)
        time.sleep(grace)  # let the client act on the last message
        for case, r in batch:
            r.conn.disconnect()
        for case, r in batch:
            assert r.done.wait(5), f"case {case}: no on_disconnect within 5 s of disconnect()"
        recorders.extend(r for _, r in batch)
    time.sleep(0.2)  # a second on_disconnect would arrive by now
    for r in recorders:
        r.conn = None
    return recorders


def frames(*items):
    return lambda url: list(items)


def test_hostile_messages_before_the_offer(ffi, fake_ws_server, real_offer):
    """300 seeded hostile first messages (mutated offers and redirects, garbage, binary,
    huge, deep): exactly one on_disconnect each, with a sensible code and a message."""
    rng = random.Random(11)
    redirect = {"type": "redirect", "location": "ws://127.0.0.1:1/signaling"}
    scripts = []
    for _ in range(CASES):
        kind = rng.randrange(10)
        if kind == 0:
            scripts.append(frames(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))))
        elif kind == 1:
            scripts.append(frames(rng.choice(["x" * 2_000_000, DEEP, json.dumps([[]] * 100000)])))
        else:
            base = redirect if kind == 2 else real_offer
            scripts.append(frames(mutate_message(rng, base)))
    t0 = time.monotonic()
    recorders = run_cases(ffi, fake_ws_server, scripts)
    assert time.monotonic() - t0 < 60
    for i, r in enumerate(recorders):
        assert len(r.disconnects) == 1, (i, r.disconnects)
        code, message = r.disconnects[0]
        assert code in SENSIBLE and message, (i, code, message)
    codes = [r.disconnects[0][0] for r in recorders]
    assert codes.count(INTERNAL_ERROR) > CASES // 4  # the garbage was refused as such


def test_hostile_messages_after_the_offer(ffi, fake_ws_server, real_offer):
    """A real offer, then 1-4 seeded hostile messages (notify, push, ping, re-offer,
    candidate, redirect, switched, close, garbage, binary): exactly one on_disconnect each,
    and the sessions where no message could end them (everything but re-offers, close and
    switched mutants) end only by our disconnect(), with CLOSE_SUCCEEDED."""
    rng = random.Random(23)
    follow = [
        {"type": "notify", "event_type": "connection.created", "connection_id": "X",
         "metadata": {"a": [1, 2]}, "channel_connections": 2},
        {"type": "push", "data": {"k": "v"}},
        {"type": "ping", "stats": True},
        {"type": "re-offer", "sdp": real_offer["sdp"]},
        {"type": "candidate", "candidate": "candidate:1 1 UDP 1 127.0.0.1 9 typ host", "sdpMid": "0"},
        {"type": "redirect", "location": "ws://127.0.0.1:1/signaling"},
        {"type": "switched", "ignore_disconnect_websocket": False},
        {"type": "close", "code": 1000, "reason": "x"},
    ]
    offer = json.dumps(real_offer)
    scripts, may_end = [], []
    for _ in range(CASES):
        msgs = [rng.choice(follow) for _ in range(rng.randrange(1, 5))]
        texts = [mutate_message(rng, m) for m in msgs]
        if rng.random() < 0.1:
            texts.append(b"\x00binary")
        scripts.append(frames(offer, *texts))
        may_end.append(any(m["type"] in ("re-offer", "close", "switched") for m in msgs))
    recorders = run_cases(ffi, fake_ws_server, scripts)
    for i, (r, ends) in enumerate(zip(recorders, may_end)):
        assert len(r.disconnects) == 1, (i, r.disconnects)
        code, message = r.disconnects[0]
        assert code in SENSIBLE and message, (i, code, message)
        if not ends:
            assert code == CLOSE_SUCCEEDED, (i, code, message)


@pytest.mark.parametrize("bad", [
    '{"type": "notify", "event_type": "connection.created", "metadata": NaN}',
    '{"type": "notify", "event_type": "connection.created", "metadata": {"x": 1e999}}',
    '{"type": "notify", "metadata": "\\ud800"}',
    '{"type": "notify", "event_type": "conn',
    '[1, 2]',
    '{"no": "type"}',
    DEEP,
], ids=["nan", "overflow", "surrogate", "truncated", "array", "no-type", "deep"])
def test_one_malformed_notify_does_not_end_the_session(ffi, fake_ws_server, real_offer, bad):
    """Regression (issue 7 §1): after a good offer, one message the client cannot parse is
    logged and ignored (as sora-js-sdk does); the next push still arrives and the session
    ends only when we disconnect."""
    push = json.dumps({"type": "push", "data": "after"})
    [r] = run_cases(ffi, fake_ws_server, [frames(json.dumps(real_offer), bad, push)], grace=0.3)
    assert r.pushes and json.loads(r.pushes[0])["data"] == "after"
    assert r.disconnects[0][0] == CLOSE_SUCCEEDED, r.disconnects


def test_redirect_loop_ends_after_three(ffi, fake_ws_server, clients):
    """Regression (issue 7 §3): a server redirecting every connect (redirect: true too) to
    itself is followed 3 times, then the session ends with INTERNAL_ERROR."""
    s = Scripts()
    s.scripts["0"] = lambda own_url: [json.dumps({"type": "redirect", "location": own_url})]
    s.played["0"] = threading.Event()
    fake = fake_ws_server(s.handler)
    url = fake.url.replace("/signaling", "/case/0")
    c = clients(ffi, url, "loop")
    t0 = time.monotonic()
    c.connect(wait=False)
    code, message = c.wait_disconnected(5)
    assert time.monotonic() - t0 < 3
    assert code == INTERNAL_ERROR and "Too many redirects" in message, message
    assert s.connects["0"] == 4  # the first connect and three redirects
