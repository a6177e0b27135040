//! Where decoded media goes: video sinks (BGR frames as droppable events, zero-copy to
//! Python), audio sinks (a buffer read with a timeout) and audio stream sinks (10 ms frames
//! as events). All converting (I420→BGR, resampling, channel mixing) happens here, natively.
use super::codec::{i420_to_bgr, I420Frame, Resampler};
use crate::error::Result;
use crate::events::{next_handle_id, Event, EventQueue, EventType};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interleaved samples as the native-endian bytes events and buffers carry.
pub fn pcm_bytes(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().flat_map(|s| s.to_ne_bytes()).collect()
}

/// Receives decoded media from a track's receive pipeline (on its thread: must not block).
pub trait MediaSink: Send + Sync {
    fn id(&self) -> u64;
    fn on_video(&self, _frame: &I420Frame) {}
    fn on_audio(&self, _pcm: &[i16], _rate: u32, _channels: u32, _capture_ms: Option<i64>) {}
    /// The audio rate this sink converts to (None: as received). The receiver decodes
    /// straight to the lowest rate that serves all its sinks.
    fn audio_rate(&self) -> Option<u32> {
        None
    }
}

pub struct VideoSink {
    pub id: u64,
    queue: Arc<EventQueue>,
}

impl VideoSink {
    pub fn new(queue: Arc<EventQueue>) -> Arc<VideoSink> {
        Arc::new(VideoSink { id: next_handle_id(), queue })
    }
}

impl MediaSink for VideoSink {
    fn id(&self) -> u64 {
        self.id
    }
    fn on_video(&self, frame: &I420Frame) {
        let mut bgr = vec![0u8; frame.width as usize * frame.height as usize * 3];
        if i420_to_bgr(frame, &mut bgr).is_err() {
            return;
        }
        let mut ev = Event::new(EventType::VideoFrame, self.id).a(frame.width as i64).b(frame.height as i64).data(bgr);
        ev.droppable = true; // a slow consumer loses the oldest frames, never stalls the network
        self.queue.push(ev);
    }
}

/// A requested output rate or channel count: None for -1/0 ("as received").
fn requested(value: i32) -> Option<u32> {
    (value > 0).then_some(value as u32)
}

/// Lazily built converter to the requested rate/channels (-1/0 = as received).
struct Converter {
    want_rate: Option<u32>,
    want_channels: Option<u32>,
    current: Option<(u32, u32, Resampler)>,
}

impl Converter {
    fn new(rate: i32, channels: i32) -> Converter {
        Converter {
            want_rate: requested(rate),
            want_channels: requested(channels),
            current: None,
        }
    }
    /// Returns (samples, out_rate, out_channels).
    fn convert(&mut self, pcm: &[i16], rate: u32, channels: u32) -> Result<(Vec<i16>, u32, u32)> {
        let out_rate = self.want_rate.unwrap_or(rate);
        let out_ch = self.want_channels.unwrap_or(channels);
        if !matches!(&self.current, Some((r, c, _)) if *r == rate && *c == channels) {
            self.current = Some((rate, channels, Resampler::new(rate, channels, out_rate, out_ch)?));
        }
        let (_, _, rs) = self.current.as_mut().expect("converter");
        Ok((rs.process(pcm), out_rate, out_ch))
    }
}

/// `SoraAudioSink`: converted audio accumulates; `read` takes it with a timeout.
pub struct AudioSink {
    pub id: u64,
    rate: Option<u32>,
    state: Mutex<AudioSinkState>,
    ready: Condvar,
    /// With the deprecated callbacks set, data and format changes are also events.
    events: Mutex<Option<Arc<EventQueue>>>,
}

struct AudioSinkState {
    converter: Converter,
    buffer: VecDeque<i16>,
    rate: u32,
    channels: u32,
    closed: bool,
}

/// Keep at most this much unread audio (older is dropped).
const MAX_BUFFERED: Duration = Duration::from_secs(10);

impl AudioSink {
    pub fn new(output_rate: i32, output_channels: i32) -> Arc<AudioSink> {
        Arc::new(AudioSink {
            id: next_handle_id(),
            rate: requested(output_rate),
            state: Mutex::new(AudioSinkState {
                converter: Converter::new(output_rate, output_channels),
                buffer: VecDeque::new(),
                rate: 0,
                channels: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            events: Mutex::new(None),
        })
    }

    pub fn set_event_queue(&self, q: Option<Arc<EventQueue>>) {
        *self.events.lock() = q;
    }

    /// The format of buffered audio (0, 0 before any arrived).
    pub fn format(&self) -> (u32, u32) {
        let st = self.state.lock();
        (st.rate, st.channels)
    }

    /// Waits up to `timeout` until `frames` frames (0: any) are buffered, then takes them
    /// (frames=0: everything buffered). None when not enough arrived in time.
    pub fn read(&self, frames: usize, timeout: Duration) -> Option<(Vec<i16>, u32, u32)> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            let ch = st.channels.max(1) as usize;
            let have = st.buffer.len() / ch;
            if (frames == 0 && have > 0) || (frames > 0 && have >= frames) {
                let mut out = vec![0; if frames == 0 { have } else { frames } * ch];
                st.take_into(&mut out);
                return Some((out, st.rate, st.channels));
            }
            if st.closed || self.ready.wait_until(&mut st, deadline).timed_out() {
                return None;
            }
        }
    }

    /// Frames buffered now, with their rate and channels (0 before any audio arrived).
    pub fn buffered(&self) -> (usize, u32, u32) {
        let st = self.state.lock();
        (st.buffer.len() / st.channels.max(1) as usize, st.rate, st.channels)
    }

    /// Without waiting, takes exactly `dst.len() / channels` frames into `dst` when that
    /// many are buffered in `channels` channels; otherwise takes nothing and says false.
    /// A caller that sized `dst` from [`AudioSink::buffered`] fills it without a copy of
    /// its own (a read by another thread, or a format change, in between gives false).
    pub fn read_into(&self, channels: u32, dst: &mut [i16]) -> bool {
        let mut st = self.state.lock();
        let ch = channels as usize;
        if channels == 0 || st.channels != channels || dst.is_empty() || dst.len() % ch != 0 || st.buffer.len() < dst.len() {
            return false;
        }
        st.take_into(dst);
        true
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }
}

impl AudioSinkState {
    /// Moves the first `dst.len()` samples out (there are that many).
    fn take_into(&mut self, dst: &mut [i16]) {
        let n = dst.len();
        let (a, b) = self.buffer.as_slices();
        let from_a = n.min(a.len());
        dst[..from_a].copy_from_slice(&a[..from_a]);
        dst[from_a..].copy_from_slice(&b[..n - from_a]);
        self.buffer.drain(..n);
        // Give back what a burst (or a reader that started late) grew: a sink read every
        // 100 ms keeps ~100 ms, not the largest backlog it ever had.
        let keep = (self.buffer.len() * 2).max(self.rate as usize * self.channels.max(1) as usize / 5);
        let capacity = self.buffer.capacity();
        if capacity > 2 * keep {
            self.buffer.shrink_to(keep);
            crate::heap::released((capacity - self.buffer.capacity()) * std::mem::size_of::<i16>());
        }
    }
}

impl MediaSink for AudioSink {
    fn id(&self) -> u64 {
        self.id
    }
    fn audio_rate(&self) -> Option<u32> {
        self.rate
    }
    fn on_audio(&self, pcm: &[i16], rate: u32, channels: u32, _capture_ms: Option<i64>) {
        let mut st = self.state.lock();
        let Ok((out, r, c)) = st.converter.convert(pcm, rate, channels) else { return };
        let format_changed = (st.rate, st.channels) != (r, c);
        if format_changed {
            st.buffer.clear();
            st.rate = r;
            st.channels = c;
        }
        st.buffer.extend(out.iter().copied());
        let max = (r as f64 * c as f64 * MAX_BUFFERED.as_secs_f64()) as usize;
        if st.buffer.len() > max {
            let excess = st.buffer.len() - max;
            st.buffer.drain(..excess);
        }
        drop(st);
        self.ready.notify_all();
        if let Some(q) = self.events.lock().as_ref() {
            if format_changed {
                q.push(Event::new(EventType::AudioFormat, self.id).a(r as i64).b(c as i64));
            }
            let bytes = pcm_bytes(&out);
            let mut ev = Event::new(EventType::AudioData, self.id).a(r as i64).b(c as i64).data(bytes);
            ev.droppable = true;
            q.push(ev);
        }
    }
}

/// `SoraAudioStreamSink`: one event per 10 ms of converted audio.
pub struct AudioStreamSink {
    pub id: u64,
    rate: Option<u32>,
    queue: Arc<EventQueue>,
    state: Mutex<(Converter, Vec<i16>)>,
    /// 10 ms blocks per event (`set_frame_ms`): fewer, larger events for consumers that
    /// want 20 or 50 ms frames anyway.
    blocks: std::sync::atomic::AtomicU32,
}

/// Packs an audio frame's format into `SoraEventView.a`: rate | channels << 32.
pub fn pack_format(rate: u32, channels: u32) -> i64 {
    (rate as i64) | ((channels as i64) << 32)
}

/// `SoraEventView.b` of an audio frame when its capture time is unknown.
pub const NO_CAPTURE_TIME: i64 = i64::MIN;

impl AudioStreamSink {
    pub fn new(queue: Arc<EventQueue>, output_rate: i32, output_channels: i32) -> Arc<AudioStreamSink> {
        Arc::new(AudioStreamSink {
            id: next_handle_id(),
            rate: requested(output_rate),
            queue,
            state: Mutex::new((Converter::new(output_rate, output_channels), Vec::new())),
            blocks: std::sync::atomic::AtomicU32::new(1),
        })
    }

    /// Events carry `ms` of audio from now on (a multiple of 10, at most 1000).
    pub fn set_frame_ms(&self, ms: u32) -> crate::error::Result<()> {
        if ms == 0 || ms % 10 != 0 || ms > 1000 {
            return Err(crate::error::Error::invalid(format!("frame size must be a multiple of 10 ms up to 1000, not {ms}")));
        }
        self.blocks.store(ms / 10, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl MediaSink for AudioStreamSink {
    fn id(&self) -> u64 {
        self.id
    }
    fn audio_rate(&self) -> Option<u32> {
        self.rate
    }
    fn on_audio(&self, pcm: &[i16], rate: u32, channels: u32, capture_ms: Option<i64>) {
        let mut st = self.state.lock();
        let (conv, pending) = &mut *st;
        let Ok((out, r, c)) = conv.convert(pcm, rate, channels) else { return };
        pending.extend_from_slice(&out);
        let blocks = self.blocks.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let chunk = (r / 100) as usize * c as usize * blocks as usize;
        let mut offset_ms = 0i64;
        while chunk > 0 && pending.len() >= chunk {
            let frame: Vec<i16> = pending.drain(..chunk).collect();
            let bytes = pcm_bytes(&frame);
            let ts = capture_ms.map_or(NO_CAPTURE_TIME, |t| t + offset_ms);
            offset_ms += 10 * i64::from(blocks);
            let mut ev = Event::new(EventType::AudioFrame, self.id).a(pack_format(r, c)).b(ts).data(bytes);
            ev.droppable = true;
            self.queue.push(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taking_spans_the_ring_wrap() {
        let sink = AudioSink::new(-1, -1);
        let mut st = sink.state.lock();
        st.channels = 1;
        st.buffer = VecDeque::with_capacity(8);
        st.buffer.extend([0, 1, 2, 3, 4, 5]);
        st.buffer.drain(..4); // head moves near the end of the ring
        st.buffer.extend([6, 7, 8, 9]); // wraps
        assert!(st.buffer.as_slices().1.len() > 0, "the test needs a wrapped ring");
        let mut out = [0i16; 5];
        st.take_into(&mut out);
        assert_eq!(out, [4, 5, 6, 7, 8]);
        assert_eq!(st.buffer.iter().copied().collect::<Vec<_>>(), vec![9]);
    }

    #[test]
    fn read_into_takes_exactly_what_was_asked_or_nothing() {
        let sink = AudioSink::new(-1, -1);
        assert_eq!(sink.buffered(), (0, 0, 0));
        assert!(!sink.read_into(1, &mut [0; 2]), "nothing buffered, no format yet");
        let pcm: Vec<i16> = (0..1920).map(|i| i as i16).collect(); // 20 ms, 48 kHz stereo
        sink.on_audio(&pcm, 48_000, 2, None);
        assert_eq!(sink.buffered(), (960, 48_000, 2));
        let mut dst = vec![0i16; 2 * 960];
        assert!(!sink.read_into(1, &mut dst[..960]), "other channels: nothing taken");
        assert!(!sink.read_into(2, &mut vec![0; 2 * 961]), "more than is buffered: nothing taken");
        assert!(!sink.read_into(2, &mut dst[..3]), "not whole frames");
        assert_eq!(sink.buffered().0, 960);
        assert!(sink.read_into(2, &mut dst[..2 * 100]));
        assert_eq!(&dst[..200], &pcm[..200]);
        assert!(sink.read_into(2, &mut dst[..2 * 860]));
        assert_eq!(&dst[..1720], &pcm[200..]);
        assert_eq!(sink.buffered(), (0, 48_000, 2));
    }

    #[test]
    fn reading_gives_back_a_backlog() {
        let sink = AudioSink::new(-1, -1);
        let tone: Vec<i16> = (0..960).map(|i| (i % 100) as i16).collect(); // 20 ms, 48 kHz mono
        for _ in 0..100 {
            sink.on_audio(&tone, 48_000, 1, None); // 2 s unread
        }
        let cap_before = sink.state.lock().buffer.capacity();
        assert!(cap_before >= 96_000);
        let (pcm, rate, ch) = sink.read(0, Duration::ZERO).expect("audio");
        assert_eq!((pcm.len(), rate, ch), (96_000, 48_000, 1));
        assert_eq!(&pcm[..960], &tone[..]);
        assert!(sink.state.lock().buffer.capacity() <= 9_600 * 2, "kept {}", sink.state.lock().buffer.capacity());
        // steady reading afterwards still works
        sink.on_audio(&tone, 48_000, 1, None);
        assert_eq!(sink.read(960, Duration::ZERO).expect("audio").0, tone);
    }
}
