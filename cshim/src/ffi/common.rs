//! Status codes, errors, strings, version and logging.
use super::{arg_str, guard};
use crate::error::{last_error_ptr, Error};
use super::events::SoraEventQueue;
use std::ffi::{c_char, CString};

/// Success.
pub const SORA_OK: i32 = 0;
/// An argument is NULL, malformed or out of range.
pub const SORA_ERR_INVALID_ARGUMENT: i32 = -1;
/// The call does not fit the object's current state.
pub const SORA_ERR_INVALID_STATE: i32 = -2;
/// The named object does not exist.
pub const SORA_ERR_NOT_FOUND: i32 = -3;
/// The object (channel, queue, session) is closed or not open.
pub const SORA_ERR_CLOSED: i32 = -4;
/// The payload exceeds a limit.
pub const SORA_ERR_TOO_LARGE: i32 = -5;
/// Unexpected internal failure.
pub const SORA_ERR_INTERNAL: i32 = -6;
/// A wait timed out.
pub const SORA_ERR_TIMEOUT: i32 = -7;

/// SoraLoggingSeverity values.
pub const SORA_LOG_VERBOSE: i32 = 0;
pub const SORA_LOG_INFO: i32 = 1;
pub const SORA_LOG_WARNING: i32 = 2;
pub const SORA_LOG_ERROR: i32 = 3;
pub const SORA_LOG_NONE: i32 = 4;

/// The message of the last error on the calling thread ("" if none). Never NULL; valid until
/// the next failing shim call on this thread. Thread-safe.
#[no_mangle]
pub extern "C" fn sora_last_error() -> *const c_char {
    last_error_ptr()
}

/// The shim's version string (static). Thread-safe.
#[no_mangle]
pub extern "C" fn sora_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// Frees a string the shim returned through a `char **` out parameter. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn sora_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

/// Sends native log records (SORA_EVENT_LOG) to `queue`; NULL detaches. The queue must stay
/// shared with the logger (destroying it afterwards is safe). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_log_set_queue(queue: *const SoraEventQueue) -> i32 {
    guard(|| {
        let q = queue.as_ref().map(|q| q.inner.clone());
        crate::log::set_queue(q);
        Ok(SORA_OK)
    })
}

/// Sets the native log level (SORA_LOG_*; NONE silences). Thread-safe.
#[no_mangle]
pub extern "C" fn sora_log_set_level(severity: i32) -> i32 {
    guard(|| {
        let f = crate::log::filter_of(severity).ok_or_else(|| Error::invalid(format!("invalid severity {severity}")))?;
        crate::log::set_level(f);
        Ok(SORA_OK)
    })
}

/// Writes `message` into the native log at `severity` (SORA_LOG_VERBOSE..ERROR). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_log_write(severity: i32, message: *const c_char) -> i32 {
    guard(|| {
        let m = arg_str(message, "message")?;
        let level = match severity {
            SORA_LOG_VERBOSE => log::Level::Trace,
            SORA_LOG_INFO => log::Level::Info,
            SORA_LOG_WARNING => log::Level::Warn,
            SORA_LOG_ERROR => log::Level::Error,
            _ => return Err(Error::invalid(format!("invalid severity {severity}"))),
        };
        crate::log::ensure_init();
        log::log!(target: "rtc_log", level, "{m}");
        Ok(SORA_OK)
    })
}
