//! AV1 decoder over dav1d (built from the source `libdav1d-sys` vendors, 8-bit only), set up
//! for realtime video as libwebrtc sets it up: one picture out per temporal unit in
//! (`max_frame_delay` 1), only the highest spatial layer, and no worker threads of its own,
//! so that a process's thread count does not grow with its AV1 receivers (a 1080p picture
//! takes a few ms on one core).
use super::frame::I420Frame;
use crate::error::{Error, Result};
use libdav1d_sys as ffi;
use std::os::raw::c_int;
use std::ptr;

/// The largest picture decoded, in pixels.
const MAX_PICTURE_PIXELS: u32 = 8192 * 8192;

pub struct Av1Decoder {
    ctx: *mut ffi::Dav1dContext,
}

// SAFETY: the context is used from one thread at a time (&mut self); dav1d keeps no
// thread-local state for it (n_threads 1: no worker threads).
unsafe impl Send for Av1Decoder {}

impl Drop for Av1Decoder {
    fn drop(&mut self) {
        // SAFETY: opened in new(), closed once (dav1d_close sets the pointer to null).
        unsafe { ffi::dav1d_close(&mut self.ctx) };
    }
}

fn failed(what: &str, code: c_int) -> Error {
    let reason = std::io::Error::from_raw_os_error(-code);
    Error::internal(format!("{what}: {reason}"))
}

/// Unrefs the data on every exit path (a no-op once dav1d has consumed it).
struct Data(ffi::Dav1dData);

impl Drop for Data {
    fn drop(&mut self) {
        // SAFETY: created by dav1d_data_create; unref of consumed (empty) data is allowed.
        unsafe { ffi::dav1d_data_unref(&mut self.0) };
    }
}

struct Picture(ffi::Dav1dPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: filled by dav1d_get_picture (or still all zero, which unref accepts).
        unsafe { ffi::dav1d_picture_unref(&mut self.0) };
    }
}

impl Av1Decoder {
    pub fn new() -> Result<Self> {
        Self::with_limit(MAX_PICTURE_PIXELS)
    }

    /// A decoder that refuses pictures of more than `max_pixels`.
    fn with_limit(max_pixels: u32) -> Result<Self> {
        // SAFETY: dav1d_default_settings fills the whole struct.
        let mut s: ffi::Dav1dSettings = unsafe { std::mem::zeroed() };
        unsafe { ffi::dav1d_default_settings(&mut s) };
        s.n_threads = 1;
        s.max_frame_delay = 1;
        s.all_layers = 0;
        // A hostile sender's sequence header cannot make every receiver allocate pictures of
        // up to 16384x16384 (the AV1 maximum is 65536 a side): 8192x8192 is as large as a
        // sora_ffi source sends, and larger pictures are reported as undecodable.
        s.frame_size_limit = max_pixels;
        let mut ctx = ptr::null_mut();
        // SAFETY: settings are read during the call; ctx receives the new context.
        let r = unsafe { ffi::dav1d_open(&mut ctx, &s) };
        if r < 0 || ctx.is_null() {
            return Err(failed("dav1d_open", r));
        }
        Ok(Av1Decoder { ctx })
    }

    /// Decodes one temporal unit into `out`; returns whether a picture came out. `Err` for
    /// corrupt data or missing references (ask for a keyframe).
    pub fn decode_into(&mut self, data: &[u8], out: &mut I420Frame) -> Result<bool> {
        if data.is_empty() {
            return Err(Error::invalid("empty AV1 temporal unit"));
        }
        // SAFETY: all-zero is an empty Dav1dData; dav1d_data_create gives it a buffer.
        let mut input = Data(unsafe { std::mem::zeroed() });
        let buf = unsafe { ffi::dav1d_data_create(&mut input.0, data.len()) };
        if buf.is_null() {
            return Err(Error::internal("dav1d_data_create: out of memory"));
        }
        // SAFETY: dav1d allocated data.len() bytes at buf.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
        let mut decoded = false;
        loop {
            // SAFETY: ctx is open; input is owned data dav1d takes a reference to.
            let sent = unsafe { ffi::dav1d_send_data(self.ctx, &mut input.0) };
            if sent < 0 && sent != ffi::DAV1D_ERR_AGAIN {
                self.flush();
                return Err(failed("AV1 temporal unit not decodable", sent));
            }
            // Pictures ready now (with max_frame_delay 1, the unit just sent).
            let mut progressed = sent == 0;
            loop {
                let mut pic = Picture(unsafe { std::mem::zeroed() });
                // SAFETY: ctx is open; pic receives a reference we drop with Picture.
                let got = unsafe { ffi::dav1d_get_picture(self.ctx, &mut pic.0) };
                if got == ffi::DAV1D_ERR_AGAIN {
                    break;
                }
                if got < 0 {
                    self.flush();
                    return Err(failed("AV1 picture not decodable", got));
                }
                copy_picture(&pic.0, out)?;
                decoded = true;
                progressed = true;
            }
            if input.0.sz == 0 {
                return Ok(decoded);
            }
            if !progressed {
                // Neither takes data nor gives pictures: a stuck state, never expected.
                self.flush();
                return Err(Error::internal("dav1d took no data and gave no picture"));
            }
        }
    }

    /// Forgets everything buffered and every reference: after an error the next unit that
    /// decodes is a keyframe, as for the other decoders.
    fn flush(&mut self) {
        // SAFETY: ctx is open.
        unsafe { ffi::dav1d_flush(self.ctx) };
    }
}

fn copy_picture(pic: &ffi::Dav1dPicture, out: &mut I420Frame) -> Result<()> {
    let (w, h) = (pic.p.w, pic.p.h);
    if pic.p.layout != ffi::Dav1dPixelLayout::DAV1D_PIXEL_LAYOUT_I420 || pic.p.bpc != 8 || w <= 0 || h <= 0 {
        return Err(Error::internal(format!(
            "unsupported AV1 picture ({w}x{h}, {} bits, layout {}): only 8-bit 4:2:0 is decoded",
            pic.p.bpc, pic.p.layout as u32
        )));
    }
    let stride = |i: usize| usize::try_from(pic.stride[i.min(1)]).unwrap_or(0);
    let planes = std::array::from_fn(|i| (pic.data[i] as *const u8, stride(i)));
    // SAFETY: a dav1d picture holds `stride` bytes per row for h (chroma: rounded up) rows
    // while the Picture reference is alive, which is for this call.
    unsafe { out.copy_from_decoder(w as u32, h as u32, planes, 8) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::aom::Av1Encoder;
    use crate::media::codec::video::{VideoCodec, VideoEncoderConfig};

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
    }

    /// Many receivers decode AV1 without a thread each (issue 9: threads must not grow
    /// with connections). Other tests may start a thread or two meanwhile; one thread per
    /// decoder would add 16.
    #[test]
    #[cfg(target_os = "linux")]
    fn decoders_start_no_threads_of_their_own() {
        let config = VideoEncoderConfig { codec: VideoCodec::Av1, width: 320, height: 240, bitrate_kbps: 500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 };
        let mut enc = Av1Encoder::new(config).unwrap();
        let frame = I420Frame::new(320, 240).unwrap();
        let key = enc.encode(&frame, 0, true).unwrap().remove(0).data;
        let before = threads();
        let mut decoders: Vec<Av1Decoder> = (0..16).map(|_| Av1Decoder::new().unwrap()).collect();
        let mut out = I420Frame::new(2, 2).unwrap();
        for d in &mut decoders {
            assert!(d.decode_into(&key, &mut out).unwrap());
        }
        let grown = threads().saturating_sub(before);
        assert!(grown < 8, "{grown} threads more with 16 AV1 decoders");
    }

    #[test]
    fn pictures_over_the_size_limit_are_an_error_not_an_allocation() {
        let config = VideoEncoderConfig { codec: VideoCodec::Av1, width: 640, height: 480, bitrate_kbps: 500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 };
        let mut enc = Av1Encoder::new(config).unwrap();
        let key = enc.encode(&I420Frame::new(640, 480).unwrap(), 0, true).unwrap().remove(0).data;
        let mut out = I420Frame::new(2, 2).unwrap();
        let mut small = Av1Decoder::with_limit(320 * 240).unwrap();
        assert!(small.decode_into(&key, &mut out).is_err());
        assert_eq!((out.width, out.height), (2, 2), "nothing was written");
        assert!(Av1Decoder::new().unwrap().decode_into(&key, &mut out).unwrap());
        assert_eq!((out.width, out.height), (640, 480));
    }

    #[test]
    fn bytes_that_are_not_av1_are_an_error() {
        let mut d = Av1Decoder::new().unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        for junk in [&[0xffu8; 7][..], &[0x12, 0x00][..], &[0x0a, 0x0b, 0, 0, 0, 0x24, 0xff][..], &[0u8; 64][..]] {
            assert!(!matches!(d.decode_into(junk, &mut out), Ok(true)), "{junk:?}");
        }
    }
}
