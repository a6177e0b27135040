"""Participants: a Sora connection seen as a LiveKit participant. Identity is the
connection's `client_id` (Sora sets it to the connection id when the client gives none);
name and metadata come from `signaling_notify_metadata` (see `notify_profile`)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from ._monitor import ConnectionQuality
from ._rpc import RpcHandler
from ._streams import ByteStreamWriter, StreamInfo, TextStreamWriter
from ._track import (LocalAudioTrack, LocalTrackPublication, LocalVideoTrack, RemoteTrackPublication,
                     TrackKind, TrackPublication, TrackPublishOptions, TrackSource, _RemoteTrack)

if TYPE_CHECKING:
    from ._room import Room

__all__ = ["Participant", "LocalParticipant", "RemoteParticipant"]


def notify_profile(metadata: Any) -> tuple[str, str]:
    """(name, metadata) from a connection's `signaling_notify_metadata`: rtc rooms send
    `{"name": ..., "metadata": ...}`; anything else (other Sora clients) is the metadata,
    as JSON text unless it is a string."""
    if isinstance(metadata, dict) and set(metadata) <= {"name", "metadata"} and metadata:
        name, meta = metadata.get("name", ""), metadata.get("metadata", "")
        if isinstance(name, str) and isinstance(meta, str):
            return name, meta
    if metadata is None:
        return "", ""
    return "", metadata if isinstance(metadata, str) else json.dumps(metadata, ensure_ascii=False)


class Participant:
    def __init__(self, sid: str, identity: str, name: str = "", metadata: str = "") -> None:
        self._sid = sid
        self._identity = identity
        self._name = name
        self._metadata = metadata
        self._publications: dict[str, TrackPublication] = {}
        # derived from the media (rtc._monitor), while the room measures it
        self._speaking = False
        self._audio_level = 0.0
        self._quality = ConnectionQuality.QUALITY_EXCELLENT

    @property
    def sid(self) -> str:
        """The Sora connection id (the newest one, when the participant reconnected)."""
        return self._sid

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def name(self) -> str:
        return self._name

    @property
    def metadata(self) -> str:
        return self._metadata

    @property
    def track_publications(self) -> dict[str, TrackPublication]:
        return dict(self._publications)

    @property
    def is_speaking(self) -> bool:
        """Measured from the audio (see docs/rtc.md): kept up to date while the room has a
        handler for active_speakers_changed (or an events() reader)."""
        return self._speaking

    @property
    def audio_level(self) -> float:
        """The average audio level (0..1) over the last measured interval."""
        return self._audio_level

    @property
    def connection_quality(self) -> ConnectionQuality:
        return self._quality

    def __repr__(self) -> str:
        return f"<{type(self).__name__} identity={self._identity!r} sid={self._sid!r}>"


class RemoteParticipant(Participant):
    def __init__(self, sid: str, identity: str, name: str = "", metadata: str = "") -> None:
        super().__init__(sid, identity, name, metadata)
        #: the Sora connections of this identity now in the room (usually one), each with
        #: the kinds of track it sends (from its notify, and from the tracks that arrive)
        self._connections: dict[str, set[TrackKind]] = {}

    @property
    def track_publications(self) -> dict[str, RemoteTrackPublication]:  # type: ignore[override]
        return {sid: p for sid, p in self._publications.items() if isinstance(p, RemoteTrackPublication)}

    def _publication(self, kind: TrackKind) -> Optional[RemoteTrackPublication]:
        return next((p for p in self.track_publications.values() if p.kind == kind), None)

    def _track_of(self, kind: TrackKind, source: Optional[TrackSource]) -> _RemoteTrack:
        pub = self._publication(kind)
        if pub is None or (source is not None and pub.source != source):
            raise ValueError(f"{self._identity!r} publishes no {kind.name} track"
                             + (f" from {source.name}" if source is not None else ""))
        if not isinstance(pub.track, _RemoteTrack):
            raise ValueError(f"{self._identity!r}'s {kind.name} track is not subscribed yet")
        return pub.track


class LocalParticipant(Participant):
    """This room's own participant: publishes tracks and data."""

    def __init__(self, room: "Room", identity: str, name: str, metadata: str) -> None:
        super().__init__("", identity, name, metadata)
        self._room = room

    @property
    def track_publications(self) -> dict[str, LocalTrackPublication]:  # type: ignore[override]
        return {sid: p for sid, p in self._publications.items() if isinstance(p, LocalTrackPublication)}

    async def publish_track(self, track: Union[LocalAudioTrack, LocalVideoTrack],
                            options: Optional[TrackPublishOptions] = None) -> LocalTrackPublication:
        """Publishes `track`. Sora fixes a connection's media when it connects, so this
        connects again with the track (make before break: the new connection is up before
        the old one goes, and other participants keep seeing the same identity)."""
        return await self._room._publish(track, options or TrackPublishOptions())

    async def unpublish_track(self, track_sid: str) -> None:
        """Stops publishing (connects again without the track, as publish_track does)."""
        await self._room._unpublish(track_sid)

    async def publish_data(self, payload: Union[bytes, str], *, reliable: bool = True,
                           destination_identities: Sequence[str] = (), topic: str = "") -> None:
        """Sends `payload` on `topic` (declared in RoomOptions.data_topics). Destinations
        are honoured by receivers but Sora delivers the message to every member with the
        topic: it is a filter, not privacy. Raises ValueError beyond MAX_PACKET_BYTES."""
        await self._room._send_data(payload, reliable, destination_identities, topic)

    # -- streams (rtc._streams) -------------------------------------------------------------
    async def send_text(self, text: str, *, topic: str = "", destination_identities: Optional[Sequence[str]] = None,
                        attributes: Optional[dict] = None, stream_id: Optional[str] = None) -> StreamInfo:
        """Sends `text` of any length as a stream (chunked, verified on receipt)."""
        return await self._room._streams.send_text(
            text, topic=topic, destination_identities=destination_identities, attributes=attributes,
            stream_id=stream_id)

    async def stream_text(self, *, topic: str = "", destination_identities: Optional[Sequence[str]] = None,
                          attributes: Optional[dict] = None, stream_id: Optional[str] = None) -> TextStreamWriter:
        """A writer: `await writer.write(str)` as often as needed, then `await writer.aclose()`."""
        writer = await self._room._streams.open(
            text=True, topic=topic, name="", mime_type="text/plain", total_size=None, attributes=attributes,
            destination_identities=destination_identities, stream_id=stream_id)
        assert isinstance(writer, TextStreamWriter)
        return writer

    async def send_file(self, file_path: str, *, topic: str = "", mime_type: str = "application/octet-stream",
                        destination_identities: Optional[Sequence[str]] = None, attributes: Optional[dict] = None,
                        stream_id: Optional[str] = None) -> StreamInfo:
        """Sends a file as a byte stream (its name and size go in the stream's info)."""
        return await self._room._streams.send_file(
            file_path, mime_type=mime_type, topic=topic, destination_identities=destination_identities,
            attributes=attributes, stream_id=stream_id)

    async def stream_bytes(self, name: str, *, total_size: Optional[int] = None,
                           mime_type: str = "application/octet-stream", topic: str = "",
                           destination_identities: Optional[Sequence[str]] = None,
                           attributes: Optional[dict] = None, stream_id: Optional[str] = None) -> ByteStreamWriter:
        writer = await self._room._streams.open(
            text=False, topic=topic, name=name, mime_type=mime_type, total_size=total_size,
            attributes=attributes, destination_identities=destination_identities, stream_id=stream_id)
        assert isinstance(writer, ByteStreamWriter)
        return writer

    # -- RPC (rtc._rpc) --------------------------------------------------------------------------
    async def perform_rpc(self, *, destination_identity: str, method: str, payload: str,
                          response_timeout: float = 10.0) -> str:
        """Calls `method` on `destination_identity`; its answer, or RpcError (LiveKit's codes)."""
        return await self._room._rpc.perform(destination_identity, method, payload, response_timeout)

    def register_rpc_method(self, method_name: str, handler: Optional[RpcHandler] = None) -> Any:
        """`handler(RpcInvocationData) -> str` (sync or async); without it, a decorator."""
        return self._room._rpc.register(method_name, handler)

    def unregister_rpc_method(self, method: str) -> None:
        self._room._rpc.unregister(method)
