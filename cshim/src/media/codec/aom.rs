//! AV1 encoder over libaom (built from the source `libaom-sys` vendors, realtime-only and
//! 8-bit: cshim/patches), configured like libwebrtc's realtime AV1: one-pass CBR, no
//! lookahead, keyframes on request, the coding tools realtime video does not pay for turned
//! off. Decoding is dav1d's (`super::dav1d`).
//!
//! The encoder's output is one temporal unit per frame in the low-overhead bitstream format
//! (OBUs with size fields, a temporal delimiter first), as the AV1 RTP packetizer
//! (`media::rtp::av1`) takes it and the depacketizer gives it back.
use super::frame::I420Frame;
use super::video::{temporal_bitrates, EncodedFrame, EncoderClock, TemporalPosition, VideoEncoderConfig};
use crate::error::{Error, Result};
use libaom_sys as ffi;
use std::ffi::CStr;
use std::os::raw::{c_int, c_long, c_uint, c_ulong};
use std::ptr;

const TIMEBASE: c_int = 90_000;

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn error(what: &str, ctx: &mut ffi::aom_codec_ctx_t) -> Error {
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: libaom returns NUL-terminated static or context-owned strings.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: ctx is a live (possibly failed-init) context; both calls only read it.
    let (msg, detail) = unsafe { (text(ffi::aom_codec_error(ctx)), text(ffi::aom_codec_error_detail(ctx))) };
    let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
    Error::internal(format!("{what}: {msg}{detail}"))
}

fn check(err: ffi::aom_codec_err_t, what: &str, ctx: &mut ffi::aom_codec_ctx_t) -> Result<()> {
    if err == ffi::AOM_CODEC_OK {
        Ok(())
    } else {
        Err(error(what, ctx))
    }
}

/// Realtime speed by picture size. Never 10: libaom 3.6 at speed 10 skipped blocks whose
/// source changed little, and left them stale (a third of the test pattern's frames had an
/// unreadable code at 640x360, none at speed 9), and in 3.11 it saves only ~5 % of speed
/// 9's CPU (docs/design.md). Speed 9 did the same at 480x270 (a 960x540 simulcast's middle
/// layer at 583 kbps: a third of its codes unreadable); pictures that small get 8.
fn speed(width: u32, height: u32) -> c_int {
    if width as u64 * height as u64 > 480 * 270 {
        9
    } else {
        8
    }
}

/// libaom's SVC parameters for one spatial layer and `c.temporal_layers` temporal ones at
/// `kbps` in all: the frame rate halves per layer down (TL0 at a quarter in L1T3), the
/// bitrate splits as libwebrtc's VP8 layering does (`temporal_bitrates`).
fn svc_params(c: &VideoEncoderConfig, kbps: u32) -> ffi::aom_svc_params_t {
    // SAFETY: plain integer arrays; all-zero is a valid start.
    let mut p: ffi::aom_svc_params_t = unsafe { std::mem::zeroed() };
    let layers = c.temporal_layers as usize;
    p.number_spatial_layers = 1;
    p.number_temporal_layers = layers as c_int;
    p.scaling_factor_num[0] = 1;
    p.scaling_factor_den[0] = 1;
    for (i, layer_kbps) in temporal_bitrates(c.temporal_layers, kbps).enumerate() {
        p.min_quantizers[i] = MIN_QUANTIZER as c_int;
        p.max_quantizers[i] = MAX_QUANTIZER as c_int;
        p.layer_target_bitrate[i] = layer_kbps as c_int;
        p.framerate_factor[i] = 1 << (layers - 1 - i);
    }
    p
}

/// Index of LAST among libaom's seven references (LAST, LAST2, LAST3, GOLDEN, BWDREF,
/// ALTREF2, ALTREF).
const LAST: usize = 0;
/// The buffer slot the top temporal layer's frames are kept in (`temporal_refs`).
const UNREFERENCED: usize = 7;

/// The references and refreshes of the frame at `at` in the period of `layers` temporal
/// layers (`temporal_pattern`). Slot 0 holds the
/// last TL0 frame, slot 1 L1T3's last TL1 frame; only TL0 frames write slot 0, so a receiver
/// without the layers above decodes the rest.
///
/// The top layer's frames keep themselves in slot 7, which no frame refers to. A frame
/// that refreshes nothing is a "non-reference frame" to libaom, which at speed 8 and above
/// then skips blocks aggressively: 7 of 48 such 720p frames of the test pattern showed
/// stale blocks (1 with slot 7; 3 of 48 frames in L1T1), for ~25 % less encode time.
fn temporal_refs(layers: u8, at: usize) -> ffi::aom_svc_ref_frame_config_t {
    let mut refs = ffi::aom_svc_ref_frame_config_t { reference: [0; 7], ref_idx: [0, 1, 2, 3, 4, 5, 6], refresh: [0; 8] };
    refs.reference[LAST] = 1;
    match (layers, at) {
        (_, 0) => refs.refresh[0] = 1,
        (3, 2) => refs.refresh[1] = 1, // TL1: kept for the TL2 frame after it
        (3, 3) => {
            refs.ref_idx.swap(LAST, 1); // LAST is the TL1 frame
            refs.refresh[UNREFERENCED] = 1;
        }
        _ => refs.refresh[UNREFERENCED] = 1,
    }
    refs
}

const MIN_QUANTIZER: c_uint = 10;
const MAX_QUANTIZER: c_uint = 56;

/// Context and config boxed together: libaom keeps a pointer to the config.
struct EncCtx {
    ctx: ffi::aom_codec_ctx_t,
    cfg: ffi::aom_codec_enc_cfg_t,
    initialized: bool,
}

impl Drop for EncCtx {
    fn drop(&mut self) {
        if self.initialized {
            // SAFETY: initialised by aom_codec_enc_init_ver and destroyed once.
            unsafe { ffi::aom_codec_destroy(&mut self.ctx) };
        }
    }
}

pub struct Av1Encoder {
    config: VideoEncoderConfig,
    enc: Box<EncCtx>,
    clock: EncoderClock,
    /// Where the next frame goes in the temporal layering's period.
    temporal: TemporalPosition,
}

// SAFETY: the context is used from one thread at a time (&mut self).
unsafe impl Send for Av1Encoder {}

impl Av1Encoder {
    pub fn new(config: VideoEncoderConfig) -> Result<Self> {
        let enc = Self::open(&config)?;
        let temporal = TemporalPosition::new(config.temporal_layers);
        Ok(Av1Encoder { config, enc, clock: EncoderClock::default(), temporal })
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    fn open(c: &VideoEncoderConfig) -> Result<Box<EncCtx>> {
        if c.width == 0 || c.height == 0 || c.width > super::frame::MAX_DIMENSION || c.height > super::frame::MAX_DIMENSION {
            return Err(Error::invalid(format!("invalid encoder size {}x{}", c.width, c.height)));
        }
        if c.bitrate_kbps == 0 || c.framerate == 0 || c.framerate > 240 {
            return Err(Error::invalid("bitrate_kbps and framerate (1..240) must be set"));
        }
        if !(1..=3).contains(&c.temporal_layers) {
            return Err(Error::invalid(format!("AV1 with {} temporal layers is not supported (1 to 3)", c.temporal_layers)));
        }
        // SAFETY: both zeroed structs are plain data, filled by libaom below.
        let mut enc = Box::new(EncCtx { ctx: unsafe { std::mem::zeroed() }, cfg: unsafe { std::mem::zeroed() }, initialized: false });
        // SAFETY: the interface is a static table; cfg is written.
        let iface = unsafe { ffi::aom_codec_av1_cx() };
        let err = unsafe { ffi::aom_codec_enc_config_default(iface, &mut enc.cfg, ffi::AOM_USAGE_REALTIME) };
        check(err, "aom_codec_enc_config_default", &mut enc.ctx)?;
        let pixels = c.width as u64 * c.height as u64;
        let threads = if pixels > 640 * 480 { cores().clamp(1, 4) } else { cores().clamp(1, 2) };
        let cfg = &mut enc.cfg;
        cfg.g_w = c.width;
        cfg.g_h = c.height;
        cfg.g_threads = threads as c_uint;
        cfg.g_profile = 0; // main: 8/10-bit 4:2:0 (what WebRTC negotiates as profile=0)
        cfg.g_timebase = ffi::aom_rational { num: 1, den: TIMEBASE };
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = 0;
        cfg.g_pass = ffi::AOM_RC_ONE_PASS;
        cfg.rc_end_usage = ffi::AOM_CBR;
        cfg.rc_target_bitrate = c.bitrate_kbps;
        cfg.rc_dropframe_thresh = 0;
        cfg.rc_min_quantizer = MIN_QUANTIZER;
        cfg.rc_max_quantizer = MAX_QUANTIZER;
        cfg.rc_undershoot_pct = 50;
        cfg.rc_overshoot_pct = 50;
        cfg.rc_buf_initial_sz = 600;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        // Keyframes come on request (PLI/FIR); 3000 frames is only a safety net. (libaom 3.6
        // crashes in motion search with AOM_KF_DISABLED and kf_max_dist 0.)
        cfg.kf_mode = ffi::AOM_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = 3000;
        let EncCtx { ctx, cfg, initialized } = &mut *enc;
        // SAFETY: ctx and cfg live in the box for the encoder's lifetime.
        let err = unsafe { ffi::aom_codec_enc_init_ver(ctx, iface, cfg, 0, ffi::AOM_ENCODER_ABI_VERSION as c_int) };
        check(err, "aom_codec_enc_init", ctx)?;
        *initialized = true;
        let tile_columns = if threads >= 4 { 2 } else if threads >= 2 { 1 } else { 0 };
        for (ctrl, value, name) in [
            (ffi::AOME_SET_CPUUSED, speed(c.width, c.height), "AOME_SET_CPUUSED"),
            (ffi::AV1E_SET_ENABLE_CDEF, 1, "AV1E_SET_ENABLE_CDEF"),
            (ffi::AV1E_SET_ENABLE_TPL_MODEL, 0, "AV1E_SET_ENABLE_TPL_MODEL"),
            (ffi::AV1E_SET_DELTAQ_MODE, 0, "AV1E_SET_DELTAQ_MODE"),
            (ffi::AV1E_SET_ENABLE_ORDER_HINT, 0, "AV1E_SET_ENABLE_ORDER_HINT"),
            (ffi::AV1E_SET_AQ_MODE, 3, "AV1E_SET_AQ_MODE"),
            (ffi::AOME_SET_MAX_INTRA_BITRATE_PCT, 300, "AOME_SET_MAX_INTRA_BITRATE_PCT"),
            (ffi::AV1E_SET_COEFF_COST_UPD_FREQ, 3, "AV1E_SET_COEFF_COST_UPD_FREQ"),
            (ffi::AV1E_SET_MODE_COST_UPD_FREQ, 3, "AV1E_SET_MODE_COST_UPD_FREQ"),
            (ffi::AV1E_SET_MV_COST_UPD_FREQ, 3, "AV1E_SET_MV_COST_UPD_FREQ"),
            (ffi::AV1E_SET_ROW_MT, 1, "AV1E_SET_ROW_MT"),
            (ffi::AV1E_SET_TILE_COLUMNS, tile_columns, "AV1E_SET_TILE_COLUMNS"),
            (ffi::AV1E_SET_ENABLE_OBMC, 0, "AV1E_SET_ENABLE_OBMC"),
            (ffi::AV1E_SET_NOISE_SENSITIVITY, 0, "AV1E_SET_NOISE_SENSITIVITY"),
            (ffi::AV1E_SET_ENABLE_WARPED_MOTION, 0, "AV1E_SET_ENABLE_WARPED_MOTION"),
            (ffi::AV1E_SET_ENABLE_GLOBAL_MOTION, 0, "AV1E_SET_ENABLE_GLOBAL_MOTION"),
            (ffi::AV1E_SET_ENABLE_REF_FRAME_MVS, 0, "AV1E_SET_ENABLE_REF_FRAME_MVS"),
            (ffi::AV1E_SET_ENABLE_PALETTE, 0, "AV1E_SET_ENABLE_PALETTE"),
            (ffi::AV1E_SET_ENABLE_CFL_INTRA, 0, "AV1E_SET_ENABLE_CFL_INTRA"),
            (ffi::AV1E_SET_ENABLE_SMOOTH_INTRA, 0, "AV1E_SET_ENABLE_SMOOTH_INTRA"),
            (ffi::AV1E_SET_ENABLE_ANGLE_DELTA, 0, "AV1E_SET_ENABLE_ANGLE_DELTA"),
            (ffi::AV1E_SET_ENABLE_FILTER_INTRA, 0, "AV1E_SET_ENABLE_FILTER_INTRA"),
            (ffi::AV1E_SET_INTRA_DEFAULT_TX_ONLY, 1, "AV1E_SET_INTRA_DEFAULT_TX_ONLY"),
        ] {
            // SAFETY: every control here takes an int (or unsigned int) argument.
            let err = unsafe { ffi::aom_codec_control(ctx, ctrl as c_int, value as c_int) };
            check(err, name, ctx)?;
        }
        if c.temporal_layers > 1 {
            set_svc_params(ctx, c, c.bitrate_kbps)?;
        }
        Ok(enc)
    }

    /// Changes the CBR target without a keyframe.
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<()> {
        if kbps == 0 {
            return Err(Error::invalid("bitrate must be > 0"));
        }
        let EncCtx { ctx, cfg, .. } = &mut *self.enc;
        cfg.rc_target_bitrate = kbps;
        // SAFETY: cfg stays in the box, which libaom may keep pointing at.
        let err = unsafe { ffi::aom_codec_enc_config_set(ctx, cfg) };
        check(err, "aom_codec_enc_config_set", ctx)?;
        if self.config.temporal_layers > 1 {
            set_svc_params(ctx, &self.config, kbps)?;
        }
        self.config.bitrate_kbps = kbps;
        Ok(())
    }

    /// Encodes one frame (RTP time `pts_90k`) into one temporal unit; a new size re-opens
    /// the encoder (its first frame is a keyframe). Nothing when rate control drops it.
    pub fn encode(&mut self, frame: &I420Frame, pts_90k: u32, force_keyframe: bool) -> Result<Vec<EncodedFrame>> {
        frame.check()?;
        if frame.width != self.config.width || frame.height != self.config.height {
            let mut c = self.config.clone();
            c.width = frame.width;
            c.height = frame.height;
            self.enc = Self::open(&c)?;
            self.temporal = TemporalPosition::new(c.temporal_layers);
            self.config = c;
        }
        let (pts, duration) = self.clock.next(pts_90k, self.config.framerate);
        let layers = self.config.temporal_layers;
        let (at, id) = self.temporal.next(force_keyframe);
        if layers > 1 {
            self.set_temporal_layer(id, at)?;
        }
        // SAFETY: all-zero is a valid aom_image_t; the fields libaom reads are set below.
        let mut img: ffi::aom_image_t = unsafe { std::mem::zeroed() };
        let (w, h, cw) = (frame.width, frame.height, frame.chroma_width());
        img.fmt = ffi::AOM_IMG_FMT_I420;
        img.cp = ffi::AOM_CICP_CP_UNSPECIFIED;
        img.tc = ffi::AOM_CICP_TC_UNSPECIFIED;
        img.mc = ffi::AOM_CICP_MC_UNSPECIFIED;
        img.range = ffi::AOM_CR_STUDIO_RANGE;
        img.w = w;
        img.h = h;
        img.d_w = w;
        img.d_h = h;
        img.r_w = w;
        img.r_h = h;
        img.bit_depth = 8;
        img.bps = 12;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        // libaom takes `unsigned char *` planes but only reads input images.
        img.planes = [frame.y.as_ptr() as *mut u8, frame.u.as_ptr() as *mut u8, frame.v.as_ptr() as *mut u8];
        img.stride = [w as c_int, cw as c_int, cw as c_int];
        let flags = if force_keyframe { ffi::AOM_EFLAG_FORCE_KF as c_long } else { 0 };
        let ctx = &mut self.enc.ctx;
        // SAFETY: img points into `frame` for the call; libaom copies what it keeps (lag 0).
        let err = unsafe { ffi::aom_codec_encode(ctx, &img, pts, duration as c_ulong, flags) };
        check(err, "aom_codec_encode", ctx)?;
        let mut out = Vec::with_capacity(1);
        let mut iter: ffi::aom_codec_iter_t = ptr::null();
        loop {
            // SAFETY: packets stay valid until the next encode call; copied out now.
            let pkt = unsafe { ffi::aom_codec_get_cx_data(ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            let pkt = unsafe { &*pkt };
            if pkt.kind != ffi::AOM_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: `frame` is the active union member for FRAME packets.
            let f = unsafe { pkt.data.frame };
            if f.buf.is_null() || f.sz == 0 {
                continue;
            }
            let data = unsafe { std::slice::from_raw_parts(f.buf as *const u8, f.sz) }.to_vec();
            let keyframe = f.flags & ffi::AOM_FRAME_IS_KEY != 0;
            let temporal = (layers > 1).then(|| self.temporal.encoded(at, keyframe));
            out.push(EncodedFrame { data, keyframe, width: w, height: h, temporal });
        }
        Ok(out)
    }

    /// Tells libaom the layer, references and refreshes of the next frame (at `at` in the
    /// period). Frames above TL0 are error resilient (their entropy coding starts from the
    /// defaults, not from an earlier frame's), as libwebrtc sends them.
    fn set_temporal_layer(&mut self, id: u8, at: usize) -> Result<()> {
        let mut refs = temporal_refs(self.config.temporal_layers, at);
        let mut layer = ffi::aom_svc_layer_id_t { spatial_layer_id: 0, temporal_layer_id: id as c_int };
        let ctx = &mut self.enc.ctx;
        // SAFETY: these controls take an aom_svc_layer_id_t*, an aom_svc_ref_frame_config_t*
        // and an int; libaom copies the structs during the call.
        unsafe {
            check(ffi::aom_codec_control(ctx, ffi::AV1E_SET_SVC_LAYER_ID as c_int, &mut layer as *mut _), "AV1E_SET_SVC_LAYER_ID", ctx)?;
            check(ffi::aom_codec_control(ctx, ffi::AV1E_SET_SVC_REF_FRAME_CONFIG as c_int, &mut refs as *mut _), "AV1E_SET_SVC_REF_FRAME_CONFIG", ctx)?;
            check(ffi::aom_codec_control(ctx, ffi::AV1E_SET_ERROR_RESILIENT_MODE as c_int, (id > 0) as c_int), "AV1E_SET_ERROR_RESILIENT_MODE", ctx)?;
        }
        Ok(())
    }
}

/// Gives libaom the SVC parameters of `c`'s temporal layers at `kbps` (at open and at each
/// bitrate change: the layers' targets follow).
fn set_svc_params(ctx: &mut ffi::aom_codec_ctx_t, c: &VideoEncoderConfig, kbps: u32) -> Result<()> {
    let mut params = svc_params(c, kbps);
    // SAFETY: AV1E_SET_SVC_PARAMS takes an aom_svc_params_t*, copied during the call.
    let err = unsafe { ffi::aom_codec_control(ctx, ffi::AV1E_SET_SVC_PARAMS as c_int, &mut params as *mut ffi::aom_svc_params_t) };
    check(err, "AV1E_SET_SVC_PARAMS", ctx)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::codec::dav1d::Av1Decoder;
    use crate::media::codec::frame::psnr_y;
    use crate::media::codec::video::{assert_layers_decode_alone, VideoCodec, VideoDecoder};

    pub fn pattern(w: u32, h: u32, t: u32) -> I420Frame {
        let mut f = I420Frame::new(w, h).unwrap();
        for y in 0..h {
            for x in 0..w {
                f.y[(y * w + x) as usize] = ((((x + 3 * t) / 16 + y / 16) % 2) * 150 + 50 + (x * y + t) % 17) as u8;
            }
        }
        f
    }

    fn config(w: u32, h: u32) -> VideoEncoderConfig {
        VideoEncoderConfig { codec: VideoCodec::Av1, width: w, height: h, bitrate_kbps: 1500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 }
    }

    #[test]
    fn round_trip_keyframes_on_request_and_size_changes() {
        let mut enc = Av1Encoder::new(config(320, 240)).unwrap();
        let mut dec = Av1Decoder::new().unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        let mut decoded = 0;
        for t in 0..20u32 {
            let src = pattern(320, 240, t);
            for f in enc.encode(&src, t * 3000, t == 10).unwrap() {
                assert_eq!(f.keyframe, t == 0 || t == 10, "frame {t}");
                assert_eq!(f.data[0] >> 3 & 0xf, 2, "a temporal delimiter first");
                assert!(dec.decode_into(&f.data, &mut out).unwrap());
                assert_eq!((out.width, out.height), (320, 240));
                let psnr = psnr_y(&src, &out).unwrap();
                assert!(psnr > 28.0, "frame {t}: {psnr:.1} dB");
                decoded += 1;
            }
        }
        assert!(decoded >= 18);
        for (w, h) in [(1, 1), (641, 361), (1921, 1081)] {
            let f = enc.encode(&pattern(w, h, 0), 99_000, false).unwrap();
            assert!(f[0].keyframe);
            assert!(dec.decode_into(&f[0].data, &mut out).unwrap());
            assert_eq!((out.width, out.height), (w, h));
        }
    }

    #[test]
    fn corrupt_and_truncated_input_is_an_error_not_a_crash() {
        let mut enc = Av1Encoder::new(config(320, 240)).unwrap();
        let key = enc.encode(&pattern(320, 240, 0), 0, true).unwrap().remove(0).data;
        let delta = enc.encode(&pattern(320, 240, 1), 3000, false).unwrap().remove(0).data;
        let mut dec = Av1Decoder::new().unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        for cut in [1, 3, key.len() / 2] {
            let _ = dec.decode_into(&key[..cut], &mut out);
        }
        let mut garbage = key.clone();
        for (i, b) in garbage.iter_mut().enumerate().skip(20) {
            *b ^= (i * 31) as u8;
        }
        let _ = dec.decode_into(&garbage, &mut out);
        assert!(dec.decode_into(&[], &mut out).is_err());
        let mut fresh = Av1Decoder::new().unwrap();
        assert!(!matches!(fresh.decode_into(&delta, &mut out), Ok(true)), "a delta frame without its keyframe");
        assert!(dec.decode_into(&key, &mut out).unwrap(), "recovers on a keyframe");
    }

    /// L1T2 and L1T3: each frame carries its layer in its OBU extension headers and in
    /// `temporal`, and dav1d fed only the layers up to any one of them decodes each frame it
    /// gets faithfully (a frame referring to one it lacks would be refused or come out wrong).
    #[test]
    fn temporal_layers_decode_without_the_layers_above() {
        use crate::media::rtp::av1;
        for layers in [2u8, 3] {
            let (w, h, n) = (320, 240, 40);
            let mut enc = Av1Encoder::new(VideoEncoderConfig { temporal_layers: layers, ..config(w, h) }).unwrap();
            let mut frames = Vec::new();
            for t in 0..n {
                let src = pattern(w, h, t);
                if t == 30 {
                    enc.set_bitrate(900).unwrap(); // the layers' targets follow
                }
                // a keyframe mid-period: the period starts again from it
                for f in enc.encode(&src, t * 3000, t == 21).unwrap() {
                    frames.push((src.clone(), f));
                }
            }
            assert_eq!(frames.len() as u32, n, "no frame dropped");
            let period: &[u8] = if layers == 3 { &[0, 2, 1, 2] } else { &[0, 1] };
            for (i, (_, f)) in frames.iter().enumerate() {
                let expected = period[if i < 21 { i } else { i - 21 } % period.len()];
                let t = f.temporal.unwrap();
                assert_eq!(t.id, expected, "L1T{layers}, frame {i}");
                assert_eq!(f.keyframe, i == 0 || i == 21, "frame {i}");
                // what a forwarder reads: the temporal id of every frame OBU's extension
                let ids = av1::temporal_ids(&f.data).unwrap();
                assert!(!ids.is_empty() && ids.iter().all(|&id| id == t.id), "frame {i}: OBU temporal ids {ids:?}");
            }
            if layers == 3 {
                assert_eq!(frames[1..4].iter().map(|(_, f)| f.temporal.unwrap().sync).collect::<Vec<_>>(), [true, true, false]);
            }
            let decoder = || VideoDecoder::new(VideoCodec::Av1, None).unwrap();
            assert_layers_decode_alone(&frames, &format!("AV1 L1T{layers}"), 28.0, decoder);
        }
        assert!(Av1Encoder::new(VideoEncoderConfig { temporal_layers: 4, ..config(64, 64) }).is_err());
        assert!(Av1Encoder::new(VideoEncoderConfig { temporal_layers: 0, ..config(64, 64) }).is_err());
    }

    /// Speed against quality at 720p, 2.5 Mbps (run with --ignored --nocapture): CPU and
    /// wall time per frame, bit rate and mean PSNR of the decoded frames, per libaom speed.
    #[test]
    #[ignore]
    fn measure_720p_speeds() {
        use crate::media::codec::process_cpu_seconds as cpu_s;
        let frames: Vec<I420Frame> = (0..30).map(|t| pattern(1280, 720, t)).collect();
        println!("| speed | encode CPU ms/frame | encode wall ms/frame | kbps | mean PSNR (Y) |");
        for speed in [7, 8, 9, 10] {
            let mut enc = Av1Encoder::new(VideoEncoderConfig { bitrate_kbps: 2500, ..config(1280, 720) }).unwrap();
            // SAFETY: AOME_SET_CPUUSED takes an int.
            let err = unsafe { ffi::aom_codec_control(&mut enc.enc.ctx, ffi::AOME_SET_CPUUSED as c_int, speed) };
            assert_eq!(err, ffi::AOM_CODEC_OK);
            let mut dec = Av1Decoder::new().unwrap();
            let mut out = I420Frame::new(2, 2).unwrap();
            let (mut cpu, mut wall, mut bytes, mut psnr, mut n) = (0.0, 0.0, 0usize, 0.0, 0);
            for i in 0..90u32 {
                let src = &frames[i as usize % 30];
                let (c0, t0) = (cpu_s(), std::time::Instant::now());
                let encoded = enc.encode(src, i * 3000, false).unwrap();
                wall += t0.elapsed().as_secs_f64();
                cpu += cpu_s() - c0;
                for f in encoded {
                    bytes += f.data.len();
                    if dec.decode_into(&f.data, &mut out).unwrap() {
                        psnr += psnr_y(src, &out).unwrap();
                        n += 1;
                    }
                }
            }
            println!("| {speed} | {:.1} | {:.1} | {} | {:.1} dB |", cpu * 1000.0 / 90.0, wall * 1000.0 / 90.0,
                bytes * 8 * 30 / 90 / 1000, psnr / n.max(1) as f64);
        }
    }

    /// CPU per 720p frame (run with --ignored --nocapture).
    #[test]
    #[ignore]
    fn measure_720p() {
        let frames: Vec<I420Frame> = (0..30).map(|t| pattern(1280, 720, t)).collect();
        let mut enc = Av1Encoder::new(VideoEncoderConfig { bitrate_kbps: 2500, ..config(1280, 720) }).unwrap();
        let mut dec = Av1Decoder::new().unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        let (mut e, mut d, mut bytes, mut psnr) = (0.0, 0.0, 0, 0.0);
        for i in 0..150u32 {
            let t0 = std::time::Instant::now();
            let f = enc.encode(&frames[i as usize % 30], i * 3000, false).unwrap();
            e += t0.elapsed().as_secs_f64();
            for f in f {
                bytes += f.data.len();
                let t1 = std::time::Instant::now();
                dec.decode_into(&f.data, &mut out).unwrap();
                d += t1.elapsed().as_secs_f64();
                psnr = psnr_y(&frames[i as usize % 30], &out).unwrap();
            }
        }
        println!("AV1 720p: encode {:.1} ms, decode {:.1} ms per frame, {} kbps, last PSNR {psnr:.1} dB",
            e * 1000.0 / 150.0, d * 1000.0 / 150.0, bytes * 8 * 30 / 150 / 1000);
    }
}
