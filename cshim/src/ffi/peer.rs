//! Low-level peers (`sora_peer_*`): a libdatachannel peer connection with events on a queue.
use super::{arg_bytes, arg_ref, arg_str, guard, opt_str, out_ptr, out_string};
use super::events::SoraEventQueue;
use crate::error::Error;
use crate::peer::PeerHandle;
use std::ffi::c_char;

/// A WebRTC peer connection (opaque).
pub struct SoraPeer {
    pub(crate) inner: PeerHandle,
}

/// Creates a peer whose events go to `queue`. `config_json` (may be NULL):
/// {"bind_address","ice_servers":[...],"port_range":[a,b],"mtu","relay_only",
///  "disable_auto_negotiation" (default true)}. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_new(queue: *const SoraEventQueue, config_json: *const c_char, out: *mut *mut SoraPeer) -> i32 {
    guard(|| {
        let q = arg_ref(queue, "queue")?;
        let cfg = opt_str(config_json, "config_json")?.unwrap_or("");
        out_ptr(SoraPeer { inner: PeerHandle::new(q.inner.clone(), cfg)? }, out)
    })
}

/// The handle id that this peer's events carry in `source`.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_id(p: *const SoraPeer) -> u64 {
    p.as_ref().map_or(0, |p| p.inner.id)
}

/// Adds a media section given as SDP text (must contain a=mid); an existing mid is replaced.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_add_track(p: *const SoraPeer, media_sdp: *const c_char, out_track: *mut i32) -> i32 {
    guard(|| {
        let tr = arg_ref(p, "peer")?.inner.add_track(arg_str(media_sdp, "media_sdp")?)?;
        if let Some(o) = out_track.as_mut() {
            *o = tr;
        }
        Ok(0)
    })
}

/// Replaces the section of `track` by `media_sdp` (same kind and a=mid; e.g. a=inactive
/// without msid for a departed sender whose section must stay, being the BUNDLE tag) and
/// stops forwarding into it. `*out_track` receives the id that names the section from now
/// on; the old id is retired: removing, replacing or forwarding into it is refused.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_replace_track(
    p: *const SoraPeer,
    track: i32,
    media_sdp: *const c_char,
    out_track: *mut i32,
) -> i32 {
    guard(|| {
        let tr = arg_ref(p, "peer")?.inner.replace_track(track, arg_str(media_sdp, "media_sdp")?)?;
        if let Some(o) = out_track.as_mut() {
            *o = tr;
        }
        Ok(0)
    })
}

/// Removes a track: the next offer marks its section rejected (port 0).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_remove_track(p: *const SoraPeer, track: i32) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?.inner.remove_track(track)?;
        Ok(0)
    })
}

/// Creates a data channel. `options_json` (may be NULL): {"ordered","max_packet_life_time",
/// "max_retransmits","protocol","negotiated","stream"}.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_create_data_channel(
    p: *const SoraPeer,
    label: *const c_char,
    options_json: *const c_char,
    out_dc: *mut i32,
) -> i32 {
    guard(|| {
        let p = arg_ref(p, "peer")?;
        let dc = p.inner.create_data_channel(arg_str(label, "label")?, opt_str(options_json, "options_json")?)?;
        if let Some(o) = out_dc.as_mut() {
            *o = dc;
        }
        Ok(0)
    })
}

/// Sets the local description: `type` "offer", "answer" or NULL (implied by state).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_local_description(p: *const SoraPeer, type_: *const c_char) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?.inner.peer.set_local_description(opt_str(type_, "type")?)?;
        Ok(0)
    })
}

/// The current local description with the candidates gathered so far.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_local_description(p: *const SoraPeer, out_sdp: *mut *mut c_char) -> i32 {
    guard(|| out_string(arg_ref(p, "peer")?.inner.peer.local_description()?, out_sdp))
}

/// Applies a remote description (`type` "offer" or "answer").
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_remote_description(p: *const SoraPeer, sdp: *const c_char, type_: *const c_char) -> i32 {
    guard(|| {
        let t = arg_str(type_, "type")?;
        if t != "offer" && t != "answer" {
            return Err(Error::invalid("type must be \"offer\" or \"answer\""));
        }
        arg_ref(p, "peer")?.inner.peer.set_remote_description(arg_str(sdp, "sdp")?, t)?;
        Ok(0)
    })
}

/// Adds a trickled remote candidate (`mid` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_add_remote_candidate(p: *const SoraPeer, candidate: *const c_char, mid: *const c_char) -> i32 {
    guard(|| {
        let p = arg_ref(p, "peer")?;
        p.inner.peer.add_remote_candidate(arg_str(candidate, "candidate")?, opt_str(mid, "mid")?)?;
        Ok(0)
    })
}

/// Sends on a data channel; `binary` 0 sends a text message (must be UTF-8 without NUL).
/// SORA_ERR_CLOSED when not open, SORA_ERR_TOO_LARGE above the maximum message size.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_dc_send(p: *const SoraPeer, dc: i32, data: *const u8, len: usize, binary: i32) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?.inner.dc_send(dc, arg_bytes(data, len)?, binary != 0)?;
        Ok(0)
    })
}

/// Closes one data channel (SORA_EVENT_PEER_DC_CLOSED follows).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_dc_close(p: *const SoraPeer, dc: i32) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        crate::rtc::dc_close(dc);
        Ok(0)
    })
}

/// Closes the peer connection (state events follow); the handle stays valid.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_close(p: *const SoraPeer) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?.inner.peer.close();
        Ok(0)
    })
}

/// Forwards media natively from track `src_track` (a receiving track of `src`) to
/// `dst_track` (a sending track of `dst`): RTP goes down unchanged, RTCP feedback goes back
/// up. `enable` 0 stops it. Packets never reach the caller.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_forward_track(
    src: *const SoraPeer,
    src_track: i32,
    dst: *const SoraPeer,
    dst_track: i32,
    enable: i32,
) -> i32 {
    guard(|| {
        arg_ref(src, "src")?;
        arg_ref(dst, "dst")?.inner.check_current(dst_track)?;
        crate::forward::forward(src_track, dst_track, enable != 0)?;
        Ok(0)
    })
}

/// RTP forwarded onto `peer`'s sending track `track` carries `mid` (its m-section's mid)
/// in the MID header extension `ext_id` instead of the sender's own; "" stops that.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_track_mid(peer: *const SoraPeer, track: i32, ext_id: i32, mid: *const c_char) -> i32 {
    guard(|| {
        arg_ref(peer, "peer")?;
        let mid = arg_str(mid, "mid")?;
        let id = u8::try_from(ext_id).map_err(|_| crate::error::Error::invalid("ext_id must be 1..=255"))?;
        crate::forward::set_mid(track, id, mid)?;
        Ok(0)
    })
}

/// Sends a keyframe request (PLI) to the sender on the receiving track `track`. Returns 1
/// when sent, 0 when no media has arrived on it yet (its SSRC is unknown).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_request_keyframe(p: *const SoraPeer, track: i32) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        Ok(crate::forward::request_keyframe(track)? as i32)
    })
}

/// Announces `bps` (bits per second) to the sender on the receiving track `track` by REMB
/// (RTCP PSFB "goog-remb", sender SSRC 1, the SSRC list naming the sender's media SSRC):
/// one at its first (next) RTP packet, then about once a second while RTP arrives. A
/// libwebrtc sender takes it as its bandwidth estimate. 0 stops it; a new value replaces
/// the old and goes out at the next packet. Works with or without forwarding on `track`.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_track_bitrate(p: *const SoraPeer, track: i32, bps: u64) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        crate::forward::set_bitrate(track, bps)?;
        Ok(0)
    })
}

/// The receiving tracks `tracks[0..count]` (this peer's upstream: one transport) carry
/// transport-wide sequence numbers in header extension `ext_id` (1..=14): their arrivals
/// are reported to the sender in transport-cc feedback (RTCP RTPFB 15) about every 50 ms.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_transport_cc(p: *const SoraPeer, tracks: *const i32, count: usize, ext_id: u8) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        if tracks.is_null() || count == 0 || count > 64 {
            return Err(Error::invalid("tracks must hold 1 to 64 track ids"));
        }
        let tracks = std::slice::from_raw_parts(tracks, count);
        crate::forward::set_transport_cc(tracks, ext_id)?;
        Ok(0)
    })
}

/// The receiving audio track `track` carries the `ssrc-audio-level` header extension
/// (RFC 6464) as `ext_id`: from now on its packets are counted, those with a level of at
/// least -`voice_level` dBov (0..127) as voice (`sora_peer_track_voice_activity`). Nothing
/// is decoded. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_track_voice_meter(p: *const SoraPeer, track: i32, ext_id: u8, voice_level: u8) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        crate::forward::set_voice_meter(track, ext_id, voice_level)?;
        Ok(0)
    })
}

/// Packets of `track` that carried a level, and those loud enough for voice, since
/// `sora_peer_set_track_voice_meter` (SORA_ERR_NOT_FOUND without one). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_track_voice_activity(p: *const SoraPeer, track: i32, packets: *mut u64, voiced: *mut u64) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        if packets.is_null() || voiced.is_null() {
            return Err(Error::invalid("out pointers must not be NULL"));
        }
        let (n, v) = crate::forward::voice_activity(track)
            .ok_or_else(|| Error::new(crate::error::Kind::NotFound, format!("track {track} has no voice meter")))?;
        *packets = n;
        *voiced = v;
        Ok(0)
    })
}

/// The receiving track `track` carries simulcast: up to three layers, one SSRC each, whose
/// RTP names its rid ("r0", "r1", "r2") in the RID header extension `rid_ext_id`, coded
/// with `codec` ("VP8", "VP9", "AV1", "H264", "H265"). From then on each track it is
/// forwarded to gets only the layer `sora_peer_select_layer` chose for it (nothing before).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_set_track_simulcast(p: *const SoraPeer, track: i32, rid_ext_id: u8, codec: *const c_char) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        let name = arg_str(codec, "codec")?;
        let codec = crate::media::rtp::RtpCodec::from_name(name)
            .ok_or_else(|| Error::invalid(format!("unknown codec {name:?}")))?;
        crate::forward::set_simulcast(track, rid_ext_id, codec)?;
        Ok(0)
    })
}

/// Which layer of a simulcast source the sending track `track` forwards: `rid` "r0", "r1"
/// or "r2" (the highest layer at or below it that flows, else the lowest that flows) or
/// "none" (no video), as one stream with SSRC `ssrc` (what the track's m-section
/// announces), its sequence numbers and timestamps continuous across layer switches. A
/// switch waits for the new layer's keyframe, which is asked for at once. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_select_layer(p: *const SoraPeer, track: i32, rid: *const c_char, ssrc: u32) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        let rid = arg_str(rid, "rid")?;
        let layer = match rid {
            "none" => None,
            _ => Some(crate::forward::rid_index(rid.as_bytes())
                .ok_or_else(|| Error::invalid(format!("rid must be r0, r1, r2 or none, not {rid:?}")))?),
        };
        crate::forward::select_layer(track, layer, ssrc)?;
        Ok(0)
    })
}

/// The layer the sending track `track` forwards now: 0, 1 or 2 (r0, r1, r2), or 3 when it
/// forwards none (no layer chosen, "none", or waiting for the first keyframe).
#[no_mangle]
pub unsafe extern "C" fn sora_peer_forwarded_layer(p: *const SoraPeer, track: i32) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        Ok(crate::forward::forwarded_layer(track).map_or(3, |l| l as i32))
    })
}

/// RTP packets and bytes received on (a receiving track) or forwarded onto (a sending
/// track) `track`: the first call starts counting and reports 0. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_track_rtp_counters(p: *const SoraPeer, track: i32, packets: *mut u64, bytes: *mut u64) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?;
        if packets.is_null() || bytes.is_null() {
            return Err(Error::invalid("out pointers must not be NULL"));
        }
        let (n, b) = crate::forward::rtp_counters(track);
        *packets = n;
        *bytes = b;
        Ok(0)
    })
}

/// Frees the peer; no event for it is produced afterwards. Blocks while libdatachannel
/// finishes its callbacks, so never call it from a thread that must not wait. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_destroy(p: *mut SoraPeer) {
    if !p.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(p))));
    }
}
