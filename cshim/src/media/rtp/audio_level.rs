//! The client-to-mixer audio level header extension (RFC 6464, `ssrc-audio-level`): one
//! byte per packet, the V flag (voice activity) and the level of the audio in the packet in
//! -dBov (0 = full scale, 127 = silence or quieter). An SFU reads it to see who speaks
//! without decoding anything (the dev server's spotlight does).

pub const URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// The level of `pcm` in -dBov, 0..=127, as libwebrtc's RMS level computes it: the mean
/// square against full scale (32768²), rounded; silence is 127.
pub fn level_dbov(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return 127;
    }
    let sum: f64 = pcm.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let mean_square = sum / pcm.len() as f64 / (32768.0 * 32768.0);
    if mean_square <= 0.0 {
        return 127;
    }
    (-10.0 * mean_square.log10()).round().clamp(0.0, 127.0) as u8
}

/// The extension's byte: V in the top bit, the level below.
pub fn value(level: u8, voice: bool) -> u8 {
    (u8::from(voice) << 7) | level.min(127)
}

/// (level, V) of an extension value; None unless it is one byte (RFC 6464 §3's one-byte
/// form; the two-byte header form pads it, and only the first byte counts).
pub fn parse(value: &[u8]) -> Option<(u8, bool)> {
    let b = *value.first()?;
    Some((b & 0x7f, b & 0x80 != 0))
}

/// A packet's audio when its RTP timestamps do not tell (the first, reordered, gaps): 20 ms.
const DEFAULT_PACKET_SECS: f64 = 0.02;
/// Timestamp steps longer than this are gaps (DTX, loss), not one packet's audio.
const MAX_PACKET_SECS: f64 = 0.12;

/// W3C `audioLevel`, `totalAudioEnergy` and `totalSamplesDuration` of a received track from
/// the extension of each packet: its loudness without decoding it (docs/design.md).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelMeter {
    pub audio_level: f64,
    pub total_audio_energy: f64,
    pub total_samples_duration: f64,
    last_timestamp: Option<u32>,
}

impl LevelMeter {
    /// One packet: its extension's level (-dBov) and its RTP timestamp.
    pub fn on_packet(&mut self, level: u8, rtp_timestamp: u32, clock_rate: u32) {
        let rate = f64::from(clock_rate.max(1));
        // Time is counted from forward steps of the RTP clock only: a duplicate or a
        // reordered (older) packet covers audio whose time is already counted.
        let step = match self.last_timestamp {
            None => Some(DEFAULT_PACKET_SECS),
            Some(prev) => {
                let d = rtp_timestamp.wrapping_sub(prev);
                (d > 0 && d < u32::MAX / 2).then(|| {
                    let s = f64::from(d) / rate;
                    if s <= MAX_PACKET_SECS { s } else { DEFAULT_PACKET_SECS } // a gap: one packet
                })
            }
        };
        let Some(secs) = step else { return };
        self.last_timestamp = Some(rtp_timestamp);
        // 127 is "silence or quieter" (RFC 6464): zero, not -127 dBov.
        let linear = if level >= 127 { 0.0 } else { 10f64.powf(-f64::from(level) / 20.0) };
        self.audio_level = linear;
        self.total_audio_energy += linear * linear * secs;
        self.total_samples_duration += secs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_sums_energy_over_the_packets_duration() {
        let mut m = LevelMeter::default();
        for i in 0..50u32 {
            m.on_packet(20, 1000 + i * 960, 48_000); // -20 dBov = 0.1, 20 ms each
        }
        assert!((m.audio_level - 0.1).abs() < 1e-9);
        assert!((m.total_samples_duration - 1.0).abs() < 1e-9);
        assert!((m.total_audio_energy - 0.01).abs() < 1e-9);
        m.on_packet(127, 1000 + 50 * 960, 48_000); // silence counts as zero
        assert_eq!(m.audio_level, 0.0);
        m.on_packet(20, 1000 + 10 * 960, 48_000); // reordered: its time is counted already
        m.on_packet(20, 1000 + 50 * 960, 48_000); // a duplicate: likewise
        assert!((m.total_samples_duration - 1.02).abs() < 1e-9);
        m.on_packet(20, 1000 + 52 * 960, 48_000); // one packet lost: its 20 ms count too
        assert!((m.total_samples_duration - 1.06).abs() < 1e-9);
        m.on_packet(20, 1000 + 500 * 960, 48_000); // a gap (DTX): one packet's 20 ms
        assert!((m.total_samples_duration - 1.08).abs() < 1e-9);
    }

    #[test]
    fn levels_follow_the_rms_in_dbov() {
        assert_eq!(level_dbov(&[]), 127);
        assert_eq!(level_dbov(&[0; 960]), 127);
        // a full-scale square wave is 0 dBov
        let square: Vec<i16> = (0..960).map(|i| if i % 2 == 0 { 32767 } else { -32768 }).collect();
        assert_eq!(level_dbov(&square), 0);
        // a sine of amplitude 8000: RMS 5657 → -15.3 dBov
        let sine: Vec<i16> = (0..960).map(|i| (8000.0 * (i as f64 * 0.0654).sin()) as i16).collect();
        assert_eq!(level_dbov(&sine), 15);
        // one LSB of noise is far below anything audible and stays within the range
        assert_eq!(level_dbov(&[1; 960]), 90);
    }

    #[test]
    fn the_byte_carries_voice_and_level() {
        assert_eq!(value(15, false), 15);
        assert_eq!(value(15, true), 0x8f);
        assert_eq!(value(200, false), 127);
        assert_eq!(parse(&[0x8f]), Some((15, true)));
        assert_eq!(parse(&[0x7f, 0, 0]), Some((127, false)));
        assert_eq!(parse(&[]), None);
    }
}
