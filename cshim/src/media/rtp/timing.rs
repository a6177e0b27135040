//! Time bases: NTP timestamps (64-bit, 32.32 fixed point seconds since 1900), the "compact"
//! middle-32-bit form used by LSR/DLSR, capture time → RTP timestamp, and the reverse mapping
//! of a remote stream's RTP timestamps to its sender's NTP time via SRs (for A/V sync).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

pub fn system_time_to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS);
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

pub fn ntp_to_system_time(ntp: u64) -> SystemTime {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET_SECS);
    let nanos = ((ntp & 0xffff_ffff) * 1_000_000_000) >> 32;
    UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos)
}

pub fn ntp_now() -> u64 {
    system_time_to_ntp(SystemTime::now())
}

/// Middle 32 bits (16.16 fixed point seconds), as in LSR.
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

pub fn compact_to_duration(c: u32) -> Duration {
    Duration::from_nanos((u64::from(c) * 1_000_000_000) >> 16)
}

pub fn duration_to_compact(d: Duration) -> u32 {
    let v = d.as_nanos() * 65_536 / 1_000_000_000;
    v.min(u128::from(u32::MAX)) as u32
}

pub fn duration_to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

pub fn ntp_to_duration(ntp: u64) -> Duration {
    Duration::from_secs(ntp >> 32) + Duration::from_nanos(((ntp & 0xffff_ffff) * 1_000_000_000) >> 32)
}

/// Signed difference `a - b` of two NTP timestamps, in seconds.
pub fn ntp_diff_secs(a: u64, b: u64) -> f64 {
    (a.wrapping_sub(b) as i64) as f64 / 4_294_967_296.0
}

/// A monotonic NTP clock: wall-clock NTP sampled once, then advanced by `Instant`, so SR
/// timestamps never jump when the system clock is adjusted. Share one per connection so
/// audio and video SRs use the same time base.
#[derive(Clone, Copy, Debug)]
pub struct NtpClock {
    base_instant: Instant,
    base_ntp: u64,
}

impl Default for NtpClock {
    fn default() -> Self {
        Self::new()
    }
}

impl NtpClock {
    pub fn new() -> Self {
        Self { base_instant: Instant::now(), base_ntp: ntp_now() }
    }

    pub fn with_anchor(base_instant: Instant, base_ntp: u64) -> Self {
        Self { base_instant, base_ntp }
    }

    pub fn ntp(&self, at: Instant) -> u64 {
        if at >= self.base_instant {
            self.base_ntp.wrapping_add(duration_to_ntp(at - self.base_instant))
        } else {
            self.base_ntp.wrapping_sub(duration_to_ntp(self.base_instant - at))
        }
    }
}

/// Maps capture instants to RTP timestamps of one stream (random initial offset, RFC 3550
/// §5.1). Audio at 48 kHz, video at 90 kHz.
#[derive(Clone, Copy, Debug)]
pub struct RtpClock {
    clock_rate: u32,
    base_instant: Instant,
    base_rtp: u32,
}

impl RtpClock {
    pub fn new(clock_rate: u32) -> Self {
        Self::with_base(clock_rate, Instant::now(), rand::random())
    }

    pub fn with_base(clock_rate: u32, base_instant: Instant, base_rtp: u32) -> Self {
        Self { clock_rate: clock_rate.max(1), base_instant, base_rtp }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// RTP timestamp of a capture instant (instants before the base go backwards, wrapping).
    pub fn rtp_timestamp(&self, capture: Instant) -> u32 {
        let ticks: i128 = if capture >= self.base_instant {
            ((capture - self.base_instant).as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as i128
        } else {
            -(((self.base_instant - capture).as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as i128)
        };
        self.base_rtp.wrapping_add(ticks as u32)
    }

    /// The (NTP, RTP) pair for a sender report generated at `now`.
    pub fn sr_timestamps(&self, ntp: &NtpClock, now: Instant) -> (u64, u32) {
        (ntp.ntp(now), self.rtp_timestamp(now))
    }
}

/// Maps a remote stream's RTP timestamps to its sender's NTP time using the last SR; two
/// streams of one sender (audio, video) can then be compared on one time line.
#[derive(Clone, Copy, Debug)]
pub struct RemoteClock {
    clock_rate: u32,
    last_sr: Option<(u64, u32)>,
}

impl RemoteClock {
    pub fn new(clock_rate: u32) -> Self {
        Self { clock_rate: clock_rate.max(1), last_sr: None }
    }

    pub fn on_sender_report(&mut self, ntp: u64, rtp_ts: u32) {
        self.last_sr = Some((ntp, rtp_ts));
    }

    pub fn has_sr(&self) -> bool {
        self.last_sr.is_some()
    }

    /// Sender NTP time of the sample with this RTP timestamp (within ±2^31 ticks of the SR).
    pub fn ntp_for_rtp(&self, rtp_ts: u32) -> Option<u64> {
        let (ntp, base) = self.last_sr?;
        let ticks = i64::from(rtp_ts.wrapping_sub(base) as i32);
        let delta = ((i128::from(ticks) << 32) / i128::from(self.clock_rate)) as i64;
        Some(ntp.wrapping_add(delta as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversions() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        let ntp = system_time_to_ntp(t);
        assert_eq!(ntp >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31);
        let back = ntp_to_system_time(ntp);
        assert_eq!(back, t);
        assert_eq!(ntp_compact(0x1111_2222_3333_4444), 0x2222_3333);
        assert_eq!(duration_to_compact(Duration::from_millis(250)), 16_384);
        assert_eq!(compact_to_duration(16_384), Duration::from_millis(250));
        assert_eq!(ntp_to_duration(duration_to_ntp(Duration::from_millis(1500))), Duration::from_millis(1500));
        assert!((ntp_diff_secs(1 << 32, 3 << 31) + 0.5).abs() < 1e-9);
    }

    #[test]
    fn rtp_clock_maps_capture_time() {
        let t0 = Instant::now();
        let v = RtpClock::with_base(90_000, t0, u32::MAX - 1000);
        assert_eq!(v.rtp_timestamp(t0), u32::MAX - 1000);
        // 33.333 ms later -> 3000 ticks, wrapping through 2^32.
        assert_eq!(v.rtp_timestamp(t0 + Duration::from_nanos(33_333_334)), 1999);
        let a = RtpClock::with_base(48_000, t0, 0);
        assert_eq!(a.rtp_timestamp(t0 + Duration::from_millis(20)), 960);
        let ntp = NtpClock::with_anchor(t0, 10u64 << 32);
        assert_eq!(ntp.ntp(t0 + Duration::from_millis(500)), (10u64 << 32) | (1 << 31));
        assert_eq!(ntp.ntp(t0), 10u64 << 32);
        let (n, r) = a.sr_timestamps(&ntp, t0 + Duration::from_secs(1));
        assert_eq!((n, r), (11u64 << 32, 48_000));
    }

    #[test]
    fn remote_clock_aligns_audio_and_video() {
        // Sender: audio and video captured at the same instant get the same NTP back.
        let t0 = Instant::now();
        let ntp = NtpClock::with_anchor(t0, 100u64 << 32);
        let audio = RtpClock::with_base(48_000, t0, 123_456);
        let video = RtpClock::with_base(90_000, t0, u32::MAX - 10);
        let sr_at = t0 + Duration::from_secs(2);
        let mut ra = RemoteClock::new(48_000);
        let mut rv = RemoteClock::new(90_000);
        assert!(ra.ntp_for_rtp(0).is_none());
        let (n, r) = audio.sr_timestamps(&ntp, sr_at);
        ra.on_sender_report(n, r);
        let (n, r) = video.sr_timestamps(&ntp, sr_at);
        rv.on_sender_report(n, r);
        for ms in [0u64, 1000, 2500, 7000] {
            let cap = t0 + Duration::from_millis(ms);
            let na = ra.ntp_for_rtp(audio.rtp_timestamp(cap)).unwrap();
            let nv = rv.ntp_for_rtp(video.rtp_timestamp(cap)).unwrap();
            assert!(ntp_diff_secs(na, nv).abs() < 0.0001, "{ms}: {}", ntp_diff_secs(na, nv));
            assert!((ntp_diff_secs(na, ntp.ntp(cap))).abs() < 0.0001);
        }
    }
}
