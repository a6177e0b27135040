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
import importlib
import itertools
import json
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
        self.sora = sora if sora is not None else sdk.Sora()
        self.conn = self.sora.create_connection(
            signaling_urls=list(urls), role=role, channel_id=channel_id, **kwargs)
        self.role = role
        self.channel_id = channel_id
        self.connect_called = False
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
        self.connect_called = True
        self.conn.connect()
        if wait:
            self.wait_connected(timeout)
        return self

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
    made.clear()
