"""Audio streaming (../shared/sora-protocol.md §7, docs/audio-streaming.md): per Sora
session (a channel from its first connection to its last), the Opus of every publisher with
a language code goes to a gateway over HTTP/2, and what the gateway answers is pushed to
the subscribed connections.

The media never passes through here: each publisher's audio track is handed to the shim
(``Peer.stream_audio``), which takes the packets off the forwarding plane and runs the
HTTP/2 request. This module decides who is streamed and when, and turns the gateway's
result lines (events, a few per utterance) into pushes.

Who is streamed, as Sora's tables say: with ``audio_streaming`` on (session webhook reply
or ``StartAudioStreaming``), every sendrecv/sendonly connection with audio and a language
code; with ``audio_streaming_auto`` as well, only while at least one connection is
subscribed to result pushes.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from .auth import now_iso
from .peerloop import (AUDIO_RETRYING, AUDIO_STOPPED, AUDIO_STREAMING, AUDIO_WARNING,
                       EV_AUDIO_STREAM_RESULT, EV_AUDIO_STREAM_STATE, PeerClosed,
                       audio_stream_counters, stop_audio_stream)

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel
    from .session import Session

log = logging.getLogger("sora_ffi.devserver")

@dataclass
class GatewayConfig:
    """The server's audio streaming settings (DevServerConfig's ``audio_streaming_*``)."""

    url: str
    framed: bool = False
    tls_cert: Optional[str] = None  # PEM files
    tls_key: Optional[str] = None
    ca: Optional[str] = None
    keepalive: float = 5.0  # s

    def native(self) -> dict:
        """What ``sora_peer_stream_audio`` takes, less the per-connection headers."""
        cfg: dict = {"url": self.url, "framed": self.framed,
                     "keepalive_ms": round(self.keepalive * 1000)}
        for key, path in (("client_cert", self.tls_cert), ("client_key", self.tls_key),
                          ("ca_cert", self.ca)):
            if path:
                with open(path, encoding="utf-8") as f:
                    cfg[key] = f.read()
        return cfg


class StreamingError(Exception):
    """An API request that the session's streaming state refuses (400)."""


class SessionStreaming:
    """One Sora session's audio streaming: the flags, the subscriptions, the streams."""

    def __init__(self, channel: "Channel", core) -> None:
        self.channel = channel
        self.core = core
        cfg = core.config
        self.gateway: Optional[GatewayConfig] = cfg.audio_streaming_gateway()
        self.default_subscribe: bool = cfg.default_audio_streaming_result_push
        self.enabled = False
        self.auto = False
        #: StartAudioStreaming / StopAudioStreaming was used: a session webhook reply that
        #: comes later does not undo it
        self.decided_by_api = False
        self.started_timestamp: Optional[str] = None
        #: connection_id -> subscribed to result pushes; only members (a leaving connection
        #: is removed by member_left, the API only names members)
        self.subscribed: dict = {}
        #: connection_id -> native stream id
        self.streams: dict = {}
        self._native_config: Optional[dict] = None
        #: called with (event_type, data) for the audio-streaming.* webhooks
        self.on_webhook: Optional[Callable[[str, dict], None]] = None

    # ------------------------------------------------------------------- state
    def active(self) -> bool:
        """Whether publishers are streamed now (the tables' "gateway connection" column)."""
        if not self.enabled:
            return False
        return not self.auto or self.subscriber_count() > 0

    def subscriber_count(self) -> int:
        return sum(self.subscribed.values())

    @staticmethod
    def streamable(s: "Session") -> bool:
        p = s.params
        return (p is not None and p.sends and p.audio and p.audio_streaming_language_code is not None
                and "audio" in s.upstream_tracks and s.state not in ("ending", "closed"))

    # ---------------------------------------------------------------- members
    def member_joined(self, s: "Session") -> None:
        """``s`` has its tracks (its offer is made): subscribed by default, and streamed
        from its first packet if it should be."""
        self.subscribed.setdefault(s.connection_id, self.default_subscribe)
        self.reconcile()

    def member_left(self, s: "Session") -> None:
        self.subscribed.pop(s.connection_id, None)
        self._stop_stream(s.connection_id)
        self.reconcile()

    def reconcile(self) -> None:
        """Starts the streams that should run and stops those that should not."""
        if not self.active():
            for cid in list(self.streams):
                self._stop_stream(cid)
            return
        for s in list(self.channel.sessions.values()):
            if s.connection_id not in self.streams and self.streamable(s):
                self._start_stream(s)

    # ------------------------------------------------------------ enabling
    def enable(self, auto: bool) -> None:
        """Streaming on for the session (session webhook reply, or the API with auto off)."""
        self.enabled, self.auto = True, auto
        self.started_timestamp = now_iso()
        if self.on_webhook is not None:
            self.on_webhook("audio-streaming.started", {
                "audio_streaming_auto": auto,
                "audio_streaming_started_timestamp": self.started_timestamp})
        self.reconcile()

    def disable(self, *, ending: bool = False) -> None:
        """Streaming off: the API's StopAudioStreaming (subscriptions back to the default)
        or the session's end."""
        if not self.enabled:
            return
        was_auto = self.auto
        self.enabled = self.auto = False
        if not ending:
            for cid in self.subscribed:
                self.subscribed[cid] = self.default_subscribe
        self.reconcile()
        if self.on_webhook is not None:
            self.on_webhook("audio-streaming.stopped", {
                "audio_streaming_auto": was_auto,
                "audio_streaming_started_timestamp": self.started_timestamp,
                "audio_streaming_stopped_timestamp": now_iso()})

    # ------------------------------------------------------------------- API
    def api_start(self) -> None:
        if self.gateway is None:
            raise StreamingError("audio streaming is not configured (no audio_streaming_url)")
        if self.auto:
            raise StreamingError("audio_streaming_auto is on: StartAudioStreaming cannot be used")
        if self.enabled:
            raise StreamingError("audio streaming has already started")
        self.decided_by_api = True
        self.enable(auto=False)

    def api_stop(self) -> None:
        if self.auto:
            raise StreamingError("audio_streaming_auto is on: StopAudioStreaming cannot be used "
                                 "(TerminateSession ends such a session)")
        if not self.enabled:
            raise StreamingError("audio streaming has not started")
        self.decided_by_api = True
        self.disable()

    def api_subscribe(self, connection_id: str, on: bool) -> None:
        self.subscribed[connection_id] = on
        self.reconcile()

    def api_list(self) -> list:
        return [{"connection_id": cid, "subscribe": on} for cid, on in self.subscribed.items()]

    # --------------------------------------------------------------- streams
    def _start_stream(self, s: "Session") -> None:
        assert self.gateway is not None
        p = s.params
        headers = {
            "sora-channel-id": p.channel_id,
            "sora-connection-id": s.connection_id,
            "sora-session-id": s.session_id,
            "sora-audio-streaming-language-code": p.audio_streaming_language_code,
        }
        if s.client_id:
            headers["sora-client-id"] = s.client_id
        try:
            if self._native_config is None:
                self._native_config = self.gateway.native()
            stream = s.peer.stream_audio(s.upstream_tracks["audio"], self.core.peerloop.queue,
                                         {**self._native_config, "headers": headers})
        except PeerClosed:
            return
        except Exception:
            log.exception("%s: cannot stream its audio", s.connection_id)
            return
        self.streams[s.connection_id] = stream
        cid = s.connection_id
        self.core.peerloop.register(stream, lambda ev: self._on_event(cid, stream, ev))
        log.info("%s: audio streaming to %s", cid, self.gateway.url)

    def _stop_stream(self, connection_id: str) -> None:
        stream = self.streams.pop(connection_id, None)
        if stream is None:
            return
        try:
            stop_audio_stream(stream)
        except Exception:  # already ended with its track
            log.debug("audio stream %s: already ended", stream)
        # the last state event (stopped) may still come: keep the route until then

    def counters(self, connection_id: str) -> Optional[tuple]:
        """(packets, Opus bytes, dropped) of a connection's running stream."""
        stream = self.streams.get(connection_id)
        return None if stream is None else audio_stream_counters(stream)

    def _on_event(self, connection_id: str, stream: int, ev) -> None:
        if ev.type == EV_AUDIO_STREAM_RESULT:
            self._deliver(connection_id, ev.text or "")
        elif ev.type == EV_AUDIO_STREAM_STATE:
            if ev.a == AUDIO_STREAMING:
                log.info("%s: the audio streaming gateway answered", connection_id)
            elif ev.a == AUDIO_RETRYING:
                log.warning("%s: audio streaming: %s", connection_id, ev.text)
            elif ev.a == AUDIO_WARNING:
                log.warning("%s: audio streaming: %s", connection_id, ev.text)
            elif ev.a == AUDIO_STOPPED:
                self.core.peerloop.unregister(stream)

    def _deliver(self, connection_id: str, line: str) -> None:
        """One result line (a JSON object, checked natively) to every subscriber."""
        if not self.active():
            return
        try:
            result = json.loads(line)
        except ValueError:  # pragma: no cover - the shim passes JSON objects only
            return
        if isinstance(result, dict) and result.get("type") == "error":
            log.warning("%s: the audio streaming gateway reports an error: %s", connection_id,
                        result.get("reason"))
        data = {"type": "audio_streaming_result", "connection_id": connection_id, "result": result}
        for cid, on in self.subscribed.items():
            s = self.channel.sessions.get(cid)
            if on and s is not None and s.state in ("offering", "connecting", "established"):
                s.send_push(data)

