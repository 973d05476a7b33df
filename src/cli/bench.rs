//! `ec-node bench`: benchmarks that print figures next to a reference measured in the same run.
//!
//! - `bench chunker`: file → chunks (with BLAKE3 of each chunk) on one core, next to a memory
//!   copy and raw BLAKE3 of the same bytes.
//! - `bench record`: `ec-node record` of a file to HLS as a process, next to `cp` of the same file
//!   and `ffmpeg -c copy -f hls`, alternated.
//! - `bench trust`: verify + decrypt and manifest sign/verify (`bench_trust.rs`).
//! - `bench fanout`: MoQ fan-out of moq-serve to many subscribers next to a third-party relay
//!   (`bench_fanout.rs`).
//! - `bench mesh`: latency, CPU and RSS of a publisher and a subscriber on loopback
//!   (`bench_mesh.rs`).

use super::Failure;
use crate::chunk::{Chunker, ChunkerConfig};
use crate::ts::clock::UnixMillis;
use argh::FromArgs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

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
    Chunker(ChunkerArgs),
    Fanout(super::bench_fanout::Args),
    Mesh(super::bench_mesh::Args),
    Record(RecordArgs),
    Trust(super::bench_trust::Args),
}

/// Chunker throughput against memory copy and BLAKE3 speed, one core.
#[derive(FromArgs)]
#[argh(subcommand, name = "chunker")]
struct ChunkerArgs {
    /// transport stream to chunk (default: generate a 20 s 19.39 Mb/s MPEG-2/AC-3 broadcast-like
    /// file with ffmpeg in the system temp folder)
    #[argh(option)]
    input: Option<PathBuf>,
    /// repetitions of each measurement; the best is reported (default 5)
    #[argh(option, default = "5")]
    rounds: u32,
}

/// `ec-node record` to HLS against `cp` and `ffmpeg -c copy -f hls`, as processes.
#[derive(FromArgs)]
#[argh(subcommand, name = "record")]
struct RecordArgs {
    /// transport stream to record (default: the generated broadcast-like file)
    #[argh(option)]
    input: Option<PathBuf>,
    /// alternated rounds; the median of each is reported (default 5)
    #[argh(option, default = "5")]
    rounds: u32,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    match args.what {
        What::Chunker(args) => chunker(args),
        What::Fanout(args) => super::bench_fanout::run(args),
        What::Mesh(args) => super::bench_mesh::run(args),
        What::Record(args) => record(args),
        What::Trust(args) => super::bench_trust::run(args),
    }
}

fn chunker(args: ChunkerArgs) -> Result<(), Failure> {
    let path = match args.input {
        Some(path) => path,
        None => generate_broadcast()?,
    };
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

fn record(args: RecordArgs) -> Result<(), Failure> {
    let input = match args.input {
        Some(path) => path,
        None => generate_broadcast()?,
    };
    let size = std::fs::metadata(&input)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", input.display())))?
        .len();
    let exe = std::env::current_exe()
        .map_err(|e| Failure::other(format!("cannot find ec-node itself: {e}")))?;
    let work = std::env::temp_dir().join(format!("ec-node-bench-record-{}", std::process::id()));
    let input_arg = input.to_string_lossy().into_owned();
    let out = work.join("out");
    let out_arg = out.to_string_lossy().into_owned();
    let playlist = out.join("index.m3u8").to_string_lossy().into_owned();
    let copy_target = out.join("copy.ts").to_string_lossy().into_owned();
    let contenders: [(&str, Vec<String>); 3] = [
        ("cp", vec!["cp".into(), input_arg.clone(), copy_target]),
        (
            "ec-node record",
            vec![
                exe.to_string_lossy().into_owned(),
                "record".into(),
                "--input".into(),
                input_arg.clone(),
                "--out".into(),
                out_arg,
            ],
        ),
        (
            "ffmpeg -c copy -f hls",
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                &input_arg,
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_list_size",
                "0",
                &playlist,
            ]
            .map(String::from)
            .to_vec(),
        ),
    ];
    println!(
        "input: {} ({:.1} MB), {} alternated rounds, median wall time",
        input.display(),
        size as f64 / 1e6,
        args.rounds.max(1)
    );
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..args.rounds.max(1) {
        for (i, (name, command)) in contenders.iter().enumerate() {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)
                .map_err(|e| Failure::other(format!("cannot create {}: {e}", out.display())))?;
            // The previous contender's dirty pages are flushed first, so that no contender pays
            // for another's writeback.
            flush_page_cache();
            let start = Instant::now();
            let status = Command::new(&command[0])
                .args(&command[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .env("RUST_LOG", "warn")
                .status()
                .map_err(|e| Failure::other(format!("cannot run {name}: {e}")))?;
            times[i].push(start.elapsed());
            if !status.success() {
                return Err(Failure::other(format!("{name} failed ({status})")));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for ((name, _), median) in contenders.iter().zip(&medians) {
        println!(
            "{name:<24} {:8.1} ms  {:6.0} MB/s  {:5.2}x cp",
            median.as_secs_f64() * 1e3,
            size as f64 / 1e6 / median.as_secs_f64(),
            median.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    println!("target: ec-node record within 1.5x cp");
    Ok(())
}

/// `sync(2)`: starts writeback of every dirty page and waits for it.
fn flush_page_cache() {
    // SAFETY: sync takes no arguments and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::sync()
    };
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

/// The benchmarks' broadcast-like input (20 s, MPEG-2 720p + AC-3, CBR 19.39 Mb/s), generated
/// with ffmpeg into the system temp folder on first use.
pub(super) fn generate_broadcast() -> Result<PathBuf, Failure> {
    let path = std::env::temp_dir().join("ec-node-bench-atsc-20s.ts");
    if path.exists() {
        return Ok(path);
    }
    eprintln!("generating {} with ffmpeg...", path.display());
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30000/1001",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "20",
        ])
        .args([
            "-c:v",
            "mpeg2video",
            "-b:v",
            "15M",
            "-maxrate",
            "15M",
            "-bufsize",
            "7M",
        ])
        .args(["-g", "15", "-bf", "2", "-c:a", "ac3", "-b:a", "384k"])
        .args(["-mpegts_pmt_start_pid", "0x30", "-mpegts_start_pid", "0x31"])
        .args(["-muxrate", "19392658", "-f", "mpegts"])
        .arg(&path)
        .status()
        .map_err(|e| {
            Failure::other(format!(
                "cannot run ffmpeg (install the Debian package ffmpeg): {e}"
            ))
        })?;
    if !status.success() {
        return Err(Failure::other(
            "ffmpeg failed to generate the benchmark input",
        ));
    }
    Ok(path)
}
