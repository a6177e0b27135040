//! Video codec engines: capability and preference checks (media::codec::engine).
use super::{arg_str, guard, opt_str, out_string};
use crate::error::Error;
use crate::media::codec::engine::{capability, capability_json, PreferredCodec, Preference};
use std::ffi::c_char;

/// The video codec engines of this build on this machine, as the official
/// `SoraVideoCodecCapability.to_json()` JSON. `openh264` (may be NULL) is the path of an
/// OpenH264 library to consider. Free `*out_json` with `sora_string_free`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_video_codec_capability(openh264: *const c_char, out_json: *mut *mut c_char) -> i32 {
    guard(|| {
        let path = opt_str(openh264, "openh264")?;
        out_string(capability_json(&capability(path)).to_string(), out_json)
    })
}

/// Checks a video codec preference (a JSON array of `{"type", "encoder", "decoder"}` in the
/// official `SoraVideoCodecPreference.to_json()["codecs"]` shape) against the engines of
/// this machine: SORA_OK, or SORA_ERR_INVALID_ARGUMENT with the reason in
/// `sora_last_error()`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn sora_video_codec_preference_check(codecs_json: *const c_char, openh264: *const c_char) -> i32 {
    guard(|| {
        let codecs: Vec<PreferredCodec> = serde_json::from_str(arg_str(codecs_json, "codecs_json")?)
            .map_err(|e| Error::invalid(format!("invalid video codec preference: {e}")))?;
        Preference::new(&codecs, &capability(opt_str(openh264, "openh264")?)).map_err(Error::invalid)?;
        Ok(0)
    })
}
