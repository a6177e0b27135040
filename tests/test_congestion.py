"""Congestion control end to end (issue 11 §6): a sora_ffi sender at 2.5 Mbps behind a
1 Mbps bottleneck (tc tbf on what leaves a network namespace, with a 500 ms queue; this
kernel has no netem)
learns the path from the dev server's transport-cc feedback and settles below it, without
losing the frame rate or much of its packets.

Needs what the loss tests need (root, ip, iptables) and tc.
"""
from __future__ import annotations

import json
import shutil
import time

import pytest

from sora_ffi.devserver import DevServer
from test_e2e_loss import _peer, _report, lossy_link  # noqa: F401  (fixture)

NARROW_SECONDS = 10
WIDE_SECONDS = 10
SECONDS = NARROW_SECONDS + WIDE_SECONDS
FRAMES = SECONDS * 30


@pytest.fixture
def shaped_link(lossy_link):  # noqa: F811
    if shutil.which("tc") is None:
        pytest.fail("needs tc (iproute2)")
    return lossy_link


def _narrow_then_wide(link, channel_id, *send_args, queue_ms: int = 500) -> tuple:
    """A sora_ffi sender at 2.5 Mbps in the namespace, 1 Mbps for NARROW_SECONDS, then
    5 Mbps, behind a queue of ``queue_ms``; a receiver on the host side. (receiver's
    report, sender's report)."""
    with DevServer(host=link.host_ip, bind_address=link.host_ip, ping_interval=5.0) as server:
        url = server.signaling_url
        procs = []
        try:
            recv = _peer("recv", url, channel_id, None, "VP8", "--frames", str(FRAMES))
            procs.append(recv)
            send = _peer("send", url, channel_id, link.ns, "VP8", "--frames", str(FRAMES), "--bitrate", "2500",
                         "--sample-stats", *send_args)
            procs.append(send)
            link.shape("1mbit", queue_ms)
            send.stdin.write("go\n")
            send.stdin.flush()
            time.sleep(NARROW_SECONDS)
            link.shape("5mbit", queue_ms)
            return _report(recv, SECONDS + 30), _report(send, SECONDS + 30)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()


def _rates(samples: list, key=lambda s: s["bytes"]) -> list:
    """(t, kbps over the preceding sample interval) of each sample after the first."""
    return [(b["t"], (key(b) - key(a)) * 8 / (b["t"] - a["t"]) / 1000) for a, b in zip(samples, samples[1:])]


@pytest.mark.parametrize("queue_ms", [500, 200])
def test_a_sender_settles_below_a_1_mbps_bottleneck_and_grows_back_when_it_widens(shaped_link, channel_id, queue_ms):
    """Also behind a shallow 200 ms queue, which a keyframe sent at once overflows (the
    losses, retransmissions and keyframe requests once drove the estimate to 0.4 Mbps)."""
    received, sent = _narrow_then_wide(shaped_link, channel_id, queue_ms=queue_ms)
    samples = sent["samples"]
    print("\nt s, estimate kbps, encoder target kbps, sent kbps (last 0.5 s)")
    for s, (_, rate) in zip(samples[1:], _rates(samples)):
        print(f"{s['t']:.1f} {s['estimate'] / 1000:.0f} {s['target'] / 1000:.0f} {rate:.0f}")
    late = [s for s in samples if 5.0 <= s["t"] < NARROW_SECONDS]
    # The estimate climbs past the link until the queue's delay shows, then backs off: a
    # sawtooth of about 0.79-1.24 Mbps (measured; the longer a calm spell, the faster the
    # climb). What settles below the link is what is sent; the estimate stays near it.
    estimate = sum(s["estimate"] for s in late) / len(late)
    assert estimate < 1_050_000, [s["estimate"] for s in late]
    assert all(s["estimate"] < 1_350_000 for s in late), [s["estimate"] for s in late]
    first, last = late[0], late[-1]
    sent_kbps = (last["bytes"] - first["bytes"]) * 8 / (last["t"] - first["t"]) / 1000
    loss = (last["lost"] - first["lost"]) / max(1, last["packets"] - first["packets"])
    narrow_frames = range(FRAMES // 4, NARROW_SECONDS * 30)
    fps = sum(1 for i in narrow_frames if i not in set(received["missing"])) / (len(narrow_frames) / 30)
    print(f"5-10 s (1 Mbps): estimate {estimate / 1000:.0f} kbps, sent {sent_kbps:.0f} kbps, loss {loss:.1%}, "
          f"{fps:.1f} fps received")
    assert sent_kbps < 1000
    assert loss < 0.02
    assert fps >= 20
    # 5 Mbps from NARROW_SECONDS on: back at 2.5 Mbps (the configured bitrate) within 10 s
    back = next((s["t"] - NARROW_SECONDS for s in samples
                 if s["t"] > NARROW_SECONDS and s["estimate"] >= 2_400_000), None)
    wide_rates = [r for t, r in _rates(samples) if t >= SECONDS - 2]
    print(f"after the link widened: estimate at 2.4 Mbps after {back} s; sent {wide_rates} kbps in the last 2 s")
    assert back is not None and back <= 10
    assert sum(wide_rates) / len(wide_rates) >= 1800


def test_simulcast_drops_its_top_layer_behind_a_bottleneck_and_brings_it_back(shaped_link, channel_id):
    """Three layers (250, 583 and 1500 kbps of a 1280x720 source) behind 1 Mbps: r2 goes
    off first and r0 keeps flowing; when the link widens to 5 Mbps, r2 comes back."""
    _, sent = _narrow_then_wide(shaped_link, channel_id, "--simulcast")
    samples = sent["samples"]
    rates = {rid: _rates(samples, key=lambda s, rid=rid: s["layers"].get(rid, 0)) for rid in ("r0", "r1", "r2")}
    print("\nt s, estimate kbps, r0 r1 r2 kbps")
    for i, s in enumerate(samples[1:]):
        print(f"{s['t']:.1f} {s['estimate'] / 1000:.0f} " + " ".join(f"{rates[r][i][1]:.0f}" for r in rates))

    def mean(rid, lo, hi):
        vals = [r for t, r in rates[rid] if lo <= t < hi]
        return sum(vals) / len(vals)

    # r2 is off behind the bottleneck but for a try now and then (the sender, held at
    # what r0 and r1 take, tries above it after a calm spell; over-use ends the try)
    narrow_r2 = [r for t, r in rates["r2"] if 5 <= t < NARROW_SECONDS]
    assert sum(r < 100 for r in narrow_r2) >= 0.7 * len(narrow_r2), "r2 still sent behind 1 Mbps"
    # and the stats say why, as libwebrtc's do for a layer switched off by the estimate
    narrow = [s for s in samples if 5 <= s["t"] < NARROW_SECONDS]
    assert sum(s["reason"] == "bandwidth" for s in narrow) >= 0.7 * len(narrow), [s["reason"] for s in narrow]
    assert samples[-1]["durations"]["bandwidth"] > 3, samples[-1]["durations"]
    assert mean("r2", 5, NARROW_SECONDS) < 250
    assert mean("r0", 5, NARROW_SECONDS) > 100, "the lowest layer stopped"
    assert mean("r2", SECONDS - 3, SECONDS) > 800, "r2 did not come back"


@pytest.mark.parametrize("pref", ["MAINTAIN_FRAMERATE", "MAINTAIN_RESOLUTION", "BALANCED", "DISABLED"])
def test_a_low_bitrate_degrades_by_preference(ffi, server, channel_id, clients, pref):
    """300 kbps for a 960x528 source (issue 11): MAINTAIN_FRAMERATE sends at most 640x360 at
    the full rate, MAINTAIN_RESOLUTION keeps 960x528 at fewer frames, BALANCED gives up some
    of both, DISABLED neither; the receiver decodes what was sent."""
    from sora_ffi import testpattern
    from test_e2e_media import VideoReceiver

    receiver = clients(ffi, server, channel_id, "recvonly", video=True).connect()
    sora = ffi.Sora()
    source = sora.create_video_source()
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True, video_codec_type="VP8",
                     video_bit_rate=300, video_source=source,
                     degradation_preference=getattr(ffi.SoraDegradationPreference, pref)).connect()
    rx = VideoReceiver(ffi, receiver, 960)
    with testpattern.PatternFeeder(source, 960, 528, 30):
        receiver.wait_for(lambda: len(rx.indices) >= 20, 5, f"frames ({len(rx.indices)} so far)")
        import time
        time.sleep(1.5)  # a second of steady rate for framesPerSecond
        out = next(s for s in json.loads(sender.conn.get_stats())
                   if s.get("type") == "outbound-rtp" and s.get("kind") == "video")
    width, height, fps = out["frameWidth"], out["frameHeight"], out.get("framesPerSecond", 0)
    print(f"\n{pref} at 300 kbps: {width}x{height} {fps:.1f} fps, {out['qualityLimitationReason']}, "
          f"received sizes {rx.sizes}")
    assert out["targetBitrate"] <= 300_000
    durations = out["qualityLimitationDurations"]
    if pref == "MAINTAIN_FRAMERATE":
        assert width * height <= 640 * 360 and fps > 20
    elif pref == "MAINTAIN_RESOLUTION":
        assert (width, height) == (960, 528) and fps < 20
    elif pref == "BALANCED":
        assert 640 * 360 < width * height < 960 * 528 and fps < 25
    else:
        assert (width, height) == (960, 528) and fps > 20
    if pref == "DISABLED":
        assert out["qualityLimitationReason"] == "none"
        assert durations["bandwidth"] == 0 and durations["none"] > 1.5, durations
    else:
        # limited from the first frame on: the time is counted as the bandwidth's
        assert out["qualityLimitationReason"] == "bandwidth"
        assert durations["bandwidth"] > 1.5 and durations["none"] < 0.5, durations
    assert {(h, w) for h, w, _ in rx.sizes} == {(height, width)}
