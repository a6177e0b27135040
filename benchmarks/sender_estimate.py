"""What a sender's own bandwidth estimate reaches through the dev server (transport-cc).

A 3-layer VP8 simulcast sender (`video_bit_rate` 2500, the 1280x720 test pattern at 30 fps,
no receiver; `media.py`'s sender) of the SDK given; after ``--seconds`` of frames its
candidate pair's ``availableOutgoingBitrate`` and each layer's ``targetBitrate`` are
printed. The dev server
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

HERE = os.path.dirname(os.path.abspath(__file__))


def child(sdk_name: str, seconds: float) -> None:
    sys.path.insert(0, HERE)
    import media
    from sora_ffi.devserver import DevServerProcess

    sdk = importlib.import_module(sdk_name)
    with DevServerProcess("--ping-interval", "0") as server:
        r = media.run_sender(sdk, server.signaling_url, "estimate", seconds, "VP8", 2500, simulcast=True)
        print(json.dumps({"available_kbps": r["available_kbps"],
                          "target_kbps": {rid: layer["target_kbps"] for rid, layer in r["layers"].items()}}), flush=True)
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
