//! Audio streaming (Sora's feature, ../shared/sora-protocol.md §7), the dev server's side:
//! the Opus of one receiving audio track goes, as it arrives, into one HTTP/2 request to a
//! gateway, and each JSON line the gateway answers comes back as an event. The packets are
//! taken from the forwarding plane by a tap (forward::set_tap) on the receiving thread,
//! framed and queued there without blocking; a task on the signaling runtime sends them.
//! Nothing per packet reaches Python.
mod framing;
mod gateway;

use crate::error::{Error, Result};
use crate::events::{next_handle_id, Event, EventQueue, EventType};
use crate::forward::{self, RtpTap};
use crate::signaling::tls::Tls;
use crate::signaling::transport::TransportOptions;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

pub use framing::HEADER_LEN;

/// Request headers, names and values together, at most this many bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What a stream reports (`a` of its AudioStreamState events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Streaming = 1,
    Retrying = 2,
    Stopped = 3,
    Warning = 4,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    framed: bool,
    ca_cert: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    #[serde(default = "default_retry_ms")]
    retry_interval_ms: u64,
    #[serde(default = "default_queue")]
    queue_packets: usize,
    #[serde(default = "default_keepalive_ms")]
    keepalive_ms: u64,
}

fn default_retry_ms() -> u64 {
    500
}
fn default_queue() -> usize {
    250 // 5 s of 20 ms packets
}
fn default_keepalive_ms() -> u64 {
    5000
}

/// A stream's settings, checked.
pub struct Config {
    uri: http::Uri,
    host: String,
    port: u16,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    framed: bool,
    /// https://: the connector every request uses (built once, from the PEM given)
    tls: Option<Tls>,
    retry_interval: Duration,
    queue_packets: usize,
    /// HTTP/2 PING interval; no answer within twice this ends the request
    keepalive: Duration,
}

impl Config {
    pub fn parse(json: &str) -> Result<Config> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| Error::invalid(format!("audio stream config: {e}")))?;
        let url = url::Url::parse(&raw.url).map_err(|e| Error::invalid(format!("audio stream url {:?}: {e}", raw.url)))?;
        let secure = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(Error::invalid(format!("audio stream url: {other}:// is not http:// or https://"))),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(_)) => return Err(Error::invalid("audio stream url: IPv6 gateways are not supported (nor by Sora)")),
            None => return Err(Error::invalid("audio stream url has no host")),
        };
        let port = url.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
        let uri: http::Uri = raw.url.parse().map_err(|e| Error::invalid(format!("audio stream url: {e}")))?;
        let mut headers = Vec::new();
        let mut size = 0;
        for (k, v) in &raw.headers {
            size += k.len() + v.len();
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| Error::invalid(format!("audio stream header name {k:?} is not valid")))?;
            let value = http::HeaderValue::from_str(v).map_err(|_| Error::invalid(format!("audio stream header {k} has a value that cannot be sent")))?;
            headers.push((name, value));
        }
        if size > MAX_HEADER_BYTES {
            return Err(Error::invalid(format!("audio stream headers exceed {MAX_HEADER_BYTES} bytes")));
        }
        let any_tls_file = raw.ca_cert.is_some() || raw.client_cert.is_some() || raw.client_key.is_some();
        if any_tls_file && !secure {
            return Err(Error::invalid("audio stream: TLS certificates given for an http:// gateway"));
        }
        let tls = if secure {
            let opts = TransportOptions {
                ca_cert: raw.ca_cert,
                client_cert: raw.client_cert,
                client_key: raw.client_key,
                ..Default::default()
            };
            // Bad PEM is the caller's error now, not a retry loop later.
            Some(Tls::with_alpn(&opts, b"\x02h2").map_err(|e| Error::invalid(format!("audio stream TLS: {e}")))?)
        } else {
            None
        };
        if raw.retry_interval_ms == 0 || raw.retry_interval_ms > 60_000 {
            return Err(Error::invalid("audio stream retry_interval_ms must be 1..=60000"));
        }
        if raw.queue_packets == 0 || raw.queue_packets > 100_000 {
            return Err(Error::invalid("audio stream queue_packets must be 1..=100000"));
        }
        if !(100..=600_000).contains(&raw.keepalive_ms) {
            return Err(Error::invalid("audio stream keepalive_ms must be 100..=600000"));
        }
        Ok(Config {
            uri,
            host,
            port,
            headers,
            framed: raw.framed,
            tls,
            retry_interval: Duration::from_millis(raw.retry_interval_ms),
            queue_packets: raw.queue_packets,
            keepalive: Duration::from_millis(raw.keepalive_ms),
        })
    }
}

/// What the tap, the request task and the C API share about one stream.
pub struct Shared {
    pub id: u64,
    queue: Arc<EventQueue>,
    framed: bool,
    sent_packets: AtomicU64,
    sent_bytes: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn emit_state(&self, s: State, text: &str) {
        self.queue.push(Event::new(EventType::AudioStreamState, self.id).a(s as i64).text(text));
    }
    fn on_answered(&self) {
        self.emit_state(State::Streaming, "");
    }
    /// A chunk went into the request body.
    fn on_sent(&self, chunk_len: usize) {
        let header = if self.framed { HEADER_LEN } else { 0 };
        self.sent_packets.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(chunk_len.saturating_sub(header) as u64, Ordering::Relaxed);
    }
}

impl gateway::LineSink for Shared {
    fn result(&self, line: &str) {
        self.queue.push(Event::new(EventType::AudioStreamResult, self.id).text(line));
    }
    fn warning(&self, what: &str) {
        log::warn!("audio stream {}: {what}", self.id);
        self.emit_state(State::Warning, what);
    }
}

/// Takes the track's RTP on the receiving thread: frames it and queues it, never waits.
struct Tap {
    framer: Mutex<framing::Framer>,
    body: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
}

impl RtpTap for Tap {
    fn on_rtp(&self, packet: &[u8]) {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
        let Some(chunk) = self.framer.lock().chunk(packet, now_us) else { return };
        if self.body.try_send(chunk).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Handle {
    track: i32,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

static STREAMS: Mutex<Option<HashMap<u64, Handle>>> = Mutex::new(None);

/// Starts streaming the receiving audio track `track` as `config_json` says ({"url",
/// "headers", "framed", "ca_cert", "client_cert", "client_key", "retry_interval_ms",
/// "queue_packets", "keepalive_ms"}); its events go to `queue`. Returns the stream's id.
pub fn start(queue: Arc<EventQueue>, track: i32, config_json: &str) -> Result<u64> {
    let cfg = Config::parse(config_json)?;
    let mut streams = STREAMS.lock();
    let streams = streams.get_or_insert_with(HashMap::new);
    if streams.values().any(|h| h.track == track) {
        return Err(Error::invalid(format!("track {track} is already streamed")));
    }
    let shared = Arc::new(Shared {
        id: next_handle_id(),
        queue,
        framed: cfg.framed,
        sent_packets: AtomicU64::new(0),
        sent_bytes: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let (tx, rx) = mpsc::channel(cfg.queue_packets);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Only the forwarder holds the tap: when the track goes, the body ends with it.
    let tap = Arc::new(Tap { framer: Mutex::new(framing::Framer::new(cfg.framed)), body: tx, shared: shared.clone() });
    forward::set_tap(track, Some(tap));
    crate::signaling::session::runtime().spawn(gateway::run(cfg, shared.clone(), rx, stop_rx));
    let id = shared.id;
    streams.insert(id, Handle { track, stop: stop_tx, shared });
    Ok(id)
}

/// Stops a stream: its request body ends and no other is made.
pub fn stop(id: u64) -> Result<()> {
    let h = STREAMS.lock().as_mut().and_then(|s| s.remove(&id)).ok_or_else(|| Error::invalid(format!("no audio stream {id}")))?;
    forward::set_tap(h.track, None);
    let _ = h.stop.send(true);
    Ok(())
}

/// The stream has ended by itself (its track went): it is no longer listed.
fn forget(id: u64) {
    if let Some(streams) = STREAMS.lock().as_mut() {
        streams.remove(&id);
    }
}

/// (packets sent to the gateway, their Opus bytes, packets dropped because the queue was
/// full) of a stream.
pub fn counters(id: u64) -> Result<(u64, u64, u64)> {
    let streams = STREAMS.lock();
    let h = streams.as_ref().and_then(|s| s.get(&id)).ok_or_else(|| Error::invalid(format!("no audio stream {id}")))?;
    let s = &h.shared;
    Ok((s.sent_packets.load(Ordering::Relaxed), s.sent_bytes.load(Ordering::Relaxed), s.dropped.load(Ordering::Relaxed)))
}
