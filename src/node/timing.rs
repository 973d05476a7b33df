//! Per-chunk timing marks for latency measurement (`ec-node bench mesh`).
//!
//! Each pipeline stage marks the moment a chunk leaves it as one debug line on the
//! [`TARGET`] log target: `STAGE INDEX UNIX_MICROS`. The benchmark runs a publisher and a
//! subscriber on one host (one clock) with that target enabled and pairs the lines by index.
//! Marks cost nothing unless the target is enabled; this module never decides anything.

use crate::chunk::ChunkIndex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The log target of the marks.
pub const TARGET: &str = "ec_node::timing";

/// Where a chunk is in the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Publisher: the chunker emitted the chunk (its last input byte was just read).
    Cut,
    /// Publisher: the chunk is encrypted (and, on a leader, its manifest signed).
    Sealed,
    /// Publisher: the object is handed to the sessions.
    Sent,
    /// Subscriber: the object arrived from a session.
    Received,
    /// Subscriber: the object is verified and decrypted.
    Verified,
    /// Subscriber: the segment is renamed into place.
    Written,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 6] = [
        Stage::Cut,
        Stage::Sealed,
        Stage::Sent,
        Stage::Received,
        Stage::Verified,
        Stage::Written,
    ];

    /// The stage's word in a mark line.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Cut => "cut",
            Stage::Sealed => "sealed",
            Stage::Sent => "sent",
            Stage::Received => "received",
            Stage::Verified => "verified",
            Stage::Written => "written",
        }
    }
}

/// Marks that chunk `index` passed `stage` now.
pub fn mark(stage: Stage, index: ChunkIndex) {
    if log::log_enabled!(target: TARGET, log::Level::Debug) {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        log::debug!(target: TARGET, "{} {} {micros}", stage.name(), index.0);
    }
}
