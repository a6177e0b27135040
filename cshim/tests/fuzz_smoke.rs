//! Every fuzz target (sora_shim::fuzz) over its seeds and a seeded mutation loop, on the
//! stable toolchain: a quick regression run for CI. The long, coverage-guided runs use
//! cargo-fuzz (cshim/fuzz, docs/fuzzing.md).
//!
//! FUZZ_SMOKE_ITERS sets the mutations per target (default 20000); FUZZ_WRITE_SEEDS=DIR
//! writes the seeds as DIR/<target>/seed-N, a starting corpus for cargo-fuzz.
use sora_shim::fuzz::TARGETS;
use sora_shim::media::rtp::rtcp;
use std::io::Write;

/// xorshift64*: deterministic, so a failure reproduces with the same iteration count.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'[', b'\\', b'\n', b'0', b'-'];

fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(len - i + 1);
                out.drain(i..i + n);
            }
            4 if len > 0 => out.truncate(rng.below(len)),
            5 if len > 0 => {
                // duplicate a slice (repetition finds length and nesting bugs)
                let i = rng.below(len);
                let n = rng.below((len - i).min(64) + 1);
                let piece = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, piece);
            }
            _ => {
                // splice with another seed
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(out.len() + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const OFFER_SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1234 cname:x\r\na=msid:s t\r\n\
a=candidate:1 1 UDP 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 98\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n\
a=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\na=rtcp-fb:96 nack pli\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\na=sctp-port:5000\r\n";

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let offer = serde_json::json!({
        "type": "offer", "sdp": OFFER_SDP, "connection_id": "C", "client_id": "c",
        "data_channel_signaling": true, "ignore_disconnect_websocket": false,
        "data_channels": [{"label": "#chat", "direction": "sendrecv", "compress": true}],
        "config": {"iceServers": [{"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u", "credential": "p"}],
                   "iceTransportPolicy": "relay"},
    })
    .to_string();
    let notify = r#"{"type":"notify","event_type":"connection.created","metadata":{"a":[1,2.5,null,true]}}"#;
    let vp8_key = [0x90u8, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
    let vp9 = [0xaau8, 0x80, 0x01, 0x18, 0x02, 0x80, 0x01, 0xe0, 0x01, 0x04, 0x00, 0x82];
    let rtp_packet = |pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]| {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    };
    let framed = |packets: &[Vec<u8>]| {
        let mut out = Vec::new();
        for p in packets {
            out.push(p.len().min(255) as u8);
            out.push(10);
            out.extend_from_slice(&p[..p.len().min(255)]);
        }
        out
    };
    match target {
        "signaling_json" => vec![offer.into_bytes(), notify.as_bytes().to_vec(), br#"{"type":"redirect","location":"ws://x"}"#.to_vec()],
        "sdp" => vec![OFFER_SDP.as_bytes().to_vec()],
        "rtp" => vec![
            framed(&[
                rtp_packet(96, 1, 0, false, &vp8_key),
                rtp_packet(96, 3, 0, true, &[0x00, 0x01, 0x02]),
                rtp_packet(96, 2, 0, false, &[0x00, 0x05]),
            ]),
            framed(&[rtp_packet(98, 10, 900, true, &vp9), rtp_packet(111, 7, 960, false, &[0xfc, 0xff, 0xfe])]),
        ],
        "rtcp" => {
            let rb = rtcp::ReportBlock::default();
            vec![
                [rtcp::build_sr(1, 2, 3, 4, 5, &[rb]), rtcp::build_sdes_cname(1, "cname")].concat(),
                [rtcp::build_rr(1, &[]), rtcp::build_nack(1, 2, &[5, 6, 9, 40])].concat(),
                [rtcp::build_pli(1, 2), rtcp::build_fir(1, 2, 3), rtcp::build_remb(1, 300_000, &[2, 3])].concat(),
                rtcp::build_bye(&[1, 2]),
                transport_cc_report(),
            ]
        }
        "vpx_descriptors" => vec![vp8_key.to_vec(), vp9.to_vec(), vec![0x10, 0x00]],
        "datachannel" => vec![
            [&[0u8][..], &zlib(notify.as_bytes())].concat(),
            [&[1u8][..], &zlib(&vec![b'a'; 100_000])].concat(),
            [&[1u8][..], notify.as_bytes()].concat(),
        ],
        other => panic!("no seeds for target {other}"),
    }
}

#[test]
fn every_target_survives_mutation() {
    let iters: usize = std::env::var("FUZZ_SMOKE_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let write_dir = std::env::var_os("FUZZ_WRITE_SEEDS").map(std::path::PathBuf::from);
    for &(name, target) in TARGETS {
        let seeds = seeds(name);
        if let Some(dir) = &write_dir {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(d.join(format!("seed-{i}")), s).unwrap();
            }
        }
        let mut rng = Rng(0x5eed_0000 ^ name.len() as u64 * 0x9e37_79b9_7f4a_7c15);
        for s in &seeds {
            target(s);
        }
        let mut current = seeds[0].clone();
        for i in 0..iters {
            // A random walk from a seed, restarted every 64 steps so inputs stay near valid.
            if i % 64 == 0 {
                current = seeds[rng.below(seeds.len())].clone();
            }
            current = mutate(&mut rng, &current, &seeds);
            if current.len() > 1 << 16 {
                current.truncate(1 << 16);
            }
            target(&current);
        }
        eprintln!("fuzz smoke: {name}: {} seeds + {iters} mutations clean", seeds.len());
    }
}

/// A transport-cc report of a few packets, one lost, one late (what the dev server sends).
fn transport_cc_report() -> Vec<u8> {
    use sora_shim::media::rtp::twcc::FeedbackRecorder;
    use std::time::{Duration, Instant};
    let t0 = Instant::now();
    let mut r = FeedbackRecorder::new();
    for (seq, ms) in [(10u16, 0u64), (11, 4), (13, 9), (12, 60), (14, 61)] {
        r.on_packet(seq, t0 + Duration::from_millis(ms));
    }
    r.poll(t0 + Duration::from_millis(200), 1, 2).expect("a report")
}
