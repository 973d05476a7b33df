//! `ec-node`, the every.channel node: it captures a live MPEG-TS broadcast, cuts it into
//! deterministic chunks, encrypts them per stream and serves them over MoQ.
//!
//! The library is split by concern. Format and protocol logic (`ts`, `chunk`) are owners fed bytes
//! and time that hand back events and chunks; they never open files or sockets, spawn threads or read
//! the clock. I/O lives at the edges. The command line is the binary's own (`src/cli`, declared by
//! `main.rs`), so no module of the library can depend on it.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod capture;
pub mod chunk;
pub mod clip;
pub mod crypto;
pub mod hdhr;
pub mod hls;
pub mod http;
pub mod manifest;
pub mod moq;
pub mod net;
pub mod node;
pub mod retry;
pub mod stop;
pub mod time;
pub mod ts;
