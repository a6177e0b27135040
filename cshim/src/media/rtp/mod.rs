//! RTP/RTCP: payloaders, depacketizers, jitter buffer, NACK, RTCP, pacing.
//!
//! libdatachannel is only our transport: a track delivers every decrypted RTP and RTCP
//! packet raw, and takes complete RTP/RTCP packets to send. Everything between an encoded
//! frame and those packets lives here, as plain, safe, thread-free building blocks that the
//! media pipelines drive with an explicit `now`:
//!
//! * [`packetize`] — [`RtpPacketizer`]: one encoded frame (Opus, VP8, VP9) → serialized RTP
//!   packets (VP8 descriptor with 15-bit PictureID, VP9 non-flexible mode with P/B/E flags
//!   and a scalability structure on keyframes), optional one-byte header extensions.
//! * [`depacketize`] — VP8/VP9 payload descriptor parsing, RTP header parsing.
//! * [`av1`] — AV1 payloads (OBU elements, aggregation header) ↔ temporal units.
//! * [`h264`] — H.264 payloads (RFC 6184: single NAL unit, STAP-A, FU-A) ↔ Annex B.
//! * [`h265`] — H.265 payloads (RFC 7798: single NAL unit, AP, FU) ↔ Annex B.
//! * [`jitter`] — [`RtpReceiver`]: per-SSRC reordering/de-duplicating frame assembler with
//!   loss handling (skip after a wait limit; video then drops delta frames until a keyframe).
//! * [`nack`] — [`NackGenerator`] (RFC 4585 generic NACK from sequence gaps) and the sender's
//!   [`PacketHistory`] for retransmission.
//! * [`rtcp`] — SR/RR/SDES/PLI/FIR/NACK/REMB/BYE building, [`parse_compound`] into
//!   [`RtcpEvent`]s, RFC 3550 reception statistics ([`ReceptionStats`]), [`is_rtcp`] demux.
//! * [`stats`] — per-stream counters shaped after the W3C `RTCInboundRtpStreamStats` /
//!   `RTCOutboundRtpStreamStats`.
//! * [`pacer`] — leaky-bucket [`Pacer`] with burst allowance and pacing factor.
//! * [`timing`] — NTP helpers, capture time → RTP timestamp ([`RtpClock`]), monotonic SR
//!   NTP ([`NtpClock`]) and remote RTP → sender NTP from SRs ([`timing::RemoteClock`]).
//! * [`seq`] — 16-bit sequence number unwrapping.
//! * [`audio_level`] — the `ssrc-audio-level` header extension (RFC 6464).
//!
//! Typical send path: encoder → [`RtpPacketizer::packetize`] → [`PacketHistory::store`] →
//! [`Pacer::enqueue`] → (at [`Pacer::next_wakeup`]) [`Pacer::poll`] → track send; count with
//! [`OutboundRtpStats::on_packet_sent`]; answer NACKs from the history and PLI/FIR with a
//! keyframe; every ~1 s send [`rtcp::build_sr`] + [`rtcp::build_sdes_cname`].
//! Typical receive path: track message → [`is_rtcp`]? [`parse_compound`] :
//! [`RtpReceiver::push`] → [`RtpReceiver::pop_frames`] → decoder; at
//! [`RtpReceiver::next_wakeup`] pop again and send [`RtpReceiver::nack_packet`]; while
//! [`RtpReceiver::keyframe_needed`] send a (rate-limited) [`rtcp::build_pli`]; report with
//! [`RtpReceiver::report_block`] in an RR (or in our SR).
//!
//! Wire formats of RTP headers and RTCP packets come from webrtc-rs' sans-IO `rtc-rtp` /
//! `rtc-rtcp` crates; the VP8/VP9 payload descriptors are written and parsed here (the
//! crates' VP9 payloader never sets the P bit, so every frame would look like a keyframe).

pub mod annexb;
pub mod audio_level;
pub mod av1;
pub mod depacketize;
pub mod h264;
pub mod h265;
pub mod hdrext;
pub mod jitter;
pub mod nack;
pub mod pacer;
pub mod packetize;
pub mod rtcp;
pub mod seq;
pub mod stats;
pub mod timing;
pub mod twcc;

pub use depacketize::{parse_rtp, ParsedRtp, Vp8Descriptor, Vp9Descriptor};
pub use jitter::{AssembledFrame, ReceiverCounters, RtpReceiver};
pub use nack::{NackGenerator, PacketHistory};
pub use pacer::Pacer;
pub use packetize::{FrameInfo, RtpPacketizer};
pub use rtcp::{is_rtcp, parse_compound, ReceptionStats, ReportBlock, RtcpEvent};
pub use seq::SeqUnwrapper;
pub use stats::{DecodeStats, InboundRtpStats, MediaSourceStats, OutboundRtpStats, RemoteOutboundStats, StreamInfo};
pub use timing::{NtpClock, RemoteClock, RtpClock};

/// The payload formats the RTP stack knows how to (de)packetize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RtpCodec {
    Opus,
    Vp8,
    Vp9,
    H264,
    H265,
    Av1,
}

impl RtpCodec {
    /// From an SDP encoding name or a Sora codec type, any case ("VP8", "h264", "OPUS").
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "OPUS" => RtpCodec::Opus,
            "VP8" => RtpCodec::Vp8,
            "VP9" => RtpCodec::Vp9,
            "H264" => RtpCodec::H264,
            "H265" => RtpCodec::H265,
            "AV1" => RtpCodec::Av1,
            _ => return None,
        })
    }

    pub fn is_video(self) -> bool {
        !matches!(self, RtpCodec::Opus)
    }

    /// The RTP clock rate the codec always uses in WebRTC (RFC 7587, RFC 7741, RFC 9628,
    /// RFC 6184, RFC 7798).
    /// H.264 and H.265: payloads become Annex B in the jitter buffer, and a frame is a
    /// keyframe when any of its packets carries a parameter set or random access slice.
    pub fn is_annexb(self) -> bool {
        matches!(self, RtpCodec::H264 | RtpCodec::H265)
    }

    pub fn default_clock_rate(self) -> u32 {
        match self {
            RtpCodec::Opus => 48_000,
            RtpCodec::Vp8 | RtpCodec::Vp9 | RtpCodec::H264 | RtpCodec::H265 | RtpCodec::Av1 => 90_000,
        }
    }
}

/// Size of the fixed RTP header (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;
