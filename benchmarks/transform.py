"""Cost of an encoded transform (video), sora_ffi vs the official sora_sdk, same run.

A sendonly client (its own process, against a dev server in this one) pushes 1280x720 BGR
frames at 30 fps, VP8 2.5 Mbps, to a sora_ffi receiver, three ways: no transformer, a
Python `SoraVideoFrameTransformer` whose `on_transform` enqueues every frame unchanged, and
one that was short-circuited. Reported: process CPU seconds per media second, and the
transformer's cost per frame (CPU difference to "none" / frames encoded).

    .ci/python benchmarks/transform.py [--seconds 6] [--runs 3]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from media import connect  # noqa: E402

W, H, FPS = 1280, 720, 30
_KEEP: list = []


def run_sender(sdk, url, channel, seconds, mode):
    import numpy as np

    from sora_ffi import testpattern

    sora = sdk.Sora()
    source = sora.create_video_source()
    kw = {}
    in_callback = [0.0, 0]
    if mode != "none":
        t = sdk.SoraVideoFrameTransformer()

        def on_transform(frame, t=t):
            t0 = time.perf_counter()
            t.enqueue(frame)
            in_callback[0] += time.perf_counter() - t0
            in_callback[1] += 1

        t.on_transform = on_transform
        if mode == "short-circuit":
            t.start_short_circuiting()
        kw["video_frame_transformer"] = t
        _KEEP.append(t)
    conn = connect(sdk, sora, url, channel, "sendonly", audio=False, video_codec_type="VP8",
                   video_bit_rate=2500, video_source=source,
                   degradation_preference=sdk.SoraDegradationPreference.DISABLED, **kw)
    _KEEP.extend([sora, source, conn])
    scenes = [testpattern.scene(i, W, H) for i in range(testpattern.PERIOD)]
    frames = int(seconds * FPS)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(frames):
        delay = t0 + i / FPS - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        source.on_captured(np.ascontiguousarray(scenes[i % testpattern.PERIOD]))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - t0
    stats = [x for x in json.loads(conn.get_stats()) if x.get("type") == "outbound-rtp"]
    encoded = max((x.get("framesEncoded", 0) for x in stats), default=0)
    return {"cpu_per_s": cpu / wall, "cpu": cpu, "frames": encoded, "seconds": wall,
            "callbacks": in_callback[1],
            "enqueue_us": in_callback[0] / in_callback[1] * 1e6 if in_callback[1] else 0.0}


def child(args):
    sdk = importlib.import_module(args.sdk)
    out = run_sender(sdk, args.url, args.channel, args.seconds, args.mode)
    print(json.dumps(out), flush=True)
    os._exit(0)  # the official SDK may crash tearing down live objects


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--runs", type=int, default=3, help="runs per case, interleaved; medians")
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--sdk", default="sora_ffi")
    ap.add_argument("--mode", default="none")
    ap.add_argument("--url")
    ap.add_argument("--channel")
    args = ap.parse_args()
    if args.child:
        return child(args)
    import sora_ffi
    from sora_ffi.devserver import DevServer

    import statistics

    runs: dict = {}
    with DevServer() as server:
        for run, sdk, mode in [(n, s, m) for n in range(args.runs) for s in ("sora_ffi", "sora_sdk")
                               for m in ("none", "python", "short-circuit")]:
            if True:
                channel = f"bench-{sdk}-{mode}-{run}"
                rx = sora_ffi.Sora().create_connection(
                    signaling_urls=[server.signaling_url], role="recvonly", channel_id=channel,
                    audio=False)
                rx.connect()
                rx.wait_connected(10)
                p = subprocess.run([sys.executable, __file__, "--child", "--sdk", sdk, "--mode", mode,
                                    "--url", server.signaling_url, "--channel", channel,
                                    "--seconds", str(args.seconds)],
                                   capture_output=True, text=True, timeout=args.seconds + 60)
                rx.disconnect()
                line = [x for x in p.stdout.splitlines() if x.startswith("{")]
                if line:
                    runs.setdefault((sdk, mode), []).append(json.loads(line[-1]))
    results = {}
    for key, rs in runs.items():
        results[key] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
    print("| sdk | transformer | CPU s per media s | frames encoded | on_transform calls | "
          "enqueue() | CPU difference per frame |")
    print("|---|---|---|---|---|---|---|")
    for (sdk, mode), r in results.items():
        if r is None:
            print(f"| {sdk} | {mode} | failed | | | | |")
            continue
        base = results.get((sdk, "none"))
        cost = ""
        if base and mode != "none" and r["frames"]:
            per = (r["cpu"] / r["seconds"] - base["cpu"] / base["seconds"]) * r["seconds"] / r["frames"]
            cost = f"{per * 1e6:.0f} µs"
        enq = f"{r['enqueue_us']:.0f} µs" if r["callbacks"] else ""
        print(f"| {sdk} | {mode} | {r['cpu_per_s']:.3f} | {r['frames']:.0f} | {r['callbacks']:.0f} | "
              f"{enq} | {cost} |")


if __name__ == "__main__":
    main()
