//! sora_shim: Sora signaling and WebRTC (libdatachannel) behind a flat C ABI.
//! See docs/c-abi.md for the contract and docs/design.md for why it is shaped this way.
pub mod audio_stream;
pub mod connection;
pub mod error;
pub mod events;
pub mod ffi;
pub mod forward;
#[doc(hidden)]
pub mod fuzz;
pub mod heap;
pub mod ice_scope;
pub mod log;
pub mod media;
pub mod peer;
pub mod rtc;
pub mod signaling;
