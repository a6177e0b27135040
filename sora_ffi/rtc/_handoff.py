"""Items from the dispatcher thread to the event loop: a bounded queue per stream, and one
pump per event loop that wakes the loop once for every burst, whatever the number of
streams with something new (the frames of all subscriptions of a packet arrive together:
100 streams then cost one wake-up, not 100)."""
from __future__ import annotations

import abc
import asyncio
import collections
import threading
import weakref
from typing import Any, Generic, Optional, TypeVar

T = TypeVar("T")


class _Pump:
    """One per event loop: the handoffs with news, and whether the loop has been told."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # weakly: the pump is kept per loop and must not keep its loop (and the loop's
        # event-loop Sora, its queue and descriptors) alive
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._ready: list["Handoff"] = []
        self._scheduled = False

    def notify(self, handoff: "Handoff") -> None:
        """Any thread."""
        with self._lock:
            self._ready.append(handoff)
            if self._scheduled:
                return
            self._scheduled = True
        loop = self._loop()
        if loop is None:
            return
        try:
            if _on(loop):  # the loop delivers the events itself (aio.event_loop_sora)
                loop.call_soon(self._run)
            else:
                loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: nobody reads any more
            pass

    def _run(self) -> None:
        with self._lock:
            ready, self._ready, self._scheduled = self._ready, [], False
        for handoff in ready:
            handoff._wake()


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_pumps: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pump]" = weakref.WeakKeyDictionary()
_pumps_lock = threading.Lock()


def _pump_for(loop: asyncio.AbstractEventLoop) -> _Pump:
    with _pumps_lock:
        pump = _pumps.get(loop)
        if pump is None:
            pump = _pumps[loop] = _Pump(loop)
        return pump


class Handoff(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._pump = _pump_for(loop)
        self._capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._notified = False  # the pump knows about us and has not woken us yet
        self._closed = False
        self._waiter: Optional[asyncio.Future[None]] = None
        #: items dropped because the reader lagged by more than `capacity`
        self.dropped = 0

    def put(self, item: T) -> None:
        """Any thread."""
        with self._lock:
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            if self._notified:
                return
            self._notified = True
        self._pump.notify(self)

    def _wake(self) -> None:
        """Event loop."""
        with self._lock:
            self._notified = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Event loop: what is queued is still read, then iteration stops."""
        self._closed = True
        self._wake()

    async def get(self) -> T:
        """The next item; StopAsyncIteration once closed and drained."""
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
            if self._closed:
                raise StopAsyncIteration
            if self._waiter is not None:
                raise RuntimeError("this stream is already being read (one reader at a time)")
            waiter = self._waiter = self._loop.create_future()
            with self._lock:
                if self._items:  # arrived meanwhile
                    self._waiter = None
                    continue
            try:
                await waiter
            finally:
                self._waiter = None


class TrackReader(Generic[T], abc.ABC):
    """What AudioStream and VideoStream share: a Handoff of events, a sink on the track's
    current media (moved when the media is replaced), the end when the track is
    unpublished. Subclasses make the sink (`_make_sink`) and the events (`_on_frame`)."""

    def __init__(self, track: Any, loop: Optional[asyncio.AbstractEventLoop], capacity: int,
                 default_capacity: int) -> None:
        """`capacity` 0: `default_capacity`."""
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be a non-negative int, not {capacity!r}")
        self._queue: Handoff[T] = Handoff(loop or asyncio.get_running_loop(), capacity or default_capacity)
        self._sink: Optional[Any] = None
        self._track = track
        track._streams.add(self)
        if track._ended:
            self._end()
        elif track._sora_track is not None:
            self._attach(track._sora_track)

    @abc.abstractmethod
    def _make_sink(self, sora_track: Any) -> Any:
        """A sink on `sora_track` (its on_frame is set here)."""

    @abc.abstractmethod
    def _on_frame(self, frame: Any) -> None:
        """A frame from the sink (on the thread that delivers the Sora's events)."""

    @property
    def dropped(self) -> int:
        """Frames dropped because the reader lagged by more than `capacity`."""
        return self._queue.dropped

    def _end(self) -> None:
        """The track ended: what is queued is still read, then iteration stops."""
        self._queue.close()

    def __aiter__(self) -> "TrackReader[T]":
        return self

    async def __anext__(self) -> T:
        return await self._queue.get()

    def _attach(self, sora_track: Any) -> None:
        self._detach()
        self._sink = self._make_sink(sora_track)
        self._sink.on_frame = self._on_frame

    def _detach(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.on_frame = None
            sink.close()

    async def aclose(self) -> None:
        """Detaches from the track; iteration ends."""
        self._detach()
        self._track._streams.discard(self)
        self._end()
