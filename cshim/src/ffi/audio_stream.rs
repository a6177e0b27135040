//! Audio streaming (`sora_peer_stream_audio`, `sora_audio_stream_*`): a peer's receiving
//! audio track streamed to an HTTP/2 gateway as Sora does it (docs/audio-streaming.md).
use super::events::SoraEventQueue;
use super::peer::SoraPeer;
use super::{arg_ref, arg_str, guard};
use crate::error::Error;
use std::ffi::c_char;

/// Streams the Opus that the receiving audio track `track` gets to a gateway: one HTTP/2
/// POST (h2c for http://, h2 over TLS for https://) whose body is the payloads as they
/// arrive, made again after a back-off when it fails or ends. Events go to `queue` with
/// source = `*out_stream`: SORA_EVENT_AUDIO_STREAM_RESULT (text = a JSON line of the
/// response) and SORA_EVENT_AUDIO_STREAM_STATE (a = 1 streaming, 2 retrying, 3 stopped,
/// 4 warning; text = why). `config_json`: {"url" (required), "headers": {name: value},
/// "framed" (20-byte header before each payload: Unix µs u64, sequence u64, length u32,
/// big-endian; default false), "ca_cert", "client_cert", "client_key" (PEM text, https
/// only), "retry_interval_ms" (first back-off, default 500, doubling up to 5 s),
/// "queue_packets" (what waits for the gateway, default 250; more is dropped and counted),
/// "keepalive_ms" (an HTTP/2 PING this often, default 5000; no answer within twice that
/// and the request is made again)}.
/// One stream per track. It ends by itself when the track goes. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_peer_stream_audio(
    p: *const SoraPeer,
    track: i32,
    queue: *const SoraEventQueue,
    config_json: *const c_char,
    out_stream: *mut u64,
) -> i32 {
    guard(|| {
        arg_ref(p, "peer")?.inner.check_current(track)?;
        let q = arg_ref(queue, "queue")?;
        let cfg = arg_str(config_json, "config_json")?;
        if out_stream.is_null() {
            return Err(Error::invalid("out_stream must not be NULL"));
        }
        *out_stream = crate::audio_stream::start(q.inner.clone(), track, cfg)?;
        Ok(0)
    })
}

/// Stops a stream: its request body is ended and no new request made; a last
/// SORA_EVENT_AUDIO_STREAM_STATE with a = 3 follows. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_stream_stop(stream: u64) -> i32 {
    guard(|| {
        crate::audio_stream::stop(stream)?;
        Ok(0)
    })
}

/// What a running stream has done: packets and Opus bytes handed to the gateway, packets
/// dropped because the gateway was not taking them fast enough. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_audio_stream_counters(stream: u64, packets: *mut u64, bytes: *mut u64, dropped: *mut u64) -> i32 {
    guard(|| {
        if packets.is_null() || bytes.is_null() || dropped.is_null() {
            return Err(Error::invalid("out pointers must not be NULL"));
        }
        let (p, b, d) = crate::audio_stream::counters(stream)?;
        *packets = p;
        *bytes = b;
        *dropped = d;
        Ok(0)
    })
}
