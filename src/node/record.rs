//! The recording pipeline: capture → chunk → HLS, one thread per stage.
//!
//! ```text
//!  capture thread ──(mmap'd ring, in place)──► chunk thread ──(bounded channel)──► HLS (caller's thread)
//! ```
//!
//! The capture thread never waits for the others: the ring overwrites its oldest bytes and
//! reports the gap. The chunk thread borrows ring bytes, feeds the chunker, and sends finished
//! chunks on. The HLS stage writes segments and the playlist, and always finishes the playlist
//! with `EXT-X-ENDLIST`, whatever ended the run.

use crate::capture::ring::{self, Consumer, Next};
use crate::capture::{self, wall_clock, CaptureEnd, CaptureError, CaptureOptions, InPlace, Source};
use crate::chunk::{Chunk, Chunker, ChunkerConfig, ChunkerStats};
use crate::cli::stop::StopFlag;
use crate::hls::playlist::PlaylistKind;
use crate::hls::writer::HlsWriter;
use crate::hls::{self, HlsError};
use crate::ts::clock::{UnixMillis, TICKS_PER_MS};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::path::PathBuf;
use std::time::Duration;

/// Ring buffer size: about 6.5 s of a 19.39 Mb/s broadcast.
const RING_BYTES: usize = 16 << 20;
/// Bytes the chunker takes from the ring at a time.
const LEASE_BYTES: usize = 1 << 20;
/// Chunks in flight between the chunk thread and the HLS writer.
const CHUNK_QUEUE: usize = 4;

/// What to record.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    /// The source.
    pub source: Source,
    /// How to capture it.
    pub capture: CaptureOptions,
    /// The chunk grid.
    pub chunker: ChunkerConfig,
    /// The HLS output folder.
    pub out: PathBuf,
    /// Stop after this many segments.
    pub stop_after: Option<u64>,
    /// Slide a live window of this many segments instead of keeping all (EVENT).
    pub window: Option<usize>,
}

/// How a recording went.
#[derive(Debug, Default)]
pub struct RecordSummary {
    /// Segments written.
    pub segments: u64,
    /// How the capture ended (`None` if the run stopped before it reported).
    pub capture_end: Option<CaptureEnd>,
    /// Chunker counters.
    pub chunker: ChunkerStats,
    /// Bytes dropped because the chunker fell behind the capture.
    pub overrun_bytes: u64,
}

/// Why a recording failed; the playlist is finished (ENDLIST) before this is returned.
#[derive(Debug)]
pub enum RecordError {
    /// The capture failed.
    Capture(CaptureError, Box<RecordSummary>),
    /// Writing the output failed.
    Hls(HlsError),
    /// The ring buffer could not be mapped.
    Ring(std::io::Error),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Capture(e, _) => e.fmt(f),
            RecordError::Hls(e) => e.fmt(f),
            RecordError::Ring(e) => write!(f, "cannot map the capture ring buffer: {e}"),
        }
    }
}

/// Runs the pipeline until the source ends, `stop_after` segments are written, the capture
/// fails, or `stop` is set.
pub fn record(config: RecordConfig, stop: StopFlag) -> Result<RecordSummary, RecordError> {
    let kind = match config.window {
        Some(n) => PlaylistKind::Window(n),
        None => PlaylistKind::Event,
    };
    let in_place = InPlace::open(&config.source, &config.capture)
        .map_err(|e| RecordError::Capture(e, Box::default()))?;
    let mut writer = HlsWriter::create(&config.out, kind, hls::target_duration(&config.chunker))
        .map_err(RecordError::Hls)?;
    let (chunk_tx, chunk_rx) = bounded(CHUNK_QUEUE);
    // Written chunks' buffers go back to the chunker, so steady state allocates nothing.
    let (spent_tx, spent_rx) = bounded(CHUNK_QUEUE);
    let (capture_tx, capture_rx) = bounded(1);
    let (feed, capture_thread) = match in_place {
        Some(reader) => {
            let _ = capture_tx.send(Ok(CaptureEnd::Finished));
            (Feed::InPlace(reader), None)
        }
        None => {
            let (producer, consumer) = ring::ring(RING_BYTES).map_err(RecordError::Ring)?;
            let (source, options, stop) =
                (config.source.clone(), config.capture.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("capture".into())
                .spawn(move || {
                    let _ = capture_tx.send(capture::run(&source, &options, producer, &stop));
                })
                .map_err(RecordError::Ring)?;
            (Feed::Ring(consumer), Some(thread))
        }
    };
    let chunk_thread = {
        let (chunker, stop) = (config.chunker, stop.clone());
        std::thread::Builder::new()
            .name("chunk".into())
            .spawn(move || chunk_stage(feed, Chunker::new(chunker), (chunk_tx, spent_rx), &stop))
            .map_err(RecordError::Ring)?
    };

    let written = hls_stage(
        &mut writer,
        (&chunk_rx, &spent_tx),
        config.stop_after,
        &stop,
    );
    // However the HLS stage ended, finish the playlist and stop the other stages.
    stop.set();
    drop(chunk_rx);
    let segments = writer.written();
    let finished = writer.finish();
    let (chunker, overrun_bytes) = chunk_thread.join().unwrap_or_default();
    // A capture blocked in a read notices the stop within its read timeout; wait for it only if
    // it already reported.
    let capture_outcome = capture_rx.recv_timeout(Duration::from_millis(200)).ok();
    if let (Some(_), Some(thread)) = (&capture_outcome, capture_thread) {
        let _ = thread.join();
    }
    written.and(finished).map_err(RecordError::Hls)?;
    let mut summary = RecordSummary {
        segments,
        capture_end: None,
        chunker,
        overrun_bytes,
    };
    match capture_outcome {
        Some(Err(e)) => Err(RecordError::Capture(e, Box::new(summary))),
        Some(Ok(end)) => {
            summary.capture_end = Some(end);
            Ok(summary)
        }
        None => Ok(summary),
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

/// The HLS stage: writes chunks until the channel closes, `stop_after` is reached, or a stop.
fn hls_stage(
    writer: &mut HlsWriter,
    (chunks, spent): (&Receiver<(Chunk, UnixMillis)>, &Sender<Vec<u8>>),
    stop_after: Option<u64>,
    stop: &StopFlag,
) -> Result<(), HlsError> {
    let mut previous: Option<(UnixMillis, u64)> = None;
    while stop_after.is_none_or(|n| writer.written() < n) {
        let (chunk, received) = match chunks.recv_timeout(Duration::from_millis(100)) {
            Ok(item) => item,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if stop.is_set() => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        // Program date-time: continuous along the stream, re-based on the wall clock after a
        // discontinuity. A chunk is finished when the next one starts, so it began `duration` ago.
        let date_time = match previous {
            Some((start, duration)) if !chunk.flags.discontinuity() => {
                UnixMillis(start.0 + duration / TICKS_PER_MS)
            }
            _ => UnixMillis(received.0.saturating_sub(chunk.duration / TICKS_PER_MS)),
        };
        writer.write(&chunk, date_time)?;
        previous = Some((date_time, chunk.duration));
        let _ = spent.try_send(chunk.bytes);
    }
    Ok(())
}
