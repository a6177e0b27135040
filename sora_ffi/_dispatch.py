"""One event queue per `Sora` and the daemon thread that delivers its events.

Native threads only push events; this thread pulls them (the wait releases the GIL) and
calls into Python. So user callbacks always run here, one at a time, and may call anything,
`disconnect()` included. A Sora made for an asyncio event loop (`aio.event_loop_sora`) has
no thread: the loop watches the queue's descriptor and delivers the events itself, which
saves a thread hop (and the GIL changing hands) per event. Targets (connections and sinks) are held weakly: the dispatcher never
keeps one alive, and events for a collected one are dropped.

Media frames are droppable events: the queue keeps at most `MEDIA_EVENTS_PER_SINK` of them
per sink, so a slow callback loses the oldest frames (counted, `EventQueue.dropped`) instead
of growing memory. Control events are never dropped.
"""
from __future__ import annotations

import enum
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from ._native import Event, EventQueue

if TYPE_CHECKING:  # asyncio costs ~20 ms to import; only event-loop users pay for it
    import asyncio

__all__ = ["EventType", "Dispatcher", "MEDIA_EVENTS_PER_SINK"]

logger = logging.getLogger("sora_ffi")

# How long stopping waits for the thread to finish the callback it is in.
_STOP_JOIN_S = 2.0
# Queued media frames per sink before the oldest is dropped: 8 video frames are ~270 ms at
# 30 fps; 8 audio stream frames are 80 ms.
MEDIA_EVENTS_PER_SINK = 8
# Events one turn of an event loop delivers before it lets the loop run other work.
_LOOP_BATCH = 256


class EventType(enum.IntEnum):
    """`SoraEventView.type` values (docs/c-abi.md; the same numbers as the header's SORA_EVENT_*)."""

    SET_OFFER = 1
    WS_CLOSE = 2
    DISCONNECT = 3
    SIGNALING_MESSAGE = 4
    NOTIFY = 5
    PUSH = 6
    MESSAGE = 7
    RPC = 8
    SWITCHED = 9
    TRACK = 10
    DATA_CHANNEL = 11
    LOG = 12
    CONNECTED = 13
    TRACK_ENDED = 14
    VIDEO_FRAME = 15
    AUDIO_FRAME = 16
    AUDIO_DATA = 17
    AUDIO_FORMAT = 18
    TRANSFORM_FRAME = 19
    KEYFRAME_REQUEST = 20
    AUDIO_STREAM_RESULT = 21
    AUDIO_STREAM_STATE = 22
    PEER_LOCAL_DESCRIPTION = 100
    PEER_LOCAL_CANDIDATE = 101
    PEER_STATE = 102
    PEER_GATHERING_STATE = 103
    PEER_DC_OPEN = 104
    PEER_DC_MESSAGE = 105
    PEER_DC_CLOSED = 106
    PEER_TRACK = 107
    PEER_DATA_CHANNEL = 108


class EventTarget(Protocol):
    def _handle_event(self, event: Event) -> None: ...

    def _release(self) -> None:
        """Frees the native handle now (the dispatcher is stopping for good)."""


class _Loop:
    """The queue, the routing table and the thread. Kept apart from `Dispatcher` so that the
    thread does not keep the Dispatcher alive (its finalizer stops the loop)."""

    def __init__(self, name: str) -> None:
        self.queue = EventQueue(MEDIA_EVENTS_PER_SINK)
        self.name = name
        # Reentrant: a collection may run at any bytecode boundary inside a locked block,
        # and the finalizers it runs (a dropped connection or sink) unregister here, on this
        # same thread. A plain Lock deadlocked there (seen while a room reconnected).
        self.lock = threading.RLock()
        self.targets: dict[int, weakref.ref] = {}
        self.thread: Optional[threading.Thread] = None
        self.stopped = False
        # event-loop mode (attach_loop): the loop (weakly: a Sora kept per loop must not keep
        # its loop alive), its thread, the queue's descriptor
        self._event_loop: Optional["weakref.ref[asyncio.AbstractEventLoop]"] = None
        self.loop_thread = 0
        self.fd = -1

    @property
    def event_loop(self) -> Optional[asyncio.AbstractEventLoop]:
        return self._event_loop() if self._event_loop is not None else None

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Delivers on `loop` (call from its thread) instead of a thread of our own. Raises
        NotImplementedError where the loop cannot watch descriptors (Windows' proactor)."""
        with self.lock:
            if self.thread is not None or self._event_loop is not None:
                raise RuntimeError("this dispatcher already delivers its events")
            fd = self.queue.notify_fd()
            loop.add_reader(fd, self.drain)
            self._event_loop, self.loop_thread, self.fd = weakref.ref(loop), threading.get_ident(), fd

    def register(self, source: int, target: EventTarget) -> None:
        with self.lock:
            if self.stopped:
                raise RuntimeError("this Sora's event dispatcher has been stopped")
            self.targets[source] = weakref.ref(target)
            if self.thread is None and self._event_loop is None:  # lazily: a Sora without connections costs no thread
                self.thread = threading.Thread(target=self.run, name=self.name, daemon=True)
                self.thread.start()

    def unregister(self, source: int) -> None:
        with self.lock:
            self.targets.pop(source, None)

    def run(self) -> None:
        queue = self.queue
        while True:
            try:
                event = queue.wait(-1)
            except EOFError:
                return
            except Exception:  # pragma: no cover - the shim failing to hand out an event
                logger.exception("sora_ffi: waiting for events failed; the dispatcher stops")
                return
            if event is not None:
                self.deliver(event)
                del event  # the loop must not keep it (or its target) alive while it waits

    def drain(self) -> None:
        """Event-loop mode: the descriptor is readable. Clears it, then delivers what waits
        (at most _LOOP_BATCH before letting the loop run; the rest on its next turn)."""
        if self._event_loop is None:  # detached (stopping): the descriptor may be gone
            return
        try:
            os.read(self.fd, 4096)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # pragma: no cover - the queue went away under us
            return
        self._deliver_batch()

    def _deliver_batch(self) -> None:
        if self._event_loop is None:
            return
        for _ in range(_LOOP_BATCH):
            try:
                event = self.queue.wait(0)
            except EOFError:
                self._detach_loop()
                return
            if event is None:
                return
            self.deliver(event)
        loop = self.event_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon(self._deliver_batch)  # more wait; the descriptor will not say so

    def deliver(self, event: Event) -> None:
        with self.lock:
            ref = self.targets.get(event.source)
        target = ref() if ref is not None else None
        if target is None:
            return  # its owner was collected: nobody is listening any more
        try:
            target._handle_event(event)
        except Exception:  # a callback must never end the dispatcher
            logger.exception("sora_ffi: exception in an event callback (%s)", _event_name(event.type))
        except BaseException:
            if self._event_loop is not None:
                raise  # Ctrl-C or exit on the loop's (main) thread: not ours to swallow
            logger.exception("sora_ffi: exception in an event callback (%s)", _event_name(event.type))

    def _detach_loop(self) -> None:
        loop, self._event_loop = self.event_loop, None
        if loop is None or loop.is_closed():
            return
        try:
            if threading.get_ident() == self.loop_thread:
                loop.remove_reader(self.fd)
            else:
                loop.call_soon_threadsafe(loop.remove_reader, self.fd)
        except (RuntimeError, ValueError):  # the loop is closing
            pass

    def stop(self) -> None:
        loop = self.event_loop
        if loop is not None and threading.get_ident() != self.loop_thread:
            # Event-loop mode, from another thread (a finalizer): tear down on the loop, so
            # that no drain already scheduled there reads a descriptor that is gone.
            try:
                loop.call_soon_threadsafe(self._stop_now)
                return
            except RuntimeError:  # the loop is closed: nothing runs there any more
                pass
        self._stop_now()

    def _stop_now(self) -> None:
        with self.lock:
            self.stopped = True
            thread = self.thread
        self._detach_loop()
        try:
            self.queue.close()
            idle = True
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=_STOP_JOIN_S)
                idle = not thread.is_alive()
            if idle:
                self._release_targets()
            self.queue.destroy()  # deferred by EventQueue while the thread is inside a wait
        except Exception:  # pragma: no cover - stopping is quiet, also at interpreter exit
            pass

    def _release_targets(self) -> None:
        # Only reached with live targets at interpreter exit (otherwise the targets, which
        # hold the Dispatcher, are gone already). Freeing them here, after the thread has
        # finished its last callback, means no callback can use a freed handle.
        with self.lock:
            refs = list(self.targets.values())
            self.targets.clear()
        for ref in refs:
            target = ref()
            if target is not None:
                target._release()


def _event_name(value: int) -> str:
    try:
        return EventType(value).name
    except ValueError:
        return str(value)


class Dispatcher:
    """Owns one EventQueue and its delivery thread (started at the first registration).

    It stops when it is garbage-collected (its owners: the Sora object and its connections)
    or at interpreter exit, quietly."""

    def __init__(self, name: str = "sora_ffi-dispatch") -> None:
        self._loop = _Loop(name)
        self._finalizer = weakref.finalize(self, self._loop.stop)

    @property
    def queue(self) -> EventQueue:
        return self._loop.queue

    def register(self, source: int, target: EventTarget) -> None:
        """Routes events whose `source` is `source` to `target._handle_event` (held weakly):
        a connection or a sink."""
        self._loop.register(source, target)

    def unregister(self, source: int) -> None:
        self._loop.unregister(source)

    @property
    def unregister_callback(self) -> Callable[[int], None]:
        """`unregister` without a reference to the Dispatcher (for finalizers: holding the
        Dispatcher there would keep it alive one collection longer)."""
        return self._loop.unregister

    def on_dispatch_thread(self) -> bool:
        """True when called from the thread that runs this dispatcher's callbacks (in
        event-loop mode: the loop's thread, which must never block on them)."""
        if self._loop.loop_thread:
            return threading.get_ident() == self._loop.loop_thread
        return self._loop.thread is threading.current_thread()

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Event-loop mode (see the module docstring); before the first registration."""
        self._loop.attach_loop(loop)

    def stop(self) -> None:
        """Closes the queue and ends the thread (waits briefly for a running callback)."""
        self._finalizer()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive
