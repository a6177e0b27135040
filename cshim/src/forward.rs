//! Native SFU forwarding between peer tracks (the dev server's media plane): RTP from a
//! source track goes out unchanged (SSRC kept) on every destination track; RTCP feedback
//! (PLI, FIR, RR) from a destination goes back to its source, and the source's own RTCP
//! (SR) goes to the destinations. Packets never leave native code.
//!
//! NACKs are answered here from a per-source packet cache, and only the sequence numbers
//! the cache lacks (lost before the SFU) go on to the sender. The sender cannot repair a
//! loss between the SFU and a receiver: its retransmission reuses the sequence number,
//! which the SFU's SRTP replay protection has already seen and drops.
//!
//! A simulcast source ([`set_simulcast`]) sends several layers on one track; each of its
//! destinations gets one of them as a stream of its own ([`select_layer`], `layers`).
//!
//! An audio source whose packets carry their level (`ssrc-audio-level`, [`set_voice_meter`])
//! counts those loud enough to be voice, for the dev server's speaker detection
//! (spotlight): nothing is decoded.
//!
//! Bandwidth estimation is per hop, as in an SFU: receivers' REMBs are not relayed, and a
//! source with a bitrate set ([`set_bitrate`]) gets the server's own REMB with that value,
//! at its first RTP packet and then about once a second while RTP flows. libwebrtc
//! senders take a REMB during their first 2 s (no loss reported yet) as their target at
//! once; without one they stay near their 300 kbps start value and grow slowly.
mod layers;

use crate::error::{Error, Result};
use crate::media::rtp::hdrext::{extension, replace_extension};
use crate::media::rtp::nack::PacketHistory;
use crate::media::rtp::rtcp::{build_nack, build_pli, build_remb, build_sr, parse_compound, take_nacks_and_rembs, RtcpEvent};
use crate::media::rtp::twcc::FeedbackRecorder;
use crate::media::rtp::RtpCodec;
use layers::{Layers, Selection, Verdict};
pub use layers::rid_index;
use crate::rtc::{self, PacketHandler};
use parking_lot::{Mutex, RwLock};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Packets kept per source for NACKs: about 1 s of a 15 Mbps stream, and no older than 1 s.
const CACHE_PACKETS: usize = 2048;
const CACHE_AGE: Duration = Duration::from_secs(1);

/// How often a source with a bitrate gets a REMB while its RTP flows.
const REMB_INTERVAL_MS: u64 = 1000;
/// The server's RTCP sender SSRC in its own feedback (PLI, REMB).
const SERVER_SSRC: u32 = 1;

/// The REMB announced to one source: its bitrate and when the next one is due.
struct Remb {
    /// bps; 0 = none
    bps: AtomicU64,
    /// [`millis`] when the next REMB is due; 0 = at the next RTP packet.
    due_ms: AtomicU64,
}

impl Remb {
    fn new(bps: u64) -> Self {
        Remb { bps: AtomicU64::new(bps), due_ms: AtomicU64::new(0) }
    }

    /// Called for every RTP packet of the source: one REMB when due. Lock-free; allocates
    /// only when a REMB goes out.
    fn on_rtp(&self, track: i32, ssrc: u32, now: Instant) {
        if let Some(bps) = self.take_due(now) {
            let _ = rtc::track_send(track, &build_remb(SERVER_SSRC, bps, &[ssrc]));
        }
    }

    /// The bitrate to announce now, if a REMB is due (and then the next one is due a
    /// second later); None otherwise.
    fn take_due(&self, now: Instant) -> Option<u64> {
        let due = self.due_ms.load(Ordering::Relaxed);
        let now_ms = millis(now);
        if now_ms < due {
            return None;
        }
        let bps = self.bps.load(Ordering::Relaxed);
        if bps == 0 {
            return None;
        }
        // One thread wins the slot; a concurrent packet sees the new due time.
        self.due_ms
            .compare_exchange(due, now_ms + REMB_INTERVAL_MS, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| bps)
    }
}

/// Milliseconds since a process-wide epoch, at least 1 (0 means "due now" in [`Remb`]).
fn millis(t: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    t.saturating_duration_since(epoch).as_millis() as u64 + 1
}

#[derive(Default)]
struct Routes {
    /// source track → destination tracks
    down: HashMap<i32, Vec<i32>>,
    /// destination track → source track
    up: HashMap<i32, i32>,
    /// source track → last media SSRC seen (for keyframe requests)
    ssrc: HashMap<i32, Arc<AtomicU32>>,
    /// source track → its recent RTP packets, to answer NACKs
    cache: HashMap<i32, Arc<Mutex<PacketHistory>>>,
    /// source track → the bitrate announced to its sender (REMB)
    remb: HashMap<i32, Arc<Remb>>,
    /// destination track → (MID header extension id, its m-section's mid): forwarded RTP
    /// carries the receiver's own mid (libwebrtc demultiplexes a BUNDLE by MID first)
    mid: HashMap<i32, (u8, Vec<u8>)>,
    /// track → RTP packets and bytes received (source) or sent (destination), for stats
    counters: HashMap<i32, Arc<Counters>>,
    /// source track → its simulcast layers (a source whose RTP carries RIDs)
    simulcast: HashMap<i32, Arc<Mutex<Layers>>>,
    /// destination track → the layer of a simulcast source it gets
    selection: HashMap<i32, Arc<Mutex<Selection>>>,
    /// source track → (transport-cc extension id, the arrivals of its peer's transport)
    twcc: HashMap<i32, (u8, Arc<Mutex<FeedbackRecorder>>)>,
    /// audio source track → its packets with a level, and those loud enough for voice
    voice: HashMap<i32, Arc<VoiceMeter>>,
    /// source track → who else takes its RTP (the audio streaming client)
    taps: HashMap<i32, Arc<dyn RtpTap>>,
}

/// Takes a copy of a source track's RTP as it arrives ([`set_tap`]), on the thread that
/// received it: must not block.
pub trait RtpTap: Send + Sync {
    fn on_rtp(&self, packet: &[u8]);
}

/// Counts an audio source's packets by their `ssrc-audio-level` (lock-free).
struct VoiceMeter {
    ext_id: u8,
    /// -dBov at or below which (as loud or louder) a packet counts as voice
    voice_level: u8,
    packets: AtomicU64,
    voiced: AtomicU64,
}

impl VoiceMeter {
    fn on_rtp(&self, packet: &[u8]) {
        let Some((level, _)) = extension(packet, self.ext_id).and_then(crate::media::rtp::audio_level::parse) else { return };
        self.packets.fetch_add(1, Ordering::Relaxed);
        if level <= self.voice_level {
            self.voiced.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// RTP counted on one track (relaxed atomics: the forwarding path takes no lock for them).
#[derive(Default)]
pub struct Counters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counters {
    fn add(&self, len: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

static ROUTES: RwLock<Option<Routes>> = RwLock::new(None);

struct Forwarder;

fn is_rtcp(p: &[u8]) -> bool {
    p.len() >= 2 && (192..=223).contains(&p[1])
}

impl PacketHandler for Forwarder {
    fn on_packet(&self, track: i32, packet: &[u8]) {
        if packet.len() < 12 {
            return; // not even an RTP/RTCP header: ignore
        }
        let routes = ROUTES.read();
        let Some(r) = routes.as_ref() else { return };
        let rtp = !is_rtcp(packet);
        let mut now = None;
        if rtp {
            if let Some(c) = r.counters.get(&track) {
                c.add(packet.len());
            }
            let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
            if let Some(s) = r.ssrc.get(&track) {
                s.store(ssrc, Ordering::Relaxed);
            }
            if let Some(b) = r.remb.get(&track) {
                b.on_rtp(track, ssrc, *now.get_or_insert_with(Instant::now));
            }
            if let Some(meter) = r.voice.get(&track) {
                meter.on_rtp(packet);
            }
            if let Some(tap) = r.taps.get(&track) {
                tap.on_rtp(packet);
            }
            if let Some((id, recorder)) = r.twcc.get(&track) {
                if let Some(seq) = extension(packet, *id).filter(|v| v.len() == 2) {
                    let now = *now.get_or_insert_with(Instant::now);
                    let mut rec = recorder.lock();
                    rec.on_packet(u16::from_be_bytes([seq[0], seq[1]]), rtc::media_arrival(now));
                    if let Some(fb) = rec.poll(now, SERVER_SSRC, ssrc) {
                        drop(rec);
                        let _ = rtc::track_send(track, &fb);
                    }
                }
            }
        }
        if let Some(dsts) = r.down.get(&track) {
            if let Some(layers) = r.simulcast.get(&track) {
                let now = *now.get_or_insert_with(Instant::now);
                if rtp {
                    forward_layer(r, track, layers, dsts, packet, now);
                } else {
                    forward_sender_reports(r, layers, dsts, packet);
                }
            } else {
                if rtp {
                    if let Some(c) = r.cache.get(&track) {
                        let seq = u16::from_be_bytes([packet[2], packet[3]]);
                        c.lock().store(seq, packet.to_vec(), *now.get_or_insert_with(Instant::now));
                    }
                }
                for &d in dsts {
                    let out = if rtp { for_destination(r, d, packet) } else { Cow::Borrowed(packet) };
                    if rtc::track_send(d, &out).is_ok() && rtp {
                        count_sent(r, d, out.len());
                    }
                }
            }
        }
        if !rtp {
            if let Some(&src) = r.up.get(&track) {
                if let (Some(sel), Some(layers)) = (r.selection.get(&track), r.simulcast.get(&src)) {
                    layer_feedback(r, src, track, layers, sel, packet);
                    return;
                }
                match take_nacks_and_rembs(packet) {
                    None => {
                        let _ = rtc::track_send(src, packet);
                    }
                    Some((nacks, mut upstream)) => {
                        for (sender_ssrc, media_ssrc, seqs) in nacks {
                            let missing = answer_nack(r, src, track, &seqs);
                            upstream.extend(build_nack(sender_ssrc, media_ssrc, &missing));
                        }
                        if !upstream.is_empty() {
                            let _ = rtc::track_send(src, &upstream);
                        }
                    }
                }
            }
        }
    }
}

fn count_sent(r: &Routes, dst: i32, len: usize) {
    if let Some(c) = r.counters.get(&dst) {
        c.add(len);
    }
}

/// RTP of a simulcast source: each destination gets the packets of its layer, renumbered
/// as one stream; a destination waiting to switch layers has a keyframe asked for.
fn forward_layer(r: &Routes, src: i32, layers: &Mutex<Layers>, dsts: &[i32], packet: &[u8], now: Instant) {
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let mut l = layers.lock();
    let rid = extension(packet, l.rid_ext);
    let payload = layers::payload(packet);
    let Some(layer) = l.on_packet(ssrc, rid, payload.is_some_and(|p| !p.is_empty()), now) else { return };
    let keyframe_start = payload.is_some_and(|p| l.is_keyframe_start(p));
    l.store(layer, seq, packet.to_vec(), now);
    let mut asked = [false; layers::LAYERS];
    for &d in dsts {
        let Some(sel) = r.selection.get(&d) else { continue }; // no layer chosen yet: nothing
        let mut sel = sel.lock();
        let (verdict, keyframe) = sel.on_packet(&l, layer, seq, ts, keyframe_start, now);
        if let Some(k) = keyframe.filter(|&k| !asked[k]) {
            asked[k] = true;
            if let Some(media_ssrc) = l.ssrc(k) {
                let _ = rtc::track_send(src, &build_pli(SERVER_SSRC, media_ssrc));
            }
        }
        if let Verdict::Forward { seq, ts } = verdict {
            let Some(mut out) = layers::rewrite(packet, sel.out_ssrc, seq, ts) else { continue };
            sel.renumber_pictures(l.codec, &mut out, false);
            let out = with_mid(r, d, out);
            if rtc::track_send(d, &out).is_ok() {
                count_sent(r, d, out.len());
            }
        }
    }
}

/// The sender reports of a simulcast source: each destination gets its layer's, for its
/// own SSRC and timestamps (report blocks are about the sender's own reception: left out).
fn forward_sender_reports(r: &Routes, layers: &Mutex<Layers>, dsts: &[i32], packet: &[u8]) {
    let l = layers.lock();
    for ev in parse_compound(packet) {
        let RtcpEvent::Sr { ssrc, ntp, rtp_ts, packet_count, octet_count, .. } = ev else { continue };
        let Some(layer) = l.index_of(ssrc) else { continue };
        for &d in dsts {
            let Some(sel) = r.selection.get(&d) else { continue };
            let sel = sel.lock();
            if sel.current() == Some(layer) {
                let sr = build_sr(sel.out_ssrc, ntp, sel.out_timestamp(rtp_ts), packet_count, octet_count, &[]);
                let _ = rtc::track_send(d, &sr);
            }
        }
    }
}

/// RTCP from a destination of a simulcast source: keyframe requests go to the layer it
/// gets (or is switching to), NACKs are answered from that layer's packets or passed on
/// for them. Reports and estimates are about a stream the sender does not know: dropped.
fn layer_feedback(r: &Routes, src: i32, dst: i32, layers: &Mutex<Layers>, sel: &Mutex<Selection>, packet: &[u8]) {
    let now = Instant::now();
    let mut l = layers.lock();
    let mut sel = sel.lock();
    let mut keyframe = false;
    let mut missing: HashMap<u32, Vec<u16>> = HashMap::new();
    for ev in parse_compound(packet) {
        match ev {
            RtcpEvent::Pli { .. } | RtcpEvent::Fir { .. } => keyframe = true,
            RtcpEvent::Nack { seqs, .. } => {
                for out_seq in seqs {
                    let Some((layer, seq)) = sel.source_of(out_seq) else { continue };
                    match l.retransmission(layer, seq, now) {
                        Some(p) => {
                            let ts = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                            if let Some(mut out) = layers::rewrite(&p, sel.out_ssrc, out_seq, sel.out_timestamp(ts)) {
                                sel.renumber_pictures(l.codec, &mut out, true);
                                let _ = rtc::track_send(dst, &with_mid(r, dst, out));
                            }
                        }
                        None => {
                            if let Some(ssrc) = l.ssrc(layer) {
                                missing.entry(ssrc).or_default().push(seq);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if keyframe {
        if let Some(ssrc) = sel.keyframe_layer().and_then(|k| l.ssrc(k)) {
            let _ = rtc::track_send(src, &build_pli(SERVER_SSRC, ssrc));
        }
    }
    for (ssrc, seqs) in missing {
        let _ = rtc::track_send(src, &build_nack(SERVER_SSRC, ssrc, &seqs));
    }
}

/// `packet` (rewritten for `dst` already) with `dst`'s own mid, when one is set.
fn with_mid(r: &Routes, dst: i32, packet: Vec<u8>) -> Vec<u8> {
    with_own_mid(r, dst, &packet).unwrap_or(packet)
}

/// `packet` (RTP from a source) as it goes out on `dst`: with `dst`'s own mid, when set.
fn for_destination<'a>(r: &Routes, dst: i32, packet: &'a [u8]) -> Cow<'a, [u8]> {
    match with_own_mid(r, dst, packet) {
        Some(rewritten) => Cow::Owned(rewritten),
        None => Cow::Borrowed(packet),
    }
}

/// A copy of `packet` carrying `dst`'s mid; None when `dst` has none set (or the packet
/// no MID element).
fn with_own_mid(r: &Routes, dst: i32, packet: &[u8]) -> Option<Vec<u8>> {
    r.mid.get(&dst).and_then(|(id, mid)| replace_extension(packet, *id, mid))
}

/// Resends the packets of `src` among `seqs` on `dst` from the cache, rewritten as forwarded
/// ones are (a retransmission with the sender's mid would reach another m-section of a
/// libwebrtc receiver, or none); returns the sequence numbers not cached.
fn answer_nack(r: &Routes, src: i32, dst: i32, seqs: &[u16]) -> Vec<u16> {
    let Some(cache) = r.cache.get(&src) else { return seqs.to_vec() };
    let now = Instant::now();
    let mut cache = cache.lock();
    // No minimum interval: receivers pace their own repeated NACKs, and one cache serves
    // every receiver of the source.
    seqs.iter()
        .copied()
        .filter(|&s| match cache.get_for_retransmit(s, now, Duration::ZERO) {
            Some(p) => rtc::track_send(dst, &for_destination(r, dst, &p)).is_err(),
            None => true,
        })
        .collect()
}

fn forwarder() -> Arc<Forwarder> {
    static F: OnceLock<Arc<Forwarder>> = OnceLock::new();
    F.get_or_init(|| Arc::new(Forwarder)).clone()
}

/// Starts (or with `enable == false` stops) forwarding `src` to `dst`.
pub fn forward(src: i32, dst: i32, enable: bool) -> Result<()> {
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    let list = r.down.entry(src).or_default();
    list.retain(|&d| d != dst);
    if enable {
        list.push(dst);
        r.up.insert(dst, src);
        r.ssrc.entry(src).or_insert_with(|| Arc::new(AtomicU32::new(0)));
        r.cache.entry(src).or_insert_with(|| Arc::new(Mutex::new(PacketHistory::new(CACHE_PACKETS, CACHE_AGE))));
    } else {
        r.up.remove(&dst);
    }
    drop(guard);
    rtc::set_packet_handler(src, forwarder());
    if enable {
        rtc::set_packet_handler(dst, forwarder());
    }
    Ok(())
}

/// Forgets every route that involves `track` (its peer is going away).
pub fn forget(track: i32) {
    let mut guard = ROUTES.write();
    if let Some(r) = guard.as_mut() {
        r.down.remove(&track);
        r.up.remove(&track);
        r.ssrc.remove(&track);
        r.cache.remove(&track);
        r.remb.remove(&track);
        r.mid.remove(&track);
        r.counters.remove(&track);
        r.simulcast.remove(&track);
        r.selection.remove(&track);
        r.twcc.remove(&track);
        r.voice.remove(&track);
        r.taps.remove(&track);
        for l in r.down.values_mut() {
            l.retain(|&d| d != track);
        }
        r.up.retain(|_, s| *s != track);
    }
    drop(guard);
    rtc::clear_packet_handler(track);
}

/// Announces `bps` to the sender on the receiving track `src` by REMB: at its next RTP
/// packet, then about once a second while RTP flows. 0 stops it.
pub fn set_bitrate(src: i32, bps: u64) -> Result<()> {
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    r.ssrc.entry(src).or_insert_with(|| Arc::new(AtomicU32::new(0)));
    let b = r.remb.entry(src).or_insert_with(|| Arc::new(Remb::new(0)));
    b.bps.store(bps, Ordering::Relaxed);
    b.due_ms.store(0, Ordering::Relaxed); // a new value goes out at once
    drop(guard);
    rtc::set_packet_handler(src, forwarder());
    Ok(())
}

/// RTP forwarded onto `dst` carries `mid` in its MID header extension (id `ext_id`)
/// instead of the sender's own mid. An empty `mid` stops rewriting.
pub fn set_mid(dst: i32, ext_id: u8, mid: &str) -> Result<()> {
    if ext_id == 0 || mid.len() > 16 {
        return Err(crate::error::Error::invalid("ext_id must be 1..=255 and mid at most 16 bytes"));
    }
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    if mid.is_empty() {
        r.mid.remove(&dst);
    } else {
        r.mid.insert(dst, (ext_id, mid.as_bytes().to_vec()));
    }
    Ok(())
}

/// Counts the RTP received (source) or forwarded (destination) on `track` from now on;
/// returns (packets, bytes) so far. Calling it again only reads.
pub fn rtp_counters(track: i32) -> (u64, u64) {
    if let Some(c) = ROUTES.read().as_ref().and_then(|r| r.counters.get(&track).cloned()) {
        return (c.packets.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed));
    }
    ROUTES.write().get_or_insert_with(Routes::default).counters.entry(track).or_default();
    rtc::set_packet_handler(track, forwarder());
    (0, 0)
}

/// Asks the sender on `src` for a keyframe (PLI; of every layer of a simulcast source).
/// False when no media was seen yet.
pub fn request_keyframe(src: i32) -> Result<bool> {
    let (last, layers) = match ROUTES.read().as_ref() {
        Some(r) => (
            r.ssrc.get(&src).map_or(0, |s| s.load(Ordering::Relaxed)),
            r.simulcast.get(&src).map(|l| l.lock().ssrcs()),
        ),
        None => (0, None),
    };
    let ssrcs = layers.unwrap_or_else(|| if last == 0 { vec![] } else { vec![last] });
    for &ssrc in &ssrcs {
        rtc::track_send(src, &build_pli(SERVER_SSRC, ssrc))?;
    }
    Ok(!ssrcs.is_empty())
}

/// The receiving `tracks` (one peer's: they share its transport) carry transport-wide
/// sequence numbers in header extension `ext_id`: their arrivals are reported to the
/// sender in transport-cc feedback about every 50 ms, which its bandwidth estimator reads.
pub fn set_transport_cc(tracks: &[i32], ext_id: u8) -> Result<()> {
    if ext_id == 0 || ext_id >= 15 {
        return Err(Error::invalid("the transport-cc extension id must be 1..=14 (one-byte header)"));
    }
    let recorder = Arc::new(Mutex::new(FeedbackRecorder::new()));
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    for &t in tracks {
        r.twcc.insert(t, (ext_id, recorder.clone()));
    }
    drop(guard);
    for &t in tracks {
        rtc::set_packet_handler(t, forwarder());
    }
    Ok(())
}

/// The receiving audio track `src` carries `ssrc-audio-level` in header extension `ext_id`:
/// from now on its packets are counted, and those at or above -`voice_level` dBov
/// (`level <= voice_level`) as voice ([`voice_activity`]).
pub fn set_voice_meter(src: i32, ext_id: u8, voice_level: u8) -> Result<()> {
    if ext_id == 0 || ext_id >= 15 || voice_level > 127 {
        return Err(Error::invalid("the audio level extension id must be 1..=14 and the voice level 0..=127"));
    }
    let meter = Arc::new(VoiceMeter { ext_id, voice_level, packets: AtomicU64::new(0), voiced: AtomicU64::new(0) });
    ROUTES.write().get_or_insert_with(Routes::default).voice.insert(src, meter);
    rtc::set_packet_handler(src, forwarder());
    Ok(())
}

/// From now on `tap` also gets the RTP that the receiving track `src` receives (None: no
/// longer). One tap per track; a new one replaces the last.
pub fn set_tap(src: i32, tap: Option<Arc<dyn RtpTap>>) {
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    match tap {
        Some(t) => {
            r.taps.insert(src, t);
            drop(guard);
            rtc::set_packet_handler(src, forwarder());
        }
        None => {
            r.taps.remove(&src);
        }
    }
}

/// (packets with a level, packets loud enough for voice) of `src` since
/// [`set_voice_meter`]; None when it has no meter.
pub fn voice_activity(src: i32) -> Option<(u64, u64)> {
    let routes = ROUTES.read();
    let m = routes.as_ref()?.voice.get(&src)?;
    Some((m.packets.load(Ordering::Relaxed), m.voiced.load(Ordering::Relaxed)))
}

/// The receiving track `src` carries simulcast: RTP whose RID header extension (id
/// `rid_ext`) names its layer (r0, r1, r2), in `codec`, whose keyframes start layer
/// switches. From then on each destination of `src` gets the one layer [`select_layer`]
/// chose for it, and nothing before that.
pub fn set_simulcast(src: i32, rid_ext: u8, codec: RtpCodec) -> Result<()> {
    if rid_ext == 0 || !codec.is_video() {
        return Err(Error::invalid("simulcast needs a RID extension id (1..=255) and a video codec"));
    }
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    r.simulcast.insert(src, Arc::new(Mutex::new(Layers::new(rid_ext, codec))));
    drop(guard);
    rtc::set_packet_handler(src, forwarder());
    Ok(())
}

/// The layer of a simulcast source that goes out on the sending track `dst`: `rid` 0..=2
/// (or the nearest that flows), None for no video, as one stream with SSRC `out_ssrc`
/// (what `dst`'s m-section announces). A change takes effect at the new layer's next
/// keyframe, which is asked for at once.
pub fn select_layer(dst: i32, rid: Option<usize>, out_ssrc: u32) -> Result<()> {
    if rid.is_some_and(|i| i >= layers::LAYERS) || out_ssrc == 0 {
        return Err(Error::invalid("rid must be r0, r1 or r2 and the SSRC not 0"));
    }
    let mut guard = ROUTES.write();
    let r = guard.get_or_insert_with(Routes::default);
    match r.selection.get(&dst) {
        Some(sel) if sel.lock().out_ssrc == out_ssrc => sel.lock().want = rid,
        _ => {
            r.selection.insert(dst, Arc::new(Mutex::new(Selection::new(rid, out_ssrc))));
        }
    }
    Ok(())
}

/// The layer going out on `dst` now (None: none yet, or no video asked for).
pub fn forwarded_layer(dst: i32) -> Option<usize> {
    ROUTES.read().as_ref()?.selection.get(&dst)?.lock().current()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_voice_meter_counts_loud_packets() {
        let m = VoiceMeter { ext_id: 1, voice_level: 45, packets: AtomicU64::new(0), voiced: AtomicU64::new(0) };
        // RTP header with a one-byte extension block holding id 1 (audio level)
        let packet = |level: u8| {
            let mut p = vec![0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xBE, 0xDE, 0, 1];
            p.extend_from_slice(&[0x10, level, 0, 0]);
            p.extend_from_slice(&[1, 2, 3]);
            p
        };
        m.on_rtp(&packet(15));
        m.on_rtp(&packet(0x80 | 44));
        m.on_rtp(&packet(46));
        m.on_rtp(&packet(127));
        m.on_rtp(&[0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3]); // no extension: not counted
        m.on_rtp(&[0x90, 111]); // truncated
        assert_eq!((m.packets.load(Ordering::Relaxed), m.voiced.load(Ordering::Relaxed)), (4, 2));
    }

    #[test]
    fn remb_at_the_first_packet_then_once_a_second() {
        millis(Instant::now()); // the epoch comes first
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let b = Remb::new(2_500_000);
        assert_eq!(b.take_due(t0), Some(2_500_000));
        assert_eq!(b.take_due(t0 + ms(10)), None);
        assert_eq!(b.take_due(t0 + ms(990)), None);
        assert_eq!(b.take_due(t0 + ms(1000)), Some(2_500_000));
        assert_eq!(b.take_due(t0 + ms(1500)), None);
        // a new value goes out at the next packet (as set_bitrate does it)
        b.bps.store(1_000_000, Ordering::Relaxed);
        b.due_ms.store(0, Ordering::Relaxed);
        assert_eq!(b.take_due(t0 + ms(1600)), Some(1_000_000));
        // 0: none at all
        b.bps.store(0, Ordering::Relaxed);
        b.due_ms.store(0, Ordering::Relaxed);
        assert_eq!(b.take_due(t0 + ms(5000)), None);
        // after a pause in RTP the next packet gets one at once
        let b = Remb::new(1);
        assert!(b.take_due(t0).is_some());
        assert!(b.take_due(t0 + ms(60_000)).is_some());
    }
}
