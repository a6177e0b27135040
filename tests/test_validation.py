"""Argument validation of the Python API: every bad type raises TypeError and every bad value
ValueError, before anything native is created (so before any network activity)."""
from __future__ import annotations

import json
import threading

import pytest

import sora_ffi
from sora_ffi import _sora

URL = "ws://127.0.0.1:9/signaling"  # never contacted: nothing here calls connect()
BASE = {"signaling_urls": [URL], "role": "sendrecv", "channel_id": "room"}
PEM_CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


class RecordingConnection:
    """Stands in for SoraConnection: records the config instead of creating a native handle."""

    created: list[dict] = []

    def __init__(self, dispatcher, config_json: str, sources: tuple = ()) -> None:
        RecordingConnection.created.append(json.loads(config_json))
        self._sources = sources


@pytest.fixture
def recorder(monkeypatch):
    RecordingConnection.created = []
    monkeypatch.setattr(_sora, "SoraConnection", RecordingConnection)
    return RecordingConnection


@pytest.fixture(scope="module")
def sora():
    return sora_ffi.Sora()


def dc(**extra):
    return [{"label": "#chat", "direction": "sendrecv", **extra}]


BAD_TYPES = [
    {"signaling_urls": URL},
    {"signaling_urls": None},
    {"signaling_urls": [1]},
    {"signaling_urls": [b"ws://h/"]},
    {"role": 1},
    {"role": None},
    {"channel_id": 5},
    {"channel_id": None},
    {"client_id": 1},
    {"bundle_id": b"x"},
    {"metadata": {"a": object()}},
    {"signaling_notify_metadata": {1, 2}},
    {"audio_source": object()},
    {"video_source": object()},
    {"audio_frame_transformer": object()},
    {"video_frame_transformer": object()},
    {"audio": 1},
    {"video": "yes"},
    {"audio_codec_type": 1},
    {"video_codec_type": b"VP8"},
    {"video_bit_rate": 1.5},
    {"video_bit_rate": True},
    {"audio_bit_rate": "64"},
    {"video_vp9_params": []},
    {"video_av1_params": {1: 2}},
    {"video_h264_params": "42e01f"},
    {"audio_opus_params": 1},
    {"simulcast": "true"},
    {"spotlight": 1},
    {"spotlight_number": "1"},
    {"simulcast_rid": 0},
    {"spotlight_focus_rid": 1},
    {"spotlight_unfocus_rid": b"r0"},
    {"forwarding_filter": []},
    {"forwarding_filters": {}},
    {"forwarding_filters": [1]},
    {"data_channels": {"label": "#a", "direction": "sendrecv"}},
    {"data_channels": ["#a"]},
    {"data_channels": [{"label": 1, "direction": "sendrecv"}]},
    {"data_channels": [{"label": "#a", "direction": 1}]},
    {"data_channels": dc(ordered="yes")},
    {"data_channels": dc(max_packet_life_time=1.0)},
    {"data_channels": dc(max_retransmits=True)},
    {"data_channels": dc(protocol=1)},
    {"data_channels": dc(compress=1)},
    {"data_channels": dc(header={"type": "sender_connection_id"})},
    {"data_channels": dc(header=["sender_connection_id"])},
    {"data_channel_signaling": 1},
    {"ignore_disconnect_websocket": "no"},
    {"data_channel_signaling_timeout": 1.5},
    {"disconnect_wait_timeout": True},
    {"websocket_close_timeout": "3"},
    {"websocket_connection_timeout": 30.0},
    {"audio_streaming_language_code": 1},
    {"insecure": 1},
    {"client_cert": PEM_CERT.decode(), "client_key": PEM_KEY},
    {"client_cert": PEM_CERT, "client_key": 1},
    {"ca_cert": "-----BEGIN CERTIFICATE-----"},
    {"proxy_url": 1},
    {"proxy_url": "http://proxy:3128", "proxy_username": 1},
    {"proxy_url": "http://proxy:3128", "proxy_password": b"pw"},
    {"proxy_url": "http://proxy:3128", "proxy_agent": 1},
    {"degradation_preference": "BALANCED"},
    {"degradation_preference": True},
    {"degradation_preference": 1.0},
    {"user_agent": 1},
]

BAD_VALUES = [
    {"signaling_urls": []},
    {"signaling_urls": ["http://127.0.0.1/signaling"]},
    {"signaling_urls": ["127.0.0.1:5000/signaling"]},
    {"signaling_urls": ["ws://"]},
    {"signaling_urls": ["ws://h:99999/signaling"]},
    {"signaling_urls": [URL, "ftp://h/"]},
    {"role": "publisher"},
    {"role": "SENDRECV"},
    {"channel_id": ""},
    {"channel_id": "x" * 256},
    {"channel_id": "\u3042" * 86},  # 258 bytes in UTF-8
    {"client_id": "c" * 256},
    {"bundle_id": "b" * 256},
    {"metadata": {"a": float("nan")}},
    {"audio_codec_type": "AAC"},
    {"audio_codec_type": "opus"},
    {"video_codec_type": "VP7"},
    {"video_bit_rate": 0},
    {"video_bit_rate": 15001},
    {"audio_bit_rate": 5},
    {"audio_bit_rate": 511},
    {"spotlight_number": 0},
    {"spotlight_number": 9},
    {"simulcast_rid": "r3"},
    {"simulcast_rid": "none"},
    {"spotlight_focus_rid": "r4"},
    {"spotlight_unfocus_rid": "high"},
    {"forwarding_filter": {"rules": []}, "forwarding_filters": [{"rules": []}]},
    {"data_channels": [{"label": "chat", "direction": "sendrecv"}]},
    {"data_channels": [{"label": "#a"}]},
    {"data_channels": [{"direction": "sendrecv"}]},
    {"data_channels": [{"label": "#a", "direction": "both"}]},
    {"data_channels": dc(unknown=1)},
    {"data_channels": dc(max_packet_life_time=-1)},
    {"data_channels": dc(max_retransmits=-1)},
    {"data_channels": dc(max_packet_life_time=100, max_retransmits=3)},
    {"data_channels": dc(header=[{"type": "x"}])},
    {"data_channels": dc(header=[{"type": "sender_connection_id", "extra": 1}])},
    {"data_channels": dc() + dc()},
    {"data_channel_signaling_timeout": 0},
    {"disconnect_wait_timeout": -1},
    {"websocket_close_timeout": 0},
    {"websocket_connection_timeout": -30},
    {"client_cert": PEM_CERT},
    {"client_key": PEM_KEY},
    {"client_cert": b"\x30\x82\x01\x0a", "client_key": PEM_KEY},  # DER
    {"ca_cert": b"not a certificate"},
    {"proxy_url": "socks5://proxy:1080"},
    {"proxy_url": "http://"},
    {"proxy_username": "user"},
    {"proxy_password": "pw"},
    {"degradation_preference": 7},
    {"degradation_preference": -1},
]


def _id(case: dict) -> str:
    return ",".join(f"{k}={v!r}"[:60] for k, v in case.items())


@pytest.mark.parametrize("override", BAD_TYPES, ids=_id)
def test_bad_types_raise_type_error_before_anything_native(sora, recorder, override):
    with pytest.raises(TypeError):
        sora.create_connection(**{**BASE, **override})
    assert recorder.created == []


@pytest.mark.parametrize("override", BAD_VALUES, ids=_id)
def test_bad_values_raise_value_error_before_anything_native(sora, recorder, override):
    with pytest.raises(ValueError):
        sora.create_connection(**{**BASE, **override})
    assert recorder.created == []


def test_error_messages_name_the_parameter(sora, recorder):
    with pytest.raises(ValueError, match="video_bit_rate"):
        sora.create_connection(**BASE, video_bit_rate=0)
    with pytest.raises(TypeError, match=r"data_channels\[0\]\['ordered'\]"):
        sora.create_connection(**BASE, data_channels=dc(ordered="no"))
    with pytest.raises(TypeError, match="audio_source"):
        sora.create_connection(**BASE, audio_source=object())
    with pytest.raises(TypeError, match="video_frame_transformer"):
        sora.create_connection(**BASE, video_frame_transformer=object())


def test_unknown_keyword_is_a_type_error(sora, recorder):
    with pytest.raises(TypeError):
        sora.create_connection(**BASE, no_such_option=1)
    assert recorder.created == []


def test_minimal_config_has_only_the_given_keys(sora, recorder):
    sora.create_connection(**BASE)
    assert recorder.created == [{"signaling_urls": [URL], "role": "sendrecv", "channel_id": "room"}]


def test_positional_arguments_and_sequences(sora, recorder):
    sora.create_connection(("wss://a.example/signaling", "WS://b.example:5000/signaling"), "recvonly", "c")
    cfg = recorder.created[0]
    assert cfg["signaling_urls"] == ["wss://a.example/signaling", "WS://b.example:5000/signaling"]
    assert cfg["role"] == "recvonly"


FULL = dict(
    client_id="alice",
    bundle_id="bundle",
    metadata={"access_token": "t"},
    signaling_notify_metadata={"name": "Alice"},
    audio=True,
    video=True,
    audio_codec_type="OPUS",
    video_codec_type="VP9",
    video_bit_rate=1500,
    audio_bit_rate=64,
    video_vp9_params={"profile_id": 0},
    video_av1_params={"profile": 0},
    video_h264_params={"profile_level_id": "42e01f"},
    video_h265_params={"level_id": 93},
    audio_opus_params={"stereo": True},
    simulcast=True,
    spotlight=True,
    spotlight_number=3,
    simulcast_rid="r1",
    simulcast_request_rid="r0",
    spotlight_focus_rid="r2",
    spotlight_unfocus_rid="none",
    forwarding_filters=[{"action": "block", "rules": [[{"field": "kind", "operator": "is_in", "values": ["video"]}]]}],
    data_channels=[
        {"label": "#chat", "direction": "sendrecv", "ordered": True, "max_retransmits": 3,
         "protocol": "p", "compress": True, "header": [{"type": "sender_connection_id"}]},
        {"label": "#log", "direction": "recvonly", "max_packet_life_time": 500},
    ],
    data_channel_signaling=True,
    ignore_disconnect_websocket=False,
    data_channel_signaling_timeout=180,
    disconnect_wait_timeout=5,
    websocket_close_timeout=3,
    websocket_connection_timeout=30,
    audio_streaming_language_code="ja-JP",
    insecure=False,
    client_cert=PEM_CERT,
    client_key=PEM_KEY,
    ca_cert=PEM_CERT,
    proxy_url="http://proxy.example:3128",
    proxy_username="user",
    proxy_password="pw",
    proxy_agent="agent",
    degradation_preference=sora_ffi.SoraDegradationPreference.MAINTAIN_RESOLUTION,
    user_agent="ua",
)


def test_full_config_uses_parameter_names_pem_text_and_int_enums(sora, recorder):
    sora.create_connection(**BASE, **FULL)
    cfg = recorder.created[0]
    assert set(cfg) == set(BASE) | set(FULL)
    assert cfg["client_cert"] == PEM_CERT.decode()
    assert cfg["client_key"] == PEM_KEY.decode()
    assert cfg["degradation_preference"] == 2 and type(cfg["degradation_preference"]) is int
    assert cfg["data_channels"] == FULL["data_channels"]
    assert cfg["metadata"] == {"access_token": "t"}


def test_forwarding_filter_singular_and_plain_int_enum(sora, recorder):
    sora.create_connection(**BASE, forwarding_filter={"rules": []}, degradation_preference=3)
    assert recorder.created[0]["forwarding_filter"] == {"rules": []}
    assert recorder.created[0]["degradation_preference"] == 3


def test_metadata_may_be_any_json(sora, recorder):
    sora.create_connection(**BASE, metadata=["a", 1, None], signaling_notify_metadata="s")
    assert recorder.created[0]["metadata"] == ["a", 1, None]


# -- audio_source / video_source ------------------------------------------------------------

def test_sources_of_the_wrong_kind_are_type_errors(sora, recorder):
    audio, video = sora.create_audio_source(1, 48000), sora.create_video_source()
    with pytest.raises(TypeError, match="audio_source"):
        sora.create_connection(**BASE, audio_source=video)
    with pytest.raises(TypeError, match="video_source"):
        sora.create_connection(**BASE, video_source=audio)
    with pytest.raises(TypeError, match="video_source"):
        sora.create_connection(**BASE, video_source="camera")
    assert recorder.created == []


def test_sources_are_passed_by_native_id_and_kept_by_the_connection(sora, recorder):
    audio, video = sora.create_audio_source(2, 44100), sora.create_video_source()
    conn = sora.create_connection(**BASE, audio_source=audio, video_source=video)
    cfg = recorder.created[0]
    assert cfg["audio_source"] == audio._native_id and cfg["video_source"] == video._native_id
    assert type(cfg["audio_source"]) is int and cfg["audio_source"] != cfg["video_source"]
    assert conn._sources == (audio, video)


@pytest.mark.parametrize("codec", ["H265"])
def test_video_source_needs_a_codec_this_build_encodes(sora, recorder, codec):
    video = sora.create_video_source()
    with pytest.raises(ValueError, match="encodes VP8, VP9, AV1 and H264"):
        sora.create_connection(**BASE, video_source=video, video_codec_type=codec)
    sora.create_connection(**BASE, video_codec_type=codec)  # receiving only: fine
    for ok in ("VP8", "VP9", "AV1"):
        sora.create_connection(**BASE, video_source=video, video_codec_type=ok)
    assert len(recorder.created) == 4


def test_the_shim_accepts_every_key_python_sends(sora):
    # The shim rejects unknown keys: this keeps the two sides' parameter lists in step.
    conn = sora.create_connection(**BASE, **FULL, audio_source=sora.create_audio_source(1, 16000),
                                  video_source=sora.create_video_source())
    assert isinstance(conn, sora_ffi.SoraConnection)
    conn.disconnect()  # safe before connect()


# -- Sora() --------------------------------------------------------------------------------

def test_sora_openh264_must_be_an_existing_file(tmp_path):
    with pytest.raises(TypeError):
        sora_ffi.Sora(openh264=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sora_ffi.Sora(openh264=str(tmp_path / "missing.so"))
    with pytest.raises(ValueError):
        sora_ffi.Sora(openh264=str(tmp_path))  # a directory
    lib = tmp_path / "libopenh264.so"
    lib.write_bytes(b"")
    assert sora_ffi.Sora(openh264=str(lib))._openh264 == str(lib)
    assert sora_ffi.Sora(str(lib))._openh264 == str(lib)


def test_sora_video_codec_preference_not_supported_yet():
    with pytest.raises(TypeError, match="SoraVideoCodecPreference"):
        sora_ffi.Sora(video_codec_preference=object())


# -- SoraConnection methods and module functions --------------------------------------------

def test_send_data_channel_argument_types(sora):
    conn = sora.create_connection(**BASE)
    with pytest.raises(TypeError):
        conn.send_data_channel(1, b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send_data_channel("#chat", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.send_data_channel("#chat", None)  # type: ignore[arg-type]
    assert conn.send_data_channel("#chat", b"x") is False  # not connected: not open


def test_callbacks_must_be_callable(sora):
    conn = sora.create_connection(**BASE)
    with pytest.raises(TypeError):
        conn.on_notify = "not callable"  # type: ignore[assignment]
    conn.on_notify = print
    assert conn.on_notify is print
    conn.on_notify = None
    assert conn.on_notify is None
    assert conn.on_disconnect is None


def test_wait_connected_rejects_negative_timeout(sora):
    conn = sora.create_connection(**BASE)
    with pytest.raises(ValueError):
        conn.wait_connected(-1)
    assert conn.wait_connected(0) is False  # never connected


def test_log_functions_validate_their_arguments():
    with pytest.raises(TypeError):
        sora_ffi.enable_libwebrtc_log("INFO")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sora_ffi.enable_libwebrtc_log(9)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sora_ffi.rtc_log(sora_ffi.SoraLoggingSeverity.INFO, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sora_ffi.rtc_log(7, "x")  # type: ignore[arg-type]


def test_enums_match_the_official_values():
    S = sora_ffi
    assert [(m.name, m.value) for m in S.SoraSignalingErrorCode] == [
        ("CLOSE_SUCCEEDED", 0), ("CLOSE_FAILED", 1), ("INTERNAL_ERROR", 2), ("INVALID_PARAMETER", 3),
        ("WEBSOCKET_HANDSHAKE_FAILED", 4), ("WEBSOCKET_ONCLOSE", 5), ("WEBSOCKET_ONERROR", 6),
        ("PEER_CONNECTION_STATE_FAILED", 7), ("ICE_FAILED", 8), ("DATACHANNEL_CLOSED", 9)]
    assert dict(S.SoraDegradationPreference.__members__) == {
        "DISABLED": 0, "BALANCED": 3, "MAINTAIN_FRAMERATE": 1, "MAINTAIN_RESOLUTION": 2}
    assert (S.SoraSignalingType.DATACHANNEL, S.SoraSignalingDirection.RECEIVED) == (1, 1)
    assert (S.SoraTrackState.ENDED, S.SoraLoggingSeverity.NONE) == (1, 4)
    assert {m.name: m.value for m in S.SoraVideoCodecType} == {"VP8": 1, "VP9": 2, "AV1": 3, "H264": 4, "H265": 5}
    assert S.SoraVideoCodecImplementation.AMD_AMF == 4
    assert S.SoraVideoCodecImplementation.RASPI_V4L2M2M == 5
    assert S.SoraTransformableFrameDirection.SENDER == 2
    assert S.SoraTransformableAudioFrameType.CN == 2


def test_official_sdk_enums_agree_when_installed():
    sora_sdk = pytest.importorskip("sora_sdk")
    for name in ("SoraSignalingErrorCode", "SoraSignalingType", "SoraSignalingDirection",
                 "SoraDegradationPreference", "SoraTrackState", "SoraLoggingSeverity",
                 "SoraVideoCodecType", "SoraVideoCodecImplementation",
                 "SoraTransformableFrameDirection", "SoraTransformableAudioFrameType"):
        ours = {m.name: int(m) for m in getattr(sora_ffi, name)}
        theirs = {m.name: int(m) for m in getattr(sora_sdk, name)}
        # sora_ffi also has the members sora_sdk 2026.x added
        newer = {"DATACHANNEL_CLOSED": 9} if name == "SoraSignalingErrorCode" else {}
        assert ours == {**theirs, **newer}, name


def test_validation_runs_on_the_calling_thread_only(sora, recorder):
    # No thread is started by a failing create_connection.
    before = threading.active_count()
    with pytest.raises(ValueError):
        sora.create_connection(**{**BASE, "role": "x"})
    assert threading.active_count() == before


@pytest.mark.parametrize("kwargs,exc,word", [
    ({"audio_codec_lyra_bitrate": 3200}, TypeError, "audio_codec_lyra_bitrate was removed"),
    ({"audio_codec_lyra_usedtx": True}, TypeError, "usedtx"),
    ({"check_lyra_version": True}, TypeError, "check_lyra_version was removed"),
    ({"audio_codec_type": "LYRA"}, ValueError, "'LYRA' was removed"),
    ({"no_such_parameter": 1}, TypeError, "unexpected keyword argument 'no_such_parameter'"),
    ({"video_h265_params": "x"}, TypeError, "video_h265_params"),
    ({"simulcast_request_rid": "r9"}, ValueError, "simulcast_request_rid"),
])
def test_removed_and_new_parameters(kwargs, exc, word):
    """The 2023-2024 Lyra parameters get an answer that says what to use instead; the
    2025.x additions are validated like the others."""
    import sora_ffi
    with pytest.raises(exc, match=word):
        sora_ffi.Sora().create_connection(signaling_urls=["ws://127.0.0.1:1/signaling"],
                                          role="sendrecv", channel_id="c", **kwargs)
