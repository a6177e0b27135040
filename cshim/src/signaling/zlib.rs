//! zlib (RFC 1950) framing for DataChannel labels whose `compress` is true.
use std::io::{Read, Write};

/// The largest DataChannel message (after inflation) that is sent or accepted on a
/// compressed label: a sender gets an error above it, a receiver drops and counts it.
pub const MAX_INFLATED: usize = 16 * 1024 * 1024;

pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Inflates at most `limit` bytes; a bomb or garbage is an error, not an allocation spree.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut d = flate2::read::ZlibDecoder::new(data).take(limit as u64 + 1);
    d.read_to_end(&mut out).map_err(|e| format!("invalid zlib data: {e}"))?;
    if out.len() > limit {
        return Err(format!("decompressed message exceeds {limit} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let c = super::compress(b"hello hello hello");
        assert_eq!(&c[..1], &[0x78]);
        assert_eq!(super::decompress(&c, 100).unwrap(), b"hello hello hello");
        assert!(super::decompress(b"junk", 100).is_err());
    }
}
