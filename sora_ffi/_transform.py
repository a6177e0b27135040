"""Encoded transforms (W3C WebRTC Encoded Transform), as the official SDK offers them.

A `SoraAudioFrameTransformer` / `SoraVideoFrameTransformer` given to `create_connection(
audio_frame_transformer=, video_frame_transformer=)` sees every frame we encode before it
is packetized; one given to `SoraMediaTrack.set_frame_transformer` sees every frame
received before it is decoded. `on_transform(frame)` runs on the Sora's dispatcher thread;
`enqueue(frame)` (from there or any thread) lets the frame continue, with `set_data` bytes
if they were set. The native pipeline never waits: a frame not enqueued in time, enqueued
twice or after a later one, empty or oversized is dropped and counted (`dropped_frames`),
and video then recovers with a keyframe (media::transform in the shim).
`start_short_circuiting()` takes the transformer out of the pipeline at no cost.
"""
from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._connection import _call, _Callback
from ._enums import SoraTransformableAudioFrameType, SoraTransformableFrameDirection
from ._lazy import np
from ._native import Buffer, Event, check, ffi, lib

if TYPE_CHECKING:  # pragma: no cover
    from ._dispatch import Dispatcher

__all__ = ["SoraTransformableFrame", "SoraTransformableAudioFrame", "SoraTransformableVideoFrame",
           "SoraFrameTransformer", "SoraAudioFrameTransformer", "SoraVideoFrameTransformer"]

logger = logging.getLogger("sora_ffi")
_SORA_ERR_CLOSED = -4


def _readonly(array: Any) -> Any:
    array.flags.writeable = False
    return array


class SoraTransformableFrame:
    """One encoded frame handed to `on_transform`."""

    __slots__ = ("_owner", "_seq", "_buffer", "_new", "_meta", "_rtp_timestamp", "__weakref__")

    def __init__(self) -> None:
        raise TypeError("frames are made by the transformer; they reach you in on_transform")

    @classmethod
    def _make(cls, owner: "SoraFrameTransformer", seq: int, buffer: Optional[Buffer],
              meta: dict) -> "SoraTransformableFrame":
        frame = cls.__new__(cls)
        frame._owner = weakref.ref(owner)
        frame._seq = seq
        frame._buffer = buffer
        frame._new: Optional[bytes] = None
        frame._meta = meta
        frame._rtp_timestamp = int(meta.get("rtp_timestamp", 0))
        return frame

    def get_data(self) -> Any:
        """The frame's bytes as a read-only uint8 numpy array (a view, no copy; after
        `set_data`, the new bytes)."""
        if self._new is not None:
            return _readonly(np.frombuffer(self._new, np.uint8))
        if self._buffer is None:
            return _readonly(np.zeros(0, np.uint8))
        return _readonly(np.frombuffer(self._buffer.memory(), np.uint8))

    def set_data(self, data: Any, /) -> None:
        """Replaces the frame's bytes (a 1-D uint8 array or any bytes-like object); they are
        what goes on the wire (sender) or into the decoder (receiver) once enqueued."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._new = bytes(data)
            return
        if not hasattr(data, "dtype") or not hasattr(data, "ndim"):
            raise TypeError(f"set_data takes a uint8 numpy.ndarray or bytes, not {type(data).__name__}")
        if data.dtype != np.uint8:
            raise TypeError(f"set_data needs a uint8 array, not {data.dtype}")
        if data.ndim != 1:
            raise ValueError(f"set_data needs a 1-D array, not shape {data.shape}")
        self._new = data.tobytes()

    def _payload(self) -> Any:
        if self._new is not None:
            return self._new
        return b"" if self._buffer is None else self._buffer.memory()

    @property
    def payload_type(self) -> int:
        return int(self._meta.get("payload_type", 0))

    @property
    def ssrc(self) -> int:
        return int(self._meta.get("ssrc", 0))

    @property
    def rtp_timestamp(self) -> int:
        return self._rtp_timestamp

    @rtp_timestamp.setter
    def rtp_timestamp(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"rtp_timestamp must be an int, not {type(value).__name__}")
        if not 0 <= value <= 0xFFFFFFFF:
            raise ValueError(f"rtp_timestamp must be a 32-bit unsigned value, not {value}")
        self._rtp_timestamp = value

    @property
    def direction(self) -> SoraTransformableFrameDirection:
        return SoraTransformableFrameDirection(int(self._meta.get("direction", 0)))

    @property
    def mime_type(self) -> str:
        return str(self._meta.get("mime_type", ""))

    @property
    def mine_type(self) -> str:
        """The official SDK's name before 2026.1 (sic); the same as `mime_type`."""
        return self.mime_type

    def _csrcs(self) -> Any:
        return _readonly(np.asarray(self._meta.get("contributing_sources", []), np.uint32))

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.mime_type} ts={self._rtp_timestamp} "
                f"{len(self._payload())} bytes>")


class SoraTransformableAudioFrame(SoraTransformableFrame):
    __slots__ = ()

    @property
    def contributing_sources(self) -> Any:
        return self._csrcs()

    @property
    def sequence_number(self) -> Optional[int]:
        return self._meta.get("sequence_number")

    @property
    def absolute_capture_timestamp(self) -> Optional[int]:
        return self._meta.get("absolute_capture_timestamp")

    @property
    def type(self) -> SoraTransformableAudioFrameType:
        return SoraTransformableAudioFrameType(int(self._meta.get("type", 1)))

    @property
    def audio_level(self) -> Optional[int]:
        return self._meta.get("audio_level")

    @property
    def receive_time(self) -> Optional[int]:
        """Receiver side: when the frame was received (epoch microseconds)."""
        value = self._meta.get("receive_time")
        return None if value is None else int(value)


class SoraTransformableVideoFrame(SoraTransformableFrame):
    __slots__ = ()

    @property
    def is_key_frame(self) -> bool:
        return bool(self._meta.get("is_key_frame", False))

    @property
    def frame_id(self) -> Optional[int]:
        return self._meta.get("frame_id")

    @property
    def frame_dependencies(self) -> Any:
        return _readonly(np.asarray(self._meta.get("frame_dependencies", []), np.int64))

    @property
    def width(self) -> int:
        return int(self._meta.get("width", 0))

    @property
    def height(self) -> int:
        return int(self._meta.get("height", 0))

    @property
    def spatial_index(self) -> int:
        return int(self._meta.get("spatial_index", 0))

    @property
    def temporal_index(self) -> int:
        return int(self._meta.get("temporal_index", 0))

    @property
    def contributing_sources(self) -> Any:
        return self._csrcs()


def _destroy(ptr: Any) -> None:
    lib.sora_frame_transformer_destroy(ptr)


class SoraFrameTransformer:
    """Base of the audio and video transformers (not made directly)."""

    _video = False
    _frame_class: type = SoraTransformableFrame

    def __init__(self) -> None:
        if type(self) is SoraFrameTransformer:
            raise TypeError("use SoraAudioFrameTransformer or SoraVideoFrameTransformer")
        out = ffi.new("SoraFrameTransformer **")
        check(lib.sora_frame_transformer_new(1 if self._video else 0, out))
        self._ptr = out[0]
        self._id = int(lib.sora_frame_transformer_id(self._ptr))
        self._finalizer = weakref.finalize(self, _destroy, self._ptr)
        self._lock = threading.Lock()
        self._dispatcher: Optional["Dispatcher"] = None
        self._foreign = 0  # frames of other transformers given to enqueue

    on_transform = _Callback[Callable[[Any], None]]()

    def enqueue(self, frame: SoraTransformableFrame, /) -> None:
        """Lets `frame` continue (with its `set_data` bytes and `rtp_timestamp`). Never
        blocks on the network; see the module notes for what is dropped."""
        if not isinstance(frame, self._frame_class):
            raise TypeError(f"enqueue takes a {self._frame_class.__name__}, "
                            f"not {type(frame).__name__}")
        if frame._owner() is not self:
            self._foreign += 1
            logger.warning("encoded transform: dropping a frame of another transformer "
                           "given to enqueue")
            return
        data = frame._payload()
        buf = ffi.from_buffer("uint8_t[]", data)
        status = lib.sora_frame_transformer_enqueue(self._ptr, frame._seq, buf, len(buf),
                                                    frame._rtp_timestamp)
        if status == _SORA_ERR_CLOSED:
            return  # the track ended: nothing to continue into
        check(status)

    def start_short_circuiting(self) -> None:
        """Frames skip this transformer from now on (at no cost)."""
        check(lib.sora_frame_transformer_short_circuit(self._ptr))

    @property
    def dropped_frames(self) -> int:
        """Frames dropped so far (not enqueued in time, twice, late, empty, too large, or
        another transformer's). sora_ffi addition."""
        return int(lib.sora_frame_transformer_dropped(self._ptr)) + self._foreign

    # -- wiring (used by Sora.create_connection and SoraMediaTrack.set_frame_transformer) --
    def _attach(self, dispatcher: "Dispatcher") -> None:
        """Frames are delivered through `dispatcher` (the Sora of the connection)."""
        with self._lock:
            if self._dispatcher is dispatcher:
                return
            if self._dispatcher is not None:
                raise ValueError("this transformer is already used with another Sora")
            check(lib.sora_frame_transformer_set_queue(self._ptr, dispatcher.queue.ptr))
            dispatcher.register(self._id, self)
            self._dispatcher = dispatcher

    def _handle_event(self, ev: Event) -> None:
        try:
            meta = json.loads(ev.text or "{}")
        except ValueError:  # pragma: no cover - the shim writes the metadata
            meta = {}
        frame = self._frame_class._make(self, int(ev.b), ev.buffer, meta)
        callback = self.on_transform
        if callback is None:
            self.enqueue(frame)  # no callback: frames pass unchanged
        else:
            _call(callback, frame)

    def _release(self) -> None:
        """The dispatcher is stopping for good (interpreter exit)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._id} dropped={self.dropped_frames}>"


class SoraAudioFrameTransformer(SoraFrameTransformer):
    """Transforms encoded audio frames (Opus packets): `on_transform(SoraTransformableAudioFrame)`."""

    _video = False
    _frame_class = SoraTransformableAudioFrame


class SoraVideoFrameTransformer(SoraFrameTransformer):
    """Transforms encoded video frames: `on_transform(SoraTransformableVideoFrame)`."""

    _video = True
    _frame_class = SoraTransformableVideoFrame
