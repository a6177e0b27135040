"""What a sender's own bandwidth estimate reaches through the dev server (transport-cc).

A 3-layer VP8 simulcast sender (`video_bit_rate` 2500, the 1280x720 test pattern at 30 fps,
no receiver) of the SDK given; after ``--seconds`` its candidate pair's
``availableOutgoingBitrate`` and each layer's ``targetBitrate`` are printed. The dev server
announces the sum of the layers' ``maxBitrate`` by REMB (2333 kbps): a sender whose
estimate reaches it is limited only by that ceiling. ``--runs`` repeats it, each run with a
dev server of its own.

    .ci/python benchmarks/sender_estimate.py [--sdk sora_sdk] [--seconds 12] [--runs 5]
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
W, H, FPS = 1280, 720, 30


def child(sdk_name: str, seconds: float) -> None:
    sys.path.insert(0, HERE)
    import media
    from sora_ffi import testpattern
    from sora_ffi.devserver import DevServerProcess

    sdk = importlib.import_module(sdk_name)
    with DevServerProcess("--ping-interval", "0") as server:
        sora = media.new_sora(sdk, None)
        source = sora.create_video_source()
        conn = media.connect(sdk, sora, server.signaling_url, "estimate", "sendonly", audio=False,
                             video_codec_type="VP8", video_bit_rate=2500, video_source=source,
                             degradation_preference=sdk.SoraDegradationPreference.DISABLED, simulcast=True)
        scenes = [testpattern.scene(i, W, H) for i in range(testpattern.PERIOD)]
        t0 = time.perf_counter()
        for i in range(int(seconds * FPS)):
            delay = t0 + i / FPS - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            source.on_captured(testpattern.stamp(scenes[i % testpattern.PERIOD].copy(), i, 0))
        stats = json.loads(conn.get_stats())
        pair = [s for s in stats if s.get("type") == "candidate-pair" and s.get("nominated")]
        layers = {s.get("rid"): round(s.get("targetBitrate", 0) / 1000)
                  for s in stats if s.get("type") == "outbound-rtp" and s.get("kind") == "video"}
        print(json.dumps({"available_kbps": round(pair[0].get("availableOutgoingBitrate", 0) / 1000) if pair else None,
                          "target_kbps": dict(sorted(layers.items()))}), flush=True)
        os._exit(0)  # sora_sdk cannot be torn down (tests/conftest.py)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdk", default="sora_sdk")
    ap.add_argument("--seconds", type=float, default=12)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        return child(args.sdk, args.seconds)
    got = []
    for run in range(args.runs):
        out = subprocess.run([sys.executable, __file__, "--child", "--sdk", args.sdk, "--seconds", str(args.seconds)],
                             capture_output=True, text=True, timeout=args.seconds + 60)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"run {run + 1} failed ({out.returncode}): {out.stderr[-2000:]}")
        r = json.loads(lines[-1])
        got.append(r["available_kbps"])
        print(f"run {run + 1}: available {r['available_kbps']} kbps, layer targets {r['target_kbps']}", flush=True)
    if len(got) > 1:
        print(f"{args.sdk}: available kbps sorted {sorted(got)}, median {statistics.median(got)}")


if __name__ == "__main__":
    main()
