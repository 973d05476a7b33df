//! `ec-node bench mesh`: latency, CPU and memory of one stream through the mesh on loopback.
//!
//! A tuner simulator (a process) loops a real-time 19.39 Mb/s broadcast-like file; `moq-publish
//! --publish-manifests` captures, chunks, encrypts, signs and serves it; `moq-subscribe
//! --require-manifest` verifies, decrypts and writes HLS. Both run with the `ec_node::timing`
//! log target on, so every chunk is marked as it leaves each stage (`node::timing`); the marks are
//! paired by chunk index (one host, one clock). Reported: latency from the chunk's cut (its last
//! input byte read) to its segment renamed into place, p50/p99 with the breakdown by stage; CPU
//! (% of one core) and RSS of publisher and subscriber, and as the reference measured in the
//! same run, the simulator's CPU for moving the same bytes over HTTP.

use super::proc::{cpu_seconds, peak_rss_kib, rss_kib, thread_cpu_seconds, Kid};
use crate::cli::bounded::ChunkMs;
use crate::cli::Failure;
use argh::FromArgs;
use ec_node::node::timing::{Stage, TARGET};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Latency (chunk cut → segment in place), CPU and RSS of publisher and subscriber on loopback.
#[derive(FromArgs)]
#[argh(subcommand, name = "mesh")]
pub struct Args {
    /// seconds of stream measured after the warm-up (default 60)
    #[argh(option, default = "60")]
    seconds: u64,
    /// seconds before measuring: start-up, first chunks (default 10)
    #[argh(option, default = "10")]
    warmup: u64,
    /// chunk duration in milliseconds (default 500: 120 chunks a minute)
    #[argh(option, default = "ChunkMs::literal(500)")]
    chunk_ms: ChunkMs,
    /// transport stream the simulator loops (default: the generated 19.39 Mb/s broadcast)
    #[argh(option)]
    input: Option<PathBuf>,
}

const STREAM: &str = "ec/bench/v1/mesh";

/// Runs the benchmark.
pub fn run(args: Args) -> Result<(), Failure> {
    let input = super::broadcast::input_or_generated(args.input.clone())?;
    let work = super::fresh_work_dir("mesh")?;
    let result = measure(&args, &input, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(args: &Args, input: &Path, work: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::other(e.to_string()))?;
    let ec_node = |log: &str, stderr: Stdio| {
        let mut cmd = Command::new(&exe);
        cmd.env("RUST_LOG", log).stderr(stderr);
        cmd
    };
    let mut sim = Kid::spawn(
        ec_node("warn", Stdio::null())
            .args(["tuner-sim", "--listen", "127.0.0.1:0", "--tuners", "1"])
            .arg("--channel")
            .arg(format!("5.1={}", input.display())),
    )?;
    let ready = sim.first_line(|l| l.contains("\"listen\""))?;
    let sim_addr = json_field(&ready, "listen")?;
    let log = format!("warn,{TARGET}=debug");
    let chunk_ms = args.chunk_ms.to_string();
    let (pub_log, sub_log) = (work.join("publisher.log"), work.join("subscriber.log"));
    let mut publisher = Kid::spawn(
        ec_node(&log, file(&pub_log)?)
            .args(["moq-publish", "--input"])
            .arg(format!("hdhr://{sim_addr}/5.1"))
            .args(["--listen", "127.0.0.1:0", "--stream-id", STREAM])
            .args(["--publish-manifests", "--chunk-ms", &chunk_ms]),
    )?;
    let ready = publisher.first_line(|l| l.contains("\"endpoint\""))?;
    let endpoint = json_field(&ready, "endpoint")?;
    let mut subscriber = Kid::spawn(
        ec_node(&log, file(&sub_log)?)
            .args([
                "moq-subscribe",
                "--remote",
                &endpoint,
                "--stream-id",
                STREAM,
            ])
            .args([
                "--require-manifest",
                "--backfill",
                "0",
                "--chunk-ms",
                &chunk_ms,
            ])
            .arg("--out")
            .arg(work.join("hls")),
    )?;
    eprintln!(
        "bench mesh: {} s warm-up, then {} s of stream with {} ms chunks...",
        args.warmup, args.seconds, args.chunk_ms
    );
    std::thread::sleep(Duration::from_secs(args.warmup));
    let kids = [&sim, &publisher, &subscriber];
    let threads_of = |k: &&Kid| thread_cpu_seconds(k.pid());
    let before: Vec<f64> = kids.iter().map(|k| cpu_seconds(k.pid())).collect();
    let threads_before: Vec<_> = kids.iter().map(threads_of).collect();
    let window_start = unix_micros();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let window_end = unix_micros();
    let after: Vec<f64> = kids.iter().map(|k| cpu_seconds(k.pid())).collect();
    let threads_after: Vec<_> = kids.iter().map(threads_of).collect();
    let threads: Vec<Vec<(String, f64)>> = threads_before
        .iter()
        .zip(&threads_after)
        .map(|(b, a)| {
            a.iter()
                .map(|(name, s)| (name.clone(), s - b.get(name).copied().unwrap_or(0.0)))
                .collect()
        })
        .collect();
    let rss: Vec<(u64, u64)> = kids
        .iter()
        .map(|k| (rss_kib(k.pid()), peak_rss_kib(k.pid())))
        .collect();
    subscriber.terminate();
    publisher.terminate();
    sim.terminate();
    let marks = read_marks(&pub_log)?
        .into_iter()
        .chain(read_marks(&sub_log)?)
        .fold(BTreeMap::new(), |mut by_index, (stage, index, at)| {
            by_index
                .entry(index)
                .or_insert_with(BTreeMap::new)
                .insert(stage, at);
            by_index
        });
    let complete: Vec<BTreeMap<&str, u64>> = marks
        .into_values()
        .filter(|m| Stage::ALL.iter().all(|s| m.contains_key(s.name())))
        .filter(|m| (window_start..window_end).contains(&m[Stage::Cut.name()]))
        .collect();
    report(args, &complete, &before, &after, &rss, &threads);
    Ok(())
}

fn report(
    args: &Args,
    chunks: &[BTreeMap<&str, u64>],
    before: &[f64],
    after: &[f64],
    rss: &[(u64, u64)],
    threads: &[Vec<(String, f64)>],
) {
    println!(
        "bench mesh: 19.39 Mb/s real time, {} ms chunks, {} s measured, {} chunks cut in the window and written",
        args.chunk_ms,
        args.seconds,
        chunks.len()
    );
    let spans = [
        ("total: cut → written", Stage::Cut, Stage::Written),
        ("  encrypt + sign", Stage::Cut, Stage::Sealed),
        ("  hand to sessions", Stage::Sealed, Stage::Sent),
        ("  send (QUIC, loopback)", Stage::Sent, Stage::Received),
        ("  verify + decrypt", Stage::Received, Stage::Verified),
        ("  write segment", Stage::Verified, Stage::Written),
    ];
    println!(
        "{:<26} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p99", "max"
    );
    for (name, from, to) in spans {
        let mut ms: Vec<f64> = chunks
            .iter()
            .map(|m| m[to.name()].saturating_sub(m[from.name()]) as f64 / 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{name:<26} {:>9.2} {:>9.2} {:>9.2}",
            percentile(&ms, 50),
            percentile(&ms, 99),
            ms.last().copied().unwrap_or(0.0)
        );
    }
    let wall = args.seconds as f64;
    println!(
        "{:<26} {:>9} {:>9} {:>9}",
        "process", "CPU %", "RSS MiB", "peak MiB"
    );
    for (i, name) in ["tuner-sim (reference)", "moq-publish", "moq-subscribe"]
        .iter()
        .enumerate()
    {
        println!(
            "{name:<26} {:>9.2} {:>9.1} {:>9.1}",
            (after[i] - before[i]) / wall * 100.0,
            rss[i].0 as f64 / 1024.0,
            rss[i].1 as f64 / 1024.0
        );
        for (thread, seconds) in threads[i].iter().filter(|_| i > 0) {
            println!("  thread {thread:<17} {:>9.2}", seconds / wall * 100.0);
        }
    }
    println!(
        "targets: p99 ≤ 50 ms; ≤ 2 % of a core each; RSS ≤ 64 MiB publisher (default cache), ≤ 32 MiB subscriber"
    );
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The timing marks of a log: (stage, chunk index, unix micros).
fn read_marks(log: &Path) -> Result<Vec<(&'static str, u64, u64)>, Failure> {
    let text = std::fs::read_to_string(log)
        .map_err(|e| Failure::other(format!("{}: {e}", log.display())))?;
    Ok(text
        .lines()
        .filter(|l| l.contains(TARGET))
        .filter_map(|l| {
            let mut words = l.rsplit(' ');
            let at = words.next()?.parse().ok()?;
            let index = words.next()?.parse().ok()?;
            let word = words.next()?;
            let stage = Stage::ALL.iter().find(|s| s.name() == word)?;
            Some((stage.name(), index, at))
        })
        .collect())
}

fn json_field(line: &str, field: &str) -> Result<String, Failure> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v[field].as_str().map(str::to_string))
        .ok_or_else(|| Failure::other(format!("no {field} in {line:?}")))
}

fn file(path: &Path) -> Result<Stdio, Failure> {
    std::fs::File::create(path)
        .map(Stdio::from)
        .map_err(|e| Failure::other(format!("{}: {e}", path.display())))
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
