"""Channels: who is in a channel, notify fan-out, messaging relay, bundle_id exclusion.

Everything here runs on the server's asyncio thread (no locks needed).

Membership has two levels. A session joins its channel once its ``connect`` is accepted
(so the HTTP API can find and disconnect it); it becomes *established* when its peer
connection is connected and, with DataChannel signaling, ``switched`` was sent. Only
established members count in ``channel_connections``, appear in notifies and in other
members' ``data`` list, and have their media offered to others.
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import TYPE_CHECKING, Iterable, Optional

from . import filters, spotlight, strictjson
from .audio_streaming import SessionStreaming
from .auth import now_iso
from .inflate import inflate
from .peerloop import PeerClosed

if TYPE_CHECKING:  # pragma: no cover
    from .session import DataChannelState, Session

log = logging.getLogger("sora_ffi.devserver")


#: how often receivers' forwarded simulcast layers are compared with the last seen (s)
LAYER_POLL = 0.1


def same_bundle(a: "Session", b: "Session") -> bool:
    return a.bundle_id == b.bundle_id


class Channel:
    """One channel while it has connections: a Sora session (its ``session_id``)."""

    def __init__(self, channel_id: str, session_id: str = "", core=None):
        self.channel_id = channel_id
        self.session_id = session_id
        self.created_time = time.time()
        #: connections the session has had, and the most at once (session webhooks)
        self.total_connections = 0
        self.max_connections = 0
        self.sessions: dict = {}  # connection_id -> Session, in join order
        #: audio streaming state (audio_streaming.py); None for a channel without a server
        self.audio_streaming: Optional[SessionStreaming] = (
            SessionStreaming(self, core) if core is not None else None)
        self.webhooks = None  # session_webhook.Sender, set by the server
        #: who is focused, once a spotlight connection is established (spotlight.py)
        self.spotlight: Optional[spotlight.Spotlight] = None
        self._spotlight_task: Optional[asyncio.Task] = None
        self._layers_task: Optional[asyncio.Task] = None
        #: the channel's own forwarding filter (HTTP API), for receivers without one
        self.forwarding_filter: Optional[filters.ForwardingFilter] = None

    # ----------------------------------------------------------------- membership
    def add(self, s: "Session") -> None:
        self.sessions[s.connection_id] = s
        self.total_connections += 1
        self.max_connections = max(self.max_connections, len(self.sessions))

    def established(self) -> list:
        return [s for s in self.sessions.values() if s.is_established]

    def counts(self, extra: Iterable = ()) -> dict:
        members = {s.connection_id: s for s in self.established()}
        for s in extra:
            members[s.connection_id] = s
        roles = [s.role for s in members.values()]
        sendrecv = roles.count("sendrecv")
        sendonly = roles.count("sendonly")
        recvonly = roles.count("recvonly")
        return {
            "channel_connections": len(roles),
            "channel_sendrecv_connections": sendrecv,
            "channel_sendonly_connections": sendonly,
            "channel_recvonly_connections": recvonly,
            # legacy names (iOS still decodes them)
            "channel_upstream_connections": sendrecv + sendonly,
            "channel_downstream_connections": sendrecv + recvonly,
        }

    def downstream_for(self, receiver: "Session") -> list:
        """[(sender, kind)] whose media ``receiver`` should get, in join order."""
        rules = self.filters_for(receiver)
        return [(s, kind) for s, kind in self._offered_to(receiver)
                if filters.forwards(rules, s.connection_id, s.client_id, kind)]

    def withheld_from(self, receiver: "Session") -> list:
        """[(sender, kind)] that ``receiver`` would get but for its forwarding filters."""
        rules = self.filters_for(receiver)
        return [(s, kind) for s, kind in self._offered_to(receiver)
                if not filters.forwards(rules, s.connection_id, s.client_id, kind)]

    def _offered_to(self, receiver: "Session"):
        """(sender, kind) of every track the members send that ``receiver`` takes, before
        forwarding filters."""
        if not receiver.params.receives:
            return
        for s in self.sessions.values():
            if s is receiver or not s.is_established or same_bundle(s, receiver):
                continue
            if not s.params.sends:
                continue
            for kind in ("audio", "video"):
                if getattr(s.params, kind) and getattr(receiver.params, kind):
                    yield s, kind

    def filters_for(self, receiver: "Session") -> list:
        """The forwarding filters ``receiver`` goes by (its own, else the channel's)."""
        return filters.effective(receiver.params.forwarding_filters, self.forwarding_filter)

    def refilter(self, receivers: Iterable) -> None:
        """Forwarding filters changed: ``receivers`` get what the filters now allow (a
        re-offer where that differs from what they have)."""
        for s in list(receivers):
            s.request_renegotiation()

    # ------------------------------------------------------------------ notifies
    def _event(self, event_type: str, subject: "Session", counts: dict) -> dict:
        msg = {
            "type": "notify",
            "event_type": event_type,
            "timestamp": now_iso(),
            **subject.notify_info(),
            **counts,
        }
        return msg

    def on_established(self, s: "Session") -> None:
        """``s`` just became established: self notify, re-offers, notify the others."""
        others = [o for o in self.established() if o is not s]
        counts = self.counts()
        own = self._event("connection.created", s, counts)
        own["data"] = [o.notify_entry() for o in others if not same_bundle(o, s)]
        s.send_notify(own)
        # Re-offer first (Sora's order over WebSocket, §2.8), then the notify.
        self._renegotiate_for(s)
        self._broadcast(self._event("connection.created", s, counts), others, about=s)
        self._spotlight_join(s)

    def remove(self, s: "Session", was_established: bool) -> None:
        """``s`` leaves: re-offers without its media, ``connection.destroyed`` to the others."""
        if self.sessions.get(s.connection_id) is not s:
            return
        del self.sessions[s.connection_id]
        if self.audio_streaming is not None:
            self.audio_streaming.member_left(s)
        self._renegotiate_for(s)
        if not was_established:
            return
        self._broadcast(self._event("connection.destroyed", s, self.counts()), self.established(), about=s)
        if self.spotlight is not None and s.connection_id in self.spotlight.speakers:
            self.apply_spotlight(self.spotlight.remove(s.connection_id, time.monotonic()))
        if not self.sessions:
            for task in (self._spotlight_task, self._layers_task):
                if task is not None:
                    task.cancel()

    def _renegotiate_for(self, s: "Session") -> None:
        """Re-offers to the others after ``s`` joined or left, when that changes what they
        receive. Only a member that sends media does: a recvonly join or leave changes no
        one's tracks, and skipping it keeps a join O(N) instead of O(N²) (each re-offer
        check walks the channel), which is what lets a channel hold 1000 receivers."""
        if not (s.params.sends and (s.params.audio or s.params.video)):
            return
        for o in list(self.sessions.values()):
            if o is not s:
                o.request_renegotiation()

    # ------------------------------------------------------------------ simulcast
    def watch_layers(self) -> None:
        """A member sends simulcast: from now on its receivers hear of their layer switches
        (``simulcast.switched``), looked for every LAYER_POLL while a member sends it."""
        if self._layers_task is None or self._layers_task.done():
            self._layers_task = asyncio.get_running_loop().create_task(self._layers_loop())

    async def _layers_loop(self) -> None:
        while any(s.simulcast_up for s in self.sessions.values()):
            await asyncio.sleep(LAYER_POLL)
            for s in list(self.sessions.values()):
                try:
                    s.announce_layer_switches()
                except PeerClosed:  # closed under us: it is leaving
                    pass
                except Exception:  # one bad member must not stop the others' notifies
                    log.exception("%s: layer switch check failed", s.connection_id)

    # ------------------------------------------------------------------ spotlight
    def _spotlight_join(self, s: "Session") -> None:
        """A spotlight connection starts the channel's spotlight; every sender of a
        spotlight channel competes for focus."""
        if self.spotlight is None and s.params.spotlight:
            self.spotlight = spotlight.Spotlight(s.params.spotlight_number or spotlight.DEFAULT_NUMBER)
            now = time.monotonic()
            changes = []
            for o in self.established():
                if o.params.sends:
                    changes += self.spotlight.add(o.connection_id, now)
            self._spotlight_task = asyncio.get_running_loop().create_task(self._spotlight_loop())
            self.apply_spotlight(changes)
        elif self.spotlight is not None and s.params.sends:
            self.apply_spotlight(self.spotlight.add(s.connection_id, time.monotonic()))
        elif self.spotlight is not None and s.params.spotlight:
            s.reselect_layers()
        if self.spotlight is not None and s.params.spotlight:
            # a newcomer hears who is focused now (it missed those notifies)
            for cid in self.spotlight.focused:
                if cid != s.connection_id:
                    s.send_notify(self._spotlight_notify("focused", cid))

    async def _spotlight_loop(self) -> None:
        """Reads the senders' voice counters every POLL_INTERVAL and moves focus."""
        while self.sessions and self.spotlight is not None:
            await asyncio.sleep(spotlight.POLL_INTERVAL)
            readings = {}
            for cid in self.spotlight.speakers:
                s = self.sessions.get(cid)
                try:
                    reading = s.voice_activity() if s is not None else None
                except Exception as e:  # its peer closed under us: it is leaving
                    log.debug("%s: no voice reading (%s)", cid, e)
                    reading = None
                if reading is not None:
                    readings[cid] = reading
            try:
                self.apply_spotlight(self.spotlight.tick(time.monotonic(), readings))
            except Exception:  # one bad member must not stop focus for the channel
                log.exception("%s: spotlight update failed", self.channel_id)

    def apply_spotlight(self, changes: list) -> None:
        """Announces focus changes to the spotlight connections and moves their layers."""
        if not changes or self.spotlight is None:
            return
        members = [o for o in self.established() if o.params.spotlight]
        for what, cid, slot in changes:
            if cid not in self.sessions:
                continue
            text = self._spotlight_notify(what, cid)
            for o in members:
                o.send_notify(text)
            if what == "focused":
                changed = self._spotlight_notify("changed", cid, spotlight_id=str(slot))
                for o in members:
                    o.send_notify(changed)
        for o in members:
            o.reselect_layers()

    def _spotlight_notify(self, what: str, cid: str, **extra) -> str:
        subject = self.sessions[cid]
        return strictjson.dumps({
            "type": "notify",
            "event_type": f"spotlight.{what}",
            "client_id": subject.client_id,
            "connection_id": cid,
            "audio": bool(subject.params.audio),
            "video": bool(subject.params.video),
            "fixed": cid in self.spotlight.fixed,
            **extra,
        })

    @staticmethod
    def _broadcast(msg: dict, members: Iterable, about: "Session") -> None:
        """One notify to every member but ``about``'s bundle siblings, encoded once."""
        text = strictjson.dumps(msg)
        for o in members:
            if not same_bundle(o, about):
                o.send_notify(text)

    # ----------------------------------------------------------------- messaging
    def relay(self, sender: "Session", st: "DataChannelState", payload: bytes,
              binary: bool) -> int:
        """Relays one message received on ``st`` from ``sender``; returns deliveries."""
        label = st.spec.label
        spec = sender.messaging.get(label)
        if spec is None or not spec.can_send:
            log.debug("%s: dropped message on %s (direction)", sender.connection_id, label)
            return 0
        raw = payload
        if spec.compress:
            try:
                raw = inflate(payload)
            except ValueError as e:
                sender.drop_dc_message(st, str(e))
                return 0
            binary = True
        delivered = 0
        for r in list(self.sessions.values()):
            if r is sender or same_bundle(r, sender):
                continue
            rspec = r.messaging.get(label)
            if rspec is None or not rspec.can_receive:
                continue
            out = raw
            out_binary = binary
            if rspec.sender_header:
                out = sender.connection_id.encode("ascii") + out
            if rspec.compress:
                out = zlib.compress(out)
                out_binary = True
            if r.send_dc(label, out, out_binary):
                delivered += 1
        return delivered


class Channels:
    """All channels of one server (created on first join, dropped when empty)."""

    def __init__(self, core=None):
        self._channels: dict = {}
        self._core = core

    def join(self, s: "Session") -> Channel:
        """Adds ``s`` to its channel. The first connection of a channel starts its Sora
        session (whose id ``s`` brings); later ones take the session's id."""
        ch = self._channels.get(s.params.channel_id)
        created = ch is None
        if ch is None:
            ch = self._channels[s.params.channel_id] = Channel(
                s.params.channel_id, s.session_id, self._core)
        s.session_id = ch.session_id
        ch.add(s)
        if created and self._core is not None:
            self._core.on_session_created(ch)
        return ch

    def leave(self, s: "Session", was_established: bool) -> None:
        ch = self._channels.get(s.params.channel_id) if s.params else None
        if ch is None:
            return
        ch.remove(s, was_established)
        if not ch.sessions and self._channels.get(ch.channel_id) is ch:
            del self._channels[ch.channel_id]
            if self._core is not None:
                self._core.on_session_destroyed(ch)

    def get(self, channel_id: str) -> Optional[Channel]:
        return self._channels.get(channel_id)

    def session_id_for(self, channel_id: str, fresh: str) -> str:
        """The session id a connection to `channel_id` will have: the running session's,
        or `fresh` (the connection's own) when it will start one."""
        ch = self._channels.get(channel_id)
        return ch.session_id if ch is not None else fresh

    def all_sessions(self) -> list:
        return [s for ch in self._channels.values() for s in ch.sessions.values()]
