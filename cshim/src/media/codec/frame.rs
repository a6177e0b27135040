//! Planar I420 frame with tight strides: the one picture format every codec block speaks.
use crate::error::{Error, Result};

/// Largest accepted width or height. libvpx's limit is 16384; the bound also keeps every
/// plane size computation far from overflow.
pub const MAX_DIMENSION: u32 = 16384;

/// 8-bit 4:2:0 picture. Strides are tight: Y rows are `width` bytes, U/V rows
/// `(width + 1) / 2` bytes, and there are `(height + 1) / 2` chroma rows (odd sizes round up).
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    pub width: u32,
    pub height: u32,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I420Frame({}x{})", self.width, self.height)
    }
}

fn check_dims(width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(Error::invalid(format!("invalid frame size {width}x{height}")));
    }
    Ok(())
}

impl I420Frame {
    /// A black frame (limited range: Y=16, U=V=128).
    pub fn new(width: u32, height: u32) -> Result<Self> {
        check_dims(width, height)?;
        let (cw, ch) = (chroma_dim(width), chroma_dim(height));
        Ok(I420Frame {
            width,
            height,
            y: vec![16; width as usize * height as usize],
            u: vec![128; cw * ch],
            v: vec![128; cw * ch],
        })
    }

    /// Takes ownership of planes that already have the tight I420 sizes.
    pub fn from_planes(width: u32, height: u32, y: Vec<u8>, u: Vec<u8>, v: Vec<u8>) -> Result<Self> {
        check_dims(width, height)?;
        let f = I420Frame { width, height, y, u, v };
        if f.y.len() != f.y_len() || f.u.len() != f.chroma_len() || f.v.len() != f.chroma_len() {
            return Err(Error::invalid(format!(
                "plane sizes {}/{}/{} do not match {}x{} I420",
                f.y.len(),
                f.u.len(),
                f.v.len(),
                width,
                height
            )));
        }
        Ok(f)
    }

    /// Re-dimensions in place, reusing the allocations (contents are unspecified afterwards).
    /// Lets converters and decoders keep one frame per stream instead of allocating per picture.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<()> {
        check_dims(width, height)?;
        self.width = width;
        self.height = height;
        let (yl, cl) = (self.y_len(), self.chroma_len());
        self.y.resize(yl, 16);
        self.u.resize(cl, 128);
        self.v.resize(cl, 128);
        Ok(())
    }

    pub fn chroma_width(&self) -> u32 {
        self.width.div_ceil(2)
    }
    pub fn chroma_height(&self) -> u32 {
        self.height.div_ceil(2)
    }
    pub fn y_len(&self) -> usize {
        self.width as usize * self.height as usize
    }
    pub fn chroma_len(&self) -> usize {
        chroma_dim(self.width) * chroma_dim(self.height)
    }

    /// Copies a decoder's picture of `width`x`height` into this frame (resized to it). Each
    /// of `planes` is (first row, stride in bytes); `bit_depth` above 8 means 16-bit samples,
    /// rounded to 8 bits. Null planes and strides narrower than a row are errors.
    ///
    /// # Safety
    /// Each non-null plane must hold its rows (luma `height`, chroma rounded up) of `stride`
    /// bytes, readable for the duration of the call.
    pub unsafe fn copy_from_decoder(&mut self, width: u32, height: u32, planes: [(*const u8, usize); 3], bit_depth: u32) -> Result<()> {
        self.resize(width, height)?;
        let high = bit_depth > 8;
        let shift = bit_depth.saturating_sub(8).min(8);
        let sample = if high { 2 } else { 1 };
        let (w, h, cw, ch) =
            (self.width as usize, self.height as usize, self.chroma_width() as usize, self.chroma_height() as usize);
        let dsts: [(&mut Vec<u8>, usize, usize); 3] = [(&mut self.y, w, h), (&mut self.u, cw, ch), (&mut self.v, cw, ch)];
        for ((dst, pw, ph), (src, stride)) in dsts.into_iter().zip(planes) {
            if src.is_null() || stride < pw * sample {
                return Err(Error::internal("the decoder returned a picture without planes or with narrow rows"));
            }
            for row in 0..ph {
                let d = &mut dst[row * pw..][..pw];
                // SAFETY: the caller guarantees `ph` rows of `stride` bytes; each row holds
                // at least `pw` samples (checked above).
                unsafe {
                    let s = src.add(row * stride);
                    if high {
                        let s = std::slice::from_raw_parts(s as *const u16, pw);
                        let round = (1u32 << shift) >> 1;
                        for (d, &v) in d.iter_mut().zip(s) {
                            *d = ((v as u32 + round) >> shift).min(255) as u8;
                        }
                    } else {
                        d.copy_from_slice(std::slice::from_raw_parts(s, pw));
                    }
                }
            }
        }
        Ok(())
    }

    /// True when the plane lengths match the dimensions (public fields can be edited freely).
    pub fn is_consistent(&self) -> bool {
        check_dims(self.width, self.height).is_ok()
            && self.y.len() == self.y_len()
            && self.u.len() == self.chroma_len()
            && self.v.len() == self.chroma_len()
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.is_consistent() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "inconsistent I420 frame {}x{} with planes {}/{}/{}",
                self.width,
                self.height,
                self.y.len(),
                self.u.len(),
                self.v.len()
            )))
        }
    }
}

fn chroma_dim(d: u32) -> usize {
    d.div_ceil(2) as usize
}

/// Luma PSNR in dB between two frames of the same size; `f64::INFINITY` when identical.
pub fn psnr_y(a: &I420Frame, b: &I420Frame) -> Result<f64> {
    a.check()?;
    b.check()?;
    if a.width != b.width || a.height != b.height {
        return Err(Error::invalid(format!("psnr of {}x{} vs {}x{}", a.width, a.height, b.width, b.height)));
    }
    let sse: u64 =
        a.y.iter()
            .zip(&b.y)
            .map(|(&p, &q)| {
                let d = p as i32 - q as i32;
                (d * d) as u64
            })
            .sum();
    if sse == 0 {
        return Ok(f64::INFINITY);
    }
    let mse = sse as f64 / a.y.len() as f64;
    Ok(10.0 * (255.0 * 255.0 / mse).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_sizes_round_chroma_up() {
        let f = I420Frame::new(5, 3).unwrap();
        assert_eq!((f.chroma_width(), f.chroma_height()), (3, 2));
        assert_eq!((f.y.len(), f.u.len(), f.v.len()), (15, 6, 6));
        assert!(f.y.iter().all(|&p| p == 16) && f.u.iter().all(|&p| p == 128));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(I420Frame::new(0, 10).is_err());
        assert!(I420Frame::new(MAX_DIMENSION + 1, 10).is_err());
        assert!(I420Frame::from_planes(4, 4, vec![0; 16], vec![0; 4], vec![0; 3]).is_err());
        assert!(I420Frame::from_planes(4, 4, vec![0; 16], vec![0; 4], vec![0; 4]).is_ok());
        let mut f = I420Frame::new(4, 4).unwrap();
        f.y.pop();
        assert!(!f.is_consistent());
        assert!(psnr_y(&f, &f).is_err());
    }

    #[test]
    fn resize_reuses_and_fixes_lengths() {
        let mut f = I420Frame::new(64, 64).unwrap();
        let cap = f.y.capacity();
        f.resize(33, 17).unwrap();
        assert!(f.is_consistent());
        assert_eq!(f.u.len(), 17 * 9);
        assert_eq!(f.y.capacity(), cap);
        assert!(f.resize(0, 1).is_err());
    }

    #[test]
    fn psnr_values() {
        let a = I420Frame::new(16, 16).unwrap();
        let mut b = a.clone();
        assert_eq!(psnr_y(&a, &b).unwrap(), f64::INFINITY);
        // Every pixel off by 1 -> MSE 1 -> 48.13 dB.
        b.y.iter_mut().for_each(|p| *p += 1);
        assert!((psnr_y(&a, &b).unwrap() - 48.1308).abs() < 1e-3);
        assert!(psnr_y(&a, &I420Frame::new(16, 8).unwrap()).is_err());
    }
}
