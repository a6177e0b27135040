"""`Sora`: the factory for connections and media sources, and the owner of the event
dispatcher of its connections and their sinks."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

from ._codec import SoraVideoCodecPreference, _openh264_path, checked_preference
from ._connection import SoraConnection
from ._dispatch import Dispatcher
from ._enums import SoraDegradationPreference
from ._log import logger, start_log_pump
from ._encoded import SoraEncodedVideoSource
from ._source import SoraAudioSource, SoraVideoSource
from ._track import SoraTrackInterface
from ._transform import SoraAudioFrameTransformer, SoraVideoFrameTransformer
from ._trials import parse_field_trials
from ._validate import connection_config

__all__ = ["Sora"]


class Sora:
    """Creates connections and media sources. Each Sora has one event queue and one
    dispatcher thread (started with its first connection) on which all callbacks of its
    connections and of the sinks on their tracks run, one at a time."""

    def __init__(self, openh264: Optional[str] = None,
                 video_codec_preference: Optional[SoraVideoCodecPreference] = None,
                 force_i420_conversion: Optional[bool] = None,
                 field_trials: Optional[str] = None, *,
                 use_hardware_encoder: Optional[bool] = None) -> None:
        """`openh264`: path of Cisco's OpenH264 library for the CISCO_OPENH264 engine (it
        must exist; see `get_video_codec_capability`). `video_codec_preference`: which
        engine encodes and decodes each codec; checked here against the engines of this
        machine (`CodecPreferenceError`, a ValueError and RuntimeError, when one is
        missing) and enforced by every connection. `force_i420_conversion`: hand frames to
        encoders as I420 even where an engine takes a native format; every engine of this
        build takes I420, so frames are always converted. `field_trials`: libwebrtc field
        trials ("WebRTC-Name/Value/..."); those with an equivalent here are applied
        (WebRTC-Video-Pacing, WebRTC-Audio-OpusMinPacketLossRate), every other one is named
        in a warning (see `sora_ffi._trials`).
        `use_hardware_encoder` (the 2023-2024 API, keyword only): True asks for a
        hardware-first codec preference; this build has no hardware engine, so it warns and
        uses the internal engines."""
        if isinstance(openh264, bool):
            raise TypeError("Sora()'s first argument is now openh264 (a library path); the "
                            "2023-2024 use_hardware_encoder flag must be passed by keyword")
        openh264 = _openh264_path(openh264)
        if openh264 is not None and not os.path.isfile(openh264):
            raise ValueError(f"openh264 must be the path of an existing file: {openh264!r}")
        if force_i420_conversion is not None and not isinstance(force_i420_conversion, bool):
            raise TypeError("force_i420_conversion must be a bool or None, "
                            f"not {type(force_i420_conversion).__name__}")
        if use_hardware_encoder is not None:
            if not isinstance(use_hardware_encoder, bool):
                raise TypeError("use_hardware_encoder must be a bool or None")
            if use_hardware_encoder and video_codec_preference is None:
                logger.warning("Sora(use_hardware_encoder=True): no hardware video encoder is "
                               "available in this build or on this machine; using the "
                               "internal engines")
        self._tuning = parse_field_trials(field_trials)
        self._openh264: Optional[str] = openh264
        self._video_codecs = checked_preference(video_codec_preference, openh264)
        self._force_i420_conversion = bool(force_i420_conversion)
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
        audio_frame_transformer: Optional[SoraAudioFrameTransformer] = None,
        video_frame_transformer: Optional[SoraVideoFrameTransformer] = None,
        audio: Optional[bool] = None,
        video: Optional[bool] = None,
        audio_codec_type: Optional[str] = None,
        video_codec_type: Optional[str] = None,
        video_bit_rate: Optional[int] = None,
        audio_bit_rate: Optional[int] = None,
        video_vp9_params: Optional[dict] = None,
        video_av1_params: Optional[dict] = None,
        video_h264_params: Optional[dict] = None,
        video_h265_params: Optional[dict] = None,
        audio_opus_params: Optional[dict] = None,
        simulcast: Optional[bool] = None,
        spotlight: Optional[bool] = None,
        spotlight_number: Optional[int] = None,
        simulcast_rid: Optional[str] = None,
        simulcast_request_rid: Optional[str] = None,
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
        ping_timeout: Optional[float] = None,
        **removed: Any,
    ) -> SoraConnection:
        """Validates every argument (TypeError / ValueError) and creates a connection; nothing
        touches the network before `connect()`. Timeouts are in seconds, bit rates in kbps.

        `audio_source` / `video_source` are what `create_audio_source` / `create_video_source`
        return (the connection keeps them alive); a source may feed several connections.
        With a `video_source`, `video_codec_type` must be a codec this machine encodes: VP8,
        VP9, AV1, H264 (with `openh264`, or NVENC), H265 (NVENC only); a
        `SoraEncodedVideoSource` sends its own codec (H265 included), which `video_codec_type`
        may only repeat.

        `degradation_preference` says what the video sender gives up when encoding cannot
        keep up with the source (CPU overuse, measured as encode time per frame against the
        frame interval, as libwebrtc does): MAINTAIN_FRAMERATE lowers the resolution (3/4
        per dimension a step, down to 320x180), MAINTAIN_RESOLUTION the frame rate (2/3 a
        step, down to 10 fps), BALANCED the resolution down to 640x480, then both (15 fps,
        then 10 fps at 320x240 and below), DISABLED nothing. Steps are taken back when the
        load falls. None is MAINTAIN_FRAMERATE (what libwebrtc, and so the official SDK,
        does for a camera track). `get_stats()` shows it on the video outbound-rtp:
        `qualityLimitationReason` ("cpu" / "none"), `qualityLimitationResolutionChanges`,
        `qualityLimitationDurations`, `frameWidth` / `frameHeight`, `framesPerSecond`.

        `ping_timeout` (sora_ffi addition, seconds): the session ends with WEBSOCKET_ONERROR
        when the server's `ping`s stop (a dead server or a cut network) for this long, or
        for three of the longest gaps seen between two pings if that is longer (the
        server's interval is not known in advance; before the second ping, the time from
        the offer to the first stands for it); watched from the first ping on, while the
        WebSocket is open. None: only the peer connection failing ends it (ICE consent,
        about 30 s), as in the official SDK."""
        options = dict(locals())  # exactly the parameters: this is the first statement
        for name in ("self", "signaling_urls", "role", "channel_id", "removed"):
            del options[name]
        _reject_removed(removed)
        config = connection_config(signaling_urls, role, channel_id, options)
        if self._video_codecs is not None:
            config["video_codec_preference"] = self._video_codecs
            if not isinstance(video_source, SoraEncodedVideoSource):  # sent without an encoder
                _check_sendable(config, self._video_codecs)
        if self._openh264 is not None:
            config["openh264"] = self._openh264
        if self._tuning:
            config["tuning"] = self._tuning
        # The config names the sources by native id; the connection holds the Python objects
        # (and so the native sources) for as long as it lives.
        # ... and the transformers, whose frames this Sora's dispatcher delivers.
        transformers = tuple(t for t in (audio_frame_transformer, video_frame_transformer)
                             if t is not None)
        for t in transformers:
            t._attach(self._dispatcher)
        sources = tuple(s for s in (audio_source, video_source) if s is not None)
        return SoraConnection(self._dispatcher, json.dumps(config, allow_nan=False),
                              sources=sources + transformers)

    def create_audio_source(self, channels: int, sample_rate: int) -> SoraAudioSource:
        """A source of `channels` x `sample_rate` Hz int16 audio for `create_connection(
        audio_source=...)`; what it is given is converted for sending (Opus, 48 kHz).
        channels 1..8, sample_rate 8000..192000."""
        return SoraAudioSource(channels, sample_rate)

    def create_video_source(self) -> SoraVideoSource:
        """A source of BGR frames for `create_connection(video_source=...)` (sent as VP8, VP9, AV1 or, with `openh264`, H.264)."""
        return SoraVideoSource()

    def create_encoded_video_source(self, codec_type: str) -> SoraEncodedVideoSource:
        """A source of already encoded `codec_type` frames ("VP8", "VP9", "AV1", "H264",
        "H265") for `create_connection(video_source=...)`, sent without re-encoding (see
        `SoraEncodedVideoSource`). sora_ffi addition."""
        return SoraEncodedVideoSource(codec_type, self._dispatcher)

    def create_libcamera_source(self, width: int, height: int, fps: int,
                                native_frame_output: bool,
                                controls: Optional[list[tuple[str, str]]] = None) -> SoraTrackInterface:
        """A camera source through libcamera: only the official SDK's Raspberry Pi OS build
        has it; sora_ffi raises RuntimeError (feed frames with `create_video_source()`)."""
        for name, value in (("width", width), ("height", height), ("fps", fps)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, not {value!r}")
        if not isinstance(native_frame_output, bool):
            raise TypeError("native_frame_output must be a bool")
        raise RuntimeError("create_libcamera_source: libcamera is not available (sora_ffi has "
                           "no libcamera engine; capture frames yourself and feed "
                           "Sora.create_video_source().on_captured())")


# Parameters of the 2023-2024 API that no longer exist, and what to use instead.
_REMOVED = {
    "audio_codec_lyra_bitrate": "Lyra support was removed from Sora and the official SDKs; use "
                                "audio_codec_type='OPUS' with audio_bit_rate",
    "audio_codec_lyra_usedtx": "Lyra support was removed from Sora and the official SDKs; use "
                               "audio_codec_type='OPUS' with audio_opus_params={'usedtx': True}",
    "check_lyra_version": "Lyra support was removed from Sora and the official SDKs; there is no "
                          "version to check",
}


def _reject_removed(removed: dict) -> None:
    for name in removed:
        if name in _REMOVED:
            raise TypeError(f"create_connection(): {name} was removed: {_REMOVED[name]}")
        raise TypeError(f"create_connection() got an unexpected keyword argument {name!r}")


def _check_sendable(config: dict, codecs: list) -> None:
    """With a video source and a codec preference, the video_codec_type asked for (or, when
    none is given, any codec) must have an encoder in the preference."""
    if "video_source" not in config:
        return
    sendable = [c["type"] for c in codecs if c.get("encoder") is not None]
    wanted = config.get("video_codec_type")
    if wanted is not None and wanted not in sendable:
        raise ValueError(f"video_codec_type {wanted!r} has no encoder in the "
                         f"video_codec_preference (encodable: {sendable or 'none'})")
    if wanted is None and not sendable:
        raise ValueError("the video_codec_preference has no encoder for any codec, so the "
                         "video_source cannot be sent")
