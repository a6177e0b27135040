# Type stubs for the public API of sora_ffi (the implementation lives in the _*.py modules).
import enum
from collections.abc import Callable
from typing import Any, Optional

from . import aio as aio

__version__: str

class SoraSignalingErrorCode(enum.IntEnum):
    CLOSE_SUCCEEDED = 0
    CLOSE_FAILED = 1
    INTERNAL_ERROR = 2
    INVALID_PARAMETER = 3
    WEBSOCKET_HANDSHAKE_FAILED = 4
    WEBSOCKET_ONCLOSE = 5
    WEBSOCKET_ONERROR = 6
    PEER_CONNECTION_STATE_FAILED = 7
    ICE_FAILED = 8

class SoraSignalingType(enum.IntEnum):
    WEBSOCKET = 0
    DATACHANNEL = 1

class SoraDegradationPreference(enum.IntEnum):
    DISABLED = 0
    BALANCED = 3
    MAINTAIN_FRAMERATE = 1
    MAINTAIN_RESOLUTION = 2

class SoraSignalingDirection(enum.IntEnum):
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

class SoraVideoCodecType(enum.IntEnum):
    VP8 = 1
    VP9 = 2
    H264 = 4
    H265 = 5
    AV1 = 3

class ShimError(RuntimeError):
    status: int
    status_name: str
    def __init__(self, status: int, message: str = ...) -> None: ...

def enable_libwebrtc_log(severity: SoraLoggingSeverity, /) -> None: ...
def rtc_log(severity: SoraLoggingSeverity, message: str, /) -> None: ...
def shim_version() -> str: ...

class SoraTrackInterface:
    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def state(self) -> SoraTrackState: ...
    def set_enabled(self, enable: bool) -> bool: ...

class SoraMediaTrack(SoraTrackInterface):
    @property
    def stream_id(self) -> str: ...
    def set_frame_transformer(self, transformer: Any, /) -> None: ...

class SoraConnection:
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def send_data_channel(self, label: str, data: bytes) -> bool: ...
    def get_stats(self) -> str: ...
    # sora_ffi additions
    def wait_connected(self, timeout: Optional[float] = None) -> bool: ...
    @property
    def connection_id(self) -> Optional[str]: ...
    @property
    def connected(self) -> bool: ...
    def __enter__(self) -> SoraConnection: ...
    def __exit__(self, *exc: object) -> None: ...
    # callbacks (settable and readable; None = not set)
    on_set_offer: Optional[Callable[[str], None]]
    on_ws_close: Optional[Callable[[int, str], None]]
    on_disconnect: Optional[Callable[[SoraSignalingErrorCode, str], None]]
    on_signaling_message: Optional[Callable[[SoraSignalingType, SoraSignalingDirection, str], None]]
    on_notify: Optional[Callable[[str], None]]
    on_push: Optional[Callable[[str], None]]
    on_message: Optional[Callable[[str, bytes], None]]
    on_rpc: Optional[Callable[[bytes], None]]
    on_switched: Optional[Callable[[str], None]]
    on_track: Optional[Callable[[SoraMediaTrack], None]]
    on_data_channel: Optional[Callable[[str], None]]

class Sora:
    def __init__(self, openh264: Optional[str] = None, video_codec_preference: Any = None) -> None: ...
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
    ) -> SoraConnection: ...
