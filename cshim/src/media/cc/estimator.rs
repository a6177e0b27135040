//! A send-side bandwidth estimator in the manner of Google Congestion Control (GCC,
//! draft-ietf-rmcat-gcc-02 and libwebrtc's goog_cc): transport-cc feedback gives each
//! packet's send and arrival time; a trendline over the queuing delay of packet groups tells
//! whether the path is over-used, and an AIMD controller moves the target (a cut to 85 % of
//! what got through on over-use, +8 %/s otherwise, held on under-use). A loss-based bound
//! backs off when more than 10 % is lost. The result never leaves [min, max].
//!
//! The increase speeds up the longer no over-use is seen: 8 %/s for the first 2 s, then
//! 4 points more each second, up to 30 %/s. libwebrtc gets back up after a link widens by
//! probing (clusters of padding packets above the target); 8 %/s alone needs ~13 s from
//! 0.9 to 2.5 Mbps. A narrow link keeps showing over-use and keeps the increase at 8 %/s.
//!
//! A sender held back by its own output (simulcast with its top layer off, a static
//! picture) cannot show that the path carries more: the target stays within 1.5× what got
//! through. After a calm spell (3 s, doubled after each failed try up to 24 s) it probes
//! with its media: for 3 s the target may grow past that bound, so the allocation turns
//! the next layer on; over-use during the try ends it and cuts the target as always.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One packet as the feedback reports it.
#[derive(Clone, Copy, Debug)]
pub struct PacketResult {
    pub sent: Instant,
    pub size: usize,
    /// Arrival on the receiver's clock (µs); None: lost.
    pub arrival_us: Option<i64>,
}

/// Packets sent within this much of a group's first belong to it (one burst).
const GROUP_SPAN: Duration = Duration::from_millis(5);
const TRENDLINE_WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
const OVERUSE_TIME_MS: f64 = 10.0;
const DECREASE_FACTOR: f64 = 0.85;
const INCREASE_PER_SECOND: f64 = 1.08;
/// Without over-use for longer than this, the increase grows by ACCELERATION per second...
const CALM: f64 = 2.0;
const ACCELERATION: f64 = 0.04;
/// ...up to this.
const MAX_INCREASE_PER_SECOND: f64 = 1.30;
/// A sender whose target sits at the bound of what got through tries above it after this
/// long without over-use (doubled after each failed try, up to PROBE_WAIT_MAX)...
const PROBE_WAIT: f64 = 3.0;
const PROBE_WAIT_MAX: f64 = 24.0;
/// ...for this long.
const PROBE_SPAN: Duration = Duration::from_secs(3);
const ACKED_WINDOW: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Normal,
    Over,
    Under,
}

struct Group {
    first_sent: Instant,
    last_sent: Instant,
    last_arrival_us: i64,
}

/// Queuing-delay trend over packet groups, with libwebrtc's adaptive threshold.
struct Trendline {
    group: Option<Group>,
    prev: Option<Group>,
    first_arrival_us: Option<i64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    samples: VecDeque<(f64, f64)>, // (arrival ms, smoothed delay ms)
    deltas: u32,
    threshold: f64,
    last_threshold_update: Option<f64>,
    over_ms: f64,
    over_count: u32,
    prev_trend: f64,
    usage: Usage,
}

impl Trendline {
    fn new() -> Self {
        Trendline {
            group: None,
            prev: None,
            first_arrival_us: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            samples: VecDeque::new(),
            deltas: 0,
            threshold: 12.5,
            last_threshold_update: None,
            over_ms: -1.0,
            over_count: 0,
            prev_trend: 0.0,
            usage: Usage::Normal,
        }
    }

    /// One received packet (in send order).
    fn on_packet(&mut self, sent: Instant, arrival_us: i64) {
        match self.group.as_mut() {
            Some(g) if sent.saturating_duration_since(g.first_sent) <= GROUP_SPAN => {
                g.last_sent = g.last_sent.max(sent);
                g.last_arrival_us = g.last_arrival_us.max(arrival_us);
                return;
            }
            _ => {}
        }
        let done = self.group.replace(Group { first_sent: sent, last_sent: sent, last_arrival_us: arrival_us });
        if let Some(done) = done {
            if let Some(prev) = &self.prev {
                let send_delta = done.last_sent.saturating_duration_since(prev.last_sent).as_secs_f64() * 1e3;
                let arrival_delta = (done.last_arrival_us - prev.last_arrival_us) as f64 / 1e3;
                self.on_delta(arrival_delta - send_delta, done.last_arrival_us);
            }
            self.prev = Some(done);
        }
    }

    fn on_delta(&mut self, delay_ms: f64, arrival_us: i64) {
        let first = *self.first_arrival_us.get_or_insert(arrival_us);
        let t_ms = (arrival_us - first) as f64 / 1e3;
        self.deltas = (self.deltas + 1).min(1000);
        self.accumulated_ms += delay_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.samples.push_back((t_ms, self.smoothed_ms));
        if self.samples.len() > TRENDLINE_WINDOW {
            self.samples.pop_front();
        }
        let slope = if self.samples.len() == TRENDLINE_WINDOW { slope(&self.samples).unwrap_or(0.0) } else { 0.0 };
        self.detect(slope, delay_ms, t_ms);
    }

    fn detect(&mut self, slope: f64, delta_ms: f64, now_ms: f64) {
        let trend = slope * self.deltas.min(60) as f64 * THRESHOLD_GAIN;
        if trend > self.threshold {
            self.over_ms = if self.over_ms < 0.0 { delta_ms.abs() / 2.0 } else { self.over_ms + delta_ms.abs() };
            self.over_count += 1;
            if self.over_ms > OVERUSE_TIME_MS && self.over_count > 1 && trend >= self.prev_trend {
                self.over_ms = 0.0;
                self.over_count = 0;
                self.usage = Usage::Over;
            }
        } else if trend < -self.threshold {
            self.over_ms = -1.0;
            self.over_count = 0;
            self.usage = Usage::Under;
        } else {
            self.over_ms = -1.0;
            self.over_count = 0;
            self.usage = Usage::Normal;
        }
        self.prev_trend = trend;
        // The threshold follows the trend: slowly up, faster down; big spikes are ignored.
        let last = self.last_threshold_update.replace(now_ms).unwrap_or(now_ms);
        if trend.abs() <= self.threshold + 15.0 {
            let k = if trend.abs() < self.threshold { 0.039 } else { 0.0087 };
            let dt = (now_ms - last).clamp(0.0, 100.0);
            self.threshold = (self.threshold + k * (trend.abs() - self.threshold) * dt).clamp(6.0, 600.0);
        }
    }
}

/// Least-squares slope of (x, y).
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
    (den > 0.0).then(|| num / den)
}

pub struct BandwidthEstimator {
    target: f64,
    min: f64,
    max: f64,
    trendline: Trendline,
    /// (arrival µs, bytes) of the packets received lately: what got through.
    acked: VecDeque<(i64, usize)>,
    last_update: Option<Instant>,
    /// The loss-based bound (bps).
    loss_bound: f64,
    lost: u64,
    reported: u64,
    loss_since: Option<Instant>,
    /// Since when no over-use (nor loss cut) was seen.
    calm_since: Option<Instant>,
    /// A try above what got through: until when.
    probe_until: Option<Instant>,
    /// Calm seconds the next try waits for.
    probe_wait: f64,
}

impl BandwidthEstimator {
    pub fn new(start_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        let max = max_bps.max(min_bps) as f64;
        BandwidthEstimator {
            target: (start_bps as f64).clamp(min_bps as f64, max),
            min: min_bps as f64,
            max,
            trendline: Trendline::new(),
            acked: VecDeque::new(),
            last_update: None,
            loss_bound: f64::INFINITY,
            lost: 0,
            reported: 0,
            loss_since: None,
            calm_since: None,
            probe_until: None,
            probe_wait: PROBE_WAIT,
        }
    }

    /// Whether the target may now grow past 1.5× what got through (a probe with media).
    pub fn probing(&self, now: Instant) -> bool {
        self.probe_until.is_some_and(|t| now < t)
    }

    /// Over-use or heavy loss: the calm spell ends, and a try above what got through that
    /// is still running has failed (the next waits twice as long).
    fn unsettled(&mut self, now: Instant) {
        self.calm_since = Some(now);
        if self.probe_until.take().is_some_and(|t| now < t) {
            self.probe_wait = (self.probe_wait * 2.0).min(PROBE_WAIT_MAX);
        }
    }

    /// The multiplicative increase per second after `calm` seconds without over-use.
    fn increase_per_second(calm: f64) -> f64 {
        (INCREASE_PER_SECOND + ACCELERATION * (calm - CALM).max(0.0)).min(MAX_INCREASE_PER_SECOND)
    }

    pub fn target_bps(&self) -> u64 {
        self.target as u64
    }

    pub fn usage(&self) -> Usage {
        self.trendline.usage
    }

    /// A new ceiling (a receiver's REMB, or the configured bitrates changing).
    pub fn set_max(&mut self, max_bps: u64) {
        self.max = (max_bps as f64).max(self.min);
        self.target = self.target.min(self.max);
    }

    /// The rate the receiver saw over the last half second (bps), when known.
    pub fn acked_bps(&self) -> Option<f64> {
        let (first, last) = (self.acked.front()?, self.acked.back()?);
        let span = (last.0 - first.0) as f64 / 1e6;
        (span >= 0.1).then(|| self.acked.iter().skip(1).map(|(_, b)| *b as f64 * 8.0).sum::<f64>() / span)
    }

    /// One transport-cc report, its packets in sequence order. Returns the new target.
    pub fn on_feedback(&mut self, packets: &[PacketResult], now: Instant) -> u64 {
        let mut sorted: Vec<&PacketResult> = packets.iter().filter(|p| p.arrival_us.is_some()).collect();
        sorted.sort_by_key(|p| p.sent);
        for p in &sorted {
            let at = p.arrival_us.expect("received");
            self.trendline.on_packet(p.sent, at);
            self.acked.push_back((at, p.size));
        }
        if let Some(&(last, _)) = self.acked.back() {
            while self.acked.front().is_some_and(|(t, _)| last - t > ACKED_WINDOW.as_micros() as i64) {
                self.acked.pop_front();
            }
        }
        self.lost += packets.iter().filter(|p| p.arrival_us.is_none()).count() as u64;
        self.reported += packets.len() as u64;
        let dt = self.last_update.replace(now).map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64().min(1.0));
        self.update_loss_bound(now, dt);
        let calm_since = *self.calm_since.get_or_insert(now);
        match self.trendline.usage {
            Usage::Over => {
                self.unsettled(now);
                let base = self.acked_bps().unwrap_or(self.target);
                // one cut per round of over-use: the next waits for fresh delay samples
                self.target = (base * DECREASE_FACTOR).min(self.target);
                self.trendline.usage = Usage::Normal;
            }
            Usage::Under => {}
            Usage::Normal => {
                let calm = now.saturating_duration_since(calm_since).as_secs_f64();
                let grown = self.target * Self::increase_per_second(calm).powf(dt);
                // never far above what got through: an idle or app-limited sender must not
                // grow a target the path never carried
                let cap = self.acked_bps().map_or(f64::INFINITY, |a| 1.5 * a + 10_000.0);
                if self.probe_until.is_some_and(|t| now >= t) {
                    self.probe_until = None; // a try without over-use: the path carried it
                    self.probe_wait = PROBE_WAIT;
                }
                let held = grown >= cap && self.target < self.max;
                if held && !self.probing(now) && calm >= self.probe_wait {
                    self.probe_until = Some(now + PROBE_SPAN);
                }
                self.target = if self.probing(now) { grown } else { grown.min(cap.max(self.target)) };
            }
        }
        self.target = self.target.min(self.loss_bound).clamp(self.min, self.max);
        self.target as u64
    }

    /// Loss over each second of reports: > 10 % cuts the bound by half the loss, < 2 %
    /// lets it grow again.
    fn update_loss_bound(&mut self, now: Instant, dt: f64) {
        let since = *self.loss_since.get_or_insert(now);
        if now.saturating_duration_since(since) < Duration::from_secs(1) || self.reported < 20 {
            if self.loss_bound.is_finite() {
                self.loss_bound *= INCREASE_PER_SECOND.powf(dt);
            }
            return;
        }
        let loss = self.lost as f64 / self.reported as f64;
        if loss > 0.10 {
            self.loss_bound = self.target * (1.0 - 0.5 * loss);
            self.unsettled(now);
        } else if loss < 0.02 {
            self.loss_bound = f64::INFINITY;
        }
        (self.lost, self.reported, self.loss_since) = (0, 0, Some(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender at the estimator's rate through a bottleneck of `link_bps` (a FIFO queue,
    /// no loss) from `from_s` to `to_s` (seconds after `origin`), reporting every 50 ms.
    /// `queue_free_us`: when the link is next free (µs after `origin`).
    fn run(est: &mut BandwidthEstimator, link_bps: f64, origin: Instant, from_s: f64, to_s: f64, queue_free_us: &mut f64) -> Vec<u64> {
        let mut out = Vec::new();
        let size = 1200usize;
        let mut pending = Vec::new();
        let mut t = from_s;
        let mut last_report = from_s;
        while t < to_s {
            let sent = origin + Duration::from_secs_f64(t);
            let start = queue_free_us.max(t * 1e6);
            *queue_free_us = start + size as f64 * 8.0 / link_bps * 1e6;
            pending.push(PacketResult { sent, size, arrival_us: Some(*queue_free_us as i64 + 20_000) });
            t += size as f64 * 8.0 / est.target_bps() as f64; // paced at the target
            if t - last_report >= 0.05 {
                last_report = t;
                est.on_feedback(&pending, sent);
                pending.clear();
                out.push(est.target_bps());
            }
        }
        out
    }

    #[test]
    fn settles_below_a_narrower_link_and_grows_back_when_it_widens() {
        let origin = Instant::now();
        let mut q = 0.0;
        let mut est = BandwidthEstimator::new(2_500_000, 50_000, 2_500_000);
        let narrow = run(&mut est, 1_000_000.0, origin, 0.0, 8.0, &mut q);
        let last = &narrow[narrow.len() - 20..];
        assert!(last.iter().all(|&r| r < 1_100_000 && r > 500_000), "{last:?}");
        let below = narrow.iter().position(|&r| r < 1_000_000).expect("below the link");
        assert!(below < 100, "{below} reports (of 50 ms) before the target was below the link");
        let wide = run(&mut est, 5_000_000.0, origin, 8.0, 23.0, &mut q);
        assert!(*wide.last().unwrap() >= 2_400_000, "{:?}", &wide[wide.len() - 5..]);
        let back = wide.iter().position(|&r| r >= 2_400_000).expect("back up");
        assert!(back as f64 * 0.05 < 9.0, "{:.2} s to grow back", back as f64 * 0.05);
        println!("below the 1 Mbps link after {:.2} s; back at 2.4 Mbps {:.2} s after it widened", below as f64 * 0.05, back as f64 * 0.05);
    }

    #[test]
    fn the_increase_speeds_up_only_while_calm() {
        assert_eq!(BandwidthEstimator::increase_per_second(0.0), INCREASE_PER_SECOND);
        assert_eq!(BandwidthEstimator::increase_per_second(2.0), INCREASE_PER_SECOND);
        assert!((BandwidthEstimator::increase_per_second(4.5) - 1.18).abs() < 1e-9);
        assert_eq!(BandwidthEstimator::increase_per_second(60.0), MAX_INCREASE_PER_SECOND);
    }

    #[test]
    fn an_app_limited_sender_tries_above_what_it_sends_after_a_calm_spell() {
        // 800 kbps sent on a wide path, 2.5 Mbps allowed: the target stays within 1.5x
        // until the try, then grows past it
        let t0 = Instant::now();
        let mut est = BandwidthEstimator::new(1_200_000, 50_000, 2_500_000);
        let mut at = 0i64;
        let mut seen = Vec::new();
        for i in 0..200u64 {
            let sent = t0 + Duration::from_millis(i * 50);
            // 800 kbps: 5000 bytes per 50 ms, in 4 packets, no queuing
            let packets: Vec<PacketResult> = (0..4)
                .map(|k| {
                    at += 12_500;
                    PacketResult { sent: sent + Duration::from_micros(k * 12_500), size: 1250, arrival_us: Some(at) }
                })
                .collect();
            est.on_feedback(&packets, sent + Duration::from_millis(50));
            seen.push((i as f64 * 0.05, est.target_bps(), est.probing(sent + Duration::from_millis(50))));
        }
        let before: Vec<u64> = seen.iter().filter(|(t, _, _)| *t < 2.9).map(|s| s.1).collect();
        assert!(before.iter().all(|&r| r <= 1_220_000), "{before:?}");
        let first_try = seen.iter().find(|s| s.2).expect("a try").0;
        assert!((2.9..=3.5).contains(&first_try), "{first_try}");
        assert!(seen.iter().any(|s| s.1 > 1_500_000), "the try grew past 1.5x");
    }

    #[test]
    fn heavy_loss_cuts_and_bounds_hold() {
        let t0 = Instant::now();
        let mut est = BandwidthEstimator::new(1_000_000, 50_000, 2_000_000);
        for i in 0..40u64 {
            let sent = t0 + Duration::from_millis(i * 50);
            let packets: Vec<PacketResult> = (0..10)
                .map(|k| PacketResult { sent, size: 1200, arrival_us: (k % 3 != 0).then_some((i * 50_000) as i64) })
                .collect();
            est.on_feedback(&packets, sent);
        }
        assert!(est.target_bps() < 1_000_000, "{}", est.target_bps());
        est.set_max(40_000);
        assert_eq!(est.target_bps(), 50_000); // never under the minimum
        assert_eq!(est.on_feedback(&[], t0 + Duration::from_secs(3)), 50_000);
    }
}
