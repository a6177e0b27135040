"""Channels: who is in a channel, notify fan-out, messaging relay, bundle_id exclusion.

Everything here runs on the server's asyncio thread (no locks needed).

Membership has two levels. A session joins its channel once its ``connect`` is accepted
(so the HTTP API can find and disconnect it); it becomes *established* when its peer
connection is connected and, with DataChannel signaling, ``switched`` was sent. Only
established members count in ``channel_connections``, appear in notifies and in other
members' ``data`` list, and have their media offered to others.
"""
from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING, Iterable, Optional

from . import filters, strictjson
from .auth import now_iso
from .inflate import inflate

if TYPE_CHECKING:  # pragma: no cover
    from .session import DataChannelState, Session

log = logging.getLogger("sora_ffi.devserver")


def same_bundle(a: "Session", b: "Session") -> bool:
    return a.bundle_id == b.bundle_id


class Channel:
    def __init__(self, channel_id: str):
        self.channel_id = channel_id
        self.sessions: dict = {}  # connection_id -> Session, in join order

    # ----------------------------------------------------------------- membership
    def add(self, s: "Session") -> None:
        self.sessions[s.connection_id] = s

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
        if not receiver.params.receives:
            return []
        out = []
        for s in self.sessions.values():
            if s is receiver or not s.is_established or same_bundle(s, receiver):
                continue
            if not s.params.sends:
                continue
            for kind in ("audio", "video"):
                if (getattr(s.params, kind) and getattr(receiver.params, kind)
                        and filters.forwards(receiver.params.forwarding_filters, s.connection_id,
                                             s.client_id, kind)):
                    out.append((s, kind))
        return out

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

    def notify_updated(self, s: "Session") -> None:
        """``s`` changed (its signaling_notify_metadata): ``connection.updated`` about it to
        every established member, itself included, bundle siblings excepted."""
        msg = self._event("connection.updated", s, self.counts())
        for o in self.established():
            if o is s or not same_bundle(o, s):
                o.send_notify(msg)

    def remove(self, s: "Session", was_established: bool) -> None:
        """``s`` leaves: re-offers without its media, ``connection.destroyed`` to the others."""
        if self.sessions.get(s.connection_id) is not s:
            return
        del self.sessions[s.connection_id]
        self._renegotiate_for(s)
        if not was_established:
            return
        self._broadcast(self._event("connection.destroyed", s, self.counts()), self.established(), about=s)

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

    def __init__(self):
        self._channels: dict = {}

    def join(self, s: "Session") -> Channel:
        ch = self._channels.get(s.params.channel_id)
        if ch is None:
            ch = self._channels[s.params.channel_id] = Channel(s.params.channel_id)
        ch.add(s)
        return ch

    def leave(self, s: "Session", was_established: bool) -> None:
        ch = self._channels.get(s.params.channel_id) if s.params else None
        if ch is None:
            return
        ch.remove(s, was_established)
        if not ch.sessions:
            self._channels.pop(ch.channel_id, None)

    def get(self, channel_id: str) -> Optional[Channel]:
        return self._channels.get(channel_id)

    def all_sessions(self) -> list:
        return [s for ch in self._channels.values() for s in ch.sessions.values()]
