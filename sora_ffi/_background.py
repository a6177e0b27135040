"""Running an asyncio server outside asyncio code: on a private loop in a daemon thread
(`DevServer`, `Gateway`), or until SIGINT/SIGTERM in a command-line tool."""
from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sys
import threading
from typing import Any, Awaitable, Callable, Optional


class LoopThread:
    """One event loop in one daemon thread, started with a coroutine and ended with another."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self, begin: Callable[[], Awaitable[Any]], timeout: float) -> None:
        """Runs `begin()` on the new loop and returns once it has; raises what it raised."""
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(begin, ready), name=self.name, daemon=True)
        self._thread.start()
        ready.result(timeout)

    def _run(self, begin: Callable[[], Awaitable[Any]], ready: concurrent.futures.Future) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(begin())
        except BaseException as e:
            ready.set_exception(e)
            loop.close()
            self.loop = None
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            try:  # what is still running is cancelled and given its chance to end
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def call(self, coro: Awaitable[Any], timeout: float) -> Any:
        """Runs `coro` on the loop from another thread; its result."""
        if self.loop is None:
            raise RuntimeError(f"{self.name} is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self, end: Callable[[], Awaitable[Any]], timeout: float) -> None:
        """Runs `end()` on the loop, then stops it and waits for the thread."""
        loop, thread = self.loop, self._thread
        try:
            if loop is not None and loop.is_running():
                asyncio.run_coroutine_threadsafe(end(), loop).result(timeout)  # type: ignore[arg-type]
        finally:
            if loop is not None and loop.is_running():
                loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout)


async def serve_until_signalled(start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]],
                                announce: Callable[[], None], until_stdin_closes: bool = False) -> None:
    """Starts a server, calls `announce()` (a tool prints its address), and stops the server
    at SIGINT or SIGTERM, or (`until_stdin_closes`) once standard input reaches its end: a
    parent holding the other end of a pipe has gone, even if killed without a word."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stopping.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stopping.set))
    if until_stdin_closes:
        def watch_stdin() -> None:
            while sys.stdin.buffer.read1(4096):
                pass
            loop.call_soon_threadsafe(stopping.set)
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    await start()
    try:
        announce()
        await stopping.wait()
    finally:
        await stop()
