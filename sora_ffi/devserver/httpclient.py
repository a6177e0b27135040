"""The dev server's outgoing HTTP/1.1 requests (auth and session webhooks): one place.

Blocking (urllib), so callers run :func:`post_json` in a worker thread."""
from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from . import strictjson

#: the most of a reply body that is read
MAX_REPLY_BYTES = 1 << 20


class HttpClientError(Exception):
    """The request failed: no connection, a timeout, or a non-200 status."""


def post_json(url: str, body: Any, *, timeout: float = 5.0) -> bytes:
    """POSTs ``body`` as JSON; returns the body of a 200 reply (at most 1 MiB)."""
    data = strictjson.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "sora_ffi-devserver"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status = resp.status
            payload = resp.read(MAX_REPLY_BYTES)
    except urllib.error.HTTPError as e:
        raise HttpClientError(f"status {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise HttpClientError(str(e)) from None
    if status != 200:
        raise HttpClientError(f"status {status}")
    return payload
