//! Annex B byte streams (H.264 and H.265 access units as encoders write them and decoders
//! take them): NAL units separated by 3- or 4-byte start codes.

/// The start code written before every NAL unit on the way out of a depacketizer.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The NAL units of an Annex B byte stream, without start codes. Bytes before the first
/// start code are ignored; empty units are skipped.
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // (start code position, payload position)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let code_at = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((code_at, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &(_, begin)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(data.len(), |&(code_at, _)| code_at);
        if end > begin {
            out.push(&data[begin..end]);
        }
    }
    out
}

/// The units of an aggregation packet's body (H.264 STAP-A, H.265 AP): each a 16-bit size and
/// that many bytes. `None` when a size overruns the body or a lone byte is left over.
pub fn length_prefixed(mut body: &[u8]) -> Option<Vec<&[u8]>> {
    let mut units = Vec::new();
    while !body.is_empty() {
        let n = u16::from_be_bytes([body[0], *body.get(1)?]) as usize;
        let unit = body.get(2..2 + n)?;
        units.push(unit);
        body = &body[2 + n..];
    }
    Some(units)
}

/// `data` cut into the fewest pieces of at most `room` bytes whose sizes differ by at most
/// one (fragmentation units: no runt last packet).
pub fn balanced_chunks(data: &[u8], room: usize) -> Vec<&[u8]> {
    let count = data.len().div_ceil(room.max(1)).max(1);
    let (base, extra) = (data.len() / count, data.len() % count);
    let mut out = Vec::with_capacity(count);
    let mut at = 0;
    for k in 0..count {
        let n = base + usize::from(k < extra);
        out.push(&data[at..at + n]);
        at += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{balanced_chunks, length_prefixed, split};

    #[test]
    fn length_prefixed_units() {
        assert_eq!(length_prefixed(&[0, 2, 7, 8, 0, 1, 9]), Some(vec![&[7, 8][..], &[9][..]]));
        assert_eq!(length_prefixed(&[0, 0]), Some(vec![&[][..]]));
        assert_eq!(length_prefixed(&[]), Some(vec![]));
        assert_eq!(length_prefixed(&[0, 3, 1]), None, "overrun");
        assert_eq!(length_prefixed(&[0, 1, 1, 0]), None, "a lone byte left");
    }

    #[test]
    fn balanced_chunks_differ_by_at_most_one() {
        for (len, room) in [(4998, 1197), (5000, 1000), (1, 10), (10, 1), (2399, 1198)] {
            let data = vec![7u8; len];
            let chunks = balanced_chunks(&data, room);
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), len);
            assert_eq!(chunks.len(), len.div_ceil(room));
            assert!(sizes.iter().all(|&s| s <= room));
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn split_handles_odd_streams() {
        assert!(split(&[]).is_empty());
        assert!(split(&[0, 0, 1]).is_empty());
        assert_eq!(split(&[9, 9, 0, 0, 1, 0x41, 0x88, 0, 0, 0, 1, 0x68]), vec![&[0x41, 0x88][..], &[0x68][..]]);
    }
}
