"""The forwarding-filter targets of the HTTP API (Sora's ``Sora_20230628.*ForwardingFilter*``
[V names and parameters: sora-devtools' api.json; U: the reply bodies and error cases]).

* ``CreateChannelForwardingFilter`` / ``UpdateChannelForwardingFilter`` /
  ``DeleteChannelForwardingFilter``: the channel's one filter, which every receiver without
  a filter of its own goes by (filters.py). Create fails when the channel has one, Update
  and Delete when it has none.
* ``Create…`` / ``Update…`` / ``DeleteConnectionForwardingFilter``: one connection's
  filter; the same as ``forwarding_filter`` in its connect (Update and Delete also replace
  a connect's ``forwarding_filters``). A connection whose grants deny subscribing keeps
  that: its filter cannot be changed.
* ``ListForwardingFilters``: the channel's filter and the connections' filters; with
  ``blocked: true`` also which tracks are withheld from whom (``destination_connection_id``,
  ``source_connection_id``, ``kind``: the field names Sora's notifies use).

The filter is given at the top level of the request (``action``, ``rules``, ``priority``,
``name``, ``version``, ``metadata``), as in the connect message; a change takes effect at
once: receivers whose tracks change get a re-offer.
"""
from __future__ import annotations

from typing import Optional

from . import filters
from .api_base import bad_request, find_channel, find_connection
from .grants import denies_subscribing

#: request fields that say where the filter goes rather than what it is
_ADDRESS = ("channel_id", "connection_id")


def _filter(params: dict) -> filters.ForwardingFilter:
    value = {k: v for k, v in params.items() if k not in _ADDRESS}
    try:
        return filters.parse_filter(value)
    except ValueError as e:
        raise bad_request(f"invalid forwarding filter: {e}") from None


def _shown(f: Optional[filters.ForwardingFilter]):
    return None if f is None else f.source


# ------------------------------------------------------------------ channel
async def create_channel_forwarding_filter(core, params):
    ch = find_channel(core, params)
    f = _filter(params)
    if ch.forwarding_filter is not None:
        raise bad_request(f"channel {ch.channel_id!r} already has a forwarding filter "
                          "(UpdateChannelForwardingFilter changes it)")
    return _set_channel(ch, f)


async def update_channel_forwarding_filter(core, params):
    ch = find_channel(core, params)
    f = _filter(params)
    if ch.forwarding_filter is None:
        raise bad_request(f"channel {ch.channel_id!r} has no forwarding filter (create one first)")
    return _set_channel(ch, f)


async def delete_channel_forwarding_filter(core, params):
    ch = find_channel(core, params)
    if ch.forwarding_filter is None:
        raise bad_request(f"channel {ch.channel_id!r} has no forwarding filter")
    _set_channel(ch, None)
    return {"channel_id": ch.channel_id}


def _set_channel(ch, f: Optional[filters.ForwardingFilter]) -> dict:
    ch.forwarding_filter = f
    ch.refilter(s for s in ch.sessions.values() if not s.params.forwarding_filters)
    return {"channel_id": ch.channel_id, "forwarding_filter": _shown(f)}


# ------------------------------------------------------------------ connection
def _own_filters(core, params: dict):
    s = find_connection(core, params)
    if denies_subscribing(s.params.forwarding_filters):
        raise bad_request(f"connection {s.connection_id!r} may not subscribe (its grants): "
                          "its forwarding filter cannot be changed")
    return s


async def create_connection_forwarding_filter(core, params):
    s = _own_filters(core, params)
    f = _filter(params)
    if s.params.forwarding_filters:
        raise bad_request(f"connection {s.connection_id!r} already has a forwarding filter "
                          "(UpdateConnectionForwardingFilter changes it)")
    return _set_connection(s, [f])


async def update_connection_forwarding_filter(core, params):
    s = _own_filters(core, params)
    f = _filter(params)
    if not s.params.forwarding_filters:
        raise bad_request(f"connection {s.connection_id!r} has no forwarding filter (create one first)")
    return _set_connection(s, [f])


async def delete_connection_forwarding_filter(core, params):
    s = _own_filters(core, params)
    if not s.params.forwarding_filters:
        raise bad_request(f"connection {s.connection_id!r} has no forwarding filter")
    _set_connection(s, [])
    return {"channel_id": s.channel.channel_id, "connection_id": s.connection_id}


def _set_connection(s, fs: list) -> dict:
    s.params.forwarding_filters = fs
    s.channel.refilter([s])
    out = {"channel_id": s.channel.channel_id, "connection_id": s.connection_id}
    if fs:
        out["forwarding_filter"] = _shown(fs[0])
    return out


# ------------------------------------------------------------------ list
async def list_forwarding_filters(core, params):
    ch = find_channel(core, params)
    blocked = params.get("blocked", False)
    if not isinstance(blocked, bool):
        raise bad_request("blocked must be a boolean")
    out: dict = {
        "channel_id": ch.channel_id,
        "channel_forwarding_filter": _shown(ch.forwarding_filter),
        "connection_forwarding_filters": [
            {"connection_id": s.connection_id, "forwarding_filters": [_shown(f) for f in s.params.forwarding_filters]}
            for s in ch.sessions.values() if s.params.forwarding_filters],
    }
    if blocked:
        out["blocked"] = _withheld(ch)
    return out


def _withheld(ch) -> list:
    """Every (receiver, sender, kind) the filters keep apart among established members."""
    return [{"destination_connection_id": receiver.connection_id, "source_connection_id": sender.connection_id,
             "kind": kind}
            for receiver in ch.established() for sender, kind in ch.withheld_from(receiver)]


TARGETS = {
    "Sora_20230628.ListForwardingFilters": list_forwarding_filters,
    "Sora_20230628.CreateChannelForwardingFilter": create_channel_forwarding_filter,
    "Sora_20230628.UpdateChannelForwardingFilter": update_channel_forwarding_filter,
    "Sora_20230628.DeleteChannelForwardingFilter": delete_channel_forwarding_filter,
    "Sora_20230628.CreateConnectionForwardingFilter": create_connection_forwarding_filter,
    "Sora_20230628.UpdateConnectionForwardingFilter": update_connection_forwarding_filter,
    "Sora_20230628.DeleteConnectionForwardingFilter": delete_connection_forwarding_filter,
}
