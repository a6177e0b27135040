//! Voice probability: the earshot neural VAD (pure Rust, 40 KiB of weights built in), its
//! score recalibrated, plus a check that rejects tonal sounds no voice makes.
//!
//! Pipeline, per 16 ms frame of 16 kHz mono (earshot's input format; input of any rate and
//! channel count is converted first):
//! 1. earshot's score `s` (a small conv + minGRU network on log-mel features).
//! 2. Evidence in log-odds: `2 * logit(s)`, a fixed temperature that leaves earshot's own
//!    decision point (0.5) where it is and spreads its compressed range (speech reads
//!    0.8-0.98, non-speech 0.13-0.4) so that the SDK's usual 0.95 threshold corresponds to
//!    earshot's 0.8. Frames below -75 dBFS lose up to 6 log-odds (all 6 below -85 dBFS), so
//!    digital silence reads ~0 rather than earshot's 0.03.
//! 3. A 64 ms hangover (maximum of the last 4 frames' evidence), the usual VAD bridge over
//!    brief dips between phonemes.
//! 4. A tonal check, from a 32 ms spectrum (62.5 Hz-7.5 kHz) of the same audio, subtracting
//!    up to 6 log-odds: (a) one sinusoid holds more than 90-97% of the energy (tones,
//!    sweeps), or (b) the magnitude spectrum's shape is unchanged after 96 ms (total-variation
//!    similarity above 0.75-0.85: held tones, chords, synthetic buzz). A voice never holds
//!    its spectrum that still: on espeak-ng speech (b) exceeds 0.8 in 0.3% of frames and (a)
//!    0.9 in 0.2%; both are measured on power/shape, so a steady hum or tone 10-20 dB under
//!    the speech does not trigger them.
//!
//! Why not RNNoise's VAD output, used before: like libwebrtc's RNN VAD in the official SDK it
//! reads pure tones and sweeps as voice (440 Hz and 1 kHz ~0.99), and only 65-70% of espeak
//! speech frames exceed 0.95. earshot alone also takes 200-440 Hz tones and chords for voice
//! (0.5-0.85) and puts only 57% of speech frames above 0.95; steps 2-4 fix both (chords
//! only in part).
//!
//! Measured (tests below; 10 ms calls; speech frames = 10 ms frames within 30 dB of the
//! loudest): espeak-ng en, en-us at 200 wpm, de and ja at 16/24/48 kHz mono and 48 kHz
//! stereo: 95.0% of speech frames > 0.95 (93-96% per voice and format), 98.5% > 0.5.
//! Silence, white noise at -10 to -40 dBFS, pink and brown noise, tones 200 Hz-4 kHz, tone
//! sweeps: 92.5-100% of frames < 0.5. Music-like chords: ~79% (the ~100 ms after each chord
//! change is new to the stationarity check). Outside the tests: speech in white noise at
//! 0-20 dB SNR ~90% > 0.95, with a 1 kHz tone 10 dB under it 84%. About 5 us per 10 ms.
//! Limits: earshot is level dependent (speech peaking at -50 dBFS: 67% > 0.95), it tends to
//! stay high through short pauses, and a perfectly steady sung or synthetic vowel (like
//! tests/test_media_api.py's `_voiced` buzz, ~0.03) is taken for a tone.
use super::resample::Resampler;
use crate::error::Result;
use earshot::Detector;

const RATE: u32 = 16_000;
/// earshot's frame: 16 ms at 16 kHz.
const FRAME: usize = 256;
/// Spectrum of the tonal check: 32 ms, Hann window, 31.25 Hz bins.
const WINDOW: usize = 512;
/// Bins 2..241: 62.5 Hz to 7.5 kHz.
const BIN_LO: usize = 2;
const BIN_HI: usize = 241;
const BINS: usize = BIN_HI - BIN_LO;
/// Stationarity lag in frames (96 ms).
const LAG: usize = 6;
/// Frames in the hangover (64 ms).
const HANGOVER: usize = 4;
/// Log-odds multiplier applied to earshot's score (temperature 1/2).
const GAIN: f32 = 2.0;
/// Log-odds removed from fully tonal frames and from frames below the level floor.
const TONAL_PENALTY: f32 = 6.0;
const QUIET_PENALTY: f32 = 6.0;
/// Level floor: no penalty above -75 dBFS, the full one below -85 dBFS.
const QUIET_DB: (f32, f32) = (-85.0, -75.0);
/// Tonal check thresholds (smooth ramps between the two values).
const ONE_SINUSOID: (f32, f32) = (0.90, 0.97);
const STILL_SPECTRUM: (f32, f32) = (0.75, 0.85);
/// No tonal evidence from windows below -80 dBFS.
const TONAL_FLOOR_DB: f32 = -80.0;

pub struct Vad {
    /// Input format -> 16 kHz mono; rebuilt when the format changes.
    down: Option<Resampler>,
    /// 16 kHz mono samples not yet analysed (less than one frame between calls).
    pending: Vec<i16>,
    detector: Box<Detector>,
    tonal: Tonal,
    /// Evidence (log-odds) of the last HANGOVER frames, a ring.
    evidence: [f32; HANGOVER],
    frames: usize,
    last: f32,
}

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    pub fn new() -> Self {
        Vad {
            down: None,
            pending: Vec::with_capacity(2 * FRAME),
            detector: Detector::default_boxed(),
            tonal: Tonal::new(),
            evidence: [f32::MIN; HANGOVER],
            frames: 0,
            last: 0.0,
        }
    }

    /// Voice probability in [0, 1] of `pcm` (interleaved, any rate and channel count):
    /// the mean over the 16 ms frames completed by this call. Mean rather than max so one
    /// spiky frame in a long buffer does not read as speech; for the usual 10 ms input it is
    /// one frame's value. When the call completes no frame (short input, or samples still
    /// inside the resampler) the previous value is returned. State (the network, partial
    /// frames, the hangover and spectral history) carries across calls, so feed one stream
    /// per `Vad`.
    pub fn analyze(&mut self, pcm: &[i16], sample_rate: u32, channels: u32) -> Result<f32> {
        let fresh = match &self.down {
            Some(r) => r.in_rate() != sample_rate || r.in_channels() != channels,
            None => true,
        };
        if fresh {
            self.down = Some(Resampler::new(sample_rate, channels, RATE, 1)?);
        }
        if let Some(down) = self.down.as_mut() {
            down.process_into(pcm, &mut self.pending);
        }
        let (mut sum, mut n) = (0.0f32, 0u32);
        let mut used = 0;
        while self.pending.len() - used >= FRAME {
            let frame: [i16; FRAME] = self.pending[used..used + FRAME].try_into().expect("FRAME samples");
            sum += self.frame_probability(&frame);
            n += 1;
            used += FRAME;
        }
        self.pending.drain(..used);
        if n > 0 {
            self.last = sum / n as f32;
        }
        Ok(self.last)
    }

    fn frame_probability(&mut self, frame: &[i16; FRAME]) -> f32 {
        let score = self.detector.predict_i16(frame).clamp(1e-4, 1.0 - 1e-4);
        let energy = frame.iter().map(|&s| (s as f32) * (s as f32)).sum::<f32>() / FRAME as f32;
        let quiet = 1.0 - smoothstep(dbfs(energy), QUIET_DB.0, QUIET_DB.1);
        self.evidence[self.frames % HANGOVER] = GAIN * logit(score) - QUIET_PENALTY * quiet;
        self.frames += 1;
        let held = self.evidence.iter().copied().fold(f32::MIN, f32::max);
        let tonal = self.tonal.step(frame);
        sigmoid(held - TONAL_PENALTY * tonal)
    }
}

/// The tonal check: how far a frame is a single sinusoid or a spectrum frozen for 96 ms,
/// as a value in [0, 1].
struct Tonal {
    hann: Vec<f32>,
    /// The last WINDOW samples.
    samples: Vec<f32>,
    /// The windowed samples, transformed in place (microfft: a fixed-size FFT, no planner).
    input: Box<[f32; WINDOW]>,
    power: Vec<f32>,
    /// Normalised magnitude spectra of the last LAG frames (ring, LAG x BINS); all zero for
    /// windows under the floor.
    shapes: Vec<f32>,
    frames: usize,
}

impl Tonal {
    fn new() -> Self {
        let hann =
            (0..WINDOW).map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / WINDOW as f32).cos()).collect();
        Tonal {
            hann,
            samples: vec![0.0; WINDOW],
            input: Box::new([0.0; WINDOW]),
            power: vec![0.0; BINS],
            shapes: vec![0.0; LAG * BINS],
            frames: 0,
        }
    }

    fn step(&mut self, frame: &[i16; FRAME]) -> f32 {
        self.samples.copy_within(FRAME.., 0);
        for (d, &s) in self.samples[WINDOW - FRAME..].iter_mut().zip(frame) {
            *d = s as f32;
        }
        let slot = self.frames % LAG;
        let filled = self.frames >= LAG;
        self.frames += 1;
        let mean_square = self.samples.iter().map(|s| s * s).sum::<f32>() / WINDOW as f32;
        if dbfs(mean_square) < TONAL_FLOOR_DB {
            self.shapes[slot * BINS..(slot + 1) * BINS].fill(0.0);
            return 0.0;
        }
        for ((d, &s), &w) in self.input.iter_mut().zip(&self.samples).zip(&self.hann) {
            *d = s * w;
        }
        // Bins 1..WINDOW/2 as usual; bin 0 packs DC and Nyquist, neither of which is used.
        let spectrum = microfft::real::rfft_512(&mut self.input);
        for (p, c) in self.power.iter_mut().zip(&spectrum[BIN_LO..BIN_HI]) {
            *p = c.norm_sqr();
        }
        let total = self.power.iter().sum::<f32>();
        if total <= 0.0 {
            return 0.0;
        }
        // (a) energy share of the strongest 5 adjacent bins (a Hann-windowed sinusoid spans
        // about 4).
        let mut run: f32 = self.power[..5].iter().sum();
        let mut peak = run;
        for k in 5..BINS {
            run += self.power[k] - self.power[k - 5];
            peak = peak.max(run);
        }
        let one_sinusoid = smoothstep(peak / total, ONE_SINUSOID.0, ONE_SINUSOID.1);
        // (b) 1 - total-variation distance between the magnitude spectrum's shape now and
        // 96 ms ago (the slot about to be overwritten).
        let magnitude_sum = self.power.iter().map(|p| p.sqrt()).sum::<f32>();
        let old = &mut self.shapes[slot * BINS..(slot + 1) * BINS];
        let mut distance = 0.0;
        for (o, p) in old.iter_mut().zip(&self.power) {
            let m = p.sqrt() / magnitude_sum;
            distance += (m - *o).abs();
            *o = m;
        }
        let still = if filled { smoothstep(1.0 - 0.5 * distance, STILL_SPECTRUM.0, STILL_SPECTRUM.1) } else { 0.0 };
        1.0 - (1.0 - one_sinusoid) * (1.0 - still)
    }
}

/// Level of a mean square (i16 scale) in dBFS.
fn dbfs(mean_square: f32) -> f32 {
    10.0 * (mean_square / (32768.0 * 32768.0) + 1e-12).log10()
}

fn smoothstep(x: f32, lo: f32, hi: f32) -> f32 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const TEST_RATE: u32 = 48_000;

    /// Probabilities of a 48 kHz mono signal, one analyze() per 10 ms.
    fn frames(vad: &mut Vad, pcm: &[i16]) -> Vec<f32> {
        pcm.chunks_exact(480).map(|f| vad.analyze(f, TEST_RATE, 1).unwrap()).collect()
    }

    fn frac(p: &[f32], f: impl Fn(f32) -> bool) -> f64 {
        p.iter().filter(|&&v| f(v)).count() as f64 / p.len().max(1) as f64
    }

    struct Lcg(u64);
    impl Lcg {
        /// Uniform in [-1, 1).
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    fn to_i16(v: impl Iterator<Item = f64>) -> Vec<i16> {
        v.map(|x| x.round().clamp(-32768.0, 32767.0) as i16).collect()
    }

    /// Scales to the given peak.
    fn peak(v: Vec<f64>, amp: f64) -> Vec<i16> {
        let m = v.iter().fold(1e-9f64, |a, &x| a.max(x.abs()));
        to_i16(v.into_iter().map(|x| x / m * amp))
    }

    fn white(n: usize, dbfs: f64, rng: &mut Lcg) -> Vec<i16> {
        let amp = 32768.0 * 10f64.powf(dbfs / 20.0);
        to_i16((0..n).map(|_| rng.next() * amp))
    }

    /// Pink-ish (sum of one-pole low-passed white noises at spread corners) or brown noise.
    fn coloured(n: usize, amp: f64, brown: bool, rng: &mut Lcg) -> Vec<i16> {
        let mut s = [0.0f64; 3];
        let v = (0..n)
            .map(|_| {
                let w = rng.next();
                if brown {
                    s[0] = 0.998 * s[0] + w;
                    s[0]
                } else {
                    s[0] = 0.997 * s[0] + 0.03 * w;
                    s[1] = 0.97 * s[1] + 0.1 * w;
                    s[2] = 0.7 * s[2] + 0.3 * w;
                    s[0] + s[1] + s[2] + 0.2 * w
                }
            })
            .collect();
        peak(v, amp)
    }

    fn tone(freq: f64, n: usize, amp: f64) -> Vec<i16> {
        to_i16((0..n).map(|i| amp * (2.0 * PI * freq * i as f64 / TEST_RATE as f64).sin()))
    }

    /// A linear or exponential sweep from f0 to f1 over the whole signal.
    fn sweep(f0: f64, f1: f64, n: usize, amp: f64, exponential: bool) -> Vec<i16> {
        let mut phase = 0.0;
        to_i16((0..n).map(|i| {
            let t = i as f64 / n as f64;
            let f = if exponential { f0 * (f1 / f0).powf(t) } else { f0 + (f1 - f0) * t };
            phase += 2.0 * PI * f / TEST_RATE as f64;
            amp * phase.sin()
        }))
    }

    /// Triads of harmonic-rich notes (7 partials, 1/k^1.5), a new chord every 0.5 s, held or
    /// plucked (decaying).
    fn chords(n: usize, plucked: bool) -> Vec<i16> {
        let progression =
            [[261.63, 329.63, 392.0], [220.0, 261.63, 329.63], [174.61, 220.0, 261.63], [196.0, 246.94, 293.66]];
        let seg = TEST_RATE as usize / 2;
        let v = (0..n)
            .map(|i| {
                let t = i as f64 / TEST_RATE as f64;
                let env = if plucked { (-4.0 * (i % seg) as f64 / TEST_RATE as f64).exp() } else { 1.0 };
                let notes = progression[(i / seg) % progression.len()];
                let sum: f64 = notes
                    .iter()
                    .flat_map(|&f| (1..8).map(move |k| (2.0 * PI * f * k as f64 * t).sin() / (k as f64).powf(1.5)))
                    .sum();
                env * sum
            })
            .collect();
        peak(v, 12_000.0)
    }

    /// Silence, noise, tones and sweeps: each at least 90% of frames < 0.5. Chords (music)
    /// at least 70%: the ~100 ms after each chord change is new to the stationarity check.
    #[test]
    fn non_speech_is_low() {
        let n = 4 * TEST_RATE as usize;
        let mut rng = Lcg(42);
        let mut cases: Vec<(String, Vec<i16>, f64)> = vec![("silence".into(), vec![0; n], 0.9)];
        for db in [-10.0, -20.0, -30.0, -40.0] {
            cases.push((format!("white noise {db} dBFS"), white(n, db, &mut rng), 0.9));
        }
        cases.push(("pink-ish noise, peak 10000".into(), coloured(n, 10_000.0, false, &mut rng), 0.9));
        cases.push(("pink-ish noise, peak 1000".into(), coloured(n, 1_000.0, false, &mut rng), 0.9));
        cases.push(("brown noise, peak 10000".into(), coloured(n, 10_000.0, true, &mut rng), 0.9));
        for f in [200.0, 300.0, 440.0, 700.0, 1000.0, 2000.0, 3000.0, 4000.0] {
            cases.push((format!("{f} Hz tone"), tone(f, n, 8_000.0), 0.9));
        }
        cases.push(("440 Hz tone at -40 dBFS".into(), tone(440.0, n, 330.0), 0.9));
        cases.push(("sweep 200-4000 Hz".into(), sweep(200.0, 4000.0, n, 8_000.0, false), 0.9));
        cases.push(("exponential sweep 100-8000 Hz".into(), sweep(100.0, 8000.0, n, 8_000.0, true), 0.9));
        cases.push(("chords, held".into(), chords(n, false), 0.7));
        cases.push(("chords, plucked".into(), chords(n, true), 0.7));
        let mut failed = vec![];
        for (name, pcm, want) in cases {
            let mut vad = Vad::new();
            let p = frames(&mut vad, &pcm);
            let low = frac(&p, |v| v < 0.5);
            let mean = p.iter().sum::<f32>() / p.len() as f32;
            println!("vad {name}: {:.1}% of frames < 0.5, mean {mean:.3}", low * 100.0);
            if low < want {
                failed.push(format!("{name}: {:.1}% < 0.5", low * 100.0));
            }
        }
        assert!(failed.is_empty(), "{failed:?}");
    }

    #[test]
    fn any_format_and_chunking_is_accepted() {
        let mut vad = Vad::new();
        // Stereo 44.1 kHz in odd chunks, then a format switch to 16 kHz mono.
        let stereo: Vec<i16> = tone(440.0, 44_100, 5_000.0).iter().flat_map(|&s| [s, s]).collect();
        for c in stereo.chunks(1234) {
            let p = vad.analyze(c, 44_100, 2).unwrap();
            assert!((0.0..=1.0).contains(&p));
        }
        assert!((0.0..=1.0).contains(&vad.analyze(&[0; 160], 16_000, 1).unwrap()));
        assert!(vad.analyze(&[0; 10], 0, 1).is_err());
        assert!(vad.analyze(&[0; 10], 48_000, 0).is_err());
    }

    /// Minimal RIFF/WAVE reader for espeak-ng's output: (rate, channels, samples).
    fn read_wav(bytes: &[u8]) -> Option<(u32, u32, Vec<i16>)> {
        if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return None;
        }
        let (mut pos, mut fmt) = (12, None);
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
            let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
            if id == b"fmt " && body.len() >= 16 {
                let ch = u16::from_le_bytes([body[2], body[3]]) as u32;
                let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
                fmt = Some((rate, ch));
            } else if id == b"data" {
                let (rate, ch) = fmt?;
                let s = body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                return Some((rate, ch, s));
            }
            pos += 8 + len + (len & 1);
        }
        None
    }

    /// Speech from espeak-ng (CI installs it; None when it or the voice is missing).
    fn espeak(args: &[&str], text: &str) -> Option<(u32, u32, Vec<i16>)> {
        let path = std::env::temp_dir().join(format!("sora_vad_{}_{}.wav", std::process::id(), args.join("_")));
        let ok = std::process::Command::new("espeak-ng")
            .args(args)
            .arg("-w")
            .arg(&path)
            .arg(text)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?
            .success();
        let bytes = if ok { std::fs::read(&path).ok() } else { None };
        let _ = std::fs::remove_file(&path);
        read_wav(&bytes?).filter(|(_, _, s)| !s.is_empty())
    }

    /// espeak-ng speech in several voices, at 16/24/48 kHz mono and 48 kHz stereo, fed in
    /// 10 ms calls. "Speech frames" are the 10 ms frames within 30 dB of the loudest (pauses
    /// between words and the leading/trailing silence are not speech). Target: speech frames
    /// mostly above 0.95.
    #[test]
    fn espeak_speech_is_high() {
        const EN: &str = "The quick brown fox jumps over the lazy dog. \
                          Sora is a WebRTC selective forwarding unit, and this sentence is only here \
                          to give the voice activity detector several seconds of continuous speech.";
        let voices: [(&str, &[&str], &str); 4] = [
            ("en", &["-v", "en"], EN),
            ("en-us 200 wpm", &["-v", "en-us", "-s", "200"], EN),
            (
                "de",
                &["-v", "de"],
                "Der schnelle braune Fuchs springt über den faulen Hund. Dieser Satz gibt dem \
                 Sprachdetektor einige Sekunden zusammenhängender Sprache.",
            ),
            (
                "ja",
                &["-v", "ja"],
                "こんにちは。きょうは いい てんきですね。おんせいけんしゅつきのために、\
                 このぶんしょうを なんびょうか つづけて はなします。",
            ),
        ];
        let formats = [(16_000u32, 1u32), (24_000, 1), (48_000, 1), (48_000, 2)];
        let (mut speech, mut high, mut half, mut worst) = (0usize, 0usize, 0usize, 1.0f64);
        let mut timings = vec![];
        for (name, args, text) in voices {
            let Some((rate0, ch0, pcm0)) = espeak(args, text) else {
                println!("vad espeak {name}: espeak-ng or the voice is missing, skipped");
                continue;
            };
            for (rate, ch) in formats {
                let mut convert = Resampler::new(rate0, ch0, rate, ch).unwrap();
                let mut pcm = convert.process(&pcm0);
                pcm.extend(std::iter::repeat_n(0, (rate / 10 * ch) as usize)); // flush the tail
                let chunk = (rate / 100 * ch) as usize;
                let mut vad = Vad::new();
                let t = std::time::Instant::now();
                let p: Vec<f32> = pcm.chunks_exact(chunk).map(|c| vad.analyze(c, rate, ch).unwrap()).collect();
                let us = t.elapsed().as_secs_f64() * 1e6 / p.len() as f64;
                timings.push(us);
                let rms: Vec<f64> = pcm
                    .chunks_exact(chunk)
                    .map(|f| (f.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
                    .collect();
                let loudest = rms.iter().cloned().fold(0.0, f64::max);
                let voiced: Vec<f32> =
                    p.iter().zip(&rms).filter(|(_, &r)| r > loudest * 0.0316).map(|(&p, _)| p).collect();
                let (h, f) = (frac(&voiced, |v| v > 0.95), frac(&voiced, |v| v > 0.5));
                println!(
                    "vad espeak {name} {rate} Hz x{ch}: {} speech frames of {}: {:.1}% > 0.95, {:.1}% > 0.5, {us:.1} us per 10 ms",
                    voiced.len(),
                    p.len(),
                    h * 100.0,
                    f * 100.0
                );
                speech += voiced.len();
                high += voiced.iter().filter(|&&v| v > 0.95).count();
                half += voiced.iter().filter(|&&v| v > 0.5).count();
                worst = worst.min(h);
            }
        }
        if speech == 0 {
            println!("vad espeak: espeak-ng not installed, speech test skipped");
            return;
        }
        let (high, half) = (high as f64 / speech as f64, half as f64 / speech as f64);
        timings.sort_by(f64::total_cmp);
        println!(
            "vad espeak, all: {speech} speech frames, {:.1}% > 0.95, {:.1}% > 0.5; worst voice/format {:.1}% > 0.95; median {:.1} us per 10 ms",
            high * 100.0,
            half * 100.0,
            worst * 100.0,
            timings[timings.len() / 2]
        );
        // Measured: 95.0% > 0.95 and 98.5% > 0.5 overall, every voice/format 93-97% > 0.95
        // (RNNoise, used before: 65-70% > 0.95).
        assert!(high >= 0.90, "speech frames > 0.95: {:.1}%", high * 100.0);
        assert!(half >= 0.97, "speech frames > 0.5: {:.1}%", half * 100.0);
        assert!(worst >= 0.85, "worst voice/format: {:.1}% > 0.95", worst * 100.0);
    }
}
