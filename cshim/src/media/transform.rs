//! Encoded transforms (W3C WebRTC Encoded Transform, the official SDK's
//! `SoraAudioFrameTransformer` / `SoraVideoFrameTransformer`): encoded frames leave a
//! pipeline as events, the application may change them, and `enqueue` puts them back.
//!
//! The pipeline never waits for the application. A frame it hands out is remembered as
//! *pending* (at most [`MAX_PENDING`], for at most [`MAX_AGE`]); `enqueue` takes it back in
//! order. Frames never given back are dropped when a later one returns (or when they age
//! out), and a video pipeline then recovers with a keyframe; frames given back twice, after
//! a later one, empty or larger than the limit are dropped and counted the same way.
//! Short-circuiting detaches the transformer from the pipeline: frames then skip it at no
//! cost.
use crate::error::{Error, Kind, Result};
use crate::events::{next_handle_id, Event, EventQueue, EventType};
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Frames handed out and not yet given back, per pipeline.
pub const MAX_PENDING: usize = 64;
/// How long a frame may stay with the application.
pub const MAX_AGE: Duration = Duration::from_secs(2);
/// Largest frame accepted back (an application adding a header or a tag is fine).
pub const MAX_VIDEO_FRAME: usize = 4 << 20;
pub const MAX_AUDIO_FRAME: usize = 16 << 10;

/// Where a transformed frame goes back in (a send or receive pipeline).
pub trait TransformTarget: Send + Sync {
    fn enqueue(&self, seq: u64, data: Vec<u8>, rtp_timestamp: u32);
}

/// One application transformer (the C ABI's `SoraFrameTransformer`).
pub struct Transformer {
    pub id: u64,
    pub video: bool,
    queue: Mutex<Option<Arc<EventQueue>>>,
    short_circuit: AtomicBool,
    target: Mutex<Option<Weak<dyn TransformTarget>>>,
    pub submitted: AtomicU64,
    pub enqueued: AtomicU64,
    pub dropped: AtomicU64,
}

impl Transformer {
    pub fn new(video: bool) -> Arc<Transformer> {
        let t = Arc::new(Transformer {
            id: next_handle_id(),
            video,
            queue: Mutex::new(None),
            short_circuit: AtomicBool::new(false),
            target: Mutex::new(None),
            submitted: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        registry().lock().insert(t.id, Arc::downgrade(&t));
        t
    }

    /// Events go to `queue` (the dispatcher of the Sora the transformer is used with).
    pub fn set_queue(&self, queue: Arc<EventQueue>) {
        *self.queue.lock() = Some(queue);
    }

    /// Frames bypass the application from now on (W3C `startShortCircuiting`).
    pub fn short_circuit(&self) {
        self.short_circuit.store(true, Ordering::Release);
    }

    /// Whether a pipeline must hand its frames out (attached to a queue, not short-circuited).
    pub fn active(&self) -> bool {
        !self.short_circuit.load(Ordering::Acquire) && self.queue.lock().is_some()
    }

    /// Binds the pipeline frames return to; one pipeline per transformer.
    pub fn bind(&self, target: Weak<dyn TransformTarget>) -> Result<()> {
        let mut t = self.target.lock();
        if t.as_ref().is_some_and(|w| w.strong_count() > 0) {
            return Err(Error::new(Kind::InvalidState, "this transformer is already used by another track"));
        }
        *t = Some(target);
        Ok(())
    }

    /// Hands one frame to the application (a droppable event: a consumer that falls behind
    /// loses the oldest frames, which the pending logic then turns into a keyframe request).
    pub fn submit(&self, seq: u64, data: Vec<u8>, meta: &Value) {
        let Some(q) = self.queue.lock().clone() else { return };
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let mut ev = Event::new(EventType::TransformFrame, self.id).b(seq as i64).text(&meta.to_string()).data(data);
        ev.droppable = true;
        q.push(ev);
    }

    /// The application gives a frame back.
    pub fn enqueue(&self, seq: u64, data: Vec<u8>, rtp_timestamp: u32) -> Result<()> {
        let limit = if self.video { MAX_VIDEO_FRAME } else { MAX_AUDIO_FRAME };
        if data.is_empty() || data.len() > limit {
            self.drop_frames(1, &format!("transformed frame of {} bytes (accepted: 1 to {limit})", data.len()));
            return Ok(());
        }
        let target = self.target.lock().as_ref().and_then(Weak::upgrade);
        match target {
            Some(t) => {
                t.enqueue(seq, data, rtp_timestamp);
                Ok(())
            }
            None => Err(Error::new(Kind::Closed, "the transformer's track has ended")),
        }
    }

    /// Counts `n` frames given up (`dropped_frames`) and says why. The pipeline that gave
    /// them up asks for a keyframe itself when it is video.
    pub fn drop_frames(&self, n: usize, what: &str) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        log::warn!("encoded transform: dropping {n} {what}");
    }
}

/// SoraTransformableFrameDirection.
pub const RECEIVER: i32 = 1;
pub const SENDER: i32 = 2;

/// The metadata every handed-out frame carries; pipelines add their audio/video fields.
pub fn frame_metadata(direction: i32, info: &crate::media::rtp::StreamInfo, ssrc: u32, rtp_timestamp: u32) -> Value {
    serde_json::json!({
        "payload_type": info.payload_type, "ssrc": ssrc, "rtp_timestamp": rtp_timestamp,
        "direction": direction, "mime_type": info.mime, "contributing_sources": [],
    })
}

impl Drop for Transformer {
    fn drop(&mut self) {
        registry().lock().remove(&self.id);
    }
}

fn registry() -> &'static Mutex<HashMap<u64, Weak<Transformer>>> {
    static R: OnceLock<Mutex<HashMap<u64, Weak<Transformer>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The transformer with handle id `id` (connection configs name transformers by id).
pub fn transformer(id: u64) -> Option<Arc<Transformer>> {
    registry().lock().get(&id).and_then(Weak::upgrade)
}

/// The frames a pipeline handed out, in order, with what it needs to take each one back.
pub struct Pending<M> {
    frames: VecDeque<(u64, Instant, M)>,
    next_seq: u64,
}

/// What `Pending::take` found.
pub struct Taken<M> {
    pub meta: M,
    /// Frames handed out before this one that never came back (now dropped).
    pub skipped: usize,
}

impl<M> Default for Pending<M> {
    fn default() -> Self {
        Pending { frames: VecDeque::new(), next_seq: 1 }
    }
}

impl<M> Pending<M> {
    /// Remembers a frame; returns its sequence number and how many old frames were given up
    /// to make room (too many pending, or too old).
    pub fn push(&mut self, meta: M, now: Instant) -> (u64, usize) {
        let mut expired = 0;
        while self.frames.front().is_some_and(|(_, t, _)| now.duration_since(*t) > MAX_AGE)
            || self.frames.len() >= MAX_PENDING
        {
            self.frames.pop_front();
            expired += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.frames.push_back((seq, now, meta));
        (seq, expired)
    }

    /// Takes frame `seq` back; the frames before it are dropped. None: not pending (given
    /// back twice, after a later frame, expired, or never handed out).
    pub fn take(&mut self, seq: u64) -> Option<Taken<M>> {
        let pos = self.frames.iter().position(|(s, _, _)| *s == seq)?;
        let skipped = pos;
        self.frames.drain(..pos);
        let (_, _, meta) = self.frames.pop_front().expect("found above");
        Some(Taken { meta, skipped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_takes_in_order_and_drops_what_was_skipped() {
        let now = Instant::now();
        let mut p = Pending::default();
        let (a, _) = p.push("a", now);
        let (b, _) = p.push("b", now);
        let (c, _) = p.push("c", now);
        let t = p.take(b).unwrap();
        assert_eq!((t.meta, t.skipped), ("b", 1));
        assert!(p.take(a).is_none(), "skipped frames are gone");
        assert!(p.take(b).is_none(), "given back twice");
        assert_eq!(p.take(c).unwrap().skipped, 0);
    }

    #[test]
    fn pending_is_bounded_in_count_and_age() {
        let now = Instant::now();
        let mut p = Pending::default();
        for i in 0..MAX_PENDING {
            assert_eq!(p.push(i, now).1, 0);
        }
        assert_eq!(p.push(99, now).1, 1);
        let later = now + MAX_AGE + Duration::from_millis(1);
        let (seq, expired) = p.push(100, later);
        assert_eq!(expired, MAX_PENDING);
        assert_eq!(p.take(seq).unwrap().meta, 100);
    }

    #[test]
    fn enqueue_checks_sizes_and_the_target() {
        let t = Transformer::new(false);
        assert!(t.enqueue(1, vec![1], 0).is_err(), "no pipeline yet");
        t.enqueue(1, vec![], 0).unwrap();
        t.enqueue(1, vec![0; MAX_AUDIO_FRAME + 1], 0).unwrap();
        assert_eq!(t.dropped.load(Ordering::Relaxed), 2);
        assert!(transformer(t.id).is_some());
        let id = t.id;
        drop(t);
        assert!(transformer(id).is_none());
    }
}
