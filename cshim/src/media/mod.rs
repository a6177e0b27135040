//! Media: codecs (`codec`) and the RTP/RTCP stack (`rtp`) are plain, thread-free building
//! blocks; `send` and `recv` are the per-track pipelines that drive them between `source`s
//! (what the application pushes) and `sink`s (what it receives); they run as tasks on the
//! shared media runtime (`exec`), except video encoding (a thread per video sender).
pub mod adapt;
pub mod cc;
pub mod codec;
pub mod encoded;
pub mod exec;
pub mod recv;
pub mod rtp;
pub mod send;
pub mod simulcast;
pub mod sink;
pub mod source;
pub mod transform;
