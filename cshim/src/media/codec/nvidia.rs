//! The NVIDIA Video Codec SDK engine (`nvidia_video_codec_sdk`), decoding only: NVDEC through
//! Shiguredo's `shiguredo_nvcodec` bindings, which `dlopen` the driver's libcuda.so.1,
//! libnvcuvid.so.1 and libnvidia-encode.so.1 at run time; the wheel links none of them.
//!
//! The engine is listed (capability) only when those libraries load, CUDA initializes and
//! device 0 reports decode support for a codec; otherwise [`probe`] says why, once, and the
//! internal engines do the work. Encoding (NVENC) is not wired yet: the GPU machines this
//! project can use have NVDEC but no NVENC.
//!
//! NVDEC runs on its own worker thread (the bindings' design): [`NvdecDecoder::decode_into`]
//! hands a frame over and waits for the picture it gives back (with no display delay the
//! parser outputs each picture as soon as it is decoded), converting NV12 to I420 on the
//! worker. A decode error drops the session; the next frame opens a new one (the pipeline
//! asks for a keyframe meanwhile).
use super::engine::CodecType;
use super::frame::I420Frame;
use crate::error::{Error, Result};
use shiguredo_nvcodec::{query_decoder_caps, DecodedFrame, Decoder, DecoderCodec, DecoderConfig, FnDecodeHandler, SurfaceFormat};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Duration;

/// The GPU device decoding happens on.
const DEVICE: i32 = 0;
/// How long a frame may take to come back: creating the decoder at a sequence header takes
/// tens of milliseconds, a picture a few.
const PICTURE_WAIT: Duration = Duration::from_millis(300);

fn decoder_codec(codec: CodecType) -> DecoderCodec {
    match codec {
        CodecType::Vp8 => DecoderCodec::Vp8,
        CodecType::Vp9 => DecoderCodec::Vp9,
        CodecType::H264 => DecoderCodec::H264,
        CodecType::H265 => DecoderCodec::Hevc,
        CodecType::Av1 => DecoderCodec::Av1,
    }
}

/// The codecs device 0 decodes, or why NVDEC cannot be used here. Probed once per process
/// (loading the driver and `cuInit` are process-wide).
pub fn probe() -> std::result::Result<&'static [CodecType], &'static str> {
    static PROBE: OnceLock<std::result::Result<Vec<CodecType>, String>> = OnceLock::new();
    let r = PROBE.get_or_init(|| {
        let mut codecs = Vec::new();
        for codec in CodecType::ALL {
            match query_decoder_caps(decoder_codec(codec), DEVICE) {
                Ok(caps) if caps.is_supported => codecs.push(codec),
                Ok(_) => {}
                Err(e) => return Err(format!("NVIDIA decoding is unavailable: {e}")),
            }
        }
        if codecs.is_empty() {
            return Err("NVIDIA decoding is unavailable: the GPU decodes none of VP8, VP9, H.264, H.265, AV1".into());
        }
        log::info!("NVDEC on device {DEVICE} decodes {codecs:?}");
        Ok(codecs)
    });
    r.as_deref().map_err(String::as_str)
}

type Picture = std::result::Result<I420Frame, String>;

/// One NVDEC session for one stream.
pub struct NvdecDecoder {
    codec: CodecType,
    session: Option<(Decoder<FnDecodeHandler<u64>>, Receiver<Picture>)>,
    sent: u64,
}

impl NvdecDecoder {
    pub fn new(codec: CodecType) -> Result<Self> {
        if !probe().map_err(Error::state)?.contains(&codec) {
            return Err(Error::state(format!("this GPU does not decode {}", codec.name())));
        }
        let mut d = NvdecDecoder { codec, session: None, sent: 0 };
        d.open()?;
        Ok(d)
    }

    fn open(&mut self) -> Result<()> {
        let config = DecoderConfig {
            codec: decoder_codec(self.codec),
            device_id: DEVICE,
            max_num_decode_surfaces: 20,
            max_display_delay: 0,
            surface_format: SurfaceFormat::Nv12,
        };
        let (tx, rx) = channel::<Picture>();
        let handler = FnDecodeHandler::new(move |r: std::result::Result<DecodedFrame<u64>, shiguredo_nvcodec::Error>| {
            let _ = tx.send(r.map_err(|e| e.to_string()).and_then(|f| nv12_to_i420(&f)));
        });
        let decoder = Decoder::new(config, handler)
            .map_err(|e| Error::state(format!("cannot open an NVDEC {} decoder: {e}", self.codec.name())))?;
        self.session = Some((decoder, rx));
        Ok(())
    }

    /// Decodes one frame into `out`; false when no picture came out (yet).
    pub fn decode_into(&mut self, data: &[u8], out: &mut I420Frame) -> Result<bool> {
        if self.session.is_none() {
            self.open()?;
        }
        let Some((decoder, pictures)) = self.session.as_ref() else { return Ok(false) };
        self.sent += 1;
        if let Err(e) = decoder.decode(data, self.sent) {
            self.session = None;
            return Err(Error::state(format!("NVDEC: {e}")));
        }
        // The newest picture that is ready, waiting for the one just sent.
        let mut got = None;
        let mut wait = PICTURE_WAIT;
        loop {
            match pictures.recv_timeout(wait) {
                Ok(Ok(frame)) => {
                    got = Some(frame);
                    wait = Duration::ZERO; // take any others already there, then stop
                }
                Ok(Err(e)) => {
                    self.session = None; // a new session at the next frame
                    return Err(Error::state(format!("NVDEC decode failed: {e}")));
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    self.session = None;
                    return Err(Error::state("NVDEC: the decoder thread ended"));
                }
            }
        }
        match got {
            Some(frame) => {
                *out = frame;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// NV12 (pitched Y plane, pitched interleaved UV plane) → tight I420.
fn nv12_to_i420(f: &DecodedFrame<u64>) -> std::result::Result<I420Frame, String> {
    let (w, h) = (f.width(), f.height());
    let mut out = I420Frame::new(w as u32, h as u32).map_err(|e| e.message)?;
    let (cw, ch) = (out.chroma_width() as usize, out.chroma_height() as usize);
    let (y, uv) = (f.y_plane(), f.uv_plane());
    let (ys, uvs) = (f.y_stride(), f.uv_stride());
    if ys < w || uvs < cw * 2 || y.len() < ys * (h - 1) + w || uv.len() < uvs * (ch - 1) + cw * 2 {
        return Err(format!("NVDEC gave a {w}x{h} picture with inconsistent planes"));
    }
    for row in 0..h {
        out.y[row * w..(row + 1) * w].copy_from_slice(&y[row * ys..row * ys + w]);
    }
    for row in 0..ch {
        let src = &uv[row * uvs..row * uvs + cw * 2];
        for (i, pair) in src.chunks_exact(2).enumerate() {
            out.u[row * cw + i] = pair[0];
            out.v[row * cw + i] = pair[1];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without an NVIDIA GPU (these CI machines) the engine says why and opens nothing;
    /// with one, VP8 from libvpx decodes on it to the same picture libvpx decodes.
    #[test]
    fn unavailable_cleanly_or_decodes_what_libvpx_decodes() {
        let Err(why) = probe() else {
            return decodes_vp8_like_libvpx();
        };
        assert!(why.starts_with("NVIDIA decoding is unavailable: "), "{why}");
        let err = NvdecDecoder::new(CodecType::H265).err().expect("no decoder without a GPU");
        assert!(err.message.contains("unavailable"), "{}", err.message);
        assert_eq!(probe().unwrap_err(), why, "probed once");
    }

    fn decodes_vp8_like_libvpx() {
        use crate::media::codec::{VideoCodec, VideoDecoder, VideoEncoder, VideoEncoderConfig};
        use crate::media::codec::video::EncoderEngine;
        let config = VideoEncoderConfig { codec: VideoCodec::Vp8, width: 320, height: 240, bitrate_kbps: 800, framerate: 30, vp9_profile: 0 };
        let mut enc = VideoEncoder::new(&EncoderEngine::Internal, config).unwrap();
        let mut sw = VideoDecoder::new(VideoCodec::Vp8, None).unwrap();
        let mut hw = NvdecDecoder::new(CodecType::Vp8).unwrap();
        let mut decoded = 0;
        for i in 0..30u32 {
            let mut src = I420Frame::new(320, 240).unwrap();
            for (k, p) in src.y.iter_mut().enumerate() {
                *p = ((k as u32 % 320 + i * 4) % 220 + 16) as u8;
            }
            for f in enc.encode(&src, i * 3000, i == 0).unwrap() {
                let a = sw.decode(&f.data).unwrap();
                let mut b = I420Frame::new(2, 2).unwrap();
                if hw.decode_into(&f.data, &mut b).unwrap() {
                    let a = a.unwrap();
                    assert_eq!((b.width, b.height), (320, 240));
                    assert!(crate::media::codec::psnr_y(&a, &b).unwrap() > 45.0, "NVDEC and libvpx disagree");
                    decoded += 1;
                }
            }
        }
        assert!(decoded >= 25, "{decoded} of 30 pictures from NVDEC");
    }
}
