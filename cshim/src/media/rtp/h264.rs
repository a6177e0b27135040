//! H.264 over RTP (RFC 6184): Annex B access units ↔ RTP payloads.
//!
//! Send: packetization-mode 1 aggregates consecutive small NAL units into STAP-A packets
//! (SPS + PPS + a small slice usually travel together), sends a NAL unit that fits alone as
//! a single NAL unit packet and splits a larger one into balanced FU-A fragments.
//! packetization-mode 0 only sends single NAL unit packets (the encoder then limits its
//! slice size); a NAL unit that does not fit is dropped with a warning.
//!
//! Receive: every payload becomes Annex B bytes (start code + NAL unit, or the bare
//! continuation of an FU-A), so an access unit is the concatenation of its packets. A
//! packet starts an access unit when its first NAL unit is an AUD, SPS, PPS or SEI, or the
//! first slice of a picture (first_mb_in_slice = 0, the slice header's first bit set).
//! STAP-B, MTAP and FU-B (interleaved mode, which WebRTC never uses) are refused.

/// NAL unit types used here.
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

use super::annexb::{balanced_chunks, length_prefixed, split as split_annexb, START_CODE};

/// Splits an access unit into RTP payloads that each fit `max_payload` bytes.
pub fn payloads(au: &[u8], max_payload: usize, single_nal_mode: bool) -> Vec<Vec<u8>> {
    let nals = split_annexb(au);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let max_payload = max_payload.max(3);
    let mut i = 0;
    while i < nals.len() {
        let nal = nals[i];
        if single_nal_mode {
            if nal.len() <= max_payload {
                out.push(nal.to_vec());
            } else {
                log::warn!("H.264 NAL unit of {} bytes does not fit one packet in packetization-mode 0; dropped", nal.len());
            }
            i += 1;
            continue;
        }
        // STAP-A: this and following units while they fit (1 header byte + 2 per unit).
        let mut size = 1 + 2 + nal.len();
        let mut j = i + 1;
        while j < nals.len() && size + 2 + nals[j].len() <= max_payload {
            size += 2 + nals[j].len();
            j += 1;
        }
        if j - i >= 2 {
            let group = &nals[i..j];
            let f = group.iter().fold(0, |a, n| a | (n[0] & 0x80));
            let nri = group.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
            let mut p = Vec::with_capacity(size);
            p.push(f | nri | STAP_A);
            for n in group {
                p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                p.extend_from_slice(n);
            }
            out.push(p);
            i = j;
            continue;
        }
        if nal.len() <= max_payload {
            out.push(nal.to_vec());
        } else {
            // FU-A: indicator (F, NRI, 28) + header (S, E, type), then balanced fragments of
            // the unit without its header byte.
            let chunks = balanced_chunks(&nal[1..], max_payload - 2);
            let count = chunks.len();
            for (k, chunk) in chunks.into_iter().enumerate() {
                let mut p = Vec::with_capacity(2 + chunk.len());
                p.push((nal[0] & 0xe0) | FU_A);
                let se = if k == 0 { 0x80 } else { 0 } | if k == count - 1 { 0x40 } else { 0 };
                p.push(se | (nal[0] & 0x1f));
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        i += 1;
    }
    out
}

/// Whether a NAL unit (with its header byte and at least the next byte) begins an access
/// unit: an AUD, SPS, PPS or SEI, or the first slice of a picture.
fn starts_access_unit(nal_type: u8, after_header: Option<u8>) -> bool {
    match nal_type {
        NAL_AUD | NAL_SPS | NAL_PPS | NAL_SEI => true,
        1..=5 => after_header.is_some_and(|b| b & 0x80 != 0), // first_mb_in_slice = ue(0) = '1'
        _ => false,
    }
}

/// What the receiver needs to know about one H.264 RTP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H264PayloadInfo {
    pub frame_begin: bool,
    /// The payload carries an IDR slice or an SPS (a keyframe's parts).
    pub keyframe: bool,
    /// The payload carries an SPS (what an IDR needs before it).
    pub parameter_sets: bool,
}

/// Parses one RTP payload; `None` for malformed or unsupported (interleaved) payloads.
pub fn payload_info(p: &[u8]) -> Option<H264PayloadInfo> {
    let header = *p.first()?;
    if header & 0x80 != 0 {
        return None; // forbidden_zero_bit
    }
    let key = |t: u8| t == NAL_IDR || t == NAL_SPS;
    match header & 0x1f {
        t @ 1..=23 => Some(H264PayloadInfo {
            frame_begin: starts_access_unit(t, p.get(1).copied()),
            keyframe: key(t),
            parameter_sets: t == NAL_SPS,
        }),
        STAP_A => {
            let units = stap_units(&p[1..])?;
            let first = units[0];
            let begin = starts_access_unit(first[0] & 0x1f, first.get(1).copied());
            Some(H264PayloadInfo {
                frame_begin: begin,
                keyframe: units.iter().any(|u| key(u[0] & 0x1f)),
                parameter_sets: units.iter().any(|u| u[0] & 0x1f == NAL_SPS),
            })
        }
        FU_A => {
            let fu = *p.get(1)?;
            if p.len() < 3 || fu & 0xc0 == 0xc0 {
                return None; // no data, or start and end at once
            }
            let t = fu & 0x1f;
            let start = fu & 0x80 != 0;
            Some(H264PayloadInfo {
                frame_begin: start && starts_access_unit(t, p.get(2).copied()),
                keyframe: start && key(t),
                parameter_sets: start && t == NAL_SPS,
            })
        }
        _ => None,
    }
}

/// The units of a STAP-A body (after its header byte); `None` when a length overruns, a unit
/// is empty or there is none.
fn stap_units(body: &[u8]) -> Option<Vec<&[u8]>> {
    let units = length_prefixed(body)?;
    (!units.is_empty() && units.iter().all(|u| !u.is_empty())).then_some(units)
}

/// Appends the Annex B form of one RTP payload to `out`; `None` if malformed.
pub fn to_annexb(p: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let header = *p.first()?;
    match header & 0x1f {
        1..=23 => {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(p);
        }
        STAP_A => {
            for u in stap_units(&p[1..])? {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(u);
            }
        }
        FU_A => {
            let fu = *p.get(1)?;
            if p.len() < 3 {
                return None;
            }
            if fu & 0x80 != 0 {
                out.extend_from_slice(&START_CODE);
                out.push((header & 0xe0) | (fu & 0x1f));
            }
            out.extend_from_slice(&p[2..]);
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nal(t: u8, nri: u8, len: usize, first_mb0: bool) -> Vec<u8> {
        let mut n = vec![(nri << 5) | t];
        n.push(if first_mb0 { 0x88 } else { 0x08 });
        n.extend((0..len.saturating_sub(2)).map(|i| (i * 7 + 3) as u8 | 1));
        n
    }

    fn annexb(nals: &[Vec<u8>]) -> Vec<u8> {
        let mut v = Vec::new();
        for (k, n) in nals.iter().enumerate() {
            // Mixed start code lengths, as encoders write them.
            v.extend_from_slice(if k % 2 == 0 { &START_CODE[..] } else { &START_CODE[1..] });
            v.extend_from_slice(n);
        }
        v
    }

    fn depacketize(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            to_annexb(p, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn keyframe_round_trip_stap_a_and_fu_a() {
        let au = vec![nal(7, 3, 12, false), nal(8, 3, 4, false), nal(5, 3, 5000, true)];
        let ps = payloads(&annexb(&au), 1200, false);
        assert_eq!(ps[0][0] & 0x1f, STAP_A, "SPS and PPS aggregated");
        assert!(ps[1..].iter().all(|p| p[0] & 0x1f == FU_A && p.len() <= 1200));
        assert_eq!(ps.len(), 1 + 5);
        let sizes: Vec<usize> = ps[1..].iter().map(Vec::len).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "balanced: {sizes:?}");
        let infos: Vec<_> = ps.iter().map(|p| payload_info(p).unwrap()).collect();
        assert!(infos[0].frame_begin && infos[0].keyframe);
        // The IDR's first slice could begin a picture too (what a receiver that lost the
        // parameter sets resumes on).
        assert!(infos[1].keyframe && infos[1].frame_begin);
        assert!(!infos[2].keyframe && !infos[2].frame_begin);
        let back = depacketize(&ps);
        assert_eq!(split_annexb(&back), au.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn delta_frames_and_single_nal_mode() {
        let au = vec![nal(1, 2, 300, true), nal(1, 2, 300, false)];
        let ps = payloads(&annexb(&au), 1200, false);
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0][0], (2 << 5) | STAP_A);
        let info = payload_info(&ps[0]).unwrap();
        assert!(info.frame_begin && !info.keyframe);
        let ps = payloads(&annexb(&au), 1200, true);
        assert_eq!(ps.len(), 2);
        assert!(payload_info(&ps[0]).unwrap().frame_begin);
        assert!(!payload_info(&ps[1]).unwrap().frame_begin, "second slice of the picture");
        assert_eq!(split_annexb(&depacketize(&ps)), au.iter().map(Vec::as_slice).collect::<Vec<_>>());
        // Too big for one packet in mode 0: dropped, not fragmented.
        assert!(payloads(&annexb(&[nal(5, 3, 3000, true)]), 1200, true).is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for p in [
            &[][..],
            &[0x80 | 1, 0x88][..],           // forbidden bit
            &[STAP_A][..],                   // empty STAP-A
            &[STAP_A, 0, 5, 0x65, 1][..],    // length overruns
            &[STAP_A, 0, 0][..],             // empty unit
            &[FU_A, 0x85][..],               // FU-A without data
            &[FU_A, 0xc5, 1][..],            // start and end at once
            &[25, 0, 0][..],                 // STAP-B
            &[29, 0x85, 1][..],              // FU-B
            &[0, 1][..],                     // type 0
        ] {
            assert!(payload_info(p).is_none(), "{p:?}");
        }
        assert!(to_annexb(&[STAP_A, 0, 9, 1], &mut Vec::new()).is_none());
    }
}
