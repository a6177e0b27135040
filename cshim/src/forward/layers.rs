//! Simulcast in the SFU: a source sends up to three layers (rids r0 < r1 < r2, one SSRC
//! each, named by the RID header extension), and each destination gets one of them as a
//! single stream: its own SSRC, sequence numbers and timestamps that run on across layer
//! switches, so the receiver sees one continuous stream (sora-protocol.md §6).
//!
//! A destination asks for a rid; it gets the highest layer at or below it that is flowing
//! (Sora: "r2 asked while only r0 and r1 are sent gives r1"), else the lowest one flowing.
//! A switch waits for a keyframe of the new layer (asked for by PLI), so no frame that
//! refers to another layer's pictures reaches the receiver; until then the old layer goes on.
//!
//! VP8 and VP9 payloads also carry a picture ID and a TL0PICIDX numbered per layer; they
//! are renumbered too, on from the last ones forwarded. libwebrtc receivers number frames
//! by picture ID: a keyframe whose ID lies behind the last decoded frame's is taken as
//! old and dropped, and the stream then stalls (seen with the official SDK receiving).
use crate::media::rtp::depacketize::payload_info;
use crate::media::rtp::nack::PacketHistory;
use crate::media::rtp::RtpCodec;
use std::time::{Duration, Instant};

/// r0, r1, r2.
pub const LAYERS: usize = 3;
/// A layer whose last packet is older than this is not flowing (libwebrtc stops a layer
/// outright when its bandwidth is not there; the lowest layer sends at ≥ 7 fps).
const FLOWING: Duration = Duration::from_millis(1000);
/// A destination's first layer waits this long after the source's first packet for the
/// layer it asked for (a sender starts its layers one after the other), then takes the
/// best there is.
const STARTUP_GRACE: Duration = Duration::from_millis(500);
/// Least time between two keyframe requests for the same switch.
const PLI_INTERVAL: Duration = Duration::from_millis(300);
/// Packets kept per layer for NACKs (as forward.rs keeps per source).
const CACHE_PACKETS: usize = 1024;
const CACHE_AGE: Duration = Duration::from_secs(1);
/// The RTP clock of every video codec in WebRTC.
const VIDEO_CLOCK_PER_MS: u64 = 90;

/// The layer index of a rid: Sora's rids are r0, r1 and r2.
pub fn rid_index(rid: &[u8]) -> Option<usize> {
    match rid {
        b"r0" => Some(0),
        b"r1" => Some(1),
        b"r2" => Some(2),
        _ => None,
    }
}

/// The layers of one simulcast source, learned from its RTP.
pub struct Layers {
    pub rid_ext: u8,
    pub codec: RtpCodec,
    ssrc: [u32; LAYERS],
    last: [Option<Instant>; LAYERS],
    history: [Option<PacketHistory>; LAYERS],
    first_packet: Option<Instant>,
}

impl Layers {
    pub fn new(rid_ext: u8, codec: RtpCodec) -> Self {
        Layers { rid_ext, codec, ssrc: [0; LAYERS], last: [None; LAYERS], history: Default::default(), first_packet: None }
    }

    /// The layer of a packet from `ssrc` carrying `rid` (its RID extension, when it has one),
    /// learning the SSRC from the rid. None: a layer never named by a rid (dropped). Only a
    /// packet with `media` keeps its layer flowing: libwebrtc pads a layer it has paused for
    /// bandwidth (padding-only packets on its SSRC), and a receiver left on such a layer got
    /// no frames at all.
    pub fn on_packet(&mut self, ssrc: u32, rid: Option<&[u8]>, media: bool, now: Instant) -> Option<usize> {
        let layer = match rid.and_then(rid_index) {
            Some(i) => {
                if self.ssrc[i] != ssrc {
                    // A new SSRC for the rid (the sender re-created the layer): its old
                    // packets can no longer answer NACKs.
                    self.ssrc[i] = ssrc;
                    self.history[i] = None;
                }
                i
            }
            None => self.index_of(ssrc)?,
        };
        if media {
            self.last[layer] = Some(now);
            self.first_packet.get_or_insert(now);
        }
        Some(layer)
    }

    pub fn index_of(&self, ssrc: u32) -> Option<usize> {
        if ssrc == 0 {
            return None;
        }
        self.ssrc.iter().position(|&s| s == ssrc)
    }

    pub fn ssrc(&self, layer: usize) -> Option<u32> {
        self.ssrc.get(layer).copied().filter(|&s| s != 0)
    }

    /// The SSRCs of every layer seen.
    pub fn ssrcs(&self) -> Vec<u32> {
        self.ssrc.iter().copied().filter(|&s| s != 0).collect()
    }

    fn flowing(&self, layer: usize, now: Instant) -> bool {
        self.last[layer].is_some_and(|t| now.saturating_duration_since(t) < FLOWING)
    }

    /// Whether `payload` begins a keyframe of this source's codec.
    pub fn is_keyframe_start(&self, payload: &[u8]) -> bool {
        payload_info(self.codec, payload).is_some_and(|i| i.frame_begin && i.keyframe)
    }

    pub fn store(&mut self, layer: usize, seq: u16, packet: Vec<u8>, now: Instant) {
        self.history[layer]
            .get_or_insert_with(|| PacketHistory::new(CACHE_PACKETS, CACHE_AGE))
            .store(seq, packet, now);
    }

    /// A cached packet of `layer` to resend, if there is one.
    pub fn retransmission(&mut self, layer: usize, seq: u16, now: Instant) -> Option<Vec<u8>> {
        self.history[layer].as_mut()?.get_for_retransmit(seq, now, Duration::ZERO)
    }
}

/// What becomes of one packet of the source for one destination.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    /// Forward with these sequence number and timestamp (and the destination's SSRC).
    Forward { seq: u16, ts: u32 },
}

/// The layer one destination gets, and how its packets are renumbered.
pub struct Selection {
    /// Requested layer; None: no video at all ("none").
    pub want: Option<usize>,
    /// The SSRC the destination's m-section announces.
    pub out_ssrc: u32,
    /// The layer forwarded now, and the one waiting for its keyframe.
    current: Option<usize>,
    pending: Option<usize>,
    seq_offset: u16,
    ts_offset: u32,
    /// First outgoing sequence number of the current layer's run (NACKs before it cannot
    /// be mapped back).
    run_start: u16,
    /// The newest packet forwarded: outgoing sequence number, timestamp, when.
    last_out: Option<(u16, u32, Instant)>,
    last_pli: Option<Instant>,
    /// VP8/VP9 picture ID and TL0PICIDX renumbering of the current run.
    pictures: PictureIds,
}

/// Picture ID (15 bits) and TL0PICIDX offsets of the current run, and the last ones sent.
#[derive(Default)]
struct PictureIds {
    pid_offset: u16,
    tl0_offset: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    /// The next packet starts a run: its IDs follow the last ones sent.
    rebase: bool,
}

/// Where a VP8/VP9 payload descriptor keeps its picture ID (offset, 15 bits?) and
/// TL0PICIDX (offset).
fn picture_fields(codec: RtpCodec, payload: &[u8]) -> (Option<(usize, bool)>, Option<usize>) {
    // the picture ID at `at` when `present` (M bit: 15 bits), and where the next field starts
    let picture_id = |at: usize, present: bool| -> Option<(Option<(usize, bool)>, usize)> {
        if !present {
            return Some((None, at));
        }
        let long = payload.get(at)? & 0x80 != 0;
        Some((Some((at, long)), at + 1 + usize::from(long)))
    };
    let found = match codec {
        // X, then I and L in the extension byte
        RtpCodec::Vp8 => match (payload.first(), payload.get(1)) {
            (Some(&b0), Some(&b1)) if b0 & 0x80 != 0 => {
                picture_id(2, b1 & 0x80 != 0).map(|(pid, at)| (pid, (b1 & 0x40 != 0).then_some(at)))
            }
            _ => None,
        },
        // I; L: layer indices, then TL0PICIDX in non-flexible mode (F clear)
        RtpCodec::Vp9 => payload.first().and_then(|&b0| {
            picture_id(1, b0 & 0x80 != 0).map(|(pid, at)| (pid, (b0 & 0x20 != 0 && b0 & 0x10 == 0).then_some(at + 1)))
        }),
        _ => None,
    };
    let Some((pid, tl0)) = found else { return (None, None) };
    (pid.filter(|&(a, m)| a + usize::from(m) < payload.len()), tl0.filter(|&a| a < payload.len()))
}

fn read_pid(p: &[u8], at: usize, long: bool) -> u16 {
    if long {
        u16::from_be_bytes([p[at] & 0x7f, p[at + 1]])
    } else {
        u16::from(p[at] & 0x7f)
    }
}

fn write_pid(p: &mut [u8], at: usize, long: bool, pid: u16) {
    if long {
        p[at] = 0x80 | ((pid >> 8) as u8 & 0x7f);
        p[at + 1] = pid as u8;
    } else {
        p[at] = pid as u8 & 0x7f;
    }
}

/// `a` comes after `b` in sequence-number order (RFC 3550 wrap-around).
fn seq_after(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

impl Selection {
    pub fn new(want: Option<usize>, out_ssrc: u32) -> Self {
        Selection {
            want,
            out_ssrc,
            current: None,
            pending: None,
            seq_offset: 0,
            ts_offset: 0,
            run_start: 0,
            last_out: None,
            last_pli: None,
            pictures: PictureIds::default(),
        }
    }

    /// The layer forwarded now.
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// The layer this destination should get now: the highest flowing one at or below
    /// `want`, else the lowest flowing one.
    fn target(&self, layers: &Layers, now: Instant) -> Option<usize> {
        let want = self.want?;
        let starting = layers.first_packet.is_some_and(|t| now.saturating_duration_since(t) < STARTUP_GRACE);
        if self.current.is_none() && starting && layers.ssrc(want).is_none() {
            return None; // its layer may be on its way
        }
        let flowing: Vec<usize> = (0..LAYERS).filter(|&i| layers.flowing(i, now)).collect();
        flowing.iter().rev().find(|&&i| i <= want).or(flowing.first()).copied()
    }

    /// One RTP packet of `layer` (sequence number `seq`, timestamp `ts`; `keyframe_start`:
    /// it begins a keyframe). Returns what to do with it, and the layer to ask for a
    /// keyframe, when a switch waits for one.
    pub fn on_packet(&mut self, layers: &Layers, layer: usize, seq: u16, ts: u32, keyframe_start: bool, now: Instant) -> (Verdict, Option<usize>) {
        if self.want.is_none() {
            self.current = None;
            self.pending = None;
            return (Verdict::Drop, None);
        }
        let target = self.target(layers, now);
        let mut keyframe_request = None;
        if target == self.current {
            self.pending = None;
        } else if let Some(t) = target {
            if self.pending != Some(t) {
                self.pending = Some(t);
                self.last_pli = None;
            }
            if self.last_pli.map_or(true, |at| now.saturating_duration_since(at) >= PLI_INTERVAL) {
                self.last_pli = Some(now);
                keyframe_request = Some(t);
            }
        }
        if self.pending == Some(layer) && keyframe_start {
            self.switch_to(layer, seq, ts, now);
            keyframe_request = None;
        }
        if self.current != Some(layer) {
            return (Verdict::Drop, keyframe_request);
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if self.last_out.map_or(true, |(s, _, _)| seq_after(out_seq, s)) {
            self.last_out = Some((out_seq, out_ts, now));
        }
        (Verdict::Forward { seq: out_seq, ts: out_ts }, keyframe_request)
    }

    /// Starts forwarding `layer` at its keyframe packet (`seq`, `ts`): numbered on from the
    /// last packet forwarded, its timestamps on by the time that passed since.
    fn switch_to(&mut self, layer: usize, seq: u16, ts: u32, now: Instant) {
        if let Some((last_seq, last_ts, at)) = self.last_out {
            let elapsed = (now.saturating_duration_since(at).as_millis() as u64 * VIDEO_CLOCK_PER_MS).clamp(1, u32::MAX as u64) as u32;
            self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
            self.ts_offset = last_ts.wrapping_add(elapsed).wrapping_sub(ts);
        }
        self.run_start = seq.wrapping_add(self.seq_offset);
        self.current = Some(layer);
        self.pending = None;
        self.pictures.rebase = true;
    }

    /// Renumbers the picture ID and TL0PICIDX of a forwarded packet (`packet`: the
    /// rewritten copy) for this destination; a run's first packet sets the offsets so that
    /// its IDs follow the last ones sent. `retransmission`: an old packet of the run (the
    /// offsets apply, the last IDs sent stay).
    pub fn renumber_pictures(&mut self, codec: RtpCodec, packet: &mut [u8], retransmission: bool) {
        let Some(start) = payload_start(packet) else { return };
        let (pid, tl0) = picture_fields(codec, &packet[start..]);
        let pic = &mut self.pictures;
        if let Some((at, long)) = pid {
            let at = start + at;
            let src = read_pid(packet, at, long);
            let modulo: u16 = if long { 0x8000 } else { 0x80 };
            if pic.rebase && !retransmission {
                pic.pid_offset = pic.last_pid.map_or(0, |last| last.wrapping_add(1).wrapping_sub(src) % modulo);
            }
            let out = src.wrapping_add(pic.pid_offset) % modulo;
            write_pid(packet, at, long, out);
            if !retransmission {
                pic.last_pid = Some(out);
            }
        }
        if let Some(at) = tl0 {
            let at = start + at;
            let src = packet[at];
            if pic.rebase && !retransmission {
                pic.tl0_offset = pic.last_tl0.map_or(0, |last| last.wrapping_add(1).wrapping_sub(src));
            }
            packet[at] = src.wrapping_add(pic.tl0_offset);
            if !retransmission {
                pic.last_tl0 = Some(packet[at]);
            }
        }
        if !retransmission {
            pic.rebase = false;
        }
    }

    /// The source packet (layer, sequence number) an outgoing sequence number came from,
    /// for packets of the current layer's run.
    pub fn source_of(&self, out_seq: u16) -> Option<(usize, u16)> {
        let layer = self.current?;
        if out_seq != self.run_start && !seq_after(out_seq, self.run_start) {
            return None;
        }
        Some((layer, out_seq.wrapping_sub(self.seq_offset)))
    }

    /// The outgoing timestamp of a source timestamp of the current layer.
    pub fn out_timestamp(&self, ts: u32) -> u32 {
        ts.wrapping_add(self.ts_offset)
    }

    /// The layer to ask for a keyframe when the receiver asks for one.
    pub fn keyframe_layer(&self) -> Option<usize> {
        self.pending.or(self.current)
    }
}

/// Where the payload of an RTP packet starts (after its header, CSRCs and extension).
fn payload_start(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    let mut start = 12 + 4 * (first & 0x0f) as usize;
    if first & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(start + 2)?, *packet.get(start + 3)?]) as usize;
        start += 4 + 4 * words;
    }
    (start <= packet.len()).then_some(start)
}

/// The payload of an RTP packet: after its header, CSRCs and extension, before its padding.
pub fn payload(packet: &[u8]) -> Option<&[u8]> {
    let start = payload_start(packet)?;
    let padding = if packet[0] & 0x20 != 0 { *packet.last()? as usize } else { 0 };
    packet.get(start..packet.len().checked_sub(padding)?)
}

/// `packet` with a new SSRC, sequence number and timestamp (a copy; None when it is too
/// short to be RTP).
pub fn rewrite(packet: &[u8], ssrc: u32, seq: u16, ts: u32) -> Option<Vec<u8>> {
    if packet.len() < 12 {
        return None;
    }
    let mut out = packet.to_vec();
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VP8 payload: descriptor with S=1 and PartID 0, then the frame tag (bit 0 = 0: key).
    fn vp8(begin: bool, key: bool) -> Vec<u8> {
        vec![if begin { 0x10 } else { 0x00 }, if key { 0x00 } else { 0x01 }, 0, 0]
    }

    struct Sim {
        layers: Layers,
        sel: Selection,
        now: Instant,
        seq: [u16; 3],
        ts: [u32; 3],
    }

    impl Sim {
        fn new(want: usize) -> Self {
            Sim {
                layers: Layers::new(10, RtpCodec::Vp8),
                sel: Selection::new(Some(want), 7),
                now: Instant::now(),
                seq: [100, 30000, 65530],
                ts: [1000, 500_000, u32::MAX - 10],
            }
        }
        /// One packet of `layer` (a frame of its own), `ms` after the previous one.
        fn packet(&mut self, layer: usize, key: bool, ms: u64) -> (Verdict, Option<usize>) {
            self.now += Duration::from_millis(ms);
            let rid = format!("r{layer}");
            let l = self.layers.on_packet(1000 + layer as u32, Some(rid.as_bytes()), true, self.now).unwrap();
            self.seq[layer] = self.seq[layer].wrapping_add(1);
            self.ts[layer] = self.ts[layer].wrapping_add(3000);
            let start = self.layers.is_keyframe_start(&vp8(true, key));
            self.sel.on_packet(&self.layers, l, self.seq[layer], self.ts[layer], start, self.now)
        }
    }

    #[test]
    fn padding_alone_does_not_keep_a_layer_flowing() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut l = Layers::new(10, RtpCodec::Vp8);
        l.on_packet(7, Some(b"r2"), true, at(0));
        for ms in (100..=2000).step_by(100) {
            assert_eq!(l.on_packet(7, Some(b"r2"), false, at(ms)), Some(2)); // still routed
        }
        assert!(l.flowing(2, at(900)));
        assert!(!l.flowing(2, at(1500)));
        let sel = Selection::new(Some(2), 7);
        l.on_packet(8, Some(b"r1"), true, at(2000));
        assert_eq!(sel.target(&l, at(2000)), Some(1)); // the receiver asking for r2 gets r1
    }

    #[test]
    fn rids_name_layers_and_unknown_ssrcs_are_dropped() {
        let now = Instant::now();
        let mut l = Layers::new(10, RtpCodec::Vp8);
        assert_eq!(l.on_packet(5, Some(b"r1"), true, now), Some(1));
        assert_eq!(l.on_packet(5, None, true, now), Some(1)); // later packets without the RID
        assert_eq!(l.on_packet(6, None, true, now), None); // never named
        assert_eq!(l.on_packet(6, Some(b"r3"), true, now), None); // not a Sora rid
        assert_eq!(l.on_packet(6, Some(b"r1"), true, now), Some(1)); // a new SSRC for r1
        assert_eq!(l.index_of(5), None);
        assert_eq!(l.ssrcs(), vec![6]);
    }

    #[test]
    fn a_destination_starts_at_a_keyframe_of_its_layer_and_switches_at_the_next() {
        let mut s = Sim::new(2);
        // r0 alone: r2 may be on its way for half a second, then r0 is the best there is,
        // asked for by PLI and taken at its keyframe.
        assert_eq!(s.packet(0, false, 0), (Verdict::Drop, None));
        assert_eq!(s.packet(0, false, 499), (Verdict::Drop, None));
        assert_eq!(s.packet(0, false, 1), (Verdict::Drop, Some(0)));
        assert!(matches!(s.packet(0, true, 33), (Verdict::Forward { .. }, None)));
        let Verdict::Forward { seq: s1, ts: t1 } = s.packet(0, false, 33).0 else { panic!() };
        // r2 appears: asked for, r0 goes on until r2's keyframe.
        assert_eq!(s.packet(2, false, 1), (Verdict::Drop, Some(2)));
        assert!(matches!(s.packet(0, false, 32), (Verdict::Forward { .. }, None)));
        assert_eq!(s.packet(2, false, 1).0, Verdict::Drop);
        let (v, pli) = s.packet(2, false, 400); // r0 silent for 0.4 s: still flowing
        assert_eq!((v, pli), (Verdict::Drop, Some(2))); // asked again after 300 ms
        let Verdict::Forward { seq: s2, ts: t2 } = s.packet(2, true, 33).0 else { panic!() };
        // numbered on from r0's last packet, the time since in the timestamps
        assert_eq!(s2, s1.wrapping_add(2));
        // r0's last packet had t1 + 3000, 1 + 400 + 33 ms before r2's keyframe
        assert_eq!(t2, t1.wrapping_add(3000).wrapping_add((1 + 400 + 33) * 90));
        assert_eq!(s.sel.current(), Some(2));
        // r0's packets are no longer forwarded; r2's run on (wrapping its own counters)
        assert_eq!(s.packet(0, false, 1).0, Verdict::Drop);
        for _ in 0..10 {
            let Verdict::Forward { seq, .. } = s.packet(2, false, 33).0 else { panic!() };
            assert!(seq_after(seq, s2));
        }
    }

    #[test]
    fn the_layer_asked_for_is_taken_at_once_when_it_comes_first() {
        let mut s = Sim::new(1);
        assert_eq!(s.packet(0, true, 0).0, Verdict::Drop); // r0's keyframe: not the one asked
        assert!(matches!(s.packet(1, true, 1), (Verdict::Forward { .. }, None)));
        assert_eq!(s.sel.current(), Some(1));
    }

    #[test]
    fn a_layer_that_stops_falls_back_and_none_forwards_nothing() {
        let mut s = Sim::new(1);
        s.packet(1, true, 0);
        s.packet(0, false, 0);
        assert!(matches!(s.packet(1, false, 10).0, Verdict::Forward { .. }));
        // r1 stops; r0 goes on: after a second r0 is the target, taken at its keyframe
        for _ in 0..30 {
            s.packet(0, false, 40);
        }
        assert_eq!(s.sel.keyframe_layer(), Some(0));
        assert!(matches!(s.packet(0, true, 40).0, Verdict::Forward { .. }));
        assert_eq!(s.sel.current(), Some(0));
        s.sel.want = None;
        assert_eq!(s.packet(0, true, 40), (Verdict::Drop, None));
        assert_eq!(s.sel.current(), None);
    }

    #[test]
    fn asking_above_what_flows_gives_the_best_below_and_below_gives_the_lowest_above() {
        let mut s = Sim::new(2);
        s.packet(0, false, 0);
        s.packet(1, false, 600); // r2 never came
        s.packet(0, false, 0);
        assert_eq!(s.sel.target(&s.layers, s.now), Some(1));
        let mut only_upper = Sim::new(0);
        only_upper.packet(2, false, 0);
        only_upper.packet(1, false, 600);
        only_upper.packet(2, false, 0);
        assert_eq!(only_upper.sel.target(&only_upper.layers, only_upper.now), Some(1));
    }

    #[test]
    fn nacks_map_back_to_the_current_run_only() {
        let mut s = Sim::new(0);
        s.packet(0, true, 0);
        let Verdict::Forward { seq, .. } = s.packet(0, false, 33).0 else { panic!() };
        assert_eq!(s.sel.source_of(seq), Some((0, s.seq[0])));
        assert_eq!(s.sel.source_of(seq.wrapping_sub(5)), None); // before the run
        let p = rewrite(&[0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9], 0xAABBCCDD, 7, 8).unwrap();
        assert_eq!(p, vec![0x80, 96, 0, 7, 0, 0, 0, 8, 0xAA, 0xBB, 0xCC, 0xDD, 9]);
        assert!(rewrite(&[0x80; 11], 1, 1, 1).is_none());
    }

    #[test]
    fn picture_ids_run_on_across_switches() {
        // RTP header + VP8 descriptor with a 15-bit picture ID and TL0PICIDX
        let vp8 = |pid: u16, tl0: u8| {
            let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
            p.extend_from_slice(&[0x90, 0xC0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0, 0]);
            p
        };
        let ids = |p: &[u8]| (u16::from_be_bytes([p[14] & 0x7f, p[15]]), p[16]);
        let mut sel = Selection::new(Some(0), 7);
        let now = Instant::now();
        sel.switch_to(0, 1, 0, now);
        let mut out = Vec::new();
        for (pid, tl0) in [(1000, 5), (1001, 6), (1002, 7)] {
            let mut p = vp8(pid, tl0);
            sel.renumber_pictures(RtpCodec::Vp8, &mut p, false);
            out.push(ids(&p));
        }
        assert_eq!(out, [(1000, 5), (1001, 6), (1002, 7)]); // the first run keeps its IDs
        // another layer numbered far behind (and across the 15-bit wrap) continues the run
        sel.switch_to(1, 50, 0, now);
        for (pid, tl0) in [(32767, 250), (0, 251)] {
            let mut p = vp8(pid, tl0);
            sel.renumber_pictures(RtpCodec::Vp8, &mut p, false);
            out.push(ids(&p));
        }
        assert_eq!(&out[3..], [(1003, 8), (1004, 9)]);
        // a retransmission of the run gets the same offsets and changes nothing after it
        let mut p = vp8(32767, 250);
        sel.renumber_pictures(RtpCodec::Vp8, &mut p, true);
        assert_eq!(ids(&p), (1003, 8));
        let mut p = vp8(1, 252);
        sel.renumber_pictures(RtpCodec::Vp8, &mut p, false);
        assert_eq!(ids(&p), (1005, 10));
        // truncated or foreign payloads are left alone
        let mut short = vp8(5, 5);
        short.truncate(15);
        let before = short.clone();
        sel.renumber_pictures(RtpCodec::Vp8, &mut short, false);
        assert_eq!(short, before);
        let mut h264 = vp8(5, 5);
        sel.renumber_pictures(RtpCodec::H264, &mut h264, false);
        assert_eq!(h264, vp8(5, 5));
        // VP9 (I, L, non-flexible): picture ID, layer byte, TL0PICIDX
        let mut sel = Selection::new(Some(0), 7);
        sel.switch_to(0, 1, 0, now);
        let vp9 = |pid: u16, tl0: u8| {
            let mut p = vec![0x80, 98, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
            p.extend_from_slice(&[0xA8, 0x80 | (pid >> 8) as u8, pid as u8, 0, tl0, 0]);
            p
        };
        let mut p = vp9(10, 1);
        sel.renumber_pictures(RtpCodec::Vp9, &mut p, false);
        sel.switch_to(1, 9, 0, now);
        let mut p = vp9(500, 77);
        sel.renumber_pictures(RtpCodec::Vp9, &mut p, false);
        assert_eq!((u16::from_be_bytes([p[13] & 0x7f, p[14]]), p[16]), (11, 2));
    }

    #[test]
    fn payload_skips_csrcs_extension_and_padding() {
        let mut p = vec![0xB1, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]; // P, X, one CSRC
        p.extend_from_slice(&[0, 0, 0, 4]); // CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x7f, 0, 0]); // one word of extension
        p.extend_from_slice(b"abc");
        p.extend_from_slice(&[0, 2]); // two bytes of padding
        assert_eq!(payload(&p), Some(&b"abc"[..]));
        assert_eq!(payload(&p[..14]), None);
        let mut bad_padding = p.clone();
        *bad_padding.last_mut().unwrap() = 200;
        assert_eq!(payload(&bad_padding), None);
    }
}
