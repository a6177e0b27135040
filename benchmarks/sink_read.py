"""The cost of one SoraAudioSink.read(0, 0), sora_ffi vs the official sora_sdk.

The dev server and one sora_ffi tone sender run in this process; each SDK's receivers run
in a child process of their own and read every sink every 100 ms, as benchmarks/scale.py
does (so each read returns ~100 ms of audio). Reported per SDK: µs spent inside read() per
call, and frames per read.

    .ci/python benchmarks/sink_read.py [--n 100] [--seconds 4] [--rate 48000] [--runs 2]
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import time

import scale


def child(args) -> None:
    scale.raise_fd_limit()
    sdk = importlib.import_module(args.sdk)
    sora = sdk.Sora()
    conns, _ = scale.connect_receivers(sora, args.url, args.channel, args.n, 50, False)
    sinks = [sdk.SoraAudioSink(tracks[0], args.rate, 1) for _, tracks in conns if tracks]
    time.sleep(1.0)
    for s in sinks:
        s.read(0, 0)  # start from an empty buffer
    spent, calls, frames = 0.0, 0, 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        time.sleep(0.1)
        for s in sinks:
            t = time.perf_counter()
            _, pcm = s.read(0, 0)
            spent += time.perf_counter() - t
            calls += 1
            frames += len(pcm)
    print(json.dumps({"sdk": args.sdk, "sinks": len(sinks), "us_per_read": round(spent / max(calls, 1) * 1e6, 2),
                      "frames_per_read": round(frames / max(calls, 1))}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--child", action="store_true")
    p.add_argument("--sdk", default="sora_ffi")
    p.add_argument("--url")
    p.add_argument("--channel", default="read")
    args = p.parse_args()
    if args.child:
        child(args)
        return
    import sora_ffi
    from sora_ffi import testpattern
    from sora_ffi.devserver.process import DevServerProcess

    sdks = ["sora_ffi"] + (["sora_sdk"] if importlib.util.find_spec("sora_sdk") else [])
    print("| sdk | run | sinks | µs per read | frames per read |\n|---|---|---|---|---|")
    with DevServerProcess() as server:
        sora = sora_ffi.Sora()
        source = sora.create_audio_source(1, 48000)
        sender = sora.create_connection(signaling_urls=[server.signaling_url], role="sendonly", channel_id=args.channel,
                                        audio=True, video=False, audio_source=source)
        sender.connect()
        if not sender.wait_connected(10):
            raise SystemExit("the sender did not connect")
        with testpattern.ToneFeeder(source, 48000):
            for run in range(1, args.runs + 1):
                for sdk in sdks:  # alternating, so a host that changes speed moves both
                    out = subprocess.run([sys.executable, __file__, "--child", "--sdk", sdk, "--url", server.signaling_url,
                                          "--channel", args.channel, "--n", str(args.n), "--seconds", str(args.seconds),
                                          "--rate", str(args.rate)], capture_output=True, text=True, timeout=120)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    print(f"| {sdk} | {run} | {r['sinks']} | {r['us_per_read']} | {r['frames_per_read']} |")
        sender.disconnect()


if __name__ == "__main__":
    main()
