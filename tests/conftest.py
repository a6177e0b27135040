"""Shared fixtures and helpers for the end-to-end suite.

* ``sdk``: the SDK module under test, parametrised over ``sora_ffi`` and the official
  ``sora_sdk`` (skipped where the official SDK is not installed).
* ``server``: a :class:`~sora_ffi.devserver.DevServer` on free 127.0.0.1 ports, always
  stopped; ``make_server(**opts)`` for tests that need other options or several servers.
* ``channel_id``: a channel name unique to the test.
* ``clients``: a factory ``clients(sdk, server_or_urls, role=..., **create_connection_kwargs)``
  returning a :class:`Client`; every client made is disconnected at teardown.

:class:`Client` records every callback of one connection (thread-safe: the official SDK
calls back on native threads, sora_ffi on its dispatcher thread); callbacks only append and
notify, they never block. ``wait_connected()`` is what the official SDK's own tests do: the
connection is up when the ``notify`` ``connection.created`` carrying the connection id of
``on_set_offer`` arrives.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import json
import os
import threading
import time
from typing import Any, Callable, Optional

import pytest

from sora_ffi.devserver import DevServer

try:
    import sora_sdk as _official  # noqa: F401
    HAVE_SORA_SDK = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_SORA_SDK = False

SDK_NAMES = ("sora_ffi", "sora_sdk")

# ----------------------------------------------------------- official SDK lifetime
# sora_sdk 2025.4.0 cannot be torn down reliably (observed here, all without sora_ffi):
#  * destroying a SoraConnection can deadlock: its destructor joins a thread that waits in
#    sora::DataChannel::Thunk::~Thunk() while the caller holds the GIL;
#  * a SoraMediaTrack outliving its connection segfaults when collected;
#  * connections still alive at interpreter exit segfault the process;
#  * every Sora() starts 8 threads that stay while it lives.
# So the suite uses ONE sora_sdk.Sora for the whole session (its connections' threads end
# at disconnect), never destroys any sora_sdk object (they are parked in a graveyard), and
# ends the pytest process with os._exit(status) once everything is reported (see
# pytest_unconfigure below). sora_ffi's own interpreter-exit behaviour is tested in
# subprocesses (test_faults.py, test_leaks.py), where this does not apply.
_OFFICIAL_SORA = None
_OFFICIAL_SORA_H264 = None
_OFFICIAL_GRAVEYARD: list = []
_OFFICIAL_LOCK = threading.Lock()
_EXIT_STATUS = [0]


#: OpenH264 for the H.264 tests: 2.6.0, the API of Cisco's current binaries (.ci/setup puts
#: Debian's build of it there), and Debian 12's 2.3.1 (libopenh264-7), whose output
#: structures are laid out differently (media::codec::openh264).
OPENH264 = os.environ.get("SORA_FFI_OPENH264",
                          os.path.expanduser("~/.cache/sora_ffi/openh264/libopenh264.so.2.6.0"))
OPENH264_2_3 = "/usr/lib/x86_64-linux-gnu/libopenh264.so.7"


def openh264_path(path: str = OPENH264) -> str:
    """An OpenH264 library; a missing one fails the test (.ci/setup installs both)."""
    if not os.path.isfile(path):
        pytest.fail(f"OpenH264 is missing at {path}: run .ci/setup (or set SORA_FFI_OPENH264)")
    return path


def nvidia_codecs(sdk, encoder: bool = False) -> list:
    """The codec names this machine's NVIDIA GPU decodes (or, with encoder=True, encodes):
    empty where there is no GPU, driver or NVENC (the engine is then not listed)."""
    cap = sdk.get_video_codec_capability()
    nvidia = next((e for e in cap.engines if e.name == sdk.SoraVideoCodecImplementation.NVIDIA_VIDEO_CODEC_SDK), None)
    return [] if nvidia is None else [c.type.name for c in nvidia.codecs if (c.encoder if encoder else c.decoder)]


def attach_video_sink(sdk, client, on_frame, stream_id: Optional[str] = None):
    """A SoraVideoSink on ``client``'s first video track (of the stream ``stream_id``, i.e.
    that sender's, when given; waited for), calling ``on_frame``; an official SDK's sink is
    kept until the session ends (see _OFFICIAL_GRAVEYARD)."""
    track = client.wait_for(
        lambda: next((t for t in client.tracks if t.kind == "video"
                      and (stream_id is None or t.stream_id == stream_id)), None),
        what=f"video track of {stream_id or 'any stream'}")
    sink = sdk.SoraVideoSink(track)
    sink.on_frame = on_frame
    if sdk.__name__ == "sora_sdk":
        _OFFICIAL_GRAVEYARD.append(sink)
    return sink


def official_sora(h264: bool = False):
    """The shared sora_sdk.Sora (one more, made with the OpenH264 library, for H.264)."""
    global _OFFICIAL_SORA, _OFFICIAL_SORA_H264
    with _OFFICIAL_LOCK:
        import sora_sdk
        if h264:
            if _OFFICIAL_SORA_H264 is None:
                # The official Sora only uses OpenH264 where the preference names it.
                lib, impl = openh264_path(), sora_sdk.SoraVideoCodecImplementation
                cap = sora_sdk.get_video_codec_capability(openh264=lib)
                pref = sora_sdk.create_video_codec_preference_from_implementation(cap, impl.INTERNAL)
                pref.merge(sora_sdk.create_video_codec_preference_from_implementation(cap, impl.CISCO_OPENH264))
                _OFFICIAL_SORA_H264 = sora_sdk.Sora(openh264=lib, video_codec_preference=pref)
            return _OFFICIAL_SORA_H264
        if _OFFICIAL_SORA is None:
            _OFFICIAL_SORA = sora_sdk.Sora()
        return _OFFICIAL_SORA


def new_sora(sdk, h264: bool = False):
    """A Sora of ``sdk``: sora_ffi gets a fresh one, sora_sdk a shared one (see above); with
    ``h264`` both are given the OpenH264 library."""
    if sdk.__name__ == "sora_sdk":
        return official_sora(h264)
    return sdk.Sora(openh264=openh264_path()) if h264 else sdk.Sora()


# ----------------------------------------------------------- where a crash happened
# A native crash kills pytest before it reports the test it was in; .ci/test points
# SORA_FFI_TEST_TRAIL at a file that always names the test and phase running now.
_TRAIL = os.environ.get("SORA_FFI_TEST_TRAIL")


def _trail(where: str) -> None:
    if _TRAIL:
        try:
            with open(_TRAIL, "w") as f:
                f.write(where + "\n")
        except OSError:
            pass  # a diagnostic only: never a reason for a test to fail


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _trail(f"{item.nodeid} (setup)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    _trail(f"{item.nodeid} (call)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    _trail(f"{item.nodeid} (teardown)")


def pytest_runtest_logfinish(nodeid, location):
    _trail(f"between tests, after {nodeid}")


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[0] = int(exitstatus)
    _trail("after the last test (the session's end)")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if _OFFICIAL_SORA is not None or _OFFICIAL_SORA_H264 is not None or _OFFICIAL_GRAVEYARD:
        import os
        import sys
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[0])


WAIT = 10.0  # generous upper bound for anything that normally takes milliseconds


def _sdk_param(name: str):
    marks = []
    if name == "sora_sdk" and not HAVE_SORA_SDK:
        marks.append(pytest.mark.skip(reason="sora_sdk (official SDK) is not installed"))
    return pytest.param(name, id=name, marks=marks)


@pytest.fixture(params=[_sdk_param(n) for n in SDK_NAMES])
def sdk(request):
    """The SDK module under test (sora_ffi or the official sora_sdk)."""
    return importlib.import_module(request.param)


@pytest.fixture(params=[_sdk_param(n) for n in SDK_NAMES])
def sdk2(request):
    """A second, independent SDK parameter (for cross-SDK pairs)."""
    return importlib.import_module(request.param)


@pytest.fixture
def ffi():
    return importlib.import_module("sora_ffi")


@pytest.fixture
def official():
    if not HAVE_SORA_SDK:
        pytest.skip("sora_sdk (official SDK) is not installed")
    return importlib.import_module("sora_sdk")


@pytest.fixture
def make_server():
    """``make_server(**DevServerConfig)`` → a started DevServer, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        def make(**opts) -> DevServer:
            opts.setdefault("ping_interval", 5.0)
            return stack.enter_context(DevServer(**opts))
        yield make


@pytest.fixture
def server():
    with DevServer(ping_interval=5.0) as s:
        yield s


_seq = itertools.count(1)


@pytest.fixture
def channel_id(request):
    name = request.node.name.replace("[", "-").replace("]", "")
    return f"{name[:180]}-{next(_seq)}"


def wait_until(pred: Callable[[], Any], timeout: float = WAIT, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


class Client:
    """One connection of ``sdk`` with every callback recorded."""

    def __init__(self, sdk, urls, channel_id: str, role: str = "sendrecv", *,
                 sora=None, **kwargs):
        self.sdk = sdk
        self.sdk_name = sdk.__name__
        if hasattr(urls, "signaling_url"):
            urls = [urls.signaling_url]
        elif isinstance(urls, str):
            urls = [urls]
        kwargs.setdefault("audio", False)
        kwargs.setdefault("video", False)
        if sora is None:
            sora = new_sora(sdk)
        self.sora = sora
        self.conn = self.sora.create_connection(
            signaling_urls=list(urls), role=role, channel_id=channel_id, **kwargs)
        self.role = role
        self.channel_id = channel_id
        self.connect_called = False
        self.dc_signaling = bool(kwargs.get("data_channel_signaling"))
        self.cond = threading.Condition()
        self.events: list = []  # (name, args) in arrival order
        self.offer: Optional[dict] = None
        self.connection_id: Optional[str] = None
        self.notifies: list = []
        self.pushes: list = []
        self.messages: list = []  # (label, bytes)
        self.data_channels: list = []
        self.switched: list = []
        self.ws_closes: list = []  # (code, reason)
        self.disconnects: list = []  # (int code, message)
        self.signaling: list = []  # (int type, int direction, dict or str)
        self.tracks: list = []
        self.rpcs: list = []
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.callback_hooks: dict = {}  # name -> fn(*args) run after recording (for tests)
        c = self.conn
        c.on_set_offer = self._on_set_offer
        c.on_notify = self._on_notify
        c.on_push = lambda m: self._record("push", m, self.pushes, json.loads(m))
        c.on_message = lambda label, data: self._record(
            "message", (label, bytes(data)), self.messages, (label, bytes(data)))
        c.on_data_channel = lambda label: self._record("data_channel", label,
                                                       self.data_channels, label)
        c.on_switched = lambda m: self._record("switched", m, self.switched, json.loads(m))
        c.on_ws_close = lambda code, reason: self._record(
            "ws_close", (code, reason), self.ws_closes, (int(code), reason))
        c.on_disconnect = self._on_disconnect
        c.on_signaling_message = self._on_signaling_message
        c.on_track = lambda t: self._record("track", t, self.tracks, t)
        c.on_rpc = lambda data: self._record("rpc", data, self.rpcs, bytes(data))

    # ---------------------------------------------------------------- callbacks
    def _record(self, name, raw, store: Optional[list] = None, value: Any = None):
        with self.cond:
            self.events.append((name, raw))
            if store is not None:
                store.append(value)
            self.cond.notify_all()
        hook = self.callback_hooks.get(name)
        if hook is not None:
            hook(raw)

    def _on_set_offer(self, raw: str):
        m = json.loads(raw)
        with self.cond:
            self.offer = m
            self.connection_id = m.get("connection_id")
        self._record("set_offer", raw)

    def _on_notify(self, raw: str):
        m = json.loads(raw)
        with self.cond:
            if (m.get("event_type") == "connection.created"
                    and self.connection_id is not None
                    and m.get("connection_id") == self.connection_id):
                self.connected.set()
        self._record("notify", raw, self.notifies, m)

    def _on_disconnect(self, code, message):
        with self.cond:
            self.disconnects.append((int(code), message))
            self.disconnected.set()
        self._record("disconnect", (int(code), message))

    def _on_signaling_message(self, typ, direction, message):
        try:
            m = json.loads(message)
        except ValueError:
            m = message
        self._record("signaling", (int(typ), int(direction), m), self.signaling,
                     (int(typ), int(direction), m))

    # ----------------------------------------------------------------- actions
    def connect(self, wait: bool = True, timeout: float = WAIT) -> "Client":
        """connect(); with ``wait``: until connected and, with DataChannel signaling,
        switched (the two arrive on different transports, in either order)."""
        self.connect_called = True
        self.conn.connect()
        if wait:
            self.wait_connected(timeout)
            if self.dc_signaling:
                self.wait_switched(timeout)
        return self

    def wait_switched(self, timeout: float = WAIT) -> dict:
        return self.wait_for(lambda: self.switched and self.switched[0], timeout, "switched")

    def wait_connected(self, timeout: float = WAIT) -> None:
        if not self.connected.wait(timeout):
            raise AssertionError(
                f"{self.sdk_name} {self.role} not connected within {timeout}s: "
                f"disconnects={self.disconnects} ws_closes={self.ws_closes}")

    def wait_disconnected(self, timeout: float = WAIT):
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self.sdk_name}: no on_disconnect within {timeout}s")
        return self.disconnects[0]

    def disconnect(self, wait: bool = True, timeout: float = WAIT):
        self.conn.disconnect()
        if wait:
            return self.wait_disconnected(timeout)
        return None

    def wait_for(self, pred: Callable[[], Any], timeout: float = WAIT, what: str = ""):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.sdk_name}: timed out waiting for {what or pred}")
                self.cond.wait(min(left, 0.1))

    def wait_dc(self, label: str, timeout: float = WAIT):
        return self.wait_for(lambda: label in self.data_channels, timeout, f"data channel {label}")

    def wait_notify(self, event_type: str, timeout: float = WAIT, **match) -> dict:
        def find():
            for m in self.notifies:
                if m.get("event_type") == event_type and all(
                        m.get(k) == v for k, v in match.items()):
                    return m
            return None
        return self.wait_for(find, timeout, f"notify {event_type} {match}")

    def wait_messages(self, n: int, timeout: float = WAIT) -> list:
        self.wait_for(lambda: len(self.messages) >= n, timeout, f"{n} messages")
        return list(self.messages)

    def signaling_types(self, direction: Optional[int] = None) -> list:
        with self.cond:
            return [(t, d, m.get("type") if isinstance(m, dict) else None)
                    for t, d, m in self.signaling if direction is None or d == direction]

    def event_names(self) -> list:
        with self.cond:
            return [n for n, _ in self.events]

    def release(self) -> None:
        """Drops the connection and its Sora here, on the calling thread.

        The recording lambdas make reference cycles (connection → callback → Client →
        connection). Left to the cyclic GC, the official SDK's objects would be destroyed on
        whatever thread happens to trigger a collection (a dev server or native thread),
        which crashes sora_sdk; so the fixtures release them explicitly on the test thread.

        sora_sdk objects are never destroyed at all (see :func:`official_sora`): they go to
        a graveyard that lives until the process ends with ``os._exit``."""
        with self.cond:
            if self.sdk_name == "sora_sdk":
                _OFFICIAL_GRAVEYARD.append((self.sora, self.conn, list(self.tracks),
                                            list(self.events)))
            self.events.clear()
            self.tracks.clear()
        self.conn = None
        self.sora = None

    def __repr__(self):
        return f"<Client {self.sdk_name} {self.role} {self.connection_id}>"


@pytest.fixture
def clients():
    made: list = []

    def make(sdk, urls, channel_id, role="sendrecv", **kw) -> Client:
        c = Client(sdk, urls, channel_id, role, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        with contextlib.suppress(Exception):
            c.conn.disconnect()
    for c in made:
        if c.connect_called:
            c.disconnected.wait(8)
    for c in made:
        c.release()
    made.clear()
    gc.collect()


# ------------------------------------------------------------------ expected texts
# What the official SDK (sora_sdk 2025.4.0, i.e. sora-cpp-sdk) reports, observed against the
# dev server; sora_ffi must report the same (drop-in replacement). Server-initiated endings
# carry transport details after the prefix (": ec=... wscode=... wsreason=..."), so only the
# prefix and the reason are compared there.
CLIENT_DISCONNECT_MESSAGE = {
    "ws": "Succeeded to close WebSocket (DC signaling is not enabled)",
    "hybrid": "Succeeded to close Websocket (DC signaling is enabled)",  # sic: "Websocket"
    "dconly": "Succeeded to close DataChannel",
}
SERVER_DISCONNECT_PREFIX = {
    "ws": "Succeeded to close WebSocket from server",
    "hybrid": "Succeeded to close WebSocket and DataChannel from server",
    "dconly": "Succeeded to close DataChannel",
}
MODES = ("ws", "hybrid", "dconly")


def mode_kwargs(mode: str) -> dict:
    """create_connection keyword arguments for a signaling mode."""
    if mode == "ws":
        return {}
    if mode == "hybrid":
        return {"data_channel_signaling": True, "ignore_disconnect_websocket": False}
    if mode == "dconly":
        return {"data_channel_signaling": True, "ignore_disconnect_websocket": True}
    raise ValueError(mode)


def server_session(server: DevServer, connection_id: str):
    """The dev server's Session object for a connection (to inspect or poke it)."""
    def find(core):
        for s in core.sessions:
            if s.connection_id == connection_id:
                return s
        return None
    return server.call(find)


def server_call(server: DevServer, fn: Callable[[], Any]):
    """Runs ``fn()`` on the dev server's event loop (for Session methods)."""
    return server.call(lambda _core: fn())


def closed_port_url(scheme: str = "ws") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"{scheme}://127.0.0.1:{port}/signaling"


# ------------------------------------------------------------------ fake servers
class _LoopThread:
    """An asyncio loop in a daemon thread running ``self._main()`` until stopped."""

    def _start(self, timeout: float = 10.0):
        import asyncio
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None

        def run():
            asyncio.set_event_loop(self.loop)

            async def main():
                self._stop_ev = asyncio.Event()
                try:
                    await self._setup()
                except BaseException as e:  # pragma: no cover - setup failure
                    self._error = e
                    self._ready.set()
                    return
                self._ready.set()
                await self._stop_ev.wait()
                await self._teardown()

            try:
                self.loop.run_until_complete(main())
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self.loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True))
            finally:
                self.loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name=type(self).__name__)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"{type(self).__name__} did not start")
        if self._error is not None:
            raise self._error

    def _stop(self):
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop_ev.set)
            self._thread.join(10)

    def call_soon(self, fn, *args):
        self.loop.call_soon_threadsafe(fn, *args)

    def __enter__(self):
        self._start()
        return self

    def __exit__(self, *exc):
        self._stop()


class _WsServerThread(_LoopThread):
    """A ``websockets`` server on a free 127.0.0.1 port (``url``), closed at teardown."""

    async def _listen(self, handle):
        from websockets.asyncio.server import serve

        self.server = await serve(handle, "127.0.0.1", 0, ping_interval=None, max_size=None)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/signaling"

    async def _teardown(self):
        self.server.close()
        try:
            import asyncio
            await asyncio.wait_for(self.server.wait_closed(), 5)
        except Exception:
            pass


class FakeWsServer(_WsServerThread):
    """A plain ``websockets`` server on 127.0.0.1 that runs ``await handler(fake, ws)`` for
    each connection. Records request headers and every text/binary frame it received."""

    def __init__(self, handler):
        self.handler = handler
        self.headers: list = []
        self.received: list = []
        self.errors: list = []
        self.connections = 0

    async def _setup(self):
        async def handle(ws):
            self.connections += 1
            self.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
            try:
                await self.handler(self, ws)
            except Exception as e:  # ConnectionClosed etc.: recorded, never raised
                self.errors.append(e)

        await self._listen(handle)

    async def recv_json(self, ws) -> dict:
        raw = await ws.recv()
        self.received.append(raw)
        return json.loads(raw)


class WsMitm(_WsServerThread):
    """A WebSocket relay between clients and ``upstream`` (a DevServer URL).

    ``hook(direction, message)`` (direction ``"c2s"`` or ``"s2c"``) may return a list of
    frames to forward instead of ``message`` (``[]`` drops it); None forwards it unchanged.
    ``abort()`` resets every client TCP connection without a close frame."""

    def __init__(self, upstream: str, hook=None):
        self.upstream = upstream
        self.hook = hook
        self.pairs: list = []
        self.log: list = []  # (direction, message)

    async def _setup(self):
        import asyncio
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async def handle(ws):
            async with connect(self.upstream, ping_interval=None, max_size=None) as up:
                self.pairs.append((ws, up))

                async def pump(src, dst, direction):
                    try:
                        async for m in src:
                            self.log.append((direction, m))
                            out = self.hook(direction, m) if self.hook else None
                            for x in ([m] if out is None else out):
                                await dst.send(x)
                    except ConnectionClosed:
                        pass
                    # mirror a clean close
                    if src.close_code is not None:
                        try:
                            await dst.close(src.close_code, src.close_reason or "")
                        except Exception:
                            pass

                tasks = [asyncio.ensure_future(pump(ws, up, "c2s")),
                         asyncio.ensure_future(pump(up, ws, "s2c"))]
                await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)

        await self._listen(handle)

    def abort(self):
        """Resets the client side TCP connections (no close frame) and the upstream ones."""
        def do():
            for ws, up in self.pairs:
                ws.transport.abort()
                up.transport.abort()
        self.call_soon(do)


@pytest.fixture
def fake_ws_server():
    """``fake_ws_server(handler)`` → a started :class:`FakeWsServer`, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda handler: stack.enter_context(FakeWsServer(handler))


@pytest.fixture
def ws_mitm():
    """``ws_mitm(upstream_url, hook=None)`` → a started :class:`WsMitm`."""
    with contextlib.ExitStack() as stack:
        yield lambda upstream, hook=None: stack.enter_context(WsMitm(upstream, hook))
