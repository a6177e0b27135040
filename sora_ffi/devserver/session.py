"""One client connection: the signaling state machine of sora-protocol.md §9.

Life of a session (all on the server's asyncio thread)::

    NEW --connect ok--> OFFERING --answer--> CONNECTING --pc connected [+ switched]-->
    ESTABLISHED --(disconnect | API | lifetime | ping timeout | WS loss | pc failure)-->
    ENDING --DCs closed, WS closed, peer destroyed--> CLOSED

Rules kept here:

* Exactly one ``offer``; afterwards only ``re-offer``s, never more than one outstanding:
  a renegotiation requested while an offer awaits its answer is remembered and done when
  the ``answer``/``re-answer`` arrives (``request_renegotiation``).
* The media view of a connection is *reconciled*, not patched: each (re-)offer computes the
  wanted remote (sender, kind) pairs from the channel and adds/removes m-sections to match,
  so joins and leaves that happen while an offer is in flight are never lost.
* Signaling messages go on the WebSocket until ``switched``; afterwards ``re-offer`` and
  ``close`` go on DC ``signaling``, notifies on ``notify``, pushes on ``push``.
* WebSocket writes go through one writer task per session (a slow client only delays
  itself); outgoing queue overflow ends that session.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from websockets.exceptions import ConnectionClosed

from . import auth, ids, rpc, sdp, spotlight, strictjson
from .inflate import inflate
from .params import (
    CLOSE_BAD_REQUEST,
    ConnectParams,
    DataChannelSpec,
    SCTP_STREAMS,
    ProtocolError,
    parse_connect,
)

if TYPE_CHECKING:  # pragma: no cover
    from .server import AsyncDevServer

log = logging.getLogger("sora_ffi.devserver")

# Close codes / reasons used by the dev server (documented in docs/devserver.md).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL = 1011
CLOSE_AUTH = 4401
CLOSE_TIMEOUT = 4408
CLOSE_SLOW = 4429

NEW, OFFERING, CONNECTING, ESTABLISHED, ENDING, CLOSED = (
    "new", "offering", "connecting", "established", "ending", "closed")

WS_QUEUE_LIMIT = 10000
#: the id of the pre-negotiated channel that gives an offer its m=application: the last stream
NEGOTIATED_DC_STREAM = SCTP_STREAMS - 1
MAX_PENDING_CANDIDATES = 256
DC_CLOSE_GRACE = 2.0  # seconds the client gets to finish closing its DataChannels
#: The layer a receiver gets of a simulcast sender when it asked for none (Sora's own
#: default is not documented [U]; the lowest layer is the one always sent).
DEFAULT_SIMULCAST_RID = "r0"


@dataclass
class DataChannelState:
    dc_id: int
    spec: DataChannelSpec
    opened: bool = False
    closed: bool = False
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    messages_dropped: int = 0  # undecodable, or inflating past MAX_INFLATED


@dataclass
class DownTrack:
    track_id: int
    mid: str
    sender_id: str
    kind: str
    #: what the section becomes if its sender leaves while it is the BUNDLE tag: the same
    #: codec, a=inactive, no msid/ssrc (the client ends that track as for port 0)
    idle_section: str


@dataclass
class _Counters:
    created: float = field(default_factory=time.time)
    offers: int = 0
    answers: int = 0
    candidates: int = 0
    pings: int = 0
    pongs: int = 0


class Session:
    """One WebSocket client (and, once accepted, its server-side SoraPeer)."""

    def __init__(self, core: "AsyncDevServer", ws: Any):
        self.core = core
        self.ws = ws
        self.connection_id = ids.new_id()
        self.session_id = ids.new_id()
        self.state = NEW
        self.params: Optional[ConnectParams] = None
        self.channel = None
        self.auth_metadata: Any = None
        self.connection_lifetime: Optional[float] = None
        self.signaling_notify = True
        self.created_time = time.time()
        self.established_time: Optional[float] = None
        self.counters = _Counters()
        self.keyframe_requested = False
        self._ws_lost = False  # set by the writer when a send found the WebSocket closed
        self.client_stats: Any = None
        self.ws_open = True
        self.ws_close_code: Optional[int] = None
        self._ws_out: asyncio.Queue = asyncio.Queue()
        self._ws_closed = asyncio.Event()
        self._writer: Optional[asyncio.Task] = None
        self.peer = None
        self.pc_state = 0
        self._gathered = asyncio.Event()
        self.remote_set = False
        self.negotiating = False
        self.renegotiate_pending = False
        self._pending_candidates: list = []
        self.upstream: dict = {}  # kind -> mid of the client's own upstream section
        self.upstream_tracks: dict = {}  # kind -> shim track id of that section
        self.down_tracks: dict = {}
        self._next_mid = 0
        self.dcs: dict = {}  # dc id -> DataChannelState
        self.dc_by_label: dict = {}
        self.messaging: dict = {}  # label -> DataChannelSpec (messaging labels opened)
        self.switched = False
        # What others' offers announce for our media: the SSRCs of our answer, or, for
        # simulcast (whose layers the answer does not name), one the forwarder rewrites to.
        self.out_ssrc = {"audio": random.randrange(1, 1 << 32), "video": random.randrange(1, 1 << 32)}
        self.simulcast_up = False  # our video upstream arrives as simulcast layers
        self.transport_cc = False  # its arrivals are reported (transport-cc feedback)
        #: layers asked for mid-session (API, RPC): sender connection_id (None: every
        #: sender) -> rid
        self.requested_rids: dict = {}
        #: spotlight layers asked for mid-session: sender connection_id (None: every
        #: sender) -> (focus rid, unfocus rid)
        self.spotlight_rids: dict = {}
        #: simulcast.switched: per simulcast sender (connection_id), the layer we last
        #: saw forwarded to us, the one we ask for, and whether that request changed
        #: since the last switch (then the next switch is the receiver's doing)
        self.layers_seen: dict = {}
        self.layers_asked: dict = {}
        self.layer_requests_new: set = set()
        self.voice_meter = False  # our audio's level is counted (spotlight)
        self.track_ids = {"audio": str(uuid.uuid4()), "video": str(uuid.uuid4())}
        self._tasks: set = set()
        self._timers: list = []
        self._ping_task: Optional[asyncio.Task] = None
        self._ping_outstanding_since: Optional[float] = None
        self._disconnected_timer = None
        self._reanswer_timer = None
        self._answer_seen = asyncio.Event()
        self._pc_gone = asyncio.Event()
        self.leaving = False  # set when a batch ending is coming: no more re-offers
        self.closed = asyncio.Event()
        self.end_code: Optional[int] = None
        self.end_reason: Optional[str] = None

    # ------------------------------------------------------------------ properties
    @property
    def role(self) -> str:
        return self.params.role if self.params else ""

    @property
    def client_id(self) -> str:
        return (self.params.client_id if self.params and self.params.client_id is not None
                else self.connection_id)

    @property
    def bundle_id(self) -> str:
        return (self.params.bundle_id if self.params and self.params.bundle_id is not None
                else self.connection_id)

    @property
    def is_established(self) -> bool:
        return self.state == ESTABLISHED

    def __repr__(self) -> str:
        return f"<Session {self.connection_id} {self.state} ch={self.params and self.params.channel_id}>"

    # ----------------------------------------------------------------- small utils
    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task failed", self.connection_id, exc_info=task.exception())

    def _later(self, delay: float, fn, *args) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, fn, *args))

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        if self._disconnected_timer is not None:
            self._disconnected_timer.cancel()
            self._disconnected_timer = None
        if self._reanswer_timer is not None:
            self._reanswer_timer.cancel()
            self._reanswer_timer = None
        if self._ping_task is not None:
            self._ping_task.cancel()
            self._ping_task = None

    # ------------------------------------------------------------ WebSocket side
    def send_ws(self, msg: "dict | str") -> bool:
        """Queues ``msg`` (a dict, or its JSON text when the caller encoded it once for
        many recipients) on the WebSocket."""
        if not self.ws_open or self.state == CLOSED:
            return False
        if self._ws_out.qsize() > WS_QUEUE_LIMIT:
            log.warning("%s: WebSocket send queue overflow", self.connection_id)
            self._spawn(self.end(CLOSE_SLOW, "SLOW-CLIENT"))
            return False
        self._ws_out.put_nowait(msg if isinstance(msg, str) else strictjson.dumps(msg))
        return True

    def _ws_close(self, code: int, reason: str) -> None:
        if self.ws_open:
            self._ws_out.put_nowait((code, reason))

    async def _ws_writer(self) -> None:
        try:
            while True:
                item = await self._ws_out.get()
                if item is None:
                    return
                if isinstance(item, tuple):
                    code, reason = item
                    reason = reason.encode()[:123].decode(errors="ignore")
                    self.ws_close_code = code
                    try:
                        await asyncio.wait_for(self.ws.close(code, reason), 5)
                    except Exception:
                        pass
                    return
                try:
                    await self.ws.send(item)
                except ConnectionClosed:
                    self._ws_lost = True  # the client went away: run() must end the session
                    return
        finally:
            self.ws_open = False
            self._ws_closed.set()

    async def run(self) -> None:
        """The websockets connection handler body."""
        self.core.sessions.add(self)
        self._writer = asyncio.ensure_future(self._ws_writer())
        try:
            await self._serve()
        except ConnectionClosed:
            pass
        except ProtocolError as e:
            await self.end(e.code, e.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: session failed", self.connection_id)
            await self.end(CLOSE_INTERNAL, "INTERNAL-ERROR")
        finally:
            lost = self.ws_open or self._ws_lost
            self.ws_open = False
            self._ws_out.put_nowait(None)
            if lost and self.state not in (ENDING, CLOSED):
                if self.switched and self.params and self.params.ignore_disconnect_websocket:
                    log.info("%s: WebSocket gone, DataChannel signaling continues",
                             self.connection_id)
                else:
                    self._spawn(self.end(None, "WEBSOCKET-CLOSED", initiator="lost"))
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), 6)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._writer.cancel()
            if self.state in (NEW, CLOSED) and self.peer is None:
                self.state = CLOSED
                self.closed.set()
                self.core.sessions.discard(self)

    async def _serve(self) -> None:
        cfg = self.core.config
        try:
            raw = await asyncio.wait_for(self.ws.recv(), cfg.connect_timeout)
        except asyncio.TimeoutError:
            raise ProtocolError("CONNECT-TIMEOUT: no connect message", CLOSE_TIMEOUT) from None
        msg = self._decode_ws(raw)
        if cfg.redirect_to and msg.get("type") == "connect" and msg.get("redirect") is not True:
            self.send_ws({"type": "redirect", "location": cfg.redirect_to})
            self._ws_close(CLOSE_NORMAL, "REDIRECT")
            self.state = CLOSED
            await self._ws_closed.wait()
            return
        params = parse_connect(
            msg,
            default_data_channel_signaling=cfg.data_channel_signaling,
            default_ignore_disconnect_websocket=cfg.ignore_disconnect_websocket,
        )
        params = await self._authenticate(msg, params)
        if self.state != NEW:  # ended meanwhile (server stop)
            return
        self.params = params
        self.channel = self.core.channels.join(self)
        log.info("%s: connect role=%s channel=%s dc_signaling=%s", self.connection_id,
                 params.role, params.channel_id, params.data_channel_signaling)
        await self._start_offer()
        async for raw in self.ws:
            if self.state in (ENDING, CLOSED):
                self._note_late_answer(raw)
                continue
            self._on_signaling_message(self._decode_ws(raw), via="websocket")

    def _note_late_answer(self, raw: Any) -> None:
        """While ending: notice the (re-)answer that end() may be waiting for."""
        try:
            msg = strictjson.loads(raw)
        except (ValueError, TypeError):
            return
        if isinstance(msg, dict) and msg.get("type") in ("answer", "re-answer", "update"):
            self._answer_seen.set()

    def _decode_ws(self, raw: Any) -> dict:
        if isinstance(raw, (bytes, bytearray)):
            raise ProtocolError("INVALID-MESSAGE: binary frames are not allowed")
        try:
            msg = strictjson.loads(raw)
        except ValueError as e:
            raise ProtocolError(f"INVALID-MESSAGE: {e}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError("INVALID-MESSAGE: a JSON object with a string type is required")
        return msg

    async def _authenticate(self, msg: dict, params: ConnectParams) -> ConnectParams:
        cfg = self.core.config
        overrides: dict = {}
        try:
            if cfg.jwt_secret is not None:
                md = params.metadata if isinstance(params.metadata, dict) else {}
                claims = auth.verify_jwt(md.get("access_token"), cfg.jwt_secret, params.channel_id)
                overrides.update(auth.jwt_overrides(claims))
            if cfg.auth_webhook:
                body = auth.webhook_request(
                    msg, connection_id=self.connection_id,
                    session_id=self.core.channels.session_id_for(params.channel_id, self.session_id),
                    counts=self.core.channel_counts(params.channel_id),
                    version=self.core.version)
                overrides.update(await auth.call_webhook(cfg.auth_webhook, body))
        except auth.AuthError as e:
            raise ProtocolError(e.reason, CLOSE_AUTH) from None
        if not overrides:
            return params
        try:
            new_msg, extras = auth.apply_overrides(msg, overrides)
        except auth.AuthError as e:  # grants that refuse this connect
            raise ProtocolError(e.reason, CLOSE_AUTH) from None
        try:
            params = parse_connect(
                new_msg,
                default_data_channel_signaling=cfg.data_channel_signaling,
                default_ignore_disconnect_websocket=cfg.ignore_disconnect_websocket,
            )
        except ProtocolError as e:
            raise ProtocolError(f"AUTH-ERROR: invalid override ({e.reason})", CLOSE_AUTH) from None
        self.auth_metadata = extras.get("auth_metadata")
        self.connection_lifetime = extras.get("connection_lifetime")
        self.signaling_notify = extras.get("signaling_notify", True)
        return params

    # ------------------------------------------------------------------- offer
    def _new_mid(self) -> str:
        mid = str(self._next_mid)
        self._next_mid += 1
        return mid

    async def _start_offer(self) -> None:
        from .peerloop import Peer  # the native part, only needed from here on

        p = self.params
        cfg = self.core.config
        self.state = OFFERING
        self.negotiating = True  # until the answer: renegotiation requests wait
        peer_cfg: dict = {"bind_address": cfg.bind_address}
        if cfg.port_range:
            peer_cfg["port_range"] = list(cfg.port_range)
        self.peer = Peer(self.core.peerloop.queue, peer_cfg)
        self.core.peerloop.register(self.peer.id, self._on_peer_event)

        if p.sends and p.audio:
            mid = self._new_mid()
            self.upstream_tracks["audio"] = self.peer.add_track(
                sdp.audio_section(mid, "recvonly", p.opus, transport_cc=self.core.config.transport_cc))
            self.upstream["audio"] = mid
        if p.sends and p.video:
            mid = self._new_mid()
            self.upstream_tracks["video"] = self.peer.add_track(sdp.video_section(
                mid, "recvonly", p.video_codec, simulcast=p.simulcast,
                paused_rids=sdp.paused_rids(p.video_bit_rate, p.simulcast_encodings),
                bit_rate_kbps=p.video_bit_rate, transport_cc=self.core.config.transport_cc))
            self.upstream["video"] = mid
            # BWE feedback as a Sora server gives it: without it a libwebrtc sender stays
            # near its 300 kbps start value.
            self.peer.set_track_bitrate(self.upstream_tracks["video"], sdp.upstream_bitrate(
                p.video_bit_rate, p.simulcast, p.simulcast_encodings))
        for track in self.upstream_tracks.values():
            self.peer.rtp_counters(track)  # counting starts (GetStatsConnection)
        if self.channel.audio_streaming is not None:
            # subscribed by default, and streamed from its first packet if it should be
            self.channel.audio_streaming.member_joined(self)
        self._sync_downstream()
        if p.data_channel_signaling:
            for spec in p.server_data_channels():
                dc = self.peer.create_data_channel(spec.label, spec.dc_options())
                st = DataChannelState(dc_id=dc, spec=spec)
                self.dcs[dc] = st
                self.dc_by_label[spec.label] = st
                if spec.is_messaging:
                    self.messaging[spec.label] = spec
        else:
            # Always an m=application (§9.1 rule 6); a pre-negotiated channel makes one
            # without the client ever seeing a DataChannel.
            self.peer.create_data_channel(
                "sora-devserver", {"negotiated": True, "stream": NEGOTIATED_DC_STREAM})
        self.peer.set_local_description("offer")
        try:
            await asyncio.wait_for(self._gathered.wait(), 5)
        except asyncio.TimeoutError:
            log.warning("%s: ICE gathering did not complete in 5 s", self.connection_id)
        if self.state != OFFERING:
            return
        offer_sdp = self.peer.local_description()
        self._next_mid = max(self._next_mid, sdp.max_numeric_mid(offer_sdp) + 1)
        self.counters.offers += 1
        self.send_ws(self._offer_message(offer_sdp))
        self._later(cfg.establish_timeout, self._establish_timeout)

    def _offer_message(self, offer_sdp: str) -> dict:
        p = self.params
        msg: dict[str, Any] = {
            "type": "offer",
            "sdp": offer_sdp,
            "version": self.core.version,
            "channel_id": p.channel_id,
            "session_id": self.session_id,
            "connection_id": self.connection_id,
            "client_id": self.client_id,
            "bundle_id": self.bundle_id,
            "config": {"iceServers": [], "iceTransportPolicy": "all"},
            "simulcast": p.simulcast,
            "simulcast_multicodec": False,
            "spotlight": p.spotlight,
            "multistream": True,
            "audio": p.audio,
            "video": p.video,
        }
        if self.auth_metadata is not None:
            msg["metadata"] = self.auth_metadata
        if p.sends:
            msg["mid"] = dict(self.upstream)
        if p.audio:
            msg["audio_codec_type"] = "OPUS"
            if p.audio_bit_rate:
                msg["audio_bit_rate"] = p.audio_bit_rate
        if p.video:
            msg["video_codec_type"] = p.video_codec.name
            if p.video_bit_rate:
                msg["video_bit_rate"] = p.video_bit_rate
        if p.simulcast and p.sends and p.video:
            msg["encodings"] = sdp.simulcast_encodings(p.video_bit_rate, p.simulcast_encodings)
        if p.spotlight_number is not None:
            msg["spotlight_number"] = p.spotlight_number
        if p.data_channel_signaling:
            msg["data_channel_signaling"] = True
            msg["ignore_disconnect_websocket"] = p.ignore_disconnect_websocket
            msg["data_channels"] = [st.spec.offer_entry() for st in self.dcs.values()]
        else:
            msg["data_channel_signaling"] = False
            msg["ignore_disconnect_websocket"] = False
        if p.rpc_methods:
            msg["rpc_methods"] = list(p.rpc_methods)
        if p.simulcast_rpc_rids is not None:
            msg["simulcast_rpc_rids"] = list(p.simulcast_rpc_rids)
        return msg

    def _sync_downstream(self) -> bool:
        """Adds/removes remote m-sections to match the channel; True when anything changed."""
        wanted = self.channel.downstream_for(self) if self.channel else []
        keys = {(s.connection_id, kind) for s, kind in wanted}
        changed = False
        gone = [key for key in self.down_tracks if key not in keys]
        # Only called with no offer outstanding: the local description is the last offer.
        tag = sdp.bundle_tag(self.peer.local_description()) if gone else None
        for key in gone:
            dt = self.down_tracks.pop(key)
            if dt.mid == tag:
                # rejecting it would make libwebrtc clients drop their transport (sdp.bundle_tag)
                self.peer.replace_track(dt.track_id, dt.idle_section)
            else:
                self.peer.remove_track(dt.track_id)
            changed = True
        for s, kind in wanted:
            key = (s.connection_id, kind)
            if key in self.down_tracks:
                continue
            mid = self._new_mid()
            msid = (s.connection_id, s.track_ids[kind])
            if kind == "audio":
                text = sdp.audio_section(mid, "sendonly", s.params.opus, msid=msid,
                                         ssrc=s.out_ssrc[kind], cname=s.connection_id)
                idle = sdp.audio_section(mid, "inactive", s.params.opus)
            else:
                text = sdp.video_section(mid, "sendonly", s.params.video_codec, msid=msid,
                                         ssrc=s.out_ssrc[kind], cname=s.connection_id)
                idle = sdp.video_section(mid, "inactive", s.params.video_codec)
            tid = self.peer.add_track(text)
            # Forwarded RTP must carry this section's mid, not the sender's: libwebrtc
            # demultiplexes a BUNDLE by MID before SSRC.
            self.peer.set_track_mid(tid, sdp.EXT_MID[0], mid)
            self.peer.rtp_counters(tid)  # counting starts (GetStatsConnection)
            if kind == "video" and s.simulcast_up:
                # before forwarding starts: a simulcast source's packets go nowhere else
                self._select_layer(tid, s)
            self.down_tracks[key] = DownTrack(tid, mid, s.connection_id, kind, idle)
            src_track = s.upstream_tracks.get(kind)
            if src_track is not None and s.peer is not None and not s.peer.closed:
                s.peer.forward_track(src_track, self.peer, tid)
            changed = True
        return changed

    def _start_transport_cc(self, answer: str) -> None:
        """Reports the arrivals of the upstream's transport-wide sequence numbers
        (transport-cc feedback) when the answer took the extension, once."""
        if self.transport_cc or not self.upstream:
            return
        ids = {sdp.section_extmap_id(answer, mid, sdp.EXT_TWCC[1]) for mid in self.upstream.values()}
        if len(ids) == 1 and None not in ids:
            self.peer.set_transport_cc(list(self.upstream_tracks.values()), ids.pop())
            self.transport_cc = True

    def _start_voice_meter(self, answer: str) -> None:
        """Counts how much of our audio is voice (its ``ssrc-audio-level``), once: what
        spotlight focus follows."""
        track = self.upstream_tracks.get("audio")
        if self.voice_meter or track is None:
            return
        ext = sdp.section_extmap_id(answer, self.upstream["audio"], sdp.EXT_AUDIO_LEVEL[1])
        if ext is not None and 1 <= ext <= 14:
            self.peer.set_track_voice_meter(track, ext, spotlight.VOICE_LEVEL)
            self.voice_meter = True

    def voice_activity(self) -> Optional[tuple]:
        """(packets with a level, voiced packets) of our audio so far; None without."""
        if not self.voice_meter or self.peer is None or self.peer.closed:
            return None
        return self.peer.voice_activity(self.upstream_tracks["audio"])

    # ------------------------------------------------------------------ simulcast
    def rid_for(self, sender: "Session") -> str:
        """The layer of ``sender``'s simulcast this connection asks for. A spotlight
        connection: its focus or unfocus rid for that sender (the latest
        ``RequestSpotlightRid`` for it or for every sender, else its connect's, else
        spotlight's defaults). Otherwise the latest request (API, RPC) for that sender or
        for every sender, else its connect's ``simulcast_request_rid`` /
        ``simulcast_rid``, else :data:`DEFAULT_SIMULCAST_RID`."""
        p = self.params
        spot = self.channel.spotlight if self.channel is not None else None
        if p.spotlight and spot is not None:
            focus, unfocus = (self.spotlight_rids.get(sender.connection_id) or self.spotlight_rids.get(None)
                              or (p.spotlight_focus_rid or spotlight.DEFAULT_FOCUS_RID,
                                  p.spotlight_unfocus_rid or spotlight.DEFAULT_UNFOCUS_RID))
            return focus if sender.connection_id in spot.focused else unfocus
        return (self.requested_rids.get(sender.connection_id) or self.requested_rids.get(None)
                or p.simulcast_request_rid or p.simulcast_rid or DEFAULT_SIMULCAST_RID)

    def request_spotlight_rids(self, rids: Optional[tuple], sender_connection_id: Optional[str] = None) -> None:
        """(focus rid, unfocus rid) for one sender or every sender (a request for all
        replaces the per-sender ones); None resets to the connect's."""
        self.spotlight_rids = _with_request(self.spotlight_rids, rids, sender_connection_id)
        self.reselect_layers()

    def request_rid(self, rid: Optional[str], sender_connection_id: Optional[str] = None) -> None:
        """Asks for layer ``rid`` ("r0".."r2", "none"; None resets to the connect's choice)
        of one sender's simulcast, or of every sender's (a request for all replaces the
        per-sender ones). The switch happens at the new layer's next keyframe."""
        self.requested_rids = _with_request(self.requested_rids, rid, sender_connection_id)
        self.reselect_layers()

    def reselect_layers(self) -> None:
        """Asks the forwarder for the layer :meth:`rid_for` now names, of every simulcast
        sender (a change happens at the new layer's next keyframe)."""
        if self.peer is None or self.peer.closed or self.channel is None:
            return
        for sender, dt in self._simulcast_down_tracks():
            self._select_layer(dt.track_id, sender)

    def _simulcast_down_tracks(self) -> list:
        """[(sender, its video DownTrack)] of the senders we get simulcast from."""
        out = []
        for (cid, kind), dt in list(self.down_tracks.items()):
            sender = self.channel.sessions.get(cid) if kind == "video" else None
            if sender is not None and sender.simulcast_up:
                out.append((sender, dt))
        return out

    def _select_layer(self, track: int, sender: "Session") -> None:
        rid = self.rid_for(sender)
        if self.layers_asked.get(sender.connection_id, rid) != rid:
            self.layer_requests_new.add(sender.connection_id)
        self.layers_asked[sender.connection_id] = rid
        self.peer.select_layer(track, rid, sender.out_ssrc["video"])

    def announce_layer_switches(self) -> None:
        """Sends ``simulcast.switched`` for each simulcast sender whose layer forwarded to
        us changed since the last look (the forwarder switches at a keyframe, so the
        request alone says nothing). The first layer is not announced; a switch to no
        video is not either (``current_rid`` is a rid). ``trigger`` is ``receiver`` for
        the first switch after what we ask for changed (API, RPC, spotlight), else
        ``sender`` (its layer stopped or came back). Field meanings beyond the names are
        [U] (sora-protocol.md §notify): ``rpc_rids`` the rids an RPC request may name
        (``simulcast_rpc_rids``, else r0-r2), ``auto_rids`` empty (this server picks no layer by bandwidth)."""
        if not self.signaling_notify or self.peer is None or self.peer.closed or self.channel is None:
            return
        live = {cid for cid, kind in self.down_tracks if kind == "video"}
        for kept in (self.layers_seen, self.layers_asked):
            for cid in [c for c in kept if c not in live]:  # senders gone
                del kept[cid]
        self.layer_requests_new &= live
        for sender, dt in self._simulcast_down_tracks():
            cid = sender.connection_id
            current = self.peer.forwarded_layer(dt.track_id)
            previous = self.layers_seen.get(cid)
            if current is None or current == previous:
                continue
            self.layers_seen[cid] = current
            if previous is None:
                continue
            requested = self.rid_for(sender)
            by_receiver = cid in self.layer_requests_new
            self.layer_requests_new.discard(cid)
            self.send_notify(strictjson.dumps({
                "type": "notify",
                "event_type": "simulcast.switched",
                "timestamp": auth.now_iso(),
                "sender_connection_id": cid,
                "priority": "higher" if current > previous else "lower",
                "trigger": "receiver" if by_receiver else "sender",
                "rpc_rids": self.rpc_rids(),
                "auto_rids": [],
                "request_rid": requested,
                "current_rid": current,
                "previous_rid": previous,
            }))

    def rpc_rids(self) -> list:
        """The layers an RPC ``RequestSimulcastRid`` of this connection may ask for."""
        given = self.params.simulcast_rpc_rids
        return list(sdp.SIMULCAST_RIDS if given is None else given)

    def forwarded_rid(self, sender_connection_id: str) -> Optional[str]:
        """The layer of that sender's simulcast this connection gets now (None: none)."""
        dt = self.down_tracks.get((sender_connection_id, "video"))
        if dt is None or self.peer is None or self.peer.closed:
            return None
        return self.peer.forwarded_layer(dt.track_id)

    def request_renegotiation(self) -> None:
        """Brings the client's m-sections in line with the channel (re-offer if needed)."""
        if (self.state not in (OFFERING, CONNECTING, ESTABLISHED) or self.peer is None
                or self.leaving or self.core.stopping):
            return
        if self.negotiating or self.state != ESTABLISHED:
            # Reconciled when the answer arrives, or once established: a re-offer while the
            # peer connection is still coming up (ICE/DTLS) made libdatachannel clients lose
            # it now and then (two connect loops sharing channels: 2-9 in 1600 connects).
            self.renegotiate_pending = True
            return
        self.renegotiate_pending = False
        try:
            if not self._sync_downstream():
                return
            self.peer.set_local_description("offer")
            offer_sdp = self.peer.local_description()
        except Exception as e:
            log.error("%s: re-offer failed: %s", self.connection_id, e)
            self._spawn(self.end(CLOSE_INTERNAL, "INTERNAL-ERROR"))
            return
        self.negotiating = True
        self._answer_seen.clear()
        self.counters.offers += 1
        self._arm_reanswer_timer()
        self.send_signaling({"type": "re-offer", "sdp": offer_sdp})

    def _arm_reanswer_timer(self) -> None:
        if self._reanswer_timer is not None:
            self._reanswer_timer.cancel()
        self._reanswer_timer = asyncio.get_running_loop().call_later(
            self.core.config.establish_timeout, self._reanswer_timeout)

    def _reanswer_timeout(self) -> None:
        self._reanswer_timer = None
        if self.negotiating and self.state in (CONNECTING, ESTABLISHED):
            log.info("%s: no re-answer within %.0f s", self.connection_id,
                     self.core.config.establish_timeout)
            self._spawn(self.end(CLOSE_TIMEOUT, "RE-ANSWER-TIMEOUT"))

    # --------------------------------------------------------- incoming signaling
    def _on_signaling_message(self, msg: dict, via: str) -> None:
        t = msg.get("type")
        if t in ("answer", "re-answer", "update"):
            self._on_answer(msg)
        elif t == "candidate":
            self._on_candidate(msg)
        elif t == "pong":
            self._on_pong(msg)
        elif t == "disconnect":
            log.info("%s: disconnect via %s (reason=%s)", self.connection_id, via,
                     msg.get("reason"))
            self._spawn(self.end(CLOSE_NORMAL, "TYPE-DISCONNECT", initiator="client"))
        elif t == "stats":
            self.client_stats = msg.get("reports")
            self._ping_outstanding_since = None
        else:
            log.debug("%s: ignored message type %r via %s", self.connection_id, t, via)

    def _on_answer(self, msg: dict) -> None:
        sdp_text = msg.get("sdp")
        if not isinstance(sdp_text, str):
            self._spawn(self.end(CLOSE_BAD_REQUEST, "INVALID-MESSAGE: answer without sdp"))
            return
        if not self.negotiating:
            log.info("%s: unexpected %s ignored", self.connection_id, msg.get("type"))
            return
        try:
            self.peer.set_remote_description(sdp_text, "answer")
        except Exception as e:
            log.info("%s: answer rejected: %s", self.connection_id, e)
            self._spawn(self.end(CLOSE_BAD_REQUEST, "INVALID-ANSWER"))
            return
        self.counters.answers += 1
        # Media is forwarded with the sender's own SSRCs: others' offers must announce them.
        for kind, mid in self.upstream.items():
            ssrc = sdp.section_ssrc(sdp_text, mid)
            if ssrc:
                self.out_ssrc[kind] = ssrc
        self._start_transport_cc(sdp_text)
        self._start_voice_meter(sdp_text)
        if self.params.simulcast and not self.simulcast_up and "video" in self.upstream:
            rid_ext = sdp.simulcast_send_rid_ext(sdp_text, self.upstream["video"])
            if rid_ext is not None:
                self.peer.set_track_simulcast(self.upstream_tracks["video"], rid_ext,
                                              self.params.video_codec.name)
                self.simulcast_up = True
                if self.channel is not None:
                    self.channel.watch_layers()
        self.negotiating = False
        self._answer_seen.set()
        if self._reanswer_timer is not None:
            self._reanswer_timer.cancel()
            self._reanswer_timer = None
        first = not self.remote_set
        self.remote_set = True
        if first:
            self.state = CONNECTING
            for cand, mid in self._pending_candidates:
                self._add_candidate(cand, mid)
            self._pending_candidates.clear()
            if self.core.config.ping_interval:
                self._ping_task = self._spawn(self._ping_loop())
        self._maybe_switch()
        self._check_established()
        if self.renegotiate_pending:
            self.request_renegotiation()

    def _on_candidate(self, msg: dict) -> None:
        cand = msg.get("candidate")
        mid = msg.get("sdpMid")
        if isinstance(cand, dict):  # tolerate {"candidate": {...RTCIceCandidateInit}}
            mid = cand.get("sdpMid", mid)
            cand = cand.get("candidate")
        if not isinstance(cand, str) or not cand.strip():
            return  # end-of-candidates
        mid = mid if isinstance(mid, str) else None
        self.counters.candidates += 1
        if not self.remote_set:
            if len(self._pending_candidates) < MAX_PENDING_CANDIDATES:
                self._pending_candidates.append((cand, mid))
            return
        self._add_candidate(cand, mid)

    def _add_candidate(self, cand: str, mid: Optional[str]) -> None:
        try:
            self.peer.add_remote_candidate(cand, mid)
        except Exception as e:
            log.debug("%s: candidate ignored (%s): %s", self.connection_id, e, cand)

    def _on_pong(self, msg: dict) -> None:
        self.counters.pongs += 1
        self._ping_outstanding_since = None
        if isinstance(msg.get("stats"), list):
            self.client_stats = msg["stats"]

    async def _ping_loop(self) -> None:
        interval = self.core.config.ping_interval
        while self.ws_open and self.state in (CONNECTING, ESTABLISHED):
            await asyncio.sleep(interval)
            if not self.ws_open or self.state not in (CONNECTING, ESTABLISHED):
                return
            since = self._ping_outstanding_since
            now = time.monotonic()
            if since is not None and now - since >= 2 * interval - 1e-3:
                log.info("%s: no pong within %.1f s", self.connection_id, 2 * interval)
                self._spawn(self.end(CLOSE_TIMEOUT, "PONG-TIMEOUT"))
                return
            self.counters.pings += 1
            self.send_ws({"type": "ping", "stats": False})
            if since is None:
                self._ping_outstanding_since = now

    # ------------------------------------------------------------ peer events
    def _on_peer_event(self, ev) -> None:
        from .peerloop import (
            EV_PEER_DATA_CHANNEL, EV_PEER_DC_CLOSED, EV_PEER_DC_MESSAGE, EV_PEER_DC_OPEN,
            EV_PEER_GATHERING_STATE, EV_PEER_STATE, GATHERING_COMPLETE)

        t = ev.type
        if t == EV_PEER_GATHERING_STATE:
            if ev.a == GATHERING_COMPLETE:
                self._gathered.set()
        elif t == EV_PEER_STATE:
            self._on_pc_state(int(ev.a))
        elif t == EV_PEER_DC_OPEN:
            st = self.dcs.get(int(ev.a)) or self.dc_by_label.get(ev.text or "")
            if st is not None:
                st.opened = True
                log.debug("%s: DataChannel %s open", self.connection_id, st.spec.label)
                self._maybe_switch()
        elif t == EV_PEER_DC_MESSAGE:
            self._on_dc_message(int(ev.a), bool(ev.b), bytes(ev.data or b""))
        elif t == EV_PEER_DC_CLOSED:
            self._on_dc_closed(int(ev.a))
        elif t == EV_PEER_DATA_CHANNEL:
            log.info("%s: client-created DataChannel %r ignored", self.connection_id, ev.text)

    def _on_pc_state(self, state: int) -> None:
        from .peerloop import PC_CLOSED, PC_CONNECTED, PC_DISCONNECTED, PC_FAILED

        self.pc_state = state
        if state in (PC_DISCONNECTED, PC_FAILED, PC_CLOSED):
            self._pc_gone.set()
        if self.state in (ENDING, CLOSED):
            return
        if state == PC_CONNECTED:
            if self._disconnected_timer is not None:
                self._disconnected_timer.cancel()
                self._disconnected_timer = None
            self._check_established()
        elif state == PC_DISCONNECTED:
            if self._disconnected_timer is None:
                self._disconnected_timer = asyncio.get_running_loop().call_later(
                    self.core.config.disconnected_timeout,
                    lambda: self._spawn(self.end(CLOSE_INTERNAL, "PEER-CONNECTION-DISCONNECTED",
                                                 initiator="peer")))
        elif state in (PC_FAILED, PC_CLOSED):
            reason = "PEER-CONNECTION-FAILED" if state == PC_FAILED else "PEER-CONNECTION-CLOSED"
            self._spawn(self.end(CLOSE_INTERNAL, reason, initiator="peer"))

    def _maybe_switch(self) -> None:
        p = self.params
        if (not p or not p.data_channel_signaling or self.switched or not self.remote_set
                or self.state not in (CONNECTING, ESTABLISHED)):
            return
        if not self.dcs or not all(st.opened for st in self.dcs.values()):
            return
        self.switched = True
        self.send_ws({"type": "switched",
                      "ignore_disconnect_websocket": p.ignore_disconnect_websocket})
        log.info("%s: switched to DataChannel signaling", self.connection_id)
        self._check_established()

    def _check_established(self) -> None:
        from .peerloop import PC_CONNECTED

        if self.state != CONNECTING or self.pc_state != PC_CONNECTED:
            return
        if self.params.data_channel_signaling and not self.switched:
            return
        self.state = ESTABLISHED
        self.established_time = time.time()
        log.info("%s: established (channel %s)", self.connection_id, self.params.channel_id)
        if self.connection_lifetime:
            self._later(self.connection_lifetime,
                        lambda: self._spawn(self.end(CLOSE_NORMAL, "LIFETIME-EXPIRED")))
        self.channel.on_established(self)
        if self.renegotiate_pending:  # members came or went while it was connecting
            self.request_renegotiation()

    def _establish_timeout(self) -> None:
        if self.state in (OFFERING, CONNECTING):
            log.info("%s: not connected within %.0f s", self.connection_id,
                     self.core.config.establish_timeout)
            self._spawn(self.end(CLOSE_TIMEOUT, "CONNECTION-TIMEOUT"))

    # ------------------------------------------------------------ DataChannels
    def _on_dc_message(self, dc_id: int, binary: bool, data: bytes) -> None:
        st = self.dcs.get(dc_id)
        if st is None or self.state == CLOSED:
            return
        if self.state == ENDING:
            if st.spec.label == "signaling":
                with contextlib.suppress(ValueError):
                    data = inflate(data) if st.spec.compress else data
                self._note_late_answer(data)
            return
        st.messages_received += 1
        st.bytes_received += len(data)
        label = st.spec.label
        if st.spec.is_messaging:
            self.channel.relay(self, st, data, binary)
            return
        payload = data
        if st.spec.compress:
            try:
                payload = inflate(data)
            except ValueError as e:
                self.drop_dc_message(st, str(e))
                return
        try:
            msg = strictjson.loads(payload)
        except ValueError:
            log.info("%s: malformed JSON on DataChannel %s ignored", self.connection_id, label)
            if label == "rpc":  # JSON-RPC: a parse error is answered (id null)
                self.send_dc_json("rpc", {"jsonrpc": "2.0", "id": None,
                                          "error": {"code": -32700, "message": "Parse error"}})
            return
        if not isinstance(msg, dict):
            return
        if label == "signaling":
            self._on_signaling_message(msg, via="datachannel")
        elif label == "stats":
            if msg.get("type") == "stats":
                self.client_stats = msg.get("reports")
                self._ping_outstanding_since = None
        elif label == "rpc":
            self._on_rpc(msg)

    def drop_dc_message(self, st: DataChannelState, why: str) -> None:
        """A received message that cannot be used: counted (GetStatsConnection
        ``messagesDropped``) and logged, never passed on."""
        st.messages_dropped += 1
        log.warning("%s: dropped a message on DataChannel %s: %s",
                    self.connection_id, st.spec.label, why)

    def _on_rpc(self, msg: dict) -> None:
        reply = rpc.handle(self, msg)
        if reply is not None:
            self.send_dc_json("rpc", reply)

    def set_notify_metadata(self, metadata: Any, push: Optional[dict] = None) -> None:
        """RPC PutSignalingNotifyMetadata(Item): the new metadata; ``push`` (the change:
        action and its fields) goes to every established member of the channel, this one
        too, as a ``signaling_notify_metadata_ext`` push."""
        self.params.signaling_notify_metadata = metadata
        if push is not None and self.channel is not None and self.is_established:
            data = {"type": "signaling_notify_metadata_ext", "connection_id": self.connection_id, **push}
            for o in self.channel.established():
                o.send_push(data)

    def _on_dc_closed(self, dc_id: int) -> None:
        st = self.dcs.get(dc_id)
        if st is None:
            return
        st.closed = True
        log.debug("%s: DataChannel %s closed", self.connection_id, st.spec.label)
        if self.state in (ENDING, CLOSED):
            return
        log.info("%s: DataChannel %s closed by the client", self.connection_id, st.spec.label)
        if self.switched and not self.ws_open:
            # DataChannel-only session: the DataChannels are the session.
            self._spawn(self.end(None, "DATA-CHANNEL-CLOSED", initiator="lost"))

    def _dc_open(self, label: str) -> Optional[DataChannelState]:
        st = self.dc_by_label.get(label)
        if st is None or not st.opened or st.closed:
            return None
        return st

    def send_dc(self, label: str, data: bytes, binary: bool) -> bool:
        st = self._dc_open(label)
        if st is None or self.peer is None:
            return False
        try:
            self.peer.dc_send(st.dc_id, data, binary)
        except Exception as e:
            log.warning("%s: send on DataChannel %s failed: %s", self.connection_id, label, e)
            return False
        st.messages_sent += 1
        st.bytes_sent += len(data)
        return True

    def send_dc_json(self, label: str, msg: "dict | str") -> bool:
        st = self._dc_open(label)
        if st is None:
            return False
        data = (msg if isinstance(msg, str) else strictjson.dumps(msg)).encode()
        if st.spec.compress:
            return self.send_dc(label, zlib.compress(data), True)
        return self.send_dc(label, data, False)

    # ----------------------------------------------------------- outgoing routes
    def _send_routed(self, label: str, msg: "dict | str") -> bool:
        if self.switched and self.send_dc_json(label, msg):
            return True
        return self.send_ws(msg)

    def send_signaling(self, msg: dict) -> bool:
        return self._send_routed("signaling", msg)

    def send_notify(self, msg: "dict | str") -> bool:
        if not self.signaling_notify:
            return False
        return self._send_routed("notify", msg)

    def send_push(self, data: Any) -> bool:
        return self._send_routed("push", {"type": "push", "data": data})

    # ------------------------------------------------------------ descriptions
    def notify_info(self) -> dict:
        p = self.params
        minutes = int((time.time() - (self.established_time or self.created_time)) // 60)
        out = {
            "role": p.role,
            "channel_id": p.channel_id,
            "session_id": self.session_id,
            "client_id": self.client_id,
            "bundle_id": self.bundle_id,
            "connection_id": self.connection_id,
            "audio": p.audio,
            "video": p.video,
            "minutes": minutes,
            "turn_transport_type": "udp",
        }
        if p.signaling_notify_metadata is not None:
            out["metadata"] = p.signaling_notify_metadata
        if p.spotlight_number is not None:
            out["spotlight_number"] = p.spotlight_number
        return out

    def notify_entry(self) -> dict:
        """This connection as an element of another connection's ``data`` list."""
        out = {
            "connection_id": self.connection_id,
            "client_id": self.client_id,
            "bundle_id": self.bundle_id,
            "role": self.role,
        }
        if self.params.signaling_notify_metadata is not None:
            out["metadata"] = self.params.signaling_notify_metadata
        return out

    def api_info(self) -> dict:
        """The connection object of ``ListChannelConnections``."""
        p = self.params
        out = {
            "channel_id": p.channel_id,
            "connection_id": self.connection_id,
            "session_id": self.session_id,
            "client_id": self.client_id,
            "bundle_id": self.bundle_id,
            "role": p.role,
            "audio": p.audio,
            "video": p.video,
            "simulcast": bool(p.simulcast),
            "spotlight": bool(p.spotlight),
            "multistream": True,
            "data_channel_signaling": p.data_channel_signaling,
            "ignore_disconnect_websocket": p.ignore_disconnect_websocket,
            "created_time": int(self.created_time),
            "created_timestamp": auth.iso_time(self.created_time),
            "state": self.state,
        }
        if p.video:
            out["video_codec_type"] = p.video_codec.name
        if p.audio:
            out["audio_codec_type"] = "OPUS"
        if p.signaling_notify_metadata is not None:
            out["signaling_notify_metadata"] = p.signaling_notify_metadata
        return out

    def stats(self) -> list:
        """W3C-shaped stats objects for ``GetStatsConnection`` (server-side view)."""
        ts = time.time() * 1000.0
        out = [{
            "id": f"P{self.connection_id}",
            "type": "peer-connection",
            "timestamp": ts,
            "dataChannelsOpened": sum(1 for s in self.dcs.values() if s.opened),
            "dataChannelsClosed": sum(1 for s in self.dcs.values() if s.closed),
            "connectionState": ["new", "connecting", "connected", "disconnected",
                                "failed", "closed"][self.pc_state]
            if 0 <= self.pc_state <= 5 else "unknown",
        }]
        for st in self.dcs.values():
            out.append({
                "id": f"D{st.dc_id}",
                "type": "data-channel",
                "timestamp": ts,
                "label": st.spec.label,
                "protocol": st.spec.protocol or "",
                "dataChannelIdentifier": st.dc_id,
                "state": "closed" if st.closed else ("open" if st.opened else "connecting"),
                "messagesSent": st.messages_sent,
                "bytesSent": st.bytes_sent,
                "messagesReceived": st.messages_received,
                "bytesReceived": st.bytes_received,
                "messagesDropped": st.messages_dropped,
            })
        for kind, mid in self.upstream.items():
            packets, octets = self._rtp_counters(self.upstream_tracks.get(kind))
            out.append({"id": f"IT{mid}", "type": "inbound-rtp", "timestamp": ts,
                        "kind": kind, "mid": mid, "ssrc": self.out_ssrc[kind],
                        "packetsReceived": packets, "bytesReceived": octets})
        for dt in self.down_tracks.values():
            packets, octets = self._rtp_counters(dt.track_id)
            out.append({"id": f"OT{dt.mid}", "type": "outbound-rtp", "timestamp": ts,
                        "kind": dt.kind, "mid": dt.mid, "ssrc": self._peer_ssrc(dt),
                        "remoteConnectionId": dt.sender_id,
                        "packetsSent": packets, "bytesSent": octets})
        return out

    def _rtp_counters(self, track: Optional[int]) -> tuple:
        """(packets, bytes) the forwarder counted on ``track`` (RTP, headers included)."""
        if track is None or self.peer is None or self.peer.closed:
            return (0, 0)
        try:
            return self.peer.rtp_counters(track)
        except Exception:  # the peer went away meanwhile
            return (0, 0)

    def _peer_ssrc(self, dt: DownTrack) -> Optional[int]:
        s = self.channel.sessions.get(dt.sender_id) if self.channel else None
        return s.out_ssrc[dt.kind] if s is not None else None

    # ------------------------------------------------------------------ ending
    async def end(self, code: Optional[int], reason: str, *, initiator: str = "server") -> None:
        """Ends the session once (idempotent). ``initiator``: server | client | lost | peer.

        server: ``close`` on DC ``signaling`` when the WebSocket is gone or ignored, WS close
        ``code``/``reason`` first, then the DataChannels. client (``disconnect``): the
        DataChannels, then WS close 1000 ``TYPE-DISCONNECT``. lost: nothing left to tell.
        """
        if self.state in (ENDING, CLOSED):
            return
        was_established = self.state == ESTABLISHED
        had_peer = self.peer is not None
        self.state = ENDING
        self.end_code, self.end_reason = code, reason
        self._cancel_timers()
        if self.params is not None and self.channel is not None:
            self.core.channels.leave(self, was_established)
        log.info("%s: ending (%s %s, by %s)", self.connection_id, code, reason, initiator)

        if self.negotiating and self.remote_set and initiator != "lost":
            # A re-offer is outstanding. Let the client answer it before its transports go:
            # sora_sdk (C++) writes its re-answer to the WebSocket even while that is being
            # closed, and crashes there.
            try:
                await asyncio.wait_for(self._answer_seen.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        open_dcs = [st for st in self.dcs.values() if st.opened and not st.closed]
        if initiator in ("server", "peer"):
            if (self.switched and self.params.ignore_disconnect_websocket or
                    self.switched and not self.ws_open):
                self.send_dc_json("signaling", {"type": "close", "code": code or CLOSE_NORMAL,
                                                "reason": reason})
            if code is not None:
                self._ws_close(code, reason)
        for st in open_dcs:
            try:
                self.peer.dc_close(st.dc_id)
            except Exception:
                pass
        if initiator == "client" and code is not None:
            self._ws_close(code, reason)
        if initiator == "lost" and self.ws_open:
            self._ws_close(CLOSE_GOING_AWAY, reason)

        if open_dcs and initiator != "lost":
            # libdatachannel reports a DataChannel closed as soon as we close it, but the
            # stream resets (and a `close` message queued before them) still have to reach
            # the client. A client closes its peer connection once all its DataChannels
            # are closed; wait for that (bounded) before closing ours.
            try:
                await asyncio.wait_for(self._pc_gone.wait(), DC_CLOSE_GRACE)
            except asyncio.TimeoutError:
                log.debug("%s: client kept its peer connection open", self.connection_id)
        if self.ws_open or (self._writer is not None and not self._writer.done()):
            try:
                await asyncio.wait_for(self._ws_closed.wait(), 6)
            except asyncio.TimeoutError:
                pass
        if had_peer or self.peer is not None:
            peer = self.peer
            self.core.peerloop.unregister(peer.id)
            await asyncio.get_running_loop().run_in_executor(None, peer.close_and_destroy)
        self.state = CLOSED
        self.closed.set()
        self.core.sessions.discard(self)
        log.info("%s: closed", self.connection_id)


def _with_request(requests: dict, value: Any, sender: Optional[str]) -> dict:
    """``requests`` (sender connection_id, None for every sender -> value) after a request
    for one sender, or for all (which replaces the per-sender ones); a None value resets."""
    if sender is None:
        return {} if value is None else {None: value}
    out = {k: v for k, v in requests.items() if k != sender}
    if value is not None:
        out[sender] = value
    return out

