"""Messages at a connection switch (make before break).

While the new connection and the one it replaces are both up, the server sends every
message to both, and Sora numbers none of them. The old connection delivers what it had
queued when it was replaced; the new one's first messages are lined up, by content, with
the tail of what the room delivered (those queued ones included), and what both carried is
dropped once. Counting queued messages alone (what this replaced) got the boundary wrong
whenever a message had reached one connection and was still on its way to the other.
"""
from __future__ import annotations

import collections
from typing import Iterable

#: messages per label kept to line a new connection up with: more than can be in flight
#: between the two connections' queues during one switch
DEPTH = 256


def _key(data: bytes) -> int:
    """What a message is kept and compared as: its 64-bit hash (256 messages of up to
    64 KiB each would otherwise be 16 MiB per label; a collision inside one switch's
    overlap is ~2^-64)."""
    return hash(data)


class Delivered:
    """The last messages the room delivered, per label."""

    def __init__(self, depth: int = DEPTH) -> None:
        self._depth = depth
        self._tails: dict[str, collections.deque[int]] = {}

    def add(self, label: str, data: bytes) -> None:
        tail = self._tails.get(label)
        if tail is None:
            tail = self._tails[label] = collections.deque(maxlen=self._depth)
        tail.append(_key(data))

    def overlap(self, still_delivered: Iterable[tuple[str, bytes]],
                queued_new: Iterable[tuple[str, bytes]]) -> "Overlap":
        """The switch to a new connection: `still_delivered` are the messages the old one
        has queued (it delivers them), `queued_new` those the new one has."""
        tails = {label: list(tail) for label, tail in self._tails.items()}
        for label, data in still_delivered:
            tails.setdefault(label, []).append(_key(data))
        queued: collections.Counter[str] = collections.Counter(label for label, _ in queued_new)
        return Overlap(tails, queued)


class Overlap:
    """Which of a new connection's messages the room already has (or will have from the
    connection it replaces). Fed every message of the new connection, in order."""

    def __init__(self, tails: dict[str, list[int]], queued: collections.Counter[str]) -> None:
        self._tails = tails
        self._queued = queued
        #: per label: what the new connection is still expected to repeat (absent: not
        #: lined up yet; empty: done, everything from here on is new)
        self._expect: dict[str, collections.deque[int]] = {}

    def is_duplicate(self, label: str, data: bytes) -> bool:
        key = _key(data)
        expect = self._expect.get(label)
        if expect is None:
            found, self._expect[label] = self._line_up(label, key)
            return found
        if key in expect:  # the next one expected, or a later one (a lossy label lost some)
            while expect.popleft() != key:
                pass
            return True
        expect.clear()  # it has moved past the overlap (or never had one)
        return False

    def _line_up(self, label: str, first: int) -> tuple[bool, collections.deque[int]]:
        """Whether the new connection's first message on `label` is in the room's tail,
        and what follows it there (what the new connection will repeat next). A payload
        that occurs more than once is placed where the new connection's queue length says."""
        tail = self._tails.get(label, [])
        places = [i for i, key in enumerate(tail) if key == first]
        if not places:
            return False, collections.deque()
        guess = len(tail) - self._queued.get(label, 0)
        at = min(places, key=lambda i: (abs(i - guess), -i))
        return True, collections.deque(tail[at + 1:])
