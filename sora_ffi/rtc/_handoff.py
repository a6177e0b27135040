"""Frames from the dispatcher thread to the event loop: a bounded queue that wakes the loop
at most once per item (once per burst when items come faster than the loop runs)."""
from __future__ import annotations

import asyncio
import collections
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._capacity = capacity
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._closed = False
        self._wakeup = asyncio.Event()
        #: items dropped because the reader lagged by more than `capacity`
        self.dropped = 0

    def put(self, item: T) -> None:
        """Any thread."""
        with self._lock:
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: nobody reads any more
            pass

    def _wake(self) -> None:
        with self._lock:
            self._scheduled = False
        self._wakeup.set()

    def close(self) -> None:
        """Event loop: what is queued is still read, then iteration stops."""
        self._closed = True
        self._wakeup.set()

    async def get(self) -> T:
        """The next item; StopAsyncIteration once closed and drained."""
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            with self._lock:
                if self._items:
                    continue
            await self._wakeup.wait()
