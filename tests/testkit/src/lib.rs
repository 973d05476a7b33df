//! The test infrastructure of ec-node, once, for the integration tests (`tests/*.rs`, through a
//! dev-dependency) and the development harnesses: everything a test needs to run the real
//! `ec-node` binary and its peers and to judge what they did. Nothing here is shipped: the
//! `ec-node` binary never links this crate.
//!
//! - [`process`]: child processes killed on drop, ready lines read under a timeout, bounded
//!   waits, fresh work folders.
//! - [`procfs`]: CPU time, memory, open files and threads of a process, from `/proc`.
//! - [`stats`]: nearest-rank percentiles of measured figures.
//! - [`sim`]: the tuner simulator as a process, and HTTP clients that watch streams.
//! - [`nodes`], [`moq`]: MoQ nodes and third-party peers as processes.
//! - [`hls`]: HLS output checked as a player and RFC 8216 would.
//! - [`media`]: test media made with ffmpeg, and helpers to chunk and damage streams.
//! - [`mutate`]: deterministic mutations of valid encodings, for the decoders' tests.
//! - [`impair`]: the seeded UDP impairment proxy (loss, delay, jitter, caps, blackouts).
//! - [`rng`]: the seeded random generator both of those draw from.
//!
//! Every wait is bounded, generously: a test may bound how long it waits for an outcome, never
//! how fast the outcome comes (timing promises are unit tests with virtual time).

pub mod hls;
pub mod impair;
pub mod media;
pub mod moq;
pub mod mutate;
pub mod nodes;
pub mod process;
pub mod procfs;
pub mod rng;
pub mod sim;
pub mod stats;
