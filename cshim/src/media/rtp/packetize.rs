//! Send side: one encoded frame → serialized RTP packets.
//!
//! * Opus (RFC 7587): one frame per packet, never fragmented, no marker.
//! * VP8 (RFC 7741): descriptor `X=1, S=1 on the first packet, PID=0`, `I=1` with a 15-bit
//!   PictureID (the form libwebrtc sends), marker on the last packet of the frame.
//! * VP9 (RFC 9628): non-flexible mode without layer indices (single spatial/temporal
//!   layer): `I=1` (15-bit PictureID), `P` = inter-picture predicted (read from the VP9
//!   uncompressed header, or given by the caller), `B`/`E` on the first/last packet, and a
//!   scalability structure with the resolution on the first packet of a keyframe. libwebrtc
//!   receivers then reference frames by picture id alone.
//!
//! * H.264 (RFC 6184): see [`super::h264`]; marker on the last packet of the access unit.
//! * H.265 (RFC 7798): see [`super::h265`]; the same.
//! * AV1: see [`super::av1`]; marker on the last packet of the temporal unit.
//!
//! Fragments are balanced (equal sizes) rather than MTU-greedy with a tiny tail.

use bytes::Bytes;
use rtc_shared::marshal::Marshal;

use super::RtpCodec;
use crate::media::codec::TemporalLayer;

/// One-byte header extension profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Frame-level facts the packetizer can use; everything optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// Whether this is a keyframe. `None`: read from the bitstream (VP8/VP9).
    pub keyframe: Option<bool>,
    /// Frame size for the VP9 scalability structure. `None`: read from the bitstream.
    pub resolution: Option<(u16, u16)>,
    /// VP8 temporal layering: written as TID, Y and TL0PICIDX (RFC 7741 §4.2).
    pub temporal: Option<TemporalLayer>,
}

/// Whether an encoded frame starts a new decodable sequence, read from its bitstream: a VP8
/// key frame, a VP9 key frame, an AV1 temporal unit with a sequence header (how libaom
/// and browsers send keyframes), an H.264 access unit with an IDR slice, an H.265 access unit
/// with a random access slice. Audio frames always are.
pub fn frame_is_keyframe(codec: RtpCodec, frame: &[u8]) -> bool {
    match codec {
        RtpCodec::Opus => true,
        RtpCodec::Vp8 => frame.first().is_some_and(|b| b & 0x01 == 0),
        RtpCodec::Vp9 => vp9_frame_header(frame).is_some_and(|h| h.keyframe),
        RtpCodec::Av1 => super::av1::has_sequence_header(frame),
        RtpCodec::H264 => super::annexb::split(frame).iter().any(|n| n[0] & 0x1f == 5),
        RtpCodec::H265 => super::h265::is_keyframe(frame),
    }
}

pub struct RtpPacketizer {
    codec: RtpCodec,
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    mtu: usize,
    sequence_number: u16,
    picture_id: u16,
    /// VP8 TL0PICIDX: counts base layer frames (of streams with temporal layers).
    tl0_pic_idx: u8,
    extensions: Vec<(u8, Vec<u8>)>,
    abs_send_time_id: Option<u8>,
    last_rtp_timestamp: Option<u32>,
    /// H.264 packetization-mode=0 (single NAL unit packets only).
    h264_single_nal: bool,
    frames: u64,
    keyframes: u64,
}

impl RtpPacketizer {
    /// `mtu` bounds the whole serialized RTP packet (leave room for SRTP's auth tag and
    /// the UDP/IP headers: 1200 is the usual choice).
    pub fn new(codec: RtpCodec, ssrc: u32, payload_type: u8, clock_rate: u32, mtu: usize) -> Self {
        Self {
            codec,
            ssrc,
            payload_type: payload_type & 0x7f,
            clock_rate,
            mtu,
            // RFC 3550 §5.1: the initial sequence number SHOULD be random.
            sequence_number: rand::random(),
            picture_id: rand::random::<u16>() & 0x7fff,
            tl0_pic_idx: rand::random(),
            extensions: Vec::new(),
            abs_send_time_id: None,
            last_rtp_timestamp: None,
            h264_single_nal: false,
            frames: 0,
            keyframes: 0,
        }
    }

    pub fn codec(&self) -> RtpCodec {
        self.codec
    }
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }
    pub fn mtu(&self) -> usize {
        self.mtu
    }
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }
    /// H.264: packetization-mode 0 (true) or 1 (false, the default).
    pub fn set_h264_single_nal_mode(&mut self, on: bool) {
        self.h264_single_nal = on;
    }
    /// The payload room of one packet (the H.264 encoder sizes its slices to it in mode 0).
    pub fn max_payload(&self) -> usize {
        self.mtu.saturating_sub(self.header_overhead())
    }
    /// Sequence number the next packet will carry.
    pub fn next_sequence_number(&self) -> u16 {
        self.sequence_number
    }
    pub fn set_next_sequence_number(&mut self, seq: u16) {
        self.sequence_number = seq;
    }
    /// Picture id the next video frame will carry (15 bits).
    pub fn next_picture_id(&self) -> u16 {
        self.picture_id
    }
    pub fn set_next_picture_id(&mut self, id: u16) {
        self.picture_id = id & 0x7fff;
    }
    /// RTP timestamp of the last packetized frame (for sender reports).
    pub fn last_rtp_timestamp(&self) -> Option<u32> {
        self.last_rtp_timestamp
    }
    /// (frames, keyframes) packetized so far.
    pub fn frame_counts(&self) -> (u64, u64) {
        (self.frames, self.keyframes)
    }

    /// Adds (or replaces) a one-byte header extension written into every packet, e.g.
    /// `urn:ietf:params:rtp-hdrext:sdes:mid`. Ids 1..=14, values 1..=16 bytes.
    pub fn set_extension(&mut self, id: u8, value: &[u8]) -> bool {
        if !(1..=14).contains(&id) || value.is_empty() || value.len() > 16 {
            return false;
        }
        self.extensions.retain(|(i, _)| *i != id);
        self.extensions.push((id, value.to_vec()));
        true
    }

    pub fn remove_extension(&mut self, id: u8) {
        self.extensions.retain(|(i, _)| *i != id);
        if self.abs_send_time_id == Some(id) {
            self.abs_send_time_id = None;
        }
    }

    /// Reserves an abs-send-time extension (3 bytes, zero) in every packet; fill it in just
    /// before sending with [`stamp_abs_send_time`].
    pub fn enable_abs_send_time(&mut self, id: u8) -> bool {
        if self.set_extension(id, &[0, 0, 0]) {
            self.abs_send_time_id = Some(id);
            true
        } else {
            false
        }
    }

    pub fn abs_send_time_id(&self) -> Option<u8> {
        self.abs_send_time_id
    }

    /// Packetizes one encoded frame; keyframe and resolution are read from the bitstream.
    pub fn packetize(&mut self, frame: &[u8], rtp_timestamp: u32) -> Vec<Vec<u8>> {
        self.packetize_frame(frame, rtp_timestamp, FrameInfo::default())
    }

    /// Packetizes one encoded frame with caller-supplied frame facts.
    pub fn packetize_frame(&mut self, frame: &[u8], rtp_timestamp: u32, info: FrameInfo) -> Vec<Vec<u8>> {
        if frame.is_empty() {
            return Vec::new();
        }
        let out = match self.codec {
            RtpCodec::Opus => {
                let pkt = self.packet(rtp_timestamp, false, &[&[][..], frame]);
                pkt.into_iter().collect()
            }
            RtpCodec::Vp8 => self.packetize_vp8(frame, rtp_timestamp, info),
            RtpCodec::Vp9 => self.packetize_vp9(frame, rtp_timestamp, info),
            RtpCodec::H264 => self.packetize_h264(frame, rtp_timestamp, info),
            RtpCodec::H265 => self.packetize_h265(frame, rtp_timestamp, info),
            RtpCodec::Av1 => self.packetize_av1(frame, rtp_timestamp, info),
        };
        if !out.is_empty() {
            self.last_rtp_timestamp = Some(rtp_timestamp);
            self.frames += 1;
        }
        out
    }

    fn header_overhead(&self) -> usize {
        let mut n = super::RTP_HEADER_LEN;
        if !self.extensions.is_empty() {
            let ext: usize = self.extensions.iter().map(|(_, v)| 1 + v.len()).sum();
            n += 4 + ext.div_ceil(4) * 4;
        }
        n
    }

    fn packetize_vp8(&mut self, frame: &[u8], ts: u32, info: FrameInfo) -> Vec<Vec<u8>> {
        let keyframe = info.keyframe.unwrap_or_else(|| frame_is_keyframe(RtpCodec::Vp8, frame));
        let pid = self.picture_id;
        // X, then I (a 15-bit picture ID); with temporal layers also L and T: TL0PICIDX, and
        // TID with the Y bit (KEYIDX unused: K clear)
        let tl0 = match info.temporal {
            Some(t) if t.id == 0 => self.tl0_pic_idx.wrapping_add(1),
            _ => self.tl0_pic_idx,
        };
        let desc = |first: bool| -> Vec<u8> {
            let s = if first { 0x10 } else { 0 };
            match info.temporal {
                None => vec![0x80 | s, 0x80, 0x80 | (pid >> 8) as u8, pid as u8],
                Some(t) => vec![0x80 | s, 0xe0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, (t.id.min(3) << 6) | (u8::from(t.sync) << 5)],
            }
        };
        let out = self.fragment(frame, ts, &desc(true), &desc(false));
        if !out.is_empty() {
            self.tl0_pic_idx = tl0;
            self.picture_id = (self.picture_id + 1) & 0x7fff;
            if keyframe {
                self.keyframes += 1;
            }
        }
        out
    }

    fn packetize_h264(&mut self, frame: &[u8], ts: u32, info: FrameInfo) -> Vec<Vec<u8>> {
        let payloads = super::h264::payloads(frame, self.max_payload(), self.h264_single_nal);
        let keyframe = info.keyframe.unwrap_or_else(|| frame_is_keyframe(RtpCodec::H264, frame));
        self.whole_payloads(&payloads, ts, keyframe)
    }

    fn packetize_h265(&mut self, frame: &[u8], ts: u32, info: FrameInfo) -> Vec<Vec<u8>> {
        let payloads = super::h265::payloads(frame, self.max_payload());
        let keyframe = info.keyframe.unwrap_or_else(|| frame_is_keyframe(RtpCodec::H265, frame));
        self.whole_payloads(&payloads, ts, keyframe)
    }

    fn packetize_av1(&mut self, frame: &[u8], ts: u32, info: FrameInfo) -> Vec<Vec<u8>> {
        let payloads = super::av1::payloads(frame, self.max_payload());
        let keyframe = info.keyframe.unwrap_or_else(|| frame_is_keyframe(RtpCodec::Av1, frame));
        self.whole_payloads(&payloads, ts, keyframe)
    }

    /// Packets for payloads a codec module already cut to size; marker on the last.
    fn whole_payloads(&mut self, payloads: &[Vec<u8>], ts: u32, keyframe: bool) -> Vec<Vec<u8>> {
        let n = payloads.len();
        let out: Vec<Vec<u8>> =
            payloads.iter().enumerate().filter_map(|(i, p)| self.packet(ts, i + 1 == n, &[p])).collect();
        if !out.is_empty() && keyframe {
            self.keyframes += 1;
        }
        out
    }

    fn packetize_vp9(&mut self, frame: &[u8], ts: u32, info: FrameInfo) -> Vec<Vec<u8>> {
        let parsed = vp9_frame_header(frame);
        let keyframe = info.keyframe.or(parsed.map(|h| h.keyframe)).unwrap_or(false);
        let resolution = info.resolution.or(parsed.and_then(|h| h.resolution));
        let pid = self.picture_id;
        // I=1, P=!keyframe, F=0 (non-flexible); L with temporal layers; B/E patched per
        // packet; V on the first keyframe packet.
        let b0 = 0x80 | if keyframe { 0 } else { 0x40 } | if info.temporal.is_some() { 0x20 } else { 0 };
        let mut rest = vec![b0, 0x80 | (pid >> 8) as u8, pid as u8];
        let tl0 = match info.temporal {
            Some(t) if t.id == 0 => self.tl0_pic_idx.wrapping_add(1),
            _ => self.tl0_pic_idx,
        };
        if let Some(t) = info.temporal {
            // layer indices (TID, U; SID 0, D 0), then TL0PICIDX
            rest.extend_from_slice(&[(t.id.min(7) << 5) | (u8::from(t.sync) << 4), tl0]);
        }
        let mut first = rest.clone();
        first[0] |= 0x08;
        if keyframe {
            if let Some((w, h)) = resolution {
                first[0] |= 0x02;
                // N_S=0 (one spatial layer), Y=1, G=1, then the picture group: each frame of
                // the period with its TID, U and references (P_DIFFs)
                first.push(0x18);
                first.extend_from_slice(&w.to_be_bytes());
                first.extend_from_slice(&h.to_be_bytes());
                let group = vp9_picture_group(info.temporal.map_or(1, |t| t.layers));
                first.push(group.len() as u8);
                for (tid, up, diffs) in group {
                    first.push((tid << 5) | (u8::from(*up) << 4) | ((diffs.len() as u8) << 2));
                    first.extend_from_slice(diffs);
                }
            }
        }
        let mut out = self.fragment(frame, ts, &first, &rest);
        if let Some(last) = out.last_mut() {
            // E bit on the last packet: the descriptor starts right after the RTP header.
            let off = self.header_overhead();
            last[off] |= 0x04;
            self.tl0_pic_idx = tl0;
            self.picture_id = (self.picture_id + 1) & 0x7fff;
            if keyframe {
                self.keyframes += 1;
            }
        }
        out
    }

    /// Splits `frame` into balanced fragments behind the given descriptors.
    fn fragment(&mut self, frame: &[u8], ts: u32, first_desc: &[u8], desc: &[u8]) -> Vec<Vec<u8>> {
        let overhead = self.header_overhead();
        let first_cap = self.mtu.saturating_sub(overhead + first_desc.len());
        let cap = self.mtu.saturating_sub(overhead + desc.len());
        if first_cap == 0 || cap == 0 {
            log::warn!("rtp: mtu {} too small to packetize", self.mtu);
            return Vec::new();
        }
        let len = frame.len();
        let n = if len <= first_cap { 1 } else { 1 + (len - first_cap).div_ceil(cap) };
        // Balanced sizes: the first packet takes its fair share (bounded by its capacity),
        // the rest split the remainder evenly.
        let first_len = if n == 1 { len } else { len.div_ceil(n).min(first_cap) };
        let mut sizes = vec![first_len];
        let remaining = len - first_len;
        if n > 1 {
            let k = n - 1;
            let base = remaining / k;
            let extra = remaining % k;
            for i in 0..k {
                sizes.push(base + usize::from(i >= k - extra));
            }
        }
        let mut out = Vec::with_capacity(n);
        let mut off = 0;
        for (i, size) in sizes.iter().enumerate() {
            let d = if i == 0 { first_desc } else { desc };
            let last = i + 1 == n;
            if let Some(p) = self.packet(ts, last, &[d, &frame[off..off + size]]) {
                out.push(p);
            }
            off += size;
        }
        out
    }

    /// Serializes one packet and advances the sequence number.
    fn packet(&mut self, ts: u32, marker: bool, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let mut header = rtc_rtp::Header {
            version: 2,
            marker,
            payload_type: self.payload_type,
            sequence_number: self.sequence_number,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        if !self.extensions.is_empty() {
            header.extension = true;
            header.extension_profile = ONE_BYTE_PROFILE;
            for (id, v) in &self.extensions {
                header.set_extension(*id, Bytes::copy_from_slice(v)).ok()?;
            }
        }
        let payload: Vec<u8> = parts.concat();
        let pkt = rtc_rtp::Packet { header, payload: Bytes::from(payload) };
        let bytes = pkt.marshal().ok()?;
        self.sequence_number = self.sequence_number.wrapping_add(1);
        Some(bytes.to_vec())
    }
}

/// Sequence number of a serialized RTP packet.
pub fn rtp_sequence_number(packet: &[u8]) -> Option<u16> {
    (packet.len() >= super::RTP_HEADER_LEN).then(|| u16::from_be_bytes([packet[2], packet[3]]))
}

/// Writes abs-send-time (6.18 fixed-point seconds of `ntp`, 24 bits) into the one-byte
/// extension `id` of a serialized packet. Returns false if the packet has no such 3-byte
/// extension.
pub fn stamp_abs_send_time(packet: &mut [u8], id: u8, ntp: u64) -> bool {
    let v = ((ntp >> 14) & 0x00ff_ffff) as u32;
    match find_one_byte_extension(packet, id) {
        Some((off, 3)) => {
            packet[off..off + 3].copy_from_slice(&v.to_be_bytes()[1..]);
            true
        }
        _ => false,
    }
}

/// (offset, length) of a one-byte header extension element's value in a serialized packet.
pub fn find_one_byte_extension(packet: &[u8], id: u8) -> Option<(usize, usize)> {
    if packet.len() < super::RTP_HEADER_LEN || packet[0] & 0x10 == 0 {
        return None;
    }
    let cc = usize::from(packet[0] & 0x0f);
    let start = super::RTP_HEADER_LEN + 4 * cc;
    let hdr = packet.get(start..start + 4)?;
    if u16::from_be_bytes([hdr[0], hdr[1]]) != ONE_BYTE_PROFILE {
        return None;
    }
    let words = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let end = start + 4 + 4 * words;
    if end > packet.len() {
        return None;
    }
    let mut i = start + 4;
    while i < end {
        let b = packet[i];
        if b == 0 {
            i += 1; // padding
            continue;
        }
        let eid = b >> 4;
        if eid == 15 {
            break;
        }
        let len = usize::from(b & 0x0f) + 1;
        if i + 1 + len > end {
            return None;
        }
        if eid == id {
            return Some((i + 1, len));
        }
        i += 1 + len;
    }
    None
}

/// VP9's picture group in non-flexible mode for `layers` temporal layers (RFC 9628's
/// scalability structure): each frame of the period as (TID, U, P_DIFFs). One layer: every
/// frame refers to the one before, as libwebrtc sends a single layer; two and three: libvpx's
/// 0101 and 0212 layering (`media::codec::vpx`), described as libwebrtc describes them.
fn vp9_picture_group(layers: u8) -> &'static [(u8, bool, &'static [u8])] {
    match layers {
        2 => &[(0, false, &[2]), (1, true, &[1])],
        3 => &[(0, false, &[4]), (2, true, &[1]), (1, true, &[2]), (2, false, &[1, 2])],
        _ => &[(0, false, &[1])],
    }
}

/// Facts from the start of a VP9 frame's uncompressed header (VP9 bitstream spec §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vp9FrameHeader {
    pub keyframe: bool,
    pub show_existing_frame: bool,
    pub resolution: Option<(u16, u16)>,
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Some(v)
    }
}

/// Parses the frame type (and, for keyframes, the frame size) of a VP9 frame or superframe
/// (whose first frame decides).
pub fn vp9_frame_header(frame: &[u8]) -> Option<Vp9FrameHeader> {
    let mut r = BitReader { data: frame, pos: 0 };
    if r.bits(2)? != 2 {
        return None; // frame_marker
    }
    let profile_low = r.bits(1)?;
    let profile = (r.bits(1)? << 1) | profile_low;
    if profile == 3 {
        r.bits(1)?; // reserved_zero
    }
    if r.bits(1)? == 1 {
        return Some(Vp9FrameHeader { keyframe: false, show_existing_frame: true, resolution: None });
    }
    let keyframe = r.bits(1)? == 0; // frame_type: 0 = KEY_FRAME
    r.bits(2)?; // show_frame, error_resilient_mode
    if !keyframe {
        return Some(Vp9FrameHeader { keyframe: false, show_existing_frame: false, resolution: None });
    }
    let sync = r.bits(24)?;
    if sync != 0x49_83_42 {
        return None;
    }
    // color_config()
    if profile >= 2 {
        r.bits(1)?; // ten_or_twelve_bit
    }
    let color_space = r.bits(3)?;
    if color_space != 7 {
        r.bits(1)?; // color_range
        if profile == 1 || profile == 3 {
            r.bits(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        r.bits(1)?; // reserved_zero
    }
    let w = r.bits(16)? + 1;
    let h = r.bits(16)? + 1;
    let resolution = (w <= 0xffff && h <= 0xffff).then_some((w as u16, h as u16));
    Some(Vp9FrameHeader { keyframe: true, show_existing_frame: false, resolution })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::rtp::depacketize::{parse_rtp, Vp8Descriptor, Vp9Descriptor};

    /// A synthetic VP9 keyframe header (profile 0, BT.601, `w`x`h`) followed by filler.
    pub(crate) fn vp9_keyframe(w: u16, h: u16, len: usize) -> Vec<u8> {
        // frame_marker=10, profile 0 (00), show_existing=0, frame_type=0, show=1, er=0
        // -> 1000 0010 = 0x82; sync 49 83 42; color_space=2 (3 bits) color_range=0 -> 0100
        // then width-1 (16 bits), height-1 (16 bits).
        let mut bits: Vec<u8> = Vec::new();
        let mut push = |v: u32, n: usize| {
            for i in (0..n).rev() {
                bits.push(((v >> i) & 1) as u8);
            }
        };
        push(0b10, 2);
        push(0, 2);
        push(0, 1);
        push(0, 1);
        push(1, 1);
        push(0, 1);
        push(0x49_83_42, 24);
        push(2, 3);
        push(0, 1);
        push(u32::from(w) - 1, 16);
        push(u32::from(h) - 1, 16);
        while !bits.len().is_multiple_of(8) {
            bits.push(0);
        }
        let mut out: Vec<u8> = bits.chunks(8).map(|c| c.iter().fold(0u8, |a, b| (a << 1) | b)).collect();
        let mut i = 0u32;
        while out.len() < len {
            out.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
            i += 1;
        }
        out
    }

    /// A VP9 inter frame header (frame_type=1) followed by filler.
    pub(crate) fn vp9_delta(len: usize, seed: u8) -> Vec<u8> {
        let mut v = vec![0x86]; // 10 00 0 1 1 0
        v.extend((0..len.saturating_sub(1)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        v
    }

    #[test]
    fn vp9_header_parse() {
        let k = vp9_keyframe(1280, 720, 100);
        assert_eq!(
            vp9_frame_header(&k),
            Some(Vp9FrameHeader { keyframe: true, show_existing_frame: false, resolution: Some((1280, 720)) })
        );
        assert_eq!(vp9_frame_header(&vp9_delta(10, 0)).map(|h| h.keyframe), Some(false));
        assert_eq!(vp9_frame_header(&k[..4]), None);
        assert_eq!(vp9_frame_header(&[0x00]), None);
    }

    /// With temporal layers the descriptor carries TL0PICIDX (one more per TL0 frame, the
    /// same on the frames above it) and TID with the Y bit on every packet of the frame.
    #[test]
    fn vp8_temporal_layers_in_the_descriptor() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp8, 1, 96, 90_000, 600);
        let frame = vec![0x01u8; 1500]; // a delta frame, three packets
        let mut seen = Vec::new();
        for (i, (id, sync)) in [(0, false), (2, true), (1, true), (2, false), (0, false)].into_iter().enumerate() {
            let info = FrameInfo { temporal: Some(TemporalLayer { layers: 3, id, sync }), ..Default::default() };
            let pkts = p.packetize_frame(&frame, i as u32 * 3000, info);
            assert_eq!(pkts.len(), 3);
            for raw in &pkts {
                let r = parse_rtp(raw).unwrap();
                let (d, n) = Vp8Descriptor::parse(&r.payload).unwrap();
                assert_eq!(n, 6);
                assert_eq!((d.temporal_id, d.layer_sync, d.key_idx), (Some(id), sync, None));
                seen.push((id, d.tl0_pic_idx.unwrap(), d.picture_id.unwrap()));
            }
        }
        let tl0: Vec<u8> = seen.iter().step_by(3).map(|s| s.1).collect();
        let first = tl0[0];
        assert_eq!(tl0, [first, first, first, first, first.wrapping_add(1)]);
        let pids: Vec<u16> = seen.iter().step_by(3).map(|s| s.2).collect();
        assert!(pids.windows(2).all(|w| w[1] == (w[0] + 1) & 0x7fff), "{pids:?}");
        // without temporal layers: the 4-byte descriptor, as before
        let r = parse_rtp(&p.packetize(&frame, 99_000)[0]).unwrap();
        assert_eq!(Vp8Descriptor::parse(&r.payload).unwrap().0.temporal_id, None);
    }

    /// VP9 with temporal layers (non-flexible mode): every packet carries the layer indices
    /// (TID, U) and TL0PICIDX, and a keyframe's scalability structure describes the period
    /// (libwebrtc's receivers find each frame's references from it).
    #[test]
    fn vp9_temporal_layers_in_the_descriptor() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp9, 1, 98, 90_000, 1200);
        let mut seen = Vec::new();
        for (i, (id, sync)) in [(0, false), (2, true), (1, true), (2, false), (0, false)].into_iter().enumerate() {
            let (frame, keyframe) = if i == 0 { (vp9_keyframe(640, 360, 2000), true) } else { (vp9_delta(2000, i as u8), false) };
            let info = FrameInfo { keyframe: Some(keyframe), resolution: None, temporal: Some(TemporalLayer { layers: 3, id, sync }) };
            let pkts = p.packetize_frame(&frame, i as u32 * 3000, info);
            assert_eq!(pkts.len(), 2);
            for (k, raw) in pkts.iter().enumerate() {
                let r = parse_rtp(raw).unwrap();
                let (d, _) = Vp9Descriptor::parse(&r.payload).unwrap();
                assert!(!d.flexible);
                assert_eq!((d.temporal_id, d.switching_up, d.spatial_id, d.inter_layer_dependency), (Some(id), sync, Some(0), false));
                assert_eq!(d.ss.is_some(), keyframe && k == 0);
                if let Some(ss) = d.ss {
                    assert_eq!(ss.resolutions, vec![(640, 360)]);
                    assert_eq!(ss.picture_group, vec![(0, false, vec![4]), (2, true, vec![1]), (1, true, vec![2]), (2, false, vec![1, 2])]);
                }
                seen.push((d.tl0_pic_idx.unwrap(), d.picture_id.unwrap()));
            }
        }
        let tl0: Vec<u8> = seen.iter().step_by(2).map(|s| s.0).collect();
        assert_eq!(tl0, [tl0[0], tl0[0], tl0[0], tl0[0], tl0[0].wrapping_add(1)]);
        let pids: Vec<u16> = seen.iter().step_by(2).map(|s| s.1).collect();
        assert!(pids.windows(2).all(|w| w[1] == (w[0] + 1) & 0x7fff), "{pids:?}");
        // L1T2's group
        let info = FrameInfo { keyframe: Some(true), resolution: None, temporal: Some(TemporalLayer { layers: 2, id: 0, sync: false }) };
        let r = parse_rtp(&p.packetize_frame(&vp9_keyframe(64, 48, 10), 99_000, info)[0]).unwrap();
        assert_eq!(Vp9Descriptor::parse(&r.payload).unwrap().0.ss.unwrap().picture_group, vec![(0, false, vec![2]), (1, true, vec![1])]);
    }

    #[test]
    fn vp8_packets_carry_descriptor_and_marker() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp8, 0x1234, 96, 90_000, 1200);
        p.set_next_picture_id(0x7fff);
        let seq0 = p.next_sequence_number();
        let frame: Vec<u8> = (0..5000u32).map(|i| i as u8 & 0xfe).collect(); // keyframe tag
        let pkts = p.packetize(&frame, 3000);
        assert_eq!(pkts.len(), 5);
        for (i, raw) in pkts.iter().enumerate() {
            assert!(raw.len() <= 1200);
            let r = parse_rtp(raw).unwrap();
            assert_eq!(r.sequence_number(), seq0.wrapping_add(i as u16));
            assert_eq!(r.timestamp(), 3000);
            assert_eq!(r.ssrc(), 0x1234);
            assert_eq!(r.payload_type(), 96);
            assert_eq!(r.marker(), i == 4);
            let (d, n) = Vp8Descriptor::parse(&r.payload).unwrap();
            assert_eq!(n, 4);
            assert_eq!(d.picture_id, Some(0x7fff));
            assert!(d.picture_id_15bit);
            assert_eq!(d.start_of_partition, i == 0);
        }
        // Balanced: sizes differ by at most one byte.
        let sizes: Vec<usize> = pkts.iter().map(|p| p.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        assert_eq!(p.frame_counts(), (1, 1));
        // Picture id wraps at 15 bits.
        let pkts = p.packetize(&[0x01, 2, 3], 6000);
        let r = parse_rtp(&pkts[0]).unwrap();
        assert_eq!(Vp8Descriptor::parse(&r.payload).unwrap().0.picture_id, Some(0));
        assert!(r.marker());
        assert_eq!(p.frame_counts(), (2, 1));
    }

    #[test]
    fn vp9_keyframe_has_ss_and_delta_has_p() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp9, 7, 98, 90_000, 1200);
        let pkts = p.packetize(&vp9_keyframe(1280, 720, 3000), 0);
        assert_eq!(pkts.len(), 3);
        for (i, raw) in pkts.iter().enumerate() {
            let r = parse_rtp(raw).unwrap();
            let (d, _) = Vp9Descriptor::parse(&r.payload).unwrap();
            assert!(!d.inter_picture_predicted);
            assert!(!d.flexible);
            assert_eq!(d.begin, i == 0);
            assert_eq!(d.end, i == 2);
            assert_eq!(r.marker(), i == 2);
            assert_eq!(d.ss.is_some(), i == 0);
        }
        let r = parse_rtp(&pkts[0]).unwrap();
        let (d, n) = Vp9Descriptor::parse(&r.payload).unwrap();
        assert_eq!(n, 11);
        let ss = d.ss.unwrap();
        assert_eq!(ss.resolutions, vec![(1280, 720)]);
        assert_eq!(ss.picture_group, vec![(0, false, vec![1])]);
        let pid = d.picture_id.unwrap();
        let pkts = p.packetize(&vp9_delta(500, 1), 3000);
        assert_eq!(pkts.len(), 1);
        let r = parse_rtp(&pkts[0]).unwrap();
        let (d, n) = Vp9Descriptor::parse(&r.payload).unwrap();
        assert_eq!(n, 3);
        assert!(d.inter_picture_predicted && d.begin && d.end && d.ss.is_none());
        assert_eq!(d.picture_id, Some((pid + 1) & 0x7fff));
        // Caller override wins over the bitstream.
        let pkts = p.packetize_frame(&vp9_delta(10, 1), 6000, FrameInfo { keyframe: Some(true), resolution: Some((64, 48)), temporal: None });
        let r = parse_rtp(&pkts[0]).unwrap();
        let (d, _) = Vp9Descriptor::parse(&r.payload).unwrap();
        assert!(!d.inter_picture_predicted);
        assert_eq!(d.ss.unwrap().resolutions, vec![(64, 48)]);
    }

    #[test]
    fn opus_is_one_packet_and_extensions_are_written() {
        let mut p = RtpPacketizer::new(RtpCodec::Opus, 9, 111, 48_000, 1200);
        assert!(p.set_extension(4, b"0"));
        assert!(p.enable_abs_send_time(3));
        assert!(!p.set_extension(15, b"x"));
        let mut pkts = p.packetize(&[1, 2, 3, 4, 5], 960);
        assert_eq!(pkts.len(), 1);
        let r = parse_rtp(&pkts[0]).unwrap();
        assert!(!r.marker());
        assert_eq!(&r.payload[..], &[1, 2, 3, 4, 5]);
        assert_eq!(r.extension(4).as_deref(), Some(&b"0"[..]));
        assert_eq!(r.extension(3).as_deref(), Some(&[0u8, 0, 0][..]));
        // ntp = 1.5 s -> 6.18 fixed point = 1.5 * 2^18 = 0x060000.
        let ntp: u64 = (1u64 << 32) | (1u64 << 31);
        assert!(stamp_abs_send_time(&mut pkts[0], 3, ntp));
        let r = parse_rtp(&pkts[0]).unwrap();
        assert_eq!(r.extension(3).as_deref(), Some(&[0x06u8, 0, 0][..]));
        assert!(!stamp_abs_send_time(&mut pkts[0], 4, ntp));
        assert_eq!(rtp_sequence_number(&pkts[0]), Some(r.sequence_number()));
        assert!(p.packetize(&[], 0).is_empty());
    }

    #[test]
    fn tiny_mtu_gives_nothing_not_panic() {
        let mut p = RtpPacketizer::new(RtpCodec::Vp8, 1, 96, 90_000, 14);
        assert!(p.packetize(&[0u8; 100], 0).is_empty());
        let mut p = RtpPacketizer::new(RtpCodec::Vp9, 1, 96, 90_000, 20);
        assert!(!p.packetize(&vp9_delta(100, 0), 0).is_empty());
        assert!(p.packetize(&vp9_keyframe(64, 64, 100), 0).is_empty());
    }
}
