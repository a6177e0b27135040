"""H.264 through Cisco's OpenH264 loaded at run time (Sora(openh264=...)): the capability
report, clear errors for missing or wrong libraries, and media through the dev server with
both OpenH264 structure layouts (2.6.0 and Debian 12's 2.3.1). Quality at 720p and interop
with the official SDK are in test_e2e_media.py (parametrized with H264)."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from conftest import OPENH264_2_3, openh264_path
from sora_ffi import testpattern
from test_e2e_media import VideoReceiver, push_video

LIBZ = next(p for p in ("/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1")
            if os.path.exists(p))


def _h264_engine(cap_json: dict) -> dict:
    return next(e for e in cap_json["engines"] if e["name"] == "cisco_openh264")


@pytest.mark.parametrize("version,path", [("2.6.0", None), ("2.3.1", OPENH264_2_3)])
def test_capability_lists_openh264_as_the_official_sdk_does(ffi, official, version, path):
    lib = openh264_path(path) if path else openh264_path()
    ours = ffi.get_video_codec_capability(openh264=lib).to_json()
    theirs = official.get_video_codec_capability(openh264=lib).to_json()
    assert _h264_engine(ours) == _h264_engine(theirs)
    h264 = _h264_engine(ours)["codecs"][-1]
    assert h264 == {"type": "H264", "encoder": True, "decoder": True,
                    "parameters": {"version": version, "openh264_path": lib}}
    cap = ffi.get_video_codec_capability(openh264=lib)
    engine = cap.engines[1]
    assert engine.name == ffi.SoraVideoCodecImplementation.CISCO_OPENH264
    assert engine.codecs[-1].parameters.version == version


@pytest.mark.parametrize("path", [LIBZ, "/etc/hostname"], ids=["not-openh264", "not-a-library"])
def test_a_wrong_library_is_left_out_and_sending_h264_says_why(ffi, path):
    cap = ffi.get_video_codec_capability(openh264=path).to_json()
    assert [e["name"] for e in cap["engines"]] == ["internal"]
    sora = ffi.Sora(openh264=path)
    source = sora.create_video_source()
    with pytest.raises(ValueError, match="H264 cannot be sent") as e:
        sora.create_connection(signaling_urls=["ws://127.0.0.1:1/signaling"], role="sendonly",
                               channel_id="c", video_codec_type="H264", video_source=source)
    assert path in str(e.value)
    # Naming the engine in a preference is refused at Sora(), as in the official SDK.
    T, I = ffi.SoraVideoCodecType, ffi.SoraVideoCodecImplementation
    pref = ffi.SoraVideoCodecPreference(codecs=[ffi.SoraVideoCodecPreference.Codec(T.H264, I.CISCO_OPENH264)])
    with pytest.raises(ValueError, match="cisco_openh264"):
        ffi.Sora(openh264=path, video_codec_preference=pref)


def test_sending_h264_without_openh264_is_a_clear_error(ffi):
    sora = ffi.Sora()
    with pytest.raises(ValueError, match=r"Sora\(openh264="):
        sora.create_connection(signaling_urls=["ws://127.0.0.1:1/signaling"], role="sendonly",
                               channel_id="c", video_codec_type="H264",
                               video_source=sora.create_video_source())
    # Receiving only needs nothing at creation.
    sora.create_connection(signaling_urls=["ws://127.0.0.1:1/signaling"], role="recvonly",
                           channel_id="c", video_codec_type="H264")


def _h264_pair(ffi, server, channel_id, clients, send_lib, recv_lib, **send_kw):
    receiver = clients(ffi, server, channel_id, "recvonly", sora=ffi.Sora(openh264=recv_lib), video=True)
    receiver.connect()
    sora = ffi.Sora(openh264=send_lib)
    source = sora.create_video_source()
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True, video_codec_type="H264",
                     video_bit_rate=800, video_source=source, **send_kw)
    return receiver, sender, source


def test_both_openh264_layouts_interoperate(ffi, server, channel_id, clients, tmp_path):
    """The sender encodes with 2.3.1 (the older output layout), the receiver decodes with
    2.6.0. The sender's library is a copy deleted after the connection was created: a
    loaded library stays usable."""
    copy = tmp_path / "libopenh264.so.7"
    shutil.copy(openh264_path(OPENH264_2_3), copy)
    receiver, sender, source = _h264_pair(ffi, server, channel_id, clients, str(copy), openh264_path())
    copy.unlink()
    sender.connect()
    rx = VideoReceiver(ffi, receiver, 640)
    push_video(source, 45, 640, 360)
    receiver.wait_for(lambda: len(rx.indices) >= 40, 5, f"decoded frames ({len(rx.indices)} so far)")
    assert rx.sizes == {(360, 640, 3)}
    assert sorted(rx.indices) == rx.indices
    out = next(x for x in json.loads(sender.conn.get_stats()) if x["type"] == "outbound-rtp")
    assert out["encoderImplementation"] == "OpenH264" and out["keyFramesEncoded"] >= 1
    inbound = next(x for x in json.loads(receiver.conn.get_stats())
                   if x["type"] == "inbound-rtp" and x["kind"] == "video")
    assert inbound["decoderImplementation"] == "OpenH264" and inbound["framesDecoded"] >= 40
    codec = next(x for x in json.loads(receiver.conn.get_stats())
                 if x["type"] == "codec" and x["mimeType"] == "video/H264")
    assert "profile-level-id=42e01f" in codec["sdpFmtpLine"]


def test_size_changes_every_frame_and_odd_sizes(ffi, server, channel_id, clients):
    receiver, sender, source = _h264_pair(ffi, server, channel_id, clients, openh264_path(), openh264_path())
    sender.connect()
    rx = VideoReceiver(ffi, receiver, 640)
    sizes = [(640, 360), (320, 180), (641, 361), (7, 5)]
    for i in range(40):
        w, h = sizes[i % len(sizes)]
        img = testpattern.scene(i, w, h)
        if w >= 320:
            img = testpattern.stamp(img.copy(), i, 0)
        source.on_captured(img)
        time.sleep(1 / 30)
    receiver.wait_for(lambda: {(360, 640, 3), (180, 320, 3), (16, 16, 3)} <= rx.sizes, 8,
                      f"every size decoded (so far {rx.sizes})")
    assert rx.sizes <= {(360, 640, 3), (180, 320, 3), (16, 16, 3)}, "odd sizes lose a column/row"
    assert sender.conn is not None and not sender.disconnected.is_set()


def test_a_profile_openh264_cannot_encode_ends_the_connection_clearly(ffi, server, channel_id, clients):
    sora = ffi.Sora(openh264=openh264_path())
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True, video_codec_type="H264",
                     video_h264_params={"profile_level_id": "640c1f"},
                     video_source=sora.create_video_source())
    sender.connect(wait=False)
    sender.disconnected.wait(8)
    assert sender.disconnected.is_set()
    code, message = sender.disconnects[0]
    assert "Constrained Baseline" in message and "640c1f" in message, message


def test_corrupt_and_truncated_access_units_are_survived(ffi, server, channel_id, clients):
    """The sender's encoded transform truncates or scrambles three access units on the wire:
    the receiver drops what it cannot decode, asks for an IDR, and goes on decoding."""
    count = [0]

    def damage(frame):
        count[0] += 1
        data = frame.get_data()
        if count[0] in (20, 70):
            frame.set_data(data[: max(8, len(data) // 2)].copy())
        elif count[0] == 45:
            bad = data.copy()
            bad[12::3] ^= 0xA5  # past the first NAL header: slices with garbage in them
            frame.set_data(bad)

    transformer = ffi.SoraVideoFrameTransformer()

    def on_transform(frame):
        damage(frame)
        transformer.enqueue(frame)

    transformer.on_transform = on_transform
    receiver, sender, source = _h264_pair(ffi, server, channel_id, clients, openh264_path(), openh264_path(),
                                          video_frame_transformer=transformer)
    sender.connect()
    rx = VideoReceiver(ffi, receiver, 640)
    push_video(source, 100, 640, 360)
    receiver.wait_for(lambda: rx.indices and rx.indices[-1] >= 95, 3, "the last frames")
    with rx.lock:
        indices = list(rx.indices)
    print(f"\n{len(indices)} of 100 decoded; missing {sorted(set(range(100)) - set(indices))}")
    # Each damaged frame and those after it until the IDR asked for are lost; every
    # stretch between damages decodes again, in order.
    assert indices == sorted(indices)
    for lo, hi in ((0, 18), (25, 43), (50, 68), (75, 100)):
        assert any(lo <= i < hi for i in indices), f"nothing decoded in [{lo}, {hi}): {indices}"
    assert len(indices) >= 85, f"{len(indices)} of 100 frames decoded: {indices}"
    out = next(x for x in json.loads(sender.conn.get_stats()) if x["type"] == "outbound-rtp")
    assert out["pliCount"] >= 1 and out["keyFramesEncoded"] >= 2
    assert not sender.disconnected.is_set() and not receiver.disconnected.is_set()
