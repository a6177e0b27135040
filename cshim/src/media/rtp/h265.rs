//! H.265 over RTP (RFC 7798): Annex B access units ↔ RTP payloads.
//!
//! Every NAL unit starts with a two-byte header: F (1 bit), type (6), LayerId (6), TID (3).
//! Send: consecutive small NAL units travel together in an aggregation packet (AP, type 48),
//! a unit that fits alone is a single NAL unit packet, a larger one is split into balanced
//! fragmentation units (FU, type 49). WebRTC never signals sprop-max-don-diff, so no packet
//! carries DONL/DOND fields.
//!
//! Receive: as for H.264, every payload becomes Annex B bytes (start code + NAL unit, or the
//! bare continuation of an FU), so an access unit is the concatenation of its packets. A
//! packet begins an access unit when its first NAL unit is a VPS, SPS, PPS, AUD or prefix
//! SEI, or the first slice segment of a picture (first_slice_segment_in_pic_flag, the first
//! bit after the header). PACI packets (type 50) and the unspecified types 51-63 are refused.

use super::annexb::{balanced_chunks, length_prefixed, split as split_annexb, START_CODE};

const NAL_VPS: u8 = 32;
const NAL_SPS: u8 = 33;
const NAL_PPS: u8 = 34;
const NAL_AUD: u8 = 35;
const NAL_PREFIX_SEI: u8 = 39;
const AP: u8 = 48;
const FU: u8 = 49;

/// A NAL unit (or payload) header's type.
fn nal_type(header0: u8) -> u8 {
    (header0 >> 1) & 0x3f
}

/// LayerId and TID of a two-byte header, as one comparable number (LayerId first).
fn layer_tid(h: &[u8]) -> (u8, u8) {
    (((h[0] & 1) << 5) | (h[1] >> 3), h[1] & 7)
}

/// A two-byte header with `t` as its type and `f`, LayerId and TID as given.
fn header(f: bool, t: u8, layer: u8, tid: u8) -> [u8; 2] {
    [(u8::from(f) << 7) | (t << 1) | (layer >> 5), ((layer & 0x1f) << 3) | tid]
}

/// A valid NAL unit: two header bytes, forbidden bit clear, TID (nuh_temporal_id_plus1) set.
fn valid_unit(n: &[u8]) -> bool {
    n.len() >= 2 && n[0] & 0x80 == 0 && n[1] & 7 != 0
}

/// A random access point or parameter set: what a keyframe is made of.
fn is_key_part(t: u8) -> bool {
    matches!(t, 16..=23 | NAL_VPS | NAL_SPS)
}

/// Whether a NAL unit of type `t`, followed by `after_header`, begins an access unit.
fn starts_access_unit(t: u8, after_header: Option<u8>) -> bool {
    match t {
        NAL_VPS | NAL_SPS | NAL_PPS | NAL_AUD | NAL_PREFIX_SEI => true,
        0..=31 => after_header.is_some_and(|b| b & 0x80 != 0), // first_slice_segment_in_pic_flag
        _ => false,
    }
}

/// Splits an access unit into RTP payloads that each fit `max_payload` bytes. Malformed NAL
/// units (bad header) are dropped with a warning.
pub fn payloads(au: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
    let nals: Vec<&[u8]> = split_annexb(au)
        .into_iter()
        .filter(|n| {
            let ok = valid_unit(n);
            if !ok {
                log::warn!("H.265 NAL unit with a bad header ({} bytes) not sent", n.len());
            }
            ok
        })
        .collect();
    let max_payload = max_payload.max(4);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    while i < nals.len() {
        let nal = nals[i];
        // AP: this and following units while they fit (2 header bytes + 2 per unit).
        let mut size = 2 + 2 + nal.len();
        let mut j = i + 1;
        while j < nals.len() && size + 2 + nals[j].len() <= max_payload {
            size += 2 + nals[j].len();
            j += 1;
        }
        if j - i >= 2 {
            let group = &nals[i..j];
            let f = group.iter().any(|n| n[0] & 0x80 != 0);
            let layer = group.iter().map(|n| layer_tid(n).0).min().unwrap_or(0);
            let tid = group.iter().map(|n| layer_tid(n).1).min().unwrap_or(1);
            let mut p = Vec::with_capacity(size);
            p.extend_from_slice(&header(f, AP, layer, tid));
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
            // FU: payload header (type 49, the unit's F/LayerId/TID) + FU header (S, E, type),
            // then balanced fragments of the unit without its two header bytes.
            let (layer, tid) = layer_tid(nal);
            let ph = header(nal[0] & 0x80 != 0, FU, layer, tid);
            let chunks = balanced_chunks(&nal[2..], max_payload - 3);
            let count = chunks.len();
            for (k, chunk) in chunks.into_iter().enumerate() {
                let mut p = Vec::with_capacity(3 + chunk.len());
                p.extend_from_slice(&ph);
                let se = if k == 0 { 0x80 } else { 0 } | if k == count - 1 { 0x40 } else { 0 };
                p.push(se | nal_type(nal[0]));
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        i += 1;
    }
    out
}

/// Whether an access unit holds a random access slice (IRAP: BLA, IDR or CRA).
pub fn is_keyframe(au: &[u8]) -> bool {
    split_annexb(au).iter().any(|n| valid_unit(n) && (16..=23).contains(&nal_type(n[0])))
}

/// What the receiver needs to know about one H.265 RTP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H265PayloadInfo {
    pub frame_begin: bool,
    /// The payload carries a VPS, an SPS or an IRAP slice (a keyframe's parts).
    pub keyframe: bool,
    /// The payload carries an SPS (what an IRAP picture needs before it).
    pub parameter_sets: bool,
}

/// Parses one RTP payload; `None` for malformed or unsupported (PACI) payloads.
pub fn payload_info(p: &[u8]) -> Option<H265PayloadInfo> {
    if !valid_unit(p) {
        return None;
    }
    match nal_type(p[0]) {
        t @ 0..=47 => Some(H265PayloadInfo {
            frame_begin: starts_access_unit(t, p.get(2).copied()),
            keyframe: is_key_part(t),
            parameter_sets: t == NAL_SPS,
        }),
        AP => {
            let units = ap_units(&p[2..])?;
            let first = units[0];
            Some(H265PayloadInfo {
                frame_begin: starts_access_unit(nal_type(first[0]), first.get(2).copied()),
                keyframe: units.iter().any(|u| is_key_part(nal_type(u[0]))),
                parameter_sets: units.iter().any(|u| nal_type(u[0]) == NAL_SPS),
            })
        }
        FU => {
            let fu = *p.get(2)?;
            let t = fu & 0x3f;
            if p.len() < 4 || fu & 0xc0 == 0xc0 || t == AP || t == FU {
                return None; // no data, start and end at once, or an FU of an AP/FU
            }
            let start = fu & 0x80 != 0;
            Some(H265PayloadInfo {
                frame_begin: start && starts_access_unit(t, p.get(3).copied()),
                keyframe: start && is_key_part(t),
                parameter_sets: start && t == NAL_SPS,
            })
        }
        _ => None,
    }
}

/// The units of an AP body (after its header); `None` when a length overruns, a unit is
/// invalid (shorter than its header, forbidden bit, TID 0), or there are fewer than two.
fn ap_units(body: &[u8]) -> Option<Vec<&[u8]>> {
    let units = length_prefixed(body)?;
    (units.len() >= 2 && units.iter().all(|u| valid_unit(u))).then_some(units)
}

/// Appends the Annex B form of one RTP payload to `out`; `None` if malformed.
pub fn to_annexb(p: &[u8], out: &mut Vec<u8>) -> Option<()> {
    payload_info(p)?;
    match nal_type(p[0]) {
        0..=47 => {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(p);
        }
        AP => {
            for u in ap_units(&p[2..])? {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(u);
            }
        }
        FU => {
            let fu = p[2];
            if fu & 0x80 != 0 {
                out.extend_from_slice(&START_CODE);
                out.push((p[0] & 0x81) | ((fu & 0x3f) << 1));
                out.push(p[1]);
            }
            out.extend_from_slice(&p[3..]);
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NAL unit of type `t` (LayerId 0, TID 1), `len` bytes long, first slice of a picture
    /// (for VCL types) when `first`.
    fn nal(t: u8, len: usize, first: bool) -> Vec<u8> {
        let mut n = header(false, t, 0, 1).to_vec();
        n.push(if first { 0xa0 } else { 0x20 });
        n.extend((0..len.saturating_sub(3)).map(|i| (i * 13 + 5) as u8 | 1));
        n
    }

    fn annexb(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter().flat_map(|n| START_CODE.iter().chain(n.iter()).copied()).collect()
    }

    fn depacketize(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            to_annexb(p, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn keyframe_round_trip_ap_and_fu() {
        // VPS, SPS, PPS, then an IDR_W_RADL (19) slice of 5000 bytes.
        let au = vec![nal(32, 24, false), nal(33, 40, false), nal(34, 8, false), nal(19, 5000, true)];
        let bytes = annexb(&au);
        let ps = payloads(&bytes, 1200);
        assert_eq!(nal_type(ps[0][0]), AP, "parameter sets aggregated");
        assert!(ps[1..].iter().all(|p| nal_type(p[0]) == FU && p.len() <= 1200));
        assert_eq!(ps.len(), 1 + 5);
        let sizes: Vec<usize> = ps[1..].iter().map(Vec::len).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "balanced: {sizes:?}");
        let infos: Vec<_> = ps.iter().map(|p| payload_info(p).unwrap()).collect();
        assert!(infos[0].frame_begin && infos[0].keyframe);
        assert!(infos[1].frame_begin && infos[1].keyframe, "the IRAP's first fragment");
        assert!(!infos[2].frame_begin && !infos[2].keyframe);
        assert_eq!(depacketize(&ps), bytes, "byte-identical with 4-byte start codes");
    }

    #[test]
    fn delta_frames_layers_and_single_units() {
        // Two slice segments of a TRAIL_R (1) picture: aggregated; a big one: alone.
        let au = vec![nal(1, 300, true), nal(1, 280, false)];
        let ps = payloads(&annexb(&au), 1200);
        assert_eq!(ps.len(), 1);
        let info = payload_info(&ps[0]).unwrap();
        assert!(info.frame_begin && !info.keyframe);
        assert_eq!(depacketize(&ps), annexb(&au));
        let au = vec![nal(1, 1100, true), nal(1, 1100, false)];
        let ps = payloads(&annexb(&au), 1200);
        assert_eq!(ps.len(), 2);
        assert!(payload_info(&ps[0]).unwrap().frame_begin);
        assert!(!payload_info(&ps[1]).unwrap().frame_begin, "second slice segment");
        // The AP header takes the lowest LayerId and TID of its units, F if any has it.
        let mut a = nal(1, 10, true);
        a[1] = (2 << 3) | 3; // LayerId 2, TID 3
        let mut b = nal(1, 10, false);
        b[1] = (1 << 3) | 2;
        let ps = payloads(&annexb(&[a.clone(), b.clone()]), 1200);
        assert_eq!(layer_tid(&ps[0]), (1, 2));
        // FU keeps the unit's LayerId/TID and rebuilds its header exactly.
        let mut big = nal(21, 3000, true); // CRA
        big[1] = (5 << 3) | 4;
        let ps = payloads(&annexb(std::slice::from_ref(&big)), 1000);
        assert!(ps.iter().all(|p| layer_tid(p) == (5, 4)));
        assert_eq!(depacketize(&ps), annexb(&[big]));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let ok = nal(1, 10, true);
        for p in [
            &[][..],
            &[0x02][..],                                 // one header byte
            &[0x80 | 0x02, 0x01, 0xa0][..],              // forbidden bit
            &[0x02, 0x00, 0xa0][..],                     // TID 0
            &header(false, AP, 0, 1)[..],                // empty AP
            &[&header(false, AP, 0, 1)[..], &[0, 9, 2, 1]].concat()[..], // length overruns
            &[&header(false, AP, 0, 1)[..], &[0, 3], &ok[..3]].concat()[..], // only one unit
            &[&header(false, FU, 0, 1)[..], &[0x81]].concat()[..],   // FU without data
            &[&header(false, FU, 0, 1)[..], &[0xc1, 9]].concat()[..], // start and end at once
            &[&header(false, FU, 0, 1)[..], &[0x80 | AP, 9]].concat()[..], // FU of an AP
            &header(false, 50, 0, 1)[..],                // PACI
            &[&header(false, 55, 0, 1)[..], &[1]].concat()[..], // unspecified
        ] {
            assert!(payload_info(p).is_none(), "{p:?}");
            assert!(to_annexb(p, &mut Vec::new()).is_none(), "{p:?}");
        }
        // A bad unit in an access unit is not sent; the rest is.
        let ps = payloads(&annexb(&[vec![0x80, 1, 2], ok.clone()]), 1200);
        assert_eq!(ps, vec![ok]);
    }
}
