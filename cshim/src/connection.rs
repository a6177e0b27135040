//! A Sora client connection handle: what the C ABI's `SoraConnection` points to. The session
//! itself runs as a task on the shared runtime (signaling::session); this handle talks to it
//! through a channel and shares a little state (for send_data_channel, stats, waits).
use crate::error::{Error, Kind, Result};
use crate::events::{next_handle_id, Event, EventQueue, EventType};
use crate::signaling::config::ConnectionConfig;
use crate::signaling::session::{self, Input};
use crate::signaling::zlib;
use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// SoraSignalingErrorCode.
pub mod code {
    pub const CLOSE_SUCCEEDED: i64 = 0;
    pub const CLOSE_FAILED: i64 = 1;
    pub const INTERNAL_ERROR: i64 = 2;
    pub const INVALID_PARAMETER: i64 = 3;
    pub const WEBSOCKET_HANDSHAKE_FAILED: i64 = 4;
    pub const WEBSOCKET_ONCLOSE: i64 = 5;
    pub const WEBSOCKET_ONERROR: i64 = 6;
    pub const PEER_CONNECTION_STATE_FAILED: i64 = 7;
    pub const ICE_FAILED: i64 = 8;
}

#[derive(Debug, Default, Clone)]
pub struct ChannelEntry {
    pub dc: i32,
    pub compress: bool,
    pub open: bool,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    pub messages_dropped: u64,
}

#[derive(Debug, Default, Clone)]
pub struct TrackEntry {
    pub kind: String,
    pub mid: String,
    pub stream_id: String,
    pub track_id: String,
    pub enabled: bool,
    pub ended: bool,
}

#[derive(Default)]
pub struct State {
    pub started: bool,
    pub connected: bool,
    pub finished: bool,
    pub switched: bool,
    pub info: serde_json::Map<String, Value>,
    pub channels: HashMap<String, ChannelEntry>,
    pub tracks: HashMap<u64, TrackEntry>,
    pub pc: Option<i32>,
    /// Receive pipelines of remote tracks, by track id (SORA_EVENT_TRACK `a`).
    pub receivers: HashMap<u64, Arc<crate::media::recv::Receiver>>,
    /// Send pipelines' shared state (for stats and set_enabled).
    pub senders: Vec<Arc<crate::media::send::SendShared>>,
    /// The congestion control of what we send (transport-cc negotiated), for stats.
    pub cc: Option<Arc<crate::media::cc::CongestionController>>,
}

pub struct Shared {
    pub id: u64,
    queue: Arc<EventQueue>,
    /// Set by destroy: the handle's owner is gone, so nothing more is reported.
    silenced: AtomicBool,
    pub state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    pub fn emit(&self, ev: Event) {
        if !self.silenced.load(Ordering::Acquire) {
            self.queue.push(ev);
        }
    }
    pub fn event(&self, kind: EventType) -> Event {
        Event::new(kind, self.id)
    }
    pub fn set_connected(&self) {
        self.state.lock().connected = true;
        self.changed.notify_all();
    }
    /// Ends the connection: the Disconnect event is always the last one.
    pub fn finish(&self, code: i64, message: &str) {
        {
            let mut st = self.state.lock();
            if st.finished {
                return;
            }
            st.finished = true;
            st.connected = false;
            st.pc = None;
            for ch in st.channels.values_mut() {
                ch.open = false;
            }
        }
        self.changed.notify_all();
        self.emit(self.event(EventType::Disconnect).a(code).text(message));
    }
}

pub struct Connection {
    shared: Arc<Shared>,
    config: ConnectionConfig,
    input: Mutex<Option<mpsc::UnboundedSender<Input>>>,
}

impl Connection {
    pub fn new(queue: Arc<EventQueue>, config_json: &str) -> Result<Connection> {
        let config = ConnectionConfig::from_json(config_json)?;
        let shared = Arc::new(Shared {
            id: next_handle_id(),
            queue,
            silenced: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        shared.state.lock().info.insert("channel_id".into(), json!(config.channel_id));
        Ok(Connection { shared, config, input: Mutex::new(None) })
    }

    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub fn connect(&self) -> Result<()> {
        {
            let mut st = self.shared.state.lock();
            if st.started {
                return Err(Error::state("connect() was already called on this connection"));
            }
            st.started = true;
        }
        let tx = session::spawn(self.shared.clone(), self.config.clone())?;
        *self.input.lock() = Some(tx);
        Ok(())
    }

    pub fn disconnect(&self) {
        if let Some(tx) = self.input.lock().as_ref() {
            let _ = tx.send(Input::Disconnect);
        }
    }

    pub fn send_data_channel(&self, label: &str, data: &[u8]) -> Result<()> {
        let (dc, compress) = {
            let st = self.shared.state.lock();
            let entry = st
                .channels
                .get(label)
                .filter(|c| c.open)
                .ok_or_else(|| Error::new(Kind::Closed, format!("data channel {label:?} is not open")))?;
            (entry.dc, entry.compress)
        };
        if compress && data.len() > zlib::MAX_INFLATED {
            // Small on the wire, but every receiver would drop it: refuse it here instead.
            return Err(Error::new(
                Kind::TooLarge,
                format!(
                    "message of {} bytes exceeds the {} bytes a compressed data channel accepts before compression",
                    data.len(),
                    zlib::MAX_INFLATED
                ),
            ));
        }
        // Compressed outside the lock: up to 16 MiB of deflate must not stall stats or events.
        let payload = if compress { zlib::compress(data) } else { data.to_vec() };
        let max = crate::rtc::dc_max_message_size(dc);
        if payload.len() > max {
            return Err(Error::new(
                Kind::TooLarge,
                format!("message of {} bytes exceeds the data channel's maximum of {max} bytes", payload.len()),
            ));
        }
        crate::rtc::dc_send(dc, &payload, true)?;
        if let Some(entry) = self.shared.state.lock().channels.get_mut(label) {
            entry.messages_sent += 1;
            entry.bytes_sent += data.len() as u64;
        }
        Ok(())
    }

    pub fn info(&self) -> String {
        let st = self.shared.state.lock();
        let mut info = st.info.clone();
        info.insert("connected".into(), json!(st.connected));
        info.insert("switched".into(), json!(st.switched));
        Value::Object(info).to_string()
    }

    pub fn stats(&self) -> String {
        session::stats(&self.shared).to_string()
    }

    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock();
        loop {
            if st.connected {
                return Ok(());
            }
            if st.finished {
                return Err(Error::new(Kind::Closed, "the connection ended before it was established"));
            }
            if self.shared.changed.wait_until(&mut st, deadline).timed_out() {
                return if st.connected { Ok(()) } else { Err(Error::new(Kind::Timeout, "timed out waiting for the connection")) };
            }
        }
    }

    /// Puts an encoded transform between a remote track's jitter buffer and its decoder.
    pub fn set_track_transformer(&self, track: u64, transformer: Option<Arc<crate::media::transform::Transformer>>) -> Result<()> {
        self.receiver(track)?.set_transformer(transformer)
    }

    /// The receive pipeline of remote track `track`.
    fn receiver(&self, track: u64) -> Result<Arc<crate::media::recv::Receiver>> {
        let st = self.shared.state.lock();
        if !st.tracks.contains_key(&track) {
            return Err(Error::new(Kind::NotFound, "no such track on this connection"));
        }
        st.receivers
            .get(&track)
            .cloned()
            .ok_or_else(|| Error::new(Kind::InvalidState, "this track's codec cannot be received (no decoder)"))
    }

    pub fn set_track_enabled(&self, track: u64, enabled: bool) -> Result<()> {
        let mut st = self.shared.state.lock();
        let t = st.tracks.get_mut(&track).ok_or_else(|| Error::new(Kind::NotFound, "no such track"))?;
        t.enabled = enabled;
        if let Some(r) = st.receivers.get(&track) {
            r.set_enabled(enabled);
        }
        Ok(())
    }

    /// Attaches a sink to a remote track's receive pipeline.
    pub fn attach_sink(&self, track: u64, sink: Arc<dyn crate::media::sink::MediaSink>) -> Result<Arc<crate::media::recv::Receiver>> {
        let r = self.receiver(track)?;
        r.add_sink(sink);
        Ok(r)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Silence first: the owner is gone. The session still ends politely in the background.
        self.shared.silenced.store(true, Ordering::Release);
        self.disconnect();
    }
}
