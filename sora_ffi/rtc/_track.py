"""Tracks and publications. A remote participant's publications come from Sora's notifies
(a sending connection with audio/video); its tracks are the media tracks that arrive for
them. Local tracks wrap the sources a room connects with."""
from __future__ import annotations

import enum
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .._track import SoraMediaTrack

if TYPE_CHECKING:
    from ._audio import AudioSource
    from ._video import VideoSource

__all__ = [
    "TrackKind", "TrackSource", "StreamState", "Track", "LocalAudioTrack", "LocalVideoTrack",
    "RemoteAudioTrack", "RemoteVideoTrack", "TrackPublication", "LocalTrackPublication",
    "RemoteTrackPublication", "TrackPublishOptions",
]


class TrackKind(enum.IntEnum):
    KIND_UNKNOWN = 0
    KIND_AUDIO = 1
    KIND_VIDEO = 2


class TrackSource(enum.IntEnum):
    """Sora has one audio and one video track per connection and does not say where they
    come from: remote audio is SOURCE_MICROPHONE and remote video SOURCE_CAMERA."""
    SOURCE_UNKNOWN = 0
    SOURCE_CAMERA = 1
    SOURCE_MICROPHONE = 2


class StreamState(enum.IntEnum):
    STATE_UNKNOWN = 0
    STATE_ACTIVE = 1
    STATE_PAUSED = 2


def kind_name(kind: TrackKind) -> str:
    return "audio" if kind == TrackKind.KIND_AUDIO else "video"


def default_source(kind: TrackKind) -> TrackSource:
    return TrackSource.SOURCE_MICROPHONE if kind == TrackKind.KIND_AUDIO else TrackSource.SOURCE_CAMERA


class Track:
    """`sid`, `name`, `kind`, `muted` (for remote tracks measured from the media: Sora does
    not signal muting; see docs/rtc.md)."""

    kind: TrackKind = TrackKind.KIND_UNKNOWN

    def __init__(self, sid: str, name: str) -> None:
        self._sid = sid
        self._name = name
        self._muted = False

    @property
    def sid(self) -> str:
        return self._sid

    @property
    def name(self) -> str:
        return self._name

    @property
    def muted(self) -> bool:
        return self._muted

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self._sid!r} name={self._name!r}>"


class _RemoteTrack(Track):
    """A remote participant's audio or video. It lives as long as the publication: when
    the media behind it is replaced (the room or the sender reconnected) the streams
    reading it move to the new media by themselves."""

    def __init__(self, sid: str, sora_track: SoraMediaTrack) -> None:
        super().__init__(sid, sora_track.id)
        self._sora_track: Optional[SoraMediaTrack] = sora_track
        self._ended = False
        self._streams: "weakref.WeakSet[Any]" = weakref.WeakSet()  # AudioStream / VideoStream

    @property
    def stream_state(self) -> StreamState:
        """ACTIVE while media is attached, PAUSED between a loss and its replacement."""
        return StreamState.STATE_ACTIVE if self._sora_track is not None else StreamState.STATE_PAUSED

    @property
    def sora_track(self) -> Optional[SoraMediaTrack]:
        """The callback API's track now behind this one (None while paused)."""
        return self._sora_track

    def _bind(self, sora_track: SoraMediaTrack) -> None:
        self._sora_track = sora_track
        for stream in list(self._streams):
            stream._attach(sora_track)

    def _unbind(self, sora_track: SoraMediaTrack) -> bool:
        """`sora_track` ended; True if it was this track's media."""
        if self._sora_track is not sora_track:
            return False
        self._sora_track = None
        for stream in list(self._streams):
            stream._detach()
        return True

    def _end(self) -> None:
        """Unpublished: streams end after what they hold."""
        self._ended = True
        self._sora_track = None
        for stream in list(self._streams):
            stream._detach()
            stream._end()


class RemoteAudioTrack(_RemoteTrack):
    kind = TrackKind.KIND_AUDIO


class RemoteVideoTrack(_RemoteTrack):
    kind = TrackKind.KIND_VIDEO


class _LocalTrack(Track):
    def __init__(self, name: str, source: Any) -> None:
        super().__init__("", name)
        self._source = source

    @property
    def source(self) -> Any:
        return self._source

    def mute(self) -> None:
        """Sends silence (audio) or black frames (video) until `unmute()`; the receivers
        see the track muted from the media itself."""
        self._source.sora_source.set_enabled(False)
        self._muted = True

    def unmute(self) -> None:
        self._source.sora_source.set_enabled(True)
        self._muted = False


class LocalAudioTrack(_LocalTrack):
    kind = TrackKind.KIND_AUDIO

    @staticmethod
    def create_audio_track(name: str, source: "AudioSource") -> "LocalAudioTrack":
        from ._audio import AudioSource
        if not isinstance(source, AudioSource):
            raise TypeError(f"create_audio_track needs an AudioSource, not {type(source).__name__}")
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        return LocalAudioTrack(name, source)


class LocalVideoTrack(_LocalTrack):
    kind = TrackKind.KIND_VIDEO

    @staticmethod
    def create_video_track(name: str, source: "VideoSource") -> "LocalVideoTrack":
        from ._video import VideoSource
        if not isinstance(source, VideoSource):
            raise TypeError(f"create_video_track needs a VideoSource, not {type(source).__name__}")
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        return LocalVideoTrack(name, source)


LocalTrack = Union[LocalAudioTrack, LocalVideoTrack]
RemoteTrack = Union[RemoteAudioTrack, RemoteVideoTrack]


@dataclass
class TrackPublishOptions:
    """`source` is reported back as the publication's source. Codec and bit rate go into
    the Sora connection (`video_codec_type`, `video_bit_rate`, `audio_bit_rate`); None
    leaves the room's options (RoomOptions) in force."""
    source: TrackSource = TrackSource.SOURCE_UNKNOWN
    video_codec: Optional[str] = None
    video_bit_rate: Optional[int] = None
    audio_bit_rate: Optional[int] = None


class TrackPublication:
    def __init__(self, sid: str, kind: TrackKind, name: str, source: TrackSource) -> None:
        self._sid = sid
        self._kind = kind
        self._name = name
        self._source = source
        self._track: Optional[Track] = None

    @property
    def sid(self) -> str:
        return self._sid

    @property
    def kind(self) -> TrackKind:
        return self._kind

    @property
    def name(self) -> str:
        return self._name

    @property
    def source(self) -> TrackSource:
        return self._source

    @property
    def track(self) -> Optional[Track]:
        return self._track

    @property
    def muted(self) -> bool:
        return self._track is not None and self._track.muted

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sid={self._sid!r} kind={self._kind.name}>"


class LocalTrackPublication(TrackPublication):
    pass


class RemoteTrackPublication(TrackPublication):
    """A remote participant's audio or video. Subscribed (`track` set, `track_subscribed`
    emitted) when its media arrives, if the room's `auto_subscribe` or `set_subscribed(True)`
    asks for it. Sora sends every track of the channel to every receiving connection:
    unsubscribing stops decoding and delivery here, not the packets (docs/rtc.md)."""

    def __init__(self, sid: str, kind: TrackKind, name: str, source: TrackSource, *, subscribe: bool = True) -> None:
        super().__init__(sid, kind, name, source)
        self._want = subscribe
        #: the media now behind the publication, subscribed or not (None until it arrives)
        self._media: Optional[SoraMediaTrack] = None
        self._remote_muted = False
        #: set by the room: reconciles `_want` with the subscription, on the room's loop
        self._changed: Optional[Callable[[], None]] = None

    @property
    def subscribed(self) -> bool:
        return self._track is not None

    @property
    def muted(self) -> bool:
        """Measured from the media whether or not the track is subscribed."""
        return self._remote_muted

    def set_subscribed(self, subscribed: bool) -> None:
        """Subscribes to (True) or unsubscribes from (False) the track. The change is made
        on the room's event loop: `track_subscribed` (once the media is there) or
        `track_unsubscribed` follows, and streams reading the track end on unsubscribing."""
        if not isinstance(subscribed, bool):
            raise TypeError(f"subscribed must be a bool, not {type(subscribed).__name__}")
        self._want = subscribed
        if self._changed is not None:
            self._changed()
