# Type stub of the public API: the names `import sora_ffi` offers. The signatures live,
# annotated, in the implementation modules (one source of truth, checked with mypy); the
# explicit `X as X` re-exports mark exactly what is public.
from . import aio as aio
from ._codec import CodecPreferenceError as CodecPreferenceError
from ._codec import SoraVideoCodecCapability as SoraVideoCodecCapability
from ._codec import SoraVideoCodecPreference as SoraVideoCodecPreference
from ._codec import create_video_codec_preference_from_implementation as create_video_codec_preference_from_implementation
from ._codec import get_video_codec_capability as get_video_codec_capability
from ._connection import SoraConnection as SoraConnection
from ._enums import SoraDegradationPreference as SoraDegradationPreference
from ._enums import SoraLoggingSeverity as SoraLoggingSeverity
from ._enums import SoraSignalingDirection as SoraSignalingDirection
from ._enums import SoraSignalingErrorCode as SoraSignalingErrorCode
from ._enums import SoraSignalingType as SoraSignalingType
from ._enums import SoraTrackState as SoraTrackState
from ._enums import SoraTransformableAudioFrameType as SoraTransformableAudioFrameType
from ._enums import SoraTransformableFrameDirection as SoraTransformableFrameDirection
from ._enums import SoraVideoCodecImplementation as SoraVideoCodecImplementation
from ._enums import SoraVideoCodecType as SoraVideoCodecType
from ._frame import SoraAudioFrame as SoraAudioFrame
from ._frame import SoraVideoFrame as SoraVideoFrame
from ._log import enable_libwebrtc_log as enable_libwebrtc_log
from ._log import rtc_log as rtc_log
from ._native import ShimError as ShimError
from ._sink import SoraAudioSink as SoraAudioSink
from ._sink import SoraAudioStreamSink as SoraAudioStreamSink
from ._sink import SoraVideoSink as SoraVideoSink
from ._sora import Sora as Sora
from ._source import SoraAudioSource as SoraAudioSource
from ._source import SoraVideoSource as SoraVideoSource
from ._encoded import SoraEncodedVideoSource as SoraEncodedVideoSource
from ._track import SoraMediaTrack as SoraMediaTrack
from ._track import SoraTrackInterface as SoraTrackInterface
from ._transform import SoraAudioFrameTransformer as SoraAudioFrameTransformer
from ._transform import SoraFrameTransformer as SoraFrameTransformer
from ._transform import SoraTransformableAudioFrame as SoraTransformableAudioFrame
from ._transform import SoraTransformableFrame as SoraTransformableFrame
from ._transform import SoraTransformableVideoFrame as SoraTransformableVideoFrame
from ._transform import SoraVideoFrameTransformer as SoraVideoFrameTransformer
from ._vad import SoraVAD as SoraVAD

SoraAudioSinkImpl = SoraAudioSink
SoraAudioStreamSinkImpl = SoraAudioStreamSink
SoraVideoSinkImpl = SoraVideoSink

__version__: str
__all__: list[str]

def shim_version() -> str: ...
