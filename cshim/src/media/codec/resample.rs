//! Streaming PCM rate and channel conversion. Rate conversion is rubato's windowed-sinc
//! resampler used as an exact polyphase filter: for a ratio out/in = p/q in lowest terms the
//! output falls on one of `p` phases between input samples, so a sinc table with `p` phases
//! and no interpolation between them is synchronous resampling with no added error (48 <->
//! 16 kHz: 1 or 3 phases, 44.1 -> 48 kHz: 160). Rate pairs with more phases than
//! `MAX_PHASES` (e.g. 44101 -> 48000) interpolate cubically between 128 phases instead.
//!
//! Why not rubato's FFT resampler, used before: it needs rustfft, whose planner keeps every
//! FFT algorithm in the library (0.8 MB of the shim). The sinc filter costs 1.5-3x as much
//! CPU (1-3 ms per second of audio; docs/design.md, "Resampling"), which only sources and
//! sinks at rates other than 48 kHz pay.
use crate::error::{Error, Result};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Indexing, SincInterpolationParameters, SincInterpolationType};

pub const MAX_RATE: u32 = 768_000;
pub const MAX_CHANNELS: u32 = 32;
/// Most sinc phases of an exact (synchronous) filter: its table holds `SINC_LEN` x phases
/// floats (80 KiB at 160 phases).
const MAX_PHASES: u32 = 256;
/// Filter taps: ~-100 dB stopband with the Blackman-Harris window.
const SINC_LEN: usize = 128;
/// Sinc phases for rate pairs with more than `MAX_PHASES`, interpolated cubically.
const INTERPOLATED_PHASES: u32 = 128;

pub struct Resampler {
    in_rate: u32,
    in_ch: usize,
    out_rate: u32,
    out_ch: usize,
    /// None when rates match: channel mixing only.
    rate: Option<Box<dyn rubato::Resampler<f32>>>,
    /// Channels that go through rubato: mixing down happens before it, mixing up after, so
    /// the expensive part always runs on the fewest channels.
    mid_ch: usize,
    /// Samples of an incomplete input frame left over from the last call.
    carry: Vec<i16>,
    /// Mixed, not yet resampled input (interleaved, mid_ch), consumed in rubato chunks.
    pending: Vec<f32>,
    scratch: Vec<f32>,
    /// Output frames still to discard: the resampler's startup delay, so output lines up
    /// with input and the first samples are not filter ramp-up.
    skip: usize,
}

impl Resampler {
    pub fn new(in_rate: u32, in_channels: u32, out_rate: u32, out_channels: u32) -> Result<Self> {
        for r in [in_rate, out_rate] {
            if r == 0 || r > MAX_RATE {
                return Err(Error::invalid(format!("invalid sample rate {r}")));
            }
        }
        for c in [in_channels, out_channels] {
            if c == 0 || c > MAX_CHANNELS {
                return Err(Error::invalid(format!("invalid channel count {c}")));
            }
        }
        let mid_ch = in_channels.min(out_channels) as usize;
        let (rate, skip): (Option<Box<dyn rubato::Resampler<f32>>>, usize) = if in_rate == out_rate {
            (None, 0)
        } else {
            let chunk = (in_rate as usize / 100).max(1); // 10 ms, the WebRTC audio frame
            let ratio = out_rate as f64 / in_rate as f64;
            let phases = out_rate / gcd(in_rate, out_rate);
            let (phases, interpolation) = if phases <= MAX_PHASES {
                (phases, SincInterpolationType::Nearest)
            } else {
                (INTERPOLATED_PHASES, SincInterpolationType::Cubic)
            };
            let params = SincInterpolationParameters::new(SINC_LEN, rubato::WindowFunction::BlackmanHarris2)
                .oversampling_factor(phases as usize)
                .interpolation(interpolation);
            let r: Box<dyn rubato::Resampler<f32>> = Box::new(
                Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, mid_ch, FixedAsync::Input)
                    .map_err(|e| Error::invalid(format!("resampler: {e}")))?,
            );
            (Some(r), Self::delay(ratio, phases))
        };
        let scratch = vec![0.0; rate.as_ref().map_or(0, |r| r.output_frames_max() * mid_ch)];
        Ok(Resampler {
            in_rate,
            in_ch: in_channels as usize,
            out_rate,
            out_ch: out_channels as usize,
            rate,
            mid_ch,
            carry: Vec::new(),
            pending: Vec::new(),
            scratch,
            skip,
        })
    }

    /// Output samples before the one that lines up with the first input sample: the filter's
    /// half length less where rubato 5.0's first output falls and where its phase tables put
    /// the filter's centre (one table step late). rubato's own `output_delay()` is rN/2,
    /// which left the output 1-2 samples early. Guarded by `down_and_up_again_lines_up_with_the_input`.
    fn delay(ratio: f64, phases: u32) -> usize {
        let table_step = 1.0 / phases as f64;
        (ratio * (SINC_LEN as f64 / 2.0 - table_step) - 1.0).round().max(0.0) as usize
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }
    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }
    pub fn in_channels(&self) -> u32 {
        self.in_ch as u32
    }
    pub fn out_channels(&self) -> u32 {
        self.out_ch as u32
    }

    /// Converts any number of interleaved samples (even a partial frame); state carries over
    /// between calls, so the output does not depend on how the input was chunked. Up to one
    /// 10 ms chunk plus the filter delay stays buffered inside when rates differ.
    pub fn process(&mut self, pcm: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        self.process_into(pcm, &mut out);
        out
    }

    /// Like [`process`](Self::process), appending to `out` (reuse it to avoid allocations).
    pub fn process_into(&mut self, pcm: &[i16], out: &mut Vec<i16>) {
        if self.rate.is_none()
            && self.in_ch == self.out_ch
            && self.carry.is_empty()
            && pcm.len().is_multiple_of(self.in_ch)
        {
            out.extend_from_slice(pcm); // identity fast path
            return;
        }
        // Whole frames from carry + pcm; a trailing partial frame waits for the next call.
        let mut rest = pcm;
        if !self.carry.is_empty() {
            let need = self.in_ch - self.carry.len();
            let take = need.min(rest.len());
            self.carry.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.carry.len() < self.in_ch {
                return;
            }
            let frame = std::mem::take(&mut self.carry);
            self.convert_frames(&frame, out);
            self.carry = frame;
            self.carry.clear();
        }
        let whole = rest.len() / self.in_ch * self.in_ch;
        self.convert_frames(&rest[..whole], out);
        self.carry.extend_from_slice(&rest[whole..]);
    }

    fn convert_frames(&mut self, pcm: &[i16], out: &mut Vec<i16>) {
        if pcm.is_empty() {
            return;
        }
        let Some(rate) = self.rate.as_mut() else {
            // Same rate: mix straight from i16 to i16.
            let start = out.len();
            out.resize(start + pcm.len() / self.in_ch * self.out_ch, 0);
            for (src, dst) in pcm.chunks_exact(self.in_ch).zip(out[start..].chunks_exact_mut(self.out_ch)) {
                mix(src.iter().map(|&s| s as f32), self.in_ch, dst, self.out_ch, to_i16);
            }
            return;
        };
        let start = self.pending.len();
        self.pending.resize(start + pcm.len() / self.in_ch * self.mid_ch, 0.0);
        for (src, dst) in pcm.chunks_exact(self.in_ch).zip(self.pending[start..].chunks_exact_mut(self.mid_ch)) {
            mix(src.iter().map(|&s| s as f32), self.in_ch, dst, self.mid_ch, |v| v);
        }
        let total = self.pending.len() / self.mid_ch;
        let mut offset = 0;
        while total - offset >= rate.input_frames_next() {
            let input = InterleavedSlice::new(&self.pending[..], self.mid_ch, total);
            let frames_out = self.scratch.len() / self.mid_ch;
            let output = InterleavedSlice::new_mut(&mut self.scratch[..], self.mid_ch, frames_out);
            let (Ok(input), Ok(mut output)) = (input, output) else { break };
            let idx = Indexing { input_offset: offset, ..Default::default() };
            // Buffers are sized from the resampler's own limits, so this cannot fail; stop
            // converting rather than panic if it ever does.
            let Ok((used, made)) = rate.process_into_buffer(&input, &mut output, Some(&idx)) else { break };
            offset += used;
            let drop = self.skip.min(made);
            self.skip -= drop;
            out.reserve((made - drop) * self.out_ch);
            for frame in self.scratch[drop * self.mid_ch..made * self.mid_ch].chunks_exact(self.mid_ch) {
                let at = out.len();
                out.resize(at + self.out_ch, 0);
                mix(frame.iter().copied(), self.mid_ch, &mut out[at..], self.out_ch, to_i16);
            }
        }
        self.pending.drain(..offset * self.mid_ch);
    }
}

fn to_i16(v: f32) -> i16 {
    v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

/// One frame from `n` to `m` channels: equal counts copy, mono fans out, N->1 averages all,
/// otherwise channel j takes the average of inputs j, j+m, j+2m... (down) or input j % n (up).
fn mix<T: Copy + Default>(
    src: impl Iterator<Item = f32> + Clone,
    n: usize,
    dst: &mut [T],
    m: usize,
    conv: impl Fn(f32) -> T,
) {
    if n == m {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = conv(s);
        }
    } else if m < n {
        for (j, d) in dst.iter_mut().enumerate() {
            let (sum, cnt) = src.clone().skip(j).step_by(m).fold((0.0f32, 0u32), |(a, c), s| (a + s, c + 1));
            *d = conv(sum / cnt as f32);
        }
    } else {
        let mut it = src.cycle();
        for d in dst.iter_mut() {
            *d = conv(it.next().unwrap_or(0.0));
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, frames: usize, channels: usize, amp: f64) -> Vec<i16> {
        (0..frames)
            .flat_map(|i| {
                let v = (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()).round() as i16;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    fn zero_crossings(x: &[i16]) -> usize {
        x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn stereo_44k1_to_mono_48k_keeps_frequency_and_amplitude() {
        let mut r = Resampler::new(44_100, 2, 48_000, 1).unwrap();
        let input = sine(1000.0, 44_100, 44_100, 2, 10_000.0);
        let out = r.process(&input);
        // All but the last buffered chunk comes out.
        assert!(out.len() > 48_000 - 1500 && out.len() <= 48_000, "{}", out.len());
        let body = &out[1000..out.len() - 1000];
        let secs = body.len() as f64 / 48_000.0;
        let zc = zero_crossings(body) as f64;
        assert!((zc / secs - 2000.0).abs() < 5.0, "{} crossings/s", zc / secs);
        let rms = (body.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / body.len() as f64).sqrt();
        assert!((rms - 10_000.0 / 2f64.sqrt()).abs() < 100.0, "rms {rms}");
        // Startup delay is trimmed: the sine starts at the start (allowing a tiny ramp).
        let first_peak = out[..60].iter().map(|s| s.abs()).max().unwrap();
        assert!(first_peak > 5_000, "first 60 samples peak {first_peak}");
    }

    #[test]
    fn chunk_size_independent() {
        let input = sine(440.0, 44_100, 20_000, 2, 8_000.0);
        let mut whole = Resampler::new(44_100, 2, 48_000, 1).unwrap();
        let reference = whole.process(&input);
        for chunk in [1usize, 3, 441, 882, 1000, 4097] {
            let mut r = Resampler::new(44_100, 2, 48_000, 1).unwrap();
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                r.process_into(c, &mut out);
            }
            assert_eq!(out, reference, "chunk {chunk}");
        }
    }

    #[test]
    fn channel_mixing_same_rate() {
        let mut down = Resampler::new(48_000, 2, 48_000, 1).unwrap();
        assert_eq!(down.process(&[100, 300, -50, 50]), vec![200, 0]);
        let mut up = Resampler::new(48_000, 1, 48_000, 2).unwrap();
        assert_eq!(up.process(&[7, -9]), vec![7, 7, -9, -9]);
        let mut four_to_two = Resampler::new(48_000, 4, 48_000, 2).unwrap();
        assert_eq!(four_to_two.process(&[1, 10, 3, 30]), vec![2, 20]);
        let mut id = Resampler::new(16_000, 2, 16_000, 2).unwrap();
        assert_eq!(id.process(&[1, 2, 3, 4]), vec![1, 2, 3, 4]);
        assert!(id.process(&[5]).is_empty()); // half a frame waits
        assert_eq!(id.process(&[6, 7, 8]), vec![5, 6, 7, 8]);
        // A split frame is carried over.
        let mut split = Resampler::new(48_000, 2, 48_000, 1).unwrap();
        assert!(split.process(&[10]).is_empty());
        assert_eq!(split.process(&[30, 1]), vec![20]);
        assert_eq!(split.process(&[3]), vec![2]);
    }

    #[test]
    fn other_rates_and_upmix() {
        for (inr, outr) in [(48_000, 16_000), (16_000, 48_000), (24_000, 48_000), (8_000, 48_000), (44_101, 48_000)] {
            let mut r = Resampler::new(inr, 1, outr, 2).unwrap();
            let input = sine(300.0, inr, inr as usize, 1, 8_000.0);
            let out = r.process(&input);
            assert!(out.len() / 2 > outr as usize * 9 / 10, "{inr}->{outr}: {}", out.len());
            let left: Vec<i16> = out.iter().step_by(2).copied().collect();
            let right: Vec<i16> = out.iter().skip(1).step_by(2).copied().collect();
            assert_eq!(left, right);
            let body = &left[left.len() / 10..left.len() * 9 / 10];
            let rate = zero_crossings(body) as f64 / (body.len() as f64 / outr as f64);
            assert!((rate - 600.0).abs() < 5.0, "{inr}->{outr}: {rate}");
        }
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn downsampling_filters_out_what_the_output_rate_cannot_hold() {
        // 11 kHz does not exist at 16 kHz; unfiltered it would alias to 5 kHz at full level.
        let mut r = Resampler::new(48_000, 1, 16_000, 1).unwrap();
        let out = r.process(&sine(11_000.0, 48_000, 48_000, 1, 10_000.0));
        let level = rms(&out[1000..out.len() - 1000]);
        assert!(level < 3.0, "rms {level} (input 7071): less than -67 dB expected");
        // ...while speech's band passes flat (0.1 dB to 5 kHz; -0.2 dB at 6 kHz, -4 dB at 7).
        for f in [300.0, 3_000.0, 5_000.0] {
            let mut r = Resampler::new(48_000, 1, 16_000, 1).unwrap();
            let out = r.process(&sine(f, 48_000, 48_000, 1, 10_000.0));
            let level = rms(&out[1000..out.len() - 1000]);
            assert!((20.0 * (level / 7071.07).log10()).abs() < 0.1, "{f} Hz: rms {level}");
        }
    }

    #[test]
    fn down_and_up_again_lines_up_with_the_input() {
        // 48 -> 16 -> 48 kHz (the VAD's and a 16 kHz sink's path): the startup delay of both
        // filters is trimmed, so sample i of the result is sample i of the input.
        let input = sine(1_000.0, 48_000, 48_000, 1, 10_000.0);
        let mut down = Resampler::new(48_000, 1, 16_000, 1).unwrap();
        let mut up = Resampler::new(16_000, 1, 48_000, 1).unwrap();
        let out = up.process(&down.process(&input));
        let n = out.len() - 1000;
        let err: Vec<i16> = out[1000..n].iter().zip(&input[1000..n]).map(|(a, b)| a - b).collect();
        let (signal, noise) = (rms(&input[1000..n]), rms(&err));
        assert!(20.0 * (signal / noise).log10() > 70.0, "SNR {:.1} dB", 20.0 * (signal / noise).log10());
    }

    #[test]
    fn bad_parameters() {
        assert!(Resampler::new(0, 1, 48_000, 1).is_err());
        assert!(Resampler::new(48_000, 0, 48_000, 1).is_err());
        assert!(Resampler::new(48_000, 1, 48_000, 33).is_err());
        assert!(Resampler::new(1_000_000, 1, 48_000, 1).is_err());
    }
}
