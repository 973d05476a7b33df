//! `ec-node bench`: benchmarks that print figures next to a reference measured in the same run.
//!
//! - `bench chunker`: file → chunks (with BLAKE3 of each chunk) on one core, next to a memory
//!   copy and raw BLAKE3 of the same bytes.
//! - `bench record`: `ec-node record` of a file to HLS as a process, next to `cp` of the same file
//!   and `ffmpeg -c copy -f hls`, alternated.
//! - `bench trust`: verify + decrypt and manifest sign/verify (`trust.rs`).
//! - `bench fanout`: MoQ fan-out of moq-serve to many subscribers next to a third-party relay
//!   (`fanout.rs`).
//! - `bench mesh`: latency, CPU and RSS of a publisher and a subscriber on loopback
//!   (`mesh.rs`).
//! - `bench serve`: HTTP fan-out of one channel by `ec-node serve` to many viewers, next to a
//!   plain copier of the same bytes (`serve.rs`).
//! - `bench swarm`: bytes pulled, CPU and failover gap of subscribers pulling from several
//!   availability nodes, next to the same subscribers with one source (`swarm.rs`).
//! - `bench soak`: RSS, open fds and threads of every role of a mesh through an impairment
//!   proxy, sampled over a long run, with the slope per hour of each, and missing chunks
//!   (`soak.rs`).
//!
//! One file per benchmark; `proc` measures child processes and `broadcast` makes the shared
//! input. Nothing here is imported by the library.

mod broadcast;
mod chunker;
mod fanout;
mod mesh;
mod proc;
mod record;
mod serve;
mod soak;
mod swarm;
mod trust;

use crate::cli::Failure;
use argh::FromArgs;

/// Benchmarks: figures next to references measured in the same run.
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
pub struct Args {
    #[argh(subcommand)]
    what: What,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum What {
    Chunker(chunker::Args),
    Fanout(fanout::Args),
    Mesh(mesh::Args),
    Record(record::Args),
    Serve(serve::Args),
    Soak(soak::Args),
    Swarm(swarm::Args),
    Trust(trust::Args),
}

/// Runs the subcommand.
/// An empty folder of its own for the benchmark `bench` in this process (whatever a crashed
/// earlier run with the same process id left there is removed first).
fn fresh_work_dir(bench: &str) -> Result<std::path::PathBuf, Failure> {
    let work = std::env::temp_dir().join(format!("ec-node-bench-{bench}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| Failure::other(e.to_string()))?;
    Ok(work)
}

pub fn run(args: Args) -> Result<(), Failure> {
    match args.what {
        What::Chunker(args) => chunker::run(args),
        What::Fanout(args) => fanout::run(args),
        What::Mesh(args) => mesh::run(args),
        What::Record(args) => record::run(args),
        What::Serve(args) => serve::run(args),
        What::Soak(args) => soak::run(args),
        What::Swarm(args) => swarm::run(args),
        What::Trust(args) => trust::run(args),
    }
}
