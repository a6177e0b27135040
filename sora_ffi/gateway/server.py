"""Serving the gateway: :class:`AsyncGateway` on a running asyncio loop, :class:`Gateway`
on its own loop in a thread (for synchronous code and tests). Hypercorn does the HTTP:
h2c (HTTP/2 with prior knowledge, what Sora sends to an ``http://`` gateway) on a plain
socket, h2 (ALPN) with TLS."""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Optional

from .._background import LoopThread
from .app import GatewayApp, GatewayOptions

log = logging.getLogger("sora_ffi.gateway")


class AsyncGateway:
    """``async with AsyncGateway(port=0) as g: g.url`` → ``http://127.0.0.1:PORT``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, options: Optional[GatewayOptions] = None,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 client_ca: Optional[str] = None) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if client_ca and not tls_cert:
            raise ValueError("client_ca needs tls_cert/tls_key")
        self.host, self.port = host, port
        self.app = GatewayApp(options or GatewayOptions())
        self.tls_cert, self.tls_key, self.client_ca = tls_cert, tls_key, client_ca
        self._sock: Optional[socket.socket] = None
        self._stop: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> "AsyncGateway":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self._sock, self.port = sock, sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.fileno()}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("sora_ffi.gateway.http")
        config.keep_alive_timeout = 3600  # a stream is one long request
        config.graceful_timeout = 1.0  # streams never end by themselves: do not wait long
        config.h2_max_inbound_frame_size = 1 << 16
        if self.tls_cert:
            config.certfile, config.keyfile = self.tls_cert, self.tls_key
            if self.client_ca:
                config.ca_certs = self.client_ca
                config.verify_mode = ssl.CERT_REQUIRED
        self._stop = asyncio.Event()
        started = asyncio.Event()

        async def trigger() -> None:
            started.set()
            await self._stop.wait()

        self._task = asyncio.ensure_future(serve(self.app, config, shutdown_trigger=trigger))
        await asyncio.wait([asyncio.ensure_future(started.wait()), self._task],
                           return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._task.result()  # raises why it could not start
        log.info("gateway listening: %s", self.url)
        return self

    async def stop(self) -> None:
        self.app.close()
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._sock is not None:
            self._sock.detach()  # Hypercorn owned the descriptor (fd://) and closed it
            self._sock = None

    async def __aenter__(self) -> "AsyncGateway":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class Gateway:
    """:class:`AsyncGateway` in a background thread; ``with Gateway() as g:``."""

    def __init__(self, *args, **kwargs) -> None:
        self._gateway = AsyncGateway(*args, **kwargs)
        self._thread = LoopThread("sora-gateway")

    @property
    def url(self) -> str:
        return self._gateway.url

    @property
    def app(self) -> GatewayApp:
        return self._gateway.app

    def start(self, timeout: float = 10.0) -> "Gateway":
        try:
            self._thread.start(self._gateway.start, timeout)
        except BaseException:
            self._thread.stop(self._gateway.stop, timeout)  # one that started late, too
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Closes the listener and every connection (as a gateway process that ends)."""
        self._thread.stop(self._gateway.stop, timeout)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
