//! Capture: where transport-stream bytes come from. Opens the source named on the command line
//! and hands its bytes to a consumer in reads, without copying a mapped file.
//!
//! This is an I/O edge: it reads files and stdin and owns nothing of the stream's format.

pub mod ring;

use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Bytes handed to the consumer per step.
const READ_SIZE: usize = 1 << 20;

/// A transport-stream source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The clip embedded in the binary.
    Builtin,
    /// Standard input (`-`).
    Stdin,
    /// A file, memory-mapped.
    File(PathBuf),
}

impl Source {
    /// Parses `--input`: `-` is stdin, anything else a file path; absent is the built-in clip.
    pub fn from_arg(arg: Option<&str>) -> Source {
        match arg {
            None => Source::Builtin,
            Some("-") => Source::Stdin,
            Some(path) => Source::File(PathBuf::from(path)),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => write!(f, "the built-in clip"),
            Source::Stdin => write!(f, "standard input"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a source could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaptureError {
    /// The source could not be opened (missing file, no permission...).
    Open(String, std::io::Error),
    /// Reading failed part-way.
    Read(String, std::io::Error),
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::Open(what, e) => write!(f, "cannot open {what}: {e}"),
            CaptureError::Read(what, e) => write!(f, "cannot read {what}: {e}"),
        }
    }
}

impl std::error::Error for CaptureError {}

/// Feeds the whole source to `consume`, one read at a time, until it ends or `consume` breaks.
pub fn read_all(
    source: &Source,
    mut consume: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    match source {
        Source::Builtin => feed_slice(crate::clip::BUILTIN_TS, &mut consume),
        Source::File(path) => {
            let name = path.display().to_string();
            let file =
                std::fs::File::open(path).map_err(|e| CaptureError::Open(name.clone(), e))?;
            let len = file
                .metadata()
                .map_err(|e| CaptureError::Open(name.clone(), e))?
                .len();
            if len == 0 {
                return Ok(()); // mapping an empty file fails; there is nothing to read anyway
            }
            // SAFETY: the mapping is read-only and lives only for this call. A file truncated
            // by another process while mapped can raise SIGBUS; recordings are not rewritten
            // in place, and this is the documented trade-off for reading without copying.
            #[allow(unsafe_code)]
            let map =
                unsafe { memmap2::Mmap::map(&file) }.map_err(|e| CaptureError::Open(name, e))?;
            feed_slice(&map, &mut consume)
        }
        Source::Stdin => {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CaptureError::Read("standard input".into(), e)),
                };
                if consume(&buf[..n]).is_break() {
                    return Ok(());
                }
            }
        }
    }
}

fn feed_slice(
    bytes: &[u8],
    consume: &mut impl FnMut(&[u8]) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    for part in bytes.chunks(READ_SIZE) {
        if consume(part).is_break() {
            break;
        }
    }
    Ok(())
}
