//! Send pipelines: a source's frames → encoder → RTP packetizer → pacer → the track, with
//! RTCP handled on the way back (PLI/FIR → keyframe, NACK → retransmission from history,
//! RR → stats) and sender reports every second for the receiver's A/V sync.
//!
//! The send loop (pacer, RTCP, retransmissions) and audio encoding are tasks on the shared
//! media runtime (`exec`); video encoding, which takes milliseconds per frame, keeps a
//! thread per video sender so that it never holds up the tasks of other tracks.
use super::codec::{EncoderEngine, OpusEncoder, OpusParams, VideoCodec, VideoEncoder, VideoEncoderConfig};
use super::rtp::packetize::rtp_sequence_number;
use super::rtp::rtcp::{build_sdes_cname, build_sr};
use super::rtp::{parse_compound, NtpClock, OutboundRtpStats, PacketHistory, Pacer, RtcpEvent, RtpClock, RtpCodec, RtpPacketizer};
use super::rtp::packetize::FrameInfo;
use super::encoded::EncodedFeed;
use super::source::{AudioFeed, FrameSlot, SEND_RATE};
use super::transform::{frame_metadata, Pending, TransformTarget, Transformer, SENDER};
use super::exec::{self, next_input, TaskEnd, Wake};
use super::cc::CongestionController;
use crate::rtc::{self, PacketHandler};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const MTU: usize = 1200;
const SR_INTERVAL: Duration = Duration::from_secs(1);

pub(super) enum Input {
    Packets(Vec<Vec<u8>>, Instant),
    Rtcp(Vec<u8>),
    Stop,
}

/// What the pipeline threads and the owner share.
pub struct SendShared {
    pub ssrc: u32,
    pub kind: &'static str,
    pub info: super::rtp::StreamInfo,
    pub stats: Mutex<OutboundRtpStats>,
    pub(super) keyframe_requested: AtomicBool,
    pub(super) stop: AtomicBool,
    /// An encoded source's feed: keyframe requests go on to the application.
    pub(super) encoded: Option<Arc<EncodedFeed>>,
    /// `encoderImplementation` of a video sender that encodes here (None: frames come
    /// encoded, or audio).
    pub encoder_implementation: Option<String>,
    /// The simulcast layer this stream is (None: the only stream of its track).
    pub rid: Option<String>,
    /// False for a simulcast layer the offer switched off.
    pub active: bool,
    /// Temporal layers its encoder makes (stats' `scalabilityMode` L1T<n>).
    pub temporal_layers: u8,
}

impl SendShared {
    /// The shared state of a video stream (`encoded`: an encoded source's feed; the
    /// implementation None then). A keyframe is asked for at once when something encodes.
    pub(super) fn video(ssrc: u32, info: &super::rtp::StreamInfo, implementation: Option<String>, rid: Option<String>, active: bool, encoded: Option<Arc<EncodedFeed>>) -> Arc<Self> {
        Self::video_layer(ssrc, info, implementation, rid, active, encoded, 1)
    }

    /// [`SendShared::video`] for a stream whose encoder makes `temporal_layers` layers.
    pub(super) fn video_layer(ssrc: u32, info: &super::rtp::StreamInfo, implementation: Option<String>, rid: Option<String>, active: bool, encoded: Option<Arc<EncodedFeed>>, temporal_layers: u8) -> Arc<Self> {
        Arc::new(SendShared {
            ssrc,
            kind: "video",
            info: info.clone(),
            stats: Mutex::new(OutboundRtpStats::new(ssrc, 90_000)),
            keyframe_requested: AtomicBool::new(encoded.is_none()),
            stop: AtomicBool::new(false),
            encoded,
            encoder_implementation: implementation,
            rid,
            active,
            temporal_layers,
        })
    }
}

/// Routes RTCP arriving on the sending track into its send loops (one per simulcast
/// layer: each takes what names its SSRC).
struct RtcpIn(Vec<UnboundedSender<Input>>);
impl PacketHandler for RtcpIn {
    fn on_packet(&self, _track: i32, packet: &[u8]) {
        if super::rtp::is_rtcp(packet) {
            for tx in &self.0 {
                let _ = tx.send(Input::Rtcp(packet.to_vec()));
            }
        }
    }
}

pub struct Sender {
    pub track: i32,
    pub shared: Arc<SendShared>,
    tx: UnboundedSender<Input>,
    /// The video encoder's thread.
    threads: Vec<JoinHandle<()>>,
    /// The send loop and the audio encoder.
    tasks: Vec<TaskEnd>,
    slot: Option<Arc<FrameSlot>>,
    feed: Option<Arc<AudioFeed>>,
    encoded: Option<Arc<EncodedFeed>>,
    /// Where transformed frames come back in (the transformer holds it weakly).
    _transform_return: Option<Arc<SendReturn>>,
    /// The other layers of a simulcast sender (`shared`/`tx` are its first).
    layers: Vec<(Arc<SendShared>, UnboundedSender<Input>)>,
}

/// What a frame handed to the transformer needs to be packetized when it comes back.
struct FrameMeta {
    keyframe: bool,
    size: (u16, u16),
    taken: Instant,
}

/// The send side's return path for transformed frames: packetized (under the same lock the
/// encoder thread uses) and queued for the send loop, on the thread that enqueues.
struct SendReturn {
    transformer: Arc<Transformer>,
    packetizer: Arc<Mutex<RtpPacketizer>>,
    pending: Mutex<Pending<FrameMeta>>,
    tx: UnboundedSender<Input>,
    shared: Arc<SendShared>,
}

impl SendReturn {
    fn new(transformer: Arc<Transformer>, packetizer: Arc<Mutex<RtpPacketizer>>, tx: UnboundedSender<Input>, shared: Arc<SendShared>) -> Arc<SendReturn> {
        let r = Arc::new(SendReturn { transformer, packetizer, pending: Mutex::new(Pending::default()), tx, shared });
        let weak: std::sync::Weak<dyn TransformTarget> = Arc::downgrade(&(r.clone() as Arc<dyn TransformTarget>));
        if let Err(e) = r.transformer.bind(weak) {
            log::warn!("{}", e.message);
        }
        r
    }

    /// Hands an encoded frame to the application instead of sending it.
    fn hand_out(&self, data: Vec<u8>, rtp_timestamp: u32, meta: FrameMeta) {
        let (keyframe, size) = (meta.keyframe, meta.size);
        let (seq, expired) = self.pending.lock().push(meta, Instant::now());
        if expired > 0 {
            self.lost(expired, "frames the transformer kept too long");
        }
        let mut m = frame_metadata(SENDER, &self.shared.info, self.shared.ssrc, rtp_timestamp);
        if self.shared.kind == "video" {
            m["is_key_frame"] = keyframe.into();
            m["frame_id"] = seq.into();
            m["frame_dependencies"] = if keyframe { serde_json::json!([]) } else { serde_json::json!([seq - 1]) };
            m["width"] = size.0.into();
            m["height"] = size.1.into();
            m["spatial_index"] = 0.into();
            m["temporal_index"] = 0.into();
        } else {
            m["type"] = 1.into(); // SPEECH
        }
        self.transformer.submit(seq, data, &m);
    }

    fn lost(&self, n: usize, what: &str) {
        self.transformer.drop_frames(n, what);
        if self.shared.kind == "video" {
            self.shared.keyframe_requested.store(true, Ordering::Release);
        }
    }
}

impl TransformTarget for SendReturn {
    fn enqueue(&self, seq: u64, data: Vec<u8>, rtp_timestamp: u32) {
        let Some(taken) = self.pending.lock().take(seq) else {
            self.lost(1, "a frame that is not pending (enqueued twice, after a later frame, or too late)");
            return;
        };
        if taken.skipped > 0 {
            self.lost(taken.skipped, "frames the transformer never enqueued");
        }
        let FrameMeta { keyframe, size, taken: at } = taken.meta;
        let info = if self.shared.kind == "video" {
            FrameInfo { keyframe: Some(keyframe), resolution: Some(size), temporal: None }
        } else {
            FrameInfo::default()
        };
        let packets = self.packetizer.lock().packetize_frame(&data, rtp_timestamp, info);
        self.transformer.enqueued.fetch_add(1, Ordering::Relaxed);
        if packets.is_empty() && !data.is_empty() {
            // The transformer made it unsendable (malformed): later frames would reference a
            // frame the receiver never gets, which some decoders (dav1d) take silently. Start
            // again from a keyframe.
            if self.shared.kind == "video" {
                self.shared.keyframe_requested.store(true, Ordering::Release);
            }
            return;
        }
        self.shared.stats.lock().frames_sent += 1;
        let _ = self.tx.send(Input::Packets(packets, at));
    }
}

impl Sender {
    /// Every stream this sender sends: one, or one per simulcast layer.
    pub fn streams(&self) -> Vec<Arc<SendShared>> {
        std::iter::once(self.shared.clone()).chain(self.layers.iter().map(|(s, _)| s.clone())).collect()
    }

    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.tx.send(Input::Stop);
        for (shared, tx) in &self.layers {
            shared.stop.store(true, Ordering::Release);
            let _ = tx.send(Input::Stop);
        }
        if let Some(s) = &self.slot {
            s.close();
        }
        if let Some(f) = &self.feed {
            f.close();
        }
        if let Some(f) = &self.encoded {
            f.close();
        }
        rtc::clear_packet_handler(self.track);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for t in self.tasks.drain(..) {
            t.finish(format_args!("{} send pipeline of track {}", self.shared.kind, self.track));
        }
    }
}

type Cc = Option<Arc<CongestionController>>;

fn start_send_loop(track: i32, shared: Arc<SendShared>, clock: RtpClock, cname: String, pacer: Option<Pacer>, cc: Cc) -> (UnboundedSender<Input>, TaskEnd) {
    let (tx, end) = spawn_send_loop(track, shared, clock, cname, pacer, cc);
    rtc::set_packet_handler(track, Arc::new(RtcpIn(vec![tx.clone()])));
    (tx, end)
}

/// A send loop for one stream of `track`; the caller routes the track's RTCP to it.
fn spawn_send_loop(track: i32, shared: Arc<SendShared>, clock: RtpClock, cname: String, pacer: Option<Pacer>, cc: Cc) -> (UnboundedSender<Input>, TaskEnd) {
    let (tx, rx) = unbounded_channel::<Input>();
    let end = exec::spawn(send_loop(track, shared, rx, clock, cname, pacer, cc));
    (tx, end)
}

async fn send_loop(track: i32, shared: Arc<SendShared>, mut rx: UnboundedReceiver<Input>, clock: RtpClock, cname: String, mut pacer: Option<Pacer>, cc: Cc) {
    // The pacer's rate as configured; with congestion control it follows the estimate below it.
    let configured_rate = pacer.as_ref().map(|p| p.rate());
    let ntp = NtpClock::new();
    let mut history = PacketHistory::new(1024, Duration::from_secs(1));
    let mut next_sr = Instant::now() + Duration::from_millis(200);
    let mut sent_any = false;
    let send = |mut p: Vec<u8>, retransmission: bool, delay: Duration, shared: &SendShared| {
        if let Some(cc) = &cc {
            cc.stamp(&mut p, Instant::now()); // a transport-wide number at the moment it leaves
        }
        if rtc::track_send(track, &p).is_ok() {
            let payload = p.len() - super::rtp::hdrext::header_len(&p);
            shared.stats.lock().on_packet_sent(p.len(), payload, retransmission, delay);
        }
    };
    let mut timer = exec::Timer::new();
    loop {
        let now = Instant::now();
        let mut wake = next_sr;
        if let Some(w) = pacer.as_ref().and_then(|p| p.next_wakeup()) {
            wake = wake.min(w);
        }
        match next_input(&mut rx, None, &mut timer, wake).await {
            Wake::Closed | Wake::Input(Input::Stop) => break,
            Wake::Input(Input::Packets(packets, queued_at)) => {
                for p in &packets {
                    if let Some(seq) = rtp_sequence_number(p) {
                        history.store(seq, p.clone(), now);
                    }
                }
                sent_any = true;
                match pacer.as_mut() {
                    Some(pc) => pc.enqueue(packets, queued_at),
                    None => packets.into_iter().for_each(|p| send(p, false, now - queued_at, &shared)),
                }
            }
            Wake::Input(Input::Rtcp(packet)) => {
                let events = parse_compound(&packet);
                if let Some(cc) = &cc {
                    cc.on_rtcp(&packet, &events, Instant::now());
                    if let (Some(pc), Some(rate)) = (pacer.as_mut(), configured_rate) {
                        pc.set_rate(rate.min(cc.video_budget_bps().max(1)));
                    }
                }
                for ev in events {
                    let rtt = match &ev {
                        RtcpEvent::Rr { reports, .. } | RtcpEvent::Sr { reports, .. } => reports
                            .iter()
                            .find(|b| b.ssrc == shared.ssrc)
                            .and_then(|b| b.rtt(ntp.ntp(Instant::now()))),
                        _ => None,
                    };
                    shared.stats.lock().on_rtcp(&ev, rtt);
                    match ev {
                        RtcpEvent::Pli { media_ssrc, .. } | RtcpEvent::Fir { media_ssrc, .. } if media_ssrc == shared.ssrc => {
                            shared.keyframe_requested.store(true, Ordering::Release);
                            if let Some(feed) = &shared.encoded {
                                feed.request_keyframe("a receiver asked for one (PLI/FIR)");
                            }
                        }
                        RtcpEvent::Nack { media_ssrc, seqs, .. } if media_ssrc == shared.ssrc => {
                            let resend: Vec<Vec<u8>> = seqs
                                .iter()
                                .filter_map(|&s| history.get_for_retransmit(s, Instant::now(), Duration::from_millis(10)))
                                .collect();
                            // Retransmissions skip the pacer queue: they are few, and late.
                            resend.into_iter().for_each(|p| send(p, true, Duration::ZERO, &shared));
                        }
                        _ => {}
                    }
                }
            }
            Wake::Deadline | Wake::Batch => {}
        }
        let now = Instant::now();
        if let Some(pc) = pacer.as_mut() {
            for (p, queued_at) in pc.poll(now) {
                send(p, false, now.saturating_duration_since(queued_at), &shared);
            }
        }
        if now >= next_sr {
            next_sr = now + SR_INTERVAL;
            if sent_any {
                let (ntp_ts, rtp_ts) = clock.sr_timestamps(&ntp, now);
                let (packets, octets) = {
                    let st = shared.stats.lock();
                    (st.packets_sent as u32, st.bytes_sent as u32)
                };
                let mut sr = build_sr(shared.ssrc, ntp_ts, rtp_ts, packets, octets, &[]);
                sr.extend(build_sdes_cname(shared.ssrc, &cname));
                let _ = rtc::track_send(track, &sr);
            }
        }
    }
}

pub struct VideoSendConfig {
    pub codec: VideoCodec,
    /// Which engine encodes (libvpx, or OpenH264 with the negotiated H.264 parameters).
    pub engine: EncoderEngine,
    pub payload_type: u8,
    pub ssrc: u32,
    pub bitrate_kbps: u32,
    pub cname: String,
    pub vp9_profile: u8,
    /// mid, payload type, fmtp... (stats)
    pub info: super::rtp::StreamInfo,
    /// What CPU adaptation gives up (`degradation_preference`).
    pub degradation: super::adapt::DegradationPreference,
    /// `create_connection(video_frame_transformer=...)`.
    pub transformer: Option<Arc<Transformer>>,
    /// Pacing rate as a multiple of the bitrate (None: 2.5, as libwebrtc).
    pub pacing_factor: Option<f64>,
    /// The pacer's queue time limit (None: 2 s; zero: none).
    pub pacing_max_delay: Option<Duration>,
    /// The connection's congestion control, when transport-cc was negotiated.
    pub cc: Cc,
}

/// Packets of a connection with congestion control carry a transport-wide sequence number,
/// written as each goes out (`CongestionController::stamp`).
fn reserve_transport_cc(packetizer: &mut RtpPacketizer, cc: &Cc) {
    if let Some(cc) = cc {
        packetizer.set_extension(cc.ext_id, &[0, 0]);
    }
}

/// A video sender's pacer: 2.5x the target bitrate unless told otherwise (libwebrtc's
/// factor, so a keyframe leaves within a frame interval) and the `WebRTC-Video-Pacing` limits.
fn video_pacer(bitrate_kbps: u32, factor: Option<f64>, max_delay: Option<Duration>) -> Pacer {
    let mut pacer = Pacer::new(bitrate_kbps as u64 * 1000);
    if let Some(f) = factor {
        pacer.set_pacing_factor(f);
    }
    if let Some(d) = max_delay {
        pacer.set_max_queue_time(d);
    }
    pacer
}

/// Starts sending `slot`'s frames on `track`.
pub fn start_video(track: i32, slot: Arc<FrameSlot>, cfg: VideoSendConfig) -> Sender {
    let shared = SendShared::video(cfg.ssrc, &cfg.info, Some(cfg.engine.implementation_name(cfg.codec).to_string()), None, true, None);
    let clock = RtpClock::new(90_000);
    let pacer = video_pacer(cfg.bitrate_kbps, cfg.pacing_factor, cfg.pacing_max_delay);
    let (tx, send_task) = start_send_loop(track, shared.clone(), clock, cfg.cname.clone(), Some(pacer), cfg.cc.clone());
    let mut packetizer = RtpPacketizer::new(rtp_codec(cfg.codec), cfg.ssrc, cfg.payload_type, 90_000, MTU);
    reserve_transport_cc(&mut packetizer, &cfg.cc);
    if let EncoderEngine::OpenH264 { params, .. } = &cfg.engine {
        packetizer.set_h264_single_nal_mode(params.single_nal_mode);
    }
    let packetizer = Arc::new(Mutex::new(packetizer));
    let ret = cfg.transformer.clone().map(|t| SendReturn::new(t, packetizer.clone(), tx.clone(), shared.clone()));
    let (enc_tx, enc_shared, enc_slot, enc_ret) = (tx.clone(), shared.clone(), slot.clone(), ret.clone());
    let encode_thread = std::thread::Builder::new()
        .name("sora-encode-video".into())
        .spawn(move || encode_loop(enc_slot, enc_shared, enc_tx, clock, cfg, packetizer, enc_ret))
        .expect("spawn encoder");
    Sender { track, shared, tx, threads: vec![encode_thread], tasks: vec![send_task], slot: Some(slot), feed: None, encoded: None, _transform_return: ret, layers: Vec::new() }
}

/// Starts sending `slot`'s frames on `track` as simulcast `layers` (each with its SSRC),
/// every packet carrying the MID (`mid_ext`, value `cfg.info.mid`) and RID (`rid_ext`)
/// header extensions. Bitrates: at most `media::simulcast::layer_bitrates` of
/// `cfg.bitrate_kbps`, shared out per frame by `media::simulcast::allocate`.
pub fn start_simulcast_video(track: i32, slot: Arc<FrameSlot>, cfg: VideoSendConfig, layers: Vec<super::simulcast::LayerSpec>, mid_ext: u8, rid_ext: u8) -> Sender {
    use super::simulcast::{adapter_name, layer_bitrates, Layer};
    let clock = RtpClock::new(90_000);
    let implementation = adapter_name(cfg.engine.implementation_name(cfg.codec), layers.len());
    let bitrates = layer_bitrates(&layers, cfg.bitrate_kbps);
    let mut encoding = Vec::new();
    let mut tasks = Vec::new();
    let mut streams = Vec::new();
    for (mut spec, kbps) in layers.into_iter().zip(bitrates) {
        // from here on the spec says what the encoder makes, not what the offer asked
        let temporal_layers = cfg.engine.temporal_layers(cfg.codec, spec.temporal_layers);
        if temporal_layers < spec.temporal_layers {
            log::warn!("simulcast: {} makes no temporal layers of {:?}; {} is sent as L1T1 (stats say so)", cfg.engine.implementation_name(cfg.codec), cfg.codec, spec.rid);
        }
        spec.temporal_layers = temporal_layers;
        let shared = SendShared::video_layer(spec.ssrc, &cfg.info, Some(implementation.clone()), Some(spec.rid.clone()), spec.active, None, temporal_layers);
        let pacer = video_pacer(kbps, cfg.pacing_factor, cfg.pacing_max_delay);
        let (tx, task) = spawn_send_loop(track, shared.clone(), clock, cfg.cname.clone(), Some(pacer), cfg.cc.clone());
        let mut packetizer = RtpPacketizer::new(rtp_codec(cfg.codec), spec.ssrc, cfg.payload_type, 90_000, MTU);
        reserve_transport_cc(&mut packetizer, &cfg.cc);
        if let EncoderEngine::OpenH264 { params, .. } = &cfg.engine {
            packetizer.set_h264_single_nal_mode(params.single_nal_mode);
        }
        packetizer.set_extension(mid_ext, cfg.info.mid.as_bytes());
        packetizer.set_extension(rid_ext, spec.rid.as_bytes());
        tasks.push(task);
        streams.push((shared.clone(), tx.clone()));
        encoding.push(Layer::new(spec, kbps, shared, tx, packetizer));
    }
    rtc::set_packet_handler(track, Arc::new(RtcpIn(streams.iter().map(|(_, tx)| tx.clone()).collect())));
    let enc_slot = slot.clone();
    let encode_thread = std::thread::Builder::new()
        .name("sora-encode-video".into())
        .spawn(move || super::simulcast::encode_loop(enc_slot, encoding, clock, cfg))
        .expect("spawn encoder");
    let (shared, tx) = streams.remove(0);
    Sender { track, shared, tx, threads: vec![encode_thread], tasks, slot: Some(slot), feed: None, encoded: None, _transform_return: None, layers: streams }
}

fn rtp_codec(codec: VideoCodec) -> RtpCodec {
    match codec {
        VideoCodec::Vp8 => RtpCodec::Vp8,
        VideoCodec::Vp9 => RtpCodec::Vp9,
        VideoCodec::H264 => RtpCodec::H264,
        VideoCodec::H265 => RtpCodec::H265,
        VideoCodec::Av1 => RtpCodec::Av1,
    }
}

/// RTP timestamps from capture times (epoch µs): anchored on the first frame, so that A/V
/// sync holds, and strictly increasing (two frames never share a timestamp).
pub(super) struct CaptureClock {
    clock: RtpClock,
    start: Instant,
    first: Option<i64>,
    last: Option<u32>,
}

impl CaptureClock {
    pub(super) fn new(clock: RtpClock) -> Self {
        CaptureClock { clock, start: Instant::now(), first: None, last: None }
    }

    pub(super) fn timestamp(&mut self, capture_us: i64) -> u32 {
        let first = *self.first.get_or_insert(capture_us);
        let at = self.start + Duration::from_micros((capture_us - first).max(0) as u64);
        let mut ts = self.clock.rtp_timestamp(at);
        if let Some(prev) = self.last.filter(|p| (ts.wrapping_sub(*p) as i32) <= 0) {
            ts = prev.wrapping_add(1);
        }
        self.last = Some(ts);
        ts
    }
}

/// A run of frames the video encoder failed on: logged when it starts and when it ends, not
/// per frame (a refused size or a lost library can fail every frame for a while).
#[derive(Default)]
pub(super) struct EncoderFailures {
    frames: u64,
}

impl EncoderFailures {
    pub(super) fn failed(&mut self, what: &str, width: u32, height: u32, e: &crate::error::Error) {
        if self.frames == 0 {
            log::error!("{what} failed for a {width}x{height} frame: {e}; frames are dropped until an encoder takes them");
        }
        self.frames += 1;
    }

    pub(super) fn recovered(&mut self) {
        if self.frames > 0 {
            log::warn!("video encoder working again after {} dropped frames", self.frames);
            self.frames = 0;
        }
    }
}

fn encode_loop(
    slot: Arc<FrameSlot>,
    shared: Arc<SendShared>,
    tx: UnboundedSender<Input>,
    clock: RtpClock,
    cfg: VideoSendConfig,
    packetizer: Arc<Mutex<RtpPacketizer>>,
    transform: Option<Arc<SendReturn>>,
) {
    use super::adapt::{bandwidth_restrictions, CpuAdaptation, FrameRateLimiter, Step};
    use super::codec::{I420Frame, Scaler};
    let mut encoder: Option<VideoEncoder> = None;
    let mut failures = EncoderFailures::default();
    let mut black: Option<I420Frame> = None;
    let mut capture_clock = CaptureClock::new(clock);
    // CPU adaptation (media::adapt): every frame's scaling + encoding time feeds the detector,
    // whose signals move the restrictions (resolution step, frame-rate cap) applied here.
    let mut cpu = CpuAdaptation::new(cfg.degradation, slot.dropped.load(Ordering::Relaxed));
    let mut limiter = FrameRateLimiter::default();
    let mut scaler = Scaler::new();
    let mut last_tick: Option<Instant> = None;
    let (mut fps_since, mut fps_frames) = (Instant::now(), 0u32);
    let mut source_frames = 0u32; // captured (offered) in the current second
    let mut target_kbps = cfg.bitrate_kbps;
    while !shared.stop.load(Ordering::Acquire) {
        let Some((frame, capture_us)) = slot.take(Duration::from_millis(100)) else {
            if slot.is_closed() {
                break;
            }
            continue;
        };
        let taken = Instant::now();
        // Offered = this frame plus those the slot replaced while we were busy.
        source_frames += cpu.on_taken(taken, slot.dropped.load(Ordering::Relaxed)) as u32;
        let limited = cpu.restrictions().is_limited();
        // What the bitrate (congestion control or the configured rate) makes the sender
        // give up, by degradation_preference; combined with the CPU adapter's below.
        let by_bitrate = {
            let mut st = shared.stats.lock();
            let source_fps = st.source.frames_per_second.unwrap_or(30.0);
            let by_bitrate = bandwidth_restrictions(cfg.degradation, frame.width, frame.height, target_kbps, source_fps);
            let dt = last_tick.replace(taken).map(|prev| (taken - prev).as_secs_f64());
            st.on_source_frame(frame.width, frame.height, dt, limited, by_bitrate.is_limited());
            by_bitrate
        };
        let restrictions = cpu.restrictions().combine(by_bitrate);
        let max_fps = restrictions.max_fps;
        if !limiter.admit(capture_us, max_fps) {
            continue;
        }
        let ts = capture_clock.timestamp(capture_us);
        let (w, h) = restrictions.target_size(frame.width, frame.height);
        let input: &I420Frame = if !slot.enabled.load(Ordering::Relaxed) {
            let b = black.get_or_insert_with(|| I420Frame::new(w, h).expect("frame"));
            if b.width != w || b.height != h {
                *b = I420Frame::new(w, h).expect("frame");
            }
            b.u.fill(128);
            b.v.fill(128);
            b
        } else if (w, h) != (frame.width, frame.height) {
            match scaler.scale(&frame, w, h) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("video scaling to {w}x{h} failed: {e}");
                    &frame
                }
            }
        } else {
            &frame
        };
        // Congestion control: the encoder's target follows the estimate below the configured
        // bitrate (changes of under 5 % are left alone: each costs the rate control a step).
        if let Some(cc) = &cfg.cc {
            let want = ((cc.video_budget_bps() / 1000) as u32).clamp(30, cfg.bitrate_kbps.max(30));
            if want.abs_diff(target_kbps) * 20 > target_kbps {
                target_kbps = want;
                if let Some(e) = encoder.as_mut() {
                    if let Err(e) = e.set_bitrate(target_kbps) {
                        log::warn!("video encoder: setting {target_kbps} kbps failed: {e}");
                    }
                }
            }
        }
        let enc = match encoder.as_mut() {
            Some(e) => e,
            None => match VideoEncoder::new(&cfg.engine, VideoEncoderConfig {
                codec: cfg.codec,
                width: input.width,
                height: input.height,
                bitrate_kbps: target_kbps,
                framerate: 30,
                vp9_profile: cfg.vp9_profile,
                sender_pixels: 0,
                temporal_layers: 1,
            }) {
                Ok(e) => encoder.insert(e),
                Err(e) => {
                    // Tried again with the next frame: a size this engine refuses, or a
                    // library that went away, must not end the track for good.
                    failures.failed("opening the video encoder", input.width, input.height, &e);
                    continue;
                }
            },
        };
        let force = shared.keyframe_requested.swap(false, Ordering::AcqRel);
        match enc.encode(input, ts, force) {
            Ok(frames) => {
                failures.recovered();
                let now = Instant::now();
                let busy = now - taken;
                cpu.on_processed(taken, now);
                fps_frames += frames.len() as u32;
                let elapsed = busy.as_secs_f64();
                for f in frames {
                    let handed_out = transform.as_ref().filter(|r| r.transformer.active());
                    {
                        let mut st = shared.stats.lock();
                        st.frames_encoded += 1;
                        st.frames_sent += handed_out.is_none() as u64; // else when it comes back
                        st.key_frames_encoded += f.keyframe as u64;
                        st.frame_width = f.width;
                        st.frame_height = f.height;
                        st.total_encode_time += elapsed;
                        st.target_bitrate = target_kbps as f64 * 1000.0;
                    }
                    if let Some(r) = handed_out {
                        let meta = FrameMeta { keyframe: f.keyframe, size: (f.width as u16, f.height as u16), taken };
                        r.hand_out(f.data, ts, meta);
                        continue;
                    }
                    let packets = packetizer.lock().packetize(&f.data, ts);
                    if tx.send(Input::Packets(packets, taken)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                // An encoder that failed is not trusted with the next frame: a new one is
                // opened for it, whose first frame is a keyframe receivers resume from.
                failures.failed("video encoding", input.width, input.height, &e);
                encoder = None;
            }
        }
        let now = Instant::now();
        if now - fps_since >= Duration::from_secs(1) {
            let secs = (now - fps_since).as_secs_f64();
            let mut st = shared.stats.lock();
            st.frames_per_second = Some(fps_frames as f64 / secs);
            st.source.frames_per_second = Some(source_frames as f64 / secs);
            drop(st);
            (fps_since, fps_frames, source_frames) = (now, 0, 0);
        }
        let Some(step) = cpu.poll(now, frame.width, frame.height, max_fps) else { continue };
        let mut st = shared.stats.lock();
        st.quality_limitation_resolution_changes += (step == Step::Resolution) as u64;
        st.cpu_limited = cpu.restrictions().is_limited();
    }
}

/// Sending an encoded source's frames as they are (media::encoded).
pub struct EncodedSendConfig {
    pub codec: RtpCodec,
    pub payload_type: u8,
    pub ssrc: u32,
    /// Paces the frames (their size is the application's business).
    pub bitrate_kbps: u32,
    pub cname: String,
    pub info: super::rtp::StreamInfo,
    /// H.264 packetization-mode 0 (single NAL unit packets only).
    pub h264_single_nal_mode: bool,
    pub transformer: Option<Arc<Transformer>>,
    pub pacing_factor: Option<f64>,
    pub pacing_max_delay: Option<Duration>,
    /// Stamps its packets (the application picks the bitrate, so nothing adapts here).
    pub cc: Cc,
}

/// Starts sending `feed`'s access units on `track`: packetized and paced, no codec.
pub fn start_encoded_video(track: i32, feed: Arc<EncodedFeed>, cfg: EncodedSendConfig) -> Sender {
    let shared = SendShared::video(cfg.ssrc, &cfg.info, None, None, true, Some(feed.clone()));
    let clock = RtpClock::new(90_000);
    let pacer = video_pacer(cfg.bitrate_kbps, cfg.pacing_factor, cfg.pacing_max_delay);
    let (tx, send_task) = start_send_loop(track, shared.clone(), clock, cfg.cname.clone(), Some(pacer), cfg.cc.clone());
    let mut packetizer = RtpPacketizer::new(cfg.codec, cfg.ssrc, cfg.payload_type, 90_000, MTU);
    reserve_transport_cc(&mut packetizer, &cfg.cc);
    packetizer.set_h264_single_nal_mode(cfg.h264_single_nal_mode);
    let packetizer = Arc::new(Mutex::new(packetizer));
    let ret = cfg.transformer.clone().map(|t| SendReturn::new(t, packetizer.clone(), tx.clone(), shared.clone()));
    let task = exec::spawn(encoded_loop(feed.clone(), shared.clone(), tx.clone(), clock, packetizer, ret.clone()));
    Sender { track, shared, tx, threads: Vec::new(), tasks: vec![task, send_task], slot: None, feed: None, encoded: Some(feed), _transform_return: ret, layers: Vec::new() }
}

async fn encoded_loop(
    feed: Arc<EncodedFeed>,
    shared: Arc<SendShared>,
    tx: UnboundedSender<Input>,
    clock: RtpClock,
    packetizer: Arc<Mutex<RtpPacketizer>>,
    transform: Option<Arc<SendReturn>>,
) {
    let mut capture_clock = CaptureClock::new(clock);
    while let Some(frame) = feed.next().await {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let taken = Instant::now();
        let ts = capture_clock.timestamp(frame.capture_us);
        let handed_out = transform.as_ref().filter(|r| r.transformer.active());
        {
            let mut st = shared.stats.lock();
            st.frames_encoded += 1;
            st.key_frames_encoded += frame.keyframe as u64;
            st.frames_sent += handed_out.is_none() as u64;
        }
        if let Some(r) = handed_out {
            r.hand_out(frame.data, ts, FrameMeta { keyframe: frame.keyframe, size: (0, 0), taken });
            continue;
        }
        let info = FrameInfo { keyframe: Some(frame.keyframe), resolution: None, temporal: None };
        let packets = packetizer.lock().packetize_frame(&frame.data, ts, info);
        if tx.send(Input::Packets(packets, taken)).is_err() {
            return;
        }
    }
}

pub struct AudioSendConfig {
    pub payload_type: u8,
    pub ssrc: u32,
    pub bitrate_bps: Option<u32>,
    pub params: OpusParams,
    pub cname: String,
    /// mid, payload type, fmtp... (stats)
    pub info: super::rtp::StreamInfo,
    /// `create_connection(audio_frame_transformer=...)`.
    pub transformer: Option<Arc<Transformer>>,
    /// The least loss (percent) the encoder's in-band FEC plans for, whatever receivers report.
    pub min_packet_loss_percent: u32,
    pub cc: Cc,
    /// The `ssrc-audio-level` extension id, when negotiated: every packet says how loud it
    /// is (what an SFU's speaker detection reads).
    pub audio_level_ext: Option<u8>,
}

/// Starts sending `feed`'s audio on `track`, paced in real time (one packet per ptime).
pub fn start_audio(track: i32, feed: Arc<AudioFeed>, cfg: AudioSendConfig) -> crate::error::Result<Sender> {
    let shared = Arc::new(SendShared {
        ssrc: cfg.ssrc,
        kind: "audio",
        info: cfg.info.clone(),
        stats: Mutex::new(OutboundRtpStats::new(cfg.ssrc, SEND_RATE)),
        keyframe_requested: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        encoded: None,
        encoder_implementation: None,
        rid: None,
        active: true,
        temporal_layers: 1,
    });
    let encoder = OpusEncoder::new(feed.channels, cfg.bitrate_bps, cfg.params.clone())?;
    let clock = RtpClock::new(SEND_RATE);
    let (tx, send_task) = start_send_loop(track, shared.clone(), clock, cfg.cname.clone(), None, cfg.cc.clone());
    let mut packetizer = RtpPacketizer::new(RtpCodec::Opus, cfg.ssrc, cfg.payload_type, SEND_RATE, MTU);
    reserve_transport_cc(&mut packetizer, &cfg.cc);
    let packetizer = Arc::new(Mutex::new(packetizer));
    let ret = cfg.transformer.clone().map(|t| SendReturn::new(t, packetizer.clone(), tx.clone(), shared.clone()));
    let (a_tx, a_shared, a_feed, a_ret) = (tx.clone(), shared.clone(), feed.clone(), ret.clone());
    let audio_task = exec::spawn(audio_loop(a_feed, a_shared, a_tx, encoder, clock, packetizer, a_ret, cfg.min_packet_loss_percent, cfg.audio_level_ext));
    Ok(Sender { track, shared, tx, threads: Vec::new(), tasks: vec![audio_task, send_task], slot: None, feed: Some(feed), encoded: None, _transform_return: ret, layers: Vec::new() })
}

#[allow(clippy::too_many_arguments)]
async fn audio_loop(
    feed: Arc<AudioFeed>,
    shared: Arc<SendShared>,
    tx: UnboundedSender<Input>,
    mut encoder: OpusEncoder,
    clock: RtpClock,
    packetizer: Arc<Mutex<RtpPacketizer>>,
    transform: Option<Arc<SendReturn>>,
    min_loss_percent: u32,
    audio_level_ext: Option<u8>,
) {
    let frame = encoder.frame_samples();
    let mut planned_loss = None;
    let ptime = Duration::from_secs_f64(frame as f64 / SEND_RATE as f64);
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if next > now {
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        } else if now - next > Duration::from_millis(200) {
            next = now; // we were descheduled: do not burst to catch up
        }
        // The RTP timestamp follows the send clock: audio that is late is simply a gap.
        let ts = clock.rtp_timestamp(next);
        next += ptime;
        let Some((mut pcm, _capture)) = feed.take(frame) else { continue };
        if !feed.enabled.load(Ordering::Relaxed) {
            pcm.fill(0);
        }
        let reported_loss = {
            let level = super::rtp::stats::audio_level(&pcm);
            let mut st = shared.stats.lock();
            let src = &mut st.source;
            src.audio_level = level;
            src.total_audio_energy += level * level * ptime.as_secs_f64();
            src.total_samples_duration += ptime.as_secs_f64();
            st.remote.as_ref().map_or(0.0, |r| r.fraction_lost)
        };
        if let Some(id) = audio_level_ext {
            // V stays clear: no voice detector runs on the send path (libwebrtc without
            // its audio processing does the same); the level is what SFUs read.
            let level = super::rtp::audio_level::level_dbov(&pcm);
            packetizer.lock().set_extension(id, &[super::rtp::audio_level::value(level, false)]);
        }
        let loss = planned_loss_percent(reported_loss, min_loss_percent);
        if planned_loss != Some(loss) {
            match encoder.set_packet_loss_perc(loss) {
                Ok(()) => planned_loss = Some(loss),
                Err(e) => log::warn!("opus: cannot plan for {loss} % loss: {e}"),
            }
        }
        match encoder.encode(&pcm) {
            Ok(payload) => {
                if let Some(r) = transform.as_ref().filter(|r| r.transformer.active()) {
                    let meta = FrameMeta { keyframe: true, size: (0, 0), taken: Instant::now() };
                    r.hand_out(payload, ts, meta);
                    continue;
                }
                let packets = packetizer.lock().packetize(&payload, ts);
                shared.stats.lock().frames_sent += 1;
                if tx.send(Input::Packets(packets, Instant::now())).is_err() {
                    return;
                }
            }
            Err(e) => log::warn!("opus encode failed: {e}"),
        }
    }
}

/// The packet loss (percent) the Opus encoder spends its in-band FEC on: the fraction the
/// receiver reported last (RTCP), rounded down to a few levels as libwebrtc does so that a
/// noisy report does not retune the encoder, and never below `min` (the
/// `WebRTC-Audio-OpusMinPacketLossRate` trial).
fn planned_loss_percent(reported_fraction: f64, min: u32) -> u32 {
    let pct = (reported_fraction * 100.0).clamp(0.0, 100.0);
    let level = match pct {
        p if p >= 20.0 => 20,
        p if p >= 10.0 => 10,
        p if p >= 5.0 => 5,
        p if p >= 1.0 => 1,
        _ => 0,
    };
    level.max(min.min(100))
}

#[cfg(test)]
mod tests {
    use super::planned_loss_percent;

    #[test]
    fn planned_loss_follows_reports_in_levels_with_a_floor() {
        assert_eq!(planned_loss_percent(0.0, 0), 0);
        assert_eq!(planned_loss_percent(0.03, 0), 1);
        assert_eq!(planned_loss_percent(0.07, 0), 5);
        assert_eq!(planned_loss_percent(0.5, 0), 20);
        assert_eq!(planned_loss_percent(0.0, 30), 30);
        assert_eq!(planned_loss_percent(0.5, 30), 30);
        assert_eq!(planned_loss_percent(f64::NAN, 7), 7);
    }
}
