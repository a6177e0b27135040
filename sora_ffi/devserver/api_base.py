"""What every HTTP API target shares: its errors and the parsing of its parameters (the
channel and connection they name)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import strictjson

if TYPE_CHECKING:  # pragma: no cover
    from .server import AsyncDevServer

MAX_BODY = 1 << 20
ROLES = ("sendrecv", "sendonly", "recvonly")


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def body(self) -> dict:
        return {"error_type": self.error_type, "message": self.message}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD-REQUEST", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT-FOUND", message)


# ------------------------------------------------------------------ request parsing
def parse_body(body: bytes) -> dict:
    """The JSON object of a request body (an empty body is ``{}``)."""
    if not body.strip():
        return {}
    try:
        value = strictjson.loads(body)
    except ValueError as e:
        raise bad_request(f"request body is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise bad_request("request body must be a JSON object")
    return value


def require_str(params: dict, key: str) -> str:
    val = params.get(key)
    if val is None:
        raise bad_request(f"missing field {key!r}")
    if not isinstance(val, str) or not val:
        raise bad_request(f"field {key!r} must be a non-empty string")
    return val


def require_present(params: dict, key: str) -> Any:
    if key not in params:
        raise bad_request(f"missing field {key!r}")
    return params[key]


# ------------------------------------------------------------------ target handlers
def find_channel(core: "AsyncDevServer", params: dict):
    channel_id = require_str(params, "channel_id")
    ch = core.channels.get(channel_id)
    if ch is None or not ch.sessions:
        raise not_found(f"channel {channel_id!r} not found")
    return ch


def find_connection(core: "AsyncDevServer", params: dict):
    ch = find_channel(core, params)
    connection_id = require_str(params, "connection_id")
    s = ch.sessions.get(connection_id)
    if s is None:
        raise not_found(f"connection {connection_id!r} not found")
    return s
