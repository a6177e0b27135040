"""H.265 (issue 10 §3): RFC 7798 packetization through the dev server, and encoded video
sources (`Sora.create_encoded_video_source`), which is how H.265 is sent where no engine
encodes it.

The bitstream is made at test time by Debian's x265 command-line encoder (GPL: used, never
shipped) from a moving gradient; each access unit is pushed into a sora_ffi sender, goes
through the dev server, and is read on a sora_ffi receiver from an encoded transform on its
track (no engine here decodes H.265). What arrives must be the same bytes, unit for unit.
Random loss against the depacketizer is covered by the Rust test
`h265_with_random_loss_never_emits_a_broken_access_unit` (the jitter buffer never emits a
damaged access unit; it waits for the next keyframe instead).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import nvidia_codecs

X265 = shutil.which("x265")
WIDTH, HEIGHT, FRAMES = 320, 240, 60
NAL_VPS, NAL_SPS, NAL_PPS, NAL_AUD, NAL_PREFIX_SEI = 32, 33, 34, 35, 39


def _require_x265() -> str:
    if X265 is None:
        if os.environ.get("SORA_FFI_REQUIRE_X265"):
            pytest.fail("x265 is required (SORA_FFI_REQUIRE_X265 is set) but not installed")
        pytest.skip("needs the x265 encoder (apt install x265)")
    return X265


def nal_units(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream (3- or 4-byte start codes), without start codes."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", stream)]
    units = []
    for k, begin in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(stream)
        unit = stream[begin:end]
        if k + 1 < len(starts) and unit.endswith(b"\x00"):
            unit = unit[:-1]  # the next unit's 4-byte start code
        units.append(unit)
    return units


def access_units(stream: bytes) -> list[bytes]:
    """Annex B H.265 split into access units (ITU-T H.265 §7.4.2.4.4: a VPS, SPS, PPS, AUD
    or prefix SEI after a picture's slices, or a slice that is the first of its picture,
    starts a new one), each re-serialized with 4-byte start codes."""
    aus: list[list[bytes]] = []
    seen_slice = False
    for unit in nal_units(stream):
        t = (unit[0] >> 1) & 0x3F
        first_slice = t <= 31 and unit[2] & 0x80
        starts = (t in (NAL_VPS, NAL_SPS, NAL_PPS, NAL_AUD, NAL_PREFIX_SEI) and seen_slice) or \
            (first_slice and seen_slice)
        if not aus or starts:
            aus.append([])
            seen_slice = False
        aus[-1].append(unit)
        seen_slice = seen_slice or t <= 31
    return [b"".join(b"\x00\x00\x00\x01" + u for u in au) for au in aus]


def is_irap(au: bytes) -> bool:
    return any(16 <= (u[0] >> 1) & 0x3F <= 23 for u in nal_units(au))


def encode_hevc(d, frames_count: int = FRAMES) -> list[bytes]:
    """`frames_count` access units of 320x240 H.265 made by x265 in folder `d` (a moving
    gradient; keyframe every 30 with VPS/SPS/PPS, no B-frames)."""
    x265 = _require_x265()
    y = (np.arange(WIDTH)[None, :] + np.arange(HEIGHT)[:, None]).astype(np.int32)
    frames = []
    for i in range(frames_count):
        luma = ((y + 5 * i) % 256).astype(np.uint8)
        chroma = np.full((HEIGHT // 2, WIDTH // 2), (40 + 3 * i) % 256, np.uint8)
        frames.append(luma.tobytes() + chroma.tobytes() + chroma.T.copy().T.tobytes())
    (d / "in.yuv").write_bytes(b"".join(frames))
    subprocess.run([x265, "--input", str(d / "in.yuv"), "--input-res", f"{WIDTH}x{HEIGHT}",
                    "--fps", "30", "--input-csp", "i420", "--preset", "ultrafast", "--tune",
                    "zerolatency", "--keyint", "30", "--no-open-gop", "--repeat-headers",
                    "--log-level", "error", "-o", str(d / "out.hevc")],
                   check=True, capture_output=True, timeout=60)
    return access_units((d / "out.hevc").read_bytes())


@pytest.fixture(scope="module")
def hevc(tmp_path_factory) -> list[bytes]:
    """FRAMES access units (see encode_hevc)."""
    aus = encode_hevc(tmp_path_factory.mktemp("hevc"))
    assert len(aus) == FRAMES, len(aus)
    assert is_irap(aus[0]) and is_irap(aus[30]) and not is_irap(aus[1])
    assert max(map(len, aus)) > 1200, "a keyframe needs fragmentation units"
    return aus


class Collector:
    """An encoded transform on the receiving track: records every access unit."""

    def __init__(self, sdk):
        self.t = sdk.SoraVideoFrameTransformer()
        self.frames: list[tuple[bytes, bool, int, str]] = []
        self.lock = threading.Lock()
        self.t.on_transform = self.on_transform

    def on_transform(self, frame):
        with self.lock:
            self.frames.append((frame.get_data().tobytes(), frame.is_key_frame,
                                frame.rtp_timestamp, frame.mime_type))
        self.t.enqueue(frame)


def h265_pair(ffi, server, channel_id, clients, **sender_kw):
    receiver = clients(ffi, server, channel_id, "recvonly", video=True).connect()
    sora = ffi.Sora()
    source = sora.create_encoded_video_source("H265")
    requests = threading.Event()
    source.on_keyframe_request = requests.set
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True,
                     video_source=source, **sender_kw).connect()
    track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "video"), None))
    collector = Collector(ffi)
    track.set_frame_transformer(collector.t)
    assert requests.wait(5), "a new connection asks the application for a keyframe"
    return sender, receiver, source, collector


def prime(source, rx, keyframe: bytes) -> int:
    """Pushes `keyframe` until the receiver has one, then forgets what it received; returns
    how many were pushed. The dev server forwards to a receiver only once that receiver's
    re-answer has set up its track, which can be after the sender's first frames; a
    receiver then asks for a keyframe (PLI), and this is the application answering it."""
    deadline = time.monotonic() + 5
    pushed = 0
    while not rx.frames and time.monotonic() < deadline:
        source.push(keyframe, keyframe=True, timestamp=time.time())
        pushed += 1
        until = time.monotonic() + 0.3
        while not rx.frames and time.monotonic() < until:
            time.sleep(0.01)
    assert rx.frames, "no keyframe reached the receiver"
    with rx.lock:
        rx.frames.clear()
    return pushed


def sent_video(client) -> dict:
    return next(s for s in json.loads(client.conn.get_stats())
                if s["type"] == "outbound-rtp" and s["kind"] == "video")


def push_all(source, aus, start: float, fps: int = 30):
    for i, au in enumerate(aus):
        source.push(au, keyframe=is_irap(au), timestamp=start + i / fps)
        time.sleep(1 / fps)


def test_h265_access_units_arrive_byte_identical(ffi, server, channel_id, clients, hevc):
    sender, receiver, source, rx = h265_pair(ffi, server, channel_id, clients,
                                             video_h265_params={"level_id": 93})
    sender_offer = sender.offer["sdp"]
    assert "a=rtpmap:104 H265/90000" in sender_offer and "level-id=93;profile-id=1" in sender_offer
    primed = prime(source, rx, hevc[0])
    push_all(source, hevc, time.time())
    receiver.wait_for(lambda: len(rx.frames) >= FRAMES, 5, f"{FRAMES} access units")
    time.sleep(0.2)
    with rx.lock:
        got = list(rx.frames)
    assert len(got) == FRAMES
    for i, (data, key, ts, mime) in enumerate(got):
        assert data == hevc[i], f"access unit {i} differs ({len(data)} vs {len(hevc[i])} bytes)"
        assert key == is_irap(hevc[i]) and mime == "video/H265"
    # RTP timestamps follow the capture times given (90 kHz, 30 fps).
    steps = {(got[i + 1][2] - got[i][2]) % 2**32 for i in range(FRAMES - 1)}
    assert steps <= {2999, 3000, 3001}, steps
    out = sent_video(sender)
    assert out["encoderImplementation"] == "passthrough"
    assert out["framesSent"] == FRAMES + primed and out["keyFramesEncoded"] == 2 + primed
    codec = next(s for s in json.loads(sender.conn.get_stats()) if s["id"] == out["codecId"])
    assert codec["mimeType"] == "video/H265"
    assert source.dropped_frames == 0


def test_h265_sender_starts_at_a_keyframe_and_answers_pli(ffi, server, channel_id, clients, hevc,
                                                          caplog):
    """Deltas before the first keyframe are not sent. A sink on the track (which cannot
    decode H.265 here: it says so) makes the receiver ask for a keyframe (PLI); the server
    forwards it and it reaches the application as on_keyframe_request."""
    sender, receiver, source, rx = h265_pair(ffi, server, channel_id, clients)
    t0 = time.time()
    for i in range(5, 10):  # deltas nothing could decode: not sent
        source.push(hevc[i], timestamp=t0 + i / 30)
    assert source.dropped_frames == 5
    prime(source, rx, hevc[0])
    push_all(source, hevc[30:40], time.time())
    receiver.wait_for(lambda: len(rx.frames) >= 10, 5, "10 access units")
    with rx.lock:
        assert [f[0] for f in rx.frames[:10]] == hevc[30:40]
    requests = threading.Event()
    source.on_keyframe_request = requests.set
    time.sleep(0.15)  # past the 100 ms merge window of keyframe requests
    track = next(t for t in receiver.tracks if t.kind == "video")
    sink = ffi.SoraVideoSink(track)
    decoded = []
    sink.on_frame = decoded.append
    caplog.set_level(logging.ERROR, logger="sora_ffi")
    assert requests.wait(5), "the sink's keyframe request reached the sending application"
    push_all(source, hevc[:3], time.time())
    if "H265" in nvidia_codecs(ffi):  # an NVIDIA GPU here: the default preference decodes on it
        receiver.wait_for(lambda: len(decoded) >= 3, 5, "pictures decoded by NVDEC")
    else:
        receiver.wait_for(lambda: any("no H.265 decoder" in r.getMessage() for r in caplog.records),
                          5, "the missing decoder reported")
        assert decoded == []
    del sink


def test_encoded_source_bad_input(ffi, hevc):
    sora = ffi.Sora()
    with pytest.raises(ValueError, match="codec_type must be one of"):
        sora.create_encoded_video_source("THEORA")
    with pytest.raises(TypeError):
        sora.create_encoded_video_source(265)
    src = sora.create_encoded_video_source("h265")
    assert src.codec_type == "H265" and src.kind == "video"
    with pytest.raises(ValueError, match="cannot be empty"):
        src.push(b"")
    with pytest.raises(TypeError, match="bytes-like"):
        src.push("text")
    with pytest.raises(TypeError, match="keyframe must be a bool"):
        src.push(hevc[0], keyframe=1)
    with pytest.raises(ValueError, match="given as a keyframe but its H265 bitstream is not"):
        src.push(hevc[1], keyframe=True)
    with pytest.raises(ValueError, match="given as a delta frame but its H265 bitstream is a keyframe"):
        src.push(hevc[0], keyframe=False)
    with pytest.raises(ValueError, match="at most"):
        src.push(bytes(8 * 1024 * 1024 + 1))
    with pytest.raises(ValueError, match="finite"):
        src.push(hevc[0], timestamp=float("nan"))
    # Truncated or corrupt units are the application's bitstream: accepted (receivers get
    # them as they are), never a crash.
    src.push(hevc[0][: len(hevc[0]) // 2])
    src.push(np.frombuffer(hevc[1], np.uint8)[::-1].copy())
    with pytest.raises(ValueError, match="contiguous"):
        src.push(np.frombuffer(hevc[1], np.uint8)[::2])
    with pytest.raises(ValueError, match="does not match the encoded video source"):
        sora.create_connection(["ws://127.0.0.1:9/signaling"], "sendonly", "c", video=True,
                               video_source=src, video_codec_type="VP9")
    with pytest.raises(TypeError, match="SoraEncodedVideoSource"):
        sora.create_connection(["ws://127.0.0.1:9/signaling"], "sendonly", "c", video=True,
                               video_source=object())


def test_h265_decodes_on_nvdec_where_an_nvidia_gpu_is(ffi, server, channel_id, clients, hevc):
    """With an NVIDIA GPU the nvidia_video_codec_sdk engine decodes H.265 (NVDEC); without
    one the engine is not listed and the test says so."""
    if "H265" not in nvidia_codecs(ffi):
        pytest.skip("no NVIDIA GPU here that decodes H.265: the engine is (correctly) not listed for it")
    sender, receiver, source, rx = h265_pair(ffi, server, channel_id, clients)
    prime(source, rx, hevc[0])
    track = next(t for t in receiver.tracks if t.kind == "video")
    sink = ffi.SoraVideoSink(track)
    frames = []
    sink.on_frame = lambda f: frames.append(f.data().copy())
    push_all(source, hevc, time.time())
    receiver.wait_for(lambda: len(frames) >= FRAMES - 5, 5, "pictures decoded by NVDEC")
    assert frames[0].shape == (HEIGHT, WIDTH, 3)
    inbound = next(s for s in json.loads(receiver.conn.get_stats())
                   if s["type"] == "inbound-rtp" and s["kind"] == "video")
    assert inbound["decoderImplementation"] == "NvCodec"
    # The first picture is the gradient's frame 0: along the middle row, luma is x + 120,
    # rising steadily for x in 10..100.
    row = frames[0][HEIGHT // 2, 10:100].astype(np.float64).mean(axis=1)
    assert np.corrcoef(row, np.arange(len(row)))[0, 1] > 0.95
    del sink
