"""The media API of sora_ffi: sources, sinks, frames and the VAD.

Everything up to the last section runs without any network: argument validation, pushing
into sources that feed no connection, the dispatch of (synthetic) media events to sinks,
the zero-copy frame views, pickling and the VAD. The last section proves zero-copy and the
bounded sink queue with real frames through the dev server on 127.0.0.1.
"""
from __future__ import annotations

import copy
import gc
import os
import pickle
import shutil
import subprocess
import tempfile
import threading
import time
import wave
import weakref

import numpy as np
import pytest

import sora_ffi
from sora_ffi import _source
from sora_ffi._dispatch import MEDIA_EVENTS_PER_SINK, EventType
from sora_ffi._native import Buffer, Event, ffi
from sora_ffi._track import SoraMediaTrack

INT64_MIN = -(2**63)
URL = "ws://127.0.0.1:9/signaling"  # never contacted


@pytest.fixture(scope="module")
def sora():
    return sora_ffi.Sora()


@pytest.fixture
def audio(sora):
    return sora.create_audio_source(2, 48000)


@pytest.fixture
def video(sora):
    return sora.create_video_source()


class _RecordingLib:
    """Stands in for `lib` inside sora_ffi._source: records the push calls, runs them too."""

    def __init__(self, real):
        self._real = real
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self._real, name)

    def sora_audio_source_push(self, src, data, frames, ts, has_ts):
        self.calls.append(("audio", frames, ts, has_ts))
        return self._real.sora_audio_source_push(src, data, frames, ts, has_ts)

    def sora_video_source_push_bgr(self, src, data, size, width, height, stride, ts_us):
        self.calls.append(("video", size, width, height, stride, ts_us))
        return self._real.sora_video_source_push_bgr(src, data, size, width, height, stride, ts_us)


@pytest.fixture
def recorded(monkeypatch):
    rec = _RecordingLib(_source.lib)
    monkeypatch.setattr(_source, "lib", rec)
    return rec.calls


# -- sources: creation and the track interface ------------------------------------------------

def test_create_audio_source_checks_its_arguments(sora):
    for bad in ((1.0, 48000), ("2", 48000), (True, 48000), (2, 48000.0), (2, None)):
        with pytest.raises(TypeError):
            sora.create_audio_source(*bad)
    for bad in ((0, 48000), (9, 48000), (-1, 48000), (1, 7999), (1, 192001), (1, 0)):
        with pytest.raises(ValueError):
            sora.create_audio_source(*bad)
    src = sora.create_audio_source(channels=1, sample_rate=16000)
    assert (src.channels, src.sample_rate) == (1, 16000)


def test_sources_are_track_interfaces(audio, video):
    assert isinstance(audio, sora_ffi.SoraAudioSource) and isinstance(video, sora_ffi.SoraVideoSource)
    for src, kind in ((audio, "audio"), (video, "video")):
        assert isinstance(src, sora_ffi.SoraTrackInterface)
        assert src.kind == kind
        assert isinstance(src.id, str) and src.id
        assert src.state == sora_ffi.SoraTrackState.LIVE
        assert src.enabled is True
        assert src.set_enabled(False) is True and src.enabled is False
        assert src.set_enabled(True) is True and src.enabled is True
        with pytest.raises(TypeError):
            src.set_enabled(1)  # type: ignore[arg-type]
    assert audio.id != video.id


def test_disabled_sources_still_take_data(audio, video):
    audio.set_enabled(False)
    video.set_enabled(False)
    audio.on_data(np.zeros((480, 2), np.int16))
    video.on_captured(np.zeros((16, 16, 3), np.uint8))


# -- SoraAudioSource.on_data ---------------------------------------------------------------

def test_on_data_ndarray_without_and_with_timestamp(audio, recorded):
    pcm = np.zeros((480, 2), np.int16)
    audio.on_data(pcm)
    audio.on_data(pcm, 1700000000.25)
    audio.on_data(pcm, timestamp=5)
    audio.on_data(ndarray=pcm, timestamp=6.5)
    ro = pcm.copy()
    ro.flags.writeable = False
    audio.on_data(ro)  # read-only arrays are fine
    assert recorded == [("audio", 480, 0.0, 0), ("audio", 480, 1700000000.25, 1),
                        ("audio", 480, 5.0, 1), ("audio", 480, 6.5, 1), ("audio", 480, 0.0, 0)]


def test_on_data_pointer_form(audio, recorded):
    pcm = np.zeros((960, 2), np.int16)
    address = pcm.ctypes.data
    audio.on_data(address, 960)
    audio.on_data(address, 480, 12.5)
    audio.on_data(data=address, samples_per_channel=240, timestamp=1.0)
    audio.on_data(0, 0)  # nothing, NULL allowed
    assert recorded == [("audio", 960, 0.0, 0), ("audio", 480, 12.5, 1),
                        ("audio", 240, 1.0, 1), ("audio", 0, 0.0, 0)]


def test_on_data_long_bursts_go_over_in_chunks_with_one_timestamp(audio, recorded):
    pcm = np.zeros((48000 * 2 + 100, 2), np.int16)  # 2 s: no connection, so nothing waits
    audio.on_data(pcm, 100.0)
    assert sum(c[1] for c in recorded) == len(pcm)
    assert all(c[1] <= 4800 for c in recorded) and len(recorded) == 21
    assert recorded[0][2:] == (100.0, 1)
    assert all(c[3] == 0 for c in recorded[1:])  # later chunks continue the timestamps


def test_on_data_chunks_of_the_pointer_form_advance_through_the_memory(sora, monkeypatch):
    src = sora.create_audio_source(2, 8000)
    seen: list[int] = []

    class Lib(_RecordingLib):
        def sora_audio_source_push(self, s, data, frames, ts, has_ts):
            seen.append(int(ffi.cast("uintptr_t", data)))
            return super().sora_audio_source_push(s, data, frames, ts, has_ts)

    monkeypatch.setattr(_source, "lib", Lib(_source.lib))
    pcm = np.zeros((2000, 2), np.int16)
    src.on_data(pcm.ctypes.data, 2000)
    step = 800 * 2 * 2  # 100 ms at 8 kHz, 2 channels, 2 bytes
    assert seen == [pcm.ctypes.data, pcm.ctypes.data + step, pcm.ctypes.data + 2 * step]


@pytest.mark.parametrize("bad", [
    np.zeros((480, 2), np.float32),
    np.zeros((480, 2), np.int32),
    np.zeros((480, 2), np.uint16),
    np.zeros((480, 2), np.float64),
], ids=lambda a: str(a.dtype))
def test_on_data_wrong_dtype_is_a_type_error(audio, bad):
    with pytest.raises(TypeError, match="int16"):
        audio.on_data(bad)


@pytest.mark.parametrize("bad", [
    np.zeros(960, np.int16),
    np.zeros((480, 1), np.int16),
    np.zeros((480, 3), np.int16),
    np.zeros((2, 480), np.int16),
    np.zeros((480, 2, 1), np.int16),
    np.zeros((), np.int16),
], ids=lambda a: str(a.shape))
def test_on_data_wrong_shape_is_a_value_error(audio, bad):
    with pytest.raises(ValueError):
        audio.on_data(bad)


def test_on_data_non_contiguous_arrays_are_refused_not_copied(audio):
    with pytest.raises(ValueError, match="contiguous"):
        audio.on_data(np.zeros((480, 2), np.int16, order="F"))
    with pytest.raises(ValueError, match="contiguous"):
        audio.on_data(np.zeros((960, 2), np.int16)[::2])
    with pytest.raises(ValueError, match="contiguous"):
        audio.on_data(np.zeros((2, 480), np.int16).T)
    audio.on_data(np.zeros((960, 2), np.int16)[100:200])  # a contiguous slice is fine


def test_on_data_other_argument_errors(audio):
    pcm = np.zeros((480, 2), np.int16)
    with pytest.raises(TypeError):
        audio.on_data([[0, 0]] * 480)  # lists are not arrays
    with pytest.raises(TypeError):
        audio.on_data(b"\0" * 1920)
    with pytest.raises(TypeError):
        audio.on_data()
    with pytest.raises(TypeError):
        audio.on_data(pcm, "now")
    with pytest.raises(TypeError):
        audio.on_data(pcm, True)
    with pytest.raises(ValueError):
        audio.on_data(pcm, float("nan"))
    with pytest.raises(ValueError):
        audio.on_data(pcm, float("inf"))
    with pytest.raises(TypeError):
        audio.on_data(pcm, 1.0, 2.0)
    with pytest.raises(TypeError):
        audio.on_data(pcm, when=1.0)
    with pytest.raises(TypeError):
        audio.on_data(pcm, ndarray=pcm)
    with pytest.raises(TypeError):
        audio.on_data(pcm.ctypes.data)  # samples_per_channel missing
    with pytest.raises(TypeError):
        audio.on_data(pcm.ctypes.data, 4.0)
    with pytest.raises(ValueError):
        audio.on_data(pcm.ctypes.data, -1)
    with pytest.raises(ValueError):
        audio.on_data(-5, 10)
    with pytest.raises(ValueError):
        audio.on_data(2**64, 10)
    with pytest.raises(ValueError):
        audio.on_data(0, 10)  # NULL with samples
    with pytest.raises(TypeError):
        audio.on_data(pcm.ctypes.data, 480, 1.0, 2.0)


# -- SoraVideoSource.on_captured -----------------------------------------------------------

def test_on_captured_three_forms(video, recorded):
    frame = np.zeros((480, 640, 3), np.uint8)
    video.on_captured(frame)
    video.on_captured(frame, 1700000000.5)
    video.on_captured(frame, 1700000000500001)
    video.on_captured(frame, timestamp_us=42)
    video.on_captured(frame, timestamp=2.0)
    video.on_captured(ndarray=frame, timestamp=np.float64(3.25))
    video.on_captured(frame, np.int64(7))
    size = 480 * 640 * 3
    assert [c[-1] for c in recorded] == [INT64_MIN, 1700000000500000, 1700000000500001, 42,
                                         2_000_000, 3_250_000, 7]
    assert all(c[1:5] == (size, 640, 480, 640 * 3) for c in recorded)


def test_on_captured_frames_may_change_size(video, recorded):
    for h, w in ((480, 640), (240, 320), (1, 1), (17, 33), (720, 1280), (2, 8192)):
        video.on_captured(np.full((h, w, 3), 128, np.uint8))
    assert [(c[2], c[3]) for c in recorded] == [(640, 480), (320, 240), (1, 1), (33, 17),
                                                (1280, 720), (8192, 2)]


def test_on_captured_accepts_strided_rows(video, recorded):
    big = np.zeros((480, 640, 3), np.uint8)
    crop = big[100:200, 50:250]  # rows 640*3 bytes apart, pixels contiguous within a row
    assert not crop.flags.c_contiguous
    video.on_captured(crop)
    assert recorded == [("video", 640 * 3 * 99 + 200 * 3, 200, 100, 640 * 3, INT64_MIN)]


@pytest.mark.parametrize("make", [
    lambda: np.zeros((480, 640, 3), np.uint8)[:, ::2],
    lambda: np.zeros((480, 640, 3), np.uint8)[::-1],
    lambda: np.zeros((640, 480, 3), np.uint8).transpose(1, 0, 2),
    lambda: np.zeros((480, 640, 4), np.uint8)[:, :, :3],
    lambda: np.zeros((3, 480, 640), np.uint8).transpose(1, 2, 0),
], ids=["every-other-column", "flipped", "transposed", "bgra-view", "planar"])
def test_on_captured_non_contiguous_is_a_value_error(video, make):
    with pytest.raises(ValueError, match="non-contiguous"):
        video.on_captured(make())


def test_on_captured_argument_errors(video):
    frame = np.zeros((48, 64, 3), np.uint8)
    for bad in (np.zeros((48, 64, 3), np.float32), np.zeros((48, 64, 3), np.int8),
                np.zeros((48, 64, 3), np.uint16)):
        with pytest.raises(TypeError, match="uint8"):
            video.on_captured(bad)
    for bad in (np.zeros((48, 64), np.uint8), np.zeros((48, 64, 4), np.uint8),
                np.zeros((48, 64, 1), np.uint8), np.zeros((2, 48, 64, 3), np.uint8),
                np.zeros((0, 64, 3), np.uint8), np.zeros((48, 0, 3), np.uint8),
                np.zeros((8193, 1, 3), np.uint8)):
        with pytest.raises(ValueError):
            video.on_captured(bad)
    with pytest.raises(TypeError):
        video.on_captured(frame.tolist())
    with pytest.raises(TypeError):
        video.on_captured()
    with pytest.raises(TypeError):
        video.on_captured(frame, "now")
    with pytest.raises(TypeError):
        video.on_captured(frame, True)
    with pytest.raises(TypeError):
        video.on_captured(frame, timestamp_us=1.5)
    with pytest.raises(TypeError):
        video.on_captured(frame, timestamp="1")
    with pytest.raises(TypeError):
        video.on_captured(frame, 1.0, timestamp_us=1)
    with pytest.raises(TypeError):
        video.on_captured(frame, timestamp=1.0, timestamp_us=1)
    with pytest.raises(TypeError):
        video.on_captured(frame, 1, 2)
    with pytest.raises(TypeError):
        video.on_captured(frame, ts=1)
    with pytest.raises(ValueError):
        video.on_captured(frame, float("nan"))
    with pytest.raises(ValueError):
        video.on_captured(frame, timestamp_us=2**63)
    with pytest.raises(ValueError):
        video.on_captured(frame, timestamp_us=INT64_MIN)


def test_sources_without_a_connection_never_block_or_crash(sora):
    audio = sora.create_audio_source(1, 16000)
    video = sora.create_video_source()
    start = time.monotonic()
    for _ in range(50):
        audio.on_data(np.zeros((16000, 1), np.int16))  # 50 s of audio
        video.on_captured(np.zeros((720, 1280, 3), np.uint8))
    assert time.monotonic() - start < 5
    del audio, video
    gc.collect()


def test_audio_source_queue_controls_without_a_connection(audio):
    """sora_ffi additions: nothing sends, so nothing counts as queued and clearing is a
    no-op; max_queued is checked. (Their effect with a sending connection: test_rtc.)"""
    audio.on_data(np.zeros((4800, 2), np.int16))
    assert audio.queued_duration == 0.0
    assert audio.clear_queue() == 0
    assert audio.max_queued == 0.5
    audio.max_queued = 2
    assert audio.max_queued == 2.0
    for bad, error in ((0, ValueError), (-1, ValueError), (4000, ValueError),
                       (float("nan"), ValueError), ("1", TypeError), (True, TypeError)):
        with pytest.raises(error):
            audio.max_queued = bad
    assert audio.max_queued == 2.0


def test_pushing_from_threads_while_the_source_is_in_use(sora):
    audio = sora.create_audio_source(2, 48000)
    video = sora.create_video_source()
    errors: list[BaseException] = []

    def push(i):
        try:
            for _ in range(50):
                audio.on_data(np.zeros((480, 2), np.int16))
                video.on_captured(np.zeros((36 + i, 64, 3), np.uint8))
                audio.set_enabled(bool(i % 2))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_connection_keeps_its_sources_alive(sora):
    audio, video = sora.create_audio_source(1, 48000), sora.create_video_source()
    refs = [weakref.ref(audio), weakref.ref(video)]
    conn = sora.create_connection([URL], "sendrecv", "room", audio_source=audio, video_source=video)
    del audio, video
    gc.collect()
    assert all(r() is not None for r in refs)
    conn.disconnect()
    del conn
    gc.collect()
    assert all(r() is None for r in refs)


# -- frames -----------------------------------------------------------------------------------

class FakeMemory:
    """A native-like allocation for Buffer: records when Buffer releases it."""

    def __init__(self, data: bytes):
        self.size = len(data)
        self.block = ffi.new("uint8_t[]", max(len(data), 1))
        ffi.memmove(self.block, data, len(data))
        self.address = int(ffi.cast("uintptr_t", self.block))
        self.released = 0

    def buffer(self) -> Buffer:
        return Buffer(self.address, self.size, self.release)

    def release(self):
        self.released += 1


def test_video_frame_data_is_a_zero_copy_view_that_outlives_the_frame():
    w, h = 64, 48
    pixels = np.arange(w * h * 3, dtype=np.uint32).astype(np.uint8)
    mem = FakeMemory(pixels.tobytes())
    frame = sora_ffi.SoraVideoFrame._from_buffer(mem.buffer(), w, h)
    data = frame.data()
    assert data.shape == (h, w, 3) and data.dtype == np.uint8
    assert data.ctypes.data == mem.address  # the very bytes the shim handed over
    assert data.flags.writeable
    del frame
    gc.collect()
    assert mem.released == 0
    assert np.array_equal(data.ravel(), pixels)  # still valid without frame and buffer
    view = data[10:20, 5:9]
    del data
    gc.collect()
    assert mem.released == 0  # a slice keeps the memory too
    assert view[0, 0, 0] == pixels[(10 * w + 5) * 3]
    del view
    gc.collect()
    assert mem.released == 1


def test_frames_cannot_be_made_directly_and_check_their_size():
    with pytest.raises(TypeError):
        sora_ffi.SoraVideoFrame()
    with pytest.raises(TypeError):
        sora_ffi.SoraAudioFrame()
    with pytest.raises(ValueError):
        sora_ffi.SoraVideoFrame._from_buffer(FakeMemory(b"\0" * 10).buffer(), 2, 2)
    with pytest.raises(ValueError):
        sora_ffi.SoraAudioFrame._from_buffer(FakeMemory(b"\0" * 6).buffer(), 16000, 2, None)


def _audio_frame(samples: np.ndarray, rate: int, ts=None) -> sora_ffi.SoraAudioFrame:
    frame = sora_ffi.SoraAudioFrame.__new__(sora_ffi.SoraAudioFrame)
    frame.__setstate__((samples.ravel().tolist(), samples.shape[0], samples.shape[1], rate, ts))
    return frame


def test_audio_frame_from_a_buffer_is_zero_copy():
    pcm = (np.arange(960, dtype=np.int16) - 480).reshape(480, 2)
    mem = FakeMemory(pcm.tobytes())
    frame = sora_ffi.SoraAudioFrame._from_buffer(mem.buffer(), 48000, 2, 1700000000123)
    assert frame.data().ctypes.data == mem.address
    assert np.array_equal(frame.data(), pcm)
    assert (frame.samples_per_channel, frame.num_channels, frame.sample_rate_hz) == (480, 2, 48000)
    assert frame.absolute_capture_timestamp_ms == 1700000000123


def test_audio_frame_pickles_in_the_official_state_format():
    pcm = (np.arange(320, dtype=np.int16) * 97).reshape(160, 2)
    mem = FakeMemory(pcm.tobytes())
    frame = sora_ffi.SoraAudioFrame._from_buffer(mem.buffer(), 16000, 2, None)
    state = frame.__getstate__()
    assert isinstance(state, tuple) and len(state) == 5
    samples, per_channel, channels, rate, ts = state
    assert type(samples) is list and all(type(v) is int for v in samples)
    assert samples == pcm.ravel().tolist()
    assert (per_channel, channels, rate, ts) == (160, 2, 16000, None)
    for clone in (pickle.loads(pickle.dumps(frame)), copy.deepcopy(frame),
                  pickle.loads(pickle.dumps(frame, protocol=2))):
        assert isinstance(clone, sora_ffi.SoraAudioFrame)
        assert np.array_equal(clone.data(), pcm) and clone.data().dtype == np.int16
        assert (clone.samples_per_channel, clone.num_channels, clone.sample_rate_hz,
                clone.absolute_capture_timestamp_ms) == (160, 2, 16000, None)
    stamped = _audio_frame(pcm, 16000, 1234)
    assert pickle.loads(pickle.dumps(stamped)).absolute_capture_timestamp_ms == 1234
    assert pickle.loads(pickle.dumps(stamped)).__getstate__() == stamped.__getstate__()


def test_audio_frame_setstate_checks_the_state():
    frame = sora_ffi.SoraAudioFrame.__new__(sora_ffi.SoraAudioFrame)
    frame.__setstate__(([], 0, 1, 48000, None))  # empty is fine
    assert frame.data().shape == (0, 1)
    with pytest.raises(TypeError):
        frame.__setstate__(([0, 0], 2, 1, 48000))
    with pytest.raises(ValueError):
        frame.__setstate__(([0, 0, 0], 2, 1, 48000, None))  # 3 samples are not 2 x 1
    with pytest.raises(ValueError):
        frame.__setstate__(([40000], 1, 1, 48000, None))  # not int16
    with pytest.raises(TypeError):
        frame.__setstate__(([0.5], 1, 1, 48000, None))
    with pytest.raises(ValueError):
        frame.__setstate__(([0], 1, 0, 48000, None))
    with pytest.raises(ValueError):
        frame.__setstate__(([0], 1, 1, 0, None))
    with pytest.raises(TypeError):
        frame.__setstate__(([0], 1, 1, 48000, "now"))


# -- SoraVAD ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def speech():
    """(rate, mono int16 samples) of espeak-ng speech (CI installs espeak-ng)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "speech.wav")
        subprocess.run(["espeak-ng", "-w", path, "Voice activity detection needs a few seconds "
                        "of real speech, so here is a sentence about a selective forwarding unit."],
                       check=True, capture_output=True)
        with wave.open(path) as w:
            rate, data = w.getframerate(), w.readframes(w.getnframes())
    return rate, np.frombuffer(data, np.int16)


def _at(signal: np.ndarray, src_rate: int, rate: int, channels: int) -> np.ndarray:
    """`signal` at `rate` (linear interpolation is enough for a test input), `channels` wide."""
    n = len(signal) * rate // src_rate
    out = np.interp(np.arange(n) * src_rate / rate, np.arange(len(signal)), signal).astype(np.int16)
    return np.repeat(out[:, None], channels, axis=1)


def _vad_frames(signal: np.ndarray, rate: int) -> list:
    vad = sora_ffi.SoraVAD()
    per = rate // 100
    return [vad.analyze(_audio_frame(signal[i * per:(i + 1) * per], rate)) for i in range(len(signal) // per)]


@pytest.mark.parametrize("rate,channels", [(16000, 1), (48000, 2), (24000, 1), (8000, 1), (44100, 2)])
def test_vad_speech_versus_silence_and_tone(speech, rate, channels):
    src_rate, mono = speech
    signal = _at(mono, src_rate, rate, channels)
    p = np.array(_vad_frames(signal, rate))
    assert all(type(x) is float and 0.0 <= x <= 1.0 for x in p.tolist())
    per = rate // 100
    rms = np.sqrt((signal[: len(p) * per, 0].astype(np.float64) ** 2).reshape(len(p), per).mean(axis=1))
    talking = p[rms > rms.max() * 0.0316]  # within 30 dB of the loudest frame
    t = np.arange(len(signal)) / rate
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[:, None].repeat(channels, axis=1)
    tone_p = np.array(_vad_frames(tone, rate))
    silence_p = _vad_frames(np.zeros_like(signal[: rate]), rate)
    print(f"\nVAD {rate} Hz x{channels}: speech frames > 0.95 {np.mean(talking > 0.95):.0%}, "
          f"440 Hz tone < 0.5 {np.mean(tone_p < 0.5):.0%}, silence max {max(silence_p):.3f}")
    assert np.mean(talking > 0.95) >= 0.85
    assert np.mean(tone_p < 0.5) >= 0.9
    assert max(silence_p) < 0.5


def test_vad_argument_errors():
    vad = sora_ffi.SoraVAD()
    with pytest.raises(TypeError):
        vad.analyze(np.zeros((160, 1), np.int16))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vad.analyze(None)  # type: ignore[arg-type]
    p = vad.analyze(_audio_frame(np.zeros((0, 1), np.int16), 16000))  # empty: no crash
    assert 0.0 <= p <= 1.0


# -- sinks without a network: construction and event dispatch ----------------------------------

class _GoneConnection:
    """Something a track can hold weakly that is collected at once: an ended connection."""


def _orphan_track(kind: str) -> SoraMediaTrack:
    conn = _GoneConnection()
    track = SoraMediaTrack(conn, 1, kind, f"{kind}-track", "stream")  # type: ignore[arg-type]
    del conn
    gc.collect()
    return track


def test_sink_constructor_checks(audio, video):
    vtrack, atrack = _orphan_track("video"), _orphan_track("audio")
    for cls in (sora_ffi.SoraVideoSink, sora_ffi.SoraAudioSink, sora_ffi.SoraAudioStreamSink):
        with pytest.raises(TypeError):
            cls(object())
        with pytest.raises(TypeError):
            cls(None)
    with pytest.raises(TypeError, match="SoraMediaTrack"):
        sora_ffi.SoraVideoSink(video)  # a local source is not a received track
    with pytest.raises(TypeError, match="SoraMediaTrack"):
        sora_ffi.SoraAudioSink(audio)
    with pytest.raises(ValueError):
        sora_ffi.SoraVideoSink(atrack)
    with pytest.raises(ValueError):
        sora_ffi.SoraAudioSink(vtrack)
    with pytest.raises(ValueError):
        sora_ffi.SoraAudioStreamSink(vtrack)
    for cls in (sora_ffi.SoraAudioSink, sora_ffi.SoraAudioStreamSink):
        with pytest.raises(TypeError):
            cls(atrack, 16000.0, 1)
        with pytest.raises(TypeError):
            cls(atrack, 16000, "1")
        for rate, ch in ((0, 1), (-2, 1), (16000, -1), (16000, 9)):
            with pytest.raises(ValueError):
                cls(atrack, rate, ch)
        cls(atrack, 16000, 1)
        cls(atrack, output_frequency=48000, output_channels=2)
        cls(atrack)
    sink = sora_ffi.SoraVideoSink(track=vtrack)
    assert sink._track is vtrack  # the sink keeps its track alive
    with pytest.raises(TypeError):
        sink.on_frame = 5  # type: ignore[assignment]


def test_sink_on_an_ended_track_is_inert(monkeypatch):
    sink = sora_ffi.SoraAudioSink(_orphan_track("audio"), 16000, 2)
    start = time.monotonic()
    ok, data = sink.read(160, timeout=0.2)
    assert time.monotonic() - start >= 0.15  # waits like a sink that receives nothing
    assert ok is False and data.shape == (0, 2) and data.dtype == np.int16
    ok, data = sora_ffi.SoraAudioSink(_orphan_track("audio")).read(timeout=0)
    assert ok is False and data.shape == (0, 0)
    sink.on_data = lambda d: None
    sink.on_format = lambda r, c: None
    sink.__del__()  # explicit, as the official wrapper classes do; idempotent
    sink.__del__()


def test_audio_stream_sink_frame_size_is_checked():
    """sora_ffi addition (its effect end to end: test_rtc's AudioStream frame sizes)."""
    sink = sora_ffi.SoraAudioStreamSink(_orphan_track("audio"), 16000, 1)
    assert sink.frame_size_ms == 10
    sink.frame_size_ms = 50
    assert sink.frame_size_ms == 50
    for bad, error in ((0, ValueError), (15, ValueError), (1010, ValueError), (20.0, TypeError), (True, TypeError)):
        with pytest.raises(error):
            sink.frame_size_ms = bad
    assert sink.frame_size_ms == 50
    sink.close()
    sink.close()  # idempotent, like del


def test_audio_sink_read_argument_errors():
    sink = sora_ffi.SoraAudioSink(_orphan_track("audio"))
    with pytest.raises(TypeError):
        sink.read(1.5)
    with pytest.raises(TypeError):
        sink.read(True)
    with pytest.raises(ValueError):
        sink.read(-1)
    with pytest.raises(TypeError):
        sink.read(0, "1")
    with pytest.raises(ValueError):
        sink.read(0, float("nan"))
    assert sink.read(0, -1)[0] is False  # negative timeouts do not wait


def test_audio_sink_read_into_without_a_sink_is_an_error():
    """The C ABI behind SoraAudioSink.read's fast path refuses NULL (the rest, on a sink
    receiving audio: test_e2e_media's test_audio_sink_takes_buffered_audio_exactly_or_not_at_all)."""
    from sora_ffi._native import lib
    count = ffi.new("size_t *")
    assert lib.sora_audio_sink_buffered(ffi.NULL, count, ffi.NULL, ffi.NULL) < 0
    assert lib.sora_audio_sink_read_into(ffi.NULL, 1, 4, ffi.new("int16_t[8]")) < 0


def test_video_sink_dispatch_of_a_frame_event():
    sink = sora_ffi.SoraVideoSink(_orphan_track("video"))
    got = []
    sink._handle_event(Event(EventType.VIDEO_FRAME, 0, 4, 2, buffer=FakeMemory(b"\x07" * 24).buffer()))
    sink.on_frame = got.append
    assert sink.on_frame == got.append
    mem = FakeMemory(bytes(range(24)))
    sink._handle_event(Event(EventType.VIDEO_FRAME, 0, 4, 2, buffer=mem.buffer()))
    sink._handle_event(Event(EventType.AUDIO_FRAME, 0, 4, 2, buffer=FakeMemory(b"\0" * 24).buffer()))
    assert len(got) == 1 and isinstance(got[0], sora_ffi.SoraVideoFrame)
    assert got[0].data().shape == (2, 4, 3) and got[0].data().ctypes.data == mem.address
    assert got[0].data()[1, 3].tolist() == [21, 22, 23]


def test_audio_stream_sink_dispatch_of_a_frame_event():
    sink = sora_ffi.SoraAudioStreamSink(_orphan_track("audio"))
    got = []
    sink.on_frame = got.append
    pcm = np.arange(960, dtype=np.int16).reshape(480, 2)
    sink._handle_event(Event(EventType.AUDIO_FRAME, 0, 48000 | 2 << 32, 1700000000999,
                             buffer=FakeMemory(pcm.tobytes()).buffer()))
    sink._handle_event(Event(EventType.AUDIO_FRAME, 0, 16000 | 1 << 32, INT64_MIN,
                             buffer=FakeMemory(b"\0" * 320).buffer()))
    a, b = got
    assert (a.sample_rate_hz, a.num_channels, a.samples_per_channel) == (48000, 2, 480)
    assert a.absolute_capture_timestamp_ms == 1700000000999 and np.array_equal(a.data(), pcm)
    assert (b.sample_rate_hz, b.num_channels, b.samples_per_channel) == (16000, 1, 160)
    assert b.absolute_capture_timestamp_ms is None


def test_audio_sink_deprecated_callbacks_dispatch():
    sink = sora_ffi.SoraAudioSink(_orphan_track("audio"))
    formats, chunks = [], []
    assert sink.on_data is None and sink.on_format is None
    sink.on_format = lambda rate, channels: formats.append((rate, channels))
    sink.on_data = chunks.append
    with pytest.raises(TypeError):
        sink.on_data = "x"  # type: ignore[assignment]
    sink._handle_event(Event(EventType.AUDIO_FORMAT, 0, 16000, 1))
    pcm = np.arange(320, dtype=np.int16).reshape(160, 2)
    sink._handle_event(Event(EventType.AUDIO_DATA, 0, 16000, 2, buffer=FakeMemory(pcm.tobytes()).buffer()))
    assert formats == [(16000, 1)]
    assert len(chunks) == 1 and np.array_equal(chunks[0], pcm)


def test_callback_errors_are_logged_not_raised(caplog):
    sink = sora_ffi.SoraVideoSink(_orphan_track("video"))

    def boom(frame):
        raise RuntimeError("boom")

    sink.on_frame = boom
    sink._handle_event(Event(EventType.VIDEO_FRAME, 0, 1, 1, buffer=FakeMemory(b"\0" * 3).buffer()))
    assert "boom" in caplog.text


def test_the_dispatcher_queue_bounds_media_frames_per_sink():
    assert 1 <= MEDIA_EVENTS_PER_SINK <= 16
    sora = sora_ffi.Sora()
    assert sora._dispatcher.queue.dropped == 0


# -- through the dev server: real frames ---------------------------------------------------------

def _media_pair(server, channel_id, on_track):
    sora = sora_ffi.Sora()
    source = sora.create_video_source()
    sender = sora.create_connection([server.signaling_url], "sendrecv", channel_id,
                                    video_source=source, audio=False, video_codec_type="VP8")
    receiver = sora.create_connection([server.signaling_url], "sendrecv", channel_id, audio=False)
    receiver.on_track = on_track
    sender.connect()
    receiver.connect()
    assert sender.wait_connected(10) and receiver.wait_connected(10)
    return sora, source, sender, receiver


def _send_frames(source, stop, fps=30, size=(240, 320)):
    img = np.zeros((*size, 3), np.uint8)
    i = 0
    start = time.monotonic()
    while not stop.is_set():
        img[:] = (i * 8) % 256
        source.on_captured(img)
        i += 1
        time.sleep(max(0.0, start + i / fps - time.monotonic()))


def _await(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.02)
    return pred()


def test_received_frames_are_zero_copy_views_of_the_shim_buffer(server, channel_id, monkeypatch):
    seen: list[tuple[int, int, np.ndarray]] = []  # (buffer address, array address, array)
    original = sora_ffi.SoraVideoFrame._from_buffer.__func__

    def recording_from_buffer(cls, buffer, width, height):
        frame = original(cls, buffer, width, height)
        seen.append((buffer.address, frame.data().ctypes.data, frame.data()))
        return frame

    monkeypatch.setattr(sora_ffi.SoraVideoFrame, "_from_buffer", classmethod(recording_from_buffer))
    sinks = []
    kept = []

    def on_track(track):
        if track.kind == "video":
            sink = sora_ffi.SoraVideoSink(track)
            sink.on_frame = kept.append
            sinks.append(sink)

    sora, source, sender, receiver = _media_pair(server, channel_id, on_track)
    stop = threading.Event()
    producer = threading.Thread(target=_send_frames, args=(source, stop))
    producer.start()
    try:
        assert _await(lambda: len(seen) >= 10, 10), f"only {len(seen)} frames arrived"
    finally:
        stop.set()
        producer.join()
        sender.disconnect()
        receiver.disconnect()
    assert all(buf == arr for buf, arr, _ in seen[:10])
    assert all(a.shape == (240, 320, 3) and a.dtype == np.uint8 for _, _, a in seen[:10])
    # The views stay valid with frames and events gone: the pixels are still the sent grey.
    arrays = [a for _, _, a in seen[:10]]
    kept.clear()
    seen.clear()
    gc.collect()
    for a in arrays:
        value = int(np.median(a))
        assert np.abs(a.astype(int) - value).max() < 16  # uniform (lossy codec)


def test_a_slow_video_callback_drops_old_frames_instead_of_queueing(server, channel_id):
    got = []
    sinks = []

    def slow(frame):
        got.append(frame.data().shape)
        time.sleep(0.25)

    def on_track(track):
        if track.kind == "video":
            sink = sora_ffi.SoraVideoSink(track)
            sink.on_frame = slow
            sinks.append(sink)

    sora, source, sender, receiver = _media_pair(server, channel_id, on_track)
    stop = threading.Event()
    producer = threading.Thread(target=_send_frames, args=(source, stop))
    producer.start()
    try:
        assert _await(lambda: sora._dispatcher.queue.dropped > 0, 10)
    finally:
        stop.set()
        producer.join()
        sender.disconnect()
        receiver.disconnect()
    assert got and sora._dispatcher.queue.dropped > 0
