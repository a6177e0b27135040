"""Participant grants (``sora_ffi.rtc.AccessToken``'s ``grants`` claim, or ``grants`` in an
auth webhook's reply): what a connection may do, enforced on its connect message.

Sora itself has no grants; the dev server maps them onto what Sora has:

* ``room_join`` false: the connection is refused.
* ``can_publish`` false: a ``sendrecv``/``sendonly`` connect is refused (join recvonly).
* ``can_subscribe`` false: a forwarding filter that blocks every track replaces the
  connect's filters (the connection still sends, and receives messages).
* ``can_publish_data`` false: messaging labels become receive-only (``sendrecv`` →
  ``recvonly``; ``sendonly`` labels are dropped), so the server relays nothing it sends.
"""
from __future__ import annotations

from typing import Any

KNOWN = ("room_join", "can_publish", "can_subscribe", "can_publish_data")

#: a filter that withholds every track
BLOCK_ALL = {"name": "grants: can_subscribe=false", "priority": 0, "action": "block",
             "rules": [[{"field": "kind", "operator": "is_in", "values": ["audio", "video"]}]]}


def denies_subscribing(forwarding_filters: list) -> bool:
    """Whether parsed filters include the one ``can_subscribe`` false put there."""
    return any(f.name == BLOCK_ALL["name"] for f in forwarding_filters)


class GrantError(Exception):
    """The connect asks for what the grants refuse (or the grants are malformed)."""


def apply_grants(connect: dict, grants: Any) -> None:
    """Applies ``grants`` to the connect message ``connect`` (in place)."""
    if not isinstance(grants, dict):
        raise GrantError("grants must be an object")
    unknown = sorted(set(grants) - set(KNOWN))
    if unknown:
        raise GrantError(f"unknown grants {unknown} (known: {list(KNOWN)})")
    for key, value in grants.items():
        if not isinstance(value, bool):
            raise GrantError(f"grant {key} must be a boolean")
    if grants.get("room_join") is False:
        raise GrantError("the token does not grant room_join")
    if grants.get("can_publish") is False and connect.get("role") in ("sendrecv", "sendonly"):
        raise GrantError("the token does not grant can_publish: connect as recvonly")
    if grants.get("can_subscribe") is False:
        connect.pop("forwarding_filter", None)
        connect["forwarding_filters"] = [dict(BLOCK_ALL)]
    if grants.get("can_publish_data") is False and isinstance(connect.get("data_channels"), list):
        kept = []
        for entry in connect["data_channels"]:
            if isinstance(entry, dict) and str(entry.get("label", "")).startswith("#"):
                if entry.get("direction") == "sendonly":
                    continue
                entry = {**entry, "direction": "recvonly"}
            kept.append(entry)
        connect["data_channels"] = kept
