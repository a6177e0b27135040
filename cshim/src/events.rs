//! The event queue: every native thread reports by pushing here, and the consumer (Python's
//! dispatcher, a C program's loop) pulls with one blocking wait. Nothing native ever calls
//! user code, so no native thread can be blocked by a slow or re-entrant consumer.
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Event type numbers (`SoraEventView.type`), part of the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum EventType {
    SetOffer = 1,
    WsClose = 2,
    Disconnect = 3,
    SignalingMessage = 4,
    Notify = 5,
    Push = 6,
    Message = 7,
    Rpc = 8,
    Switched = 9,
    Track = 10,
    DataChannel = 11,
    Log = 12,
    Connected = 13,
    TrackEnded = 14,
    VideoFrame = 15,
    AudioFrame = 16,
    AudioData = 17,
    AudioFormat = 18,
    /// An encoded frame for an encoded transform (media::transform): source = transformer
    /// id, b = frame sequence number, text = metadata JSON, data = the frame.
    TransformFrame = 19,
    /// An encoded video source should send a keyframe (media::encoded): source = the
    /// source's id, text = why.
    KeyframeRequest = 20,
    /// A result from an audio streaming gateway (audio_stream): source = the stream's id,
    /// text = one line of its response (a JSON object).
    AudioStreamResult = 21,
    /// An audio stream's state changed: source = the stream's id, a = 1 streaming (the
    /// gateway answered 200), 2 failed and retrying (text = why), 3 stopped, 4 warning
    /// (text = what: a bad line, audio dropped).
    AudioStreamState = 22,
    PeerLocalDescription = 100,
    PeerLocalCandidate = 101,
    PeerState = 102,
    PeerGatheringState = 103,
    PeerDcOpen = 104,
    PeerDcMessage = 105,
    PeerDcClosed = 106,
    PeerTrack = 107,
    PeerDataChannel = 108,
}

/// One event, owned by the queue until handed out.
#[derive(Debug)]
pub struct Event {
    pub kind: EventType,
    pub source: u64,
    pub a: i64,
    pub b: i64,
    pub text: Option<CString>,
    pub text2: Option<CString>,
    pub data: Option<Vec<u8>>,
    /// Droppable events (media frames) may be discarded when the queue is full.
    pub droppable: bool,
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

impl Event {
    pub fn new(kind: EventType, source: u64) -> Self {
        Event { kind, source, a: 0, b: 0, text: None, text2: None, data: None, droppable: false }
    }
    pub fn a(mut self, v: i64) -> Self {
        self.a = v;
        self
    }
    pub fn b(mut self, v: i64) -> Self {
        self.b = v;
        self
    }
    pub fn text(mut self, s: &str) -> Self {
        self.text = Some(cstring(s));
        self
    }
    pub fn text2(mut self, s: &str) -> Self {
        self.text2 = Some(cstring(s));
        self
    }
    pub fn data(mut self, d: Vec<u8>) -> Self {
        self.data = Some(d);
        self
    }
}

struct State {
    events: VecDeque<Event>,
    closed: bool,
}

pub struct EventQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    /// For event loops (`notify_fd`): a socket pair whose read end becomes readable when
    /// the queue goes from empty to not empty.
    notifier: std::sync::OnceLock<Notifier>,
}

#[cfg(unix)]
struct Notifier {
    read: std::os::unix::net::UnixStream,
    write: std::os::unix::net::UnixStream,
}

#[cfg(not(unix))]
struct Notifier;

impl Notifier {
    #[cfg(unix)]
    fn new() -> std::io::Result<Notifier> {
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?; // a full buffer already means "readable": never block
        Ok(Notifier { read, write })
    }

    #[cfg(unix)]
    fn signal(&self) {
        use std::io::Write;
        let _ = (&self.write).write(&[1]);
    }

    #[cfg(not(unix))]
    fn signal(&self) {}
}

pub enum Wait {
    Event(Event),
    Timeout,
    Closed,
}

impl EventQueue {
    /// `capacity` bounds droppable events only (0 = unbounded); control events are never lost.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(EventQueue {
            state: Mutex::new(State { events: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
            notifier: std::sync::OnceLock::new(),
        })
    }

    /// A file descriptor that becomes readable when events wait (made on first use). The
    /// reader reads its bytes away *before* taking events, so that none is missed.
    #[cfg(unix)]
    pub fn notify_fd(&self) -> std::io::Result<i32> {
        use std::os::fd::AsRawFd;
        if self.notifier.get().is_none() {
            let made = Notifier::new()?;
            let _ = self.notifier.set(made); // a racing caller's pair wins: same queue either way
        }
        let n = self.notifier.get().expect("just set");
        if !self.state.lock().events.is_empty() {
            n.signal(); // events from before the notifier existed
        }
        Ok(n.read.as_raw_fd())
    }

    pub fn push(&self, ev: Event) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        if ev.droppable && self.capacity > 0 {
            let queued = st.events.iter().filter(|e| e.droppable && e.source == ev.source).count();
            if queued >= self.capacity {
                if let Some(pos) = st.events.iter().position(|e| e.droppable && e.source == ev.source) {
                    st.events.remove(pos);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let was_empty = st.events.is_empty();
        st.events.push_back(ev);
        drop(st);
        self.ready.notify_one();
        if was_empty {
            if let Some(n) = self.notifier.get() {
                n.signal();
            }
        }
    }

    /// Waits up to `timeout` (None = forever) for the next event.
    pub fn wait(&self, timeout: Option<Duration>) -> Wait {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state.lock();
        loop {
            if let Some(ev) = st.events.pop_front() {
                return Wait::Event(ev);
            }
            if st.closed {
                return Wait::Closed;
            }
            match deadline {
                None => self.ready.wait(&mut st),
                Some(d) => {
                    if self.ready.wait_until(&mut st, d).timed_out() && st.events.is_empty() {
                        return if st.closed { Wait::Closed } else { Wait::Timeout };
                    }
                }
            }
        }
    }

    /// Wakes every waiter; queued events are still handed out, then waits report Closed.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
        if let Some(n) = self.notifier.get() {
            n.signal(); // the reader sees the close
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

/// Process-unique ids for handles (events name their source with it).
pub fn next_handle_id() -> u64 {
    NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed)
}
