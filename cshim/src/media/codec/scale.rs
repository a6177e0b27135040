//! I420 downscaling for CPU adaptation: each plane resized on its own with a box
//! (area-average) filter, as libwebrtc's adapter does through libyuv (`kFilterBox`): every
//! output pixel is the rounded mean of the source pixels whose box maps onto it (at least
//! one, so sizes that grow repeat pixels). Written here rather than taken from a resizing
//! crate: the general ones compile every pixel format and SIMD variant (megabytes of the
//! shim's size, issue 9) for this one 8-bit, one-channel case.
use super::frame::I420Frame;
use crate::error::Result;

pub struct Scaler {
    out: I420Frame,
    /// Per-column sums of the source rows of one output row.
    sums: Vec<u32>,
}

impl Default for Scaler {
    fn default() -> Self {
        Self::new()
    }
}

/// For each of `dst` outputs, the source range [start, end) over `src` inputs it averages.
fn boxes(src: u32, dst: u32) -> Vec<(usize, usize)> {
    (0..dst as u64)
        .map(|i| {
            let a = (i * src as u64 / dst as u64) as usize;
            let b = ((i + 1) * src as u64 / dst as u64) as usize;
            let a = a.min(src as usize - 1);
            (a, b.clamp(a + 1, src as usize))
        })
        .collect()
}

fn scale_plane(src: &[u8], sw: u32, sh: u32, dst: &mut [u8], dw: u32, dh: u32, sums: &mut Vec<u32>) {
    if sw == 2 * dw && sh == 2 * dh {
        return halve_plane(src, sw as usize, dst, dw as usize);
    }
    let (sw, dwu) = (sw as usize, dw as usize);
    let cols = boxes(sw as u32, dw);
    let max_width = cols.iter().map(|(a, b)| b - a).max().unwrap_or(1);
    let mut recip: Vec<u32> = Vec::with_capacity(max_width + 1);
    for (oy, (y0, y1)) in boxes(sh, dh).into_iter().enumerate() {
        sums.clear();
        sums.resize(sw, 0);
        for row in src[y0 * sw..y1 * sw].chunks_exact(sw) {
            for (s, &p) in sums.iter_mut().zip(row) {
                *s += u32::from(p);
            }
        }
        // total / area as a multiplication by 2^16/area (one table per output row: box
        // widths take only a few values), exact to rounding for the small areas of a downscale.
        let rows = (y1 - y0) as u32;
        recip.clear();
        recip.extend((0..=max_width as u32).map(|w| ((1u32 << 16) + rows * w / 2) / (rows * w).max(1)));
        for (o, &(x0, x1)) in dst[oy * dwu..(oy + 1) * dwu].iter_mut().zip(&cols) {
            let total: u32 = match x1 - x0 {
                1 => sums[x0],
                2 => sums[x0] + sums[x0 + 1],
                _ => sums[x0..x1].iter().sum(),
            };
            *o = ((total * recip[x1 - x0] + (1 << 15)) >> 16) as u8; // < 2^32: total <= 255 * area
        }
    }
}

/// The exact halving simulcast's default layers make (1/2, 1/4 of the source): each output
/// pixel the rounded mean of its 2x2 block, `(a + b + c + d + 2) / 4`, what the box filter
/// gives there, in a loop the compiler vectorizes (~4x the general path's speed).
fn halve_plane(src: &[u8], sw: usize, dst: &mut [u8], dw: usize) {
    for (oy, out) in dst.chunks_exact_mut(dw).enumerate() {
        let top = &src[2 * oy * sw..][..2 * dw];
        let bottom = &src[(2 * oy + 1) * sw..][..2 * dw];
        for ((o, a), b) in out.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
            let sum = u16::from(a[0]) + u16::from(a[1]) + u16::from(b[0]) + u16::from(b[1]);
            *o = ((sum + 2) >> 2) as u8;
        }
    }
}

impl Scaler {
    pub fn new() -> Self {
        Scaler { out: I420Frame { width: 0, height: 0, y: Vec::new(), u: Vec::new(), v: Vec::new() }, sums: Vec::new() }
    }

    /// `src` resized to `width` x `height`, in a buffer reused from call to call.
    /// The picture the last [`Scaler::scale`] made (empty before any).
    pub fn output(&self) -> &I420Frame {
        &self.out
    }

    pub fn scale(&mut self, src: &I420Frame, width: u32, height: u32) -> Result<&I420Frame> {
        src.check()?;
        self.out.resize(width, height)?;
        let (cw, ch) = (src.chroma_width(), src.chroma_height());
        let (ocw, och) = (self.out.chroma_width(), self.out.chroma_height());
        scale_plane(&src.y, src.width, src.height, &mut self.out.y, width, height, &mut self.sums);
        scale_plane(&src.u, cw, ch, &mut self.out.u, ocw, och, &mut self.sums);
        scale_plane(&src.v, cw, ch, &mut self.out.v, ocw, och, &mut self.sums);
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
        // A box filter averages: a 2x2 checkerboard halved is flat grey.
        let mut board = I420Frame::new(64, 64).unwrap();
        for (i, p) in board.y.iter_mut().enumerate() {
            *p = if (i % 64 + i / 64) % 2 == 0 { 0 } else { 200 };
        }
        assert!(s.scale(&board, 32, 32).unwrap().y.iter().all(|&p| p == 100));
        // Growing repeats pixels.
        assert_eq!(s.scale(&board, 128, 128).unwrap().y[..4], [0, 0, 200, 200]);
        // Odd sizes and no-op sizes work too.
        let odd = gradient(641, 361);
        assert_eq!(s.scale(&odd, 481, 271).unwrap().y.len(), 481 * 271);
        assert_eq!(s.scale(&odd, 641, 361).unwrap(), &odd);
    }

    #[test]
    fn halving_matches_the_box_filter() {
        let mut src = gradient(1280, 720);
        let mut x = 12345u32;
        for p in src.y.iter_mut().chain(src.u.iter_mut()).chain(src.v.iter_mut()) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *p = (x >> 16) as u8; // noise: every rounding case
        }
        let halved = Scaler::new().scale(&src, 640, 360).unwrap().clone();
        let mut general = I420Frame::new(640, 360).unwrap();
        let mut sums = Vec::new();
        for (from, to, w, h) in [(&src.y, &mut general.y, 1280, 720), (&src.u, &mut general.u, 640, 360), (&src.v, &mut general.v, 640, 360)] {
            // the general path (a 2:1 box each way), not the halving
            let cols = boxes(w, w / 2);
            assert!(cols.iter().all(|(a, b)| b - a == 2));
            let dw = (w / 2) as usize;
            for oy in 0..(h / 2) as usize {
                sums.clear();
                sums.extend((0..w as usize).map(|c| u32::from(from[2 * oy * w as usize + c]) + u32::from(from[(2 * oy + 1) * w as usize + c])));
                for (ox, &(x0, _)) in cols.iter().enumerate() {
                    to[oy * dw + ox] = (((sums[x0] + sums[x0 + 1]) * 16384 + (1 << 15)) >> 16) as u8;
                }
            }
        }
        assert_eq!(halved, general);
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
