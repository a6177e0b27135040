"""Bad input for every codec this build encodes (issue 10, "Bad input"): the size changing on
every frame, down to 1x1 and up to 1921x1081; access units truncated or scrambled on the
wire; an encoder that fails mid-stream. The receiver keeps decoding (after a keyframe where
it must), nothing crashes, and the connection stays up. H.264's own cases (libraries, profiles) are in test_h264.py."""
from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest

from conftest import openh264_path
from sora_ffi import testpattern
from test_e2e_media import VideoReceiver, push_video

CODECS = ["VP8", "VP9", "AV1", "H264"]


def _pair(ffi, server, channel_id, clients, codec, **send_kw):
    lib = openh264_path() if codec == "H264" else None
    receiver = clients(ffi, server, channel_id, "recvonly", sora=ffi.Sora(openh264=lib),
                       video=True).connect()
    sora = ffi.Sora(openh264=lib)
    source = sora.create_video_source()
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True,
                     video_codec_type=codec, video_bit_rate=1000, video_source=source,
                     **send_kw).connect()
    return receiver, sender, source


# What each sent size decodes as: as sent, except that OpenH264 crops odd sizes to even and
# pads those under 16.
SIZES = [(640, 360), (1, 1), (1921, 1081), (320, 180), (33, 17)]
DECODED = {"H264": [(360, 640, 3), (16, 16, 3), (1080, 1920, 3), (180, 320, 3), (16, 32, 3)]}


@pytest.mark.parametrize("codec", CODECS)
def test_size_changes_every_frame_down_to_1x1_and_up_to_1921x1081(ffi, server, channel_id,
                                                                   clients, codec):
    """The size changes from frame to frame, twice through 640x360, 1x1, 1921x1081, 320x180,
    33x17. Each size is sent until it has been decoded at that size (a busy encoder keeps only
    the newest frame, so a size sent once may be skipped: that is not what is tested)."""
    receiver, sender, source = _pair(ffi, server, channel_id, clients, codec)
    rx = VideoReceiver(ffi, receiver, 640)
    decoded = DECODED.get(codec, [(h, w, 3) for w, h in SIZES])
    i = 0
    for _ in range(2):
        for (w, h), shape in zip(SIZES, decoded):
            deadline = time.monotonic() + 5
            with rx.lock:
                rx.sizes.discard(shape)
            while shape not in rx.sizes:
                assert time.monotonic() < deadline, f"{w}x{h} not decoded (sizes so far {rx.sizes})"
                img = testpattern.scene(i, w, h)
                source.on_captured(testpattern.stamp(img.copy(), i, 0) if w >= 320 else img)
                i += 1
                time.sleep(1 / 20)
    # Then a steady stream: decoding goes on at the usual size.
    push_video(source, 20, 640, 360, start=1000)
    receiver.wait_for(lambda: any(k >= 1015 for k in rx.indices), 8, "decoding after the size changes")
    assert rx.sizes <= set(decoded), rx.sizes
    assert not sender.disconnected.is_set() and not receiver.disconnected.is_set()


@pytest.mark.parametrize("codec", CODECS)
def test_truncated_and_scrambled_frames_on_the_wire(ffi, server, channel_id, clients, codec):
    """The sender's encoded transform truncates two frames and scrambles one past its first
    bytes; the receiver drops what does not decode, asks for a keyframe and goes on."""
    count = [0]
    transformer = ffi.SoraVideoFrameTransformer()

    def on_transform(frame):
        count[0] += 1
        data = frame.get_data()
        if count[0] in (20, 60):
            frame.set_data(data[: max(4, len(data) // 2)].copy())
        elif count[0] == 40:
            bad = data.copy()
            bad[12::3] ^= 0xA5
            frame.set_data(bad)
        transformer.enqueue(frame)

    transformer.on_transform = on_transform
    receiver, sender, source = _pair(ffi, server, channel_id, clients, codec,
                                     video_frame_transformer=transformer)
    rx = VideoReceiver(ffi, receiver, 640)
    push_video(source, 90, 640, 360)
    receiver.wait_for(lambda: any(i >= 85 for i in rx.indices), 5, "the last frames")
    with rx.lock:
        indices = list(rx.indices)
    assert indices == sorted(indices)
    for lo, hi in ((0, 18), (25, 38), (45, 58), (65, 90)):
        assert any(lo <= i < hi for i in indices), f"nothing decoded in [{lo}, {hi}): {indices}"
    assert len(indices) >= 70, f"{len(indices)} of 90 decoded"
    assert not sender.disconnected.is_set() and not receiver.disconnected.is_set()


def test_encoder_failing_mid_stream_recovers(ffi, server, channel_id, clients, caplog):
    """Frames an engine refuses (OpenH264 stops at H.264 level 5.2: 8192x1280 is more
    macroblocks than that) fail, at the start of the stream (the encoder cannot be opened) and
    mid-stream; each run of failures is reported once, and the next frames of a size the
    engine takes go out from a new encoder, which the receiver decodes."""
    caplog.set_level(logging.WARNING, logger="sora_ffi")
    receiver, sender, source = _pair(ffi, server, channel_id, clients, "H264",
                                     degradation_preference=ffi.SoraDegradationPreference.DISABLED)
    rx = VideoReceiver(ffi, receiver, 640)
    too_large = np.zeros((1280, 8192, 3), np.uint8)

    def refused():
        for _ in range(3):
            source.on_captured(too_large)
            time.sleep(0.1)

    refused()  # the first frames: no encoder opens
    push_video(source, 15, 640, 360)
    receiver.wait_for(lambda: rx.indices, 5, "frames after a failed start")
    refused()  # mid-stream
    push_video(source, 30, 640, 360, start=1000)
    receiver.wait_for(lambda: any(k >= 1010 for k in rx.indices), 8, "decoding after the failure")
    messages = [r.getMessage() for r in caplog.records]
    failed = [m for m in messages if "failed for a 8192x1280 frame" in m]
    assert len(failed) == 2, messages
    assert len([m for m in messages if re.search(r"working again after \d+ dropped frames", m)]) == 2
    assert not sender.disconnected.is_set() and not receiver.disconnected.is_set()
