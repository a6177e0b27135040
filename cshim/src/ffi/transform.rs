//! Encoded transforms (media::transform): transformer handles, enqueue, and attaching one
//! to a received track. Transformers for what a connection sends are named in its config
//! (`audio_frame_transformer` / `video_frame_transformer`: `sora_frame_transformer_id`).
use super::connection::SoraConnection;
use super::events::SoraEventQueue;
use super::{arg_bytes, arg_ref, guard, out_ptr};
use crate::error::Error;
use crate::media::transform::Transformer;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An encoded-frame transformer (opaque). Its frames arrive as SORA_EVENT_TRANSFORM_FRAME
/// (source = the transformer's id, b = frame sequence number, text = metadata JSON, data =
/// the encoded frame; take it with sora_event_take_buffer) on the queue given with
/// sora_frame_transformer_set_queue, and go back with sora_frame_transformer_enqueue.
pub struct SoraFrameTransformer {
    inner: Arc<Transformer>,
}

/// Creates a transformer for audio (`video` 0) or video (`video` 1) frames. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_new(video: i32, out: *mut *mut SoraFrameTransformer) -> i32 {
    guard(|| {
        if !(0..=1).contains(&video) {
            return Err(Error::invalid("video must be 0 (audio) or 1 (video)"));
        }
        out_ptr(SoraFrameTransformer { inner: Transformer::new(video == 1) }, out)
    })
}

/// Frees the handle. Pipelines using the transformer keep it until they end, so the owner
/// must keep consuming its events (or short-circuit it) while a track uses it.
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_destroy(t: *mut SoraFrameTransformer) {
    if !t.is_null() {
        drop(Box::from_raw(t));
    }
}

/// The transformer's handle id (event source; the connection config names it). 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_id(t: *const SoraFrameTransformer) -> u64 {
    t.as_ref().map_or(0, |t| t.inner.id)
}

/// Frames go to `queue` as events from now on. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_set_queue(t: *const SoraFrameTransformer, queue: *const SoraEventQueue) -> i32 {
    guard(|| {
        arg_ref(t, "transformer")?.inner.set_queue(arg_ref(queue, "queue")?.inner.clone());
        Ok(0)
    })
}

/// Frames skip the transformer from now on, at no cost (W3C startShortCircuiting).
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_short_circuit(t: *const SoraFrameTransformer) -> i32 {
    guard(|| {
        arg_ref(t, "transformer")?.inner.short_circuit();
        Ok(0)
    })
}

/// Gives frame `seq` back with `data` (possibly changed) and `rtp_timestamp`. Never blocks
/// on the network. A frame that is not pending, empty or too large is dropped and counted
/// (SORA_OK all the same); SORA_ERR_CLOSED once the track has ended. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_enqueue(t: *const SoraFrameTransformer, seq: u64, data: *const u8, len: usize, rtp_timestamp: u32) -> i32 {
    guard(|| {
        let t = arg_ref(t, "transformer")?;
        t.inner.enqueue(seq, arg_bytes(data, len)?.to_vec(), rtp_timestamp)?;
        Ok(0)
    })
}

/// Frames dropped so far (not given back, given back twice or late, empty, too large).
#[no_mangle]
pub unsafe extern "C" fn sora_frame_transformer_dropped(t: *const SoraFrameTransformer) -> u64 {
    t.as_ref().map_or(0, |t| t.inner.dropped.load(Ordering::Relaxed))
}

/// Transforms remote track `track_id`'s frames with `t` before decoding (NULL removes it).
#[no_mangle]
pub unsafe extern "C" fn sora_connection_set_track_transformer(c: *const SoraConnection, track_id: u64, t: *const SoraFrameTransformer) -> i32 {
    guard(|| {
        let c = arg_ref(c, "connection")?;
        let inner = t.as_ref().map(|t| t.inner.clone());
        c.inner.set_track_transformer(track_id, inner)?;
        Ok(0)
    })
}
