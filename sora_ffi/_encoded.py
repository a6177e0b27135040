"""`SoraEncodedVideoSource`: video that is already encoded, sent as it is (a sora_ffi
addition; the official SDK always encodes itself).

For applications that hold a bitstream already: a recording, a camera or hardware encoder
driven from Python, another SFU. It is also how H.265 is sent where no engine encodes it.
Made by `Sora.create_encoded_video_source(codec_type)` and given to `create_connection(
video_source=...)`; the connection then asks Sora for that codec. Each connection using the
source has a bounded queue: it starts at a keyframe, and one that falls behind skips to the
next keyframe. Whenever a keyframe is needed (a new connection, a receiver's PLI/FIR, a
connection that fell behind, enabling the source again) `on_keyframe_request()` runs on the
Sora's dispatcher thread; send one soon after.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._connection import _call, _Callback
from ._native import Event, ffi, lib
from ._source import INT64_MIN, _pushed, _seconds_arg, _Source, _type_name

if TYPE_CHECKING:  # pragma: no cover
    from ._dispatch import Dispatcher

__all__ = ["SoraEncodedVideoSource"]

#: codec_type -> what `push` takes
BITSTREAMS = {
    "VP8": "one VP8 frame",
    "VP9": "one VP9 frame (superframe)",
    "AV1": "one temporal unit of low-overhead OBUs (with size fields)",
    "H264": "one access unit in Annex B (start codes)",
    "H265": "one access unit in Annex B (start codes)",
}


def _unregister(source: int, unregister: Callable[[int], None], destroy: Any, ptr: Any) -> None:
    unregister(source)
    destroy(ptr)


class SoraEncodedVideoSource(_Source):
    """Encoded video to send as it is; see the module notes. `kind` is "video"."""

    def __init__(self, codec_type: str, dispatcher: "Dispatcher") -> None:
        """Use `Sora.create_encoded_video_source` (this constructor is what it calls)."""
        if not isinstance(codec_type, str):
            raise TypeError(f"codec_type must be a str, not {_type_name(codec_type)}")
        codec = codec_type.upper()
        if codec not in BITSTREAMS:
            raise ValueError(f"codec_type must be one of {', '.join(BITSTREAMS)}, not {codec_type!r}")
        out = ffi.new("SoraEncodedVideoSource **")
        _pushed(lib.sora_encoded_video_source_new(codec.encode(), dispatcher.queue.ptr, out))
        ptr = out[0]
        super().__init__("video", ptr, int(lib.sora_encoded_video_source_id(ptr)),
                         lib.sora_encoded_video_source_destroy)
        # Keyframe requests come through the Sora's dispatcher, which holds us weakly.
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _unregister, self._native_id,
                                           dispatcher.unregister_callback,
                                           lib.sora_encoded_video_source_destroy, ptr)
        self._finalizer.atexit = False
        self._codec_type = codec
        dispatcher.register(self._native_id, self)

    on_keyframe_request = _Callback[Callable[[], None]]()

    @property
    def codec_type(self) -> str:
        """What the source sends: "VP8", "VP9", "AV1", "H264" or "H265"."""
        return self._codec_type

    def push(self, data: Any, *, keyframe: Optional[bool] = None,
             timestamp: Optional[float] = None) -> None:
        """Sends one encoded frame (bytes-like; see `BITSTREAMS` for what one is per codec)
        on every connection using the source; the bytes are copied before returning.

        `keyframe` says whether it is one (None: read from the bitstream); a frame whose
        bitstream says otherwise raises ValueError, since receivers go by the bitstream.
        `timestamp` is its capture time (epoch seconds; None: now): the RTP timestamps follow
        it, so give the frames' real spacing when they do not arrive in real time."""
        try:
            view = memoryview(data)
        except TypeError:
            raise TypeError(f"push needs a bytes-like object, not {_type_name(data)}") from None
        if not view.c_contiguous:
            raise ValueError("push needs contiguous bytes (use bytes(data) or numpy.ascontiguousarray)")
        if keyframe is not None and not isinstance(keyframe, bool):
            raise TypeError(f"keyframe must be a bool or None, not {_type_name(keyframe)}")
        us = INT64_MIN if timestamp is None else round(_seconds_arg("timestamp", timestamp) * 1e6)
        buf = ffi.from_buffer("uint8_t[]", view.cast("B") if view.format != "B" or view.ndim != 1 else view)
        flag = -1 if keyframe is None else int(keyframe)
        _pushed(lib.sora_encoded_video_source_push(self._ptr, buf, len(buf), flag, us))

    def set_enabled(self, enable: bool) -> bool:
        """Disabling sends nothing; enabling again resumes at a keyframe (one is requested).
        Returns True."""
        return self._set_native_enabled(lib.sora_encoded_video_source_set_enabled, enable)

    @property
    def dropped_frames(self) -> int:
        """Frames not sent on some connection (disabled, before its first keyframe, or
        skipped after falling behind)."""
        return int(lib.sora_encoded_video_source_dropped(self._ptr))

    @property
    def keyframe_requests(self) -> int:
        """Keyframe requests so far (those closer than 100 ms are merged)."""
        return int(lib.sora_encoded_video_source_keyframe_requests(self._ptr))

    def _handle_event(self, ev: Event) -> None:
        callback = self.on_keyframe_request
        if ev.type == lib.SORA_EVENT_KEYFRAME_REQUEST and callback is not None:
            _call(callback)

    def _release(self) -> None:
        """The dispatcher is stopping for good (interpreter exit)."""

    def __repr__(self) -> str:
        return f"<SoraEncodedVideoSource {self._codec_type} id={self._id!r} enabled={self._enabled}>"
