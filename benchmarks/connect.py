"""Connection set-up time, sora_ffi vs the official sora_sdk, against one dev server
(``python -m sora_ffi.devserver`` in a process of its own, as a real Sora would be).

Measures, for each SDK in the same run (interleaved, same server), the time from
``connect()`` to the connection being established: its offer applied and the server's
``connection.created`` notify for its own connection id received (what the official SDK
and its tests call "connected"). Both SDKs are driven through the same official API
callbacks, so the method is identical. Connections are recvonly with audio and video.

Two figures:
  * sequential: ``--runs`` connects one after the other (median / p95 / max, failures);
  * concurrent: ``--concurrent N`` connections over ``--channels C`` channels started at
    once (each ``connect()`` on its own thread, released together), the time until the
    last one is established; repeated ``--rounds`` times.

    python benchmarks/connect.py [--runs 60] [--concurrent 100 --channels 10 --rounds 3]
                                 [--dc-signaling] [--sdk sora_ffi]
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import threading
import time

from scale import cpu_s  # this folder's helpers
from sora_ffi.devserver import DevServerProcess


class Probe:
    """One connection and the moment its own connection.created arrives."""

    def __init__(self, sora, url: str, channel: str, dc_signaling: bool) -> None:
        self.conn = sora.create_connection(
            signaling_urls=[url], role="recvonly", channel_id=channel, audio=True, video=True,
            data_channel_signaling=dc_signaling,
        )
        self.own_id: list[str] = []
        self.connected, self.ended = threading.Event(), threading.Event()
        self.connected_at = 0.0
        self.conn.on_set_offer = self._on_set_offer
        self.conn.on_notify = self._on_notify
        self.conn.on_disconnect = lambda code, message: self.ended.set()

    def _on_set_offer(self, text: str) -> None:
        self.own_id.append(json.loads(text)["connection_id"])

    def _on_notify(self, text: str) -> None:
        m = json.loads(text)
        if m.get("event_type") == "connection.created" and self.own_id and m.get("connection_id") == self.own_id[0]:
            self.connected_at = time.perf_counter()
            self.connected.set()

    def close(self) -> None:
        self.conn.disconnect()
        self.ended.wait(10)
        del self.conn


def measure_once(sora, url: str, channel: str, dc_signaling: bool) -> float | None:
    """ms from connect() to established; None when not established within 10 s."""
    probe = Probe(sora, url, channel, dc_signaling)
    start = time.perf_counter()
    probe.conn.connect()
    ok = probe.connected.wait(10)
    probe.close()
    return (probe.connected_at - start) * 1000 if ok else None


def measure_concurrent(sora, url: str, n: int, channels: int, tag: str, dc_signaling: bool,
                       server_pid: int) -> tuple[float, int, float, float]:
    """(ms until the last of n connections started together is established, how many were,
    CPU seconds this process and the server spent until then)."""
    probes = [Probe(sora, url, f"{tag}-{i % channels}", dc_signaling) for i in range(n)]
    go = threading.Barrier(n + 1)

    def run(p: Probe) -> None:
        go.wait()
        p.conn.connect()

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in probes]
    for t in threads:
        t.start()
    c0, s0 = cpu_s(), cpu_s(server_pid)
    go.wait()
    start = time.perf_counter()
    ok = [p.connected.wait(max(0.0, start + 20 - time.perf_counter())) for p in probes]
    c1, s1 = cpu_s(), cpu_s(server_pid)
    last = max((p.connected_at for p in probes if p.connected.is_set()), default=start)
    for t in threads:
        t.join(10)
    for p in probes:
        p.close()
    return (last - start) * 1000, sum(ok), c1 - c0, s1 - s0


def summary(samples: list[float]) -> tuple[float, float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], s[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=60, help="sequential connects per SDK (0: none)")
    ap.add_argument("--concurrent", type=int, default=100, help="connections started at once (0: none)")
    ap.add_argument("--channels", type=int, default=10, help="channels the concurrent ones spread over")
    ap.add_argument("--rounds", type=int, default=3, help="concurrent rounds per SDK")
    ap.add_argument("--dc-signaling", action="store_true", help="use DataChannel signaling")
    ap.add_argument("--sdk", action="append", choices=["sora_ffi", "sora_sdk"],
                    help="only this SDK (repeatable; default both)")
    args = ap.parse_args()
    sdks = [importlib.import_module(name) for name in (args.sdk or ["sora_ffi", "sora_sdk"])]
    names = [sdk.__name__ for sdk in sdks]
    seq: dict[str, list[float]] = {n: [] for n in names}
    failed = {n: 0 for n in names}
    conc: dict[str, list[tuple[float, int, float, float]]] = {n: [] for n in names}
    with DevServerProcess("--ping-interval", "0") as server:  # its own interpreter, as Sora would be
        url = server.signaling_url
        soras = {sdk.__name__: sdk.Sora() for sdk in sdks}
        for name in names:  # warm-up: the first connection pays one-off initialisation
            measure_once(soras[name], url, "warmup", args.dc_signaling)
        for i in range(args.runs):
            for name in names:
                ms = measure_once(soras[name], url, f"seq-{i}", args.dc_signaling)
                if ms is None:
                    failed[name] += 1
                else:
                    seq[name].append(ms)
        for r in range(args.rounds if args.concurrent else 0):
            for name in names:
                conc[name].append(measure_concurrent(soras[name], url, args.concurrent, args.channels,
                                                     f"conc-{r}", args.dc_signaling, server.pid))
    mode = "DataChannel signaling" if args.dc_signaling else "WebSocket signaling"
    print(f"connect() -> established, recvonly audio+video, {mode}, loopback")
    if args.runs:
        print(f"\nsequential, {args.runs} runs each")
        print(f"{'sdk':<10} {'median ms':>10} {'p95 ms':>10} {'max ms':>10} {'failed':>7}")
        for name in names:
            med, p95, mx = summary(seq[name]) if seq[name] else (float("nan"),) * 3
            print(f"{name:<10} {med:>10.1f} {p95:>10.1f} {mx:>10.1f} {failed[name]:>7}")
    if conc[names[0]]:
        print(f"\n{args.concurrent} started at once over {args.channels} channels, {args.rounds} rounds")
        print(f"{'sdk':<10} {'all established, ms (each round)':<34} {'established':>12}  "
              "CPU s until then: client / server (each round)")
        for name in names:
            times = " / ".join(f"{r[0]:.0f}" for r in conc[name])
            counts = " / ".join(str(r[1]) for r in conc[name])
            cpu = " / ".join(f"{r[2]:.2f}+{r[3]:.2f}" for r in conc[name])
            print(f"{name:<10} {times:<34} {counts:>12}  {cpu}")
    if len(names) == 2 and all(seq[n] for n in names):
        (fm, fp, _), (om, op, _) = summary(seq["sora_ffi"]), summary(seq["sora_sdk"])
        print(f"\nratio sora_ffi/sora_sdk: median {fm / om:.2f}, p95 {fp / op:.2f}")


if __name__ == "__main__":
    main()
