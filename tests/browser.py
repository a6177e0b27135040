"""sora-js-sdk in headless Chromium as a test peer (see ../shared/peers.md).

``chromium`` (session fixture) starts one Chromium through Playwright's Python driver with
the system's ``/usr/bin/chromium``, and a small HTTP server on 127.0.0.1 that serves the
harness (tests/browser/harness.js) and sora-js-sdk's ESM bundle. Served from a loopback
address, the page is a secure context (it may capture and play media) and may reach the
dev server on 127.0.0.1 (Chromium's local network access checks block a page of unknown
address, such as a routed one, from loopback WebSockets). ``browser_peer()`` opens a page.

Set up by .ci/setup: Debian's ``chromium``, the ``playwright`` wheel in the test venv, and
``sora-js-sdk`` from npm under ~/.cache/sora_ffi/js. Missing pieces skip the browser tests,
unless SORA_FFI_REQUIRE_BROWSER=1 (set by .ci/test) turns the skip into a failure.
"""
from __future__ import annotations

import concurrent.futures
import http.server
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest

from sora_ffi import testpattern

HERE = Path(__file__).parent / "browser"
JS_ROOT = Path(os.environ.get("SORA_FFI_JS", Path.home() / ".cache" / "sora_ffi" / "js"))
SORA_JS = JS_ROOT / "node_modules" / "sora-js-sdk" / "dist" / "sora.js"
CHROMIUM = os.environ.get("SORA_FFI_CHROMIUM", "/usr/bin/chromium")

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.* , EXCLUDE ::1 , EXCLUDE [::1]",
    # a hidden page must keep drawing and decoding at full rate
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def _missing() -> Optional[str]:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (.ci/setup installs it)"
    if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if not SORA_JS.exists():
        return f"sora-js-sdk is not installed at {SORA_JS} (.ci/setup installs it)"
    return None


_FILES = {"/harness.html": (HERE / "harness.html", "text/html"),
          "/harness.js": (HERE / "harness.js", "text/javascript"),
          "/sora.js": (SORA_JS, "text/javascript")}


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        entry = _FILES.get(self.path.split("?")[0])
        if entry is None:
            self.send_error(404)
            return
        body = entry[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", entry[1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Chromium:
    """Playwright and Chromium on a thread of their own: Playwright's sync API runs an
    asyncio loop on the thread that starts it, which would make every later
    ``asyncio.run()`` on that thread (the aio tests) fail. Its objects must be used from
    that thread, so every call goes through :meth:`call`."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._jobs: queue.Queue = queue.Queue()
        self._started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="playwright", daemon=True)
        self._thread.start()
        self.context = self._started.result(timeout=60)

    def _run(self) -> None:
        from playwright.sync_api import sync_playwright
        try:
            with tempfile.TemporaryDirectory(prefix="sora-ffi-chromium-") as profile, sync_playwright() as pw:
                ctx = pw.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=FLAGS)
                self._started.set_result(ctx)
                try:
                    while (job := self._jobs.get()) is not None:
                        fn, fut = job
                        try:
                            fut.set_result(fn())
                        except BaseException as e:  # handed to the caller
                            fut.set_exception(e)
                finally:
                    ctx.close()
        except BaseException as e:
            if not self._started.done():
                self._started.set_exception(e)

    def call(self, fn, timeout: float = 60.0):
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, fut))
        return fut.result(timeout=timeout)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(30)


@pytest.fixture(scope="session")
def chromium():
    why = _missing()
    if why:
        if os.environ.get("SORA_FFI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required: {why}")
        pytest.skip(why)
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=files.serve_forever, name="harness-http", daemon=True).start()
    try:
        browser = _Chromium(f"http://127.0.0.1:{files.server_address[1]}")
        try:
            yield browser
        finally:
            browser.close()
    finally:
        files.shutdown()
        files.server_close()


class BrowserPeer:
    """One sora-js-sdk connection in its own page."""

    def __init__(self, chromium: _Chromium) -> None:
        self._chromium = chromium
        self.console: list = []

        def open_page():
            page = chromium.context.new_page()
            page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
            page.goto(f"{chromium.origin}/harness.html")
            page.wait_for_function("window.harnessReady === true", timeout=10_000)
            return page
        self.page = chromium.call(open_page)
        self.connection_id: Optional[str] = None
        self.codes: list = []  # (index, time_ms) of each decoded frame that carried the code
        self.sizes: set = set()
        self.unreadable = 0

    def _eval(self, expression: str, arg: Any = None) -> Any:
        return self._chromium.call(lambda: self.page.evaluate(expression, arg))

    def connect(self, url: str, channel_id: str, role: str, **options: Any) -> str:
        """Connects with sora-js-sdk options (camelCase, e.g. videoCodecType="VP9";
        ``metadata`` is the connection's metadata); a sending page sends the test pattern at
        640x360 30 fps and a 440 Hz tone."""
        self.connection_id = self._eval("([u, c, r, o]) => window.peer.connect(u, c, r, o)",
                                        [url, channel_id, role, options])
        return self.connection_id

    def poll_frames(self) -> int:
        """Reads the codes of the frames decoded since the last call; returns how many were
        read so far."""
        for width, height, cells in self._eval("window.peer.takeFrames()"):
            self.sizes.add((height, width))
            code = testpattern.decode_cells(cells)
            if code is None:
                self.unreadable += 1
            else:
                self.codes.append(code)
        return len(self.codes)

    def wait_frames(self, n: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while self.poll_frames() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.codes)

    def stats(self, type_: str, kind: Optional[str] = None) -> list:
        return [s for s in self._eval("window.peer.stats()")
                if s.get("type") == type_ and (kind is None or s.get("kind") == kind)]

    def disconnects(self) -> list:
        """The disconnect events sora-js-sdk reported ({type, code, reason} each)."""
        return self._eval("window.peer.disconnects")

    def disconnect(self) -> None:
        self._eval("window.peer.disconnect()")

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            self._chromium.call(self.page.close)


@pytest.fixture
def browser_peer(chromium):
    """``browser_peer()`` → a new :class:`BrowserPeer`; all are closed at teardown."""
    peers: list = []

    def make() -> BrowserPeer:
        p = BrowserPeer(chromium)
        peers.append(p)
        return p
    yield make
    for p in peers:
        try:
            p.close()
        except Exception:
            pass
