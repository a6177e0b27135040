"""One media peer of the loss test, run as its own process (possibly inside a network
namespace with `ip netns exec`): ``send`` pushes the test pattern plus a 440 Hz tone,
``recv`` decodes them and measures. The last stdout line is a JSON report. Both print
``ready`` once connected; ``send`` then waits for a line on stdin before it starts.
``recv --sdk sora_sdk`` receives with the official SDK instead (a libwebrtc receiver).

    python3 tests/media_peer.py recv --url ws://10.1.2.1:5000/signaling --channel c --frames 150
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import threading
import time

import numpy as np

import sora_ffi
from sora_ffi import testpattern

TONE_HZ = 440
RATE = 48000


# The official SDK crashes when its objects are released in some orders (the tests keep
# them in conftest's graveyard): the receiver keeps them here and leaves with os._exit.
_KEEP: list = []


def _stats(conn) -> dict:
    return {f"{s['type']}:{s.get('kind', '')}": s for s in json.loads(conn.get_stats())}


def _connect(sora, args, role: str, **kwargs):
    conn = sora.create_connection(signaling_urls=[args.url], role=role,
                                  channel_id=args.channel, **kwargs)
    tracks: list = []
    conn.on_track = tracks.append
    if hasattr(conn, "wait_connected"):
        conn.connect()
        if not conn.wait_connected(10):
            sys.exit("connection failed")
        return conn, tracks
    # The official SDK has no wait: connected is the server's connection.created for us.
    ids: list = []
    created = threading.Event()

    def on_notify(raw: str) -> None:
        m = json.loads(raw)
        if m.get("event_type") == "connection.created" and m.get("connection_id") in ids:
            created.set()

    conn.on_set_offer = lambda offer: ids.append(json.loads(offer).get("connection_id"))
    conn.on_notify = on_notify
    conn.connect()
    if not created.wait(10):
        sys.exit("connection failed")
    return conn, tracks


def _read_units(path: str) -> list[bytes]:
    """Access units stored as 4-byte big-endian length + bytes (tests write them)."""
    data = open(path, "rb").read()
    units, at = [], 0
    while at < len(data):
        n = int.from_bytes(data[at:at + 4], "big")
        units.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return units


def send_units(args) -> dict:
    """--codec H265: the access units of --units through an encoded source, at 30 fps."""
    units = _read_units(args.units)
    sora = sora_ffi.Sora()
    source = sora.create_encoded_video_source(args.codec)
    conn, _ = _connect(sora, args, "sendonly", video=True, audio=False, video_bit_rate=args.bitrate,
                       video_source=source)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    start = time.time()
    for i, unit in enumerate(units):
        time.sleep(max(0.0, t0 + i / 30 - time.perf_counter()))
        source.push(unit, timestamp=start + i / 30)
    time.sleep(args.linger)
    out = _stats(conn)
    conn.disconnect()
    return {"frames_pushed": len(units), "dropped": source.dropped_frames,
            "keyframe_requests": source.keyframe_requests, "video": out.get("outbound-rtp:video", {})}


def recv_units(args) -> dict:
    """--codec H265: every access unit the track delivers (through an encoded transform), and
    which sent unit each one is byte for byte (-1: none, i.e. broken)."""
    units = {u: i for i, u in enumerate(_read_units(args.units))}
    sora = sora_ffi.Sora()
    conn, tracks = _connect(sora, args, "recvonly", video=True, audio=False)
    print("ready", flush=True)
    deadline = time.monotonic() + 15
    while not tracks and time.monotonic() < deadline:
        time.sleep(0.01)
    got: list = []
    transformer = sora_ffi.SoraVideoFrameTransformer()

    def on_transform(frame):
        got.append(units.get(frame.get_data().tobytes(), -1))
        transformer.enqueue(frame)

    transformer.on_transform = on_transform
    tracks[0].set_frame_transformer(transformer)
    # a stored stream cannot answer a keyframe request before its next keyframe: the test
    # starts the sender only once every unit from the first on will be seen
    print("subscribed" if tracks else "no track", flush=True)
    stats: dict = {}
    deadline = time.monotonic() + len(units) / 30 + 15
    while time.monotonic() < deadline and (not got or got[-1] < len(units) - 1):
        now = _stats(conn)
        if "inbound-rtp:video" in now:
            stats = now
        elif stats:
            break  # the sender has left
        time.sleep(0.1)
    time.sleep(0.3)
    conn.disconnect()
    return {"indices": list(got), "video": stats.get("inbound-rtp:video", {})}


def send(args) -> dict:
    if args.units:
        return send_units(args)
    sdk = importlib.import_module(args.sdk)
    sora = sdk.Sora(openh264=args.openh264) if args.sdk == "sora_ffi" else sdk.Sora()
    video = sora.create_video_source()
    audio = sora.create_audio_source(1, RATE)
    extra = {"simulcast": True} if args.simulcast else {}
    conn, _ = _connect(sora, args, "sendonly", video=True, audio=True, video_codec_type=args.codec,
                       video_bit_rate=args.bitrate, video_source=video, audio_source=audio, **extra)
    print("ready", flush=True)
    sys.stdin.readline()  # the test says when to start (after switching the loss on)
    feeder = testpattern.ToneFeeder(audio, RATE, TONE_HZ).start()
    scenes = [testpattern.scene(i, args.width, args.height) for i in range(testpattern.PERIOD)]
    t0 = time.perf_counter()
    # Frames after the measured ones: a loss in the last measured frame is only noticed (and
    # repaired) when later packets arrive, as in any live stream.
    pushed = args.frames + int(args.linger * 30)
    samples = []  # with --sample-stats: once a second, what congestion control sees
    for i in range(pushed):
        time.sleep(max(0.0, t0 + i / 30 - time.perf_counter()))
        img = scenes[i % testpattern.PERIOD].copy()
        video.on_captured(testpattern.stamp(img, i, int(time.time() * 1000)))
        if args.sample_stats and i % 15 == 14:
            samples.append(_cc_sample(conn, time.perf_counter() - t0))
    feeder.stop()
    out = _stats(conn)
    _KEEP.extend([sora, conn, video, audio])  # see _KEEP
    conn.disconnect()
    return {"frames_pushed": pushed, "video": out.get("outbound-rtp:video", {}),
            "audio": out.get("outbound-rtp:audio", {}), "samples": samples}


def _cc_sample(conn, t: float) -> dict:
    stats = json.loads(conn.get_stats())
    pair = next((s for s in stats if s.get("type") == "candidate-pair"), {})
    video = next((s for s in stats if s.get("type") == "outbound-rtp" and s.get("kind") == "video"), {})
    remote = next((s for s in stats if s.get("type") == "remote-inbound-rtp" and s.get("kind") == "video"), {})
    layers = {s["rid"]: s.get("bytesSent", 0) for s in stats
              if s.get("type") == "outbound-rtp" and s.get("kind") == "video" and s.get("rid")}
    return {"t": t, "estimate": pair.get("availableOutgoingBitrate"), "target": video.get("targetBitrate"),
            "bytes": video.get("bytesSent", 0), "packets": video.get("packetsSent", 0),
            "lost": remote.get("packetsLost", 0), "width": video.get("frameWidth"), "layers": layers,
            "reason": video.get("qualityLimitationReason"), "durations": video.get("qualityLimitationDurations")}


class _Video:
    def __init__(self, width: int):
        self.width = width
        self.lock = threading.Lock()
        self.arrivals: list = []  # (monotonic time, index or None)
        self.psnrs: list = []

    def on_frame(self, frame) -> None:
        img = frame.data()
        code = testpattern.read_code(img, self.width)
        index = None if code is None else code[0]
        with self.lock:
            self.arrivals.append((time.monotonic(), index))
            if index is not None and index % 3 == 0 and img.shape[1] == self.width:
                self.psnrs.append((index, testpattern.psnr(img, testpattern.scene(index, *img.shape[1::-1]))))


def _unreadable_after(arrivals: list) -> list:
    """For each unreadable picture, the index of the last readable one before it."""
    out, last = [], None
    for _, index in arrivals:
        if index is None:
            out.append(last)
        else:
            last = index
    return out


def _tone_presence(pcm: np.ndarray) -> float:
    """Share of 20 ms windows in which the tone is present (energy at TONE_HZ dominates)."""
    win = RATE // 50
    n = len(pcm) // win
    if n == 0:
        return 0.0
    w = pcm[: n * win].astype(np.float64).reshape(n, win)
    t = np.arange(win) / RATE
    ref = np.exp(-2j * np.pi * TONE_HZ * t)
    amp = np.abs(w @ ref) * 2 / win  # the tone's amplitude in each window
    return float(np.mean(amp > 2000))  # sent at 8000; Opus and concealment keep most of it


def recv(args) -> dict:
    if args.units:
        return recv_units(args)
    sdk = importlib.import_module(args.sdk)
    sora = sdk.Sora(openh264=args.openh264) if args.sdk == "sora_ffi" else sdk.Sora()
    conn, tracks = _connect(sora, args, "recvonly", video=True, audio=True)
    print("ready", flush=True)
    deadline = time.monotonic() + 15
    while len(tracks) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    video = _Video(args.width)
    vtrack = next(t for t in tracks if t.kind == "video")
    atrack = next(t for t in tracks if t.kind == "audio")
    vsink = sdk.SoraVideoSink(vtrack)
    vsink.on_frame = video.on_frame
    asink = sdk.SoraAudioSink(atrack, RATE, 1)
    _KEEP.extend([sora, conn, vsink, asink, tracks])  # see _KEEP
    pcm: list = []
    stats: dict = {}
    deadline = time.monotonic() + args.frames / 30 + 15
    while time.monotonic() < deadline:
        ok, chunk = asink.read(960, 0.2)
        if ok:
            pcm.append(chunk[:, 0])
        now = _stats(conn)
        if "inbound-rtp:video" in now:
            stats = now
        elif stats:
            break  # the sender has left
        with video.lock:
            if any(i is not None and i >= args.frames - 1 for _, i in video.arrivals):
                break
    conn.disconnect()
    with video.lock:
        arrivals = list(video.arrivals)
        psnrs = list(video.psnrs)
    arrivals = [(t, i) for t, i in arrivals if i is None or i < args.frames]
    indices = [i for _, i in arrivals if i is not None]
    times = [t for t, i in arrivals if i is not None]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    gaps = [b - a for a, b in zip(times, times[1:])]
    audio = np.concatenate(pcm) if pcm else np.zeros(0, np.int16)
    # the tone starts with the sender, a little after our first reads: skip to its first sign
    start = next((k for k in range(0, len(audio), RATE // 50)
                  if _tone_presence(audio[k:k + RATE // 50]) > 0), len(audio))
    return {
        "frames_sent": args.frames,
        "frames_decoded": len(arrivals),
        "unreadable": len(arrivals) - len(indices),
        "distinct": len(set(indices)),
        "missing": sorted(set(range(args.frames)) - set(indices)),
        "in_order": sum(1 for a, b in zip(indices, indices[1:]) if b > a) + bool(indices),
        "fps": (len(indices) - 1) / span if span else 0.0,
        "longest_gap_ms": max(gaps) * 1000 if gaps else None,
        "psnr_median": float(np.median([p for _, p in psnrs])) if psnrs else None,
        "psnr_min": min(p for _, p in psnrs) if psnrs else None,
        # (index, PSNR) of pictures under 25 dB; (None, last readable index) of unreadable ones
        "damaged": [(i, round(p, 1)) for i, p in psnrs if p < 25 and i < args.frames]
        + [(None, after) for after in _unreadable_after(arrivals)],
        "audio_seconds": len(audio[start:]) / RATE,
        "tone_presence": _tone_presence(audio[start:]),
        "video": stats.get("inbound-rtp:video", {}),
        "audio": stats.get("inbound-rtp:audio", {}),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["send", "recv"])
    p.add_argument("--url", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--bitrate", type=int, default=2500)
    p.add_argument("--codec", default="VP8")
    p.add_argument("--openh264", default=None, help="OpenH264 library (for --codec H264)")
    p.add_argument("--linger", type=float, default=1.0, help="seconds sent after --frames")
    p.add_argument("--sample-stats", action="store_true", help="send: sample congestion control every 0.5 s")
    p.add_argument("--simulcast", action="store_true", help="send: simulcast (r0, r1, r2)")
    p.add_argument("--units", default=None, help="access units to send as they are (--codec H265)")
    p.add_argument("--sdk", default="sora_ffi", choices=["sora_ffi", "sora_sdk"], help="the SDK that sends or receives")
    args = p.parse_args()
    if os.environ.get("MEDIA_PEER_LOG"):  # e.g. MEDIA_PEER_LOG=1 for the shim's INFO log on stderr
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        sora_ffi.enable_libwebrtc_log(sora_ffi.SoraLoggingSeverity(int(os.environ["MEDIA_PEER_LOG"])))
    report = send(args) if args.role == "send" else recv(args)
    print(json.dumps(report), flush=True)
    if args.sdk == "sora_sdk":
        os._exit(0)  # the report is out; the official SDK's teardown at exit is not under test


if __name__ == "__main__":
    main()
