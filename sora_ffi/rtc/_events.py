"""The typed events of `Room.events()`: one dataclass per `room.on(...)` name, holding the
same arguments the handlers get."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from ._monitor import ConnectionQuality

if TYPE_CHECKING:
    from ._data import DataPacket
    from ._participant import Participant, RemoteParticipant
    from ._track import LocalTrackPublication, RemoteTrackPublication, Track


class ConnectionState(enum.IntEnum):
    CONN_DISCONNECTED = 0
    CONN_CONNECTED = 1
    CONN_RECONNECTING = 2


class DisconnectReason(enum.IntEnum):
    """Why a room ended (LiveKit's numbering, the reasons Sora lets us tell apart)."""
    UNKNOWN_REASON = 0
    CLIENT_INITIATED = 1
    PARTICIPANT_REMOVED = 4  # the server ended the session and reconnecting failed
    JOIN_FAILURE = 7  # refused when connecting (auth, bad parameters)
    SIGNAL_CLOSE = 9  # signaling or media lost and reconnecting failed
    CONNECTION_TIMEOUT = 14


@dataclass(frozen=True)
class ParticipantConnected:
    participant: "RemoteParticipant"


@dataclass(frozen=True)
class ParticipantDisconnected:
    participant: "RemoteParticipant"


@dataclass(frozen=True)
class TrackPublished:
    publication: "RemoteTrackPublication"
    participant: "RemoteParticipant"


@dataclass(frozen=True)
class TrackUnpublished:
    publication: "RemoteTrackPublication"
    participant: "RemoteParticipant"


@dataclass(frozen=True)
class TrackSubscribed:
    track: "Track"
    publication: "RemoteTrackPublication"
    participant: "RemoteParticipant"


@dataclass(frozen=True)
class TrackUnsubscribed:
    track: "Track"
    publication: "RemoteTrackPublication"
    participant: "RemoteParticipant"


@dataclass(frozen=True)
class LocalTrackPublished:
    publication: "LocalTrackPublication"
    track: "Track"


@dataclass(frozen=True)
class LocalTrackUnpublished:
    publication: "LocalTrackPublication"


@dataclass(frozen=True)
class TrackMuted:
    participant: "RemoteParticipant"
    publication: "RemoteTrackPublication"


@dataclass(frozen=True)
class TrackUnmuted:
    participant: "RemoteParticipant"
    publication: "RemoteTrackPublication"


@dataclass(frozen=True)
class ActiveSpeakersChanged:
    """Who is speaking now, loudest first (the local participant too)."""
    speakers: list["Participant"]


@dataclass(frozen=True)
class ConnectionQualityChanged:
    participant: "Participant"
    quality: ConnectionQuality


@dataclass(frozen=True)
class DataReceived:
    packet: "DataPacket"


@dataclass(frozen=True)
class ConnectionStateChanged:
    state: ConnectionState


@dataclass(frozen=True)
class Reconnecting:
    pass


@dataclass(frozen=True)
class Reconnected:
    pass


@dataclass(frozen=True)
class Disconnected:
    """Always the last event."""
    reason: DisconnectReason
    message: str = ""


RoomEvent = Union[ParticipantConnected, ParticipantDisconnected, TrackPublished, TrackUnpublished,
                  TrackSubscribed, TrackUnsubscribed, LocalTrackPublished, LocalTrackUnpublished,
                  TrackMuted, TrackUnmuted, ActiveSpeakersChanged, ConnectionQualityChanged,
                  DataReceived, ConnectionStateChanged, Reconnecting, Reconnected, Disconnected]

#: `room.on` name -> event class
EVENT_TYPES: dict[str, Any] = {
    "participant_connected": ParticipantConnected,
    "participant_disconnected": ParticipantDisconnected,
    "track_published": TrackPublished,
    "track_unpublished": TrackUnpublished,
    "track_subscribed": TrackSubscribed,
    "track_unsubscribed": TrackUnsubscribed,
    "local_track_published": LocalTrackPublished,
    "local_track_unpublished": LocalTrackUnpublished,
    "track_muted": TrackMuted,
    "track_unmuted": TrackUnmuted,
    "active_speakers_changed": ActiveSpeakersChanged,
    "connection_quality_changed": ConnectionQualityChanged,
    "data_received": DataReceived,
    "connection_state_changed": ConnectionStateChanged,
    "reconnecting": Reconnecting,
    "reconnected": Reconnected,
    "disconnected": Disconnected,
}

