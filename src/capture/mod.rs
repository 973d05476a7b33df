//! Capture: where transport-stream bytes come from. Opens the source named on the command line —
//! a file, standard input, an `http://` URL or an HDHomeRun tuner (`hdhr://HOST[:PORT]/GUIDE`) —
//! and moves its bytes into the ring buffer the chunker reads from ([`run`]), or hands a whole
//! file or stdin to a simple consumer ([`read_all`], for `ec-node chunks`).
//!
//! This is an I/O edge: it owns connections, reconnects, pacing and the capture's errors; it
//! knows nothing of the stream's format beyond reading PCRs to pace a file in real time. A source
//! never waits on a slow consumer: the ring overwrites its oldest bytes instead.

pub mod http;
mod live;
mod pace;
mod retry_policy;
pub mod ring;

use crate::hdhr::{self, GuideNumber};
use crate::stop::StopFlag;
use ring::Producer;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Bytes handed on per step.
const READ_SIZE: usize = 256 * 1024;

/// A transport-stream source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The clip embedded in the binary.
    Builtin,
    /// Standard input (`-`).
    Stdin,
    /// A file, memory-mapped.
    File(PathBuf),
    /// An `http://` URL streamed with GET.
    Http(String),
    /// An HDHomeRun channel: `http://HOST:PORT/auto/vGUIDE`.
    Hdhr {
        /// Device host name or address.
        host: String,
        /// Stream port (5004 unless given).
        port: u16,
        /// The channel.
        guide: GuideNumber,
    },
}

impl Source {
    /// Checks that a file input opens and is not a directory, so a command can refuse it
    /// before it announces anything; other inputs are checked when they are read.
    pub fn check(&self) -> Result<(), CaptureError> {
        match self {
            Source::File(path) => open_file(path).map(drop),
            _ => Ok(()),
        }
    }

    /// Parses `--input`: `-` is stdin, `http://…` a URL, `hdhr://HOST[:PORT]/GUIDE` a tuner,
    /// anything else a file path; absent is the built-in clip.
    pub fn parse(arg: Option<&str>) -> Result<Source, CaptureError> {
        let Some(arg) = arg else {
            return Ok(Source::Builtin);
        };
        if arg == "-" {
            return Ok(Source::Stdin);
        }
        if arg.starts_with("http://") {
            return Ok(Source::Http(arg.to_string()));
        }
        if arg.starts_with("https://") {
            return Err(CaptureError::BadSource(format!(
                "{arg}: only plain http:// sources are supported"
            )));
        }
        let Some(rest) = arg.strip_prefix("hdhr://") else {
            return Ok(Source::File(PathBuf::from(arg)));
        };
        let bad = |why: &str| {
            CaptureError::BadSource(format!(
                "{arg}: {why} (expected hdhr://HOST[:PORT]/GUIDE_NUMBER)"
            ))
        };
        let (authority, guide) = rest.split_once('/').ok_or_else(|| bad("no guide number"))?;
        let guide = GuideNumber::parse(guide).ok_or_else(|| bad("bad guide number"))?;
        let (host, port) = parse_authority(authority).map_err(bad)?;
        Ok(Source::Hdhr { host, port, guide })
    }

    /// A device named `hdhr://HOST[:PORT]` (no channel): its host and port (default
    /// [`hdhr::STREAM_PORT`]).
    pub fn parse_device(arg: &str) -> Result<(String, u16), CaptureError> {
        let bad = |why: &str| {
            CaptureError::BadSource(format!("{arg}: {why} (expected hdhr://HOST[:PORT])"))
        };
        let authority = arg
            .strip_prefix("hdhr://")
            .ok_or_else(|| bad("not an hdhr:// address"))?;
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        parse_authority(authority).map_err(bad)
    }

    /// Whether the source is live (unbounded unless a duration is given).
    pub fn is_live(&self) -> bool {
        matches!(self, Source::Stdin | Source::Http(_) | Source::Hdhr { .. })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => write!(f, "the built-in clip"),
            Source::Stdin => write!(f, "standard input"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Http(url) => write!(f, "{url}"),
            Source::Hdhr { host, port, guide } => write!(f, "hdhr://{host}:{port}/{guide}"),
        }
    }
}

/// `HOST[:PORT]` or `[V6]:PORT`, the port defaulting to [`hdhr::STREAM_PORT`].
fn parse_authority(authority: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().map_err(|_| "bad port")?,
            None if after.is_empty() => hdhr::STREAM_PORT,
            None => return Err("bad host"),
        };
        (format!("[{address}]"), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().map_err(|_| "bad port")?),
            None => (authority.to_string(), hdhr::STREAM_PORT),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    Ok((host, port))
}

/// How to capture.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Stop after this much stream (HDHomeRun: the `duration=` query; others: by PCR).
    pub duration: Option<Duration>,
    /// Pace a file or the built-in clip at its real-time rate (by PCR) instead of as fast as possible.
    pub realtime: bool,
    /// A live source that sends nothing for this long fails: before its first byte, the capture
    /// ends (no signal lock, exit 3); mid-stream, it is reconnected (a stall).
    pub first_byte_timeout: Duration,
    /// Connections in a row that streamed and broke within a short while (a flapping source)
    /// before giving up.
    pub max_reconnects: u32,
    /// Once the stream has started, how long it may deliver nothing — the tuner silent,
    /// refusing (805/807) or unreachable — while the capture retries with back-off, before
    /// giving up ([`CaptureError::Lost`]).
    pub signal_loss_timeout: Duration,
}

/// The default [`CaptureOptions::signal_loss_timeout`]: long enough to ride through a storm.
pub const SIGNAL_LOSS_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            duration: None,
            realtime: false,
            first_byte_timeout: Duration::from_secs(4),
            max_reconnects: 5,
            signal_loss_timeout: SIGNAL_LOSS_TIMEOUT,
        }
    }
}

/// How a capture ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureEnd {
    /// The source ended (end of file, end of a duration body, the duration reached).
    Finished,
    /// The stop flag was set.
    Stopped,
}

/// Why a capture failed, split by blame.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaptureError {
    /// The source argument is malformed (usage).
    BadSource(String),
    /// A file or stdin could not be opened (usage: a wrong path).
    Open(String, std::io::Error),
    /// A file or stdin failed while reading.
    Read(String, std::io::Error),
    /// The device or server answered with an error status (and HDHomeRun code, if sent).
    Refused {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// `X-HDHomeRun-Error` code and text, if present.
        device: Option<(u16, String)>,
    },
    /// No connection could be made.
    Unreachable(String, String),
    /// Connected, but not one byte came within the first-byte timeout (no signal lock).
    NoData(String, Duration),
    /// The live source dropped or stalled, and either kept flapping or delivered nothing for the
    /// signal-loss timeout while it was retried.
    Lost {
        /// The URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::BadSource(why) => write!(f, "bad input {why}"),
            CaptureError::Open(what, e) => write!(f, "cannot open {what}: {e}"),
            CaptureError::Read(what, e) => write!(f, "cannot read {what}: {e}"),
            CaptureError::Refused {
                url,
                status,
                device: Some((code, text)),
            } => {
                write!(
                    f,
                    "HDHomeRun error {code}: {text} (HTTP {status} from {url})"
                )
            }
            CaptureError::Refused {
                url,
                status,
                device: None,
            } => write!(f, "HTTP {status} from {url}"),
            CaptureError::Unreachable(url, why) => write!(f, "cannot connect to {url}: {why}"),
            CaptureError::NoData(url, after) => {
                write!(
                    f,
                    "no data from {url} within {} s (no signal lock?)",
                    after.as_secs()
                )
            }
            CaptureError::Lost {
                url,
                attempts,
                last,
            } => {
                write!(
                    f,
                    "lost {url}: {attempts} reconnect attempts failed, last: {last}"
                )
            }
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaptureError::Open(_, e) | CaptureError::Read(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Captures `source` into the ring until it ends, fails or `stop` is set. Runs on the capture
/// thread; dropping `producer` at the end tells the consumer the input is over.
pub fn run(
    source: &Source,
    options: &CaptureOptions,
    mut producer: Producer,
    stop: &StopFlag,
) -> Result<CaptureEnd, CaptureError> {
    match source {
        Source::Builtin => copy_slice(crate::clip::BUILTIN_TS, options, &mut producer, stop),
        Source::File(path) => {
            let map = map_file(path)?;
            copy_slice(map.as_deref().unwrap_or(&[]), options, &mut producer, stop)
        }
        Source::Stdin => live::pump_stdin(options, &mut producer, stop),
        Source::Http(url) => {
            live::capture_http(&|_| url.clone(), false, options, &mut producer, stop)
        }
        Source::Hdhr { host, port, guide } => {
            let url_for = |remaining| hdhr::auto_stream_url(host, *port, guide, remaining);
            live::capture_http(&url_for, true, options, &mut producer, stop)
        }
    }
}

/// A file or the built-in clip read in place, as fast as possible, by the consumer itself: no
/// capture thread and no ring, so the chunker reads the page cache without a copy.
pub struct InPlace {
    input: Arc<Mapped>,
    position: usize,
    pacer: pace::PcrPacer,
}

/// Input that stays where it is for as long as anyone holds it: a mapped file or the clip built
/// into the binary. Offset 0 is the first byte [`InPlace::next`] hands out.
pub enum Mapped {
    /// The built-in clip.
    Builtin,
    /// A mapped file (`None`: the file is empty).
    File(Option<memmap2::Mmap>),
}

impl Mapped {
    /// All of it.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Mapped::Builtin => crate::clip::BUILTIN_TS,
            Mapped::File(Some(map)) => map,
            Mapped::File(None) => &[],
        }
    }
}

impl InPlace {
    /// Opens `source` for reading in place if it is a file or the clip captured as fast as
    /// possible; `Ok(None)` for sources that need a capture thread (live or paced).
    pub fn open(
        source: &Source,
        options: &CaptureOptions,
    ) -> Result<Option<InPlace>, CaptureError> {
        let input = match source {
            _ if options.realtime => return Ok(None),
            Source::Builtin => Mapped::Builtin,
            Source::File(path) => Mapped::File(map_file(path)?),
            Source::Stdin | Source::Http(_) | Source::Hdhr { .. } => return Ok(None),
        };
        Ok(Some(InPlace {
            input: Arc::new(input),
            position: 0,
            pacer: pace::PcrPacer::new(false, options.duration),
        }))
    }

    /// The next piece of at most `max` bytes, or `None` at the end (or once the duration of
    /// stream is reached).
    pub fn next(&mut self, max: usize, stop: &StopFlag) -> Option<&[u8]> {
        let all = self.input.bytes();
        let piece = &all[self.position.min(all.len())..(self.position + max).min(all.len())];
        if piece.is_empty() || self.pacer.after(piece, stop).is_break() {
            self.position = all.len();
            return (!piece.is_empty()).then_some(piece);
        }
        self.position += piece.len();
        Some(piece)
    }

    /// What it reads, for resolving the [`Spans`](crate::chunk::Spans) of chunks cut from it.
    pub fn input(&self) -> Arc<Mapped> {
        Arc::clone(&self.input)
    }
}

/// Copies a mapped file or the clip into the ring, paced by PCR when `options.realtime`.
fn copy_slice(
    bytes: &[u8],
    options: &CaptureOptions,
    producer: &mut Producer,
    stop: &StopFlag,
) -> Result<CaptureEnd, CaptureError> {
    let mut pacer = pace::PcrPacer::new(options.realtime, options.duration);
    let mut rest = bytes;
    while !rest.is_empty() {
        if stop.is_set() {
            return Ok(CaptureEnd::Stopped);
        }
        let n = producer
            .fill(READ_SIZE, |span| {
                let n = span.len().min(rest.len());
                span[..n].copy_from_slice(&rest[..n]);
                Ok(n)
            })
            .map_err(|e| CaptureError::Read("input".into(), e))?;
        if pacer.after(&rest[..n], stop).is_break() {
            break;
        }
        rest = &rest[n..];
    }
    Ok(if stop.is_set() {
        CaptureEnd::Stopped
    } else {
        CaptureEnd::Finished
    })
}

/// Opens the file at `path`, refusing a directory; returns it with its length.
fn open_file(path: &PathBuf) -> Result<(std::fs::File, u64), CaptureError> {
    let name = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| CaptureError::Open(name(), e))?;
    let metadata = file.metadata().map_err(|e| CaptureError::Open(name(), e))?;
    if metadata.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "is a directory");
        return Err(CaptureError::Open(name(), e));
    }
    Ok((file, metadata.len()))
}

fn map_file(path: &PathBuf) -> Result<Option<memmap2::Mmap>, CaptureError> {
    let name = path.display().to_string();
    let (file, len) = open_file(path)?;
    if len == 0 {
        return Ok(None); // mapping an empty file fails; there is nothing to read anyway
    }
    // SAFETY: the mapping is read-only and lives only while it is read (and, for `record`, while
    // segments are written from it). A file truncated by another process while mapped can raise
    // SIGBUS; recordings are not rewritten in place, and this is the documented trade-off for
    // reading without copying.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::MmapOptions::new().map(&file) }
        .map_err(|e| CaptureError::Open(name, e))?;
    Ok(Some(map))
}

/// Feeds a whole file, stdin or the clip to `consume`, one read at a time, until it ends or
/// `consume` breaks (no ring, no pacing: for one-shot tools such as `ec-node chunks`).
pub fn read_all(
    source: &Source,
    mut consume: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> Result<(), CaptureError> {
    let feed = |bytes: &[u8], consume: &mut dyn FnMut(&[u8]) -> ControlFlow<()>| {
        let _ = bytes.chunks(READ_SIZE).try_for_each(consume);
    };
    match source {
        Source::Builtin => feed(crate::clip::BUILTIN_TS, &mut consume),
        Source::File(path) => feed(map_file(path)?.as_deref().unwrap_or(&[]), &mut consume),
        Source::Stdin => {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(CaptureError::Read("standard input".into(), e)),
                };
                if consume(&buf[..n]).is_break() {
                    break;
                }
            }
        }
        Source::Http(_) | Source::Hdhr { .. } => {
            return Err(CaptureError::BadSource(format!(
                "{source}: this command reads files and stdin only"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(Source::parse(None).unwrap(), Source::Builtin);
        assert_eq!(Source::parse(Some("-")).unwrap(), Source::Stdin);
        assert_eq!(
            Source::parse(Some("a.ts")).unwrap(),
            Source::File("a.ts".into())
        );
        assert_eq!(
            Source::parse(Some("http://x/y")).unwrap(),
            Source::Http("http://x/y".into())
        );
        let hdhr = Source::parse(Some("hdhr://10.0.0.9/5.1")).unwrap();
        assert_eq!(
            hdhr,
            Source::Hdhr {
                host: "10.0.0.9".into(),
                port: 5004,
                guide: GuideNumber::parse("5.1").unwrap()
            }
        );
        let with_port = Source::parse(Some("hdhr://tuner.lan:8080/7")).unwrap();
        assert!(matches!(with_port, Source::Hdhr { port: 8080, .. }));
        assert!(matches!(
            Source::parse(Some("hdhr://[::1]:99/5.1")).unwrap(),
            Source::Hdhr { port: 99, .. }
        ));
        assert!(matches!(
            Source::parse(Some("hdhr://[::1]/5.1")).unwrap(),
            Source::Hdhr { port: 5004, .. }
        ));
        for bad in [
            "hdhr://host",
            "hdhr://host/x.y",
            "hdhr://:5004/5.1",
            "hdhr://h:port/5.1",
            "https://x",
        ] {
            assert!(Source::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
