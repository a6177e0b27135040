//! The C ABI: the only place with `extern "C"`. Every export runs inside `guard`, so errors
//! become status codes plus `sora_last_error()`, and a panic never unwinds into C.
pub mod audio_stream;
pub mod codec;
pub mod common;
pub mod connection;
pub mod events;
pub mod media;
pub mod peer;
pub mod transform;

use crate::error::{set_last_error, Error, Result};
use std::ffi::{c_char, CStr};

pub(crate) fn guard(f: impl FnOnce() -> Result<i32>) -> i32 {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.kind as i32
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            set_last_error(&format!("internal error (panic): {what}"));
            crate::error::Kind::Internal as i32
        }
    }
}

/// Borrows a required C string argument.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::invalid(format!("{name} must not be NULL")));
    }
    CStr::from_ptr(p).to_str().map_err(|_| Error::invalid(format!("{name} is not valid UTF-8")))
}

pub(crate) unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if p.is_null() { Ok(None) } else { arg_str(p, name).map(Some) }
}

pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    p.as_ref().ok_or_else(|| Error::invalid(format!("{name} must not be NULL")))
}

pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::invalid("data must not be NULL when len > 0"));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// The caller's room for `frames` frames of `channels` interleaved int16 samples: not NULL,
/// at least one frame (else the error `empty`), and a size that fits the address space
/// (else `too_large`).
pub(crate) unsafe fn arg_pcm_out<'a>(p: *mut i16, frames: usize, channels: usize, empty: &str, too_large: &str) -> Result<&'a mut [i16]> {
    if p.is_null() || frames == 0 {
        return Err(Error::invalid(empty));
    }
    let samples = frames.checked_mul(channels).filter(|n| *n <= isize::MAX as usize / 2);
    Ok(std::slice::from_raw_parts_mut(p, samples.ok_or_else(|| Error::invalid(too_large))?))
}

/// Hands a string to C; freed with `sora_string_free`.
pub(crate) fn out_string(s: String, out: *mut *mut c_char) -> Result<i32> {
    if out.is_null() {
        return Err(Error::invalid("out pointer must not be NULL"));
    }
    let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    unsafe { *out = c.into_raw() };
    Ok(0)
}

/// Writes a plain value to a caller's out-pointer.
pub(crate) fn out_value<T>(v: T, out: *mut T) -> Result<i32> {
    if out.is_null() {
        return Err(Error::invalid("out pointer must not be NULL"));
    }
    unsafe { *out = v };
    Ok(0)
}

pub(crate) fn out_ptr<T>(v: T, out: *mut *mut T) -> Result<i32> {
    if out.is_null() {
        return Err(Error::invalid("out pointer must not be NULL"));
    }
    unsafe { *out = Box::into_raw(Box::new(v)) };
    Ok(0)
}
