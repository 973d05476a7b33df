//! Ingest: capture → chunk, the first two stages of every pipeline that starts from a broadcast.
//!
//! ```text
//!  capture thread ──(mmap'd ring, in place)──► chunk thread ──(bounded channel)──► Ingest::chunks
//!                                                   ▲                                    │
//!                                                   └──── spent chunk buffers ◄──────────┘
//! ```
//!
//! The capture thread never waits for the others: the ring overwrites its oldest bytes and
//! reports the gap. A live source's outage (a silent, refusing or unreachable tuner, ridden
//! through by the capture) is reported the same way, once per outage: the chunker drops the
//! chunk it was building and flags the next one as a discontinuity, whose index the broadcast's
//! own clock gives, as on a node that saw no gap ([`IngestReport::gaps`] counts them). A file or the clip read as fast as possible skips the capture thread and the
//! ring: the chunk thread reads its mapping in place, and [`Ingest::start_in_place`] hands out
//! chunks as [`Spans`] of that mapping instead of copies. Buffers the consumer is done with go
//! back to the chunker ([`Ingest::recycle`]), so steady state allocates nothing.

use super::timing::{self, Stage};
use crate::capture::ring::{self, Consumer, Next};
use crate::capture::{self, CaptureEnd, CaptureError, CaptureOptions, InPlace, Mapped, Source};
use crate::chunk::{Body, Chunk, Chunker, ChunkerConfig, ChunkerStats, Spans};
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Ring buffer size: about 3.5 s of a 19.39 Mb/s broadcast, the chunk thread's slack before
/// the oldest bytes are overwritten (it needs milliseconds per chunk); kept small because every
/// page of it stays resident on a small box.
const RING_BYTES: usize = 8 << 20;
/// Bytes the chunker takes from its input at a time.
const LEASE_BYTES: usize = 1 << 20;
/// Chunks in flight between the chunk thread and the consumer.
const CHUNK_QUEUE: usize = 4;

/// Why ingest could not start.
#[derive(Debug)]
pub enum IngestError {
    /// The source could not be opened.
    Capture(CaptureError),
    /// The ring could not be mapped or a thread not started.
    Start(std::io::Error),
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Capture(e) => e.fmt(f),
            IngestError::Start(e) => write!(f, "cannot start the capture pipeline: {e}"),
        }
    }
}

impl std::error::Error for IngestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IngestError::Capture(e) => Some(e),
            IngestError::Start(e) => Some(e),
        }
    }
}

/// How ingest ended.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// How the capture ended (`None` if it had not reported when the run stopped).
    pub capture: Option<Result<CaptureEnd, CaptureError>>,
    /// Chunker counters.
    pub chunker: ChunkerStats,
    /// Bytes dropped because the chunker fell behind the capture.
    pub overrun_bytes: u64,
    /// Gaps in the input the chunker was told of: a live source's outages (each ended by a
    /// reconnect) and ring overruns. The chunk after each carries the discontinuity flag.
    pub gaps: u64,
}

/// How the capture thread ended.
type CaptureOutcome = Result<CaptureEnd, CaptureError>;

/// Ingest of an input read in place, and that input, which its chunks are spans of.
pub type InPlaceIngest = (Ingest<Spans>, Arc<Mapped>);

/// Running capture and chunk threads, handing out chunks whose bytes are held as `B`.
pub struct Ingest<B = Vec<u8>> {
    chunks: Receiver<(Chunk<B>, UnixMillis)>,
    spent: Sender<B>,
    capture: Receiver<CaptureOutcome>,
    capture_thread: Option<JoinHandle<()>>,
    chunk_thread: JoinHandle<FeedEnd>,
}

impl Ingest {
    /// Opens `source` and starts the threads; they run until the source ends or `stop` is set.
    pub fn start(
        source: &Source,
        options: &CaptureOptions,
        chunker: ChunkerConfig,
        stop: &StopFlag,
    ) -> Result<Ingest, IngestError> {
        let in_place = InPlace::open(source, options).map_err(IngestError::Capture)?;
        if let Some(reader) = in_place {
            return Ingest::spawn(reader, Chunker::new(chunker), None, stop);
        }
        let (producer, consumer) = ring::ring(RING_BYTES).map_err(IngestError::Start)?;
        let (capture_tx, capture) = bounded(1);
        let (source, options, stop_capture) = (source.clone(), options.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || {
                let _ = capture_tx.send(capture::run(&source, &options, producer, &stop_capture));
            })
            .map_err(IngestError::Start)?;
        Ingest::spawn(
            consumer,
            Chunker::new(chunker),
            Some((capture, thread)),
            stop,
        )
    }
}

impl Ingest<Spans> {
    /// For a file or the built-in clip read as fast as possible (`Ok(None)` for any other
    /// source): chunks name where their packets lie in the returned input instead of holding a
    /// copy, so a writer hands the kernel the input's own pages.
    pub fn start_in_place(
        source: &Source,
        options: &CaptureOptions,
        chunker: ChunkerConfig,
        stop: &StopFlag,
    ) -> Result<Option<InPlaceIngest>, IngestError> {
        let Some(reader) = InPlace::open(source, options).map_err(IngestError::Capture)? else {
            return Ok(None);
        };
        let input = reader.input();
        let ingest = Ingest::spawn(reader, Chunker::in_place(chunker), None, stop)?;
        Ok(Some((ingest, input)))
    }
}

impl<B: Body> Ingest<B> {
    /// Starts the chunk thread on `feed`; `capture` is the capture thread feeding it, if any.
    fn spawn(
        feed: impl Feed<B>,
        chunker: Chunker<B>,
        capture: Option<(Receiver<CaptureOutcome>, JoinHandle<()>)>,
        stop: &StopFlag,
    ) -> Result<Ingest<B>, IngestError> {
        let (capture, capture_thread) = match capture {
            Some((ended, thread)) => (ended, Some(thread)),
            None => {
                // Read in place: the chunk thread is the capture, and it cannot fail.
                let (ended_tx, ended) = bounded(1);
                let _ = ended_tx.send(Ok(CaptureEnd::Finished));
                (ended, None)
            }
        };
        let (chunk_tx, chunks) = bounded(CHUNK_QUEUE);
        let (spent, spent_rx) = bounded(CHUNK_QUEUE);
        let stop = stop.clone();
        let chunk_thread = std::thread::Builder::new()
            .name("chunk".into())
            .spawn(move || chunk_stage(feed, chunker, (chunk_tx, spent_rx), &stop))
            .map_err(IngestError::Start)?;
        Ok(Ingest {
            chunks,
            spent,
            capture,
            capture_thread,
            chunk_thread,
        })
    }

    /// Finished chunks, each with the wall time it came out; disconnected when ingest ends.
    pub fn chunks(&self) -> &Receiver<(Chunk<B>, UnixMillis)> {
        &self.chunks
    }

    /// Hands a chunk's bytes back for reuse (dropped if the chunker has enough).
    pub fn recycle(&self, bytes: B) {
        let _ = self.spent.try_send(bytes);
    }

    /// Stops consuming and collects how ingest ended. The caller sets the stop flag first if it
    /// ends the run; a capture blocked in a read is not waited for.
    pub fn finish(self) -> IngestReport {
        drop(self.chunks);
        let FeedEnd {
            chunker,
            overrun_bytes,
            gaps,
        } = self.chunk_thread.join().unwrap_or_default();
        // A capture blocked in a read notices the stop within its read timeout; wait for it only
        // if it already reported.
        let capture = self.capture.recv_timeout(Duration::from_millis(200)).ok();
        if let (Some(_), Some(thread)) = (&capture, self.capture_thread) {
            let _ = thread.join();
        }
        IngestReport {
            capture,
            chunker,
            overrun_bytes,
            gaps,
        }
    }
}

/// Where the chunk thread reads from.
trait Feed<B: Body>: Send + 'static {
    /// Pushes the next input (or a gap) into `chunker`.
    fn step(&mut self, chunker: &mut Chunker<B>, stop: &StopFlag) -> Step;

    /// Bytes lost because the chunker fell behind the capture.
    fn dropped(&self) -> u64 {
        0
    }
}

/// What the chunk thread hands back when it ends.
#[derive(Debug, Default)]
struct FeedEnd {
    chunker: ChunkerStats,
    overrun_bytes: u64,
    gaps: u64,
}

/// A file or the clip, read in place; its offsets are the input's, so any body works.
impl<B: Body> Feed<B> for InPlace {
    fn step(&mut self, chunker: &mut Chunker<B>, stop: &StopFlag) -> Step {
        match self.next(LEASE_BYTES, stop) {
            Some(bytes) => {
                chunker.push(bytes, UnixMillis::now());
                Step::open_unless(stop)
            }
            None => Step::Over,
        }
    }
}

/// What one [`Feed::step`] did.
enum Step {
    /// Input was pushed, or none was ready yet; more may come.
    Open,
    /// The input lost data here (reported to the chunker); more may come.
    Gap,
    /// The input is over (or the run stopped).
    Over,
}

impl Step {
    fn open_unless(stop: &StopFlag) -> Step {
        if stop.is_set() {
            Step::Over
        } else {
            Step::Open
        }
    }
}

/// The capture ring: its bytes are overwritten once read, so chunks must copy them.
impl Feed<Vec<u8>> for Consumer {
    fn step(&mut self, chunker: &mut Chunker, stop: &StopFlag) -> Step {
        match self.next(LEASE_BYTES, Duration::from_millis(100)) {
            Next::Data(lease) => {
                chunker.push(&lease, UnixMillis::now());
                Step::Open
            }
            Next::Gap => {
                chunker.mark_gap();
                Step::Gap
            }
            Next::Idle => Step::open_unless(stop),
            Next::End => Step::Over,
        }
    }

    fn dropped(&self) -> u64 {
        Consumer::dropped(self)
    }
}

/// The chunk thread: input bytes in, chunks out; returns the chunker's counters, the bytes the
/// feed dropped and the gaps it reported.
fn chunk_stage<B: Body>(
    mut feed: impl Feed<B>,
    mut chunker: Chunker<B>,
    (out, spent): (Sender<(Chunk<B>, UnixMillis)>, Receiver<B>),
    stop: &StopFlag,
) -> FeedEnd {
    let mut open = true;
    let mut gaps = 0;
    while open {
        while let Ok(bytes) = spent.try_recv() {
            chunker.recycle(bytes);
        }
        open = match feed.step(&mut chunker, stop) {
            Step::Gap => {
                gaps += 1;
                true
            }
            Step::Open => true,
            Step::Over => false,
        };
        if !open {
            chunker.finish(UnixMillis::now());
        }
        while let Some(chunk) = chunker.poll_chunk() {
            timing::mark(Stage::Cut, chunk.index);
            if out.send((chunk, UnixMillis::now())).is_err() {
                open = false;
                break;
            }
        }
    }
    FeedEnd {
        chunker: chunker.stats().clone(),
        overrun_bytes: feed.dropped(),
        gaps,
    }
}
