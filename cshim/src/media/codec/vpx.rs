//! VP8/VP9 encoder and decoder over the system libvpx (Debian libvpx-dev), tuned like
//! libwebrtc's realtime configuration: one-pass CBR, no lookahead, keyframes on demand.
use super::frame::I420Frame;
use super::video::{temporal_bitrates, temporal_pattern, EncodedFrame, EncoderClock, TemporalPosition, VideoCodec, VideoEncoderConfig};
use crate::error::{Error, Result};
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_long, c_uint, c_ulong};
use std::ptr;
use vpx_sys as ffi;

/// The codecs libvpx handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpxCodec {
    Vp8,
    Vp9,
}

impl TryFrom<VideoCodec> for VpxCodec {
    type Error = Error;
    fn try_from(c: VideoCodec) -> Result<VpxCodec> {
        match c {
            VideoCodec::Vp8 => Ok(VpxCodec::Vp8),
            VideoCodec::Vp9 => Ok(VpxCodec::Vp9),
            other => Err(Error::invalid(format!("libvpx does not handle {other:?}"))),
        }
    }
}

impl From<VpxCodec> for VideoCodec {
    fn from(c: VpxCodec) -> VideoCodec {
        match c {
            VpxCodec::Vp8 => VideoCodec::Vp8,
            VpxCodec::Vp9 => VideoCodec::Vp9,
        }
    }
}

/// RTP video clock; libvpx gets it as its timebase so durations come straight from RTP pts.
const TIMEBASE: i32 = 90_000;
/// Keyframes come on request (PLI/FIR); this is only a safety net (libwebrtc's 3000).
const KF_MAX_DIST: c_uint = 3000;

/// libvpx's VP8 speed (negative: fixed realtime speed) for a `pixels` stream of a sender
/// encoding `load` pixels per frame in all (its simulcast layers) on `cores` cores. Over
/// 640x480 on <= 2 cores: -12 (libwebrtc's choice for weak CPUs): at 720p 10 % less send CPU
/// than -8 with the same PSNR (41.9 dB), and a 640x360 layer under a 720p one takes 20 % less
/// time than at -6 (-1.9 dB). Below CIF -6 always: -12 saves little there and costs 3.7 dB
/// (docs/codecs.md, "VP8 speed").
fn vp8_speed(pixels: u64, load: u64, cores: usize) -> c_int {
    if pixels >= 352 * 288 && load.max(pixels) > 640 * 480 && cores <= 2 {
        -12
    } else {
        -6
    }
}

/// libvpx flags of the frame at `at` in the period of `layers` layers. TL0 frames refer to
/// and update LAST only, so LAST always holds a TL0 frame; L1T3's TL1 frame updates GOLDEN,
/// which the TL2 frame after it also refers to (not a switching point, then). Frames above
/// TL0 leave the entropy context alone: a receiver without them decodes the rest.
fn temporal_flags(layers: u8, at: usize) -> ffi::vpx_enc_frame_flags_t {
    let (ref_only_last, upd_none) = (
        ffi::VP8_EFLAG_NO_REF_GF | ffi::VP8_EFLAG_NO_REF_ARF,
        ffi::VP8_EFLAG_NO_UPD_LAST | ffi::VP8_EFLAG_NO_UPD_GF | ffi::VP8_EFLAG_NO_UPD_ARF | ffi::VP8_EFLAG_NO_UPD_ENTROPY,
    );
    let flags = match (layers, at) {
        (_, 0) => ref_only_last | ffi::VP8_EFLAG_NO_UPD_GF | ffi::VP8_EFLAG_NO_UPD_ARF,
        (3, 2) => ref_only_last | (upd_none & !ffi::VP8_EFLAG_NO_UPD_GF),
        (3, 3) => ffi::VP8_EFLAG_NO_REF_ARF | upd_none,
        _ => ref_only_last | upd_none,
    };
    flags as ffi::vpx_enc_frame_flags_t
}

/// Temporal layering in libvpx's configuration: the period's layer ids, TL0 at a quarter
/// (L1T3) or half (L1T2) of the frame rate up to all of it, and the layers' bitrates.
fn set_temporal_layers(cfg: &mut ffi::vpx_codec_enc_cfg_t, layers: u8, kbps: u32) {
    let (pattern, _) = temporal_pattern(layers);
    cfg.ts_number_layers = layers as c_uint;
    cfg.ts_periodicity = pattern.len() as c_uint;
    for (slot, &id) in cfg.ts_layer_id.iter_mut().zip(pattern) {
        *slot = id as c_uint;
    }
    for (i, decimator) in cfg.ts_rate_decimator.iter_mut().take(layers as usize).enumerate() {
        *decimator = 1 << (layers as usize - 1 - i);
    }
    set_temporal_bitrates(cfg, kbps);
}

/// Each temporal layer's cumulative target for `kbps` in all: `ts_target_bitrate` (VP8)
/// and `layer_target_bitrate` (VP9's SVC, one spatial layer).
fn set_temporal_bitrates(cfg: &mut ffi::vpx_codec_enc_cfg_t, kbps: u32) {
    for (i, layer_kbps) in temporal_bitrates(cfg.ts_number_layers as u8, kbps).enumerate() {
        cfg.ts_target_bitrate[i] = layer_kbps as c_uint;
        cfg.layer_target_bitrate[i] = layer_kbps as c_uint;
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn iface(codec: VpxCodec, encoder: bool) -> *const ffi::vpx_codec_iface {
    // SAFETY: these return pointers to static interface tables.
    unsafe {
        match (codec, encoder) {
            (VpxCodec::Vp8, true) => ffi::vpx_codec_vp8_cx(),
            (VpxCodec::Vp9, true) => ffi::vpx_codec_vp9_cx(),
            (VpxCodec::Vp8, false) => ffi::vpx_codec_vp8_dx(),
            (VpxCodec::Vp9, false) => ffi::vpx_codec_vp9_dx(),
        }
    }
}

fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: libvpx returns NUL-terminated static or context-owned strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Error with libvpx's message and detail for `ctx`.
fn vpx_error(what: &str, ctx: &mut ffi::vpx_codec_ctx_t) -> Error {
    // SAFETY: ctx is a live (possibly failed-init) context; both calls only read it.
    let (msg, detail) = unsafe { (cstr(ffi::vpx_codec_error(ctx)), cstr(ffi::vpx_codec_error_detail(ctx))) };
    let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
    Error::internal(format!("{what}: {msg}{detail}"))
}

fn check(err: ffi::vpx_codec_err_t, what: &str, ctx: &mut ffi::vpx_codec_ctx_t) -> Result<()> {
    if err == ffi::vpx_codec_err_t::VPX_CODEC_OK {
        Ok(())
    } else {
        Err(vpx_error(what, ctx))
    }
}

fn control(ctx: &mut ffi::vpx_codec_ctx_t, id: u32, value: c_int, name: &str) -> Result<()> {
    // SAFETY: every control we set takes an int argument.
    let err = unsafe { ffi::vpx_codec_control_(ctx, id as c_int, value) };
    check(err, name, ctx)
}

/// Context and config in one box: libvpx keeps a pointer to the config (ctx->config.enc)
/// and contexts must not move after init.
struct EncCtx {
    ctx: ffi::vpx_codec_ctx_t,
    cfg: ffi::vpx_codec_enc_cfg_t,
    initialized: bool,
}

impl Drop for EncCtx {
    fn drop(&mut self) {
        if self.initialized {
            // SAFETY: initialized by vpx_codec_enc_init_ver and destroyed once.
            unsafe { ffi::vpx_codec_destroy(&mut self.ctx) };
        }
    }
}

pub struct VpxEncoder {
    config: VideoEncoderConfig,
    enc: Box<EncCtx>,
    /// pts and durations for libvpx from RTP time.
    clock: EncoderClock,
    /// Profile 2 only: reusable 16-bit planes (Y, U, V back to back).
    hbd: Vec<u16>,
    /// Where the next frame goes in the temporal layering's period (VP8), or the Y bits of
    /// the layers libvpx's own layering gives its frames (VP9).
    temporal: TemporalPosition,
}

// SAFETY: the libvpx context is used from one thread at a time (&mut self); it holds no
// thread-affine state.
unsafe impl Send for VpxEncoder {}

impl VpxEncoder {
    pub fn new(config: VideoEncoderConfig) -> Result<Self> {
        let enc = Self::open(&config)?;
        let temporal = TemporalPosition::new(config.temporal_layers);
        Ok(VpxEncoder { config, enc, clock: EncoderClock::default(), hbd: Vec::new(), temporal })
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    fn high_bit_depth(c: &VideoEncoderConfig) -> bool {
        c.codec == VideoCodec::Vp9 && c.vp9_profile == 2
    }

    fn open(c: &VideoEncoderConfig) -> Result<Box<EncCtx>> {
        if c.width == 0
            || c.height == 0
            || c.width > super::frame::MAX_DIMENSION
            || c.height > super::frame::MAX_DIMENSION
        {
            return Err(Error::invalid(format!("invalid encoder size {}x{}", c.width, c.height)));
        }
        if c.bitrate_kbps == 0 || c.framerate == 0 || c.framerate > 240 {
            return Err(Error::invalid("bitrate_kbps and framerate (1..240) must be set"));
        }
        let codec = VpxCodec::try_from(c.codec)?;
        let hbd = Self::high_bit_depth(c);
        match (codec, c.vp9_profile) {
            (VpxCodec::Vp8, _) | (VpxCodec::Vp9, 0) | (VpxCodec::Vp9, 2) => {}
            (_, p) => return Err(Error::invalid(format!("unsupported VP9 profile {p} (0 or 2)"))),
        }
        if !(1..=3).contains(&c.temporal_layers) {
            return Err(Error::invalid(format!("{:?} with {} temporal layers is not supported", c.codec, c.temporal_layers)));
        }
        let iface = iface(codec, true);
        // SAFETY: iface is a valid static table.
        if hbd && unsafe { ffi::vpx_codec_get_caps(iface) } as u32 & ffi::VPX_CODEC_CAP_HIGHBITDEPTH == 0 {
            return Err(Error::invalid("this libvpx was built without VP9 high bit depth (profile 2)"));
        }
        let mut cfg = MaybeUninit::<ffi::vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: config_default fully initialises cfg when it returns OK.
        let cfg = unsafe {
            if ffi::vpx_codec_enc_config_default(iface, cfg.as_mut_ptr(), 0) != ffi::vpx_codec_err_t::VPX_CODEC_OK {
                return Err(Error::internal("vpx_codec_enc_config_default failed"));
            }
            cfg.assume_init()
        };
        // SAFETY: all-zero is a valid vpx_codec_ctx_t (null pointers, VPX_CODEC_OK).
        let mut enc = Box::new(EncCtx { ctx: unsafe { std::mem::zeroed() }, cfg, initialized: false });
        let pixels = c.width as u64 * c.height as u64;
        // Threads only pay off with enough macroblock rows, and one core stays free for the
        // rest of the pipeline: measured on 2 busy cores, 720p VP8 took 3-74 ms/frame with 2
        // threads (libvpx spin-waits between rows) but a steady ~5 ms with 1 (libwebrtc also
        // uses 1 thread below 3 cores).
        let threads = if pixels < 320 * 240 { 1 } else { cores().saturating_sub(1).clamp(1, 4) };
        let cfg = &mut enc.cfg;
        cfg.g_w = c.width;
        cfg.g_h = c.height;
        cfg.g_threads = threads as c_uint;
        cfg.g_timebase = ffi::vpx_rational { num: 1, den: TIMEBASE };
        cfg.g_lag_in_frames = 0; // no lookahead: every input frame comes out immediately
        cfg.g_pass = ffi::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = ffi::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = c.bitrate_kbps;
        cfg.rc_resize_allowed = 0;
        cfg.rc_dropframe_thresh = 30; // drop rather than build latency on overshoot (libwebrtc)
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.kf_mode = ffi::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = KF_MAX_DIST;
        let mut flags: c_long = 0;
        match codec {
            VpxCodec::Vp8 => {
                cfg.g_profile = 0;
                // Lets a decoder resume after a lost frame without a keyframe.
                cfg.g_error_resilient = ffi::VPX_ERROR_RESILIENT_DEFAULT;
                cfg.rc_min_quantizer = 2;
                cfg.rc_max_quantizer = 56;
                cfg.rc_undershoot_pct = 100;
                cfg.rc_overshoot_pct = 15;
                if c.temporal_layers > 1 {
                    set_temporal_layers(cfg, c.temporal_layers, c.bitrate_kbps);
                }
            }
            VpxCodec::Vp9 => {
                cfg.g_profile = c.vp9_profile as c_uint;
                cfg.g_error_resilient = 0;
                cfg.rc_min_quantizer = 2;
                cfg.rc_max_quantizer = 52;
                cfg.rc_undershoot_pct = 50;
                cfg.rc_overshoot_pct = 50;
                if hbd {
                    cfg.g_bit_depth = ffi::vpx_bit_depth::VPX_BITS_10;
                    cfg.g_input_bit_depth = 10;
                    flags |= ffi::VPX_CODEC_USE_HIGHBITDEPTH as c_long;
                }
                if c.temporal_layers > 1 {
                    // libvpx's own layering in non-flexible mode, as libwebrtc uses it: 0, 1
                    // or 0, 2, 1, 2 (the picture group VP9's RTP descriptor describes).
                    // Error resilient, as libwebrtc's SVC: otherwise a frame above TL0 updates
                    // the probability contexts the next TL0 frame decodes with, and a receiver
                    // without it fails ("corrupt frame", caught by the unit test).
                    cfg.g_error_resilient = ffi::VPX_ERROR_RESILIENT_DEFAULT;
                    cfg.ss_number_layers = 1;
                    set_temporal_layers(cfg, c.temporal_layers, c.bitrate_kbps);
                    cfg.temporal_layering_mode = if c.temporal_layers == 3 {
                        ffi::VP9E_TEMPORAL_LAYERING_MODE::VP9E_TEMPORAL_LAYERING_MODE_0212
                    } else {
                        ffi::VP9E_TEMPORAL_LAYERING_MODE::VP9E_TEMPORAL_LAYERING_MODE_0101
                    } as c_int;
                }
            }
        }
        let EncCtx { ctx, cfg, initialized } = &mut *enc;
        // SAFETY: ctx and cfg live in the box for the encoder's lifetime.
        let err = unsafe { ffi::vpx_codec_enc_init_ver(ctx, iface, cfg, flags, ffi::VPX_ENCODER_ABI_VERSION as c_int) };
        check(err, "vpx_codec_enc_init", ctx)?;
        *initialized = true;
        // libwebrtc's MaxIntraTarget: cap keyframe size at half the optimal buffer.
        let max_intra = ((cfg.rc_buf_optimal_sz as f32 * 0.5 * c.framerate as f32 / 10.0) as c_int).max(300);
        use ffi::vp8e_enc_control_id as id;
        match codec {
            VpxCodec::Vp8 => {
                let speed = vp8_speed(pixels, c.sender_pixels, cores());
                control(ctx, id::VP8E_SET_CPUUSED as u32, speed, "VP8E_SET_CPUUSED")?;
                control(ctx, id::VP8E_SET_NOISE_SENSITIVITY as u32, 0, "VP8E_SET_NOISE_SENSITIVITY")?;
                control(ctx, id::VP8E_SET_STATIC_THRESHOLD as u32, 1, "VP8E_SET_STATIC_THRESHOLD")?;
                control(ctx, id::VP8E_SET_TOKEN_PARTITIONS as u32, 0, "VP8E_SET_TOKEN_PARTITIONS")?;
                control(ctx, id::VP8E_SET_MAX_INTRA_BITRATE_PCT as u32, max_intra, "VP8E_SET_MAX_INTRA_BITRATE_PCT")?;
            }
            VpxCodec::Vp9 => {
                // Above 640x480 on <= 2 cores: speed 9. At 8, 720p took ~45 ms/frame on a 2-core
                // Xeon host (over the 33 ms a 30 fps frame has), so the frame slot replaced one
                // frame in ten; 9 is ~20 ms there, with the same PSNR on the test pattern (46 dB).
                let speed = match (pixels > 640 * 480, cores() <= 2) {
                    (true, true) => 9,
                    (true, false) => 8,
                    (false, _) => 7,
                };
                control(ctx, id::VP8E_SET_CPUUSED as u32, speed, "VP9 speed")?;
                if c.temporal_layers > 1 {
                    Self::start_vp9_svc(ctx, cfg, speed)?;
                }
                control(ctx, id::VP9E_SET_ROW_MT as u32, 1, "VP9E_SET_ROW_MT")?;
                // log2(tiles); libvpx clamps to what the width allows (>= 256 px per tile).
                let tiles_log2 = (usize::BITS - 1 - threads.leading_zeros()) as c_int;
                control(ctx, id::VP9E_SET_TILE_COLUMNS as u32, tiles_log2, "VP9E_SET_TILE_COLUMNS")?;
                // No cyclic-refresh AQ (libwebrtc's aq-mode 3): its segments would replace the
                // segment map that `avoid_vp9_skip_bug` relies on.
                control(ctx, id::VP9E_SET_AQ_MODE as u32, 0, "VP9E_SET_AQ_MODE")?;
                control(ctx, id::VP9E_SET_FRAME_PARALLEL_DECODING as u32, 0, "VP9E_SET_FRAME_PARALLEL_DECODING")?;
                control(ctx, id::VP8E_SET_STATIC_THRESHOLD as u32, 1, "VP8E_SET_STATIC_THRESHOLD")?;
                control(ctx, id::VP9E_SET_NOISE_SENSITIVITY as u32, 0, "VP9E_SET_NOISE_SENSITIVITY")?;
                control(ctx, id::VP8E_SET_MAX_INTRA_BITRATE_PCT as u32, max_intra, "VP8E_SET_MAX_INTRA_BITRATE_PCT")?;
                Self::avoid_vp9_skip_bug(ctx, c)?;
            }
        }
        Ok(enc)
    }

    /// VP9's temporal layers (`cfg.ts_number_layers`) run through libvpx's SVC encoder: one
    /// spatial layer at full size, each temporal layer with the quantizer range of `cfg` and
    /// the stream's speed.
    fn start_vp9_svc(ctx: &mut ffi::vpx_codec_ctx_t, cfg: &ffi::vpx_codec_enc_cfg_t, speed: c_int) -> Result<()> {
        use ffi::vp8e_enc_control_id as id;
        control(ctx, id::VP9E_SET_SVC as u32, 1, "VP9E_SET_SVC")?;
        // SAFETY: plain integer arrays; all-zero is a valid start.
        let mut params: ffi::vpx_svc_extra_cfg_t = unsafe { std::mem::zeroed() };
        params.scaling_factor_num[0] = 1;
        params.scaling_factor_den[0] = 1;
        params.speed_per_layer[0] = speed;
        for layer in 0..cfg.ts_number_layers as usize {
            params.min_quantizers[layer] = cfg.rc_min_quantizer as c_int;
            params.max_quantizers[layer] = cfg.rc_max_quantizer as c_int;
        }
        // SAFETY: VP9E_SET_SVC_PARAMETERS takes a vpx_svc_extra_cfg_t*, copied during the call.
        let err = unsafe { ffi::vpx_codec_control_(ctx, id::VP9E_SET_SVC_PARAMETERS as c_int, &mut params as *mut ffi::vpx_svc_extra_cfg_t) };
        check(err, "VP9E_SET_SVC_PARAMETERS", ctx)
    }

    /// The temporal layer of the frame libvpx's VP9 SVC encoder made last.
    fn vp9_temporal_layer_id(ctx: &mut ffi::vpx_codec_ctx_t) -> Result<u8> {
        // SAFETY: all-zero is a valid vpx_svc_layer_id_t; VP9E_GET_SVC_LAYER_ID fills it.
        let mut layer: ffi::vpx_svc_layer_id_t = unsafe { std::mem::zeroed() };
        let err = unsafe {
            ffi::vpx_codec_control_(ctx, ffi::vp8e_enc_control_id::VP9E_GET_SVC_LAYER_ID as c_int, &mut layer as *mut ffi::vpx_svc_layer_id_t)
        };
        check(err, "VP9E_GET_SVC_LAYER_ID", ctx)?;
        Ok(layer.temporal_layer_id.clamp(0, 2) as u8)
    }

    /// Works around a libvpx VP9 realtime encoder bug (in 1.12, and unchanged in current
    /// libvpx): in CBR at speed >= 5, `model_rd_for_sb_y_large()` (vp9_pickmode.c) marks a
    /// block of 32x32 or more as needing no residual when each transform block is flat and
    /// `sse == var` holds for the *whole* block, i.e. when the whole block's mean residual is
    /// ~0, instead of testing each transform block's own DC. Flat areas that step in
    /// opposite directions inside one block (one dark patch turning bright while another turns
    /// dark: text, UI, the test pattern's bar code) cancel out, the block is coded as
    /// "prediction only", and the picture keeps stale flat patches until they change again.
    /// The decoder shows exactly what the encoder reconstructed: the bitstream is valid.
    ///
    /// libvpx skips that shortcut for blocks in cyclic refresh's "boosted" segments (ids 1 and
    /// 2) and runs a real transform-and-quantize skip test on them instead. A region-of-
    /// interest map that puts every block in segment 1, with no feature on that segment,
    /// sends every block through the correct test; pictures are otherwise coded as before,
    /// except that cyclic-refresh AQ has to be off (its segments would replace ours) and a
    /// nearly free segment map is sent. Segment 0 carries a q delta only because libvpx
    /// ignores a map whose segments have no feature at all; no block uses it. libvpx applies
    /// ROI maps only at speed >= 5, which is exactly where the bug lives. Measured on the
    /// test pattern (1280x720, 2.5 Mbps): 57 of 300 frames damaged before, none after, for
    /// ~0.3 dB PSNR and ~0.3 ms/frame. Guarded by `test_pattern_survives_codec_and_rtp`.
    fn avoid_vp9_skip_bug(ctx: &mut ffi::vpx_codec_ctx_t, c: &VideoEncoderConfig) -> Result<()> {
        let (rows, cols) = (c.height.div_ceil(8), c.width.div_ceil(8)); // libvpx mi units
        let mut map = vec![1u8; rows as usize * cols as usize];
        // SAFETY: all-zero is a valid vpx_roi_map_t (null map, zero deltas); fields set below.
        let mut roi: ffi::vpx_roi_map_t = unsafe { std::mem::zeroed() };
        roi.roi_map = map.as_mut_ptr();
        roi.rows = rows;
        roi.cols = cols;
        roi.delta_q[0] = 1;
        // No reference-frame restriction in any segment.
        roi.ref_frame = [-1; 8];
        // SAFETY: VP9E_SET_ROI_MAP takes a vpx_roi_map_t*; libvpx copies the map during the
        // call, and `map` outlives it.
        let err = unsafe {
            ffi::vpx_codec_control_(
                ctx,
                ffi::vp8e_enc_control_id::VP9E_SET_ROI_MAP as c_int,
                &mut roi as *mut ffi::vpx_roi_map_t,
            )
        };
        check(err, "VP9E_SET_ROI_MAP", ctx)
    }

    /// Changes the CBR target without a keyframe.
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<()> {
        if kbps == 0 {
            return Err(Error::invalid("bitrate must be > 0"));
        }
        let EncCtx { ctx, cfg, .. } = &mut *self.enc;
        cfg.rc_target_bitrate = kbps;
        if cfg.ts_number_layers > 1 {
            set_temporal_bitrates(cfg, kbps);
        }
        // SAFETY: cfg stays in the box, which libvpx may keep pointing at.
        let err = unsafe { ffi::vpx_codec_enc_config_set(ctx, cfg) };
        check(err, "vpx_codec_enc_config_set", ctx)?;
        self.config.bitrate_kbps = kbps;
        Ok(())
    }

    /// Encodes one frame. `pts_90k` is the RTP timestamp (wraps freely); frame durations for
    /// rate control come from its deltas. A frame of a new size re-opens the encoder, which
    /// starts with a keyframe. Returns nothing when rate control drops the frame.
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

        let img = self.wrap(frame);
        let layers = self.config.temporal_layers;
        // VP8's layering is ours (flags per frame); VP9's is libvpx's, read back after encoding
        let vp8_layers = layers > 1 && self.config.codec == VideoCodec::Vp8;
        let (at, id) = self.temporal.next(force_keyframe);
        let mut flags = if vp8_layers { temporal_flags(layers, at) } else { 0 };
        if force_keyframe {
            flags = ffi::VPX_EFLAG_FORCE_KF as ffi::vpx_enc_frame_flags_t; // a keyframe refreshes every buffer
        }
        let ctx = &mut self.enc.ctx;
        if vp8_layers {
            control(ctx, ffi::vp8e_enc_control_id::VP8E_SET_TEMPORAL_LAYER_ID as u32, id as c_int, "VP8E_SET_TEMPORAL_LAYER_ID")?;
        }
        // SAFETY: img points into `frame` (or self.hbd), both alive for the call; libvpx
        // copies what it needs before returning (lag 0) and never writes the input.
        let err = unsafe {
            ffi::vpx_codec_encode(ctx, &img, pts, duration as c_ulong, flags, ffi::VPX_DL_REALTIME as c_ulong)
        };
        check(err, "vpx_codec_encode", ctx)?;
        let vp9_layer = if layers > 1 && !vp8_layers { Some(Self::vp9_temporal_layer_id(ctx)?) } else { None };
        let mut out = Vec::with_capacity(1);
        let mut iter: ffi::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: packets stay valid until the next encode call; we copy them out now.
            let pkt = unsafe { ffi::vpx_codec_get_cx_data(ctx, &mut iter) };
            if pkt.is_null() {
                break;
            }
            let pkt = unsafe { &*pkt };
            if pkt.kind != ffi::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: `frame` is the active union member for FRAME packets.
            let f = unsafe { pkt.data.frame };
            if f.buf.is_null() || f.sz == 0 {
                continue;
            }
            let data = unsafe { std::slice::from_raw_parts(f.buf as *const u8, f.sz) }.to_vec();
            let keyframe = f.flags & ffi::VPX_FRAME_IS_KEY != 0;
            let temporal = match vp9_layer {
                Some(id) => Some(self.temporal.reported(id, keyframe)),
                None => vp8_layers.then(|| self.temporal.encoded(at, keyframe)),
            };
            out.push(EncodedFrame { data, keyframe, width: frame.width, height: frame.height, temporal });
        }
        Ok(out)
    }

    /// Describes `frame` to libvpx without copying (8-bit), or via the reusable 16-bit buffer
    /// for profile 2.
    fn wrap(&mut self, frame: &I420Frame) -> ffi::vpx_image_t {
        // SAFETY: all-zero is a valid vpx_image_t (FMT_NONE, null planes); fields set below.
        let mut img: ffi::vpx_image_t = unsafe { std::mem::zeroed() };
        let (w, h, cw) = (frame.width, frame.height, frame.chroma_width());
        img.w = w;
        img.h = h;
        img.d_w = w;
        img.d_h = h;
        img.r_w = w;
        img.r_h = h;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        img.cs = ffi::vpx_color_space::VPX_CS_BT_601;
        img.range = ffi::vpx_color_range::VPX_CR_STUDIO_RANGE;
        if Self::high_bit_depth(&self.config) {
            let (yl, cl) = (frame.y_len(), frame.chroma_len());
            self.hbd.resize(yl + 2 * cl, 0);
            let planes = frame.y.iter().chain(&frame.u).chain(&frame.v);
            for (d, &s) in self.hbd.iter_mut().zip(planes) {
                *d = (s as u16) << 2;
            }
            let base = self.hbd.as_mut_ptr() as *mut u8;
            img.fmt = ffi::vpx_img_fmt::VPX_IMG_FMT_I42016;
            img.bit_depth = 10;
            img.bps = 24;
            // SAFETY: offsets stay inside self.hbd (yl + 2 * cl u16 elements).
            img.planes = unsafe { [base, base.add(yl * 2), base.add((yl + cl) * 2), ptr::null_mut()] };
            img.stride = [(w * 2) as c_int, (cw * 2) as c_int, (cw * 2) as c_int, 0];
        } else {
            img.fmt = ffi::vpx_img_fmt::VPX_IMG_FMT_I420;
            img.bit_depth = 8;
            img.bps = 12;
            // libvpx takes `unsigned char *` but only reads input images.
            img.planes = [
                frame.y.as_ptr() as *mut u8,
                frame.u.as_ptr() as *mut u8,
                frame.v.as_ptr() as *mut u8,
                ptr::null_mut(),
            ];
            img.stride = [w as c_int, cw as c_int, cw as c_int, 0];
        }
        img
    }
}

pub struct VpxDecoder {
    codec: VpxCodec,
    ctx: Box<ffi::vpx_codec_ctx_t>,
}

// SAFETY: as for VpxEncoder.
unsafe impl Send for VpxDecoder {}

impl Drop for VpxDecoder {
    fn drop(&mut self) {
        // SAFETY: ctx was initialised in new() (a failed init never builds a VpxDecoder).
        unsafe { ffi::vpx_codec_destroy(&mut *self.ctx) };
    }
}

impl VpxDecoder {
    pub fn new(codec: VpxCodec) -> Result<Self> {
        // VP8 only decodes in parallel with several token partitions, which we (like
        // libwebrtc) do not produce; VP9 threads over tiles and rows.
        let threads = match codec {
            VpxCodec::Vp8 => 1,
            VpxCodec::Vp9 => cores().saturating_sub(1).clamp(1, 4),
        };
        let cfg = ffi::vpx_codec_dec_cfg_t { threads: threads as c_uint, w: 0, h: 0 };
        // SAFETY: all-zero is a valid vpx_codec_ctx_t; the box gives it a stable address.
        let mut ctx: Box<ffi::vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        let err = unsafe {
            ffi::vpx_codec_dec_init_ver(&mut *ctx, iface(codec, false), &cfg, 0, ffi::VPX_DECODER_ABI_VERSION as c_int)
        };
        if err != ffi::vpx_codec_err_t::VPX_CODEC_OK {
            // A failed init leaves nothing to destroy.
            return Err(Error::internal(format!(
                "vpx_codec_dec_init failed: {}",
                cstr(unsafe { ffi::vpx_codec_err_to_string(err) })
            )));
        }
        Ok(VpxDecoder { codec, ctx })
    }

    pub fn codec(&self) -> VpxCodec {
        self.codec
    }

    /// Decodes one complete frame. `Ok(None)` when it produced no picture (e.g. a hidden VP9
    /// frame); `Err` for corrupt data or a frame whose references are missing, in which case
    /// the caller should ask for a keyframe.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>> {
        let mut frame = I420Frame { width: 0, height: 0, y: Vec::new(), u: Vec::new(), v: Vec::new() };
        Ok(if self.decode_into(data, &mut frame)? { Some(frame) } else { None })
    }

    /// Like [`decode`](Self::decode), into a reusable frame; returns whether it was written.
    pub fn decode_into(&mut self, data: &[u8], out: &mut I420Frame) -> Result<bool> {
        if data.is_empty() || data.len() > u32::MAX as usize {
            return Err(Error::invalid("empty or oversized video frame"));
        }
        let ctx = &mut *self.ctx;
        // SAFETY: data is valid for len bytes during the call; libvpx copies what it keeps.
        let err = unsafe { ffi::vpx_codec_decode(ctx, data.as_ptr(), data.len() as c_uint, ptr::null_mut(), 0) };
        check(err, "vpx_codec_decode", ctx)?;
        let mut corrupted: c_int = 0;
        // SAFETY: VP8D_GET_FRAME_CORRUPTED writes one int (both VP8 and VP9 implement it).
        let err = unsafe {
            ffi::vpx_codec_control_(
                ctx,
                ffi::vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        };
        if err == ffi::vpx_codec_err_t::VPX_CODEC_OK && corrupted != 0 {
            return Err(Error::internal("decoded frame is corrupted (missing reference)"));
        }
        let mut iter: ffi::vpx_codec_iter_t = ptr::null();
        let mut last: *const ffi::vpx_image_t = ptr::null();
        loop {
            // SAFETY: images stay valid until the next decode call.
            let img = unsafe { ffi::vpx_codec_get_frame(ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            last = img;
        }
        if last.is_null() {
            return Ok(false);
        }
        // SAFETY: non-null image returned by libvpx, valid until the next decode.
        copy_image(unsafe { &*last }, out)?;
        Ok(true)
    }
}

/// Copies a decoded image into a tight I420 frame; 10/12-bit output is rounded to 8 bits.
fn copy_image(img: &ffi::vpx_image_t, out: &mut I420Frame) -> Result<()> {
    use ffi::vpx_img_fmt::*;
    let bit_depth = match img.fmt {
        VPX_IMG_FMT_I420 => 8,
        VPX_IMG_FMT_I42016 => img.bit_depth,
        f => return Err(Error::internal(format!("unsupported decoded format {f:?} (only 4:2:0)"))),
    };
    let planes = std::array::from_fn(|i| (img.planes[i] as *const u8, usize::try_from(img.stride[i]).unwrap_or(0)));
    // SAFETY: libvpx guarantees `stride` bytes per row for d_h (chroma: rounded up) rows.
    unsafe { out.copy_from_decoder(img.d_w, img.d_h, planes, bit_depth) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::frame::psnr_y;
    use crate::media::codec::video::{assert_layers_decode_alone, VideoDecoder};
    use crate::media::codec::EncoderEngine;

    /// Moving diagonal gradient with fixed fine texture plus a bright box: motion that
    /// exercises inter prediction and detail that costs bits.
    fn pattern(w: u32, h: u32, t: u32) -> I420Frame {
        let mut f = I420Frame::new(w, h).unwrap();
        for y in 0..h {
            for x in 0..w {
                let texture = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 28; // 0..15
                let mut v = 16 + ((x + y + 4 * t) % 200) + texture;
                let bx = (t * 5) % w.saturating_sub(64).max(1);
                if x >= bx && x < bx + 64 && y >= h / 3 && y < h / 3 + 64 {
                    v = 230;
                }
                f.y[(y * w + x) as usize] = v as u8;
            }
        }
        let cw = f.chroma_width();
        for y in 0..f.chroma_height() {
            for x in 0..cw {
                f.u[(y * cw + x) as usize] = (64 + (x + 2 * t) % 128) as u8;
                f.v[(y * cw + x) as usize] = (64 + (y + t) % 128) as u8;
            }
        }
        f
    }

    fn config(codec: VpxCodec, w: u32, h: u32) -> VideoEncoderConfig {
        VideoEncoderConfig { codec: codec.into(), width: w, height: h, bitrate_kbps: 1500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 }
    }

    /// Encodes `n` frames, decodes them, returns (mean PSNR, keyframe count, bytes).
    fn round_trip(cfg: VideoEncoderConfig, n: u32) -> (f64, usize, usize) {
        let (w, h) = (cfg.width, cfg.height);
        let mut enc = VpxEncoder::new(cfg.clone()).unwrap();
        let mut dec = VpxDecoder::new(cfg.codec.try_into().unwrap()).unwrap();
        let (mut sum, mut count, mut keys, mut bytes) = (0.0, 0, 0, 0);
        let t0 = std::time::Instant::now();
        for t in 0..n {
            let src = pattern(w, h, t);
            for pkt in enc.encode(&src, t * 3000, false).unwrap() {
                keys += pkt.keyframe as usize;
                bytes += pkt.data.len();
                assert_eq!((pkt.width, pkt.height), (w, h));
                if let Some(out) = dec.decode(&pkt.data).unwrap() {
                    sum += psnr_y(&src, &out).unwrap();
                    count += 1;
                }
            }
        }
        let psnr = sum / count.max(1) as f64;
        println!(
            "{:?} p{} {w}x{h}: {count}/{n} frames, PSNR {psnr:.1} dB, {:.0} kbps, {:.2} ms/frame enc+dec",
            cfg.codec,
            cfg.vp9_profile,
            bytes as f64 * 8.0 * 30.0 / n as f64 / 1000.0,
            t0.elapsed().as_secs_f64() * 1e3 / n as f64
        );
        assert!(count as u32 >= n * 9 / 10, "too many dropped frames: {count}/{n}");
        (psnr, keys, bytes)
    }

    #[test]
    fn vp8_round_trip_psnr() {
        let (psnr, keys, _) = round_trip(config(VpxCodec::Vp8, 640, 360), 60);
        assert!(psnr > 30.0, "VP8 PSNR {psnr:.1}");
        assert_eq!(keys, 1, "only the first frame is a keyframe");
    }

    #[test]
    fn vp9_round_trip_psnr() {
        let (psnr, keys, _) = round_trip(config(VpxCodec::Vp9, 640, 360), 60);
        assert!(psnr > 30.0, "VP9 PSNR {psnr:.1}");
        assert_eq!(keys, 1);
    }

    #[test]
    fn vp9_profile2_round_trip() {
        let cfg = VideoEncoderConfig { vp9_profile: 2, ..config(VpxCodec::Vp9, 320, 240) };
        match VpxEncoder::new(cfg.clone()) {
            Err(e) if e.message.contains("high bit depth") => println!("skipped: {e}"),
            _ => {
                let (psnr, _, _) = round_trip(cfg, 20);
                assert!(psnr > 30.0, "VP9 profile 2 PSNR {psnr:.1}");
            }
        }
    }

    #[test]
    fn forced_keyframe_and_bitrate_change() {
        for codec in [VpxCodec::Vp8, VpxCodec::Vp9] {
            let mut enc = VpxEncoder::new(config(codec, 320, 180)).unwrap();
            let mut dec = VpxDecoder::new(codec).unwrap();
            for t in 0..12u32 {
                if t == 6 {
                    enc.set_bitrate(600).unwrap();
                }
                let pkts = enc.encode(&pattern(320, 180, t), t * 3000, t == 8).unwrap();
                assert_eq!(pkts.len(), 1, "{codec:?} frame {t}");
                assert_eq!(pkts[0].keyframe, t == 0 || t == 8, "{codec:?} frame {t}");
                // A keyframe alone (fresh decoder) must decode: that is what PLI recovery needs.
                if t == 8 {
                    let mut fresh = VpxDecoder::new(codec).unwrap();
                    assert!(fresh.decode(&pkts[0].data).unwrap().is_some());
                }
                assert!(dec.decode(&pkts[0].data).unwrap().is_some());
            }
            assert!(enc.set_bitrate(0).is_err());
        }
    }

    #[test]
    fn set_bitrate_takes_effect() {
        for codec in [VpxCodec::Vp8, VpxCodec::Vp9] {
            let mut enc = VpxEncoder::new(config(codec, 640, 360)).unwrap();
            let mut bytes = [0usize; 2];
            for t in 0..60u32 {
                if t == 30 {
                    enc.set_bitrate(300).unwrap();
                }
                let pkts = enc.encode(&pattern(640, 360, t), t * 3000, false).unwrap();
                assert!(pkts.iter().all(|p| !p.keyframe) || t == 0, "no keyframe on a rate change");
                if t % 30 >= 15 {
                    bytes[(t / 30) as usize] += pkts.iter().map(|p| p.data.len()).sum::<usize>();
                }
            }
            let kbps = bytes.map(|b| b as f64 * 8.0 * 30.0 / 15.0 / 1000.0);
            println!("{codec:?} 640x360: {:.0} kbps at 1500, {:.0} kbps at 300", kbps[0], kbps[1]);
            assert!(kbps[1] < 500.0 && kbps[1] < kbps[0] / 2.0, "{kbps:?}");
        }
    }

    #[test]
    fn resolution_change_mid_stream() {
        for codec in [VpxCodec::Vp8, VpxCodec::Vp9] {
            let mut enc = VpxEncoder::new(config(codec, 320, 240)).unwrap();
            let mut dec = VpxDecoder::new(codec).unwrap();
            // Down, up beyond the initial size, and odd sizes.
            let sizes = [(320, 240), (160, 120), (641, 361), (320, 240)];
            let mut t = 0u32;
            for &(w, h) in &sizes {
                for i in 0..5 {
                    let src = pattern(w, h, t);
                    let pkts = enc.encode(&src, t * 3000, false).unwrap();
                    assert_eq!(pkts.len(), 1);
                    assert_eq!(pkts[0].keyframe, i == 0, "{codec:?} {w}x{h} #{i}");
                    let out = dec.decode(&pkts[0].data).unwrap().unwrap();
                    assert_eq!((out.width, out.height), (w, h));
                    assert!(psnr_y(&src, &out).unwrap() > 25.0);
                    t += 1;
                }
            }
            assert_eq!(enc.config().width, 320);
        }
    }

    #[test]
    fn garbage_and_missing_references_are_errors() {
        for codec in [VpxCodec::Vp8, VpxCodec::Vp9] {
            let mut dec = VpxDecoder::new(codec).unwrap();
            assert!(dec.decode(&[]).is_err());
            let mut seed = 0x1234_5678u32;
            for len in [1usize, 3, 10, 100, 1000, 10000] {
                let junk: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 24) as u8
                    })
                    .collect();
                assert!(dec.decode(&junk).is_err(), "{codec:?} accepted {len} junk bytes");
            }
            // Truncated and bit-flipped real frames: never a crash; an error or a picture.
            let mut enc = VpxEncoder::new(config(codec, 320, 240)).unwrap();
            let key = enc.encode(&pattern(320, 240, 0), 0, false).unwrap().remove(0).data;
            let inter = enc.encode(&pattern(320, 240, 1), 3000, false).unwrap().remove(0).data;
            let mut fresh = VpxDecoder::new(codec).unwrap();
            assert!(fresh.decode(&inter).is_err(), "{codec:?}: inter frame without keyframe");
            let _ = fresh.decode(&key[..key.len() / 2]);
            let mut flipped = key.clone();
            for i in (20..flipped.len()).step_by(7) {
                flipped[i] ^= 0x5a;
            }
            let _ = fresh.decode(&flipped);
            assert!(fresh.decode(&key).unwrap().is_some(), "{codec:?} recovers on a keyframe");
        }
    }

    #[test]
    fn realtime_speed_720p() {
        for codec in [VpxCodec::Vp8, VpxCodec::Vp9] {
            let cfg = VideoEncoderConfig { bitrate_kbps: 2500, ..config(codec, 1280, 720) };
            let mut enc = VpxEncoder::new(cfg).unwrap();
            let mut dec = VpxDecoder::new(codec).unwrap();
            let frames: Vec<I420Frame> = (0..30).map(|t| pattern(1280, 720, t)).collect();
            let (mut te, mut td, mut psnr) = (0.0, 0.0, 0.0);
            for (t, f) in frames.iter().enumerate() {
                let t0 = std::time::Instant::now();
                let pkts = enc.encode(f, t as u32 * 3000, false).unwrap();
                te += t0.elapsed().as_secs_f64();
                for p in pkts {
                    let t0 = std::time::Instant::now();
                    let out = dec.decode(&p.data).unwrap().unwrap();
                    td += t0.elapsed().as_secs_f64();
                    psnr = psnr_y(f, &out).unwrap();
                }
            }
            println!(
                "{codec:?} 1280x720 @2500 kbps on {} cores: encode {:.2} ms/frame, decode {:.2} ms/frame, last PSNR {psnr:.1} dB",
                cores(),
                te * 1e3 / 30.0,
                td * 1e3 / 30.0
            );
            // Realtime at 30 fps needs < 33 ms; the bound is loose for busy CI machines.
            assert!(te / 30.0 < 0.1);
        }
    }

    // sora_ffi/testpattern.py ported (scene + stamp + read_code + psnr): the picture the
    // media tests send, whose bar code of flat 32x32 black/white cells must survive coding.

    const CODE_BLOCK: usize = 32;
    const CODE_ROW: usize = 16;
    const CODE_BITS: usize = 48;
    const CODE_ROWS_PX: usize = CODE_BITS / CODE_ROW * CODE_BLOCK;

    /// `testpattern.scene(index)` with `stamp(index, time_ms)` on top, packed BGR.
    fn test_pattern_bgr(index: u32, time_ms: u32, w: usize, h: usize) -> Vec<u8> {
        let i = (index % 30) as usize;
        let mut img = vec![0u8; w * h * 3];
        let bx = (i * 8) % w.saturating_sub(160).max(1);
        for y in 0..h {
            for x in 0..w {
                let p = &mut img[(y * w + x) * 3..][..3];
                if (h / 2..h / 2 + 120).contains(&y) && (bx..bx + 160).contains(&x) {
                    p.copy_from_slice(&[40, 200, 240]);
                } else {
                    p[0] = ((x + 3 * i) % 256) as u8;
                    p[1] = ((y + 2 * i) % 256) as u8;
                    p[2] = ((x / 4 + y / 4 + i) % 256) as u8;
                }
            }
        }
        let value = (index as u64 & 0xffff) | ((time_ms as u64) << 16);
        for bit in 0..CODE_BITS {
            let (r, c) = (bit / CODE_ROW, bit % CODE_ROW);
            let v = if (value >> bit) & 1 != 0 { 255 } else { 0 };
            for y in r * CODE_BLOCK..(r + 1) * CODE_BLOCK {
                img[(y * w + c * CODE_BLOCK) * 3..][..CODE_BLOCK * 3].fill(v);
            }
        }
        img
    }

    /// `testpattern.read_code`: (index, time) or None when a cell is neither black nor white.
    fn read_code_bgr(img: &[u8], w: usize) -> Option<(u32, u32)> {
        let q = CODE_BLOCK / 4;
        let mut value = 0u64;
        for bit in 0..CODE_BITS {
            let (r, c) = (bit / CODE_ROW, bit % CODE_ROW);
            let sum: u64 = (r * CODE_BLOCK + q..(r + 1) * CODE_BLOCK - q)
                .flat_map(|y| &img[(y * w + c * CODE_BLOCK + q) * 3..][..(CODE_BLOCK - 2 * q) * 3])
                .map(|&b| b as u64)
                .sum();
            let mean = sum as f64 / ((CODE_BLOCK - 2 * q).pow(2) * 3) as f64;
            if mean > 64.0 && mean < 192.0 {
                return None;
            }
            value |= ((mean >= 128.0) as u64) << bit;
        }
        Some(((value & 0xffff) as u32, (value >> 16) as u32))
    }

    /// PSNR over the rows below the code (`testpattern.psnr`'s area) of two same-width planes
    /// with `channels` samples per pixel.
    fn psnr_below_code(a: &[u8], b: &[u8], w: usize, channels: usize) -> f64 {
        let start = CODE_ROWS_PX * w * channels;
        let sse: f64 = a[start..].iter().zip(&b[start..]).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum();
        let mse = sse / (a.len() - start) as f64;
        if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0f64.powi(2) / mse).log10()
        }
    }

    #[derive(Debug, Default)]
    struct PatternRun {
        frames: u32,
        /// Frames rate control dropped (the receiver would repeat the previous picture).
        dropped: Vec<u32>,
        /// Code unreadable (a grey cell) or readable but not this frame's (a stale cell).
        bad_code: Vec<u32>,
        /// Luma PSNR vs the encoder's input below 30 dB.
        low_psnr: Vec<(u32, f64)>,
        /// Frames whose bitstream changed on the way through RTP.
        rtp_mismatch: Vec<u32>,
        /// Luma PSNR vs the encoder input (codec loss only).
        psnr: Vec<f64>,
        /// BGR PSNR vs the drawn scene, like the Python tests (adds the 4:2:0 conversion loss).
        psnr_scene: Vec<f64>,
        encode_ms: Vec<f64>,
        bytes: usize,
    }

    impl PatternRun {
        fn damaged(&self) -> usize {
            let mut v: Vec<u32> = self.bad_code.iter().chain(&self.rtp_mismatch).copied().collect();
            v.extend(self.low_psnr.iter().map(|&(i, _)| i));
            v.sort_unstable();
            v.dedup();
            v.len()
        }

        fn summary(&self) -> String {
            fn q(v: &[f64], at: f64) -> f64 {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                v.get(((v.len().max(1) - 1) as f64 * at) as usize).copied().unwrap_or(f64::NAN)
            }
            format!(
                "damaged {}/{} (bad code {:?}, luma PSNR < 30 {:?}, RTP mismatch {:?}), dropped {:?}; \
                 luma PSNR min {:.1} median {:.1}, scene PSNR min {:.1} median {:.1}; \
                 encode ms mean {:.2} p95 {:.2} max {:.2}; {:.0} kbps",
                self.damaged(),
                self.frames,
                self.bad_code,
                self.low_psnr,
                self.rtp_mismatch,
                self.dropped,
                q(&self.psnr, 0.0),
                q(&self.psnr, 0.5),
                q(&self.psnr_scene, 0.0),
                q(&self.psnr_scene, 0.5),
                self.encode_ms.iter().sum::<f64>() / self.encode_ms.len().max(1) as f64,
                q(&self.encode_ms, 0.95),
                q(&self.encode_ms, 1.0),
                self.bytes as f64 * 8.0 * 30.0 / self.frames.max(1) as f64 / 1000.0
            )
        }
    }

    /// Sends `n` frames of the test pattern the way the pipelines do: BGR → I420 (convert.rs)
    /// → production encoder → RTP packetizer (MTU as in send.rs) → RtpReceiver → decoder,
    /// and checks every picture like the media tests.
    fn pattern_run(codec: VpxCodec, w: u32, h: u32, kbps: u32, n: u32) -> PatternRun {
        use crate::media::codec::convert::{bgr_to_i420, i420_to_bgr};
        use crate::media::rtp::{jitter::RtpReceiver, packetize::RtpPacketizer, RtpCodec};
        let (wu, hu) = (w as usize, h as usize);
        let cfg = VideoEncoderConfig { codec: codec.into(), width: w, height: h, bitrate_kbps: kbps, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 };
        let mut enc = VpxEncoder::new(cfg).unwrap();
        let mut dec = VpxDecoder::new(codec).unwrap();
        let rtp_codec = if codec == VpxCodec::Vp8 { RtpCodec::Vp8 } else { RtpCodec::Vp9 };
        let mut packetizer = RtpPacketizer::new(rtp_codec, 0x1234, 96, 90_000, 1200);
        let mut receiver = RtpReceiver::new(rtp_codec, 90_000);
        let start = std::time::Instant::now();
        let mut run = PatternRun::default();
        let mut back = vec![0u8; wu * hu * 3];
        for index in 0..n {
            let time_ms = 1_234_567 + index * 33 + index % 3; // a send clock with ms jitter
            let bgr = test_pattern_bgr(index, time_ms, wu, hu);
            let src = bgr_to_i420(&bgr, w, h, wu * 3).unwrap();
            run.frames += 1;
            let t0 = std::time::Instant::now();
            let encoded = enc.encode(&src, index * 3000, false).unwrap();
            run.encode_ms.push(t0.elapsed().as_secs_f64() * 1e3);
            if encoded.is_empty() {
                run.dropped.push(index);
            }
            for frame in encoded {
                run.bytes += frame.data.len();
                let now = start + std::time::Duration::from_millis(index as u64 * 33);
                for p in packetizer.packetize(&frame.data, index * 3000) {
                    assert!(receiver.push(&p, now));
                }
                let assembled = receiver.pop_frames(now);
                assert_eq!(assembled.len(), 1, "frame {index}");
                assert_eq!(assembled[0].keyframe, frame.keyframe, "frame {index}");
                if assembled[0].data != frame.data {
                    run.rtp_mismatch.push(index);
                }
                let out = dec.decode(&assembled[0].data).unwrap().expect("a picture per frame");
                let psnr = psnr_below_code(&src.y, &out.y, wu, 1);
                run.psnr.push(psnr);
                if psnr < 30.0 {
                    run.low_psnr.push((index, psnr));
                }
                i420_to_bgr(&out, &mut back).unwrap();
                if read_code_bgr(&back, wu) != Some((index, time_ms)) {
                    run.bad_code.push(index);
                }
                let scene = test_pattern_bgr(index, 0, wu, hu); // code area excluded below
                run.psnr_scene.push(psnr_below_code(&scene, &back, wu, 3));
            }
        }
        run
    }

    /// Regression: libvpx VP9's CBR realtime skip shortcut (see `avoid_vp9_skip_bug`) left
    /// stale or half-black/half-white code cells in ~1 of 6 frames (27 of 150) of this
    /// pattern, which the media tests then read as the wrong frame (PSNR ~21 dB).
    #[test]
    fn test_pattern_survives_codec_and_rtp() {
        for codec in [VpxCodec::Vp8, VpxCodec::Vp9] {
            let run = pattern_run(codec, 1280, 720, 2500, 60);
            println!("{codec:?} 1280x720 @2500 kbps: {}", run.summary());
            assert_eq!(run.damaged(), 0, "{codec:?}: {}", run.summary());
            assert!(run.dropped.is_empty(), "{codec:?}: {}", run.summary());
        }
    }

    /// Longer run for measurements: `VPX_FRAMES=300 VPX_KBPS=2500 VPX_CODEC=vp9 cargo test
    /// --release --lib test_pattern_long -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn test_pattern_long() {
        let env = |k: &str, d: u32| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
        let (n, kbps) = (env("VPX_FRAMES", 300), env("VPX_KBPS", 2500));
        let codecs = match std::env::var("VPX_CODEC").as_deref() {
            Ok("vp8") => vec![VpxCodec::Vp8],
            Ok("vp9") => vec![VpxCodec::Vp9],
            _ => vec![VpxCodec::Vp8, VpxCodec::Vp9],
        };
        for codec in codecs {
            println!("{codec:?} 1280x720 @{kbps} kbps: {}", pattern_run(codec, 1280, 720, kbps, n).summary());
        }
    }

    #[test]
    fn vp8_speed_follows_the_senders_whole_load() {
        let (p720, p360, p180) = (1280 * 720, 640 * 360, 320 * 180);
        assert_eq!(vp8_speed(p720, 0, 2), -12); // one 720p stream on a weak CPU
        assert_eq!(vp8_speed(p360, 0, 2), -6); // one 360p stream: cheap enough
        assert_eq!(vp8_speed(p360, p720 + p360 + p180, 2), -12); // a layer under a 720p one
        assert_eq!(vp8_speed(p180, p720 + p360 + p180, 2), -6); // below CIF: quality first
        assert_eq!(vp8_speed(p720, p720 + p360, 8), -6); // cores to spare
    }

    /// L1T2 and L1T3: the frames carry the pattern's layer ids and Y bits, and a receiver
    /// that takes only the layers up to any one of them decodes each frame it gets faithfully
    /// (a frame referring to one it lacks would decode, but wrongly).
    #[test]
    fn temporal_layers_decode_without_the_layers_above() {
        let cases = [(VpxCodec::Vp8, 0, 2u8), (VpxCodec::Vp8, 0, 3), (VpxCodec::Vp9, 0, 2), (VpxCodec::Vp9, 0, 3), (VpxCodec::Vp9, 2, 3)];
        for (codec, profile, layers) in cases {
            let (w, h, n) = (320, 240, 40);
            let cfg = VideoEncoderConfig { temporal_layers: layers, vp9_profile: profile, ..config(codec, w, h) };
            let mut enc = VpxEncoder::new(cfg).unwrap();
            let mut frames = Vec::new();
            for t in 0..n {
                let src = pattern(w, h, t);
                // a keyframe mid-period: the period starts again from it
                for f in enc.encode(&src, t * 3000, t == 21).unwrap() {
                    frames.push((src.clone(), f));
                }
            }
            // (at this bitrate rate control drops nothing, so frame i is capture i)
            assert_eq!(frames.len() as u32, n);
            let ids: Vec<u8> = frames.iter().map(|(_, f)| f.temporal.unwrap().id).collect();
            let period: &[u8] = if layers == 3 { &[0, 2, 1, 2] } else { &[0, 1] };
            for (i, (_, f)) in frames.iter().enumerate().take(20) {
                assert_eq!(f.temporal.unwrap().id, period[i % period.len()], "{codec:?} {layers} layers, frame {i}: {ids:?}");
                assert_eq!(f.temporal.unwrap().layers, layers);
            }
            assert!(frames[0].1.keyframe && frames[21].1.keyframe, "the first and the forced keyframe");
            assert_eq!(frames[21].1.temporal.unwrap().id, 0);
            assert_eq!(frames[22].1.temporal.unwrap().id, period[1], "{codec:?}: the period starts again after a keyframe: {ids:?}");
            // Y: TL1/TL2 frames that refer to TL0 alone
            if layers == 3 {
                assert_eq!(frames[1..4].iter().map(|(_, f)| f.temporal.unwrap().sync).collect::<Vec<_>>(), [true, true, false]);
            } else {
                assert!(frames[1].1.temporal.unwrap().sync);
            }
            let decoder = || VideoDecoder::new(codec.into(), None).unwrap();
            assert_layers_decode_alone(&frames, &format!("{codec:?} profile {profile} L1T{layers}"), 30.0, decoder);
        }
        // up to three
        assert_eq!(EncoderEngine::Internal.temporal_layers(VideoCodec::Vp9, 5), 3);
        assert!(VpxEncoder::new(VideoEncoderConfig { temporal_layers: 4, ..config(VpxCodec::Vp9, 64, 64) }).is_err());
        assert!(VpxEncoder::new(VideoEncoderConfig { temporal_layers: 4, ..config(VpxCodec::Vp8, 64, 64) }).is_err());
        assert!(VpxEncoder::new(VideoEncoderConfig { temporal_layers: 0, ..config(VpxCodec::Vp8, 64, 64) }).is_err());
    }

    #[test]
    fn bad_config_is_error() {
        assert!(VpxEncoder::new(config(VpxCodec::Vp8, 0, 10)).is_err());
        assert!(VpxEncoder::new(VideoEncoderConfig { bitrate_kbps: 0, ..config(VpxCodec::Vp8, 64, 64) }).is_err());
        assert!(VpxEncoder::new(VideoEncoderConfig { vp9_profile: 1, ..config(VpxCodec::Vp9, 64, 64) }).is_err());
        let mut enc = VpxEncoder::new(config(VpxCodec::Vp8, 64, 64)).unwrap();
        let mut f = I420Frame::new(64, 64).unwrap();
        f.u.pop();
        assert!(enc.encode(&f, 0, false).is_err());
    }
}
