//! Native SFU forwarding between peer tracks (the dev server's media plane): RTP from a
//! source track goes out unchanged (SSRC kept) on every destination track; RTCP feedback
//! (PLI, FIR, RR) from a destination goes back to its source, and the source's own RTCP
//! (SR) goes to the destinations. Packets never leave native code.
//!
//! NACKs are answered here from a per-source packet cache, and only the sequence numbers
//! the cache lacks (lost before the SFU) go on to the sender. The sender cannot repair a
//! loss between the SFU and a receiver: its retransmission reuses the sequence number,
//! which the SFU's SRTP replay protection has already seen and drops.
use crate::error::Result;
use crate::media::rtp::nack::PacketHistory;
use crate::media::rtp::rtcp::{build_nack, take_nacks};
use crate::rtc::{self, PacketHandler};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Packets kept per source for NACKs: about 1 s of a 15 Mbps stream, and no older than 1 s.
const CACHE_PACKETS: usize = 2048;
const CACHE_AGE: Duration = Duration::from_secs(1);

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
        if let Some(dsts) = r.down.get(&track) {
            if !is_rtcp(packet) {
                if let Some(s) = r.ssrc.get(&track) {
                    s.store(u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]), Ordering::Relaxed);
                }
                if let Some(c) = r.cache.get(&track) {
                    let seq = u16::from_be_bytes([packet[2], packet[3]]);
                    c.lock().store(seq, packet.to_vec(), Instant::now());
                }
            }
            for &d in dsts {
                let _ = rtc::track_send(d, packet);
            }
        }
        if is_rtcp(packet) {
            if let Some(&src) = r.up.get(&track) {
                match take_nacks(packet) {
                    None => {
                        let _ = rtc::track_send(src, packet);
                    }
                    Some((nacks, mut upstream)) => {
                        for (sender_ssrc, media_ssrc, seqs) in nacks {
                            let missing = answer_nack(r.cache.get(&src), track, &seqs);
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

/// Resends the cached packets among `seqs` on `dst`; returns the sequence numbers not cached.
fn answer_nack(cache: Option<&Arc<Mutex<PacketHistory>>>, dst: i32, seqs: &[u16]) -> Vec<u16> {
    let Some(cache) = cache else { return seqs.to_vec() };
    let now = Instant::now();
    let mut cache = cache.lock();
    // No minimum interval: receivers pace their own repeated NACKs, and one cache serves
    // every receiver of the source.
    seqs.iter()
        .copied()
        .filter(|&s| match cache.get_for_retransmit(s, now, Duration::ZERO) {
            Some(p) => rtc::track_send(dst, &p).is_err(),
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
        for l in r.down.values_mut() {
            l.retain(|&d| d != track);
        }
        r.up.retain(|_, s| *s != track);
    }
    drop(guard);
    rtc::clear_packet_handler(track);
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
    rtc::track_send(src, &crate::media::rtp::rtcp::build_pli(1, ssrc))?;
    Ok(true)
}
