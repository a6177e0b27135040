"""The dev server's outgoing HTTP requests (auth and session webhooks): one place, on
aiohttp's client."""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from . import strictjson

#: the most of a reply body that is read
MAX_REPLY_BYTES = 1 << 20


class HttpClientError(Exception):
    """The request failed: no connection, a timeout, a non-200 status, a reply too long."""


async def post_json(url: str, body: Any, *, timeout: float = 5.0) -> bytes:
    """POSTs ``body`` as JSON; returns the body of a 200 reply (at most 1 MiB)."""
    data = strictjson.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "sora_ffi-devserver"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, data=data, headers=headers) as resp:
                if resp.status != 200:
                    raise HttpClientError(f"status {resp.status}")
                payload = b""  # read() hands out what has arrived: until the end or too much
                while len(payload) <= MAX_REPLY_BYTES:
                    chunk = await resp.content.read(MAX_REPLY_BYTES + 1 - len(payload))
                    if not chunk:
                        break
                    payload += chunk
    except asyncio.TimeoutError:
        raise HttpClientError(f"no reply within {timeout} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as e:
        raise HttpClientError(str(e) or type(e).__name__) from None
    if len(payload) > MAX_REPLY_BYTES:
        raise HttpClientError(f"reply longer than {MAX_REPLY_BYTES} bytes")
    return payload
