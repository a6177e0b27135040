"""Track objects: `SoraTrackInterface` and the remote `SoraMediaTrack` given to `on_track`."""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Optional

from ._enums import SoraTrackState

if TYPE_CHECKING:
    from ._transform import SoraFrameTransformer
    from ._connection import SoraConnection

__all__ = ["SoraTrackInterface", "SoraMediaTrack"]


class SoraTrackInterface:
    """A media track: `kind` ("audio"/"video"), `id`, `enabled`, `state`, `set_enabled()`."""

    def __init__(self, kind: str, track_id: str) -> None:
        self._kind = kind
        self._id = track_id
        self._enabled = True
        self._state = SoraTrackState.LIVE

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def id(self) -> str:
        return self._id

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def state(self) -> SoraTrackState:
        return self._state

    def set_enabled(self, enable: bool) -> bool:
        """Enables or disables the track; returns whether the change was applied."""
        self._enabled = bool(enable)
        return True

    def _end(self) -> None:
        self._state = SoraTrackState.ENDED

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self._kind} id={self._id!r} state={self._state.name}>"


class SoraMediaTrack(SoraTrackInterface):
    """A track received on a connection (argument of `on_track`). `stream_id` is the sending
    connection's id in multistream. Holds its connection only weakly."""

    def __init__(self, connection: "SoraConnection", native_id: int, kind: str, track_id: str,
                 stream_id: str) -> None:
        super().__init__(kind, track_id)
        self._connection: "weakref.ref[SoraConnection]" = weakref.ref(connection)
        self._native_id = native_id  # the shim's track id (SORA_EVENT_TRACK `a`)
        self._stream_id = stream_id

    @property
    def stream_id(self) -> str:
        return self._stream_id

    def set_frame_transformer(self, transformer: "SoraFrameTransformer", /) -> None:
        """Passes this track's encoded frames through `transformer` before decoding (an audio
        transformer for an audio track, a video one for video). The track keeps it alive."""
        from ._native import check, ffi, lib
        from ._transform import SoraAudioFrameTransformer, SoraVideoFrameTransformer
        want = SoraVideoFrameTransformer if self.kind == "video" else SoraAudioFrameTransformer
        if not isinstance(transformer, want):
            raise TypeError(f"a {self.kind} track needs a {want.__name__}, "
                            f"not {type(transformer).__name__}")
        conn: Optional[SoraConnection] = self._connection()
        if conn is None or conn._ptr == ffi.NULL or self._state == SoraTrackState.ENDED:
            raise RuntimeError("the track has ended")
        transformer._attach(conn._dispatcher)
        check(lib.sora_connection_set_track_transformer(conn._ptr, self._native_id,
                                                        transformer._ptr))
        self._transformer = transformer

    def set_enabled(self, enable: bool) -> bool:
        """Enables or disables receiving this track. False when the track or its
        connection is gone."""
        conn: Optional[SoraConnection] = self._connection()
        if conn is None or self._state == SoraTrackState.ENDED:
            return False
        if not conn._set_track_enabled(self._native_id, bool(enable)):
            return False
        self._enabled = bool(enable)
        return True
