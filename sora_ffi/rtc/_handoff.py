"""Items from the dispatcher thread to the event loop: a bounded queue per stream, and one
pump per event loop that wakes the loop once for every burst, whatever the number of
streams with something new (the frames of all subscriptions of a packet arrive together:
100 streams then cost one wake-up, not 100)."""
from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from typing import Generic, Optional, TypeVar

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
