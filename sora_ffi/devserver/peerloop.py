"""The dev server's media plane handles: one SoraPeer per client, one event queue for all.

* :class:`Peer` wraps a ``SoraPeer*`` with a lock, so that a call from the asyncio thread
  and the teardown (which runs in a worker thread, ``sora_peer_close`` may take a moment)
  can never use a destroyed handle. After :meth:`Peer.close_and_destroy` every call raises
  :class:`PeerClosed` (a :class:`ShimError`-like error) instead of touching freed memory.
* :class:`PeerLoop` is one thread blocked in ``sora_event_queue_wait`` (the GIL is released
  there); it hands each event to the asyncio loop with ``call_soon_threadsafe`` and routes
  it by ``event.source`` (the peer id) to the session that registered it. Native threads
  never wait on Python: they only push into the queue.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Callable, Optional

from .._log import start_log_pump
from .._native import EventQueue, ShimError, check, ffi, lib, take_string

log = logging.getLogger("sora_ffi.devserver")


def _const(name: str, default: int) -> int:
    return getattr(lib, name, default)


EV_PEER_LOCAL_DESCRIPTION = _const("SORA_EVENT_PEER_LOCAL_DESCRIPTION", 100)
EV_PEER_LOCAL_CANDIDATE = _const("SORA_EVENT_PEER_LOCAL_CANDIDATE", 101)
EV_PEER_STATE = _const("SORA_EVENT_PEER_STATE", 102)
EV_PEER_GATHERING_STATE = _const("SORA_EVENT_PEER_GATHERING_STATE", 103)
EV_PEER_DC_OPEN = _const("SORA_EVENT_PEER_DC_OPEN", 104)
EV_PEER_DC_MESSAGE = _const("SORA_EVENT_PEER_DC_MESSAGE", 105)
EV_PEER_DC_CLOSED = _const("SORA_EVENT_PEER_DC_CLOSED", 106)
EV_PEER_TRACK = _const("SORA_EVENT_PEER_TRACK", 107)
EV_PEER_DATA_CHANNEL = _const("SORA_EVENT_PEER_DATA_CHANNEL", 108)
EV_AUDIO_STREAM_RESULT = _const("SORA_EVENT_AUDIO_STREAM_RESULT", 21)
EV_AUDIO_STREAM_STATE = _const("SORA_EVENT_AUDIO_STREAM_STATE", 22)
AUDIO_STREAMING, AUDIO_RETRYING, AUDIO_STOPPED, AUDIO_WARNING = 1, 2, 3, 4

PC_NEW, PC_CONNECTING, PC_CONNECTED, PC_DISCONNECTED, PC_FAILED, PC_CLOSED = range(6)
GATHERING_COMPLETE = 2


class PeerClosed(ShimError):
    """The peer was already closed and destroyed."""

    def __init__(self, message: str = "peer is closed"):
        super().__init__(-4, message)  # SORA_ERR_CLOSED


def _cstr(s: Optional[str]):
    return ffi.NULL if s is None else s.encode("utf-8")


class Peer:
    """Thread-safe owner of one ``SoraPeer*``."""

    def __init__(self, queue: EventQueue, config: dict):
        out = ffi.new("SoraPeer **")
        check(lib.sora_peer_new(queue.ptr, json.dumps(config).encode(), out))
        self._ptr = out[0]
        self.id = int(lib.sora_peer_id(self._ptr))
        self._lock = threading.Lock()
        self._closing = False

    @property
    def closed(self) -> bool:
        return self._closing

    def _call(self, fn: Callable, *args):
        if self._closing:
            raise PeerClosed()
        with self._lock:
            if self._ptr is None:
                raise PeerClosed()
            return fn(self._ptr, *args)

    def add_track(self, media_sdp: str) -> int:
        out = ffi.new("int32_t *")
        self._call(lambda p: check(lib.sora_peer_add_track(p, media_sdp.encode(), out)))
        return int(out[0])

    def replace_track(self, track: int, media_sdp: str) -> int:
        """New content for ``track``'s section (same mid); forwarding into it stops. Returns
        the id that names the section from now on."""
        out = ffi.new("int32_t *")
        self._call(lambda p: check(lib.sora_peer_replace_track(p, track, media_sdp.encode(), out)))
        return int(out[0])

    def remove_track(self, track: int) -> None:
        self._call(lambda p: check(lib.sora_peer_remove_track(p, track)))

    def create_data_channel(self, label: str, options: Optional[dict] = None) -> int:
        out = ffi.new("int32_t *")
        opts = json.dumps(options or {}).encode()
        self._call(lambda p: check(lib.sora_peer_create_data_channel(p, label.encode(), opts, out)))
        return int(out[0])

    def set_local_description(self, sdp_type: Optional[str] = "offer") -> None:
        self._call(lambda p: check(lib.sora_peer_set_local_description(p, _cstr(sdp_type))))

    def local_description(self) -> str:
        out = ffi.new("char **")
        self._call(lambda p: check(lib.sora_peer_local_description(p, out)))
        return take_string(out[0]) or ""

    def set_remote_description(self, sdp: str, sdp_type: str) -> None:
        self._call(lambda p: check(
            lib.sora_peer_set_remote_description(p, sdp.encode(), sdp_type.encode())))

    def add_remote_candidate(self, candidate: str, mid: Optional[str]) -> None:
        self._call(lambda p: check(
            lib.sora_peer_add_remote_candidate(p, candidate.encode(), _cstr(mid))))

    def dc_send(self, dc: int, data: bytes, binary: bool) -> None:
        self._call(lambda p: check(lib.sora_peer_dc_send(p, dc, data, len(data), 1 if binary else 0)))

    def dc_close(self, dc: int) -> None:
        self._call(lambda p: check(lib.sora_peer_dc_close(p, dc)))

    def forward_track(self, src_track: int, dst: "Peer", dst_track: int, enable: bool = True) -> None:
        """Forwards this peer's receiving track natively to ``dst``'s sending track (RTP
        down, RTCP feedback back up); media never reaches Python."""
        def call(p):
            with dst._lock:
                if dst._ptr is None:
                    raise PeerClosed()
                check(lib.sora_peer_forward_track(p, src_track, dst._ptr, dst_track, 1 if enable else 0))
        self._call(call)

    def set_track_mid(self, track: int, ext_id: int, mid: str) -> None:
        """RTP forwarded onto our sending ``track`` carries ``mid`` (its m-section's) in the
        MID header extension ``ext_id`` instead of the sender's own mid."""
        self._call(lambda p: check(lib.sora_peer_set_track_mid(p, track, ext_id, mid.encode())))

    def _counter_pair(self, fn: Callable, track: int) -> tuple:
        """``fn(peer, track, &a, &b)`` (a call that writes two uint64 counters): (a, b)."""
        def call(p):
            a, b = ffi.new("uint64_t *"), ffi.new("uint64_t *")
            check(fn(p, track, a, b))
            return int(a[0]), int(b[0])
        return self._call(call)

    def rtp_counters(self, track: int) -> tuple:
        """(packets, bytes) of RTP received on / forwarded onto ``track`` since counting
        started (the first call starts it and returns zeros)."""
        return self._counter_pair(lib.sora_peer_track_rtp_counters, track)

    def request_keyframe(self, track: int) -> bool:
        """Sends a PLI to the client sending on ``track``; False before any media arrived."""
        return bool(self._call(lambda p: check(lib.sora_peer_request_keyframe(p, track))))

    def set_track_bitrate(self, track: int, bps: int) -> None:
        """Announces ``bps`` by REMB to the client sending on ``track`` (at its first RTP
        packet, then about once a second while RTP flows); 0 stops it."""
        self._call(lambda p: check(lib.sora_peer_set_track_bitrate(p, track, max(0, int(bps)))))

    def set_transport_cc(self, tracks: list, ext_id: int) -> None:
        """Our receiving ``tracks`` (one transport) carry transport-wide sequence numbers in
        extension ``ext_id``: their arrivals go back to the sender as transport-cc feedback."""
        arr = ffi.new("int32_t[]", list(tracks))
        self._call(lambda p: check(lib.sora_peer_set_transport_cc(p, arr, len(tracks), ext_id)))

    def set_track_voice_meter(self, track: int, ext_id: int, voice_level: int) -> None:
        """Our receiving audio ``track`` carries ``ssrc-audio-level`` as ``ext_id``: its
        packets are counted, those at or above -``voice_level`` dBov as voice."""
        self._call(lambda p: check(lib.sora_peer_set_track_voice_meter(p, track, ext_id, voice_level)))

    def voice_activity(self, track: int) -> tuple:
        """(packets with a level, voiced packets) of ``track`` since its voice meter started."""
        return self._counter_pair(lib.sora_peer_track_voice_activity, track)

    def set_track_simulcast(self, track: int, rid_ext_id: int, codec: str) -> None:
        """Our receiving ``track`` carries simulcast (layers named by the RID extension
        ``rid_ext_id``, coded with ``codec``): each track it is forwarded to then gets the
        one layer :meth:`select_layer` chose for it."""
        self._call(lambda p: check(lib.sora_peer_set_track_simulcast(p, track, rid_ext_id, codec.encode())))

    def select_layer(self, track: int, rid: str, ssrc: int) -> None:
        """Our sending ``track`` forwards layer ``rid`` ("r0".."r2", or the nearest that
        flows; "none": no video) of its simulcast source as one stream with SSRC ``ssrc``."""
        self._call(lambda p: check(lib.sora_peer_select_layer(p, track, rid.encode(), ssrc)))

    def forwarded_layer(self, track: int) -> Optional[str]:
        """The rid going out on our sending ``track`` now (None: none)."""
        layer = self._call(lambda p: check(lib.sora_peer_forwarded_layer(p, track)))
        return f"r{layer}" if 0 <= layer <= 2 else None

    def stream_audio(self, track: int, queue: EventQueue, config: dict) -> int:
        """Streams the Opus our receiving audio ``track`` gets to an HTTP/2 gateway
        (``sora_peer_stream_audio``; ``config`` as there); its events go to ``queue`` with
        the returned stream id as source. Stop it with :func:`stop_audio_stream`."""
        out = ffi.new("uint64_t *")
        self._call(lambda p: check(lib.sora_peer_stream_audio(
            p, track, queue.ptr, json.dumps(config).encode(), out)))
        return int(out[0])

    def close_and_destroy(self) -> None:
        """Closes and frees the peer; idempotent; may block briefly (call off the loop)."""
        self._closing = True
        with self._lock:
            ptr, self._ptr = self._ptr, None
            if ptr is None:
                return
            try:
                lib.sora_peer_close(ptr)
            finally:
                lib.sora_peer_destroy(ptr)


def stop_audio_stream(stream: int) -> None:
    """Ends a stream's request body; no new request is made. A stream whose track went
    with its peer has ended already: nothing to do then."""
    check(lib.sora_audio_stream_stop(stream))


def audio_stream_counters(stream: int) -> tuple:
    """(packets, Opus bytes) handed to the gateway and packets dropped, of a stream."""
    p, b, d = ffi.new("uint64_t *"), ffi.new("uint64_t *"), ffi.new("uint64_t *")
    check(lib.sora_audio_stream_counters(stream, p, b, d))
    return int(p[0]), int(b[0]), int(d[0])


class PeerLoop:
    """One thread that waits on the shared event queue and feeds the asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        start_log_pump()  # the shim's warnings (the forwarder's, say) reach logging
        self.queue = EventQueue(0)
        self._routes: dict = {}
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name="sora-devserver-peer-events", daemon=True)
        self._thread.start()

    # Routing table: touched only on the asyncio thread.
    def register(self, peer_id: int, callback: Callable) -> None:
        self._routes[peer_id] = callback

    def unregister(self, peer_id: int) -> None:
        self._routes.pop(peer_id, None)

    def _run(self) -> None:
        while True:
            try:
                ev = self.queue.wait(500)
            except EOFError:
                return
            except Exception:  # pragma: no cover - defensive: never kill the thread silently
                log.exception("event queue wait failed")
                return
            if ev is None:
                continue
            try:
                self._loop.call_soon_threadsafe(self._dispatch, ev)
            except RuntimeError:  # loop closed
                return

    def _dispatch(self, ev) -> None:
        cb = self._routes.get(ev.source)
        if cb is None:
            return
        try:
            cb(ev)
        except Exception:
            log.exception("peer event handler failed (type=%s)", ev.type)

    def close(self) -> None:
        """Stops the thread and frees the queue (after every peer is destroyed)."""
        if self._stopped:
            return
        self._stopped = True
        self.queue.close()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.queue.destroy()
