//! RTCP: building and parsing (wire formats from `rtc-rtcp`), RTP/RTCP demux (RFC 5761), and
//! RFC 3550 reception statistics for receiver report blocks (A.1 sequence validation, A.3
//! loss, A.8 interarrival jitter, LSR/DLSR).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc_rtcp::goodbye::Goodbye;
use rtc_rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc_rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc_rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem};
use rtc_rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc_shared::marshal::Marshal;

use super::seq::SeqUnwrapper;
use super::timing;

/// RFC 5761 §4: RTCP packet types 192–223 occupy the second byte where RTP has M+PT; also
/// checks version 2 and a minimum length.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 4 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// One RTCP reception report block (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed on the wire; duplicates can make it
    /// negative).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// Round-trip time from a report block about one of *our* streams (RFC 3550 §6.4.1):
    /// `now - LSR - DLSR`. `None` when the remote has not received an SR yet.
    pub fn rtt(&self, now_ntp: u64) -> Option<Duration> {
        if self.lsr == 0 {
            return None;
        }
        let now = timing::ntp_compact(now_ntp);
        let rtt = now.wrapping_sub(self.lsr).wrapping_sub(self.dlsr);
        if rtt > 0x8000_0000 {
            return Some(Duration::ZERO); // clock skew made it "negative"
        }
        Some(timing::compact_to_duration(rtt))
    }

    fn to_wire(self) -> ReceptionReport {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff);
        ReceptionReport {
            ssrc: self.ssrc,
            fraction_lost: self.fraction_lost,
            total_lost: (lost as u32) & 0x00ff_ffff,
            last_sequence_number: self.extended_highest_seq,
            jitter: self.jitter,
            last_sender_report: self.lsr,
            delay: self.dlsr,
        }
    }

    fn from_wire(r: &ReceptionReport) -> Self {
        let t = r.total_lost & 0x00ff_ffff;
        let lost = if t & 0x80_0000 != 0 { (t | 0xff00_0000) as i32 } else { t as i32 };
        ReportBlock {
            ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            cumulative_lost: lost,
            extended_highest_seq: r.last_sequence_number,
            jitter: r.jitter,
            lsr: r.last_sender_report,
            dlsr: r.delay,
        }
    }
}

/// What a received RTCP compound packet told us.
#[derive(Clone, Debug, PartialEq)]
pub enum RtcpEvent {
    Sr { ssrc: u32, ntp: u64, rtp_ts: u32, packet_count: u32, octet_count: u32, reports: Vec<ReportBlock> },
    Rr { ssrc: u32, reports: Vec<ReportBlock> },
    Pli { sender_ssrc: u32, media_ssrc: u32 },
    /// One per FCI entry; `media_ssrc` is the stream asked for a keyframe.
    Fir { sender_ssrc: u32, media_ssrc: u32, seq_nr: u8 },
    Nack { sender_ssrc: u32, media_ssrc: u32, seqs: Vec<u16> },
    Remb { sender_ssrc: u32, bitrate: u64, ssrcs: Vec<u32> },
    Bye { ssrcs: Vec<u32> },
    /// Well-formed but not interpreted here (SDES, XR, transport-cc, APP, ...).
    Other { packet_type: u8, fmt: u8 },
}

/// Parses a compound RTCP packet; see [`parse_compound_counted`].
pub fn parse_compound(data: &[u8]) -> Vec<RtcpEvent> {
    parse_compound_counted(data).0
}

/// Parses a compound RTCP packet into events, skipping malformed sub-packets. Returns the
/// events and the number of malformed parts (a truncated or non-v2 tail counts as one).
pub fn parse_compound_counted(data: &[u8]) -> (Vec<RtcpEvent>, usize) {
    let (parts, mut malformed) = split_compound(data);
    let mut events = Vec::new();
    for sub in parts {
        match parse_one(sub) {
            Some(mut ev) => events.append(&mut ev),
            None => malformed += 1,
        }
    }
    (events, malformed)
}

/// The sub-packets of a compound RTCP packet by their length fields, and 1 when a
/// truncated or non-v2 tail was left out (0 otherwise).
fn split_compound(data: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut parts = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return (parts, 1);
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return (parts, 1);
        }
        parts.push(&rest[..len]);
        rest = &rest[len..];
    }
    (parts, 0)
}

/// A generic NACK taken out of a compound packet: (sender SSRC, media SSRC, sequence numbers).
pub type Nack = (u32, u32, Vec<u16>);

/// Whether one RTCP sub-packet is a REMB (PSFB, FMT 15, identifier "REMB").
fn is_remb(p: &[u8]) -> bool {
    p.len() >= 16 && p[1] == 206 && p[0] & 0x1f == 15 && &p[12..16] == b"REMB"
}

/// Whether one RTCP sub-packet is transport-cc feedback (RTPFB, FMT 15).
fn is_transport_cc(p: &[u8]) -> bool {
    p[1] == 205 && p[0] & 0x1f == 15
}

/// For an SFU that answers NACKs itself: the generic NACKs of a compound packet, and the
/// other sub-packets unchanged and in order, less any REMB or transport-cc feedback (a
/// receiver's estimate, or the arrivals it reports, cover only its own SFU→receiver leg;
/// the SFU gives the sender its own). None when there is none of these (forward as is).
pub fn take_nacks_and_rembs(data: &[u8]) -> Option<(Vec<Nack>, Vec<u8>)> {
    let (parts, _) = split_compound(data);
    let is_nack = |p: &[u8]| p[1] == 205 && p[0] & 0x1f == 1;
    if !parts.iter().any(|p| is_nack(p) || is_remb(p) || is_transport_cc(p)) {
        return None;
    }
    let (mut nacks, mut rest) = (Vec::new(), Vec::new());
    for p in parts {
        if is_remb(p) || is_transport_cc(p) {
            continue;
        }
        if !is_nack(p) {
            rest.extend_from_slice(p);
            continue;
        }
        for ev in parse_one(p).unwrap_or_default() {
            if let RtcpEvent::Nack { sender_ssrc, media_ssrc, seqs } = ev {
                nacks.push((sender_ssrc, media_ssrc, seqs));
            }
        }
    }
    Some((nacks, rest))
}

fn parse_one(sub: &[u8]) -> Option<Vec<RtcpEvent>> {
    let (fmt, pt) = (sub[0] & 0x1f, sub[1]);
    // Only hand the crate what we interpret: everything else is "Other" without parsing.
    let known = matches!((pt, fmt), (200, _) | (201, _) | (203, _) | (205, 1) | (206, 1) | (206, 4) | (206, 15));
    if !known {
        return Some(vec![RtcpEvent::Other { packet_type: pt, fmt }]);
    }
    let mut buf = sub;
    let packets = rtc_rtcp::packet::unmarshal(&mut buf).ok()?;
    let mut out = Vec::new();
    for p in packets {
        let any = p.as_any();
        if let Some(sr) = any.downcast_ref::<SenderReport>() {
            out.push(RtcpEvent::Sr {
                ssrc: sr.ssrc,
                ntp: sr.ntp_time,
                rtp_ts: sr.rtp_time,
                packet_count: sr.packet_count,
                octet_count: sr.octet_count,
                reports: sr.reports.iter().map(ReportBlock::from_wire).collect(),
            });
        } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
            out.push(RtcpEvent::Rr { ssrc: rr.ssrc, reports: rr.reports.iter().map(ReportBlock::from_wire).collect() });
        } else if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            out.push(RtcpEvent::Pli { sender_ssrc: pli.sender_ssrc, media_ssrc: pli.media_ssrc });
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            for e in &fir.fir {
                out.push(RtcpEvent::Fir { sender_ssrc: fir.sender_ssrc, media_ssrc: e.ssrc, seq_nr: e.sequence_number });
            }
        } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
            let seqs = nack.nacks.iter().flat_map(|p| p.packet_list()).collect();
            out.push(RtcpEvent::Nack { sender_ssrc: nack.sender_ssrc, media_ssrc: nack.media_ssrc, seqs });
        } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
            let bitrate = if remb.bitrate.is_finite() && remb.bitrate > 0.0 {
                remb.bitrate.min(u64::MAX as f32) as u64
            } else {
                0
            };
            out.push(RtcpEvent::Remb { sender_ssrc: remb.sender_ssrc, bitrate, ssrcs: remb.ssrcs.clone() });
        } else if let Some(bye) = any.downcast_ref::<Goodbye>() {
            out.push(RtcpEvent::Bye { ssrcs: bye.sources.clone() });
        } else {
            let h = p.header();
            out.push(RtcpEvent::Other { packet_type: h.packet_type as u8, fmt: h.count });
        }
    }
    Some(out)
}

fn marshal<P: Marshal>(p: &P) -> Vec<u8> {
    // Marshalling our own well-formed structs only fails on impossible sizes (e.g. more
    // than 31 report blocks); callers get an empty packet rather than a panic then.
    p.marshal().map(|b| b.to_vec()).unwrap_or_default()
}

/// Sender report. At most 31 report blocks fit.
pub fn build_sr(ssrc: u32, ntp: u64, rtp_ts: u32, packet_count: u32, octet_count: u32, reports: &[ReportBlock]) -> Vec<u8> {
    marshal(&SenderReport {
        ssrc,
        ntp_time: ntp,
        rtp_time: rtp_ts,
        packet_count,
        octet_count,
        reports: reports.iter().take(31).map(|r| r.to_wire()).collect(),
        profile_extensions: Bytes::new(),
    })
}

/// Receiver report (for a receive-only endpoint; `ssrc` is our local RTCP SSRC).
pub fn build_rr(ssrc: u32, reports: &[ReportBlock]) -> Vec<u8> {
    marshal(&ReceiverReport {
        ssrc,
        reports: reports.iter().take(31).map(|r| r.to_wire()).collect(),
        profile_extensions: Bytes::new(),
    })
}

/// SDES with a CNAME item (RFC 3550 requires one in every compound packet).
pub fn build_sdes_cname(ssrc: u32, cname: &str) -> Vec<u8> {
    let text = &cname.as_bytes()[..cname.len().min(255)];
    marshal(&SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: ssrc,
            items: vec![SourceDescriptionItem { sdes_type: SdesType::SdesCname, text: Bytes::copy_from_slice(text) }],
        }],
    })
}

pub fn build_pli(sender_ssrc: u32, media_ssrc: u32) -> Vec<u8> {
    marshal(&PictureLossIndication { sender_ssrc, media_ssrc })
}

/// Full intra request (RFC 5104 §4.3.1); `seq_nr` must be incremented per new request.
pub fn build_fir(sender_ssrc: u32, media_ssrc: u32, seq_nr: u8) -> Vec<u8> {
    marshal(&FullIntraRequest {
        sender_ssrc,
        media_ssrc: 0,
        fir: vec![FirEntry { ssrc: media_ssrc, sequence_number: seq_nr }],
    })
}

/// Generic NACK (RFC 4585 §6.2.1). `seqs` in send order (ascending modulo wrap).
pub fn build_nack(sender_ssrc: u32, media_ssrc: u32, seqs: &[u16]) -> Vec<u8> {
    if seqs.is_empty() {
        return Vec::new();
    }
    marshal(&TransportLayerNack { sender_ssrc, media_ssrc, nacks: nack_pairs(seqs) })
}

/// Packs sequence numbers into (PID, BLP) pairs, wrap-aware.
pub fn nack_pairs(seqs: &[u16]) -> Vec<NackPair> {
    let mut pairs: Vec<NackPair> = Vec::new();
    for &s in seqs {
        if let Some(p) = pairs.last_mut() {
            let d = s.wrapping_sub(p.packet_id);
            if d == 0 {
                continue;
            }
            if (1..=16).contains(&d) {
                p.lost_packets |= 1 << (d - 1);
                continue;
            }
        }
        pairs.push(NackPair::new(s));
    }
    pairs
}

/// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb): `bitrate_bps` for the
/// streams `ssrcs` (at most 255). The wire format keeps an 18-bit mantissa and a 6-bit
/// exponent, so values above 2^18 bps are rounded down to that precision.
pub fn build_remb(sender_ssrc: u32, bitrate_bps: u64, ssrcs: &[u32]) -> Vec<u8> {
    marshal(&ReceiverEstimatedMaximumBitrate {
        sender_ssrc,
        bitrate: bitrate_bps as f32,
        ssrcs: ssrcs.iter().copied().take(255).collect(),
    })
}

pub fn build_bye(ssrcs: &[u32]) -> Vec<u8> {
    marshal(&Goodbye { sources: ssrcs.iter().copied().take(31).collect(), reason: Bytes::new() })
}

const MAX_DROPOUT: i64 = 3000;
const MAX_MISORDER: i64 = 100;

/// RFC 3550 receive-side statistics of one remote SSRC, producing report blocks.
#[derive(Clone, Debug)]
pub struct ReceptionStats {
    ssrc: u32,
    clock_rate: u32,
    unwrapper: SeqUnwrapper,
    base_seq: i64,
    max_seq: i64,
    /// Sequence number after a big jump that would confirm a source restart (A.1 bad_seq).
    bad_seq: Option<i64>,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    jitter: f64,
    epoch: Option<Instant>,
    last_transit: Option<f64>,
    last_ts: Option<u32>,
    last_sr: Option<(u32, Instant)>,
    started: bool,
}

impl ReceptionStats {
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1),
            unwrapper: SeqUnwrapper::new(),
            base_seq: 0,
            max_seq: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            epoch: None,
            last_transit: None,
            last_ts: None,
            last_sr: None,
            started: false,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    fn restart(&mut self, seq: u16) {
        self.unwrapper.reset();
        let ext = self.unwrapper.unwrap(seq);
        self.base_seq = ext;
        self.max_seq = ext;
        self.bad_seq = None;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.last_transit = None;
        self.last_ts = None;
        self.started = true;
    }

    /// Records one received RTP packet (duplicates included, as RFC 3550 counts them).
    pub fn on_packet(&mut self, seq: u16, rtp_ts: u32, arrival: Instant) {
        if !self.started {
            self.restart(seq);
        }
        let ext = self.unwrapper.peek(seq);
        let delta = ext - self.max_seq;
        let mut in_order = false;
        if delta > 0 && delta < MAX_DROPOUT {
            self.unwrapper.unwrap(seq);
            self.max_seq = ext;
            self.bad_seq = None;
            in_order = true;
        } else if !(-MAX_MISORDER..MAX_DROPOUT).contains(&delta) {
            // A.1: a very large jump; if the next packet follows it, the source restarted.
            if self.bad_seq == Some(ext) {
                self.restart(seq);
                in_order = true;
            } else {
                self.bad_seq = Some(ext + 1);
                return;
            }
        }
        self.received += 1;
        if in_order {
            self.update_jitter(rtp_ts, arrival);
        }
    }

    /// A.8, for in-order packets of a new timestamp (packets of one video frame share a
    /// timestamp but not an arrival time; libwebrtc skips them too).
    fn update_jitter(&mut self, rtp_ts: u32, arrival: Instant) {
        if self.last_ts == Some(rtp_ts) {
            return;
        }
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_units = arrival.saturating_duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate);
        // Transit modulo 2^32 of the timestamp: work on the wrapped difference.
        let transit = arrival_units - f64::from(rtp_ts);
        if let (Some(prev), Some(prev_ts)) = (self.last_transit, self.last_ts) {
            // Unwrap the timestamp difference so a 2^32 wrap is not a jump.
            let ts_delta = f64::from(rtp_ts.wrapping_sub(prev_ts) as i32);
            let arrival_prev = prev + f64::from(prev_ts);
            let d = (arrival_units - arrival_prev) - ts_delta;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.last_ts = Some(rtp_ts);
    }

    /// Records an SR from this source, for LSR/DLSR.
    pub fn on_sender_report(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some((timing::ntp_compact(ntp), now));
    }

    pub fn packets_received(&self) -> u64 {
        self.received
    }

    pub fn extended_highest_seq(&self) -> u32 {
        self.max_seq as u32
    }

    /// Cumulative lost = expected - received (may be negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        if !self.started {
            return 0;
        }
        (self.max_seq - self.base_seq + 1) - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// Interarrival jitter in seconds (W3C `jitter`).
    pub fn jitter_seconds(&self) -> f64 {
        self.jitter / f64::from(self.clock_rate)
    }

    /// Builds a report block and starts a new reporting interval (fraction lost is per
    /// interval). `None` before the first packet.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let expected = self.max_seq - self.base_seq + 1;
        let lost = expected - self.received as i64;
        let expected_interval = expected - self.expected_prior;
        self.expected_prior = expected;
        let received_interval = self.received as i64 - self.received_prior as i64;
        self.received_prior = self.received;
        let lost_interval = expected_interval - received_interval;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, timing::duration_to_compact(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            extended_highest_seq: self.max_seq as u32,
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux() {
        assert!(is_rtcp(&build_pli(1, 2)));
        assert!(is_rtcp(&[0x81, 200, 0, 6]));
        assert!(!is_rtcp(&[0x80, 96, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0xe0, 0, 1])); // RTP PT 96 with marker = 224
        assert!(!is_rtcp(&[0x80, 200]));
        assert!(!is_rtcp(&[0x00, 200, 0, 1]));
    }

    #[test]
    fn nacks_are_taken_out_of_a_compound_packet() {
        let rr = build_rr(7, &[]);
        let mut c = rr.clone();
        c.extend(build_nack(7, 9, &[100, 101, 300]));
        c.extend(build_pli(7, 9));
        let (nacks, rest) = take_nacks_and_rembs(&c).unwrap();
        assert_eq!(nacks, vec![(7, 9, vec![100, 101, 300])]);
        let mut want = rr.clone();
        want.extend(build_pli(7, 9));
        assert_eq!(rest, want);
        assert!(take_nacks_and_rembs(&rr).is_none());
        // a truncated tail is dropped, the NACK before it still taken
        let mut t = build_nack(7, 9, &[5]);
        t.extend_from_slice(&[0x80, 201, 0, 9]);
        assert_eq!(take_nacks_and_rembs(&t).unwrap(), (vec![(7, 9, vec![5])], vec![]));
    }

    #[test]
    fn remb_round_trip() {
        for bps in [300_000u64, 2_500_000, 5_000_000, 15_000_000] {
            let p = build_remb(1, bps, &[0x1234_5678]);
            assert!(is_rtcp(&p) && is_remb(&p));
            assert_eq!((p[0] & 0x1f, p[1]), (15, 206));
            assert_eq!(&p[8..12], &[0, 0, 0, 0]); // media source SSRC is 0 in a REMB
            match parse_compound(&p).as_slice() {
                [RtcpEvent::Remb { sender_ssrc: 1, bitrate, ssrcs }] => {
                    // 18-bit mantissa: at most 2^-17 relative rounding.
                    assert!(*bitrate <= bps && bps - *bitrate <= bps >> 17, "{bps} -> {bitrate}");
                    assert_eq!(ssrcs, &vec![0x1234_5678]);
                }
                e => panic!("{e:?}"),
            }
        }
    }

    #[test]
    fn rembs_from_receivers_are_dropped() {
        let rr = build_rr(7, &[]);
        let mut c = rr.clone();
        c.extend(build_remb(7, 1_000_000, &[9]));
        assert_eq!(take_nacks_and_rembs(&c), Some((vec![], rr.clone())));
        c.extend(build_nack(7, 9, &[4]));
        assert_eq!(take_nacks_and_rembs(&c), Some((vec![(7, 9, vec![4])], rr.clone())));
        // other PSFB packets are left alone
        assert!(take_nacks_and_rembs(&build_pli(7, 9)).is_none());
    }

    #[test]
    fn build_parse_round_trip_compound() {
        let rb = ReportBlock { ssrc: 9, fraction_lost: 25, cumulative_lost: -3, extended_highest_seq: 70_000, jitter: 44, lsr: 0x1234_5678, dlsr: 655 };
        let mut c = build_sr(1, 0x0102_0304_0506_0708, 90_000, 10, 1000, &[rb]);
        c.extend(build_sdes_cname(1, "cname"));
        c.extend(build_pli(1, 2));
        c.extend(build_fir(1, 3, 7));
        c.extend(build_nack(1, 2, &[65534, 65535, 0, 1, 40]));
        c.extend(build_remb(1, 2_500_000, &[2, 3]));
        c.extend(build_rr(5, &[rb]));
        c.extend(build_bye(&[1]));
        let (ev, bad) = parse_compound_counted(&c);
        assert_eq!(bad, 0);
        assert_eq!(ev[0], RtcpEvent::Sr { ssrc: 1, ntp: 0x0102_0304_0506_0708, rtp_ts: 90_000, packet_count: 10, octet_count: 1000, reports: vec![rb] });
        assert_eq!(ev[1], RtcpEvent::Other { packet_type: 202, fmt: 1 });
        assert_eq!(ev[2], RtcpEvent::Pli { sender_ssrc: 1, media_ssrc: 2 });
        assert_eq!(ev[3], RtcpEvent::Fir { sender_ssrc: 1, media_ssrc: 3, seq_nr: 7 });
        assert_eq!(ev[4], RtcpEvent::Nack { sender_ssrc: 1, media_ssrc: 2, seqs: vec![65534, 65535, 0, 1, 40] });
        match &ev[5] {
            RtcpEvent::Remb { sender_ssrc: 1, bitrate, ssrcs } => {
                assert!((*bitrate as i64 - 2_500_000).abs() < 2_500_000 / 100, "{bitrate}");
                assert_eq!(ssrcs, &vec![2, 3]);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(ev[6], RtcpEvent::Rr { ssrc: 5, reports: vec![rb] });
        assert_eq!(ev[7], RtcpEvent::Bye { ssrcs: vec![1] });
        // NACK across the wrap packs into one pair: PID 65534 + 3 bits, then 40.
        let pairs = nack_pairs(&[65534, 65535, 0, 1, 40]);
        assert_eq!(pairs.len(), 2);
        assert_eq!((pairs[0].packet_id, pairs[0].lost_packets), (65534, 0b111));
        // A corrupt part in the middle is skipped; the rest still parse.
        let mut c2 = build_pli(1, 2);
        c2.extend([0x81, 205, 0, 0]); // NACK with no FCI
        c2.extend(build_pli(4, 5));
        let (ev, bad) = parse_compound_counted(&c2);
        assert_eq!(bad, 1);
        assert_eq!(ev, vec![RtcpEvent::Pli { sender_ssrc: 1, media_ssrc: 2 }, RtcpEvent::Pli { sender_ssrc: 4, media_ssrc: 5 }]);
        // Truncated tail.
        let (ev, bad) = parse_compound_counted(&build_pli(1, 2)[..10]);
        assert!(ev.is_empty() && bad == 1);
    }

    #[test]
    fn rr_fraction_lost_cumulative_and_jitter() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(0xabc, 90_000);
        assert!(s.report_block(t0).is_none());
        // 100 packets, 3000 ticks (33.3 ms) apart, starting near the wrap; drop every 10th
        // (10 lost). Arrival jitter: odd packets arrive 1 ms late -> |D| = 90 ticks for every
        // transition, so J converges to 90.
        let mut received = 0;
        for i in 0..100u32 {
            let seq = 65500u16.wrapping_add(i as u16);
            let ts = 1_000u32.wrapping_add(i * 3000);
            if i % 10 == 5 {
                continue;
            }
            let late = if i % 2 == 1 { Duration::from_millis(1) } else { Duration::ZERO };
            let arrival = t0 + Duration::from_micros(u64::from(i) * 100_000 / 3) + late;
            s.on_packet(seq, ts, arrival);
            received += 1;
        }
        assert_eq!(received, 90);
        let rb = s.report_block(t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(rb.ssrc, 0xabc);
        assert_eq!(rb.cumulative_lost, 10);
        // 10/100 lost -> floor(256 * 10 / 100) = 25.
        assert_eq!(rb.fraction_lost, 25);
        // Highest seq 65500+99 = 65599 -> one cycle: 65536 + 63.
        assert_eq!(rb.extended_highest_seq, 65536 + 63);
        // RFC 3550 A.8 by hand: D between consecutive received packets is the difference of
        // their lateness (0 across a gap, whose ends are both on time), J += (|D| - J) / 16.
        let mut expect = 0.0f64;
        let mut prev_late: Option<f64> = None;
        for i in (0..100u32).filter(|i| i % 10 != 5) {
            let late = if i % 2 == 1 { 90.0 } else { 0.0 };
            if let Some(p) = prev_late {
                expect += ((late - p).abs() - expect) / 16.0;
            }
            prev_late = Some(late);
        }
        assert!(expect > 75.0 && expect < 90.0);
        assert!((f64::from(rb.jitter) - expect).abs() <= 1.0, "jitter {} vs {expect}", rb.jitter);
        assert!((s.jitter_seconds() - f64::from(rb.jitter) / 90_000.0).abs() < 1e-4);
        assert_eq!((rb.lsr, rb.dlsr), (0, 0));

        // Second interval: 50 more, none lost, one duplicate -> fraction 0, cumulative 9.
        for i in 100..150u32 {
            s.on_packet(65500u16.wrapping_add(i as u16), 1000 + i * 3000, t0 + Duration::from_secs(5));
        }
        s.on_packet(65500u16.wrapping_add(149), 0, t0 + Duration::from_secs(5));
        // SR arrives; report 0.5 s later carries LSR and DLSR = 0.5 * 65536.
        let sr_ntp: u64 = (0x1111_2222u64 << 32) | 0x3333_4444;
        s.on_sender_report(sr_ntp, t0 + Duration::from_secs(5));
        let rb = s.report_block(t0 + Duration::from_millis(5500)).unwrap();
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 9);
        assert_eq!(rb.lsr, 0x2222_3333);
        assert_eq!(rb.dlsr, 32768);
        // RTT from the SR sender's view: now = LSR + DLSR + 0.1 s.
        let now_ntp = sr_ntp + (1u64 << 31) + (1u64 << 32) / 10;
        let rtt = rb.rtt(now_ntp).unwrap();
        assert!((rtt.as_secs_f64() - 0.1).abs() < 0.001, "{rtt:?}");
    }

    #[test]
    fn jitter_exact_constant_offset_pattern() {
        // Alternate 0 / 2 ms lateness at 48 kHz: every |D| = 96 ticks, J -> 96 (1-(15/16)^n).
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(1, 48_000);
        let mut expect = 0.0f64;
        for i in 0..200u32 {
            let late = if i % 2 == 1 { Duration::from_millis(2) } else { Duration::ZERO };
            s.on_packet(i as u16, i * 960, t0 + Duration::from_millis(u64::from(i) * 20) + late);
            if i > 0 {
                expect += (96.0 - expect) / 16.0;
            }
        }
        assert!((s.jitter - expect).abs() < 0.01, "{} vs {}", s.jitter, expect);
        assert_eq!(s.jitter(), 95);
    }

    #[test]
    fn source_restart_and_wild_packets() {
        let t0 = Instant::now();
        let mut s = ReceptionStats::new(1, 90_000);
        for i in 0..10u16 {
            s.on_packet(i, 0, t0);
        }
        // One wild packet far away is ignored...
        s.on_packet(30_000, 0, t0);
        assert_eq!(s.packets_received(), 10);
        assert_eq!(s.extended_highest_seq(), 9);
        // ... two in sequence mean the source restarted.
        s.on_packet(40_000, 0, t0);
        s.on_packet(40_001, 0, t0);
        assert_eq!(s.extended_highest_seq(), 40_001);
        assert_eq!(s.cumulative_lost(), 0);
    }
}
