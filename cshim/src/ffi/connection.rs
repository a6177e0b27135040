//! Sora client connections (`sora_connection_*`).
use super::{arg_bytes, arg_ref, arg_str, guard, out_ptr, out_string};
use super::events::SoraEventQueue;
use crate::connection::Connection;
use std::ffi::c_char;
use std::time::Duration;

/// A Sora client connection (opaque).
pub struct SoraConnection {
    pub(crate) inner: Connection,
}

/// Creates a connection whose events go to `queue`. `config_json` holds the keyword
/// arguments of `Sora.create_connection` (see docs/c-abi.md). Nothing touches the network
/// until `sora_connection_connect`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_new(
    queue: *const SoraEventQueue,
    config_json: *const c_char,
    out: *mut *mut SoraConnection,
) -> i32 {
    guard(|| {
        let q = arg_ref(queue, "queue")?;
        let cfg = arg_str(config_json, "config_json")?;
        out_ptr(SoraConnection { inner: Connection::new(q.inner.clone(), cfg)? }, out)
    })
}

/// The handle id that this connection's events carry in `source`.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_id(c: *const SoraConnection) -> u64 {
    c.as_ref().map_or(0, |c| c.inner.id())
}

/// Starts connecting (non-blocking). SORA_ERR_INVALID_STATE if already called.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_connect(c: *const SoraConnection) -> i32 {
    guard(|| {
        arg_ref(c, "connection")?.inner.connect()?;
        Ok(0)
    })
}

/// Starts disconnecting (non-blocking); the session ends with SORA_EVENT_DISCONNECT.
/// Safe at any time, repeatedly, and from any thread.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_disconnect(c: *const SoraConnection) -> i32 {
    guard(|| {
        arg_ref(c, "connection")?.inner.disconnect();
        Ok(0)
    })
}

/// Sends `data` on the messaging channel `label`. SORA_ERR_CLOSED when that channel is not
/// open, SORA_ERR_TOO_LARGE above the channel's maximum message size. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_send_data_channel(
    c: *const SoraConnection,
    label: *const c_char,
    data: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        let c = arg_ref(c, "connection")?;
        c.inner.send_data_channel(arg_str(label, "label")?, arg_bytes(data, len)?)?;
        Ok(0)
    })
}

/// W3C webrtc-stats shaped JSON array. Free with sora_string_free.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_get_stats(c: *const SoraConnection, out_json: *mut *mut c_char) -> i32 {
    guard(|| out_string(arg_ref(c, "connection")?.inner.stats(), out_json))
}

/// Session facts as JSON: connection_id, session_id, client_id, bundle_id, channel_id,
/// contact_url, connected_url, connected, switched. Free with sora_string_free.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_info(c: *const SoraConnection, out_json: *mut *mut c_char) -> i32 {
    guard(|| out_string(arg_ref(c, "connection")?.inner.info(), out_json))
}

/// Blocks until the connection is established (offer applied, peer connected and the
/// server's connection.created for itself received): SORA_OK, SORA_ERR_TIMEOUT, or
/// SORA_ERR_CLOSED when the session ended first.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_wait_connected(c: *const SoraConnection, timeout_ms: i32) -> i32 {
    guard(|| {
        let c = arg_ref(c, "connection")?;
        c.inner.wait_connected(Duration::from_millis(timeout_ms.max(0) as u64))?;
        Ok(0)
    })
}

/// Enables or disables a track announced by SORA_EVENT_TRACK (id in `a`).
#[no_mangle]
pub unsafe extern "C" fn sora_connection_set_track_enabled(c: *const SoraConnection, track_id: u64, enabled: i32) -> i32 {
    guard(|| {
        arg_ref(c, "connection")?.inner.set_track_enabled(track_id, enabled != 0)?;
        Ok(0)
    })
}

/// Frees the connection. It stops reporting at once; a live session is ended politely in
/// the background. NULL is ignored. Must not race with other calls on the same handle.
#[no_mangle]
pub unsafe extern "C" fn sora_connection_destroy(c: *mut SoraConnection) {
    if !c.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(c))));
    }
}
