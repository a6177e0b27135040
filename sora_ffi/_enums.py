"""The enums of the official `sora_sdk`, as IntEnum with the same members and values.

Member order follows the official stub, so `list(Enum)` iterates the same way.
"""
from __future__ import annotations

import enum

__all__ = [
    "SoraSignalingErrorCode",
    "SoraSignalingType",
    "SoraSignalingDirection",
    "SoraDegradationPreference",
    "SoraTrackState",
    "SoraLoggingSeverity",
    "SoraVideoCodecType",
    "SoraVideoCodecImplementation",
    "SoraTransformableFrameDirection",
    "SoraTransformableAudioFrameType",
]


class SoraSignalingErrorCode(enum.IntEnum):
    """Why a connection ended (first argument of `on_disconnect`)."""

    CLOSE_SUCCEEDED = 0
    CLOSE_FAILED = 1
    INTERNAL_ERROR = 2
    INVALID_PARAMETER = 3
    WEBSOCKET_HANDSHAKE_FAILED = 4
    WEBSOCKET_ONCLOSE = 5
    WEBSOCKET_ONERROR = 6
    PEER_CONNECTION_STATE_FAILED = 7
    ICE_FAILED = 8
    # sora_sdk 2026.x name; this build ends a DataChannel-only session the server closed with
    # CLOSE_SUCCEEDED, as sora_sdk 2025.x does, and never reports it.
    DATACHANNEL_CLOSED = 9


class SoraSignalingType(enum.IntEnum):
    """The transport a signaling message used."""

    WEBSOCKET = 0
    DATACHANNEL = 1


class SoraDegradationPreference(enum.IntEnum):
    """What the video sender gives up first when encoding cannot keep up (CPU overuse; see
    `Sora.create_connection`). None there means MAINTAIN_FRAMERATE."""

    DISABLED = 0
    BALANCED = 3
    MAINTAIN_FRAMERATE = 1
    MAINTAIN_RESOLUTION = 2


class SoraSignalingDirection(enum.IntEnum):
    """Whether a signaling message was sent or received."""

    SENT = 0
    RECEIVED = 1


class SoraTrackState(enum.IntEnum):
    LIVE = 0
    ENDED = 1


class SoraLoggingSeverity(enum.IntEnum):
    VERBOSE = 0
    INFO = 1
    WARNING = 2
    ERROR = 3
    NONE = 4


class SoraTransformableFrameDirection(enum.IntEnum):
    UNKNOWN = 0
    RECEIVER = 1
    SENDER = 2


class SoraTransformableAudioFrameType(enum.IntEnum):
    EMPTY = 0
    SPEECH = 1
    CN = 2


class SoraVideoCodecImplementation(enum.IntEnum):
    INTERNAL = 0
    CISCO_OPENH264 = 1
    INTEL_VPL = 2
    NVIDIA_VIDEO_CODEC_SDK = 3
    AMD_AMF = 4
    RASPI_V4L2M2M = 5


class SoraVideoCodecType(enum.IntEnum):
    VP8 = 1
    VP9 = 2
    H264 = 4
    H265 = 5
    AV1 = 3


def enum_or_int(enum_type: type[enum.IntEnum], value: int) -> int:
    """`enum_type(value)`, or the plain int when a newer shim reports a value we do not know."""
    try:
        return enum_type(value)
    except ValueError:
        return int(value)
