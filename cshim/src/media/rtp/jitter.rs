//! Per-SSRC receive pipeline: [`RtpReceiver`] takes raw RTP packets in any order and releases
//! complete frames in order.
//!
//! * Packets are keyed by unwrapped sequence number; duplicates and packets behind the
//!   release cursor are dropped (counted), garbage is counted and ignored.
//! * Video (VP8/VP9/H.264/AV1): a frame is a contiguous sequence range that starts with a frame-begin
//!   packet (VP8 `S=1, PID=0`; VP9 `B=1` in the base layer; H.264 the start of an AUD,
//!   SPS, PPS, SEI or a picture's first slice; AV1 no `Z` and a sequence header, frame
//!   (header) or metadata OBU first; or any packet right after a
//!   marker packet) and ends with the RTP marker (or a timestamp change). Opus: every packet
//!   is a frame.
//! * Loss: when the frame at the cursor stays incomplete past the wait limit (video
//!   `max(2×RTT, 100 ms)`, audio 60 ms, measured from when the data behind the gap arrived
//!   or the cursor got there), it is skipped. Video then sets [`RtpReceiver::keyframe_needed`]
//!   and drops every delta frame until a keyframe is complete (a decoder must never see a
//!   frame whose references were lost); a complete keyframe further on is jumped to at
//!   once. Audio frames carry `lost_before` so the decoder can conceal the gap.
//! * Built in: RFC 3550 reception statistics (RR blocks) and NACK generation for video.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::depacketize::{parse_rtp, payload_info};
use super::nack::NackGenerator;
use super::rtcp::{ReceptionStats, ReportBlock};
use super::seq::SeqUnwrapper;
use super::stats::InboundRtpStats;
use super::timing::RemoteClock;
use super::RtpCodec;

/// A forward jump of more packets than this resets the buffer (stream restart).
const MAX_JUMP: i64 = 3000;
/// How far back a packet may arrive before the first frame was released and still be taken.
const START_REORDER: i64 = 100;
/// How long a stream that starts mid-frame waits for the frame's first packets to arrive
/// late before it gives the frame up (joining mid-stream is the usual cause).
const START_WAIT: Duration = Duration::from_millis(30);
const MAX_BUFFERED_VIDEO: usize = 4000;
const MAX_BUFFERED_AUDIO: usize = 500;

/// One complete frame, in decode order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledFrame {
    /// The codec bitstream (payload descriptors removed, fragments concatenated).
    pub data: Vec<u8>,
    pub rtp_timestamp: u32,
    /// Video: a keyframe. Audio: always true (every Opus packet decodes on its own).
    pub keyframe: bool,
    /// First and last RTP sequence number (inclusive).
    pub seq_range: (u16, u16),
    /// Sequence numbers skipped right before this frame (lost, or parts of dropped frames).
    /// For audio this is the number of packets to conceal.
    pub lost_before: u32,
    pub picture_id: Option<u16>,
    /// Arrival of the frame's first packet (for jitter buffer delay).
    pub first_arrival: Instant,
}

/// Receiver-side counters not covered by the W3C stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverCounters {
    pub packets: u64,
    pub malformed: u64,
    pub wrong_ssrc: u64,
    pub duplicates: u64,
    /// Arrived behind the release cursor (too late, or duplicates of released packets).
    pub late: u64,
    pub padding: u64,
    /// Present packets thrown away with a skipped or undecodable frame.
    pub discarded: u64,
    /// Sequence numbers skipped without ever arriving.
    pub lost: u64,
    pub frames_released: u64,
    pub keyframes_released: u64,
    /// Frames skipped because they were incomplete at the deadline.
    pub frames_incomplete: u64,
    /// Complete delta frames dropped while waiting for a keyframe.
    pub frames_undecodable: u64,
    pub resets: u64,
}

#[derive(Clone, Debug)]
struct Pkt {
    ts: u32,
    marker: bool,
    begin: bool,
    keyframe: bool,
    padding: bool,
    picture_id: Option<u16>,
    /// H.264/H.265: carries a sequence parameter set.
    parameter_sets: bool,
    data: Bytes,
    arrival: Instant,
}

enum AtCursor {
    Missing,
    Padding,
    /// A frame `cursor..=end` is complete.
    Complete(i64),
    /// The frame at the cursor is started but not complete (or the start is unknown).
    Incomplete { known_delta: bool },
    /// The cursor packet is not a frame start and cannot become one.
    NotBegin,
}

pub struct RtpReceiver {
    codec: RtpCodec,
    clock_rate: u32,
    ssrc: Option<u32>,
    unwrapper: SeqUnwrapper,
    buffer: BTreeMap<i64, Pkt>,
    cursor: Option<i64>,
    cursor_since: Option<Instant>,
    /// The packet before the cursor was the end of a frame.
    after_frame_end: bool,
    /// A frame was released or skipped: the cursor no longer moves back.
    committed: bool,
    keyframe_needed: bool,
    have_reference: bool,
    /// H.264/H.265: a sequence parameter set was released (keyframes without one decode).
    parameter_sets_seen: bool,
    /// The stream started on a keyframe without parameter sets and the packet before it
    /// was asked for (see `headless_keyframe`).
    head_requested: bool,
    rtt: Duration,
    wait_override: Option<Duration>,
    lost_pending: u32,
    reception: Option<ReceptionStats>,
    remote_clock: RemoteClock,
    nack: Option<NackGenerator>,
    counters: ReceiverCounters,
    stats: InboundRtpStats,
}

impl RtpReceiver {
    pub fn new(codec: RtpCodec, clock_rate: u32) -> Self {
        Self {
            codec,
            clock_rate: clock_rate.max(1),
            ssrc: None,
            unwrapper: SeqUnwrapper::new(),
            buffer: BTreeMap::new(),
            cursor: None,
            cursor_since: None,
            after_frame_end: false,
            committed: false,
            keyframe_needed: false,
            have_reference: false,
            parameter_sets_seen: false,
            head_requested: false,
            rtt: Duration::from_millis(100),
            wait_override: None,
            lost_pending: 0,
            reception: None,
            remote_clock: RemoteClock::new(clock_rate),
            nack: codec.is_video().then(NackGenerator::new),
            counters: ReceiverCounters::default(),
            stats: InboundRtpStats::default(),
        }
    }

    pub fn codec(&self) -> RtpCodec {
        self.codec
    }
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }
    /// Only accept this SSRC (otherwise the first packet's SSRC is adopted).
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.ssrc = Some(ssrc);
    }

    /// RTT estimate: sets the video wait limit (`max(2×RTT, 100 ms)`) and NACK spacing.
    /// With NACK on, the generator's own measurements refine it afterwards.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        if let Some(n) = self.nack.as_mut() {
            n.set_rtt(rtt);
        }
    }

    /// Overrides the computed wait limit for incomplete frames.
    pub fn set_wait_limit(&mut self, limit: Option<Duration>) {
        self.wait_override = limit;
    }

    pub fn wait_limit(&self) -> Duration {
        let rtt = self.nack.as_ref().map_or(self.rtt, NackGenerator::rtt);
        self.wait_override.unwrap_or(if self.codec.is_video() {
            (rtt * 2).max(Duration::from_millis(100))
        } else {
            Duration::from_millis(60)
        })
    }

    /// Enables or disables NACK generation (on for video by default).
    pub fn set_nack_enabled(&mut self, on: bool) {
        match (on, self.nack.is_some()) {
            (true, false) => {
                let mut n = NackGenerator::new();
                n.set_rtt(self.rtt);
                self.nack = Some(n);
            }
            (false, true) => self.nack = None,
            _ => {}
        }
    }

    pub fn nack_generator(&mut self) -> Option<&mut NackGenerator> {
        self.nack.as_mut()
    }

    /// Video: the decoder needs a keyframe (a frame was lost or undecodable); send PLI/FIR.
    /// Cleared when a keyframe is released.
    pub fn keyframe_needed(&self) -> bool {
        self.keyframe_needed
    }

    pub fn counters(&self) -> &ReceiverCounters {
        &self.counters
    }

    /// W3C-style inbound stats (RTP-level fields filled in; codec fields are the caller's).
    pub fn stats(&self) -> InboundRtpStats {
        let mut s = self.stats.clone();
        s.ssrc = self.ssrc.unwrap_or(0);
        if let Some(r) = &self.reception {
            s.packets_lost = r.cumulative_lost();
            s.jitter = r.jitter_seconds();
        }
        s.packets_discarded = self.counters.discarded + self.counters.late;
        s.packets_duplicated = self.counters.duplicates;
        s.packets_malformed = self.counters.malformed;
        s.frames_received = self.counters.frames_released;
        s.key_frames_received = self.counters.keyframes_released;
        s.frames_dropped = self.counters.frames_incomplete + self.counters.frames_undecodable;
        if let Some(n) = &self.nack {
            s.nack_count = n.nack_packets();
        }
        s
    }

    /// Mutable stats for the pipeline's own fields (pli_count, ...).
    pub fn stats_mut(&mut self) -> &mut InboundRtpStats {
        &mut self.stats
    }

    /// Report block for our next SR/RR; `None` before the first packet.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        self.reception.as_mut()?.report_block(now)
    }

    /// Feed an SR from this stream's sender (LSR/DLSR, RTP → NTP mapping).
    pub fn on_sender_report(&mut self, ntp: u64, rtp_ts: u32, now: Instant) {
        if let Some(r) = self.reception.as_mut() {
            r.on_sender_report(ntp, now);
        }
        self.remote_clock.on_sender_report(ntp, rtp_ts);
    }

    /// The sender's NTP capture time of a frame (after an SR), for A/V sync.
    pub fn ntp_for_rtp(&self, rtp_ts: u32) -> Option<u64> {
        self.remote_clock.ntp_for_rtp(rtp_ts)
    }

    /// NACK for the packets missing now, if any (`media_ssrc` is this stream's SSRC).
    pub fn nack_packet(&mut self, now: Instant, sender_ssrc: u32) -> Option<Vec<u8>> {
        let ssrc = self.ssrc?;
        self.nack.as_mut()?.nack_packet(now, sender_ssrc, ssrc)
    }

    /// Earliest instant at which `pop_frames` or `nack_packet` may have something new.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut d = self.deadline();
        if !self.committed && !self.head_requested {
            // The start-of-stream waits are shorter (a spurious early wakeup is harmless).
            d = d.map(|d| d.min(self.cursor_since.unwrap_or(d) + START_WAIT));
        }
        let n = self.nack.as_ref().and_then(|n| n.next_due());
        match (d, n) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the frame at the head of the buffer is given up. Measured from the newest packet
    /// of that frame (same timestamp): a large keyframe paced over more than the wait limit
    /// is still arriving and must not expire, while a frame whose packets stopped does.
    fn deadline(&self) -> Option<Instant> {
        let (_, head) = self.buffer.iter().next()?;
        let newest = self
            .buffer
            .values()
            .filter(|p| p.ts == head.ts)
            .map(|p| p.arrival)
            .max()
            .unwrap_or(head.arrival);
        let since = self.cursor_since.map_or(newest, |c| c.max(newest));
        Some(since + self.wait_limit())
    }

    /// Takes one RTP packet. Returns false if it was ignored (garbage, other SSRC, late,
    /// duplicate).
    pub fn push(&mut self, packet: &[u8], now: Instant) -> bool {
        let Some(rtp) = parse_rtp(packet) else {
            self.counters.malformed += 1;
            return false;
        };
        match self.ssrc {
            None => self.ssrc = Some(rtp.ssrc()),
            Some(s) if s != rtp.ssrc() => {
                self.counters.wrong_ssrc += 1;
                return false;
            }
            _ => {}
        }
        self.counters.packets += 1;
        let seq = rtp.sequence_number();
        let ts = rtp.timestamp();
        self.reception
            .get_or_insert_with(|| ReceptionStats::new(rtp.ssrc(), self.clock_rate))
            .on_packet(seq, ts, now);
        self.stats.packets_received += 1;
        self.stats.bytes_received += rtp.payload.len() as u64;
        self.stats.header_bytes_received += rtp.overhead as u64;
        self.stats.last_packet_received_timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64());
        if let Some(n) = self.nack.as_mut() {
            n.on_packet(seq, now);
        }

        let pkt = if rtp.payload.is_empty() {
            self.counters.padding += 1;
            Pkt {
                ts,
                marker: false,
                begin: false,
                keyframe: false,
                padding: true,
                picture_id: None,
                parameter_sets: false,
                data: Bytes::new(),
                arrival: now,
            }
        } else {
            let Some(info) = payload_info(self.codec, &rtp.payload) else {
                self.counters.malformed += 1;
                return false;
            };
            // H.264/H.265 payloads become Annex B here, so a frame is its packets' concatenation.
            let data = if self.codec.is_annexb() {
                let mut annexb = Vec::with_capacity(rtp.payload.len() + 8);
                let converted = match self.codec {
                    RtpCodec::H264 => super::h264::to_annexb(&rtp.payload, &mut annexb),
                    _ => super::h265::to_annexb(&rtp.payload, &mut annexb),
                };
                if converted.is_none() {
                    self.counters.malformed += 1;
                    return false;
                }
                Bytes::from(annexb)
            } else {
                rtp.payload.slice(info.header_len..)
            };
            Pkt {
                ts,
                marker: rtp.marker(),
                begin: info.frame_begin,
                keyframe: info.keyframe,
                padding: false,
                picture_id: info.picture_id,
                parameter_sets: info.parameter_sets,
                data,
                arrival: now,
            }
        };

        let mut ext = self.unwrapper.unwrap(seq);
        let cursor = *self.cursor.get_or_insert(ext);
        if self.cursor_since.is_none() {
            self.cursor_since = Some(now);
        }
        if (ext - cursor).abs() > MAX_JUMP {
            // A huge jump either way: the sender restarted its sequence numbers.
            ext = self.reset(seq, now);
        } else if ext < cursor {
            if !self.committed && cursor - ext <= START_REORDER && !self.buffer.contains_key(&ext) {
                // Reordering at the very start: move the start back.
                self.cursor = Some(ext);
            } else {
                self.counters.late += 1;
                return false;
            }
        }
        if self.buffer.contains_key(&ext) {
            self.counters.duplicates += 1;
            return false;
        }
        self.buffer.insert(ext, pkt);
        true
    }

    /// A huge sequence jump: the sender restarted. Drop everything and start over.
    fn reset(&mut self, seq: u16, now: Instant) -> i64 {
        self.unwrapper.reset();
        let ext = self.unwrapper.unwrap(seq);
        self.counters.resets += 1;
        self.counters.discarded += self.buffer.len() as u64;
        self.buffer.clear();
        self.cursor = Some(ext);
        self.cursor_since = Some(now);
        self.after_frame_end = false;
        if self.codec.is_video() && self.committed {
            self.keyframe_needed = true;
            self.have_reference = false;
        }
        if let Some(n) = self.nack.as_mut() {
            n.reset();
            n.on_packet(seq, now);
        }
        ext
    }

    fn classify(&self, cursor: i64) -> AtCursor {
        let Some(first) = self.buffer.get(&cursor) else {
            return AtCursor::Missing;
        };
        if first.padding {
            return AtCursor::Padding;
        }
        if !self.codec.is_video() {
            return AtCursor::Complete(cursor);
        }
        if !(first.begin || self.after_frame_end) {
            return AtCursor::NotBegin;
        }
        let mut s = cursor;
        loop {
            let Some(p) = self.buffer.get(&s) else {
                return AtCursor::Incomplete { known_delta: !first.keyframe };
            };
            if p.ts != first.ts || p.padding {
                // The sender did not set the marker; the timestamp change ends the frame.
                return AtCursor::Complete(s - 1);
            }
            if p.marker {
                return AtCursor::Complete(s);
            }
            s += 1;
        }
    }

    /// Whether the frame at `k` is known to start there. H.264/H.265 access units can have
    /// several packets that look like a start (parameter sets, then the first slice), so there
    /// the packet before must be here and belong to another frame: a missing one may be the
    /// same unit's parameter sets, and skipping to the slice would emit an IDR without them.
    fn known_start(&self, k: i64, p: &Pkt) -> bool {
        let prev = self.buffer.get(&(k - 1));
        if !self.codec.is_video() {
            return true;
        }
        if self.codec.is_annexb() {
            return (p.begin || prev.is_some_and(|b| b.marker)) && prev.is_some_and(|b| b.marker || b.ts != p.ts);
        }
        p.begin || prev.is_some_and(|b| b.marker)
    }

    /// Whether `first..=last` is an H.264/H.265 keyframe that cannot decode: no sequence
    /// parameter set in it, and none released before.
    fn headless_keyframe(&self, first: i64, last: i64) -> bool {
        if !self.codec.is_annexb() || self.parameter_sets_seen {
            return false;
        }
        let pkts = || self.buffer.range(first..=last).map(|(_, p)| p);
        pkts().any(|p| p.keyframe) && !pkts().any(|p| p.parameter_sets)
    }

    /// Next position after `cursor` where a frame starts, if known.
    fn next_start(&self, cursor: i64) -> Option<i64> {
        self.buffer
            .range(cursor + 1..)
            .find(|(&k, p)| !p.padding && self.known_start(k, p))
            .map(|(&k, _)| k)
    }

    /// Position of the first complete keyframe after `cursor`.
    fn later_complete_keyframe(&self, cursor: i64) -> Option<i64> {
        self.buffer
            .range(cursor + 1..)
            .filter(|(&k, p)| p.keyframe && p.begin && !p.padding && self.known_start(k, p))
            .map(|(&k, _)| k)
            .find(|&k| {
                let mut s = k;
                let ts = self.buffer[&k].ts;
                loop {
                    match self.buffer.get(&s) {
                        Some(p) if p.ts == ts && !p.padding => {
                            if p.marker {
                                return true;
                            }
                            s += 1;
                        }
                        _ => return false,
                    }
                }
            })
    }

    /// Drops `cursor..target` and moves the cursor there.
    fn skip_to(&mut self, target: i64, now: Instant) {
        let Some(cursor) = self.cursor else { return };
        let mut dropped_ts: Vec<u32> = Vec::new();
        let mut had_media = false;
        for s in cursor..target {
            match self.buffer.remove(&s) {
                Some(p) => {
                    self.counters.discarded += 1;
                    if !p.padding {
                        had_media = true;
                        if !dropped_ts.contains(&p.ts) {
                            dropped_ts.push(p.ts);
                        }
                    }
                }
                None => {
                    had_media = true;
                    self.counters.lost += 1;
                }
            }
            self.lost_pending = self.lost_pending.saturating_add(1);
        }
        if had_media {
            self.counters.frames_incomplete += dropped_ts.len().max(1) as u64;
            if self.codec.is_video() {
                self.keyframe_needed = true;
                self.have_reference = false;
            }
        }
        self.cursor = Some(target);
        self.cursor_since = Some(now);
        self.committed = true;
        self.after_frame_end = self.buffer.get(&(target - 1)).is_some_and(|p| p.marker);
        if let Some(n) = self.nack.as_mut() {
            n.drop_before(target as u16);
        }
    }

    /// Complete frames that are ready, in order. Skips frames whose wait limit passed.
    pub fn pop_frames(&mut self, now: Instant) -> Vec<AssembledFrame> {
        let mut out = Vec::new();
        let max_buffered = if self.codec.is_video() { MAX_BUFFERED_VIDEO } else { MAX_BUFFERED_AUDIO };
        let mut guard = 0usize;
        while let Some(cursor) = self.cursor {
            guard += 1;
            if self.buffer.is_empty() || guard > 100_000 {
                break;
            }
            match self.classify(cursor) {
                AtCursor::Padding => {
                    let end = self.after_frame_end;
                    self.buffer.remove(&cursor);
                    self.cursor = Some(cursor + 1);
                    self.cursor_since = Some(now);
                    self.after_frame_end = end;
                }
                AtCursor::Complete(end) => {
                    // At the very start a complete delta frame may just have overtaken the
                    // keyframe before it: give the start a moment before dropping it.
                    let early_delta = self.codec.is_video()
                        && !self.committed
                        && !self.have_reference
                        && self.buffer.get(&cursor).is_some_and(|p| !p.keyframe)
                        && now < self.cursor_since.unwrap_or(now) + START_WAIT;
                    if early_delta {
                        break;
                    }
                    if self.headless_keyframe(cursor, end) {
                        // At the very start the parameter sets may be in packets before the
                        // first one received, lost on the way: nobody knows to ask for them
                        // but us. Ask, and wait for them as for any retransmission.
                        if !self.committed {
                            if !self.head_requested {
                                self.head_requested = true;
                                if let Some(n) = self.nack.as_mut() {
                                    n.request_before_first((cursor - 1) as u16, now);
                                }
                            }
                            if self.deadline().is_some_and(|d| now < d) {
                                break;
                            }
                        }
                        // Undecodable (libwebrtc's SPS/PPS tracker drops it too): skip it
                        // and ask for a keyframe.
                        self.skip_to(end + 1, now);
                        continue;
                    }
                    self.release(cursor, end, now, &mut out)
                }
                state => {
                    let known_delta = matches!(state, AtCursor::Incomplete { known_delta: true });
                    let hopeless = matches!(state, AtCursor::NotBegin) && self.committed;
                    if self.codec.is_video() {
                        if let Some(k) = self.later_complete_keyframe(cursor) {
                            self.skip_to(k, now);
                            continue;
                        }
                    }
                    let useless = self.codec.is_video() && known_delta && !self.have_reference && self.committed;
                    let overflow = self.buffer.len() > max_buffered;
                    let mut deadline = self.deadline();
                    if matches!(state, AtCursor::NotBegin) {
                        deadline = deadline.map(|d| d.min(self.cursor_since.unwrap_or(now) + START_WAIT));
                    }
                    let expired = deadline.is_some_and(|d| now >= d);
                    if !(hopeless || useless || overflow || expired) {
                        break;
                    }
                    match self.next_start(cursor) {
                        Some(k) => self.skip_to(k, now),
                        None => {
                            // Nothing here can become a frame: drop it all.
                            let last = *self.buffer.keys().next_back().unwrap_or(&cursor);
                            self.skip_to(last + 1, now);
                        }
                    }
                }
            }
        }
        out
    }

    fn release(&mut self, first: i64, last: i64, now: Instant, out: &mut Vec<AssembledFrame>) {
        let pkts: Vec<Pkt> = (first..=last).filter_map(|s| self.buffer.remove(&s)).collect();
        self.cursor = Some(last + 1);
        self.cursor_since = Some(now);
        self.after_frame_end = true;
        self.committed = true;
        let Some(head) = pkts.first() else { return };
        // H.264/H.265 mark their parameter set and random access packets, which need not
        // lead the access unit.
        let keyframe = head.keyframe || (self.codec.is_annexb() && pkts.iter().any(|p| p.keyframe));
        self.parameter_sets_seen |= pkts.iter().any(|p| p.parameter_sets);
        if self.codec.is_video() {
            if keyframe {
                self.keyframe_needed = false;
                self.have_reference = true;
            } else if !self.have_reference {
                // References lost (or never had a keyframe): the decoder must not see it.
                self.counters.frames_undecodable += 1;
                self.counters.discarded += pkts.len() as u64;
                self.keyframe_needed = true;
                self.lost_pending = self.lost_pending.saturating_add(pkts.len() as u32);
                return;
            }
        }
        let data = if self.codec == RtpCodec::Av1 {
            // The temporal unit is rebuilt from its OBU elements; a broken one never reaches
            // the decoder.
            match super::av1::depacketize(pkts.iter().map(|p| &p.data[..])) {
                Some(tu) => tu,
                None => {
                    self.counters.malformed += 1;
                    self.counters.discarded += pkts.len() as u64;
                    self.keyframe_needed = true;
                    self.have_reference = false;
                    return;
                }
            }
        } else {
            let mut data = Vec::with_capacity(pkts.iter().map(|p| p.data.len()).sum());
            for p in &pkts {
                data.extend_from_slice(&p.data);
            }
            data
        };
        self.counters.frames_released += 1;
        if keyframe && self.codec.is_video() {
            self.counters.keyframes_released += 1;
        }
        self.stats.jitter_buffer_delay += now.saturating_duration_since(head.arrival).as_secs_f64();
        self.stats.jitter_buffer_emitted_count += 1;
        out.push(AssembledFrame {
            data,
            rtp_timestamp: head.ts,
            keyframe,
            seq_range: (first as u16, last as u16),
            lost_before: std::mem::take(&mut self.lost_pending),
            picture_id: head.picture_id,
            first_arrival: head.arrival,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::packetize::tests::{vp9_delta, vp9_keyframe};
    use crate::media::rtp::packetize::RtpPacketizer;
    use crate::media::rtp::rtcp::{parse_compound, RtcpEvent};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A VP8 frame of `len` bytes; the frame tag marks key/delta.
    fn vp8_frame(key: bool, len: usize, seed: u8) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect();
        v[0] = if key { 0x10 } else { 0x11 };
        v
    }

    struct Stream {
        p: RtpPacketizer,
        frames: Vec<Vec<u8>>,
        /// Packets of each frame.
        packets: Vec<Vec<Vec<u8>>>,
    }

    /// Frame i is a keyframe if `keys` contains i; each frame ~3.5 packets at MTU 1200.
    fn vp8_stream(n: usize, keys: &[usize], first_seq: u16) -> Stream {
        let mut p = RtpPacketizer::new(RtpCodec::Vp8, 0xfeed, 96, 90_000, 1200);
        p.set_next_sequence_number(first_seq);
        let mut s = Stream { p, frames: vec![], packets: vec![] };
        for i in 0..n {
            let f = vp8_frame(keys.contains(&i), 3000 + i * 37, i as u8);
            let pk = s.p.packetize(&f, 1000 + i as u32 * 3000);
            s.frames.push(f);
            s.packets.push(pk);
        }
        s
    }

    fn seq_of(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[2], p[3]])
    }

    #[test]
    fn in_order_frames_byte_exact_across_seq_wrap() {
        let s = vp8_stream(8, &[0], 65530);
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        let t0 = Instant::now();
        let mut out = vec![];
        for (i, pk) in s.packets.iter().enumerate() {
            for p in pk {
                assert!(r.push(p, t0 + ms(i as u64 * 33)));
            }
            out.extend(r.pop_frames(t0 + ms(i as u64 * 33)));
        }
        assert_eq!(out.len(), 8);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(f.data, s.frames[i], "frame {i}");
            assert_eq!(f.rtp_timestamp, 1000 + i as u32 * 3000);
            assert_eq!(f.keyframe, i == 0);
            assert_eq!(f.lost_before, 0);
            assert_eq!(f.seq_range, (seq_of(&s.packets[i][0]), seq_of(s.packets[i].last().unwrap())));
        }
        assert!(!r.keyframe_needed());
        assert_eq!(r.counters().frames_released, 8);
        let st = r.stats();
        assert_eq!(st.packets_lost, 0);
        assert_eq!(st.frames_received, 8);
        assert_eq!(st.key_frames_received, 1);
    }

    #[test]
    fn reordered_and_duplicated_packets_come_out_in_order() {
        let s = vp8_stream(10, &[0], 100);
        let mut all: Vec<Vec<u8>> = s.packets.iter().flatten().cloned().collect();
        // Deterministic shuffle within windows of 7 packets, plus duplicates.
        let mut rng = 0x1234_5678u32;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        for chunk in all.chunks_mut(7) {
            for i in (1..chunk.len()).rev() {
                let j = (next() as usize) % (i + 1);
                chunk.swap(i, j);
            }
        }
        let dups: Vec<Vec<u8>> = all.iter().step_by(3).cloned().collect();
        let mut feed = vec![];
        for (i, p) in all.into_iter().enumerate() {
            feed.push(p);
            if i % 4 == 0 {
                feed.push(dups[(i / 4) % dups.len()].clone());
            }
        }
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        let t0 = Instant::now();
        let mut out = vec![];
        for (i, p) in feed.iter().enumerate() {
            r.push(p, t0 + ms(i as u64));
            out.extend(r.pop_frames(t0 + ms(i as u64)));
        }
        out.extend(r.pop_frames(t0 + ms(2000)));
        assert_eq!(out.len(), 10);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(f.data, s.frames[i], "frame {i}");
            assert_eq!(f.lost_before, 0);
        }
        let c = r.counters();
        assert!(c.duplicates + c.late > 0);
        assert_eq!(c.frames_incomplete + c.frames_undecodable, 0);
        assert!(!r.keyframe_needed());
    }

    #[test]
    fn lost_delta_packet_drops_frame_until_keyframe() {
        // Frames 0 (key) 1 2 3 4 5 (key) 6; packet 1 of frame 2 is lost for good.
        let s = vp8_stream(7, &[0, 5], 40_000);
        let lost = seq_of(&s.packets[2][1]);
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        r.set_rtt(ms(20)); // wait limit: max(40 ms, 100 ms)
        assert_eq!(r.wait_limit(), ms(100));
        let t0 = Instant::now();
        let mut out = vec![];
        let mut needed_seen = false;
        let mut nacked: Vec<u16> = vec![];
        for (i, pk) in s.packets.iter().enumerate() {
            let now = t0 + ms(i as u64 * 50);
            for p in pk.iter().filter(|p| seq_of(p) != lost) {
                r.push(p, now);
            }
            out.extend(r.pop_frames(now));
            if let Some(n) = r.nack_packet(now, 1) {
                nacked.extend(parse_compound(&n).into_iter().flat_map(|e| match e {
                    RtcpEvent::Nack { seqs, .. } => seqs,
                    _ => vec![],
                }));
            }
            needed_seen |= r.keyframe_needed();
            if i == 4 {
                // 100 ms after frame 2 arrived: skipped; frames 3, 4 are undecodable.
                assert!(r.keyframe_needed());
            }
        }
        assert!(needed_seen);
        let ts: Vec<u32> = out.iter().map(|f| f.rtp_timestamp).collect();
        assert_eq!(ts, vec![1000, 4000, 16000, 19000], "frames 0, 1, 5, 6");
        assert!(out[2].keyframe);
        assert_eq!(out[2].data, s.frames[5]);
        assert_eq!(out[3].data, s.frames[6]);
        // Everything between frame 1 and 5 was skipped: frame 2, 3, 4's sequence numbers.
        let skipped: usize = s.packets[2..5].iter().map(|p| p.len()).sum();
        assert_eq!(out[2].lost_before as usize, skipped);
        assert!(!r.keyframe_needed());
        let c = r.counters();
        assert_eq!(c.lost, 1);
        assert!(c.frames_incomplete >= 1);
        assert_eq!(c.frames_incomplete + c.frames_undecodable, 3);
        // The lost packet was NACKed (until the jitter buffer gave it up), nothing else.
        assert!(!nacked.is_empty());
        assert!(nacked.iter().all(|&s| s == lost), "{nacked:?}");
        assert!(r.nack_generator().unwrap().missing().is_empty());
    }

    #[test]
    fn retransmission_before_deadline_delivers_frame() {
        let s = vp8_stream(4, &[0], 1);
        let hole = s.packets[1][2].clone();
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        r.set_rtt(ms(30)); // wait limit max(60, 100) = 100 ms
        let t0 = Instant::now();
        let mut out = vec![];
        for (i, pk) in s.packets.iter().enumerate() {
            for p in pk.iter().filter(|p| **p != hole) {
                r.push(p, t0 + ms(i as u64 * 20));
            }
            out.extend(r.pop_frames(t0 + ms(i as u64 * 20)));
        }
        assert_eq!(out.len(), 1, "only the keyframe before the gap");
        // The NACK names exactly the hole.
        let nack = r.nack_packet(t0 + ms(60), 0x99).unwrap();
        match &parse_compound(&nack)[..] {
            [RtcpEvent::Nack { sender_ssrc: 0x99, media_ssrc: 0xfeed, seqs }] => assert_eq!(seqs, &vec![seq_of(&hole)]),
            e => panic!("{e:?}"),
        }
        assert!(r.next_wakeup().is_some());
        // Retransmission at 80 ms, before the deadline (20 ms + 100 ms).
        assert!(r.push(&hole, t0 + ms(80)));
        out.extend(r.pop_frames(t0 + ms(80)));
        assert_eq!(out.len(), 4);
        for (i, f) in out.iter().enumerate() {
            assert_eq!(f.data, s.frames[i]);
        }
        assert!(!r.keyframe_needed());
        assert_eq!(r.counters().lost, 0);
        assert!(r.nack_generator().unwrap().missing().is_empty());
        // A second copy of the retransmission is late, not a frame.
        assert!(!r.push(&hole, t0 + ms(90)));
        assert!(r.pop_frames(t0 + ms(90)).is_empty());
    }

    #[test]
    fn complete_keyframe_behind_a_gap_is_taken_at_once() {
        let s = vp8_stream(4, &[0, 2], 500);
        let hole = s.packets[1][0].clone();
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        let t0 = Instant::now();
        let mut out = vec![];
        for pk in &s.packets {
            for p in pk.iter().filter(|p| **p != hole) {
                r.push(p, t0);
            }
        }
        out.extend(r.pop_frames(t0));
        let ts: Vec<u32> = out.iter().map(|f| f.rtp_timestamp).collect();
        assert_eq!(ts, vec![1000, 7000, 10000]);
        assert_eq!(out[1].lost_before as usize, s.packets[1].len());
        assert!(!r.keyframe_needed());
    }

    #[test]
    fn joining_mid_stream_waits_for_keyframe() {
        let s = vp8_stream(6, &[4], 7);
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        let t0 = Instant::now();
        let mut out = vec![];
        // Start in the middle of frame 1.
        for (i, pk) in s.packets.iter().enumerate().skip(1) {
            let start = if i == 1 { 2 } else { 0 };
            for p in &pk[start..] {
                r.push(p, t0 + ms(i as u64 * 33));
            }
            out.extend(r.pop_frames(t0 + ms(i as u64 * 33)));
            if i == 3 {
                assert!(r.keyframe_needed());
            }
        }
        out.extend(r.pop_frames(t0 + ms(1000)));
        let ts: Vec<u32> = out.iter().map(|f| f.rtp_timestamp).collect();
        assert_eq!(ts, vec![13000, 16000]);
        assert!(out[0].keyframe);
        assert!(!r.keyframe_needed());
    }

    #[test]
    fn vp9_round_trip_large_frames_byte_exact() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp9, 0xbeef, 98, 90_000, 1200);
        p.set_next_sequence_number(65000);
        let mut frames = vec![vp9_keyframe(1280, 720, 150_000)];
        for i in 0..5 {
            frames.push(vp9_delta(20_000 + i * 7919, i as u8));
        }
        let mut r = RtpReceiver::new(RtpCodec::Vp9, 90_000);
        let t0 = Instant::now();
        let mut out = vec![];
        for (i, f) in frames.iter().enumerate() {
            let pk = p.packetize(f, i as u32 * 3000);
            assert!(pk.iter().all(|x| x.len() <= 1200));
            // Deliver each frame's packets in reverse order.
            for x in pk.iter().rev() {
                r.push(x, t0 + ms(i as u64 * 33));
            }
            out.extend(r.pop_frames(t0 + ms(i as u64 * 33)));
        }
        assert_eq!(out.len(), frames.len());
        for (o, f) in out.iter().zip(&frames) {
            assert_eq!(&o.data, f);
        }
        assert!(out[0].keyframe && !out[1].keyframe);
        assert_eq!(out[1].picture_id, out[0].picture_id.map(|p| (p + 1) & 0x7fff));
    }

    /// Annex B access unit with 4-byte start codes.
    fn h264_au(nals: &[(u8, usize)], seed: u8) -> Vec<u8> {
        let mut au = Vec::new();
        for &(t, len) in nals {
            au.extend_from_slice(&[0, 0, 0, 1, 0x60 | t, 0x88]);
            // No 00 00 0x sequences inside (an encoder's emulation prevention guarantees that).
            au.extend((0..len - 2).map(|i| (i as u8).wrapping_mul(seed) | 0x10));
        }
        au
    }

    #[test]
    fn h264_round_trip_byte_exact_with_loss_until_idr() {
        let mut p = RtpPacketizer::new(RtpCodec::H264, 0x264, 102, 90_000, 1200);
        p.set_next_sequence_number(65530);
        let frames = [
            h264_au(&[(7, 14), (8, 5), (5, 40_000)], 3),
            h264_au(&[(1, 300), (1, 280)], 5),
            h264_au(&[(1, 9000)], 7),
            h264_au(&[(1, 500)], 9),
            h264_au(&[(7, 14), (8, 5), (5, 30_000)], 11),
        ];
        let mut r = RtpReceiver::new(RtpCodec::H264, 90_000);
        r.set_wait_limit(Some(Duration::from_millis(50)));
        let t0 = Instant::now();
        let mut out = vec![];
        for (i, f) in frames.iter().enumerate() {
            let pk = p.packetize(f, i as u32 * 3000);
            assert!(pk.iter().all(|x| x.len() <= 1200));
            for (k, x) in pk.iter().enumerate().rev() {
                if i == 2 && k == 3 {
                    continue; // a fragment of frame 2 is lost: frames 2 and 3 cannot be decoded
                }
                r.push(x, t0 + ms(i as u64 * 100));
            }
            out.extend(r.pop_frames(t0 + ms(i as u64 * 100 + 60)));
        }
        let got: Vec<&Vec<u8>> = out.iter().map(|o| &o.data).collect();
        assert_eq!(got, vec![&frames[0], &frames[1], &frames[4]]);
        assert!(out[0].keyframe && !out[1].keyframe && out[2].keyframe);
        assert_eq!(p.frame_counts(), (5, 2));
    }

    /// Annex B H.265 access unit (4-byte start codes): units of (type, length), the first
    /// slice segment flagged.
    fn h265_au(nals: &[(u8, usize)], seed: u8) -> Vec<u8> {
        let mut au = Vec::new();
        let mut first_slice = true;
        for &(t, len) in nals {
            let flag = if t < 32 && std::mem::take(&mut first_slice) { 0x80 } else { 0 };
            au.extend_from_slice(&[0, 0, 0, 1, t << 1, 1, flag | 0x10]);
            au.extend((0..len - 3).map(|i| (i as u8).wrapping_mul(seed) | 0x10));
        }
        au
    }

    #[test]
    fn an_idr_is_never_released_without_the_parameter_sets_before_it() {
        // A keyframe is an AP (VPS, SPS, PPS) then FU fragments whose first one also looks
        // like a start (first slice). With the AP missing, the FUs alone must not pass for
        // the access unit: wait for the AP (retransmission), or drop the unit.
        let key = h265_au(&[(32, 24), (33, 40), (34, 8), (19, 5000)], 3);
        let delta = h265_au(&[(1, 700)], 5);
        let key2 = h265_au(&[(32, 24), (33, 40), (34, 8), (19, 4000)], 7);
        let key0 = h265_au(&[(32, 24), (33, 40), (34, 8), (19, 900)], 9);
        let t0 = Instant::now();
        for late_ap_arrives in [true, false] {
            let mut p = RtpPacketizer::new(RtpCodec::H265, 0x265, 104, 90_000, 1200);
            let mut r = RtpReceiver::new(RtpCodec::H265, 90_000);
            r.set_wait_limit(Some(Duration::from_millis(50)));
            let first = p.packetize(&key0, 0); // a frame before, so the AP's loss is a gap
            let pk = p.packetize(&key, 3000);
            let rest = [p.packetize(&delta, 6000), p.packetize(&key2, 9000)];
            first.iter().for_each(|x| { r.push(x, t0); });
            let mut out = r.pop_frames(t0);
            pk[1..].iter().for_each(|x| { r.push(x, t0 + ms(1)); });
            out.extend(r.pop_frames(t0 + ms(10)));
            assert_eq!(out.len(), 1, "only the frame before; the IDR waits for its AP");
            if late_ap_arrives {
                r.push(&pk[0], t0 + ms(30));
            }
            for (i, f) in rest.iter().enumerate() {
                f.iter().for_each(|x| { r.push(x, t0 + ms(40 + i as u64)); });
            }
            out.extend(r.pop_frames(t0 + ms(200)));
            let got: Vec<&Vec<u8>> = out.iter().map(|o| &o.data).collect();
            if late_ap_arrives {
                assert_eq!(got, vec![&key0, &key, &delta, &key2]);
            } else {
                assert_eq!(got, vec![&key0, &key2], "the IDR without its AP (and the delta on it) dropped");
            }
        }
    }

    #[test]
    fn a_stream_whose_first_packets_were_lost_asks_for_them() {
        // The very first keyframe's AP (VPS, SPS, PPS) is lost: the receiver's first packet
        // is the slice's first fragment, which looks like a start. Nothing shows a gap, so
        // the receiver must ask for the packet before its first one itself, wait for it, and
        // never emit the slices alone (an IDR without parameter sets is not what was sent).
        let key = h265_au(&[(32, 24), (33, 40), (34, 8), (19, 5000)], 3);
        let delta = h265_au(&[(1, 700)], 5);
        let key2 = h265_au(&[(32, 24), (33, 40), (34, 8), (19, 4000)], 7);
        let t0 = Instant::now();
        for retransmitted in [true, false] {
            let mut p = RtpPacketizer::new(RtpCodec::H265, 0x265, 104, 90_000, 1200);
            let mut r = RtpReceiver::new(RtpCodec::H265, 90_000);
            r.set_nack_enabled(true);
            r.set_wait_limit(Some(Duration::from_millis(50)));
            let pk = p.packetize(&key, 0);
            let rest = [p.packetize(&delta, 3000), p.packetize(&key2, 6000)];
            pk[1..].iter().for_each(|x| { r.push(x, t0); });
            assert!(r.pop_frames(t0 + ms(1)).is_empty(), "the slices alone are not the access unit");
            let nack = r.nack_packet(t0 + ms(1), 1).expect("a NACK for the packet before the first");
            let asked: Vec<u16> = parse_compound(&nack)
                .into_iter()
                .flat_map(|e| match e {
                    RtcpEvent::Nack { seqs, .. } => seqs,
                    _ => Vec::new(),
                })
                .collect();
            assert_eq!(asked, vec![seq_of(&pk[0])]);
            assert!(r.next_wakeup().is_some_and(|w| w > t0 + ms(40)), "no busy wait meanwhile");
            let mut out = Vec::new();
            if retransmitted {
                r.push(&pk[0], t0 + ms(5));
                out.extend(r.pop_frames(t0 + ms(5)));
            }
            out.extend(r.pop_frames(t0 + ms(100)));
            assert_eq!(r.keyframe_needed(), !retransmitted);
            rest.iter().flatten().for_each(|x| { r.push(x, t0 + ms(110)); });
            out.extend(r.pop_frames(t0 + ms(110)));
            let got: Vec<&Vec<u8>> = out.iter().map(|o| &o.data).collect();
            if retransmitted {
                assert_eq!(got, vec![&key, &delta, &key2]);
            } else {
                assert_eq!(got, vec![&key2], "the IDR without parameter sets (and the delta on it) dropped");
            }
        }
    }

    #[test]
    fn h265_with_random_loss_never_emits_a_broken_access_unit() {
        // 90 pictures, an IDR (with VPS/SPS/PPS) every 15, slices of several packets; 5 %
        // of packets lost and never retransmitted.
        let frames: Vec<Vec<u8>> = (0..90u32)
            .map(|i| {
                let seed = (i % 251) as u8 | 1;
                if i % 15 == 0 {
                    h265_au(&[(32, 24), (33, 40), (34, 8), (19, 6000 + i as usize)], seed)
                } else {
                    h265_au(&[(1, 900 + 37 * (i as usize % 9)), (1, 1400)], seed)
                }
            })
            .collect();
        let mut p = RtpPacketizer::new(RtpCodec::H265, 0x265, 104, 90_000, 1200);
        let mut r = RtpReceiver::new(RtpCodec::H265, 90_000);
        r.set_wait_limit(Some(Duration::from_millis(50)));
        let t0 = Instant::now();
        let mut rng = 0x1234_5678u32;
        let (mut out, mut lost) = (vec![], 0);
        for (i, f) in frames.iter().enumerate() {
            for x in p.packetize(f, i as u32 * 3000) {
                rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if rng >> 24 < 13 {
                    lost += 1; // ~5 %
                    continue;
                }
                r.push(&x, t0 + ms(i as u64 * 33));
            }
            out.extend(r.pop_frames(t0 + ms(i as u64 * 33 + 20)));
        }
        out.extend(r.pop_frames(t0 + ms(90 * 33 + 200)));
        assert!(lost > 10, "{lost} packets lost");
        assert!(out.len() >= 20 && out.len() < frames.len(), "{} of {} emitted", out.len(), frames.len());
        for o in &out {
            let i = (o.rtp_timestamp / 3000) as usize;
            assert_eq!(o.data, frames[i], "frame {i} emitted broken");
            assert_eq!(o.keyframe, i % 15 == 0);
        }
    }

    #[test]
    fn vp8_round_trip_large_keyframe_byte_exact() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp8, 1, 96, 90_000, 1200);
        let frames = [vp8_frame(true, 200_001, 3), vp8_frame(false, 1, 4), vp8_frame(false, 1189, 5)];
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        let t0 = Instant::now();
        for (i, f) in frames.iter().enumerate() {
            for x in p.packetize(f, i as u32) {
                assert!(x.len() <= 1200);
                r.push(&x, t0);
            }
        }
        let out = r.pop_frames(t0);
        assert_eq!(out.len(), 3);
        for (o, f) in out.iter().zip(&frames) {
            assert_eq!(&o.data, f);
        }
    }

    #[test]
    fn audio_gap_is_reported_for_concealment() {
        let mut p = RtpPacketizer::new(RtpCodec::Opus, 5, 111, 48_000, 1200);
        let pk: Vec<Vec<u8>> = (0..10u32).map(|i| p.packetize(&[i as u8; 60], i * 960).remove(0)).collect();
        let mut r = RtpReceiver::new(RtpCodec::Opus, 48_000);
        let t0 = Instant::now();
        let mut out = vec![];
        // Packets 3 and 4 lost; 6 and 7 swapped.
        let order = [0usize, 1, 2, 5, 7, 6, 8, 9];
        for (k, &i) in order.iter().enumerate() {
            let now = t0 + ms(k as u64 * 10);
            r.push(&pk[i], now);
            out.extend(r.pop_frames(now));
        }
        // Packet 5 arrived at 30 ms; the gap is given up 60 ms later.
        assert_eq!(out.len(), 3);
        out.extend(r.pop_frames(t0 + ms(89)));
        assert_eq!(out.len(), 3);
        out.extend(r.pop_frames(t0 + ms(90)));
        let ts: Vec<u32> = out.iter().map(|f| f.rtp_timestamp / 960).collect();
        assert_eq!(ts, vec![0, 1, 2, 5, 6, 7, 8, 9]);
        assert_eq!(out[3].lost_before, 2);
        assert!(out.iter().enumerate().all(|(i, f)| i == 3 || f.lost_before == 0));
        assert_eq!(out[3].data, vec![5u8; 60]);
        assert!(!r.keyframe_needed());
        let rb = r.report_block(t0 + ms(200)).unwrap();
        assert_eq!(rb.cumulative_lost, 2);
        assert_eq!(rb.fraction_lost, (2 * 256 / 10) as u8);
    }

    #[test]
    fn sequence_restart_and_other_ssrc() {
        let s = vp8_stream(2, &[0, 1], 100);
        let mut r = RtpReceiver::new(RtpCodec::Vp8, 90_000);
        let t0 = Instant::now();
        for p in &s.packets[0] {
            r.push(p, t0);
        }
        assert_eq!(r.pop_frames(t0).len(), 1);
        // Same SSRC, sequence numbers jump by 30000: restart, keyframe taken.
        let mut p2 = RtpPacketizer::new(RtpCodec::Vp8, 0xfeed, 96, 90_000, 1200);
        p2.set_next_sequence_number(30_100);
        for p in p2.packetize(&vp8_frame(true, 5000, 1), 99) {
            r.push(&p, t0);
        }
        let out = r.pop_frames(t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rtp_timestamp, 99);
        assert_eq!(r.counters().resets, 1);
        // Another SSRC is not ours.
        let mut p3 = RtpPacketizer::new(RtpCodec::Vp8, 0xaaaa, 96, 90_000, 1200);
        assert!(!r.push(&p3.packetize(&[0x10, 1, 2], 5)[0], t0));
        assert_eq!(r.counters().wrong_ssrc, 1);
    }

    /// xorshift for the fuzz loops.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn fuzz_receiver_never_panics() {
        let mut next = rng(0xdead_beef);
        let t0 = Instant::now();
        let s = vp8_stream(6, &[0, 3], 65500);
        let valid: Vec<Vec<u8>> = s.packets.iter().flatten().cloned().collect();
        for codec in [RtpCodec::Vp8, RtpCodec::Vp9, RtpCodec::Opus, RtpCodec::H264, RtpCodec::H265, RtpCodec::Av1] {
            let mut r = RtpReceiver::new(codec, codec.default_clock_rate());
            let mut released: Vec<AssembledFrame> = vec![];
            let mut resets = 0;
            for i in 0..30_000u64 {
                let now = t0 + ms(i / 10);
                let pkt: Vec<u8> = match next() % 3 {
                    0 => {
                        let len = (next() % 64) as usize;
                        (0..len).map(|_| next() as u8).collect()
                    }
                    1 => {
                        // Valid RTP header (v2, our SSRC region) with random payload.
                        let mut v = valid[(next() as usize) % valid.len()][..12].to_vec();
                        v[0] = 0x80 | (next() as u8 & 0x3f);
                        v[2] = next() as u8;
                        v[3] = next() as u8;
                        v.extend((0..(next() % 40)).map(|_| next() as u8));
                        v
                    }
                    _ => {
                        // Bit-flipped real packet.
                        let mut v = valid[(next() as usize) % valid.len()].clone();
                        for _ in 0..(1 + next() % 4) {
                            let at = (next() as usize) % v.len();
                            v[at] ^= 1 << (next() % 8);
                        }
                        if next().is_multiple_of(5) {
                            v.truncate((next() as usize) % v.len());
                        }
                        v
                    }
                };
                r.push(&pkt, now);
                if i % 7 == 0 {
                    for f in r.pop_frames(now) {
                        if r.counters().resets != resets {
                            resets = r.counters().resets;
                            released.clear();
                        }
                        // In order; video starts (and restarts after a reset) on a keyframe.
                        if let Some(prev) = released.last() {
                            assert!(crate::media::rtp::seq::seq_newer(f.seq_range.0, prev.seq_range.1));
                        } else if codec.is_video() {
                            assert!(f.keyframe);
                        }
                        released.push(f);
                    }
                    let _ = r.nack_packet(now, 1);
                    let _ = r.report_block(now);
                    let _ = r.next_wakeup();
                }
            }
            assert!(r.counters().malformed > 0);
            // The valid packets are VP8: as VP9 or AV1 payloads they never make a frame, and
            // as H.264/H.265 ones no keyframe ever has a sequence parameter set.
            if matches!(codec, RtpCodec::Vp8 | RtpCodec::Opus) {
                assert!(r.counters().frames_released > 0);
            }
        }
    }

    #[test]
    fn fuzz_rtcp_parse_never_panics() {
        let mut next = rng(42);
        let mut valid = crate::media::rtp::rtcp::build_sr(1, 2, 3, 4, 5, &[Default::default()]);
        valid.extend(crate::media::rtp::rtcp::build_nack(1, 2, &[1, 5, 9, 300]));
        valid.extend(crate::media::rtp::rtcp::build_remb(1, 1_000_000, &[3]));
        valid.extend(crate::media::rtp::rtcp::build_fir(1, 2, 3));
        valid.extend(crate::media::rtp::rtcp::build_sdes_cname(1, "x"));
        let mut events = 0usize;
        for _ in 0..100_000 {
            let pkt: Vec<u8> = if next().is_multiple_of(2) {
                let len = (next() % 96) as usize;
                let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if v.len() >= 2 {
                    v[0] = 0x80 | (v[0] & 0x3f);
                    v[1] = 192 + (v[1] % 32);
                }
                v
            } else {
                let mut v = valid.clone();
                for _ in 0..(1 + next() % 6) {
                    let at = (next() as usize) % v.len();
                    v[at] ^= 1 << (next() % 8);
                }
                v.truncate((next() as usize) % (v.len() + 1));
                v
            };
            events += crate::media::rtp::rtcp::parse_compound(&pkt).len();
            let _ = crate::media::rtp::depacketize::parse_rtp(&pkt);
            let _ = crate::media::rtp::depacketize::Vp8Descriptor::parse(&pkt);
            let _ = crate::media::rtp::depacketize::Vp9Descriptor::parse(&pkt);
            let _ = crate::media::rtp::packetize::vp9_frame_header(&pkt);
        }
        assert!(events > 0);
    }
}
