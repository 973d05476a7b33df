//! `ec-node record`: capture → chunk → HLS on disk.

use super::bounded::{AtLeastOne, ChunkMs};
use super::summary::{self, chunker_fields, Line, Summary};
use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::capture::{CaptureEnd, CaptureError, CaptureOptions, Source};
use ec_node::chunk::ChunkerConfig;
use ec_node::node::record::{record, RecordConfig, RecordError, RecordSummary};
use ec_node::node::tuner::LocalTuner;
use ec_node::stop::StopFlag;
use std::path::PathBuf;
use std::time::Duration;

/// Record a broadcast to HLS: a file, - (stdin), an http:// URL or hdhr://HOST[:PORT]/GUIDE →
/// deterministic chunks → DIR/segment_%06d.ts and DIR/index.m3u8.
#[derive(FromArgs)]
#[argh(subcommand, name = "record")]
pub struct Args {
    /// source: FILE, -, http://URL or hdhr://HOST[:PORT]/GUIDE_NUMBER (default: the built-in
    /// broadcast from an in-process tuner simulator, for 10 s unless --duration or --stop-after)
    #[argh(option)]
    input: Option<String>,
    /// output folder (created if needed; must be empty)
    #[argh(option)]
    out: PathBuf,
    /// stop after this many seconds of stream (HDHomeRun: the duration= query)
    #[argh(option)]
    duration: Option<AtLeastOne<u64>>,
    /// chunk duration D in milliseconds (default 2000)
    #[argh(option, default = "ChunkMs::DEFAULT")]
    chunk_ms: ChunkMs,
    /// stop after this many segments
    #[argh(option)]
    stop_after: Option<AtLeastOne<u64>>,
    /// keep a sliding live window of this many segments instead of every segment
    #[argh(option)]
    hls_window: Option<AtLeastOne<usize>>,
    /// pace a file at its real-time rate (by PCR) instead of as fast as possible
    #[argh(switch)]
    realtime: bool,
    /// seconds without data before a live source counts as failed (default 4): at start it ends
    /// the run (exit 3), mid-stream the source is dialled again
    #[argh(option, default = "4")]
    source_timeout: u64,
    /// once streaming, seconds a live source may deliver nothing (silent, refusing, unreachable)
    /// while it is dialled again with back-off, before the run ends with exit 5 (default 300)
    #[argh(option, default = "300")]
    signal_loss_timeout: u64,
    /// print the summary as one JSON object on stdout instead of text on stderr
    #[argh(switch)]
    json: bool,
}

/// Runs the subcommand and tells its summary.
pub fn run(args: Args) -> Result<(), Failure> {
    let mut told = None;
    let outcome = record_to_hls(&args, &mut told);
    summary::report("record", args.json, told.as_ref(), outcome)
}

/// Records; `told` gets the summary once the pipeline has run.
fn record_to_hls(args: &Args, told: &mut Option<RecordReport>) -> Result<(), Failure> {
    // Without a source, record the built-in broadcast from a tuner simulator in this process.
    let local_tuner = match &args.input {
        None => Some(LocalTuner::start().map_err(|e| Failure::new(Exit::Connect, e.to_string()))?),
        Some(_) => None,
    };
    let (source, duration) = match &local_tuner {
        Some(tuner) => (
            tuner.source(),
            args.duration
                .map(AtLeastOne::get)
                .or(args.stop_after.is_none().then_some(10)),
        ),
        None => (
            Source::parse(args.input.as_deref()).map_err(|e| Failure::usage(e.to_string()))?,
            args.duration.map(AtLeastOne::get),
        ),
    };
    let config = RecordConfig {
        source: source.clone(),
        capture: CaptureOptions {
            duration: duration.map(Duration::from_secs),
            realtime: args.realtime,
            first_byte_timeout: Duration::from_secs(args.source_timeout.max(1)),
            signal_loss_timeout: Duration::from_secs(args.signal_loss_timeout),
            ..CaptureOptions::default()
        },
        chunker: ChunkerConfig {
            chunk_ms: args.chunk_ms.get(),
            ..ChunkerConfig::default()
        },
        out: args.out.clone(),
        stop_after: args.stop_after.map(AtLeastOne::get),
        window: args.hls_window.map(AtLeastOne::get),
    };
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    log::info!("recording {source} to {}", args.out.display());
    let out = args.out.clone();
    match record(config, stop) {
        Ok(summary) => {
            let told = told.insert(RecordReport { summary, out });
            super::chunks::not_transport_stream(&source, &told.summary.chunker)
        }
        Err(RecordError::Capture(e, summary)) => {
            *told = Some(RecordReport {
                summary: *summary,
                out,
            });
            Err(capture_failure(e))
        }
        Err(RecordError::Hls(e)) => Err(match e {
            ec_node::hls::HlsError::NotEmpty(_) => Failure::usage(e.to_string()),
            _ => Failure::other(e.to_string()),
        }),
        Err(e @ RecordError::Start(_)) => Err(Failure::other(e.to_string())),
    }
}

/// Maps a capture failure to the project's exit codes.
pub fn capture_failure(e: CaptureError) -> Failure {
    let exit = match e {
        CaptureError::BadSource(_) | CaptureError::Open(..) => Exit::Usage,
        CaptureError::Refused { .. } | CaptureError::Unreachable(..) | CaptureError::NoData(..) => {
            Exit::Connect
        }
        CaptureError::Lost { .. } => Exit::Idle,
        _ => Exit::Other,
    };
    Failure::new(exit, e.to_string())
}

/// What `record` wrote, and where.
struct RecordReport {
    summary: RecordSummary,
    /// The HLS folder.
    out: PathBuf,
}

impl RecordReport {
    /// How the run ended, in the words of the text and the JSON.
    fn ended(&self) -> &'static str {
        match self.summary.capture_end {
            Some(CaptureEnd::Finished) => "source ended",
            Some(CaptureEnd::Stopped) | None => "stopped",
        }
    }
}

impl Summary for RecordReport {
    fn text(&self) -> String {
        let (s, c) = (&self.summary, &self.summary.chunker);
        Line::new(
            "record",
            format!(
                "{} segments in {} ({})",
                s.segments,
                self.out.display(),
                self.ended()
            ),
        )
        .part(format!(
            "dropped {} unfinished or cut short",
            c.dropped_chunks
        ))
        .part(format!(
            "damage: {} packets lost, {} malformed, {} bytes skipped, {} bytes overrun",
            c.lost_packets, c.malformed, c.skipped_bytes, s.overrun_bytes
        ))
        .part(format!("{} discontinuities", c.discontinuities))
        .to_string()
    }

    fn fields(&self) -> serde_json::Value {
        serde_json::json!({
            "segments": self.summary.segments,
            "out": self.out.display().to_string(),
            "ended": self.ended(),
            "overrun_bytes": self.summary.overrun_bytes,
            "chunker": chunker_fields(&self.summary.chunker),
        })
    }
}
