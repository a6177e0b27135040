//! Leaky-bucket pacer: spreads packets at `rate × pacing_factor` (2.5 like libwebrtc) so a
//! keyframe does not hit the network as one burst, with a bucket of `burst` worth of budget
//! that fills while idle, so a typical keyframe still leaves within about a frame interval.
//! When the backlog would take longer than `max_queue_time` to drain, the rate is raised to
//! drain it in that time (latency over smoothness, as libwebrtc's queue time limit).
//!
//! Audio and retransmissions bypass it (they are small and time-critical).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Pacer {
    rate_bps: u64,
    pacing_factor: f64,
    burst: Duration,
    max_queue_time: Duration,
    /// packets with the time each was queued (`totalPacketSendDelay`)
    queue: VecDeque<(Vec<u8>, Instant)>,
    queued_bytes: usize,
    /// Bytes that may be sent now; negative after sending a packet larger than the budget.
    budget: f64,
    last: Option<Instant>,
    sent_packets: u64,
    sent_bytes: u64,
}

impl Pacer {
    pub fn new(rate_bps: u64) -> Self {
        Self {
            rate_bps: rate_bps.max(1),
            pacing_factor: 2.5,
            burst: Duration::from_millis(40),
            max_queue_time: Duration::from_secs(2),
            queue: VecDeque::new(),
            queued_bytes: 0,
            budget: 0.0,
            last: None,
            sent_packets: 0,
            sent_bytes: 0,
        }
    }

    /// Target media rate (bits/s); packets drain at this times the pacing factor.
    pub fn set_rate(&mut self, rate_bps: u64) {
        self.rate_bps = rate_bps.max(1);
        self.budget = self.budget.min(self.bucket_size());
    }
    pub fn rate(&self) -> u64 {
        self.rate_bps
    }
    pub fn set_pacing_factor(&mut self, f: f64) {
        if f.is_finite() && f > 0.0 {
            self.pacing_factor = f;
        }
    }
    /// Size of the idle-time bucket, as a duration at the pacing rate (default 40 ms).
    pub fn set_burst(&mut self, burst: Duration) {
        self.burst = burst;
        self.budget = self.budget.min(self.bucket_size());
    }
    pub fn set_max_queue_time(&mut self, t: Duration) {
        self.max_queue_time = t;
    }

    pub fn queued_packets(&self) -> usize {
        self.queue.len()
    }
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }
    /// (packets, bytes) released so far.
    pub fn sent(&self) -> (u64, u64) {
        (self.sent_packets, self.sent_bytes)
    }

    /// Pacing rate in bytes/s, raised when the backlog exceeds the queue time limit.
    fn drain_rate(&self) -> f64 {
        let pace = self.rate_bps as f64 * self.pacing_factor / 8.0;
        let limit = self.max_queue_time.as_secs_f64();
        if limit > 0.0 {
            pace.max(self.queued_bytes as f64 / limit)
        } else {
            pace
        }
    }

    fn bucket_size(&self) -> f64 {
        (self.rate_bps as f64 * self.pacing_factor / 8.0 * self.burst.as_secs_f64()).max(1500.0)
    }

    /// Queues `packets`, handed over at `queued_at`.
    pub fn enqueue(&mut self, packets: impl IntoIterator<Item = Vec<u8>>, queued_at: Instant) {
        for p in packets {
            self.queued_bytes += p.len();
            self.queue.push_back((p, queued_at));
        }
    }

    fn refill(&mut self, now: Instant) {
        match self.last {
            None => self.budget = self.bucket_size(),
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                self.budget = (self.budget + dt * self.drain_rate()).min(self.bucket_size().max(self.budget));
            }
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    /// Packets whose send time has come, in order, each with the time it was queued.
    pub fn poll(&mut self, now: Instant) -> Vec<(Vec<u8>, Instant)> {
        self.refill(now);
        let mut out = Vec::new();
        while self.budget > 0.0 {
            let Some((p, queued_at)) = self.queue.pop_front() else { break };
            self.queued_bytes -= p.len();
            self.budget -= p.len() as f64;
            self.sent_packets += 1;
            self.sent_bytes += p.len() as u64;
            out.push((p, queued_at));
        }
        out
    }

    /// When `poll` will next release something; `None` when the queue is empty.
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            return None;
        }
        let last = self.last?;
        if self.budget > 0.0 {
            return Some(last);
        }
        let secs = (-self.budget + 1.0) / self.drain_rate();
        Some(last + Duration::from_secs_f64(secs.min(10.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; size]).collect()
    }

    #[test]
    fn steady_rate_within_ten_percent() {
        for (rate, factor) in [(1_000_000u64, 1.0), (2_500_000, 2.5), (300_000, 1.0)] {
            let mut p = Pacer::new(rate);
            p.set_pacing_factor(factor);
            p.set_max_queue_time(Duration::from_secs(3600));
            let t0 = Instant::now();
            let bytes_per_s = rate as f64 * factor / 8.0;
            p.enqueue(packets((bytes_per_s * 3.0 / 1200.0) as usize, 1200), t0);
            let mut window = 0u64;
            for ms in 0..=2000u64 {
                let sent: usize = p.poll(t0 + Duration::from_millis(ms)).iter().map(|x| x.0.len()).sum();
                if ms > 500 && ms <= 1500 {
                    window += sent as u64;
                }
            }
            let measured = window as f64;
            assert!((measured - bytes_per_s).abs() / bytes_per_s < 0.1, "rate {rate} x{factor}: {measured} B/s vs {bytes_per_s}");
        }
    }

    #[test]
    fn keyframe_leaves_within_a_frame_interval_but_not_at_once() {
        // 2.5 Mbps x 2.5 after idle: a 60 kB 720p keyframe (50 packets).
        let mut p = Pacer::new(2_500_000);
        let t0 = Instant::now();
        assert!(p.poll(t0).is_empty());
        let t1 = t0 + Duration::from_millis(500);
        p.enqueue(packets(50, 1200), t1);
        let first = p.poll(t1).len();
        assert!(first > 10 && first < 50, "first burst {first}");
        let mut done_at = None;
        let mut now = t1;
        while done_at.is_none() {
            let w = p.next_wakeup().unwrap();
            assert!(w >= now);
            now = w;
            p.poll(now);
            if p.queued_packets() == 0 {
                done_at = Some(now);
            }
        }
        let took = done_at.unwrap() - t1;
        assert!(took <= Duration::from_millis(40), "keyframe took {took:?}");
        assert!(took >= Duration::from_millis(25), "keyframe took {took:?}");
        assert_eq!(p.next_wakeup(), None);
        assert_eq!(p.sent(), (50, 60_000));
    }

    #[test]
    fn backlog_beyond_queue_limit_raises_rate() {
        let mut p = Pacer::new(100_000);
        p.set_pacing_factor(1.0);
        p.set_max_queue_time(Duration::from_millis(500));
        let t0 = Instant::now();
        p.poll(t0);
        p.enqueue(packets(100, 1000), t0); // 8 s at 100 kbps
        let mut n = 0;
        for ms in 0..=600u64 {
            n += p.poll(t0 + Duration::from_millis(ms)).len();
        }
        assert!(n >= 60, "drained only {n}");
    }
}
