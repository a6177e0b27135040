"""Audio in the LiveKit shape: `AudioFrame`, `AudioSource` (publish, paced by awaiting
`capture_frame`) and `AudioStream` (subscribe, an async iterator of frames)."""
from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from .._frame import SoraAudioFrame
from .._sink import SoraAudioStreamSink
from .._source import SoraAudioSource
from ._handoff import TrackReader

if TYPE_CHECKING:
    from ._participant import RemoteParticipant
    from ._track import RemoteAudioTrack, TrackSource

__all__ = ["AudioFrame", "AudioSource", "AudioStream", "AudioFrameEvent"]

#: The native sink's frames are multiples of 10 ms.
_SINK_FRAME_MS = 10
#: capture_frame hands frames longer than this over in pieces, waiting for room between
#: them, so that one long frame (a whole utterance) never blocks the event loop.
_CAPTURE_CHUNK_S = 0.1
#: how much more room than needed capture_frame waits for once it has to wait
_WAIT_SLACK_S = 0.05
#: below the limit by more than this on the clock, the engine's queue is not asked
_CLOCK_MARGIN_S = 0.02
#: waits end on this grid of the loop's clock, so that many sources waking at about the
#: same time wake the loop once between them
_WAKE_GRID_S = 0.01
#: AudioStream's capacity when none is given: 5 s of frames.
_DEFAULT_CAPACITY_S = 5.0


async def _sleep_on_grid(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = math.ceil((loop.time() + seconds) / _WAKE_GRID_S) * _WAKE_GRID_S
    await asyncio.sleep(deadline - loop.time())


def _int_at_least(name: str, value: Any, low: int = 1) -> int:
    """An int (numpy's too; not bool) of at least `low`: TypeError, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, not {value}")
    return int(value)


class AudioFrame:
    """Interleaved int16 audio: `samples_per_channel` frames of `num_channels` channels.
    `data` is a memoryview of the samples (format "h"); `to_ndarray()` is a (samples,
    channels) numpy view of the same memory. Received frames are views of the native
    buffer: no copy is made on the way to Python."""

    __slots__ = ("_array", "_sample_rate")

    def __init__(self, data: Union[bytes, bytearray, memoryview, np.ndarray], sample_rate: int,
                 num_channels: int, samples_per_channel: int) -> None:
        self._sample_rate = _int_at_least("sample_rate", sample_rate)
        channels = _int_at_least("num_channels", num_channels)
        samples_per_channel = _int_at_least("samples_per_channel", samples_per_channel, 0)
        if isinstance(data, np.ndarray):
            if data.dtype != np.int16:
                raise TypeError(f"AudioFrame data must be int16 samples, not {data.dtype}")
            flat = data.reshape(-1)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            raw = memoryview(data).cast("B")
            if raw.nbytes % 2:
                raise ValueError("AudioFrame data must hold whole int16 samples (an even byte count)")
            flat = np.frombuffer(raw, np.int16)
        else:
            raise TypeError("AudioFrame data must be bytes, bytearray, memoryview or an int16 "
                            f"numpy array, not {type(data).__name__}")
        if flat.size != samples_per_channel * channels:
            raise ValueError(f"AudioFrame data holds {flat.size} samples, not "
                             f"{samples_per_channel} x {channels} channel(s)")
        self._array = flat.reshape(samples_per_channel, channels)

    @classmethod
    def create(cls, sample_rate: int, num_channels: int, samples_per_channel: int) -> "AudioFrame":
        """A silent frame to fill in (through `data` or `to_ndarray()`)."""
        channels = _int_at_least("num_channels", num_channels)
        samples = _int_at_least("samples_per_channel", samples_per_channel, 0)
        return cls(np.zeros(samples * channels, np.int16), sample_rate, channels, samples)

    @classmethod
    def _wrap(cls, array: np.ndarray, sample_rate: int) -> "AudioFrame":
        frame = cls.__new__(cls)
        frame._array = array
        frame._sample_rate = sample_rate
        return frame

    @property
    def data(self) -> memoryview:
        return self._array.data.cast("B").cast("h")

    def to_ndarray(self) -> np.ndarray:
        return self._array

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return int(self._array.shape[1])

    @property
    def samples_per_channel(self) -> int:
        return int(self._array.shape[0])

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.samples_per_channel / self._sample_rate

    def __repr__(self) -> str:
        return (f"<AudioFrame {self.samples_per_channel} x {self.num_channels} ch "
                f"at {self._sample_rate} Hz>")


class AudioSource:
    """Audio to publish. `await capture_frame(frame)` queues a frame and returns at once
    while less than `queue_size_ms` is queued, otherwise when there is room: awaiting it is
    the pacing, a producer that is ahead of real time simply waits. Until the source is
    published (and while its room reconnects) nothing sends: frames are dropped, and the
    await still keeps the producer to real time. `loop`: the event loop capture_frame must
    be awaited on (any, when None)."""

    def __init__(self, sample_rate: int, num_channels: int, queue_size_ms: int = 1000,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self._sample_rate = _int_at_least("sample_rate", sample_rate)
        self._num_channels = _int_at_least("num_channels", num_channels)
        self._queue_size = _int_at_least("queue_size_ms", queue_size_ms, 10) / 1000
        self._loop = loop
        self._source = SoraAudioSource(self._num_channels, self._sample_rate)
        # We wait for room ourselves, before pushing; the native wait (which would block
        # the event loop) only guards against a frame that outruns a slow sender.
        self._source.max_queued = self._queue_size + 2 * _CAPTURE_CHUNK_S
        self._lock: Optional[asyncio.Lock] = None
        self._step = max(int(self._sample_rate * _CAPTURE_CHUNK_S), 1)  # samples per push at most
        self._closed = False
        # real-time clock of what was pushed: paces the producer when nothing is sending
        # (the engine then queues nothing to wait on)
        self._clock_start: Optional[float] = None
        self._pushed = 0.0

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def queued_duration(self) -> float:
        """Seconds queued and not yet sent."""
        return self._source.queued_duration

    @property
    def sora_source(self) -> SoraAudioSource:
        """The callback API's source underneath (what a connection is configured with)."""
        return self._source

    async def capture_frame(self, frame: AudioFrame) -> None:
        """Queues `frame` (its rate and channel count must be the source's); waits for room
        first. Cancelling the wait leaves the frame (or the rest of a long one) unqueued."""
        if not isinstance(frame, AudioFrame):
            raise TypeError(f"capture_frame takes an AudioFrame, not {type(frame).__name__}")
        if frame.sample_rate != self._sample_rate:
            raise ValueError(f"the frame is at {frame.sample_rate} Hz; this source takes "
                             f"{self._sample_rate} Hz")
        if frame.num_channels != self._num_channels:
            raise ValueError(f"the frame has {frame.num_channels} channel(s); this source takes "
                             f"{self._num_channels}")
        if self._closed:
            raise RuntimeError("the AudioSource is closed")
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("capture_frame must be awaited on the loop given to AudioSource")
        samples = frame.to_ndarray()
        if not samples.flags.c_contiguous:
            samples = np.ascontiguousarray(samples)
        n = samples.shape[0]
        if n <= self._step and (self._lock is None or not self._lock.locked()):
            # The common case (a 10-20 ms frame, nobody else capturing): decide and push
            # without suspending in between, so no lock is needed.
            duration = n / self._sample_rate
            if self._wait_needed(duration) <= 0:
                self._source.on_data(samples)
                self._pushed += duration
                return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent callers queue their frames whole, in turn
            for start in range(0, n, self._step):
                chunk = samples[start:start + self._step]
                duration = chunk.shape[0] / self._sample_rate
                wait = self._wait_needed(duration)
                if wait > 0:
                    await _sleep_on_grid(wait)
                self._source.on_data(chunk)
                self._pushed += duration

    def _ahead(self) -> float:
        """How far the producer is ahead of real time by the clock (0 when behind: a
        producer that fell behind starts counting again, it does not get to burst)."""
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start, self._pushed = now, 0.0
        ahead = self._pushed - (now - self._clock_start)
        if ahead < 0:
            self._clock_start, self._pushed, ahead = now, 0.0, 0.0
        return ahead

    def _wait_needed(self, duration: float) -> float:
        """Seconds to wait before `duration` more fits in the queue (0: it fits now)."""
        room_needed = self._queue_size - duration
        ahead = self._ahead()
        if ahead < room_needed - _CLOCK_MARGIN_S:
            return 0.0  # clearly room by the clock, which tracks the engine's queue closely
        # near the limit: what the engine holds while sending; the clock while nothing sends
        queued = max(self._source.queued_duration, ahead)
        if queued <= room_needed or queued <= 0:
            return 0.0
        # Once waiting, wait for more room than this frame needs (half the queue, at most
        # 50 ms): the next frames then go in without a wait each, so a producer far ahead of
        # real time wakes every few frames, not every frame.
        slack = min(_WAIT_SLACK_S, self._queue_size / 2)
        return queued - max(room_needed - slack, 0.0)

    def clear_queue(self) -> None:
        """Drops what is queued and not yet sent (barge-in)."""
        self._source.clear_queue()
        self._clock_start = None

    async def wait_for_playout(self) -> None:
        """Returns once everything queued has been sent (by the clock, when nothing sends)."""
        while (queued := max(self._source.queued_duration, self._ahead())) > 0:
            await asyncio.sleep(queued)

    async def aclose(self) -> None:
        """Drops the queue; later capture_frame calls raise."""
        self._closed = True
        self._source.clear_queue()


class AudioFrameEvent:
    """One item of an AudioStream (a plain slotted class: one is made per frame)."""

    __slots__ = ("frame",)

    def __init__(self, frame: AudioFrame) -> None:
        self.frame = frame

    def __repr__(self) -> str:
        return f"AudioFrameEvent({self.frame!r})"


class AudioStream(TrackReader[AudioFrameEvent]):
    """The audio of a remote track as an async iterator of `AudioFrameEvent`, converted to
    `sample_rate` and `num_channels`, in frames of `frame_size_ms` (a multiple of 10; None:
    10 ms as they arrive). At most `capacity` frames wait (0: 5 s worth); when the reader
    lags the oldest are dropped and counted in `dropped`. The event loop is woken at most
    once per frame (less when frames arrive faster than it runs). Ends when the track ends
    or on `aclose()`."""

    def __init__(self, track: "RemoteAudioTrack", loop: Optional[asyncio.AbstractEventLoop] = None,
                 capacity: int = 0, sample_rate: int = 48000, num_channels: int = 1,
                 frame_size_ms: Optional[int] = None, **kwargs: Any) -> None:
        from ._track import RemoteAudioTrack
        if kwargs:
            raise TypeError(f"AudioStream does not support {', '.join(sorted(kwargs))} "
                            "(noise cancellation and other LiveKit processing have no "
                            "equivalent here)")
        if not isinstance(track, RemoteAudioTrack):
            raise TypeError(f"AudioStream needs a RemoteAudioTrack, not {type(track).__name__}")
        rate = _int_at_least("sample_rate", sample_rate)
        channels = _int_at_least("num_channels", num_channels)
        if channels > 2:
            raise ValueError(f"num_channels must be 1 or 2, not {channels}")
        if frame_size_ms is None:
            frame_ms = _SINK_FRAME_MS
        else:
            frame_ms = _int_at_least("frame_size_ms", frame_size_ms)
            if frame_ms % _SINK_FRAME_MS or frame_ms > 1000:
                raise ValueError(f"frame_size_ms must be a multiple of {_SINK_FRAME_MS} up to 1000, not {frame_ms}")
        self._rate = rate
        self._channels = channels
        self._frame_ms = frame_ms
        super().__init__(track, loop, capacity, max(int(_DEFAULT_CAPACITY_S * 1000 / frame_ms), 1))

    @classmethod
    def from_track(cls, *, track: "RemoteAudioTrack", **kwargs: Any) -> "AudioStream":
        return cls(track, **kwargs)

    @classmethod
    def from_participant(cls, *, participant: "RemoteParticipant",
                         track_source: Optional["TrackSource"] = None, **kwargs: Any) -> "AudioStream":
        """The stream of `participant`'s audio track (it must be subscribed)."""
        from ._track import TrackKind
        track = participant._track_of(TrackKind.KIND_AUDIO, track_source)
        return cls(track, **kwargs)  # type: ignore[arg-type]

    def _on_frame(self, frame: SoraAudioFrame) -> None:
        self._queue.put(AudioFrameEvent(AudioFrame._wrap(frame.data(), self._rate)))

    def _make_sink(self, sora_track: Any) -> SoraAudioStreamSink:
        sink = SoraAudioStreamSink(sora_track, self._rate, self._channels)
        sink.frame_size_ms = self._frame_ms  # frames come whole from the engine
        return sink
