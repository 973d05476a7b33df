//! `ec-node bench swarm`: what pulling one stream from several uncoordinated sources costs a
//! subscriber, and how long its viewer waits when the source it pulls from dies or lies.
//!
//! Every role is a child process of this executable, on loopback: `tuner-sim` looping the
//! generated 19.39 Mb/s broadcast; a leader (`moq-publish --publish-manifests
//! --publish-chunks=false`); K availability nodes (`moq-publish` of the same channel: the same
//! chunks, so byte-identical objects); S `moq-subscribe`s per phase, the leader as
//! `--remote-manifests`. The reference phase gives each subscriber one `--remote` (node 1); the
//! swarm phases (`--repeats`) give each all K nodes, in order. Faults on demand: `--kill-after`
//! SIGKILLs, inside each swarm window, the node that carries the most live subscriptions (the
//! live subscription goes to the first source whose session is up, which is not always the
//! first `--remote`; the node whose QUIC thread used the most CPU since the subscribers
//! started is the one sending), and starts it again for the next phase; `--tamper` puts
//! `moq-forward --tamper` in front of node 1 in its place.
//!
//! Per subscriber: bytes pulled (the sources' `bytes` in its `--summary-json`) per plaintext
//! byte written, CPU seconds per minute over the window (`proc`), and its segments' write times
//! (its folder polled for mtimes): missing chunk indices, the longest pause between two
//! segments and, after a kill, the time to the next segment of each subscriber the killed node
//! had delivered to. It owns the roles' command lines
//! and these figures; it never looks inside a role beyond its ready line, summary JSON, folder
//! and `/proc`, and never starts a process other than this executable.

use super::proc::{cpu_seconds, thread_cpu_seconds, Kid};
use crate::cli::bounded::ChunkMs;
use crate::cli::Failure;
use argh::FromArgs;
use ec_node::node::subscribe::Latency;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Swarm cost and failover: S subscribers pulling from K availability nodes, next to one source.
#[derive(FromArgs)]
#[argh(subcommand, name = "swarm")]
pub struct Args {
    /// availability nodes, the swarm's sources, 2-14 (default 3)
    #[argh(option, default = "3")]
    sources: usize,
    /// subscribers per phase, 1-50 (default 3)
    #[argh(option, default = "3")]
    subscribers: usize,
    /// seconds measured per phase, after the warm-up (default 30)
    #[argh(option, default = "30")]
    seconds: u64,
    /// seconds from the subscribers' start to the measured window (default 5)
    #[argh(option, default = "5")]
    warmup: u64,
    /// chunk duration in milliseconds (default 1000)
    #[argh(option, default = "ChunkMs::literal(1000)")]
    chunk_ms: ChunkMs,
    /// fault: SIGKILL the first source this many seconds into each swarm window
    #[argh(option)]
    kill_after: Option<u64>,
    /// fault: the first source is `moq-forward --tamper` (all four modes, every 2nd group) in
    /// front of node 1
    #[argh(switch)]
    tamper: bool,
    /// swarm phases, each with fresh subscribers (default 1)
    #[argh(option, default = "1")]
    repeats: u32,
    /// transport stream the simulator loops (default: the generated 19.39 Mb/s broadcast)
    #[argh(option)]
    input: Option<PathBuf>,
}

const STREAM: &str = "ec/bench/v1/swarm";
/// How often the subscribers' folders are polled for new segments.
const POLL: Duration = Duration::from_millis(20);

/// A serving role and the address its ready line gave.
struct Node {
    kid: Kid,
    endpoint: String,
}

/// A running subscriber and where it writes.
struct Subscriber {
    kid: Kid,
    out: PathBuf,
    json: PathBuf,
    log: PathBuf,
}

/// What one subscriber did in a phase.
struct Outcome {
    summary: Value,
    cpu_s: f64,
    /// Segment write times by chunk index.
    writes: BTreeMap<u64, SystemTime>,
    /// Its exit code after SIGTERM, and its last log line when that was not 0.
    exit: Option<(Option<i32>, String)>,
}

/// One phase: its subscribers' outcomes and the kill, if there was one.
struct Phase {
    name: String,
    sources: usize,
    subs: Vec<Outcome>,
    kill: Option<Kill>,
}

/// Which node was killed (its place among the sources), and when.
#[derive(Clone, Copy)]
struct Kill {
    node: usize,
    at: SystemTime,
}

/// Runs the benchmark.
pub fn run(args: Args) -> Result<(), Failure> {
    check(&args)?;
    let input = super::broadcast::input_or_generated(args.input.clone())?;
    let work = super::fresh_work_dir("swarm")?;
    let exe = std::env::current_exe().map_err(|e| Failure::other(e.to_string()))?;
    let roles = Roles {
        exe,
        args: &args,
        work: &work,
    };
    let result = bench(&roles, &input);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn check(args: &Args) -> Result<(), Failure> {
    if !(2..=14).contains(&args.sources) || !(1..=50).contains(&args.subscribers) {
        return Err(Failure::usage(
            "--sources takes 2-14 and --subscribers 1-50",
        ));
    }
    if args.seconds == 0 || args.repeats == 0 {
        return Err(Failure::usage("--seconds and --repeats must be at least 1"));
    }
    if args.kill_after.is_some_and(|k| k >= args.seconds) {
        return Err(Failure::usage("--kill-after must be less than --seconds"));
    }
    if args.kill_after.is_some() && args.tamper {
        return Err(Failure::usage(
            "--kill-after and --tamper are separate faults: give one",
        ));
    }
    Ok(())
}

fn bench(roles: &Roles, input: &Path) -> Result<(), Failure> {
    let args = roles.args;
    // The leader, the nodes, and a spare tuner for a node started again after a kill.
    let (_sim, sim) = roles.simulator(input, args.sources + 2)?;
    let leader = roles.publish(&sim, &["--publish-manifests", "--publish-chunks=false"])?;
    let mut nodes = (0..args.sources)
        .map(|_| roles.publish(&sim, &[]))
        .collect::<Result<Vec<_>, _>>()?;
    eprintln!(
        "bench swarm: {} s warm-up + {} s per phase, 1 reference and {} swarm phase(s)...",
        args.warmup, args.seconds, args.repeats
    );
    let reference = roles.phase("reference", &[nodes[0].endpoint.clone()], &leader, None)?;
    let mut swarms = Vec::new();
    for repeat in 1..=args.repeats {
        if let Some(Kill { node, .. }) = swarms.last().and_then(|p: &Phase| p.kill) {
            nodes[node] = roles.publish(&sim, &[])?;
        }
        let liar = match args.tamper {
            true => Some(roles.tamperer(&nodes[0].endpoint)?),
            false => None,
        };
        let mut remotes: Vec<String> = nodes.iter().map(|n| n.endpoint.clone()).collect();
        if let Some(liar) = &liar {
            remotes[0].clone_from(&liar.endpoint);
        }
        let kill = args.kill_after.map(|secs| (secs, nodes.as_mut_slice()));
        swarms.push(roles.phase(&format!("swarm-{repeat}"), &remotes, &leader, kill)?);
    }
    report(args, &reference, &swarms);
    Ok(())
}

/// How each role is started: this executable, quiet, on loopback, with the run's stream,
/// chunk length and work folder.
struct Roles<'a> {
    exe: PathBuf,
    args: &'a Args,
    work: &'a Path,
}

impl Roles<'_> {
    fn command(&self, role: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.env("RUST_LOG", "warn").stderr(Stdio::null()).arg(role);
        cmd
    }

    /// The simulator and its address.
    fn simulator(&self, input: &Path, tuners: usize) -> Result<(Kid, String), Failure> {
        let mut sim = Kid::spawn(
            self.command("tuner-sim")
                .args(["--listen", "127.0.0.1:0", "--tuners", &tuners.to_string()])
                .arg("--channel")
                .arg(format!("5.1={}", input.display())),
        )?;
        let line = sim.first_line(|l| l.contains("\"listen\""))?;
        let addr = ready_field(&line, "listen")?;
        Ok((sim, addr))
    }

    /// `moq-publish` of the simulator's channel 5.1 with `extra` flags.
    fn publish(&self, sim: &str, extra: &[&str]) -> Result<Node, Failure> {
        let chunk_ms = self.args.chunk_ms.to_string();
        ready(
            self.command("moq-publish")
                .arg("--input")
                .arg(format!("hdhr://{sim}/5.1"))
                .args(["--listen", "127.0.0.1:0", "--stream-id", STREAM])
                .args(["--chunk-ms", &chunk_ms])
                .args(extra),
        )
    }

    /// `moq-forward` of `upstream`'s chunks, tampering with every second group.
    fn tamperer(&self, upstream: &str) -> Result<Node, Failure> {
        let mut cmd = self.command("moq-forward");
        cmd.args(["--remote", upstream, "--listen", "127.0.0.1:0"])
            .args(["--stream-id", STREAM, "--tamper-every", "2"]);
        for mode in ["flip", "swap", "replay", "inject"] {
            cmd.args(["--tamper", mode]);
        }
        ready(&mut cmd)
    }

    /// `moq-subscribe` of `remotes` (in order) with the leader's manifests; `name` names its
    /// folder in the work folder.
    fn subscribe(
        &self,
        name: &str,
        remotes: &[String],
        leader: &Node,
    ) -> Result<Subscriber, Failure> {
        let stem = self.work.join(name);
        std::fs::create_dir_all(&stem).map_err(|e| Failure::other(e.to_string()))?;
        let (out, json, log) = (
            stem.join("hls"),
            stem.join("summary.json"),
            stem.join("stderr.log"),
        );
        let stderr = std::fs::File::create(&log)
            .map_err(|e| Failure::other(format!("{}: {e}", log.display())))?;
        let mut cmd = self.command("moq-subscribe");
        for remote in remotes {
            cmd.args(["--remote", remote]);
        }
        cmd.args([
            "--remote-manifests",
            &leader.endpoint,
            "--stream-id",
            STREAM,
        ])
        .args(["--require-manifest", "--backfill", "0"])
        .args(["--chunk-ms", &self.args.chunk_ms.to_string()])
        .arg("--out")
        .arg(&out)
        .arg("--summary-json")
        .arg(&json)
        .stderr(stderr);
        let kid = Kid::spawn(&mut cmd)?;
        Ok(Subscriber {
            kid,
            out,
            json,
            log,
        })
    }

    /// Runs S subscribers of `remotes` through the warm-up and the window, `kill.0` seconds into
    /// it SIGKILLing the busiest of the nodes `kill.1`; then stops them and reads what they did.
    fn phase(
        &self,
        name: &str,
        remotes: &[String],
        leader: &Node,
        kill: Option<(u64, &mut [Node])>,
    ) -> Result<Phase, Failure> {
        let mut subs = (0..self.args.subscribers)
            .map(|i| self.subscribe(&format!("{name}-{i}"), remotes, leader))
            .collect::<Result<Vec<_>, _>>()?;
        let dirs: Vec<PathBuf> = subs.iter().map(|s| s.out.clone()).collect();
        let done = AtomicBool::new(false);
        let (cpu, kill, exits, writes) = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| watch(&dirs, &done));
            let (cpu, kill) = self.window(&subs, kill);
            let exits: Vec<_> = subs.iter_mut().map(|s| s.kid.terminate()).collect();
            done.store(true, Ordering::Relaxed);
            let writes = watcher.join().unwrap_or_default();
            (cpu, kill, exits, writes)
        });
        let subs = subs
            .iter()
            .zip(cpu)
            .zip(exits)
            .zip(writes)
            .map(|(((sub, cpu_s), exit), writes)| outcome(sub, cpu_s, exit, writes))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Phase {
            name: name.to_string(),
            sources: remotes.len(),
            subs,
            kill,
        })
    }

    /// Sleeps through the warm-up and the window (with the kill inside it); the subscribers'
    /// CPU seconds over the window, and the kill.
    fn window(
        &self,
        subs: &[Subscriber],
        kill: Option<(u64, &mut [Node])>,
    ) -> (Vec<f64>, Option<Kill>) {
        let cpu = || {
            subs.iter()
                .map(|s| cpu_seconds(s.kid.pid()))
                .collect::<Vec<_>>()
        };
        let sending_since: Option<Vec<f64>> = kill
            .as_ref()
            .map(|(_, nodes)| nodes.iter().map(quic_seconds).collect());
        std::thread::sleep(Duration::from_secs(self.args.warmup));
        let before = cpu();
        let mut left = self.args.seconds;
        let kill = kill.zip(sending_since).map(|((after, nodes), since)| {
            std::thread::sleep(Duration::from_secs(after));
            left -= after;
            kill_busiest(nodes, &since)
        });
        std::thread::sleep(Duration::from_secs(left));
        let used = cpu().iter().zip(before).map(|(a, b)| a - b).collect();
        (used, kill)
    }
}

/// SIGKILLs the node whose QUIC thread used the most CPU since `since` (ties: the first).
fn kill_busiest(nodes: &mut [Node], since: &[f64]) -> Kill {
    let sent: Vec<f64> = nodes
        .iter()
        .map(quic_seconds)
        .zip(since)
        .map(|(a, b)| a - b)
        .collect();
    let node = (0..nodes.len())
        .rev()
        .max_by(|&a, &b| sent[a].total_cmp(&sent[b]))
        .unwrap_or(0);
    let at = SystemTime::now();
    let kid = &mut nodes[node].kid.0;
    let _ = kid.kill();
    let _ = kid.wait();
    Kill { node, at }
}

/// CPU seconds of a node's QUIC endpoint thread (`quic ADDR`): what sending cost it.
fn quic_seconds(node: &Node) -> f64 {
    thread_cpu_seconds(node.kid.pid())
        .iter()
        .filter(|(name, _)| name.starts_with("quic"))
        .map(|(_, seconds)| seconds)
        .sum()
}

/// Starts a serving role and reads the endpoint from its ready line.
fn ready(cmd: &mut Command) -> Result<Node, Failure> {
    let mut kid = Kid::spawn(cmd)?;
    let line = kid.first_line(|l| l.contains("\"endpoint\""))?;
    let endpoint = ready_field(&line, "endpoint")?;
    Ok(Node { kid, endpoint })
}

fn ready_field(line: &str, field: &str) -> Result<String, Failure> {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v[field].as_str().map(str::to_string))
        .ok_or_else(|| Failure::other(format!("no {field} in the ready line {line:?}")))
}

/// A stopped subscriber's outcome: its summary JSON and, when it did not exit 0, why.
fn outcome(
    sub: &Subscriber,
    cpu_s: f64,
    exit: Option<i32>,
    writes: BTreeMap<u64, SystemTime>,
) -> Result<Outcome, Failure> {
    let text = std::fs::read_to_string(&sub.json)
        .map_err(|e| Failure::other(format!("{}: {e} (exit {exit:?})", sub.json.display())))?;
    let summary = serde_json::from_str(&text).map_err(|e| Failure::other(e.to_string()))?;
    let last_line = || {
        let log = std::fs::read_to_string(&sub.log).unwrap_or_default();
        log.lines().last().unwrap_or_default().to_string()
    };
    Ok(Outcome {
        summary,
        cpu_s,
        writes,
        exit: (exit != Some(0)).then(|| (exit, last_line())),
    })
}

/// Each folder's segments by chunk index with their write time (mtime), polled every [`POLL`]
/// until `done` (a segment stays in the folder for several chunk periods: none is missed).
fn watch(dirs: &[PathBuf], done: &AtomicBool) -> Vec<BTreeMap<u64, SystemTime>> {
    let mut seen = vec![BTreeMap::new(); dirs.len()];
    loop {
        // Read once more after `done`: the last segments before the stop.
        let last = done.load(Ordering::Relaxed);
        for (dir, seen) in dirs.iter().zip(&mut seen) {
            record_segments(dir, seen);
        }
        if last {
            return seen;
        }
        std::thread::sleep(POLL);
    }
}

fn record_segments(dir: &Path, seen: &mut BTreeMap<u64, SystemTime>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let index = name.to_str().and_then(|n| {
            n.strip_prefix("segment_")?
                .strip_suffix(".ts")?
                .parse()
                .ok()
        });
        let written = entry.metadata().and_then(|m| m.modified());
        if let (Some(index), Ok(at)) = (index, written) {
            seen.entry(index).or_insert(at);
        }
    }
}

fn report(args: &Args, reference: &Phase, swarms: &[Phase]) {
    let fault = match (args.kill_after, args.tamper) {
        (Some(secs), _) => format!(
            "the node carrying the most live subscriptions SIGKILLed {secs} s into each swarm window"
        ),
        (None, true) => "source 1 is moq-forward --tamper flip,swap,replay,inject every 2nd group, in front of node 1".into(),
        (None, false) => "none".into(),
    };
    println!(
        "bench swarm: {} availability nodes + a manifests-only leader, {} subscribers per phase, {} ms chunks, {} s measured after {} s warm-up; fault: {fault}",
        args.sources, args.subscribers, args.chunk_ms, args.seconds, args.warmup
    );
    println!("| phase | sources | pulled ÷ written, mean / max | CPU s per subscriber per min, mean / max | chunks written, min | missing chunks | longest pause ms, p50 / max | latency p99 ms, max | killed node → its subscribers' next segment ms, p50 / max (n) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for phase in std::iter::once(reference).chain(swarms) {
        print_row(args, phase);
    }
    if args.kill_after.is_some() {
        let gaps = histogram(swarms.iter().flat_map(failover_gaps));
        println!(
            "kill → next segment of each subscriber the killed node had delivered to, all swarm phases: p50 {} ms, p99 {} ms, max {} ms ({} subscribers; a segment is due every {} ms)",
            ms(gaps.percentile(50)),
            ms(gaps.percentile(99)),
            ms(gaps.percentile(100)),
            gaps.count(),
            args.chunk_ms
        );
    }
    for phase in swarms {
        print_sources(phase);
    }
    for phase in std::iter::once(reference).chain(swarms) {
        print_exits(phase);
    }
    println!(
        "pulled ÷ written: the sources' object bytes in each subscriber's summary (duplicates included) over the plaintext it wrote (an object is 50 bytes more); goal ≤ 1.05 without faults"
    );
}

fn print_row(args: &Args, phase: &Phase) {
    let ratios: Vec<f64> = phase
        .subs
        .iter()
        .map(|o| pulled_per_written(&o.summary))
        .collect();
    let per_min: Vec<f64> = phase
        .subs
        .iter()
        .map(|o| o.cpu_s / args.seconds as f64 * 60.0)
        .collect();
    let chunks = phase
        .subs
        .iter()
        .map(|o| o.summary["chunks"].as_u64().unwrap_or(0))
        .min();
    let missing: u64 = phase.subs.iter().map(|o| missing(&o.writes)).sum();
    let pauses = histogram(
        phase
            .subs
            .iter()
            .filter_map(|o| longest_pause_ms(&o.writes)),
    );
    let latency = phase
        .subs
        .iter()
        .filter_map(|o| o.summary["latency_ms"]["p99"].as_u64())
        .max();
    let gaps = histogram(failover_gaps(phase));
    let kill = match phase.kill {
        Some(Kill { node, .. }) => format!(
            "node {}: {} / {} ({})",
            node + 1,
            ms(gaps.percentile(50)),
            ms(gaps.percentile(100)),
            gaps.count()
        ),
        None => "–".into(),
    };
    println!(
        "| {} | {} | {} | {} | {} | {missing} | {} / {} | {} | {kill} |",
        phase.name,
        phase.sources,
        mean_max(&ratios, 3),
        mean_max(&per_min, 2),
        chunks.unwrap_or(0),
        ms(pauses.percentile(50)),
        ms(pauses.percentile(100)),
        ms(latency),
    );
}

/// Per subscriber of a swarm phase, what each source delivered and where it stands.
fn print_sources(phase: &Phase) {
    for (i, o) in phase.subs.iter().enumerate() {
        let sources = o.summary["sources"].as_array().cloned().unwrap_or_default();
        let parts: Vec<String> = sources
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let rejected: u64 = s["rejections"]
                    .as_object()
                    .map_or(0, |r| r.values().filter_map(Value::as_u64).sum());
                format!(
                    "source {} {}: {} chunks, {:.1} MB, {} timeouts, {rejected} rejected, {} reconnects",
                    n + 1,
                    s["state"].as_str().unwrap_or("?"),
                    s["chunks"],
                    s["bytes"].as_u64().unwrap_or(0) as f64 / 1e6,
                    s["timeouts"],
                    s["reconnects"]
                )
            })
            .collect();
        println!(
            "{} subscriber {} (longest pause {} ms): {}",
            phase.name,
            i + 1,
            ms(longest_pause_ms(&o.writes)),
            parts.join("; ")
        );
    }
}

fn print_exits(phase: &Phase) {
    for (i, o) in phase.subs.iter().enumerate() {
        if let Some((code, last_line)) = &o.exit {
            println!(
                "{} subscriber {} exited {code:?} before it was stopped: {last_line}",
                phase.name,
                i + 1
            );
        }
    }
}

/// Bytes pulled from every source per plaintext byte written.
fn pulled_per_written(summary: &Value) -> f64 {
    let pulled: u64 = summary["sources"]
        .as_array()
        .map_or(0, |s| s.iter().filter_map(|s| s["bytes"].as_u64()).sum());
    pulled as f64 / summary["bytes"].as_u64().unwrap_or(0).max(1) as f64
}

/// Chunk indices between the first and the last segment written that were never written.
fn missing(writes: &BTreeMap<u64, SystemTime>) -> u64 {
    match (writes.first_key_value(), writes.last_key_value()) {
        (Some((first, _)), Some((last, _))) => last - first + 1 - writes.len() as u64,
        _ => 0,
    }
}

fn longest_pause_ms(writes: &BTreeMap<u64, SystemTime>) -> Option<u64> {
    let mut times: Vec<SystemTime> = writes.values().copied().collect();
    times.sort();
    times.windows(2).map(|w| millis_between(w[0], w[1])).max()
}

/// Per subscriber the killed node had delivered chunks to: milliseconds from the kill to its
/// next segment.
fn failover_gaps(phase: &Phase) -> impl Iterator<Item = u64> + '_ {
    phase.kill.into_iter().flat_map(|kill| {
        phase
            .subs
            .iter()
            .filter(move |o| o.summary["sources"][kill.node]["chunks"].as_u64() > Some(0))
            .filter_map(move |o| {
                let next = o.writes.values().filter(|&&t| t > kill.at).min()?;
                Some(millis_between(kill.at, *next))
            })
    })
}

/// Milliseconds, counted for percentiles.
fn histogram(values: impl Iterator<Item = u64>) -> Latency {
    let mut histogram = Latency::default();
    values.for_each(|ms| histogram.record(ms));
    histogram
}

fn millis_between(from: SystemTime, to: SystemTime) -> u64 {
    to.duration_since(from).map_or(0, |d| d.as_millis() as u64)
}

fn mean_max(values: &[f64], decimals: usize) -> String {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let max = values.iter().copied().fold(0.0, f64::max);
    format!("{mean:.decimals$} / {max:.decimals$}")
}

fn ms(value: Option<u64>) -> String {
    value.map_or("–".into(), |v| v.to_string())
}
