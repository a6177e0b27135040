"""Media cost and latency, sora_ffi vs the official sora_sdk, through one dev server.

Each measured client runs in its own process (so process CPU time is its own) against a dev
server in another process:

* send: a sendonly client pushing 1280x720 BGR frames at 30 fps, VP8 at 2.5 Mbps, to a
  sora_ffi receiver. Reported: process CPU seconds per media second.
* recv: a recvonly client receiving the same stream from a sora_ffi sender, delivering BGR
  frames to a Python callback. Reported: CPU per media second, frame rate, glass-to-glass
  latency (send time written into each frame by sora_ffi.testpattern -> the receiver's
  callback), and the cost of getting the pixels as a numpy array (frame.data()).

    python benchmarks/media.py [--seconds 10] [--codec VP8] [--bitrate 2500]
    python benchmarks/media.py --codec H264 --openh264 ~/.cache/sora_ffi/openh264/libopenh264.so.2.6.0
    python benchmarks/media.py --simulcast      # three layers (320x180, 640x360, 1280x720)
    python benchmarks/media.py --simulcast --rounds 5   # the send pair 5 times, alternating

--rounds N measures the two senders N times, one after the other, and prints each round's
ratio and their median: a 2-core host's speed drifts from minute to minute, so one round
can be 10 % off either way.

With --simulcast the senders send r0, r1 and r2 (offer.encodings of a 2.5 Mbps
connection: 250, 750 and 2500 kbps) and the receivers ask for r2. --scalability-mode L1T3
(or L1T2, L1T1) puts that mode in each layer's offer.encodings entry (through a JWT's
simulcast_encodings: the dev server then runs with a JWT secret); without it the entries
say L1T1, as Sora's do.

H.264 runs both SDKs on the same OpenH264 library (the official one through a preference
naming CISCO_OPENH264, which it needs to use the library at all).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import jwt

HERE = os.path.dirname(os.path.abspath(__file__))
W, H, FPS = 1280, 720, 30
JWT_SECRET = "media-benchmark-secret-long-enough-for-hs256"
# Objects kept until the child exits with os._exit: sora_sdk 2025.4.0 segfaults destroying
# sinks/tracks of a live connection (see tests/conftest.py), so nothing is destroyed.
_KEEP: list = []


def access(channel: str, mode, sender: bool) -> dict:
    """create_connection's metadata for a dev server run with --jwt-secret (``mode`` given):
    a sender's token asks each layer for ``mode``."""
    if not mode:
        return {}
    claims = {"channel_id": channel, "exp": int(time.time() + 600)}
    if sender:
        claims["simulcast_encodings"] = [{"rid": rid, "scalabilityMode": mode} for rid in ("r0", "r1", "r2")]
    return {"metadata": {"access_token": jwt.encode(claims, JWT_SECRET, algorithm="HS256")}}


def connect(sdk, sora, url, channel, role, **kw):
    conn = sora.create_connection(signaling_urls=[url], role=role, channel_id=channel, **kw)
    own, connected = [], threading.Event()
    conn.on_set_offer = lambda text: own.append(json.loads(text)["connection_id"])

    def on_notify(text):
        m = json.loads(text)
        if m.get("event_type") == "connection.created" and own and m.get("connection_id") == own[0]:
            connected.set()

    conn.on_notify = on_notify
    conn.connect()
    if not connected.wait(15):
        raise SystemExit(f"{sdk.__name__}: not connected")
    return conn


def new_sora(sdk, openh264):
    """A Sora of `sdk`, with `openh264` (a library path) for H.264 when given."""
    if not openh264:
        return sdk.Sora()
    if sdk.__name__ == "sora_sdk":
        impl = sdk.SoraVideoCodecImplementation
        cap = sdk.get_video_codec_capability(openh264=openh264)
        pref = sdk.create_video_codec_preference_from_implementation(cap, impl.INTERNAL)
        pref.merge(sdk.create_video_codec_preference_from_implementation(cap, impl.CISCO_OPENH264))
        return sdk.Sora(openh264=openh264, video_codec_preference=pref)
    return sdk.Sora(openh264=openh264)


def _layers(stats: list) -> dict:
    return {s.get("rid", "-"): s for s in stats if s.get("type") == "outbound-rtp" and s.get("kind") == "video"}


def _available_kbps(stats: list):
    """The sender's own estimate: its nominated candidate pair's availableOutgoingBitrate."""
    pair = [s for s in stats if s.get("type") == "candidate-pair" and s.get("nominated")]
    return round(pair[0].get("availableOutgoingBitrate", 0) / 1000) if pair else None


def run_sender(sdk, url, channel, seconds, codec, bitrate, openh264=None, simulcast=False, mode=None):
    from sora_ffi import testpattern

    sora = new_sora(sdk, openh264)
    source = sora.create_video_source()
    # Both encode every frame at full size: no CPU adaptation, and libwebrtc would otherwise
    # scale 720p down at its 300 kbps start rate before any bandwidth estimate arrives.
    conn = connect(sdk, sora, url, channel, "sendonly", audio=False, video_codec_type=codec,
                   video_bit_rate=bitrate, video_source=source,
                   degradation_preference=sdk.SoraDegradationPreference.DISABLED, simulcast=simulcast,
                   **access(channel, mode, True))
    scenes = [testpattern.scene(i, W, H) for i in range(testpattern.PERIOD)]  # drawing is not measured
    time.sleep(1.0)  # let the receiver attach
    before = _layers(json.loads(conn.get_stats()))
    cpu0, t0 = time.process_time(), time.perf_counter()
    frames = int(seconds * FPS)
    for i in range(frames):
        due = t0 + i / FPS
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        img = testpattern.stamp(scenes[i % testpattern.PERIOD].copy(), i, int(time.time() * 1000))
        source.on_captured(img)
    cpu = time.process_time() - cpu0
    media = frames / FPS
    stats = json.loads(conn.get_stats())
    after = _layers(stats)
    layers = {rid: {"width": s.get("frameWidth"), "height": s.get("frameHeight"),
                    "fps": (s.get("framesEncoded", 0) - before.get(rid, {}).get("framesEncoded", 0)) / media,
                    "kbps": (s.get("bytesSent", 0) - before.get(rid, {}).get("bytesSent", 0)) * 8 / media / 1000,
                    "encoder": s.get("encoderImplementation"), "mode": s.get("scalabilityMode"),
                    "target_kbps": round(s.get("targetBitrate", 0) / 1000)}
              for rid, s in sorted(after.items())}
    time.sleep(1.0)
    conn.disconnect()
    return {"cpu_per_media_s": cpu / media, "frames_sent": frames, "layers": layers,
            "available_kbps": _available_kbps(stats)}


def run_receiver(sdk, url, channel, seconds, openh264=None, simulcast=False, mode=None):
    from sora_ffi import testpattern

    sora = new_sora(sdk, openh264)
    lock = threading.Lock()
    got = []  # (index, latency_ms, data_cost_s)
    sinks = []
    sizes: set = set()
    first = threading.Event()

    def on_frame(frame):
        t = time.perf_counter()
        img = frame.data()
        cost = time.perf_counter() - t
        code = testpattern.read_code(img, W)  # the official sender may scale the picture down
        now_ms = int(time.time() * 1000)
        if code is not None:
            idx, sent_ms = code
            with lock:
                got.append((idx, (now_ms - sent_ms) & 0xFFFFFFFF, cost))
                sizes.add(f"{img.shape[1]}x{img.shape[0]}")
            first.set()

    tracks = []
    track_seen = threading.Event()

    def on_track(track):  # sinks are made on this thread: sora_sdk crashes making them in callbacks
        if track.kind == "video":
            tracks.append(track)
            track_seen.set()

    extra = {"simulcast_rid": "r2", **access(channel, mode, False)} if simulcast else {}
    conn = sora.create_connection(signaling_urls=[url], role="recvonly", channel_id=channel, audio=True, video=True,
                                  **extra)
    conn.on_track = on_track
    conn.connect()
    if not track_seen.wait(20):
        raise SystemExit(f"{sdk.__name__}: no video track")
    sink = sdk.SoraVideoSink(tracks[0])
    sink.on_frame = on_frame
    sinks.append(sink)
    if not first.wait(20):
        raise SystemExit(f"{sdk.__name__}: no video frames received")
    cpu0, t0 = time.process_time(), time.perf_counter()
    with lock:
        n0 = len(got)
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    with lock:
        window = got[n0:]
    # no disconnect: the child exits right after reporting, and the server sees the WebSocket go
    _KEEP.extend([sora, conn, tracks, sinks])
    lat = sorted(x[1] for x in window)
    idx = [x[0] for x in window]
    in_order = sum(1 for a, b in zip(idx, idx[1:]) if b > a) / max(1, len(idx) - 1)
    media = wall  # the stream is 30 fps real time
    return {
        "cpu_per_media_s": cpu / media,
        "fps": len(window) / wall,
        "latency_ms_median": statistics.median(lat) if lat else None,
        "latency_ms_p95": lat[int(0.95 * (len(lat) - 1))] if lat else None,
        "in_order": in_order,
        "data_cost_us_median": statistics.median(x[2] for x in window) * 1e6 if window else None,
        "sizes": sorted(sizes),
    }


def child(args):
    sdk = importlib.import_module(args.sdk)
    if args.role == "send":
        r = run_sender(sdk, args.url, args.channel, args.seconds, args.codec, args.bitrate, args.openh264,
                       args.simulcast, args.scalability_mode)
    else:
        r = run_receiver(sdk, args.url, args.channel, args.seconds, args.openh264, args.simulcast,
                         args.scalability_mode)
    print(json.dumps(r), flush=True)
    # sora_sdk 2025.4.0 may crash tearing down live objects at interpreter exit
    # (see tests/conftest.py); the result is out, so leave without teardown.
    os._exit(0)


def spawn(role, sdk, url, channel, args):
    cmd = [sys.executable, __file__, "--child", role, "--sdk", sdk, "--url", url, "--channel", channel,
           "--seconds", str(args.seconds), "--codec", args.codec, "--bitrate", str(args.bitrate)]
    if args.openh264:
        cmd += ["--openh264", args.openh264]
    if args.simulcast:
        cmd.append("--simulcast")
    if args.scalability_mode:
        cmd += ["--scalability-mode", args.scalability_mode]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def result(p):
    out, _ = p.communicate(timeout=120)
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"child {p.args[3:6]} failed ({p.returncode}): {out}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--codec", default="VP8")
    ap.add_argument("--bitrate", type=int, default=2500)
    ap.add_argument("--openh264", default=None, help="OpenH264 library path (needed for --codec H264)")
    ap.add_argument("--simulcast", action="store_true", help="send three simulcast layers")
    ap.add_argument("--scalability-mode", choices=["L1T1", "L1T2", "L1T3"],
                    help="with --simulcast: the scalabilityMode of every layer's offer.encodings entry")
    ap.add_argument("--rounds", type=int, default=1, help="measure the senders this many times, alternating")
    ap.add_argument("--child", choices=["send", "recv"])
    ap.add_argument("--sdk", default="sora_ffi")
    ap.add_argument("--url")
    ap.add_argument("--channel")
    args = ap.parse_args()
    if args.scalability_mode and not args.simulcast:
        ap.error("--scalability-mode needs --simulcast")
    if args.child:
        args.role = args.child
        return child(args)
    from sora_ffi.devserver import DevServerProcess

    auth = ("--jwt-secret", JWT_SECRET) if args.scalability_mode else ()
    with DevServerProcess("--ping-interval", "0", "-v", *auth, log=os.environ.get("SORA_BENCH_SERVER_LOG")) as server:
        url = server.signaling_url
        rows = {}
        send_ratios = []
        for round_ in range(max(1, args.rounds)):
            for n, sdk in enumerate(("sora_ffi", "sora_sdk")):
                # sending cost of `sdk`, received by sora_ffi
                ch = f"send-{n}-{round_}"
                r = spawn("recv", "sora_ffi", url, ch, args)
                s = spawn("send", sdk, url, ch, args)
                rows[("send", sdk)] = result(s)
                rx = result(r)
                rows[("send", sdk)].update(rx_sizes=rx["sizes"], rx_fps=rx["fps"], rx_in_order=rx["in_order"])
            f, o = rows[("send", "sora_ffi")]["cpu_per_media_s"], rows[("send", "sora_sdk")]["cpu_per_media_s"]
            send_ratios.append(f / o)
            if args.rounds > 1:
                print(f"round {round_ + 1}: send CPU s/media s sora_ffi {f:.3f} sora_sdk {o:.3f} ratio {f / o:.2f}",
                      flush=True)
        for n, sdk in enumerate(("sora_ffi", "sora_sdk")):
            # receiving cost of `sdk`, sent by sora_ffi
            ch = f"recv-{n}"
            r = spawn("recv", sdk, url, ch, args)
            s = spawn("send", "sora_ffi", url, ch, args)
            rows[("recv", sdk)] = result(r)
            result(s)
    print(f"{W}x{H} {FPS} fps {args.codec} {args.bitrate} kbps, {args.seconds:.0f} s per run, loopback"
          + (f", OpenH264 {args.openh264}" if args.openh264 else "") + (", simulcast" if args.simulcast else "")
          + (f" {args.scalability_mode}" if args.scalability_mode else ""))
    print(json.dumps({f"{k[0]}/{k[1]}": v for k, v in rows.items()}, indent=1))
    sf, so = rows[("send", "sora_ffi")], rows[("send", "sora_sdk")]
    rf, ro = rows[("recv", "sora_ffi")], rows[("recv", "sora_sdk")]
    print(f"send CPU s/media s: sora_ffi {sf['cpu_per_media_s']:.3f}  sora_sdk {so['cpu_per_media_s']:.3f}  "
          f"ratio {sf['cpu_per_media_s'] / so['cpu_per_media_s']:.2f}")
    if len(send_ratios) > 1:
        print(f"send CPU ratio over {len(send_ratios)} rounds: median {statistics.median(send_ratios):.2f} "
              f"(min {min(send_ratios):.2f}, max {max(send_ratios):.2f}; the line above is the last round)")
    print(f"recv CPU s/media s: sora_ffi {rf['cpu_per_media_s']:.3f}  sora_sdk {ro['cpu_per_media_s']:.3f}  "
          f"ratio {rf['cpu_per_media_s'] / ro['cpu_per_media_s']:.2f}")
    print(f"glass-to-glass ms (median/p95): sora_ffi {rf['latency_ms_median']}/{rf['latency_ms_p95']}  "
          f"sora_sdk {ro['latency_ms_median']}/{ro['latency_ms_p95']}")
    print(f"frame.data() µs (median): sora_ffi {rf['data_cost_us_median']:.1f}  sora_sdk {ro['data_cost_us_median']:.1f}")
    print(f"received fps: sora_ffi {rf['fps']:.1f}  sora_sdk {ro['fps']:.1f}")
    print(f"sizes sent by sora_ffi / sora_sdk (as received): {rows[('send', 'sora_ffi')]['rx_sizes']} / "
          f"{rows[('send', 'sora_sdk')]['rx_sizes']}")
    print(f"fps received from sora_ffi / sora_sdk senders: {sf['rx_fps']:.1f} / {so['rx_fps']:.1f}")
    for sdk in ("sora_ffi", "sora_sdk"):
        for rid, layer in rows[("send", sdk)]["layers"].items():
            print(f"  {sdk} layer {rid}: {layer['width']}x{layer['height']} {layer['fps']:.1f} fps "
                  f"{layer['kbps']:.0f} kbps {layer['mode']} ({layer['encoder']})")


if __name__ == "__main__":
    main()
