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

#[cfg(test)]
mod tests {
    use super::*;

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
