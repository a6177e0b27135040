//! Receive side parsing: RTP headers (via `rtc-rtp`) and the VP8 (RFC 7741) / VP9 (RFC 9628)
//! payload descriptors. Every parser returns `None` on truncated or inconsistent input and
//! never panics.

use bytes::Bytes;
use rtc_shared::marshal::Unmarshal;

use super::RtpCodec;

/// One parsed RTP packet. `payload` excludes padding.
#[derive(Clone, Debug)]
pub struct ParsedRtp {
    pub header: rtc_rtp::Header,
    pub payload: Bytes,
    /// Bytes on the wire that are not payload (header, CSRCs, extensions, padding).
    pub overhead: usize,
}

impl ParsedRtp {
    pub fn ssrc(&self) -> u32 {
        self.header.ssrc
    }
    pub fn sequence_number(&self) -> u16 {
        self.header.sequence_number
    }
    pub fn timestamp(&self) -> u32 {
        self.header.timestamp
    }
    pub fn marker(&self) -> bool {
        self.header.marker
    }
    pub fn payload_type(&self) -> u8 {
        self.header.payload_type
    }
    /// Value of a one-/two-byte header extension (RFC 8285) with this id.
    pub fn extension(&self, id: u8) -> Option<Bytes> {
        self.header.get_extension(id)
    }
}

/// Parses an RTP packet; `None` for anything that is not RTP version 2 or is truncated.
pub fn parse_rtp(packet: &[u8]) -> Option<ParsedRtp> {
    if packet.len() < super::RTP_HEADER_LEN || packet[0] >> 6 != 2 {
        return None;
    }
    let mut buf = packet;
    let pkt = rtc_rtp::Packet::unmarshal(&mut buf).ok()?;
    if pkt.header.version != 2 {
        return None;
    }
    let overhead = packet.len().checked_sub(pkt.payload.len())?;
    Some(ParsedRtp { header: pkt.header, payload: pkt.payload, overhead })
}

/// VP8 payload descriptor (RFC 7741 §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vp8Descriptor {
    pub non_reference: bool,
    pub start_of_partition: bool,
    pub partition_id: u8,
    pub picture_id: Option<u16>,
    /// Whether `picture_id` used the 15-bit (M=1) form.
    pub picture_id_15bit: bool,
    pub tl0_pic_idx: Option<u8>,
    pub temporal_id: Option<u8>,
    pub layer_sync: bool,
    pub key_idx: Option<u8>,
}

/// The picture ID at `p[*i]`, as VP8 and VP9 descriptors both write it: 7 bits, or 15 when
/// the first byte's M bit is set. Returns (id, whether 15-bit) and advances `i`.
fn read_picture_id(p: &[u8], i: &mut usize) -> Option<(u16, bool)> {
    let b = *p.get(*i)?;
    *i += 1;
    if b & 0x80 == 0 {
        return Some((u16::from(b), false));
    }
    let lo = *p.get(*i)?;
    *i += 1;
    Some(((u16::from(b & 0x7f) << 8) | u16::from(lo), true))
}

impl Vp8Descriptor {
    /// Parses the descriptor; returns it and its length. Fails when no VP8 payload follows.
    pub fn parse(p: &[u8]) -> Option<(Self, usize)> {
        let b0 = *p.first()?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_id: b0 & 0x07,
            ..Default::default()
        };
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let x = *p.get(i)?;
            i += 1;
            if x & 0x80 != 0 {
                let (id, long) = read_picture_id(p, &mut i)?;
                d.picture_id = Some(id);
                d.picture_id_15bit = long;
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(*p.get(i)?);
                i += 1;
            }
            if x & 0x30 != 0 {
                let b = *p.get(i)?;
                i += 1;
                if x & 0x20 != 0 {
                    d.temporal_id = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(b & 0x1f);
                }
            }
        }
        if i >= p.len() {
            return None;
        }
        Some((d, i))
    }

    /// First packet of a frame: S=1 and partition 0.
    pub fn is_frame_begin(&self) -> bool {
        self.start_of_partition && self.partition_id == 0
    }
}

/// VP9 scalability structure (RFC 9628 §4.2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vp9ScalabilityStructure {
    /// (width, height) per spatial layer, when Y=1.
    pub resolutions: Vec<(u16, u16)>,
    pub spatial_layers: u8,
    /// Picture group: (temporal id, switching point, p_diffs).
    pub picture_group: Vec<(u8, bool, Vec<u8>)>,
}

/// VP9 payload descriptor (RFC 9628 §4.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vp9Descriptor {
    pub inter_picture_predicted: bool,
    pub flexible: bool,
    pub begin: bool,
    pub end: bool,
    pub not_upper_reference: bool,
    pub picture_id: Option<u16>,
    pub picture_id_15bit: bool,
    pub temporal_id: Option<u8>,
    pub switching_up: bool,
    pub spatial_id: Option<u8>,
    pub inter_layer_dependency: bool,
    pub tl0_pic_idx: Option<u8>,
    pub p_diffs: Vec<u8>,
    pub ss: Option<Vp9ScalabilityStructure>,
}

impl Vp9Descriptor {
    /// Parses the descriptor; returns it and its length. Fails when no VP9 payload follows.
    pub fn parse(p: &[u8]) -> Option<(Self, usize)> {
        let b0 = *p.first()?;
        let mut d = Vp9Descriptor {
            inter_picture_predicted: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            begin: b0 & 0x08 != 0,
            end: b0 & 0x04 != 0,
            not_upper_reference: b0 & 0x01 != 0,
            ..Default::default()
        };
        let (has_i, has_l, has_v) = (b0 & 0x80 != 0, b0 & 0x20 != 0, b0 & 0x02 != 0);
        let mut i = 1;
        if has_i {
            let (id, long) = read_picture_id(p, &mut i)?;
            d.picture_id = Some(id);
            d.picture_id_15bit = long;
        }
        if has_l {
            let b = *p.get(i)?;
            i += 1;
            d.temporal_id = Some(b >> 5);
            d.switching_up = b & 0x10 != 0;
            d.spatial_id = Some((b >> 1) & 0x07);
            d.inter_layer_dependency = b & 0x01 != 0;
            if !d.flexible {
                d.tl0_pic_idx = Some(*p.get(i)?);
                i += 1;
            }
        }
        if d.flexible && d.inter_picture_predicted {
            loop {
                let b = *p.get(i)?;
                i += 1;
                d.p_diffs.push(b >> 1);
                if b & 0x01 == 0 {
                    break;
                }
                if d.p_diffs.len() >= 3 {
                    return None; // at most 3 references
                }
            }
        }
        if has_v {
            let b = *p.get(i)?;
            i += 1;
            let n_s = (b >> 5) + 1;
            let mut ss = Vp9ScalabilityStructure { spatial_layers: n_s, ..Default::default() };
            if b & 0x10 != 0 {
                for _ in 0..n_s {
                    let r = p.get(i..i + 4)?;
                    i += 4;
                    ss.resolutions.push((
                        u16::from_be_bytes([r[0], r[1]]),
                        u16::from_be_bytes([r[2], r[3]]),
                    ));
                }
            }
            if b & 0x08 != 0 {
                let n_g = *p.get(i)?;
                i += 1;
                for _ in 0..n_g {
                    let g = *p.get(i)?;
                    i += 1;
                    let r = usize::from((g >> 2) & 0x03);
                    let diffs = p.get(i..i + r)?.to_vec();
                    i += r;
                    ss.picture_group.push((g >> 5, g & 0x10 != 0, diffs));
                }
            }
            d.ss = Some(ss);
        }
        if i >= p.len() {
            return None;
        }
        Some((d, i))
    }

    /// First packet of a picture: B=1 in the base spatial layer (or no layer info).
    pub fn is_frame_begin(&self) -> bool {
        self.begin && self.spatial_id.unwrap_or(0) == 0
    }

    /// Keyframe: a picture start that is not inter-picture predicted.
    pub fn is_keyframe_begin(&self) -> bool {
        self.is_frame_begin() && !self.inter_picture_predicted
    }
}

/// What the frame assembler needs to know about one packet's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadInfo {
    /// Length of the codec's payload descriptor at the start of the RTP payload.
    pub header_len: usize,
    /// First packet of a frame (picture).
    pub frame_begin: bool,
    /// First packet of a keyframe (meaningful only when `frame_begin`; audio: always true;
    /// H.264: the packet carries an SPS or IDR slice).
    pub keyframe: bool,
    pub picture_id: Option<u16>,
    /// H.264/H.265: the packet carries a sequence parameter set.
    pub parameter_sets: bool,
}

/// Parses the codec-specific part of an RTP payload. `None`: empty or malformed.
pub fn payload_info(codec: RtpCodec, payload: &[u8]) -> Option<PayloadInfo> {
    match codec {
        RtpCodec::Opus => {
            if payload.is_empty() {
                return None;
            }
            Some(PayloadInfo { header_len: 0, frame_begin: true, keyframe: true, picture_id: None, parameter_sets: false })
        }
        RtpCodec::Vp8 => {
            let (d, n) = Vp8Descriptor::parse(payload)?;
            let begin = d.is_frame_begin();
            // VP8 frame tag: bit 0 of the first byte is 0 for a key frame (RFC 6386 §9.1).
            let keyframe = begin && payload[n] & 0x01 == 0;
            Some(PayloadInfo { header_len: n, frame_begin: begin, keyframe, picture_id: d.picture_id, parameter_sets: false })
        }
        RtpCodec::Av1 => {
            // Whole payloads are kept: the temporal unit is rebuilt at release (av1::depacketize).
            let info = super::av1::payload_info(payload)?;
            Some(PayloadInfo { header_len: 0, frame_begin: info.frame_begin, keyframe: info.keyframe, picture_id: None, parameter_sets: false })
        }
        RtpCodec::H264 => {
            // The payload is rewritten to Annex B by the receiver (h264::to_annexb).
            let info = super::h264::payload_info(payload)?;
            let (frame_begin, keyframe, parameter_sets) = (info.frame_begin, info.keyframe, info.parameter_sets);
            Some(PayloadInfo { header_len: 0, frame_begin, keyframe, picture_id: None, parameter_sets })
        }
        RtpCodec::H265 => {
            let info = super::h265::payload_info(payload)?;
            let (frame_begin, keyframe, parameter_sets) = (info.frame_begin, info.keyframe, info.parameter_sets);
            Some(PayloadInfo { header_len: 0, frame_begin, keyframe, picture_id: None, parameter_sets })
        }
        RtpCodec::Vp9 => {
            let (d, n) = Vp9Descriptor::parse(payload)?;
            Some(PayloadInfo {
                header_len: n,
                frame_begin: d.is_frame_begin(),
                keyframe: d.is_keyframe_begin(),
                picture_id: d.picture_id,
                parameter_sets: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_descriptor_forms() {
        // X=1,S=1; I=1,L=1,T=1; M=1 pid=0x1234; tl0=7; tid=2,Y=1,keyidx=0 ; payload 0x9c
        let p = [0x90, 0xe0, 0x92, 0x34, 0x07, 0xa0, 0x9c];
        let (d, n) = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(n, 6);
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.picture_id_15bit);
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.layer_sync);
        assert!(d.is_frame_begin());
        // Minimal descriptor, 7-bit picture id.
        let (d, n) = Vp8Descriptor::parse(&[0x80, 0x80, 0x05, 0x01]).unwrap();
        assert_eq!((n, d.picture_id, d.start_of_partition), (3, Some(5), false));
        assert_eq!(Vp8Descriptor::parse(&[0x10, 0x00]).unwrap().1, 1);
        // Truncated / no payload.
        assert!(Vp8Descriptor::parse(&[0x90, 0x80, 0x92]).is_none());
        assert!(Vp8Descriptor::parse(&[0x10]).is_none());
        assert!(Vp8Descriptor::parse(&[]).is_none());
        // Key frame detection from the frame tag.
        let info = payload_info(RtpCodec::Vp8, &[0x10, 0x00]).unwrap();
        assert!(info.frame_begin && info.keyframe);
        let info = payload_info(RtpCodec::Vp8, &[0x10, 0x01]).unwrap();
        assert!(info.frame_begin && !info.keyframe);
    }

    #[test]
    fn vp9_descriptor_forms() {
        // Flexible, P=1 with three p_diffs, L present.
        let p = [0xf8, 0x81, 0x00, 0x22, 0x03, 0x05, 0x06, 0xaa];
        let (d, n) = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(n, 7);
        assert_eq!(d.p_diffs, vec![1, 2, 3]);
        assert_eq!(d.picture_id, Some(0x100));
        assert_eq!(d.temporal_id, Some(1));
        assert_eq!(d.spatial_id, Some(1));
        assert!(!d.is_frame_begin()); // upper spatial layer
        // Four p_diffs is malformed.
        assert!(Vp9Descriptor::parse(&[0xd8, 0x01, 0x03, 0x05, 0x07, 0x09, 0xaa]).is_none());
        // Non-flexible keyframe start with SS (1 layer, 1280x720, one-entry PG).
        let p = [0x8a, 0x80, 0x01, 0x18, 0x05, 0x00, 0x02, 0xd0, 0x01, 0x04, 0x01, 0xaa];
        let (d, n) = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(n, 11);
        let ss = d.ss.clone().unwrap();
        assert_eq!(ss.resolutions, vec![(1280, 720)]);
        assert_eq!(ss.picture_group, vec![(0, false, vec![1])]);
        assert!(d.is_keyframe_begin());
        assert!(Vp9Descriptor::parse(&p[..8]).is_none());
    }

    #[test]
    fn rtp_parse_rejects_garbage() {
        assert!(parse_rtp(&[0x80; 11]).is_none());
        assert!(parse_rtp(&[0x40; 20]).is_none()); // version 1
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xaa, 0xbb];
        let r = parse_rtp(&p).unwrap();
        assert_eq!((r.sequence_number(), r.timestamp(), r.ssrc()), (1, 2, 3));
        assert_eq!(&r.payload[..], &[0xaa, 0xbb]);
        assert_eq!(r.overhead, 12);
        // Padding bit with a padding length beyond the payload.
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 9;
        assert!(parse_rtp(&p).is_none());
    }
}
