//! `ec-node chunks`: cuts a transport stream into deterministic chunks and prints one line per
//! chunk — the tool for checking that two nodes agree.

use super::bounded::ChunkMs;
use super::summary::{self, chunker_fields, Line, Summary};
use super::Failure;
use argh::FromArgs;
use ec_node::capture::{self, Source};
use ec_node::chunk::{Chunk, Chunker, ChunkerConfig, ChunkerStats};
use ec_node::time::UnixMillis;
use std::io::Write;
use std::ops::ControlFlow;

/// Cut a transport stream into deterministic chunks and print one line per chunk: index, PTS,
/// duration, size, flags and BLAKE3 of the chunk bytes.
#[derive(FromArgs)]
#[argh(subcommand, name = "chunks")]
pub struct Args {
    /// input: a file, or - for standard input (default: the built-in clip)
    #[argh(option)]
    input: Option<String>,
    /// chunk duration D in milliseconds, the grid step (default 2000)
    #[argh(option, default = "ChunkMs::DEFAULT")]
    chunk_ms: ChunkMs,
    /// print one JSON object per line instead of text, and the summary as one JSON object on the
    /// last line
    #[argh(switch)]
    json: bool,
    /// reference wall clock in Unix seconds for resolving the PTS wrap when the stream carries no
    /// ATSC STT or DVB TDT (default: the system clock)
    #[argh(option)]
    clock: Option<u64>,
}

/// Runs the subcommand and tells its summary.
pub fn run(args: Args) -> Result<(), Failure> {
    let mut told = None;
    let outcome = chunks(&args, &mut told);
    summary::report("chunks", args.json, told.as_ref(), outcome)
}

/// Cuts and prints the chunks; `told` gets the summary once the input has been read.
fn chunks(args: &Args, told: &mut Option<ChunksSummary>) -> Result<(), Failure> {
    let source = Source::parse(args.input.as_deref()).map_err(|e| Failure::usage(e.to_string()))?;
    let now = || {
        args.clock
            .map_or_else(UnixMillis::now, |s| UnixMillis(s.saturating_mul(1000)))
    };
    let mut chunker = Chunker::new(ChunkerConfig {
        chunk_ms: args.chunk_ms.get(),
        ..ChunkerConfig::default()
    });
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let mut print_ready = |chunker: &mut Chunker| -> ControlFlow<()> {
        while let Some(chunk) = chunker.poll_chunk() {
            let line = if args.json {
                json_line(&chunk)
            } else {
                text_line(&chunk)
            };
            if let Err(e) = writeln!(out, "{line}") {
                write_error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    };
    capture::read_all(&source, |bytes| {
        chunker.push(bytes, now());
        print_ready(&mut chunker)
    })
    .map_err(|e| Failure::usage(e.to_string()))?;
    chunker.finish(now());
    let _ = print_ready(&mut chunker);
    if let Some(e) = write_error {
        // A closed pipe (e.g. `| head`) is a normal way to stop reading.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Failure::other(format!(
                "cannot write to standard output: {e}"
            )));
        }
    }
    let told = told.insert(ChunksSummary {
        source,
        stats: chunker.stats().clone(),
    });
    not_transport_stream(&told.source, &told.stats)
}

fn flags_text(chunk: &Chunk) -> String {
    let f = chunk.flags;
    let letters: String = [
        (f.discontinuity(), 'D'),
        (f.damaged(), 'X'),
        (f.no_random_access(), 'N'),
    ]
    .iter()
    .filter_map(|&(on, c)| on.then_some(c))
    .collect();
    if letters.is_empty() {
        "-".into()
    } else {
        letters
    }
}

fn text_line(chunk: &Chunk) -> String {
    format!(
        "{} {} {}ms {} {} {}",
        chunk.index,
        chunk.pts.ticks(),
        chunk.duration_ms(),
        chunk.bytes.len(),
        flags_text(chunk),
        blake3::hash(&chunk.bytes).to_hex()
    )
}

fn json_line(chunk: &Chunk) -> String {
    format!(
        "{{\"index\":{},\"pts\":{},\"duration_ms\":{},\"size\":{},\"discontinuity\":{},\"damaged\":{},\"no_random_access\":{},\"blake3\":\"{}\"}}",
        chunk.index,
        chunk.pts.ticks(),
        chunk.duration_ms(),
        chunk.bytes.len(),
        chunk.flags.discontinuity(),
        chunk.flags.damaged(),
        chunk.flags.no_random_access(),
        blake3::hash(&chunk.bytes).to_hex()
    )
}

/// An input that had bytes but not one TS packet is not MPEG-TS: said, not passed as empty.
pub(super) fn not_transport_stream(source: &Source, s: &ChunkerStats) -> Result<(), Failure> {
    if s.packets == 0 && s.skipped_bytes > 0 {
        return Err(Failure::usage(format!(
            "{source}: no MPEG-TS found (no packet sync in {} bytes)",
            s.skipped_bytes
        )));
    }
    Ok(())
}

/// What `chunks` read and cut.
struct ChunksSummary {
    /// The input.
    source: Source,
    /// The chunker's counters at the end of the input.
    stats: ChunkerStats,
}

impl Summary for ChunksSummary {
    fn text(&self) -> String {
        let s = &self.stats;
        Line::new(
            "chunks",
            format!(
                "{} from {} ({} packets, {} null stripped)",
                s.chunks, self.source, s.packets, s.null_packets
            ),
        )
        .part(format!(
            "dropped {} unfinished or cut short",
            s.dropped_chunks
        ))
        .part(format!(
            "damage: {} packets lost, {} with transport errors, {} malformed, {} bytes skipped",
            s.lost_packets, s.error_packets, s.malformed, s.skipped_bytes
        ))
        .part(format!(
            "{} discontinuities, {} cuts without random access",
            s.discontinuities, s.forced_cuts
        ))
        .to_string()
    }

    fn fields(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.source.to_string(),
            "chunker": chunker_fields(&self.stats),
        })
    }
}
