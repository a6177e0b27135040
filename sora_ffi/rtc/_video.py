"""Video in the LiveKit shape: `VideoFrame`, `VideoSource` (publish) and `VideoStream`
(subscribe, an async iterator of frames). The engine takes and gives BGR: other packed
formats are converted with numpy on the way in and out; planar ones (I420, NV12) are
converted on the way in (BT.601, limited range, as camera YUV is)."""
from __future__ import annotations

import asyncio
import enum
import time
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .._frame import SoraVideoFrame
from .._sink import SoraVideoSink
from .._source import SoraVideoSource
from ._handoff import TrackReader

if TYPE_CHECKING:
    from ._participant import RemoteParticipant
    from ._track import RemoteVideoTrack, TrackSource

__all__ = ["VideoBufferType", "VideoFrame", "VideoSource", "VideoStream", "VideoFrameEvent"]


class VideoBufferType(enum.IntEnum):
    RGBA = 0
    ABGR = 1
    ARGB = 2
    BGRA = 3
    RGB24 = 4
    I420 = 5
    NV12 = 9
    BGR24 = 100  # what the engine uses (sora_ffi)


#: channel order to BGR for the packed formats (indices into the pixel's channels)
_TO_BGR = {
    VideoBufferType.BGR24: (3, [0, 1, 2]),
    VideoBufferType.RGB24: (3, [2, 1, 0]),
    VideoBufferType.RGBA: (4, [2, 1, 0]),
    VideoBufferType.BGRA: (4, [0, 1, 2]),
    VideoBufferType.ARGB: (4, [3, 2, 1]),
    VideoBufferType.ABGR: (4, [1, 2, 3]),
}


def _check_size(width: Any, height: Any) -> None:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, not {value!r}")


def _yuv_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited range; u and v at half resolution in both directions."""
    h, w = y.shape
    uf = np.repeat(np.repeat(u.astype(np.float32) - 128, 2, 0), 2, 1)[:h, :w]
    vf = np.repeat(np.repeat(v.astype(np.float32) - 128, 2, 0), 2, 1)[:h, :w]
    yf = (y.astype(np.float32) - 16) * 1.164
    out = np.empty((h, w, 3), np.uint8)
    out[..., 0] = np.clip(yf + 2.018 * uf, 0, 255)
    out[..., 1] = np.clip(yf - 0.391 * uf - 0.813 * vf, 0, 255)
    out[..., 2] = np.clip(yf + 1.596 * vf, 0, 255)
    return out


class VideoFrame:
    """`width` x `height` pixels in `type` layout, in `data` (bytes-like or numpy uint8)."""

    def __init__(self, width: int, height: int, type: VideoBufferType, data: Any) -> None:
        _check_size(width, height)
        try:
            self._type = VideoBufferType(type)
        except ValueError:
            raise ValueError(f"unknown VideoBufferType {type!r}") from None
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                raise TypeError(f"VideoFrame data must be uint8, not {data.dtype}")
            flat = data.reshape(-1)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            flat = np.frombuffer(memoryview(data).cast("B"), np.uint8)
        else:
            # (`type` is the buffer type here: the class name comes from __class__)
            raise TypeError(f"VideoFrame data must be bytes-like or a uint8 array, not {data.__class__.__name__}")
        need = self._size(width, height, self._type)
        if flat.size != need:
            raise ValueError(f"a {width}x{height} {self._type.name} frame has {need} bytes, "
                             f"not {flat.size}")
        self._width, self._height, self._data = width, height, flat

    @staticmethod
    def _size(width: int, height: int, kind: VideoBufferType) -> int:
        if kind in (VideoBufferType.I420, VideoBufferType.NV12):
            return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
        return width * height * _TO_BGR[kind][0]

    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def type(self) -> VideoBufferType:
        return self._type

    @property
    def data(self) -> memoryview:
        return self._data.data

    def to_ndarray(self) -> np.ndarray:
        """(height, width, channels) for packed formats; the flat bytes for planar ones."""
        if self._type in _TO_BGR:
            return self._data.reshape(self._height, self._width, _TO_BGR[self._type][0])
        return self._data

    def to_bgr(self) -> np.ndarray:
        """The pixels as BGR (height, width, 3): a view for BGR24, a conversion otherwise."""
        h, w = self._height, self._width
        if self._type in _TO_BGR:
            channels, order = _TO_BGR[self._type]
            px = self._data.reshape(h, w, channels)
            return px if order == [0, 1, 2] and channels == 3 else np.ascontiguousarray(px[..., order])
        cw, ch = (w + 1) // 2, (h + 1) // 2
        y = self._data[:w * h].reshape(h, w)
        if self._type == VideoBufferType.I420:
            u = self._data[w * h:w * h + cw * ch].reshape(ch, cw)
            v = self._data[w * h + cw * ch:].reshape(ch, cw)
        else:  # NV12: interleaved UV
            uv = self._data[w * h:].reshape(ch, cw, 2)
            u, v = uv[..., 0], uv[..., 1]
        return _yuv_to_bgr(y, u, v)

    def convert(self, type: VideoBufferType) -> "VideoFrame":
        """This frame in another packed layout (BGR24, RGB24, RGBA, BGRA, ARGB, ABGR)."""
        target = VideoBufferType(type)
        if target not in _TO_BGR:
            raise ValueError(f"convert() makes packed formats only, not {target.name}")
        bgr = self.to_bgr()
        channels, order = _TO_BGR[target]
        out = np.empty((self._height, self._width, channels), np.uint8)
        out[..., order] = bgr  # each target channel from the matching BGR channel
        if channels == 4:
            alpha = next(i for i in range(4) if i not in order)
            out[..., alpha] = 255
        return VideoFrame(self._width, self._height, target, out)

    def __repr__(self) -> str:
        return f"<VideoFrame {self._width}x{self._height} {self._type.name}>"


class VideoSource:
    """Video to publish: `capture_frame(frame)` hands a frame to the encoder (the newest
    wins when it is busy). Frames of any size are accepted; `width` and `height` are what
    the source announces (LiveKit's signature)."""

    def __init__(self, width: int, height: int) -> None:
        _check_size(width, height)
        self._width, self._height = width, height
        self._source = SoraVideoSource()

    @property
    def sora_source(self) -> SoraVideoSource:
        return self._source

    def capture_frame(self, frame: VideoFrame, *, timestamp_us: int = 0, rotation: int = 0) -> None:
        if not isinstance(frame, VideoFrame):
            raise TypeError(f"capture_frame takes a VideoFrame, not {type(frame).__name__}")
        if rotation != 0:
            raise ValueError("rotation is not supported (Sora sends frames as captured)")
        bgr = frame.to_bgr()
        if timestamp_us:
            self._source.on_captured(bgr, int(timestamp_us))
        else:
            self._source.on_captured(bgr)


    async def aclose(self) -> None:
        """Stops sending this source's frames (black frames go out while it stays published)."""
        self._source.set_enabled(False)


class VideoFrameEvent:
    """One item of a VideoStream: the frame, when it reached Python (epoch µs), rotation 0."""

    __slots__ = ("frame", "timestamp_us", "rotation")

    def __init__(self, frame: VideoFrame, timestamp_us: int, rotation: int = 0) -> None:
        self.frame, self.timestamp_us, self.rotation = frame, timestamp_us, rotation

    def __repr__(self) -> str:
        return f"VideoFrameEvent({self.frame!r}, timestamp_us={self.timestamp_us})"


class VideoStream(TrackReader[VideoFrameEvent]):
    """The frames of a remote video track as an async iterator of `VideoFrameEvent`, in
    `format` (BGR24, the engine's, is a zero-copy view; others are converted). At most
    `capacity` frames wait (0: 2); the oldest are dropped and counted in `dropped`. Ends
    when the track is unpublished or on `aclose()`."""

    def __init__(self, track: "RemoteVideoTrack", loop: Optional[asyncio.AbstractEventLoop] = None,
                 capacity: int = 0, format: Optional[VideoBufferType] = None) -> None:
        from ._track import RemoteVideoTrack
        if not isinstance(track, RemoteVideoTrack):
            raise TypeError(f"VideoStream needs a RemoteVideoTrack, not {type(track).__name__}")
        self._format = VideoBufferType.BGR24 if format is None else VideoBufferType(format)
        if self._format not in _TO_BGR:
            raise ValueError(f"VideoStream delivers packed formats, not {self._format.name}")
        super().__init__(track, loop, capacity, 2)

    @classmethod
    def from_participant(cls, *, participant: "RemoteParticipant",
                         track_source: Optional["TrackSource"] = None, **kwargs: Any) -> "VideoStream":
        from ._track import TrackKind
        return cls(participant._track_of(TrackKind.KIND_VIDEO, track_source), **kwargs)  # type: ignore[arg-type]

    def _on_frame(self, frame: SoraVideoFrame) -> None:
        bgr = frame.data()
        h, w = bgr.shape[:2]
        out = VideoFrame(w, h, VideoBufferType.BGR24, bgr)
        if self._format != VideoBufferType.BGR24:
            out = out.convert(self._format)
        self._queue.put(VideoFrameEvent(out, int(time.time() * 1e6)))

    def _make_sink(self, sora_track: Any) -> SoraVideoSink:
        return SoraVideoSink(sora_track)
