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
//! Bandwidth estimation is per hop, as in an SFU: receivers' REMBs are not relayed, and a
//! source with a bitrate set ([`set_bitrate`]) gets the server's own REMB with that value,
//! at its first RTP packet and then about once a second while RTP flows. libwebrtc
//! senders take a REMB during their first 2 s (no loss reported yet) as their target at
//! once; without one they stay near their 300 kbps start value and grow slowly.
use crate::error::Result;
use crate::media::rtp::hdrext::replace_extension;
use crate::media::rtp::nack::PacketHistory;
use crate::media::rtp::rtcp::{build_nack, build_remb, take_nacks_and_rembs};
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
        }
        if let Some(dsts) = r.down.get(&track) {
            if rtp {
                if let Some(c) = r.cache.get(&track) {
                    let seq = u16::from_be_bytes([packet[2], packet[3]]);
                    c.lock().store(seq, packet.to_vec(), *now.get_or_insert_with(Instant::now));
                }
            }
            for &d in dsts {
                let out = if rtp { for_destination(r, d, packet) } else { Cow::Borrowed(packet) };
                if rtc::track_send(d, &out).is_ok() && rtp {
                    if let Some(c) = r.counters.get(&d) {
                        c.add(out.len());
                    }
                }
            }
        }
        if !rtp {
            if let Some(&src) = r.up.get(&track) {
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

/// `packet` (RTP from a source) as it goes out on `dst`: with `dst`'s own mid, when set.
fn for_destination<'a>(r: &Routes, dst: i32, packet: &'a [u8]) -> Cow<'a, [u8]> {
    match r.mid.get(&dst).and_then(|(id, mid)| replace_extension(packet, *id, mid)) {
        Some(rewritten) => Cow::Owned(rewritten),
        None => Cow::Borrowed(packet),
    }
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

/// Asks the sender on `src` for a keyframe (PLI). False when no media was seen yet.
pub fn request_keyframe(src: i32) -> Result<bool> {
    let ssrc = ROUTES
        .read()
        .as_ref()
        .and_then(|r| r.ssrc.get(&src).map(|s| s.load(Ordering::Relaxed)))
        .unwrap_or(0);
    if ssrc == 0 {
        return Ok(false);
    }
    rtc::track_send(src, &crate::media::rtp::rtcp::build_pli(SERVER_SSRC, ssrc))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
