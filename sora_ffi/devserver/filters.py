"""Forwarding filters (sora-protocol.md §2.1): which senders' audio and video a receiving
connection gets.

A filter is ``{action?, rules, priority?, name?, version?, metadata?}``; ``rules`` is a
list of lists of ``{field, operator, values}`` (``field``: the sender's ``connection_id``
or ``client_id``, or the track's ``kind``; ``operator``: ``is_in`` / ``is_not_in``); the
outer list is OR-ed, each inner list AND-ed. A connection has them from ``connect``
(``forwarding_filter``, or the newer list ``forwarding_filters``) or from the auth result.

How several combine, as implemented (Sora documents the parts, not every combination
[U]): filters are tried by ``priority`` (lower first; 32767, Sora's default, when none is
given), then in the order given; the first whose rules match decides: ``block`` (the
default action) withholds the track, ``allow`` forwards it. A track no filter matches is
forwarded, unless one of the filters is an ``allow`` filter: then only what some filter
allows gets through.

A channel may also have one filter of its own, set through the HTTP API
(``CreateChannelForwardingFilter``…, see ``filter_api.py``); it applies to every receiver
of the channel that has no filter of its own [U: that a connection's filters take
precedence over the channel's is how Sora's documentation reads, not verified].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

FIELDS = ("connection_id", "client_id", "kind")
OPERATORS = ("is_in", "is_not_in")
ACTIONS = ("block", "allow")
DEFAULT_PRIORITY = 32767
MAX_FILTERS = 10
MAX_RULES = 10  # per filter, and per inner list
MAX_VALUES = 100
FILTER_KEYS = ("action", "rules", "priority", "name", "version", "metadata")
RULE_KEYS = ("field", "operator", "values")


@dataclass(frozen=True)
class Rule:
    field: str
    operator: str
    values: frozenset

    def matches(self, subject: dict) -> bool:
        inside = subject.get(self.field) in self.values
        return inside if self.operator == "is_in" else not inside


@dataclass(frozen=True)
class ForwardingFilter:
    action: str
    rules: tuple  # of tuples of Rule
    priority: int = DEFAULT_PRIORITY
    name: Optional[str] = None
    #: the filter as given (with ``version`` and ``metadata``), for the API to show
    source: dict = field(default_factory=dict, compare=False)

    def matches(self, subject: dict) -> bool:
        return any(all(rule.matches(subject) for rule in group) for group in self.rules)


def _rule(value: Any) -> Rule:
    if not isinstance(value, dict):
        raise ValueError("a rule must be an object")
    unknown = sorted(set(value) - set(RULE_KEYS))
    if unknown:
        raise ValueError(f"unknown rule fields {unknown} (known: {', '.join(RULE_KEYS)})")
    field, operator, values = value.get("field"), value.get("operator"), value.get("values")
    if field not in FIELDS:
        raise ValueError(f"rule field must be one of {', '.join(FIELDS)}")
    if operator not in OPERATORS:
        raise ValueError(f"rule operator must be one of {', '.join(OPERATORS)}")
    if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        raise ValueError("rule values must be an array of strings")
    if len(values) > MAX_VALUES:
        raise ValueError(f"a rule has at most {MAX_VALUES} values")
    if field == "kind" and not set(values) <= {"audio", "video"}:
        raise ValueError("kind values are audio and video")
    return Rule(field, operator, frozenset(values))


def parse_filter(value: Any) -> ForwardingFilter:
    """One filter object; ValueError says what is wrong."""
    if not isinstance(value, dict):
        raise ValueError("a forwarding filter must be an object")
    unknown = sorted(set(value) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(f"unknown forwarding filter fields {unknown} (known: {', '.join(FILTER_KEYS)})")
    action = value.get("action", "block")
    if action not in ACTIONS:
        raise ValueError("action must be block or allow")
    rules = value.get("rules")
    if not isinstance(rules, list) or not rules or len(rules) > MAX_RULES:
        raise ValueError(f"rules must be a non-empty array of at most {MAX_RULES} arrays")
    groups = []
    for group in rules:
        if not isinstance(group, list) or not group or len(group) > MAX_RULES:
            raise ValueError(f"each entry of rules must be a non-empty array of at most {MAX_RULES} rules")
        groups.append(tuple(_rule(r) for r in group))
    priority = value.get("priority", DEFAULT_PRIORITY)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= DEFAULT_PRIORITY:
        raise ValueError(f"priority must be an integer from 0 to {DEFAULT_PRIORITY}")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError("name must be a string")
    version = value.get("version")
    if version is not None and not isinstance(version, str):
        raise ValueError("version must be a string")
    return ForwardingFilter(action, tuple(groups), priority, name, dict(value))


def parse_filters(single: Any, multiple: Any) -> list:
    """The filters of ``forwarding_filter`` / ``forwarding_filters`` (at most one of them),
    in the order they are tried."""
    if single is not None and multiple is not None:
        raise ValueError("forwarding_filter and forwarding_filters cannot be used together")
    if single is not None:
        filters = [parse_filter(single)]
    elif multiple is not None:
        if not isinstance(multiple, list) or len(multiple) > MAX_FILTERS:
            raise ValueError(f"forwarding_filters must be an array of at most {MAX_FILTERS} filters")
        filters = [parse_filter(f) for f in multiple]
    else:
        return []
    return sorted(filters, key=lambda f: f.priority)  # stable: ties keep their order


def effective(own: list, channel: Optional[ForwardingFilter]) -> list:
    """The filters a receiver goes by: its own, else the channel's."""
    if own:
        return own
    return [channel] if channel is not None else []


def forwards(filters: list, connection_id: str, client_id: str, kind: str) -> bool:
    """Whether a receiver with ``filters`` gets the ``kind`` track of that sender."""
    subject = {"connection_id": connection_id, "client_id": client_id, "kind": kind}
    for f in filters:
        if f.matches(subject):
            return f.action == "allow"
    return not any(f.action == "allow" for f in filters)
