"""Spotlight (sora-protocol.md §6): which senders of a channel are *focused*, decided by
who speaks.

Receivers that connected with ``spotlight: true`` get each focused sender's video at their
``spotlight_focus_rid`` and every other sender's at ``spotlight_unfocus_rid`` (simulcast
layers, see ``Session.rid_for``); audio is forwarded from every sender [U: Sora's choice
is not documented; forwarding it lets a new speaker be heard before focus moves].

Who speaks is read from the ``ssrc-audio-level`` header extension of the senders' audio,
natively counted (``sora_peer_track_voice_activity``): nothing is decoded. A sender
*starts speaking* once at least half of its packets over the last 0.3 s are voice (level
at or above -45 dBov) and *stops* after 1 s without a voiced packet. When a sender starts
speaking while it is not focused, it takes the place of the focused sender that has been
silent longest, provided that one is not speaking and has held focus for at least 1 s
(so that focus does not flicker between two people talking at once); otherwise it waits
its turn while it keeps speaking. Fixed focus (``FocusSpotlightFixed``) is never taken
away by voice. Before anyone has spoken, the first ``spotlight_number`` senders to join
are focused [U].

``spotlight_number`` is per channel [U]: the first spotlight connection's, else 1 [U],
changed by the API ``ChangeSpotlightNumber``. Notifies to every spotlight connection of the
channel: ``spotlight.focused`` / ``spotlight.unfocused`` about the sender whose focus
changed, and ``spotlight.changed`` for the focus slot it went to (``spotlight_id``: the
slot's number, as a string [U]).

Everything here is pure policy over counters and clocks, testable without the native shim.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Optional

#: -dBov at or above which (level <= this) an audio packet counts as voice
VOICE_LEVEL = 45
#: how often the channel reads its senders' voice counters
POLL_INTERVAL = 0.1
ONSET_WINDOW = 0.3
ONSET_FRACTION = 0.5
RELEASE = 1.0
MIN_FOCUS = 1.0
DEFAULT_NUMBER = 1
MAX_NUMBER = 8
#: the layers spotlight receivers get unless they ask otherwise [U]
DEFAULT_FOCUS_RID = "r2"
DEFAULT_UNFOCUS_RID = "r0"


@dataclass
class Speaker:
    """One sender's voice, from its cumulative (packets, voiced) counters."""

    last: Optional[tuple] = None
    #: (time, packets, voiced) of each reading's increase, over the onset window
    window: deque = field(default_factory=deque)
    speaking: bool = False
    last_voice: float = float("-inf")
    onset: float = float("-inf")

    def feed(self, now: float, packets: int, voiced: int) -> None:
        """Takes a reading: starts or stops ``speaking``."""
        if self.last is not None:
            dp, dv = packets - self.last[0], voiced - self.last[1]
            if dp >= 0 and dv >= 0:  # a meter that went backwards (replaced) starts over
                self.window.append((now, dp, dv))
                if dv:
                    self.last_voice = now
        self.last = (packets, voiced)
        while self.window and self.window[0][0] <= now - ONSET_WINDOW:
            self.window.popleft()
        total = sum(p for _, p, _ in self.window)
        voice = sum(v for _, _, v in self.window)
        if self.speaking:
            if now - self.last_voice >= RELEASE:
                self.speaking = False
        elif total and voice >= ONSET_FRACTION * total:
            self.speaking, self.onset = True, now


class Spotlight:
    """The focus of one channel's senders."""

    def __init__(self, number: int = DEFAULT_NUMBER):
        self.number = number
        self.speakers: dict = {}  # connection_id -> Speaker, in join order
        self.slots: list = []  # the focused connection_id of each slot (None: free)
        self.fixed: set = set()
        self.focused_at: dict = {}

    @property
    def focused(self) -> list:
        return [c for c in self.slots if c is not None]

    # -------------------------------------------------------------- membership
    def add(self, cid: str, now: float) -> list:
        """A sender joined; returns the changes (see :meth:`tick`)."""
        self.speakers.setdefault(cid, Speaker())
        return self._fill(now)

    def remove(self, cid: str, now: float) -> list:
        self.speakers.pop(cid, None)
        self.fixed.discard(cid)
        return self._unfocus(cid) + self._fill(now)

    # ------------------------------------------------------------------ voice
    def tick(self, now: float, readings: dict) -> list:
        """Feeds ``{connection_id: (packets, voiced)}`` and moves focus to new speakers.
        Returns ``[("focused"|"unfocused", connection_id, slot)]`` in the order they
        happened."""
        changes: list = []
        for cid, (packets, voiced) in readings.items():
            sp = self.speakers.get(cid)
            if sp is not None:
                sp.feed(now, packets, voiced)
        focused = set(self.focused)
        waiting = sorted((cid for cid, sp in self.speakers.items() if sp.speaking and cid not in focused),
                         key=lambda c: self.speakers[c].onset)
        for cid in waiting:
            if len(self.focused) < self.number:
                changes += self._focus(cid, now)
                continue
            victim = self._victim(now)
            if victim is None:
                break
            changes += self._replace(victim, cid, now)
        return changes

    def _victim(self, now: float) -> Optional[str]:
        """The focused sender a new speaker replaces: not fixed, not speaking, focused for
        at least MIN_FOCUS, silent longest."""
        options = [c for c in self.focused if c not in self.fixed
                   and not self.speakers[c].speaking and now - self.focused_at.get(c, now) >= MIN_FOCUS]
        return min(options, key=lambda c: self.speakers[c].last_voice, default=None)

    # --------------------------------------------------------------- the API
    def focus(self, cid: str, now: float, fixed: bool = False) -> list:
        """``FocusSpotlight`` / ``FocusSpotlightFixed``: focused now, in the place of the
        focused sender silent longest when every slot is taken (fixed ones stay)."""
        if cid not in self.speakers:
            raise KeyError(cid)
        if fixed:
            self.fixed.add(cid)
        if cid in self.focused:
            return []
        if len(self.focused) >= self.number:
            options = [c for c in self.focused if c not in self.fixed]
            if not options:
                raise ValueError("every focus slot is fixed")
            victim = min(options, key=lambda c: self.speakers[c].last_voice)
            return self._replace(victim, cid, now)
        return self._focus(cid, now)

    def unfocus(self, cid: str, now: float) -> list:
        """``UnfocusSpotlight``: unfocused (and no longer fixed); the slot goes to the
        sender that spoke most recently among the others."""
        if cid not in self.speakers:
            raise KeyError(cid)
        self.fixed.discard(cid)
        if cid not in self.focused:
            return []
        return self._unfocus(cid) + self._fill(now, exclude=(cid,))

    def set_number(self, number: int, now: float) -> list:
        """``ChangeSpotlightNumber``: fewer slots drop the senders silent longest (fixed
        ones last), more slots take the most recent speakers."""
        if not 1 <= number <= MAX_NUMBER:
            raise ValueError(f"spotlight_number must be 1..{MAX_NUMBER}")
        self.number = number
        changes = []
        while len(self.focused) > number:
            changes += self._unfocus(min(self.focused, key=lambda c: (c in self.fixed, self.speakers[c].last_voice)))
        # the slots left are renumbered from 0 (spotlight.changed follows the new numbers)
        self.slots = self.focused
        return changes + self._fill(now)

    # ---------------------------------------------------------------- helpers
    def _slot(self, cid: str) -> int:
        return self.slots.index(cid)

    def _drop(self, cid: str) -> None:
        self.slots[self._slot(cid)] = None
        self.focused_at.pop(cid, None)

    def _unfocus(self, cid: str) -> list:
        """``cid`` out of its slot, if it has one."""
        if cid not in self.slots:
            return []
        change = ("unfocused", cid, self._slot(cid))
        self._drop(cid)
        return [change]

    def _focus(self, cid: str, now: float) -> list:
        """``cid`` into the first free slot."""
        slot = self.slots.index(None) if None in self.slots else len(self.slots)
        if slot == len(self.slots):
            self.slots.append(None)
        self.slots[slot] = cid
        self.focused_at[cid] = now
        return [("focused", cid, slot)]

    def _replace(self, victim: str, cid: str, now: float) -> list:
        slot = self._slot(victim)
        self._drop(victim)
        self.slots[slot] = cid
        self.focused_at[cid] = now
        return [("unfocused", victim, slot), ("focused", cid, slot)]

    def _fill(self, now: float, exclude: Iterable = ()) -> list:
        """Free slots go to the unfocused senders that spoke most recently, then in join
        order."""
        changes: list = []
        rest = [c for c in self.speakers if c not in self.focused and c not in exclude]
        rest.sort(key=lambda c: -self.speakers[c].last_voice)  # stable: join order on ties
        for cid in rest[: max(0, self.number - len(self.focused))]:
            changes += self._focus(cid, now)
        return changes
