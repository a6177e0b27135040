"""Sora(field_trials=...): the trials with an equivalent in this engine change what it
does on the wire (measured here end to end); malformed ones are errors; others warn."""
from __future__ import annotations

import json
import time

import pytest

from sora_ffi import testpattern
from sora_ffi._trials import parse_field_trials
from test_e2e_media import push_video


def test_implemented_trials_map_to_engine_settings():
    assert parse_field_trials("WebRTC-Video-Pacing/factor:1.5,max_delay:250ms/") == {
        "video_pacing_factor": 1.5, "video_pacing_max_delay_ms": 250.0}
    assert parse_field_trials("WebRTC-Video-Pacing/max_delay:2s/") == {"video_pacing_max_delay_ms": 2000.0}
    assert parse_field_trials("WebRTC-Video-Pacing/max_delay:40/") == {"video_pacing_max_delay_ms": 40.0}
    assert parse_field_trials("WebRTC-Audio-OpusMinPacketLossRate/Enabled-30/") == {
        "opus_min_packet_loss_percent": 30}
    assert parse_field_trials("WebRTC-Audio-OpusMinPacketLossRate/Disabled/") == {}


@pytest.mark.parametrize("trials", [
    "WebRTC-Video-Pacing/factor:0/",
    "WebRTC-Video-Pacing/factor:fast/",
    "WebRTC-Video-Pacing/factor:nan/",
    "WebRTC-Video-Pacing/max_delay:1h/",
    "WebRTC-Video-Pacing/max_delay:-5ms/",
    "WebRTC-Video-Pacing/burst:40ms/",
    "WebRTC-Video-Pacing/factor/",
    "WebRTC-Audio-OpusMinPacketLossRate/Enabled-101/",
    "WebRTC-Audio-OpusMinPacketLossRate/Enabled/",
    "WebRTC-Audio-OpusMinPacketLossRate/On-5/",
])
def test_malformed_implemented_trial_is_value_error(ffi, trials):
    with pytest.raises(ValueError, match="field_trials"):
        ffi.Sora(field_trials=trials)


def test_only_unimplemented_trials_are_warned_about(ffi, caplog):
    ffi.Sora(field_trials="WebRTC-Video-Pacing/factor:2.0/WebRTC-Foo/Enabled/")
    warned = [r.getMessage() for r in caplog.records if "field_trials" in r.getMessage()]
    assert len(warned) == 1 and "WebRTC-Foo" in warned[0] and "Pacing" not in warned[0]


def _outbound(conn, kind: str) -> dict:
    return next(s for s in json.loads(conn.get_stats())
                if s.get("type") == "outbound-rtp" and s.get("kind") == kind)


def _mean_send_delay_ms(ffi, server, channel_id, clients, trials: str) -> float:
    """Mean time a video packet waited in the pacer (W3C totalPacketSendDelay/packetsSent)
    for 30 frames at 300 kbps."""
    sora = ffi.Sora(field_trials=trials)
    source = sora.create_video_source()
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True, video_codec_type="VP8",
                     video_bit_rate=300, video_source=source).connect()
    push_video(source, 30, 640, 360)
    out, deadline = _outbound(sender.conn, "video"), time.monotonic() + 5
    while time.monotonic() < deadline:  # until the pacer's queue has drained
        time.sleep(0.3)
        last, out = out, _outbound(sender.conn, "video")
        if out["packetsSent"] == last["packetsSent"]:
            break
    sender.conn.disconnect()
    assert out["packetsSent"] > 30
    return 1000 * out["totalPacketSendDelay"] / out["packetsSent"]


def test_video_pacing_factor_and_max_delay(ffi, server, channel_id, clients):
    """Paced at a quarter of the bitrate, the queue grows for as long as video flows; at 20
    times it, packets leave at once; with a 30 ms queue limit the backlog is drained faster."""
    slow = _mean_send_delay_ms(ffi, server, channel_id + "-a", clients, "WebRTC-Video-Pacing/factor:0.25/")
    fast = _mean_send_delay_ms(ffi, server, channel_id + "-b", clients, "WebRTC-Video-Pacing/factor:20/")
    capped = _mean_send_delay_ms(ffi, server, channel_id + "-c", clients,
                                 "WebRTC-Video-Pacing/factor:0.25,max_delay:30ms/")
    print(f"\nmean pacer delay: factor 0.25 {slow:.1f} ms, factor 20 {fast:.1f} ms, "
          f"factor 0.25 max_delay 30 ms {capped:.1f} ms")
    assert slow > 100 and fast < 20
    assert capped < 60


def _opus_modes(ffi, server, channel_id, clients, trials: str) -> list:
    """The Opus TOC configuration of each audio frame a receiver gets (read by a receive
    transformer) while a 440 Hz tone is sent at 32 kbps: 0-15 SILK/hybrid, 16-31 CELT."""
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    sora = ffi.Sora(field_trials=trials)
    source = sora.create_audio_source(1, 48000)
    clients(ffi, server, channel_id, "sendonly", sora=sora, audio=True, audio_bit_rate=32,
            audio_opus_params={"useinbandfec": True}, audio_source=source).connect()
    track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "audio"), None))
    modes: list = []
    transformer = ffi.SoraAudioFrameTransformer()

    def on_transform(frame):
        modes.append(int(frame.get_data()[0]) >> 3)
        transformer.enqueue(frame)
    transformer.on_transform = on_transform
    track.set_frame_transformer(transformer)
    with testpattern.ToneFeeder(source):
        time.sleep(2)
    receiver.wait_for(lambda: len(modes) >= 60, 5, "audio frames")
    return modes[-40:]


def test_opus_min_packet_loss_rate_turns_fec_modes_on(ffi, server, channel_id, clients):
    """libopus spends in-band FEC only in SILK or hybrid mode, and codes this tone in CELT
    unless it plans for loss; on loopback receivers report none, so only the trial's floor
    can move it."""
    plain = _opus_modes(ffi, server, channel_id + "-a", clients, "WebRTC-Audio-OpusMinPacketLossRate/Disabled/")
    floor = _opus_modes(ffi, server, channel_id + "-b", clients, "WebRTC-Audio-OpusMinPacketLossRate/Enabled-30/")
    print(f"\nTOC configs without the trial {sorted(set(plain))}, with Enabled-30 {sorted(set(floor))}")
    assert sum(m >= 16 for m in plain) >= 0.9 * len(plain)
    assert all(m < 16 for m in floor)
