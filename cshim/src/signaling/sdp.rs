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
}

pub fn media_sections(sdp: &str) -> Vec<MediaSection> {
    let mut out: Vec<MediaSection> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("m=") {
            let mut parts = rest.split_whitespace();
            let kind = parts.next().unwrap_or("").to_string();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            out.push(MediaSection { kind, port, mid: String::new(), direction: "sendrecv".into(), msid: None });
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
        } else if section.msid.is_none() {
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
}
