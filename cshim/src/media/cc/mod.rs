//! Congestion control on the send side: transport-wide sequence numbers on every packet a
//! connection sends, transport-cc feedback read back, and a bandwidth estimate
//! (`estimator`) that the video encoders and pacers follow. REMB stays a ceiling.
pub mod estimator;

use super::rtp::hdrext::write_extension;
use super::rtp::twcc::parse_feedback;
use super::rtp::RtcpEvent;
use estimator::{BandwidthEstimator, PacketResult};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sent packets kept for their feedback: reports come within a few hundred ms.
const SENT_KEPT: Duration = Duration::from_secs(2);
const MIN_BPS: u64 = 50_000;

/// One connection's transport: every sender on it stamps its packets here and hands it the
/// feedback that arrives.
pub struct CongestionController {
    pub ext_id: u8,
    inner: Mutex<Inner>,
    target: AtomicU64,
    /// What the connection's audio takes from the estimate (video gets the rest).
    reserved_bps: u64,
}

struct Inner {
    next_seq: u16,
    /// transport sequence number → (sent, bytes)
    sent: HashMap<u16, (Instant, usize)>,
    order: VecDeque<(u16, Instant)>,
    estimator: BandwidthEstimator,
    /// (sender SSRC, count) of the reports seen lately: one report reaches every send loop
    /// of the track it came on.
    seen: VecDeque<(u32, u8)>,
    configured_max: u64,
}

impl CongestionController {
    /// `ext_id`: the transport-cc header extension's id; the estimate starts at `start_bps`
    /// and never exceeds `max_bps` (what the senders are configured for) or a REMB.
    /// `reserved_bps`: what the audio takes, not given to video.
    pub fn new(ext_id: u8, start_bps: u64, max_bps: u64, reserved_bps: u64) -> Arc<Self> {
        Arc::new(CongestionController {
            ext_id,
            reserved_bps,
            inner: Mutex::new(Inner {
                next_seq: rand::random(),
                sent: HashMap::new(),
                order: VecDeque::new(),
                estimator: BandwidthEstimator::new(start_bps, MIN_BPS, max_bps),
                seen: VecDeque::new(),
                configured_max: max_bps,
            }),
            target: AtomicU64::new(start_bps.min(max_bps)),
        })
    }

    /// The estimate (bps) for everything this connection sends.
    pub fn target_bps(&self) -> u64 {
        self.target.load(Ordering::Relaxed)
    }

    /// The part of the estimate for video (what the audio reserved taken off).
    pub fn video_budget_bps(&self) -> u64 {
        self.target_bps().saturating_sub(self.reserved_bps)
    }

    /// Gives `packet` (which reserves the extension) the next transport sequence number as
    /// it goes out at `now`.
    pub fn stamp(&self, packet: &mut [u8], now: Instant) {
        let mut inner = self.inner.lock();
        let seq = inner.next_seq;
        if !write_extension(packet, self.ext_id, &seq.to_be_bytes()) {
            return; // a packet without the extension (none reserved): not counted
        }
        inner.next_seq = seq.wrapping_add(1);
        inner.sent.insert(seq, (now, packet.len()));
        inner.order.push_back((seq, now));
        while inner.order.front().is_some_and(|(_, t)| now.saturating_duration_since(*t) > SENT_KEPT) {
            let (old, _) = inner.order.pop_front().expect("front");
            inner.sent.remove(&old);
        }
    }

    /// RTCP that arrived on one of the connection's sending tracks (`events`: the send
    /// loop's parse of it): transport-cc reports feed the estimate, a REMB caps it.
    pub fn on_rtcp(&self, rtcp: &[u8], events: &[RtcpEvent], now: Instant) {
        let reports = parse_feedback(rtcp);
        let remb = events.iter().find_map(|ev| match ev {
            RtcpEvent::Remb { bitrate, .. } if *bitrate > 0 => Some(*bitrate),
            _ => None,
        });
        if reports.is_empty() && remb.is_none() {
            return;
        }
        let sender = if rtcp.len() >= 8 { u32::from_be_bytes([rtcp[4], rtcp[5], rtcp[6], rtcp[7]]) } else { 0 };
        let mut inner = self.inner.lock();
        if let Some(bps) = remb {
            let max = inner.configured_max.min(bps);
            inner.estimator.set_max(max);
        }
        for fb in reports {
            if inner.seen.contains(&(sender, fb.fb_count)) {
                continue;
            }
            inner.seen.push_back((sender, fb.fb_count));
            if inner.seen.len() > 32 {
                inner.seen.pop_front();
            }
            let packets: Vec<PacketResult> = fb
                .packets
                .iter()
                .filter_map(|(seq, arrival)| {
                    inner.sent.get(seq).map(|&(sent, size)| PacketResult { sent, size, arrival_us: *arrival })
                })
                .collect();
            if !packets.is_empty() {
                inner.estimator.on_feedback(&packets, now);
            }
        }
        self.target.store(inner.estimator.target_bps(), Ordering::Relaxed);
    }
}
