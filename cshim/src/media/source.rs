//! Audio and video sources: what the application pushes (`SoraAudioSource.on_data`,
//! `SoraVideoSource.on_captured`) fans out to the senders of every connection using them.
//! Sources are created on their own (as in the official API) and found by id when a
//! connection is configured with them.
use crate::error::{Error, Result};
use crate::events::next_handle_id;
use crate::media::codec::{bgr_to_i420_into, I420Frame};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Audio is sent at this rate (Opus' RTP clock).
pub const SEND_RATE: u32 = 48_000;
/// By default `push` waits while a sender has more than this queued: producers that hand
/// over whole utterances at once are paced to real time without changing the call
/// signature. `AudioSource::set_max_queued` changes it per source.
pub const MAX_QUEUED: Duration = Duration::from_millis(500);

/// Samples queued for one sender, already at 48 kHz and the sender's channel count.
pub struct AudioFeed {
    pub channels: u32,
    /// Shared with the source: a disabled source sends silence.
    pub enabled: Arc<AtomicBool>,
    state: Mutex<AudioFeedState>,
    drained: Condvar,
}

struct AudioFeedState {
    samples: VecDeque<i16>,
    /// When the sender last took audio: a feed nobody drains (not connected yet, or
    /// stalled) must neither block producers nor grow.
    last_take: Option<Instant>,
    /// Capture time (epoch seconds) of the first queued sample, when known.
    first_capture: Option<f64>,
    closed: bool,
}

impl AudioFeed {
    fn draining(st: &AudioFeedState) -> bool {
        st.last_take.is_some_and(|t| t.elapsed() < Duration::from_millis(300))
    }

    fn queued(&self, st: &AudioFeedState) -> Duration {
        Duration::from_secs_f64(st.samples.len() as f64 / (self.channels as f64 * SEND_RATE as f64))
    }

    /// Takes exactly `frames` frames (interleaved) if available, with their capture time.
    pub fn take(&self, frames: usize) -> Option<(Vec<i16>, Option<f64>)> {
        let mut st = self.state.lock();
        // Polled every ptime by a live sender, with or without data: that is "draining".
        st.last_take = Some(Instant::now());
        let n = frames * self.channels as usize;
        if st.samples.len() < n {
            return None;
        }
        let out: Vec<i16> = st.samples.drain(..n).collect();
        let capture = st.first_capture;
        st.first_capture = capture.map(|t| t + frames as f64 / SEND_RATE as f64);
        drop(st);
        self.drained.notify_all();
        Some((out, capture))
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        self.drained.notify_all();
    }
}

pub struct AudioSource {
    pub id: u64,
    enabled: Arc<AtomicBool>,
    pub channels: u32,
    pub sample_rate: u32,
    send_channels: u32,
    inner: Mutex<AudioSourceState>,
    pub dropped_frames: AtomicU64,
    /// What `push` lets a draining sender hold before it waits, in µs (MAX_QUEUED).
    max_queued_us: AtomicU64,
}

struct AudioSourceState {
    resampler: crate::media::codec::Resampler,
    next_timestamp: Option<f64>,
    feeds: Vec<Weak<AudioFeed>>,
}

impl AudioSourceState {
    /// The feeds of senders still alive (the others are forgotten on the way).
    fn live_feeds(&mut self) -> Vec<Arc<AudioFeed>> {
        self.feeds.retain(|f| f.strong_count() > 0);
        self.feeds.iter().filter_map(Weak::upgrade).collect()
    }
}

impl AudioSource {
    pub fn new(channels: u32, sample_rate: u32) -> Result<Arc<AudioSource>> {
        if !(1..=8).contains(&channels) {
            return Err(Error::invalid(format!("channels must be 1..=8, not {channels}")));
        }
        if !(8_000..=192_000).contains(&sample_rate) {
            return Err(Error::invalid(format!("sample_rate must be 8000..=192000 Hz, not {sample_rate}")));
        }
        // Opus carries at most two channels; more are mixed down before sending.
        let send_channels = channels.min(2);
        let resampler = crate::media::codec::Resampler::new(sample_rate, channels, SEND_RATE, send_channels)?;
        let src = Arc::new(AudioSource {
            id: next_handle_id(),
            enabled: Arc::new(AtomicBool::new(true)),
            channels,
            sample_rate,
            send_channels,
            inner: Mutex::new(AudioSourceState { resampler, next_timestamp: None, feeds: Vec::new() }),
            dropped_frames: AtomicU64::new(0),
            max_queued_us: AtomicU64::new(MAX_QUEUED.as_micros() as u64),
        });
        registry().lock().audio.insert(src.id, Arc::downgrade(&src));
        Ok(src)
    }

    /// A new feed for a sender; it receives everything pushed from now on.
    pub fn subscribe(&self) -> Arc<AudioFeed> {
        let feed = Arc::new(AudioFeed {
            channels: self.send_channels,
            enabled: self.enabled.clone(),
            state: Mutex::new(AudioFeedState { samples: VecDeque::new(), last_take: None, first_capture: None, closed: false }),
            drained: Condvar::new(),
        });
        self.inner.lock().feeds.push(Arc::downgrade(&feed));
        feed
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// How much a draining sender may hold before `push` waits (asyncio callers wait
    /// themselves, on `queued`, and set this to their own queue size so `push` never does).
    pub fn set_max_queued(&self, limit: Duration) {
        self.max_queued_us.store(limit.as_micros() as u64, Ordering::Relaxed);
    }

    fn max_queued(&self) -> Duration {
        Duration::from_micros(self.max_queued_us.load(Ordering::Relaxed))
    }

    fn live_feeds(&self) -> Vec<Arc<AudioFeed>> {
        self.inner.lock().live_feeds()
    }

    /// The most audio any sender that is draining has still to send (zero without one).
    pub fn queued(&self) -> Duration {
        self.live_feeds()
            .iter()
            .filter_map(|f| {
                let st = f.state.lock();
                AudioFeed::draining(&st).then(|| f.queued(&st))
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Drops everything queued and not yet sent (a barge-in); returns the frames dropped
    /// from the fullest sender's queue.
    pub fn clear(&self) -> u64 {
        let mut most = 0;
        for feed in self.live_feeds() {
            let mut st = feed.state.lock();
            most = most.max((st.samples.len() / feed.channels as usize) as u64);
            st.samples.clear();
            st.first_capture = None;
            drop(st);
            feed.drained.notify_all();
        }
        most
    }

    /// Queues interleaved samples (`frames` × channels). `timestamp` is the capture time of
    /// the first sample in epoch seconds; None continues from the previous push.
    pub fn push(&self, pcm: &[i16], timestamp: Option<f64>) -> Result<()> {
        if pcm.len() % self.channels as usize != 0 {
            return Err(Error::invalid("sample count is not a multiple of the channel count"));
        }
        let frames = pcm.len() / self.channels as usize;
        let (converted, capture, feeds) = {
            let mut st = self.inner.lock();
            let capture = timestamp.or(st.next_timestamp).unwrap_or_else(now_epoch);
            st.next_timestamp = Some(capture + frames as f64 / self.sample_rate as f64);
            let feeds = st.live_feeds();
            (st.resampler.process(pcm), capture, feeds)
        };
        let limit = self.max_queued();
        for feed in feeds {
            let mut fs = feed.state.lock();
            // Backpressure: while the sender drains in real time, wait until less than
            // `limit` is queued, then take the whole chunk (a long utterance in one call
            // is accepted and paced). A feed nobody drains keeps only the newest audio.
            while !fs.closed && AudioFeed::draining(&fs) && feed.queued(&fs) > limit {
                feed.drained.wait_for(&mut fs, Duration::from_millis(100));
            }
            if fs.closed {
                continue;
            }
            if fs.samples.is_empty() {
                fs.first_capture = Some(capture);
            }
            fs.samples.extend(converted.iter().copied());
            if !AudioFeed::draining(&fs) {
                let max = (feed.channels as f64 * SEND_RATE as f64 * MAX_QUEUED.as_secs_f64()) as usize;
                if fs.samples.len() > max {
                    let excess = fs.samples.len() - max;
                    fs.samples.drain(..excess);
                    if let Some(t) = fs.first_capture.as_mut() {
                        *t += (excess / feed.channels as usize) as f64 / SEND_RATE as f64;
                    }
                    self.dropped_frames.fetch_add((excess / feed.channels as usize) as u64, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

impl Drop for AudioSource {
    fn drop(&mut self) {
        registry().lock().audio.remove(&self.id);
    }
}

/// The newest frame for one video sender (older unsent frames are replaced and counted).
pub struct FrameSlot {
    /// Shared with the source: a disabled source sends black frames.
    pub enabled: Arc<AtomicBool>,
    state: Mutex<SlotState>,
    ready: Condvar,
    pub dropped: AtomicU64,
}

struct SlotState {
    frame: Option<(Arc<I420Frame>, i64)>,
    closed: bool,
}

impl FrameSlot {
    fn new(enabled: Arc<AtomicBool>) -> Arc<FrameSlot> {
        Arc::new(FrameSlot { enabled, state: Mutex::new(SlotState { frame: None, closed: false }), ready: Condvar::new(), dropped: AtomicU64::new(0) })
    }

    fn put(&self, frame: Arc<I420Frame>, capture_us: i64) {
        let mut st = self.state.lock();
        if st.frame.replace((frame, capture_us)).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Waits up to `timeout` for the next frame; None on timeout or when closed.
    pub fn take(&self, timeout: Duration) -> Option<(Arc<I420Frame>, i64)> {
        let mut st = self.state.lock();
        if st.frame.is_none() && !st.closed {
            self.ready.wait_for(&mut st, timeout);
        }
        st.frame.take()
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

pub struct VideoSource {
    pub id: u64,
    enabled: Arc<AtomicBool>,
    slots: Mutex<Vec<Weak<FrameSlot>>>,
    /// The last frames pushed: one the senders are done with is converted into again, so a
    /// frame costs no allocation, zero-fill or page faults (~1.4 MB at 720p).
    recent: Mutex<VecDeque<Arc<I420Frame>>>,
}

/// Frames [`VideoSource::recent`] keeps: the one being encoded, the one waiting in the slots,
/// and one to convert into.
const RECENT_FRAMES: usize = 3;

impl VideoSource {
    pub fn new() -> Arc<VideoSource> {
        let src = Arc::new(VideoSource {
            id: next_handle_id(),
            enabled: Arc::new(AtomicBool::new(true)),
            slots: Mutex::new(Vec::new()),
            recent: Mutex::new(VecDeque::new()),
        });
        registry().lock().video.insert(src.id, Arc::downgrade(&src));
        src
    }

    pub fn subscribe(&self) -> Arc<FrameSlot> {
        let slot = FrameSlot::new(self.enabled.clone());
        self.slots.lock().push(Arc::downgrade(&slot));
        slot
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Converts a BGR image to I420 once and hands it to every sender. `capture_us` is the
    /// capture time in epoch microseconds (None = now). Without senders nothing is converted.
    pub fn push_bgr(&self, bgr: &[u8], width: u32, height: u32, stride: usize, capture_us: Option<i64>) -> Result<()> {
        if width == 0 || height == 0 || width > 8192 || height > 8192 {
            return Err(Error::invalid(format!("invalid frame size {width}x{height}")));
        }
        if stride < width as usize * 3 || bgr.len() < stride * (height as usize - 1) + width as usize * 3 {
            return Err(Error::invalid("BGR buffer is smaller than height × stride"));
        }
        let slots: Vec<Arc<FrameSlot>> = {
            let mut s = self.slots.lock();
            s.retain(|w| w.upgrade().is_some_and(|x| !x.is_closed()));
            s.iter().filter_map(Weak::upgrade).collect()
        };
        if slots.is_empty() {
            self.recent.lock().clear(); // no sender: nothing to keep frames for
            return Ok(());
        }
        let frame = self.convert(bgr, width, height, stride)?;
        let t = capture_us.unwrap_or_else(|| (now_epoch() * 1e6) as i64);
        for slot in slots {
            slot.put(frame.clone(), t);
        }
        Ok(())
    }

    /// `bgr` as I420, in a recent frame no sender holds any more when there is one.
    fn convert(&self, bgr: &[u8], width: u32, height: u32, stride: usize) -> Result<Arc<I420Frame>> {
        let mut recent = self.recent.lock();
        let free = recent.iter().position(|f| Arc::strong_count(f) == 1 && Arc::weak_count(f) == 0);
        let mut frame = match free.and_then(|i| recent.remove(i)) {
            Some(f) => f,
            None => Arc::new(I420Frame::new(width, height)?),
        };
        let Some(buffer) = Arc::get_mut(&mut frame) else {
            return Err(Error::internal("a recent frame is shared")); // the lock makes this unreachable
        };
        bgr_to_i420_into(bgr, width, height, stride, buffer)?;
        recent.push_back(frame.clone());
        while recent.len() > RECENT_FRAMES {
            recent.pop_front();
        }
        Ok(frame)
    }
}

impl Drop for VideoSource {
    fn drop(&mut self) {
        registry().lock().video.remove(&self.id);
        for s in self.slots.lock().iter().filter_map(Weak::upgrade) {
            s.close();
        }
    }
}

#[derive(Default)]
struct Registry {
    audio: HashMap<u64, Weak<AudioSource>>,
    video: HashMap<u64, Weak<VideoSource>>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: std::sync::OnceLock<Mutex<Registry>> = std::sync::OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry::default()))
}

pub fn audio_source(id: u64) -> Option<Arc<AudioSource>> {
    registry().lock().audio.get(&id).and_then(Weak::upgrade)
}

pub fn video_source(id: u64) -> Option<Arc<VideoSource>> {
    registry().lock().video.get(&id).and_then(Weak::upgrade)
}

pub fn now_epoch() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(bgr: [u8; 3], w: usize, h: usize) -> Vec<u8> {
        bgr.repeat(w * h)
    }

    #[test]
    fn a_frame_the_senders_are_done_with_is_converted_into_again() {
        let src = VideoSource::new();
        let slot = src.subscribe();
        src.push_bgr(&solid([0, 0, 0], 64, 48), 64, 48, 64 * 3, Some(1)).unwrap();
        let (first, _) = slot.take(Duration::ZERO).unwrap();
        let (plane, luma) = (first.y.as_ptr(), first.y[0]);
        // still held by the "encoder": a new frame is made for the next picture
        src.push_bgr(&solid([255, 255, 255], 64, 48), 64, 48, 64 * 3, Some(2)).unwrap();
        let (second, _) = slot.take(Duration::ZERO).unwrap();
        assert_ne!(second.y.as_ptr(), plane);
        assert_eq!(first.y[0], luma, "a frame in use is never written");
        drop(first);
        drop(second);
        // both released: the next picture goes into one of them, with its own pixels
        src.push_bgr(&solid([0, 255, 0], 64, 48), 64, 48, 64 * 3, Some(3)).unwrap();
        let (third, t) = slot.take(Duration::ZERO).unwrap();
        assert_eq!((t, third.y.as_ptr()), (3, plane));
        assert!(third.y.iter().all(|&y| y == third.y[0]) && third.y[0] != luma && third.y[0] < 200);
        // another size: the reused frame is resized
        src.push_bgr(&solid([0, 0, 0], 32, 16), 32, 16, 32 * 3, Some(4)).unwrap();
        let (fourth, _) = slot.take(Duration::ZERO).unwrap();
        assert_eq!((fourth.width, fourth.height, fourth.y.len(), fourth.u.len()), (32, 16, 512, 128));
        assert!(src.recent.lock().len() <= RECENT_FRAMES);
        // no sender left: nothing is converted, and no frame kept
        drop((fourth, slot));
        src.push_bgr(&solid([0, 0, 0], 32, 16), 32, 16, 32 * 3, Some(5)).unwrap();
        assert!(src.recent.lock().is_empty());
    }
}
