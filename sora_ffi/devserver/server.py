"""The dev server: :class:`AsyncDevServer` (asyncio) and :class:`DevServer` (thread).

``DevServer`` runs an ``AsyncDevServer`` on its own event loop in a background thread, for
synchronous code and tests::

    with DevServer() as server:
        print(server.signaling_url, server.api_url)

``AsyncDevServer`` is the same thing for asyncio code::

    async with AsyncDevServer() as server:
        ...

Stopping ends every session (WebSocket close 1001 ``SERVER-SHUTDOWN``, or DC ``close`` on
DataChannel-only sessions), destroys every peer, then the event queue.
"""
from __future__ import annotations

import asyncio
import http
import logging
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Optional

from websockets.asyncio.server import serve

from .._background import LoopThread
from . import api, session_webhook
from .audio_streaming import GatewayConfig
from .channel import Channels
from .session import CLOSE_GOING_AWAY, Session

log = logging.getLogger("sora_ffi.devserver")

SIGNALING_PATH = "/signaling"
VERSION = "2025.2.0-sora_ffi-devserver"


@dataclass
class DevServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    api_port: int = 0
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    client_ca: Optional[str] = None
    redirect_to: Optional[str] = None
    jwt_secret: Optional[str] = None
    auth_webhook: Optional[str] = None
    data_channel_signaling: bool = False
    ignore_disconnect_websocket: bool = False
    ping_interval: Optional[float] = 5.0
    #: transport-wide congestion control toward senders (their arrivals reported back, as
    #: Sora does); False: senders follow the server's REMB only (tests of forwarding that
    #: a bandwidth estimate must not disturb; see docs/devserver.md)
    transport_cc: bool = True
    bind_address: str = "127.0.0.1"
    port_range: Optional[tuple] = None
    connect_timeout: float = 10.0
    establish_timeout: float = 30.0
    disconnected_timeout: float = 10.0
    api: bool = True
    #: session webhooks (session.created / session.destroyed) go here
    session_webhook: Optional[str] = None
    #: audio streaming (docs/audio-streaming.md): the gateway's http:// (h2c) or https://
    #: (h2) URL; None: off
    audio_streaming_url: Optional[str] = None
    #: each Opus payload after 20 bytes (Unix µs, sequence number, length)
    audio_streaming_header: bool = False
    #: PEM files: our client certificate and key for the gateway, and the CA it is checked
    #: against (default: the system's)
    audio_streaming_tls_cert: Optional[str] = None
    audio_streaming_tls_key: Optional[str] = None
    audio_streaming_ca: Optional[str] = None
    #: seconds between HTTP/2 PINGs to the gateway; one not answered within twice that
    #: makes the request start over (a hung gateway)
    audio_streaming_keepalive: float = 5.0
    #: whether a connection starts subscribed to audio streaming result pushes
    default_audio_streaming_result_push: bool = True
    #: send audio-streaming.started / .stopped to the session webhook
    audio_streaming_webhooks: bool = False

    def __post_init__(self):
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.client_ca and not self.tls_cert:
            raise ValueError("client_ca needs tls_cert/tls_key")
        if self.ping_interval is not None and self.ping_interval <= 0:
            self.ping_interval = None
        if self.redirect_to is not None and not self.redirect_to.startswith(("ws://", "wss://")):
            raise ValueError("redirect_to must be a ws:// or wss:// URL")
        for name in ("auth_webhook", "session_webhook"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http:// or https:// URL")
        self._check_audio_streaming()

    def _check_audio_streaming(self) -> None:
        url = self.audio_streaming_url
        files = (self.audio_streaming_tls_cert, self.audio_streaming_tls_key, self.audio_streaming_ca)
        if url is None:
            if any(files) or self.audio_streaming_header:
                raise ValueError("the audio_streaming_* options need audio_streaming_url")
            return
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("audio_streaming_url must be an http:// (h2c) or https:// (h2) URL")
        if ":" in parsed.hostname:
            raise ValueError("audio_streaming_url: IPv6 gateways are not supported (nor by Sora)")
        if any(files) and parsed.scheme != "https":
            raise ValueError("audio streaming TLS files need an https:// audio_streaming_url")
        if (self.audio_streaming_tls_cert is None) != (self.audio_streaming_tls_key is None):
            raise ValueError("audio_streaming_tls_cert and audio_streaming_tls_key go together")
        for path in files:
            if path is None:
                continue
            try:  # read here: a bad file is the configuration's error, not a stream's
                with open(path, encoding="utf-8") as f:
                    pem = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"cannot read {path} as a PEM file: {e}") from None
            if "-----BEGIN" not in pem:
                raise ValueError(f"{path} is not a PEM file")
        if not 0.1 <= self.audio_streaming_keepalive <= 600:
            raise ValueError("audio_streaming_keepalive must be 0.1..600 seconds")
        if self.audio_streaming_webhooks and not self.session_webhook:
            raise ValueError("audio_streaming_webhooks needs session_webhook")

    def audio_streaming_gateway(self) -> "Optional[GatewayConfig]":
        if self.audio_streaming_url is None:
            return None
        return GatewayConfig(self.audio_streaming_url, self.audio_streaming_header,
                             self.audio_streaming_tls_cert, self.audio_streaming_tls_key,
                             self.audio_streaming_ca, self.audio_streaming_keepalive)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


class AsyncDevServer:
    """A Sora-compatible server on the running asyncio loop."""

    def __init__(self, config: Optional[DevServerConfig] = None, **kwargs: Any):
        self.config = config or DevServerConfig(**kwargs)
        self.version = VERSION
        self.channels = Channels(self)
        self.sessions: set = set()
        self.peerloop = None
        self._ws_server = None
        self._api_server = None
        self._tasks: set = set()
        #: webhook requests in flight (a stop lets them finish, for 2 s at most)
        self.webhook_tasks: set = set()
        self.port: Optional[int] = None
        self.api_port: Optional[int] = None
        self._started = False
        self._stopped = False
        self.stopping = False

    # ------------------------------------------------------------------ info
    @property
    def tls(self) -> bool:
        return self.config.tls_cert is not None

    @property
    def signaling_url(self) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{_url_host(self.config.host)}:{self.port}{SIGNALING_PATH}"

    @property
    def api_url(self) -> Optional[str]:
        if self.api_port is None:
            return None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{_url_host(self.config.host)}:{self.api_port}/"

    def info(self) -> dict:
        return {
            "signaling_url": self.signaling_url,
            "api_url": self.api_url,
            "host": self.config.host,
            "port": self.port,
            "api_port": self.api_port,
            "tls": self.tls,
            "version": self.version,
        }

    def channel_counts(self, channel_id: str) -> dict:
        ch = self.channels.get(channel_id)
        if ch is None:
            return {"channel_connections": 0, "channel_sendrecv_connections": 0,
                    "channel_sendonly_connections": 0, "channel_recvonly_connections": 0}
        c = ch.counts()
        return {k: v for k, v in c.items() if not k.endswith(("upstream_connections",
                                                                "downstream_connections"))}

    # ---------------------------------------------------- Sora sessions (channels)
    def on_session_created(self, ch) -> None:
        """A channel got its first connection: a Sora session begins."""
        ch.webhooks = session_webhook.Sender(self, ch)
        if self.config.audio_streaming_webhooks:
            ch.audio_streaming.on_webhook = ch.webhooks.send_audio_streaming
        ch.webhooks.send_created()

    def on_session_destroyed(self, ch) -> None:
        """A channel's last connection left: the session ends, streaming with it."""
        ch.audio_streaming.disable(ending=True)
        ch.webhooks.send_destroyed()

    def end_sessions(self, sessions, code: int, reason: str) -> None:
        """Ends several sessions together (no re-offers among them while they go)."""
        sessions = list(sessions)
        for s in sessions:
            s.leaving = True
        for s in sessions:
            self.spawn(s.end(code, reason))

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ TLS
    def _ssl_context(self, *, client_auth: bool) -> Optional[ssl.SSLContext]:
        cfg = self.config
        if not cfg.tls_cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        if client_auth and cfg.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=cfg.client_ca)
        return ctx

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> "AsyncDevServer":
        if self._started:
            return self
        self._started = True
        from .peerloop import PeerLoop

        cfg = self.config
        self.peerloop = PeerLoop(asyncio.get_running_loop())
        try:
            self._ws_server = await serve(
                self._handle_ws, cfg.host, cfg.port,
                ssl=self._ssl_context(client_auth=True),
                process_request=self._process_request,
                ping_interval=None,
                close_timeout=3,
                max_size=4 << 20,
                server_header="sora_ffi-devserver",
            )
            self.port = self._ws_server.sockets[0].getsockname()[1]
            if cfg.api:
                self._api_server, self.api_port = await api.start_server(
                    self, cfg.host, cfg.api_port, self._ssl_context(client_auth=False))
        except BaseException:
            await self.stop()
            raise
        log.info("dev server listening: %s (API %s)", self.signaling_url, self.api_url)
        return self

    @staticmethod
    def _process_request(connection, request):
        path = request.path.split("?", 1)[0]
        if path != SIGNALING_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def _handle_ws(self, ws) -> None:
        if self._stopped:
            await ws.close(CLOSE_GOING_AWAY, "SERVER-SHUTDOWN")
            return
        await Session(self, ws).run()

    async def stop(self) -> None:
        """Ends every session, closes the listeners, destroys the native handles."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping = True  # no more re-offers: everyone is leaving
        if self._api_server is not None:
            await self._api_server.cleanup()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=False)
        sessions = list(self.sessions)
        if sessions:
            await asyncio.gather(
                *(s.end(CLOSE_GOING_AWAY, "SERVER-SHUTDOWN") for s in sessions),
                return_exceptions=True)
            # sessions whose end() was already running elsewhere
            await asyncio.wait([asyncio.ensure_future(s.closed.wait()) for s in sessions],
                               timeout=10)
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._ws_server.wait_closed(), 5)
            except asyncio.TimeoutError:
                log.warning("WebSocket server did not close in time")
        if self.webhook_tasks:  # session.destroyed and the like, still going out
            await asyncio.wait(list(self.webhook_tasks), timeout=2)
        for t in list(self._tasks):
            t.cancel()
        if self.peerloop is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.peerloop.close)
        log.info("dev server stopped")

    async def __aenter__(self) -> "AsyncDevServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---------------------------------------------------------- conveniences
    def connections(self, channel_id: Optional[str] = None) -> list:
        if channel_id is None:
            return [s.api_info() for s in self.channels.all_sessions()]
        ch = self.channels.get(channel_id)
        return [s.api_info() for s in ch.sessions.values()] if ch else []


class DevServer:
    """:class:`AsyncDevServer` on a private event loop in a background thread.

    Keyword arguments are :class:`DevServerConfig` fields. ``with DevServer() as s:``
    starts it and always stops everything on exit.
    """

    def __init__(self, config: Optional[DevServerConfig] = None, **kwargs: Any):
        self.config = config or DevServerConfig(**kwargs)
        self._server = AsyncDevServer(self.config)
        self._thread = LoopThread("sora-devserver")
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def signaling_url(self) -> str:
        return self._server.signaling_url

    @property
    def api_url(self) -> Optional[str]:
        return self._server.api_url

    @property
    def port(self) -> Optional[int]:
        return self._server.port

    @property
    def api_port(self) -> Optional[int]:
        return self._server.api_port

    def info(self) -> dict:
        return self._server.info()

    def start(self, timeout: float = 30.0) -> "DevServer":
        with self._lock:
            if self._thread.started:
                return self
            try:
                self._thread.start(self._server.start, timeout)
            except BaseException:
                self._stopped = True
                self._thread.stop(self._server.stop, timeout)  # one that started late, too
                raise
        return self

    def call(self, fn, *args, timeout: float = 10.0):
        """Runs ``fn(async_server, *args)`` on the server loop (a coroutine function or not)."""
        async def runner():
            res = fn(self._server, *args)
            if asyncio.iscoroutine(res):
                res = await res
            return res

        return self._thread.call(runner(), timeout)

    def connections(self, channel_id: Optional[str] = None) -> list:
        return self.call(lambda s: s.connections(channel_id))

    def api(self, target: str, body: Any = None, *, timeout: float = 10.0,
            ssl_context: Optional[ssl.SSLContext] = None) -> tuple:
        """POSTs to the HTTP API: ``(status, json_value)``."""
        if self.api_url is None:
            raise RuntimeError("the HTTP API is disabled")
        return api.api_request(self.api_url, target, body, timeout=timeout,
                               ssl_context=ssl_context)

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self._thread.stop(self._server.stop, timeout)
        except Exception:
            log.exception("dev server stop failed")

    def __enter__(self) -> "DevServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # pragma: no cover - best effort
        try:
            if not self._stopped and self._thread.started:
                self.stop()
        except Exception:
            pass
