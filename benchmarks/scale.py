"""N recvonly connections in one process, sora_ffi vs the official sora_sdk.

The dev server and one sora_ffi sender run in this process; each SDK's N receivers run in
a child process of their own (one Sora, N connections started in batches).

* ``--kind audio`` (default): the sender sends a 440 Hz tone; each receiver has a
  SoraAudioSink (48 kHz mono, or ``--rate``), every sink read every 100 ms. "media
  received" is the audio each connection read, as a share of real time.
* ``--kind video``: the sender sends VP8 640x360 at 30 fps (the stamped test pattern);
  each receiver has a SoraVideoSink whose on_frame counts decoded frames. "media
  received" is each connection's decoded frames as a share of the frames sent.

Reported per child: connections established, CPU seconds per second, RSS, threads, and
media received per connection (median and minimum) during the measurement.

    .ci/python benchmarks/scale.py [--kind audio|video] [--n 10 100 300] [--seconds 10]
                                   [--official-max 300] [--rate 48000]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Optional

RATE = 48000
VIDEO_W, VIDEO_H, FPS = 640, 360, 30


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: Optional[int] = None) -> float:
    """CPU seconds used so far by this process, or by process ``pid`` (from /proc)."""
    if pid is None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_variant(results: list) -> dict:
    """Child results grouped by their ``variant``, in the order first seen: name -> (the
    results without an error, the first error or None)."""
    rows: dict = {}
    for r in results:
        rows.setdefault(r.get("variant"), []).append(r)
    out = {}
    for name, rs in rows.items():
        ok = [r for r in rs if "error" not in r]
        out[name] = (ok, None if ok else rs[0]["error"])
    return out


def median(rows: list, key: str):
    """The median of ``key`` over ``rows`` (the upper one of an even count)."""
    values = sorted(r[key] for r in rows)
    return values[len(values) // 2]


def connect_receivers(sora, url: str, channel: str, n: int, batch: int, video: bool,
                      timeout: float = 30) -> tuple:
    """N recvonly connections started `batch` at a time: ([(connection, its tracks)],
    seconds until every batch had its track or `timeout` passed)."""
    conns: list = []
    t0 = time.monotonic()
    for start in range(0, n, batch):
        started = []
        for _ in range(min(batch, n - start)):
            conn = sora.create_connection(signaling_urls=[url], role="recvonly",
                                          channel_id=channel, audio=not video, video=video)
            tracks: list = []
            conn.on_track = tracks.append
            conn.connect()
            started.append((conn, tracks))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(not t for _, t in started):
            time.sleep(0.01)
        conns.extend(started)
    return conns, time.monotonic() - t0


def child(args) -> None:
    raise_fd_limit()
    sdk = importlib.import_module(args.sdk)
    sora = sdk.Sora()
    video = args.kind == "video"
    keep = []
    conns, connect_s = connect_receivers(sora, args.url, args.channel, args.n, args.batch, video)
    keep.extend(conns)
    live = [tracks[0] for _, tracks in conns if tracks]
    received = [0] * len(live)
    lock = threading.Lock()
    sinks = []
    for i, track in enumerate(live):
        if video:  # sinks are made on this thread: sora_sdk crashes making them in callbacks
            sink = sdk.SoraVideoSink(track)

            def on_frame(frame, i=i):
                with lock:
                    received[i] += 1

            sink.on_frame = on_frame
        else:
            sink = sdk.SoraAudioSink(track, args.rate, 1)
        sinks.append(sink)
    time.sleep(1.0)
    if not video:
        for s in sinks:
            s.read(0, 0)  # start from an empty buffer
    with lock:
        received[:] = [0] * len(received)
    ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    while time.monotonic() - w0 < args.seconds:
        time.sleep(0.1)
        if not video:
            for i, s in enumerate(sinks):
                ok, pcm = s.read(0, 0)
                if ok:
                    received[i] += len(pcm)
    ru1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    with lock:
        counted = list(received)
    wall = w1 - w0
    cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    per_second = FPS if video else args.rate
    shares = sorted(r / (per_second * wall) for r in counted)
    out = {
        "sdk": args.sdk, "n": args.n, "connected": len(sinks), "connect_s": round(connect_s, 2),
        "cpu_per_s": round(cpu, 3), "rss_mib": round(rss_mib(), 1),
        "threads": len(os.listdir("/proc/self/task")),
        "media_median": round(shares[len(shares) // 2], 3) if shares else 0,
        "media_min": round(shares[0], 3) if shares else 0,
    }
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # sora_sdk cannot be torn down reliably (see tests/conftest.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=("audio", "video"), default="audio")
    ap.add_argument("--n", type=int, nargs="+", default=[10, 100, 300])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--batch", type=int, default=50, help="connections started at once")
    ap.add_argument("--rate", type=int, default=RATE, help="the audio sinks' rate (Hz)")
    ap.add_argument("--official-max", type=int, default=300, help="largest N tried with sora_sdk")
    ap.add_argument("--child-timeout", type=float, default=600, help="seconds one child may take")
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
        channel = "scale"
        if args.kind == "video":
            source = sora.create_video_source()
            feeder = testpattern.PatternFeeder(source, VIDEO_W, VIDEO_H, FPS)
            media = dict(audio=False, video=True, video_codec_type="VP8", video_bit_rate=800,
                         video_source=source,
                         degradation_preference=sora_ffi.SoraDegradationPreference.DISABLED)
        else:
            source = sora.create_audio_source(1, RATE)
            feeder = testpattern.ToneFeeder(source, RATE)
            media = dict(audio=True, video=False, audio_source=source)
        sender = sora.create_connection(signaling_urls=[server.signaling_url], role="sendonly",
                                        channel_id=channel, **media)
        sender.connect()
        assert sender.wait_connected(10)
        feeder.start()
        print(f"| N | sdk | connected | connect s | CPU s/s | RSS MiB | threads | {args.kind} received, median (min) |")
        print("|---|---|---|---|---|---|---|---|")
        for n in args.n:
            for name in ("sora_ffi", "sora_sdk"):
                if name == "sora_sdk" and n > args.official_max:
                    continue
                cmd = [sys.executable, os.path.abspath(__file__), "--child", "--sdk", name, "--n", str(n),
                       "--url", server.signaling_url, "--channel", channel, "--seconds", str(args.seconds),
                       "--batch", str(args.batch), "--kind", args.kind, "--rate", str(args.rate)]
                try:
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
                except subprocess.TimeoutExpired:
                    print(f"| {n} | {name} | not done in {args.child_timeout:.0f} s | | | | | |", flush=True)
                    time.sleep(5)
                    continue
                lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
                if not lines:
                    print(f"| {n} | {name} | failed (exit {p.returncode}) | | | | | |")
                    continue
                r = json.loads(lines[-1])
                print(f"| {n} | {name} | {r['connected']} | {r['connect_s']} | {r['cpu_per_s']} | {r['rss_mib']} "
                      f"| {r['threads']} | {r['media_median']:.1%} ({r['media_min']:.1%}) |", flush=True)
                time.sleep(2)  # the server lets the previous child's sessions go
        feeder.stop()
        sender.disconnect()


if __name__ == "__main__":
    main()
