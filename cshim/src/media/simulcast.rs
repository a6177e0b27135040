//! Simulcast sending: one captured frame encoded as up to three layers (rids r0 < r1 < r2),
//! each with its own encoder, size, frame rate and bitrate, as the offer's
//! `a=simulcast:recv` and `offer.encodings` say (sora-protocol.md §6). Each layer has an SSRC,
//! a packetizer writing the MID and RID header extensions, and a send loop of its own
//! (pacer, history for NACKs, sender reports); one thread encodes every layer, scaling the
//! source once per layer. CPU adaptation works on the source, as libwebrtc's: a resolution
//! step scales the picture every layer is made from (so all layers shrink, and the top ones
//! stop where `max_layers` says), a frame-rate cap holds for every layer.
use super::codec::{I420Frame, Scaler, VideoEncoder, VideoEncoderConfig};
use super::send::{CaptureClock, EncoderFailures, Input, SendShared, VideoSendConfig};
use super::adapt::{CpuAdaptation, FrameRateLimiter, Step};
use super::rtp::{FrameInfo, RtpClock, RtpPacketizer};
use super::source::FrameSlot;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// One layer of a simulcast sender.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub rid: String,
    pub ssrc: u32,
    /// `active: false` in `offer.encodings`, or `~` in `a=simulcast:recv`: not sent.
    pub active: bool,
    pub scale_down_by: f64,
    /// `scaleResolutionDownTo`: the largest size the layer may have.
    pub scale_down_to: Option<(u32, u32)>,
    pub max_bitrate_bps: Option<u64>,
    pub max_framerate: Option<f64>,
    /// Temporal layers (`scalabilityMode` L1T1-L1T3) the offer asks for; the sender lowers it
    /// to what its engine makes for its codec (`EncoderEngine::temporal_layers`).
    pub temporal_layers: u8,
}

impl LayerSpec {
    /// The layer's frame size for a `width`x`height` source: divided by `scale_down_by`,
    /// then fitted into `scale_down_to` (aspect kept), never larger than the source; even,
    /// as 4:2:0 encoders want, and at least 2x2.
    pub fn size(&self, width: u32, height: u32) -> (u32, u32) {
        let mut scale = self.scale_down_by.max(1.0);
        if let Some((mw, mh)) = self.scale_down_to {
            let fit = (width as f64 / mw.max(1) as f64).max(height as f64 / mh.max(1) as f64);
            scale = scale.max(fit);
        }
        let even = |v: f64| ((v / scale) as u32 & !1).max(2);
        (even(width as f64).min(width.max(2)), even(height as f64).min(height.max(2)))
    }
}

/// At most this many layers are encoded (Sora's r0, r1, r2); an offer naming more is cut.
pub const MAX_LAYERS: usize = 3;

/// The layers an offer asks for: each rid of its `a=simulcast:recv` (in order, lowest
/// first as Sora lists them; repeated rids once, at most [`MAX_LAYERS`]) with the
/// `offer.encodings` entry of the same rid. Without an entry a layer is scaled as
/// libwebrtc's default is (by 4, 2, 1 for three layers).
pub fn layers_from_offer(recv: &[(String, bool)], encodings: Option<&Value>) -> Vec<LayerSpec> {
    let mut unique: Vec<&(String, bool)> = Vec::new();
    for entry in recv {
        if unique.len() < MAX_LAYERS && !unique.iter().any(|(rid, _)| *rid == entry.0) {
            unique.push(entry);
        }
    }
    if unique.len() < recv.len() {
        log::warn!("simulcast: the offer names {} layers; sending {} (repeated rids once, at most {MAX_LAYERS})", recv.len(), unique.len());
    }
    let n = unique.len();
    unique
        .into_iter()
        .enumerate()
        .map(|(i, (rid, paused))| {
            let e = encodings
                .and_then(Value::as_array)
                .and_then(|list| list.iter().find(|e| e.get("rid").and_then(Value::as_str) == Some(rid)));
            let num = |key: &str| e.and_then(|e| e.get(key)).and_then(Value::as_f64).filter(|v| v.is_finite() && *v > 0.0);
            let mode = e.and_then(|e| e.get("scalabilityMode")).and_then(Value::as_str);
            let temporal_layers = mode.map_or(1, |mode| {
                temporal_layers_of(mode).unwrap_or_else(|| {
                    // one spatial layer per encoding, temporal ones up to three, is what we make
                    log::warn!("simulcast: scalabilityMode {mode:?} for {rid} is not supported; it is sent as L1T1 (stats say so)");
                    1
                })
            });
            let to = e.and_then(|e| e.get("scaleResolutionDownTo")).and_then(|t| {
                let dim = |k: &str| t.get(k).and_then(Value::as_u64).filter(|v| *v > 0).map(|v| v.min(16384) as u32);
                Some((dim("maxWidth")?, dim("maxHeight")?))
            });
            LayerSpec {
                rid: rid.clone(),
                ssrc: 0,
                active: !paused && e.and_then(|e| e.get("active")).and_then(Value::as_bool) != Some(false),
                scale_down_by: num("scaleResolutionDownBy").unwrap_or_else(|| (1u32 << (n - 1 - i).min(8)) as f64),
                scale_down_to: to,
                max_bitrate_bps: num("maxBitrate").map(|b| b as u64),
                max_framerate: num("maxFramerate"),
                temporal_layers,
            }
        })
        .collect()
}

/// The temporal layers of a single-spatial-layer scalabilityMode ("L1T1" to "L1T3").
pub fn temporal_layers_of(mode: &str) -> Option<u8> {
    match mode {
        "L1T1" => Some(1),
        "L1T2" => Some(2),
        "L1T3" => Some(3),
        _ => None,
    }
}

/// Each layer's bitrate (kbps): its `maxBitrate` where given; the layers without one share
/// what `total_kbps` leaves by their share of the pixels (1 / scale²).
pub fn layer_bitrates(layers: &[LayerSpec], total_kbps: u32) -> Vec<u32> {
    let fixed: u64 = layers.iter().filter(|l| l.active).filter_map(|l| l.max_bitrate_bps).sum::<u64>() / 1000;
    let rest = (total_kbps as u64).saturating_sub(fixed).max(30 * layers.len() as u64);
    let weight = |l: &LayerSpec| 1.0 / (l.scale_down_by.max(1.0) * l.scale_down_by.max(1.0));
    let total_weight: f64 = layers.iter().filter(|l| l.active && l.max_bitrate_bps.is_none()).map(weight).sum();
    layers
        .iter()
        .map(|l| match l.max_bitrate_bps {
            Some(b) => (b / 1000).max(30) as u32,
            None => ((rest as f64 * weight(l) / total_weight.max(1e-9)) as u32).max(30),
        })
        .collect()
}

/// How many layers libwebrtc sends of a picture this size (its simulcast format table:
/// 3 from 960x540 up, 2 from 480x270, else 1); the layers above, from the top, send
/// nothing, whatever the offer asks. A 640x360 source gives r0 and r1, as the official SDK.
pub fn max_layers(width: u32, height: u32) -> usize {
    let pixels = u64::from(width) * u64::from(height);
    match pixels {
        p if p >= 960 * 540 => 3,
        p if p >= 480 * 270 => 2,
        _ => 1,
    }
}

/// `encoderImplementation` of a simulcast sender, as libwebrtc names its adapter.
pub fn adapter_name(engine: &str, layers: usize) -> String {
    format!("SimulcastEncoderAdapter ({})", vec![engine; layers].join(", "))
}

/// What the encoder thread keeps per layer.
pub(super) struct Layer {
    pub spec: LayerSpec,
    /// Its share of the configured bitrate, and what the bandwidth estimate leaves it now.
    pub bitrate_kbps: u32,
    alloc_kbps: u32,
    /// False while the estimate cannot carry it (switched off from the top, as libwebrtc).
    bw_on: bool,
    /// False while the source is too small for this many layers (`max_layers`).
    size_on: bool,
    pub shared: Arc<SendShared>,
    pub tx: UnboundedSender<Input>,
    pub packetizer: RtpPacketizer,
    encoder: Option<VideoEncoder>,
    scaler: Scaler,
    limiter: FrameRateLimiter,
    failures: EncoderFailures,
    black: Option<I420Frame>,
    /// Pixels per frame of every layer sent now (the encoder's speed is chosen for them).
    sender_pixels: u64,
}

impl Layer {
    pub fn new(spec: LayerSpec, bitrate_kbps: u32, shared: Arc<SendShared>, tx: UnboundedSender<Input>, packetizer: RtpPacketizer) -> Self {
        Layer {
            spec,
            bitrate_kbps,
            alloc_kbps: bitrate_kbps,
            bw_on: true,
            size_on: true,
            shared,
            tx,
            packetizer,
            encoder: None,
            scaler: Scaler::new(),
            limiter: FrameRateLimiter::default(),
            failures: EncoderFailures::default(),
            black: None,
            sender_pixels: 0,
        }
    }

    /// Encodes `frame` (captured at `capture_us`, RTP timestamp `ts`) for this layer and
    /// queues its packets; `larger` (a bigger layer's picture of the same frame, if any) is
    /// scaled from instead of the source: cheaper, and a box filter of a box filter. Returns
    /// whether the send loop is still there, and whether `self.scaled()` holds this frame.
    fn send(&mut self, frame: &I420Frame, larger: Option<&I420Frame>, capture_us: i64, ts: u32, enabled: bool, cfg: &VideoSendConfig, taken: Instant) -> (bool, bool) {
        if !self.bw_on || !self.size_on || !self.limiter.admit(capture_us, self.spec.max_framerate) {
            return (true, false);
        }
        let started = Instant::now();
        let (w, h) = self.spec.size(frame.width, frame.height);
        let mut scaled = false;
        let input: &I420Frame = if !enabled {
            // a disabled source: black frames of the layer's size (as send::encode_loop)
            let b = self.black.get_or_insert_with(|| I420Frame::new(w, h).expect("frame"));
            if (b.width, b.height) != (w, h) {
                *b = I420Frame::new(w, h).expect("frame");
            }
            b.u.fill(128);
            b.v.fill(128);
            b
        } else if (w, h) != (frame.width, frame.height) {
            let from = larger.filter(|l| l.width >= w && l.height >= h).unwrap_or(frame);
            match self.scaler.scale(from, w, h) {
                Ok(f) => {
                    scaled = true;
                    f
                }
                Err(e) => {
                    log::warn!("simulcast layer {}: scaling to {w}x{h} failed: {e}", self.spec.rid);
                    return (true, false);
                }
            }
        } else {
            frame
        };
        let enc = match self.encoder.as_mut() {
            Some(e) => e,
            None => match VideoEncoder::new(&cfg.engine, VideoEncoderConfig {
                codec: cfg.codec,
                width: input.width,
                height: input.height,
                bitrate_kbps: self.alloc_kbps,
                framerate: self.spec.max_framerate.map_or(30, |f| f.round().clamp(1.0, 60.0) as u32),
                vp9_profile: cfg.vp9_profile,
                sender_pixels: self.sender_pixels,
                temporal_layers: self.spec.temporal_layers,
            }) {
                Ok(e) => self.encoder.insert(e),
                Err(e) => {
                    self.failures.failed(&format!("opening the encoder of layer {}", self.spec.rid), input.width, input.height, &e);
                    return (true, scaled);
                }
            },
        };
        let force = self.shared.keyframe_requested.swap(false, Ordering::AcqRel);
        match enc.encode(input, ts, force) {
            Ok(frames) => {
                self.failures.recovered();
                let elapsed = started.elapsed().as_secs_f64(); // this layer's scaling and encoding
                for f in frames {
                    {
                        let mut st = self.shared.stats.lock();
                        st.frames_encoded += 1;
                        st.frames_sent += 1;
                        st.key_frames_encoded += f.keyframe as u64;
                        st.frame_width = f.width;
                        st.frame_height = f.height;
                        st.total_encode_time += elapsed;
                        st.target_bitrate = self.alloc_kbps as f64 * 1000.0;
                    }
                    let info = FrameInfo { temporal: f.temporal, ..Default::default() };
                    let packets = self.packetizer.packetize_frame(&f.data, ts, info);
                    if self.tx.send(Input::Packets(packets, taken)).is_err() {
                        return (false, scaled);
                    }
                }
            }
            Err(e) => {
                self.failures.failed(&format!("encoding layer {}", self.spec.rid), input.width, input.height, &e);
                self.encoder = None;
            }
        }
        (true, scaled)
    }

    /// Gives the layer `kbps` of the estimate (None: switched off for want of bandwidth).
    fn allocate(&mut self, kbps: Option<u32>) {
        let on = kbps.is_some();
        if on != self.bw_on {
            log::info!("simulcast layer {} {} by the bandwidth estimate", self.spec.rid, if on { "back on" } else { "switched off" });
            self.bw_on = on;
            if on {
                self.shared.keyframe_requested.store(true, Ordering::Release); // receivers resume
            }
        }
        let Some(kbps) = kbps else { return };
        if kbps.abs_diff(self.alloc_kbps) * 20 > self.alloc_kbps {
            self.alloc_kbps = kbps;
            if let Some(e) = self.encoder.as_mut() {
                if let Err(e) = e.set_bitrate(kbps) {
                    log::warn!("simulcast layer {}: setting {kbps} kbps failed: {e}", self.spec.rid);
                }
            }
        }
    }

    /// Switches the layer on or off for the source's size (`max_layers`).
    fn set_size_on(&mut self, on: bool, width: u32, height: u32) {
        if on != self.size_on {
            log::info!("simulcast layer {} {} for a {width}x{height} source", self.spec.rid, if on { "on" } else { "off" });
            self.size_on = on;
            if on {
                self.shared.keyframe_requested.store(true, Ordering::Release);
            }
        }
    }

    /// The picture the last `send` scaled to.
    fn scaled(&self) -> &I420Frame {
        self.scaler.output()
    }
}

/// libwebrtc's simulcast format table, as (least pixels of a row, target kbps): the bitrate
/// a layer of that size gets while a larger layer is sent above it.
const TARGET_KBPS: [(u64, u32); 6] =
    [(1920 * 1080, 4000), (1280 * 720, 2500), (960 * 540, 1200), (640 * 360, 500), (480 * 270, 350), (0, 150)];

/// The target of a `width`x`height` layer in libwebrtc's simulcast format table.
pub fn target_kbps(width: u32, height: u32) -> u32 {
    let pixels = u64::from(width) * u64::from(height);
    TARGET_KBPS.iter().find(|(least, _)| pixels >= *least).map_or(150, |&(_, kbps)| kbps)
}

/// Shares `budget_kbps` (the bandwidth estimate for video) among the active layers of a
/// `source`-sized picture as libwebrtc's allocator does: from the lowest up, each layer
/// below the top gets its size's target ([`target_kbps`], or its own bitrate when lower), the
/// highest layer sent gets what is left, up to its bitrate. A layer that cannot have 40 % of
/// its share is switched off, with every layer above it (20 % more brings it back). The
/// lowest layer always goes.
fn allocate(layers: &mut [Layer], budget_kbps: u32, source: (u32, u32)) {
    let mut lowest_first: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].spec.active && layers[i].size_on).collect();
    lowest_first.sort_by(|&a, &b| layers[b].spec.scale_down_by.total_cmp(&layers[a].spec.scale_down_by));
    let top = lowest_first.last().copied();
    let mut left = budget_kbps;
    let mut grants: Vec<(usize, Option<u32>)> = Vec::with_capacity(lowest_first.len());
    for (n, &i) in lowest_first.iter().enumerate() {
        let l = &layers[i];
        let (w, h) = l.spec.size(source.0, source.1);
        let share = if Some(i) == top { l.bitrate_kbps } else { l.bitrate_kbps.min(target_kbps(w, h)) };
        let min = (share * 2 / 5).max(30);
        let need = if l.bw_on { min } else { min * 6 / 5 };
        let off_above = grants.last().is_some_and(|g| g.1.is_none());
        if n == 0 || (!off_above && left >= need) {
            let kbps = share.min(left).max(30);
            left = left.saturating_sub(kbps);
            grants.push((i, Some(kbps)));
        } else {
            grants.push((i, None));
        }
    }
    // What is left goes to the highest layer sent, up to its own bitrate.
    if let Some((i, Some(kbps))) = grants.iter_mut().rev().find(|g| g.1.is_some()) {
        *kbps += layers[*i].bitrate_kbps.saturating_sub(*kbps).min(left);
    }
    for (i, grant) in grants {
        layers[i].allocate(grant);
    }
}

/// The simulcast encoder thread: every frame of `slot` to every active layer.
pub(super) fn encode_loop(slot: Arc<FrameSlot>, mut layers: Vec<Layer>, clock: RtpClock, cfg: VideoSendConfig) {
    let mut capture_clock = CaptureClock::new(clock);
    // CPU adaptation over all the layers: one frame's time is the time of all its layers.
    let mut cpu = CpuAdaptation::new(cfg.degradation, slot.dropped.load(Ordering::Relaxed));
    let mut limiter = FrameRateLimiter::default();
    let mut scaler = Scaler::new();
    let mut last_tick: Option<Instant> = None;
    let (mut fps_since, mut counted) = (Instant::now(), vec![0u64; layers.len()]);
    let stop = layers[0].shared.clone();
    // Largest first: the layers by their scale (scaleResolutionDownTo caps fall in place
    // per frame, as `larger` is only used when it is big enough).
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by(|&a, &b| layers[a].spec.scale_down_by.total_cmp(&layers[b].spec.scale_down_by));
    // the active layers lowest first: as many as the source's size allows are sent
    let lowest_active: Vec<usize> = order.iter().rev().copied().filter(|&i| layers[i].spec.active).collect();
    while !stop.stop.load(Ordering::Acquire) {
        let Some((frame, capture_us)) = slot.take(Duration::from_millis(100)) else {
            if slot.is_closed() {
                break;
            }
            continue;
        };
        let taken = Instant::now();
        cpu.on_taken(taken, slot.dropped.load(Ordering::Relaxed));
        let restrictions = cpu.restrictions();
        // The sender's quality limitation (every layer reports it, as libwebrtc's): the CPU's
        // restrictions, else a layer the estimate switched off.
        let bandwidth_limited = layers.iter().any(|l| l.spec.active && l.size_on && !l.bw_on);
        let dt = last_tick.replace(taken).map(|prev| (taken - prev).as_secs_f64());
        for layer in layers.iter().filter(|l| l.spec.active) {
            layer.shared.stats.lock().on_source_frame(frame.width, frame.height, dt, restrictions.is_limited(), bandwidth_limited);
        }
        if !limiter.admit(capture_us, restrictions.max_fps) {
            continue;
        }
        let ts = capture_clock.timestamp(capture_us);
        let enabled = slot.enabled.load(Ordering::Relaxed);
        let (w, h) = restrictions.target_size(frame.width, frame.height);
        let source: &I420Frame = if (w, h) == (frame.width, frame.height) {
            &frame
        } else {
            match scaler.scale(&frame, w, h) {
                Ok(f) => f,
                Err(e) => {
                    log::warn!("simulcast: scaling the source to {w}x{h} failed: {e}");
                    &frame
                }
            }
        };
        let limit = max_layers(source.width, source.height);
        for (rank, &i) in lowest_active.iter().enumerate() {
            layers[i].set_size_on(rank < limit, source.width, source.height);
        }
        let budget = cfg.cc.as_ref().map_or(u32::MAX, |cc| (cc.video_budget_bps() / 1000) as u32);
        allocate(&mut layers, budget, (source.width, source.height));
        let sender_pixels: u64 = layers.iter().filter(|l| l.spec.active && l.size_on && l.bw_on).map(|l| {
            let (w, h) = l.spec.size(source.width, source.height);
            u64::from(w) * u64::from(h)
        }).sum();
        // Largest layer first, each smaller one scaled from the last picture scaled.
        let mut larger: Option<usize> = None;
        for &i in &order {
            if !layers[i].spec.active {
                continue;
            }
            let (before, rest) = layers.split_at_mut(i);
            let (layer, after) = rest.split_first_mut().expect("layer");
            layer.sender_pixels = sender_pixels;
            let from = larger.map(|j| if j < i { before[j].scaled() } else { after[j - i - 1].scaled() });
            let (alive, scaled) = layer.send(source, from, capture_us, ts, enabled, &cfg, taken);
            if !alive {
                return;
            }
            if scaled {
                larger = Some(i);
            }
        }
        let now = Instant::now();
        cpu.on_processed(taken, now);
        if now - fps_since >= Duration::from_secs(1) {
            let secs = (now - fps_since).as_secs_f64();
            for (layer, before) in layers.iter().zip(counted.iter_mut()) {
                let mut st = layer.shared.stats.lock();
                st.frames_per_second = Some((st.frames_encoded - *before) as f64 / secs);
                *before = st.frames_encoded;
            }
            fps_since = now;
        }
        if let Some(step) = cpu.poll(now, frame.width, frame.height, restrictions.max_fps) {
            for layer in &layers {
                let mut st = layer.shared.stats.lock();
                st.quality_limitation_resolution_changes += (step == Step::Resolution) as u64;
                st.cpu_limited = cpu.restrictions().is_limited();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layer_count_follows_the_source_size_as_libwebrtc() {
        assert_eq!(max_layers(1920, 1080), 3);
        assert_eq!(max_layers(1280, 720), 3);
        assert_eq!(max_layers(960, 540), 3);
        assert_eq!(max_layers(959, 540), 2);
        assert_eq!(max_layers(640, 360), 2);
        assert_eq!(max_layers(480, 270), 2);
        assert_eq!(max_layers(320, 180), 1);
        assert_eq!(max_layers(0, 0), 1);
    }

    fn recv(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(r, p)| (r.to_string(), *p)).collect()
    }

    #[test]
    fn layers_follow_the_offer() {
        let enc = json!([
            {"rid": "r0", "active": true, "scaleResolutionDownBy": 4.0, "maxBitrate": 150000},
            {"rid": "r1", "active": false, "scaleResolutionDownBy": 2.0},
            {"rid": "r2", "scaleResolutionDownTo": {"maxWidth": 960, "maxHeight": 540}, "maxFramerate": 15},
        ]);
        let l = layers_from_offer(&recv(&[("r0", false), ("r1", false), ("r2", false)]), Some(&enc));
        assert_eq!(l.iter().map(|l| l.active).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(l[0].size(1280, 720), (320, 180));
        assert_eq!(l[2].size(1280, 720), (960, 540));
        assert_eq!(l[2].size(640, 360), (640, 360)); // never scaled up
        assert_eq!((l[0].max_bitrate_bps, l[2].max_framerate), (Some(150_000), Some(15.0)));
        // without encodings: libwebrtc's default scales; a paused rid is inactive
        let d = layers_from_offer(&recv(&[("r0", false), ("r1", true), ("r2", false)]), None);
        assert_eq!(d.iter().map(|l| l.scale_down_by).collect::<Vec<_>>(), [4.0, 2.0, 1.0]);
        assert!(!d[1].active);
        assert_eq!(d[0].size(1281, 721), (320, 180)); // even
        assert_eq!(d[0].size(3, 3), (2, 2));
        // hostile numbers are ignored, not trusted
        let bad = json!([{"rid": "r0", "scaleResolutionDownBy": -1, "maxBitrate": "x", "scaleResolutionDownTo": {"maxWidth": 0}}]);
        let b = layers_from_offer(&recv(&[("r0", false)]), Some(&bad));
        assert_eq!((b[0].scale_down_by, b[0].max_bitrate_bps, b[0].scale_down_to), (1.0, None, None));
        // ten layers, repeated rids: three distinct layers
        let many: Vec<(String, bool)> = ["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"].iter().map(|r| (r.to_string(), false)).collect();
        let m = layers_from_offer(&many, Some(&json!([{"rid": "zz", "scaleResolutionDownBy": 0}])));
        assert_eq!(m.iter().map(|l| l.rid.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.iter().map(|l| l.scale_down_by).collect::<Vec<_>>(), [4.0, 2.0, 1.0]);
        // scalabilityMode: L1T1-L1T3 are taken; spatial modes and junk are sent as L1T1
        let modes = json!([{"rid": "r0", "scalabilityMode": "L1T3"}, {"rid": "r1", "scalabilityMode": "L3T3"},
                           {"rid": "r2", "scalabilityMode": 7}]);
        let t = layers_from_offer(&recv(&[("r0", false), ("r1", false), ("r2", false)]), Some(&modes));
        assert_eq!(t.iter().map(|l| l.temporal_layers).collect::<Vec<_>>(), [3, 1, 1]);
        assert_eq!(d.iter().map(|l| l.temporal_layers).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!([temporal_layers_of("L1T2"), temporal_layers_of("L1T4"), temporal_layers_of("l1t2")], [Some(2), None, None]);
    }

    #[test]
    fn bitrates_give_fixed_ones_and_share_the_rest_by_pixels() {
        let l = layers_from_offer(&recv(&[("r0", false), ("r1", false), ("r2", false)]), None);
        let b = layer_bitrates(&l, 2100);
        // 1/16 : 1/4 : 1 of 2100
        assert_eq!(b, vec![100, 400, 1600]);
        let mut fixed = l.clone();
        fixed[0].max_bitrate_bps = Some(200_000);
        assert_eq!(layer_bitrates(&fixed, 2100)[0], 200);
        assert_eq!(adapter_name("libvpx", 3), "SimulcastEncoderAdapter (libvpx, libvpx, libvpx)");
    }

    #[test]
    fn the_estimate_switches_layers_off_from_the_top_and_back() {
        use crate::media::rtp::RtpCodec;
        let specs = layers_from_offer(&recv(&[("r0", false), ("r1", false), ("r2", false)]), None);
        let mut layers: Vec<Layer> = specs
            .into_iter()
            .zip([250, 750, 2500])
            .map(|(spec, kbps)| {
                let shared = SendShared::video(1, &Default::default(), None, None, true, None);
                let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
                Layer::new(spec, kbps, shared, tx, RtpPacketizer::new(RtpCodec::Vp8, 1, 96, 90_000, 1200))
            })
            .collect();
        let on = |l: &[Layer]| l.iter().map(|l| l.bw_on).collect::<Vec<_>>();
        let kbps = |l: &[Layer]| l.iter().map(|l| l.alloc_kbps).collect::<Vec<_>>();
        const HD: (u32, u32) = (1280, 720); // layers 320x180, 640x360, 1280x720
        // Below the top, libwebrtc's targets (150 for 320x180, 500 for 640x360); the top
        // gets up to its bitrate.
        allocate(&mut layers, 3500, HD);
        assert_eq!((on(&layers), kbps(&layers)), (vec![true, true, true], vec![150, 500, 2500]));
        allocate(&mut layers, u32::MAX, HD); // no estimate: the same
        assert_eq!(kbps(&layers), [150, 500, 2500]);
        allocate(&mut layers, 1500, HD); // r2 needs 1000 of the 850 left; r1 is the top now
        assert_eq!((on(&layers), kbps(&layers)[..2].to_vec()), (vec![true, true, false], vec![150, 750]));
        allocate(&mut layers, 300, HD); // r1 would get 150 < 200; r0 the top
        assert_eq!((on(&layers), layers[0].alloc_kbps), (vec![true, false, false], 250));
        allocate(&mut layers, 100, HD); // the lowest stays, at what there is
        assert_eq!((on(&layers), layers[0].alloc_kbps), (vec![true, false, false], 100));
        allocate(&mut layers, 1700, HD); // r1 back (r2 needs 1200 of the 1050 left)
        assert_eq!(on(&layers), [true, true, false]);
        assert!(layers[1].shared.keyframe_requested.load(Ordering::Acquire)); // resumes on a keyframe
        allocate(&mut layers, 2300, HD);
        assert_eq!(on(&layers), [true, true, true]);
        assert_eq!((target_kbps(480, 270), target_kbps(1920, 1080), target_kbps(240, 135)), (350, 4000, 150));
    }
}
