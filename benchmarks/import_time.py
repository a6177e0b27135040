"""`import sora_ffi` vs `import sora_sdk`: median of N cold interpreter starts each, with
byte code cached as in any installed package (the first, compiling start is not counted).

    .ci/python benchmarks/import_time.py [--runs 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CODE = "import time; t = time.perf_counter(); import {m}; print((time.perf_counter() - t) * 1000)"


def measure(module: str, runs: int) -> list:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", f"import {module}"], env=env, check=True)  # compile
    return [float(subprocess.run([sys.executable, "-c", CODE.format(m=module)], env=env, check=True,
                                 capture_output=True, text=True).stdout) for _ in range(runs)]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    print(f"| package | median | min | max | ({sys.version.split()[0]}, {args.runs} cold starts) |")
    print("|---|---|---|---|---|")
    for m in ("sora_ffi", "sora_sdk"):
        t = measure(m, args.runs)
        print(f"| {m} | {statistics.median(t):.1f} ms | {min(t):.1f} ms | {max(t):.1f} ms | |")


if __name__ == "__main__":
    main()
