"""Access tokens in LiveKit's builder shape, for Sora: an HS256 JWT that the dev server's
`--jwt-secret` checks (`channel_id` and `exp`; every other claim overrides the connect) and
that a user's own auth webhook can verify the same way.

Claims: `channel_id` (the grant's room), `exp`/`nbf`/`iat`, `iss` (the API key, when one is
given), `client_id` (identity), `signaling_notify_metadata` ({name, metadata}, what rtc
rooms read participants' names from) and `grants` (the dev server enforces them; see
sora_ffi/devserver/grants.py).
"""
from __future__ import annotations

import datetime
import time
from dataclasses import asdict, dataclass
from typing import Optional

import jwt

__all__ = ["AccessToken", "VideoGrants", "TokenVerifier"]

DEFAULT_TTL = datetime.timedelta(hours=6)


@dataclass
class VideoGrants:
    """What the holder may do in `room`."""
    room_join: bool = False
    room: str = ""
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True


class AccessToken:
    """`AccessToken(secret)` or, as in LiveKit, `AccessToken(api_key, api_secret)`."""

    def __init__(self, api_key_or_secret: str, api_secret: Optional[str] = None) -> None:
        key, secret = (None, api_key_or_secret) if api_secret is None else (api_key_or_secret, api_secret)
        if not isinstance(secret, str) or not secret:
            raise ValueError("the secret must be a non-empty str")
        if key is not None and not isinstance(key, str):
            raise TypeError("api_key must be a str")
        self._key, self._secret = key, secret
        self._identity: Optional[str] = None
        self._name = ""
        self._metadata = ""
        self._grants = VideoGrants()
        self._ttl = DEFAULT_TTL

    def with_identity(self, identity: str) -> "AccessToken":
        if not isinstance(identity, str) or not identity:
            raise ValueError("identity must be a non-empty str")
        self._identity = identity
        return self

    def with_name(self, name: str) -> "AccessToken":
        if not isinstance(name, str):
            raise TypeError("name must be a str")
        self._name = name
        return self

    def with_metadata(self, metadata: str) -> "AccessToken":
        if not isinstance(metadata, str):
            raise TypeError("metadata must be a str")
        self._metadata = metadata
        return self

    def with_grants(self, grants: VideoGrants) -> "AccessToken":
        if not isinstance(grants, VideoGrants):
            raise TypeError("grants must be VideoGrants")
        self._grants = grants
        return self

    def with_ttl(self, ttl: datetime.timedelta) -> "AccessToken":
        if not isinstance(ttl, datetime.timedelta) or ttl.total_seconds() <= 0:
            raise ValueError("ttl must be a positive timedelta")
        self._ttl = ttl
        return self

    def to_jwt(self) -> str:
        if not self._grants.room:
            raise ValueError("the grants name no room (VideoGrants(room=...)): Sora tokens "
                             "are for one channel")
        now = int(time.time())
        grants = asdict(self._grants)
        claims = {
            "channel_id": grants.pop("room"),
            "iat": now, "nbf": now, "exp": now + int(self._ttl.total_seconds()),
            "signaling_notify_metadata": {"name": self._name, "metadata": self._metadata},
            "grants": grants,
        }
        if self._identity is not None:
            claims["client_id"] = self._identity
        if self._key is not None:
            claims["iss"] = self._key
        return jwt.encode(claims, self._secret, algorithm="HS256")


class TokenVerifier:
    """Checks tokens made by AccessToken (for an auth webhook of your own)."""

    def __init__(self, api_key_or_secret: str, api_secret: Optional[str] = None) -> None:
        self._key: Optional[str] = None if api_secret is None else api_key_or_secret
        self._secret: str = api_key_or_secret if api_secret is None else api_secret

    def verify(self, token: str) -> dict:
        """The claims; raises jwt.InvalidTokenError (expired, bad signature, wrong issuer)."""
        options = {"require": ["exp", "channel_id"]}
        return jwt.decode(token, self._secret, algorithms=["HS256"], options=options,
                          issuer=self._key) if self._key else \
            jwt.decode(token, self._secret, algorithms=["HS256"], options=options)
