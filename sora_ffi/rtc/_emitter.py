"""`room.on("event")` handlers (the async iterator `room.events()` is fed beside them)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

logger = logging.getLogger("sora_ffi.rtc")

Handler = Callable[..., Any]


class EventEmitter:
    """Named events with any number of handlers each. A handler that raises is logged
    (logger "sora_ffi.rtc") and the others still run: one bad handler never stops a room.
    A handler that returns a coroutine gets it scheduled as a task on the running loop."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, event: str, callback: Optional[Handler] = None) -> Any:
        """Registers `callback` for `event`; without it, a decorator that does."""
        if not isinstance(event, str):
            raise TypeError(f"event must be a str, not {type(event).__name__}")
        if callback is None:
            def register(fn: Handler) -> Handler:
                self.on(event, fn)
                return fn
            return register
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._handlers.setdefault(event, []).append(callback)
        return callback

    def once(self, event: str, callback: Optional[Handler] = None) -> Any:
        """Like `on`, for the next `event` only."""
        if callback is None:
            return lambda fn: self.once(event, fn)

        def one_shot(*args: Any) -> Any:
            self.off(event, one_shot)
            return callback(*args)
        self.on(event, one_shot)
        return callback

    def off(self, event: str, callback: Handler) -> None:
        handlers = self._handlers.get(event, [])
        if callback in handlers:
            handlers.remove(callback)

    def emit(self, event: str, *args: Any) -> None:
        for handler in list(self._handlers.get(event, ())):
            call_handler(handler, args, self._tasks, f"{event!r} handler")


def call_handler(handler: Handler, args: tuple, tasks: "set[asyncio.Task[Any]]", what: str) -> None:
    """Calls a user handler: one that raises is logged; one that returns a coroutine gets it
    run as a task (kept in `tasks` until done; its exception logged too)."""
    try:
        result = handler(*args)
    except Exception:
        logger.exception("sora_ffi.rtc: %s %r raised", what, handler)
        return
    if asyncio.iscoroutine(result):
        task = asyncio.get_running_loop().create_task(result)
        tasks.add(task)

        def done(t: "asyncio.Task[Any]") -> None:
            tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("sora_ffi.rtc: %s %r raised", what, handler, exc_info=t.exception())
        task.add_done_callback(done)
