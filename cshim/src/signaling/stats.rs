//! `get_stats()`: a W3C webrtc-stats report of one connection, with the types, field names
//! and cross-referencing ids (`transportId`, `codecId`, `mediaSourceId`, `remoteId`,
//! `localId`, certificate ids) that libwebrtc, and so the official SDK, report. Every value
//! is measured by the pipelines or read from the transport; fields that cannot be measured
//! here are left out rather than filled with constants (tests/test_stats.py lists them).
use crate::connection::Shared;
use crate::rtc;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// The one transport (BUNDLE): every RTP stream and data channel rides on it.
const TRANSPORT: &str = "T01";

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

/// An RTP or media-source stats id as libwebrtc builds it: prefix, A/V, then the SSRC
/// (RTP) or the source's index (media-source).
fn stream_id(prefix: &str, video: bool, n: impl std::fmt::Display) -> String {
    format!("{prefix}{}{n}", if video { "V" } else { "A" })
}

/// `codec` stats id as libwebrtc builds it: direction, transport, payload type, fmtp.
fn codec_id(inbound: bool, info: &crate::media::rtp::StreamInfo) -> String {
    let dir = if inbound { "CI" } else { "CO" };
    match &info.fmtp {
        Some(f) if !f.is_empty() => format!("{dir}{TRANSPORT}_{}_{f}", info.payload_type),
        _ => format!("{dir}{TRANSPORT}_{}", info.payload_type),
    }
}

fn codec_entry(id: &str, info: &crate::media::rtp::StreamInfo, ts: f64) -> Value {
    let mut c = json!({
        "id": id, "type": "codec", "timestamp": ts, "transportId": TRANSPORT,
        "payloadType": info.payload_type, "mimeType": info.mime, "clockRate": info.clock_rate,
    });
    if info.channels > 0 {
        c["channels"] = info.channels.into();
    }
    if let Some(f) = info.fmtp.as_ref().filter(|f| !f.is_empty()) {
        c["sdpFmtpLine"] = f.clone().into();
    }
    c
}

/// An ICE candidate line ("candidate:1 1 UDP 2122317823 127.0.0.1 49152 typ host") as the
/// W3C `RTCIceCandidateStats` fields.
fn candidate_entry(id: &str, line: &str, remote: bool, ts: f64) -> Value {
    let text = line.trim().trim_start_matches("a=").trim_start_matches("candidate:");
    let f: Vec<&str> = text.split_whitespace().collect();
    let mut c = json!({
        "id": id, "type": if remote { "remote-candidate" } else { "local-candidate" },
        "timestamp": ts, "transportId": TRANSPORT, "isRemote": remote, "candidate": line,
    });
    if f.len() >= 8 && f[6] == "typ" {
        c["foundation"] = f[0].into();
        c["protocol"] = f[2].to_ascii_lowercase().into();
        c["priority"] = f[3].parse::<u64>().map(Value::from).unwrap_or(Value::Null);
        c["address"] = f[4].into();
        c["ip"] = f[4].into();
        c["port"] = f[5].parse::<u16>().map(Value::from).unwrap_or(Value::Null);
        c["candidateType"] = f[7].into();
        if let Some(i) = f.iter().position(|w| *w == "ufrag") {
            if let Some(u) = f.get(i + 1) {
                c["usernameFragment"] = (*u).into();
            }
        }
    }
    c
}

/// The `a=fingerprint` of a session description: (algorithm, fingerprint).
fn fingerprint(sdp: &str) -> Option<(String, String)> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=fingerprint:")?;
        let (alg, fp) = rest.split_once(' ')?;
        Some((alg.to_string(), fp.trim().to_string()))
    })
}

fn sdp_attr(sdp: &str, name: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
}

pub fn report(shared: &Shared) -> Value {
    let st = shared.state.lock();
    let ts = now_ms();
    let mut reports: Vec<Value> = Vec::new();
    let mut codecs: BTreeMap<String, Value> = BTreeMap::new();
    let opened = st.channels.values().filter(|c| c.open).count();
    reports.push(json!({
        "id": "P", "type": "peer-connection", "timestamp": ts,
        "dataChannelsOpened": st.channels.len(), "dataChannelsClosed": st.channels.len() - opened,
    }));
    let mut labels: Vec<_> = st.channels.iter().collect();
    labels.sort_by_key(|(l, _)| l.as_str());
    for (label, ch) in labels {
        reports.push(json!({
            "id": format!("D{}", ch.dc), "type": "data-channel", "timestamp": ts,
            "label": label, "protocol": "", "dataChannelIdentifier": ch.dc,
            "state": if ch.open { "open" } else { "closed" },
            "messagesSent": ch.messages_sent, "bytesSent": ch.bytes_sent,
            "messagesReceived": ch.messages_received, "bytesReceived": ch.bytes_received,
            // sora_ffi's own field (not W3C): messages received but dropped (bad zlib, or
            // inflating past zlib::MAX_INFLATED).
            "messagesDropped": ch.messages_dropped,
        }));
    }
    for (n, s) in st.senders.iter().enumerate() {
        let o = s.stats.lock();
        let video = s.kind == "video";
        let id = stream_id("OT01", video, o.ssrc);
        let cid = codec_id(false, &s.info);
        codecs.entry(cid.clone()).or_insert_with(|| codec_entry(&cid, &s.info, ts));
        let source_id = stream_id("S", video, n + 1);
        let mut r = json!({
            "id": id, "type": "outbound-rtp", "timestamp": ts, "kind": s.kind, "ssrc": o.ssrc,
            "transportId": TRANSPORT, "codecId": cid, "mediaSourceId": source_id, "mid": s.info.mid,
            "active": s.active, "packetsSent": o.packets_sent, "bytesSent": o.bytes_sent,
            "headerBytesSent": o.header_bytes_sent, "retransmittedPacketsSent": o.retransmitted_packets_sent,
            "retransmittedBytesSent": o.retransmitted_bytes_sent, "nackCount": o.nack_count,
            "targetBitrate": o.target_bitrate, "totalPacketSendDelay": o.total_packet_send_delay,
        });
        let m = r.as_object_mut().expect("object");
        let mut source = json!({
            "id": source_id, "type": "media-source", "timestamp": ts, "kind": s.kind,
            "trackIdentifier": s.kind,
        });
        if video {
            // (no engine: an encoded source's frames go out as they are)
            let engine = s.encoder_implementation.as_deref().unwrap_or("passthrough");
            m.insert("encoderImplementation".into(), json!(engine));
            if let Some(rid) = &s.rid {
                m.insert("rid".into(), json!(rid));
            }
            if s.encoder_implementation.is_some() {
                // what our encoders make: one spatial layer, and one temporal layer unless a
                // simulcast VP8 layer was asked for more
                m.insert("scalabilityMode".into(), json!(format!("L1T{}", s.temporal_layers)));
            }
            for (k, v) in [
                ("pliCount", json!(o.pli_count)), ("firCount", json!(o.fir_count)),
                ("framesEncoded", json!(o.frames_encoded)), ("keyFramesEncoded", json!(o.key_frames_encoded)),
                ("framesSent", json!(o.frames_sent)), ("frameWidth", json!(o.frame_width)),
                ("frameHeight", json!(o.frame_height)), ("totalEncodeTime", json!(o.total_encode_time)),
                ("qualityLimitationReason", json!(if o.cpu_limited { "cpu" } else if o.bandwidth_limited { "bandwidth" } else { "none" })),
                ("qualityLimitationResolutionChanges", json!(o.quality_limitation_resolution_changes)),
                ("qualityLimitationDurations",
                 json!({"other": 0.0, "cpu": o.cpu_limited_time, "bandwidth": o.bandwidth_limited_time, "none": o.unlimited_time})),
            ] {
                m.insert(k.into(), v);
            }
            if let Some(fps) = o.frames_per_second {
                m.insert("framesPerSecond".into(), json!(fps));
            }
            source["width"] = o.source.width.into();
            source["height"] = o.source.height.into();
            source["frames"] = o.source.frames.into();
            if let Some(fps) = o.source.frames_per_second {
                source["framesPerSecond"] = fps.into();
            }
        } else {
            source["audioLevel"] = o.source.audio_level.into();
            source["totalAudioEnergy"] = o.source.total_audio_energy.into();
            source["totalSamplesDuration"] = o.source.total_samples_duration.into();
        }
        if let Some(remote) = &o.remote {
            let rid = stream_id("RI01", video, o.ssrc);
            m.insert("remoteId".into(), json!(rid));
            let mut ri = json!({
                "id": rid, "type": "remote-inbound-rtp", "timestamp": ts, "kind": s.kind, "ssrc": o.ssrc,
                "transportId": TRANSPORT, "codecId": cid, "localId": id,
                "packetsLost": remote.packets_lost, "fractionLost": remote.fraction_lost, "jitter": remote.jitter,
                "totalRoundTripTime": remote.total_round_trip_time,
                "roundTripTimeMeasurements": remote.round_trip_time_measurements,
            });
            if let Some(rtt) = remote.round_trip_time {
                ri["roundTripTime"] = rtt.into();
            }
            reports.push(r);
            reports.push(ri);
        } else {
            reports.push(r);
        }
        reports.push(source);
    }
    let mut recv: Vec<_> = st.receivers.iter().collect();
    recv.sort_by_key(|(id, _)| **id);
    for (tid, r) in recv {
        let i = r.shared.stats.lock();
        let d = r.shared.decode.lock().clone();
        let video = r.shared.kind == "video";
        let track = st.tracks.get(tid);
        let id = stream_id("IT01", video, i.ssrc);
        let cid = codec_id(true, &r.shared.info);
        codecs.entry(cid.clone()).or_insert_with(|| codec_entry(&cid, &r.shared.info, ts));
        let mut e = json!({
            "id": id, "type": "inbound-rtp", "timestamp": ts, "kind": r.shared.kind, "ssrc": i.ssrc,
            "transportId": TRANSPORT, "codecId": cid,
            "trackIdentifier": track.map(|t| t.track_id.clone()), "mid": track.map(|t| t.mid.clone()),
            "packetsReceived": i.packets_received, "bytesReceived": i.bytes_received,
            "headerBytesReceived": i.header_bytes_received, "packetsLost": i.packets_lost,
            "jitter": i.jitter, "packetsDiscarded": i.packets_discarded, "nackCount": i.nack_count,
            "jitterBufferDelay": i.jitter_buffer_delay, "jitterBufferEmittedCount": i.jitter_buffer_emitted_count,
        });
        let m = e.as_object_mut().expect("object");
        if let Some(t) = i.last_packet_received_timestamp {
            m.insert("lastPacketReceivedTimestamp".into(), json!(t * 1000.0));
        }
        if video {
            for (k, v) in [
                ("decoderImplementation", json!(r.shared.decoder_implementation)), ("pliCount", json!(i.pli_count)),
                ("firCount", json!(i.fir_count)), ("framesReceived", json!(i.frames_received)),
                ("framesDropped", json!(i.frames_dropped)), ("framesDecoded", json!(d.frames_decoded)),
                ("keyFramesDecoded", json!(d.key_frames_decoded)), ("frameWidth", json!(d.frame_width)),
                ("frameHeight", json!(d.frame_height)), ("totalDecodeTime", json!(d.total_decode_time)),
            ] {
                m.insert(k.into(), v);
            }
            if let Some(fps) = d.frames_per_second {
                m.insert("framesPerSecond".into(), json!(fps));
            }
        } else {
            for (k, v) in [
                ("totalSamplesReceived", json!(d.total_samples_received)),
                ("concealedSamples", json!(d.concealed_samples)),
                ("concealmentEvents", json!(d.concealment_events)),
            ] {
                m.insert(k.into(), v);
            }
            // The level: from the packets' audio level extension when it is negotiated (it
            // is there whether or not anything decodes), else from the decoded audio.
            let levels = r.shared.levels.lock().clone();
            let (level, energy, duration) = match &levels {
                Some(l) => (l.audio_level, l.total_audio_energy, l.total_samples_duration),
                None => (d.audio_level, d.total_audio_energy, d.total_samples_duration),
            };
            for (k, v) in [
                ("audioLevel", json!(level)), ("totalAudioEnergy", json!(energy)),
                ("totalSamplesDuration", json!(duration)),
            ] {
                m.insert(k.into(), v);
            }
        }
        if let Some(ro) = &d.remote {
            let rid = stream_id("RO01", video, i.ssrc);
            m.insert("remoteId".into(), json!(rid));
            reports.push(e);
            reports.push(json!({
                "id": rid, "type": "remote-outbound-rtp", "timestamp": ts, "kind": r.shared.kind,
                "ssrc": i.ssrc, "transportId": TRANSPORT, "codecId": cid, "localId": id,
                "packetsSent": ro.packets_sent, "bytesSent": ro.bytes_sent,
                "remoteTimestamp": ro.remote_timestamp, "reportsSent": ro.reports_sent,
            }));
        } else {
            reports.push(e);
        }
    }
    reports.extend(codecs.into_values());
    if let Some(pc) = st.pc {
        transport_entries(pc, ts, &mut reports);
    }
    if let Some(cc) = &st.cc {
        // libwebrtc reports its bandwidth estimate on the selected pair
        if let Some(pair) = reports.iter_mut().find(|r| r["type"] == "candidate-pair") {
            pair["availableOutgoingBitrate"] = json!(cc.target_bps());
        }
    }
    Value::Array(reports)
}

/// transport, candidate-pair, candidates and certificates, read from libdatachannel.
fn transport_entries(pc: i32, ts: f64, reports: &mut Vec<Value>) {
    let local = rtc::description(pc, true);
    let remote = rtc::description(pc, false);
    let mut t = Map::new();
    t.insert("id".into(), json!(TRANSPORT));
    t.insert("type".into(), json!("transport"));
    t.insert("timestamp".into(), json!(ts));
    // We answer a=setup:passive (docs/design.md): DTLS server, ICE controlled.
    if let Some(setup) = local.as_deref().and_then(|s| sdp_attr(s, "a=setup:")) {
        t.insert("dtlsRole".into(), json!(if setup == "passive" { "server" } else { "client" }));
        t.insert("iceRole".into(), json!("controlled"));
    }
    if let Some(ufrag) = local.as_deref().and_then(|s| sdp_attr(s, "a=ice-ufrag:")) {
        t.insert("iceLocalUsernameFragment".into(), json!(ufrag));
    }
    for (sdp, key, prefix) in [(&local, "localCertificateId", "CFL"), (&remote, "remoteCertificateId", "CFR")] {
        if let Some((alg, fp)) = sdp.as_deref().and_then(fingerprint) {
            let cid = format!("{prefix}{fp}");
            t.insert(key.into(), json!(cid));
            reports.push(json!({
                "id": cid, "type": "certificate", "timestamp": ts, "fingerprint": fp, "fingerprintAlgorithm": alg,
            }));
        }
    }
    match rtc::selected_pair(pc) {
        Some((local_c, remote_c)) => {
            t.insert("selectedCandidatePairId".into(), json!("CP"));
            t.insert("iceState".into(), json!("connected"));
            t.insert("dtlsState".into(), json!("connected"));
            reports.push(json!({
                "id": "CP", "type": "candidate-pair", "timestamp": ts, "state": "succeeded", "nominated": true,
                "localCandidateId": "CL", "remoteCandidateId": "CR", "transportId": TRANSPORT,
            }));
            reports.push(candidate_entry("CL", &local_c, false, ts));
            reports.push(candidate_entry("CR", &remote_c, true, ts));
        }
        None => {
            t.insert("iceState".into(), json!("new"));
            t.insert("dtlsState".into(), json!("new"));
        }
    }
    reports.push(Value::Object(t));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_lines_become_fields() {
        let c = candidate_entry("CL", "a=candidate:1 1 UDP 2122317823 127.0.0.1 49152 typ host", false, 0.0);
        assert_eq!(c["address"], "127.0.0.1");
        assert_eq!(c["port"], 49152);
        assert_eq!(c["protocol"], "udp");
        assert_eq!(c["candidateType"], "host");
        assert_eq!(c["priority"], 2122317823u64);
        let odd = candidate_entry("CR", "garbage", true, 0.0);
        assert_eq!(odd["isRemote"], true);
        assert!(odd.get("address").is_none());
    }

    #[test]
    fn fingerprints_and_codec_ids() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AB:CD\r\na=setup:passive\r\n";
        assert_eq!(fingerprint(sdp), Some(("sha-256".into(), "AB:CD".into())));
        let info = crate::media::rtp::StreamInfo {
            payload_type: 111, fmtp: Some("minptime=10;useinbandfec=1".into()), ..Default::default()
        };
        assert_eq!(codec_id(false, &info), "COT01_111_minptime=10;useinbandfec=1");
    }
}
