//! Just enough SDP reading to learn the remote tracks Sora offers (kind, mid, msid, port).
//! Everything else about the SDP is libdatachannel's business.

#[derive(Debug, Clone, PartialEq)]
pub struct MediaSection {
    pub kind: String,
    pub port: u16,
    pub mid: String,
    pub direction: String,
    /// (stream id, track id) from `a=msid:`.
    pub msid: Option<(String, String)>,
    /// Payload formats in offer order.
    pub formats: Vec<Format>,
    /// SSRCs announced with `a=ssrc:` (first = media SSRC).
    pub ssrcs: Vec<u32>,
    /// `a=simulcast:recv`: the layers the offerer takes (rid, paused with `~`), in order.
    pub simulcast_recv: Vec<(String, bool)>,
    /// `a=extmap:` (id, URI).
    pub extmaps: Vec<(u8, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Format {
    pub pt: u8,
    /// Encoding name as written (e.g. "VP8", "opus").
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
    pub fmtp: Option<String>,
    pub rtcp_fb: Vec<String>,
}

impl Format {
    /// The value of fmtp parameter `key` ("profile-id", "packetization-mode"...).
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| kv.trim().split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }
}

impl MediaSection {
    /// The id of the header extension `uri`, if the section maps it.
    pub fn extmap_id(&self, uri: &str) -> Option<u8> {
        self.extmaps.iter().find(|(_, u)| u == uri).map(|(id, _)| *id)
    }

    /// The first format whose encoding name matches `name` (case-insensitively).
    pub fn format(&self, name: &str) -> Option<&Format> {
        self.formats.iter().find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

pub fn media_sections(sdp: &str) -> Vec<MediaSection> {
    let mut out: Vec<MediaSection> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split_whitespace();
            let kind = parts.next().unwrap_or("").to_string();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            out.push(MediaSection {
                kind,
                port,
                mid: String::new(),
                direction: "sendrecv".into(),
                msid: None,
                formats: Vec::new(),
                ssrcs: Vec::new(),
                simulcast_recv: Vec::new(),
                extmaps: Vec::new(),
            });
            continue;
        }
        let Some(section) = out.last_mut() else { continue };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            section.mid = mid.to_string();
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            let mut it = msid.split_whitespace();
            let stream = it.next().unwrap_or("").to_string();
            let track = it.next().unwrap_or("").to_string();
            section.msid = Some((stream, track));
        } else if matches!(line, "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive") {
            section.direction = line[2..].to_string();
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            if let Some(f) = parse_rtpmap(rest) {
                section.formats.push(f);
            }
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            if let Some((pt, params)) = split_pt(rest) {
                if let Some(f) = section.formats.iter_mut().find(|f| f.pt == pt) {
                    f.fmtp = Some(params.to_string());
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=rtcp-fb:") {
            if let Some((pt, fb)) = split_pt(rest) {
                if let Some(f) = section.formats.iter_mut().find(|f| f.pt == pt) {
                    f.rtcp_fb.push(fb.to_string());
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=simulcast:") {
            section.simulcast_recv = parse_simulcast_recv(rest);
        } else if let Some(rest) = line.strip_prefix("a=extmap:") {
            let mut parts = rest.split_whitespace();
            let id = parts.next().and_then(|i| i.split('/').next()).and_then(|i| i.parse().ok());
            if let (Some(id), Some(uri)) = (id, parts.next()) {
                section.extmaps.push((id, uri.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("a=ssrc:") {
            if let Some(ssrc) = rest.split_whitespace().next().and_then(|x| x.parse().ok()) {
                if !section.ssrcs.contains(&ssrc) {
                    section.ssrcs.push(ssrc);
                }
            }
        }
        if section.msid.is_none() {
            // Plan-B style "a=ssrc:N msid:stream track" also names the stream.
            if let Some(pos) = line.find(" msid:").filter(|_| line.starts_with("a=ssrc:")) {
                let mut it = line[pos + 6..].split_whitespace();
                if let (Some(s), Some(t)) = (it.next(), it.next()) {
                    section.msid = Some((s.to_string(), t.to_string()));
                }
            }
        }
    }
    out
}

/// The recv part of an `a=simulcast:` value (RFC 8853): each stream's first alternative,
/// `~` marking a paused one. Sora offers `recv r0;r1;r2`.
fn parse_simulcast_recv(value: &str) -> Vec<(String, bool)> {
    let mut words = value.split_whitespace();
    while let Some(dir) = words.next() {
        let list = words.next().unwrap_or("");
        if dir == "recv" {
            return list
                .split(';')
                .filter_map(|stream| stream.split(',').next())
                .filter(|rid| !rid.is_empty() && *rid != "~")
                .map(|rid| match rid.strip_prefix('~') {
                    Some(r) => (r.to_string(), true),
                    None => (rid.to_string(), false),
                })
                .collect();
        }
    }
    Vec::new()
}

fn split_pt(rest: &str) -> Option<(u8, &str)> {
    let (pt, tail) = rest.split_once(' ')?;
    Some((pt.parse().ok()?, tail.trim()))
}

fn parse_rtpmap(rest: &str) -> Option<Format> {
    let (pt, enc) = split_pt(rest)?;
    let mut parts = enc.split('/');
    let name = parts.next()?.to_string();
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = parts.next().and_then(|c| c.parse().ok());
    Some(Format { pt, name, clock_rate, channels, fmtp: None, rtcp_fb: Vec::new() })
}

/// What we send on an upstream m-section the offer assigned to us.
pub struct Upstream<'a> {
    pub mid: &'a str,
    pub kind: &'a str,
    pub format: &'a Format,
    /// fmtp we want instead of the offer's (e.g. Opus stereo/bitrate), if any.
    pub fmtp: Option<String>,
    pub ssrc: u32,
    pub cname: &'a str,
    pub stream_id: &'a str,
    pub track_id: &'a str,
    /// Simulcast layers sent instead of one stream.
    pub simulcast: Option<&'a SimulcastSend>,
    /// Header extensions (id, URI) every packet of ours may carry (e.g. transport-cc).
    pub extmaps: &'a [(u8, &'a str)],
}

/// Our answer to an offer that takes simulcast: one SSRC per layer, each packet naming its
/// layer in the RID header extension (and its m-section in the MID one).
pub struct SimulcastSend {
    /// (rid, paused, SSRC) in the offer's order.
    pub layers: Vec<(String, bool, u32)>,
    pub mid_ext: u8,
    pub rid_ext: u8,
}

/// The full m-section text of our sending side for `rtcAddTrack` (replaces the
/// reciprocated section of the same mid in the answer).
pub fn upstream_section(u: &Upstream) -> String {
    let f = u.format;
    let mut s = format!("m={} 9 UDP/TLS/RTP/SAVPF {}\r\n", u.kind, f.pt);
    s += "c=IN IP4 0.0.0.0\r\n";
    s += &format!("a=mid:{}\r\n", u.mid);
    s += "a=sendonly\r\n";
    s += &format!("a=msid:{} {}\r\n", u.stream_id, u.track_id);
    s += "a=rtcp-mux\r\n";
    match f.channels {
        Some(ch) => s += &format!("a=rtpmap:{} {}/{}/{}\r\n", f.pt, f.name, f.clock_rate, ch),
        None => s += &format!("a=rtpmap:{} {}/{}\r\n", f.pt, f.name, f.clock_rate),
    }
    if let Some(fmtp) = u.fmtp.as_ref().or(f.fmtp.as_ref()) {
        s += &format!("a=fmtp:{} {}\r\n", f.pt, fmtp);
    }
    for fb in &f.rtcp_fb {
        s += &format!("a=rtcp-fb:{} {}\r\n", f.pt, fb);
    }
    for (id, uri) in u.extmaps {
        s += &format!("a=extmap:{id} {uri}\r\n");
    }
    let ssrcs = match u.simulcast {
        None => vec![u.ssrc],
        Some(sim) => {
            s += &format!("a=extmap:{} {MID_URI}\r\na=extmap:{} {RID_URI}\r\n", sim.mid_ext, sim.rid_ext);
            for (rid, _, _) in &sim.layers {
                s += &format!("a=rid:{rid} send\r\n");
            }
            let list: Vec<String> = sim.layers.iter().map(|(rid, paused, _)| format!("{}{rid}", if *paused { "~" } else { "" })).collect();
            s += &format!("a=simulcast:send {}\r\n", list.join(";"));
            // For libdatachannel, which gives a track the RTCP that names its SSRCs; the
            // answer sent leaves them out (`without_ssrcs`), as libwebrtc's does.
            sim.layers.iter().map(|(_, _, ssrc)| *ssrc).collect()
        }
    };
    for ssrc in ssrcs {
        s += &format!("a=ssrc:{} cname:{}\r\n", ssrc, u.cname);
        s += &format!("a=ssrc:{} msid:{} {}\r\n", ssrc, u.stream_id, u.track_id);
    }
    s
}

pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// `sdp` without the `a=ssrc` lines of section `mid`: a simulcast sender's layers are told
/// by their RIDs (what libwebrtc answers, and what Sora expects).
pub fn without_ssrcs(sdp: &str, mid: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut in_section = false;
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end();
        if text.starts_with("m=") {
            in_section = false;
        } else if let Some(m) = text.strip_prefix("a=mid:") {
            in_section = m == mid;
        }
        if in_section && (text.starts_with("a=ssrc:") || text.starts_with("a=ssrc-group:")) {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Remote media the offerer sends to us: live audio/video sections it sends on.
pub fn remote_tracks(sdp: &str) -> Vec<MediaSection> {
    media_sections(sdp)
        .into_iter()
        .filter(|m| (m.kind == "audio" || m.kind == "video") && m.port != 0)
        .filter(|m| m.direction == "sendonly" || m.direction == "sendrecv")
        .filter(|m| m.msid.is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn finds_remote_tracks() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\na=msid:CONN track1\r\n\
                   m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=sendonly\r\na=msid:GONE t\r\n";
        let t = remote_tracks(sdp);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].mid, "2");
        assert_eq!(t[0].msid, Some(("CONN".into(), "track1".into())));
    }

    #[test]
    fn reads_formats_and_builds_upstream() {
        let sdp = "m=video 9 UDP/TLS/RTP/SAVPF 96 98\r\na=mid:1\r\na=recvonly\r\n\
                   a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
                   a=rtpmap:98 VP9/90000\r\na=fmtp:98 profile-id=0\r\na=ssrc:42 cname:x\r\n";
        let m = &media_sections(sdp)[0];
        assert_eq!(m.formats.len(), 2);
        assert_eq!(m.ssrcs, vec![42]);
        let vp9 = m.format("vp9").unwrap();
        assert_eq!((vp9.pt, vp9.fmtp.as_deref()), (98, Some("profile-id=0")));
        assert_eq!((vp9.fmtp_param("profile-id"), vp9.fmtp_param("profile")), (Some("0"), None));
        let text = upstream_section(&Upstream {
            mid: "1", kind: "video", format: m.format("VP8").unwrap(), fmtp: None,
            ssrc: 7, cname: "c", stream_id: "S", track_id: "T", simulcast: None, extmaps: &[],
        });
        assert!(text.contains("a=sendonly\r\n") && text.contains("a=rtcp-fb:96 nack pli\r\n"));
        assert!(text.contains("a=ssrc:7 cname:c\r\n") && text.starts_with("m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"));
    }

    #[test]
    fn reads_a_simulcast_offer_and_answers_with_layers() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ssrc:1 cname:a\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
                   a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
                   a=extmap:10/recvonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
                   a=rtpmap:96 VP8/90000\r\na=rid:r0 recv\r\na=rid:r1 recv\r\na=rid:r2 recv\r\n\
                   a=simulcast:recv r0;~r1;r2,r3\r\n";
        let m = &media_sections(sdp)[1];
        assert_eq!(m.simulcast_recv, vec![("r0".into(), false), ("r1".into(), true), ("r2".into(), false)]);
        assert_eq!((m.extmap_id(MID_URI), m.extmap_id(RID_URI)), (Some(4), Some(10)));
        assert!(media_sections(sdp)[0].simulcast_recv.is_empty());
        assert!(parse_simulcast_recv("send a;b").is_empty());
        let sim = SimulcastSend { layers: vec![("r0".into(), false, 5), ("r1".into(), true, 6)], mid_ext: 4, rid_ext: 10 };
        let text = upstream_section(&Upstream {
            mid: "1", kind: "video", format: m.format("VP8").unwrap(), fmtp: None,
            ssrc: 7, cname: "c", stream_id: "S", track_id: "T", simulcast: Some(&sim), extmaps: &[(3, "x")],
        });
        for line in ["a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "a=extmap:3 x", "a=rid:r0 send", "a=rid:r1 send",
                     "a=simulcast:send r0;~r1", "a=ssrc:5 cname:c", "a=ssrc:6 cname:c"] {
            assert!(text.contains(&format!("{line}\r\n")), "{line} missing from {text}");
        }
        assert!(!text.contains("a=ssrc:7"));
        let answer = format!("v=0\r\nm=audio 9 X 111\r\na=mid:0\r\na=ssrc:1 cname:a\r\n{text}m=application 9 X\r\na=mid:2\r\n");
        let stripped = without_ssrcs(&answer, "1");
        assert!(stripped.contains("a=ssrc:1 cname:a\r\n") && !stripped.contains("a=ssrc:5") && stripped.contains("a=rid:r1 send\r\n"));
        assert!(stripped.ends_with("a=mid:2\r\n"));
    }
}
