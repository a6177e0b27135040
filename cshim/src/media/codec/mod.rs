//! Audio/video codecs, colour conversion, resampling and VAD: plain, single-threaded
//! building blocks for the media pipelines (libvpx and libopus may run worker threads of
//! their own inside one call).
//!
//! * [`engine`]: engines × codecs × {encoder, decoder}, capability and preference.
//! * [`frame`]: tight I420 frames, PSNR.
//! * [`convert`]: BGR <-> I420, BT.601 limited range (SIMD `yuv` crate).
//! * [`scale`]: I420 downscaling for CPU adaptation (box filter).
//! * [`video`]: the video encoder/decoder interface over every engine.
//! * [`vpx`]: VP8/VP9 realtime encoder and decoder over system libvpx.
//! * [`aom`]: AV1 realtime encoder over libaom.
//! * [`dav1d`]: AV1 decoder over dav1d.
//! * [`openh264`]: H.264 over Cisco's OpenH264, loaded at run time from a given path.
//! * [`nvidia`]: NVDEC decoding (NVIDIA Video Codec SDK), loaded at run time when a GPU is there.
//! * [`nvenc`]: NVENC encoding (the same engine), listed where an encode session opens.
//! * [`opus`]: Opus encoder/decoder at 48 kHz over bundled libopus.
//! * [`resample`]: streaming rate and channel conversion (rubato).
//! * [`vad`]: voice probability (the earshot network plus a tonal check).
pub mod aom;
pub mod convert;
pub mod dav1d;
pub mod engine;
pub mod frame;
pub mod nvenc;
pub mod nvidia;
pub mod openh264;
pub mod opus;
pub mod resample;
pub mod scale;
pub mod vad;
pub mod video;
pub mod vpx;

pub use convert::{bgr_to_i420, bgr_to_i420_into, i420_to_bgr};
pub use frame::{psnr_y, I420Frame};
pub use opus::{OpusDecoder, OpusEncoder, OpusParams};
pub use resample::Resampler;
pub use scale::Scaler;
pub use vad::Vad;

/// CPU seconds (user + system) this process has used, for the ignored measurement tests.
#[cfg(test)]
pub(crate) fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
pub use video::{DecoderEngine, EncodedFrame, EncoderEngine, TemporalLayer, VideoCodec, VideoDecoder, VideoEncoder, VideoEncoderConfig};
