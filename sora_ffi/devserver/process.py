"""The dev server in a child process (``python -m sora_ffi.devserver``), for benchmarks and
tools that want the server off their own interpreter and GIL, as a real Sora would be."""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import threading
from typing import Any, Optional, Sequence


class DevServerProcess:
    """Runs ``python -m sora_ffi.devserver --port 0 *args`` until :meth:`stop` (or the end
    of ``with``, or this process's end: the server watches a pipe from it, so not even a
    killed parent leaves it running). :attr:`info` is what the server printed at start (``signaling_url``,
    ``api_url``, ports); its log goes to ``log`` (a path) or nowhere. ``prefix``: a command
    that runs it, e.g. ``("ip", "netns", "exec", "ns1")`` for a network namespace (it must
    exec the server, so that stopping reaches it)."""

    def __init__(self, *args: str, log: Optional[str] = None, prefix: Sequence[str] = ()) -> None:
        self.args = ["--port", "0", "--exit-with-stdin", *args]
        self.log = log
        self.prefix = list(prefix)
        self.info: dict = {}
        self._proc: Optional[subprocess.Popen] = None

    @property
    def signaling_url(self) -> str:
        return self.info["signaling_url"]

    @property
    def api_url(self) -> Optional[str]:
        return self.info.get("api_url")

    @property
    def pid(self) -> Optional[int]:
        """The server process's id while it runs (to signal it: a frozen server in tests)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 30.0) -> "DevServerProcess":
        log = open(self.log, "w") if self.log else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "sora_ffi.devserver", *self.args],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        finally:
            if self.log:
                log.close()
        first: concurrent.futures.Future = concurrent.futures.Future()

        def read() -> None:  # the first line is the server's info; the rest is drained
            assert self._proc is not None and self._proc.stdout is not None
            first.set_result(self._proc.stdout.readline())
            self._proc.stdout.read()

        threading.Thread(target=read, name="devserver-stdout", daemon=True).start()
        try:
            line = first.result(timeout)
            self.info = json.loads(line) if line else {}
        except (concurrent.futures.TimeoutError, ValueError):
            self.info = {}
        if "signaling_url" not in self.info:
            self.stop()
            raise RuntimeError("the dev server did not start"
                               + (f" (see {self.log})" if self.log else ""))
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    def __enter__(self) -> "DevServerProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

