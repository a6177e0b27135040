"""`Sora`: the factory for connections and media sources, and the owner of the event
dispatcher of its connections and their sinks."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from ._connection import SoraConnection
from ._dispatch import Dispatcher
from ._enums import SoraDegradationPreference
from ._log import start_log_pump
from ._source import SoraAudioSource, SoraVideoSource
from ._track import SoraTrackInterface
from ._validate import connection_config

__all__ = ["Sora"]


class Sora:
    """Creates connections and media sources. Each Sora has one event queue and one
    dispatcher thread (started with its first connection) on which all callbacks of its
    connections and of the sinks on their tracks run, one at a time."""

    def __init__(self, openh264: Optional[str] = None, video_codec_preference: Any = None) -> None:
        if openh264 is not None:
            if not isinstance(openh264, (str, os.PathLike)):
                raise TypeError(f"openh264 must be a str path, not {type(openh264).__name__}")
            openh264 = os.fspath(openh264)
            if not isinstance(openh264, str):
                raise TypeError("openh264 must be a str path, not a bytes path")
            if not os.path.isfile(openh264):
                raise ValueError(f"openh264 must be the path of an existing file: {openh264!r}")
        if video_codec_preference is not None:
            raise TypeError("video_codec_preference must be None: sora_ffi does not support "
                            "SoraVideoCodecPreference yet")
        self._openh264: Optional[str] = openh264  # for the codec layer
        self._video_codec_preference = video_codec_preference
        self._dispatcher = Dispatcher()
        start_log_pump()  # native warnings reach Python's logging from the first Sora on

    def create_connection(
        self,
        signaling_urls: list[str],
        role: str,
        channel_id: str,
        client_id: Optional[str] = None,
        bundle_id: Optional[str] = None,
        metadata: Optional[dict] = None,
        signaling_notify_metadata: Optional[dict] = None,
        audio_source: Optional[SoraTrackInterface] = None,
        video_source: Optional[SoraTrackInterface] = None,
        audio_frame_transformer: Any = None,
        video_frame_transformer: Any = None,
        audio: Optional[bool] = None,
        video: Optional[bool] = None,
        audio_codec_type: Optional[str] = None,
        video_codec_type: Optional[str] = None,
        video_bit_rate: Optional[int] = None,
        audio_bit_rate: Optional[int] = None,
        video_vp9_params: Optional[dict] = None,
        video_av1_params: Optional[dict] = None,
        video_h264_params: Optional[dict] = None,
        audio_opus_params: Optional[dict] = None,
        simulcast: Optional[bool] = None,
        spotlight: Optional[bool] = None,
        spotlight_number: Optional[int] = None,
        simulcast_rid: Optional[str] = None,
        spotlight_focus_rid: Optional[str] = None,
        spotlight_unfocus_rid: Optional[str] = None,
        forwarding_filter: Optional[dict] = None,
        forwarding_filters: Optional[list[dict]] = None,
        data_channels: Optional[list[dict]] = None,
        data_channel_signaling: Optional[bool] = None,
        ignore_disconnect_websocket: Optional[bool] = None,
        data_channel_signaling_timeout: Optional[int] = None,
        disconnect_wait_timeout: Optional[int] = None,
        websocket_close_timeout: Optional[int] = None,
        websocket_connection_timeout: Optional[int] = None,
        audio_streaming_language_code: Optional[str] = None,
        insecure: Optional[bool] = None,
        client_cert: Optional[bytes] = None,
        client_key: Optional[bytes] = None,
        ca_cert: Optional[bytes] = None,
        proxy_url: Optional[str] = None,
        proxy_username: Optional[str] = None,
        proxy_password: Optional[str] = None,
        proxy_agent: Optional[str] = None,
        degradation_preference: Optional[SoraDegradationPreference] = None,
        user_agent: Optional[str] = None,
    ) -> SoraConnection:
        """Validates every argument (TypeError / ValueError) and creates a connection; nothing
        touches the network before `connect()`. Timeouts are in seconds, bit rates in kbps.

        `audio_source` / `video_source` are what `create_audio_source` / `create_video_source`
        return (the connection keeps them alive); a source may feed several connections.
        With a `video_source`, `video_codec_type` must be VP8 or VP9 (what this build
        encodes).

        `degradation_preference` says what the video sender gives up when encoding cannot
        keep up with the source (CPU overuse, measured as encode time per frame against the
        frame interval, as libwebrtc does): MAINTAIN_FRAMERATE lowers the resolution (3/4
        per dimension a step, down to 320x180), MAINTAIN_RESOLUTION the frame rate (2/3 a
        step, down to 10 fps), BALANCED the resolution down to 640x480, then both (15 fps,
        then 10 fps at 320x240 and below), DISABLED nothing. Steps are taken back when the
        load falls. None is MAINTAIN_FRAMERATE (what libwebrtc, and so the official SDK,
        does for a camera track). `get_stats()` shows it on the video outbound-rtp:
        `qualityLimitationReason` ("cpu" / "none"), `qualityLimitationResolutionChanges`,
        `qualityLimitationDurations`, `frameWidth` / `frameHeight`, `framesPerSecond`."""
        options = dict(locals())  # exactly the parameters: this is the first statement
        for name in ("self", "signaling_urls", "role", "channel_id"):
            del options[name]
        config = connection_config(signaling_urls, role, channel_id, options)
        # The config names the sources by native id; the connection holds the Python objects
        # (and so the native sources) for as long as it lives.
        sources = tuple(s for s in (audio_source, video_source) if s is not None)
        return SoraConnection(self._dispatcher, json.dumps(config, allow_nan=False), sources=sources)

    def create_audio_source(self, channels: int, sample_rate: int) -> SoraAudioSource:
        """A source of `channels` x `sample_rate` Hz int16 audio for `create_connection(
        audio_source=...)`; what it is given is converted for sending (Opus, 48 kHz).
        channels 1..8, sample_rate 8000..192000."""
        return SoraAudioSource(channels, sample_rate)

    def create_video_source(self) -> SoraVideoSource:
        """A source of BGR frames for `create_connection(video_source=...)` (sent as VP8 or VP9)."""
        return SoraVideoSource()
