//! Event queues and event views.
use super::{arg_ref, guard, out_ptr, out_value};
use crate::error::{Error, Kind};
use crate::events::{Event, EventQueue, Wait};
use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

/// Connection events.
pub const SORA_EVENT_SET_OFFER: i32 = 1;
pub const SORA_EVENT_WS_CLOSE: i32 = 2;
pub const SORA_EVENT_DISCONNECT: i32 = 3;
pub const SORA_EVENT_SIGNALING_MESSAGE: i32 = 4;
pub const SORA_EVENT_NOTIFY: i32 = 5;
pub const SORA_EVENT_PUSH: i32 = 6;
pub const SORA_EVENT_MESSAGE: i32 = 7;
pub const SORA_EVENT_RPC: i32 = 8;
pub const SORA_EVENT_SWITCHED: i32 = 9;
pub const SORA_EVENT_TRACK: i32 = 10;
pub const SORA_EVENT_DATA_CHANNEL: i32 = 11;
pub const SORA_EVENT_LOG: i32 = 12;
pub const SORA_EVENT_CONNECTED: i32 = 13;
pub const SORA_EVENT_TRACK_ENDED: i32 = 14;
/// Media events (droppable: bounded per sink by the queue's capacity).
pub const SORA_EVENT_VIDEO_FRAME: i32 = 15;
pub const SORA_EVENT_AUDIO_FRAME: i32 = 16;
pub const SORA_EVENT_AUDIO_DATA: i32 = 17;
pub const SORA_EVENT_AUDIO_FORMAT: i32 = 18;
/// An encoded frame for an encoded transform (droppable; see sora_frame_transformer_new).
pub const SORA_EVENT_TRANSFORM_FRAME: i32 = 19;
/// An encoded video source should send a keyframe (see sora_encoded_video_source_new).
pub const SORA_EVENT_KEYFRAME_REQUEST: i32 = 20;
/// A JSON line from an audio streaming gateway (see sora_peer_stream_audio).
pub const SORA_EVENT_AUDIO_STREAM_RESULT: i32 = 21;
/// An audio stream's state: a = 1 streaming, 2 retrying, 3 stopped, 4 warning; text = why.
pub const SORA_EVENT_AUDIO_STREAM_STATE: i32 = 22;
/// Low-level peer events.
pub const SORA_EVENT_PEER_LOCAL_DESCRIPTION: i32 = 100;
pub const SORA_EVENT_PEER_LOCAL_CANDIDATE: i32 = 101;
pub const SORA_EVENT_PEER_STATE: i32 = 102;
pub const SORA_EVENT_PEER_GATHERING_STATE: i32 = 103;
pub const SORA_EVENT_PEER_DC_OPEN: i32 = 104;
pub const SORA_EVENT_PEER_DC_MESSAGE: i32 = 105;
pub const SORA_EVENT_PEER_DC_CLOSED: i32 = 106;
pub const SORA_EVENT_PEER_TRACK: i32 = 107;
pub const SORA_EVENT_PEER_DATA_CHANNEL: i32 = 108;

/// A queue of events (opaque). Producers are native threads; one or more consumers wait.
pub struct SoraEventQueue {
    pub(crate) inner: Arc<EventQueue>,
}

/// One event (opaque); read it with `sora_event_view`, free it with `sora_event_free`.
pub struct SoraEvent {
    pub(crate) inner: Event,
}

/// A borrowed view of an event. Set `size` to sizeof(SoraEventView) before the call.
/// Pointers stay valid until `sora_event_free`; absent strings/data are NULL.
/// cbindgen:field-names=[size, type, source, a, b, text, text2, data, data_len]
#[repr(C)]
pub struct SoraEventView {
    pub size: u32,
    pub type_: i32,
    pub source: u64,
    pub a: i64,
    pub b: i64,
    pub text: *const c_char,
    pub text2: *const c_char,
    pub data: *const u8,
    pub data_len: usize,
}

/// Creates a queue. `capacity` bounds droppable (media) events per source; 0 = unbounded.
/// Control events are never dropped.
#[no_mangle]
pub unsafe extern "C" fn sora_event_queue_new(capacity: u32, out: *mut *mut SoraEventQueue) -> i32 {
    guard(|| out_ptr(SoraEventQueue { inner: EventQueue::new(capacity as usize) }, out))
}

/// Closes the queue: waiters wake; remaining events are still handed out, then waits return
/// SORA_ERR_CLOSED. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_event_queue_close(q: *const SoraEventQueue) {
    if let Some(q) = q.as_ref() {
        q.inner.close();
    }
}

/// Frees the queue handle (closing it). Handles created on it keep their own reference, so
/// this is safe in any order. Must not race with a wait on the same handle.
#[no_mangle]
pub unsafe extern "C" fn sora_event_queue_destroy(q: *mut SoraEventQueue) {
    if !q.is_null() {
        let q = Box::from_raw(q);
        q.inner.close();
    }
}

/// Waits up to `timeout_ms` (< 0: forever) for an event. Returns 1 with `*out` set, 0 on
/// timeout, SORA_ERR_CLOSED when closed and drained. Thread-safe; blocks only the caller.
#[no_mangle]
pub unsafe extern "C" fn sora_event_queue_wait(q: *const SoraEventQueue, timeout_ms: i32, out: *mut *mut SoraEvent) -> i32 {
    guard(|| {
        let q = arg_ref(q, "queue")?;
        if out.is_null() {
            return Err(Error::invalid("out must not be NULL"));
        }
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        match q.inner.wait(timeout) {
            Wait::Event(ev) => {
                *out = Box::into_raw(Box::new(SoraEvent { inner: ev }));
                Ok(1)
            }
            Wait::Timeout => Ok(0),
            Wait::Closed => Err(Error::new(Kind::Closed, "event queue is closed")),
        }
    })
}

/// Droppable events discarded so far because consumers were slow. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_event_queue_dropped(q: *const SoraEventQueue) -> u64 {
    q.as_ref().map_or(0, |q| q.inner.dropped())
}

/// For event loops (asyncio, epoll, kqueue): `*out_fd` becomes readable when events wait
/// in the queue. Read (and discard) its bytes first, then take events with
/// sora_event_queue_wait(q, 0, ...) until it returns 0; a wake-up may find nothing. The
/// descriptor belongs to the queue (do not close it). Unix only (SORA_ERR_INVALID_STATE
/// elsewhere: wait on a thread there).
#[no_mangle]
pub unsafe extern "C" fn sora_event_queue_notify_fd(q: *const SoraEventQueue, out_fd: *mut i32) -> i32 {
    guard(|| {
        let q = arg_ref(q, "queue")?;
        #[cfg(unix)]
        {
            let fd = q.inner.notify_fd().map_err(|e| Error::internal(format!("cannot make the notifier: {e}")))?;
            out_value(fd, out_fd)
        }
        #[cfg(not(unix))]
        {
            let _ = (q, out_fd);
            Err(Error::state("event queue descriptors exist on Unix only"))
        }
    })
}

/// Fills `out` with a view of `ev`.
#[no_mangle]
pub unsafe extern "C" fn sora_event_view(ev: *const SoraEvent, out: *mut SoraEventView) -> i32 {
    guard(|| {
        let ev = &arg_ref(ev, "event")?.inner;
        let out = out.as_mut().ok_or_else(|| Error::invalid("out must not be NULL"))?;
        if (out.size as usize) < std::mem::size_of::<SoraEventView>() {
            return Err(Error::invalid("SoraEventView.size is smaller than this shim's view"));
        }
        out.type_ = ev.kind as i32;
        out.source = ev.source;
        out.a = ev.a;
        out.b = ev.b;
        out.text = ev.text.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        out.text2 = ev.text2.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let (p, n) = ev.data.as_ref().map_or((std::ptr::null(), 0), |d| (d.as_ptr(), d.len()));
        out.data = p;
        out.data_len = n;
        Ok(0)
    })
}

/// Frees an event. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_event_free(ev: *mut SoraEvent) {
    if !ev.is_null() {
        drop(Box::from_raw(ev));
    }
}
