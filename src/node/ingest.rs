//! Ingest: capture → chunk, the first two stages of every pipeline that starts from a broadcast.
//!
//! ```text
//!  capture thread ──(mmap'd ring, in place)──► chunk thread ──(bounded channel)──► Ingest::chunks
//!                                                   ▲                                    │
//!                                                   └──── spent chunk buffers ◄──────────┘
//! ```
//!
//! The capture thread never waits for the others: the ring overwrites its oldest bytes and
//! reports the gap. A file or the clip read as fast as possible skips the capture thread and the
//! ring: the chunk thread reads its mapping in place. Buffers the consumer is done with go back to
//! the chunker ([`Ingest::recycle`]), so steady state allocates nothing.

use super::timing::{self, Stage};
use crate::capture::ring::{self, Consumer, Next};
use crate::capture::{self, wall_clock, CaptureEnd, CaptureError, CaptureOptions, InPlace, Source};
use crate::chunk::{Chunk, Chunker, ChunkerConfig, ChunkerStats};
use crate::cli::stop::StopFlag;
use crate::ts::clock::UnixMillis;
use crossbeam_channel::{bounded, Receiver, Sender};
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

/// How ingest ended.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// How the capture ended (`None` if it had not reported when the run stopped).
    pub capture: Option<Result<CaptureEnd, CaptureError>>,
    /// Chunker counters.
    pub chunker: ChunkerStats,
    /// Bytes dropped because the chunker fell behind the capture.
    pub overrun_bytes: u64,
}

/// Running capture and chunk threads.
pub struct Ingest {
    chunks: Receiver<(Chunk, UnixMillis)>,
    spent: Sender<Vec<u8>>,
    capture: Receiver<Result<CaptureEnd, CaptureError>>,
    capture_thread: Option<JoinHandle<()>>,
    chunk_thread: JoinHandle<(ChunkerStats, u64)>,
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
        let (chunk_tx, chunks) = bounded(CHUNK_QUEUE);
        let (spent, spent_rx) = bounded(CHUNK_QUEUE);
        let (capture_tx, capture) = bounded(1);
        let (feed, capture_thread) = match in_place {
            Some(reader) => {
                let _ = capture_tx.send(Ok(CaptureEnd::Finished));
                (Feed::InPlace(reader), None)
            }
            None => {
                let (producer, consumer) = ring::ring(RING_BYTES).map_err(IngestError::Start)?;
                let (source, options, stop) = (source.clone(), options.clone(), stop.clone());
                let thread = std::thread::Builder::new()
                    .name("capture".into())
                    .spawn(move || {
                        let _ = capture_tx.send(capture::run(&source, &options, producer, &stop));
                    })
                    .map_err(IngestError::Start)?;
                (Feed::Ring(consumer), Some(thread))
            }
        };
        let stop = stop.clone();
        let chunk_thread = std::thread::Builder::new()
            .name("chunk".into())
            .spawn(move || chunk_stage(feed, Chunker::new(chunker), (chunk_tx, spent_rx), &stop))
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
    pub fn chunks(&self) -> &Receiver<(Chunk, UnixMillis)> {
        &self.chunks
    }

    /// Hands a chunk's buffer back for reuse (dropped if the chunker has enough).
    pub fn recycle(&self, bytes: Vec<u8>) {
        let _ = self.spent.try_send(bytes);
    }

    /// Stops consuming and collects how ingest ended. The caller sets the stop flag first if it
    /// ends the run; a capture blocked in a read is not waited for.
    pub fn finish(self) -> IngestReport {
        drop(self.chunks);
        let (chunker, overrun_bytes) = self.chunk_thread.join().unwrap_or_default();
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
        }
    }
}

/// Where the chunk thread reads from.
enum Feed {
    /// The capture ring, filled by the capture thread.
    Ring(Consumer),
    /// A file or the clip, read in place.
    InPlace(InPlace),
}

/// The chunk thread: input bytes in, chunks out; returns the chunker's counters and the bytes
/// the ring dropped.
fn chunk_stage(
    mut feed: Feed,
    mut chunker: Chunker,
    (out, spent): (Sender<(Chunk, UnixMillis)>, Receiver<Vec<u8>>),
    stop: &StopFlag,
) -> (ChunkerStats, u64) {
    let mut open = true;
    while open {
        while let Ok(bytes) = spent.try_recv() {
            chunker.recycle(bytes);
        }
        let now = wall_clock();
        open = match &mut feed {
            Feed::InPlace(reader) => match reader.next(LEASE_BYTES, stop) {
                Some(bytes) => {
                    chunker.push(bytes, now);
                    !stop.is_set()
                }
                None => false,
            },
            Feed::Ring(consumer) => match consumer.next(LEASE_BYTES, Duration::from_millis(100)) {
                Next::Data(lease) => {
                    chunker.push(&lease, now);
                    true
                }
                Next::Gap => {
                    chunker.mark_gap();
                    true
                }
                Next::Idle => !stop.is_set(),
                Next::End => false,
            },
        };
        if !open {
            chunker.finish(wall_clock());
        }
        while let Some(chunk) = chunker.poll_chunk() {
            timing::mark(Stage::Cut, chunk.index);
            if out.send((chunk, wall_clock())).is_err() {
                open = false;
                break;
            }
        }
    }
    let overrun = match &feed {
        Feed::Ring(consumer) => consumer.dropped(),
        Feed::InPlace(_) => 0,
    };
    (chunker.stats().clone(), overrun)
}
