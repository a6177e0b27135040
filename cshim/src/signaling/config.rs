//! Connection configuration (the keyword arguments of `Sora.create_connection`, as JSON) and
//! the `connect` message built from it.
use crate::error::{Error, Result};
use crate::media::codec::engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub signaling_urls: Vec<String>,
    pub role: String,
    pub channel_id: String,
    pub client_id: Option<String>,
    pub bundle_id: Option<String>,
    pub metadata: Option<Value>,
    pub signaling_notify_metadata: Option<Value>,
    pub audio: Option<bool>,
    pub video: Option<bool>,
    pub audio_codec_type: Option<String>,
    pub video_codec_type: Option<String>,
    pub video_bit_rate: Option<u32>,
    pub audio_bit_rate: Option<u32>,
    pub video_vp9_params: Option<Value>,
    pub video_av1_params: Option<Value>,
    pub video_h264_params: Option<Value>,
    pub video_h265_params: Option<Value>,
    pub audio_opus_params: Option<Value>,
    pub simulcast: Option<bool>,
    pub spotlight: Option<bool>,
    pub spotlight_number: Option<u32>,
    pub simulcast_rid: Option<String>,
    pub simulcast_request_rid: Option<String>,
    pub spotlight_focus_rid: Option<String>,
    pub spotlight_unfocus_rid: Option<String>,
    pub forwarding_filter: Option<Value>,
    pub forwarding_filters: Option<Value>,
    pub data_channels: Option<Vec<Value>>,
    pub data_channel_signaling: Option<bool>,
    pub ignore_disconnect_websocket: Option<bool>,
    pub data_channel_signaling_timeout: Option<f64>,
    pub disconnect_wait_timeout: Option<f64>,
    pub websocket_close_timeout: Option<f64>,
    pub websocket_connection_timeout: Option<f64>,
    pub audio_streaming_language_code: Option<String>,
    pub insecure: Option<bool>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub ca_cert: Option<String>,
    pub proxy_url: Option<String>,
    pub proxy_username: Option<String>,
    pub proxy_password: Option<String>,
    pub proxy_agent: Option<String>,
    pub degradation_preference: Option<i32>,
    pub user_agent: Option<String>,
    // sora_ffi additions
    pub sora_client: Option<String>,
    pub environment: Option<String>,
    pub bind_address: Option<String>,
    pub disable_signaling_url_randomization: Option<bool>,
    pub connection_timeout: Option<f64>,
    /// Seconds without a `ping` from the server, once one has come, after which the
    /// session is taken as lost (a dead server or network); three of the longest gaps
    /// seen between pings when that is longer (session.rs `on_ping`). None: never.
    pub ping_timeout: Option<f64>,
    /// `Sora(video_codec_preference=...)`: which engine encodes / decodes each codec (the
    /// official `to_json()["codecs"]` shape); None = every codec an engine here handles.
    pub video_codec_preference: Option<Vec<engine::PreferredCodec>>,
    /// `Sora(openh264=...)`: the OpenH264 library path the engines may use.
    pub openh264: Option<String>,
    /// Handle ids of `sora_frame_transformer_new` transformers for what we send.
    pub audio_frame_transformer: Option<u64>,
    pub video_frame_transformer: Option<u64>,
    /// Handle ids of `sora_audio_source_new` / `sora_video_source_new` sources.
    pub audio_source: Option<u64>,
    pub video_source: Option<u64>,
    /// Engine settings (Python maps `Sora(field_trials=...)` onto them).
    #[serde(default)]
    pub tuning: Tuning,
}

/// Knobs of the media engine that libwebrtc exposes as field trials; None = the default.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Video pacing rate as a multiple of the target bitrate (`WebRTC-Video-Pacing` factor;
    /// default 2.5).
    pub video_pacing_factor: Option<f64>,
    /// The longest the video pacer may hold its backlog before draining faster, in ms; 0 =
    /// no limit (`WebRTC-Video-Pacing` max_delay; default 2000).
    pub video_pacing_max_delay_ms: Option<f64>,
    /// The least packet loss, in percent, the Opus encoder plans its in-band FEC for, above
    /// what receivers report (`WebRTC-Audio-OpusMinPacketLossRate`; default 0).
    pub opus_min_packet_loss_percent: Option<u32>,
}

impl Tuning {
    fn validate(&self) -> Result<()> {
        if let Some(f) = self.video_pacing_factor {
            if !(f.is_finite() && f > 0.0 && f <= 100.0) {
                return Err(Error::invalid("tuning.video_pacing_factor must be above 0 and at most 100"));
            }
        }
        if let Some(ms) = self.video_pacing_max_delay_ms {
            if !(ms.is_finite() && (0.0..=60_000.0).contains(&ms)) {
                return Err(Error::invalid("tuning.video_pacing_max_delay_ms must be 0 to 60000"));
            }
        }
        if self.opus_min_packet_loss_percent.is_some_and(|p| p > 100) {
            return Err(Error::invalid("tuning.opus_min_packet_loss_percent must be 0 to 100"));
        }
        Ok(())
    }
}

fn secs(v: Option<f64>, default: f64, name: &str) -> Result<Duration> {
    let s = v.unwrap_or(default);
    // try_: from_secs_f64 panics on values past Duration's range (1e300 from a C caller)
    match Duration::try_from_secs_f64(s) {
        Ok(d) if s > 0.0 => Ok(d),
        _ => Err(Error::invalid(format!("{name} must be a positive number of seconds"))),
    }
}

impl ConnectionConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: ConnectionConfig =
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("invalid connection config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if self.signaling_urls.is_empty() {
            return Err(Error::invalid("signaling_urls must not be empty"));
        }
        if !matches!(self.role.as_str(), "sendrecv" | "sendonly" | "recvonly") {
            return Err(Error::invalid(format!("role must be sendrecv, sendonly or recvonly, not {:?}", self.role)));
        }
        if self.channel_id.is_empty() || self.channel_id.len() > 255 {
            return Err(Error::invalid("channel_id must be 1 to 255 bytes"));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(Error::invalid("client_cert and client_key must be given together"));
        }
        if let Some(dcs) = &self.data_channels {
            for dc in dcs {
                let label = dc.get("label").and_then(Value::as_str).unwrap_or("");
                if !label.starts_with('#') {
                    return Err(Error::invalid(format!("data channel label {label:?} must start with '#'")));
                }
            }
        }
        if crate::media::adapt::DegradationPreference::from_api(self.degradation_preference).is_none() {
            return Err(Error::invalid("degradation_preference must be 0 (DISABLED), 1 (MAINTAIN_FRAMERATE), 2 (MAINTAIN_RESOLUTION) or 3 (BALANCED)"));
        }
        self.timeouts()?;
        self.codec_preference()?;
        self.check_encoded_source()?;
        self.check_h264_sendable()?;
        self.tuning.validate()?;
        Ok(())
    }

    /// The encoded video source named as `video_source`, if it is one.
    fn encoded_source(&self) -> Option<std::sync::Arc<crate::media::encoded::EncodedVideoSource>> {
        self.video_source.and_then(crate::media::encoded::encoded_video_source)
    }

    /// An encoded source sends its own codec: `video_codec_type` may only repeat it.
    fn check_encoded_source(&self) -> Result<()> {
        let (Some(src), Some(asked)) = (self.encoded_source(), self.video_codec_type.as_deref()) else { return Ok(()) };
        if !asked.eq_ignore_ascii_case(src.codec.name()) {
            return Err(Error::invalid(format!(
                "video_codec_type {asked} does not match the encoded video source, which sends {}",
                src.codec.name()
            )));
        }
        Ok(())
    }

    /// Sending H.264 needs a working OpenH264 (unless the frames come encoded): say so when
    /// the connection is created rather than when the offer comes.
    fn check_h264_sendable(&self) -> Result<()> {
        let h264 = self.video_codec_type.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("H264"));
        if self.video_source.is_none() || !h264 || self.encoded_source().is_some() {
            return Ok(());
        }
        let path = self.openh264.as_deref().ok_or_else(|| {
            Error::invalid("video_codec_type H264 needs Cisco's OpenH264 library to encode: Sora(openh264=<path of libopenh264>)")
        })?;
        crate::media::codec::openh264::probe(path)
            .map_err(|e| Error::invalid(format!("video_codec_type H264 cannot be sent: {e}")))?;
        Ok(())
    }

    /// The codec preference in force (checked against the engines of this machine).
    pub fn codec_preference(&self) -> Result<engine::Preference> {
        let engines = engine::capability(self.openh264.as_deref());
        match &self.video_codec_preference {
            None => Ok(engine::default_preference(&engines)),
            Some(codecs) => engine::Preference::new(codecs, &engines).map_err(Error::invalid),
        }
    }

    pub fn timeouts(&self) -> Result<Timeouts> {
        Ok(Timeouts {
            websocket_connection: secs(self.websocket_connection_timeout, 30.0, "websocket_connection_timeout")?,
            websocket_close: secs(self.websocket_close_timeout, 3.0, "websocket_close_timeout")?,
            disconnect_wait: secs(self.disconnect_wait_timeout, 5.0, "disconnect_wait_timeout")?,
            data_channel_signaling: secs(self.data_channel_signaling_timeout, 180.0, "data_channel_signaling_timeout")?,
            connection: secs(self.connection_timeout, 30.0, "connection_timeout")?,
            ping: self.ping_timeout.map(|v| secs(Some(v), 0.0, "ping_timeout")).transpose()?,
        })
    }

    /// The `connect` message (sora-protocol.md §2.1).
    pub fn connect_message(&self, redirect: bool) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!("connect"));
        m.insert("role".into(), json!(self.role));
        m.insert("channel_id".into(), json!(self.channel_id));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("client_id", self.client_id.clone().map(Value::from));
        put("bundle_id", self.bundle_id.clone().map(Value::from));
        put("metadata", self.metadata.clone());
        put("signaling_notify_metadata", self.signaling_notify_metadata.clone());
        put("audio", Some(self.audio_value()));
        put("video", Some(self.video_value()));
        // Every option the caller gave is sent as given (Sora decides what applies to the role).
        put("simulcast", self.simulcast.map(Value::from));
        put("simulcast_rid", self.simulcast_rid.clone().map(Value::from));
        put("simulcast_request_rid", self.simulcast_request_rid.clone().map(Value::from));
        put("spotlight", self.spotlight.map(Value::from));
        put("spotlight_number", self.spotlight_number.map(Value::from));
        put("spotlight_focus_rid", self.spotlight_focus_rid.clone().map(Value::from));
        put("spotlight_unfocus_rid", self.spotlight_unfocus_rid.clone().map(Value::from));
        put("forwarding_filter", self.forwarding_filter.clone());
        put("forwarding_filters", self.forwarding_filters.clone());
        put("data_channel_signaling", self.data_channel_signaling.map(Value::from));
        put("ignore_disconnect_websocket", self.ignore_disconnect_websocket.map(Value::from));
        put("data_channels", self.data_channels.clone().map(Value::from));
        put("audio_streaming_language_code", self.audio_streaming_language_code.clone().map(Value::from));
        if redirect {
            put("redirect", Some(json!(true)));
        }
        put(
            "sora_client",
            Some(json!(self.sora_client.clone().unwrap_or_else(|| format!("sora_ffi {}", env!("CARGO_PKG_VERSION"))))),
        );
        put("environment", Some(json!(self.environment.clone().unwrap_or_else(default_environment))));
        Value::Object(m)
    }

    fn audio_value(&self) -> Value {
        if self.audio == Some(false) {
            return json!(false);
        }
        let mut o = Map::new();
        if let Some(c) = &self.audio_codec_type {
            o.insert("codec_type".into(), json!(c));
        }
        if let Some(b) = self.audio_bit_rate {
            o.insert("bit_rate".into(), json!(b));
        }
        if let Some(p) = &self.audio_opus_params {
            o.insert("opus_params".into(), p.clone());
        }
        if o.is_empty() { json!(true) } else { Value::Object(o) }
    }

    fn video_value(&self) -> Value {
        if self.video == Some(false) {
            return json!(false);
        }
        let mut o = Map::new();
        // An encoded source asks for the codec it sends.
        let codec = self.video_codec_type.clone().or_else(|| self.encoded_source().map(|s| s.codec.name().to_owned()));
        if let Some(c) = codec {
            o.insert("codec_type".into(), json!(c));
        }
        if let Some(b) = self.video_bit_rate {
            o.insert("bit_rate".into(), json!(b));
        }
        for (key, v) in [
            ("vp9_params", &self.video_vp9_params),
            ("av1_params", &self.video_av1_params),
            ("h264_params", &self.video_h264_params),
            ("h265_params", &self.video_h265_params),
        ] {
            if let Some(v) = v {
                o.insert(key.into(), v.clone());
            }
        }
        if o.is_empty() { json!(true) } else { Value::Object(o) }
    }
}

pub fn default_environment() -> String {
    format!(
        "[{}] {} (libdatachannel {})",
        std::env::consts::ARCH,
        std::env::consts::OS,
        std::str::from_utf8(&datachannel_sys::RTC_VERSION[..datachannel_sys::RTC_VERSION.len() - 1]).unwrap_or("?")
    )
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub websocket_connection: Duration,
    pub websocket_close: Duration,
    pub disconnect_wait: Duration,
    pub data_channel_signaling: Duration,
    pub connection: Duration,
    pub ping: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_message_carries_parameters() {
        let cfg = ConnectionConfig::from_json(
            r##"{"signaling_urls":["ws://h/signaling"],"role":"sendonly","channel_id":"c",
                "video_codec_type":"VP9","video_bit_rate":500,"audio":false,
                "data_channel_signaling":true,"data_channels":[{"label":"#a","direction":"sendrecv"}]}"##,
        )
        .unwrap();
        let m = cfg.connect_message(true);
        assert_eq!(m["video"], json!({"codec_type":"VP9","bit_rate":500}));
        assert_eq!(m["audio"], json!(false));
        assert_eq!(m["redirect"], json!(true));
        assert_eq!(m["data_channels"][0]["label"], json!("#a"));
        assert!(m["sora_client"].as_str().unwrap().starts_with("sora_ffi"));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_roles() {
        assert!(ConnectionConfig::from_json(r#"{"signaling_urls":["ws://h"],"role":"x","channel_id":"c"}"#).is_err());
        assert!(ConnectionConfig::from_json(r#"{"signaling_urls":["ws://h"],"role":"sendonly","channel_id":"c","bogus":1}"#).is_err());
    }

    #[test]
    fn timeouts_out_of_range_are_errors_not_panics() {
        let with = |k: &str, v: &str| {
            ConnectionConfig::from_json(&format!(
                r#"{{"signaling_urls":["ws://h"],"role":"sendonly","channel_id":"c","{k}":{v}}}"#
            ))
            .and_then(|c| c.timeouts())
        };
        for k in ["ping_timeout", "websocket_connection_timeout", "disconnect_wait_timeout"] {
            for bad in ["1e300", "0", "-1"] {
                assert!(with(k, bad).is_err(), "{k}={bad}");
            }
            assert!(with(k, "0.5").is_ok(), "{k}");
        }
        assert_eq!(with("ping_timeout", "null").unwrap().ping, None);
        assert_eq!(with("ping_timeout", "2.5").unwrap().ping, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn degradation_preference_is_one_of_the_four() {
        let with = |v: &str| {
            ConnectionConfig::from_json(&format!(
                r#"{{"signaling_urls":["ws://h"],"role":"sendonly","channel_id":"c","degradation_preference":{v}}}"#
            ))
        };
        for ok in ["0", "1", "2", "3", "null"] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in ["4", "-1"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tuning_is_checked() {
        let with = |v: &str| {
            ConnectionConfig::from_json(&format!(
                r#"{{"signaling_urls":["ws://h"],"role":"sendonly","channel_id":"c","tuning":{v}}}"#
            ))
        };
        for ok in [
            "{}",
            r#"{"video_pacing_factor":0.25,"video_pacing_max_delay_ms":0,"opus_min_packet_loss_percent":100}"#,
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"video_pacing_factor":0}"#,
            r#"{"video_pacing_factor":101}"#,
            r#"{"video_pacing_max_delay_ms":-1}"#,
            r#"{"video_pacing_max_delay_ms":60001}"#,
            r#"{"opus_min_packet_loss_percent":101}"#,
            r#"{"opus_min_packet_loss_percent":-1}"#,
            r#"{"video_pacing_factor":"fast"}"#,
            r#"{"bogus":1}"#,
            "[]",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }
}
