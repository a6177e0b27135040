"""Session webhooks (Sora's ``session.created`` / ``session.destroyed``) and the
``audio-streaming.started`` / ``.stopped`` webhooks, for one Sora session (a channel from
its first connection to its last).

Each session's webhooks go out one at a time, in order: ``session.created`` first (its
reply may turn audio streaming on, and ``audio-streaming.started`` follows it), and
``session.destroyed`` last. A failing webhook is logged; the session goes on.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Optional

from . import strictjson
from .auth import iso_time, now_iso
from .httpclient import HttpClientError, post_json

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel

log = logging.getLogger("sora_ffi.devserver")


def audio_streaming_flags(reply: object) -> Optional[bool]:
    """From a ``session.created`` reply: None (streaming stays off) or whether it is auto.
    ``audio_streaming_auto`` without ``audio_streaming: true`` is an invalid pair that Sora
    ignores whole."""
    if not isinstance(reply, dict) or reply.get("audio_streaming") is not True:
        return None
    return reply.get("audio_streaming_auto") is True


class Sender:
    """The webhooks of one session, sent in order on the server's loop."""

    def __init__(self, core, ch: "Channel"):
        self.core = core
        self.ch = ch
        self.url: Optional[str] = core.config.session_webhook
        self._lock = asyncio.Lock()

    def body(self, event_type: str) -> dict:
        ch = self.ch
        return {
            "id": str(uuid.uuid4()),
            "type": event_type,
            "label": "sora_ffi devserver",
            "timestamp": now_iso(),
            "version": self.core.version,
            "node_name": "devserver@127.0.0.1",
            "session_id": ch.session_id,
            "channel_id": ch.channel_id,
            "multistream": True,
            "spotlight": any(s.params.spotlight for s in ch.sessions.values() if s.params),
            "created_time": int(ch.created_time),
            "created_timestamp": iso_time(ch.created_time),
            "total_connections": ch.total_connections,
            "max_connections": ch.max_connections,
        }

    def send_created(self) -> None:
        if self.url:
            self._spawn(self._created(self.body("session.created")))

    def send_destroyed(self) -> None:
        if self.url:
            self._spawn(self._post(self.body("session.destroyed")))

    def send_audio_streaming(self, event_type: str, data: dict) -> None:
        if self.url:
            self._spawn(self._post({**self.body(event_type), "data": data}))

    def _spawn(self, coro) -> None:
        task = self.core.spawn(coro)
        self.core.webhook_tasks.add(task)
        task.add_done_callback(self.core.webhook_tasks.discard)

    async def _created(self, body: dict) -> None:
        reply = await self._post(body)
        auto = audio_streaming_flags(reply)
        if auto is None:
            return
        st = self.ch.audio_streaming
        if self.core.channels.get(self.ch.channel_id) is not self.ch:
            return  # the session ended meanwhile
        if st.decided_by_api:
            log.info("session %s: the webhook's audio streaming flags come after the API's "
                     "Start/StopAudioStreaming: ignored", self.ch.session_id)
            return
        if st.gateway is None:
            log.warning("session %s: the webhook asks for audio streaming, but no "
                        "audio_streaming_url is configured", self.ch.session_id)
            return
        st.enable(auto=auto)

    async def _post(self, body: dict) -> object:
        """Sends one webhook (after those before it); returns the JSON reply, or None."""
        async with self._lock:
            try:
                payload = await post_json(self.url, body)
            except HttpClientError as e:
                log.warning("session webhook %s failed: %s", body["type"], e)
                return None
        if not payload.strip():
            return None
        try:
            return strictjson.loads(payload)
        except ValueError:
            log.warning("session webhook %s: the reply is not JSON", body["type"])
            return None

