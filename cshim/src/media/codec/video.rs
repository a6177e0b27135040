//! Video encoders and decoders behind one interface, whatever engine runs them: libvpx
//! (VP8/VP9), libaom and dav1d (AV1), linked in, OpenH264 (H.264, loaded at run time), or NVDEC
//! (loaded at run time where an NVIDIA GPU is). The pipelines only see
//! [`VideoEncoder`] and [`VideoDecoder`]; adding an engine adds a variant here.
use super::aom::Av1Encoder;
use super::dav1d::Av1Decoder;
use super::engine::CodecType;
use super::frame::I420Frame;
use super::nvenc::NvencEncoder;
use super::nvidia::NvdecDecoder;
use super::openh264::{H264Decoder, H264Encoder, H264Params};
use super::vpx::{VpxDecoder, VpxEncoder};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    /// Encoded only by hardware engines (NVENC here).
    H265,
    Av1,
}

impl From<VideoCodec> for CodecType {
    fn from(codec: VideoCodec) -> CodecType {
        match codec {
            VideoCodec::Vp8 => CodecType::Vp8,
            VideoCodec::Vp9 => CodecType::Vp9,
            VideoCodec::H264 => CodecType::H264,
            VideoCodec::H265 => CodecType::H265,
            VideoCodec::Av1 => CodecType::Av1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoEncoderConfig {
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub framerate: u32,
    /// VP9 only: 0 (8-bit 4:2:0) or 2 (10-bit 4:2:0; our 8-bit input is shifted up).
    pub vp9_profile: u8,
    /// Pixels per frame of all the sender encodes (every simulcast layer; 0: this stream
    /// alone). libvpx picks its speed for that load: a 640x360 layer under a 720p one is
    /// encoded as fast as the 720p one on a weak CPU.
    pub sender_pixels: u64,
    /// Temporal layers (1-3: scalabilityMode L1T1-L1T3); [`EncoderEngine::temporal_layers`]
    /// says which encoders make more than one.
    pub temporal_layers: u8,
}

/// Temporal layering (scalabilityMode L1T2 and L1T3) in the patterns libwebrtc uses: the
/// layer of each frame of a period, and the share of the bitrate up to each layer.
pub fn temporal_pattern(layers: u8) -> (&'static [u8], &'static [f32]) {
    match layers {
        2 => (&[0, 1], &[0.6, 1.0]),
        3 => (&[0, 2, 1, 2], &[0.4, 0.6, 1.0]),
        _ => (&[0], &[1.0]),
    }
}

/// Each temporal layer's cumulative target in kbps (at least 1) for `kbps` in all.
pub fn temporal_bitrates(layers: u8, kbps: u32) -> impl Iterator<Item = u32> {
    temporal_pattern(layers).1.iter().map(move |share| ((kbps as f32 * share) as u32).max(1))
}

/// Where an encoded frame sits in its temporal layering (RFC 7741's TID and Y bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalLayer {
    /// The stream's number of temporal layers (2 or 3: the structure VP9's RTP descriptor
    /// describes).
    pub layers: u8,
    pub id: u8,
    /// It refers only to base layer (TL0) frames: a receiver may start taking this layer here.
    pub sync: bool,
}

/// Y bits for an encoder that picks each frame's temporal layer itself (libvpx's VP9 and
/// OpenH264's dyadic layering): a frame refers to TL0 frames only when the latest frame of a
/// layer below its own was a TL0 frame.
#[derive(Debug)]
pub struct TemporalSync {
    layers: u8,
    frames: u64,
    /// The number of the latest frame of each layer.
    latest: [u64; 3],
}

impl TemporalSync {
    pub fn new(layers: u8) -> Self {
        TemporalSync { layers, frames: 0, latest: [0; 3] }
    }

    pub fn next(&mut self, id: u8, keyframe: bool) -> TemporalLayer {
        self.frames += 1;
        if keyframe {
            self.latest = [self.frames, 0, 0];
            return TemporalLayer { layers: self.layers, id: 0, sync: false };
        }
        let id = id.min(2) as usize;
        let sync = id > 0 && self.latest[1..id].iter().all(|&l| l < self.latest[0]);
        self.latest[id] = self.frames;
        TemporalLayer { layers: self.layers, id: id as u8, sync }
    }
}

/// Where the next frame goes in `temporal_pattern`, for an encoder that is told each frame's
/// layer (libvpx's VP8, libaom): a forced keyframe starts the period, and so does a keyframe
/// the encoder makes of its own accord, wherever it fell. The Y bits come from
/// [`TemporalSync`]; an encoder whose layering is its own (libvpx's VP9) reports each
/// frame's layer instead ([`TemporalPosition::reported`]).
#[derive(Debug)]
pub struct TemporalPosition {
    pattern: &'static [u8],
    at: usize,
    sync: TemporalSync,
}

impl TemporalPosition {
    pub fn new(layers: u8) -> Self {
        TemporalPosition { pattern: temporal_pattern(layers).0, at: 0, sync: TemporalSync::new(layers) }
    }

    /// The position of the next frame in the period, and its layer.
    pub fn next(&mut self, force_keyframe: bool) -> (usize, u8) {
        let at = if force_keyframe { 0 } else { self.at };
        self.at = (at + 1) % self.pattern.len();
        (at, self.pattern[at])
    }

    /// The layer of the frame encoded at `at` (a keyframe: TL0, and the period starts again).
    pub fn encoded(&mut self, at: usize, keyframe: bool) -> TemporalLayer {
        if keyframe {
            self.at = 1 % self.pattern.len();
        }
        self.sync.next(self.pattern[at], keyframe)
    }

    /// The layer of a frame whose layer the encoder chose (`id`).
    pub fn reported(&mut self, id: u8, keyframe: bool) -> TemporalLayer {
        self.sync.next(id, keyframe)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
    pub width: u32,
    pub height: u32,
    /// Set when the encoder makes temporal layers.
    pub temporal: Option<TemporalLayer>,
}

/// Encoder timestamps from RTP time (libvpx and libaom take a 90 kHz timebase): strictly
/// increasing pts, and frame durations from the RTP deltas for rate control.
#[derive(Debug, Default)]
pub struct EncoderClock {
    last_input: Option<u32>,
    next_pts: i64,
}

impl EncoderClock {
    /// (pts, duration) for a frame captured at RTP time `pts_90k` (wraps freely). Deltas
    /// outside (0, 1 s] (reordering, pauses, resets) count as one nominal frame.
    pub fn next(&mut self, pts_90k: u32, framerate: u32) -> (i64, u32) {
        const RATE: u32 = 90_000;
        let nominal = (RATE / framerate.max(1)).max(1);
        let duration = match self.last_input.map(|last| pts_90k.wrapping_sub(last) as i32) {
            Some(d) if d > 0 && d as u32 <= RATE => d as u32,
            _ => nominal,
        };
        self.last_input = Some(pts_90k);
        let pts = self.next_pts;
        self.next_pts += i64::from(duration);
        (pts, duration)
    }
}

/// Which engine encodes, with what it needs beyond [`VideoEncoderConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderEngine {
    /// The engines linked in: libvpx (VP8, VP9) and libaom (AV1).
    Internal,
    /// The OpenH264 library at this path, with the negotiated H.264 parameters.
    OpenH264 { path: String, params: H264Params },
    /// NVENC on this machine's NVIDIA GPU (H.264 in packetization-mode 1, H.265, AV1).
    Nvenc,
}

impl EncoderEngine {
    /// The temporal layers this engine encodes `codec` with when `wanted` are asked for:
    /// libvpx, libaom and OpenH264 make up to three, NVENC one.
    pub fn temporal_layers(&self, codec: VideoCodec, wanted: u8) -> u8 {
        match (self, codec) {
            (EncoderEngine::Internal, VideoCodec::Vp8 | VideoCodec::Vp9 | VideoCodec::Av1) | (EncoderEngine::OpenH264 { .. }, VideoCodec::H264) => wanted.clamp(1, 3),
            _ => 1,
        }
    }

    /// `encoderImplementation` in stats.
    pub fn implementation_name(&self, codec: VideoCodec) -> &'static str {
        match (self, codec) {
            (EncoderEngine::Internal, VideoCodec::Av1) => "libaom",
            (EncoderEngine::Internal, _) => "libvpx",
            (EncoderEngine::OpenH264 { .. }, _) => "OpenH264",
            (EncoderEngine::Nvenc, _) => "NvCodec",
        }
    }
}

pub enum VideoEncoder {
    Vpx(VpxEncoder),
    Aom(Av1Encoder),
    OpenH264(H264Encoder),
    Nvenc(NvencEncoder),
}

impl VideoEncoder {
    pub fn new(engine: &EncoderEngine, config: VideoEncoderConfig) -> Result<Self> {
        match (engine, config.codec) {
            (EncoderEngine::Internal, VideoCodec::Av1) => Ok(VideoEncoder::Aom(Av1Encoder::new(config)?)),
            (EncoderEngine::Internal, VideoCodec::H264 | VideoCodec::H265) => {
                Err(Error::invalid(format!("no engine built in encodes {:?}", config.codec)))
            }
            (EncoderEngine::Internal, _) => Ok(VideoEncoder::Vpx(VpxEncoder::new(config)?)),
            (EncoderEngine::OpenH264 { path, params }, VideoCodec::H264) => {
                Ok(VideoEncoder::OpenH264(H264Encoder::new(path, config, *params)?))
            }
            (EncoderEngine::OpenH264 { .. }, c) => Err(Error::invalid(format!("OpenH264 does not encode {c:?}"))),
            (EncoderEngine::Nvenc, c) => Ok(VideoEncoder::Nvenc(NvencEncoder::new(config, c.into())?)),
        }
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        match self {
            VideoEncoder::Vpx(e) => e.config(),
            VideoEncoder::Aom(e) => e.config(),
            VideoEncoder::OpenH264(e) => e.config(),
            VideoEncoder::Nvenc(e) => e.config(),
        }
    }

    pub fn set_bitrate(&mut self, kbps: u32) -> Result<()> {
        match self {
            VideoEncoder::Vpx(e) => e.set_bitrate(kbps),
            VideoEncoder::Aom(e) => e.set_bitrate(kbps),
            VideoEncoder::OpenH264(e) => e.set_bitrate(kbps),
            VideoEncoder::Nvenc(e) => e.set_bitrate(kbps),
        }
    }

    /// Encodes one frame captured at RTP time `pts_90k`; a new size re-opens the encoder.
    pub fn encode(&mut self, frame: &I420Frame, pts_90k: u32, force_keyframe: bool) -> Result<Vec<EncodedFrame>> {
        match self {
            VideoEncoder::Vpx(e) => e.encode(frame, pts_90k, force_keyframe),
            VideoEncoder::Aom(e) => e.encode(frame, pts_90k, force_keyframe),
            VideoEncoder::OpenH264(e) => e.encode(frame, force_keyframe),
            VideoEncoder::Nvenc(e) => e.encode(frame, force_keyframe),
        }
    }
}

/// Which engine decodes a received stream: what the codec preference chose for its codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoderEngine {
    /// libvpx (VP8, VP9) and dav1d (AV1), linked in.
    Internal,
    /// The OpenH264 library at this path (H.264).
    OpenH264(String),
    /// NVDEC on this machine's NVIDIA GPU.
    Nvdec,
    /// Nothing here decodes the codec (H.265 without a hardware engine).
    Unavailable,
}

impl DecoderEngine {
    /// `decoderImplementation` in stats.
    pub fn implementation_name(&self, codec: CodecType) -> &'static str {
        match (self, codec) {
            (DecoderEngine::Internal, CodecType::Av1) => "dav1d",
            (DecoderEngine::Internal, _) => "libvpx",
            (DecoderEngine::OpenH264(_), _) => "OpenH264",
            (DecoderEngine::Nvdec, _) => "NvCodec",
            (DecoderEngine::Unavailable, _) => "none",
        }
    }
}

pub enum VideoDecoder {
    Vpx(VpxDecoder),
    Dav1d(Av1Decoder),
    OpenH264(H264Decoder),
    Nvdec(NvdecDecoder),
}

impl VideoDecoder {
    /// A decoder for `codec` on `engine`.
    pub fn with_engine(codec: CodecType, engine: &DecoderEngine) -> Result<Self> {
        match (engine, codec) {
            (DecoderEngine::Nvdec, c) => Ok(VideoDecoder::Nvdec(NvdecDecoder::new(c)?)),
            (DecoderEngine::OpenH264(path), CodecType::H264) => Ok(VideoDecoder::OpenH264(H264Decoder::new(path)?)),
            (DecoderEngine::Internal, CodecType::Vp8) => Self::new(VideoCodec::Vp8, None),
            (DecoderEngine::Internal, CodecType::Vp9) => Self::new(VideoCodec::Vp9, None),
            (DecoderEngine::Internal, CodecType::Av1) => Self::new(VideoCodec::Av1, None),
            (DecoderEngine::Internal, CodecType::H264) => {
                Err(Error::invalid("H.264 decoding needs an OpenH264 library (Sora(openh264=...))"))
            }
            (_, CodecType::H265) => Err(Error::state(
                "no H.265 decoder: H.265 is decoded only by hardware engines, and none is available here \
                 (its frames can still be read with an encoded transform on the track)",
            )),
            (e, c) => Err(Error::state(format!("the {e:?} engine does not decode {}", c.name()))),
        }
    }

    /// A decoder for `codec`; H.264 needs the OpenH264 library's path.
    pub fn new(codec: VideoCodec, openh264: Option<&str>) -> Result<Self> {
        match codec {
            VideoCodec::H264 => {
                let path = openh264.ok_or_else(|| Error::invalid("H.264 decoding needs an OpenH264 library (Sora(openh264=...))"))?;
                Ok(VideoDecoder::OpenH264(H264Decoder::new(path)?))
            }
            VideoCodec::Av1 => Ok(VideoDecoder::Dav1d(Av1Decoder::new()?)),
            VideoCodec::H265 => Self::with_engine(CodecType::H265, &DecoderEngine::Internal),
            c => Ok(VideoDecoder::Vpx(VpxDecoder::new(c.try_into()?)?)),
        }
    }

    /// Decodes one complete frame. `Ok(None)`: no picture came out; `Err`: corrupt data or
    /// missing references (ask for a keyframe).
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>> {
        let mut frame = I420Frame { width: 0, height: 0, y: Vec::new(), u: Vec::new(), v: Vec::new() };
        Ok(if self.decode_into(data, &mut frame)? { Some(frame) } else { None })
    }

    pub fn decode_into(&mut self, data: &[u8], out: &mut I420Frame) -> Result<bool> {
        match self {
            VideoDecoder::Vpx(d) => d.decode_into(data, out),
            VideoDecoder::Dav1d(d) => d.decode_into(data, out),
            VideoDecoder::OpenH264(d) => d.decode_into(data, out),
            VideoDecoder::Nvdec(d) => d.decode_into(data, out),
        }
    }
}

/// Decodes only the frames of the temporal layers up to each one in turn, with a new
/// decoder each time, and checks every picture against its source: at least `floor` dB
/// (PSNR of Y). A frame that referred to one of a higher layer would fail to decode or come
/// out wrong. Prints what each pass decoded.
#[cfg(test)]
pub(crate) fn assert_layers_decode_alone(frames: &[(I420Frame, EncodedFrame)], what: &str, floor: f64, mut decoder: impl FnMut() -> VideoDecoder) {
    let layers = frames.iter().filter_map(|(_, f)| f.temporal).map(|t| t.layers).max().expect("temporal layers");
    for top in 0..layers {
        let mut dec = decoder();
        let (mut worst, mut decoded) = (f64::MAX, 0);
        for (src, f) in frames.iter().filter(|(_, f)| f.temporal.unwrap().id <= top) {
            let out = dec.decode(&f.data).unwrap().unwrap_or_else(|| panic!("{what} up to TL{top}: no picture"));
            worst = worst.min(super::frame::psnr_y(src, &out).unwrap());
            decoded += 1;
        }
        println!("{what}, layers up to TL{top}: {decoded} frames, worst PSNR {worst:.1} dB");
        assert!(worst > floor, "{what} up to TL{top}: a frame at {worst:.1} dB");
    }
}
