//! The recording pipeline: capture → chunk ([`super::ingest`]) → HLS on the caller's thread.
//!
//! The HLS stage writes segments and the playlist, and always finishes the playlist with
//! `EXT-X-ENDLIST`, whatever ended the run. A file or the built-in clip recorded as fast as
//! possible is never copied in user space: chunks come as spans of the mapped input, and each
//! segment is one gathered write from the input's pages.

use super::ingest::{Ingest, IngestError};
use crate::capture::{CaptureEnd, CaptureError, CaptureOptions, Source};
use crate::chunk::{Body, ChunkerConfig, ChunkerStats};
use crate::hls::playlist::{PlaylistKind, SegmentEntry};
use crate::hls::writer::HlsWriter;
use crate::hls::{self, HlsError, ProgramClock};
use crate::stop::StopFlag;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The capture ring could not be mapped or a thread not started.
    Start(std::io::Error),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Capture(e, _) => e.fmt(f),
            RecordError::Hls(e) => e.fmt(f),
            RecordError::Start(e) => write!(f, "cannot start the capture pipeline: {e}"),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::Capture(e, _) => Some(e),
            RecordError::Hls(e) => Some(e),
            RecordError::Start(e) => Some(e),
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
    // Open the source first: a wrong path must not leave an output folder behind.
    let (source, capture, chunker) = (&config.source, &config.capture, config.chunker);
    match Ingest::start_in_place(source, capture, chunker, &stop).map_err(start_error)? {
        Some((ingest, input)) => run(&config, kind, ingest, input.bytes(), stop),
        None => {
            let ingest = Ingest::start(source, capture, chunker, &stop).map_err(start_error)?;
            run(&config, kind, ingest, &[], stop)
        }
    }
}

fn start_error(e: IngestError) -> RecordError {
    match e {
        IngestError::Capture(e) => RecordError::Capture(e, Box::default()),
        IngestError::Start(e) => RecordError::Start(e),
    }
}

/// Writes what `ingest` cuts from `input` (the mapped input its chunks are spans of, if any),
/// then collects how it went.
fn run<B: Body>(
    config: &RecordConfig,
    kind: PlaylistKind,
    ingest: Ingest<B>,
    input: &[u8],
    stop: StopFlag,
) -> Result<RecordSummary, RecordError> {
    let mut writer =
        match HlsWriter::create(&config.out, kind, hls::target_duration(&config.chunker)) {
            Ok(writer) => writer,
            Err(e) => {
                stop.set();
                ingest.finish();
                return Err(RecordError::Hls(e));
            }
        };
    let written = hls_stage(&mut writer, &ingest, input, config.stop_after, &stop);
    // However the HLS stage ended, finish the playlist and stop the other stages.
    stop.set();
    let segments = writer.written();
    let finished = writer.finish();
    let report = ingest.finish();
    written.and(finished).map_err(RecordError::Hls)?;
    let mut summary = RecordSummary {
        segments,
        capture_end: None,
        chunker: report.chunker,
        overrun_bytes: report.overrun_bytes,
    };
    match report.capture {
        Some(Err(e)) => Err(RecordError::Capture(e, Box::new(summary))),
        Some(Ok(end)) => {
            summary.capture_end = Some(end);
            Ok(summary)
        }
        None => Ok(summary),
    }
}

/// The HLS stage: writes chunks until ingest ends, `stop_after` is reached, or a stop.
fn hls_stage<B: Body>(
    writer: &mut HlsWriter,
    ingest: &Ingest<B>,
    input: &[u8],
    stop_after: Option<u64>,
    stop: &StopFlag,
) -> Result<(), HlsError> {
    let mut clock = ProgramClock::default();
    while stop_after.is_none_or(|n| writer.written() < n) {
        let (chunk, received) = match ingest.chunks().recv_timeout(Duration::from_millis(100)) {
            Ok(item) => item,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if stop.is_set() => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let date_time = clock.next(chunk.duration, chunk.flags.discontinuity(), received);
        writer.write(
            &SegmentEntry::for_chunk(&chunk, date_time),
            &chunk.bytes.parts(input),
        )?;
        ingest.recycle(chunk.bytes);
    }
    Ok(())
}
