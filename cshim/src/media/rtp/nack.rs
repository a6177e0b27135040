//! Loss recovery by retransmission (RFC 4585 generic NACK, plain retransmission on the same
//! SSRC).
//!
//! * [`NackGenerator`] (receiver): tracks sequence gaps, asks for each missing packet at
//!   most `max_retries` times, spaced by the RTT estimate, and gives up after `max_age`.
//!   A receive-only peer gets no RTT from RTCP (that needs its own SRs), so the estimate
//!   is measured here: the time from a packet's first and only request to its arrival.
//! * [`PacketHistory`] (sender): the last ~1 s / 1024 packets, for answering NACKs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::rtcp::build_nack;
use super::seq::SeqUnwrapper;

/// Sequence numbers per NACK packet (keeps one RTCP packet well under the MTU even when
/// every loss needs its own PID/BLP pair).
const MAX_SEQS_PER_NACK: usize = 250;
/// A forward jump larger than this is a stream restart, not a loss burst.
const MAX_GAP: i64 = 3000;
const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug)]
struct Missing {
    detected: Instant,
    last_sent: Option<Instant>,
    retries: u32,
}

#[derive(Clone, Debug)]
pub struct NackGenerator {
    unwrapper: SeqUnwrapper,
    highest: Option<i64>,
    missing: BTreeMap<i64, Missing>,
    rtt: Duration,
    rtt_measured: bool,
    max_retries: u32,
    max_age: Duration,
    max_entries: usize,
    send_delay: Duration,
    /// NACK packets produced and sequence numbers requested (retries included).
    nack_packets: u64,
    requests: u64,
    /// Missing packets that arrived later (reordered or retransmitted).
    recovered: u64,
    given_up: u64,
}

impl Default for NackGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl NackGenerator {
    pub fn new() -> Self {
        Self {
            unwrapper: SeqUnwrapper::new(),
            highest: None,
            missing: BTreeMap::new(),
            rtt: Duration::from_millis(100),
            rtt_measured: false,
            max_retries: 10,
            max_age: Duration::from_secs(1),
            max_entries: 1000,
            send_delay: Duration::ZERO,
            nack_packets: 0,
            requests: 0,
            recovered: 0,
            given_up: 0,
        }
    }

    /// RTT estimate; resend spacing. Default 100 ms until measured (see the module doc).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }
    pub fn rtt(&self) -> Duration {
        self.rtt
    }
    pub fn set_max_retries(&mut self, n: u32) {
        self.max_retries = n.max(1);
    }
    pub fn set_max_age(&mut self, age: Duration) {
        self.max_age = age;
    }
    /// Wait this long after detecting a gap before the first request (reordering tolerance).
    pub fn set_send_delay(&mut self, d: Duration) {
        self.send_delay = d;
    }

    pub fn nack_packets(&self) -> u64 {
        self.nack_packets
    }
    pub fn requests(&self) -> u64 {
        self.requests
    }
    pub fn recovered(&self) -> u64 {
        self.recovered
    }
    pub fn given_up(&self) -> u64 {
        self.given_up
    }

    /// Records a received packet. Returns true when it filled a tracked gap.
    pub fn on_packet(&mut self, seq: u16, now: Instant) -> bool {
        let ext = self.unwrapper.unwrap(seq);
        let Some(highest) = self.highest else {
            self.highest = Some(ext);
            return false;
        };
        if ext > highest {
            if ext - highest > MAX_GAP {
                self.missing.clear();
            } else {
                let from = (highest + 1).max(ext - self.max_entries as i64);
                for s in from..ext {
                    self.missing.insert(s, Missing { detected: now, last_sent: None, retries: 0 });
                }
                while self.missing.len() > self.max_entries {
                    self.missing.pop_first();
                    self.given_up += 1;
                }
            }
            self.highest = Some(ext);
            false
        } else if let Some(m) = self.missing.remove(&ext) {
            self.recovered += 1;
            // Asked once: the arrival answers that request (Karn: never sample a retried
            // packet, whose answer could be to any of its requests). Smoothed as TCP's SRTT.
            if let (1, Some(sent)) = (m.retries, m.last_sent) {
                let sample = now.saturating_duration_since(sent);
                self.rtt = if self.rtt_measured { (self.rtt * 7 + sample) / 8 } else { sample };
                self.rtt_measured = true;
            }
            true
        } else {
            false
        }
    }

    /// Asks for `seq`, just before the first packet received, which no gap reveals: a
    /// stream whose first packets were lost on the way looks like one that starts later.
    pub fn request_before_first(&mut self, seq: u16, now: Instant) {
        let ext = self.unwrapper.peek(seq);
        if self.highest.is_some_and(|h| ext < h) {
            self.missing.entry(ext).or_insert(Missing { detected: now, last_sent: None, retries: 0 });
        }
    }

    /// Stops asking for everything before `seq` (the jitter buffer moved past it).
    pub fn drop_before(&mut self, seq: u16) {
        let ext = self.unwrapper.peek(seq);
        let keep = self.missing.split_off(&ext);
        self.given_up += self.missing.len() as u64;
        self.missing = keep;
    }

    pub fn clear(&mut self) {
        self.missing.clear();
    }

    /// Forgets the sequence history too (stream restart); counters are kept.
    pub fn reset(&mut self) {
        self.missing.clear();
        self.highest = None;
        self.unwrapper.reset();
    }

    /// Sequence numbers currently considered missing, oldest first.
    pub fn missing(&self) -> Vec<u16> {
        self.missing.keys().map(|&s| s as u16).collect()
    }

    fn resend_interval(&self) -> Duration {
        self.rtt.max(MIN_RESEND_INTERVAL)
    }

    fn expire(&mut self, now: Instant) {
        let (max_age, max_retries) = (self.max_age, self.max_retries);
        let before = self.missing.len();
        self.missing.retain(|_, m| m.retries < max_retries && now.saturating_duration_since(m.detected) < max_age);
        self.given_up += (before - self.missing.len()) as u64;
    }

    /// Sequence numbers to request now (marked as requested), oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<u16> {
        self.expire(now);
        let interval = self.resend_interval();
        let send_delay = self.send_delay;
        let mut out = Vec::new();
        for (s, m) in self.missing.iter_mut() {
            if out.len() >= MAX_SEQS_PER_NACK {
                break;
            }
            let due = match m.last_sent {
                None => now.saturating_duration_since(m.detected) >= send_delay,
                Some(t) => now.saturating_duration_since(t) >= interval,
            };
            if due {
                m.last_sent = Some(now);
                m.retries += 1;
                out.push(*s as u16);
            }
        }
        self.requests += out.len() as u64;
        out
    }

    /// When [`Self::due`] will next return something (for timer scheduling).
    pub fn next_due(&self) -> Option<Instant> {
        self.missing
            .values()
            .map(|m| match m.last_sent {
                None => m.detected + self.send_delay,
                Some(t) => t + self.resend_interval(),
            })
            .min()
    }

    /// Serialized generic NACK for everything due now, or `None`.
    pub fn nack_packet(&mut self, now: Instant, sender_ssrc: u32, media_ssrc: u32) -> Option<Vec<u8>> {
        let seqs = self.due(now);
        if seqs.is_empty() {
            return None;
        }
        let pkt = build_nack(sender_ssrc, media_ssrc, &seqs);
        if pkt.is_empty() {
            return None;
        }
        self.nack_packets += 1;
        Some(pkt)
    }
}

struct Slot {
    seq: u16,
    stored: Instant,
    last_resent: Option<Instant>,
    packet: Vec<u8>,
}

/// Sender-side history of sent RTP packets, indexed by sequence number.
pub struct PacketHistory {
    slots: Vec<Option<Slot>>,
    max_age: Duration,
    retransmissions: u64,
}

impl Default for PacketHistory {
    fn default() -> Self {
        Self::new(1024, Duration::from_secs(1))
    }
}

impl PacketHistory {
    /// `capacity` is rounded up to a power of two.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let cap = capacity.clamp(16, 1 << 15).next_power_of_two();
        Self { slots: (0..cap).map(|_| None).collect(), max_age, retransmissions: 0 }
    }

    fn index(&self, seq: u16) -> usize {
        usize::from(seq) & (self.slots.len() - 1)
    }

    pub fn store(&mut self, seq: u16, packet: Vec<u8>, now: Instant) {
        let i = self.index(seq);
        self.slots[i] = Some(Slot { seq, stored: now, last_resent: None, packet });
    }

    /// The stored packet with this sequence number, if still held.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        match &self.slots[self.index(seq)] {
            Some(s) if s.seq == seq => Some(&s.packet),
            _ => None,
        }
    }

    /// The packet to retransmit for a NACK: not older than `max_age` and not already
    /// resent within `min_interval` (a receiver's repeated NACK inside one RTT).
    pub fn get_for_retransmit(&mut self, seq: u16, now: Instant, min_interval: Duration) -> Option<Vec<u8>> {
        let i = self.index(seq);
        let max_age = self.max_age;
        let slot = self.slots[i].as_mut().filter(|s| s.seq == seq)?;
        if now.saturating_duration_since(slot.stored) > max_age {
            return None;
        }
        if slot.last_resent.is_some_and(|t| now.saturating_duration_since(t) < min_interval) {
            return None;
        }
        slot.last_resent = Some(now);
        self.retransmissions += 1;
        Some(slot.packet.clone())
    }

    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::rtcp::{parse_compound, RtcpEvent};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rtt_is_measured_from_answered_requests() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.on_packet(1, t0);
        g.on_packet(4, t0); // 2 and 3 missing
        assert_eq!(g.due(t0), vec![2, 3]);
        g.on_packet(2, t0 + ms(8)); // answered after 8 ms: first sample taken as is
        assert_eq!(g.rtt(), ms(8));
        // 3 is asked again (resend spacing is now max(8, 10) ms), so its arrival is no sample
        assert_eq!(g.due(t0 + ms(10)), vec![3]);
        g.on_packet(3, t0 + ms(12));
        assert_eq!(g.rtt(), ms(8));
        g.on_packet(6, t0 + ms(20)); // 5 missing
        assert_eq!(g.due(t0 + ms(20)), vec![5]);
        g.on_packet(5, t0 + ms(36)); // 16 ms: smoothed 7/8 * 8 + 1/8 * 16 = 9 ms
        assert_eq!(g.rtt(), ms(9));
    }

    #[test]
    fn nack_list_across_wrap() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        for s in [65530u16, 65531, 65532] {
            g.on_packet(s, t0);
        }
        // 65533, 65534, 65535, 0, 1 lost; 2 arrives.
        g.on_packet(2, t0);
        g.on_packet(3, t0);
        // 7 arrives: 4, 5, 6 missing; then 5 shows up late.
        g.on_packet(7, t0);
        assert!(g.on_packet(5, t0));
        assert_eq!(g.missing(), vec![65533, 65534, 65535, 0, 1, 4, 6]);
        let pkt = g.nack_packet(t0, 0x11, 0x22).unwrap();
        match &parse_compound(&pkt)[..] {
            [RtcpEvent::Nack { sender_ssrc: 0x11, media_ssrc: 0x22, seqs }] => {
                assert_eq!(seqs, &vec![65533, 65534, 65535, 0, 1, 4, 6]);
            }
            e => panic!("{e:?}"),
        }
        // Not again within the RTT...
        assert!(g.nack_packet(t0 + ms(50), 0x11, 0x22).is_none());
        // ... the retransmission of 0 arrives ...
        assert!(g.on_packet(0, t0 + ms(60)));
        // ... and after one RTT the rest is asked again.
        g.set_rtt(ms(100));
        let pkt = g.nack_packet(t0 + ms(100), 0x11, 0x22).unwrap();
        match &parse_compound(&pkt)[..] {
            [RtcpEvent::Nack { seqs, .. }] => assert_eq!(seqs, &vec![65533, 65534, 65535, 1, 4, 6]),
            e => panic!("{e:?}"),
        }
        assert_eq!(g.next_due(), Some(t0 + ms(200)));
        assert_eq!(g.requests(), 13);
    }

    #[test]
    fn nack_retry_limit_age_and_drop() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        g.set_rtt(ms(20));
        g.set_max_retries(3);
        g.on_packet(10, t0);
        g.on_packet(13, t0); // 11, 12 missing
        let mut sent = 0;
        for i in 0..20 {
            if g.nack_packet(t0 + ms(i * 20), 1, 2).is_some() {
                sent += 1;
            }
        }
        assert_eq!(sent, 3);
        assert!(g.missing().is_empty());
        assert_eq!(g.given_up(), 2);
        // Age limit: never sent beyond 1 s.
        let mut g = NackGenerator::new();
        g.set_rtt(ms(300));
        g.on_packet(1, t0);
        g.on_packet(3, t0);
        let sends = (0..30).filter(|i| g.nack_packet(t0 + ms(i * 100), 1, 2).is_some()).count();
        assert_eq!(sends, 4); // t = 0, 300, 600, 900 ms
        // drop_before and huge jumps.
        let mut g = NackGenerator::new();
        g.on_packet(100, t0);
        g.on_packet(110, t0);
        g.drop_before(105);
        assert_eq!(g.missing(), vec![105, 106, 107, 108, 109]);
        g.on_packet(20_000, t0);
        assert!(g.missing().is_empty());
        // Reorder tolerance.
        let mut g = NackGenerator::new();
        g.set_send_delay(ms(10));
        g.on_packet(1, t0);
        g.on_packet(3, t0);
        assert!(g.due(t0).is_empty());
        assert!(g.nack_packet(t0 + ms(5), 1, 2).is_none());
        assert!(g.nack_packet(t0 + ms(10), 1, 2).is_some());
    }

    #[test]
    fn packet_history_store_get_retransmit() {
        let t0 = Instant::now();
        let mut h = PacketHistory::default();
        for i in 0..1500u32 {
            let seq = 65000u16.wrapping_add(i as u16);
            h.store(seq, vec![i as u8; 4], t0 + ms(u64::from(i)));
        }
        // The last 1024 are held; older slots were overwritten.
        let newest = 65000u16.wrapping_add(1499);
        assert_eq!(h.get(newest), Some(&[(1499u32 as u8); 4][..]));
        assert!(h.get(65000u16.wrapping_add(475)).is_none());
        assert!(h.get(65000u16.wrapping_add(476)).is_some());
        let now = t0 + ms(1499);
        assert!(h.get_for_retransmit(newest, now, ms(50)).is_some());
        assert!(h.get_for_retransmit(newest, now + ms(10), ms(50)).is_none());
        assert!(h.get_for_retransmit(newest, now + ms(60), ms(50)).is_some());
        // Older than 1 s: not retransmitted.
        assert!(h.get_for_retransmit(65000u16.wrapping_add(480), now + ms(100), ms(0)).is_none());
        assert_eq!(h.retransmissions(), 2);
    }
}
