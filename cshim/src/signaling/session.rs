//! One Sora signaling session (sora-protocol.md): WebSocket and DataChannel signaling, the
//! answerer side of Sora's offer/re-offer, notify/push/ping, redirect, and every way a session
//! ends. Everything that happens arrives as one `Input` on one channel and is handled in order
//! on one task, so there are no locks around the protocol state.
use super::config::{ConnectionConfig, Timeouts};
use super::sdp;
use super::transport::{self, OpenError, TransportOptions, Ws};
use super::zlib;
use crate::connection::{code, ChannelEntry, Shared, TrackEntry};
use crate::error::Result;
use crate::events::{next_handle_id, EventType};
use crate::media;
use crate::media::codec::engine;
use crate::rtc::{self, Peer, PeerConfig, RtcEvent, RtcObserver};
use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::Message;

/// SoraSignalingType / SoraSignalingDirection.
const VIA_WS: i64 = 0;
const VIA_DC: i64 = 1;
const SENT: i64 = 0;
const RECEIVED: i64 = 1;
/// Most redirects followed for one connect (Sora itself redirects once: a `connect` with
/// `redirect: true` is never redirected again); more ends the session.
pub const MAX_REDIRECTS: u32 = 3;

pub enum Input {
    Disconnect,
    Rtc(RtcEvent),
    Ws(u64, WsInput),
}

pub enum WsInput {
    Text(String),
    Binary(Vec<u8>),
    Closed(u16, String),
    Error(String),
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sora-signaling")
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

pub fn spawn(shared: Arc<Shared>, cfg: ConnectionConfig) -> Result<mpsc::UnboundedSender<Input>> {
    let timeouts = cfg.timeouts()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let session = Session::new(shared, cfg, timeouts, tx.clone());
    runtime().spawn(session.run(rx));
    Ok(tx)
}

/// Forwards libdatachannel callbacks into the session's input channel (never blocks).
/// Remote tracks are also recorded by mid at once: libdatachannel announces them inside
/// setRemoteDescription, and the session needs their ids right after that call.
struct Forward {
    tx: mpsc::UnboundedSender<Input>,
    tracks_by_mid: Arc<parking_lot::Mutex<HashMap<String, i32>>>,
}
impl RtcObserver for Forward {
    fn on_rtc_event(&self, event: RtcEvent) {
        if let RtcEvent::Track { track, mid } = &event {
            self.tracks_by_mid.lock().insert(mid.clone(), *track);
        }
        let _ = self.tx.send(Input::Rtc(event));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Disconnecting {
    /// Waiting for the server to close the WebSocket.
    WsClose,
    /// DataChannel-only: waiting for the server to close every DataChannel.
    DcClose,
}

struct End(i64, String);

/// Sessions asked to end that have not finished tearing down (see [`Closing`]).
static CLOSING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// How long process exit waits for them.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Held by a session from the moment it is asked to end until it and its peer connection are
/// gone. A process that exits right after `sora_connection_destroy` (C programs do) would
/// otherwise run libdatachannel's static destructors while that teardown still uses them,
/// and abort; an `atexit` handler, registered with the first such session (so after those
/// destructors, and run before them), waits up to [`EXIT_WAIT`] for the count to reach zero.
/// Sessions nobody asked to end are not waited for: exit stays prompt with live objects.
struct Closing;

impl Closing {
    fn new() -> Closing {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            extern "C" {
                fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
            }
            extern "C" fn wait_for_closing_sessions() {
                let until = std::time::Instant::now() + EXIT_WAIT;
                while CLOSING.load(std::sync::atomic::Ordering::Acquire) > 0 && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // SAFETY: registering a plain function with no captured state.
            unsafe { atexit(wait_for_closing_sessions) };
        });
        CLOSING.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Closing
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        CLOSING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

struct Session {
    /// Set once the session is asked to end (process exit waits for it; see [`Closing`]).
    closing: Option<Closing>,
    shared: Arc<Shared>,
    cfg: ConnectionConfig,
    t: Timeouts,
    tx: mpsc::UnboundedSender<Input>,
    transport: TransportOptions,
    ws_gen: u64,
    ws: Option<SplitSink<Ws, Message>>,
    /// The task reading the current WebSocket; aborted when the session ends so a server
    /// that never completes the close handshake cannot keep the socket alive.
    ws_reader: Option<tokio::task::JoinHandle<()>>,
    peer: Option<Peer>,
    /// Candidates the server trickled before its offer was applied.
    early_candidates: Vec<(String, Option<String>)>,
    offer_received: bool,
    /// Redirects followed so far (at most MAX_REDIRECTS).
    redirects: u32,
    pc_connected: bool,
    /// A re-offer that came while ICE/DTLS was still coming up, applied once connected:
    /// renegotiating then made libdatachannel lose the connection now and then. Only the
    /// latest is kept (it describes the whole session) and answered.
    deferred_re_offer: Option<(Value, String)>,
    self_notified: bool,
    connected: bool,
    connection_id: String,
    dc_signaling: bool,
    ignore_ws: bool,
    switched: bool,
    /// label -> compress, from offer.data_channels
    dc_compress: HashMap<String, bool>,
    dc_labels: HashMap<i32, String>,
    remote_mids: HashMap<String, u64>,
    tracks_by_mid: Arc<parking_lot::Mutex<HashMap<String, i32>>>,
    senders: Vec<media::send::Sender>,
    cname: String,
    disconnecting: Option<Disconnecting>,
    connect_deadline: Instant,
    switch_deadline: Option<Instant>,
    disconnect_deadline: Option<Instant>,
    /// With `ping_timeout`: when the session is taken as lost unless another `ping` comes
    /// (armed by the first one; only while the WebSocket is up).
    ping_deadline: Option<Instant>,
    /// When the offer came (the server's ping timer starts about then), the last `ping`
    /// came, and the longest gap seen between two (or from the offer to the first).
    offer_at: Option<Instant>,
    last_ping: Option<Instant>,
    ping_gap: Duration,
    end: Option<End>,
    /// Which engine encodes / decodes each video codec (Sora(video_codec_preference)).
    codecs: engine::Preference,
}

impl Session {
    fn new(shared: Arc<Shared>, cfg: ConnectionConfig, t: Timeouts, tx: mpsc::UnboundedSender<Input>) -> Self {
        // Checked when the config was parsed (ConnectionConfig::validate).
        let codecs = cfg.codec_preference().unwrap_or_default();
        let transport = TransportOptions {
            insecure: cfg.insecure.unwrap_or(false),
            ca_cert: cfg.ca_cert.clone(),
            client_cert: cfg.client_cert.clone(),
            client_key: cfg.client_key.clone(),
            proxy: cfg.proxy_url.clone().map(|url| transport::Proxy {
                url,
                username: cfg.proxy_username.clone(),
                password: cfg.proxy_password.clone(),
                agent: cfg.proxy_agent.clone(),
            }),
            user_agent: cfg.user_agent.clone(),
        };
        Session {
            shared,
            cfg,
            t,
            tx,
            transport,
            ws_gen: 0,
            ws: None,
            ws_reader: None,
            peer: None,
            early_candidates: Vec::new(),
            offer_received: false,
            redirects: 0,
            pc_connected: false,
            deferred_re_offer: None,
            self_notified: false,
            connected: false,
            connection_id: String::new(),
            dc_signaling: false,
            ignore_ws: false,
            switched: false,
            dc_compress: HashMap::new(),
            dc_labels: HashMap::new(),
            remote_mids: HashMap::new(),
            tracks_by_mid: Arc::new(parking_lot::Mutex::new(HashMap::new())),
            senders: Vec::new(),
            cname: format!("sora-ffi-{:08x}", rand::random::<u32>()),
            disconnecting: None,
            closing: None,
            connect_deadline: Instant::now() + t.connection,
            switch_deadline: None,
            disconnect_deadline: None,
            ping_deadline: None,
            offer_at: None,
            last_ping: None,
            ping_gap: Duration::ZERO,
            end: None,
            codecs,
        }
    }

    fn sendable_names(&self) -> String {
        let names: Vec<&str> = engine::CodecType::ALL
            .into_iter()
            .filter(|c| self.codecs.encoder(*c).is_some())
            .map(engine::CodecType::name)
            .collect();
        if names.is_empty() { "none".into() } else { names.join(", ") }
    }

    fn finish(&mut self, code: i64, message: impl Into<String>) {
        if self.end.is_none() {
            self.end = Some(End(code, message.into()));
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        // Phase 1: open the WebSocket (racing the URLs); disconnect() may interrupt it.
        let keep_order = self.cfg.disable_signaling_url_randomization.unwrap_or(false);
        let urls = self.cfg.signaling_urls.clone();
        let opened = tokio::select! {
            r = transport::race(&urls, &self.transport, self.t.websocket_connection, keep_order) => Some(r),
            _ = wait_disconnect(&mut rx) => None,
        };
        match opened {
            None => self.finish(code::CLOSE_SUCCEEDED, "disconnect() called while connecting"),
            Some(Err(OpenError::InvalidUrl(m))) => self.finish(code::INVALID_PARAMETER, m),
            Some(Err(OpenError::Failed(m))) => {
                self.finish(code::WEBSOCKET_HANDSHAKE_FAILED, format!("Failed Websocket handshake: {m}"))
            }
            Some(Ok((ws, url))) => {
                self.set_info("contact_url", json!(url));
                self.set_info("connected_url", json!(url));
                self.attach_ws(ws);
                self.send_connect(false).await;
            }
        }
        // Phase 2: the session.
        while self.end.is_none() {
            let deadline = self.next_deadline();
            let input = tokio::select! {
                i = rx.recv() => i,
                _ = tokio::time::sleep_until(deadline) => { self.on_deadline().await; continue; }
            };
            match input {
                Some(i) => self.handle(i).await,
                None => self.finish(code::CLOSE_SUCCEEDED, "connection handle destroyed"),
            }
        }
        self.teardown(&mut rx).await;
        // The session and its peer connection go first, then the count that exit waits on.
        let closing = self.closing.take();
        drop(self);
        drop(closing);
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        [
            (!self.connected).then_some(self.connect_deadline),
            self.switch_deadline,
            self.disconnect_deadline,
            self.watched_ping_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(far)
    }

    /// The ping deadline while it counts: the WebSocket is up and we are not disconnecting.
    fn watched_ping_deadline(&self) -> Option<Instant> {
        self.ping_deadline.filter(|_| self.ws.is_some() && self.disconnecting.is_none())
    }

    async fn on_deadline(&mut self) {
        let now = Instant::now();
        if self.disconnect_deadline.is_some_and(|d| d <= now) {
            self.finish(code::CLOSE_FAILED, "Timed out waiting for the server to close the session (disconnect_wait_timeout)");
        } else if self.switch_deadline.is_some_and(|d| d <= now) {
            self.finish(code::INTERNAL_ERROR, "DataChannel signaling was not switched in time (data_channel_signaling_timeout)");
        } else if !self.connected && self.connect_deadline <= now {
            self.finish(code::INTERNAL_ERROR, "Connection timeout");
        } else if self.watched_ping_deadline().is_some_and(|d| d <= now) {
            // Nothing is coming through: no close handshake to wait for (teardown skips it).
            self.ws = None;
            self.shared.emit(self.shared.event(EventType::WsClose).a(0).text(""));
            let waited = self.last_ping.map_or(0.0, |t| (now - t).as_secs_f64());
            self.finish(
                code::WEBSOCKET_ONERROR,
                format!("No ping from the server for {waited:.1} s (ping_timeout): the server or the network is gone"),
            );
        }
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Disconnect => self.on_disconnect_requested().await,
            Input::Rtc(ev) => self.on_rtc(ev).await,
            Input::Ws(gen, _) if gen != self.ws_gen || self.ws.is_none() => {}
            Input::Ws(_, WsInput::Text(t)) => self.on_signaling_text(&t, VIA_WS).await,
            Input::Ws(_, WsInput::Binary(_)) if self.offer_received => {
                log::warn!("ignoring a binary WebSocket frame from the server (Sora signaling is text only)")
            }
            Input::Ws(_, WsInput::Binary(_)) => {
                self.finish(code::INTERNAL_ERROR, "received a binary WebSocket frame; Sora signaling is text only")
            }
            Input::Ws(_, WsInput::Closed(c, reason)) => self.on_ws_closed(c, reason),
            Input::Ws(_, WsInput::Error(e)) => self.on_ws_error(e),
        }
    }

    // ---- WebSocket plumbing ----

    fn attach_ws(&mut self, ws: Ws) {
        self.ws_gen += 1;
        let gen = self.ws_gen;
        let (sink, mut stream) = ws.split();
        self.ws = Some(sink);
        let tx = self.tx.clone();
        if let Some(old) = self.ws_reader.take() {
            old.abort();
        }
        self.ws_reader = Some(runtime().spawn(async move {
            while let Some(m) = stream.next().await {
                let input = match m {
                    Ok(Message::Text(t)) => WsInput::Text(t.to_string()),
                    Ok(Message::Binary(b)) => WsInput::Binary(b.to_vec()),
                    Ok(Message::Close(frame)) => {
                        let (c, r) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                        let _ = tx.send(Input::Ws(gen, WsInput::Closed(c, r)));
                        return;
                    }
                    Ok(_) => continue,
                    Err(e) => WsInput::Error(e.to_string()),
                };
                let stop = matches!(input, WsInput::Error(_));
                if tx.send(Input::Ws(gen, input)).is_err() || stop {
                    return;
                }
            }
            let _ = tx.send(Input::Ws(gen, WsInput::Error("connection closed without a close frame".into())));
        }));
    }

    async fn ws_send(&mut self, v: &Value) -> bool {
        let Some(ws) = self.ws.as_mut() else { return false };
        ws.send(Message::text(v.to_string())).await.is_ok()
    }

    /// Closes our WebSocket ourselves (close frame, no wait) and reports SELF-CLOSED.
    async fn ws_close_self(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
            let _ = tokio::time::timeout(self.t.websocket_close, ws.send(Message::Close(Some(frame)))).await;
            self.shared.emit(self.shared.event(EventType::WsClose).a(1000).text("SELF-CLOSED"));
        }
    }

    fn on_ws_closed(&mut self, c: u16, reason: String) {
        self.ws = None;
        self.shared.emit(self.shared.event(EventType::WsClose).a(c as i64).text(&reason));
        if self.disconnecting.is_some() {
            // The official SDK's exact texts (its capitalisation differs between the two).
            let text = if self.switched {
                "Succeeded to close Websocket (DC signaling is enabled)"
            } else {
                "Succeeded to close WebSocket (DC signaling is not enabled)"
            };
            self.finish(code::CLOSE_SUCCEEDED, text);
        } else if self.switched && self.ignore_ws {
            // The WebSocket is no longer needed once switched with ignore_disconnect_websocket.
        } else if c == 1000 {
            let what = if self.switched { "WebSocket and DataChannel" } else { "WebSocket" };
            self.finish(code::CLOSE_SUCCEEDED, format!("Succeeded to close {what} from server: wscode={c} wsreason={reason}"));
        } else {
            self.finish(code::WEBSOCKET_ONCLOSE, format!("WebSocket closed by server: wscode={c} wsreason={reason}"));
        }
    }

    fn on_ws_error(&mut self, e: String) {
        self.ws = None;
        if self.switched && self.ignore_ws {
            return;
        }
        // No close frame: reported as code 0 with no reason, as the official SDK does.
        self.shared.emit(self.shared.event(EventType::WsClose).a(0).text(""));
        if self.disconnecting.is_some() {
            self.finish(code::CLOSE_FAILED, format!("WebSocket failed while disconnecting: {e}"));
        } else {
            self.finish(code::WEBSOCKET_ONERROR, format!("WebSocket error: {e}"));
        }
    }

    fn report(&self, via: i64, dir: i64, text: &str) {
        self.shared.emit(self.shared.event(EventType::SignalingMessage).a(via).b(dir).text(text));
    }

    async fn send_connect(&mut self, redirect: bool) {
        let msg = self.cfg.connect_message(redirect);
        self.report(VIA_WS, SENT, &msg.to_string());
        if !self.ws_send(&msg).await {
            self.finish(code::WEBSOCKET_ONERROR, "failed to send connect");
        }
    }

    /// Sends a signaling message on the `signaling` DataChannel after the switch, else on WS.
    async fn send_signaling(&mut self, v: Value) {
        let text = v.to_string();
        if self.switched && self.dc_send_text("signaling", &text) {
            self.report(VIA_DC, SENT, &text);
            return;
        }
        self.report(VIA_WS, SENT, &text);
        if !self.ws_send(&v).await {
            log::warn!("could not send {} message: no signaling transport", v["type"]);
        }
    }

    fn dc_by_label(&self, label: &str) -> Option<i32> {
        self.dc_labels.iter().find(|(_, l)| l.as_str() == label).map(|(dc, _)| *dc)
    }

    /// Sends `text` on a system DataChannel (zlib when the offer says that label is
    /// compressed). False when the channel is missing or the send failed.
    fn dc_send_text(&self, label: &str, text: &str) -> bool {
        let Some(dc) = self.dc_by_label(label) else { return false };
        let payload = if self.dc_compress.get(label).copied().unwrap_or(false) {
            zlib::compress(text.as_bytes())
        } else {
            text.as_bytes().to_vec()
        };
        rtc::dc_send(dc, &payload, true).is_ok()
    }

    // ---- incoming signaling ----

    async fn on_signaling_text(&mut self, text: &str, via: i64) {
        let (v, kind) = match parse_message(text) {
            Ok(parsed) => parsed,
            Err(why) if self.offer_received => {
                // A server that sent a good offer is working: one bad message (a notify
                // carrying a client's bad metadata, say) must not end the session. Ignored
                // and logged, as sora-js-sdk does (its handler throws and goes on).
                let snippet: String = text.chars().take(80).collect();
                log::warn!("ignoring a {why} from the server: {snippet:?}");
                return;
            }
            Err(why) => {
                // Before the offer there is nothing to go on with.
                let snippet: String = text.chars().take(80).collect();
                self.finish(code::INTERNAL_ERROR, format!("{why}: {snippet:?}"));
                return;
            }
        };
        match kind.as_str() {
            "offer" | "redirect" | "re-offer" | "update" | "close" | "candidate" => self.report(via, RECEIVED, text),
            _ => {}
        }
        match kind.as_str() {
            "offer" => self.on_offer(&v, text).await,
            "re-offer" | "update" => self.on_re_offer(&v, &kind).await,
            "redirect" => self.on_redirect(&v).await,
            "notify" => self.on_notify(&v, text),
            "push" => self.shared.emit(self.shared.event(EventType::Push).text(text)),
            "ping" => self.on_ping(&v).await,
            "candidate" => self.on_remote_candidate(&v),
            "switched" => self.on_switched(&v, text).await,
            "close" => {
                let reason = v.get("reason").and_then(Value::as_str).unwrap_or("");
                self.finish(code::CLOSE_SUCCEEDED, format!("Succeeded to close DataChannel: reason={reason}"));
            }
            "req-stats" => {
                let reply = json!({"type": "stats", "reports": stats(&self.shared)});
                self.dc_send_text("stats", &reply.to_string());
            }
            other => log::debug!("ignoring signaling message of type {other:?}"),
        }
    }

    async fn on_redirect(&mut self, v: &Value) {
        if self.offer_received {
            log::warn!("ignoring redirect after the offer");
            return;
        }
        let Some(location) = v.get("location").and_then(Value::as_str).map(str::to_owned) else {
            self.finish(code::INVALID_PARAMETER, "redirect without a location");
            return;
        };
        if self.redirects >= MAX_REDIRECTS {
            self.finish(
                code::INTERNAL_ERROR,
                format!("Too many redirects: gave up after {MAX_REDIRECTS} (last location: {location})"),
            );
            return;
        }
        self.redirects += 1;
        if let Err(e) = transport::parse_ws_url(&location) {
            self.finish(code::INVALID_PARAMETER, format!("invalid redirect location: {e}"));
            return;
        }
        // Leave the old node ourselves (reported as SELF-CLOSED, as the official SDK does).
        self.ws_close_self().await;
        self.ws_gen += 1;
        match tokio::time::timeout(self.t.websocket_connection, transport::open(&location, &self.transport)).await {
            Err(_) => self.finish(code::INTERNAL_ERROR, "Connection timeout in redirection"),
            Ok(Err(OpenError::InvalidUrl(m))) => self.finish(code::INVALID_PARAMETER, m),
            Ok(Err(OpenError::Failed(m))) => {
                self.finish(code::WEBSOCKET_HANDSHAKE_FAILED, format!("Failed to connect to the redirect location: {m}"))
            }
            Ok(Ok(ws)) => {
                self.set_info("connected_url", json!(location));
                self.attach_ws(ws);
                self.send_connect(true).await;
            }
        }
    }

    fn set_info(&self, key: &str, v: Value) {
        self.shared.state.lock().info.insert(key.into(), v);
    }

    async fn on_offer(&mut self, v: &Value, text: &str) {
        if self.offer_received {
            log::warn!("ignoring a second offer on the same session");
            return;
        }
        self.offer_received = true;
        self.offer_at = Some(Instant::now());
        self.shared.emit(self.shared.event(EventType::SetOffer).text(text));
        let (Some(sdp_text), Some(conn_id)) = (
            v.get("sdp").and_then(Value::as_str),
            v.get("connection_id").and_then(Value::as_str),
        ) else {
            self.finish(code::INTERNAL_ERROR, "offer without sdp or connection_id");
            return;
        };
        self.connection_id = conn_id.to_string();
        for key in ["connection_id", "session_id", "client_id", "bundle_id"] {
            if let Some(s) = v.get(key).filter(|x| x.is_string()) {
                self.set_info(key, s.clone());
            }
        }
        let fields = offer_fields(v);
        self.dc_signaling = fields.dc_signaling;
        self.ignore_ws = fields.ignore_ws;
        self.dc_compress.extend(fields.dc_compress);
        let config = PeerConfig {
            ice_servers: fields.ice_servers,
            relay_only: fields.relay_only,
            bind_address: self.cfg.bind_address.clone(),
            disable_auto_negotiation: true,
            // The receive pipelines' packet handlers only queue the packet (media::recv).
            inline_media_receive: true,
            ..Default::default()
        };
        let observer = Forward { tx: self.tx.clone(), tracks_by_mid: self.tracks_by_mid.clone() };
        let peer = match Peer::new(&config, Arc::new(observer)) {
            Ok(p) => p,
            Err(e) => return self.finish(code::INTERNAL_ERROR, format!("failed to create the peer connection: {e}")),
        };
        self.shared.state.lock().pc = Some(peer.id());
        self.peer = Some(peer);
        if let Some(answer) = self.apply_offer(sdp_text, Some(v)).await {
            let msg = json!({"type": "answer", "sdp": answer});
            self.report(VIA_WS, SENT, &msg.to_string());
            if !self.ws_send(&msg).await {
                return self.finish(code::WEBSOCKET_ONERROR, "failed to send answer");
            }
            if self.dc_signaling {
                self.switch_deadline = Some(Instant::now() + self.t.data_channel_signaling);
            }
        }
    }

    async fn on_re_offer(&mut self, v: &Value, kind: &str) {
        let Some(sdp_text) = v.get("sdp").and_then(Value::as_str) else {
            return self.finish(code::INTERNAL_ERROR, format!("{kind} without sdp"));
        };
        if self.peer.is_none() {
            return self.finish(code::INTERNAL_ERROR, format!("{kind} before offer"));
        }
        if !self.pc_connected {
            log::debug!("{kind} before the peer connection is up: applied once connected");
            self.deferred_re_offer = Some((v.clone(), kind.to_string()));
            return;
        }
        if let Some(answer) = self.apply_offer(sdp_text, None).await {
            let reply = if kind == "update" { "update" } else { "re-answer" };
            self.send_signaling(json!({"type": reply, "sdp": answer})).await;
        }
    }

    /// setRemoteDescription(offer) + answer. On failure ends the session with ICE_FAILED
    /// after telling the server (as the official SDK does).
    async fn apply_offer(&mut self, offer: &str, initial: Option<&Value>) -> Option<String> {
        let peer = self.peer.as_ref()?;
        // Take the DTLS server role (answer a=setup:passive, which RFC 5763 allows for an
        // actpass offer). The offerer then starts DTLS only after its own ICE check
        // succeeded, when our DTLS transport already exists; the other way round the first
        // ClientHello regularly arrives too early, is dropped, and costs a 1 s retransmit.
        let munged = offer.replace("a=setup:actpass", "a=setup:active");
        let mut upstream = Vec::new();
        let result = peer
            .set_remote_description(&munged, "offer")
            .and_then(|_| match initial {
                // Our sending sections must exist before the answer is made.
                Some(msg) => self.add_upstream_tracks(msg, offer).map(|u| upstream = u),
                None => Ok(()),
            })
            .and_then(|_| self.peer.as_ref().expect("peer").set_local_description(Some("answer")))
            .and_then(|_| self.peer.as_ref().expect("peer").local_description());
        match result {
            Ok(mut answer) => {
                // A simulcast sender's layers are told by their RIDs, not named (the SSRCs
                // were only for libdatachannel): the answer says what libwebrtc's says.
                for p in &upstream {
                    if let PendingSender::Simulcast(_, _, cfg, ..) = p {
                        answer = sdp::without_ssrcs(&answer, &cfg.info.mid);
                    }
                }
                self.start_senders(upstream);
                add_candidates(self.peer.as_ref()?, std::mem::take(&mut self.early_candidates));
                self.update_tracks(offer);
                Some(answer)
            }
            Err(e) => {
                self.send_signaling(json!({"type": "disconnect", "reason": "INTERNAL-ERROR"})).await;
                self.finish(code::ICE_FAILED, format!("Failed to apply the offer: {e}"));
                None
            }
        }
    }

    /// Adds our sending m-sections (the mids the offer assigned to us in `mid`) for the
    /// configured sources; returns what to start once the answer is set.
    fn add_upstream_tracks(&self, msg: &Value, offer: &str) -> Result<Vec<PendingSender>> {
        let sections = sdp::media_sections(offer);
        let mut pending = Vec::new();
        let peer = self.peer.as_ref().expect("peer");
        let stream_id = self.connection_id.clone();
        let find = |kind: &str| {
            let mid = msg.pointer(&format!("/mid/{kind}")).and_then(Value::as_str)?;
            sections.iter().find(|m| m.mid == mid && m.kind == kind && m.port != 0)
        };
        let cc = self.congestion_control(msg, &[find("audio"), find("video")]);
        self.shared.state.lock().cc = cc.clone();
        let twcc_ext = cc.as_ref().map(|c| [(c.ext_id, media::rtp::twcc::URI)]);
        let extmaps: &[(u8, &str)] = twcc_ext.as_ref().map_or(&[], |e| &e[..]);
        if let Some(src) = self.cfg.video_source.and_then(media::source::video_source) {
            if let Some(section) = find("video") {
                let wanted = msg
                    .get("video_codec_type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| self.cfg.video_codec_type.clone());
                // Only codecs the preference gives an encoder (by default: what an engine
                // of this machine encodes).
                let sendable = |f: &&sdp::Format| {
                    engine::CodecType::from_name(&f.name).is_some_and(|c| self.codecs.encoder(c).is_some())
                };
                let format = match wanted.as_deref() {
                    Some(name) => section.format(name).filter(sendable),
                    None => section.formats.iter().find(sendable),
                };
                let Some(format) = format else {
                    return Err(crate::error::Error::invalid(format!(
                        "no sendable video codec in the offer (asked for {wanted:?}; the codec preference \
                         and this build's engines allow encoding {})",
                        self.sendable_names()
                    )));
                };
                let codec = match format.name.to_ascii_uppercase().as_str() {
                    "VP8" => media::codec::VideoCodec::Vp8,
                    "VP9" => media::codec::VideoCodec::Vp9,
                    "H264" => media::codec::VideoCodec::H264,
                    "H265" => media::codec::VideoCodec::H265,
                    "AV1" => media::codec::VideoCodec::Av1,
                    other => return Err(crate::error::Error::invalid(format!("{other} encoding is not available in this build"))),
                };
                let engine = self.encoder_engine(codec, format)?;
                let simulcast = self.simulcast_layers(msg, section)?;
                let (track, ssrc, bitrate_kbps, info) = self.add_video_upstream(msg, section, format, &stream_id, simulcast.as_ref(), extmaps)?;
                let vp9_profile = format.fmtp_param("profile-id").and_then(|p| p.parse().ok()).unwrap_or(0);
                let cfg = media::send::VideoSendConfig {
                    codec, engine, payload_type: format.pt, ssrc, bitrate_kbps, cname: self.cname.clone(), vp9_profile, info,
                    degradation: media::adapt::DegradationPreference::from_api(self.cfg.degradation_preference)
                        .unwrap_or(media::adapt::DegradationPreference::MaintainFramerate),
                    transformer: self.cfg.video_frame_transformer.and_then(media::transform::transformer),
                    pacing_factor: self.cfg.tuning.video_pacing_factor,
                    pacing_max_delay: self.cfg.tuning.video_pacing_max_delay_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                    cc: cc.clone(),
                };
                pending.push(match simulcast {
                    Some((layers, sim)) => PendingSender::Simulcast(track, src.subscribe(), cfg, layers, sim.mid_ext, sim.rid_ext),
                    None => PendingSender::Video(track, src.subscribe(), cfg),
                });
            }
        }
        if let Some(src) = self.cfg.video_source.and_then(media::encoded::encoded_video_source) {
            if let Some(section) = find("video") {
                // Access units sent as they are: the offer must carry the source's codec; no
                // engine or preference is involved.
                let name = src.codec.name();
                let Some(format) = section.format(name) else {
                    let offered: Vec<&str> = section.formats.iter().map(|f| f.name.as_str()).collect();
                    return Err(crate::error::Error::invalid(format!(
                        "the offer has no {name} for the encoded video source (it offers {offered:?}; \
                         connect with video_codec_type=\"{name}\")"
                    )));
                };
                if offers_simulcast(msg, self.cfg.simulcast) {
                    log::warn!("simulcast: an encoded video source sends its access units as they are, as one stream");
                }
                let (track, ssrc, bitrate_kbps, info) = self.add_video_upstream(msg, section, format, &stream_id, None, extmaps)?;
                pending.push(PendingSender::Encoded(track, src.subscribe(), media::send::EncodedSendConfig {
                    codec: media::encoded::rtp_codec(src.codec),
                    payload_type: format.pt, ssrc, bitrate_kbps, cname: self.cname.clone(), info,
                    h264_single_nal_mode: format.fmtp_param("packetization-mode").unwrap_or("0") == "0",
                    transformer: self.cfg.video_frame_transformer.and_then(media::transform::transformer),
                    pacing_factor: self.cfg.tuning.video_pacing_factor,
                    pacing_max_delay: self.cfg.tuning.video_pacing_max_delay_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0)),
                    cc: cc.clone(),
                }));
            }
        }
        if let Some(src) = self.cfg.audio_source.and_then(media::source::audio_source) {
            if let Some(section) = find("audio") {
                let format = section
                    .format("opus")
                    .ok_or_else(|| crate::error::Error::invalid("the offer has no Opus for our audio"))?;
                let params = opus_params(self.cfg.audio_opus_params.as_ref());
                let bitrate_bps = self.cfg.audio_bit_rate.map(|k| k * 1000);
                let mut fmtp = vec!["minptime=10".to_string(), format!("useinbandfec={}", params.useinbandfec as u8)];
                if params.stereo {
                    fmtp.push("stereo=1;sprop-stereo=1".into());
                }
                if params.usedtx {
                    fmtp.push("usedtx=1".into());
                }
                if let Some(b) = bitrate_bps {
                    fmtp.push(format!("maxaveragebitrate={b}"));
                }
                if let Some(r) = params.maxplaybackrate {
                    fmtp.push(format!("maxplaybackrate={r}"));
                }
                let ssrc: u32 = rand::random::<u32>() | 1;
                let audio_level_ext = section.extmap_id(media::rtp::audio_level::URI).filter(|id| (1..=14).contains(id));
                let mut audio_extmaps = extmaps.to_vec();
                audio_extmaps.extend(audio_level_ext.map(|id| (id, media::rtp::audio_level::URI)));
                let text = sdp::upstream_section(&sdp::Upstream {
                    mid: &section.mid, kind: "audio", format, fmtp: Some(fmtp.join(";")), ssrc,
                    cname: &self.cname, stream_id: &stream_id, track_id: "audio", simulcast: None, extmaps: &audio_extmaps,
                });
                let track = peer.add_track(&text)?;
                let info = media::rtp::StreamInfo {
                    mid: section.mid.clone(),
                    payload_type: format.pt,
                    mime: "audio/opus".into(),
                    clock_rate: 48_000,
                    channels: 2,
                    fmtp: Some(fmtp.join(";")),
                };
                pending.push(PendingSender::Audio(track, src.subscribe(), media::send::AudioSendConfig {
                    payload_type: format.pt, ssrc, bitrate_bps, params, cname: self.cname.clone(), info,
                    transformer: self.cfg.audio_frame_transformer.and_then(media::transform::transformer),
                    min_packet_loss_percent: self.cfg.tuning.opus_min_packet_loss_percent.unwrap_or(0),
                    cc: cc.clone(),
                    audio_level_ext,
                }));
            }
        }
        Ok(pending)
    }

    fn start_senders(&mut self, pending: Vec<PendingSender>) {
        for p in pending {
            let sender = match p {
                PendingSender::Video(track, slot, cfg) => Ok(media::send::start_video(track, slot, cfg)),
                PendingSender::Simulcast(track, slot, cfg, layers, mid_ext, rid_ext) => {
                    Ok(media::send::start_simulcast_video(track, slot, cfg, layers, mid_ext, rid_ext))
                }
                PendingSender::Audio(track, feed, cfg) => media::send::start_audio(track, feed, cfg),
                PendingSender::Encoded(track, feed, cfg) => Ok(media::send::start_encoded_video(track, feed, cfg)),
            };
            match sender {
                Ok(s) => {
                    self.shared.state.lock().senders.extend(s.streams());
                    self.senders.push(s);
                }
                Err(e) => log::error!("cannot start sending: {e}"),
            }
        }
    }

    fn update_tracks(&mut self, offer: &str) {
        let live = sdp::remote_tracks(offer);
        let live_mids: HashSet<&str> = live.iter().map(|m| m.mid.as_str()).collect();
        let ended: Vec<(String, u64)> = self
            .remote_mids
            .iter()
            .filter(|(mid, _)| !live_mids.contains(mid.as_str()))
            .map(|(m, id)| (m.clone(), *id))
            .collect();
        for (mid, id) in ended {
            self.remote_mids.remove(&mid);
            let receiver = {
                let mut st = self.shared.state.lock();
                if let Some(t) = st.tracks.get_mut(&id) {
                    t.ended = true;
                }
                st.receivers.remove(&id)
            };
            if let Some(r) = receiver {
                r.stop();
            }
            self.shared.emit(self.shared.event(EventType::TrackEnded).a(id as i64));
        }
        for m in live {
            let (stream_id, track_id) = m.msid.clone().unwrap_or_default();
            if self.remote_mids.contains_key(&m.mid) || stream_id == self.connection_id {
                continue;
            }
            let id = next_handle_id();
            self.remote_mids.insert(m.mid.clone(), id);
            let entry = TrackEntry {
                kind: m.kind.clone(),
                mid: m.mid.clone(),
                stream_id: stream_id.clone(),
                track_id: track_id.clone(),
                enabled: true,
                ended: false,
            };
            self.shared.state.lock().tracks.insert(id, entry);
            self.start_receiver(id, &m);
            let detail = json!({"id": track_id, "stream_id": stream_id, "mid": m.mid, "kind": m.kind});
            self.shared.emit(
                self.shared.event(EventType::Track).a(id as i64).text(&m.kind).text2(&detail.to_string()),
            );
        }
    }

    /// Adds our video track for `format` of the offer's `section`: the track, its SSRC, the
    /// bitrate to send at (the server's `video_bit_rate`, ours, or the default) and the stream
    /// facts stats report.
    /// Congestion control for what we send, when the offer takes transport-cc (its extension
    /// and feedback on our upstream sections, with one id): the estimate starts at and never
    /// exceeds the configured bitrates.
    fn congestion_control(&self, msg: &Value, upstream: &[Option<&sdp::MediaSection>]) -> Option<Arc<media::cc::CongestionController>> {
        let sections: Vec<&sdp::MediaSection> = upstream.iter().flatten().copied().collect();
        let ids: Vec<Option<u8>> = sections.iter().map(|m| m.extmap_id(media::rtp::twcc::URI)).collect();
        let id = (*ids.first()?)?;
        let takes_feedback = sections.iter().all(|m| m.formats.iter().any(|f| f.rtcp_fb.iter().any(|fb| fb == "transport-cc")));
        if !ids.iter().all(|i| *i == Some(id)) || !takes_feedback || !(1..=14).contains(&id) {
            return None;
        }
        let mut video_bps = msg.get("video_bit_rate").and_then(Value::as_u64).map(|k| k as u32)
            .or(self.cfg.video_bit_rate).unwrap_or(DEFAULT_VIDEO_KBPS) as u64 * 1000;
        if offers_simulcast(msg, self.cfg.simulcast) {
            // simulcast layers add up to the active encodings' maxBitrate (what Sora's REMB says)
            let layers: u64 = msg.get("encodings").and_then(Value::as_array).map_or(0, |list| {
                list.iter()
                    .filter(|e| e.get("active").and_then(Value::as_bool) != Some(false))
                    .filter_map(|e| e.get("maxBitrate").and_then(Value::as_f64))
                    .filter(|b| b.is_finite() && *b > 0.0)
                    .map(|b| b.min(1e9) as u64)
                    .sum()
            });
            video_bps = video_bps.max(layers);
        }
        let audio_bps = if self.cfg.audio_source.is_some() { self.cfg.audio_bit_rate.map_or(64_000, |k| k as u64 * 1000) } else { 0 };
        Some(media::cc::CongestionController::new(id, video_bps + audio_bps, video_bps + audio_bps, audio_bps))
    }

    /// With `simulcast` asked for and an offer that takes it (`a=simulcast:recv` and the
    /// MID and RID header extensions): the layers to send (`offer.encodings`), each with an
    /// SSRC of its own, and what the answer says about them. None: one stream.
    fn simulcast_layers(&self, msg: &Value, section: &sdp::MediaSection)
        -> Result<Option<(Vec<media::simulcast::LayerSpec>, sdp::SimulcastSend)>> {
        if !offers_simulcast(msg, self.cfg.simulcast) || section.simulcast_recv.is_empty() {
            return Ok(None);
        }
        let (Some(mid_ext), Some(rid_ext)) = (section.extmap_id(sdp::MID_URI), section.extmap_id(sdp::RID_URI)) else {
            log::warn!("simulcast: the offer has no MID and RID header extensions; sending one stream");
            return Ok(None);
        };
        if self.cfg.video_frame_transformer.is_some() {
            return Err(crate::error::Error::invalid(
                "simulcast with a video_frame_transformer is not supported (the transform sees one stream)",
            ));
        }
        let mut layers = media::simulcast::layers_from_offer(&section.simulcast_recv, msg.get("encodings"));
        for l in &mut layers {
            l.ssrc = rand::random::<u32>() | 1;
        }
        let sim = sdp::SimulcastSend {
            layers: layers
                .iter()
                .map(|l| {
                    let paused = section.simulcast_recv.iter().any(|(rid, p)| *rid == l.rid && *p);
                    (l.rid.clone(), paused, l.ssrc)
                })
                .collect(),
            mid_ext,
            rid_ext,
        };
        Ok(Some((layers, sim)))
    }

    fn add_video_upstream(&self, msg: &Value, section: &sdp::MediaSection, format: &sdp::Format, stream_id: &str,
                          simulcast: Option<&(Vec<media::simulcast::LayerSpec>, sdp::SimulcastSend)>, extmaps: &[(u8, &str)])
        -> Result<(i32, u32, u32, media::rtp::StreamInfo)> {
        let peer = self.peer.as_ref().ok_or_else(|| crate::error::Error::state("no peer connection"))?;
        let ssrc: u32 = simulcast.map_or_else(|| rand::random::<u32>() | 1, |(layers, _)| layers[0].ssrc);
        let text = sdp::upstream_section(&sdp::Upstream {
            mid: &section.mid, kind: "video", format, fmtp: None, ssrc,
            cname: &self.cname, stream_id, track_id: "video", simulcast: simulcast.map(|(_, sim)| sim), extmaps,
        });
        let track = peer.add_track(&text)?;
        let bitrate_kbps = msg
            .get("video_bit_rate")
            .and_then(Value::as_u64)
            .map(|b| b as u32)
            .or(self.cfg.video_bit_rate)
            .unwrap_or(DEFAULT_VIDEO_KBPS);
        let info = media::rtp::StreamInfo {
            mid: section.mid.clone(),
            payload_type: format.pt,
            mime: format!("video/{}", format.name.to_ascii_uppercase()),
            clock_rate: 90_000,
            channels: 0,
            fmtp: format.fmtp.clone(),
        };
        Ok((track, ssrc, bitrate_kbps, info))
    }

    /// The engine that encodes `codec` for the offered `format`: libvpx or libaom, or the OpenH264
    /// library given as `Sora(openh264=...)` with the offer's profile-level-id (Constrained
    /// Baseline only) and packetization-mode.
    fn encoder_engine(&self, codec: media::codec::VideoCodec, format: &sdp::Format) -> crate::error::Result<media::codec::EncoderEngine> {
        use media::codec::openh264::{baseline_level, H264Params};
        if codec == media::codec::VideoCodec::Av1 {
            // video_av1_params.profile: libaom here encodes 8-bit 4:2:0, the main profile.
            if let Some(p) = format.fmtp_param("profile").filter(|p| p.trim() != "0") {
                return Err(crate::error::Error::invalid(format!(
                    "AV1 profile {p} cannot be encoded here (the main profile, 0, only)"
                )));
            }
        }
        let single_nal_mode = format.fmtp_param("packetization-mode").unwrap_or("0") == "0";
        if self.codecs.encoder(codec.into()) == Some(engine::Implementation::NvidiaVideoCodecSdk) {
            if codec == media::codec::VideoCodec::H264 {
                media::codec::nvenc::check_h264_packetization(single_nal_mode)?;
            }
            return Ok(media::codec::EncoderEngine::Nvenc);
        }
        if codec != media::codec::VideoCodec::H264 {
            return Ok(media::codec::EncoderEngine::Internal);
        }
        let path = self.cfg.openh264.clone().ok_or_else(|| {
            crate::error::Error::invalid("H.264 encoding needs an OpenH264 library: Sora(openh264=<path of libopenh264>)")
        })?;
        // RFC 6184: no profile-level-id means 42000a (Baseline, level 1.0).
        let level_idc =
            baseline_level(format.fmtp_param("profile-level-id").unwrap_or("42000a")).map_err(crate::error::Error::invalid)?;
        // Probe now, so a missing or wrong library fails the connection with its reason.
        media::codec::openh264::probe(&path)?;
        Ok(media::codec::EncoderEngine::OpenH264 { path, params: H264Params { level_idc, single_nal_mode, ..H264Params::default() } })
    }

    fn start_receiver(&self, id: u64, m: &sdp::MediaSection) {
        let Some(&track) = self.tracks_by_mid.lock().get(&m.mid) else {
            log::warn!("no libdatachannel track for remote mid {}", m.mid);
            return;
        };
        // Video only where the preference names a decoder for the codec.
        let decodable = |name: &str| engine::CodecType::from_name(name).is_some_and(|c| self.codecs.decoder(c).is_some());
        let codec = m.formats.iter().find_map(|f| match f.name.to_ascii_uppercase().as_str() {
            "VP8" if decodable("VP8") => Some(media::rtp::RtpCodec::Vp8),
            "VP9" if decodable("VP9") => Some(media::rtp::RtpCodec::Vp9),
            "H264" if decodable("H264") => Some(media::rtp::RtpCodec::H264),
            "AV1" if decodable("AV1") => Some(media::rtp::RtpCodec::Av1),
            // No engine here decodes H.265, but its access units still reach an encoded
            // transform on the track (relays, recorders); sinks get a clear error.
            "H265" => Some(media::rtp::RtpCodec::H265),
            "OPUS" => Some(media::rtp::RtpCodec::Opus),
            _ => None,
        });
        let Some(codec) = codec else {
            let names: Vec<&str> = m.formats.iter().map(|f| f.name.as_str()).collect();
            log::warn!(
                "remote {} track {} cannot be received: no decoder for {names:?} in the codec preference and this build's engines",
                m.kind, m.mid
            );
            return;
        };
        // Decode two channels when Sora says it sends them (sprop-stereo) or asks for them
        // (stereo); parameters are matched whole, so "stereo=10" or "x-stereo=1" do not count.
        let stereo = m
            .format("opus")
            .is_some_and(|f| f.fmtp_param("sprop-stereo") == Some("1") || f.fmtp_param("stereo") == Some("1"));
        let (name, kind) = match codec {
            media::rtp::RtpCodec::Vp8 => ("VP8", "video"),
            media::rtp::RtpCodec::Vp9 => ("VP9", "video"),
            media::rtp::RtpCodec::H264 => ("H264", "video"),
            media::rtp::RtpCodec::H265 => ("H265", "video"),
            media::rtp::RtpCodec::Av1 => ("AV1", "video"),
            media::rtp::RtpCodec::Opus => ("opus", "audio"),
        };
        let format = m.format(name);
        let info = media::rtp::StreamInfo {
            mid: m.mid.clone(),
            payload_type: format.map_or(0, |f| f.pt),
            mime: format!("{kind}/{name}"),
            clock_rate: codec.default_clock_rate(),
            channels: if codec.is_video() { 0 } else { 2 },
            fmtp: format.and_then(|f| f.fmtp.clone()),
        };
        let decoder = match engine::CodecType::from_name(name).and_then(|c| self.codecs.decoder(c)) {
            Some(engine::Implementation::Internal) => media::codec::DecoderEngine::Internal,
            Some(engine::Implementation::CiscoOpenh264) => {
                self.cfg.openh264.clone().map_or(media::codec::DecoderEngine::Unavailable, media::codec::DecoderEngine::OpenH264)
            }
            Some(engine::Implementation::NvidiaVideoCodecSdk) => media::codec::DecoderEngine::Nvdec,
            _ => media::codec::DecoderEngine::Unavailable,
        };
        let level_ext = m.extmap_id(media::rtp::audio_level::URI).filter(|id| (1..=14).contains(id));
        let r = media::recv::Receiver::start(track, codec, stereo, info, decoder, level_ext);
        self.shared.state.lock().receivers.insert(id, Arc::new(r));
    }

    fn on_notify(&mut self, v: &Value, text: &str) {
        self.shared.emit(self.shared.event(EventType::Notify).text(text));
        if v.get("event_type").and_then(Value::as_str) == Some("connection.created")
            && v.get("connection_id").and_then(Value::as_str) == Some(self.connection_id.as_str())
        {
            self.self_notified = true;
            self.check_connected();
        }
    }

    fn check_connected(&mut self) {
        if !self.connected && self.offer_received && self.pc_connected && self.self_notified {
            self.connected = true;
            self.shared.set_connected();
            self.shared.emit(self.shared.event(EventType::Connected).text(&self.connection_id));
        }
    }

    /// Sora puts its candidates in the offer, but a server may trickle them too.
    fn on_remote_candidate(&mut self, v: &Value) {
        let Some(cand) = v.get("candidate").and_then(Value::as_str) else { return };
        let mid = v.get("sdpMid").and_then(Value::as_str).map(str::to_owned);
        match &self.peer {
            Some(peer) => add_candidates(peer, [(cand.to_string(), mid)]),
            None => self.early_candidates.push((cand.to_string(), mid)),
        }
    }

    async fn on_ping(&mut self, v: &Value) {
        if let Some(t) = self.t.ping {
            // The server's interval is not known: give it three of its longest gaps, and
            // at least ping_timeout, so a server that pings rarely is not taken for dead.
            // Before the second ping, the time from the offer to the first stands for it.
            let now = Instant::now();
            if let Some(since) = self.last_ping.or(self.offer_at) {
                self.ping_gap = self.ping_gap.max(now - since);
            }
            self.ping_deadline = Some(now + t.max(self.ping_gap * 3));
            self.last_ping = Some(now);
        }
        let reply = if v.get("stats").and_then(Value::as_bool) == Some(true) {
            json!({"type": "pong", "stats": stats(&self.shared)})
        } else {
            json!({"type": "pong"})
        };
        self.ws_send(&reply).await;
    }

    async fn on_switched(&mut self, v: &Value, text: &str) {
        self.switched = true;
        self.switch_deadline = None;
        self.shared.state.lock().switched = true;
        if let Some(i) = v.get("ignore_disconnect_websocket").and_then(Value::as_bool) {
            self.ignore_ws = i;
        }
        self.shared.emit(self.shared.event(EventType::Switched).text(text));
        if self.ignore_ws {
            self.ws_close_self().await;
        }
    }

    // ---- libdatachannel events ----

    async fn on_rtc(&mut self, ev: RtcEvent) {
        match ev {
            RtcEvent::LocalCandidate { candidate, mid } => {
                let cand = candidate.strip_prefix("a=").unwrap_or(&candidate).to_string();
                if self.ws.is_some() {
                    let msg = json!({"type": "candidate", "candidate": cand, "sdpMid": mid});
                    self.report(VIA_WS, SENT, &msg.to_string());
                    self.ws_send(&msg).await;
                }
            }
            RtcEvent::State(s) => match s {
                2 => {
                    self.pc_connected = true;
                    self.check_connected();
                    if let Some((v, kind)) = self.deferred_re_offer.take() {
                        self.on_re_offer(&v, &kind).await;
                    }
                }
                // While disconnecting the server tears the peer down: that is the expected end.
                4 if self.disconnecting.is_none() => {
                    self.finish(code::PEER_CONNECTION_STATE_FAILED, "PeerConnectionState::failed")
                }
                5 if self.disconnecting.is_none() && self.ws.is_none() => {
                    self.finish(code::CLOSE_SUCCEEDED, "Succeeded to close DataChannel from server (peer connection closed)")
                }
                _ => {}
            },
            RtcEvent::RemoteDataChannel { dc, label } | RtcEvent::DcOpen { dc, label } => self.on_dc_open(dc, label),
            RtcEvent::DcMessage { dc, data, .. } => self.on_dc_message(dc, data).await,
            RtcEvent::DcClosed { dc } => self.on_dc_closed(dc),
            RtcEvent::DcError { dc, message } => log::warn!("data channel {dc} error: {message}"),
            RtcEvent::LocalDescription { .. } | RtcEvent::Gathering(_) | RtcEvent::Track { .. } => {}
        }
    }

    fn on_dc_open(&mut self, dc: i32, label: String) {
        if self.dc_labels.insert(dc, label.clone()).is_some() {
            return; // already known (remote-created channels also report open)
        }
        let compress = self.dc_compress.get(&label).copied().unwrap_or(false);
        self.shared
            .state
            .lock()
            .channels
            .insert(label.clone(), ChannelEntry { dc, compress, open: true, ..Default::default() });
        // Like the official SDK, every opened channel is announced, system labels included.
        self.shared.emit(self.shared.event(EventType::DataChannel).text(&label));
    }

    async fn on_dc_message(&mut self, dc: i32, data: Vec<u8>) {
        let Some(label) = self.dc_labels.get(&dc).cloned() else { return };
        let data = if self.dc_compress.get(&label).copied().unwrap_or(false) {
            match zlib::decompress(&data, zlib::MAX_INFLATED) {
                Ok(d) => d,
                Err(e) => {
                    if let Some(ch) = self.shared.state.lock().channels.get_mut(&label) {
                        ch.messages_dropped += 1;
                    }
                    log::warn!("dropping a message on data channel {label:?}: {e}");
                    return;
                }
            }
        } else {
            data
        };
        if label.starts_with('#') {
            if let Some(ch) = self.shared.state.lock().channels.get_mut(&label) {
                ch.messages_received += 1;
                ch.bytes_received += data.len() as u64;
            }
            self.shared.emit(self.shared.event(EventType::Message).text(&label).data(data));
            return;
        }
        match label.as_str() {
            "rpc" => self.shared.emit(self.shared.event(EventType::Rpc).data(data)),
            "signaling" | "notify" | "push" | "stats" => {
                let text = String::from_utf8_lossy(&data).into_owned();
                self.on_signaling_text(&text, VIA_DC).await;
            }
            other => log::debug!("message on unknown data channel {other:?}"),
        }
    }

    fn on_dc_closed(&mut self, dc: i32) {
        let Some(label) = self.dc_labels.remove(&dc) else { return };
        if let Some(ch) = self.shared.state.lock().channels.get_mut(&label) {
            ch.open = false;
        }
        if self.disconnecting == Some(Disconnecting::DcClose) && self.dc_labels.is_empty() {
            self.finish(code::CLOSE_SUCCEEDED, "Succeeded to close DataChannel");
        } else if self.disconnecting.is_none() && self.switched && self.ws.is_none() && label == "signaling" {
            self.finish(code::CLOSE_SUCCEEDED, "Succeeded to close DataChannel from server");
        }
    }

    // ---- ending ----

    async fn on_disconnect_requested(&mut self) {
        self.closing.get_or_insert_with(Closing::new);
        if self.disconnecting.is_some() {
            return;
        }
        if !self.offer_received || self.peer.is_none() {
            self.finish(code::CLOSE_SUCCEEDED, "disconnect() called before the session was established");
            return;
        }
        let msg = json!({"type": "disconnect", "reason": "NO-ERROR"});
        self.send_signaling(msg).await;
        self.disconnecting = Some(if self.ws.is_some() { Disconnecting::WsClose } else { Disconnecting::DcClose });
        self.disconnect_deadline = Some(Instant::now() + self.t.disconnect_wait);
    }

    async fn teardown(&mut self, rx: &mut mpsc::UnboundedReceiver<Input>) {
        if self.ws.is_some() {
            // Close politely and wait up to websocket_close_timeout for the server's reply.
            self.ws_close_self().await;
            let gen = self.ws_gen;
            let wait = async {
                while let Some(i) = rx.recv().await {
                    if let Input::Ws(g, WsInput::Closed(..) | WsInput::Error(_)) = i {
                        if g == gen {
                            return;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(self.t.websocket_close, wait).await;
        }
        if let Some(reader) = self.ws_reader.take() {
            reader.abort();
        }
        // Media threads first: they send on tracks of the peer we are about to delete.
        let senders = std::mem::take(&mut self.senders);
        let receivers: Vec<_> = self.shared.state.lock().receivers.drain().map(|(_, r)| r).collect();
        let _ = tokio::task::spawn_blocking(move || {
            senders.into_iter().for_each(media::send::Sender::stop);
            receivers.iter().for_each(|r| r.stop());
        })
        .await;
        if let Some(peer) = self.peer.take() {
            // Deleting a peer joins libdatachannel work: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || drop(peer)).await;
        }
        let End(c, m) = self.end.take().unwrap_or(End(code::INTERNAL_ERROR, "session ended".into()));
        self.shared.finish(c, &m);
    }
}

const DEFAULT_VIDEO_KBPS: u32 = 1000;

/// Adds remote candidates; one the peer rejects is logged and skipped.
fn add_candidates(peer: &Peer, candidates: impl IntoIterator<Item = (String, Option<String>)>) {
    for (cand, mid) in candidates {
        if let Err(e) = peer.add_remote_candidate(&cand, mid.as_deref()) {
            log::warn!("ignoring remote candidate {cand:?}: {e}");
        }
    }
}

/// Whether we send simulcast: asked for at connect, or because the server's offer says so
/// (Sora turns it on for spotlight; the official SDKs follow the offer's `simulcast` flag).
fn offers_simulcast(offer: &Value, asked: Option<bool>) -> bool {
    asked == Some(true) || offer.get("simulcast").and_then(Value::as_bool) == Some(true)
}

enum PendingSender {
    Video(i32, Arc<media::source::FrameSlot>, media::send::VideoSendConfig),
    /// Simulcast: the layers, and the MID and RID header extension ids.
    Simulcast(i32, Arc<media::source::FrameSlot>, media::send::VideoSendConfig, Vec<media::simulcast::LayerSpec>, u8, u8),
    Audio(i32, Arc<media::source::AudioFeed>, media::send::AudioSendConfig),
    Encoded(i32, Arc<media::encoded::EncodedFeed>, media::send::EncodedSendConfig),
}

/// `audio_opus_params` → encoder parameters (unknown keys are Sora's business, not ours).
fn opus_params(v: Option<&Value>) -> media::codec::OpusParams {
    let mut p = media::codec::OpusParams::default();
    let Some(v) = v else { return p };
    let flag = |k: &str| v.get(k).and_then(|x| x.as_bool().or_else(|| x.as_u64().map(|n| n != 0)));
    if let Some(b) = flag("stereo") {
        p.stereo = b;
    }
    if let Some(b) = flag("usedtx") {
        p.usedtx = b;
    }
    if let Some(b) = flag("useinbandfec") {
        p.useinbandfec = b;
    }
    if let Some(t) = v.get("ptime").and_then(Value::as_u64) {
        p.ptime_ms = t as u32;
    }
    if let Some(r) = v.get("maxplaybackrate").and_then(Value::as_u64) {
        p.maxplaybackrate = Some(r as u32);
    }
    p
}

async fn wait_disconnect(rx: &mut mpsc::UnboundedReceiver<Input>) {
    loop {
        match rx.recv().await {
            Some(Input::Disconnect) | None => return,
            Some(_) => {}
        }
    }
}

/// `config.iceServers` → libdatachannel server strings (`turn:user:pass@host:port?transport=udp`).
fn ice_servers(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    for server in v.and_then(Value::as_array).into_iter().flatten() {
        let urls: Vec<&str> = match server.get("urls") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let user = server.get("username").and_then(Value::as_str);
        let cred = server.get("credential").and_then(Value::as_str);
        for u in urls {
            match (u.split_once(':'), user, cred) {
                (Some((scheme, rest)), Some(user), Some(cred)) if scheme.starts_with("turn") => {
                    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                    out.push(format!("{scheme}:{}:{}@{rest}", enc(user), enc(cred)));
                }
                _ => out.push(u.to_string()),
            }
        }
    }
    out
}

/// What the session takes from an offer besides its SDP and ids.
pub(crate) struct OfferFields {
    pub dc_signaling: bool,
    pub ignore_ws: bool,
    /// label -> compress
    pub dc_compress: HashMap<String, bool>,
    pub ice_servers: Vec<String>,
    pub relay_only: bool,
}

pub(crate) fn offer_fields(v: &Value) -> OfferFields {
    let mut dc_compress = HashMap::new();
    for dc in v.get("data_channels").and_then(Value::as_array).into_iter().flatten() {
        if let Some(label) = dc.get("label").and_then(Value::as_str) {
            let compress = dc.get("compress").and_then(Value::as_bool).unwrap_or(false);
            dc_compress.insert(label.to_string(), compress);
        }
    }
    OfferFields {
        dc_signaling: v.get("data_channel_signaling").and_then(Value::as_bool).unwrap_or(false),
        ignore_ws: v.get("ignore_disconnect_websocket").and_then(Value::as_bool).unwrap_or(false),
        dc_compress,
        ice_servers: ice_servers(v.pointer("/config/iceServers")),
        relay_only: v.pointer("/config/iceTransportPolicy").and_then(Value::as_str) == Some("relay"),
    }
}

/// A signaling message's JSON object and its `type`, or why it is not one.
pub(crate) fn parse_message(text: &str) -> std::result::Result<(Value, String), &'static str> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => match v.get("type").and_then(Value::as_str) {
            Some(kind) => {
                let kind = kind.to_owned();
                Ok((v, kind))
            }
            None => Err("signaling message without a type"),
        },
        _ => Err("malformed signaling message"),
    }
}


/// W3C webrtc-stats shaped report (see `signaling::stats`).
pub fn stats(shared: &Shared) -> Value {
    super::stats::report(shared)
}
