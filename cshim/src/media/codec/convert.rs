//! BGR (OpenCV/numpy order) <-> I420 with BT.601 limited range, the matrix libwebrtc and the
//! official Sora SDK use. The `yuv` crate does the work with runtime SSE/AVX2 dispatch.
use super::frame::I420Frame;
use crate::error::{Error, Result};
use yuv::{BufferStoreMut, YuvConversionMode, YuvPlanarImage, YuvPlanarImageMut, YuvRange, YuvStandardMatrix};

const RANGE: YuvRange = YuvRange::Limited;
const MATRIX: YuvStandardMatrix = YuvStandardMatrix::Bt601;

/// Converts a packed BGR image (`stride` bytes per row, at least `width * 3`) to a new frame.
pub fn bgr_to_i420(bgr: &[u8], width: u32, height: u32, stride: usize) -> Result<I420Frame> {
    let mut frame = I420Frame::new(width, height)?;
    bgr_to_i420_into(bgr, width, height, stride, &mut frame)?;
    Ok(frame)
}

/// Like [`bgr_to_i420`], into an existing frame (resized as needed) so a capture loop can
/// reuse one allocation.
pub fn bgr_to_i420_into(bgr: &[u8], width: u32, height: u32, stride: usize, out: &mut I420Frame) -> Result<()> {
    check_packed(bgr.len(), width, height, stride)?;
    out.resize(width, height)?;
    let cw = out.chroma_width();
    let mut planar = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(&mut out.y),
        y_stride: width,
        u_plane: BufferStoreMut::Borrowed(&mut out.u),
        u_stride: cw,
        v_plane: BufferStoreMut::Borrowed(&mut out.v),
        v_stride: cw,
        width,
        height,
    };
    yuv::bgr_to_yuv420(&mut planar, bgr, stride as u32, RANGE, MATRIX, YuvConversionMode::Balanced)
        .map_err(|e| Error::invalid(format!("bgr_to_i420: {e}")))
}

/// Writes `frame` as tightly packed BGR (`width * 3` bytes per row) into `out`.
pub fn i420_to_bgr(frame: &I420Frame, out: &mut [u8]) -> Result<()> {
    frame.check()?;
    let stride = frame.width as usize * 3;
    check_packed(out.len(), frame.width, frame.height, stride)?;
    let cw = frame.chroma_width();
    let planar = YuvPlanarImage {
        y_plane: &frame.y,
        y_stride: frame.width,
        u_plane: &frame.u,
        u_stride: cw,
        v_plane: &frame.v,
        v_stride: cw,
        width: frame.width,
        height: frame.height,
    };
    yuv::yuv420_to_bgr(&planar, out, stride as u32, RANGE, MATRIX)
        .map_err(|e| Error::invalid(format!("i420_to_bgr: {e}")))
}

// The yuv crate validates too; checking here gives one clear message and keeps the `as u32`
// casts above lossless.
fn check_packed(len: usize, width: u32, height: u32, stride: usize) -> Result<()> {
    let row = width as usize * 3;
    let need = (height as usize).saturating_sub(1) * stride + row;
    if width == 0 || height == 0 || stride < row || stride > u32::MAX as usize || len < need {
        return Err(Error::invalid(format!(
            "BGR buffer of {len} bytes (stride {stride}) does not hold {width}x{height}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Smooth colour gradient, the kind of content 4:2:0 subsampling preserves well.
    fn gradient(w: u32, h: u32, stride: usize) -> Vec<u8> {
        let mut img = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let p = &mut img[y * stride + x * 3..][..3];
                p[0] = (x * 255 / w as usize) as u8;
                p[1] = (y * 255 / h as usize) as u8;
                p[2] = ((x + y) * 255 / (w + h) as usize) as u8;
            }
        }
        img
    }

    fn psnr_bgr(a: &[u8], b: &[u8]) -> f64 {
        let sse: f64 = a.iter().zip(b).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum();
        10.0 * (255.0f64.powi(2) / (sse / a.len() as f64).max(1e-12)).log10()
    }

    #[test]
    fn round_trip_psnr_including_odd_sizes() {
        for &(w, h) in &[(640u32, 360u32), (641, 361), (1279, 719)] {
            let stride = w as usize * 3 + 7; // padded rows must be honoured
            let src = gradient(w, h, stride);
            let frame = bgr_to_i420(&src, w, h, stride).unwrap();
            assert!(frame.is_consistent());
            let mut back = vec![0u8; w as usize * h as usize * 3];
            i420_to_bgr(&frame, &mut back).unwrap();
            let tight: Vec<u8> = src.chunks(stride).flat_map(|r| r[..w as usize * 3].iter().copied()).collect();
            let psnr = psnr_bgr(&tight, &back);
            assert!(psnr > 35.0, "{w}x{h}: {psnr:.1} dB");
        }
    }

    #[test]
    fn tiny_odd_sizes_keep_flat_colour() {
        // Images smaller than a chroma block: a flat colour must survive exactly enough.
        for &(w, h) in &[(1u32, 1u32), (3, 5), (5, 2)] {
            let src = [40u8, 120, 200].repeat((w * h) as usize);
            let f = bgr_to_i420(&src, w, h, w as usize * 3).unwrap();
            let mut back = vec![0u8; src.len()];
            i420_to_bgr(&f, &mut back).unwrap();
            assert!(src.iter().zip(&back).all(|(&a, &b)| (a as i32 - b as i32).abs() <= 3), "{w}x{h}: {back:?}");
        }
    }

    #[test]
    fn limited_range_bt601_values() {
        // White -> Y 235, black -> Y 16, grey -> chroma 128 (limited range).
        let f = bgr_to_i420(&[255; 12], 2, 2, 6).unwrap();
        assert!((f.y[0] as i32 - 235).abs() <= 1 && (f.u[0] as i32 - 128).abs() <= 1);
        let f = bgr_to_i420(&[0; 12], 2, 2, 6).unwrap();
        assert!((f.y[0] as i32 - 16).abs() <= 1 && (f.v[0] as i32 - 128).abs() <= 1);
        // Pure red (BGR 0,0,255): BT.601 limited gives Y~82, U~90, V~240.
        let f = bgr_to_i420(&[0, 0, 255].repeat(4), 2, 2, 6).unwrap();
        assert!((f.y[0] as i32 - 82).abs() <= 2, "{}", f.y[0]);
        assert!((f.u[0] as i32 - 90).abs() <= 2 && (f.v[0] as i32 - 240).abs() <= 2);
    }

    #[test]
    fn bad_buffers_are_errors() {
        assert!(bgr_to_i420(&[0; 10], 2, 2, 6).is_err());
        assert!(bgr_to_i420(&[0; 12], 2, 2, 5).is_err());
        assert!(bgr_to_i420(&[], 0, 2, 0).is_err());
        let f = I420Frame::new(4, 4).unwrap();
        assert!(i420_to_bgr(&f, &mut [0; 47]).is_err());
        assert!(i420_to_bgr(&f, &mut [0; 48]).is_ok());
    }

    #[test]
    fn throughput_1280x720() {
        let (w, h) = (1280u32, 720u32);
        let src = gradient(w, h, w as usize * 3);
        let mut frame = I420Frame::new(w, h).unwrap();
        let mut back = vec![0u8; src.len()];
        let n = 200;
        let t = std::time::Instant::now();
        for _ in 0..n {
            bgr_to_i420_into(&src, w, h, w as usize * 3, &mut frame).unwrap();
        }
        let to_i420 = t.elapsed().as_secs_f64() / n as f64;
        let t = std::time::Instant::now();
        for _ in 0..n {
            i420_to_bgr(&frame, &mut back).unwrap();
        }
        let to_bgr = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "convert 1280x720: bgr->i420 {:.3} ms ({:.0} fps), i420->bgr {:.3} ms ({:.0} fps)",
            to_i420 * 1e3,
            1.0 / to_i420,
            to_bgr * 1e3,
            1.0 / to_bgr
        );
        // Generous bound: only catches a scalar fallback or accidental per-pixel allocation.
        assert!(to_i420 < 0.02 && to_bgr < 0.02);
    }
}
