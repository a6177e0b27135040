"""Local media sources: `SoraAudioSource` and `SoraVideoSource` (`Sora.create_audio_source`,
`Sora.create_video_source`), handed to `create_connection(audio_source=, video_source=)`.

A source exists on its own and may feed any number of connections (or none: pushing then
costs almost nothing). Pushing copies what the shim needs before returning, so the caller's
array is free again at once; the calls release the GIL.
"""
from __future__ import annotations

import math
import numbers
import threading
import os
import weakref
from typing import Any, Optional, overload

from ._lazy import np

from ._native import check, ffi, last_error, lib
from ._track import SoraTrackInterface


def _track_id() -> str:
    """A random UUID4 string, as libwebrtc names tracks (without importing uuid: it costs
    a few ms at import)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

__all__ = ["SoraAudioSource", "SoraVideoSource"]

SORA_ERR_INVALID_ARGUMENT = -1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
AUDIO_CHANNELS = (1, 8)
AUDIO_SAMPLE_RATE = (8_000, 192_000)  # Hz
MAX_VIDEO_SIDE = 8192  # pixels
_PUSH_CHUNK_MS = 100  # audio is handed to the shim in pieces of at most this length


def _type_name(value: Any) -> str:
    return type(value).__name__


def _int_arg(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {_type_name(value)}")
    return int(value)


def _seconds_arg(name: str, value: Any) -> float:
    """A finite float (epoch seconds); ints are fine too, bool is not."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating)):
        raise TypeError(f"{name} must be a float, not {_type_name(value)}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be finite, not {seconds}")
    return seconds


def _pushed(status: int) -> None:
    if status == SORA_ERR_INVALID_ARGUMENT:
        raise ValueError(last_error())
    check(status)


class _Source(SoraTrackInterface):
    """The native handle of a source: freed when the source is collected (connections using
    it keep it alive). `_native_id` goes into the connection config."""

    _ptr: Any
    _native_id: int

    def __init__(self, kind: str, ptr: Any, native_id: int, destroy: Any) -> None:
        super().__init__(kind, _track_id())
        self._ptr = ptr
        self._native_id = native_id
        self._enabled_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, destroy, ptr)
        # Not at interpreter exit: a daemon thread may still be inside a push then (which
        # can wait for backpressure without the GIL), and the process frees everything anyway.
        self._finalizer.atexit = False

    def _set_native_enabled(self, set_enabled: Any, enable: Any) -> bool:
        if not isinstance(enable, bool):
            raise TypeError(f"enable must be a bool, not {_type_name(enable)}")
        with self._enabled_lock:
            check(set_enabled(self._ptr, 1 if enable else 0))
            self._enabled = enable
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._id!r} enabled={self._enabled}>"


class SoraAudioSource(_Source):
    """Audio to send, created by `Sora.create_audio_source(channels, sample_rate)`.

    `on_data` takes interleaved int16 samples at the source's channel count and rate; they
    are resampled to 48 kHz (and mixed down to at most 2 channels) for Opus natively.

    Unlike the official SDK, bursts are fine: while a connection using this source has more
    than 500 ms queued, `on_data` waits (without the GIL) until it has played out, so a
    text-to-speech bot may hand over a whole utterance at once and it is sent in real time
    (do not push from a callback then: it would hold up the dispatcher thread). Without a
    connection nothing waits and the audio is discarded.

    `set_enabled(False)` sends silence instead (the track stays); `kind` is "audio".
    """

    def __init__(self, channels: int, sample_rate: int) -> None:
        """Use `Sora.create_audio_source` (this constructor is what it calls)."""
        channels = _int_arg("channels", channels)
        sample_rate = _int_arg("sample_rate", sample_rate)
        if not AUDIO_CHANNELS[0] <= channels <= AUDIO_CHANNELS[1]:
            raise ValueError(f"channels must be between {AUDIO_CHANNELS[0]} and {AUDIO_CHANNELS[1]}, not {channels}")
        if not AUDIO_SAMPLE_RATE[0] <= sample_rate <= AUDIO_SAMPLE_RATE[1]:
            raise ValueError(f"sample_rate must be between {AUDIO_SAMPLE_RATE[0]} and "
                             f"{AUDIO_SAMPLE_RATE[1]} Hz, not {sample_rate}")
        out = ffi.new("SoraAudioSource **")
        _pushed(lib.sora_audio_source_new(channels, sample_rate, out))
        ptr = out[0]
        super().__init__("audio", ptr, int(lib.sora_audio_source_id(ptr)), lib.sora_audio_source_destroy)
        self._channels = channels
        self._sample_rate = sample_rate
        self._max_queued = 0.5  # the shim's default (media::source::MAX_QUEUED)

    @property
    def channels(self) -> int:
        """The channel count `on_data` takes (sora_ffi addition)."""
        return self._channels

    @property
    def sample_rate(self) -> int:
        """The sample rate `on_data` takes, in Hz (sora_ffi addition)."""
        return self._sample_rate

    @overload
    def on_data(self, data: int, samples_per_channel: int, timestamp: float = ...) -> None: ...
    @overload
    def on_data(self, ndarray: np.ndarray, timestamp: float = ...) -> None: ...

    def on_data(self, *args: Any, **kwargs: Any) -> None:
        """Sends audio: `on_data(ndarray)` with an int16 C-contiguous array shaped
        (samples_per_channel, channels), or `on_data(data, samples_per_channel)` with the
        address (int) of that many interleaved int16 frames (the caller keeps the memory
        valid during the call). `timestamp` is the capture time of the first sample in epoch
        seconds; without it the timestamps continue from the previous call by sample count.

        May block while connections using this source have more than 500 ms queued (see the
        class docstring); the GIL is released meanwhile."""
        first, rest, kwargs = _first_argument(args, kwargs, ("ndarray", "data"), "on_data")
        if isinstance(first, np.ndarray):
            timestamp = _take_optional(rest, kwargs, "timestamp", "on_data", 2)
            frames, ptr = self._array_samples(first)
        elif isinstance(first, numbers.Integral) and not isinstance(first, bool):
            samples = _take_required(rest, kwargs, "samples_per_channel", "on_data")
            timestamp = _take_optional(rest[1:], kwargs, "timestamp", "on_data", 3)
            frames = _int_arg("samples_per_channel", samples)
            if frames < 0:
                raise ValueError(f"samples_per_channel must not be negative, not {frames}")
            address = int(first)
            if not 0 <= address < 2 ** (8 * ffi.sizeof("void *")):
                raise ValueError("data must be a memory address (a non-negative int)")
            if address == 0 and frames > 0:
                raise ValueError("data must not be a NULL address")
            ptr = ffi.cast("int16_t *", address)
        else:
            raise TypeError("on_data takes an int16 numpy.ndarray shaped (samples, channels) or "
                            f"an int address and samples_per_channel, not {_type_name(first)}")
        has_timestamp = timestamp is not None
        ts = _seconds_arg("timestamp", timestamp) if has_timestamp else 0.0
        # `ptr` (for arrays an ffi.from_buffer view) keeps the samples valid during the calls.
        # Long bursts go over in chunks: the shim paces each push (it waits while more than
        # 500 ms are queued) but keeps only the newest second of one oversized push.
        step = max(self._sample_rate * _PUSH_CHUNK_MS // 1000, 1)
        done = 0
        while True:
            n = min(step, frames - done)
            chunk = ptr if done == 0 else ptr + done * self._channels
            _pushed(lib.sora_audio_source_push(self._ptr, chunk, n, ts, 1 if has_timestamp else 0))
            has_timestamp = False  # later chunks continue from the previous one
            done += n
            if done >= frames:
                return

    def _array_samples(self, a: np.ndarray) -> tuple[int, Any]:
        if a.dtype != np.int16:
            raise TypeError(f"on_data needs an int16 array, not {a.dtype}")
        if a.ndim != 2:
            raise ValueError(f"on_data needs a 2-D array shaped (samples, channels), not {a.ndim}-D")
        if a.shape[1] != self._channels:
            raise ValueError(f"on_data needs {self._channels} channel(s) (shape[1]), not {a.shape[1]}")
        if not a.flags.c_contiguous:
            raise ValueError("on_data needs a C-contiguous array (use numpy.ascontiguousarray)")
        if a.shape[0] == 0:
            return 0, ffi.NULL
        return int(a.shape[0]), ffi.from_buffer("int16_t[]", a)

    def set_enabled(self, enable: bool) -> bool:
        """Disabling sends silence instead of the pushed audio (the track stays); returns True."""
        return self._set_native_enabled(lib.sora_audio_source_set_enabled, enable)

    @property
    def queued_duration(self) -> float:
        """Seconds of pushed audio that the connections using this source have still to
        send (the fullest one); 0.0 while none is sending (sora_ffi addition)."""
        out = ffi.new("uint64_t *")
        check(lib.sora_audio_source_queued_us(self._ptr, out))
        return int(out[0]) / 1e6

    @property
    def max_queued(self) -> float:
        """How many seconds a sending connection may have queued before `on_data` waits
        (default 0.5; sora_ffi addition). An asyncio producer that waits on
        `queued_duration` itself sets its own queue size here so `on_data` never blocks."""
        return self._max_queued

    @max_queued.setter
    def max_queued(self, seconds: float) -> None:
        value = _seconds_arg("max_queued", seconds)
        if not 0 < value <= 3600:
            raise ValueError(f"max_queued must be more than 0 and at most 3600 seconds, not {value}")
        check(lib.sora_audio_source_set_max_queued_us(self._ptr, int(value * 1e6)))
        self._max_queued = value

    def clear_queue(self) -> int:
        """Drops the audio queued and not yet sent (barge-in: the rest of an utterance
        is not heard); returns how many frames (at 48 kHz) the fullest queue lost (sora_ffi
        addition)."""
        out = ffi.new("uint64_t *")
        check(lib.sora_audio_source_clear(self._ptr, out))
        return int(out[0])


class SoraVideoSource(_Source):
    """Video to send, created by `Sora.create_video_source()`.

    `on_captured` takes BGR uint8 frames shaped (height, width, 3); they are converted to
    I420 natively before the call returns. Frame sizes may change at any time. When the
    encoder is busy the newest frame wins (older unsent ones are dropped). Without a
    connection nothing is converted. Sent as VP8, VP9, AV1 or (with `Sora(openh264=...)`) H.264.

    `set_enabled(False)` sends black frames instead (the track stays); `kind` is "video".
    """

    def __init__(self) -> None:
        """Use `Sora.create_video_source` (this constructor is what it calls)."""
        out = ffi.new("SoraVideoSource **")
        check(lib.sora_video_source_new(out))
        ptr = out[0]
        super().__init__("video", ptr, int(lib.sora_video_source_id(ptr)), lib.sora_video_source_destroy)

    @overload
    def on_captured(self, ndarray: np.ndarray) -> None: ...
    @overload
    def on_captured(self, ndarray: np.ndarray, timestamp: float) -> None: ...
    @overload
    def on_captured(self, ndarray: np.ndarray, timestamp_us: int) -> None: ...

    def on_captured(self, *args: Any, **kwargs: Any) -> None:
        """Sends a BGR frame: a uint8 array shaped (height, width, 3) whose pixels are
        contiguous within each row (rows may be strided, e.g. a crop of a wider image).

        The capture time is now, or `timestamp` (a float, epoch seconds), or `timestamp_us`
        (an int, epoch microseconds); a positional float is `timestamp`, a positional int
        `timestamp_us`, as in the official SDK."""
        frame, rest, kwargs = _first_argument(args, kwargs, ("ndarray",), "on_captured")
        timestamp_us = _video_timestamp(rest, kwargs)
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"on_captured needs a uint8 numpy.ndarray shaped (height, width, 3), "
                            f"not {_type_name(frame)}")
        if frame.dtype != np.uint8:
            raise TypeError(f"on_captured needs a uint8 array, not {frame.dtype}")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"on_captured needs an array shaped (height, width, 3) (BGR), not {frame.shape}")
        height, width = int(frame.shape[0]), int(frame.shape[1])
        if height == 0 or width == 0:
            raise ValueError(f"on_captured needs a non-empty frame, not {width}x{height}")
        if height > MAX_VIDEO_SIDE or width > MAX_VIDEO_SIDE:
            raise ValueError(f"frames may be at most {MAX_VIDEO_SIDE} pixels wide and high, not {width}x{height}")
        row_stride, pixel_stride, channel_stride = frame.strides
        if channel_stride != 1 or pixel_stride != 3 or (height > 1 and row_stride < width * 3):
            raise ValueError("on_captured needs an array whose rows are contiguous BGR pixels "
                             f"(non-contiguous strides {frame.strides}; use numpy.ascontiguousarray)")
        if height == 1:
            row_stride = width * 3
        if row_stride > INT32_MAX:
            raise ValueError(f"row stride {row_stride} is too large")
        size = row_stride * (height - 1) + width * 3
        # Strided arrays export no simple buffer, so pass the address; `frame` stays referenced
        # (and so its memory valid) for the duration of the call.
        address = frame.__array_interface__["data"][0]
        _pushed(lib.sora_video_source_push_bgr(self._ptr, ffi.cast("uint8_t *", address), size,
                                               width, height, row_stride, timestamp_us))

    def set_enabled(self, enable: bool) -> bool:
        """Disabling sends black frames instead of the captured ones; returns True."""
        return self._set_native_enabled(lib.sora_video_source_set_enabled, enable)


# -- argument parsing for the official overloads -------------------------------------------

def _first_argument(args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...],
                    method: str) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The first argument (positional or by one of `names`), the other positionals, and the
    remaining keywords."""
    kwargs = dict(kwargs)
    given = [n for n in names if n in kwargs]
    if args:
        if given:
            raise TypeError(f"{method}() got multiple values for argument {given[0]!r}")
        return args[0], args[1:], kwargs
    if len(given) != 1:
        raise TypeError(f"{method}() needs the data as its first argument")
    return kwargs.pop(given[0]), (), kwargs


def _take_required(rest: tuple[Any, ...], kwargs: dict[str, Any], name: str, method: str) -> Any:
    if rest:
        if name in kwargs:
            raise TypeError(f"{method}() got multiple values for argument {name!r}")
        return rest[0]
    if name not in kwargs:
        raise TypeError(f"{method}() missing required argument {name!r}")
    return kwargs.pop(name)


def _take_optional(rest: tuple[Any, ...], kwargs: dict[str, Any], name: str, method: str, max_args: int) -> Optional[Any]:
    """The last (optional) argument: nothing may follow it."""
    value = None
    if rest:
        if len(rest) > 1:
            raise TypeError(f"{method}() takes at most {max_args} positional arguments")
        if name in kwargs:
            raise TypeError(f"{method}() got multiple values for argument {name!r}")
        value = rest[0]
    elif name in kwargs:
        value = kwargs.pop(name)
    if kwargs:
        raise TypeError(f"{method}() got an unexpected keyword argument {next(iter(kwargs))!r}")
    return value


def _video_timestamp(rest: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """INT64_MIN (now), or the capture time in epoch µs."""
    if len(rest) > 1:
        raise TypeError("on_captured() takes at most 2 positional arguments")
    named = [n for n in ("timestamp", "timestamp_us") if n in kwargs]
    unknown = [n for n in kwargs if n not in ("timestamp", "timestamp_us")]
    if unknown:
        raise TypeError(f"on_captured() got an unexpected keyword argument {unknown[0]!r}")
    if len(named) + len(rest) > 1:
        raise TypeError("on_captured() takes one of timestamp (seconds) or timestamp_us (microseconds)")
    if rest:
        value = rest[0]
        name = "timestamp" if isinstance(value, (float, np.floating)) else "timestamp_us"
    elif named:
        name = named[0]
        value = kwargs[name]
    else:
        return INT64_MIN
    if name == "timestamp":
        us = round(_seconds_arg("timestamp", value) * 1_000_000)
    else:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"timestamp_us must be an int (or timestamp a float), not {_type_name(value)}")
        us = int(value)
    if not INT64_MIN < us <= INT64_MAX:
        raise ValueError(f"{name} is out of range")
    return us
