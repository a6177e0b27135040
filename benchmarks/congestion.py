"""Congestion control side by side: how fast a 2.5 Mbps VP8 sender of each SDK adapts to a
1 Mbps bottleneck and recovers when the link widens to 5 Mbps (issue 11).

The sender runs in a network namespace (tests/test_e2e_loss.LossyLink: a veth pair, no
loss) whose egress is shaped with `tc tbf rate 1mbit burst 16kb latency 500ms`, then
`rate 5mbit` (`--queue-ms` sets another queue); the dev server and a sora_ffi receiver run on the host side. Every 0.5 s the
sender's own stats are sampled: `availableOutgoingBitrate` (candidate-pair), the
`targetBitrate` and bytes of its outbound-rtp.

Needs root (ip netns, tc). Run: PYTHONPATH=. .ci/python benchmarks/congestion.py [--runs 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from test_e2e_loss import LossyLink, _peer, _report  # noqa: E402
from sora_ffi.devserver import DevServer  # noqa: E402

NARROW, WIDE = 12, 12


def run(sdk: str, channel: str, queue_ms: int) -> list:
    link = LossyLink(0.0)
    try:
        with DevServer(host=link.host_ip, bind_address=link.host_ip, ping_interval=5.0) as server:
            frames = (NARROW + WIDE) * 30
            recv = _peer("recv", server.signaling_url, channel, None, "VP8", "--frames", str(frames))
            send = _peer("send", server.signaling_url, channel, link.ns, "VP8", "--frames", str(frames),
                         "--bitrate", "2500", "--sample-stats", "--sdk", sdk)
            try:
                link.shape("1mbit", queue_ms)
                send.stdin.write("go\n")
                send.stdin.flush()
                time.sleep(NARROW)
                link.shape("5mbit", queue_ms)
                _report(recv, NARROW + WIDE + 30)
                return _report(send, NARROW + WIDE + 30)["samples"]
            finally:
                for p in (recv, send):
                    if p.poll() is None:
                        p.kill()
    finally:
        link.close()


def summary(samples: list) -> dict:
    def rate(a, b):
        return (b["bytes"] - a["bytes"]) * 8 / (b["t"] - a["t"]) / 1000

    sent = [(b["t"], rate(a, b)) for a, b in zip(samples, samples[1:])]
    estimate = [(s["t"], (s.get("estimate") or 0) / 1000) for s in samples]
    below = next((t for t, r in sent if t > 0.5 and r < 1000), None)
    narrow = [r for t, r in sent if 6 <= t < NARROW]
    narrow_estimate = [v for t, v in estimate if 6 <= t < NARROW]
    back = next((t - NARROW for t, v in estimate if t > NARROW and v >= 2400), None)
    wide = [r for t, r in sent if t >= NARROW + WIDE - 3]
    return {
        "first_sent_below_1mbps_s": below,
        "narrow_sent_kbps": sum(narrow) / len(narrow) if narrow else None,
        "narrow_estimate_kbps": (min(narrow_estimate), max(narrow_estimate)) if narrow_estimate else None,
        "estimate_2400_after_widening_s": back,
        "last_3s_sent_kbps": sum(wide) / len(wide) if wide else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--queue-ms", type=int, default=500, help="the bottleneck's queue (tbf latency)")
    args = ap.parse_args()
    for n in range(args.runs):
        for sdk in ("sora_ffi", "sora_sdk"):
            samples = run(sdk, f"cc-bench-{sdk}-{os.getpid()}-{n}", args.queue_ms)
            if args.verbose:
                for s in samples:
                    print(f"  {s['t']:.1f} target {(s.get('target') or 0) / 1000:.0f} "
                          f"estimate {(s.get('estimate') or 0) / 1000:.0f}")
            def fmt(v):
                if isinstance(v, tuple):
                    return tuple(round(x) for x in v)
                return round(v, 2) if isinstance(v, float) else v
            print(sdk, {k: fmt(v) for k, v in summary(samples).items()}, flush=True)


if __name__ == "__main__":
    main()
