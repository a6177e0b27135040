"""Resource leaks (scenario 12, issue 9): 2000 connect/disconnect cycles of sora_ffi in a fresh
subprocess (4 at a time) against one DevServer running in the test process. Threads
(threading and /proc/self/task), file descriptors (/proc/self/fd) and RSS (VmRSS) are
measured after a 100-cycle warm-up and at the end, and must come back to the baseline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")

CYCLES = 2000
WARMUP = 100
WORKERS = 4

SCRIPT = textwrap.dedent("""
    import gc, json, os, sys, threading, time
    import sora_ffi

    url, channel, cycles, warmup, workers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])

    def snapshot():
        gc.collect()
        with open("/proc/self/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        return {"threads": threading.active_count(),
                "tasks": len(os.listdir("/proc/self/task")),
                "fds": len(os.listdir("/proc/self/fd")),
                "rss_kb": rss}

    def settle(base, timeout=5.0):
        # native threads and sockets wind down asynchronously after on_disconnect
        deadline = time.monotonic() + timeout
        snap = snapshot()
        while time.monotonic() < deadline and (snap["tasks"] > base["tasks"]
                                               or snap["fds"] > base["fds"]):
            time.sleep(0.1)
            snap = snapshot()
        return snap

    errors = []
    counter = [0]
    lock = threading.Lock()

    def one_cycle(sora, n):
        conn = sora.create_connection(
            signaling_urls=[url], role=("sendrecv", "sendonly", "recvonly")[n % 3],
            channel_id=f"{channel}-{n % 7}", client_id=f"c{n}", audio=False, video=False,
            data_channel_signaling=bool(n % 2),
            data_channels=[{"label": "#leak", "direction": "sendrecv"}] if n % 2 else None)
        done = threading.Event()
        result = []
        msgs = []
        conn.on_disconnect = lambda code, msg: (result.append(int(code)), msgs.append(msg), done.set())
        conn.on_notify = lambda m: None
        conn.on_message = lambda label, data: None
        conn.connect()
        if not conn.wait_connected(10):
            errors.append(f"cycle {n}: not connected")
        elif n % 2:
            conn.send_data_channel("#leak", b"x" * 1000)
        conn.disconnect()
        if not done.wait(10) or result != [0]:
            errors.append(f"cycle {n}: disconnect {result} {msgs}")

    def worker(idx, count):
        shared = sora_ffi.Sora()
        for i in range(count):
            with lock:
                counter[0] += 1
                n = counter[0]
            # odd cycles: a fresh Sora (its dispatcher thread must go away again)
            one_cycle(sora_ffi.Sora() if n % 2 else shared, n)

    def run(total):
        per = total // workers
        ts = [threading.Thread(target=worker, args=(i, per)) for i in range(workers)]
        for t in ts: t.start()
        for t in ts: t.join()

    t0 = time.monotonic()
    run(warmup)
    time.sleep(0.3)
    base = settle(snapshot())
    t1 = time.monotonic()
    run(cycles - warmup)
    # tokio keeps an idle blocking-pool thread (a session's teardown runs there) for 10 s
    end = settle(base, timeout=12.0)
    t2 = time.monotonic()
    print(json.dumps({"base": base, "end": end, "errors": errors[:10], "n_errors": len(errors),
                      "cycles": counter[0], "warmup_s": t1 - t0, "cycles_s": t2 - t1}))
""")


def test_connect_disconnect_cycles_do_not_leak(make_server, tmp_path, channel_id):
    server = make_server(ping_interval=None)
    script = tmp_path / "leak.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), server.signaling_url, channel_id, str(CYCLES),
         str(WARMUP), str(WORKERS)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    base, end = r["base"], r["end"]
    print(f"\nleak check: {r['cycles']} cycles ({WORKERS} concurrent) in "
          f"{r['warmup_s'] + r['cycles_s']:.1f}s; after warm-up {base}; at the end {end}; "
          f"RSS growth {(end['rss_kb'] - base['rss_kb']) / 1024:.1f} MiB")
    assert r["cycles"] == CYCLES
    assert end["threads"] <= base["threads"] + 1, (base, end)
    assert end["tasks"] <= base["tasks"] + 2, (base, end)
    assert end["fds"] <= base["fds"] + 4, (base, end)
    assert end["rss_kb"] - base["rss_kb"] < 30 * 1024, (base, end)
    # and the server saw every session end
    assert wait_until(lambda: server.connections() == [], 10)
    # every cycle connected and disconnected cleanly (checked last, so that a failing
    # cycle does not hide the resource figures above)
    assert r["n_errors"] == 0, r["errors"]
