//! `bench chunker`: file → chunks (with BLAKE3 of each chunk) on one core, next to a memory copy
//! and raw BLAKE3 of the same bytes.

use super::broadcast::input_or_generated;
use crate::cli::Failure;
use argh::FromArgs;
use ec_node::chunk::{Chunker, ChunkerConfig};
use ec_node::time::UnixMillis;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Chunker throughput against memory copy and BLAKE3 speed, one core.
#[derive(FromArgs)]
#[argh(subcommand, name = "chunker")]
pub struct Args {
    /// transport stream to chunk (default: generate a 20 s 19.39 Mb/s MPEG-2/AC-3 broadcast-like
    /// file with ffmpeg in the system temp folder)
    #[argh(option)]
    input: Option<PathBuf>,
    /// repetitions of each measurement; the best is reported (default 5)
    #[argh(option, default = "5")]
    rounds: u32,
}

/// Runs `bench chunker`.
pub fn run(args: Args) -> Result<(), Failure> {
    let path = input_or_generated(args.input)?;
    let bytes = std::fs::read(&path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let rounds = args.rounds.max(1);
    let mb = bytes.len() as f64 / 1e6;
    println!(
        "input: {} ({mb:.1} MB), best of {rounds} rounds, one thread",
        path.display()
    );

    let mut copy = vec![0u8; bytes.len()];
    let memcpy = best(rounds, || copy.copy_from_slice(&bytes));
    std::hint::black_box(&copy);
    let hash = best(rounds, || {
        std::hint::black_box(blake3::hash(&bytes));
    });
    let mut chunks = 0;
    let chunking = best(rounds, || chunks = chunk_and_hash(&bytes));

    let rate = |d: Duration| mb / d.as_secs_f64();
    println!("memory copy:            {:8.0} MB/s", rate(memcpy));
    println!("BLAKE3 (one thread):    {:8.0} MB/s", rate(hash));
    println!(
        "chunker + BLAKE3/chunk: {:8.0} MB/s  ({chunks} chunks; {:.2}x BLAKE3 time, target >= 1000 MB/s)",
        rate(chunking),
        chunking.as_secs_f64() / hash.as_secs_f64()
    );
    Ok(())
}

fn chunk_and_hash(bytes: &[u8]) -> usize {
    let now = UnixMillis(1_764_072_000_000);
    let mut chunker = Chunker::new(ChunkerConfig::default());
    let mut count = 0;
    let mut drain = |chunker: &mut Chunker| {
        while let Some(chunk) = chunker.poll_chunk() {
            std::hint::black_box(blake3::hash(&chunk.bytes));
            count += 1;
        }
    };
    for part in bytes.chunks(1 << 20) {
        chunker.push(part, now);
        drain(&mut chunker);
    }
    chunker.finish(now);
    drain(&mut chunker);
    count
}

fn best(rounds: u32, mut f: impl FnMut()) -> Duration {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
