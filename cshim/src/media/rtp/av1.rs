//! AV1 over RTP (the AOM "RTP Payload Format for AV1"): temporal units ↔ RTP payloads.
//!
//! Send: the encoder's temporal unit (OBUs with size fields) loses its temporal delimiter,
//! tile list and padding OBUs; every other OBU becomes an *OBU element* without its size
//! field. Elements are packed in order behind the aggregation header `Z|Y|W|N|000`, each
//! with a LEB128 length (W = 0), and split across packets where they do not fit (`Y` on the
//! packet an element continues from, `Z` on the one it continues in). `N` marks the first
//! packet of a temporal unit that starts a coded video sequence (it has a sequence header).
//!
//! Receive: [`payload_info`] checks one payload and says whether it starts a temporal unit
//! (no `Z`, and its first OBU is a sequence header, frame header, frame or metadata) and a
//! keyframe (`N`, or a sequence header first); [`depacketize`] rebuilds the temporal unit
//! from its packets (size fields back, a temporal delimiter first) for the decoder, or
//! returns `None` for anything inconsistent (a fragment without its start, a unit that
//! ends mid-element), so a decoder never sees a broken unit.

const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_METADATA: u8 = 5;
const OBU_FRAME: u8 = 6;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

const Z: u8 = 0x80;
const Y: u8 = 0x40;
const N: u8 = 0x08;

fn obu_type(header: u8) -> u8 {
    (header >> 3) & 0x0f
}

/// LEB128 as AV1 writes it (at most 8 bytes); returns (value, bytes read).
fn read_leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in data.iter().take(8).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return usize::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn write_leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn leb128_len(value: usize) -> usize {
    let mut n = 1;
    let mut v = value >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// One OBU of a low-overhead bitstream: its header (and extension) byte(s) and payload.
struct Obu<'a> {
    header: &'a [u8],
    payload: &'a [u8],
}

/// The OBUs of a temporal unit; `None` when a header or size is inconsistent.
fn split_obus(mut data: &[u8]) -> Option<Vec<Obu<'_>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let h = data[0];
        if h & 0x80 != 0 {
            return None; // forbidden bit
        }
        let header_len = if h & 0x04 != 0 { 2 } else { 1 };
        let header = data.get(..header_len)?;
        let rest = &data[header_len..];
        let (payload, next) = if h & 0x02 != 0 {
            let (size, n) = read_leb128(rest)?;
            let end = n.checked_add(size)?;
            (rest.get(n..end)?, &rest[end..])
        } else {
            (rest, &rest[rest.len()..])
        };
        out.push(Obu { header, payload });
        data = next;
    }
    Some(out)
}

/// Whether the temporal unit starts a coded video sequence (has a sequence header).
pub fn has_sequence_header(tu: &[u8]) -> bool {
    split_obus(tu).is_some_and(|obus| obus.iter().any(|o| obu_type(o.header[0]) == OBU_SEQUENCE_HEADER))
}

/// The temporal id in the extension header of each frame and frame header OBU of a
/// temporal unit (0 for one without an extension); `None` when the unit is malformed.
#[cfg(test)]
pub(crate) fn temporal_ids(tu: &[u8]) -> Option<Vec<u8>> {
    let obus = split_obus(tu)?;
    let frames = obus.iter().filter(|o| matches!(obu_type(o.header[0]), OBU_FRAME | OBU_FRAME_HEADER));
    Some(frames.map(|o| o.header.get(1).map_or(0, |ext| ext >> 5)).collect())
}

/// Splits a temporal unit into RTP payloads of at most `max_payload` bytes. Empty when
/// the unit is malformed or holds nothing to send.
pub fn payloads(tu: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
    let Some(obus) = split_obus(tu) else {
        log::warn!("AV1: malformed temporal unit of {} bytes not sent", tu.len());
        return Vec::new();
    };
    let elements: Vec<Vec<u8>> = obus
        .iter()
        .filter(|o| !matches!(obu_type(o.header[0]), OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING))
        .map(|o| {
            let mut e = Vec::with_capacity(o.header.len() + o.payload.len());
            e.push(o.header[0] & !0x02); // no size field inside RTP
            e.extend_from_slice(&o.header[1..]);
            e.extend_from_slice(o.payload);
            e
        })
        .collect();
    if elements.is_empty() || max_payload < 4 {
        return Vec::new();
    }
    let new_sequence = obus.iter().any(|o| obu_type(o.header[0]) == OBU_SEQUENCE_HEADER);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut packet = vec![if new_sequence { N } else { 0 }];
    for e in &elements {
        let mut rest = &e[..];
        while !rest.is_empty() {
            let room = max_payload.saturating_sub(packet.len());
            // Room for a length and at least one byte, else start a new packet.
            if room < 2 + 1 {
                out.push(std::mem::replace(&mut packet, vec![0]));
                continue;
            }
            let fits = if leb128_len(rest.len()) + rest.len() <= room {
                rest.len()
            } else {
                let mut n = room - leb128_len(room);
                while leb128_len(n) + n > room {
                    n -= 1;
                }
                n
            };
            write_leb128(fits, &mut packet);
            packet.extend_from_slice(&rest[..fits]);
            rest = &rest[fits..];
            if !rest.is_empty() {
                packet[0] |= Y;
                out.push(std::mem::replace(&mut packet, vec![Z]));
            }
        }
    }
    if packet.len() > 1 {
        out.push(packet);
    }
    out
}

/// The OBU elements of one payload: (aggregation header, elements). `None` if malformed.
fn elements(p: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let agg = *p.first()?;
    if agg & 0x07 != 0 {
        return None; // reserved bits
    }
    let w = usize::from((agg >> 4) & 0x03);
    let mut rest = &p[1..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let last_without_length = w != 0 && out.len() + 1 == w;
        if last_without_length {
            out.push(rest);
            rest = &rest[rest.len()..];
            break;
        }
        let (len, n) = read_leb128(rest)?;
        let end = n.checked_add(len)?;
        let e = rest.get(n..end)?;
        if e.is_empty() {
            return None;
        }
        out.push(e);
        rest = &rest[end..];
    }
    if out.is_empty() || (w != 0 && out.len() != w) || !rest.is_empty() {
        return None;
    }
    Some((agg, out))
}

/// What the receiver needs to know about one AV1 RTP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Av1PayloadInfo {
    pub frame_begin: bool,
    pub keyframe: bool,
}

/// Checks one payload; `None` for malformed ones.
pub fn payload_info(p: &[u8]) -> Option<Av1PayloadInfo> {
    let (agg, elems) = elements(p)?;
    let first_type = if agg & Z != 0 {
        None
    } else if elems[0][0] & 0x80 != 0 {
        return None; // forbidden bit
    } else {
        Some(obu_type(elems[0][0]))
    };
    let frame_begin = matches!(first_type, Some(OBU_SEQUENCE_HEADER | OBU_FRAME_HEADER | OBU_FRAME | OBU_METADATA));
    let keyframe = frame_begin && (agg & N != 0 || first_type == Some(OBU_SEQUENCE_HEADER));
    Some(Av1PayloadInfo { frame_begin, keyframe })
}

/// Rebuilds a temporal unit (temporal delimiter, then OBUs with size fields) from the
/// payloads of its packets, in order. `None` when they do not form whole OBUs.
pub fn depacketize<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = vec![(OBU_TEMPORAL_DELIMITER << 3) | 0x02, 0];
    let mut pending: Option<Vec<u8>> = None;
    let mut continues_next = false;
    let finish = |obu: Vec<u8>, out: &mut Vec<u8>| -> Option<()> {
        let header_len = if obu.first()? & 0x04 != 0 { 2 } else { 1 };
        if obu.len() < header_len || obu[0] & 0x80 != 0 {
            return None;
        }
        out.push(obu[0] | 0x02);
        out.extend_from_slice(&obu[1..header_len]);
        write_leb128(obu.len() - header_len, out);
        out.extend_from_slice(&obu[header_len..]);
        Some(())
    };
    for p in payloads {
        let (agg, elems) = elements(p)?;
        if (agg & Z != 0) != continues_next {
            return None; // a continuation without its start, or a start left unfinished
        }
        let n = elems.len();
        for (i, e) in elems.into_iter().enumerate() {
            let mut obu = if i == 0 && agg & Z != 0 { pending.take()? } else { Vec::new() };
            obu.extend_from_slice(e);
            if i + 1 == n && agg & Y != 0 {
                pending = Some(obu);
            } else {
                finish(obu, &mut out)?;
            }
        }
        continues_next = agg & Y != 0;
    }
    if continues_next || out.len() == 2 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obu(t: u8, payload_len: usize, ext: bool, seed: u8) -> Vec<u8> {
        let mut o = vec![(t << 3) | 0x02 | if ext { 0x04 } else { 0 }];
        if ext {
            o.push(0x20);
        }
        write_leb128(payload_len, &mut o);
        o.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(seed)));
        o
    }

    fn tu(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0x12, 0x00];
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    }

    #[test]
    fn keyframe_round_trip_with_fragments() {
        let t = tu(&[obu(OBU_SEQUENCE_HEADER, 11, false, 3), obu(OBU_FRAME, 5000, false, 7)]);
        let ps = payloads(&t, 1200);
        assert!(ps.len() >= 5 && ps.iter().all(|p| p.len() <= 1200), "{:?}", ps.iter().map(Vec::len).collect::<Vec<_>>());
        assert_eq!(ps[0][0] & (N | Z), N);
        assert!(ps[1..].iter().all(|p| p[0] & Z != 0 && p[0] & N == 0));
        assert!(ps[..ps.len() - 1].iter().all(|p| p[0] & Y != 0));
        let info: Vec<_> = ps.iter().map(|p| payload_info(p).unwrap()).collect();
        assert!(info[0].frame_begin && info[0].keyframe);
        assert!(info[1..].iter().all(|i| !i.frame_begin && !i.keyframe));
        assert_eq!(depacketize(ps.iter().map(Vec::as_slice)).unwrap(), t);
        assert!(has_sequence_header(&t));
    }

    #[test]
    fn delta_frames_aggregate_and_extensions_survive() {
        let t = tu(&[obu(OBU_FRAME_HEADER, 20, true, 5), obu(4, 300, true, 9), obu(OBU_PADDING, 10, false, 1)]);
        let ps = payloads(&t, 1200);
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0][0], 0);
        let info = payload_info(&ps[0]).unwrap();
        assert!(info.frame_begin && !info.keyframe);
        // Padding is not sent; everything else comes back byte for byte.
        let back = depacketize([ps[0].as_slice()]).unwrap();
        assert_eq!(back, tu(&[obu(OBU_FRAME_HEADER, 20, true, 5), obu(4, 300, true, 9)]));
    }

    #[test]
    fn w_counted_elements_are_read() {
        // W=2: the first element has a length, the last does not.
        let p = [0x20, 2, 0x30, 0xaa, 0x20, 1, 2, 3];
        let back = depacketize([&p[..]]).unwrap();
        assert_eq!(back, vec![0x12, 0, 0x32, 1, 0xaa, 0x22, 3, 1, 2, 3]);
    }

    #[test]
    fn broken_units_are_refused() {
        let t = tu(&[obu(OBU_FRAME, 3000, false, 7)]);
        let ps = payloads(&t, 1200);
        assert!(ps.len() >= 3);
        // A lost first packet, a lost last packet (a lost middle one is the jitter buffer's
        // to notice: sequence numbers).
        assert!(depacketize(ps[1..].iter().map(Vec::as_slice)).is_none());
        assert!(depacketize(ps[..ps.len() - 1].iter().map(Vec::as_slice)).is_none());
        for p in [&[][..], &[0x01][..], &[0x00, 5, 1][..], &[0x00][..], &[0x10][..], &[0x00, 0x80][..], &[0x00, 1, 0x80][..]] {
            assert!(payload_info(p).is_none() || depacketize([p]).is_none(), "{p:?}");
        }
        assert!(payloads(&[0x12, 0x00, 0x32, 9, 1], 1200).is_empty(), "size past the end");
        assert!(payloads(&[0x12, 0x00], 1200).is_empty(), "only a delimiter");
    }
}
