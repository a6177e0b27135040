"""Video codec engines (`SoraVideoCodecCapability`) and the application's choice among them
(`SoraVideoCodecPreference`), as in the official SDK.

The capability comes from the shim (`media::codec::engine`): engines × codecs × {encoder,
decoder} of this build on this machine. A preference names, per codec, the engine that
encodes and the one that decodes it (None: that direction is not used); `Sora(
video_codec_preference=...)` checks it against the capability and the shim enforces it
(a codec without an encoder is never sent, one without a decoder never decoded).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Sequence

from ._enums import SoraVideoCodecImplementation, SoraVideoCodecType
from ._native import check, ffi, last_error, lib, take_string

__all__ = ["SoraVideoCodecCapability", "SoraVideoCodecPreference",
           "get_video_codec_capability", "create_video_codec_preference_from_implementation",
           "CodecPreferenceError"]

_IMPL_NAMES = {
    SoraVideoCodecImplementation.INTERNAL: "internal",
    SoraVideoCodecImplementation.CISCO_OPENH264: "cisco_openh264",
    SoraVideoCodecImplementation.INTEL_VPL: "intel_vpl",
    SoraVideoCodecImplementation.NVIDIA_VIDEO_CODEC_SDK: "nvidia_video_codec_sdk",
    SoraVideoCodecImplementation.AMD_AMF: "amd_amf",
    SoraVideoCodecImplementation.RASPI_V4L2M2M: "raspi_v4l2m2m",
}
_IMPL_BY_NAME = {v: k for k, v in _IMPL_NAMES.items()}
_SORA_ERR_INVALID_ARGUMENT = -1


class CodecPreferenceError(ValueError, RuntimeError):
    """A codec preference this machine cannot honour. A ValueError, and also a RuntimeError
    because that is what the official SDK raises (as "std::exception")."""


def _codec_type(value: Any, name: str = "type") -> SoraVideoCodecType:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a SoraVideoCodecType, not {type(value).__name__}")
    try:
        return SoraVideoCodecType(value)
    except ValueError:
        raise ValueError(f"{name} must be a SoraVideoCodecType, not {value!r}") from None


def _implementation(value: Any, name: str) -> Optional[SoraVideoCodecImplementation]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a SoraVideoCodecImplementation or None, "
                        f"not {type(value).__name__}")
    try:
        return SoraVideoCodecImplementation(value)
    except ValueError:
        raise ValueError(f"{name} must be a SoraVideoCodecImplementation, not {value!r}") from None


def _openh264_path(openh264: Any) -> Optional[str]:
    if openh264 is None:
        return None
    import os
    if not isinstance(openh264, (str, os.PathLike)):
        raise TypeError(f"openh264 must be a str path, not {type(openh264).__name__}")
    path = os.fspath(openh264)
    if not isinstance(path, str):
        raise TypeError("openh264 must be a str path, not a bytes path")
    return path


# ---------------------------------------------------------------------------- capability
class SoraVideoCodecCapability:
    """What each codec engine of this build on this machine can encode and decode."""

    class Parameters:
        """Engine or codec parameters (None where the engine has no such thing)."""

        _KEYS = ("version", "openh264_path", "vpl_impl", "vpl_impl_value",
                 "nvcodec_gpu_device_name", "amf_runtime_version", "amf_embedded_version")

        def __init__(self, values: Optional[dict] = None) -> None:
            self._values = dict(values or {})

        def _get(self, key: str) -> Any:
            return self._values.get(key)

        version = property(lambda self: self._get("version"))
        openh264_path = property(lambda self: self._get("openh264_path"))
        vpl_impl = property(lambda self: self._get("vpl_impl"))
        vpl_impl_value = property(lambda self: self._get("vpl_impl_value"))
        nvcodec_gpu_device_name = property(lambda self: self._get("nvcodec_gpu_device_name"))
        amf_runtime_version = property(lambda self: self._get("amf_runtime_version"))
        amf_embedded_version = property(lambda self: self._get("amf_embedded_version"))

        def _to_json(self) -> dict:
            return dict(self._values)

    class Codec:
        def __init__(self, type: SoraVideoCodecType, encoder: bool, decoder: bool,
                     parameters: "SoraVideoCodecCapability.Parameters") -> None:
            self._type, self._encoder, self._decoder = type, encoder, decoder
            self._parameters = parameters

        type = property(lambda self: self._type)
        encoder = property(lambda self: self._encoder)
        decoder = property(lambda self: self._decoder)
        parameters = property(lambda self: self._parameters)

        def __repr__(self) -> str:
            return f"<Codec {self._type.name} encoder={self._encoder} decoder={self._decoder}>"

    class Engine:
        def __init__(self, name: SoraVideoCodecImplementation,
                     codecs: "list[SoraVideoCodecCapability.Codec]",
                     parameters: "SoraVideoCodecCapability.Parameters") -> None:
            self._name, self._codecs, self._parameters = name, codecs, parameters

        name = property(lambda self: self._name)
        codecs = property(lambda self: list(self._codecs))
        parameters = property(lambda self: self._parameters)

        def __repr__(self) -> str:
            return f"<Engine {self._name.name} {self._codecs}>"

    def __init__(self, engines: "Iterable[SoraVideoCodecCapability.Engine]" = ()) -> None:
        self._engines = list(engines)

    @property
    def engines(self) -> "list[SoraVideoCodecCapability.Engine]":
        return list(self._engines)

    def to_json(self) -> object:
        return {"engines": [{
            "name": _IMPL_NAMES[e.name],
            "codecs": [{"type": c.type.name, "encoder": c.encoder, "decoder": c.decoder,
                        "parameters": c.parameters._to_json()} for c in e.codecs],
            "parameters": e.parameters._to_json(),
        } for e in self._engines]}

    @classmethod
    def _from_json(cls, value: dict) -> "SoraVideoCodecCapability":
        engines = []
        for e in value["engines"]:
            codecs = [cls.Codec(SoraVideoCodecType[c["type"]], bool(c["encoder"]),
                                bool(c["decoder"]), cls.Parameters(c.get("parameters")))
                      for c in e["codecs"]]
            engines.append(cls.Engine(_IMPL_BY_NAME[e["name"]], codecs,
                                      cls.Parameters(e.get("parameters"))))
        return cls(engines)


def get_video_codec_capability(openh264: Optional[str] = None) -> SoraVideoCodecCapability:
    """The video codec engines this build has on this machine. With `openh264` (the path of
    Cisco's OpenH264 library, 2.3.0 or later 2.x) the cisco_openh264 engine is listed when the
    library loads and opens an encoder and a decoder, with its version and path as the H264
    codec's parameters; a missing or wrong path only leaves it out (as in the official SDK)."""
    path = _openh264_path(openh264)
    out = ffi.new("char **")
    check(lib.sora_video_codec_capability(path.encode() if path is not None else ffi.NULL, out))
    return SoraVideoCodecCapability._from_json(json.loads(take_string(out[0])))


# ---------------------------------------------------------------------------- preference
class SoraVideoCodecPreference:
    """Which engine encodes and which decodes each video codec. Given to `Sora(...)`, only
    the listed codecs are used: one whose encoder is None is never sent, one whose decoder
    is None never received."""

    class Parameters:
        """Per-codec parameters (none exist yet, as in the official SDK)."""

        def __init__(self) -> None:
            pass

        def _to_json(self) -> dict:
            return {}

    class Codec:
        def __init__(self, type: SoraVideoCodecType = SoraVideoCodecType.VP8,
                     encoder: Optional[SoraVideoCodecImplementation] = None,
                     decoder: Optional[SoraVideoCodecImplementation] = None,
                     parameters: "Optional[SoraVideoCodecPreference.Parameters]" = None) -> None:
            self.type = type
            self.encoder = encoder
            self.decoder = decoder
            self.parameters = SoraVideoCodecPreference.Parameters() if parameters is None else parameters

        @property
        def type(self) -> SoraVideoCodecType:
            return self._type

        @type.setter
        def type(self, value: SoraVideoCodecType) -> None:
            self._type = _codec_type(value)

        @property
        def encoder(self) -> Optional[SoraVideoCodecImplementation]:
            return self._encoder

        @encoder.setter
        def encoder(self, value: Optional[SoraVideoCodecImplementation]) -> None:
            self._encoder = _implementation(value, "encoder")

        @property
        def decoder(self) -> Optional[SoraVideoCodecImplementation]:
            return self._decoder

        @decoder.setter
        def decoder(self, value: Optional[SoraVideoCodecImplementation]) -> None:
            self._decoder = _implementation(value, "decoder")

        @property
        def parameters(self) -> "SoraVideoCodecPreference.Parameters":
            return self._parameters

        @parameters.setter
        def parameters(self, value: "SoraVideoCodecPreference.Parameters") -> None:
            if not isinstance(value, SoraVideoCodecPreference.Parameters):
                raise TypeError("parameters must be a SoraVideoCodecPreference.Parameters")
            self._parameters = value

        def _to_json(self) -> dict:
            return {"type": self._type.name,
                    "encoder": None if self._encoder is None else _IMPL_NAMES[self._encoder],
                    "decoder": None if self._decoder is None else _IMPL_NAMES[self._decoder],
                    "parameters": self._parameters._to_json()}

        def __repr__(self) -> str:
            enc = self._encoder.name if self._encoder is not None else None
            dec = self._decoder.name if self._decoder is not None else None
            return f"<Codec {self._type.name} encoder={enc} decoder={dec}>"

    def __init__(self, codecs: "Sequence[SoraVideoCodecPreference.Codec]" = ()) -> None:
        self.codecs = codecs  # type: ignore[assignment]

    @property
    def codecs(self) -> "list[SoraVideoCodecPreference.Codec]":
        return list(self._codecs)

    @codecs.setter
    def codecs(self, value: "Sequence[SoraVideoCodecPreference.Codec]") -> None:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError("codecs must be a sequence of SoraVideoCodecPreference.Codec")
        codecs = list(value)
        for c in codecs:
            if not isinstance(c, SoraVideoCodecPreference.Codec):
                raise TypeError(f"codecs must hold SoraVideoCodecPreference.Codec, not {type(c).__name__}")
        self._codecs = codecs

    def to_json(self) -> object:
        return {"codecs": [c._to_json() for c in self._codecs]}

    def find(self, type: SoraVideoCodecType, /) -> Optional[int]:
        t = _codec_type(type)
        return next((i for i, c in enumerate(self._codecs) if c.type == t), None)

    def get_or_add(self, type: SoraVideoCodecType, /) -> int:
        i = self.find(type)
        if i is None:
            self._codecs.append(SoraVideoCodecPreference.Codec(type))
            i = len(self._codecs) - 1
        return i

    def has_implementation(self, implementation: SoraVideoCodecImplementation, /) -> bool:
        imp = _implementation(implementation, "implementation")
        return any(imp in (c.encoder, c.decoder) for c in self._codecs)

    def merge(self, other: "SoraVideoCodecPreference", /) -> None:
        """Adds `other`'s codecs; for a codec both have, `other`'s encoder and decoder win
        where they are not None."""
        if not isinstance(other, SoraVideoCodecPreference):
            raise TypeError("merge takes a SoraVideoCodecPreference")
        for theirs in other._codecs:
            i = self.find(theirs.type)
            if i is None:
                self._codecs.append(SoraVideoCodecPreference.Codec(
                    theirs.type, theirs.encoder, theirs.decoder, theirs.parameters))
                continue
            mine = self._codecs[i]
            if theirs.encoder is not None:
                mine.encoder = theirs.encoder
            if theirs.decoder is not None:
                mine.decoder = theirs.decoder

    def __repr__(self) -> str:
        return f"<SoraVideoCodecPreference {self._codecs}>"


def create_video_codec_preference_from_implementation(
        capability: SoraVideoCodecCapability, implementation: SoraVideoCodecImplementation,
        /) -> SoraVideoCodecPreference:
    """A preference using `implementation` for every codec it encodes or decodes according to
    `capability` (the other codecs are listed with None)."""
    if not isinstance(capability, SoraVideoCodecCapability):
        raise TypeError("capability must be a SoraVideoCodecCapability")
    imp = _implementation(implementation, "implementation")
    pref = SoraVideoCodecPreference()
    for engine in capability.engines:
        if engine.name != imp:
            continue
        for c in engine.codecs:
            pref.codecs = pref.codecs + [SoraVideoCodecPreference.Codec(
                c.type, imp if c.encoder else None, imp if c.decoder else None)]
    return pref


def checked_preference(preference: Any, openh264: Optional[str]) -> Optional[list]:
    """`Sora(video_codec_preference=...)`: the shim's JSON form, checked against the engines
    of this machine (CodecPreferenceError otherwise)."""
    if preference is None:
        return None
    if not isinstance(preference, SoraVideoCodecPreference):
        raise TypeError("video_codec_preference must be a SoraVideoCodecPreference, "
                        f"not {type(preference).__name__}")
    codecs = preference.to_json()["codecs"]  # type: ignore[index]
    status = lib.sora_video_codec_preference_check(
        json.dumps(codecs).encode(), openh264.encode() if openh264 is not None else ffi.NULL)
    if status == _SORA_ERR_INVALID_ARGUMENT:
        raise CodecPreferenceError(last_error())
    check(status)
    return codecs
