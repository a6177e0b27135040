"""m-section text for ``sora_peer_add_track``.

The dev server is always the offerer. For every m-line it hands the shim (libdatachannel
underneath) one complete media section; the shim adds ICE/DTLS attributes, candidates and
the BUNDLE group itself. Rules (sora-protocol.md §5, §9.7):

* the client's own upstream: first audio then first video m-section, ``a=recvonly`` from
  the server, no ``a=ssrc`` (the client's answer names its SSRCs), simulcast ``rid`` lines
  when asked for;
* every remote sender: one audio and one video section, ``a=sendonly`` with
  ``a=msid:<sender connection_id> <track id>`` and ``a=ssrc`` ``cname``/``msid`` lines (the
  stream id the client sees *is* the sender's connection_id);
* header extension ids are the same in every section (one BUNDLE shares one id space).

Everything here is pure string building, testable without the native shim.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

EOL = "\r\n"

VIDEO_CODECS = ("VP9", "VP8", "AV1", "H264", "H265")
AUDIO_CODECS = ("OPUS",)

#: codec name -> (payload type, rtpmap encoding name)
VIDEO_PAYLOAD_TYPES = {
    "VP8": (96, "VP8"),
    "VP9": (98, "VP9"),
    "H264": (102, "H264"),
    "H265": (104, "H265"),
    "AV1": (45, "AV1"),
}
OPUS_PT = 111

#: ``goog-remb``: the server sends REMB to every upstream video sender (``upstream_bitrate``)
VIDEO_RTCP_FB = ("goog-remb", "nack", "nack pli", "ccm fir")

#: bps announced by REMB to a video sender whose connect gave no ``video.bit_rate``
#: (Sora's signaling leaves the default to the server; 5 Mbps lets a 720p30 upstream run
#: unconstrained while staying a plausible per-connection ceiling)
DEFAULT_UPSTREAM_BPS = 5_000_000

# One id space for the whole bundle.
EXT_AUDIO_LEVEL = (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
EXT_MID = (4, "urn:ietf:params:rtp-hdrext:sdes:mid")
EXT_RID = (10, "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id")
EXT_RRID = (11, "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id")
#: transport-wide sequence numbers, on the clients' upstream only: the server reports their
#: arrivals (transport-cc feedback) for the sender's bandwidth estimate. Downstream sections
#: leave it out: forwarded packets carry the sender's numbers, not the server's.
EXT_TWCC = (3, "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")

SIMULCAST_RIDS = ("r0", "r1", "r2")
#: what a receiver may ask for of a simulcast sender ("none": no video)
REQUESTABLE_RIDS = ("none",) + SIMULCAST_RIDS


@dataclass
class VideoCodec:
    """One video codec choice with its fmtp parameters."""

    name: str = "VP9"
    vp9_profile_id: int = 0
    av1_profile: int = 0
    h264_profile_level_id: str = "42e01f"
    #: RFC 7798 fmtp: level-id 93 = level 3.1 (level x 30), profile-id 1 = Main, SRST
    h265_level_id: int = 93
    h265_profile_id: int = 1
    h265_tier_flag: int = 0
    h265_tx_mode: str = "SRST"

    @property
    def payload_type(self) -> int:
        return VIDEO_PAYLOAD_TYPES[self.name][0]

    def fmtp(self) -> Optional[str]:
        if self.name == "VP9":
            return f"profile-id={self.vp9_profile_id}"
        if self.name == "AV1":
            return f"level-idx=5;profile={self.av1_profile};tier=0"
        if self.name == "H264":
            return (
                "level-asymmetry-allowed=1;packetization-mode=1;"
                f"profile-level-id={self.h264_profile_level_id}"
            )
        if self.name == "H265":
            return (f"level-id={self.h265_level_id};profile-id={self.h265_profile_id};"
                    f"tier-flag={self.h265_tier_flag};tx-mode={self.h265_tx_mode}")
        return None

    @classmethod
    def from_connect(cls, video: object, default: str = "VP9") -> "VideoCodec":
        """From a connect ``video`` value (bool or object). Raises ValueError when invalid."""
        codec = cls(name=default)
        if not isinstance(video, dict):
            return codec
        ct = video.get("codec_type")
        if ct is not None:
            if not isinstance(ct, str) or ct.upper() not in VIDEO_CODECS:
                raise ValueError(f"unsupported video codec_type {ct!r}")
            codec.name = ct.upper()
        vp9 = video.get("vp9_params")
        if isinstance(vp9, dict) and vp9.get("profile_id") is not None:
            pid = vp9["profile_id"]
            if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid <= 3:
                raise ValueError("invalid vp9_params.profile_id")
            codec.vp9_profile_id = pid
        av1 = video.get("av1_params")
        if isinstance(av1, dict) and av1.get("profile") is not None:
            prof = av1["profile"]
            if not isinstance(prof, int) or isinstance(prof, bool) or not 0 <= prof <= 2:
                raise ValueError("invalid av1_params.profile")
            codec.av1_profile = prof
        h264 = video.get("h264_params")
        if isinstance(h264, dict) and h264.get("profile_level_id") is not None:
            plid = h264["profile_level_id"]
            if not isinstance(plid, str) or not re.fullmatch(r"[0-9a-fA-F]{6}", plid):
                raise ValueError("invalid h264_params.profile_level_id")
            codec.h264_profile_level_id = plid.lower()
        h265 = video.get("h265_params")
        if isinstance(h265, dict):
            codec._apply_h265_params(h265)
        return codec

    def _apply_h265_params(self, h265: dict) -> None:
        """Sora's ``h265_params``: ``level_id`` (int, or digits as a string), ``profile_id``,
        ``tier_flag`` and ``tx_mode``, each becoming its RFC 7798 fmtp parameter."""
        def small_int(key: str, high: int) -> Optional[int]:
            value = h265.get(key)
            if value is None:
                return None
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
                raise ValueError(f"invalid h265_params.{key}")
            return value
        level = small_int("level_id", 255)
        profile = small_int("profile_id", 31)
        tier = small_int("tier_flag", 1)
        if level is not None:
            self.h265_level_id = level
        if profile is not None:
            self.h265_profile_id = profile
        if tier is not None:
            self.h265_tier_flag = tier
        tx = h265.get("tx_mode")
        if tx is not None:
            if tx not in ("SRST", "MRST", "MRMT"):
                raise ValueError("invalid h265_params.tx_mode")
            self.h265_tx_mode = tx


@dataclass
class OpusParams:
    stereo: bool = False
    useinbandfec: bool = True
    usedtx: bool = False
    minptime: int = 10
    maxplaybackrate: Optional[int] = None
    ptime: Optional[int] = None

    def fmtp(self) -> str:
        parts = [f"minptime={self.minptime}", f"useinbandfec={int(self.useinbandfec)}"]
        if self.stereo:
            parts += ["stereo=1", "sprop-stereo=1"]
        if self.usedtx:
            parts.append("usedtx=1")
        if self.maxplaybackrate:
            parts.append(f"maxplaybackrate={self.maxplaybackrate}")
        if self.ptime:
            parts.append(f"ptime={self.ptime}")
        return ";".join(parts)

    @classmethod
    def from_connect(cls, audio: object) -> "OpusParams":
        p = cls()
        if not isinstance(audio, dict):
            return p
        ct = audio.get("codec_type")
        if ct is not None and (not isinstance(ct, str) or ct.upper() not in AUDIO_CODECS):
            raise ValueError(f"unsupported audio codec_type {ct!r}")
        op = audio.get("opus_params")
        if isinstance(op, dict):
            if op.get("stereo") or op.get("sprop_stereo") or op.get("channels") == 2:
                p.stereo = True
            if op.get("useinbandfec") is not None:
                p.useinbandfec = bool(op["useinbandfec"])
            if op.get("usedtx") is not None:
                p.usedtx = bool(op["usedtx"])
            for key in ("minptime", "maxplaybackrate", "ptime"):
                val = op.get(key)
                if isinstance(val, int) and not isinstance(val, bool) and val > 0:
                    setattr(p, key, val)
        return p


def _lines(*lines: Optional[str]) -> str:
    return "".join(line + EOL for line in lines if line)


def _extmaps(exts: Iterable[tuple]) -> list:
    return [f"a=extmap:{i} {uri}" for i, uri in exts]


def audio_section(
    mid: str,
    direction: str,
    opus: Optional[OpusParams] = None,
    *,
    msid: Optional[tuple] = None,
    ssrc: Optional[int] = None,
    cname: Optional[str] = None,
    transport_cc: bool = False,
) -> str:
    """An Opus m-section. ``msid`` = (stream id, track id) and ``ssrc`` for send-only ones;
    ``transport_cc`` offers transport-wide congestion control (upstream)."""
    opus = opus or OpusParams()
    lines = [
        f"m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}",
        "c=IN IP4 0.0.0.0",
        f"a=mid:{mid}",
        f"a={direction}",
        *_extmaps([EXT_AUDIO_LEVEL, EXT_MID] + ([EXT_TWCC] if transport_cc else [])),
        f"a=msid:{msid[0]} {msid[1]}" if msid else None,
        "a=rtcp-mux",
        f"a=rtpmap:{OPUS_PT} opus/48000/2",
        f"a=fmtp:{OPUS_PT} {opus.fmtp()}",
        f"a=rtcp-fb:{OPUS_PT} transport-cc" if transport_cc else None,
    ]
    lines += _ssrc_lines(ssrc, cname, msid)
    return _lines(*lines)


def video_section(
    mid: str,
    direction: str,
    codec: Optional[VideoCodec] = None,
    *,
    msid: Optional[tuple] = None,
    ssrc: Optional[int] = None,
    cname: Optional[str] = None,
    simulcast: bool = False,
    paused_rids: Iterable[str] = (),
    bit_rate_kbps: Optional[int] = None,
    transport_cc: bool = False,
) -> str:
    """A video m-section for one codec; ``simulcast`` adds ``rid … recv`` lines (upstream),
    ``paused_rids`` marks layers ``~`` (RFC 8853: a libwebrtc sender leaves them off)."""
    codec = codec or VideoCodec()
    pt = codec.payload_type
    exts = [EXT_MID]
    if simulcast:
        exts += [EXT_RID, EXT_RRID]
    if transport_cc:
        exts.append(EXT_TWCC)
    fmtp = codec.fmtp()
    lines = [
        f"m=video 9 UDP/TLS/RTP/SAVPF {pt}",
        "c=IN IP4 0.0.0.0",
        f"b=AS:{int(bit_rate_kbps)}" if bit_rate_kbps else None,
        f"a=mid:{mid}",
        f"a={direction}",
        *_extmaps(exts),
        f"a=msid:{msid[0]} {msid[1]}" if msid else None,
        "a=rtcp-mux",
        f"a=rtpmap:{pt} {VIDEO_PAYLOAD_TYPES[codec.name][1]}/90000",
        f"a=fmtp:{pt} {fmtp}" if fmtp else None,
        *[f"a=rtcp-fb:{pt} {fb}" for fb in VIDEO_RTCP_FB + (("transport-cc",) if transport_cc else ())],
    ]
    if simulcast:
        lines += [f"a=rid:{rid} recv" for rid in SIMULCAST_RIDS]
        paused = set(paused_rids)
        lines.append("a=simulcast:recv " + ";".join(
            ("~" + rid) if rid in paused else rid for rid in SIMULCAST_RIDS))
    lines += _ssrc_lines(ssrc, cname, msid)
    return _lines(*lines)


def _ssrc_lines(ssrc: Optional[int], cname: Optional[str], msid: Optional[tuple]) -> list:
    if ssrc is None:
        return []
    out = [f"a=ssrc:{ssrc} cname:{cname or 'sora'}"]
    if msid:
        out.append(f"a=ssrc:{ssrc} msid:{msid[0]} {msid[1]}")
    return out


def simulcast_encodings(bit_rate_kbps: Optional[int], overrides: Optional[list] = None) -> list:
    """``offer.encodings`` for a simulcast upstream (r0 lowest … r2 highest, §6).

    ``maxBitrate`` is 10 %, 23.3 % and 60 % of the connection's video bitrate: at 1500 kbps
    Sora gives 150, 350 and 900 kbps (sora-js-sdk's simulcast_rid end-to-end test states
    those maxima [I: one bitrate seen; the rule for others is assumed proportional]).
    ``scalabilityMode`` is L1T1: that test expects Chrome to report L1T1 on every layer while
    its page sets none, and libwebrtc's VP8 simulcast defaults to L1T3 (the official SDK
    reports L1T3 when the offer names no mode) [I]."""
    total = (bit_rate_kbps or 1500) * 1000
    enc = [
        {"rid": "r0", "active": True, "scaleResolutionDownBy": 4.0,
         "maxBitrate": max(total // 10, 50_000), "scalabilityMode": "L1T1"},
        {"rid": "r1", "active": True, "scaleResolutionDownBy": 2.0,
         "maxBitrate": max(total * 7 // 30, 100_000), "scalabilityMode": "L1T1"},
        {"rid": "r2", "active": True, "scaleResolutionDownBy": 1.0,
         "maxBitrate": max(total * 3 // 5, 150_000), "scalabilityMode": "L1T1"},
    ]
    if overrides:
        by_rid = {e["rid"]: e for e in enc}
        for o in overrides:
            if isinstance(o, dict) and o.get("rid") in by_rid:
                by_rid[o["rid"]].update(o)
    return enc


def paused_rids(bit_rate_kbps: Optional[int], overrides: Optional[list] = None) -> list:
    """The rids whose encoding is ``active: false`` (auth's ``simulcast_encodings``)."""
    return [e["rid"] for e in simulcast_encodings(bit_rate_kbps, overrides)
            if e.get("active", True) is False]


def upstream_bitrate(bit_rate_kbps: Optional[int], simulcast: bool = False,
                     overrides: Optional[list] = None) -> int:
    """bps the server announces (REMB) to a client's upstream video: ``video.bit_rate``
    (kbps) of its connect or auth result, else :data:`DEFAULT_UPSTREAM_BPS`; with simulcast
    the sum of the active encodings' ``maxBitrate`` (``offer.encodings``)."""
    if simulcast:
        total = 0
        for e in simulcast_encodings(bit_rate_kbps, overrides):
            rate = e.get("maxBitrate")
            if e.get("active", True) is not False and isinstance(rate, (int, float)) and rate > 0:
                total += int(rate)
        if total > 0:
            return total
    if bit_rate_kbps:
        return int(bit_rate_kbps) * 1000
    return DEFAULT_UPSTREAM_BPS


_MID_RE = re.compile(r"^a=mid:(\S+)\s*$", re.M)
_MLINE_RE = re.compile(r"^m=(\S+) (\d+) ", re.M)


def sections(sdp: str) -> list:
    """[(kind, port, mid)] for each m-section of ``sdp`` (helper for checks and tests)."""
    out = []
    parts = re.split(r"\r?\n(?=m=)", sdp)
    for part in parts[1:] if not sdp.startswith("m=") else parts:
        m = _MLINE_RE.search(part)
        mid = _MID_RE.search(part)
        if m:
            out.append((m.group(1), int(m.group(2)), mid.group(1) if mid else None))
    return out


def bundle_tag(sdp: str) -> Optional[str]:
    """The first mid of ``sdp``'s BUNDLE group: the section whose transport the others use.
    libwebrtc drops that transport when a re-offer rejects this section (port 0), so a
    departed sender's section that is the tag is kept, inactive, instead of rejected."""
    for line in sdp.splitlines():
        if line.startswith("a=group:BUNDLE"):
            mids = line.split()[1:]
            return mids[0] if mids else None
    return None


def max_numeric_mid(sdp: str) -> int:
    """Largest integer mid in ``sdp`` (-1 when none)."""
    best = -1
    for _, _, mid in sections(sdp):
        if mid is not None and mid.isdigit():
            best = max(best, int(mid))
    return best


def _section(sdp: str, mid: str) -> Optional[str]:
    for part in re.split(r"\r?\n(?=m=)", sdp):
        found = _MID_RE.search(part)
        if found and found.group(1) == mid:
            return part
    return None


def simulcast_send_rid_ext(sdp: str, mid: str) -> Optional[int]:
    """For an answer whose section ``mid`` sends simulcast (``a=simulcast:send``): the id of
    its RID header extension, which names each packet's layer; None otherwise."""
    part = _section(sdp, mid)
    if part is None or not re.search(r"^a=simulcast:\s*send ", part, re.M):
        return None
    return section_extmap_id(sdp, mid, EXT_RID[1])


def section_extmap_id(sdp: str, mid: str, uri: str) -> Optional[int]:
    """The id section ``mid`` of ``sdp`` gives the header extension ``uri`` (None: none)."""
    part = _section(sdp, mid)
    m = re.search(r"^a=extmap:(\d+)(?:/\w+)? " + re.escape(uri) + r"\s*$", part, re.M) if part else None
    return int(m.group(1)) if m else None


def section_ssrc(sdp: str, mid: str) -> Optional[int]:
    """The first ``a=ssrc`` of the m-section ``mid`` (the media SSRC its sender uses)."""
    part = _section(sdp, mid)
    m = re.search(r"^a=ssrc:(\d+) ", part, re.M) if part is not None else None
    return int(m.group(1)) if m else None
