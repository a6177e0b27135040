"""Video codec capability and preference (issue 8 §3): the official classes and their
behaviour (observed with sora_sdk 2025.5.2), the engines this build really has, and the
preference enforced end to end (no encoder: not sent; no decoder: not received)."""
from __future__ import annotations

import json
import statistics
import time

import pytest

from conftest import nvidia_codecs
from test_e2e_media import VideoReceiver, push_video


@pytest.fixture
def s(ffi):
    return ffi


def codec(s, t, enc=None, dec=None):
    return s.SoraVideoCodecPreference.Codec(t, enc, dec)


def test_capability_lists_the_engines_of_this_build(s):
    cap = s.get_video_codec_capability()
    I = s.SoraVideoCodecImplementation
    # NVDEC only where an NVIDIA GPU and driver are (decoding only, never encoding)
    expected = [I.INTERNAL] + ([I.NVIDIA_VIDEO_CODEC_SDK] if nvidia_codecs(s) or nvidia_codecs(s, encoder=True) else [])
    assert [e.name for e in cap.engines] == expected
    for e in cap.engines[1:]:
        assert not any(c.encoder for c in e.codecs)
    internal = cap.engines[0]
    support = {c.type: (c.encoder, c.decoder) for c in internal.codecs}
    T = s.SoraVideoCodecType
    assert support == {T.VP8: (True, True), T.VP9: (True, True), T.H264: (False, False),
                       T.H265: (False, False), T.AV1: (True, True)}
    assert internal.parameters.version is None and internal.codecs[0].parameters.openh264_path is None
    # the official JSON shape
    j = cap.to_json()
    assert list(j) == ["engines"] and j["engines"][0]["name"] == "internal"
    assert j["engines"][0]["codecs"][0] == {"type": "VP8", "encoder": True, "decoder": True,
                                            "parameters": {}}
    # a missing OpenH264 library is not an error (as in the official SDK)
    assert s.get_video_codec_capability(openh264="/no/such/libopenh264.so").to_json() == j
    with pytest.raises(TypeError):
        s.get_video_codec_capability(openh264=5)


def test_preference_methods_behave_as_the_official_ones(s):
    T, I = s.SoraVideoCodecType, s.SoraVideoCodecImplementation
    cap = s.get_video_codec_capability()
    p = s.create_video_codec_preference_from_implementation(cap, I.INTERNAL)
    assert [c["type"] for c in p.to_json()["codecs"]] == ["VP8", "VP9", "H264", "H265", "AV1"]
    assert p.to_json()["codecs"][0] == {"type": "VP8", "encoder": "internal",
                                        "decoder": "internal", "parameters": {}}
    assert p.to_json()["codecs"][2]["encoder"] is None
    assert (p.find(T.VP8), p.find(T.H265)) == (0, 3)
    assert p.has_implementation(I.INTERNAL) and not p.has_implementation(I.AMD_AMF)
    q = s.SoraVideoCodecPreference(codecs=[codec(s, T.VP8, I.INTERNAL)])
    assert q.find(T.AV1) is None and q.get_or_add(T.AV1) == 1 and q.get_or_add(T.AV1) == 1
    assert q.to_json() == {"codecs": [
        {"type": "VP8", "encoder": "internal", "decoder": None, "parameters": {}},
        {"type": "AV1", "encoder": None, "decoder": None, "parameters": {}}]}
    q.merge(p)  # theirs fill our None and add what we lack, in their order
    assert [(c["type"], c["encoder"], c["decoder"]) for c in q.to_json()["codecs"]] == [
        ("VP8", "internal", "internal"), ("AV1", "internal", "internal"), ("VP9", "internal", "internal"),
        ("H264", None, None), ("H265", None, None)]
    a = s.SoraVideoCodecPreference(codecs=[codec(s, T.VP8, I.INTERNAL, I.INTERNAL)])
    a.merge(s.SoraVideoCodecPreference(codecs=[codec(s, T.VP8, I.CISCO_OPENH264, None)]))
    assert a.codecs[0].encoder == I.CISCO_OPENH264 and a.codecs[0].decoder == I.INTERNAL
    assert s.SoraVideoCodecPreference().to_json() == {"codecs": []}


@pytest.mark.parametrize("make,exc", [
    (lambda s: s.SoraVideoCodecPreference.Codec("VP8"), TypeError),
    (lambda s: s.SoraVideoCodecPreference.Codec(99), ValueError),
    (lambda s: s.SoraVideoCodecPreference.Codec(s.SoraVideoCodecType.VP8, "internal"), TypeError),
    (lambda s: s.SoraVideoCodecPreference(codecs=[1]), TypeError),
    (lambda s: s.SoraVideoCodecPreference(codecs="VP8"), TypeError),
    (lambda s: s.Sora(video_codec_preference=5), TypeError),
    (lambda s: s.Sora(force_i420_conversion="yes"), TypeError),
    (lambda s: s.Sora(field_trials=7), TypeError),
    (lambda s: s.Sora(field_trials="WebRTC-Foo/Enabled"), ValueError),
    (lambda s: s.Sora(field_trials="A/1/A/2/"), ValueError),
    (lambda s: s.Sora(True), TypeError),
    (lambda s: s.Sora(use_hardware_encoder="no"), TypeError),
    (lambda s: s.Sora().create_libcamera_source(640, 480, 30, False), RuntimeError),
    (lambda s: s.Sora().create_libcamera_source(0, 480, 30, False), ValueError),
], ids=["type-str", "type-99", "encoder-str", "codecs-int", "codecs-str", "sora-pref-int",
        "i420-str", "trials-int", "trials-unterminated", "trials-twice", "sora-positional-bool",
        "hw-str", "libcamera", "libcamera-width"])
def test_bad_arguments(s, make, exc):
    with pytest.raises(exc):
        make(s)


@pytest.mark.parametrize("codecs,word", [
    ([("H264", "NVIDIA_VIDEO_CODEC_SDK", None)], "not available|no H264 encoder"),
    ([("H265", "INTERNAL", None)], "no H265 encoder"),
    ([("H265", None, "INTERNAL")], "no H265 decoder"),
    ([("VP8", "INTERNAL", None), ("VP8", None, "INTERNAL")], "twice"),
])
def test_preference_the_machine_cannot_honour(s, codecs, word):
    """A clear error at Sora(): CodecPreferenceError is a ValueError and also a RuntimeError
    (what the official SDK raises, as "std::exception")."""
    T, I = s.SoraVideoCodecType, s.SoraVideoCodecImplementation
    pref = s.SoraVideoCodecPreference(codecs=[
        codec(s, T[t], e and I[e], d and I[d]) for t, e, d in codecs])
    with pytest.raises(s.CodecPreferenceError, match=word) as e:
        s.Sora(video_codec_preference=pref)
    assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)


def test_use_hardware_encoder_is_a_hint_that_warns(s, caplog):
    s.Sora(use_hardware_encoder=True)
    assert any("no hardware video encoder" in r.getMessage() for r in caplog.records)


def test_no_encoder_means_not_sent(s, server, channel_id):
    """video_codec_type VP8 with a preference that only encodes VP9: ValueError before any
    network activity."""
    T, I = s.SoraVideoCodecType, s.SoraVideoCodecImplementation
    sora = s.Sora(video_codec_preference=s.SoraVideoCodecPreference(
        codecs=[codec(s, T.VP9, I.INTERNAL, I.INTERNAL)]))
    with pytest.raises(ValueError, match="no encoder"):
        sora.create_connection(signaling_urls=[server.signaling_url], role="sendonly",
                               channel_id=channel_id, video_codec_type="VP8",
                               video_source=sora.create_video_source())


@pytest.mark.parametrize("decode", [True, False], ids=["decoder", "no-decoder"])
def test_preference_decides_what_is_received(s, server, channel_id, clients, decode):
    """A receiver whose preference has a VP8 decoder decodes the sender's VP8; one whose VP8
    decoder is None still sees the track but cannot attach a sink to it (a clear error,
    nothing decoded); the sender's preference allows only VP8 encoding."""
    T, I = s.SoraVideoCodecType, s.SoraVideoCodecImplementation
    rx_pref = s.SoraVideoCodecPreference(codecs=[
        codec(s, T.VP8, None, I.INTERNAL if decode else None),
        codec(s, T.VP9, None, I.INTERNAL)])
    receiver = clients(s, server, channel_id, "recvonly", video=True,
                       sora=s.Sora(video_codec_preference=rx_pref)).connect()
    tx_sora = s.Sora(video_codec_preference=s.SoraVideoCodecPreference(
        codecs=[codec(s, T.VP8, I.INTERNAL, None)]))
    source = tx_sora.create_video_source()
    sender = clients(s, server, channel_id, "sendonly", sora=tx_sora, video=True,
                     video_codec_type="VP8", video_source=source).connect()
    if decode:
        rx = VideoReceiver(s, receiver, 640)
        push_video(source, 30, 640, 360)
        receiver.wait_for(lambda: len(rx.indices) >= 20, 5, "decoded frames")
    else:
        track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "video"), None))
        with pytest.raises(RuntimeError, match="no decoder"):
            s.SoraVideoSink(track)
        push_video(source, 15, 640, 360)
        time.sleep(0.3)
        inbound = [x for x in json.loads(receiver.conn.get_stats())
                   if x["type"] == "inbound-rtp" and x.get("kind") == "video"]
        assert inbound == []  # nothing decoded (no receive pipeline for the track)
    out = next(x for x in json.loads(sender.conn.get_stats())
               if x["type"] == "outbound-rtp" and x.get("kind") == "video")
    assert out["framesEncoded"] > 0


def push_once_decoding(source, rx) -> None:
    """Pushes frames until the receiver decodes one (forwarding starts at its re-answer),
    then 60 frames at 30 fps with indices from 200."""
    for k in range(150):
        push_video(source, 1, 640, 360, start=k)
        if rx.indices:
            break
        time.sleep(1 / 30)
    assert rx.indices, "nothing decoded in 5 s"
    push_video(source, 60, 640, 360, start=200)


@pytest.mark.parametrize("engine", ["INTERNAL", "NVIDIA_VIDEO_CODEC_SDK"])
@pytest.mark.parametrize("codec_type", ["VP8", "VP9", "AV1"])
def test_the_decoder_the_preference_names_decodes(s, server, channel_id, clients, codec_type, engine):
    """The engine a preference names for a codec's decoder decodes it: the indexed test
    pattern arrives in order and intact, every frame received is decoded, and stats name the
    engine. NVIDIA_VIDEO_CODEC_SDK moves decoding onto the GPU where one is (without one such
    a preference is refused: test_preference_the_machine_cannot_honour)."""
    if engine != "INTERNAL" and codec_type not in nvidia_codecs(s):
        pytest.skip(f"no NVIDIA GPU here that decodes {codec_type} (the engine is correctly not listed)")
    T, I = s.SoraVideoCodecType, s.SoraVideoCodecImplementation
    rx_pref = s.SoraVideoCodecPreference(codecs=[codec(s, T[codec_type], None, I[engine])])
    receiver = clients(s, server, channel_id, "recvonly", video=True,
                       sora=s.Sora(video_codec_preference=rx_pref)).connect()
    tx_sora = s.Sora()
    source = tx_sora.create_video_source()
    sender = clients(s, server, channel_id, "sendonly", sora=tx_sora, video=True, video_bit_rate=2500,
                     video_codec_type=codec_type, video_source=source).connect()
    rx = VideoReceiver(s, receiver, 640, psnr_every=1)
    push_once_decoding(source, rx)

    def inbound():
        return next((x for x in json.loads(receiver.conn.get_stats())
                     if x["type"] == "inbound-rtp" and x.get("kind") == "video"), {})
    try:
        # 59-60 of the 60 arrive here; on the GPU machine (16 cores, Python 3.12) VP8 gave
        # only 36-46 of them, VP9 58-60 (not diagnosed: the sender's stats below were not
        # recorded then). The decoder is what this test checks.
        receiver.wait_for(lambda: len([i for i in rx.indices if i >= 200]) >= 30, 5, "decoded frames")
        time.sleep(0.3)
    except AssertionError as e:
        outbound = [x for x in json.loads(sender.conn.get_stats()) if x["type"] == "outbound-rtp"]
        raise AssertionError(f"{e}: {len(rx.indices)} readable, {rx.unreadable} unreadable, "
                             f"sizes {rx.sizes}, inbound {inbound()}, sender {outbound}") from None
    stats = inbound()
    # what arrives is all decoded
    assert stats["framesDecoded"] == stats["framesReceived"] and stats["framesDropped"] == 0, stats
    assert rx.indices == sorted(rx.indices)
    # libaom's realtime mode leaves a few stale code cells in some frames (docs/codecs.md)
    assert rx.unreadable <= (0.15 * len(rx.indices) if codec_type == "AV1" else 0)
    # (the first pictures after a keyframe request are the encoder's coarsest)
    assert min(rx.psnrs) > 25 and statistics.median(rx.psnrs) > 30, rx.psnrs
    assert stats["decoderImplementation"] == {
        "NVIDIA_VIDEO_CODEC_SDK": "NvCodec", "INTERNAL": "dav1d" if codec_type == "AV1" else "libvpx"}[engine]


@pytest.mark.parametrize("codec_type", ["H264", "H265", "AV1"])
def test_nvenc_encodes_what_the_preference_gives_it(s, server, channel_id, clients, codec_type):
    """NVIDIA_VIDEO_CODEC_SDK as a codec's encoder sends it from NVENC: the indexed pattern
    arrives in order and intact (decoded by OpenH264, NVDEC or dav1d), and the sender's stats
    name NvCodec. Without NVENC (no GPU, or a GPU without it such as the H200) such a
    preference is refused before anything is sent."""
    from conftest import OPENH264
    T, I = s.SoraVideoCodecType, s.SoraVideoCodecImplementation
    tx_pref = s.SoraVideoCodecPreference(codecs=[codec(s, T[codec_type], I.NVIDIA_VIDEO_CODEC_SDK, None)])
    if codec_type not in nvidia_codecs(s, encoder=True):
        with pytest.raises(s.CodecPreferenceError, match="not available|no .* encoder"):
            s.Sora(video_codec_preference=tx_pref)
        pytest.skip(f"no NVENC here that encodes {codec_type} (correctly refused)")
    if codec_type == "H265" and "H265" not in nvidia_codecs(s):
        pytest.skip("nothing here decodes H.265 to check what NVENC sent")
    rx_sora = s.Sora(openh264=OPENH264) if codec_type == "H264" else s.Sora()
    receiver = clients(s, server, channel_id, "recvonly", video=True, sora=rx_sora).connect()
    tx_sora = s.Sora(video_codec_preference=tx_pref)
    source = tx_sora.create_video_source()
    sender = clients(s, server, channel_id, "sendonly", sora=tx_sora, video=True, video_bit_rate=2500,
                     video_codec_type=codec_type, video_source=source).connect()
    rx = VideoReceiver(s, receiver, 640, psnr_every=1)
    push_once_decoding(source, rx)
    receiver.wait_for(lambda: len([i for i in rx.indices if i >= 200]) >= 50, 5, "frames from NVENC")
    assert rx.indices == sorted(rx.indices) and statistics.median(rx.psnrs) > 30, rx.psnrs
    out = next(x for x in json.loads(sender.conn.get_stats())
               if x["type"] == "outbound-rtp" and x.get("kind") == "video")
    assert out["encoderImplementation"] == "NvCodec"
