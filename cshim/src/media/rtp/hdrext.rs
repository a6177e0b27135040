//! RTP header extensions (RFC 8285): rewriting one element of a packet, as an SFU does with
//! the MID of forwarded packets (each receiver's m-section has a mid of its own, and
//! libwebrtc demultiplexes a BUNDLE by MID before SSRC).

const ONE_BYTE: u16 = 0xBEDE;
const TWO_BYTE_MASK: u16 = 0xFFF0;
const TWO_BYTE: u16 = 0x1000;

/// The header extension block of an RTP packet: where it starts and ends, its format,
/// and its elements (id, value) in order.
struct Block<'a> {
    start: usize,
    end: usize,
    one_byte: bool,
    elements: Vec<(u8, &'a [u8])>,
}

fn block(packet: &[u8]) -> Option<Block<'_>> {
    if packet.len() < 12 || packet[0] >> 6 != 2 || packet[0] & 0x10 == 0 {
        return None;
    }
    let start = 12 + 4 * (packet[0] & 0x0f) as usize;
    let profile = u16::from_be_bytes([*packet.get(start)?, *packet.get(start + 1)?]);
    let words = u16::from_be_bytes([*packet.get(start + 2)?, *packet.get(start + 3)?]) as usize;
    let end = start + 4 + words * 4;
    let body = packet.get(start + 4..end)?;
    let one_byte = profile == ONE_BYTE;
    if !one_byte && profile & TWO_BYTE_MASK != TWO_BYTE {
        return None;
    }
    let mut elements: Vec<(u8, &[u8])> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let (eid, len, header) = if one_byte {
            let b = body[i];
            if b == 0 {
                i += 1; // padding
                continue;
            }
            if b >> 4 == 15 {
                break; // reserved: stop, as RFC 8285 says
            }
            (b >> 4, (b & 0x0f) as usize + 1, 1)
        } else {
            let eid = body[i];
            if eid == 0 {
                i += 1;
                continue;
            }
            (eid, *body.get(i + 1)? as usize, 2)
        };
        let data = body.get(i + header..i + header + len)?;
        elements.push((eid, data));
        i += header + len;
    }
    Some(Block { start, end, one_byte, elements })
}

/// The length of an RTP packet's header: the fixed part, the CSRCs and the extension block
/// (what W3C stats count as header bytes); the whole packet when it is cut short.
pub fn header_len(packet: &[u8]) -> usize {
    if packet.len() < 12 {
        return packet.len();
    }
    let mut len = 12 + 4 * (packet[0] & 0x0f) as usize;
    if packet[0] & 0x10 != 0 {
        len += match packet.get(len + 2..len + 4) {
            Some(w) => 4 + 4 * u16::from_be_bytes([w[0], w[1]]) as usize,
            None => return packet.len(),
        };
    }
    len.min(packet.len())
}

/// The value of header extension element `id` of `packet`; None when it has none or is
/// malformed.
pub fn extension(packet: &[u8], id: u8) -> Option<&[u8]> {
    block(packet)?.elements.into_iter().find(|(eid, _)| *eid == id).map(|(_, data)| data)
}

/// Overwrites the value of element `id` in place with `value` of the same length; false when
/// the packet has no such element of that length.
pub fn write_extension(packet: &mut [u8], id: u8, value: &[u8]) -> bool {
    let base = packet.as_ptr() as usize;
    let Some(offset) = block(packet).and_then(|b| {
        b.elements.iter().find(|(eid, data)| *eid == id && data.len() == value.len()).map(|(_, data)| data.as_ptr() as usize - base)
    }) else {
        return false;
    };
    packet[offset..offset + value.len()].copy_from_slice(value);
    true
}

/// A copy of `packet` whose header extension element `id` holds `value`; None when the
/// packet has no such element, is malformed, or `value` does not fit the packet's format
/// (one-byte: 1 to 16 bytes; two-byte: up to 255). Padding and payload are kept as they are.
pub fn replace_extension(packet: &[u8], id: u8, value: &[u8]) -> Option<Vec<u8>> {
    let Block { start, end, one_byte, mut elements } = block(packet)?;
    let fits = if one_byte { (1..=16).contains(&value.len()) } else { value.len() <= 255 };
    if !fits || id == 0 || (one_byte && id >= 15) {
        return None;
    }
    let found = elements.iter_mut().find(|(eid, _)| *eid == id)?;
    found.1 = value;
    let mut ext = Vec::with_capacity(end - start + value.len());
    for (eid, data) in &elements {
        if one_byte {
            ext.push((eid << 4) | (data.len() as u8 - 1));
        } else {
            ext.push(*eid);
            ext.push(data.len() as u8);
        }
        ext.extend_from_slice(data);
    }
    while ext.len() % 4 != 0 {
        ext.push(0);
    }
    let mut out = Vec::with_capacity(packet.len() + value.len() + 4);
    out.extend_from_slice(&packet[..start + 2]);
    out.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
    out.extend_from_slice(&ext);
    out.extend_from_slice(&packet[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{extension, header_len, replace_extension, write_extension};

    fn packet(profile: u16, body: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7];
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        p.extend_from_slice(body);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn replaces_a_one_byte_mid_of_another_length() {
        // audio level (id 1, 1 byte), MID (id 4, "1"), padding
        let p = packet(0xBEDE, &[0x10, 0x7f, 0x40, b'1'], b"payload");
        let out = replace_extension(&p, 4, b"12").unwrap();
        assert_eq!(&out[12..16], &[0xBE, 0xDE, 0, 2]);
        assert_eq!(&out[16..24], &[0x10, 0x7f, 0x41, b'1', b'2', 0, 0, 0]);
        assert_eq!(&out[24..], b"payload");
        let back = replace_extension(&out, 4, b"1").unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn replaces_a_two_byte_element_and_keeps_csrcs() {
        let mut p = packet(0x1000, &[4, 1, b'3', 0], b"x");
        p[0] |= 1; // one CSRC: insert it after the fixed header
        p.splice(12..12, [0, 0, 0, 9]);
        let out = replace_extension(&p, 4, b"10").unwrap();
        assert_eq!(&out[12..16], &[0, 0, 0, 9]);
        assert_eq!(&out[16..20], &[0x10, 0x00, 0, 1]);
        assert_eq!(&out[20..24], &[4, 2, b'1', b'0']);
        assert_eq!(&out[24..], b"x");
    }

    #[test]
    fn leaves_other_packets_alone() {
        let p = packet(0xBEDE, &[0x10, 0x7f, 0, 0], b"p");
        assert!(replace_extension(&p, 4, b"1").is_none(), "no MID element");
        let mut no_ext = p.clone();
        no_ext[0] &= !0x10;
        assert!(replace_extension(&no_ext, 4, b"1").is_none());
        assert!(replace_extension(&p[..14], 1, b"1").is_none(), "truncated");
        assert!(replace_extension(&p, 1, &[0; 17]).is_none(), "too long for one byte");
        assert!(replace_extension(&packet(0xBEDE, &[0x1f, 0, 0, 0], b""), 1, b"1").is_none());
    }

    #[test]
    fn writes_an_element_in_place() {
        let mut p = packet(0xBEDE, &[0x10, 0x7f, 0x31, 0, 0, 0, 0, 0], b"x");
        assert!(write_extension(&mut p, 3, &[0xAB, 0xCD]));
        assert_eq!(extension(&p, 3), Some(&[0xAB, 0xCD][..]));
        assert_eq!(extension(&p, 1), Some(&[0x7f][..]));
        assert!(!write_extension(&mut p, 3, &[1])); // another length
        assert!(!write_extension(&mut p, 9, &[1, 2]));
    }

    #[test]
    fn header_length_counts_csrcs_and_the_extension_block() {
        let mut p = vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend_from_slice(&[9; 20]);
        assert_eq!(header_len(&p), 12);
        // one CSRC and a one-byte block of two words
        let mut q = vec![0x91, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xBE, 0xDE, 0, 2];
        q.extend_from_slice(&[0x10, 1, 0x21, 2, 3, 0, 0, 0]);
        q.extend_from_slice(&[9; 20]);
        assert_eq!(header_len(&q), 28);
        assert_eq!(header_len(&q[..18]), 18, "cut short");
        assert_eq!(header_len(&[0x80, 1]), 2);
    }

    #[test]
    fn reads_an_element() {
        let p = packet(0xBEDE, &[0x10, 0x7f, 0xA1, b'r', b'2', 0, 0, 0], b"x");
        assert_eq!(extension(&p, 10), Some(&b"r2"[..]));
        assert_eq!(extension(&p, 1), Some(&[0x7f][..]));
        assert_eq!(extension(&p, 4), None);
        assert_eq!(extension(&packet(0x1000, &[10, 2, b'r', b'0'], b""), 10), Some(&b"r0"[..]));
        assert_eq!(extension(&p[..17], 10), None, "truncated");
    }
}
