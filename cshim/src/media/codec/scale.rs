//! I420 downscaling for CPU adaptation: each plane resized on its own with
//! `fast_image_resize` (SIMD), using a box (area-average) filter as libwebrtc's adapter does
//! through libyuv (`kFilterBox`).
use super::frame::I420Frame;
use crate::error::{Error, Result};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

pub struct Scaler {
    resizer: Resizer,
    options: ResizeOptions,
    out: I420Frame,
}

impl Default for Scaler {
    fn default() -> Self {
        Self::new()
    }
}

impl Scaler {
    pub fn new() -> Self {
        Scaler {
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Box)),
            out: I420Frame { width: 0, height: 0, y: Vec::new(), u: Vec::new(), v: Vec::new() },
        }
    }

    /// `src` resized to `width` x `height`, in a buffer reused from call to call.
    pub fn scale(&mut self, src: &I420Frame, width: u32, height: u32) -> Result<&I420Frame> {
        src.check()?;
        self.out.resize(width, height)?;
        let (cw, ch) = (src.chroma_width(), src.chroma_height());
        let (ocw, och) = (self.out.chroma_width(), self.out.chroma_height());
        let planes = [
            (&src.y, src.width, src.height, &mut self.out.y, width, height),
            (&src.u, cw, ch, &mut self.out.u, ocw, och),
            (&src.v, cw, ch, &mut self.out.v, ocw, och),
        ];
        for (s, sw, sh, d, dw, dh) in planes {
            let from = ImageRef::new(sw, sh, s, PixelType::U8).map_err(|e| Error::internal(format!("scale: {e}")))?;
            let mut to = Image::from_slice_u8(dw, dh, d, PixelType::U8).map_err(|e| Error::internal(format!("scale: {e}")))?;
            self.resizer.resize(&from, &mut to, &self.options).map_err(|e| Error::internal(format!("scale: {e}")))?;
        }
        Ok(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::frame::psnr_y;

    /// Smooth gradients (what survives a downscale unchanged in shape).
    fn gradient(w: u32, h: u32) -> I420Frame {
        let mut f = I420Frame::new(w, h).unwrap();
        for y in 0..h {
            for x in 0..w {
                f.y[(y * w + x) as usize] = (16 + x * 200 / w + y * 20 / h) as u8;
            }
        }
        let cw = f.chroma_width();
        for y in 0..f.chroma_height() {
            for x in 0..cw {
                f.u[(y * cw + x) as usize] = (64 + x * 128 / cw) as u8;
                f.v[(y * cw + x) as usize] = (64 + y * 128 / f.chroma_height()) as u8;
            }
        }
        f
    }

    #[test]
    fn downscales_every_plane() {
        let src = gradient(1920, 1080);
        let mut s = Scaler::new();
        for (w, h) in [(1440, 810), (1080, 608), (342, 192), (321, 181)] {
            let out = s.scale(&src, w, h).unwrap().clone();
            assert_eq!((out.width, out.height), (w, h));
            out.check().unwrap();
            // Compare with the gradient drawn at the small size.
            let psnr = psnr_y(&out, &gradient(w, h)).unwrap();
            assert!(psnr > 35.0, "{w}x{h}: Y PSNR {psnr:.1}");
            let mid = |p: &Vec<u8>, pw: u32, ph: u32| p[(ph / 2 * pw + pw / 2) as usize] as i32;
            let (cw, ch) = (out.chroma_width(), out.chroma_height());
            assert!((mid(&out.u, cw, ch) - 128).abs() <= 3, "U centre");
            assert!((mid(&out.v, cw, ch) - 128).abs() <= 3, "V centre");
        }
        // Odd sizes and no-op sizes work too.
        let odd = gradient(641, 361);
        assert_eq!(s.scale(&odd, 481, 271).unwrap().y.len(), 481 * 271);
        assert_eq!(s.scale(&odd, 641, 361).unwrap(), &odd);
    }

    #[test]
    #[ignore]
    fn scale_speed() {
        let src = gradient(1920, 1080);
        let mut s = Scaler::new();
        for (w, h) in [(1440, 810), (960, 540)] {
            let t0 = std::time::Instant::now();
            for _ in 0..50 {
                s.scale(&src, w, h).unwrap();
            }
            println!("1920x1080 -> {w}x{h}: {:.2} ms", t0.elapsed().as_secs_f64() * 1e3 / 50.0);
        }
    }
}
