//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
//! extensions-01): the receiving side records when each transport-wide sequence number
//! arrived and reports them in RTCP (RTPFB, FMT 15) about every 50 ms; the sender's
//! bandwidth estimator reads those reports back ([`parse_feedback`]).
use rtc_rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, RunLengthChunk, StatusChunkTypeTcc, SymbolTypeTcc, TransportLayerCc,
};
use rtc_shared::marshal::{Marshal, Unmarshal};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The header extension's URI, as SDP names it.
pub const URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// How often a receiver reports (libwebrtc: 50-250 ms by bitrate).
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// Most packets one report covers; more arrivals than this since the last report (or a
/// jump this far ahead) start a new base, so a peer's odd numbers cannot make huge reports.
const MAX_SPAN: i64 = 2000;
/// Delta and reference time units (µs).
const DELTA_UNIT_US: i64 = 250;
const REFERENCE_UNIT_US: i64 = 64_000;

/// The receiving side: arrivals of one transport (all its RTP streams) since the last report.
pub struct FeedbackRecorder {
    epoch: Instant,
    /// unwrapped sequence number → arrival (µs since `epoch`)
    arrivals: BTreeMap<i64, i64>,
    /// the first sequence number the next report covers
    next_base: Option<i64>,
    last_seq: Option<i64>,
    last_report: Option<Instant>,
    fb_count: u8,
}

impl Default for FeedbackRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedbackRecorder {
    pub fn new() -> Self {
        FeedbackRecorder { epoch: Instant::now(), arrivals: BTreeMap::new(), next_base: None, last_seq: None, last_report: None, fb_count: 0 }
    }

    /// Records the arrival of transport sequence number `seq` at `now`.
    pub fn on_packet(&mut self, seq: u16, now: Instant) {
        let unwrapped = match self.last_seq {
            None => seq as i64,
            Some(last) => last + (seq.wrapping_sub(last as u16) as i16) as i64,
        };
        if let Some(base) = self.next_base {
            if unwrapped < base {
                return; // already reported (as lost): too late
            }
            if unwrapped - base > MAX_SPAN {
                // a jump: report what we have as usual, the rest starts afresh
                self.arrivals.retain(|s, _| unwrapped - *s <= MAX_SPAN);
                self.next_base = self.arrivals.keys().next().copied().or(Some(unwrapped));
            }
        } else {
            self.next_base = Some(unwrapped);
        }
        self.last_seq = Some(self.last_seq.map_or(unwrapped, |l| l.max(unwrapped)));
        let at = now.saturating_duration_since(self.epoch).as_micros() as i64;
        self.arrivals.insert(unwrapped, at);
    }

    /// A report (one RTCP packet) when one is due at `now` and there is something to report.
    pub fn poll(&mut self, now: Instant, sender_ssrc: u32, media_ssrc: u32) -> Option<Vec<u8>> {
        if self.last_report.is_some_and(|t| now.saturating_duration_since(t) < FEEDBACK_INTERVAL) {
            return None;
        }
        let report = self.report(sender_ssrc, media_ssrc)?;
        self.last_report = Some(now);
        Some(report)
    }

    /// Reports every arrival since the last report, and forgets them.
    pub fn report(&mut self, sender_ssrc: u32, media_ssrc: u32) -> Option<Vec<u8>> {
        let base = self.next_base?;
        let last = *self.arrivals.keys().next_back()?;
        let first_arrival = *self.arrivals.values().next()?;
        let reference = first_arrival.div_euclid(REFERENCE_UNIT_US);
        let mut prev = reference * REFERENCE_UNIT_US;
        let mut symbols = Vec::with_capacity((last - base + 1) as usize);
        let mut deltas = Vec::new();
        for seq in base..=last {
            match self.arrivals.get(&seq) {
                None => symbols.push(SymbolTypeTcc::PacketNotReceived),
                Some(&at) => {
                    let delta = (at - prev).div_euclid(DELTA_UNIT_US);
                    let symbol = if (0..=255).contains(&delta) {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else if (i16::MIN as i64..=i16::MAX as i64).contains(&delta) {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    } else {
                        symbols.push(SymbolTypeTcc::PacketNotReceived); // too far apart to say
                        continue;
                    };
                    symbols.push(symbol);
                    deltas.push(RecvDelta { type_tcc_packet: symbol, delta: delta * DELTA_UNIT_US });
                    prev += delta * DELTA_UNIT_US; // in the units the report carries: no drift
                }
            }
        }
        let fb = TransportLayerCc {
            sender_ssrc,
            media_ssrc,
            base_sequence_number: base as u16,
            packet_status_count: symbols.len() as u16,
            reference_time: (reference as u32) & 0x00FF_FFFF,
            fb_pkt_count: self.fb_count,
            packet_chunks: run_length_chunks(&symbols),
            recv_deltas: deltas,
        };
        self.fb_count = self.fb_count.wrapping_add(1);
        self.arrivals.clear();
        self.next_base = Some(last + 1);
        fb.marshal().ok().map(|b| b.to_vec())
    }
}

fn run_length_chunks(symbols: &[SymbolTypeTcc]) -> Vec<PacketStatusChunk> {
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < symbols.len() {
        let s = symbols[i];
        let run = symbols[i..].iter().take(0x1FFF).take_while(|&&x| x == s).count();
        chunks.push(PacketStatusChunk::RunLengthChunk(RunLengthChunk {
            type_tcc: StatusChunkTypeTcc::RunLengthChunk,
            packet_status_symbol: s,
            run_length: run as u16,
        }));
        i += run;
    }
    chunks
}

/// One transport-cc report as the sender reads it: its count (to skip copies), and each
/// sequence number it covers with its arrival time in µs on the receiver's clock (None:
/// not received).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub fb_count: u8,
    pub packets: Vec<(u16, Option<i64>)>,
}

/// The transport-cc reports in a compound RTCP packet (malformed ones are skipped).
pub fn parse_feedback(rtcp: &[u8]) -> Vec<Feedback> {
    let mut out = Vec::new();
    let mut rest = rtcp;
    while rest.len() >= 4 {
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        if len > rest.len() || rest[0] >> 6 != 2 {
            break;
        }
        let (sub, tail) = rest.split_at(len);
        rest = tail;
        if sub[1] != 205 || sub[0] & 0x1f != 15 {
            continue;
        }
        let mut buf = sub;
        let Ok(fb) = TransportLayerCc::unmarshal(&mut buf) else { continue };
        let mut at = fb.reference_time as i64 * REFERENCE_UNIT_US;
        let mut deltas = fb.recv_deltas.iter();
        let mut packets = Vec::with_capacity(fb.packet_status_count as usize);
        let mut seq = fb.base_sequence_number;
        'chunks: for chunk in &fb.packet_chunks {
            let symbols: Vec<SymbolTypeTcc> = match chunk {
                PacketStatusChunk::RunLengthChunk(r) => vec![r.packet_status_symbol; r.run_length as usize],
                PacketStatusChunk::StatusVectorChunk(v) => v.symbol_list.clone(),
            };
            for s in symbols {
                if packets.len() >= fb.packet_status_count as usize {
                    break 'chunks;
                }
                let arrival = match s {
                    SymbolTypeTcc::PacketReceivedSmallDelta | SymbolTypeTcc::PacketReceivedLargeDelta => {
                        deltas.next().map(|d| {
                            at += d.delta;
                            at
                        })
                    }
                    _ => None,
                };
                packets.push((seq, arrival));
                seq = seq.wrapping_add(1);
            }
        }
        out.push(Feedback { fb_count: fb.fb_pkt_count, packets });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_arrivals_and_losses() {
        let t0 = Instant::now();
        let mut r = FeedbackRecorder::new();
        r.epoch = t0;
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // 65534, 65535, (0 lost), 1 late by 100 ms, 2 out of order before 1
        r.on_packet(65534, ms(1000));
        r.on_packet(65535, ms(1005));
        r.on_packet(2, ms(1010));
        r.on_packet(1, ms(1110));
        let fb = parse_feedback(&r.report(1, 2).unwrap());
        assert_eq!(fb.len(), 1);
        let p = &fb[0].packets;
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), [65534, 65535, 0, 1, 2]);
        assert_eq!(p[2].1, None);
        let at = |i: usize| p[i].1.unwrap();
        assert_eq!(at(1) - at(0), 5000);
        assert_eq!(at(3) - at(0), 110_000); // a large delta
        assert_eq!(at(4) - at(3), -100_000); // negative: it came first
        // the next report starts after the last one, with the next count
        r.on_packet(3, ms(1120));
        let fb2 = parse_feedback(&r.report(1, 2).unwrap());
        assert_eq!((fb2[0].fb_count, fb2[0].packets[0].0, fb2[0].packets.len()), (1, 3, 1));
        assert!(r.report(1, 2).is_none()); // nothing new
        r.on_packet(1, ms(1130)); // reported (as lost) already: dropped
        assert!(r.report(1, 2).is_none());
    }

    #[test]
    fn reports_are_paced_and_bounded() {
        let t0 = Instant::now();
        let mut r = FeedbackRecorder::new();
        r.on_packet(10, t0);
        assert!(r.poll(t0, 1, 2).is_some());
        r.on_packet(11, t0);
        assert!(r.poll(t0 + Duration::from_millis(10), 1, 2).is_none());
        assert!(r.poll(t0 + FEEDBACK_INTERVAL, 1, 2).is_some());
        // a jump of 30000: the report covers at most MAX_SPAN numbers
        r.on_packet(12, t0);
        r.on_packet(30012, t0);
        let fb = parse_feedback(&r.report(1, 2).unwrap());
        assert!(fb[0].packets.len() as i64 <= MAX_SPAN + 1, "{}", fb[0].packets.len());
        assert_eq!(fb[0].packets.last().unwrap().0, 30012);
        // garbage is skipped, not trusted
        assert!(parse_feedback(&[0x8f, 205, 0, 1, 0, 0, 0, 1]).is_empty());
        assert!(parse_feedback(&[0x8f, 205, 0xff, 0xff]).is_empty());
    }
}
