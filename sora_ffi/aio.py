"""asyncio API over the same event dispatcher (a sora_ffi addition).

    sora = sora_ffi.Sora()
    async with sora_ffi.aio.connect(sora, signaling_urls=[url], role="sendrecv",
                                    channel_id="room", data_channel_signaling=True,
                                    data_channels=[{"label": "#chat", "direction": "sendrecv"}]) as conn:
        await conn.wait_data_channel("#chat")
        await conn.send("#chat", b"hello")
        async for event in conn.events():
            match event:
                case sora_ffi.aio.Message(label, data): print(label, data)
                case sora_ffi.aio.Notify(message): print(message)

Events come from the Sora's dispatcher thread and are handed to the event loop with
`loop.call_soon_threadsafe`, so everything here runs on the loop; with a Sora from
`event_loop_sora()` the loop delivers them itself (no thread, no hop). The official callback
properties of the underlying `SoraConnection` (`conn.connection`) keep working alongside.
"""
from __future__ import annotations

import asyncio
import collections
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional, Union

from ._connection import SoraConnection
from ._native import ShimError
from ._enums import SoraSignalingDirection, SoraSignalingErrorCode, SoraSignalingType
from ._sora import Sora
from ._track import SoraMediaTrack

__all__ = [
    "connect", "event_loop_sora", "AsyncConnection", "SoraConnectionError",
    "SetOffer", "WsClose", "Disconnect", "SignalingMessage", "Notify", "Push", "Message", "Rpc",
    "Switched", "Track", "TrackEnded", "DataChannel", "Connected", "SoraEvent",
    "AudioStreamingResult",
]


class SoraConnectionError(ConnectionError):
    """The session ended before what was awaited happened (e.g. while connecting).
    `code` is the SoraSignalingErrorCode of `on_disconnect`, `reason` its message."""

    def __init__(self, code: Union[SoraSignalingErrorCode, int], reason: str) -> None:
        self.code = code
        self.reason = reason
        name = getattr(code, "name", str(code))
        super().__init__(f"{name}: {reason}" if reason else name)


@dataclass(frozen=True)
class SetOffer:
    offer: str


@dataclass(frozen=True)
class WsClose:
    code: int
    reason: str


@dataclass(frozen=True)
class Disconnect:
    """Always the last event of a session."""
    code: Union[SoraSignalingErrorCode, int]
    message: str


@dataclass(frozen=True)
class SignalingMessage:
    type: Union[SoraSignalingType, int]
    direction: Union[SoraSignalingDirection, int]
    message: str


@dataclass(frozen=True)
class Notify:
    message: str


@dataclass(frozen=True)
class Push:
    message: str


@dataclass(frozen=True)
class Message:
    label: str
    data: bytes


@dataclass(frozen=True)
class Rpc:
    data: bytes


@dataclass(frozen=True)
class Switched:
    message: str


@dataclass(frozen=True)
class Track:
    track: SoraMediaTrack


@dataclass(frozen=True)
class TrackEnded:
    """A remote track went away (its sender left, or the session ended)."""
    track: SoraMediaTrack


@dataclass(frozen=True)
class DataChannel:
    """A messaging channel is open and ready for `send`."""
    label: str


@dataclass(frozen=True)
class Connected:
    connection_id: str


@dataclass(frozen=True)
class AudioStreamingResult:
    """One audio streaming result push: what the gateway said (`result`, e.g.
    `{"type": ..., "message": "hello", "is_final": True}`) about the audio of the connection
    `connection_id` (the speaker, not necessarily this one)."""
    connection_id: str
    result: Any

    @property
    def text(self) -> Optional[str]:
        """The recognized text of a result that carries one (`message`)."""
        msg = self.result.get("message") if isinstance(self.result, dict) else None
        return msg if isinstance(msg, str) else None

    @property
    def is_final(self) -> bool:
        return isinstance(self.result, dict) and self.result.get("is_final") is True


def parse_audio_streaming_result(push: str) -> Optional[AudioStreamingResult]:
    """The AudioStreamingResult in a push message, or None for other pushes."""
    try:
        msg = json.loads(push)
    except ValueError:
        return None
    data = msg.get("data") if isinstance(msg, dict) else None
    if not isinstance(data, dict) or data.get("type") != "audio_streaming_result":
        return None
    cid = data.get("connection_id")
    return AudioStreamingResult(cid if isinstance(cid, str) else "", data.get("result"))


SoraEvent = Union[SetOffer, WsClose, Disconnect, SignalingMessage, Notify, Push, Message, Rpc,
                  Switched, Track, TrackEnded, DataChannel, Connected]

_EVENT_TYPES: dict[str, Any] = {
    "set_offer": SetOffer, "ws_close": WsClose, "disconnect": Disconnect,
    "signaling_message": SignalingMessage, "notify": Notify, "push": Push, "message": Message,
    "rpc": Rpc, "switched": Switched, "track": Track, "track_ended": TrackEnded,
    "data_channel": DataChannel,
    "connected": Connected,
}


def event_loop_sora(**sora_kwargs: Any) -> Sora:
    """A `Sora` whose events are delivered by the running event loop instead of a
    dispatcher thread (call it inside a coroutine): the loop watches the native queue's descriptor, so an event reaches
    its coroutine without a thread hop. Its callbacks (and sinks' callbacks) run on the loop
    and must not block; its blocking methods (`wait_connected`, `disconnect()` from a
    callback) must not be used on the loop: use `connect()` and `AsyncConnection` with it.
    Where the loop cannot watch descriptors (Windows' proactor loop) the Sora keeps its
    thread. `sora_kwargs` are `Sora()`'s."""
    loop = asyncio.get_running_loop()
    sora = Sora(**sora_kwargs)
    try:
        sora._dispatcher.attach_loop(loop)
    except (NotImplementedError, ShimError):
        pass  # a loop without add_reader, or no descriptor here (Windows): the thread it is
    return sora


def connect(sora: Sora, *, timeout: Optional[float] = None, max_queued_events: int = 1000,
            **create_connection_kwargs: Any) -> "AsyncConnection":
    """Creates a connection (arguments are validated here, at once) for `async with`, which
    connects and waits until it is established. `timeout` bounds that wait (seconds)."""
    conn = sora.create_connection(**create_connection_kwargs)
    return AsyncConnection(conn, timeout=timeout, max_queued_events=max_queued_events)


class AsyncConnection:
    """An asyncio view of a `SoraConnection`.

    Events are queued from `open()` on (at most `max_queued_events`; when the consumer lags,
    the oldest are dropped and counted in `dropped`; `Disconnect` is never lost)."""

    def __init__(self, connection: SoraConnection, *, timeout: Optional[float] = None,
                 max_queued_events: int = 1000) -> None:
        if max_queued_events < 1:
            raise ValueError("max_queued_events must be at least 1")
        self._conn = connection
        self._timeout = timeout
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._events: collections.deque[SoraEvent] = collections.deque(maxlen=max_queued_events)
        self._wakeup: Optional[asyncio.Event] = None
        self._connected: Optional[asyncio.Future[str]] = None
        self._ended: Optional[asyncio.Future[tuple[Any, str]]] = None
        self._open_channels: set[str] = set()
        self._channel_waiters: dict[str, list[asyncio.Future[None]]] = {}
        #: one queue per audio_streaming_results() iterator; None ends it
        self._result_queues: list[asyncio.Queue[Optional[AudioStreamingResult]]] = []
        self.dropped = 0

    @property
    def connection(self) -> SoraConnection:
        """The underlying connection (official API: callbacks, get_stats, ...)."""
        return self._conn

    @property
    def connection_id(self) -> Optional[str]:
        return self._conn.connection_id

    @property
    def pending_events(self) -> int:
        """Events queued for `events()` and not read yet."""
        return len(self._events)

    def queued_messages(self) -> list[tuple[str, bytes]]:
        """(label, data) of the `Message` events queued for `events()` and not read yet."""
        return [(e.label, e.data) for e in self._events if isinstance(e, Message)]

    async def __aenter__(self) -> "AsyncConnection":
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.disconnect()

    async def open(self) -> None:
        """Connects and waits until established. Raises SoraConnectionError if the session
        ends first, asyncio.TimeoutError after `timeout` (the connection is then ended)."""
        if self._loop is not None:
            raise RuntimeError("open() was already called")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._connected = loop.create_future()
        self._ended = loop.create_future()
        self._conn._add_observer(self._observe)
        self._conn.connect()
        try:
            await asyncio.wait_for(asyncio.shield(self._connected), self._timeout)
        except BaseException:  # timeout, cancellation, or the session ended
            self._conn._start_disconnect()
            raise

    def events(self) -> AsyncIterator[SoraEvent]:
        """Every event in order, ending after `Disconnect`. Meant for one consumer."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SoraEvent]:
        wakeup = self._require_open()._wakeup
        assert wakeup is not None
        while True:
            while not self._events:
                if self._ended is not None and self._ended.done():
                    return  # the Disconnect was already handed out
                wakeup.clear()
                await wakeup.wait()
            event = self._events.popleft()
            yield event
            if isinstance(event, Disconnect):
                return

    def audio_streaming_results(self) -> AsyncIterator[AudioStreamingResult]:
        """The audio streaming results pushed to this connection (Sora's
        `audio_streaming_result` pushes, parsed), from now on, ending when the session
        ends. Any number of iterators; each gets every result (at most `max_queued_events`
        wait for one; beyond that its oldest are dropped and counted in `dropped`).
        `events()` still sees them as `Push`."""
        self._require_open()
        queue: asyncio.Queue[Optional[AudioStreamingResult]] = asyncio.Queue(
            maxsize=self._events.maxlen or 0)
        if self._ended is not None and self._ended.done():
            queue.put_nowait(None)
        else:
            self._result_queues.append(queue)
        return self._iterate_results(queue)

    async def _iterate_results(self, queue: "asyncio.Queue[Optional[AudioStreamingResult]]"
                               ) -> AsyncIterator[AudioStreamingResult]:
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            if queue in self._result_queues:
                self._result_queues.remove(queue)

    async def send(self, label: str, data: bytes) -> bool:
        """Sends on a messaging channel; False when it is not open (see `wait_data_channel`)."""
        return self._conn.send_data_channel(label, data)

    async def wait_data_channel(self, label: str, timeout: Optional[float] = None) -> None:
        """Waits until the messaging channel `label` is open. Raises SoraConnectionError when
        the session ends first."""
        self._require_open()
        if label in self._open_channels:
            return
        self._raise_if_ended()
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._channel_waiters.setdefault(label, []).append(fut)
        await asyncio.wait_for(fut, timeout)

    async def disconnect(self) -> tuple[Union[SoraSignalingErrorCode, int], str]:
        """Ends the session and returns `on_disconnect`'s (code, message)."""
        self._conn._start_disconnect()  # never blocks the event loop
        if self._ended is None:  # never opened: nothing was connected
            return (SoraSignalingErrorCode.CLOSE_SUCCEEDED, "")
        return await asyncio.shield(self._ended)

    def get_stats(self) -> str:
        return self._conn.get_stats()

    # -- internals ----------------------------------------------------------------------

    def _require_open(self) -> "AsyncConnection":
        if self._loop is None:
            raise RuntimeError("use `async with` (or await open()) first")
        return self

    def _raise_if_ended(self) -> None:
        if self._ended is not None and self._ended.done():
            code, message = self._ended.result()
            raise SoraConnectionError(code, message)

    def _observe(self, kind: str, args: tuple) -> None:
        loop = self._loop
        if loop is None:
            return
        if _running_loop() is loop:  # an event_loop_sora: already on the loop
            self._deliver(kind, args)
            return
        # Dispatcher thread: hand over to the loop, never touch asyncio objects here.
        try:
            loop.call_soon_threadsafe(self._deliver, kind, args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _deliver(self, kind: str, args: tuple) -> None:
        event_type = _EVENT_TYPES.get(kind)
        if event_type is None:
            return
        if len(self._events) == self._events.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest
        self._events.append(event_type(*args))
        assert self._wakeup is not None and self._connected is not None and self._ended is not None
        self._wakeup.set()
        if kind == "push" and self._result_queues:
            result = parse_audio_streaming_result(args[0])
            if result is not None:
                for q in self._result_queues:
                    if q.full():  # an iterator that is not being read: drop its oldest
                        q.get_nowait()
                        self.dropped += 1
                    q.put_nowait(result)
        if kind == "connected" and not self._connected.done():
            self._connected.set_result(args[0])
        elif kind == "data_channel":
            self._open_channels.add(args[0])
            for fut in self._channel_waiters.pop(args[0], []):
                if not fut.done():
                    fut.set_result(None)
        elif kind == "disconnect":
            code, message = args
            if not self._ended.done():
                self._ended.set_result((code, message))
            for q in self._result_queues:
                if q.full():
                    q.get_nowait()
                q.put_nowait(None)
            self._result_queues.clear()
            error = SoraConnectionError(code, message)
            if not self._connected.done():
                self._connected.set_exception(error)
                self._connected.exception()  # retrieved: no "never retrieved" warning
            for waiters in self._channel_waiters.values():
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(error)
            self._channel_waiters.clear()


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
