"""`SoraConnection`: one Sora session over a native `SoraConnection*` handle.

Callbacks run on the owning Sora's dispatcher thread (never on native threads), one at a
time; a callback may call any method, `disconnect()` included. An exception in a callback is
logged on the `sora_ffi` logger and does not stop later events.
"""
from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar, overload

from ._dispatch import EventType
from ._enums import (SoraSignalingDirection, SoraSignalingErrorCode, SoraSignalingType,
                     enum_or_int)
from ._native import Event, check, ffi, last_error, lib, take_string
from ._track import SoraMediaTrack

if TYPE_CHECKING:
    from ._dispatch import Dispatcher

__all__ = ["SoraConnection"]

logger = logging.getLogger("sora_ffi")

SORA_ERR_INVALID_ARGUMENT = -1
SORA_ERR_NOT_FOUND = -3
SORA_ERR_CLOSED = -4
SORA_ERR_TOO_LARGE = -5
SORA_ERR_TIMEOUT = -7
_MAX_WAIT_MS = 2**31 - 1

F = TypeVar("F", bound=Callable[..., Any])
Observer = Callable[[str, tuple], None]


class _Callback(Generic[F]):
    """A settable, readable callback property (None = not set), as in the official SDK."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = "_cb_" + name
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> "_Callback[F]": ...
    @overload
    def __get__(self, obj: object, owner: type) -> Optional[F]: ...

    def __get__(self, obj: Optional[object], owner: type) -> Any:
        if obj is None:
            return self
        return getattr(obj, self._attr, None)

    def __set__(self, obj: object, value: Optional[F]) -> None:
        if value is not None and not callable(value):
            raise TypeError(f"{self._name} must be callable or None, not {type(value).__name__}")
        setattr(obj, self._attr, value)


def _destroy(ptr: Any, source: int, unregister: Callable[[int], None]) -> None:
    # Runs when the SoraConnection is collected (or at exit): nothing can use the handle now.
    unregister(source)
    lib.sora_connection_destroy(ptr)


class SoraConnection:
    """A connection to Sora, created by `Sora.create_connection` (not directly)."""

    on_set_offer: _Callback[Callable[[str], None]] = _Callback()
    on_ws_close: _Callback[Callable[[int, str], None]] = _Callback()
    on_disconnect: _Callback[Callable[[SoraSignalingErrorCode, str], None]] = _Callback()
    on_signaling_message: _Callback[Callable[[SoraSignalingType, SoraSignalingDirection, str], None]] = _Callback()
    on_notify: _Callback[Callable[[str], None]] = _Callback()
    on_push: _Callback[Callable[[str], None]] = _Callback()
    on_message: _Callback[Callable[[str, bytes], None]] = _Callback()
    on_rpc: _Callback[Callable[[bytes], None]] = _Callback()
    on_switched: _Callback[Callable[[str], None]] = _Callback()
    on_track: _Callback[Callable[[SoraMediaTrack], None]] = _Callback()
    on_data_channel: _Callback[Callable[[str], None]] = _Callback()

    def __init__(self, dispatcher: "Dispatcher", config_json: str, sources: tuple = ()) -> None:
        out = ffi.new("SoraConnection **")
        status = lib.sora_connection_new(dispatcher.queue.ptr, config_json.encode("utf-8"), out)
        if status == SORA_ERR_INVALID_ARGUMENT:
            raise ValueError(last_error())
        check(status)
        self._ptr = out[0]
        self._source = int(lib.sora_connection_id(self._ptr))
        # Holding the dispatcher keeps its queue and thread alive as long as we live.
        self._dispatcher = dispatcher
        self._finalizer = weakref.finalize(self, _destroy, self._ptr, self._source,
                                           dispatcher.unregister_callback)
        # At interpreter exit the dispatcher frees live connections itself, once its thread
        # is out of any callback (see _dispatch._Loop.stop), so no callback sees a freed handle.
        self._finalizer.atexit = False
        self._lock = threading.Lock()
        self._disconnect_bound = _disconnect_bound(config_json)
        self._connect_called = False
        self._connected = threading.Event()
        self._finished = False  # SORA_EVENT_DISCONNECT arrived
        self._established_id: Optional[str] = None  # the id, once CONNECTED said it
        self._ended = threading.Event()  # ... and on_disconnect has returned
        self._tracks: dict[int, SoraMediaTrack] = {}
        # The audio/video source objects named in the config: the shim holds sources only
        # weakly (by id), so they must live at least as long as this connection.
        self._sources = tuple(sources)
        self._observers: list[Observer] = []
        dispatcher.register(self._source, self)

    # -- official API -------------------------------------------------------------------

    def connect(self) -> None:
        """Starts connecting and returns at once; progress arrives through the callbacks
        (use `wait_connected()` to block until the session is established)."""
        with self._lock:
            self._connect_called = True
        check(lib.sora_connection_connect(self._ptr))

    def disconnect(self) -> None:
        """Ends the session. Called from user code it returns once the session has ended and
        `on_ws_close` (when a WebSocket was open) and `on_disconnect` have run, as the
        official SDK does, so the close code can be read right after it; the wait is bounded
        by the configured disconnect/close timeouts. Called from a callback of this
        connection's `Sora` it returns at once and those callbacks follow. Safe before
        `connect()`, after errors and repeatedly."""
        self._start_disconnect()
        with self._lock:
            started = self._connect_called
        if started and not self._dispatcher.on_dispatch_thread():
            self._ended.wait(self._disconnect_bound)

    def _start_disconnect(self) -> None:
        """Asks the session to end and returns at once (for sora_ffi.aio and callbacks)."""
        ptr = self._ptr
        if ptr != ffi.NULL:
            check(lib.sora_connection_disconnect(ptr))

    def send_data_channel(self, label: str, data: bytes) -> bool:
        """Sends `data` on the messaging channel `label`. Returns False when that channel is
        not open; raises ValueError when `data` exceeds the channel's message size limit."""
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        buf = ffi.from_buffer("uint8_t[]", data)
        status = lib.sora_connection_send_data_channel(self._ptr, label.encode("utf-8"), buf, len(buf))
        if status == SORA_ERR_CLOSED:
            return False
        if status == SORA_ERR_TOO_LARGE:
            raise ValueError(last_error())
        check(status)
        return True

    def send_rpc(self, id: Optional[int], method: str, params: Any = None) -> bool:
        """Sends a JSON-RPC 2.0 request on the `rpc` DataChannel (Sora 2025.2+, granted by
        the offer's `rpc_methods`); the reply arrives through `on_rpc` (raw bytes). `id`
        None sends a notification (no reply). Returns False while the `rpc` channel is not
        open (no DataChannel signaling, not granted, not connected yet, or ended)."""
        if id is not None and (isinstance(id, bool) or not isinstance(id, int)):
            raise TypeError(f"id must be an int or None, not {type(id).__name__}")
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, not {type(method).__name__}")
        if not method:
            raise ValueError("method must not be empty")
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            if not isinstance(params, (dict, list)):
                raise TypeError(f"params must be a dict, a list or None, not {type(params).__name__}")
            request["params"] = params
        if id is not None:
            request["id"] = id
        try:
            text = json.dumps(request, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"params must be standard JSON: {e}") from None
        return self.send_data_channel("rpc", text.encode("utf-8"))

    def get_stats(self) -> str:
        """W3C webrtc-stats shaped JSON (a list of stats objects)."""
        out = ffi.new("char **")
        check(lib.sora_connection_get_stats(self._ptr, out))
        return take_string(out[0])

    # -- sora_ffi additions -------------------------------------------------------------

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the session is established (offer applied, peer connected, and the
        server's `connection.created` for this connection received). Returns False on
        timeout or when the session ended first. sora_ffi addition."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must not be negative")
        while True:
            ms = _MAX_WAIT_MS if timeout is None else min(int(timeout * 1000), _MAX_WAIT_MS)
            status = lib.sora_connection_wait_connected(self._ptr, ms)
            if status == 0:
                return True
            if status == SORA_ERR_TIMEOUT and timeout is None:
                continue
            if status in (SORA_ERR_TIMEOUT, SORA_ERR_CLOSED):
                return False
            check(status)
            return False  # pragma: no cover - check() raised

    @property
    def connection_id(self) -> Optional[str]:
        """This connection's id assigned by Sora (None until the offer arrived). sora_ffi addition."""
        if self._established_id is not None:  # final once established: no native round trip
            return self._established_id
        return self._info().get("connection_id") or None

    @property
    def connected(self) -> bool:
        """Whether the session is established and not yet ended. sora_ffi addition."""
        info = self._info()
        return bool(info.get("connected")) and not self._finished

    def __enter__(self) -> "SoraConnection":
        return self

    def __exit__(self, *exc: Any) -> None:
        """Disconnects (waiting as `disconnect()` does)."""
        self.disconnect()

    def __repr__(self) -> str:
        state = "ended" if self._finished else ("connected" if self._connected.is_set() else "new")
        return f"<SoraConnection {self._source} {state}>"

    # -- internals ----------------------------------------------------------------------

    def _release(self) -> None:
        """Frees the native handle now; later calls fail cleanly (NULL handle)."""
        self._ptr = ffi.NULL
        self._finalizer()

    def _info(self) -> dict[str, Any]:
        out = ffi.new("char **")
        check(lib.sora_connection_info(self._ptr, out))
        info = json.loads(take_string(out[0]) or "{}")
        return info if isinstance(info, dict) else {}

    def _set_track_enabled(self, native_id: int, enabled: bool) -> bool:
        status = lib.sora_connection_set_track_enabled(self._ptr, native_id, 1 if enabled else 0)
        if status == SORA_ERR_NOT_FOUND:
            return False
        check(status)
        return True

    def _add_observer(self, observer: Observer) -> None:
        """Internal listeners (the asyncio layer): called as observer(kind, args) on the
        dispatcher thread before the user's callback."""
        self._observers.append(observer)

    def _remove_observer(self, observer: Observer) -> None:
        try:
            self._observers.remove(observer)
        except ValueError:
            pass

    def _emit(self, kind: str, callback: Optional[Callable[..., Any]], *args: Any) -> None:
        for observer in list(self._observers):
            _call(observer, kind, args)
        if callback is not None:
            _call(callback, *args)

    def _handle_event(self, ev: Event) -> None:
        handler = _HANDLERS.get(ev.type)
        if handler is not None:
            handler(self, ev)

    def _on_track(self, ev: Event) -> None:
        try:
            info = json.loads(ev.text2 or "{}")
        except ValueError:
            info = {}
        track = SoraMediaTrack(self, int(ev.a), ev.text or str(info.get("kind", "")),
                               str(info.get("id", "")), str(info.get("stream_id", "")))
        self._tracks[int(ev.a)] = track
        self._emit("track", self.on_track, track)

    def _on_track_ended(self, ev: Event) -> None:
        track = self._tracks.pop(int(ev.a), None)
        if track is not None:
            track._end()
            self._emit("track_ended", None, track)  # observers only: no official callback

    def _on_connected(self, ev: Event) -> None:
        self._established_id = ev.text or None
        self._connected.set()
        self._emit("connected", None, ev.text or "")

    def _on_disconnect(self, ev: Event) -> None:
        code = enum_or_int(SoraSignalingErrorCode, ev.a)
        message = ev.text or ""
        self._finished = True
        for track in self._tracks.values():
            track._end()
        self._tracks.clear()
        # The last event of a session: nothing more will come for this source.
        self._dispatcher.unregister(self._source)
        try:
            self._emit("disconnect", self.on_disconnect, code, message)
        finally:
            self._ended.set()


def _disconnect_bound(config_json: str) -> float:
    """The longest a session can take to end after disconnect(): waiting for the server
    (disconnect_wait_timeout), closing the WebSocket (websocket_close_timeout), and a
    margin for the callbacks. Defaults as in the shim (signaling::config)."""
    cfg = json.loads(config_json)
    return float(cfg.get("disconnect_wait_timeout") or 5.0) + float(
        cfg.get("websocket_close_timeout") or 3.0) + 2.0


def _call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except BaseException:  # a callback must never break the dispatcher
        logger.exception("sora_ffi: exception in callback %r", fn)


def _simple(kind: str, attr: str, convert: Callable[[Event], tuple]) -> Callable[[SoraConnection, Event], None]:
    def handle(conn: SoraConnection, ev: Event) -> None:
        conn._emit(kind, getattr(conn, attr), *convert(ev))
    return handle


_HANDLERS: dict[int, Callable[[SoraConnection, Event], None]] = {
    EventType.SET_OFFER: _simple("set_offer", "on_set_offer", lambda e: (e.text or "",)),
    EventType.WS_CLOSE: _simple("ws_close", "on_ws_close", lambda e: (int(e.a), e.text or "")),
    EventType.SIGNALING_MESSAGE: _simple("signaling_message", "on_signaling_message", lambda e: (
        enum_or_int(SoraSignalingType, e.a), enum_or_int(SoraSignalingDirection, e.b), e.text or "")),
    EventType.NOTIFY: _simple("notify", "on_notify", lambda e: (e.text or "",)),
    EventType.PUSH: _simple("push", "on_push", lambda e: (e.text or "",)),
    EventType.MESSAGE: _simple("message", "on_message", lambda e: (e.text or "", e.data or b"")),
    EventType.RPC: _simple("rpc", "on_rpc", lambda e: (e.data or b"",)),
    EventType.SWITCHED: _simple("switched", "on_switched", lambda e: (e.text or "",)),
    EventType.DATA_CHANNEL: _simple("data_channel", "on_data_channel", lambda e: (e.text or "",)),
    EventType.TRACK: SoraConnection._on_track,
    EventType.TRACK_ENDED: SoraConnection._on_track_ended,
    EventType.CONNECTED: SoraConnection._on_connected,
    EventType.DISCONNECT: SoraConnection._on_disconnect,
}
