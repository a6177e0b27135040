//! NVENC: the encoders of the NVIDIA Video Codec SDK engine (`nvidia_video_codec_sdk`),
//! H.264, H.265 and AV1 through Shiguredo's `shiguredo_nvcodec` bindings (the same `dlopen`ed
//! driver libraries as NVDEC, see [`super::nvidia`]).
//!
//! A codec is listed as encodable only when an NVENC session really opens for it on device
//! 0 ([`probe`]); GPUs without NVENC (the H200 this project could use, data-centre parts)
//! refuse the session and the reason is kept. The encoder takes I420 as it is (`IYUV`), runs
//! CBR with the low-latency tuning, no B-frames and an endless GOP (keyframes when asked for,
//! each with its parameter sets), and follows bitrate changes by reconfiguring. Like NVDEC,
//! the bindings encode on their own threads: [`NvencEncoder::encode`] hands the frame over,
//! tagged, and waits for its bitstream.
use super::engine::CodecType;
use super::frame::I420Frame;
use super::video::{EncodedFrame, VideoEncoderConfig};
use crate::error::{Error, Result};
use shiguredo_nvcodec::{
    query_encoder_caps, Av1EncoderConfig, BufferFormat, CodecConfig, EncodeOptions, Encoder, EncoderCodec,
    EncoderConfig, FnEncodeHandler, H264EncoderConfig, H264Profile, HevcEncoderConfig, PictureType, Preset,
    RateControlMode, ReconfigureParams, TuningInfo,
};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const DEVICE: i32 = 0;
/// How long a frame's bitstream may take to come back (a session's first frame included).
const FRAME_WAIT: Duration = Duration::from_millis(500);

fn encoder_codec(codec: CodecType) -> Option<EncoderCodec> {
    match codec {
        CodecType::H264 => Some(EncoderCodec::H264),
        CodecType::H265 => Some(EncoderCodec::Hevc),
        CodecType::Av1 => Some(EncoderCodec::Av1),
        CodecType::Vp8 | CodecType::Vp9 => None, // NVENC has no VP8/VP9 encoder
    }
}

/// The codecs an NVENC session opens for on device 0, or why none does. Probed once.
pub fn probe() -> std::result::Result<&'static [CodecType], &'static str> {
    static PROBE: OnceLock<std::result::Result<Vec<CodecType>, String>> = OnceLock::new();
    let r = PROBE.get_or_init(|| {
        let mut codecs = Vec::new();
        let mut refused: Vec<(CodecType, String)> = Vec::new();
        for codec in CodecType::ALL {
            let Some(c) = encoder_codec(codec) else { continue };
            // query_encoder_caps opens (and closes) an encode session for the codec.
            match query_encoder_caps(c, DEVICE) {
                Ok(_) => codecs.push(codec),
                Err(e) => refused.push((codec, e.to_string())),
            }
        }
        if codecs.is_empty() {
            // One reason for all (no driver, no NVENC on this GPU) is said once.
            let why = if refused.iter().all(|(_, r)| *r == refused[0].1) {
                refused[0].1.clone()
            } else {
                refused.iter().map(|(c, r)| format!("{}: {r}", c.name())).collect::<Vec<_>>().join("; ")
            };
            return Err(format!("NVIDIA encoding is unavailable: {why}"));
        }
        log::info!("NVENC on device {DEVICE} encodes {codecs:?}");
        Ok(codecs)
    });
    r.as_deref().map_err(String::as_str)
}

/// A frame's bitstream, whether it is a keyframe, and its tag.
type Output = std::result::Result<(u64, Vec<u8>, bool), String>;

pub struct NvencEncoder {
    config: VideoEncoderConfig,
    codec: CodecType,
    session: Option<(Encoder<FnEncodeHandler<u64>>, Receiver<Output>)>,
    sent: u64,
    /// I420 planes back to back, as NVENC's IYUV input wants them.
    input: Vec<u8>,
}

/// H.264 from NVENC goes out in packetization-mode 1 only: NVENC cannot bound its NAL units
/// for mode 0 (single NAL units of at most a packet).
pub fn check_h264_packetization(single_nal_mode: bool) -> Result<()> {
    if single_nal_mode {
        return Err(Error::invalid("NVENC cannot encode H.264 for packetization-mode 0 (it cannot bound NAL unit sizes)"));
    }
    Ok(())
}

impl NvencEncoder {
    /// An NVENC encoder for `codec` (H.264, H.265, AV1).
    pub fn new(config: VideoEncoderConfig, codec: CodecType) -> Result<Self> {
        if !probe().map_err(Error::state)?.contains(&codec) {
            return Err(Error::state(format!("this GPU's NVENC does not encode {}", codec.name())));
        }
        let mut e = NvencEncoder { config, codec, session: None, sent: 0, input: Vec::new() };
        e.open()?;
        Ok(e)
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    fn open(&mut self) -> Result<()> {
        let c = &self.config;
        let codec = match self.codec {
            CodecType::H264 => CodecConfig::H264(H264EncoderConfig { profile: Some(H264Profile::Baseline), idr_period: None }),
            CodecType::H265 => CodecConfig::Hevc(HevcEncoderConfig { profile: None, idr_period: None }),
            _ => CodecConfig::Av1(Av1EncoderConfig { profile: None, idr_period: None }),
        };
        let config = EncoderConfig {
            codec,
            width: c.width,
            height: c.height,
            max_encode_width: None,
            max_encode_height: None,
            framerate_num: c.framerate.max(1),
            framerate_den: 1,
            average_bitrate: Some(c.bitrate_kbps.max(1) * 1000),
            preset: Preset::P4,
            tuning_info: TuningInfo::LOW_LATENCY,
            rate_control_mode: RateControlMode::Cbr,
            gop_length: None,
            frame_interval_p: 1,
            buffer_format: BufferFormat::Iyuv,
            device_id: DEVICE,
        };
        let (tx, rx) = channel::<Output>();
        let handler = FnEncodeHandler::new(move |r: std::result::Result<shiguredo_nvcodec::EncodedFrame<u64>, shiguredo_nvcodec::Error>| {
            let _ = tx.send(r.map_err(|e| e.to_string()).map(|f| {
                let key = matches!(f.picture_type(), PictureType::Idr | PictureType::I);
                let tag = *f.user_data();
                (tag, f.into_parts().0, key)
            }));
        });
        let encoder = Encoder::new(config, handler)
            .map_err(|e| Error::state(format!("cannot open an NVENC {} encoder: {e}", self.codec.name())))?;
        self.session = Some((encoder, rx));
        self.sent = 0;
        Ok(())
    }

    pub fn set_bitrate(&mut self, kbps: u32) -> Result<()> {
        self.config.bitrate_kbps = kbps.max(1);
        if let Some((encoder, _)) = &self.session {
            let bps = self.config.bitrate_kbps * 1000;
            encoder
                .reconfigure(ReconfigureParams { average_bitrate: Some(bps), max_bitrate: Some(bps), ..Default::default() })
                .map_err(|e| Error::state(format!("NVENC: {e}")))?;
        }
        Ok(())
    }

    /// Encodes one frame; a new size opens a new session (starting with a keyframe).
    pub fn encode(&mut self, frame: &I420Frame, force_keyframe: bool) -> Result<Vec<EncodedFrame>> {
        frame.check()?;
        let mut keyframe = force_keyframe;
        if (frame.width, frame.height) != (self.config.width, self.config.height) || self.session.is_none() {
            self.config.width = frame.width;
            self.config.height = frame.height;
            self.session = None;
            self.open()?;
            keyframe = true;
        }
        if self.sent == 0 {
            keyframe = true;
        }
        self.input.clear();
        self.input.extend_from_slice(&frame.y);
        self.input.extend_from_slice(&frame.u);
        self.input.extend_from_slice(&frame.v);
        let Some((encoder, outputs)) = self.session.as_ref() else { return Ok(Vec::new()) };
        self.sent += 1;
        let options = EncodeOptions { force_intra: false, force_idr: keyframe, output_spspps: keyframe };
        if let Err(e) = encoder.encode(&self.input, &options, self.sent) {
            self.session = None;
            return Err(Error::state(format!("NVENC: {e}")));
        }
        let deadline = Instant::now() + FRAME_WAIT;
        let mut out = Vec::new();
        loop {
            match outputs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok((tag, data, key))) => {
                    if !data.is_empty() {
                        out.push(EncodedFrame { data, keyframe: key, width: frame.width, height: frame.height, temporal: None });
                    }
                    if tag >= self.sent {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    self.session = None; // the next frame opens a new session
                    return Err(Error::state(format!("NVENC encode failed: {e}")));
                }
                Err(RecvTimeoutError::Timeout) => break, // it comes out with the next frame
                Err(RecvTimeoutError::Disconnected) => {
                    self.session = None;
                    return Err(Error::state("NVENC: the encoder thread ended"));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    //! Without NVENC (CI, and the H200 this project could use: it has NVDEC only) the probe
    //! says why and no encoder opens. With NVENC, each codec it lists encodes the moving
    //! pattern into frames the software decoders (or NVDEC for H.265) decode.
    use super::*;
    use crate::media::codec::aom::tests::pattern;
    use crate::media::codec::frame::psnr_y;
    use crate::media::codec::video::VideoCodec;

    fn config(codec: VideoCodec, w: u32, h: u32) -> VideoEncoderConfig {
        VideoEncoderConfig { codec, width: w, height: h, bitrate_kbps: 2500, framerate: 30, vp9_profile: 0, sender_pixels: 0, temporal_layers: 1 }
    }

    #[test]
    fn unavailable_cleanly_or_encodes_what_decoders_read() {
        let codecs = match probe() {
            Ok(c) => c,
            Err(why) => {
                assert!(why.starts_with("NVIDIA encoding is unavailable: "), "{why}");
                let err = NvencEncoder::new(config(VideoCodec::H264, 320, 240), CodecType::H264).err().expect("no NVENC");
                assert!(err.message.contains("unavailable"), "{}", err.message);
                eprintln!("{why}");
                return;
            }
        };
        let e = check_h264_packetization(true).err();
        assert!(e.is_some_and(|e| e.message.contains("packetization-mode 0")));
        assert!(check_h264_packetization(false).is_ok());
        for &codec in codecs {
            let video_codec = match codec {
                CodecType::H264 => VideoCodec::H264,
                CodecType::H265 => VideoCodec::H265,
                _ => VideoCodec::Av1,
            };
            let mut enc = NvencEncoder::new(config(video_codec, 640, 360), codec).unwrap();
            let mut frames = Vec::new();
            for t in 0..30u32 {
                let src = pattern(640, 360, t);
                for f in enc.encode(&src, t == 15).unwrap() {
                    frames.push((src.clone(), f));
                }
            }
            assert!(frames.len() >= 28 && frames[0].1.keyframe, "{}: {} frames", codec.name(), frames.len());
            assert!(frames.iter().any(|(_, f)| f.keyframe && f.data.len() > 100));
            // Decoded by what receives it here: dav1d for AV1, NVDEC for H.264/H.265.
            let mut decoded = 0;
            let mut dec = match codec {
                CodecType::Av1 => super::super::video::VideoDecoder::new(VideoCodec::Av1, None).unwrap(),
                c => super::super::video::VideoDecoder::with_engine(c, &super::super::video::DecoderEngine::Nvdec).unwrap(),
            };
            for (src, f) in &frames {
                if let Some(p) = dec.decode(&f.data).unwrap() {
                    assert!(psnr_y(src, &p).unwrap() > 30.0, "{}", codec.name());
                    decoded += 1;
                }
            }
            eprintln!("NVENC {}: {} frames, {decoded} decoded", codec.name(), frames.len());
            assert!(decoded + 2 >= frames.len());
        }
    }
}
