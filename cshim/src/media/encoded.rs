//! Encoded video sources: an application that already holds a bitstream (a recording, a
//! camera's own encoder, a hardware encoder driven from Python, another SFU) sends its
//! access units as they are, without decoding and re-encoding. It is also how H.265 is sent
//! where no engine encodes it.
//!
//! Each connection using the source gets an [`EncodedFeed`]: a bounded queue of whole
//! frames. Encoded frames depend on each other, so nothing is dropped silently in the
//! middle of a stream: a feed that overflows (its connection cannot keep up) drops frames
//! until the next keyframe, which replaces the stale backlog, and asks the application for
//! one; a new connection waits
//! for a keyframe before it sends anything. Keyframe requests (a new feed, an overflow, a
//! PLI/FIR from a receiver) reach the application as `SORA_EVENT_KEYFRAME_REQUEST` events,
//! at most one per [`REQUEST_INTERVAL`].
use super::codec::engine::CodecType;
use super::rtp::packetize::frame_is_keyframe;
use super::rtp::RtpCodec;
use crate::error::{Error, Result};
use crate::events::{next_handle_id, Event, EventQueue, EventType};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Frames a feed holds before it overflows (two seconds at 30 fps).
pub const MAX_QUEUED_FRAMES: usize = 60;
/// The largest access unit accepted (a 4K intra frame at a high bitrate fits).
pub const MAX_FRAME_BYTES: usize = 8 << 20;
/// Keyframe requests closer together than this are merged into one.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(100);

pub struct EncodedFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Capture time, epoch µs.
    pub capture_us: i64,
}

/// One connection's queue of a source's frames.
pub struct EncodedFeed {
    pub codec: CodecType,
    state: Mutex<FeedState>,
    ready: tokio::sync::Notify,
    source: Weak<EncodedVideoSource>,
}

struct FeedState {
    frames: VecDeque<EncodedFrame>,
    /// Deltas are dropped until a keyframe comes (start, or after an overflow).
    wait_keyframe: bool,
    closed: bool,
}

impl EncodedFeed {
    /// The next frame; None once the feed is closed.
    pub async fn next(&self) -> Option<EncodedFrame> {
        loop {
            {
                let mut st = self.state.lock();
                if let Some(f) = st.frames.pop_front() {
                    return Some(f);
                }
                if st.closed {
                    return None;
                }
            }
            // notify_one keeps a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            self.ready.notified().await;
        }
    }

    /// A receiver asked for a keyframe (PLI/FIR).
    pub fn request_keyframe(&self, why: &str) {
        if let Some(s) = self.source.upgrade() {
            s.request_keyframe(why);
        }
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }
}

pub struct EncodedVideoSource {
    pub id: u64,
    pub codec: CodecType,
    enabled: AtomicBool,
    feeds: Mutex<Vec<Weak<EncodedFeed>>>,
    queue: Mutex<Option<Arc<EventQueue>>>,
    last_request: Mutex<Option<Instant>>,
    /// Frames not sent on some connection (overflow, waiting for a keyframe, disabled).
    pub dropped_frames: AtomicU64,
    pub keyframe_requests: AtomicU64,
}

impl EncodedVideoSource {
    /// A source of `codec` access units (H.264/H.265: Annex B; VP8, VP9: frames; AV1: a
    /// temporal unit of low-overhead OBUs).
    pub fn new(codec: CodecType) -> Arc<EncodedVideoSource> {
        let src = Arc::new(EncodedVideoSource {
            id: next_handle_id(),
            codec,
            enabled: AtomicBool::new(true),
            feeds: Mutex::new(Vec::new()),
            queue: Mutex::new(None),
            last_request: Mutex::new(None),
            dropped_frames: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
        });
        registry().lock().insert(src.id, Arc::downgrade(&src));
        src
    }

    /// Keyframe requests go to `queue` as events from now on.
    pub fn set_queue(&self, queue: Arc<EventQueue>) {
        *self.queue.lock() = Some(queue);
    }

    /// While disabled nothing is sent; enabling again waits for a keyframe (and asks one).
    pub fn set_enabled(&self, on: bool) {
        if !self.enabled.swap(on, Ordering::AcqRel) && on {
            for f in self.live_feeds() {
                f.state.lock().wait_keyframe = true;
            }
            self.request_keyframe("the source was enabled again");
        }
    }

    /// A feed for a new connection: it sends from the next keyframe on, asked for now.
    pub fn subscribe(self: &Arc<Self>) -> Arc<EncodedFeed> {
        let feed = Arc::new(EncodedFeed {
            codec: self.codec,
            state: Mutex::new(FeedState { frames: VecDeque::new(), wait_keyframe: true, closed: false }),
            ready: tokio::sync::Notify::new(),
            source: Arc::downgrade(self),
        });
        self.feeds.lock().push(Arc::downgrade(&feed));
        self.request_keyframe("a connection starts sending");
        feed
    }

    fn live_feeds(&self) -> Vec<Arc<EncodedFeed>> {
        let mut feeds = self.feeds.lock();
        feeds.retain(|w| w.upgrade().is_some_and(|f| !f.state.lock().closed));
        feeds.iter().filter_map(Weak::upgrade).collect()
    }

    /// Hands one access unit to every connection using the source. `capture_us`: epoch µs.
    /// `keyframe`: what the application says the frame is (None: read from the bitstream);
    /// a frame whose bitstream says otherwise is refused, since receivers go by the bitstream.
    pub fn push(&self, data: &[u8], keyframe: Option<bool>, capture_us: i64) -> Result<()> {
        if data.is_empty() {
            return Err(Error::invalid("an encoded frame cannot be empty"));
        }
        if data.len() > MAX_FRAME_BYTES {
            return Err(Error::invalid(format!(
                "an encoded frame may be at most {MAX_FRAME_BYTES} bytes, not {}",
                data.len()
            )));
        }
        let found = frame_is_keyframe(rtp_codec(self.codec), data);
        if keyframe.is_some_and(|k| k != found) {
            return Err(Error::invalid(format!(
                "the frame was given as {} but its {} bitstream {}",
                if found { "a delta frame" } else { "a keyframe" },
                self.codec.name(),
                if found { "is a keyframe" } else { "is not a keyframe (no random access point)" }
            )));
        }
        let keyframe = found;
        let enabled = self.enabled.load(Ordering::Acquire);
        for feed in self.live_feeds() {
            let mut st = feed.state.lock();
            if keyframe && st.wait_keyframe && !st.frames.is_empty() {
                // Recovering from an overflow: what is still queued is stale, the keyframe
                // starts afresh with no backlog.
                self.dropped_frames.fetch_add(st.frames.len() as u64, Ordering::Relaxed);
                st.frames.clear();
            }
            let sent = if !enabled || (st.wait_keyframe && !keyframe) {
                false
            } else if st.frames.len() >= MAX_QUEUED_FRAMES {
                // The connection cannot keep up: what is queued still decodes, what follows
                // must start from a keyframe.
                st.wait_keyframe = true;
                drop(st);
                self.request_keyframe("a connection fell behind (its queue overflowed)");
                false
            } else {
                st.wait_keyframe = false;
                st.frames.push_back(EncodedFrame { data: data.to_vec(), keyframe, capture_us });
                drop(st);
                feed.ready.notify_one();
                true
            };
            if !sent {
                self.dropped_frames.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn request_keyframe(&self, why: &str) {
        {
            let mut last = self.last_request.lock();
            let now = Instant::now();
            if last.is_some_and(|t| now - t < REQUEST_INTERVAL) {
                return;
            }
            *last = Some(now);
        }
        self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        log::debug!("encoded source {}: keyframe requested ({why})", self.id);
        if let Some(q) = self.queue.lock().clone() {
            q.push(Event::new(EventType::KeyframeRequest, self.id).text(why));
        }
    }
}

impl Drop for EncodedVideoSource {
    fn drop(&mut self) {
        registry().lock().remove(&self.id);
        for f in self.feeds.lock().iter().filter_map(Weak::upgrade) {
            f.close();
        }
    }
}

/// The payload format of a video codec.
pub fn rtp_codec(codec: CodecType) -> RtpCodec {
    match codec {
        CodecType::Vp8 => RtpCodec::Vp8,
        CodecType::Vp9 => RtpCodec::Vp9,
        CodecType::H264 => RtpCodec::H264,
        CodecType::H265 => RtpCodec::H265,
        CodecType::Av1 => RtpCodec::Av1,
    }
}

fn registry() -> &'static Mutex<HashMap<u64, Weak<EncodedVideoSource>>> {
    static R: std::sync::OnceLock<Mutex<HashMap<u64, Weak<EncodedVideoSource>>>> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

/// The live encoded source with handle id `id` (a connection config's "video_source").
pub fn encoded_video_source(id: u64) -> Option<Arc<EncodedVideoSource>> {
    registry().lock().get(&id).and_then(Weak::upgrade)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(q: &EventQueue) -> Vec<String> {
        let mut out = Vec::new();
        while let crate::events::Wait::Event(e) = q.wait(Some(Duration::ZERO)) {
            assert_eq!(e.kind, EventType::KeyframeRequest);
            out.push(e.text.map(|t| t.to_string_lossy().into_owned()).unwrap_or_default());
        }
        out
    }

    #[test]
    fn feeds_start_at_a_keyframe_and_overflow_to_the_next() {
        let q = EventQueue::new(0);
        // VP8: bit 0 of the first byte is 0 on a key frame.
        let key = |n: u8| vec![0x10, n];
        let delta = |n: u8| vec![0x11, n];
        let s = EncodedVideoSource::new(CodecType::Vp8);
        s.set_queue(q.clone());
        assert!(s.push(&[], None, 0).is_err());
        assert!(s.push(&vec![0; MAX_FRAME_BYTES + 1], None, 0).is_err());
        let err = s.push(&delta(0), Some(true), 0).unwrap_err().message;
        assert!(err.contains("given as a keyframe but its VP8 bitstream is not a keyframe"), "{err}");
        let err = s.push(&key(0), Some(false), 0).unwrap_err().message;
        assert!(err.contains("given as a delta frame but its VP8 bitstream is a keyframe"), "{err}");
        let feed = s.subscribe();
        assert_eq!(events(&q), ["a connection starts sending"]);
        s.push(&delta(1), None, 1).unwrap();
        s.push(&key(2), Some(true), 2).unwrap();
        s.push(&delta(3), Some(false), 3).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let next = |f: &EncodedFeed| rt.block_on(f.next()).map(|f| f.data);
        assert_eq!(next(&feed), Some(key(2)), "the delta before the first keyframe is not sent");
        assert_eq!(next(&feed), Some(delta(3)));
        assert_eq!(s.dropped_frames.load(Ordering::Relaxed), 1);
        // Overflow: deltas are dropped until a keyframe (asked for once, rate-limited), which
        // replaces the stale backlog.
        std::thread::sleep(REQUEST_INTERVAL);
        for i in 0..MAX_QUEUED_FRAMES + 5 {
            s.push(&delta(i as u8), None, 10 + i as i64).unwrap();
        }
        assert_eq!(events(&q), ["a connection fell behind (its queue overflowed)"]);
        assert_eq!(s.dropped_frames.load(Ordering::Relaxed), 1 + 5);
        s.push(&key(99), None, 100).unwrap();
        s.push(&delta(100), None, 101).unwrap();
        assert_eq!(s.dropped_frames.load(Ordering::Relaxed), 1 + 5 + MAX_QUEUED_FRAMES as u64);
        assert_eq!(next(&feed), Some(key(99)));
        assert_eq!(next(&feed), Some(delta(100)));
        // Closing ends the feed; the source's drop closes its feeds.
        let feed2 = s.subscribe();
        drop(s);
        assert!(next(&feed2).is_none());
        assert!(next(&feed).is_none());
    }
}
