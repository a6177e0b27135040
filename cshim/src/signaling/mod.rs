//! The Sora signaling client.
pub mod config;
pub mod sdp;
pub mod session;
pub mod stats;
pub mod tls;
pub mod transport;
pub mod zlib;
