"""API misuse from many threads at once: 8 threads run seeded random calls (connect twice,
disconnect at any time, sends with bad labels/types/sizes, stats, waits, callbacks set to
junk, bad create_connection arguments) on shared connections. Every call returns or raises
a documented exception, nothing crashes or hangs, every connection that was started ends
with exactly one on_disconnect, and the dev server serves a normal client afterwards."""
from __future__ import annotations

import json
import random
import threading
import time

THREADS = 8
OPS_PER_THREAD = 60
EXPECTED = (TypeError, ValueError, RuntimeError)


class Tracked:
    def __init__(self, sora, server, channel_id):
        self.conn = sora.create_connection(
            signaling_urls=[server.signaling_url], role="sendrecv", channel_id=channel_id,
            audio=False, video=False, data_channel_signaling=True,
            data_channels=[{"label": "#m", "direction": "sendrecv"},
                           {"label": "#z", "direction": "sendrecv", "compress": True}])
        self.lock = threading.Lock()
        self.disconnects: list = []
        self.started = False
        self.conn.on_disconnect = self._on_disconnect

    def _on_disconnect(self, code, message):
        with self.lock:
            self.disconnects.append((int(code), message))


def random_op(rng: random.Random, t: Tracked, sora, server, channel_id) -> None:
    c = t.conn
    op = rng.randrange(12)
    if op == 0:
        t.started = True
        c.connect()  # a second call raises RuntimeError
    elif op == 1:
        c.disconnect()
    elif op == 2:
        c.send_data_channel(rng.choice(["#m", "#z", "#nope", "", "signaling", "\ud800"]),
                            rng.choice([b"x", b"", bytes(300_000), bytearray(b"y"),
                                        memoryview(b"z")]))
    elif op == 3:
        c.send_data_channel(rng.choice([None, 1, b"#m"]), rng.choice(["str", None, 1.5]))
    elif op == 4:
        json.loads(c.get_stats())
    elif op == 5:
        c.wait_connected(rng.choice([0, 0.01, 0.05, -1]))
    elif op == 6:
        setattr(c, rng.choice(["on_notify", "on_push", "on_message", "on_track"]),
                rng.choice([None, print, "junk", 42]))
    elif op == 7:
        _ = (c.connection_id, c.connected, repr(c))
    elif op == 8:
        sora.create_connection(signaling_urls=rng.choice([[], "ws://x", [1], None]),
                               role="sendrecv", channel_id=channel_id)
    elif op == 9:
        sora.create_connection(signaling_urls=[server.signaling_url],
                               role=rng.choice(["bogus", None, 5]), channel_id=channel_id)
    elif op == 10:
        sora.create_connection(signaling_urls=[server.signaling_url], role="sendrecv",
                               channel_id=channel_id, metadata={"x": float("nan")})
    else:
        time.sleep(rng.random() * 0.01)


def test_api_misuse_from_eight_threads(ffi, server, channel_id, clients):
    sora = ffi.Sora()
    tracked = [Tracked(sora, server, channel_id) for _ in range(6)]
    unexpected: list = []

    def worker(seed: int):
        rng = random.Random(seed)
        for _ in range(OPS_PER_THREAD):
            t = rng.choice(tracked)
            try:
                random_op(rng, t, sora, server, channel_id)
            except EXPECTED:
                pass
            except Exception as e:  # anything else is a defect
                unexpected.append(repr(e))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert not any(th.is_alive() for th in threads), "a call hung"
    assert time.monotonic() - t0 < 30
    assert not unexpected, unexpected[:5]
    for t in tracked:
        t.conn.disconnect()
    deadline = time.monotonic() + 10
    for t in tracked:
        if t.started:
            while not t.disconnects and time.monotonic() < deadline:
                time.sleep(0.02)
    time.sleep(0.3)  # a duplicate would arrive by now
    started = [t for t in tracked if t.started]
    assert started  # the seeds do start connections
    for t in started:
        assert len(t.disconnects) == 1, t.disconnects
        assert 0 <= t.disconnects[0][0] <= 8 and t.disconnects[0][1]
    for t in tracked:
        if not t.started:  # never connected: no session, so no on_disconnect
            assert t.disconnects == [], t.disconnects
    # The server still serves, and a fresh client works.
    a = clients(ffi, server, channel_id + "-after").connect()
    assert a.disconnect()[0] == 0
