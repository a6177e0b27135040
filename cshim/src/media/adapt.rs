//! CPU-overuse adaptation of the video sender, after libwebrtc's `OveruseFrameDetector` and
//! `VideoStreamAdapter`, as pure logic with injected times (the send pipeline drives it).
//!
//! * [`OveruseDetector`] measures, over windows of at least a second, the time spent on a
//!   frame (scaling + encoding) as a share of the interval at which frames are *wanted*
//!   (the source's rate, or the frame-rate cap when that is lower), and turns it into
//!   overuse / underuse signals with hysteresis.
//! * [`Adapter`] turns those signals into restrictions (a resolution step and/or a frame
//!   rate cap) according to the [`DegradationPreference`].
//! * [`FrameRateLimiter`] drops frames on their capture times to honour the cap.
//!
//! Thresholds, steps and defaults are explained in docs/design.md ("CPU adaptation").
use std::time::{Duration, Instant};

/// `SoraDegradationPreference`: what the sender gives up first when the CPU cannot keep up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DegradationPreference {
    Disabled,
    MaintainFramerate,
    MaintainResolution,
    Balanced,
}

impl DegradationPreference {
    /// The API value (`SoraDegradationPreference`: DISABLED 0, MAINTAIN_FRAMERATE 1,
    /// MAINTAIN_RESOLUTION 2, BALANCED 3). None is what libwebrtc does for a camera track
    /// whose sender sets no preference (the official SDK then sets none): MAINTAIN_FRAMERATE.
    pub fn from_api(value: Option<i32>) -> Option<Self> {
        Some(match value {
            None | Some(1) => Self::MaintainFramerate,
            Some(0) => Self::Disabled,
            Some(2) => Self::MaintainResolution,
            Some(3) => Self::Balanced,
            Some(_) => return None,
        })
    }
}

/// Detector thresholds. Usage is a fraction: 1.0 = a frame takes exactly the frame interval.
#[derive(Debug, Clone, PartialEq)]
pub struct OveruseConfig {
    /// Measurement window (a window also needs `min_frames` processed frames to count).
    pub window: Duration,
    pub min_frames: u32,
    /// Overuse when this many consecutive windows are at or above `high_usage`.
    pub high_usage: f64,
    pub overuse_windows: u32,
    /// Underuse when `underuse_windows` consecutive windows are below `low_usage`.
    pub low_usage: f64,
    pub underuse_windows: u32,
    /// A step up followed by overuse within `rampup_probation` has failed: the number of
    /// quiet windows needed before the next step up doubles, up to `max_underuse_windows`.
    pub rampup_probation: Duration,
    pub max_underuse_windows: u32,
}

impl Default for OveruseConfig {
    fn default() -> Self {
        OveruseConfig {
            window: Duration::from_secs(1),
            min_frames: 2,
            high_usage: 0.85,
            overuse_windows: 2,
            low_usage: 0.42,
            underuse_windows: 5,
            rampup_probation: Duration::from_secs(10),
            max_underuse_windows: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Overuse,
    Underuse,
}

/// One closed window, for logs and stats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Processing time per frame / wanted frame interval.
    pub usage: f64,
    /// Mean processing time of a frame, seconds.
    pub frame_time: f64,
    /// Frames per second offered by the source.
    pub input_fps: f64,
    /// Frames per second actually processed.
    pub processed_fps: f64,
}

pub struct OveruseDetector {
    cfg: OveruseConfig,
    start: Option<Instant>,
    offered: u64,
    processed: u32,
    busy: Duration,
    /// The next window follows a change of restrictions (new encoder, keyframe): ignore it.
    settling: bool,
    above: u32,
    below: u32,
    underuse_windows: u32,
    last_up: Option<Instant>,
    last: Option<Measurement>,
}

impl OveruseDetector {
    pub fn new(cfg: OveruseConfig) -> Self {
        let underuse_windows = cfg.underuse_windows;
        // The first window holds encoder start-up and the first keyframe: it settles too.
        OveruseDetector {
            cfg,
            start: None,
            offered: 0,
            processed: 0,
            busy: Duration::ZERO,
            settling: true,
            above: 0,
            below: 0,
            underuse_windows,
            last_up: None,
            last: None,
        }
    }

    pub fn last(&self) -> Option<Measurement> {
        self.last
    }

    /// Quiet windows currently needed before a step up.
    pub fn underuse_windows(&self) -> u32 {
        self.underuse_windows
    }

    /// `n` frames arrived from the source (whether or not they were processed).
    pub fn on_offered(&mut self, now: Instant, n: u64) {
        self.start.get_or_insert(now);
        self.offered += n;
    }

    /// One frame was scaled and encoded in `busy`.
    pub fn on_processed(&mut self, now: Instant, busy: Duration) {
        self.start.get_or_insert(now);
        self.processed += 1;
        self.busy += busy;
    }

    fn reset_window(&mut self, now: Instant) {
        self.start = Some(now);
        self.offered = 0;
        self.processed = 0;
        self.busy = Duration::ZERO;
    }

    /// Closes the window when it is complete and says whether to adapt. `fps_cap` is the
    /// current frame-rate restriction (frames above it are not wanted).
    pub fn poll(&mut self, now: Instant, fps_cap: Option<f64>) -> Option<Signal> {
        let start = self.start?;
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.cfg.window {
            return None;
        }
        if self.processed < self.cfg.min_frames {
            if elapsed >= self.cfg.window * 3 {
                // The source paused: nothing to measure, and no basis for a streak either.
                self.reset_window(now);
                self.above = 0;
                self.below = 0;
            }
            return None;
        }
        let secs = elapsed.as_secs_f64();
        let input_fps = self.offered.max(self.processed as u64) as f64 / secs;
        let wanted_fps = fps_cap.map_or(input_fps, |c| c.min(input_fps));
        let frame_time = self.busy.as_secs_f64() / self.processed as f64;
        let m = Measurement { usage: frame_time * wanted_fps, frame_time, input_fps, processed_fps: self.processed as f64 / secs };
        self.reset_window(now);
        self.last = Some(m);
        if std::mem::take(&mut self.settling) {
            return None;
        }
        if m.usage >= self.cfg.high_usage {
            self.above += 1;
            self.below = 0;
        } else if m.usage < self.cfg.low_usage {
            self.below += 1;
            self.above = 0;
        } else {
            self.above = 0;
            self.below = 0;
        }
        if self.above >= self.cfg.overuse_windows {
            if self.last_up.is_some_and(|t| now.saturating_duration_since(t) < self.cfg.rampup_probation) {
                self.underuse_windows = (self.underuse_windows * 2).min(self.cfg.max_underuse_windows);
            }
            return Some(Signal::Overuse);
        }
        if self.below >= self.underuse_windows {
            return Some(Signal::Underuse);
        }
        None
    }

    /// The restrictions changed (`up`: relaxed): start over, skipping the next window.
    pub fn on_adapted(&mut self, now: Instant, up: bool) {
        self.reset_window(now);
        self.settling = true;
        self.above = 0;
        self.below = 0;
        if up {
            self.last_up = Some(now);
        }
    }

    /// A signal that could not be acted on (already at the limit): keep measuring, but
    /// start the streak again so the same limit is not asked for every window.
    pub fn on_ignored(&mut self) {
        self.above = 0;
        self.below = 0;
    }
}

/// Lowest resolution a resolution step may produce (pixels of 320x180).
pub const MIN_PIXELS: u64 = 320 * 180;
/// Lowest frame rate a frame-rate step may produce.
pub const MIN_FPS: f64 = 10.0;
/// Each resolution step scales both dimensions by 3/4 (0.56 of the pixels).
const SCALE_NUM: u64 = 3;
const SCALE_DEN: u64 = 4;
/// Each frame-rate step (MAINTAIN_RESOLUTION) keeps 2/3 of the rate.
const FPS_STEP: f64 = 2.0 / 3.0;
/// BALANCED: the frame rate worth keeping at a resolution; above these pixels no cap.
const BALANCED_FPS: [(u64, f64); 2] = [(320 * 240, 10.0), (640 * 480, 15.0)];

/// `(w, h)` scaled by (3/4)^step, rounded to even sizes.
pub fn scaled_size(w: u32, h: u32, step: u32) -> (u32, u32) {
    let (mut num, mut den) = (1u64, 1u64);
    for _ in 0..step {
        num *= SCALE_NUM;
        den *= SCALE_DEN;
    }
    let even = |v: u32| (((v as u64 * num + den) / (2 * den)) * 2).max(2) as u32;
    if step == 0 {
        (w, h)
    } else {
        (even(w), even(h))
    }
}

/// Most resolution steps for a `w` x `h` input that stay at or above [`MIN_PIXELS`].
pub fn max_scale_step(w: u32, h: u32) -> u32 {
    let mut step = 0;
    loop {
        let (sw, sh) = scaled_size(w, h, step + 1);
        if (sw as u64 * sh as u64) < MIN_PIXELS || step >= 16 {
            return step;
        }
        step += 1;
    }
}

fn balanced_fps(pixels: u64) -> Option<f64> {
    BALANCED_FPS.iter().find(|(p, _)| pixels <= *p).map(|&(_, f)| f)
}

/// What the sender currently gives up.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Restrictions {
    /// Resolution steps of 3/4 per dimension (0 = the source's size).
    pub scale_step: u32,
    /// Frame-rate cap (None = the source's rate).
    pub max_fps: Option<f64>,
}

impl Restrictions {
    pub fn is_limited(&self) -> bool {
        self.scale_step > 0 || self.max_fps.is_some()
    }

    /// The size to encode a `w` x `h` input at.
    pub fn target_size(&self, w: u32, h: u32) -> (u32, u32) {
        scaled_size(w, h, self.scale_step.min(max_scale_step(w, h)))
    }

    /// Both sets of restrictions at once (CPU and bandwidth): the larger step, the lower cap.
    pub fn combine(self, other: Restrictions) -> Restrictions {
        let max_fps = match (self.max_fps, other.max_fps) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Restrictions { scale_step: self.scale_step.max(other.scale_step), max_fps }
    }
}

/// The least video bitrate (kbps) each frame size is sent at, after libwebrtc's default
/// single-stream bitrate limits (their minimum start bitrates) [I]: below 200 kbps only
/// 320x180 and smaller.
const START_BITRATE_LIMITS: [(u64, u32); 4] = [(480 * 270, 200), (640 * 360, 300), (960 * 540, 500), (1280 * 720, 900)];

/// The most pixels a frame sent at `kbps` should have (None: no limit from the bitrate).
fn max_pixels_for(kbps: u32) -> Option<u64> {
    if kbps >= START_BITRATE_LIMITS[3].1 {
        return None;
    }
    Some(START_BITRATE_LIMITS.iter().rev().find(|(_, k)| kbps >= *k).map_or(MIN_PIXELS, |(p, _)| *p))
}

/// What a video target of `kbps` gives up for a `w` x `h` source at `input_fps`, by
/// `degradation_preference` (libwebrtc adapts to bandwidth as to CPU):
/// MAINTAIN_FRAMERATE scales down to the largest size the bitrate carries, MAINTAIN_RESOLUTION
/// lowers the frame rate in proportion (10 fps at least), BALANCED goes half the steps and
/// the frame rate worth keeping at that size, DISABLED nothing.
pub fn bandwidth_restrictions(pref: DegradationPreference, w: u32, h: u32, kbps: u32, input_fps: f64) -> Restrictions {
    let pixels = w as u64 * h as u64;
    let Some(max_pixels) = max_pixels_for(kbps).filter(|&m| pixels > m) else {
        return Restrictions::default();
    };
    let limit = max_scale_step(w, h);
    let steps = (0..=limit)
        .find(|&s| {
            let (sw, sh) = scaled_size(w, h, s);
            sw as u64 * sh as u64 <= max_pixels
        })
        .unwrap_or(limit);
    let fps_for = |p: u64| (input_fps * max_pixels as f64 / p as f64).max(MIN_FPS);
    match pref {
        DegradationPreference::Disabled => Restrictions::default(),
        DegradationPreference::MaintainFramerate => Restrictions { scale_step: steps, max_fps: None },
        DegradationPreference::MaintainResolution => Restrictions { scale_step: 0, max_fps: Some(fps_for(pixels)) },
        DegradationPreference::Balanced => {
            let step = steps.div_ceil(2);
            let (sw, sh) = scaled_size(w, h, step);
            let p = sw as u64 * sh as u64;
            let fps = balanced_fps(p).unwrap_or_else(|| fps_for(p));
            Restrictions { scale_step: step, max_fps: Some(fps.min(input_fps)) }
        }
    }
}

/// What one step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Resolution,
    Framerate,
}

pub struct Adapter {
    pref: DegradationPreference,
    r: Restrictions,
}

impl Adapter {
    pub fn new(pref: DegradationPreference) -> Self {
        Adapter { pref, r: Restrictions::default() }
    }

    pub fn preference(&self) -> DegradationPreference {
        self.pref
    }

    pub fn restrictions(&self) -> Restrictions {
        self.r
    }

    /// The size to encode a `w` x `h` input at.
    pub fn target_size(&self, w: u32, h: u32) -> (u32, u32) {
        self.r.target_size(w, h)
    }

    /// Gives up one step for a `w` x `h` input arriving at `input_fps`; None at the limit.
    pub fn adapt_down(&mut self, w: u32, h: u32, input_fps: f64) -> Option<Step> {
        let max_step = max_scale_step(w, h);
        let step = self.r.scale_step.min(max_step);
        let fps = self.r.max_fps.map_or(input_fps, |c| c.min(input_fps));
        let lower_resolution = |r: &mut Restrictions| {
            (step < max_step).then(|| {
                r.scale_step = step + 1;
                Step::Resolution
            })
        };
        let lower_fps = |r: &mut Restrictions, to: f64| {
            (fps > MIN_FPS + 0.5 && to < fps - 0.5).then(|| {
                r.max_fps = Some(to.max(MIN_FPS));
                Step::Framerate
            })
        };
        match self.pref {
            DegradationPreference::Disabled => None,
            DegradationPreference::MaintainFramerate => lower_resolution(&mut self.r),
            DegradationPreference::MaintainResolution => lower_fps(&mut self.r, fps * FPS_STEP),
            DegradationPreference::Balanced => {
                // The frame rate worth keeping at this resolution first, then the resolution,
                // then (at the smallest size) the frame rate down to the floor.
                let (sw, sh) = scaled_size(w, h, step);
                match balanced_fps(sw as u64 * sh as u64) {
                    Some(target) if fps > target + 0.5 => lower_fps(&mut self.r, target),
                    _ => lower_resolution(&mut self.r).or_else(|| lower_fps(&mut self.r, fps * FPS_STEP)),
                }
            }
        }
    }

    /// Takes back one step (the reverse order of `adapt_down`); None when unrestricted.
    pub fn adapt_up(&mut self, w: u32, h: u32, input_fps: f64) -> Option<Step> {
        let step = self.r.scale_step.min(max_scale_step(w, h));
        if step != self.r.scale_step {
            self.r.scale_step = step; // the source shrank: forget steps that no longer apply
        }
        let raise_fps = |r: &mut Restrictions, to: Option<f64>| {
            r.max_fps.map(|cap| {
                r.max_fps = to.filter(|&t| t < input_fps - 0.5 && t > cap);
                Step::Framerate
            })
        };
        let raise_resolution = |r: &mut Restrictions| {
            (r.scale_step > 0).then(|| {
                r.scale_step -= 1;
                Step::Resolution
            })
        };
        let next_fps = self.r.max_fps.map(|c| c / FPS_STEP);
        match self.pref {
            DegradationPreference::Disabled => None,
            DegradationPreference::MaintainFramerate => {
                raise_resolution(&mut self.r).or_else(|| raise_fps(&mut self.r, None))
            }
            DegradationPreference::MaintainResolution => {
                raise_fps(&mut self.r, next_fps).or_else(|| raise_resolution(&mut self.r))
            }
            DegradationPreference::Balanced => {
                let (sw, sh) = scaled_size(w, h, step);
                let target = balanced_fps(sw as u64 * sh as u64);
                match (self.r.max_fps, target) {
                    // Below the rate worth having at this size (the last steps down were
                    // frame-rate steps at the smallest size): the rate comes back first.
                    (Some(cap), Some(t)) if cap < t - 0.5 => raise_fps(&mut self.r, Some(t)),
                    // Restricted beyond what a larger size deserves: free the rate.
                    (Some(_), None) => raise_fps(&mut self.r, None),
                    _ => raise_resolution(&mut self.r).or_else(|| {
                        // At full size: the rate goes to what this size deserves, or free.
                        let t = target.filter(|&t| self.r.max_fps.is_some_and(|c| t > c + 0.5));
                        raise_fps(&mut self.r, t)
                    }),
                }
            }
        }
    }
}

/// The CPU adaptation of one video sender (a single stream, or all the layers of a simulcast
/// sender together): the detector fed with every frame's processing time and the adapter
/// whose restrictions its signals move. The send loops apply `restrictions()`.
pub struct CpuAdaptation {
    adapter: Adapter,
    detector: OveruseDetector,
    /// The source slot's count of frames it replaced, as last seen.
    replaced_seen: u64,
}

impl CpuAdaptation {
    pub fn new(pref: DegradationPreference, replaced: u64) -> Self {
        CpuAdaptation { adapter: Adapter::new(pref), detector: OveruseDetector::new(OveruseConfig::default()), replaced_seen: replaced }
    }

    pub fn restrictions(&self) -> Restrictions {
        self.adapter.restrictions()
    }

    /// A frame was taken from the source, whose slot has replaced `replaced` frames in all
    /// (taken while the sender was busy): returns the frames offered since the last one.
    pub fn on_taken(&mut self, now: Instant, replaced: u64) -> u64 {
        let offered = 1 + replaced.saturating_sub(self.replaced_seen);
        self.replaced_seen = replaced;
        self.detector.on_offered(now, offered);
        offered
    }

    /// The frame taken at `taken` was scaled and encoded (every layer of it) by `now`.
    pub fn on_processed(&mut self, taken: Instant, now: Instant) {
        self.detector.on_processed(now, now - taken);
    }

    /// Closes a complete measurement window; when it calls for a step (and the preference
    /// allows one) takes it and returns it. `w`x`h` is the source's size, `fps_cap` the
    /// frame-rate cap in force (the CPU's, or lower).
    pub fn poll(&mut self, now: Instant, w: u32, h: u32, fps_cap: Option<f64>) -> Option<Step> {
        if self.adapter.preference() == DegradationPreference::Disabled {
            return None;
        }
        let signal = self.detector.poll(now, fps_cap)?;
        let m = self.detector.last()?;
        let before = (self.adapter.target_size(w, h), self.adapter.restrictions().max_fps);
        let step = match signal {
            Signal::Overuse => self.adapter.adapt_down(w, h, m.input_fps),
            Signal::Underuse => self.adapter.adapt_up(w, h, m.input_fps),
        };
        let Some(step) = step else {
            self.detector.on_ignored();
            return None;
        };
        self.detector.on_adapted(now, signal == Signal::Underuse);
        let after = (self.adapter.target_size(w, h), self.adapter.restrictions().max_fps);
        let fps = |f: Option<f64>| f.map_or("all".into(), |f| format!("{f:.1}"));
        log::info!(
            "video CPU {} ({:.0} % of the frame interval, {:.1} ms/frame, {:.1} fps in, {:.1} encoded): {}x{} {} fps -> {}x{} {} fps ({:?})",
            if signal == Signal::Overuse { "overuse" } else { "underuse" },
            m.usage * 100.0,
            m.frame_time * 1e3,
            m.input_fps,
            m.processed_fps,
            before.0 .0,
            before.0 .1,
            fps(before.1),
            after.0 .0,
            after.0 .1,
            fps(after.1),
            self.adapter.preference(),
        );
        Some(step)
    }
}

/// Drops frames on capture time so that at most `max_fps` are encoded.
#[derive(Debug, Default)]
pub struct FrameRateLimiter {
    next_due_us: Option<i64>,
    last_us: Option<i64>,
}

impl FrameRateLimiter {
    /// Whether a frame captured at `t_us` (µs, any epoch) should be encoded.
    pub fn admit(&mut self, t_us: i64, max_fps: Option<f64>) -> bool {
        let Some(fps) = max_fps.filter(|f| *f > 0.0) else {
            self.next_due_us = None;
            self.last_us = Some(t_us);
            return true;
        };
        let interval = (1e6 / fps) as i64;
        let jumped = self.last_us.is_none_or(|l| t_us <= l || t_us - l > 1_000_000);
        self.last_us = Some(t_us);
        match self.next_due_us {
            // Frames a little early still count: a 30 fps source capped at 20 fps keeps
            // two frames of three, not one of two.
            Some(due) if !jumped && t_us < due - interval / 4 => false,
            Some(due) if !jumped && t_us <= due + interval => {
                self.next_due_us = Some(due + interval);
                true
            }
            _ => {
                self.next_due_us = Some(t_us + interval);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_low_bitrate_degrades_by_preference() {
        use DegradationPreference::*;
        // 300 kbps, 960x528 at 30 fps (issue 11's case)
        let mf = bandwidth_restrictions(MaintainFramerate, 960, 528, 300, 30.0);
        let (w, h) = scaled_size(960, 528, mf.scale_step);
        assert!(w * h <= 640 * 360 && mf.max_fps.is_none(), "{w}x{h}");
        let mr = bandwidth_restrictions(MaintainResolution, 960, 528, 300, 30.0);
        assert_eq!(mr.scale_step, 0);
        assert!(mr.max_fps.is_some_and(|f| (10.0..20.0).contains(&f)), "{mr:?}");
        let b = bandwidth_restrictions(Balanced, 960, 528, 300, 30.0);
        assert!(b.scale_step > 0 && b.scale_step < mf.scale_step && b.max_fps.is_some_and(|f| f < 30.0), "{b:?}");
        assert_eq!(bandwidth_restrictions(Disabled, 960, 528, 300, 30.0), Restrictions::default());
        // enough bitrate: nothing; 720p at 2.5 Mbps neither
        assert_eq!(bandwidth_restrictions(MaintainFramerate, 960, 528, 600, 30.0), Restrictions::default());
        assert_eq!(bandwidth_restrictions(MaintainFramerate, 1280, 720, 2500, 30.0), Restrictions::default());
        // very little: the smallest size there is
        let tiny = bandwidth_restrictions(MaintainFramerate, 1280, 720, 50, 30.0);
        assert_eq!(tiny.scale_step, max_scale_step(1280, 720));
        let both = mf.combine(Restrictions { scale_step: 1, max_fps: Some(20.0) });
        assert_eq!((both.scale_step, both.max_fps), (mf.scale_step, Some(20.0)));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds one second of `fps` offered frames, each processed in `frame_ms` (every
    /// `keep`-th frame processed), then polls at the end of that second.
    fn second(d: &mut OveruseDetector, t: &mut Instant, fps: u32, frame_ms: f64, keep: u32, cap: Option<f64>) -> Vec<Signal> {
        for i in 0..fps {
            let at = *t + Duration::from_nanos(i as u64 * 1_000_000_000 / fps as u64);
            d.on_offered(at, 1);
            if i % keep == 0 {
                d.on_processed(at, Duration::from_secs_f64(frame_ms / 1000.0));
            }
        }
        *t += Duration::from_secs(1);
        d.poll(*t, cap).into_iter().collect()
    }

    #[test]
    fn usage_is_frame_time_over_wanted_interval() {
        let mut d = OveruseDetector::new(OveruseConfig::default());
        let mut t = Instant::now();
        second(&mut d, &mut t, 30, 10.0, 1, None);
        second(&mut d, &mut t, 30, 10.0, 1, None);
        let m = d.last().unwrap();
        assert!((m.usage - 0.30).abs() < 0.03, "{m:?}");
        assert!((m.input_fps - 30.0).abs() < 1.5 && (m.frame_time - 0.010).abs() < 1e-6, "{m:?}");
        // A slow encoder that keeps up with only half the frames (newest frame wins): the
        // usage is still measured against the source's interval.
        second(&mut d, &mut t, 30, 60.0, 2, None);
        let m = d.last().unwrap();
        assert!((m.usage - 1.8).abs() < 0.1 && (m.processed_fps - 15.0).abs() < 1.5, "{m:?}");
        // Under a 15 fps cap the wanted interval is the cap's.
        second(&mut d, &mut t, 30, 40.0, 2, Some(15.0));
        let m = d.last().unwrap();
        assert!((m.usage - 0.6).abs() < 0.05, "{m:?}");
    }

    #[test]
    fn overuse_needs_consecutive_windows_and_skips_the_first() {
        let mut d = OveruseDetector::new(OveruseConfig::default());
        let mut t = Instant::now();
        // Window 1 settles (start-up), window 2 is the first above: nothing yet.
        assert!(second(&mut d, &mut t, 30, 30.0, 1, None).is_empty());
        assert!(second(&mut d, &mut t, 30, 30.0, 1, None).is_empty());
        // A window in between breaks the streak.
        assert!(second(&mut d, &mut t, 30, 20.0, 1, None).is_empty());
        assert!(second(&mut d, &mut t, 30, 30.0, 1, None).is_empty());
        assert_eq!(second(&mut d, &mut t, 30, 30.0, 1, None), vec![Signal::Overuse]);
        d.on_adapted(t, false);
        // After adapting, the next window (new encoder, keyframe) is ignored.
        assert!(second(&mut d, &mut t, 30, 50.0, 1, None).is_empty());
        assert!(second(&mut d, &mut t, 30, 50.0, 1, None).is_empty());
        assert_eq!(second(&mut d, &mut t, 30, 50.0, 1, None), vec![Signal::Overuse]);
    }

    #[test]
    fn underuse_after_quiet_windows_with_backoff_on_failed_rampup() {
        let cfg = OveruseConfig::default();
        let mut d = OveruseDetector::new(cfg.clone());
        let mut t = Instant::now();
        let quiet = |d: &mut OveruseDetector, t: &mut Instant| {
            (1..=120).find(|_| second(d, t, 30, 5.0, 1, None) == vec![Signal::Underuse])
        };
        // 1 settling window + 5 quiet ones.
        assert_eq!(quiet(&mut d, &mut t), Some(6));
        d.on_adapted(t, true);
        // Overuse right after that step up: the step failed, the next needs 10 quiet windows.
        second(&mut d, &mut t, 30, 40.0, 1, None);
        second(&mut d, &mut t, 30, 40.0, 1, None);
        assert_eq!(second(&mut d, &mut t, 30, 40.0, 1, None), vec![Signal::Overuse]);
        d.on_adapted(t, false);
        assert_eq!(d.underuse_windows(), 10);
        assert_eq!(quiet(&mut d, &mut t), Some(11));
        d.on_adapted(t, true);
        // Overuse long after a step up is not a failed ramp-up.
        for _ in 0..12 {
            second(&mut d, &mut t, 30, 20.0, 1, None);
        }
        second(&mut d, &mut t, 30, 40.0, 1, None);
        assert_eq!(second(&mut d, &mut t, 30, 40.0, 1, None), vec![Signal::Overuse]);
        assert_eq!(d.underuse_windows(), 10);
        // The delay is bounded.
        for _ in 0..10 {
            d.on_adapted(t, true);
            second(&mut d, &mut t, 30, 40.0, 1, None);
            second(&mut d, &mut t, 30, 40.0, 1, None);
            second(&mut d, &mut t, 30, 40.0, 1, None);
        }
        assert_eq!(d.underuse_windows(), cfg.max_underuse_windows);
    }

    #[test]
    fn between_thresholds_nothing_happens_and_pauses_reset() {
        let mut d = OveruseDetector::new(OveruseConfig::default());
        let mut t = Instant::now();
        for _ in 0..30 {
            // 20 ms of 33 ms: 60 %, between 42 % and 85 %.
            assert!(second(&mut d, &mut t, 30, 20.0, 1, None).is_empty());
        }
        second(&mut d, &mut t, 30, 30.0, 1, None);
        // A 5 s pause: no frames, the streak starts over.
        t += Duration::from_secs(5);
        d.on_offered(t, 1);
        assert_eq!(d.poll(t, None), None);
        second(&mut d, &mut t, 30, 30.0, 1, None);
        assert_eq!(second(&mut d, &mut t, 30, 30.0, 1, None), vec![Signal::Overuse]);
        // An empty window never divides by zero.
        let mut e = OveruseDetector::new(OveruseConfig { min_frames: 1, ..OveruseConfig::default() });
        let t0 = Instant::now();
        e.on_offered(t0, 0);
        assert_eq!(e.poll(t0 + ms(1500), None), None);
    }

    #[test]
    fn thresholds_come_from_the_config() {
        let cfg = OveruseConfig { high_usage: 0.5, overuse_windows: 1, ..OveruseConfig::default() };
        let mut d = OveruseDetector::new(cfg);
        let mut t = Instant::now();
        second(&mut d, &mut t, 30, 17.0, 1, None);
        assert_eq!(second(&mut d, &mut t, 30, 17.0, 1, None), vec![Signal::Overuse]);
    }

    #[test]
    fn scale_ladder_and_floor() {
        assert_eq!(scaled_size(1920, 1080, 0), (1920, 1080));
        assert_eq!(scaled_size(1920, 1080, 1), (1440, 810));
        assert_eq!(scaled_size(1920, 1080, 2), (1080, 608));
        assert_eq!(scaled_size(1280, 720, 1), (960, 540));
        assert_eq!(scaled_size(1281, 721, 0), (1281, 721));
        assert_eq!(max_scale_step(1920, 1080), 6); // 342x192; 256x144 is below 320x180
        assert_eq!(scaled_size(1920, 1080, 6), (342, 192));
        assert_eq!(max_scale_step(1280, 720), 4); // 406x228
        assert_eq!(max_scale_step(320, 180), 0);
        assert_eq!(max_scale_step(100, 100), 0);
    }

    fn run_down(a: &mut Adapter, w: u32, h: u32, fps: f64) -> Vec<((u32, u32), Option<f64>)> {
        let mut seen = Vec::new();
        while a.adapt_down(w, h, fps).is_some() {
            seen.push((a.target_size(w, h), a.restrictions().max_fps));
            assert!(seen.len() < 30);
        }
        seen
    }

    fn run_up(a: &mut Adapter, w: u32, h: u32, fps: f64) -> Vec<((u32, u32), Option<f64>)> {
        let mut seen = Vec::new();
        while a.adapt_up(w, h, fps).is_some() {
            seen.push((a.target_size(w, h), a.restrictions().max_fps));
            assert!(seen.len() < 30);
        }
        seen
    }

    #[test]
    fn maintain_framerate_lowers_resolution_only() {
        let mut a = Adapter::new(DegradationPreference::MaintainFramerate);
        let down = run_down(&mut a, 1280, 720, 30.0);
        assert_eq!(
            down,
            vec![((960, 540), None), ((720, 406), None), ((540, 304), None), ((406, 228), None)]
        );
        assert!(a.restrictions().is_limited());
        let up = run_up(&mut a, 1280, 720, 30.0);
        assert_eq!(up.last(), Some(&((1280, 720), None)));
        assert_eq!(up.len(), 4);
        assert!(!a.restrictions().is_limited());
        // A source at the floor cannot be helped.
        let mut a = Adapter::new(DegradationPreference::MaintainFramerate);
        assert_eq!(a.adapt_down(320, 180, 30.0), None);
    }

    #[test]
    fn maintain_resolution_lowers_framerate_only() {
        let mut a = Adapter::new(DegradationPreference::MaintainResolution);
        let down = run_down(&mut a, 1920, 1080, 30.0);
        let fps: Vec<f64> = down.iter().map(|(s, f)| {
            assert_eq!(*s, (1920, 1080));
            f.unwrap()
        }).collect();
        assert_eq!(fps.len(), 3, "{fps:?}");
        assert!((fps[0] - 20.0).abs() < 1e-9 && (fps[1] - 13.333).abs() < 1e-3 && fps[2] == MIN_FPS, "{fps:?}");
        let up = run_up(&mut a, 1920, 1080, 30.0);
        let fps: Vec<Option<f64>> = up.iter().map(|(_, f)| *f).collect();
        assert_eq!(fps.len(), 3, "{fps:?}");
        assert!((fps[0].unwrap() - 15.0).abs() < 1e-9 && (fps[1].unwrap() - 22.5).abs() < 1e-9 && fps[2].is_none());
        // A 10 fps source has nothing to give.
        assert_eq!(Adapter::new(DegradationPreference::MaintainResolution).adapt_down(1920, 1080, 10.0), None);
    }

    #[test]
    fn balanced_resolution_first_then_rate_per_size() {
        let mut a = Adapter::new(DegradationPreference::Balanced);
        let down = run_down(&mut a, 1920, 1080, 30.0);
        assert_eq!(
            down,
            vec![
                ((1440, 810), None),
                ((1080, 608), None),
                ((810, 456), None),
                ((608, 342), None),
                ((608, 342), Some(15.0)), // <= 640x480: 15 fps is enough
                ((456, 256), Some(15.0)),
                ((342, 192), Some(15.0)),
                ((342, 192), Some(10.0)), // <= 320x240: 10 fps, also the floor
            ]
        );
        let up = run_up(&mut a, 1920, 1080, 30.0);
        assert_eq!(
            up,
            vec![
                ((456, 256), Some(10.0)),
                ((456, 256), Some(15.0)),
                ((608, 342), Some(15.0)),
                ((810, 456), Some(15.0)),
                ((810, 456), None),
                ((1080, 608), None),
                ((1440, 810), None),
                ((1920, 1080), None),
            ]
        );
    }

    #[test]
    fn disabled_never_adapts() {
        let mut a = Adapter::new(DegradationPreference::Disabled);
        assert_eq!(a.adapt_down(1920, 1080, 30.0), None);
        assert_eq!(a.adapt_up(1920, 1080, 30.0), None);
        assert_eq!(a.target_size(1920, 1080), (1920, 1080));
        assert_eq!(DegradationPreference::from_api(None), Some(DegradationPreference::MaintainFramerate));
        assert_eq!(DegradationPreference::from_api(Some(0)), Some(DegradationPreference::Disabled));
        assert_eq!(DegradationPreference::from_api(Some(2)), Some(DegradationPreference::MaintainResolution));
        assert_eq!(DegradationPreference::from_api(Some(3)), Some(DegradationPreference::Balanced));
        assert_eq!(DegradationPreference::from_api(Some(4)), None);
    }

    #[test]
    fn source_shrinking_below_the_steps() {
        let mut a = Adapter::new(DegradationPreference::MaintainFramerate);
        run_down(&mut a, 1920, 1080, 30.0);
        // The source now sends 640x360: two steps fit (480x270, 360x202), not six.
        let (w, h) = a.target_size(640, 360);
        assert!(w as u64 * h as u64 >= MIN_PIXELS && w < 640);
        assert_eq!(a.adapt_up(640, 360, 30.0), Some(Step::Resolution));
        assert_eq!(a.restrictions().scale_step, max_scale_step(640, 360) - 1);
    }

    #[test]
    fn frame_rate_limiter_keeps_the_cap() {
        for cap in [20.0, 15.0, 13.333, 10.0, 30.0, 45.0] {
            let mut l = FrameRateLimiter::default();
            let n = (0..300).filter(|i| l.admit(1_000_000 + i * 1_000_000 / 30, Some(cap))).count();
            let want = f64::min(cap, 30.0) * 10.0;
            assert!((n as f64 - want).abs() <= 2.0, "cap {cap}: {n} of 300 in 10 s");
        }
        let mut l = FrameRateLimiter::default();
        assert!((0..10).all(|i| l.admit(i * 33_333, None)));
        // Odd timestamps (repeated, backwards, jumps) never stall the stream.
        let mut l = FrameRateLimiter::default();
        assert!(l.admit(5_000_000, Some(10.0)));
        assert!(l.admit(5_000_000, Some(10.0)));
        assert!(l.admit(1_000, Some(10.0)));
        assert!(l.admit(90_000_000, Some(10.0)));
    }

    #[test]
    fn cpu_adaptation_counts_replaced_frames_and_steps_on_overuse() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut cpu = CpuAdaptation::new(DegradationPreference::MaintainFramerate, 5);
        assert_eq!(cpu.on_taken(ms(0), 5), 1);
        assert_eq!(cpu.on_taken(ms(33), 8), 4, "the three the slot replaced count as offered");
        // 30 fps taking 50 ms each: 150 % of the interval. The first window settles, two
        // more overused ones make a resolution step.
        let mut steps = Vec::new();
        for n in 0..120u64 {
            let taken = ms(100 + n * 33);
            cpu.on_taken(taken, 8);
            cpu.on_processed(taken, taken + Duration::from_millis(50));
            if let Some(step) = cpu.poll(taken + Duration::from_millis(50), 1280, 720, None) {
                steps.push((n, step));
            }
        }
        assert_eq!(steps.first().map(|s| s.1), Some(Step::Resolution), "{steps:?}");
        assert!(cpu.restrictions().is_limited());
        assert!(cpu.restrictions().target_size(1280, 720).0 < 1280);
        let mut off = CpuAdaptation::new(DegradationPreference::Disabled, 0);
        for n in 0..120u64 {
            let taken = ms(n * 33);
            off.on_taken(taken, 0);
            off.on_processed(taken, taken + Duration::from_millis(50));
            assert_eq!(off.poll(taken + Duration::from_millis(50), 1280, 720, None), None);
        }
    }
}
