"""sora_ffi: a Python SDK for the WebRTC SFU Sora, API-compatible with Shiguredo's `sora_sdk`.

    import sora_ffi as sora_sdk   # existing sora_sdk code runs unchanged

Built on a Rust shim with a flat C ABI (libsora_shim) through cffi, so one wheel serves every
CPython 3.x and PyPy. Differences that only make things safer: every callback of a `Sora`'s
connections and of the sinks on their tracks (`on_frame`, `on_data`, `on_format`) runs on
one dispatcher thread of that `Sora` (never on a native thread), native logs reach Python's
`logging` (logger "sora_ffi"), and the additions `SoraConnection.wait_connected()`,
`SoraConnection.connection_id`, `with connection:` and `sora_ffi.aio`.

Media: received frames are numpy views over native buffers (no copy); sinks keep only the
newest few frames when a callback is slower than the stream (older ones are dropped, never
queued without bound); `SoraAudioSource.on_data` paces bursts in real time (it waits while
more than 500 ms are queued). This build encodes VP8, VP9, AV1 and, through
Cisco's OpenH264 given as `Sora(openh264=...)`, H.264; where an NVIDIA GPU is, NVDEC
decodes (VP8, VP9, H.264, H.265) and NVENC, where the GPU has it, encodes (H.264, H.265,
AV1).
"""
from __future__ import annotations

from ._codec import (
    CodecPreferenceError,
    SoraVideoCodecCapability,
    SoraVideoCodecPreference,
    create_video_codec_preference_from_implementation,
    get_video_codec_capability,
)
from ._connection import SoraConnection
from ._enums import (
    SoraDegradationPreference,
    SoraLoggingSeverity,
    SoraSignalingDirection,
    SoraSignalingErrorCode,
    SoraSignalingType,
    SoraTrackState,
    SoraTransformableAudioFrameType,
    SoraTransformableFrameDirection,
    SoraVideoCodecImplementation,
    SoraVideoCodecType,
)
from ._frame import SoraAudioFrame, SoraVideoFrame
from ._log import enable_libwebrtc_log, rtc_log
from ._native import ShimError
from ._sink import SoraAudioSink, SoraAudioStreamSink, SoraVideoSink
from ._sora import Sora
from ._encoded import SoraEncodedVideoSource
from ._source import SoraAudioSource, SoraVideoSource
from ._track import SoraMediaTrack, SoraTrackInterface
from ._transform import (
    SoraAudioFrameTransformer,
    SoraFrameTransformer,
    SoraTransformableAudioFrame,
    SoraTransformableFrame,
    SoraTransformableVideoFrame,
    SoraVideoFrameTransformer,
)
from ._vad import SoraVAD

# The official SDK's extension names for the sink classes (its public classes are thin
# wrappers keeping the track; ours keep it themselves).
SoraAudioSinkImpl = SoraAudioSink
SoraAudioStreamSinkImpl = SoraAudioStreamSink
SoraVideoSinkImpl = SoraVideoSink

__version__ = "0.1.0"

__all__ = [
    "Sora",
    "SoraConnection",
    "SoraTrackInterface",
    "SoraMediaTrack",
    "SoraAudioSource",
    "SoraVideoSource",
    "SoraEncodedVideoSource",
    "SoraAudioSink",
    "SoraAudioStreamSink",
    "SoraAudioFrame",
    "SoraVideoSink",
    "SoraVideoFrame",
    "SoraVAD",
    "SoraAudioSinkImpl",
    "SoraAudioStreamSinkImpl",
    "SoraVideoSinkImpl",
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
    "SoraFrameTransformer",
    "SoraAudioFrameTransformer",
    "SoraVideoFrameTransformer",
    "SoraTransformableFrame",
    "SoraTransformableAudioFrame",
    "SoraTransformableVideoFrame",
    "SoraVideoCodecCapability",
    "SoraVideoCodecPreference",
    "CodecPreferenceError",
    "get_video_codec_capability",
    "create_video_codec_preference_from_implementation",
    "enable_libwebrtc_log",
    "rtc_log",
    "ShimError",
    "shim_version",
    "aio",
]


def __getattr__(name: str):
    # `sora_ffi.aio` works after a plain `import sora_ffi`, without making every import pay
    # for asyncio.
    if name == "aio":
        import importlib
        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shim_version() -> str:
    """The version of the loaded native shim (sora_ffi addition)."""
    from ._native import ffi, lib

    return ffi.string(lib.sora_version()).decode()
