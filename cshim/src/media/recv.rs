//! Receive pipelines: RTP from a remote track → jitter buffer (reordering, NACK, loss
//! handling) → decoder → sinks. Decoding only runs while a sink is attached; the first sink
//! of a video track triggers a keyframe request so it starts with a picture at once. Each
//! pipeline is a task on the shared media runtime (`exec`), not a thread.
use super::codec::engine::CodecType;
use super::codec::{DecoderEngine, OpusDecoder, VideoDecoder};
use super::exec::{next_input, Inbox, TaskEnd, Timer, Wake};
use super::rtp::rtcp::{build_pli, build_rr};
use super::rtp::{is_rtcp, parse_compound, InboundRtpStats, RtcpEvent, RtpCodec, RtpReceiver};
use super::sink::MediaSink;
use super::transform::{frame_metadata, Pending, TransformTarget, Transformer, RECEIVER};
use crate::rtc::{self, PacketHandler};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const RR_INTERVAL: Duration = Duration::from_secs(1);
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(300);

enum Input {
    Packet(Vec<u8>),
    SinksChanged,
    /// A frame the encoded transform gave back: (sequence number, data, RTP timestamp).
    Transformed(u64, Vec<u8>, u32),
    Stop,
}

pub struct RecvShared {
    pub kind: &'static str,
    pub sinks: Mutex<Vec<Arc<dyn MediaSink>>>,
    pub enabled: AtomicBool,
    pub stats: Mutex<InboundRtpStats>,
    /// Audio: decode as stereo when the offer says so (fmtp stereo=1).
    stereo: bool,
    /// `SoraMediaTrack.set_frame_transformer`: frames go through it before decoding.
    transformer: Mutex<Option<Arc<Transformer>>>,
    /// mid, payload type, MIME type, fmtp of the track's codec (stats, transforms).
    pub info: super::rtp::StreamInfo,
    /// Decoder-side counters and the remote sender's last SR.
    pub decode: Mutex<super::rtp::DecodeStats>,
    /// The engine video is decoded with (the codec preference's choice).
    decoder: DecoderEngine,
    /// `decoderImplementation` in stats.
    pub decoder_implementation: &'static str,
    /// Audio: the `ssrc-audio-level` extension id, when negotiated, and what it measured
    /// (stats report the level from it: it is there whether or not anything decodes).
    level_ext: Option<u8>,
    pub levels: Mutex<Option<super::rtp::audio_level::LevelMeter>>,
}

/// The receive side's return path for transformed frames: into the receive loop.
struct RecvReturn(UnboundedSender<Input>);
impl TransformTarget for RecvReturn {
    fn enqueue(&self, seq: u64, data: Vec<u8>, rtp_timestamp: u32) {
        let _ = self.0.send(Input::Transformed(seq, data, rtp_timestamp));
    }
}

/// Video packets wake the pipeline at once (a frame is decoded as soon as it is complete);
/// audio packets are handled in batches (`exec::Inbox`: one wake-up for many receivers).
enum PacketIn {
    Now(UnboundedSender<Input>),
    Batched(Arc<Inbox>),
}
impl PacketHandler for PacketIn {
    fn on_packet(&self, _track: i32, packet: &[u8]) {
        match self {
            PacketIn::Now(tx) => {
                let _ = tx.send(Input::Packet(packet.to_vec()));
            }
            PacketIn::Batched(inbox) => inbox.push(packet),
        }
    }
}

pub struct Receiver {
    pub track: i32,
    pub shared: Arc<RecvShared>,
    tx: UnboundedSender<Input>,
    end: Mutex<Option<TaskEnd>>,
    transform_return: Arc<RecvReturn>,
}

impl Receiver {
    pub fn start(track: i32, codec: RtpCodec, stereo: bool, info: super::rtp::StreamInfo, decoder: DecoderEngine,
                 level_ext: Option<u8>) -> Receiver {
        let decoder_implementation = video_codec_type(codec).map_or("", |c| decoder.implementation_name(c));
        let shared = Arc::new(RecvShared {
            kind: if codec.is_video() { "video" } else { "audio" },
            sinks: Mutex::new(Vec::new()),
            enabled: AtomicBool::new(true),
            stats: Mutex::new(InboundRtpStats::default()),
            stereo,
            transformer: Mutex::new(None),
            info,
            decode: Mutex::new(Default::default()),
            decoder,
            decoder_implementation,
            level_ext: level_ext.filter(|_| !codec.is_video()),
            levels: Mutex::new(None),
        });
        let (tx, rx) = unbounded_channel();
        let inbox = (!codec.is_video()).then(Inbox::new);
        let packet_in = match &inbox {
            Some(inbox) => PacketIn::Batched(inbox.clone()),
            None => PacketIn::Now(tx.clone()),
        };
        rtc::set_packet_handler(track, Arc::new(packet_in));
        let end = super::exec::spawn(recv_loop(track, codec, shared.clone(), rx, inbox));
        let transform_return = Arc::new(RecvReturn(tx.clone()));
        Receiver { track, shared, tx, end: Mutex::new(Some(end)), transform_return }
    }

    /// Puts `transformer` between the jitter buffer and the decoder (None removes it).
    pub fn set_transformer(&self, transformer: Option<Arc<Transformer>>) -> crate::error::Result<()> {
        if let Some(t) = &transformer {
            if t.video != (self.shared.kind == "video") {
                return Err(crate::error::Error::invalid(format!(
                    "a {} transformer cannot transform a {} track",
                    if t.video { "video" } else { "audio" },
                    self.shared.kind
                )));
            }
            let weak: std::sync::Weak<dyn TransformTarget> =
                Arc::downgrade(&(self.transform_return.clone() as Arc<dyn TransformTarget>));
            t.bind(weak)?;
        }
        *self.shared.transformer.lock() = transformer;
        Ok(())
    }

    pub fn add_sink(&self, sink: Arc<dyn MediaSink>) {
        self.shared.sinks.lock().push(sink);
        let _ = self.tx.send(Input::SinksChanged);
    }

    /// Delivery on or off; turning it on asks for a keyframe at once (like a new sink).
    pub fn set_enabled(&self, on: bool) {
        if !self.shared.enabled.swap(on, Ordering::Relaxed) && on {
            let _ = self.tx.send(Input::SinksChanged);
        }
    }

    pub fn remove_sink(&self, id: u64) {
        self.shared.sinks.lock().retain(|s| s.id() != id);
    }

    /// Stops the pipeline (idempotent) and waits until it has. Sinks stay attached but
    /// receive nothing more.
    pub fn stop(&self) {
        rtc::clear_packet_handler(self.track);
        let _ = self.tx.send(Input::Stop);
        if let Some(end) = self.end.lock().take() {
            end.finish(format_args!("receive pipeline of track {}", self.track));
        }
    }
}

enum Decoder {
    Video(VideoDecoder),
    Audio(OpusDecoder),
}

thread_local! {
    /// Decoded PCM on its way to the sinks: one buffer per media worker thread instead of
    /// one per received audio track (23 KB each, which 1000 receivers notice).
    static PCM: std::cell::RefCell<Vec<i16>> = const { std::cell::RefCell::new(Vec::new()) };
}
const MAX_DECODED_SAMPLES: usize = super::codec::opus::MAX_FRAME_SAMPLES * 2;

/// What a frame handed to the transformer needs to be decoded when it comes back.
struct FrameMeta {
    lost_before: u32,
    capture_ms: Option<i64>,
    keyframe: bool,
}

/// Audio decoder counters: samples (per channel), concealment, level and energy (W3C).
/// `samples` decoded at `rate`; counted as 48 kHz samples whatever the rate the sinks made
/// us decode at (what libwebrtc reports for Opus, and stats that do not move with sinks).
fn account_audio(shared: &RecvShared, pcm: &[i16], samples: usize, rate: u32, concealed: bool) {
    let level = super::rtp::stats::audio_level(pcm);
    let secs = samples as f64 / f64::from(rate);
    let samples = (samples as u64 * 48_000 / u64::from(rate.max(1))) as usize;
    let mut ds = shared.decode.lock();
    ds.total_samples_received += samples as u64;
    if concealed {
        ds.concealed_samples += samples as u64;
        ds.concealment_events += 1;
    }
    ds.audio_level = level;
    ds.total_audio_energy += level * level * secs;
    ds.total_samples_duration += secs;
}

struct Decoding {
    codec: RtpCodec,
    stereo: bool,
    decoder: Option<Decoder>,
    /// The decoder could not be made (e.g. the OpenH264 library went away): said once.
    decoder_failed: bool,
    want_keyframe: bool,
    /// Start of the current one-second window and the frames decoded in it (framesPerSecond).
    fps_window: (Instant, u32),
}

impl Decoding {
    /// Decodes one frame for `sinks` (audio: conceals `lost_before` packets first).
    fn frame(&mut self, data: &[u8], meta: &FrameMeta, sinks: &[Arc<dyn MediaSink>], shared: &RecvShared) {
        let started = Instant::now();
        let opus_rate = opus_rate_for(sinks);
        if matches!(&self.decoder, Some(Decoder::Audio(d)) if d.rate() != opus_rate) {
            self.decoder = None; // the sinks changed: decode at the rate they need now
        }
        if self.decoder.is_none() {
            match new_decoder(self.codec, self.stereo, opus_rate, &shared.decoder) {
                Ok(d) => self.decoder = Some(d),
                Err(e) => {
                    if !std::mem::replace(&mut self.decoder_failed, true) {
                        log::error!("cannot decode the received {:?} track: {e}", self.codec);
                    }
                    return;
                }
            }
        }
        let Some(decoder) = self.decoder.as_mut() else { return };
        match decoder {
            Decoder::Video(d) => match d.decode(data) {
                Ok(Some(img)) => {
                    let now = Instant::now();
                    self.fps_window.1 += 1;
                    let window = now - self.fps_window.0;
                    {
                        let mut ds = shared.decode.lock();
                        if window >= Duration::from_secs(1) {
                            ds.frames_per_second = Some(f64::from(self.fps_window.1) / window.as_secs_f64());
                            self.fps_window = (now, 0);
                        }
                        ds.frames_decoded += 1;
                        ds.key_frames_decoded += meta.keyframe as u64;
                        ds.frame_width = img.width;
                        ds.frame_height = img.height;
                        ds.total_decode_time += started.elapsed().as_secs_f64();
                    }
                    for s in sinks {
                        s.on_video(&img);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    log::debug!("video decode failed ({e}); asking for a keyframe");
                    self.want_keyframe = true;
                }
            },
            Decoder::Audio(d) => {
                // Taken out while in use (a nested use would find it empty and grow its own).
                let mut buf = PCM.take();
                buf.resize(MAX_DECODED_SAMPLES, 0);
                let ch = d.channels() as usize;
                for _ in 0..meta.lost_before.min(5) {
                    if let Ok(n) = d.decode(None, &mut buf) {
                        account_audio(shared, &buf[..n * ch], n, d.rate(), true);
                        deliver_audio(sinks, &buf[..n * ch], d.rate(), d.channels(), None);
                    }
                }
                if let Ok(n) = d.decode(Some(data), &mut buf) {
                    account_audio(shared, &buf[..n * ch], n, d.rate(), false);
                    deliver_audio(sinks, &buf[..n * ch], d.rate(), d.channels(), meta.capture_ms);
                }
                PCM.set(buf);
            }
        }
    }
}

/// Counts one packet's `ssrc-audio-level` into the track's LevelMeter.
fn meter_level(shared: &RecvShared, packet: &[u8], id: u8) {
    let Some((level, _voice)) = super::rtp::hdrext::extension(packet, id).and_then(super::rtp::audio_level::parse) else {
        return;
    };
    let Some(ts) = packet.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
        return;
    };
    shared.levels.lock().get_or_insert_with(Default::default).on_packet(level, ts, shared.info.clock_rate);
}

async fn recv_loop(track: i32, codec: RtpCodec, shared: Arc<RecvShared>, mut rx: UnboundedReceiver<Input>,
                   inbox: Option<Arc<Inbox>>) {
    let mut rtp = RtpReceiver::new(codec, codec.default_clock_rate());
    let our_ssrc: u32 = rand::random();
    let mut dec = Decoding {
        codec,
        stereo: shared.stereo,
        decoder: None,
        decoder_failed: false,
        want_keyframe: false,
        fps_window: (Instant::now(), 0),
    };
    let mut pending: Pending<FrameMeta> = Pending::default();
    let mut next_rr = Instant::now() + RR_INTERVAL;
    let mut last_pli: Option<Instant> = None;
    let mut timer = Timer::new();
    loop {
        let now = Instant::now();
        let mut wake = next_rr;
        if let Some(w) = rtp.next_wakeup() {
            wake = wake.min(w);
        }
        let mut transformed = None;
        let mut packets = Vec::new();
        match next_input(&mut rx, inbox.as_deref(), &mut timer, wake.max(now + Duration::from_millis(1))).await {
            Wake::Closed | Wake::Input(Input::Stop) => break,
            Wake::Input(Input::SinksChanged) => dec.want_keyframe = codec.is_video(),
            Wake::Input(Input::Packet(p)) => packets.push((Instant::now(), p)),
            Wake::Batch => packets = inbox.as_ref().map(|i| i.take()).unwrap_or_default(),
            Wake::Input(Input::Transformed(seq, data, _ts)) => transformed = Some((seq, data)),
            Wake::Deadline => {}
        }
        for (arrival, p) in packets {
            if is_rtcp(&p) {
                for ev in parse_compound(&p) {
                    if let RtcpEvent::Sr { ntp, rtp_ts, packet_count, octet_count, .. } = ev {
                        rtp.on_sender_report(ntp, rtp_ts, arrival);
                        let mut ds = shared.decode.lock();
                        let r = ds.remote.get_or_insert_with(Default::default);
                        r.packets_sent = u64::from(packet_count);
                        r.bytes_sent = u64::from(octet_count);
                        r.remote_timestamp = ntp_to_epoch_ms(ntp) as f64;
                        r.reports_sent += 1;
                    }
                }
            } else {
                if let Some(id) = shared.level_ext {
                    meter_level(&shared, &p, id);
                }
                rtp.push(&p, arrival);
            }
        }
        let now = Instant::now();
        let frames = rtp.pop_frames(now);
        let sinks: Vec<Arc<dyn MediaSink>> = if shared.enabled.load(Ordering::Relaxed) {
            shared.sinks.lock().clone()
        } else {
            Vec::new()
        };
        let transformer = shared.transformer.lock().clone().filter(|t| t.active());
        // Frames given up: counted on the transformer (while it is in the path), logged, and
        // video recovers from a keyframe.
        let lost = |n: usize, what: &str, dec: &mut Decoding| {
            match &transformer {
                Some(t) => t.drop_frames(n, what),
                None => log::warn!("encoded transform: dropping {n} {what}"),
            }
            dec.want_keyframe |= codec.is_video();
        };
        if let Some((seq, data)) = transformed {
            match pending.take(seq) {
                None => lost(1, "received frame that is not pending (enqueued twice, after a later frame, or too late)", &mut dec),
                Some(taken) => {
                    if taken.skipped > 0 {
                        lost(taken.skipped, "received frames the transformer never enqueued", &mut dec);
                    }
                    if let Some(t) = &transformer {
                        t.enqueued.fetch_add(1, Ordering::Relaxed);
                    }
                    if !sinks.is_empty() {
                        dec.frame(&data, &taken.meta, &sinks, &shared);
                    }
                }
            }
        }
        if sinks.is_empty() && transformer.is_none() {
            dec.decoder = None; // nothing to decode for; a new sink starts from a keyframe
        }
        for f in frames {
            let meta = FrameMeta {
                lost_before: f.lost_before,
                capture_ms: rtp.ntp_for_rtp(f.rtp_timestamp).map(ntp_to_epoch_ms),
                keyframe: f.keyframe,
            };
            if let Some(t) = &transformer {
                let (seq, expired) = pending.push(meta, now);
                if expired > 0 {
                    lost(expired, "received frames the transformer kept too long", &mut dec);
                }
                let mut m = frame_metadata(RECEIVER, &shared.info, rtp.ssrc().unwrap_or(0), f.rtp_timestamp);
                if codec.is_video() {
                    m["is_key_frame"] = f.keyframe.into();
                    m["frame_id"] = f.picture_id.map_or(serde_json::Value::Null, |p| p.into());
                    m["frame_dependencies"] = serde_json::json!([]);
                    m["width"] = 0.into();
                    m["height"] = 0.into();
                    m["spatial_index"] = 0.into();
                    m["temporal_index"] = 0.into();
                } else {
                    m["type"] = 1.into();
                    m["sequence_number"] = f.seq_range.0.into();
                    m["receive_time"] = (crate::media::source::now_epoch() * 1e6).into();
                }
                t.submit(seq, f.data, &m);
            } else if !sinks.is_empty() {
                dec.frame(&f.data, &meta, &sinks, &shared);
            }
        }
        // Keyframes are asked for whoever consumes the frames: sinks, or an encoded transform
        // (which may be all there is, e.g. H.265 with no decoder here).
        if codec.is_video() && (dec.want_keyframe || rtp.keyframe_needed()) && (!sinks.is_empty() || transformer.is_some()) {
            if let Some(media_ssrc) = rtp.ssrc() {
                if last_pli.is_none_or(|t| now - t >= PLI_MIN_INTERVAL) {
                    let _ = rtc::track_send(track, &build_pli(our_ssrc, media_ssrc));
                    shared.stats.lock().pli_count += 1;
                    last_pli = Some(now);
                    dec.want_keyframe = false;
                }
            }
        }
        if let Some(nack) = rtp.nack_packet(now, our_ssrc) {
            let _ = rtc::track_send(track, &nack);
        }
        if now >= next_rr {
            next_rr = now + RR_INTERVAL;
            if let Some(block) = rtp.report_block(now) {
                let _ = rtc::track_send(track, &build_rr(our_ssrc, &[block]));
            }
        }
        let st = rtp.stats();
        let mut published = shared.stats.lock();
        let pli_count = published.pli_count;
        *published = st;
        published.pli_count = pli_count;
    }
}

/// The video codec of a payload format (None: audio).
fn video_codec_type(codec: RtpCodec) -> Option<CodecType> {
    match codec {
        RtpCodec::Vp8 => Some(CodecType::Vp8),
        RtpCodec::Vp9 => Some(CodecType::Vp9),
        RtpCodec::H264 => Some(CodecType::H264),
        RtpCodec::H265 => Some(CodecType::H265),
        RtpCodec::Av1 => Some(CodecType::Av1),
        RtpCodec::Opus => None,
    }
}

/// The rate to decode Opus at for `sinks`: the lowest libopus offers that is at least the
/// highest rate a sink converts to (48 kHz when one takes the audio as received). Decoding
/// straight to 16 kHz costs less than decoding at 48 and resampling (a recognizer's case).
fn opus_rate_for(sinks: &[Arc<dyn MediaSink>]) -> u32 {
    let need = sinks.iter().map(|s| s.audio_rate().unwrap_or(48_000)).max().unwrap_or(48_000);
    [8_000, 12_000, 16_000, 24_000, 48_000].into_iter().find(|&r| r >= need).unwrap_or(48_000)
}

fn new_decoder(codec: RtpCodec, stereo: bool, opus_rate: u32, engine: &DecoderEngine) -> crate::error::Result<Decoder> {
    match video_codec_type(codec) {
        Some(c) => Ok(Decoder::Video(VideoDecoder::with_engine(c, engine)?)),
        None => {
            let ch = if stereo { 2 } else { 1 };
            Ok(Decoder::Audio(OpusDecoder::with_rate(ch, opus_rate)?))
        }
    }
}

fn deliver_audio(sinks: &[Arc<dyn MediaSink>], pcm: &[i16], rate: u32, channels: u32, capture_ms: Option<i64>) {
    for s in sinks {
        s.on_audio(pcm, rate, channels, capture_ms);
    }
}

fn ntp_to_epoch_ms(ntp: u64) -> i64 {
    let t = super::rtp::timing::ntp_to_system_time(ntp);
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
