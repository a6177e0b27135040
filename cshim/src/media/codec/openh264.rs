//! H.264 encoder and decoder over Cisco's OpenH264, loaded at run time from the path the
//! application gives (`Sora(openh264=...)`), as the official SDK does: the wheel ships no
//! H.264 code, users download Cisco's binary (or use their distribution's).
//!
//! Loading: `dlopen` once per path and never `dlclose` (encoders may outlive every
//! connection that named the path). A library is accepted when it exports the five
//! functions, reports a version whose structure layout we know (2.3.0 or later within 2.x)
//! and really opens an encoder and a decoder ([`probe`]).
//!
//! Layout: OpenH264 2.6.0 appended PSNR fields to `SLayerBSInfo` (an array element of
//! `SFrameBSInfo`), `SSourcePicture` and `SEncParamExt`. The last two are read as a prefix
//! by older libraries, but the layer array's stride differs, so encoded output is read
//! through [`LayerV23`] or [`LayerV26`] by the loaded version. Everything else is
//! unchanged since 2.3.0 (compared header by header).
use super::frame::I420Frame;
use super::video::{EncodedFrame, TemporalSync, VideoEncoderConfig};
use crate::error::{Error, Result};
use openh264_sys2 as sys;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::raw::{c_int, c_long, c_uchar, c_void};
use std::ptr;
use std::sync::{Arc, OnceLock};

type CreateEncoder = unsafe extern "C" fn(*mut *mut sys::ISVCEncoder) -> c_int;
type DestroyEncoder = unsafe extern "C" fn(*mut sys::ISVCEncoder);
type CreateDecoder = unsafe extern "C" fn(*mut *mut sys::ISVCDecoder) -> c_long;
type DestroyDecoder = unsafe extern "C" fn(*mut sys::ISVCDecoder);
type GetVersionEx = unsafe extern "C" fn(*mut sys::OpenH264Version);

/// The oldest OpenH264 whose structures match ours (2.3.0 added the last fields before the
/// 2.6.0 PSNR ones).
const MIN_VERSION: (u32, u32) = (2, 3);

/// One loaded OpenH264 library.
pub struct Library {
    version: (u32, u32, u32),
    create_encoder: CreateEncoder,
    destroy_encoder: DestroyEncoder,
    create_decoder: CreateDecoder,
    destroy_decoder: DestroyDecoder,
    /// Kept so the mapping stays; never dropped (the library lives in [`LIBRARIES`]).
    _lib: libloading::Library,
}

impl Library {
    /// "2.3.1", as the official capability reports it.
    pub fn version(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    /// Whether output layers carry the 2.6.0 PSNR fields.
    fn has_psnr_fields(&self) -> bool {
        (self.version.0, self.version.1) >= (2, 6)
    }

    fn open(path: &str) -> std::result::Result<Library, String> {
        // SAFETY: loading runs the library's initialisers: the application named this file
        // as its OpenH264 (the same trust the official SDK gives it).
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load {path}: {e}"))?;
        fn sym<T: Copy>(lib: &libloading::Library, path: &str, name: &str) -> std::result::Result<T, String> {
            // SAFETY: the symbol is an OpenH264 entry point with the signature T names.
            unsafe { lib.get::<T>(name.as_bytes()) }
                .map(|s| *s)
                .map_err(|_| format!("{path} is not an OpenH264 library (no {name})"))
        }
        let get_version: GetVersionEx = sym(&lib, path, "WelsGetCodecVersionEx")?;
        let mut v = sys::OpenH264Version::default();
        // SAFETY: writes one OpenH264Version.
        unsafe { get_version(&mut v) };
        if (v.uMajor, v.uMinor) < MIN_VERSION || v.uMajor != 2 {
            return Err(format!(
                "{path} is OpenH264 {}.{}.{}; this build supports 2.3.0 and later 2.x releases",
                v.uMajor, v.uMinor, v.uRevision
            ));
        }
        Ok(Library {
            version: (v.uMajor, v.uMinor, v.uRevision),
            create_encoder: sym(&lib, path, "WelsCreateSVCEncoder")?,
            destroy_encoder: sym(&lib, path, "WelsDestroySVCEncoder")?,
            create_decoder: sym(&lib, path, "WelsCreateDecoder")?,
            destroy_decoder: sym(&lib, path, "WelsDestroyDecoder")?,
            _lib: lib,
        })
    }
}

/// Loaded libraries by path (successes only: a file that appears later can still load).
static LIBRARIES: OnceLock<Mutex<HashMap<String, Arc<Library>>>> = OnceLock::new();
/// Probe results by path (capability is asked often; a session is opened once per path).
static PROBED: OnceLock<Mutex<HashMap<String, std::result::Result<(), String>>>> = OnceLock::new();

/// The library at `path`, loading it on first use.
pub fn load(path: &str) -> Result<Arc<Library>> {
    let mut libs = LIBRARIES.get_or_init(Default::default).lock();
    if let Some(l) = libs.get(path) {
        return Ok(l.clone());
    }
    let lib = Arc::new(Library::open(path).map_err(Error::invalid)?);
    libs.insert(path.to_owned(), lib.clone());
    Ok(lib)
}

/// Loads `path` and opens (then closes) an encoder and a decoder with it: what the
/// capability report requires before listing the engine. Cached per path once it worked.
pub fn probe(path: &str) -> Result<Arc<Library>> {
    let lib = load(path)?;
    let mut probed = PROBED.get_or_init(Default::default).lock();
    let result = probed.entry(path.to_owned()).or_insert_with(|| {
        let enc = H264Encoder::with_library(
            lib.clone(),
            VideoEncoderConfig { codec: super::video::VideoCodec::H264, width: 64, height: 64, bitrate_kbps: 100, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 },
            H264Params::default(),
        );
        let dec = H264Decoder::with_library(lib.clone());
        enc.and(dec).map(|_| ()).map_err(|e| e.to_string())
    });
    result.clone().map_err(Error::invalid)?;
    Ok(lib)
}

/// What the negotiated fmtp asks of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H264Params {
    /// `level_idc` of profile-level-id (e.g. 31 for 3.1).
    pub level_idc: u8,
    /// packetization-mode=0: every NAL unit must fit one RTP packet (size-limited slices).
    pub single_nal_mode: bool,
    /// The largest NAL unit in single NAL mode (the RTP payload room).
    pub max_nal_size: u32,
}

impl Default for H264Params {
    fn default() -> Self {
        H264Params { level_idc: 31, single_nal_mode: false, max_nal_size: 1100 }
    }
}

/// The level_idc of an fmtp profile-level-id (6 hex digits: profile_idc, constraint flags,
/// level_idc). OpenH264 encodes the Constrained Baseline profile only: another profile, a
/// malformed id or level 0 is an error that says so.
pub fn baseline_level(profile_level_id: &str) -> std::result::Result<u8, String> {
    let bytes = (profile_level_id.len() == 6)
        .then(|| u32::from_str_radix(profile_level_id, 16).ok())
        .flatten()
        .ok_or_else(|| format!("malformed H.264 profile-level-id {profile_level_id:?}"))?;
    let (profile, constraints, level) = ((bytes >> 16) as u8, (bytes >> 8) as u8, bytes as u8);
    // Constrained Baseline: profile_idc 66 with constraint_set1, or 77/88 with set0+set1
    // (RFC 6184 table 5); plain Baseline (66) is decodable as well.
    let baseline = profile == 66 || (matches!(profile, 77 | 88) && constraints & 0xc0 == 0xc0);
    if !baseline {
        return Err(format!(
            "H.264 profile-level-id {profile_level_id} asks for a profile OpenH264 cannot encode (it encodes Constrained Baseline)"
        ));
    }
    if level == 0 {
        return Err(format!("H.264 profile-level-id {profile_level_id} has level 0"));
    }
    Ok(level)
}

/// `SLayerBSInfo` before 2.6.0.
#[repr(C)]
#[derive(Clone, Copy)]
struct LayerV23 {
    temporal_id: c_uchar,
    spatial_id: c_uchar,
    quality_id: c_uchar,
    frame_type: c_int,
    layer_type: c_uchar,
    sub_seq_id: c_int,
    nal_count: c_int,
    nal_lengths: *mut c_int,
    bs_buf: *mut c_uchar,
}

/// `SLayerBSInfo` from 2.6.0 on.
#[repr(C)]
#[derive(Clone, Copy)]
struct LayerV26 {
    base: LayerV23,
    psnr: [f32; 3],
}

const MAX_LAYERS: usize = 128;

/// `SFrameBSInfo` with either layer layout.
#[repr(C)]
struct FrameBs<L> {
    layer_num: c_int,
    layers: [L; MAX_LAYERS],
    frame_type: c_int,
    frame_size: c_int,
    timestamp: i64,
}

/// Concatenates the NAL units (with their start codes) of every layer of `info`.
/// Appends the NAL units of every layer to `out`; returns the temporal id they carry.
fn collect<L: Copy>(info: &FrameBs<L>, base: impl Fn(&L) -> LayerV23, out: &mut Vec<u8>) -> Result<u8> {
    let n = usize::try_from(info.layer_num).unwrap_or(0).min(MAX_LAYERS);
    let mut temporal_id = 0;
    for l in info.layers[..n].iter().map(base) {
        let count = usize::try_from(l.nal_count).unwrap_or(0);
        if count == 0 || l.nal_lengths.is_null() || l.bs_buf.is_null() {
            continue;
        }
        // SAFETY: the encoder filled nal_count lengths and a buffer of their sum; both stay
        // valid until the next EncodeFrame.
        let lens = unsafe { std::slice::from_raw_parts(l.nal_lengths, count) };
        let total: usize = lens.iter().map(|&n| usize::try_from(n).unwrap_or(0)).sum();
        if total > 64 << 20 {
            return Err(Error::internal("OpenH264 reported an implausible layer size"));
        }
        out.extend_from_slice(unsafe { std::slice::from_raw_parts(l.bs_buf, total) });
        temporal_id = l.temporal_id;
    }
    Ok(temporal_id)
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// libwebrtc's choice of OpenH264 threads (and so slices) by picture size and cores: a
/// second thread only above 640x480 with 3 or more cores. On 2 cores a second thread only
/// adds synchronisation (measured: docs/design.md, "H.264 through OpenH264").
fn encoder_threads(width: u32, height: u32, cores: usize) -> u16 {
    let pixels = width as u64 * height as u64;
    if pixels >= 1920 * 1080 && cores > 8 {
        8
    } else if pixels > 1280 * 960 && cores >= 6 {
        3
    } else if pixels > 640 * 480 && cores >= 3 {
        2
    } else {
        1
    }
}

/// Whether OpenH264 can take this size as it is: H.264 4:2:0 has no odd sizes (cropping
/// works in steps of two), and OpenH264 refuses pictures under 16 pixels either way.
fn encodable_size(w: u32, h: u32) -> bool {
    w % 2 == 0 && h % 2 == 0 && w >= 16 && h >= 16
}

/// The size a `w`x`h` picture is encoded at (see [`even_sized`]).
fn encodable_dims(w: u32, h: u32) -> (u32, u32) {
    let even = |n: u32| if n < 16 { 16 } else { n & !1 };
    (even(w), even(h))
}

/// An odd size loses its last column or row; one under 16 is padded to 16 by repeating
/// the last column or row.
fn even_sized(frame: &I420Frame) -> Result<I420Frame> {
    let (w, h) = encodable_dims(frame.width, frame.height);
    let mut out = I420Frame::new(w, h)?;
    let copy = |dst: &mut [u8], dw: usize, dh: usize, src: &[u8], sw: usize, sh: usize| {
        for y in 0..dh {
            let row = &src[y.min(sh - 1) * sw..][..sw];
            for (x, d) in dst[y * dw..][..dw].iter_mut().enumerate() {
                *d = row[x.min(sw - 1)];
            }
        }
    };
    let (sw, sh) = (frame.width as usize, frame.height as usize);
    copy(&mut out.y, w as usize, h as usize, &frame.y, sw, sh);
    let (cw, ch) = (out.chroma_width() as usize, out.chroma_height() as usize);
    let (scw, sch) = (frame.chroma_width() as usize, frame.chroma_height() as usize);
    copy(&mut out.u, cw, ch, &frame.u, scw, sch);
    copy(&mut out.v, cw, ch, &frame.v, scw, sch);
    Ok(out)
}

/// Realtime H.264 (Constrained Baseline) encoder, configured like libwebrtc's: one-pass
/// bitrate mode with frame skipping, constant SPS/PPS ids, IDR on request.
pub struct H264Encoder {
    lib: Arc<Library>,
    enc: *mut sys::ISVCEncoder,
    config: VideoEncoderConfig,
    params: H264Params,
    start: std::time::Instant,
    /// The Y bits of OpenH264's temporal layering.
    temporal: TemporalSync,
    #[cfg(test)]
    threads_override: Option<u16>,
    #[cfg(test)]
    complexity_override: Option<sys::ECOMPLEXITY_MODE>,
}

// SAFETY: the encoder is used from one thread at a time (&mut self).
unsafe impl Send for H264Encoder {}

macro_rules! call {
    ($obj:expr, $f:ident $(, $arg:expr)*) => {{
        let obj = $obj;
        // SAFETY: obj is a live OpenH264 object; its vtable entries are never null.
        unsafe { ((**obj).$f.expect(stringify!($f)))(obj $(, $arg)*) }
    }};
}

impl H264Encoder {
    pub fn new(path: &str, config: VideoEncoderConfig, params: H264Params) -> Result<Self> {
        Self::with_library(load(path)?, config, params)
    }

    fn with_library(lib: Arc<Library>, mut config: VideoEncoderConfig, params: H264Params) -> Result<Self> {
        if config.width == 0 || config.height == 0 || config.width > super::frame::MAX_DIMENSION || config.height > super::frame::MAX_DIMENSION {
            return Err(Error::invalid(format!("invalid encoder size {}x{}", config.width, config.height)));
        }
        if !(1..=3).contains(&config.temporal_layers) {
            return Err(Error::invalid(format!("H.264 with {} temporal layers is not supported (1 to 3)", config.temporal_layers)));
        }
        (config.width, config.height) = encodable_dims(config.width, config.height);
        let mut enc: *mut sys::ISVCEncoder = ptr::null_mut();
        // SAFETY: writes the new encoder's pointer.
        let rc = unsafe { (lib.create_encoder)(&mut enc) };
        if rc != 0 || enc.is_null() {
            return Err(Error::internal(format!("WelsCreateSVCEncoder failed ({rc})")));
        }
        let mut this = H264Encoder {
            lib,
            enc,
            temporal: TemporalSync::new(config.temporal_layers),
            config,
            params,
            start: std::time::Instant::now(),
            #[cfg(test)]
            threads_override: None,
            #[cfg(test)]
            complexity_override: None,
        };
        this.init()?;
        Ok(this)
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    fn init(&mut self) -> Result<()> {
        let c = &self.config;
        let mut p: sys::SEncParamExt = unsafe { std::mem::zeroed() };
        let rc = call!(self.enc, GetDefaultParams, &mut p);
        if rc != 0 {
            return Err(Error::internal(format!("OpenH264 GetDefaultParams failed ({rc})")));
        }
        let bps = (c.bitrate_kbps.max(1) as i64 * 1000).min(i32::MAX as i64) as c_int;
        let fps = c.framerate.max(1) as f32;
        let threads = encoder_threads(c.width, c.height, cores());
        p.iUsageType = sys::CAMERA_VIDEO_REAL_TIME;
        p.iPicWidth = c.width as c_int;
        p.iPicHeight = c.height as c_int;
        p.iTargetBitrate = bps;
        p.iMaxBitrate = sys::UNSPECIFIED_BIT_RATE as c_int;
        p.iRCMode = sys::RC_BITRATE_MODE;
        p.fMaxFrameRate = fps;
        p.bEnableFrameSkip = true;
        p.uiIntraPeriod = 0; // keyframes on request only
        #[cfg(test)]
        let threads = self.threads_override.unwrap_or(threads);
        p.iMultipleThreadIdc = threads;
        #[cfg(test)]
        if let Some(c) = self.complexity_override {
            p.iComplexityMode = c;
        }
        p.bEnableDenoise = false;
        p.eSpsPpsIdStrategy = sys::CONSTANT_ID;
        p.iEntropyCodingModeFlag = 0; // CAVLC: Constrained Baseline
        p.iSpatialLayerNum = 1;
        // OpenH264's own dyadic layering: 0, 1 (L1T2) or 0, 2, 1, 2 (L1T3), as libwebrtc asks it
        p.iTemporalLayerNum = c.temporal_layers as c_int;
        let layer = &mut p.sSpatialLayers[0];
        layer.iVideoWidth = c.width as c_int;
        layer.iVideoHeight = c.height as c_int;
        layer.fFrameRate = fps;
        layer.iSpatialBitrate = bps;
        layer.iMaxSpatialBitrate = sys::UNSPECIFIED_BIT_RATE as c_int;
        layer.uiProfileIdc = sys::PRO_BASELINE;
        layer.uiLevelIdc = self.params.level_idc as c_int;
        if self.params.single_nal_mode {
            layer.sSliceArgument.uiSliceMode = sys::SM_SIZELIMITED_SLICE;
            layer.sSliceArgument.uiSliceSizeConstraint = self.params.max_nal_size;
            p.uiMaxNalSize = self.params.max_nal_size;
        } else {
            layer.sSliceArgument.uiSliceMode = sys::SM_FIXEDSLCNUM_SLICE;
            layer.sSliceArgument.uiSliceNum = threads as u32;
        }
        // Quiet before initialising: parameter validation logs to stderr otherwise.
        let mut quiet: c_int = sys::WELS_LOG_QUIET as c_int;
        call!(self.enc, SetOption, sys::ENCODER_OPTION_TRACE_LEVEL, &mut quiet as *mut c_int as *mut c_void);
        let rc = call!(self.enc, InitializeExt, &p);
        if rc != 0 {
            return Err(Error::internal(format!(
                "OpenH264 encoder initialisation failed ({rc}) for {}x{} at {} kbps",
                c.width, c.height, c.bitrate_kbps
            )));
        }
        let mut format: c_int = sys::videoFormatI420 as c_int;
        call!(self.enc, SetOption, sys::ENCODER_OPTION_DATAFORMAT, &mut format as *mut c_int as *mut c_void);
        Ok(())
    }

    /// Changes the bitrate target without a keyframe.
    pub fn set_bitrate(&mut self, kbps: u32) -> Result<()> {
        if kbps == 0 {
            return Err(Error::invalid("bitrate must be > 0"));
        }
        let mut info = sys::SBitrateInfo { iLayer: sys::SPATIAL_LAYER_ALL, iBitrate: (kbps as i64 * 1000).min(i32::MAX as i64) as c_int };
        let rc = call!(self.enc, SetOption, sys::ENCODER_OPTION_BITRATE, &mut info as *mut _ as *mut c_void);
        if rc != 0 {
            return Err(Error::internal(format!("OpenH264 bitrate change failed ({rc})")));
        }
        self.config.bitrate_kbps = kbps;
        Ok(())
    }

    /// Encodes one frame into one Annex B access unit (SPS and PPS lead every IDR). A new
    /// size re-initialises the encoder (its first frame is an IDR). Nothing when rate
    /// control skips the frame.
    pub fn encode(&mut self, frame: &I420Frame, force_keyframe: bool) -> Result<Vec<EncodedFrame>> {
        frame.check()?;
        let evened;
        let frame = if !encodable_size(frame.width, frame.height) {
            evened = even_sized(frame)?;
            &evened
        } else {
            frame
        };
        if frame.width != self.config.width || frame.height != self.config.height {
            call!(self.enc, Uninitialize);
            self.config.width = frame.width;
            self.config.height = frame.height;
            self.init()?;
        }
        if force_keyframe {
            call!(self.enc, ForceIntraFrame, true);
        }
        let cw = frame.chroma_width() as c_int;
        let mut pic: sys::SSourcePicture = unsafe { std::mem::zeroed() };
        pic.iColorFormat = sys::videoFormatI420 as c_int;
        pic.iPicWidth = frame.width as c_int;
        pic.iPicHeight = frame.height as c_int;
        pic.iStride = [frame.width as c_int, cw, cw, 0];
        // OpenH264 takes `unsigned char *` planes but only reads them.
        pic.pData = [frame.y.as_ptr() as *mut u8, frame.u.as_ptr() as *mut u8, frame.v.as_ptr() as *mut u8, ptr::null_mut()];
        pic.uiTimeStamp = self.start.elapsed().as_millis() as i64;
        let mut data = Vec::new();
        let (frame_type, temporal_id) = if self.lib.has_psnr_fields() {
            self.encode_into::<LayerV26>(&pic, |l| l.base, &mut data)?
        } else {
            self.encode_into::<LayerV23>(&pic, |l| *l, &mut data)?
        };
        if frame_type == sys::videoFrameTypeSkip as c_int || data.is_empty() {
            return Ok(Vec::new());
        }
        let keyframe = frame_type == sys::videoFrameTypeIDR as c_int;
        let temporal = (self.config.temporal_layers > 1).then(|| self.temporal.next(temporal_id, keyframe));
        Ok(vec![EncodedFrame { data, keyframe, width: frame.width, height: frame.height, temporal }])
    }

    fn encode_into<L: Copy>(&mut self, pic: &sys::SSourcePicture, base: impl Fn(&L) -> LayerV23, out: &mut Vec<u8>) -> Result<(c_int, u8)> {
        // Boxed: 128 layers are ~7 KB; zeroed is a valid empty SFrameBSInfo.
        let mut info: Box<FrameBs<L>> = Box::new(unsafe { std::mem::zeroed() });
        let rc = call!(self.enc, EncodeFrame, pic, &mut *info as *mut FrameBs<L> as *mut sys::SFrameBSInfo);
        if rc != 0 {
            return Err(Error::internal(format!("OpenH264 EncodeFrame failed ({rc})")));
        }
        let temporal_id = collect(&info, base, out)?;
        Ok((info.frame_type, temporal_id))
    }
}

impl Drop for H264Encoder {
    fn drop(&mut self) {
        call!(self.enc, Uninitialize);
        // SAFETY: created by this library's WelsCreateSVCEncoder, destroyed once.
        unsafe { (self.lib.destroy_encoder)(self.enc) };
    }
}

/// H.264 decoder: one Annex B access unit in, an I420 picture out.
pub struct H264Decoder {
    lib: Arc<Library>,
    dec: *mut sys::ISVCDecoder,
}

// SAFETY: as for H264Encoder.
unsafe impl Send for H264Decoder {}

impl H264Decoder {
    pub fn new(path: &str) -> Result<Self> {
        Self::with_library(load(path)?)
    }

    fn with_library(lib: Arc<Library>) -> Result<Self> {
        let mut dec: *mut sys::ISVCDecoder = ptr::null_mut();
        // SAFETY: writes the new decoder's pointer.
        let rc = unsafe { (lib.create_decoder)(&mut dec) };
        if rc != 0 || dec.is_null() {
            return Err(Error::internal(format!("WelsCreateDecoder failed ({rc})")));
        }
        let this = H264Decoder { lib, dec };
        let mut p: sys::SDecodingParam = unsafe { std::mem::zeroed() };
        // No concealment: a picture with lost references is an error, and we ask for an IDR.
        p.eEcActiveIdc = sys::ERROR_CON_DISABLE;
        p.sVideoProperty.size = std::mem::size_of::<sys::SVideoProperty>() as u32;
        p.sVideoProperty.eVideoBsType = sys::VIDEO_BITSTREAM_AVC;
        let rc = call!(this.dec, Initialize, &p);
        if rc != 0 {
            return Err(Error::internal(format!("OpenH264 decoder initialisation failed ({rc})")));
        }
        let mut quiet: c_int = sys::WELS_LOG_QUIET as c_int;
        call!(this.dec, SetOption, sys::DECODER_OPTION_TRACE_LEVEL, &mut quiet as *mut c_int as *mut c_void);
        Ok(this)
    }

    /// Decodes one access unit into `out`; returns whether a picture came out. `Err` for
    /// corrupt data or missing references (the caller asks for a keyframe).
    pub fn decode_into(&mut self, data: &[u8], out: &mut I420Frame) -> Result<bool> {
        if data.is_empty() || data.len() > i32::MAX as usize {
            return Err(Error::invalid("empty or oversized H.264 access unit"));
        }
        let mut planes: [*mut u8; 3] = [ptr::null_mut(); 3];
        let mut info: sys::SBufferInfo = Default::default();
        let state = call!(self.dec, DecodeFrameNoDelay, data.as_ptr(), data.len() as c_int, planes.as_mut_ptr(), &mut info);
        if state != sys::dsErrorFree {
            return Err(Error::internal(format!("OpenH264 could not decode the access unit (state {state:#x})")));
        }
        if info.iBufferStatus != 1 || planes.iter().any(|p| p.is_null()) {
            return Ok(false);
        }
        // SAFETY: sSystemBuffer is the union's only member.
        let sb = unsafe { info.UsrData.sSystemBuffer };
        let (w, h) = (sb.iWidth, sb.iHeight);
        if w <= 0 || h <= 0 {
            return Err(Error::internal(format!("OpenH264 returned a {w}x{h} picture")));
        }
        let strides = [sb.iStride[0], sb.iStride[1], sb.iStride[1]].map(|s| usize::try_from(s).unwrap_or(0));
        let planes = std::array::from_fn(|i| (planes[i] as *const u8, strides[i]));
        // SAFETY: the decoder's planes hold their rows of `stride` bytes each until the next
        // decode call; the visible part is copied out now.
        unsafe { out.copy_from_decoder(w as u32, h as u32, planes, 8)? };
        Ok(true)
    }
}

impl Drop for H264Decoder {
    fn drop(&mut self) {
        call!(self.dec, Uninitialize);
        // SAFETY: created by this library's WelsCreateDecoder, destroyed once.
        unsafe { (self.lib.destroy_decoder)(self.dec) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::codec::frame::psnr_y;
    use crate::media::codec::video::{assert_layers_decode_alone, VideoCodec, VideoDecoder};

    /// OpenH264 2.6.0: SORA_FFI_OPENH264, else where .ci/setup puts it.
    pub fn library_path_2_6() -> String {
        std::env::var("SORA_FFI_OPENH264").unwrap_or_else(|_| {
            format!("{}/.cache/sora_ffi/openh264/libopenh264.so.2.6.0", std::env::var("HOME").unwrap_or_default())
        })
    }

    /// The two layouts: OpenH264 2.6.0 (SORA_FFI_OPENH264, else where .ci/setup puts it) and
    /// Debian 12's 2.3.1 (libopenh264-7). Both must exist: .ci/setup installs them.
    pub fn library_paths() -> [String; 2] {
        let paths = [library_path_2_6(), "/usr/lib/x86_64-linux-gnu/libopenh264.so.7".to_string()];
        for p in &paths {
            assert!(std::path::Path::new(p).exists(), "OpenH264 is missing at {p}: run .ci/setup");
        }
        paths
    }

    fn pattern(w: u32, h: u32, t: u32) -> I420Frame {
        let mut f = I420Frame::new(w, h).unwrap();
        for y in 0..h {
            for x in 0..w {
                f.y[(y * w + x) as usize] = (((x + 2 * t) / 8 + y / 8) % 2 * 160 + 40) as u8;
            }
        }
        f
    }

    fn config(w: u32, h: u32) -> VideoEncoderConfig {
        VideoEncoderConfig { codec: VideoCodec::H264, width: w, height: h, bitrate_kbps: 1500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 }
    }

    #[test]
    fn round_trip_with_sps_pps_on_every_idr() {
        let versions: Vec<String> = library_paths().iter().map(|p| probe(p).unwrap().version()).collect();
        assert!(versions[0].starts_with("2.6") && versions[1].starts_with("2.3"), "{versions:?}");
        for path in library_paths() {
            round_trip(&path);
        }
    }

    fn round_trip(path: &str) {
        let mut enc = H264Encoder::new(path, config(320, 240), H264Params::default()).unwrap();
        let mut dec = H264Decoder::new(path).unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        let mut decoded = 0;
        for t in 0..20 {
            let src = pattern(320, 240, t);
            for f in enc.encode(&src, t == 10).unwrap() {
                let types: Vec<u8> = nal_types(&f.data);
                if f.keyframe {
                    assert_eq!(&types[..3], &[7, 8, 5], "SPS, PPS, IDR: {types:?}");
                } else {
                    assert!(!types.contains(&5));
                }
                assert_eq!(f.keyframe, t == 0 || t == 10, "frame {t}: {types:?}");
                assert!(dec.decode_into(&f.data, &mut out).unwrap());
                assert_eq!((out.width, out.height), (320, 240));
                assert!(psnr_y(&src, &out).unwrap() > 30.0);
                decoded += 1;
            }
        }
        assert!(decoded >= 18);
        // A new size re-initialises the encoder and starts with an IDR.
        let f = enc.encode(&pattern(160, 120, 0), false).unwrap();
        assert!(f[0].keyframe);
        assert!(dec.decode_into(&f[0].data, &mut out).unwrap());
        assert_eq!((out.width, out.height), (160, 120));
    }

    /// L1T2 and L1T3 with either library: OpenH264's layering gives each frame its layer
    /// (0, 1 / 0, 2, 1, 2 from each IDR), and a decoder given only the layers up to any one of
    /// them decodes every frame it gets faithfully.
    #[test]
    fn temporal_layers_decode_without_the_layers_above() {
        for path in library_paths() {
            for layers in [2u8, 3] {
                let (w, h, n) = (320, 240, 40);
                let mut enc = H264Encoder::new(&path, VideoEncoderConfig { temporal_layers: layers, ..config(w, h) }, H264Params::default()).unwrap();
                let mut frames = Vec::new();
                for t in 0..n {
                    let src = pattern(w, h, t);
                    for f in enc.encode(&src, t == 21).unwrap() {
                        frames.push((src.clone(), f));
                    }
                }
                assert_eq!(frames.len() as u32, n, "no frame skipped");
                let period: &[u8] = if layers == 3 { &[0, 2, 1, 2] } else { &[0, 1] };
                assert!(frames[0].1.keyframe && frames[21].1.keyframe, "the first and the asked-for IDR");
                // (OpenH264 adds an IDR of its own now and then: each starts the period again)
                let mut since_idr = 0;
                for (i, (_, f)) in frames.iter().enumerate() {
                    since_idr = if f.keyframe { 0 } else { since_idr + 1 };
                    assert_eq!(f.temporal.unwrap().id, period[since_idr % period.len()], "{path}: L1T{layers}, frame {i}");
                }
                if layers == 3 {
                    assert_eq!(frames[1..4].iter().map(|(_, f)| f.temporal.unwrap().sync).collect::<Vec<_>>(), [true, true, false]);
                }
                let decoder = || VideoDecoder::new(VideoCodec::H264, Some(&path)).unwrap();
                assert_layers_decode_alone(&frames, &format!("H.264 ({path}) L1T{layers}"), 30.0, decoder);
            }
            assert!(H264Encoder::new(&path, VideoEncoderConfig { temporal_layers: 4, ..config(64, 64) }, H264Params::default()).is_err());
        }
    }

    #[test]
    fn odd_and_changing_sizes_are_encoded() {
        let [path, _] = library_paths();
        let mut enc = H264Encoder::new(&path, config(64, 64), H264Params::default()).unwrap();
        let mut dec = H264Decoder::new(&path).unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        for (w, h, want) in [(1, 1, (16, 16)), (321, 241, (320, 240)), (64, 64, (64, 64)), (1921, 1081, (1920, 1080)), (40, 3, (40, 16))] {
            let f = enc.encode(&pattern(w, h, 0), false).unwrap();
            assert!(f[0].keyframe, "a new size starts with an IDR ({w}x{h})");
            assert!(dec.decode_into(&f[0].data, &mut out).unwrap());
            assert_eq!((out.width, out.height), want);
        }
    }

    /// CPU per 720p frame (run with --ignored --nocapture): what the thread count and the
    /// complexity cost on this machine.
    #[test]
    #[ignore]
    fn measure_720p_encode_cpu() {
        use crate::media::codec::process_cpu_seconds as cpu_s;
        let [path, _] = library_paths();
        let frames: Vec<I420Frame> = (0..60).map(|t| pattern(1280, 720, t)).collect();
        for threads in [1u16, 2] {
            for complexity in [sys::LOW_COMPLEXITY, sys::MEDIUM_COMPLEXITY] {
                let mut enc = H264Encoder::new(&path, config(1280, 720), H264Params::default()).unwrap();
                enc.threads_override = Some(threads);
                enc.complexity_override = Some(complexity);
                call!(enc.enc, Uninitialize);
                enc.init().unwrap();
                let (c0, t0) = (cpu_s(), std::time::Instant::now());
                let mut bytes = 0;
                for i in 0..300 {
                    bytes += enc.encode(&frames[i % 60], false).unwrap().iter().map(|f| f.data.len()).sum::<usize>();
                }
                let (cpu, wall) = (cpu_s() - c0, t0.elapsed().as_secs_f64());
                println!("threads {threads} complexity {complexity}: {:.2} ms CPU, {:.2} ms wall per frame, {} kbps",
                    cpu * 1000.0 / 300.0, wall * 1000.0 / 300.0, bytes * 8 * 30 / 300 / 1000);
            }
        }
    }

    #[test]
    fn single_nal_mode_limits_nal_size() {
        let [path, _] = library_paths();
        let params = H264Params { single_nal_mode: true, max_nal_size: 900, ..Default::default() };
        let mut enc = H264Encoder::new(&path, config(640, 480), params).unwrap();
        let f = enc.encode(&pattern(640, 480, 0), true).unwrap();
        let sizes = nal_sizes(&f[0].data);
        assert!(sizes.len() > 2, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s <= 900), "{sizes:?}");
    }

    #[test]
    fn corrupt_and_truncated_input_is_an_error_not_a_crash() {
        let [path, _] = library_paths();
        let mut enc = H264Encoder::new(&path, config(320, 240), H264Params::default()).unwrap();
        let key = enc.encode(&pattern(320, 240, 0), true).unwrap().remove(0).data;
        let mut dec = H264Decoder::new(&path).unwrap();
        let mut out = I420Frame::new(2, 2).unwrap();
        for cut in [5, 20, key.len() / 2] {
            let _ = dec.decode_into(&key[..cut], &mut out);
        }
        let mut garbage = key.clone();
        for (i, b) in garbage.iter_mut().enumerate().skip(40) {
            *b ^= (i * 31) as u8;
        }
        let _ = dec.decode_into(&garbage, &mut out);
        assert!(dec.decode_into(&[], &mut out).is_err());
        // A fresh decoder given a delta frame first: no picture, no crash.
        let delta = enc.encode(&pattern(320, 240, 1), false).unwrap().remove(0).data;
        let mut fresh = H264Decoder::new(&path).unwrap();
        assert!(!matches!(fresh.decode_into(&delta, &mut out), Ok(true)));
        // And the first decoder recovers on the next IDR.
        let key = enc.encode(&pattern(320, 240, 2), true).unwrap().remove(0).data;
        assert!(dec.decode_into(&key, &mut out).unwrap());
    }

    #[test]
    fn wrong_libraries_are_refused() {
        let err = load("/no/such/libopenh264.so").err().unwrap().to_string();
        assert!(err.contains("cannot load"), "{err}");
        let libz = ["/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("libz");
        let err = load(libz).err().unwrap().to_string();
        assert!(err.contains("not an OpenH264 library"), "{err}");
        assert!(H264Encoder::new(libz, config(64, 64), H264Params::default()).is_err());
        let [path, _] = library_paths();
        assert!(H264Encoder::new(&path, config(0, 64), H264Params::default()).is_err());
        assert_eq!(H264Encoder::new(&path, config(63, 9), H264Params::default()).unwrap().config().width, 62);
    }

    #[test]
    fn profile_level_ids() {
        assert_eq!(baseline_level("42e01f"), Ok(31));
        assert_eq!(baseline_level("42001f"), Ok(31));
        assert_eq!(baseline_level("4d0032").unwrap_err().contains("Constrained Baseline"), true);
        assert_eq!(baseline_level("4de01f"), Ok(31));
        assert!(baseline_level("640c1f").is_err());
        assert!(baseline_level("42e0").is_err());
        assert!(baseline_level("zzzzzz").is_err());
        assert!(baseline_level("42e000").is_err());
    }

    pub fn nal_units(au: &[u8]) -> Vec<&[u8]> {
        crate::media::rtp::annexb::split(au)
    }

    fn nal_types(au: &[u8]) -> Vec<u8> {
        nal_units(au).iter().map(|n| n[0] & 0x1f).collect()
    }

    fn nal_sizes(au: &[u8]) -> Vec<usize> {
        nal_units(au).iter().map(|n| n.len()).collect()
    }
}
