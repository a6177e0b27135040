//! Fuzz entry points: every parser that reads bytes from the network, one function per
//! target, each taking arbitrary bytes and asserting nothing but "no panic, no hang".
//!
//! Two drivers run them: `cshim/fuzz/` (cargo-fuzz / libFuzzer, coverage guided, for long
//! runs; see docs/fuzzing.md) and `cshim/tests/fuzz_smoke.rs` (a seeded mutation loop on
//! the stable toolchain, run by `cargo test` in CI). Not part of the C ABI.
use crate::media::rtp::depacketize::{self, Vp8Descriptor, Vp9Descriptor};
use crate::media::rtp::jitter::RtpReceiver;
use crate::media::cc::estimator::{BandwidthEstimator, PacketResult};
use crate::media::rtp::{rtcp, twcc, RtpCodec};
use crate::signaling::{sdp, session, zlib};
use std::time::{Duration, Instant};

/// The targets by name (the libFuzzer binaries and the smoke test use the same list).
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("signaling_json", signaling_json),
    ("sdp", sdp_text),
    ("rtp", rtp),
    ("rtcp", rtcp_packets),
    ("vpx_descriptors", vpx_descriptors),
    ("datachannel", datachannel),
];

/// A server's signaling message: JSON, its type, and what the session reads from an offer
/// or re-offer (ICE servers, Opus parameters, data channels, the SDP).
pub fn signaling_json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok((v, _kind)) = session::parse_message(&text) else { return };
    session::offer_fields(&v);
    if let Some(s) = v.get("sdp").and_then(|s| s.as_str()) {
        sdp_text(s.as_bytes());
    }
}

/// Session descriptions: media sections, remote tracks, candidate splitting.
pub fn sdp_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let sections = sdp::media_sections(&text);
    for s in &sections {
        for name in ["opus", "VP8", "VP9", "H264", "H265", "AV1"] {
            let _ = s.format(name);
        }
    }
    let _ = sdp::remote_tracks(&text);
}

/// A stream of RTP packets into a receiver (jitter buffer, NACK, frame assembly) for each
/// codec, and the SFU's MID rewriting. Input: packets, each prefixed by a 1-byte length, and one byte of time step.
pub fn rtp(data: &[u8]) {
    for codec in [RtpCodec::Opus, RtpCodec::Vp8, RtpCodec::Vp9, RtpCodec::H264, RtpCodec::H265, RtpCodec::Av1] {
        let mut rx = RtpReceiver::new(codec, codec.default_clock_rate());
        let mut now = Instant::now();
        for (packet, step) in packets(data) {
            if let Some(p) = depacketize::parse_rtp(packet) {
                let _ = depacketize::payload_info(codec, &p.payload);
                let _ = (p.ssrc(), p.sequence_number(), p.timestamp(), p.marker(), p.extension(1));
            }
            if let Some(out) = crate::media::rtp::hdrext::replace_extension(packet, 4, b"12") {
                assert!(out.len() <= packet.len() + 8);
            }
            now += Duration::from_millis(u64::from(step));
            rx.push(packet, now);
            let _ = rx.pop_frames(now);
            let _ = rx.nack_packet(now, 1);
            let _ = rx.report_block(now);
        }
    }
}

/// RTCP compound packets as the receive and send pipelines and the SFU's forwarder read them.
pub fn rtcp_packets(data: &[u8]) {
    let _ = rtcp::is_rtcp(data);
    let (events, _) = rtcp::parse_compound_counted(data);
    assert!(events.len() <= data.len());
    if let Some((nacks, rest)) = rtcp::take_nacks_and_rembs(data) {
        assert!(rest.len() <= data.len());
        let _ = nacks;
    }
    // transport-cc reports (any sequence ranges, deltas and counts) into the estimator:
    // whatever they say, the target stays within its bounds
    let t0 = Instant::now();
    let mut est = BandwidthEstimator::new(1_000_000, 50_000, 2_500_000);
    for (n, fb) in twcc::parse_feedback(data).into_iter().enumerate() {
        let packets: Vec<PacketResult> = fb
            .packets
            .iter()
            .map(|&(seq, arrival_us)| PacketResult { sent: t0 + Duration::from_micros(u64::from(seq) * 1000), size: 1200, arrival_us })
            .collect();
        let target = est.on_feedback(&packets, t0 + Duration::from_millis(50 * n as u64));
        assert!((50_000..=2_500_000).contains(&target), "{target}");
    }
}

/// VP8 and VP9 payload descriptors.
pub fn vpx_descriptors(data: &[u8]) {
    if let Some((d, n)) = Vp8Descriptor::parse(data) {
        assert!(n < data.len());
        let _ = d.is_frame_begin();
    }
    if let Some((d, n)) = Vp9Descriptor::parse(data) {
        assert!(n <= data.len());
        let _ = (d.is_frame_begin(), d.is_keyframe_begin());
    }
}

/// A message on a compressed data channel: bounded inflation, then (for signaling labels)
/// the signaling parser. The first byte picks a small limit so the bound itself is hit.
pub fn datachannel(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let limit = if pick & 1 == 0 { 64 } else { zlib::MAX_INFLATED };
    if let Ok(out) = zlib::decompress(body, limit) {
        assert!(out.len() <= limit);
        signaling_json(&out);
    }
    signaling_json(body);
}

/// Splits `data` into (packet, time step) pairs: [len][step][len bytes]...
fn packets(mut data: &[u8]) -> impl Iterator<Item = (&[u8], u8)> {
    std::iter::from_fn(move || {
        let (&len, rest) = data.split_first()?;
        let (&step, rest) = rest.split_first()?;
        let n = (len as usize).min(rest.len());
        let (packet, rest) = rest.split_at(n);
        data = rest;
        Some((packet, step))
    })
}
