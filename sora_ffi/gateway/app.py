"""The gateway as an ASGI application (served by Hypercorn, server.py).

``POST /speech``, ``/test``, ``/dump`` take one stream each, over HTTP/2 only (as Suzu):
the body is the Opus Sora sends, the response (200, ``application/json``) is one JSON
object per line, written as results come. A stream that cannot go on (bad framing, an
unsupported language) gets ``{"type": "error", "reason": ...}`` and the response ends.
``GET /.ok`` answers 200 (a health check).
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Optional

from .framing import FramingError, reader
from .recognizers import RecognizerFactory, UnsupportedLanguage
from .services import DumpService, Service, SpeechService, StreamInfo, TestService

log = logging.getLogger("sora_ffi.gateway")

#: no packet for this long: the service is told (the recognizer gets silence)
IDLE = 0.25
JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass
class GatewayOptions:
    #: the body carries Sora's 20-byte packet headers (``audio_streaming_header``)
    framed: bool = False
    recognizer: Optional[RecognizerFactory] = None
    dump_file: Optional[str] = None


def _line(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


class GatewayApp:
    def __init__(self, options: GatewayOptions) -> None:
        self.options = options
        #: streams served so far and now (for tests and logs)
        self.streams_started = 0
        self.streams_open = 0
        #: streams whose body ended cleanly (Sora stopped them), not by a broken connection
        self.streams_finished = 0
        self.closing = False

    def close(self) -> None:
        """Ends every stream (their responses end) within IDLE: the server is stopping."""
        self.closing = True

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/.ok":
            return await _respond(send, 200 if method in ("GET", "HEAD") else 405, b"")
        if path not in ("/speech", "/test", "/dump"):
            return await _respond(send, 404, b"not found\n")
        if method != "POST":
            return await _respond(send, 405, b"use POST\n")
        if scope.get("http_version") != "2":
            return await _respond(send, 400, b"HTTP/2 only\n")
        headers = {k.decode("latin-1").lower(): v.decode("utf-8", "replace")
                   for k, v in scope["headers"]}
        info = StreamInfo(headers.get("sora-channel-id", ""), headers.get("sora-connection-id", ""),
                          headers.get("sora-session-id", ""),
                          headers.get("sora-audio-streaming-language-code", ""))
        await self._stream(path, info, receive, send)

    async def _open(self, path: str, info: StreamInfo) -> Service:
        if path == "/test":
            return TestService()
        if path == "/dump":
            return DumpService(info, self.options.dump_file)
        from .recognizers import load_factory
        return await SpeechService.open(self.options.recognizer or load_factory(None), info)

    async def _stream(self, path: str, info: StreamInfo, receive, send) -> None:
        self.streams_started += 1
        self.streams_open += 1
        log.info("stream %s (%s, %s) on %s", info.connection_id, info.channel_id,
                 info.language_code, path)
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})

        async def write(results: list) -> None:
            for r in results:
                await send({"type": "http.response.body", "body": _line(r), "more_body": True})

        try:
            try:
                service = await self._open(path, info)
            except UnsupportedLanguage as e:
                await write([{"type": "error", "reason": str(e)}])
                return
            body = reader(self.options.framed)
            while not self.closing:
                try:
                    msg = await asyncio.wait_for(receive(), IDLE)
                except asyncio.TimeoutError:
                    await write(await service.on_idle())
                    continue
                if msg["type"] == "http.disconnect":
                    return
                for packet in body.feed(msg.get("body", b"")):
                    await write(await service.on_packet(packet))
                if not msg.get("more_body", False):
                    self.streams_finished += 1
                    body.finish()
                    await write(await service.finish())
                    return
        except FramingError as e:
            log.warning("stream %s: %s", info.connection_id, e)
            await write([{"type": "error", "reason": str(e)}])
        finally:
            self.streams_open -= 1
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # the client has gone
                pass


async def _respond(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
