//! `ec-node bench soak`: does the mesh leak over a long run? Memory, file descriptors and
//! threads of every process, sampled at an interval, and the slope of each per hour; and every
//! chunk a subscriber should have written.
//!
//! Every role is a child process of this executable, on loopback: `tuner-sim` looping the
//! generated 19.39 Mb/s broadcast; one `moq-publish --publish-manifests` (listening); one
//! verifying `moq-forward` whose `--remote` is the publisher (both tracks on one connection,
//! trusting the publisher's node id), reached through an impairment proxy; two `moq-subscribe
//! --require-manifest` of the forwarder (the manifests from the publisher, directly; with
//! `--forwarded-manifests` from the forwarder, trusting the publisher's node id) and one of the
//! publisher through a second proxy. Every role runs with `EC_NODE_UDP_PAYLOAD=1350`, so
//! datagrams are sized for a real path. After a warm-up (caches fill, sessions settle) the bench reads, for each process and at
//! each sample, `VmRSS`, the entries of `/proc/PID/fd` and `Threads` (`proc`), and at the end
//! fits a least-squares line to each series: the slope per hour is the figure (goal: flat). Then
//! it stops the roles with SIGTERM, subscribers first, and reads each subscriber's
//! `index.m3u8` (an EVENT playlist: every segment written is listed) and `--summary-json`: chunk
//! indices missing between its first and its last segment are what the run lost. Segment files
//! older than the newest few are deleted during the run (the playlist keeps naming them), so an
//! hour at 2 MB/s per subscriber does not fill the disk.
//!
//! The impairment is its own, small: the UDP proxy of `tests/testkit/src/impair.rs` is test support,
//! which the binary cannot use, and the soak needs only a fixed loss and a delay with jitter.
//! [`Impair`] is the sans-I/O decision (seeded, time as an argument); [`Proxy`] is the socket
//! shell, two threads, one per direction, answering the client that sent last — so each proxy
//! carries one connection (a second one from another port would take the first one's answers;
//! an early version of this bench dialled the forwarder's manifests peer through the same proxy
//! and measured that instead of the node).
//!
//! Exit 0 when every process stayed up and no subscriber missed a chunk; otherwise 1 with one
//! line naming the first cause. Slopes are printed, never judged: a short run's slope is noise.

use super::proc::{open_fds, rss_kib, thread_count, Kid};
use crate::cli::bounded::ChunkMs;
use crate::cli::Failure;
use argh::FromArgs;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Leak check: RSS, open fds and threads of every role over a long run, and missing chunks.
#[derive(FromArgs)]
#[argh(subcommand, name = "soak")]
pub struct Args {
    /// minutes measured after the warm-up, fractions allowed (default 60)
    #[argh(option, default = "60.0")]
    minutes: f64,
    /// seconds from the subscribers' start to the first sample (default 30)
    #[argh(option, default = "30")]
    warmup: u64,
    /// seconds between samples (default 60; shortened so the window holds at least 6 samples)
    #[argh(option, default = "60")]
    interval: u64,
    /// chunk duration in milliseconds (default 1000)
    #[argh(option, default = "ChunkMs::literal(1000)")]
    chunk_ms: ChunkMs,
    /// datagrams the proxies lose each way, in percent (default 1)
    #[argh(option, default = "1.0")]
    loss_percent: f64,
    /// one-way delay the proxies add, in milliseconds (default 20)
    #[argh(option, default = "20")]
    delay_ms: u64,
    /// each datagram's delay is the delay ± up to this many milliseconds (default 10)
    #[argh(option, default = "10")]
    jitter_ms: u64,
    /// seed of the proxies' random draws (default 15)
    #[argh(option, default = "15")]
    seed: u64,
    /// the subscribers' --idle-timeout in seconds (default 10, theirs): how long a stalled
    /// path may go without an object before a subscriber exits
    #[argh(option, default = "10")]
    idle_timeout: u64,
    /// subscribers 1 and 2 take the manifests from the forwarder too (trusting the
    /// publisher's node id), not from the publisher
    #[argh(switch)]
    forwarded_manifests: bool,
    /// transport stream the simulator loops (default: the generated 19.39 Mb/s broadcast)
    #[argh(option)]
    input: Option<PathBuf>,
}

const STREAM: &str = "ec/bench/v1/soak";
/// A real path's UDP payload, for every role.
const PATH_PAYLOAD: (&str, &str) = ("EC_NODE_UDP_PAYLOAD", "1350");
/// Segment files kept behind a subscriber's newest; older ones are deleted (still listed).
const KEEP_SEGMENTS: u64 = 10;
/// How often the roles are checked for an early exit and old segments are deleted.
const TICK: Duration = Duration::from_secs(1);

/// Runs the benchmark.
pub fn run(args: Args) -> Result<(), Failure> {
    check(&args)?;
    let input = super::broadcast::input_or_generated(args.input.clone())?;
    let work = super::fresh_work_dir("soak")?;
    let result = soak(&args, &input, &work);
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("bench soak: logs and folders kept in {}", work.display()),
    }
    result
}

fn check(args: &Args) -> Result<(), Failure> {
    if !(args.minutes > 0.0 && args.minutes <= 7.0 * 24.0 * 60.0) {
        return Err(Failure::usage("--minutes takes more than 0, up to a week"));
    }
    if args.interval == 0 {
        return Err(Failure::usage("--interval must be at least 1"));
    }
    if !(0.0..=50.0).contains(&args.loss_percent) || args.jitter_ms > args.delay_ms {
        return Err(Failure::usage(
            "--loss-percent takes 0-50 and --jitter-ms at most --delay-ms",
        ));
    }
    Ok(())
}

/// A running role: its name in the tables, the process, its stderr log.
struct Role {
    name: String,
    kid: Kid,
    log: PathBuf,
}

/// One sample of one process.
#[derive(Clone, Copy, Default)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

impl Sample {
    fn of(pid: u32) -> Sample {
        Sample {
            rss_kib: rss_kib(pid),
            fds: open_fds(pid),
            threads: thread_count(pid),
        }
    }
}

/// A subscriber's folder and summary, and what it reads from.
struct Viewer {
    out: PathBuf,
    json: PathBuf,
    source: &'static str,
}

fn soak(args: &Args, input: &Path, work: &Path) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::other(e.to_string()))?;
    let roles = Roles { exe, work };
    let chunk_ms = args.chunk_ms.to_string();
    let impair = Impair::new(args, 0);
    let (sim, sim_addr) = roles.start(
        "tuner-sim",
        "listen",
        roles
            .command("tuner-sim")
            .args(["--listen", "127.0.0.1:0", "--tuners", "1", "--channel"])
            .arg(format!("5.1={}", input.display())),
    )?;
    let (publisher, pub_endpoint) = roles.start(
        "moq-publish",
        "endpoint",
        roles
            .command("moq-publish")
            .arg("--input")
            .arg(format!("hdhr://{sim_addr}/5.1"))
            .args(["--listen", "127.0.0.1:0", "--stream-id", STREAM])
            .args(["--publish-manifests", "--chunk-ms", &chunk_ms]),
    )?;
    let (pub_id, pub_addr) = split_endpoint(&pub_endpoint)?;
    let to_forwarder = Proxy::start(pub_addr, impair.clone(), args.seed)?;
    let to_subscriber = Proxy::start(pub_addr, impair, args.seed.wrapping_add(1))?;
    let upstream = format!("{pub_id}@{}", to_forwarder.addr);
    let (forwarder, fwd_endpoint) = roles.start(
        "moq-forward",
        "endpoint",
        roles
            .command("moq-forward")
            // Both tracks over one connection: the proxy answers one client at a time (a
            // second connection through it, from another port, would take its answers).
            .args(["--remote", &upstream, "--trust", pub_id])
            .args(["--listen", "127.0.0.1:0", "--stream-id", STREAM]),
    )?;
    let proxied = format!("{pub_id}@{}", to_subscriber.addr);
    // Subscribers 1 and 2 take the manifests from the publisher (as in USAGE's swarm
    // walkthrough), or with --forwarded-manifests from the forwarder too.
    let from_forwarder: &[&str] = match args.forwarded_manifests {
        true => &["--remote", &fwd_endpoint, "--trust", pub_id],
        false => &[
            "--remote",
            &fwd_endpoint,
            "--remote-manifests",
            &pub_endpoint,
        ],
    };
    let plan: [(&[&str], &'static str); 3] = [
        (from_forwarder, "moq-forward"),
        (from_forwarder, "moq-forward"),
        (&["--remote", proxied.as_str()], "moq-publish via proxy"),
    ];
    let mut subscribers = Vec::new();
    let mut viewers = Vec::new();
    for (i, (remotes, source)) in plan.into_iter().enumerate() {
        let dir = work.join(format!("subscriber-{}", i + 1));
        let viewer = Viewer {
            out: dir.join("hls"),
            json: dir.join("summary.json"),
            source,
        };
        let mut cmd = roles.command("moq-subscribe");
        cmd.args(remotes)
            .args([
                "--stream-id",
                STREAM,
                "--require-manifest",
                "--backfill",
                "0",
            ])
            .args(["--chunk-ms", &chunk_ms])
            .args(["--idle-timeout", &args.idle_timeout.to_string()])
            .arg("--out")
            .arg(&viewer.out)
            .arg("--summary-json")
            .arg(&viewer.json);
        subscribers.push(roles.spawn(&format!("subscriber {}", i + 1), &mut cmd)?);
        viewers.push(viewer);
    }
    let window = Duration::from_secs_f64(args.minutes * 60.0);
    let interval = Duration::from_secs(args.interval).min(window / 5);
    let interval = interval.max(Duration::from_secs(1));
    eprintln!(
        "bench soak: {} s warm-up, then {:.1} min sampled every {} s...",
        args.warmup,
        args.minutes,
        interval.as_secs()
    );
    let mut all: Vec<Role> = [sim, publisher, forwarder]
        .into_iter()
        .chain(subscribers)
        .collect();
    let dirs: Vec<&Path> = viewers.iter().map(|v| v.out.as_path()).collect();
    let mut run = Run {
        roles: &mut all,
        dirs: &dirs,
        started: Instant::now(),
        exited: None,
    };
    run.sleep(Duration::from_secs(args.warmup));
    let series = match run.exited {
        Some(_) => Vec::new(),
        None => run.sample(window, interval),
    };
    let exited = run.exited.take();
    // Subscribers first (they write their summaries), then the forwarder, publisher, simulator.
    let codes: Vec<Option<i32>> = all.iter_mut().rev().map(|r| r.kid.terminate()).collect();
    let stats = [
        ("moq-forward ↔ moq-publish", to_forwarder.stop()),
        ("subscriber 3 ↔ moq-publish", to_subscriber.stop()),
    ];
    let outcomes: Vec<Outcome> = viewers.iter().map(Outcome::read).collect();
    report(args, interval, &all, &series, &viewers, &outcomes, &stats);
    for (role, code) in all.iter().zip(codes.iter().rev()) {
        if *code != Some(0) {
            println!("{} exited {code:?} after SIGTERM", role.name);
        }
    }
    verdict(&all, exited, &viewers, &outcomes)
}

/// How each role is started: this executable, quiet, sized for a real path, its stderr in a
/// log in the work folder.
struct Roles<'a> {
    exe: PathBuf,
    work: &'a Path,
}

impl Roles<'_> {
    fn command(&self, role: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        // The roles' logs (kept in the work folder) say what went wrong; RUST_LOG asks for more.
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
        cmd.env("RUST_LOG", level)
            .env(PATH_PAYLOAD.0, PATH_PAYLOAD.1)
            .stdin(Stdio::null())
            .arg(role);
        cmd
    }

    /// A role that prints a JSON ready line; the role and the line's `field`.
    fn start(&self, name: &str, field: &str, cmd: &mut Command) -> Result<(Role, String), Failure> {
        let log = self.log(name)?;
        let mut kid = Kid::spawn(cmd.stderr(file(&log)?))?;
        let line = kid.first_line(|l| l.contains(&format!("\"{field}\"")))?;
        let value = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v[field].as_str().map(str::to_string))
            .ok_or_else(|| Failure::other(format!("no {field} in the ready line {line:?}")))?;
        let name = name.to_string();
        Ok((Role { name, kid, log }, value))
    }

    /// A role whose stdout is not read.
    fn spawn(&self, name: &str, cmd: &mut Command) -> Result<Role, Failure> {
        let log = self.log(name)?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file(&log)?)
            .spawn()
            .map_err(|e| Failure::other(format!("start {name}: {e}")))?;
        let (name, kid) = (name.to_string(), Kid(child));
        Ok(Role { name, kid, log })
    }

    fn log(&self, name: &str) -> Result<PathBuf, Failure> {
        let dir = self.work.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).map_err(|e| Failure::other(e.to_string()))?;
        Ok(dir.join("stderr.log"))
    }
}

/// The roles while the soak runs, and the first of them that exited on its own.
struct Run<'a> {
    roles: &'a mut [Role],
    dirs: &'a [&'a Path],
    started: Instant,
    /// The role's place, its exit code and when, since the start.
    exited: Option<(usize, Option<i32>, Duration)>,
}

impl Run<'_> {
    /// Sleeps for `span` in ticks, watching the roles and pruning old segments; returns early
    /// when a role exited.
    fn sleep(&mut self, span: Duration) {
        let until = Instant::now() + span;
        while self.exited.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(TICK));
            for (i, role) in self.roles.iter_mut().enumerate() {
                if let Ok(Some(status)) = role.kid.0.try_wait() {
                    self.exited = Some((i, status.code(), self.started.elapsed()));
                    return;
                }
            }
            for dir in self.dirs {
                prune(dir);
            }
        }
    }

    /// Samples every role (and this process, which runs the proxies) at `interval` through
    /// `window`: per process, the samples with their time since the first, in seconds.
    fn sample(&mut self, window: Duration, interval: Duration) -> Vec<Vec<(f64, Sample)>> {
        let pids: Vec<u32> = self
            .roles
            .iter()
            .map(|r| r.kid.pid())
            .chain([std::process::id()])
            .collect();
        let mut series = vec![Vec::new(); pids.len()];
        let first = Instant::now();
        let mut next = Duration::ZERO;
        loop {
            let at = first.elapsed().as_secs_f64();
            let samples: Vec<Sample> = pids.iter().map(|&p| Sample::of(p)).collect();
            let line: Vec<String> = self
                .roles
                .iter()
                .map(|r| r.name.as_str())
                .chain(["bench"])
                .zip(&samples)
                .map(|(name, s)| {
                    let mib = s.rss_kib as f64 / 1024.0;
                    format!("{name} {mib:.1} MiB {} fds {} threads", s.fds, s.threads)
                })
                .collect();
            println!("sample {at:>7.0} s: {}", line.join("; "));
            for (series, sample) in series.iter_mut().zip(samples) {
                series.push((at, sample));
            }
            if next >= window {
                return series;
            }
            next = (next + interval).min(window);
            self.sleep(next.saturating_sub(first.elapsed()));
            if self.exited.is_some() {
                return series;
            }
        }
    }
}

/// Deletes a subscriber's segment files more than [`KEEP_SEGMENTS`] behind its newest.
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let segments: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((segment_index(e.file_name().to_str()?)?, e.path())))
        .collect();
    let newest = segments.iter().map(|s| s.0).max().unwrap_or(0);
    for (index, path) in segments {
        if index + KEEP_SEGMENTS < newest {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn segment_index(name: &str) -> Option<u64> {
    name.strip_prefix("segment_")?
        .strip_suffix(".ts")?
        .parse()
        .ok()
}

/// What a stopped subscriber left: the indices its playlist lists, its discontinuities and
/// its summary.
struct Outcome {
    indices: Vec<u64>,
    discontinuities: usize,
    summary: Option<Value>,
}

impl Outcome {
    fn read(viewer: &Viewer) -> Outcome {
        let playlist = std::fs::read_to_string(viewer.out.join("index.m3u8")).unwrap_or_default();
        let summary = std::fs::read_to_string(&viewer.json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Outcome {
            indices: playlist.lines().filter_map(segment_index).collect(),
            discontinuities: playlist
                .lines()
                .filter(|l| *l == "#EXT-X-DISCONTINUITY")
                .count(),
            summary,
        }
    }

    /// Chunk indices between the first and the last segment that were never written.
    fn missing(&self) -> Vec<u64> {
        let mut missing = Vec::new();
        for pair in self.indices.windows(2) {
            missing.extend(pair[0] + 1..pair[1]);
        }
        missing
    }
}

/// Least-squares slope of `(seconds, value)` points, per hour (0 with fewer than 2 points).
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v) in points {
        num += (t - mean_t) * (v - mean_v);
        den += (t - mean_t) * (t - mean_t);
    }
    if den == 0.0 {
        return 0.0;
    }
    num / den * 3600.0
}

fn report(
    args: &Args,
    interval: Duration,
    roles: &[Role],
    series: &[Vec<(f64, Sample)>],
    viewers: &[Viewer],
    outcomes: &[Outcome],
    stats: &[(&str, LaneStats); 2],
) {
    let samples = series.first().map_or(0, Vec::len);
    println!(
        "bench soak: tuner-sim → moq-publish → proxy → verifying moq-forward → subscribers 1, 2 (manifests from {}); moq-publish → proxy → subscriber 3; proxies {} % loss, {} ± {} ms each way (seed {}); {} ms chunks, subscribers' idle timeout {} s; {:.1} min after {} s warm-up, {samples} samples every {} s",
        match args.forwarded_manifests {
            true => "the forwarder",
            false => "the publisher",
        },
        args.loss_percent,
        args.delay_ms,
        args.jitter_ms,
        args.seed,
        args.chunk_ms,
        args.idle_timeout,
        args.minutes,
        args.warmup,
        interval.as_secs()
    );
    println!("| process | RSS MiB first / last / max | RSS MiB per hour | fds first / last / max | fds per hour | threads first / last / max | threads per hour |");
    println!("|---|---|---|---|---|---|---|");
    let names = roles
        .iter()
        .map(|r| r.name.as_str())
        .chain(["bench (the 2 proxies)"]);
    for (name, points) in names.zip(series) {
        let column = |f: fn(&Sample) -> f64, precision: usize| {
            let values: Vec<(f64, f64)> = points.iter().map(|(t, s)| (*t, f(s))).collect();
            let first = values.first().map_or(0.0, |v| v.1);
            let last = values.last().map_or(0.0, |v| v.1);
            let max = values.iter().map(|v| v.1).fold(0.0, f64::max);
            (
                format!("{first:.precision$} / {last:.precision$} / {max:.precision$}"),
                format!("{:+.2}", slope_per_hour(&values)),
            )
        };
        let rss = column(|s| s.rss_kib as f64 / 1024.0, 1);
        let fds = column(|s| s.fds as f64, 0);
        let threads = column(|s| s.threads as f64, 0);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            rss.0, rss.1, fds.0, fds.1, threads.0, threads.1
        );
    }
    println!("| subscriber | from | chunks written | first – last index | missing | discontinuities | rejections | late | latency p50 / p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, (viewer, o)) in viewers.iter().zip(outcomes).enumerate() {
        let summary = o.summary.clone().unwrap_or(Value::Null);
        let rejections: u64 = summary["rejections"]
            .as_object()
            .map_or(0, |r| r.values().filter_map(Value::as_u64).sum());
        let missing = o.missing();
        println!(
            "| {} | {} | {} | {} – {} | {} | {} | {rejections} | {} | {} / {} |",
            i + 1,
            viewer.source,
            o.indices.len(),
            o.indices.first().map_or("–".into(), u64::to_string),
            o.indices.last().map_or("–".into(), u64::to_string),
            missing.len(),
            o.discontinuities,
            summary["late"],
            summary["latency_ms"]["p50"],
            summary["latency_ms"]["p99"],
        );
        if !missing.is_empty() {
            println!("subscriber {} missed {}", i + 1, list(&missing));
        }
    }
    for (path, s) in stats {
        println!(
            "proxy {path}: up {} in, {} lost; down {} in, {} lost",
            s.up.0, s.up.1, s.down.0, s.down.1
        );
    }
}

/// Up to 20 indices, then how many more.
fn list(indices: &[u64]) -> String {
    let shown: Vec<String> = indices.iter().take(20).map(u64::to_string).collect();
    match indices.len() {
        n if n > 20 => format!("{n} chunks: {} and {} more", shown.join(", "), n - 20),
        n => format!("{n} chunk(s): {}", shown.join(", ")),
    }
}

/// Exit 0, or the first cause: a role that exited on its own, a subscriber without a summary
/// or a segment, a missed chunk.
fn verdict(
    roles: &[Role],
    exited: Option<(usize, Option<i32>, Duration)>,
    viewers: &[Viewer],
    outcomes: &[Outcome],
) -> Result<(), Failure> {
    if let Some((i, code, at)) = exited {
        let log = std::fs::read_to_string(&roles[i].log).unwrap_or_default();
        let last = log.lines().last().unwrap_or_default();
        return Err(Failure::other(format!(
            "{} exited on its own (code {code:?}) {:.0} s into the run: {last}",
            roles[i].name,
            at.as_secs_f64()
        )));
    }
    for (i, (viewer, o)) in viewers.iter().zip(outcomes).enumerate() {
        let n = i + 1;
        if o.summary.is_none() {
            let json = viewer.json.display();
            return Err(Failure::other(format!(
                "subscriber {n} left no summary ({json})"
            )));
        }
        if o.indices.is_empty() {
            return Err(Failure::other(format!("subscriber {n} wrote no segment")));
        }
        let missing = o.missing();
        if !missing.is_empty() {
            return Err(Failure::other(format!(
                "subscriber {n} missed {}",
                list(&missing)
            )));
        }
    }
    println!("soak: every process stayed up; no subscriber missed a chunk");
    Ok(())
}

fn split_endpoint(endpoint: &str) -> Result<(&str, SocketAddr), Failure> {
    endpoint
        .split_once('@')
        .and_then(|(id, addr)| Some((id, addr.parse().ok()?)))
        .ok_or_else(|| Failure::other(format!("not NODE_ID@IP:PORT: {endpoint:?}")))
}

fn file(path: &Path) -> Result<Stdio, Failure> {
    std::fs::File::create(path)
        .map(Stdio::from)
        .map_err(|e| Failure::other(format!("{}: {e}", path.display())))
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny reproducible generator.
#[derive(Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction's impairment: independent loss, then a delay of `delay ± jitter` (uniform;
/// datagrams closer together than the spread overtake each other). Sans-I/O: fed each
/// datagram's arrival time, it answers when the datagram leaves; no socket, clock or thread.
#[derive(Clone)]
struct Impair {
    loss: f64,
    delay: Duration,
    jitter: Duration,
    rng: SplitMix64,
}

impl Impair {
    fn new(args: &Args, seed: u64) -> Impair {
        Impair {
            loss: args.loss_percent / 100.0,
            delay: Duration::from_millis(args.delay_ms),
            jitter: Duration::from_millis(args.jitter_ms),
            rng: SplitMix64(seed),
        }
    }

    /// When a datagram that arrived at `now` (since the start) leaves; `None`: it is lost.
    fn on_datagram(&mut self, now: Duration) -> Option<Duration> {
        if self.loss > 0.0 && self.rng.next_f64() < self.loss {
            return None;
        }
        let offset = (self.rng.next_f64() * 2.0 - 1.0) * self.jitter.as_secs_f64();
        Some(now + Duration::from_secs_f64((self.delay.as_secs_f64() + offset).max(0.0)))
    }
}

/// Datagrams in and lost, per direction.
#[derive(Clone, Copy, Default)]
struct LaneStats {
    up: (u64, u64),
    down: (u64, u64),
}

/// A UDP proxy on `127.0.0.1:0` in front of one target: what a client sends goes to the target
/// from a socket of the proxy's own, what comes back goes to the client that sent last; each
/// direction through its own [`Impair`]. One thread per direction; stopped and joined on
/// [`Proxy::stop`] or drop.
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    lanes: Vec<JoinHandle<(u64, u64)>>,
}

/// The longest a lane blocks in a read before it looks at its queue and the stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(20);

impl Proxy {
    fn start(target: SocketAddr, impair: Impair, seed: u64) -> Result<Proxy, Failure> {
        let io = |e: std::io::Error| Failure::other(format!("impairment proxy: {e}"));
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io)?;
        let back = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io)?;
        back.connect(target).map_err(io)?;
        let addr = front.local_addr().map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        // One generator per direction, so one direction's traffic never shifts the other's.
        let mut seeds = SplitMix64(seed);
        let mut up = impair.clone();
        up.rng = SplitMix64(seeds.next_u64());
        let mut down = impair;
        down.rng = SplitMix64(seeds.next_u64());
        let start = Instant::now();
        let lanes = vec![
            Lane {
                rx: front.try_clone().map_err(io)?,
                tx: back.try_clone().map_err(io)?,
                impair: up,
                client: client.clone(),
                up: true,
            }
            .spawn(start, stop.clone()),
            Lane {
                rx: back,
                tx: front,
                impair: down,
                client,
                up: false,
            }
            .spawn(start, stop.clone()),
        ];
        Ok(Proxy { addr, stop, lanes })
    }

    /// Stops the lanes; what they did.
    fn stop(mut self) -> LaneStats {
        self.halt()
    }

    fn halt(&mut self) -> LaneStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut counts = self.lanes.drain(..).map(|l| l.join().unwrap_or_default());
        LaneStats {
            up: counts.next().unwrap_or_default(),
            down: counts.next().unwrap_or_default(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One direction: reads `rx`, holds each datagram until its time, sends it on `tx` (up: to the
/// connected target; down: to the client that sent last).
struct Lane {
    rx: UdpSocket,
    tx: UdpSocket,
    impair: Impair,
    client: Arc<Mutex<Option<SocketAddr>>>,
    up: bool,
}

impl Lane {
    fn spawn(self, start: Instant, stop: Arc<AtomicBool>) -> JoinHandle<(u64, u64)> {
        std::thread::spawn(move || self.run(start, &stop))
    }

    /// Datagrams in and lost, once `stop` is set.
    fn run(mut self, start: Instant, stop: &AtomicBool) -> (u64, u64) {
        let mut queue: BinaryHeap<Reverse<(Duration, u64, Vec<u8>)>> = BinaryHeap::new();
        let (mut received, mut lost, mut seq) = (0, 0, 0u64);
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            let now = start.elapsed();
            while queue.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                let Some(Reverse((_, _, bytes))) = queue.pop() else {
                    break;
                };
                self.send(&bytes);
            }
            let wait = queue.peek().map_or(READ_TIMEOUT, |Reverse((at, _, _))| {
                at.saturating_sub(now).min(READ_TIMEOUT)
            });
            let _ = self
                .rx
                .set_read_timeout(Some(wait.max(Duration::from_micros(100))));
            let Ok((n, from)) = self.rx.recv_from(&mut buf) else {
                continue;
            };
            received += 1;
            if self.up {
                *self.client.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
            }
            match self.impair.on_datagram(start.elapsed()) {
                Some(at) => {
                    seq += 1;
                    queue.push(Reverse((at, seq, buf[..n].to_vec())));
                }
                None => lost += 1,
            }
        }
        (received, lost)
    }

    fn send(&self, bytes: &[u8]) {
        let _ = match self.up {
            true => self.tx.send(bytes),
            false => match *self.client.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(to) => self.tx.send_to(bytes, to),
                None => return,
            },
        };
    }
}
