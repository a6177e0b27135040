"""What Sora does not signal, measured from the media (docs/rtc.md, "Derived state"):
who is speaking, whether a remote track is muted, and each participant's connection
quality. One `get_stats()` every interval per room, and only while someone listens for
these events; the numbers come from the W3C counters of the inbound and outbound streams.

* Speaking: the average level over the interval, sqrt(Δ totalAudioEnergy / Δ
  totalSamplesDuration) (W3C's recipe), above SPEAKING_ON starts speaking; below
  SPEAKING_OFF for SPEAKING_HOLD intervals stops it (the pauses between words do not).
* Muted: a sender that is muted (sora_ffi's `set_enabled(False)`, libwebrtc's disabled
  track) sends digital silence for audio; a stopped sender sends nothing. Audio below
  MUTED_LEVEL, or no packets, for MUTED_INTERVALS intervals is muted; video with no packets
  likewise. (A muted video sender that sends black frames is not seen as muted.)
* Quality: from the interval's loss and the stream's jitter (remote participants: what we
  receive from them; the local participant: what the server reports of what we send, and
  the round trip time).
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

SPEAKING_ON = 0.02  # about -34 dBFS
SPEAKING_OFF = 0.01
SPEAKING_HOLD = 3
MUTED_LEVEL = 1e-4  # -80 dBFS: digital silence, below any microphone's noise
MUTED_INTERVALS = 2


class ConnectionQuality(enum.IntEnum):
    QUALITY_POOR = 0
    QUALITY_GOOD = 1
    QUALITY_EXCELLENT = 2
    QUALITY_LOST = 3


def quality_of(loss: float, jitter: float, rtt: Optional[float] = None) -> ConnectionQuality:
    """From packet loss (0..1), jitter and round trip time (seconds)."""
    rtt = rtt or 0.0
    if loss < 0.02 and jitter < 0.03 and rtt < 0.3:
        return ConnectionQuality.QUALITY_EXCELLENT
    if loss < 0.08 and jitter < 0.1 and rtt < 0.6:
        return ConnectionQuality.QUALITY_GOOD
    return ConnectionQuality.QUALITY_POOR


@dataclass
class _Stream:
    """The counters of one stream at the previous poll, and what was derived from them."""
    energy: float = 0.0
    duration: float = 0.0
    packets: int = 0
    lost: int = 0
    seeded: bool = False
    quiet: int = 0  # consecutive intervals that looked muted
    muted: bool = False


@dataclass
class Interval:
    """One stream over one interval."""
    level: Optional[float]  # average audio level; None for video or no audio
    packets: int
    lost: int
    jitter: float
    muted_now: bool  # this interval looked muted


@dataclass
class _Speaker:
    speaking: bool = False
    below: int = 0
    level: float = 0.0


@dataclass
class Tracker:
    """Feeds on stats reports; pure (no room, no clock) so that it can be tested alone."""
    streams: dict[str, _Stream] = field(default_factory=dict)
    speakers: dict[str, _Speaker] = field(default_factory=dict)

    def interval(self, key: str, report: dict, counts_packets: bool = True) -> Optional[Interval]:
        """The interval since the previous report of stream `key` (None the first time).
        `counts_packets` False: a local source, which has no packets to stop."""
        s = self.streams.setdefault(key, _Stream())
        energy = float(report.get("totalAudioEnergy") or 0.0)
        duration = float(report.get("totalSamplesDuration") or 0.0)
        packets = int(report.get("packetsReceived") or 0)
        lost = max(int(report.get("packetsLost") or 0), 0)
        seeded = s.seeded
        d_energy, d_duration = energy - s.energy, duration - s.duration
        d_packets, d_lost = packets - s.packets, lost - s.lost
        s.energy, s.duration, s.packets, s.lost, s.seeded = energy, duration, packets, lost, True
        if not seeded:
            return None
        level = math.sqrt(max(d_energy, 0.0) / d_duration) if d_duration > 0 else None
        audio = report.get("kind") == "audio"
        stopped = counts_packets and d_packets <= 0
        muted_now = stopped or (audio and (level is None or level < MUTED_LEVEL))
        s.quiet = s.quiet + 1 if muted_now else 0
        return Interval(level if audio else None, max(d_packets, 0), max(d_lost, 0),
                        float(report.get("jitter") or 0.0), muted_now)

    def muted(self, key: str) -> Optional[bool]:
        """The stream's muted state if it just changed, else None."""
        s = self.streams.get(key)
        if s is None:
            return None
        now = s.quiet >= MUTED_INTERVALS if not s.muted else s.quiet > 0
        if now != s.muted:
            s.muted = now
            return now
        return None

    def speaking(self, who: str, level: Optional[float]) -> bool:
        """Updates `who`'s speaking state with this interval's level; returns it."""
        sp = self.speakers.setdefault(who, _Speaker())
        sp.level = level or 0.0
        if sp.level >= SPEAKING_ON:
            sp.speaking, sp.below = True, 0
        elif sp.level < SPEAKING_OFF:
            sp.below += 1
            if sp.below >= SPEAKING_HOLD:
                sp.speaking = False
        return sp.speaking

    def keep_only(self, streams: Iterable[str], speakers: Iterable[str]) -> None:
        """Forgets the streams and speakers that are gone."""
        for name, keep in ((self.streams, set(streams)), (self.speakers, set(speakers))):
            for key in [k for k in name if k not in keep]:
                del name[key]


def by_type(reports: list, kind: str) -> list[dict]:
    return [r for r in reports if isinstance(r, dict) and r.get("type") == kind]


def rtt_of(reports: list) -> Optional[float]:
    pair = next(iter(by_type(reports, "candidate-pair")), None)
    value = pair.get("currentRoundTripTime") if pair else None
    return float(value) if isinstance(value, (int, float)) else None


def loss_fraction(lost: int, packets: int) -> float:
    total = lost + packets
    return lost / total if total > 0 else 0.0


def media_source_level(tracker: Tracker, reports: list) -> Optional[float]:
    """The local audio source's level over the interval."""
    src = next((r for r in by_type(reports, "media-source") if r.get("kind") == "audio"), None)
    iv = tracker.interval("local/audio", src, counts_packets=False) if src is not None else None
    return iv.level if iv is not None else None


def local_quality(reports: list) -> Optional[ConnectionQuality]:
    remote = by_type(reports, "remote-inbound-rtp")
    if not remote:
        return None
    loss = max(float(r.get("fractionLost") or 0.0) for r in remote)
    jitter = max(float(r.get("jitter") or 0.0) for r in remote)
    rtts = [float(r["roundTripTime"]) for r in remote if isinstance(r.get("roundTripTime"), (int, float))]
    return quality_of(loss, jitter, max(rtts) if rtts else rtt_of(reports))


