//! MoQ Transport (draft-ietf-moq-transport-16), written here as a sans-I/O protocol core.
//!
//! This module owns the wire codec (`wire`), the per-connection session state machines
//! (`session`), the bounded per-track group cache (`cache`) and the broadcast track layout
//! (`track`). It never opens sockets, spawns threads or reads the clock: the endpoint feeds it
//! stream bytes with an `Instant` and drains events and writes from it.
//!
//! The drive loop an endpoint runs is documented on [`session::Session`].

pub mod cache;
pub mod error;
pub mod session;
pub mod track;
pub mod types;
pub mod wire;

pub use error::{MoqError, SessionCode};
pub use types::*;
