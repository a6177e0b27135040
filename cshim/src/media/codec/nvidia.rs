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
//! hands a frame over, tagged with its number, and waits (at most [`PICTURE_WAIT`]) for the
//! picture with that tag; with no display delay the parser outputs each picture as soon as
//! it is decoded. NV12 becomes I420 on the worker. The bindings have no "frame handled"
//! signal, and their flush ends the stream (decoding after it fails), so a frame that gives
//! no picture is only known by the wait running out. A decode error drops the session; the
//! next frame opens a new one (the pipeline asks for a keyframe meanwhile).
use super::engine::CodecType;
use super::frame::I420Frame;
use crate::error::{Error, Result};
use shiguredo_nvcodec::{query_decoder_caps, DecodedFrame, Decoder, DecoderCodec, DecoderConfig, FnDecodeHandler, SurfaceFormat};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The GPU device decoding happens on.
const DEVICE: i32 = 0;
/// How long a frame's picture may take to come back. An H200 decodes a 720p frame in 1-2
/// ms; the first picture of a session waits for NVDEC to create its decoder at the sequence
/// header. A picture later than this comes out with the next frame's call (see `skew`),
/// and a frame the parser skips without a word (junk) costs this much.
const PICTURE_WAIT: Duration = Duration::from_millis(200);

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

/// A picture and the number of the frame it came from (the bindings hand each frame's tag
/// back with its picture).
type Picture = std::result::Result<(u64, I420Frame), String>;

/// One NVDEC session for one stream.
pub struct NvdecDecoder {
    codec: CodecType,
    session: Option<(Decoder<FnDecodeHandler<u64>>, Receiver<Picture>)>,
    /// Frames handed to NVDEC in this session (their tags).
    sent: u64,
    /// How far the tags on pictures lag the frames they came from: the bindings tag pictures
    /// in order, so a frame that gives no picture shifts every later tag by one.
    skew: u64,
}

impl NvdecDecoder {
    pub fn new(codec: CodecType) -> Result<Self> {
        if !probe().map_err(Error::state)?.contains(&codec) {
            return Err(Error::state(format!("this GPU does not decode {}", codec.name())));
        }
        let mut d = NvdecDecoder { codec, session: None, sent: 0, skew: 0 };
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
            let _ = tx.send(r.map_err(|e| e.to_string()).and_then(|f| Ok((*f.user_data(), nv12_to_i420(&f)?))));
        });
        let decoder = Decoder::new(config, handler)
            .map_err(|e| Error::state(format!("cannot open an NVDEC {} decoder: {e}", self.codec.name())))?;
        self.session = Some((decoder, rx));
        self.sent = 0;
        self.skew = 0;
        Ok(())
    }

    /// Decodes one frame into `out`; false when no picture came out (yet).
    pub fn decode_into(&mut self, data: &[u8], out: &mut I420Frame) -> Result<bool> {
        if data.is_empty() {
            return Ok(false); // (the parser would take an empty packet for the stream's end)
        }
        if self.session.is_none() {
            self.open()?;
        }
        let Some((decoder, pictures)) = self.session.as_ref() else { return Ok(false) };
        self.sent += 1;
        if let Err(e) = decoder.decode(data, self.sent) {
            self.session = None;
            return Err(Error::state(format!("NVDEC: {e}")));
        }
        // Wait for this frame's picture; older ones that come first (a frame that overran its
        // wait) are passed over, so a late picture never leaves the stream a frame behind.
        let deadline = Instant::now() + PICTURE_WAIT;
        let mut got = None;
        loop {
            match pictures.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok((tag, frame))) => {
                    got = Some((tag, frame));
                    self.skew = self.skew.min(self.sent.saturating_sub(tag));
                    if tag + self.skew >= self.sent {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    self.session = None; // a new session at the next frame
                    return Err(Error::state(format!("NVDEC decode failed: {e}")));
                }
                Err(RecvTimeoutError::Timeout) => {
                    // A picture came but not this frame's: some frame gave none (see `skew`).
                    if let Some((tag, _)) = &got {
                        self.skew = self.sent.saturating_sub(*tag);
                    }
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.session = None;
                    return Err(Error::state("NVDEC: the decoder thread ended"));
                }
            }
        }
        match got {
            Some((_, frame)) => {
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
    //! Without an NVIDIA GPU (CI) each test checks that the engine says why and opens
    //! nothing. With one, the same tests decode on it: every codec the GPU reports, made by
    //! the engines built in (VP8, VP9, AV1), OpenH264 (H.264) and Debian's x265 command
    //! (H.265, where installed), compared with the source and with the software decoders.
    use super::*;
    use crate::media::codec::aom::tests::pattern;
    use crate::media::codec::frame::psnr_y;
    use crate::media::codec::openh264::H264Params;
    use crate::media::codec::video::EncoderEngine;
    use crate::media::codec::{VideoCodec, VideoDecoder, VideoEncoder, VideoEncoderConfig};

    /// Whether this machine has NVDEC; without it, checks the unavailable path.
    fn gpu() -> bool {
        match probe() {
            Ok(_) => true,
            Err(why) => {
                assert!(why.starts_with("NVIDIA decoding is unavailable: "), "{why}");
                let err = NvdecDecoder::new(CodecType::H265).err().expect("no decoder without a GPU");
                assert!(err.message.contains("unavailable"), "{}", err.message);
                assert_eq!(probe().unwrap_err(), why, "probed once");
                false
            }
        }
    }

    /// OpenH264 2.6.0 where .ci/setup puts it (or SORA_FFI_OPENH264), if there.
    fn openh264() -> Option<String> {
        let path = crate::media::codec::openh264::tests::library_path_2_6();
        std::path::Path::new(&path).exists().then_some(path)
    }

    /// `n` frames of the moving pattern at `w`x`h` encoded to `codec`: (source, frame data).
    /// None when nothing here encodes it (H.264 without OpenH264, H.265 without x265).
    fn stream(codec: CodecType, w: u32, h: u32, n: u32) -> Option<Vec<(I420Frame, Vec<u8>)>> {
        let sources: Vec<I420Frame> = (0..n).map(|t| pattern(w, h, t)).collect();
        let (engine, codec) = match codec {
            CodecType::H265 => return hevc_stream(sources),
            CodecType::Vp8 => (EncoderEngine::Internal, VideoCodec::Vp8),
            CodecType::Vp9 => (EncoderEngine::Internal, VideoCodec::Vp9),
            CodecType::Av1 => (EncoderEngine::Internal, VideoCodec::Av1),
            CodecType::H264 => (EncoderEngine::OpenH264 { path: openh264()?, params: H264Params::default() }, VideoCodec::H264),
        };
        let config = VideoEncoderConfig { codec, width: w, height: h, bitrate_kbps: 2500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 };
        let mut enc = VideoEncoder::new(&engine, config).unwrap();
        let mut out = Vec::new();
        for (t, src) in sources.into_iter().enumerate() {
            let frames = enc.encode(&src, t as u32 * 3000, t == 0).unwrap();
            assert!(frames.len() <= 1, "one frame per picture (no layers)");
            out.extend(frames.into_iter().map(|f| (src.clone(), f.data)));
        }
        Some(out)
    }

    /// The pattern through the x265 command (GPL: run, never linked), split into access
    /// units (a slice with first_slice_segment_in_pic_flag starts the next picture's
    /// parameter sets and slices).
    fn hevc_stream(sources: Vec<I420Frame>) -> Option<Vec<(I420Frame, Vec<u8>)>> {
        let dir = std::env::temp_dir().join(format!("sora_ffi_nvdec_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = (sources[0].width, sources[0].height);
        let mut raw = Vec::new();
        for s in &sources {
            raw.extend_from_slice(&s.y);
            raw.extend_from_slice(&s.u);
            raw.extend_from_slice(&s.v);
        }
        std::fs::write(dir.join("in.yuv"), raw).unwrap();
        let status = std::process::Command::new("x265")
            .current_dir(&dir)
            .args(["--input", "in.yuv", "--input-res", &format!("{w}x{h}"), "--fps", "30", "--preset", "ultrafast"])
            .args(["--tune", "zerolatency", "--keyint", "30", "--bframes", "0", "--bitrate", "2500", "--log-level", "error", "--no-progress"])
            .args(["--output", "out.hevc"])
            .status();
        let stream = status.ok().filter(|s| s.success()).and_then(|_| std::fs::read(dir.join("out.hevc")).ok());
        let _ = std::fs::remove_dir_all(&dir);
        let stream = stream?;
        let mut units: Vec<Vec<u8>> = Vec::new();
        let mut seen_slice = false;
        for nal in crate::media::rtp::annexb::split(&stream) {
            let slice = (nal[0] >> 1) & 0x3f <= 31;
            let first_slice = slice && nal.get(2).is_some_and(|b| b & 0x80 != 0);
            if units.is_empty() || (seen_slice && (first_slice || !slice)) {
                units.push(Vec::new());
                seen_slice = false;
            }
            let unit = units.last_mut().unwrap();
            unit.extend_from_slice(&crate::media::rtp::annexb::START_CODE);
            unit.extend_from_slice(nal);
            seen_slice |= slice;
        }
        assert_eq!(units.len(), sources.len(), "one access unit per picture");
        Some(sources.into_iter().zip(units).collect())
    }

    fn software(codec: CodecType) -> Option<VideoDecoder> {
        match codec {
            CodecType::H265 => None,
            CodecType::H264 => Some(VideoDecoder::new(VideoCodec::H264, Some(&openh264()?)).unwrap()),
            c => Some(VideoDecoder::with_engine(c, &super::super::video::DecoderEngine::Internal).unwrap()),
        }
    }

    /// Every codec the GPU reports decodes to the picture that was sent (PSNR against the
    /// source) and to what the software decoder makes of the same frames.
    #[test]
    fn decodes_every_codec_it_reports_like_the_software_decoders() {
        if !gpu() {
            return;
        }
        let mut checked = Vec::new();
        for &codec in probe().unwrap() {
            let Some(frames) = stream(codec, 640, 360, 40) else {
                eprintln!("NVDEC {}: nothing here encodes it, not checked", codec.name());
                continue;
            };
            let mut hw = NvdecDecoder::new(codec).unwrap();
            let mut sw = software(codec);
            let mut pic = I420Frame::new(2, 2).unwrap();
            let (mut decoded, mut worst_src, mut worst_sw) = (0, f64::MAX, f64::MAX);
            for (src, data) in &frames {
                let reference = sw.as_mut().map(|d| d.decode(data).unwrap());
                if hw.decode_into(data, &mut pic).unwrap() {
                    decoded += 1;
                    assert_eq!((pic.width, pic.height), (640, 360), "{}", codec.name());
                    worst_src = worst_src.min(psnr_y(src, &pic).unwrap());
                    if let Some(Some(r)) = reference {
                        worst_sw = worst_sw.min(psnr_y(&r, &pic).unwrap());
                    }
                }
            }
            let sw_note = match (sw.is_some(), worst_sw) {
                (false, _) => "no software decoder here".to_string(),
                (true, p) if p >= f64::MAX => "bit-exact with the software decoder".to_string(),
                (true, p) => format!("vs software >= {p:.1} dB"),
            };
            eprintln!("NVDEC {}: {decoded}/{} pictures, PSNR vs source >= {worst_src:.1} dB, {sw_note}", codec.name(), frames.len());
            assert!(decoded >= frames.len() - 2, "{}: {decoded} of {} pictures", codec.name(), frames.len());
            assert!(worst_src > 28.0, "{}: {worst_src} dB against the source", codec.name());
            if sw.is_some() {
                assert!(worst_sw > 40.0, "{}: NVDEC and the software decoder disagree ({worst_sw} dB)", codec.name());
            }
            checked.push(codec);
        }
        assert!(checked.contains(&CodecType::Vp9) || checked.contains(&CodecType::Av1), "checked {checked:?}");
    }

    /// A stream whose size changes at keyframes (up, down, odd sizes) comes out at each new
    /// size: the session re-creates its decoder at the new sequence header.
    #[test]
    fn follows_resolution_changes_and_odd_sizes() {
        if !gpu() {
            return;
        }
        for codec in [CodecType::Vp9, CodecType::Av1] {
            if !probe().unwrap().contains(&codec) {
                continue;
            }
            let mut hw = NvdecDecoder::new(codec).unwrap();
            let mut pic = I420Frame::new(2, 2).unwrap();
            for (w, h) in [(320, 240), (1280, 720), (1921, 1081), (176, 144), (640, 360)] {
                let mut decoded = 0;
                for (src, data) in stream(codec, w, h, 5).unwrap() {
                    if hw.decode_into(&data, &mut pic).unwrap() {
                        assert_eq!((pic.width, pic.height), (w, h), "{}", codec.name());
                        assert!(psnr_y(&src, &pic).unwrap() > 25.0, "{} at {w}x{h}", codec.name());
                        decoded += 1;
                    }
                }
                assert!(decoded >= 4, "{} at {w}x{h}: {decoded} of 5", codec.name());
            }
        }
    }

    /// Junk, truncated frames and frames whose references are gone give errors or no
    /// picture (never a crash or a hang); the next keyframe decodes again.
    #[test]
    fn junk_and_truncated_frames_then_recovery_at_a_keyframe() {
        if !gpu() {
            return;
        }
        for &codec in probe().unwrap() {
            let Some(frames) = stream(codec, 320, 240, 31) else { continue };
            let mut hw = NvdecDecoder::new(codec).unwrap();
            let mut pic = I420Frame::new(2, 2).unwrap();
            let started = std::time::Instant::now();
            let mut junk = vec![0u8; 3000];
            for (i, b) in junk.iter_mut().enumerate() {
                *b = (i * 7919 % 251) as u8;
            }
            let _ = hw.decode_into(&junk, &mut pic);
            let _ = hw.decode_into(&frames[0].1[..frames[0].1.len() / 3], &mut pic);
            let _ = hw.decode_into(&frames[5].1, &mut pic); // its references never arrived whole
            let _ = hw.decode_into(&[], &mut pic);
            assert!(started.elapsed() < Duration::from_secs(3), "{}: junk took {:?}", codec.name(), started.elapsed());
            // A keyframe decodes again (frames[30]: x265 --keyint 30; the others: a new
            // stream), and every frame after it gives its own picture at once: the junk left
            // no lag behind (at most one wait while the session finds its feet).
            let again = if codec == CodecType::H265 { frames[30..].to_vec() } else { stream(codec, 320, 240, 12).unwrap() };
            let started = std::time::Instant::now();
            let mut pictures = Vec::new();
            for (src, d) in &again {
                if hw.decode_into(d, &mut pic).unwrap_or(false) {
                    pictures.push(psnr_y(src, &pic).unwrap());
                }
            }
            let took = started.elapsed();
            eprintln!("NVDEC {} after junk: {} pictures of {} in {took:?}, PSNR {pictures:.1?}", codec.name(), pictures.len(), again.len());
            assert!(pictures.len() + 2 >= again.len(), "{}: {} pictures of {}", codec.name(), pictures.len(), again.len());
            assert!(pictures.iter().skip(1).all(|&p| p > 28.0), "{}: each picture is its own frame's", codec.name());
            assert!(took < PICTURE_WAIT * 3, "{}: {took:?}", codec.name());
        }
    }

    /// Many sessions at once (one per received stream), each decoding its own stream.
    #[test]
    fn sixteen_sessions_at_once() {
        if !gpu() {
            return;
        }
        let codec = if probe().unwrap().contains(&CodecType::Vp8) { CodecType::Vp8 } else { CodecType::Av1 };
        let frames = stream(codec, 320, 240, 10).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let frames = frames.clone();
                std::thread::spawn(move || {
                    let t0 = std::time::Instant::now();
                    let mut hw = NvdecDecoder::new(codec).unwrap();
                    let opened = t0.elapsed();
                    let mut pic = I420Frame::new(2, 2).unwrap();
                    let got = frames.iter().filter(|(_, d)| hw.decode_into(d, &mut pic).unwrap()).count();
                    (got, opened, t0.elapsed())
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        eprintln!("16 NVDEC sessions: (pictures, open, total) {results:?}");
        for (got, ..) in results {
            // Sessions share the device's primary context (our patch to the bindings: 16
            // opened in 0.10 s on an H200, 2.0-2.4 s with a context each); their decoders,
            // created at once at the first frame, make first pictures overrun the wait (a
            // late picture comes out with the next frame's call): 7-10 of 10 came out.
            assert!(got * 2 >= frames.len(), "{got} of {}", frames.len());
        }
    }

    /// Not a test: decode time per 720p frame, NVDEC against the software decoders
    /// (`cargo test --release -- --ignored nvdec_speed --nocapture` on a GPU machine).
    #[test]
    #[ignore]
    fn nvdec_speed() {
        if !gpu() {
            return;
        }
        fn cpu_ms() -> f64 {
            let mut t = libc_timespec { tv_sec: 0, tv_nsec: 0 };
            unsafe { clock_gettime(2, &mut t) }; // CLOCK_PROCESS_CPUTIME_ID
            t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
        }
        #[repr(C)]
        struct libc_timespec {
            tv_sec: i64,
            tv_nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, t: *mut libc_timespec) -> i32;
        }
        for &codec in probe().unwrap() {
            let Some(frames) = stream(codec, 1280, 720, 150) else { continue };
            let mut hw = NvdecDecoder::new(codec).unwrap();
            let mut pic = I420Frame::new(2, 2).unwrap();
            hw.decode_into(&frames[0].1, &mut pic).unwrap();
            let (t0, c0) = (std::time::Instant::now(), cpu_ms());
            for (_, d) in &frames[1..] {
                hw.decode_into(d, &mut pic).unwrap();
            }
            let n = (frames.len() - 1) as f64;
            let (wall, cpu) = (t0.elapsed().as_secs_f64() * 1e3 / n, (cpu_ms() - c0) / n);
            let sw = software(codec).map(|mut sw| {
                sw.decode(&frames[0].1).unwrap();
                let (t0, c0) = (std::time::Instant::now(), cpu_ms());
                for (_, d) in &frames[1..] {
                    sw.decode(d).unwrap();
                }
                format!("software {:.2} ms wall, {:.2} ms CPU", t0.elapsed().as_secs_f64() * 1e3 / n, (cpu_ms() - c0) / n)
            });
            eprintln!("720p {}: NVDEC {wall:.2} ms wall, {cpu:.2} ms CPU per frame; {}", codec.name(), sw.unwrap_or_default());
        }
    }
}
