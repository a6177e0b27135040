"""Encoded transform (issue 8 §4): frames changed with set_data are what goes on the wire
and into the decoder; metadata as the official stubs name it; misbehaving transformers
(raising, never enqueueing, enqueueing twice or another's frame, empty or huge data) are
logged and counted while media recovers with a keyframe; short-circuiting skips them."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from test_e2e_media import VideoReceiver, push_video

KEY = 0x5A


def xor(frame):
    frame.set_data(np.bitwise_xor(frame.get_data(), KEY).astype(np.uint8))


class Recorder:
    """A transformer that records frames and applies `change` before enqueueing."""

    def __init__(self, transformer, change=None):
        self.t = transformer
        self.frames: list = []
        self.change = change
        self.lock = threading.Lock()
        transformer.on_transform = self.on_transform

    def on_transform(self, frame):
        with self.lock:
            self.frames.append(frame)
        if self.change is not None:
            self.change(frame)
        self.t.enqueue(frame)


def video_pair(s, server, channel_id, clients, *, send_t=None, recv_t=None, codec="VP9"):
    receiver = clients(s, server, channel_id, "recvonly", video=True).connect()
    sora = s.Sora()
    source = sora.create_video_source()
    kw = {} if send_t is None else {"video_frame_transformer": send_t}
    sender = clients(s, server, channel_id, "sendonly", sora=sora, video=True,
                     video_codec_type=codec, video_source=source, **kw).connect()
    track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "video"), None))
    if recv_t is not None:
        track.set_frame_transformer(recv_t)
    rx = VideoReceiver(s, receiver, 640)
    return sender, receiver, source, rx


@pytest.mark.parametrize("ends", ["both", "sender-only"])
def test_xor_on_the_wire(ffi, server, channel_id, clients, ends):
    """XOR on both ends: the media decodes and reads back. XOR only when sending: the
    receiver decodes nothing readable (what went on the wire really was changed)."""
    send = Recorder(ffi.SoraVideoFrameTransformer(), xor)
    recv = Recorder(ffi.SoraVideoFrameTransformer(), xor) if ends == "both" else None
    sender, receiver, source, rx = video_pair(ffi, server, channel_id, clients, send_t=send.t,
                                              recv_t=recv and recv.t)
    push_video(source, 45, 640, 360)
    time.sleep(0.4)
    if ends == "both":
        receiver.wait_for(lambda: len(rx.indices) >= 30, 5, "readable frames")
        assert len(recv.frames) >= 30
        f = recv.frames[0]
        assert (f.direction, f.mime_type, f.mine_type) == (ffi.SoraTransformableFrameDirection.RECEIVER,
                                                          "video/VP9", "video/VP9")
    else:
        assert rx.indices == []
    f = send.frames[0]
    assert f.direction == ffi.SoraTransformableFrameDirection.SENDER and f.mime_type == "video/VP9"
    assert f.is_key_frame and (f.width, f.height) == (640, 360) and f.ssrc != 0
    assert list(f.frame_dependencies) == []
    delta = next(fr for fr in send.frames if not fr.is_key_frame)
    assert list(delta.frame_dependencies) == [delta.frame_id - 1]
    assert send.frames[1].rtp_timestamp > f.rtp_timestamp
    data = f.get_data()
    assert data.dtype == np.uint8 and not data.flags.writeable
    assert send.t.dropped_frames == 0


def test_audio_passes_through_both_ends(ffi, server, channel_id, clients):
    send = Recorder(ffi.SoraAudioFrameTransformer())
    recv = Recorder(ffi.SoraAudioFrameTransformer())
    receiver = clients(ffi, server, channel_id, "recvonly", audio=True).connect()
    sora = ffi.Sora()
    source = sora.create_audio_source(1, 48000)
    clients(ffi, server, channel_id, "sendonly", sora=sora, audio=True, audio_source=source,
            audio_frame_transformer=send.t).connect()
    track = receiver.wait_for(lambda: next((t for t in receiver.tracks if t.kind == "audio"), None))
    track.set_frame_transformer(recv.t)
    sink = ffi.SoraAudioSink(track, 48000, 1)
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.int16)
    source.on_data(tone.reshape(-1, 1))
    time.sleep(0.6)
    ok, pcm = sink.read(9600, 2)
    assert ok and np.abs(pcm).max() > 2000
    assert len(send.frames) >= 25 and len(recv.frames) >= 20
    a, r = send.frames[0], recv.frames[0]
    assert (a.mime_type, a.direction, a.type) == ("audio/opus", ffi.SoraTransformableFrameDirection.SENDER,
                                                   ffi.SoraTransformableAudioFrameType.SPEECH)
    assert r.direction == ffi.SoraTransformableFrameDirection.RECEIVER and r.payload_type == a.payload_type
    assert r.sequence_number is not None and r.receive_time > 0
    assert a.contributing_sources.dtype == np.uint32


def test_misbehaving_transformer_is_counted_and_media_recovers(ffi, server, channel_id, clients, caplog):
    """For its first 20 frames the sender's transformer misbehaves in every way (raises,
    never enqueues, enqueues twice, gives another transformer's frame, empty and 10 MB
    data); afterwards it behaves. Nothing crashes, drops are counted and logged, and the
    receiver decodes readable frames again (a keyframe was asked for)."""
    other = ffi.SoraVideoFrameTransformer()
    state = {"n": 0, "kept": None}
    t = ffi.SoraVideoFrameTransformer()

    def on_transform(frame):
        n = state["n"]
        state["n"] += 1
        if n < 20:
            mode = n % 6
            if mode == 0:
                raise RuntimeError("transformer bug")
            if mode == 1:
                return  # never enqueued
            if mode == 2:
                t.enqueue(frame)
                t.enqueue(frame)  # twice
                return
            if mode == 3:
                other_frame = frame
                other.enqueue(other_frame)  # a frame of another transformer
                return
            frame.set_data(np.zeros(0 if mode == 4 else 10 << 20, np.uint8))
        t.enqueue(frame)

    t.on_transform = on_transform
    sender, receiver, source, rx = video_pair(ffi, server, channel_id, clients, send_t=t)
    push_video(source, 90, 640, 360)
    receiver.wait_for(lambda: any(i >= 60 for i in rx.indices), 5, "frames after the bad phase")
    assert t.dropped_frames >= 10
    assert other.dropped_frames >= 1
    assert any("encoded transform: dropping" in r.getMessage() for r in caplog.records)
    assert any("transformer bug" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_short_circuiting_skips_the_transformer(ffi, server, channel_id, clients):
    calls = []
    t = ffi.SoraVideoFrameTransformer()
    t.on_transform = lambda f: (calls.append(f), t.enqueue(f))
    t.start_short_circuiting()
    sender, receiver, source, rx = video_pair(ffi, server, channel_id, clients, send_t=t)
    push_video(source, 30, 640, 360)
    receiver.wait_for(lambda: len(rx.indices) >= 20, 5, "frames")
    assert calls == []


def test_slow_transformer_never_stalls_the_network(ffi, server, channel_id, clients):
    """on_transform blocks for 2 s on the sender's dispatcher: the send pipeline goes on,
    frames that waited too long are dropped, and the session's messaging is unaffected."""
    t = ffi.SoraVideoFrameTransformer()
    gate = threading.Event()

    def slow(frame):
        gate.wait(2)
        t.enqueue(frame)

    t.on_transform = slow
    dcs = [{"label": "#m", "direction": "sendrecv"}]
    receiver = clients(ffi, server, channel_id, "recvonly", video=True,
                       data_channel_signaling=True, data_channels=dcs).connect()
    sora = ffi.Sora()
    source = sora.create_video_source()
    sender = clients(ffi, server, channel_id, "sendonly", sora=sora, video=True,
                     video_codec_type="VP9", video_source=source, video_frame_transformer=t,
                     data_channel_signaling=True, data_channels=dcs).connect()
    sender.wait_dc("#m")
    receiver.wait_dc("#m")
    t0 = time.monotonic()
    push_video(source, 30, 640, 360)
    assert time.monotonic() - t0 < 1.5  # capture and encoding never waited for Python
    assert sender.conn.send_data_channel("#m", b"still here")
    assert receiver.wait_messages(1) == [("#m", b"still here")]
    gate.set()


@pytest.mark.parametrize("bad,exc", [
    (lambda s: s.SoraFrameTransformer(), TypeError),
    (lambda s: s.SoraTransformableFrame(), TypeError),
    (lambda s: s.SoraVideoFrameTransformer().enqueue("frame"), TypeError),
    (lambda s: setattr(s.SoraAudioFrameTransformer(), "on_transform", 5), TypeError),
    (lambda s: s.Sora().create_connection(signaling_urls=["ws://127.0.0.1:1/signaling"],
                                          role="sendonly", channel_id="c",
                                          video_frame_transformer=s.SoraAudioFrameTransformer()),
     TypeError),
], ids=["base-class", "frame-direct", "enqueue-str", "callback-int", "wrong-kind"])
def test_bad_arguments(ffi, bad, exc):
    with pytest.raises(exc):
        bad(ffi)
