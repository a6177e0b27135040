//! Receive pipelines: RTP from a remote track → jitter buffer (reordering, NACK, loss
//! handling) → decoder → sinks. Decoding only runs while a sink is attached; the first sink
//! of a video track triggers a keyframe request so it starts with a picture at once.
use super::codec::{OpusDecoder, VideoCodec, VideoDecoder};
use super::rtp::rtcp::{build_pli, build_rr};
use super::rtp::{is_rtcp, parse_compound, InboundRtpStats, RtcpEvent, RtpCodec, RtpReceiver};
use super::sink::MediaSink;
use crate::rtc::{self, PacketHandler};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const RR_INTERVAL: Duration = Duration::from_secs(1);
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(300);

enum Input {
    Packet(Vec<u8>),
    SinksChanged,
    Stop,
}

pub struct RecvShared {
    pub kind: &'static str,
    pub sinks: Mutex<Vec<Arc<dyn MediaSink>>>,
    pub enabled: AtomicBool,
    pub stats: Mutex<InboundRtpStats>,
    /// Audio: decode as stereo when the offer says so (fmtp stereo=1).
    stereo: bool,
}

struct PacketIn(Mutex<mpsc::Sender<Input>>);
impl PacketHandler for PacketIn {
    fn on_packet(&self, _track: i32, packet: &[u8]) {
        let _ = self.0.lock().send(Input::Packet(packet.to_vec()));
    }
}

pub struct Receiver {
    pub track: i32,
    pub shared: Arc<RecvShared>,
    tx: Mutex<mpsc::Sender<Input>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    pub fn start(track: i32, codec: RtpCodec, stereo: bool) -> Receiver {
        let shared = Arc::new(RecvShared {
            kind: if codec.is_video() { "video" } else { "audio" },
            sinks: Mutex::new(Vec::new()),
            enabled: AtomicBool::new(true),
            stats: Mutex::new(InboundRtpStats::default()),
            stereo,
        });
        let (tx, rx) = mpsc::channel();
        rtc::set_packet_handler(track, Arc::new(PacketIn(Mutex::new(tx.clone()))));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sora-recv-{}", shared.kind))
            .spawn(move || recv_loop(track, codec, s, rx))
            .expect("spawn receiver");
        Receiver { track, shared, tx: Mutex::new(tx), thread: Mutex::new(Some(thread)) }
    }

    pub fn add_sink(&self, sink: Arc<dyn MediaSink>) {
        self.shared.sinks.lock().push(sink);
        let _ = self.tx.lock().send(Input::SinksChanged);
    }

    /// Delivery on or off; turning it on asks for a keyframe at once (like a new sink).
    pub fn set_enabled(&self, on: bool) {
        if !self.shared.enabled.swap(on, Ordering::Relaxed) && on {
            let _ = self.tx.lock().send(Input::SinksChanged);
        }
    }

    pub fn remove_sink(&self, id: u64) {
        self.shared.sinks.lock().retain(|s| s.id() != id);
    }

    /// Stops the pipeline (idempotent). Sinks stay attached but receive nothing more.
    pub fn stop(&self) {
        rtc::clear_packet_handler(self.track);
        let _ = self.tx.lock().send(Input::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

enum Decoder {
    Video(VideoDecoder),
    Audio(OpusDecoder, Vec<i16>),
}

fn recv_loop(track: i32, codec: RtpCodec, shared: Arc<RecvShared>, rx: mpsc::Receiver<Input>) {
    let mut rtp = RtpReceiver::new(codec, codec.default_clock_rate());
    let our_ssrc: u32 = rand::random();
    let mut decoder: Option<Decoder> = None;
    let mut next_rr = Instant::now() + RR_INTERVAL;
    let mut last_pli: Option<Instant> = None;
    let mut want_keyframe = false;
    loop {
        let now = Instant::now();
        let mut wake = next_rr;
        if let Some(w) = rtp.next_wakeup() {
            wake = wake.min(w);
        }
        match rx.recv_timeout(wake.saturating_duration_since(now).max(Duration::from_millis(1))) {
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Input::SinksChanged) => want_keyframe = codec.is_video(),
            Ok(Input::Packet(p)) if is_rtcp(&p) => {
                for ev in parse_compound(&p) {
                    if let RtcpEvent::Sr { ntp, rtp_ts, .. } = ev {
                        rtp.on_sender_report(ntp, rtp_ts, Instant::now());
                    }
                }
            }
            Ok(Input::Packet(p)) => {
                rtp.push(&p, Instant::now());
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let frames = rtp.pop_frames(now);
        let sinks: Vec<Arc<dyn MediaSink>> = if shared.enabled.load(Ordering::Relaxed) {
            shared.sinks.lock().clone()
        } else {
            Vec::new()
        };
        if sinks.is_empty() {
            decoder = None; // nothing to decode for; a new sink starts from a keyframe
        } else {
            for f in frames {
                let capture_ms = rtp.ntp_for_rtp(f.rtp_timestamp).map(ntp_to_epoch_ms);
                match decoder.get_or_insert_with(|| new_decoder(codec, shared.stereo)) {
                    Decoder::Video(d) => match d.decode(&f.data) {
                        Ok(Some(img)) => {
                            shared.stats.lock().frames_decoded += 1;
                            for s in &sinks {
                                s.on_video(&img);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            log::debug!("video decode failed ({e}); asking for a keyframe");
                            want_keyframe = true;
                        }
                    },
                    Decoder::Audio(d, buf) => {
                        for _ in 0..f.lost_before.min(5) {
                            if let Ok(n) = d.decode(None, buf) {
                                deliver_audio(&sinks, &buf[..n * d.channels() as usize], d.channels(), None);
                            }
                        }
                        if let Ok(n) = d.decode(Some(&f.data), buf) {
                            deliver_audio(&sinks, &buf[..n * d.channels() as usize], d.channels(), capture_ms);
                        }
                    }
                }
            }
        }
        if codec.is_video() && (want_keyframe || rtp.keyframe_needed()) && !sinks.is_empty() {
            if let Some(media_ssrc) = rtp.ssrc() {
                if last_pli.is_none_or(|t| now - t >= PLI_MIN_INTERVAL) {
                    let _ = rtc::track_send(track, &build_pli(our_ssrc, media_ssrc));
                    shared.stats.lock().pli_count += 1;
                    last_pli = Some(now);
                    want_keyframe = false;
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
        let mut st = rtp.stats();
        st.frames_decoded = shared.stats.lock().frames_decoded;
        st.pli_count = shared.stats.lock().pli_count;
        *shared.stats.lock() = st;
    }
}

fn new_decoder(codec: RtpCodec, stereo: bool) -> Decoder {
    match codec {
        RtpCodec::Vp8 => Decoder::Video(VideoDecoder::new(VideoCodec::Vp8).expect("vp8 decoder")),
        RtpCodec::Vp9 => Decoder::Video(VideoDecoder::new(VideoCodec::Vp9).expect("vp9 decoder")),
        RtpCodec::Opus => {
            let ch = if stereo { 2 } else { 1 };
            Decoder::Audio(OpusDecoder::new(ch).expect("opus decoder"), vec![0; super::codec::opus::MAX_FRAME_SAMPLES * 2])
        }
    }
}

fn deliver_audio(sinks: &[Arc<dyn MediaSink>], pcm: &[i16], channels: u32, capture_ms: Option<i64>) {
    for s in sinks {
        s.on_audio(pcm, 48_000, channels, capture_ms);
    }
}

fn ntp_to_epoch_ms(ntp: u64) -> i64 {
    let t = super::rtp::timing::ntp_to_system_time(ntp);
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
