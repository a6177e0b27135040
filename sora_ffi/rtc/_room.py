"""`Room`: a Sora channel seen as a LiveKit room (docs/rtc.md).

One Sora connection at a time carries the room. It is replaced when the local tracks
change (Sora fixes a connection's media when it connects: the new connection is up before
the old one goes) and when the session is lost (reconnection with back-off). Remote
participants, tracks and streams survive both: a participant is an identity, and its
tracks move to the new connection's media."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional, Sequence, Union

from .. import aio
from .._sora import Sora
from .._track import SoraMediaTrack
from . import _data
from ._emitter import EventEmitter, logger
from ._events import (EVENT_TYPES, ConnectionState, DisconnectReason, Disconnected, RoomEvent)
from ._handoff import Handoff
from ._monitor import (ConnectionQuality, Tracker, by_type, local_quality, loss_fraction,
                       media_source_level, quality_of)
from ._overlap import Delivered, Overlap
from ._participant import LocalParticipant, Participant, RemoteParticipant, notify_profile
from ._rpc import Rpc
from ._streams import Streams
from ._track import (LocalAudioTrack, LocalTrackPublication, LocalVideoTrack, RemoteAudioTrack,
                     RemoteTrackPublication, RemoteVideoTrack, TrackKind, TrackPublishOptions,
                     _RemoteTrack, default_source, kind_name)

__all__ = ["Room", "RoomOptions", "ReconnectPolicy", "ConnectError", "RtcStats"]

#: messages held per unknown sender until its connection.created arrives, and how long
_HELD_MESSAGES = 256
_HELD_SECONDS = 30.0

#: events measured from the media (rtc._monitor): stats are polled only while wanted
_MEASURED = frozenset({"active_speakers_changed", "track_muted", "track_unmuted",
                       "connection_quality_changed"})

_soras: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sora]" = weakref.WeakKeyDictionary()


def _default_sora() -> Sora:
    """One Sora per event loop for every room that brings none, delivering its events on
    the loop itself (aio.event_loop_sora: no dispatcher thread, no thread hop per frame)."""
    loop = asyncio.get_running_loop()
    sora = _soras.get(loop)
    if sora is None:
        sora = _soras[loop] = aio.event_loop_sora()
    return sora


class ConnectError(ConnectionError):
    """`Room.connect` failed; `reason` says why in DisconnectReason terms."""

    def __init__(self, message: str, reason: DisconnectReason) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ReconnectPolicy:
    """After a lost session: `max_attempts` new connections, the first at once, then
    `initial_delay` seconds apart, doubling up to `max_delay`. 0 attempts: no reconnection."""
    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 5.0


@dataclass
class RoomOptions:
    """How the room connects. `identity` becomes the Sora `client_id` (a token's
    `client_id` claim wins on the server); `name` and `metadata` travel in
    `signaling_notify_metadata`. `role` None: "sendrecv" while publishing, "recvonly"
    otherwise. `audio`/`video`: which kinds the room sends and receives. `data_topics`:
    the topics publish_data and data_received use (Sora fixes them at connect).
    `auto_subscribe` False: remote tracks are subscribed only when
    `RemoteTrackPublication.set_subscribed(True)` asks (nothing is decoded before).
    `connection_options`: further `Sora.create_connection` arguments (simulcast,
    spotlight, forwarding_filters...)."""
    identity: Optional[str] = None
    name: str = ""
    metadata: str = ""
    role: Optional[str] = None
    audio: bool = True
    video: bool = True
    audio_codec_type: Optional[str] = None
    video_codec_type: Optional[str] = None
    audio_bit_rate: Optional[int] = None
    video_bit_rate: Optional[int] = None
    data_topics: Sequence[str] = ("",)
    data_channel_signaling: bool = True
    auto_subscribe: bool = True
    connect_timeout: float = 10.0
    #: seconds without the server's pings (at least; three of their longest gaps if
    #: longer) after which the session is taken as lost and the room reconnects; None:
    #: only a failed peer connection (ICE consent, ~30 s) or the server's close tells
    ping_timeout: Optional[float] = 5.0
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    sora: Optional[Sora] = None
    connection_options: dict = field(default_factory=dict)
    max_queued_events: int = 1000
    #: seconds between the stats polls behind speaking, muted and quality (docs/rtc.md)
    monitor_interval: float = 0.3


_SENT_STATS = frozenset({"outbound-rtp", "remote-inbound-rtp", "media-source"})
_RECEIVED_STATS = frozenset({"inbound-rtp", "remote-outbound-rtp"})


@dataclass
class RtcStats:
    """`Room.get_rtc_stats()`: W3C stats entries (dicts), sent and received."""
    publisher_stats: list = field(default_factory=list)
    subscriber_stats: list = field(default_factory=list)


class Room(EventEmitter):
    """`await room.connect(...)`, then events through `@room.on("name")` handlers and
    `async for event in room.events()`; `await room.disconnect()` (or `async with`)."""

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        super().__init__()
        self._loop = loop
        self._state = ConnectionState.CONN_DISCONNECTED
        self._conn: Optional[aio.AsyncConnection] = None
        self._readers: set[asyncio.Task[None]] = set()
        self._reconnect_task: Optional[asyncio.Task[None]] = None
        self._closing = False
        self._participants: dict[str, RemoteParticipant] = {}
        self._by_connection: dict[str, RemoteParticipant] = {}
        self._pending_tracks: dict[str, list[SoraMediaTrack]] = {}
        self._local_tracks: dict[TrackKind, tuple[Union[LocalAudioTrack, LocalVideoTrack], TrackPublishOptions]] = {}
        self._local: Optional[LocalParticipant] = None
        self._options = RoomOptions()  # connect() sets the caller's
        self._queues: list[Handoff[RoomEvent]] = []
        self._name = ""
        # each new connection's own connection.created, awaited before it counts as joined
        self._join_waiters: dict[aio.AsyncConnection, asyncio.Future[None]] = {}
        self._joined_once = False
        self._conn_lock: Optional[asyncio.Lock] = None  # one connection change at a time
        #: messages from connections not known as participants yet (their notify is late)
        self._pending_messages: dict[str, list[tuple[float, str, bytes]]] = {}
        #: per connection: the messaging labels the server lets it send on (from the offer)
        self._sendable: dict[aio.AsyncConnection, set[str]] = {}
        #: a replaced connection: how many of its queued events it still delivers
        self._finishing: dict[aio.AsyncConnection, int] = {}
        #: the last messages delivered, to line the next connection's up with (_overlap)
        self._delivered = Delivered()
        self._measure = False  # someone listens for what rtc._monitor derives
        self._monitor_task: Optional[asyncio.Task[None]] = None
        self._active_speakers: list[str] = []
        self._streams = Streams(self)
        self._rpc = Rpc(self)
        self._housekeeping: Optional[asyncio.Task[None]] = None
        self._args: dict[str, Any] = {}

    # -- public ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The Sora channel id."""
        return self._name

    @property
    def metadata(self) -> str:
        """Sora has no room metadata: always ""."""
        return ""

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    def isconnected(self) -> bool:
        return self._state != ConnectionState.CONN_DISCONNECTED

    @property
    def local_participant(self) -> LocalParticipant:
        if self._local is None:
            raise RuntimeError("the room is not connected")
        return self._local

    @property
    def remote_participants(self) -> dict[str, RemoteParticipant]:
        return dict(self._participants)

    @property
    def connection_id(self) -> Optional[str]:
        """The Sora connection id now carrying the room."""
        return self._conn.connection_id if self._conn is not None else None

    async def connect(self, signaling_urls: Union[str, Sequence[str]], channel_id: str, *,
                      token: Optional[str] = None, metadata: Optional[dict] = None,
                      options: Optional[RoomOptions] = None) -> None:
        """Joins `channel_id`. `token` goes to the server as `metadata.access_token` (what
        the dev server's --jwt-secret checks); `metadata` is the rest of the connect
        metadata. Raises ConnectError (with a DisconnectReason) when joining fails."""
        if self._conn is not None or self._args:
            raise RuntimeError("connect() was already called on this Room")
        urls = [signaling_urls] if isinstance(signaling_urls, str) else list(signaling_urls)
        if not urls or not all(isinstance(u, str) for u in urls):
            raise TypeError("signaling_urls must be a URL or a list of URLs")
        if not isinstance(channel_id, str) or not channel_id:
            raise TypeError("channel_id must be a non-empty str")
        options = options or RoomOptions()
        if not isinstance(options, RoomOptions):
            raise TypeError(f"options must be RoomOptions, not {type(options).__name__}")
        if not isinstance(options.auto_subscribe, bool):
            raise TypeError(f"auto_subscribe must be a bool, not {type(options.auto_subscribe).__name__}")
        auth = dict(metadata or {})
        if token is not None:
            if not isinstance(token, str):
                raise TypeError("token must be a str")
            auth["access_token"] = token
        topics = [_data.check_topic(t) for t in options.data_topics]
        if len(set(topics)) != len(topics):
            raise ValueError("data_topics has duplicates")
        identity = options.identity if options.identity is not None else f"rtc-{uuid.uuid4().hex[:16]}"
        if not isinstance(identity, str) or not identity:
            raise ValueError("identity must be a non-empty str")
        self._loop = self._loop or asyncio.get_running_loop()
        self._name = channel_id
        self._options = options
        self._topics = topics
        self._local = LocalParticipant(self, identity, options.name, options.metadata)
        self._args = dict(
            signaling_urls=urls, channel_id=channel_id, client_id=identity,
            # our successive connections must not receive each other (Sora leaves bundle
            # siblings out of media, notifies and messages)
            bundle_id=f"rtc-{uuid.uuid4().hex}",
            metadata=auth or None,
            signaling_notify_metadata={"name": options.name, "metadata": options.metadata},
            data_channel_signaling=options.data_channel_signaling,
            data_channels=(_data.data_channels(topics, reserved=(_data.STREAM_TOPIC, _data.RPC_TOPIC))
                           if options.data_channel_signaling else None),
            audio_codec_type=options.audio_codec_type, video_codec_type=options.video_codec_type,
            audio_bit_rate=options.audio_bit_rate, video_bit_rate=options.video_bit_rate,
            ping_timeout=options.ping_timeout,
            **options.connection_options,
        )
        try:
            await self._replace(drop_overlap=False)
        except BaseException:  # refused, timed out or cancelled: as if never called
            self._args = {}
            self._local = None
            self._conn = None
            raise
        self._set_state(ConnectionState.CONN_CONNECTED)
        self._start_monitor()
        self._housekeeping = self._loop.create_task(self._keep_house())

    async def disconnect(self) -> None:
        """Leaves the room; `disconnected` (CLIENT_INITIATED) is the last event."""
        if self._closing or self._state == ConnectionState.CONN_DISCONNECTED:
            return
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        conn = self._conn
        if conn is not None:
            await conn.disconnect()
        self._finish(DisconnectReason.CLIENT_INITIATED, "")

    async def get_rtc_stats(self) -> "RtcStats":
        """The W3C stats of the room's Sora connection (the dicts of the callback API's
        `get_stats()`, not LiveKit's protobuf messages), split as LiveKit splits them:
        what is sent (`outbound-rtp`, `remote-inbound-rtp`, `media-source`) in
        `publisher_stats`, what is received (`inbound-rtp`, `remote-outbound-rtp`) in
        `subscriber_stats`, and what both share (one connection carries both: transport,
        candidates, codecs, data channels) in each."""
        if self._state != ConnectionState.CONN_CONNECTED or self._conn is None:
            raise RuntimeError("the room isn't connected")
        reports = json.loads(self._conn.get_stats())
        if not isinstance(reports, list):
            reports = []
        publisher, subscriber = [], []
        for r in reports:
            kind = r.get("type") if isinstance(r, dict) else None
            if kind in _SENT_STATS:
                publisher.append(r)
            elif kind in _RECEIVED_STATS:
                subscriber.append(r)
            elif kind is not None:
                publisher.append(r)
                subscriber.append(r)
        return RtcStats(publisher, subscriber)

    async def __aenter__(self) -> "Room":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    def events(self) -> AsyncIterator[RoomEvent]:
        """Every event from now on, typed (`sora_ffi.rtc.events`), ending with
        `Disconnected`. Any number of iterators; each lags on its own (at most
        RoomOptions.max_queued_events, then its oldest are dropped)."""
        loop = self._loop or asyncio.get_running_loop()
        queue: Handoff[RoomEvent] = Handoff(loop, self._options.max_queued_events)
        if self._state == ConnectionState.CONN_DISCONNECTED and self._args:
            queue.close()
        else:
            self._queues.append(queue)
            self._measure = True
            self._start_monitor()
        return self._iterate(queue)

    async def _iterate(self, queue: Handoff[RoomEvent]) -> AsyncIterator[RoomEvent]:
        try:
            while True:
                yield await queue.get()
        except StopAsyncIteration:
            return
        finally:
            if queue in self._queues:
                self._queues.remove(queue)

    def on(self, event: str, callback: Any = None) -> Any:
        if event in _MEASURED:
            self._measure = True
            self._start_monitor()
        return super().on(event, callback)

    def emit(self, event: str, *args: Any) -> None:
        cls = EVENT_TYPES.get(event)
        if cls is not None:
            item = cls(*args)
            for queue in self._queues:
                queue.put(item)
        super().emit(event, *args)

    # -- streams ---------------------------------------------------------------------------------
    def register_text_stream_handler(self, topic: str, handler: Any) -> None:
        """`handler(reader: TextStreamReader, participant_identity)` (sync or async) for
        every text stream on `topic`."""
        self._register(self._streams.text_handlers, topic, handler)

    def unregister_text_stream_handler(self, topic: str) -> None:
        self._streams.text_handlers.pop(topic, None)

    def register_byte_stream_handler(self, topic: str, handler: Any) -> None:
        """`handler(reader: ByteStreamReader, participant_identity)` for every byte stream
        (send_file, stream_bytes) on `topic`."""
        self._register(self._streams.byte_handlers, topic, handler)

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self._streams.byte_handlers.pop(topic, None)

    @staticmethod
    def _register(handlers: dict, topic: str, handler: Any) -> None:
        _data.check_topic(topic)
        if not callable(handler):
            raise TypeError("handler must be callable")
        if topic in handlers:
            raise ValueError(f"a handler for topic {topic!r} is already registered")
        handlers[topic] = handler

    async def _keep_house(self) -> None:
        while self._state != ConnectionState.CONN_DISCONNECTED:
            await asyncio.sleep(5.0)
            self._streams.expire()
            # messages from a connection that never became a participant (it left first)
            stale = time.monotonic() - _HELD_SECONDS
            for cid in [c for c, held in self._pending_messages.items() if held[-1][0] < stale]:
                del self._pending_messages[cid]

    # -- connections ------------------------------------------------------------------------
    def _connect_kwargs(self) -> dict[str, Any]:
        tracks = self._local_tracks
        sends = bool(tracks)
        role = self._options.role or ("sendrecv" if sends else "recvonly")
        kwargs = dict(self._args, role=role, audio=self._options.audio, video=self._options.video)
        for kind, (track, opts) in tracks.items():
            if kind == TrackKind.KIND_AUDIO:
                kwargs["audio_source"] = track.source.sora_source
                if opts.audio_bit_rate is not None:
                    kwargs["audio_bit_rate"] = opts.audio_bit_rate
            else:
                kwargs["video_source"] = track.source.sora_source
                if opts.video_codec is not None:
                    kwargs["video_codec_type"] = opts.video_codec
                if opts.video_bit_rate is not None:
                    kwargs["video_bit_rate"] = opts.video_bit_rate
        return {k: v for k, v in kwargs.items() if v is not None}

    async def _establish(self) -> aio.AsyncConnection:
        """A new connection, connected (its events are queued until it is adopted)."""
        sora = self._options.sora or _default_sora()
        conn = aio.connect(sora, timeout=self._options.connect_timeout,
                           max_queued_events=self._options.max_queued_events, **self._connect_kwargs())
        try:
            await conn.open()
        except (aio.SoraConnectionError, asyncio.TimeoutError) as e:
            raise self._connect_error(e) from e
        return conn

    def _connect_error(self, e: BaseException) -> ConnectError:
        """A failed join or connection change, as the ConnectError the caller gets."""
        if isinstance(e, asyncio.TimeoutError):
            return ConnectError(f"could not join {self._name!r} in {self._options.connect_timeout} s",
                                DisconnectReason.CONNECTION_TIMEOUT)
        return ConnectError(f"could not join {self._name!r}: {e}", DisconnectReason.JOIN_FAILURE)

    async def _replace(self, drop_overlap: bool) -> None:
        """A new connection carries the room: connected, adopted, and its own
        connection.created handled (who is here); replacing a live one, its data channels
        open first. On any failure the new one is closed and the room is as it was.
        `drop_overlap`: the current connection is alive, so while both are up they get the
        same messages; the new one's are lined up with what the room delivered (_overlap)
        and none is delivered twice."""
        new = await self._establish()
        old = self._conn
        loop = asyncio.get_running_loop()
        joined: asyncio.Future[None] = loop.create_future()
        try:
            if drop_overlap:  # only then must the new one hear every message from now on
                for label in self._labels():
                    await new.wait_data_channel(label, timeout=self._options.connect_timeout)
            if self._closing:
                raise ConnectError("the room was left meanwhile", DisconnectReason.CLIENT_INITIATED)
            self._join_waiters[new] = joined
            overlap = None
            if drop_overlap and old is not None:
                overlap = self._delivered.overlap(old.queued_messages(), new.queued_messages())
            self._adopt(new, overlap)
            await asyncio.wait_for(asyncio.shield(joined), self._options.connect_timeout)
        except BaseException as e:
            self._join_waiters.pop(new, None)
            if self._conn is new:
                self._conn = old
            await new.disconnect()
            if isinstance(e, (aio.SoraConnectionError, asyncio.TimeoutError)):
                raise self._connect_error(e) from e
            raise

    def _labels(self) -> list[str]:
        if not self._options.data_channel_signaling:
            return []
        return [entry["label"] for entry in self._args.get("data_channels") or []]

    def _adopt(self, conn: aio.AsyncConnection, overlap: Optional[Overlap]) -> None:
        """`conn` carries the room from now on. (What the one it replaces has queued until
        now is still its to deliver: `_finishing`.)"""
        old = self._conn
        if old is not None and old is not conn:
            self._finishing[old] = old.pending_events
        self._conn = conn
        if self._local is not None:
            self._local._sid = conn.connection_id or ""
        task = asyncio.get_running_loop().create_task(self._read(conn, overlap))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    def _lock(self) -> asyncio.Lock:
        if self._conn_lock is None:
            self._conn_lock = asyncio.Lock()
        return self._conn_lock

    async def _switch(self) -> None:
        """Make before break: a new connection with the current local tracks."""
        async with self._lock():
            self._require_connected()
            old = self._conn
            await self._replace(drop_overlap=True)
            if old is not None:
                await old.disconnect()

    async def _read(self, conn: aio.AsyncConnection, overlap: Optional[Overlap]) -> None:
        """`overlap`: what of this connection's messages the one it replaces delivers."""
        async for event in conn.events():
            current = conn is self._conn
            if not current and self._finishing.get(conn, 0) > 0:
                self._finishing[conn] -= 1
                # a message queued before it was replaced is still its to deliver (the new
                # one drops those); its tracks and notifies are the new one's to report
                current = isinstance(event, aio.Message)
            if current and isinstance(event, aio.Message):
                if overlap is not None and overlap.is_duplicate(event.label, event.data):
                    continue
                self._delivered.add(event.label, event.data)
            try:
                self._handle(conn, event, current)
            except Exception:
                logger.exception("sora_ffi.rtc: handling %r failed", event)
        self._finishing.pop(conn, None)
        code, message = await conn.disconnect()  # the result of the ended session
        waiter = self._join_waiters.pop(conn, None)
        if waiter is not None and not waiter.done():  # it ended before it was ready
            waiter.set_exception(aio.SoraConnectionError(code, message))
            return
        if conn is self._conn and not self._closing and self._state == ConnectionState.CONN_CONNECTED:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(code, message))

    async def _reconnect(self, code: Any, message: str) -> None:
        policy = self._options.reconnect
        if policy.max_attempts <= 0:
            self._finish(_reason_of(code), message)
            return
        self._set_state(ConnectionState.CONN_RECONNECTING)
        self.emit("reconnecting")
        delay = policy.initial_delay
        async with self._lock():
            for attempt in range(policy.max_attempts):
                if attempt:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, policy.max_delay)
                try:
                    await self._replace(drop_overlap=False)  # the old one is gone: nothing overlaps
                except ConnectError as e:
                    logger.info("sora_ffi.rtc: reconnect attempt %d failed: %s", attempt + 1, e)
                    message = str(e)
                    continue
                self._set_state(ConnectionState.CONN_CONNECTED)
                self.emit("reconnected")
                return
        self._finish(_reason_of(code), message)

    def _set_state(self, state: ConnectionState) -> None:
        if state != self._state:
            self._state = state
            self.emit("connection_state_changed", state)

    def _finish(self, reason: DisconnectReason, message: str) -> None:
        if self._state == ConnectionState.CONN_DISCONNECTED:
            return
        for participant in list(self._participants.values()):
            for pub in participant.track_publications.values():
                if isinstance(pub.track, _RemoteTrack):
                    pub.track._end()
        self._participants.clear()
        self._by_connection.clear()
        self._pending_tracks.clear()
        self._pending_messages.clear()
        self._set_state(ConnectionState.CONN_DISCONNECTED)
        for task in (self._monitor_task, self._housekeeping):
            if task is not None:
                task.cancel()
        self._streams.close("the room was left")
        self._rpc.close()
        self.emit("disconnected", reason, message)
        for queue in self._queues:
            queue.close()
        self._queues.clear()

    # -- measured state (rtc._monitor) --------------------------------------------------------
    def _start_monitor(self) -> None:
        if (self._measure and self._monitor_task is None and self._options.monitor_interval > 0
                and self._state != ConnectionState.CONN_DISCONNECTED):
            self._monitor_task = asyncio.get_running_loop().create_task(self._monitor())

    async def _monitor(self) -> None:
        tracker = Tracker()
        while self._state != ConnectionState.CONN_DISCONNECTED:
            await asyncio.sleep(self._options.monitor_interval)
            conn = self._conn
            if conn is None or self._state != ConnectionState.CONN_CONNECTED:
                continue
            try:
                reports = json.loads(conn.get_stats())
            except Exception:  # the connection is going: the next poll sees the new one
                continue
            self._measured(tracker, reports if isinstance(reports, list) else [])

    def _measured(self, tracker: Tracker, reports: list) -> None:
        tracks = {}
        for participant in self._participants.values():
            for pub in participant.track_publications.values():
                if pub._media is not None:  # subscribed or not: levels need no decoding
                    tracks[pub._media.id] = (participant, pub)
        levels: dict[str, float] = {}
        quality: dict[str, ConnectionQuality] = {}
        streams = ["local/audio"]
        for report in by_type(reports, "inbound-rtp"):
            entry = tracks.get(str(report.get("trackIdentifier")))
            if entry is None:
                continue
            participant, pub = entry
            key = f"{report.get('trackIdentifier')}/{report.get('ssrc')}"
            streams.append(key)
            interval = tracker.interval(key, report)
            if interval is None:
                continue
            change = tracker.muted(key)
            if change is not None:
                pub._remote_muted = change
                if pub.track is not None:
                    pub.track._muted = change
                self.emit("track_muted" if change else "track_unmuted", participant, pub)
            if interval.level is not None:
                levels[participant.identity] = max(levels.get(participant.identity, 0.0), interval.level)
            if pub.muted:
                continue
            q = (ConnectionQuality.QUALITY_LOST if interval.packets == 0 else
                 quality_of(loss_fraction(interval.lost, interval.packets), interval.jitter))
            quality[participant.identity] = _worst(quality.get(participant.identity), q)
        local = self.local_participant
        level = media_source_level(tracker, reports)
        if level is not None:
            levels[local.identity] = level
        q_local = local_quality(reports)
        if q_local is not None:
            quality[local.identity] = q_local
        everyone: list[Participant] = [local, *self._participants.values()]
        for who in everyone:
            who._speaking = tracker.speaking(who.identity, levels.get(who.identity))
            who._audio_level = levels.get(who.identity, 0.0)
            measured = quality.get(who.identity)
            if measured is not None and measured != who._quality:
                who._quality = measured
                self.emit("connection_quality_changed", who, measured)
        speakers = sorted((p for p in everyone if p._speaking), key=lambda p: -p._audio_level)
        ids = [p.identity for p in speakers]
        if sorted(ids) != sorted(self._active_speakers):
            self._active_speakers = ids
            self.emit("active_speakers_changed", speakers)
        tracker.keep_only(streams, [p.identity for p in everyone])

    # -- local tracks and data ---------------------------------------------------------------
    async def _publish(self, track: Union[LocalAudioTrack, LocalVideoTrack],
                       options: TrackPublishOptions) -> LocalTrackPublication:
        if not isinstance(track, (LocalAudioTrack, LocalVideoTrack)):
            raise TypeError(f"publish_track takes a LocalAudioTrack or LocalVideoTrack, not {type(track).__name__}")
        if not isinstance(options, TrackPublishOptions):
            raise TypeError("options must be TrackPublishOptions")
        self._require_connected()
        kind = track.kind
        if kind in self._local_tracks:
            raise ValueError(f"a {kind_name(kind)} track is already published (Sora sends one per connection)")
        if not (self._options.audio if kind == TrackKind.KIND_AUDIO else self._options.video):
            raise ValueError(f"the room was joined with {kind_name(kind)}=False (RoomOptions)")
        self._local_tracks[kind] = (track, options)
        try:
            await self._switch()
        except BaseException:
            del self._local_tracks[kind]
            raise
        local = self.local_participant
        sid = f"{local.identity}/{kind_name(kind)}"
        track._sid = sid
        source = options.source if options.source else default_source(kind)
        pub = LocalTrackPublication(sid, kind, track.name, source)
        pub._track = track
        local._publications[sid] = pub
        self.emit("local_track_published", pub, track)
        return pub

    async def _unpublish(self, track_sid: str) -> None:
        self._require_connected()
        local = self.local_participant
        pub = local._publications.get(track_sid)
        if pub is None:
            raise ValueError(f"no published track {track_sid!r}")
        saved = self._local_tracks.pop(pub.kind)
        try:
            await self._switch()
        except BaseException:
            self._local_tracks[pub.kind] = saved
            raise
        del local._publications[track_sid]
        self.emit("local_track_unpublished", pub)

    async def _send_data(self, payload: Union[bytes, str], reliable: bool,
                         destinations: Sequence[str], topic: str) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes or str, not {type(payload).__name__}")
        if isinstance(destinations, str) or not all(isinstance(d, str) for d in destinations):
            raise TypeError("destination_identities must be a sequence of str")
        _data.check_topic(topic)
        if topic not in self._topics:
            raise ValueError(f"topic {topic!r} was not declared in RoomOptions.data_topics "
                             f"({self._topics}); Sora fixes messaging labels when connecting")
        message = _data.encode(bytes(payload), tuple(destinations))
        kind = _data.DataPacketKind.KIND_RELIABLE if reliable else _data.DataPacketKind.KIND_LOSSY
        await self._send_label(_data.label(topic, kind), message)

    async def _send_reserved(self, topic: str, message: bytes) -> None:
        """A message of the room's own (streams, RPC) on `#<topic>`."""
        await self._send_label(_data.label(topic, _data.DataPacketKind.KIND_RELIABLE), message)

    async def _send_label(self, label: str, message: bytes) -> None:
        if not self._options.data_channel_signaling:
            raise ConnectionError("the room was joined with data_channel_signaling=False: "
                                  "Sora's messaging (data, streams, RPC) needs DataChannel signaling")
        self._require_connected()
        conn = self._conn
        assert conn is not None
        sendable = self._sendable.get(conn)
        if sendable is not None and label not in sendable:
            raise PermissionError(f"the server does not let this participant send on {label!r} "
                                  "(its token does not grant can_publish_data)")
        await conn.wait_data_channel(label, timeout=self._options.connect_timeout)
        if not await conn.send(label, message):
            raise ConnectionError(f"the data channel {label!r} is closed")

    def _require_connected(self) -> None:
        if self._state != ConnectionState.CONN_CONNECTED or self._conn is None:
            raise ConnectionError(f"the room is {self._state.name}")

    # -- events of a connection ------------------------------------------------------------------
    def _handle(self, conn: aio.AsyncConnection, event: aio.SoraEvent, current: bool) -> None:
        if isinstance(event, aio.SetOffer):
            labels = _sendable_labels(event.offer)
            if labels is not None:
                self._sendable[conn] = labels
        elif isinstance(event, aio.Disconnect):
            self._sendable.pop(conn, None)
        elif isinstance(event, aio.TrackEnded):
            self._on_track_ended(event.track)
        elif not current:
            return  # a connection being replaced: the new one reports the same
        elif isinstance(event, aio.Track):
            self._on_track(event.track)
        elif isinstance(event, aio.Notify):
            self._on_notify(conn, event.message)
        elif isinstance(event, aio.Message):
            self._on_message(event.label, event.data)

    def _on_notify(self, conn: aio.AsyncConnection, text: str) -> None:
        msg = _data.json_object(text)
        if msg is None:
            return
        event_type, cid = msg.get("event_type"), msg.get("connection_id")
        if not isinstance(cid, str):
            return
        if event_type == "connection.created":
            if cid == conn.connection_id:
                self._on_joined(conn, msg)
            else:
                self._member_joined(msg, announce=True)
        elif event_type == "connection.destroyed":
            self._member_left(cid)

    def _on_joined(self, conn: aio.AsyncConnection, msg: dict) -> None:
        """Our own connection.created: who is in the room (after a reconnect, who left
        meanwhile is let go, who came is announced)."""
        local = self.local_participant
        client_id = msg.get("client_id")
        if isinstance(client_id, str) and client_id:
            local._identity = client_id
        members = [m for m in msg.get("data") or [] if isinstance(m, dict)]
        present = {m.get("connection_id") for m in members}
        for cid in list(self._by_connection):
            if cid not in present:
                self._member_left(cid)
        for member in members:
            # LiveKit announces only those who come after the first join
            self._member_joined(member, announce=self._joined_once)
        self._joined_once = True
        waiter = self._join_waiters.pop(conn, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _member_joined(self, info: dict, announce: bool) -> None:
        cid = info.get("connection_id")
        if not isinstance(cid, str) or cid in self._by_connection:
            return
        client_id = info.get("client_id")
        identity: str = client_id if isinstance(client_id, str) and client_id else cid
        participant = self._participants.get(identity)
        new = participant is None
        if participant is None:
            name, metadata = notify_profile(info.get("metadata"))
            participant = RemoteParticipant(cid, identity, name, metadata)
            self._participants[identity] = participant
        kinds = participant._connections.setdefault(cid, set())
        participant._sid = cid
        self._by_connection[cid] = participant
        if new and announce:
            self.emit("participant_connected", participant)
        if info.get("role") in ("sendrecv", "sendonly"):
            for kind, flag in ((TrackKind.KIND_AUDIO, "audio"), (TrackKind.KIND_VIDEO, "video")):
                if info.get(flag) is True:
                    kinds.add(kind)
                    self._publication(participant, kind)
        for track in self._pending_tracks.pop(cid, []):
            self._on_track(track)
        for _, label, message in self._pending_messages.pop(cid, []):
            self._on_message(label, message)

    def _member_left(self, cid: str) -> None:
        self._pending_tracks.pop(cid, None)
        self._pending_messages.pop(cid, None)
        participant = self._by_connection.pop(cid, None)
        if participant is None:
            return
        participant._connections.pop(cid, None)
        if participant._connections:
            # the identity is still here (it reconnected): what it no longer sends is gone
            participant._sid = next(iter(participant._connections))
            carried = set().union(*participant._connections.values())
            for sid, pub in list(participant._publications.items()):
                if pub.kind not in carried:
                    self._remote_unpublished(participant, sid)
            return
        for sid in list(participant._publications):
            self._remote_unpublished(participant, sid)
        self._participants.pop(participant.identity, None)
        self._streams.sender_left(participant.identity)
        self._rpc.participant_left(participant.identity)
        self.emit("participant_disconnected", participant)

    def _remote_unpublished(self, participant: RemoteParticipant, sid: str) -> None:
        pub = participant._publications.pop(sid)
        assert isinstance(pub, RemoteTrackPublication)
        self._unsubscribe(participant, pub)
        self.emit("track_unpublished", pub, participant)

    def _publication(self, participant: RemoteParticipant, kind: TrackKind) -> RemoteTrackPublication:
        pub = participant._publication(kind)
        if pub is None:
            sid = f"{participant.identity}/{kind_name(kind)}"
            pub = RemoteTrackPublication(sid, kind, kind_name(kind), default_source(kind),
                                         subscribe=self._options.auto_subscribe)
            pub._changed = self._subscription_changer(participant, pub)
            participant._publications[sid] = pub
            self.emit("track_published", pub, participant)
        return pub

    def _on_track(self, sora_track: SoraMediaTrack) -> None:
        cid = sora_track.stream_id
        participant = self._by_connection.get(cid)
        if participant is None:  # the media came before the notify (Sora's usual order)
            self._pending_tracks.setdefault(cid, []).append(sora_track)
            return
        kind = TrackKind.KIND_AUDIO if sora_track.kind == "audio" else TrackKind.KIND_VIDEO
        participant._connections.setdefault(cid, set()).add(kind)
        pub = self._publication(participant, kind)
        pub._media = sora_track
        track = pub.track
        if isinstance(track, _RemoteTrack):
            track._bind(sora_track)  # the same publication's media, on a new connection
        elif pub._want:
            self._subscribe(participant, pub)

    def _on_track_ended(self, sora_track: SoraMediaTrack) -> None:
        pending = self._pending_tracks.get(sora_track.stream_id)
        if pending and sora_track in pending:
            pending.remove(sora_track)
        for participant in self._participants.values():
            for pub in participant.track_publications.values():
                if pub._media is sora_track:
                    pub._media = None
                    if isinstance(pub.track, _RemoteTrack):
                        pub.track._unbind(sora_track)
                    return

    def _subscribe(self, participant: RemoteParticipant, pub: RemoteTrackPublication) -> None:
        assert pub._media is not None
        cls = RemoteAudioTrack if pub.kind == TrackKind.KIND_AUDIO else RemoteVideoTrack
        track = cls(pub.sid, pub._media)
        track._muted = pub._remote_muted
        pub._track = track
        self.emit("track_subscribed", track, pub, participant)

    def _subscription_changer(self, participant: RemoteParticipant,
                              pub: RemoteTrackPublication) -> Callable[[], None]:
        """What `pub.set_subscribed` calls: the change is made on the room's loop, later
        (handlers see events after the call returns, and from any thread)."""
        room = weakref.ref(self)

        def reconcile() -> None:
            self_ = room()
            if (self_ is None or self_._participants.get(participant.identity) is not participant
                    or participant._publications.get(pub.sid) is not pub):
                return  # the room, the participant or the publication is gone
            if pub._want and pub.track is None and pub._media is not None:
                self_._subscribe(participant, pub)
            elif not pub._want and pub.track is not None:
                self_._unsubscribe(participant, pub)

        def changed() -> None:
            self_ = room()
            if self_ is not None and self_._loop is not None and not self_._loop.is_closed():
                self_._loop.call_soon_threadsafe(reconcile)
        return changed

    def _unsubscribe(self, participant: RemoteParticipant, pub: RemoteTrackPublication) -> None:
        track = pub.track
        if isinstance(track, _RemoteTrack):
            pub._track = None
            track._end()
            self.emit("track_unsubscribed", track, pub, participant)

    def _on_message(self, label: str, message: bytes) -> None:
        parsed = _data.parse_label(label)
        if parsed is None:
            return
        topic, kind = parsed
        decoded = _data.decode(message)
        if decoded is None:
            logger.warning("sora_ffi.rtc: dropped a malformed message on %r", label)
            return
        sender, payload, destinations = decoded
        participant = self._by_connection.get(sender)
        if participant is None:
            # its connection.created has not come yet (notifies and messages travel on
            # different channels): hold the message until it does
            held = self._pending_messages.setdefault(sender, [])
            if len(held) >= _HELD_MESSAGES:
                held.pop(0)
                logger.warning("sora_ffi.rtc: too many messages from unknown %s: the oldest dropped", sender)
            held.append((time.monotonic(), label, message))
            return
        if topic in (_data.STREAM_TOPIC, _data.RPC_TOPIC):
            (self._streams if topic == _data.STREAM_TOPIC else self._rpc).on_message(participant.identity, payload)
            return
        if topic not in self._topics:
            return
        if destinations is not None and self.local_participant.identity not in destinations:
            return
        self.emit("data_received", _data.DataPacket(payload, kind, participant, topic))


def _worst(a: Optional[ConnectionQuality], b: ConnectionQuality) -> ConnectionQuality:
    if a is None:
        return b
    if ConnectionQuality.QUALITY_LOST in (a, b):
        return ConnectionQuality.QUALITY_LOST
    return min(a, b)


def _sendable_labels(offer: str) -> Optional[set[str]]:
    """The messaging labels an offer lets the connection send on (None: it does not say)."""
    entries = (_data.json_object(offer) or {}).get("data_channels")
    if not isinstance(entries, list):
        return None
    return {e["label"] for e in entries if isinstance(e, dict) and isinstance(e.get("label"), str)
            and e.get("direction", "sendrecv") in ("sendrecv", "sendonly")}


def _reason_of(code: Any) -> DisconnectReason:
    from .._enums import SoraSignalingErrorCode as C
    if code == C.CLOSE_SUCCEEDED:
        return DisconnectReason.PARTICIPANT_REMOVED
    return DisconnectReason.SIGNAL_CLOSE


# re-exported for `Disconnected` users
__all__ += ["ConnectionState", "DisconnectReason", "Disconnected"]
