//! Thin safe wrapper over libdatachannel's C API (datachannel-sys).
//!
//! libdatachannel calls us back on its own threads, sometimes while holding its internal
//! locks. The trampolines below therefore only look up the observer and hand it a plain
//! `RtcEvent`; observers must not call back into libdatachannel synchronously (they enqueue).
//! Callbacks find their observer through a token in a registry (never a raw pointer), so a
//! callback racing with teardown finds nothing instead of freed memory.
use crate::error::{Error, Result};
use crate::ice_scope::Scope;
use datachannel_sys as sys;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum RtcEvent {
    LocalDescription { sdp: String, kind: String },
    LocalCandidate { candidate: String, mid: String },
    State(i32),
    Gathering(i32),
    /// A data channel announced by the remote side (DCEP); it is open.
    RemoteDataChannel { dc: i32, label: String },
    /// A remote m-section that has no local track yet.
    Track { track: i32, mid: String },
    DcOpen { dc: i32, label: String },
    DcClosed { dc: i32 },
    DcMessage { dc: i32, data: Vec<u8>, binary: bool },
    DcError { dc: i32, message: String },
}

pub trait RtcObserver: Send + Sync {
    fn on_rtc_event(&self, event: RtcEvent);
}

type Registry = HashMap<u64, Arc<dyn RtcObserver>>;
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A track or data channel id the C API handed out for a peer connection.
#[derive(Clone, Copy)]
enum Child {
    Track(c_int),
    Channel(c_int),
}

/// The C API keeps every track and data channel (made here or announced by a callback) in
/// its tables until each is deleted on its own: deleting the peer connection does not do
/// it. So each peer's ids are listed here, by its token, and deleted with the peer.
static CHILDREN: Mutex<Option<HashMap<u64, Vec<Child>>>> = Mutex::new(None);

/// Lists `child` under the peer of `ptr`, unless that peer is being dropped already.
fn adopt(ptr: *mut c_void, child: Child) {
    let token = ptr as usize as u64;
    if observer(ptr).is_some() {
        CHILDREN.lock().get_or_insert_with(HashMap::new).entry(token).or_default().push(child);
    }
}

fn observer(ptr: *mut c_void) -> Option<Arc<dyn RtcObserver>> {
    let token = ptr as usize as u64;
    REGISTRY.lock().as_ref().and_then(|r| r.get(&token).cloned())
}

fn emit(ptr: *mut c_void, ev: RtcEvent) {
    if let Some(o) = observer(ptr) {
        // A panicking observer must not unwind into C++.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| o.on_rtc_event(ev)));
    }
}

unsafe fn string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid("string contains a NUL byte"))
}

// ---- process exit ----
//
// At exit, libdatachannel's static objects (the C API's handle table and its mutex, thread
// pools) are destroyed while our runtimes' threads may still be sending a packet or closing
// a peer; a call into a destroyed mutex throws and aborts the process. Every call from our
// side goes through [`gate`]: an `atexit` handler (registered with the first peer, so it runs
// before those destructors) closes the gate and waits for the calls in flight, after which
// calls fail as if their channel were closed.
static EXITING: AtomicBool = AtomicBool::new(false);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One call into libdatachannel in progress.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

fn gate() -> Result<InFlight> {
    let closed = || Error::new(crate::error::Kind::Closed, "the process is exiting");
    if EXITING.load(Ordering::SeqCst) {
        return Err(closed());
    }
    IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight;
    if EXITING.load(Ordering::SeqCst) {
        return Err(closed()); // the guard gives the count back
    }
    Ok(guard)
}

extern "C" fn close_gate_at_exit() {
    EXITING.store(true, Ordering::SeqCst);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while IN_FLIGHT.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn register_exit_gate() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        extern "C" {
            fn atexit(callback: extern "C" fn()) -> c_int;
        }
        // SAFETY: registering a plain function with no captured state.
        unsafe { atexit(close_gate_at_exit) };
    });
}

fn check(code: c_int, what: &str) -> Result<c_int> {
    if code >= 0 {
        return Ok(code);
    }
    let reason = match code {
        sys::RTC_ERR_INVALID => "invalid argument",
        sys::RTC_ERR_FAILURE => "runtime failure",
        sys::RTC_ERR_NOT_AVAIL => "element not available",
        sys::RTC_ERR_TOO_SMALL => "buffer too small",
        _ => "error",
    };
    Err(Error::internal(format!("{what} failed: {reason} ({code})")))
}

/// Reads a string out of a libdatachannel "fill this buffer" getter.
fn read_string(f: impl Fn(*mut c_char, c_int) -> c_int, what: &str) -> Result<String> {
    let needed = check(f(std::ptr::null_mut(), 0), what)?;
    let mut buf = vec![0u8; needed.max(1) as usize];
    check(f(buf.as_mut_ptr() as *mut c_char, buf.len() as c_int), what)?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

// ---- trampolines (run on libdatachannel threads) ----

unsafe extern "C" fn on_description(_pc: c_int, sdp: *const c_char, kind: *const c_char, ptr: *mut c_void) {
    emit(ptr, RtcEvent::LocalDescription { sdp: string(sdp), kind: string(kind) });
}
unsafe extern "C" fn on_candidate(_pc: c_int, cand: *const c_char, mid: *const c_char, ptr: *mut c_void) {
    emit(ptr, RtcEvent::LocalCandidate { candidate: string(cand), mid: string(mid) });
}
unsafe extern "C" fn on_state(_pc: c_int, state: sys::rtcState, ptr: *mut c_void) {
    emit(ptr, RtcEvent::State(state as i32));
}
unsafe extern "C" fn on_gathering(_pc: c_int, state: sys::rtcGatheringState, ptr: *mut c_void) {
    emit(ptr, RtcEvent::Gathering(state as i32));
}
unsafe extern "C" fn on_data_channel(_pc: c_int, dc: c_int, ptr: *mut c_void) {
    // Setting callbacks on the new channel from here is what libdatachannel expects; messages
    // that arrived before are buffered until the message callback is set.
    adopt(ptr, Child::Channel(dc));
    sys::rtcSetUserPointer(dc, ptr);
    set_dc_callbacks(dc);
    let label = read_string(|b, n| sys::rtcGetDataChannelLabel(dc, b, n), "label").unwrap_or_default();
    emit(ptr, RtcEvent::RemoteDataChannel { dc, label });
}
unsafe extern "C" fn on_track(_pc: c_int, tr: c_int, ptr: *mut c_void) {
    adopt(ptr, Child::Track(tr));
    sys::rtcSetUserPointer(tr, ptr);
    let mid = read_string(|b, n| sys::rtcGetTrackMid(tr, b, n), "mid").unwrap_or_default();
    emit(ptr, RtcEvent::Track { track: tr, mid });
}
unsafe extern "C" fn on_dc_open(dc: c_int, ptr: *mut c_void) {
    let label = read_string(|b, n| sys::rtcGetDataChannelLabel(dc, b, n), "label").unwrap_or_default();
    emit(ptr, RtcEvent::DcOpen { dc, label });
}
unsafe extern "C" fn on_dc_closed(dc: c_int, ptr: *mut c_void) {
    emit(ptr, RtcEvent::DcClosed { dc });
}
unsafe extern "C" fn on_dc_error(dc: c_int, err: *const c_char, ptr: *mut c_void) {
    emit(ptr, RtcEvent::DcError { dc, message: string(err) });
}
unsafe extern "C" fn on_dc_message(dc: c_int, msg: *const c_char, size: c_int, ptr: *mut c_void) {
    // size < 0 marks a text message (NUL-terminated).
    let (data, binary) = if size < 0 {
        (CStr::from_ptr(msg).to_bytes().to_vec(), false)
    } else {
        (std::slice::from_raw_parts(msg as *const u8, size as usize).to_vec(), true)
    };
    emit(ptr, RtcEvent::DcMessage { dc, data, binary });
}

unsafe fn set_dc_callbacks(dc: c_int) {
    sys::rtcSetOpenCallback(dc, Some(on_dc_open));
    sys::rtcSetClosedCallback(dc, Some(on_dc_closed));
    sys::rtcSetErrorCallback(dc, Some(on_dc_error));
    sys::rtcSetMessageCallback(dc, Some(on_dc_message));
}

// ---- logging bridge ----

unsafe extern "C" fn on_log(level: sys::rtcLogLevel, message: *const c_char) {
    let lvl = match level {
        sys::rtcLogLevel_RTC_LOG_FATAL | sys::rtcLogLevel_RTC_LOG_ERROR => log::Level::Error,
        sys::rtcLogLevel_RTC_LOG_WARNING => log::Level::Warn,
        sys::rtcLogLevel_RTC_LOG_INFO => log::Level::Info,
        sys::rtcLogLevel_RTC_LOG_DEBUG => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(target: "libdatachannel", lvl, "{}", string(message));
}

/// Maps our log level onto libdatachannel's and (re)installs its logger.
pub fn set_native_log_level(level: log::LevelFilter) {
    let l = match level {
        log::LevelFilter::Off => sys::rtcLogLevel_RTC_LOG_NONE,
        log::LevelFilter::Error => sys::rtcLogLevel_RTC_LOG_ERROR,
        log::LevelFilter::Warn => sys::rtcLogLevel_RTC_LOG_WARNING,
        log::LevelFilter::Info => sys::rtcLogLevel_RTC_LOG_INFO,
        log::LevelFilter::Debug => sys::rtcLogLevel_RTC_LOG_DEBUG,
        log::LevelFilter::Trace => sys::rtcLogLevel_RTC_LOG_VERBOSE,
    };
    unsafe { sys::rtcInitLogger(l, Some(on_log)) };
}

fn init_once() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        crate::log::ensure_init();
        unsafe { sys::rtcPreload() };
    });
}

// ---- peer connection ----

#[derive(Debug, Clone, Default)]
pub struct PeerConfig {
    pub ice_servers: Vec<String>,
    pub bind_address: Option<String>,
    pub port_range: Option<(u16, u16)>,
    pub mtu: Option<i32>,
    pub relay_only: bool,
    /// We always drive negotiation ourselves (Sora's offerer/answerer model).
    pub disable_auto_negotiation: bool,
    /// Media packets are decrypted and handed to their track's handler on libdatachannel's
    /// ICE thread instead of after a hop to its thread pool (cshim/patches,
    /// libdatachannel-inline-media-receive.patch). Only for peers whose packet handlers are
    /// short (a client's pipelines queue the packet); not for an SFU's fan-out.
    pub inline_media_receive: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DataChannelOptions {
    pub ordered: Option<bool>,
    pub max_packet_life_time: Option<u32>,
    pub max_retransmits: Option<u32>,
    pub protocol: Option<String>,
    pub negotiated: bool,
    pub stream: Option<u16>,
}

pub struct Peer {
    pc: c_int,
    token: u64,
    /// Remote candidates that cannot pair with our bind address never reach ICE.
    scope: Scope,
}

impl Peer {
    pub fn new(config: &PeerConfig, observer: Arc<dyn RtcObserver>) -> Result<Peer> {
        init_once();
        register_exit_gate();
        let _in = gate()?;
        let servers: Vec<CString> = config.ice_servers.iter().map(|s| cstr(s)).collect::<Result<_>>()?;
        let mut server_ptrs: Vec<*const c_char> = servers.iter().map(|s| s.as_ptr()).collect();
        let bind = config.bind_address.as_deref().map(cstr).transpose()?;
        let mut cfg: sys::rtcConfiguration = unsafe { std::mem::zeroed() };
        cfg.iceServers = server_ptrs.as_mut_ptr();
        cfg.iceServersCount = server_ptrs.len() as c_int;
        cfg.bindAddress = bind.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
        cfg.iceTransportPolicy = if config.relay_only {
            sys::rtcTransportPolicy_RTC_TRANSPORT_POLICY_RELAY
        } else {
            sys::rtcTransportPolicy_RTC_TRANSPORT_POLICY_ALL
        };
        cfg.disableAutoNegotiation = config.disable_auto_negotiation;
        // Sora adds media sections later (re-offers): without this, a session that starts
        // with only m=application gets a transport without SRTP and never carries media.
        cfg.forceMediaTransport = true;
        if let Some((a, b)) = config.port_range {
            cfg.portRangeBegin = a;
            cfg.portRangeEnd = b;
        }
        cfg.mtu = config.mtu.unwrap_or(0);
        cfg.inlineMediaReceive = config.inline_media_receive;
        let pc = check(unsafe { sys::rtcCreatePeerConnection(&cfg) }, "rtcCreatePeerConnection")?;
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        REGISTRY.lock().get_or_insert_with(HashMap::new).insert(token, observer);
        let ptr = token as usize as *mut c_void;
        unsafe {
            sys::rtcSetUserPointer(pc, ptr);
            sys::rtcSetLocalDescriptionCallback(pc, Some(on_description));
            sys::rtcSetLocalCandidateCallback(pc, Some(on_candidate));
            sys::rtcSetStateChangeCallback(pc, Some(on_state));
            sys::rtcSetGatheringStateChangeCallback(pc, Some(on_gathering));
            sys::rtcSetDataChannelCallback(pc, Some(on_data_channel));
            sys::rtcSetTrackCallback(pc, Some(on_track));
        }
        Ok(Peer { pc, token, scope: Scope::new(config.bind_address.as_deref()) })
    }

    fn ptr(&self) -> *mut c_void {
        self.token as usize as *mut c_void
    }

    pub fn set_remote_description(&self, sdp: &str, kind: &str) -> Result<()> {
        let _in = gate()?;
        let (s, k) = (cstr(&self.scope.filter_sdp(sdp))?, cstr(kind)?);
        check(unsafe { sys::rtcSetRemoteDescription(self.pc, s.as_ptr(), k.as_ptr()) }, "setRemoteDescription")?;
        Ok(())
    }

    pub fn set_local_description(&self, kind: Option<&str>) -> Result<()> {
        let _in = gate()?;
        let k = kind.map(cstr).transpose()?;
        let p = k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
        check(unsafe { sys::rtcSetLocalDescription(self.pc, p) }, "setLocalDescription")?;
        Ok(())
    }

    pub fn local_description(&self) -> Result<String> {
        let _in = gate()?;
        read_string(|b, n| unsafe { sys::rtcGetLocalDescription(self.pc, b, n) }, "getLocalDescription")
    }

    pub fn add_remote_candidate(&self, candidate: &str, mid: Option<&str>) -> Result<()> {
        let _in = gate()?;
        if !self.scope.admits(candidate) {
            log::debug!("remote candidate cannot pair with the bind address, skipped: {candidate}");
            return Ok(());
        }
        let c = cstr(candidate)?;
        let m = mid.map(cstr).transpose()?;
        let mp = m.as_ref().map_or(std::ptr::null(), |m| m.as_ptr());
        check(unsafe { sys::rtcAddRemoteCandidate(self.pc, c.as_ptr(), mp) }, "addRemoteCandidate")?;
        Ok(())
    }

    /// Adds (or, for an existing mid, replaces) a media section given as SDP text.
    pub fn add_track(&self, media_sdp: &str) -> Result<i32> {
        let _in = gate()?;
        let s = cstr(media_sdp)?;
        let tr = check(unsafe { sys::rtcAddTrack(self.pc, s.as_ptr()) }, "addTrack")?;
        adopt(self.ptr(), Child::Track(tr));
        unsafe { sys::rtcSetUserPointer(tr, self.ptr()) };
        Ok(tr)
    }

    /// The media section (SDP text) of one of this peer's tracks.
    pub fn track_description(&self, track: i32) -> Result<String> {
        let _in = gate()?;
        read_string(|b, n| unsafe { sys::rtcGetTrackDescription(track, b, n) }, "description")
    }

    pub fn delete_track(&self, track: i32) -> Result<()> {
        let _in = gate()?;
        check(unsafe { sys::rtcDeleteTrack(track) }, "deleteTrack")?;
        if let Some(list) = CHILDREN.lock().as_mut().and_then(|m| m.get_mut(&self.token)) {
            list.retain(|c| !matches!(c, Child::Track(t) if *t == track));
        }
        Ok(())
    }

    pub fn create_data_channel(&self, label: &str, opts: &DataChannelOptions) -> Result<i32> {
        let _in = gate()?;
        let l = cstr(label)?;
        let proto = opts.protocol.as_deref().map(cstr).transpose()?;
        let mut init: sys::rtcDataChannelInit = unsafe { std::mem::zeroed() };
        init.reliability.unordered = opts.ordered == Some(false);
        if let Some(t) = opts.max_packet_life_time {
            init.reliability.unreliable = true;
            init.reliability.maxPacketLifeTime = t;
        } else if let Some(r) = opts.max_retransmits {
            init.reliability.unreliable = true;
            init.reliability.maxRetransmits = r;
        }
        init.protocol = proto.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        init.negotiated = opts.negotiated;
        if let Some(s) = opts.stream {
            init.manualStream = true;
            init.stream = s;
        }
        let dc = check(unsafe { sys::rtcCreateDataChannelEx(self.pc, l.as_ptr(), &init) }, "createDataChannel")?;
        adopt(self.ptr(), Child::Channel(dc));
        unsafe {
            sys::rtcSetUserPointer(dc, self.ptr());
            set_dc_callbacks(dc);
        }
        Ok(dc)
    }

    pub fn close(&self) {
        let Ok(_in) = gate() else { return };
        unsafe { sys::rtcClosePeerConnection(self.pc) };
    }

    pub fn id(&self) -> i32 {
        self.pc
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Unregister first: callbacks racing with deletion then find no observer.
        if let Some(r) = REGISTRY.lock().as_mut() {
            r.remove(&self.token);
        }
        let Ok(_in) = gate() else { return };
        unsafe { sys::rtcDeletePeerConnection(self.pc) };
        // Closed with it; now out of the C API's tables too (callbacks are already off).
        let children = CHILDREN.lock().as_mut().and_then(|m| m.remove(&self.token)).unwrap_or_default();
        for child in children {
            unsafe {
                match child {
                    Child::Track(t) => sys::rtcDeleteTrack(t),
                    Child::Channel(d) => sys::rtcDeleteDataChannel(d),
                };
            }
        }
    }
}

/// Data channel / track helpers that need only the channel id.
pub fn dc_send(dc: i32, data: &[u8], binary: bool) -> Result<()> {
    let _in = gate()?;
    if !unsafe { sys::rtcIsOpen(dc) } {
        return Err(Error::new(crate::error::Kind::Closed, "data channel is not open"));
    }
    if binary {
        check(unsafe { sys::rtcSendMessage(dc, data.as_ptr() as *const c_char, data.len() as c_int) }, "send")?;
    } else {
        let s = CString::new(data.to_vec()).map_err(|_| Error::invalid("text message contains a NUL byte"))?;
        check(unsafe { sys::rtcSendMessage(dc, s.as_ptr(), -1) }, "send")?;
    }
    Ok(())
}

pub fn dc_max_message_size(dc: i32) -> usize {
    let Ok(_in) = gate() else { return 0 };
    let n = unsafe { sys::rtcMaxMessageSize(dc) };
    if n > 0 { n as usize } else { 65536 }
}

pub fn dc_close(dc: i32) {
    let Ok(_in) = gate() else { return };
    unsafe { sys::rtcClose(dc) };
}

/// The selected ICE candidate pair (local, remote) of a peer connection, if any.
/// The local or remote session description of peer connection `pc` (None before it has one).
pub fn description(pc: i32, local: bool) -> Option<String> {
    let _in = gate().ok()?;
    read_string(
        |b, n| unsafe { if local { sys::rtcGetLocalDescription(pc, b, n) } else { sys::rtcGetRemoteDescription(pc, b, n) } },
        "getDescription",
    )
    .ok()
}

pub fn selected_pair(pc: i32) -> Option<(String, String)> {
    let _in = gate().ok()?;
    let mut local = vec![0u8; 256];
    let mut remote = vec![0u8; 256];
    let r = unsafe {
        sys::rtcGetSelectedCandidatePair(pc, local.as_mut_ptr() as *mut c_char, 256, remote.as_mut_ptr() as *mut c_char, 256)
    };
    if r < 0 {
        return None;
    }
    let s = |b: &[u8]| String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]).into_owned();
    Some((s(&local), s(&remote)))
}

// ---- raw media on tracks ----
//
// Tracks carry no libdatachannel media handler: the message callback hands us every
// decrypted RTP and RTCP packet, and we send complete packets. Packet handlers are looked up
// by track id on libdatachannel's thread and must not block (they queue or forward).

pub trait PacketHandler: Send + Sync {
    fn on_packet(&self, track: i32, packet: &[u8]);
}

static PACKET_HANDLERS: parking_lot::RwLock<Option<HashMap<i32, Arc<dyn PacketHandler>>>> =
    parking_lot::RwLock::new(None);

unsafe extern "C" fn on_track_message(track: c_int, msg: *const c_char, size: c_int, _ptr: *mut c_void) {
    if size <= 0 || msg.is_null() {
        return;
    }
    let handler = PACKET_HANDLERS.read().as_ref().and_then(|m| m.get(&track).cloned());
    if let Some(h) = handler {
        let packet = std::slice::from_raw_parts(msg as *const u8, size as usize);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.on_packet(track, packet)));
    }
}

/// Routes every packet arriving on `track` to `handler` (replacing any previous one).
pub fn set_packet_handler(track: i32, handler: Arc<dyn PacketHandler>) {
    PACKET_HANDLERS.write().get_or_insert_with(HashMap::new).insert(track, handler);
    let Ok(_in) = gate() else { return };
    unsafe { sys::rtcSetMessageCallback(track, Some(on_track_message)) };
}

pub fn clear_packet_handler(track: i32) {
    if let Some(m) = PACKET_HANDLERS.write().as_mut() {
        m.remove(&track);
    }
}

extern "C" {
    /// libdatachannel, patched (cshim/patches/libdatachannel-media-receive-time.patch).
    fn sora_rtc_media_receive_age_ns() -> i64;
}

/// When the media packet being handled in this receive callback reached libdatachannel's
/// DTLS-SRTP transport, on the thread that read it from the socket; `now` outside a media
/// receive callback. Without it an arrival time would include the thread pool's hop: tens
/// to hundreds of microseconds, more on a busy host (docs/design.md, "Arrival times for
/// transport-cc").
pub fn media_arrival(now: Instant) -> Instant {
    // SAFETY: reads a thread-local of this thread; no arguments.
    let age = unsafe { sora_rtc_media_receive_age_ns() };
    u64::try_from(age).ok().and_then(|ns| now.checked_sub(std::time::Duration::from_nanos(ns))).unwrap_or(now)
}

/// Sends one complete RTP or RTCP packet on a track.
pub fn track_send(track: i32, packet: &[u8]) -> Result<()> {
    let _in = gate()?;
    // A track not open yet (its m-section still being negotiated) or closed already would
    // make libdatachannel throw and log an error for every packet.
    if !unsafe { sys::rtcIsOpen(track) } {
        return Err(Error::new(crate::error::Kind::Closed, "track is not open"));
    }
    check(
        unsafe { sys::rtcSendMessage(track, packet.as_ptr() as *const c_char, packet.len() as c_int) },
        "track send",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl RtcObserver for Quiet {
        fn on_rtc_event(&self, _ev: RtcEvent) {}
    }

    fn exists(id: c_int) -> bool {
        // any id-taking call fails once the C API has forgotten the id
        let mut buf = [0 as c_char; 64];
        unsafe { sys::rtcGetTrackMid(id, buf.as_mut_ptr(), 64) >= 0 || sys::rtcGetDataChannelLabel(id, buf.as_mut_ptr(), 64) >= 0 }
    }

    /// Outside a media receive callback there is no packet to date: the time given is kept.
    /// (Inside one, the forwarder's transport-cc feedback uses it: docs/design.md, "Arrival
    /// times for transport-cc", and the congestion tests through the dev server.)
    #[test]
    fn media_arrival_outside_a_receive_callback_is_now() {
        let now = Instant::now();
        assert_eq!(media_arrival(now), now);
        // SAFETY: no arguments; reads this thread's (unset) stamp.
        assert_eq!(unsafe { sora_rtc_media_receive_age_ns() }, -1);
    }

    #[test]
    fn a_dropped_peer_leaves_no_tracks_or_channels_in_the_c_api() {
        let peer = Peer::new(&PeerConfig { disable_auto_negotiation: true, ..Default::default() }, Arc::new(Quiet)).unwrap();
        let audio = peer.add_track("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n").unwrap();
        let video = peer.add_track("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n").unwrap();
        let again = peer.add_track("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=inactive\r\na=rtpmap:111 opus/48000/2\r\n").unwrap();
        let dc = peer.create_data_channel("x", &DataChannelOptions::default()).unwrap();
        peer.delete_track(video).unwrap();
        assert!([audio, again, dc].iter().all(|&id| exists(id)));
        assert!(!exists(video));
        drop(peer);
        // before, each stayed in the C API's tables (about 18 KB a connection, both ends)
        assert!([audio, again, dc].iter().all(|&id| !exists(id)));
    }
}
