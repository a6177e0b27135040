"""Sinks on received tracks: `SoraVideoSink`, `SoraAudioSink`, `SoraAudioStreamSink`.

A sink is attached to a `SoraMediaTrack` (from `on_track`) and keeps that track alive. Frames
are decoded and converted natively (I420 to BGR, resampling, channel mixing) and reach Python
as events on the owning Sora's queue: the callbacks (`on_frame`, `on_data`, `on_format`)
run on that Sora's dispatcher thread, one at a time, like the connection callbacks. Only
the newest few frames are kept per sink (`MEDIA_EVENTS_PER_SINK`): a callback slower than
the stream loses the oldest frames instead of piling them up.

A sink stops when it is garbage-collected (or `del`-ed); a sink whose track has ended or
whose connection is gone receives nothing.
"""
from __future__ import annotations

import math
import numbers
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._lazy import np

from ._connection import _call, _Callback
from ._dispatch import EventType
from ._enums import SoraTrackState
from ._frame import SoraAudioFrame, SoraVideoFrame
from ._native import Buffer, Event, check, ffi, last_error, lib
from ._track import SoraMediaTrack, SoraTrackInterface

if TYPE_CHECKING:
    from ._dispatch import Dispatcher

__all__ = ["SoraVideoSink", "SoraAudioSink", "SoraAudioStreamSink"]

SORA_ERR_INVALID_ARGUMENT = -1
SORA_ERR_NOT_FOUND = -3
INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
MAX_OUTPUT_CHANNELS = 8

# create(queue, connection, track_id, out) -> status
_Create = Callable[[Any, Any, int, Any], int]


def _destroy(ptr: Any, source: int, unregister: Callable[[int], None]) -> None:
    unregister(source)
    lib.sora_sink_destroy(ptr)


def _check_output(output_frequency: Any, output_channels: Any) -> tuple[int, int]:
    for name, value in (("output_frequency", output_frequency), ("output_channels", output_channels)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if output_frequency != -1 and output_frequency <= 0:
        raise ValueError(f"output_frequency must be -1 (as received) or positive, not {output_frequency}")
    if not 0 <= output_channels <= MAX_OUTPUT_CHANNELS:
        raise ValueError(f"output_channels must be 0 (as received) to {MAX_OUTPUT_CHANNELS}, not {output_channels}")
    return int(output_frequency), int(output_channels)


class _Sink:
    """A native `SoraSink*` on a remote track, registered with its Sora's dispatcher (weakly).

    Calls on the handle from other threads (`SoraAudioSink.read`) hold it in use; freeing it
    (`__del__`, collection, interpreter exit) waits for them, so no call sees a freed handle."""

    _kind = ""

    def __init__(self, track: SoraTrackInterface, create: _Create) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        self._ptr: Any = ffi.NULL
        self._source = 0
        self._finalizer: Optional[weakref.finalize] = None
        self._dispatcher: Optional["Dispatcher"] = None
        if not isinstance(track, SoraTrackInterface):
            raise TypeError(f"track must be a SoraMediaTrack, not {type(track).__name__}")
        if not isinstance(track, SoraMediaTrack):
            raise TypeError(f"track must be a SoraMediaTrack received in on_track: sora_ffi does not "
                            f"attach sinks to local sources ({type(track).__name__})")
        if track.kind != self._kind:
            raise ValueError(f"{type(self).__name__} needs a {self._kind} track, not a {track.kind or '?'} track")
        self._track = track  # the official SDK's sinks keep their track alive too
        conn = track._connection()
        if conn is None or conn._ptr == ffi.NULL or track.state == SoraTrackState.ENDED:
            return  # nothing will ever arrive: an inert sink
        dispatcher = conn._dispatcher
        out = ffi.new("SoraSink **")
        status = create(dispatcher.queue.ptr, conn._ptr, track._native_id, out)
        if status == SORA_ERR_NOT_FOUND:
            return  # the track ended meanwhile
        if status == SORA_ERR_INVALID_ARGUMENT:
            raise ValueError(last_error())
        check(status)  # e.g. SORA_ERR_INVALID_STATE: no decoder for this track's codec
        ptr = out[0]
        source = int(lib.sora_sink_id(ptr))
        finalizer = weakref.finalize(self, _destroy, ptr, source, dispatcher.unregister_callback)
        # At interpreter exit the dispatcher frees live sinks once its thread is out of any
        # callback (_dispatch._Loop.stop), like connections.
        finalizer.atexit = False
        self._ptr, self._source, self._finalizer = ptr, source, finalizer
        self._dispatcher = dispatcher  # keeps the queue and its thread alive while we live
        try:
            dispatcher.register(source, self)
        except BaseException:
            self._close()
            raise

    @property
    def _attached(self) -> bool:
        return self._ptr != ffi.NULL and not self._closing

    def _enter(self) -> Any:
        """The handle, marked in use (NULL when closed); pair with `_leave()`."""
        with self._lock:
            if self._closing or self._ptr == ffi.NULL:
                return ffi.NULL
            self._users += 1
            return self._ptr

    def _leave(self) -> None:
        with self._lock:
            self._users -= 1
            destroy_now = self._closing and self._users == 0
        if destroy_now and self._finalizer is not None:
            self._finalizer()

    def _close(self) -> None:
        """Detaches and frees the native sink (deferred while a call is using it)."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ did not get far
            return
        with lock:
            self._closing = True
            destroy_now = self._users == 0
        if destroy_now and self._finalizer is not None:
            self._finalizer()

    def close(self) -> None:
        """Detaches the sink now, as `del` does once the last reference goes (sora_ffi
        addition: for code that cannot rely on when collection happens)."""
        self._close()

    def _release(self) -> None:
        """The dispatcher is stopping for good (interpreter exit)."""
        self._close()

    def __del__(self) -> None:
        """Detaches the sink (as the official SDK's `__del__`); also done by collection."""
        self._close()

    def _handle_event(self, ev: Event) -> None:  # pragma: no cover - overridden
        pass

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        track = getattr(self, "_track", None)
        return f"<{type(self).__name__} track={track.id if track else None!r} {state}>"


class SoraVideoSink(_Sink):
    """Receives the decoded frames of a remote video track: `on_frame(SoraVideoFrame)`,
    called on the Sora's dispatcher thread. `frame.data()` is a zero-copy BGR view."""

    _kind = "video"
    on_frame: _Callback[Callable[[SoraVideoFrame], None]] = _Callback()

    def __init__(self, track: SoraTrackInterface) -> None:
        super().__init__(track, lambda queue, conn, track_id, out: lib.sora_video_sink_new(queue, conn, track_id, out))

    def _handle_event(self, ev: Event) -> None:
        if ev.type != EventType.VIDEO_FRAME or ev.buffer is None:
            return
        callback = self.on_frame
        if callback is None:
            return  # the buffer is freed with the event
        _call(callback, SoraVideoFrame._from_buffer(ev.buffer, int(ev.a), int(ev.b)))


class SoraAudioSink(_Sink):
    """Buffers the audio of a remote track, converted to `output_frequency` Hz and
    `output_channels` channels (-1 / 0: as received); take it with `read()`.

    The deprecated callbacks `on_data(ndarray)` and `on_format(sample_rate, channels)` are
    supported too (called on the Sora's dispatcher thread); reading and callbacks may be
    used together."""

    _kind = "audio"

    def __init__(self, track: SoraTrackInterface, output_frequency: int = -1, output_channels: int = 0) -> None:
        self._cb_on_data: Optional[Callable[[np.ndarray], None]] = None
        self._cb_on_format: Optional[Callable[[int, int], None]] = None
        self._events_on = False
        rate, channels = _check_output(output_frequency, output_channels)
        self._channels = channels  # the channel count of what read() returns (0: not known yet)
        super().__init__(track, lambda queue, conn, track_id, out: lib.sora_audio_sink_new(
            conn, track_id, rate, channels, out))

    def read(self, frames: int = 0, timeout: float = 1) -> tuple[bool, np.ndarray]:
        """Takes `frames` frames (`frames=0`: everything buffered, at least one frame),
        waiting up to `timeout` seconds for them to arrive. Returns `(True, samples)` with an
        int16 array shaped (frames, channels), or `(False, empty array)` when not enough
        audio arrived in time. The wait releases the GIL; any thread may read."""
        # (exact int / float first: the ABC checks cost more than the rest of a polled read)
        if type(frames) is not int and (isinstance(frames, bool) or not isinstance(frames, numbers.Integral)):
            raise TypeError(f"frames must be an int, not {type(frames).__name__}")
        if frames < 0:
            raise ValueError(f"frames must not be negative, not {frames}")
        if type(timeout) not in (int, float) and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)):
            raise TypeError(f"timeout must be a float (seconds), not {type(timeout).__name__}")
        seconds = float(timeout)
        if math.isnan(seconds):
            raise ValueError("timeout must not be NaN")
        seconds = max(seconds, 0.0)
        ptr = self._enter()
        if ptr == ffi.NULL:
            time.sleep(min(seconds, INT32_MAX / 1000))  # nothing can arrive: wait as if empty
            return False, self._empty()
        format_ = ffi.new("int32_t[2]")  # rate, channels
        try:
            # What is buffered already goes straight into the array returned (a polled read
            # spent more in handing a native buffer over than in the copy); a read that has
            # to wait, or that another reader raced, takes the general path below.
            count = ffi.new("size_t *")
            check(lib.sora_audio_sink_buffered(ptr, count, format_, format_ + 1))
            ch, have = format_[1], count[0]
            want = have if frames == 0 else frames
            if ch > 0 and 0 < want <= have:
                pcm = np.empty((want, ch), np.int16)
                if check(lib.sora_audio_sink_read_into(ptr, ch, want, ffi.from_buffer("int16_t[]", pcm, True))):
                    self._channels = ch
                    return True, pcm
            ms = INT32_MAX if seconds * 1000 >= INT32_MAX else int(math.ceil(seconds * 1000))
            out = ffi.new("SoraBuffer **")
            status = lib.sora_audio_sink_read(ptr, int(frames), ms, out, format_, format_ + 1)
        finally:
            self._leave()
        if status == 0:
            return False, self._empty()
        check(status)
        buffer = Buffer.adopt(out[0])
        ch = int(format_[1])
        if ch <= 0 or buffer.size % (2 * ch):  # pragma: no cover - the shim's contract
            raise RuntimeError(f"sora_audio_sink_read returned {buffer.size} bytes for {ch} channel(s)")
        self._channels = ch
        return True, np.frombuffer(buffer.memory(), np.int16).reshape(-1, ch)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self._channels), np.int16)

    @property
    def on_data(self) -> Optional[Callable[[np.ndarray], None]]:
        """Deprecated (as in the official SDK): called with each received chunk, int16 shaped
        (frames, channels). Prefer `read()`."""
        return self._cb_on_data

    @on_data.setter
    def on_data(self, callback: Optional[Callable[[np.ndarray], None]]) -> None:
        self._cb_on_data = _callable("on_data", callback)
        self._update_events()

    @property
    def on_format(self) -> Optional[Callable[[int, int], None]]:
        """Deprecated: called with (sample_rate, channels) when the received format changes."""
        return self._cb_on_format

    @on_format.setter
    def on_format(self, callback: Optional[Callable[[int, int], None]]) -> None:
        self._cb_on_format = _callable("on_format", callback)
        self._update_events()

    def _update_events(self) -> None:
        want = self._cb_on_data is not None or self._cb_on_format is not None
        if want == self._events_on or self._dispatcher is None:
            return
        ptr = self._enter()
        if ptr == ffi.NULL:
            return
        try:
            check(lib.sora_audio_sink_set_events(ptr, self._dispatcher.queue.ptr if want else ffi.NULL))
            self._events_on = want
        finally:
            self._leave()

    def _handle_event(self, ev: Event) -> None:
        if ev.type == EventType.AUDIO_DATA and ev.buffer is not None:
            callback = self._cb_on_data
            ch = int(ev.b)
            if callback is None or ch <= 0 or ev.buffer.size % (2 * ch):
                return
            _call(callback, np.frombuffer(ev.buffer.memory(), np.int16).reshape(-1, ch))
        elif ev.type == EventType.AUDIO_FORMAT:
            format_callback = self._cb_on_format
            if format_callback is not None:
                _call(format_callback, int(ev.a), int(ev.b))


class SoraAudioStreamSink(_Sink):
    """Delivers the audio of a remote track in 10 ms frames, converted to `output_frequency`
    Hz and `output_channels` channels (-1 / 0: as received): `on_frame(SoraAudioFrame)`,
    called on the Sora's dispatcher thread."""

    _kind = "audio"
    on_frame: _Callback[Callable[[SoraAudioFrame], None]] = _Callback()

    def __init__(self, track: SoraTrackInterface, output_frequency: int = -1, output_channels: int = 0) -> None:
        rate, channels = _check_output(output_frequency, output_channels)
        self._frame_size_ms = 10
        super().__init__(track, lambda queue, conn, track_id, out: lib.sora_audio_stream_sink_new(
            queue, conn, track_id, rate, channels, out))

    @property
    def frame_size_ms(self) -> int:
        """Milliseconds of audio per `on_frame` (default 10; sora_ffi addition): a multiple
        of 10 up to 1000, for consumers that want larger frames (fewer callbacks)."""
        return self._frame_size_ms

    @frame_size_ms.setter
    def frame_size_ms(self, ms: int) -> None:
        if isinstance(ms, bool) or not isinstance(ms, numbers.Integral):
            raise TypeError(f"frame_size_ms must be an int, not {type(ms).__name__}")
        if ms <= 0 or ms % 10 or ms > 1000:
            raise ValueError(f"frame_size_ms must be a multiple of 10 up to 1000, not {ms}")
        ptr = self._enter()
        if ptr != ffi.NULL:
            try:
                check(lib.sora_audio_stream_sink_set_frame_ms(ptr, int(ms)))
            finally:
                self._leave()
        self._frame_size_ms = int(ms)

    def _handle_event(self, ev: Event) -> None:
        if ev.type != EventType.AUDIO_FRAME or ev.buffer is None:
            return
        callback = self.on_frame
        if callback is None:
            return
        rate = int(ev.a) & 0xFFFFFFFF
        channels = (int(ev.a) >> 32) & 0xFFFFFFFF
        timestamp = None if ev.b == INT64_MIN else int(ev.b)
        _call(callback, SoraAudioFrame._from_buffer(ev.buffer, rate, channels, timestamp))


def _callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    return value
