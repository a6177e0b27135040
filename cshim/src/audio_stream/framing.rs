//! What goes into an audio streaming request body: the Opus payload of each RTP packet as
//! received (no RTP header), either back to back or, with the header option, each after 20
//! bytes big-endian: arrival time (u64, Unix µs), sequence number (u64), payload length
//! (u32) — Sora's `audio_streaming_header` layout (../shared/sora-protocol.md §7).
use crate::media::rtp::depacketize::parse_rtp;
use crate::media::rtp::seq::SeqUnwrapper;
use bytes::{BufMut, Bytes, BytesMut};

pub const HEADER_LEN: usize = 20;

/// Turns RTP packets into body chunks; one per stream (it numbers the packets).
pub struct Framer {
    framed: bool,
    seq: SeqUnwrapper,
}

impl Framer {
    pub fn new(framed: bool) -> Self {
        Framer { framed, seq: SeqUnwrapper::new() }
    }

    /// The body chunk for one RTP packet received at `unix_us`; None for what carries no
    /// audio (not RTP, truncated, padding only).
    pub fn chunk(&mut self, packet: &[u8], unix_us: u64) -> Option<Bytes> {
        let rtp = parse_rtp(packet)?;
        if rtp.payload.is_empty() {
            return None;
        }
        if !self.framed {
            return Some(rtp.payload);
        }
        // The RTP sequence number, unwrapped: monotonic, and a gap shows a loss.
        let seq = self.seq.unwrap(rtp.sequence_number()).max(0) as u64;
        let mut b = BytesMut::with_capacity(HEADER_LEN + rtp.payload.len());
        b.put_u64(unix_us);
        b.put_u64(seq);
        b.put_u32(rtp.payload.len() as u32);
        b.put_slice(&rtp.payload);
        Some(b.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8], padding: u8) -> Vec<u8> {
        let mut p = vec![0x80 | if padding > 0 { 0x20 } else { 0 }, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&0xabcdu32.to_be_bytes());
        p.extend_from_slice(payload);
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, padding as usize - 1));
            p.push(padding);
        }
        p
    }

    #[test]
    fn unframed_chunks_are_the_payloads_without_padding() {
        let mut f = Framer::new(false);
        assert_eq!(f.chunk(&rtp(1, &[0xfc, 1, 2], 4), 5).unwrap().as_ref(), &[0xfc, 1, 2]);
        assert!(f.chunk(&rtp(2, &[], 4), 5).is_none(), "padding only");
        assert!(f.chunk(&[0x80, 111, 0, 1], 5).is_none(), "truncated");
        assert!(f.chunk(&[0u8; 40], 5).is_none(), "not RTP version 2");
    }

    #[test]
    fn framed_chunks_carry_time_unwrapped_sequence_and_length() {
        let mut f = Framer::new(true);
        let a = f.chunk(&rtp(65535, &[7, 8, 9], 0), 1_700_000_000_000_001).unwrap();
        let b = f.chunk(&rtp(1, &[6], 0), 1_700_000_000_020_000).unwrap();
        assert_eq!(a.len(), HEADER_LEN + 3);
        assert_eq!(u64::from_be_bytes(a[0..8].try_into().unwrap()), 1_700_000_000_000_001);
        assert_eq!(u64::from_be_bytes(a[8..16].try_into().unwrap()), 65535);
        assert_eq!(u32::from_be_bytes(a[16..20].try_into().unwrap()), 3);
        assert_eq!(&a[20..], &[7, 8, 9]);
        // across the wrap, one packet (0) lost: 65535 → 65537
        assert_eq!(u64::from_be_bytes(b[8..16].try_into().unwrap()), 65537);
        assert_eq!(&b[20..], &[6]);
    }
}
