//! Media handles: sources (what the application sends), sinks (what it receives), the
//! buffers that carry frames out zero-copy, and the VAD.
use super::connection::SoraConnection;
use super::events::{SoraEvent, SoraEventQueue};
use super::{arg_pcm_out, arg_ref, guard, out_ptr, out_value};
use crate::error::{Error, Kind, Result};
use crate::media::codec::Vad;
use crate::media::recv::Receiver;
use crate::media::sink::{AudioSink, AudioStreamSink, MediaSink, VideoSink};
use crate::media::codec::engine::CodecType;
use crate::media::encoded::EncodedVideoSource;
use crate::media::source::{AudioSource, VideoSource};
use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

/// An audio source (opaque): interleaved int16 samples in, Opus out.
pub struct SoraAudioSource {
    inner: Arc<AudioSource>,
}

/// A video source (opaque): BGR frames in, VP8/VP9 out.
pub struct SoraVideoSource {
    inner: Arc<VideoSource>,
}

/// A sink attached to a remote track (opaque): video frames, an audio buffer, or 10 ms
/// audio frames.
pub struct SoraSink {
    id: u64,
    receiver: Arc<Receiver>,
    audio: Option<Arc<AudioSink>>,
    stream: Option<Arc<AudioStreamSink>>,
}

/// A byte buffer moved out of an event or a read (opaque); the caller views it in place.
pub struct SoraBuffer {
    data: Vec<u8>,
}

/// An Opus decoder (opaque): packets in, int16 PCM out at the rate asked for.
pub struct SoraOpusDecoder {
    inner: crate::media::codec::opus::OpusDecoder,
}

/// Voice activity detection (opaque).
pub struct SoraVad {
    inner: Vad,
}

unsafe fn samples<'a>(p: *const i16, n: usize) -> Result<&'a [i16]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::invalid("samples must not be NULL"));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// Creates an audio source taking `channels` × `sample_rate` input; it is converted to
/// 48 kHz (and at most 2 channels) for Opus. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_new(channels: i32, sample_rate: i32, out: *mut *mut SoraAudioSource) -> i32 {
    guard(|| {
        if channels <= 0 || sample_rate <= 0 {
            return Err(Error::invalid("channels and sample_rate must be positive"));
        }
        out_ptr(SoraAudioSource { inner: AudioSource::new(channels as u32, sample_rate as u32)? }, out)
    })
}

/// The id to put in a connection config's "audio_source".
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_id(s: *const SoraAudioSource) -> u64 {
    s.as_ref().map_or(0, |s| s.inner.id)
}

/// Queues `frames` frames of interleaved samples. `has_timestamp` 0: continue from the
/// previous push; else `timestamp` is the capture time (epoch seconds) of the first sample.
/// Waits while a connection using the source has more than 500 ms queued (real-time
/// pacing of bursts). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_push(
    s: *const SoraAudioSource,
    data: *const i16,
    frames: usize,
    timestamp: f64,
    has_timestamp: i32,
) -> i32 {
    guard(|| {
        let s = arg_ref(s, "source")?;
        let pcm = samples(data, frames.checked_mul(s.inner.channels as usize).ok_or_else(|| Error::invalid("too many frames"))?)?;
        s.inner.push(pcm, (has_timestamp != 0).then_some(timestamp))?;
        Ok(0)
    })
}

/// Disabled sources send silence (audio) or black frames (video), as libwebrtc does.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_set_enabled(s: *const SoraAudioSource, enabled: i32) -> i32 {
    guard(|| {
        arg_ref(s, "source")?.inner.set_enabled(enabled != 0);
        Ok(0)
    })
}

/// Sets how much audio (µs) a connection using the source may hold before
/// `sora_audio_source_push` waits (default 500 ms). Callers that wait on their own (on
/// `sora_audio_source_queued_us`) set their queue size here so that push never blocks.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_set_max_queued_us(s: *const SoraAudioSource, us: u64) -> i32 {
    guard(|| {
        if us == 0 {
            return Err(Error::invalid("the queue limit must be more than 0 µs"));
        }
        arg_ref(s, "source")?.inner.set_max_queued(Duration::from_micros(us));
        Ok(0)
    })
}

/// The most audio (µs) that any connection using the source still has to send; 0 when no
/// connection is sending it.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_queued_us(s: *const SoraAudioSource, out: *mut u64) -> i32 {
    guard(|| {
        out_value(arg_ref(s, "source")?.inner.queued().as_micros() as u64, out)
    })
}

/// Drops the audio every connection using the source has queued and not sent yet (the
/// frames dropped from the fullest queue go to `*dropped`, which may be NULL).
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_clear(s: *const SoraAudioSource, dropped: *mut u64) -> i32 {
    guard(|| {
        let n = arg_ref(s, "source")?.inner.clear();
        if !dropped.is_null() {
            *dropped = n;
        }
        Ok(0)
    })
}

/// Frees the source; connections using it stop sending audio. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_source_destroy(s: *mut SoraAudioSource) {
    if !s.is_null() {
        drop(Box::from_raw(s));
    }
}

/// Creates a video source. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_video_source_new(out: *mut *mut SoraVideoSource) -> i32 {
    guard(|| out_ptr(SoraVideoSource { inner: VideoSource::new() }, out))
}

/// The id to put in a connection config's "video_source".
#[no_mangle]
pub unsafe extern "C" fn sora_video_source_id(s: *const SoraVideoSource) -> u64 {
    s.as_ref().map_or(0, |s| s.inner.id)
}

/// Hands over one BGR frame (`len` bytes, rows `stride` apart). It is converted to I420
/// before returning (the caller's buffer is free again); the newest frame wins if the
/// encoder is busy. `timestamp_us`: capture time in epoch µs, or INT64_MIN for now.
#[no_mangle]
pub unsafe extern "C" fn sora_video_source_push_bgr(
    s: *const SoraVideoSource,
    bgr: *const u8,
    len: usize,
    width: i32,
    height: i32,
    stride: i32,
    timestamp_us: i64,
) -> i32 {
    guard(|| {
        let s = arg_ref(s, "source")?;
        if width <= 0 || height <= 0 || stride <= 0 {
            return Err(Error::invalid("width, height and stride must be positive"));
        }
        let data = super::arg_bytes(bgr, len)?;
        let ts = (timestamp_us != i64::MIN).then_some(timestamp_us);
        s.inner.push_bgr(data, width as u32, height as u32, stride as usize, ts)?;
        Ok(0)
    })
}

/// See sora_audio_source_set_enabled.
#[no_mangle]
pub unsafe extern "C" fn sora_video_source_set_enabled(s: *const SoraVideoSource, enabled: i32) -> i32 {
    guard(|| {
        arg_ref(s, "source")?.inner.set_enabled(enabled != 0);
        Ok(0)
    })
}

/// Frees the source; connections using it stop sending video. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_video_source_destroy(s: *mut SoraVideoSource) {
    if !s.is_null() {
        drop(Box::from_raw(s));
    }
}

/// An encoded video source (opaque): access units in, sent as they are (media::encoded).
pub struct SoraEncodedVideoSource {
    inner: Arc<EncodedVideoSource>,
}

/// Creates a source of `codec` ("VP8", "VP9", "AV1", "H264", "H265") access units. Keyframe
/// requests arrive on `queue` (may be NULL) as SORA_EVENT_KEYFRAME_REQUEST (source = the
/// source's id, text = why). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_new(codec: *const c_char, queue: *const SoraEventQueue, out: *mut *mut SoraEncodedVideoSource) -> i32 {
    guard(|| {
        let name = super::arg_str(codec, "codec")?;
        let codec = CodecType::from_name(name)
            .ok_or_else(|| Error::invalid(format!("codec must be VP8, VP9, AV1, H264 or H265, not {name:?}")))?;
        let src = EncodedVideoSource::new(codec);
        if let Some(q) = queue.as_ref() {
            src.set_queue(q.inner.clone());
        }
        out_ptr(SoraEncodedVideoSource { inner: src }, out)
    })
}

/// The id to put in a connection config's "video_source". 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_id(s: *const SoraEncodedVideoSource) -> u64 {
    s.as_ref().map_or(0, |s| s.inner.id)
}

/// Sends one access unit (H.264/H.265: Annex B; AV1: a temporal unit of OBUs with size
/// fields; VP8/VP9: one frame) on every connection using the source; the bytes are copied.
/// `keyframe`: 1 or 0 as the caller knows it (refused when the bitstream says otherwise), -1
/// to read it from the bitstream. `timestamp_us`: capture time in epoch µs, or INT64_MIN for
/// now. A connection that cannot keep up skips to the next keyframe (and one is requested).
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_push(s: *const SoraEncodedVideoSource, data: *const u8, len: usize, keyframe: i32, timestamp_us: i64) -> i32 {
    guard(|| {
        let s = arg_ref(s, "source")?;
        let keyframe = match keyframe {
            -1 => None,
            0 | 1 => Some(keyframe == 1),
            _ => return Err(Error::invalid("keyframe must be 1, 0 or -1 (read it from the bitstream)")),
        };
        let ts = if timestamp_us == i64::MIN { (crate::media::source::now_epoch() * 1e6) as i64 } else { timestamp_us };
        s.inner.push(super::arg_bytes(data, len)?, keyframe, ts)?;
        Ok(0)
    })
}

/// While disabled nothing is sent; once enabled again sending resumes at a keyframe.
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_set_enabled(s: *const SoraEncodedVideoSource, enabled: i32) -> i32 {
    guard(|| {
        arg_ref(s, "source")?.inner.set_enabled(enabled != 0);
        Ok(0)
    })
}

/// Frames not sent on some connection (disabled, waiting for a keyframe, overflow).
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_dropped(s: *const SoraEncodedVideoSource) -> u64 {
    s.as_ref().map_or(0, |s| s.inner.dropped_frames.load(std::sync::atomic::Ordering::Relaxed))
}

/// Keyframe requests made so far (after merging those closer than 100 ms).
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_keyframe_requests(s: *const SoraEncodedVideoSource) -> u64 {
    s.as_ref().map_or(0, |s| s.inner.keyframe_requests.load(std::sync::atomic::Ordering::Relaxed))
}

/// Frees the source; connections using it stop sending video. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_encoded_video_source_destroy(s: *mut SoraEncodedVideoSource) {
    if !s.is_null() {
        drop(Box::from_raw(s));
    }
}

/// Sink output format: rate -1 / channels 0 mean "as received".
fn check_output_format(rate: i32, channels: i32) -> Result<()> {
    if !(0..=8).contains(&channels) || rate == 0 || rate < -1 {
        return Err(Error::invalid("output_rate must be -1 or positive, output_channels 0..=8"));
    }
    Ok(())
}

fn attach(c: &SoraConnection, track: u64, sink: Arc<dyn MediaSink>, audio: Option<Arc<AudioSink>>,
          stream: Option<Arc<AudioStreamSink>>, out: *mut *mut SoraSink) -> Result<i32> {
    let id = sink.id();
    let receiver = c.inner.attach_sink(track, sink)?;
    out_ptr(SoraSink { id, receiver, audio, stream }, out)
}

/// Attaches a video sink to remote track `track_id`: each decoded frame arrives on `queue`
/// as SORA_EVENT_VIDEO_FRAME (a = width, b = height, data = BGR, source = sink id); take
/// the pixels with sora_event_take_buffer. Oldest frames are dropped beyond the queue's
/// capacity.
#[no_mangle]
pub unsafe extern "C" fn sora_video_sink_new(queue: *const SoraEventQueue, c: *const SoraConnection, track_id: u64, out: *mut *mut SoraSink) -> i32 {
    guard(|| {
        let q = arg_ref(queue, "queue")?;
        attach(arg_ref(c, "connection")?, track_id, VideoSink::new(q.inner.clone()), None, None, out)
    })
}

/// Attaches an audio sink buffering converted audio (`output_rate` -1 / `output_channels`
/// 0: as received); read it with sora_audio_sink_read.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_sink_new(c: *const SoraConnection, track_id: u64, output_rate: i32, output_channels: i32, out: *mut *mut SoraSink) -> i32 {
    guard(|| {
        check_output_format(output_rate, output_channels)?;
        let sink = AudioSink::new(output_rate, output_channels);
        attach(arg_ref(c, "connection")?, track_id, sink.clone(), Some(sink), None, out)
    })
}

/// Also deliver the audio sink's data (SORA_EVENT_AUDIO_DATA) and format changes
/// (SORA_EVENT_AUDIO_FORMAT) as events on `queue`; NULL stops that.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_sink_set_events(s: *const SoraSink, queue: *const SoraEventQueue) -> i32 {
    guard(|| {
        let a = audio_sink(s)?;
        a.set_event_queue(queue.as_ref().map(|q| q.inner.clone()));
        Ok(0)
    })
}

unsafe fn audio_sink<'a>(s: *const SoraSink) -> Result<&'a AudioSink> {
    arg_ref(s, "sink")?.audio.as_deref().ok_or_else(|| Error::invalid("not an audio sink"))
}

/// Fills the optional rate and channel out-parameters.
unsafe fn write_format(out_rate: *mut i32, out_channels: *mut i32, rate: u32, channels: u32) {
    if let Some(r) = out_rate.as_mut() {
        *r = rate as i32;
    }
    if let Some(c) = out_channels.as_mut() {
        *c = channels as i32;
    }
}

/// Waits up to `timeout_ms` for `frames` frames (0: whatever is buffered, at least one)
/// and moves them into `*out` (interleaved int16). Returns 1 with data, 0 on timeout.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_sink_read(
    s: *const SoraSink,
    frames: usize,
    timeout_ms: i32,
    out: *mut *mut SoraBuffer,
    out_rate: *mut i32,
    out_channels: *mut i32,
) -> i32 {
    guard(|| {
        let a = audio_sink(s)?;
        match a.read(frames, Duration::from_millis(timeout_ms.max(0) as u64)) {
            None => Ok(0),
            Some((pcm, rate, ch)) => {
                write_format(out_rate, out_channels, rate, ch);
                out_ptr(SoraBuffer { data: crate::media::sink::pcm_bytes(&pcm) }, out)?;
                Ok(1)
            }
        }
    })
}

/// How many frames an audio sink holds now, and their format (0 before any audio
/// arrived). With sora_audio_sink_read_into, a reader can take them into memory of its own.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_sink_buffered(
    s: *const SoraSink,
    out_frames: *mut usize,
    out_rate: *mut i32,
    out_channels: *mut i32,
) -> i32 {
    guard(|| {
        let a = audio_sink(s)?;
        let frames = out_frames.as_mut().ok_or_else(|| Error::invalid("out_frames must not be NULL"))?;
        let (n, rate, channels) = a.buffered();
        *frames = n;
        write_format(out_rate, out_channels, rate, channels);
        Ok(0)
    })
}

/// Without waiting, moves exactly `frames` frames of `channels` interleaved int16 into
/// `dst` (room for frames * channels samples). Returns 1 when it did, 0 when fewer are
/// buffered or they have other channels (then nothing is taken: another reader, or a
/// format change, since sora_audio_sink_buffered).
#[no_mangle]
pub unsafe extern "C" fn sora_audio_sink_read_into(s: *const SoraSink, channels: i32, frames: usize, dst: *mut i16) -> i32 {
    guard(|| {
        let a = audio_sink(s)?;
        if !(1..=8).contains(&channels) {
            return Err(Error::invalid(format!("channels must be 1 to 8, not {channels}")));
        }
        let pcm = arg_pcm_out(dst, frames, channels as usize, "dst must hold at least one frame", "frames is too large")?;
        Ok(i32::from(a.read_into(channels as u32, pcm)))
    })
}

/// Attaches an audio stream sink: every 10 ms of converted audio (or the frame size set
/// with sora_audio_stream_sink_set_frame_ms) arrives on `queue` as
/// SORA_EVENT_AUDIO_FRAME (a = rate | channels << 32, b = absolute capture time in epoch ms
/// or INT64_MIN, data = interleaved int16).
#[no_mangle]
pub unsafe extern "C" fn sora_audio_stream_sink_new(
    queue: *const SoraEventQueue,
    c: *const SoraConnection,
    track_id: u64,
    output_rate: i32,
    output_channels: i32,
    out: *mut *mut SoraSink,
) -> i32 {
    guard(|| {
        check_output_format(output_rate, output_channels)?;
        let q = arg_ref(queue, "queue")?;
        let sink = AudioStreamSink::new(q.inner.clone(), output_rate, output_channels);
        attach(arg_ref(c, "connection")?, track_id, sink.clone(), None, Some(sink), out)
    })
}

/// An audio stream sink's events carry `ms` of audio from now on: a multiple of 10, at
/// most 1000 (default 10). Fewer, larger events for consumers that want larger frames.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_stream_sink_set_frame_ms(s: *const SoraSink, ms: u32) -> i32 {
    guard(|| {
        let sink = arg_ref(s, "sink")?;
        let stream = sink.stream.as_ref().ok_or_else(|| Error::invalid("not an audio stream sink"))?;
        stream.set_frame_ms(ms)?;
        Ok(0)
    })
}

/// The id this sink's events carry in `source`.
#[no_mangle]
pub unsafe extern "C" fn sora_sink_id(s: *const SoraSink) -> u64 {
    s.as_ref().map_or(0, |s| s.id)
}

/// Detaches and frees a sink. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_sink_destroy(s: *mut SoraSink) {
    if !s.is_null() {
        let s = Box::from_raw(s);
        s.receiver.remove_sink(s.id);
        if let Some(a) = &s.audio {
            a.close();
        }
    }
}

/// Moves the event's data into a buffer the caller owns (zero-copy hand-over of frames).
/// SORA_ERR_NOT_FOUND when the event carries no data (or it was taken already).
#[no_mangle]
pub unsafe extern "C" fn sora_event_take_buffer(ev: *mut SoraEvent, out: *mut *mut SoraBuffer) -> i32 {
    guard(|| {
        let ev = ev.as_mut().ok_or_else(|| Error::invalid("event must not be NULL"))?;
        let data = ev.inner.data.take().ok_or_else(|| Error::new(Kind::NotFound, "the event has no data"))?;
        out_ptr(SoraBuffer { data }, out)
    })
}

/// Where the buffer's bytes are (valid until sora_buffer_free).
#[no_mangle]
pub unsafe extern "C" fn sora_buffer_view(b: *const SoraBuffer, data: *mut *const u8, len: *mut usize) -> i32 {
    guard(|| {
        let b = arg_ref(b, "buffer")?;
        if data.is_null() || len.is_null() {
            return Err(Error::invalid("out pointers must not be NULL"));
        }
        *data = b.data.as_ptr();
        *len = b.data.len();
        Ok(0)
    })
}

/// Frees a buffer. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_buffer_free(b: *mut SoraBuffer) {
    if !b.is_null() {
        drop(Box::from_raw(b));
    }
}

/// Creates an Opus decoder whose output is `channels` (1 or 2) interleaved at
/// `sample_rate` (8000, 12000, 16000, 24000 or 48000) whatever the packets carry.
#[no_mangle]
pub unsafe extern "C" fn sora_opus_decoder_new(sample_rate: i32, channels: i32, out: *mut *mut SoraOpusDecoder) -> i32 {
    guard(|| {
        if sample_rate <= 0 || !(1..=2).contains(&channels) {
            return Err(Error::invalid("sample_rate must be positive and channels 1 or 2"));
        }
        let inner = crate::media::codec::opus::OpusDecoder::with_rate(channels as u32, sample_rate as u32)?;
        out_ptr(SoraOpusDecoder { inner }, out)
    })
}

/// Decodes one Opus packet (`packet` NULL: conceals one lost packet) into `out`, which
/// holds `capacity` samples per channel (120 ms is always enough). `*out_samples`
/// receives the samples per channel written. A corrupt packet is an error and changes
/// nothing. Not thread-safe per decoder.
#[no_mangle]
pub unsafe extern "C" fn sora_opus_decoder_decode(
    d: *mut SoraOpusDecoder,
    packet: *const u8,
    len: usize,
    out: *mut i16,
    capacity: usize,
    out_samples: *mut usize,
) -> i32 {
    guard(|| {
        let d = d.as_mut().ok_or_else(|| Error::invalid("decoder must not be NULL"))?;
        let written = out_samples.as_mut().ok_or_else(|| Error::invalid("out_samples must not be NULL"))?;
        let channels = d.inner.channels() as usize;
        let pcm = arg_pcm_out(out, capacity, channels, "out must hold at least one sample", "capacity is too large")?;
        let data = if packet.is_null() {
            None
        } else {
            if len == 0 {
                return Err(Error::invalid("an Opus packet is never empty"));
            }
            Some(std::slice::from_raw_parts(packet, len))
        };
        // libopus refuses only what it cannot decode: the caller's input.
        *written = d.inner.decode(data, pcm).map_err(|e| Error::invalid(e.message))?;
        Ok(0)
    })
}

/// Frees an Opus decoder. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_opus_decoder_destroy(d: *mut SoraOpusDecoder) {
    if !d.is_null() {
        drop(Box::from_raw(d));
    }
}

/// Creates a voice activity detector (earshot network plus a tonal check; see docs).
#[no_mangle]
pub unsafe extern "C" fn sora_vad_new(out: *mut *mut SoraVad) -> i32 {
    guard(|| out_ptr(SoraVad { inner: Vad::new() }, out))
}

/// Voice probability [0, 1] of `frames` frames of interleaved samples.
#[no_mangle]
pub unsafe extern "C" fn sora_vad_analyze(
    v: *mut SoraVad,
    data: *const i16,
    frames: usize,
    channels: i32,
    sample_rate: i32,
    out: *mut f32,
) -> i32 {
    guard(|| {
        let v = v.as_mut().ok_or_else(|| Error::invalid("vad must not be NULL"))?;
        if channels <= 0 || sample_rate <= 0 {
            return Err(Error::invalid("channels and sample_rate must be positive"));
        }
        let pcm = samples(data, frames * channels as usize)?;
        let p = v.inner.analyze(pcm, sample_rate as u32, channels as u32)?;
        *out.as_mut().ok_or_else(|| Error::invalid("out must not be NULL"))? = p;
        Ok(0)
    })
}

/// Frees a VAD. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_vad_destroy(v: *mut SoraVad) {
    if !v.is_null() {
        drop(Box::from_raw(v));
    }
}
