//! Writes segments and the playlist into a folder, each file atomically (temporary file, then
//! rename; no fsync per segment), so a player never sees a partial file and the playlist names
//! only complete segments, also after a `kill -9`. Segments that slide out of a live window are
//! deleted only after the playlist that no longer lists them is in place.

use super::playlist::{Playlist, PlaylistKind, SegmentEntry};
use super::HlsError;
use crate::chunk::ChunkIndex;
use std::collections::VecDeque;
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The playlist's file name in the output folder.
pub const PLAYLIST_NAME: &str = "index.m3u8";
/// Segments kept on disk after they leave a live window, for players still fetching them.
const KEEP_AFTER_WINDOW: usize = 3;
/// The playlist is rewritten at most this often while segments arrive faster than that (a file
/// recorded as fast as possible); live segments come every few seconds and each gets a rewrite.
const PLAYLIST_INTERVAL: Duration = Duration::from_millis(250);

/// An HLS output folder being written.
pub struct HlsWriter {
    dir: PathBuf,
    playlist: Playlist,
    retired: VecDeque<SegmentEntry>,
    written: u64,
    playlist_written: Option<Instant>,
}

impl HlsWriter {
    /// Creates `dir` if needed (an existing empty folder is fine; one with files is refused, so
    /// two runs never mix their segments).
    pub fn create(
        dir: &Path,
        kind: PlaylistKind,
        target_duration: u64,
    ) -> Result<HlsWriter, HlsError> {
        std::fs::create_dir_all(dir).map_err(|e| HlsError::io(dir, e))?;
        let mut entries = std::fs::read_dir(dir).map_err(|e| HlsError::io(dir, e))?;
        if entries.next().is_some() {
            return Err(HlsError::NotEmpty(dir.to_path_buf()));
        }
        Ok(HlsWriter {
            dir: dir.to_path_buf(),
            playlist: Playlist::new(kind, target_duration),
            retired: VecDeque::new(),
            written: 0,
            playlist_written: None,
        })
    }

    /// Goes on with the EVENT playlist an earlier run left in `dir` (its segments stay listed,
    /// its ENDLIST is dropped, leftover temporary files are removed); a missing or empty folder
    /// starts afresh. Refused when the playlist is not one this node wrote, or names a segment
    /// that is not there.
    pub fn resume(dir: &Path, target_duration: u64) -> Result<HlsWriter, HlsError> {
        let path = dir.join(PLAYLIST_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return HlsWriter::create(dir, PlaylistKind::Event, target_duration).map_err(|e| {
                    match e {
                        HlsError::NotEmpty(dir) => {
                            HlsError::NotResumable(dir, format!("it holds no {PLAYLIST_NAME}"))
                        }
                        e => e,
                    }
                });
            }
            Err(e) => return Err(HlsError::io(&path, e)),
        };
        let playlist = Playlist::parse(&text)
            .map_err(|e| HlsError::NotResumable(path.clone(), e.to_string()))?;
        if let Some(missing) = playlist
            .segments()
            .find(|s| !dir.join(s.file_name()).is_file())
        {
            return Err(HlsError::NotResumable(
                path,
                format!("{} is listed but missing", missing.file_name()),
            ));
        }
        for entry in std::fs::read_dir(dir)
            .map_err(|e| HlsError::io(dir, e))?
            .flatten()
        {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let written = playlist.segments().count() as u64;
        Ok(HlsWriter {
            dir: dir.to_path_buf(),
            playlist,
            retired: VecDeque::new(),
            written,
            playlist_written: None,
        })
    }

    /// The newest segment in the playlist (after [`HlsWriter::resume`], the earlier run's).
    pub fn last_index(&self) -> Option<ChunkIndex> {
        self.playlist.last().map(|e| e.index)
    }

    /// Segments written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes a segment, given as its bytes in order (one slice, or the pieces of an input read
    /// in place, handed to the kernel in one gathered write), then the playlist listing it (not
    /// more often than every `PLAYLIST_INTERVAL`; [`HlsWriter::finish`] writes the last one).
    pub fn write(&mut self, entry: &SegmentEntry, parts: &[&[u8]]) -> Result<(), HlsError> {
        write_atomically(&self.dir.join(entry.file_name()), parts)?;
        self.retired.extend(self.playlist.push(entry.clone()));
        self.written += 1;
        if self
            .playlist_written
            .is_none_or(|at| at.elapsed() >= PLAYLIST_INTERVAL)
        {
            self.write_playlist()?;
        }
        Ok(())
    }

    /// Finishes the playlist with `EXT-X-ENDLIST`.
    pub fn finish(mut self) -> Result<(), HlsError> {
        self.playlist.end();
        self.write_playlist()
    }

    /// Rewrites the playlist, then deletes the retired segments it no longer needs kept.
    fn write_playlist(&mut self) -> Result<(), HlsError> {
        write_atomically(
            &self.dir.join(PLAYLIST_NAME),
            &[self.playlist.render().as_bytes()],
        )?;
        self.playlist_written = Some(Instant::now());
        while self.retired.len() > KEEP_AFTER_WINDOW {
            if let Some(old) = self.retired.pop_front() {
                let path = self.dir.join(old.file_name());
                if let Err(e) = std::fs::remove_file(&path) {
                    log::warn!("cannot remove old segment {}: {e}", path.display());
                }
            }
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, parts: &[&[u8]]) -> Result<(), HlsError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| HlsError::io(&tmp, e))?;
    write_all_gathered(&mut file, parts).map_err(|e| HlsError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| HlsError::io(path, e))
}

/// Writes every part, as few `writev` calls as the kernel allows.
fn write_all_gathered(file: &mut std::fs::File, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|part| IoSlice::new(part)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
