"""Connection set-up time, sora_ffi vs the official sora_sdk, against one dev server.

Measures, for each SDK in the same run (interleaved, same server), the time from
``connect()`` to the connection being established: its offer applied and the server's
``connection.created`` notify for its own connection id received (what the official SDK
and its tests call "connected"). Both SDKs are driven through the same official API
callbacks, so the measurement method is identical.

    python benchmarks/connect.py [--runs 40] [--dc-signaling]
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import threading
import time

from sora_ffi.devserver import DevServer


def measure_once(sdk, sora, url: str, channel: str, dc_signaling: bool) -> float:
    conn = sora.create_connection(
        signaling_urls=[url], role="recvonly", channel_id=channel,
        data_channel_signaling=dc_signaling,
    )
    own_id: list[str] = []
    connected, ended = threading.Event(), threading.Event()

    def on_set_offer(text: str) -> None:
        own_id.append(json.loads(text)["connection_id"])

    def on_notify(text: str) -> None:
        m = json.loads(text)
        if m.get("event_type") == "connection.created" and own_id and m.get("connection_id") == own_id[0]:
            connected.set()

    conn.on_set_offer = on_set_offer
    conn.on_notify = on_notify
    conn.on_disconnect = lambda code, message: ended.set()
    start = time.perf_counter()
    conn.connect()
    ok = connected.wait(10)
    elapsed = time.perf_counter() - start
    conn.disconnect()
    ended.wait(10)
    del conn
    if not ok:
        raise RuntimeError(f"{sdk.__name__}: not connected within 10 s")
    return elapsed * 1000


def summary(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--dc-signaling", action="store_true", help="use DataChannel signaling")
    args = ap.parse_args()
    sdks = [importlib.import_module(name) for name in ("sora_ffi", "sora_sdk")]
    results: dict[str, list[float]] = {sdk.__name__: [] for sdk in sdks}
    with DevServer(ping_interval=None) as server:
        soras = {sdk.__name__: sdk.Sora() for sdk in sdks}
        for sdk in sdks:  # warm-up: first connection pays one-off initialisation
            measure_once(sdk, soras[sdk.__name__], server.signaling_url, "warmup", args.dc_signaling)
        for i in range(args.runs):
            for sdk in sdks:
                results[sdk.__name__].append(
                    measure_once(sdk, soras[sdk.__name__], server.signaling_url, f"bench-{i}", args.dc_signaling))
    mode = "DataChannel signaling" if args.dc_signaling else "WebSocket signaling"
    print(f"connect() -> established, recvonly, {mode}, {args.runs} runs each, loopback")
    print(f"{'sdk':<10} {'median ms':>10} {'p95 ms':>10}")
    figures = {name: summary(v) for name, v in results.items()}
    for name, (med, p95) in figures.items():
        print(f"{name:<10} {med:>10.1f} {p95:>10.1f}")
    (fm, fp), (om, op) = figures["sora_ffi"], figures["sora_sdk"]
    print(f"ratio sora_ffi/sora_sdk: median {fm / om:.2f}, p95 {fp / op:.2f}")


if __name__ == "__main__":
    main()
