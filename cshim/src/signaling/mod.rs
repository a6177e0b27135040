//! The Sora signaling client.
pub mod config;
pub mod sdp;
pub mod session;
pub mod transport;
pub mod zlib;
