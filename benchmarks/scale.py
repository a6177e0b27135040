"""N recvonly audio connections in one process, sora_ffi vs the official sora_sdk.

The dev server and one sora_ffi sender (a 440 Hz tone) run in this process; each SDK's N
receivers run in a child process of their own (one Sora, N connections started in
batches, a SoraAudioSink per connection, every sink read every 100 ms). Reported per
child: connections established, CPU seconds per second, RSS, threads, and the audio each
connection received (share of real time) during the measurement.

    .ci/python benchmarks/scale.py [--n 10 100 300] [--seconds 10] [--official-max 300]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time

RATE = 48000


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(args) -> None:
    raise_fd_limit()
    sdk = importlib.import_module(args.sdk)
    sora = sdk.Sora()
    conns, sinks, keep = [], [], []
    t0 = time.monotonic()
    for start in range(0, args.n, args.batch):
        batch = []
        for _ in range(min(args.batch, args.n - start)):
            conn = sora.create_connection(signaling_urls=[args.url], role="recvonly",
                                          channel_id=args.channel, audio=True, video=False)
            tracks: list = []
            conn.on_track = tracks.append
            conn.connect()
            batch.append((conn, tracks))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(not t for _, t in batch):
            time.sleep(0.02)
        conns.extend(batch)
    connect_s = time.monotonic() - t0
    for conn, tracks in conns:
        if tracks:
            sinks.append(sdk.SoraAudioSink(tracks[0], RATE, 1))
    keep.extend(conns)
    time.sleep(1.0)
    for s in sinks:
        s.read(0, 0)  # start from an empty buffer
    received = [0] * len(sinks)
    ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    while time.monotonic() - w0 < args.seconds:
        time.sleep(0.1)
        for i, s in enumerate(sinks):
            ok, pcm = s.read(0, 0)
            if ok:
                received[i] += len(pcm)
    ru1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    wall = w1 - w0
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    shares = sorted(r / (RATE * wall) for r in received)
    out = {
        "sdk": args.sdk, "n": args.n, "connected": len(sinks), "connect_s": round(connect_s, 2),
        "cpu_per_s": round(cpu, 3), "rss_mib": round(rss_mib(), 1),
        "threads": len(os.listdir("/proc/self/task")),
        "audio_median": round(shares[len(shares) // 2], 3) if shares else 0,
        "audio_min": round(shares[0], 3) if shares else 0,
    }
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # sora_sdk cannot be torn down reliably (see tests/conftest.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10, 100, 300])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--batch", type=int, default=50, help="connections started at once")
    ap.add_argument("--official-max", type=int, default=300, help="largest N tried with sora_sdk")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--sdk", default="sora_ffi")
    ap.add_argument("--url")
    ap.add_argument("--channel")
    args = ap.parse_args()
    if args.child:
        args.n = args.n[0]
        child(args)
        return
    raise_fd_limit()
    import sora_ffi
    from sora_ffi import testpattern
    from sora_ffi.devserver import DevServer
    with DevServer(ping_interval=None) as server:
        sora = sora_ffi.Sora()
        source = sora.create_audio_source(1, RATE)
        channel = "scale"
        sender = sora.create_connection(signaling_urls=[server.signaling_url], role="sendonly",
                                        channel_id=channel, audio=True, audio_source=source)
        sender.connect()
        assert sender.wait_connected(10)
        feeder = testpattern.ToneFeeder(source, RATE).start()
        print("| N | sdk | connected | connect s | CPU s/s | RSS MiB | threads | audio median (min) |")
        print("|---|---|---|---|---|---|---|---|")
        for n in args.n:
            for name in ("sora_ffi", "sora_sdk"):
                if name == "sora_sdk" and n > args.official_max:
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "--child", "--sdk", name, "--n", str(n),
                       "--url", server.signaling_url, "--channel", channel, "--seconds", str(args.seconds),
                       "--batch", str(args.batch)]
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
                if not lines:
                    print(f"| {n} | {name} | failed (exit {p.returncode}) | | | | | |")
                    continue
                r = json.loads(lines[-1])
                print(f"| {n} | {name} | {r['connected']} | {r['connect_s']} | {r['cpu_per_s']} | {r['rss_mib']} "
                      f"| {r['threads']} | {r['audio_median']:.1%} ({r['audio_min']:.1%}) |", flush=True)
                time.sleep(2)  # the server lets the previous child's sessions go
        feeder.stop()
        sender.disconnect()


if __name__ == "__main__":
    main()
