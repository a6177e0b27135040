"""Encoded video sources (`Sora.create_encoded_video_source`) with codecs the SDKs decode: a
relay that reads a channel's frames with an encoded transform and sends them into another
channel as they are, without re-encoding; the viewer there (sora_ffi or the official SDK)
decodes the test pattern and reads its frame indices back. H.265 has its own tests
(test_h265.py)."""
from __future__ import annotations

import time

import pytest

from test_e2e_media import VideoReceiver, in_order_fraction, push_video

# 640x360: the smallest size whose test pattern code reads back reliably
WIDTH, HEIGHT, FRAMES = 640, 360, 60


@pytest.mark.parametrize("codec", ["VP8", "VP9", "AV1"])
def test_relay_without_reencoding(sdk, ffi, server, channel_id, clients, codec):
    relay = ffi.Sora()
    out = relay.create_encoded_video_source(codec)
    viewer = clients(sdk, server, channel_id + "-out", "recvonly", video=True).connect()
    clients(ffi, server, channel_id + "-out", "sendonly", sora=relay, video=True,
            video_source=out).connect()
    rx = VideoReceiver(sdk, viewer, WIDTH)

    relay_in = clients(ffi, server, channel_id, "recvonly", sora=relay, video=True).connect()
    camera = ffi.Sora()
    source = camera.create_video_source()
    clients(ffi, server, channel_id, "sendonly", sora=camera, video=True, video_codec_type=codec,
            video_source=source).connect()
    track = relay_in.wait_for(lambda: next((t for t in relay_in.tracks if t.kind == "video"), None))
    forward = ffi.SoraVideoFrameTransformer()
    pushed = []

    def on_transform(frame):
        # The receiving side's keyframe flag must agree with the bitstream (push checks).
        out.push(frame.get_data(), keyframe=frame.is_key_frame)
        pushed.append(frame.is_key_frame)
        forward.enqueue(frame)

    forward.on_transform = on_transform
    track.set_frame_transformer(forward)
    time.sleep(0.2)
    push_video(source, FRAMES, WIDTH, HEIGHT)
    viewer.wait_for(lambda: len(rx.indices) >= FRAMES * 0.9, 5, "relayed frames decoded")
    assert pushed[0], "the relay's first frame is a keyframe"
    assert in_order_fraction(rx.indices, FRAMES) >= 0.9, (len(rx.indices), rx.unreadable)
    assert out.dropped_frames == 0
