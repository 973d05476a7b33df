//! HLS output (RFC 8216): the media playlist as data ([`playlist`]) and the folder writer that
//! puts segments and playlist on disk atomically ([`writer`]).
//!
//! Segments are chunks exactly as the chunker made them (each opens with PAT and PMT), named
//! `segment_%06d.ts` by chunk index. `EXT-X-TARGETDURATION` is fixed for the life of a playlist
//! from the longest chunk the chunker can emit ([`target_duration`]). Nothing here parses media.

pub mod playlist;
pub mod writer;

use crate::chunk::ChunkerConfig;
use crate::time::UnixMillis;
use crate::ts::clock::TICKS_PER_MS;
use std::path::{Path, PathBuf};

/// The `EXT-X-TARGETDURATION` for a chunk grid: a chunk lasts at most 3·D plus one frame, which
/// rounds to no more than `ceil(3·D)` seconds.
pub fn target_duration(config: &ChunkerConfig) -> u64 {
    (3 * u64::from(config.chunk_ms)).div_ceil(1000)
}

/// Assigns `EXT-X-PROGRAM-DATE-TIME`: continuous along the stream (each segment starts where the
/// previous one ended), re-based on the wall clock at a discontinuity. A chunk is finished when the
/// next one starts, so a chunk received at `t` began `duration` earlier.
#[derive(Debug, Default)]
pub struct ProgramClock {
    previous: Option<(UnixMillis, u64)>,
}

impl ProgramClock {
    /// The date-time of the next segment, of `duration` 90 kHz ticks, received at `received`.
    pub fn next(&mut self, duration: u64, discontinuity: bool, received: UnixMillis) -> UnixMillis {
        let date_time = match self.previous {
            Some((start, length)) if !discontinuity => UnixMillis(start.0 + length / TICKS_PER_MS),
            _ => UnixMillis(received.0.saturating_sub(duration / TICKS_PER_MS)),
        };
        self.previous = Some((date_time, duration));
        date_time
    }
}

/// Why HLS output failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HlsError {
    /// The output folder already holds files (a usage error).
    NotEmpty(PathBuf),
    /// The folder cannot be resumed (the path, why; a usage error).
    NotResumable(PathBuf, String),
    /// A file could not be written, renamed or listed.
    Io(PathBuf, std::io::Error),
}

impl HlsError {
    fn io(path: &Path, error: std::io::Error) -> HlsError {
        HlsError::Io(path.to_path_buf(), error)
    }
}

impl std::fmt::Display for HlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HlsError::NotEmpty(dir) => write!(f, "output folder {} is not empty", dir.display()),
            HlsError::NotResumable(path, why) => {
                write!(f, "cannot resume {}: {why}", path.display())
            }
            HlsError::Io(path, e) => write!(f, "cannot write {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for HlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HlsError::Io(_, e) => Some(e),
            HlsError::NotEmpty(_) | HlsError::NotResumable(..) => None,
        }
    }
}
