//! Serving the files of a folder as one MoQ track (`moq-serve`): files sorted by name become
//! groups 0..N-1, played per session by the outlet's [`TrackServer::playout`].
//!
//! This module reads the folder and keeps the outlet running until a stop or the relay
//! leaving; scheduling and serving are the track server's.
//!
//! [`TrackServer::playout`]: super::tracks::TrackServer::playout

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::tracks::{wait_any, Outlet, ServeError};
use crate::stop::StopFlag;

/// Longest one wait, so a stop request is seen.
const TICK: Duration = Duration::from_millis(200);

/// Why a folder cannot be served.
#[derive(Debug)]
pub enum FolderError {
    /// The folder or one of its files cannot be read.
    Unreadable(PathBuf, std::io::Error),
    /// The folder holds no file.
    Empty(PathBuf),
}

impl std::fmt::Display for FolderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FolderError::Unreadable(path, e) => write!(f, "{}: {e}", path.display()),
            FolderError::Empty(path) => write!(f, "{}: no files to publish", path.display()),
        }
    }
}

impl std::error::Error for FolderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FolderError::Unreadable(_, e) => Some(e),
            FolderError::Empty(_) => None,
        }
    }
}

/// The files of `dir` sorted by name: the groups 0..N-1 of the track.
pub fn read_groups(dir: &Path) -> Result<Vec<Arc<[u8]>>, FolderError> {
    let unreadable = |e| FolderError::Unreadable(dir.to_path_buf(), e);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(FolderError::Empty(dir.to_path_buf()));
    }
    paths
        .iter()
        .map(|p| std::fs::read(p).map(Arc::from).map_err(unreadable))
        .collect()
}

/// Serves from `outlet` until `stop`; a relay outlet's session ending is an error.
pub fn serve(outlet: &mut Outlet, stop: &StopFlag) -> Result<(), ServeError> {
    let outlets = std::slice::from_mut(outlet);
    while !stop.is_set() {
        outlets[0].poll()?;
        wait_any::<()>(&[], outlets, None, TICK);
    }
    Ok(())
}
