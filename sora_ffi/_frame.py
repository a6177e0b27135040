"""Received frames: `SoraVideoFrame` (BGR pixels) and `SoraAudioFrame` (10 ms of int16 audio).

Both are numpy views over the buffer the shim handed over (no copy): the bytes are freed when
the frame and every array obtained from it are gone (see `_native.Buffer`). The arrays are
writable: the memory belongs to this process alone.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

from ._lazy import np

from ._native import Buffer

__all__ = ["SoraVideoFrame", "SoraAudioFrame"]


class SoraVideoFrame:
    """One decoded video frame (argument of `SoraVideoSink.on_frame`)."""

    __slots__ = ("_array",)
    _array: np.ndarray

    def __init__(self) -> None:
        raise TypeError("SoraVideoFrame objects are made by SoraVideoSink, not directly")

    @classmethod
    def _from_buffer(cls, buffer: Buffer, width: int, height: int) -> "SoraVideoFrame":
        if width <= 0 or height <= 0 or buffer.size != width * height * 3:
            raise ValueError(f"a {width}x{height} BGR frame needs {max(width * height * 3, 0)} bytes, "
                             f"not {buffer.size}")
        frame = cls.__new__(cls)
        frame._array = np.frombuffer(buffer.memory(), np.uint8).reshape(height, width, 3)
        return frame

    def data(self) -> np.ndarray:
        """The pixels, BGR, shaped (height, width, 3), uint8 (ready for `cv2.imshow`). A view
        of the received buffer, valid as long as the array lives (also after the frame)."""
        return self._array

    def __repr__(self) -> str:
        h, w, _ = self._array.shape
        return f"<SoraVideoFrame {w}x{h}>"


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"SoraAudioFrame state: {name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"SoraAudioFrame state: {name} must be at least {minimum}, not {value}")
    return int(value)


class SoraAudioFrame:
    """10 ms of received audio (argument of `SoraAudioStreamSink.on_frame`; more with its
    `frame_size_ms`), or audio
    rebuilt from a pickled state.

    Picklable: the state is `(samples: list[int], samples_per_channel, num_channels,
    sample_rate_hz, absolute_capture_timestamp_ms | None)`, the official SDK's format, so
    `frame = SoraAudioFrame.__new__(SoraAudioFrame); frame.__setstate__(state)` also makes
    a frame from your own samples (for `SoraVAD.analyze`, for example)."""

    __slots__ = ("_array", "_sample_rate_hz", "_timestamp_ms")
    _array: np.ndarray
    _sample_rate_hz: int
    _timestamp_ms: Optional[int]

    def __init__(self) -> None:
        raise TypeError("SoraAudioFrame objects are made by SoraAudioStreamSink or by unpickling")

    @classmethod
    def _from_buffer(cls, buffer: Buffer, sample_rate_hz: int, num_channels: int,
                     timestamp_ms: Optional[int]) -> "SoraAudioFrame":
        if num_channels <= 0 or sample_rate_hz <= 0 or buffer.size % (2 * num_channels):
            raise ValueError(f"{buffer.size} bytes are not int16 frames of {num_channels} channel(s) "
                             f"at {sample_rate_hz} Hz")
        samples = np.frombuffer(buffer.memory(), np.int16)
        return cls._from_array(samples.reshape(-1, num_channels), sample_rate_hz, timestamp_ms)

    @classmethod
    def _from_array(cls, array: np.ndarray, sample_rate_hz: int, timestamp_ms: Optional[int]) -> "SoraAudioFrame":
        frame = cls.__new__(cls)
        frame._array = array
        frame._sample_rate_hz = int(sample_rate_hz)
        frame._timestamp_ms = None if timestamp_ms is None else int(timestamp_ms)
        return frame

    def data(self) -> np.ndarray:
        """The samples, int16, shaped (samples_per_channel, num_channels)."""
        return self._array

    @property
    def samples_per_channel(self) -> int:
        return int(self._array.shape[0])

    @property
    def num_channels(self) -> int:
        return int(self._array.shape[1])

    @property
    def sample_rate_hz(self) -> int:
        return self._sample_rate_hz

    @property
    def absolute_capture_timestamp_ms(self) -> Optional[int]:
        """The sender's capture time in epoch milliseconds, when the stream carries it."""
        return self._timestamp_ms

    def __getstate__(self) -> tuple[list[int], int, int, int, Optional[int]]:
        return (self._array.ravel().tolist(), self.samples_per_channel, self.num_channels,
                self._sample_rate_hz, self._timestamp_ms)

    def __setstate__(self, state: tuple[Sequence[int], int, int, int, Optional[int]]) -> None:
        if not isinstance(state, (tuple, list)) or len(state) != 5:
            raise TypeError("SoraAudioFrame state must be a tuple (samples, samples_per_channel, "
                            "num_channels, sample_rate_hz, absolute_capture_timestamp_ms)")
        samples, per_channel, channels, rate, timestamp = state
        per_channel = _positive_int("samples_per_channel", per_channel, 0)
        channels = _positive_int("num_channels", channels, 1)
        rate = _positive_int("sample_rate_hz", rate, 1)
        if timestamp is not None:
            if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Integral):
                raise TypeError("SoraAudioFrame state: absolute_capture_timestamp_ms must be an int or None")
            timestamp = int(timestamp)
        try:
            values = np.asarray(samples)
        except (TypeError, ValueError) as e:
            raise TypeError(f"SoraAudioFrame state: samples must be a sequence of int: {e}") from None
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise TypeError(f"SoraAudioFrame state: samples must be ints, not {values.dtype}")
        if values.ndim > 1:
            values = values.reshape(-1)
        if values.size != per_channel * channels:
            raise ValueError(f"SoraAudioFrame state: {values.size} samples are not "
                             f"{per_channel} x {channels}")
        if values.size and (values.min() < -32768 or values.max() > 32767):
            raise ValueError("SoraAudioFrame state: samples must be int16 values")
        array = np.ascontiguousarray(values, dtype=np.int16).reshape(per_channel, channels)
        self._array = array
        self._sample_rate_hz = rate
        self._timestamp_ms = timestamp

    def __repr__(self) -> str:
        return (f"<SoraAudioFrame {self.samples_per_channel}x{self.num_channels} "
                f"{self._sample_rate_hz} Hz ts={self._timestamp_ms}>")
