"""Authentication for the dev server (sora-protocol.md §9.8).

Two optional mechanisms, both ending in the same *overrides* (what Sora's auth webhook may
return in its accept response):

* ``--jwt-secret``: ``connect.metadata.access_token`` must be an HS256 JWT signed with the
  secret, with a ``channel_id`` claim equal to the connect's channel and an ``exp`` in the
  future. Every other (private) claim is an override, as in Shiguredo's own E2E suites.
* ``--auth-webhook URL``: the Sora-shaped auth request is POSTed as JSON; the reply must be
  ``200`` with ``{"allowed": true, ...overrides}`` or ``{"allowed": false, "reason": ...}``.

Either may also give ``grants`` (what ``sora_ffi.rtc.AccessToken`` writes; see grants.py).

A rejection is an :class:`AuthError`; the session closes the WebSocket with 4401 + reason.
"""
from __future__ import annotations

import copy
import datetime
import time
import uuid
import warnings
from typing import Any, Optional

from . import strictjson
from .grants import GrantError, apply_grants
from .httpclient import HttpClientError, post_json

#: JWT claims that are not overrides.
REGISTERED_CLAIMS = {"channel_id", "exp", "nbf", "iat", "iss", "aud", "sub", "jti"}

#: Overrides copied into the connect message as they are.
PLAIN_OVERRIDES = (
    "client_id",
    "bundle_id",
    "data_channel_signaling",
    "ignore_disconnect_websocket",
    "data_channels",
    "signaling_notify_metadata",
    "simulcast",
    "simulcast_rid",
    "simulcast_request_rid",
    "simulcast_encodings",
    "simulcast_rpc_rids",
    "spotlight",
    "spotlight_number",
    "spotlight_focus_rid",
    "spotlight_unfocus_rid",
    "rpc_methods",
    "audio_streaming_language_code",
    "forwarding_filter",
    "forwarding_filters",
)

#: Overrides that land inside the connect's ``audio`` / ``video`` objects.
MEDIA_OVERRIDES = {
    "audio_codec_type": ("audio", "codec_type"),
    "audio_bit_rate": ("audio", "bit_rate"),
    "audio_opus_params": ("audio", "opus_params"),
    "video_codec_type": ("video", "codec_type"),
    "video_bit_rate": ("video", "bit_rate"),
    "video_vp9_params": ("video", "vp9_params"),
    "video_av1_params": ("video", "av1_params"),
    "video_h264_params": ("video", "h264_params"),
    "video_h265_params": ("video", "h265_params"),
}


class AuthError(Exception):
    """Connection refused; ``reason`` goes into the WebSocket close frame (code 4401)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def verify_jwt(token: object, secret: str, channel_id: str, *, now: Optional[float] = None) -> dict:
    """Checks an HS256 access token and returns its claims. Raises :class:`AuthError`."""
    if not isinstance(token, str) or not token:
        raise AuthError("AUTH-ERROR: metadata.access_token is missing")
    try:
        import jwt  # PyJWT; imported here so the dev server runs without it when unused
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise AuthError("AUTH-ERROR: PyJWT is not installed on the dev server") from e
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short dev secrets are fine here
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": ["exp", "channel_id"], "verify_aud": False},
                leeway=0,
            )
    except jwt.ExpiredSignatureError:
        raise AuthError("AUTH-ERROR: access_token expired") from None
    except jwt.MissingRequiredClaimError as e:
        raise AuthError(f"AUTH-ERROR: access_token lacks the {e.claim} claim") from None
    except jwt.InvalidTokenError as e:
        raise AuthError(f"AUTH-ERROR: invalid access_token ({e})") from None
    if not isinstance(claims, dict):
        raise AuthError("AUTH-ERROR: invalid access_token payload")
    try:
        strictjson.validate(claims)  # claims are copied into offers and notifies
    except ValueError as e:
        raise AuthError(f"AUTH-ERROR: invalid access_token payload ({e})") from None
    if now is not None and claims.get("exp", 0) <= now:
        raise AuthError("AUTH-ERROR: access_token expired")
    if claims.get("channel_id") != channel_id:
        raise AuthError("AUTH-ERROR: access_token channel_id mismatch")
    return claims


def jwt_overrides(claims: dict) -> dict:
    """The private claims of a verified token (the overrides)."""
    return {k: v for k, v in claims.items() if k not in REGISTERED_CLAIMS}


def apply_overrides(connect: dict, overrides: dict) -> tuple:
    """Returns ``(new_connect, extras)``.

    ``new_connect`` is a copy of the connect message with the overrides applied;
    ``extras`` holds what is not a connect field: ``auth_metadata`` (→ ``offer.metadata``),
    ``connection_lifetime`` (seconds), ``signaling_notify`` (bool), ``event_metadata``.
    Raises :class:`AuthError` when ``grants`` refuse the connect.
    """
    out = copy.deepcopy(connect)
    extras: dict[str, Any] = {}
    if "forwarding_filter" in overrides or "forwarding_filters" in overrides:
        # the auth result's filters replace the connect's, whichever form either uses
        out.pop("forwarding_filter", None)
        out.pop("forwarding_filters", None)
    for key in PLAIN_OVERRIDES:
        if key in overrides:
            out[key] = copy.deepcopy(overrides[key])
    for kind in ("audio", "video"):
        if kind in overrides:
            val = overrides[kind]
            if val is False or val is None:
                out[kind] = False
            elif val is True:
                if not isinstance(out.get(kind), dict):
                    out[kind] = True
            elif isinstance(val, dict):
                base = out.get(kind) if isinstance(out.get(kind), dict) else {}
                out[kind] = {**base, **copy.deepcopy(val)}
    for key, (kind, field) in MEDIA_OVERRIDES.items():
        if key in overrides and out.get(kind, True) is not False:
            obj = out.get(kind)
            obj = dict(obj) if isinstance(obj, dict) else {}
            obj[field] = copy.deepcopy(overrides[key])
            out[kind] = obj
    if "grants" in overrides:
        try:
            apply_grants(out, overrides["grants"])
        except GrantError as e:
            raise AuthError(f"AUTH-ERROR: {e}") from None
    if "metadata" in overrides:
        extras["auth_metadata"] = copy.deepcopy(overrides["metadata"])
    if "connection_lifetime" in overrides:
        lt = overrides["connection_lifetime"]
        if isinstance(lt, (int, float)) and not isinstance(lt, bool) and lt > 0:
            extras["connection_lifetime"] = float(lt)
    if "signaling_notify" in overrides:
        extras["signaling_notify"] = bool(overrides["signaling_notify"])
    if "event_metadata" in overrides:
        extras["event_metadata"] = copy.deepcopy(overrides["event_metadata"])
    return out, extras


def iso_time(t: float) -> str:
    """Unix time `t` as Sora writes timestamps (UTC, milliseconds, "Z")."""
    return (datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def now_iso() -> str:
    return iso_time(time.time())


def webhook_request(connect: dict, *, connection_id: str, session_id: str,
                    counts: dict, version: str) -> dict:
    """The Sora-shaped auth webhook request body for ``connect``."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "timestamp": now_iso(),
        "version": version,
        "label": "sora_ffi devserver",
        "node_name": "devserver@127.0.0.1",
        "role": connect.get("role"),
        "channel_id": connect.get("channel_id"),
        "client_id": connect.get("client_id"),
        "bundle_id": connect.get("bundle_id"),
        "connection_id": connection_id,
        "session_id": session_id,
        "multistream": True,
        "simulcast": bool(connect.get("simulcast") or False),
        "spotlight": bool(connect.get("spotlight") or False),
        "audio": connect.get("audio", True),
        "video": connect.get("video", True),
        "data_channel_signaling": bool(connect.get("data_channel_signaling") or False),
        "ignore_disconnect_websocket": bool(connect.get("ignore_disconnect_websocket") or False),
        "metadata": connect.get("metadata"),
        "e2ee": False,
        "redirect": bool(connect.get("redirect") or False),
    }
    for key in ("data_channels", "signaling_notify_metadata", "simulcast_rid",
                "simulcast_request_rid", "spotlight_number", "audio_streaming_language_code"):
        if connect.get(key) is not None:
            body[key] = connect[key]
    for kind in ("audio", "video"):
        obj = connect.get(kind)
        if isinstance(obj, dict):
            if "codec_type" in obj:
                body[f"{kind}_codec_type"] = obj["codec_type"]
            if "bit_rate" in obj:
                body[f"{kind}_bit_rate"] = obj["bit_rate"]
    if connect.get("sora_client") is not None:
        body["sora_client"] = {
            "raw": connect.get("sora_client"),
            "environment": connect.get("environment"),
            "libwebrtc": connect.get("libwebrtc"),
        }
    body.update(counts)
    return {k: v for k, v in body.items() if v is not None}


async def call_webhook(url: str, body: dict, *, timeout: float = 5.0) -> dict:
    """POSTs ``body``; returns the overrides of an accept response, raises :class:`AuthError`."""
    try:
        payload = await post_json(url, body, timeout=timeout)
    except HttpClientError as e:
        raise AuthError(f"AUTH-WEBHOOK-ERROR: {e}") from None
    try:
        reply = strictjson.loads(payload)
    except ValueError as e:
        raise AuthError(f"AUTH-WEBHOOK-ERROR: response is not standard JSON ({e})") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("allowed"), bool):
        raise AuthError("AUTH-WEBHOOK-ERROR: response lacks a boolean 'allowed'")
    if not reply["allowed"]:
        reason = reply.get("reason")
        raise AuthError(str(reason) if reason else "AUTH-WEBHOOK-REJECTED")
    return {k: v for k, v in reply.items() if k not in ("allowed", "reason")}
