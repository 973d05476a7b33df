//! `ec-node bench serve`: V viewers of one channel of `ec-node serve` over loopback HTTP, next
//! to a plain copier that writes the same bytes to V sockets, measured in the same run.
//!
//! `ec-node tuner-sim` (a process) loops the broadcast-like file at its real-time rate; `ec-node
//! serve` (a process) pools it as its tuner and keeps the channel open for the whole run (one
//! first viewer opens it). For each V, V viewers of `/auto/v5.1` are threads of this process:
//! they connect spread evenly over one chunk duration (so joins meet every phase of the chunk
//! cycle), each records the time from its connect to its first body byte (the join latency of
//! an open channel), then they read with 256 KiB reads. The window starts half a chunk after a
//! chunk reached the viewers and lasts whole chunk periods, so both ends fall between deliveries;
//! over it the figures are the viewers' bytes, the channel's bytes in (`/status.json`), the
//! serving process's CPU seconds (and those of its connection threads) from /proc, its peak RSS,
//! and the chunks it skipped or viewers it dropped for being slow.
//!
//! The reference, same V, same clients, same procedure: this command again as a process in a
//! hidden mode (`--copier-chunk-bytes`), a plain copier that accepts each connection on a thread
//! of its own, answers the request head, and with blocking writes sends the newest chunk at
//! once and then each chunk at its real-time instant (every `--chunk-ms`; chunks of the average
//! size serve published, cut from the same file). Within a chunk both write as fast as the client
//! reads. The copier does no capture, no chunking and no bookkeeping: the difference is what
//! serve costs above moving the bytes.

use super::proc::{cpu_seconds, peak_rss_kib, Kid};
use crate::cli::bounded::ChunkMs;
use crate::cli::Failure;
use argh::FromArgs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// HTTP fan-out of one channel by `ec-node serve` to many viewers, next to a plain copier.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct Args {
    /// seconds measured per run, 1-3600, rounded up to whole chunks (default 10)
    #[argh(option, default = "10")]
    seconds: u64,
    /// viewer counts, comma-separated, 1-1000 each (default 1,10,50,200)
    #[argh(option, default = "String::from(\"1,10,50,200\")")]
    viewers: String,
    /// chunk duration of serve and the copier, milliseconds (default 2000)
    #[argh(option, default = "ChunkMs::DEFAULT")]
    chunk_ms: ChunkMs,
    /// transport stream the simulator loops (default: the generated 19.39 Mb/s broadcast)
    #[argh(option)]
    input: Option<PathBuf>,
    /// run as the copier reference, sending chunks of this many bytes (used by the benchmark)
    #[argh(option, hidden_help)]
    copier_chunk_bytes: Option<usize>,
}

/// The channel every viewer watches.
const GUIDE: &str = "5.1";
/// Bytes per read of a viewer.
const READ_BYTES: usize = 256 * 1024;
/// A viewer's read timeout: how soon it sees the end of a run.
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a viewer waits for its first body byte.
const FIRST_BYTE_LIMIT: Duration = Duration::from_secs(15);
/// A viewer "fell behind" below this share of the channel's bytes over the window.
const BEHIND: f64 = 0.9;
/// CPU seconds below which a ratio is not printed (two /proc ticks).
const MIN_CPU_S: f64 = 0.02;
/// The copier's distinct chunks (cut from the start of the file, sent in turn).
const COPIER_CHUNKS: usize = 4;

/// What one run (one server, V viewers) measured.
struct Figures {
    window: Duration,
    /// Each viewer's bytes over the window.
    received: Vec<u64>,
    /// The channel's bytes in over the window: what each viewer was offered.
    offered: u64,
    /// Connect → first body byte, of the viewers that got one.
    joins: Vec<Duration>,
    /// Viewers refused or without a first byte.
    failed: usize,
    cpu_s: f64,
    /// CPU seconds of the server's connection threads (serve's `http …` threads).
    connection_cpu_s: Option<f64>,
    clients_cpu_s: f64,
    peak_rss_kib: u64,
    skipped: u64,
    dropped: u64,
    aligned: bool,
}

/// A server under test: where it listens and its process.
struct Server<'a> {
    name: &'a str,
    addr: SocketAddr,
    pid: u32,
    /// Whether its connection threads are named `http …` (serve's are).
    named_threads: bool,
}

/// Runs the benchmark (or, with `--copier-chunk-bytes`, the copier reference).
pub fn run(args: Args) -> Result<(), Failure> {
    if let Some(bytes) = args.copier_chunk_bytes {
        let input = args
            .input
            .ok_or_else(|| Failure::usage("--copier-chunk-bytes needs --input"))?;
        return copier(&input, bytes, args.chunk_ms.get());
    }
    let counts: Vec<usize> = args
        .viewers
        .split(',')
        .map(|n| match n.trim().parse() {
            Ok(n @ 1..=1000) => Ok(n),
            _ => Err(Failure::usage(format!(
                "--viewers takes numbers 1-1000, comma-separated, not {n:?}"
            ))),
        })
        .collect::<Result<_, _>>()?;
    if !(1..=3600).contains(&args.seconds) {
        return Err(Failure::usage("--seconds takes 1-3600"));
    }
    let chunk = Duration::from_millis(u64::from(args.chunk_ms.get()));
    let periods = (args.seconds * 1000)
        .div_ceil(u64::from(args.chunk_ms.get()))
        .max(1);
    let window = chunk * periods as u32;
    let input = super::broadcast::input_or_generated(args.input)?;
    let exe = std::env::current_exe().map_err(|e| Failure::other(e.to_string()))?;

    let mut sim = spawn(
        Command::new(&exe)
            .args(["tuner-sim", "--listen", "127.0.0.1:0", "--tuners", "1"])
            .arg("--channel")
            .arg(format!("{GUIDE}={}", input.display())),
    )?;
    let sim_addr = ready_addr(&mut sim)?;
    let most = counts.iter().copied().max().unwrap_or(1);
    let mut serve = spawn(
        Command::new(&exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--discovery", "false"])
            .arg("--tuner")
            .arg(format!("hdhr://{sim_addr}"))
            // The channel stays open between runs, without a viewer.
            .args(["--release-ms", "86400000", "--chunk-ms"])
            .arg(args.chunk_ms.to_string())
            .arg("--max-viewers")
            .arg((most + 8).to_string()),
    )?;
    let serve_addr = ready_addr(&mut serve)?;
    let opened = open_channel(serve_addr)?;
    println!(
        "bench serve: channel {GUIDE} of {} (real time), {} ms chunks; {} s measured per run \
         ({periods} chunk periods); viewers join spread over {} ms",
        input.display(),
        args.chunk_ms,
        window.as_secs_f64(),
        args.chunk_ms
    );
    println!(
        "channel opened by a first viewer: first byte after {:.0} ms (tuner + first chunk)",
        opened.as_secs_f64() * 1000.0
    );
    println!(
        "| viewers | server | goodput Mb/s (offered) | CPU % of a core (connection threads) | \
         CPU µs per viewer-second | CPU s per GB | first byte p50 / p99 ms | fell behind | \
         peak RSS MiB | clients CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &v in &counts {
        let server = Server {
            name: "ec-node serve",
            addr: serve_addr,
            pid: serve.pid(),
            named_threads: true,
        };
        let served = measure(&server, v, chunk, window)?;
        print_row(v, server.name, &served);
        // serve lets the run's viewers go before the copier is measured.
        drain(serve_addr);
        let chunk_bytes = status(serve_addr)
            .map(|s| s.bytes_in / s.chunks.max(1))
            .map_err(Failure::other)?;
        let mut copier = spawn(
            Command::new(&exe)
                .args(["bench", "serve", "--copier-chunk-bytes"])
                .arg(chunk_bytes.to_string())
                .arg("--chunk-ms")
                .arg(args.chunk_ms.to_string())
                .arg("--input")
                .arg(&input),
        )?;
        let reference = Server {
            name: "plain copier",
            addr: ready_addr(&mut copier)?,
            pid: copier.pid(),
            named_threads: false,
        };
        let copied = measure(&reference, v, chunk, window)?;
        print_row(v, reference.name, &copied);
        print_ratio(&served, &copied);
        copier.terminate();
    }
    serve.terminate();
    sim.terminate();
    Ok(())
}

/// Starts a quiet benchmark process (warnings only, stderr discarded).
fn spawn(cmd: &mut Command) -> Result<Kid, Failure> {
    Kid::spawn(cmd.stderr(Stdio::null()).env("RUST_LOG", "warn"))
}

/// The `listen` address of a process's JSON ready line.
fn ready_addr(kid: &mut Kid) -> Result<SocketAddr, Failure> {
    let line = kid.first_line(|l| l.contains("\"listen\""))?;
    serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v["listen"].as_str()?.parse().ok())
        .ok_or_else(|| Failure::other(format!("no listen address in {line:?}")))
}

/// Opens the channel with one viewer, waits for its first byte and leaves.
fn open_channel(addr: SocketAddr) -> Result<Duration, Failure> {
    let stop = AtomicBool::new(true);
    let counter = AtomicU64::new(0);
    watch(addr, &counter, &stop, &mut |_| {})
        .map_err(|e| Failure::other(format!("the channel did not open: {e}")))
}

/// One viewer: connects, asks for the channel, reports connect → first body byte through
/// `joined`, then counts body bytes into `counter` until `stop` or the server ends the stream.
/// Returns the join latency.
fn watch(
    addr: SocketAddr,
    counter: &AtomicU64,
    stop: &AtomicBool,
    joined: &mut dyn FnMut(Result<Duration, String>),
) -> Result<Duration, String> {
    let started = Instant::now();
    let result = first_byte(addr, counter, started);
    let (mut conn, latency) = match result {
        Ok(ok) => ok,
        Err(e) => {
            joined(Err(e.clone()));
            return Err(e);
        }
    };
    joined(Ok(latency));
    let mut buf = vec![0u8; READ_BYTES];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    Ok(latency)
}

/// Connects and reads up to the first body byte (counted into `counter`).
fn first_byte(
    addr: SocketAddr,
    counter: &AtomicU64,
    started: Instant,
) -> Result<(TcpStream, Duration), String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    conn.write_all(format!("GET /auto/v{GUIDE} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = vec![0u8; READ_BYTES];
    let mut in_head = true;
    loop {
        if started.elapsed() > FIRST_BYTE_LIMIT {
            return Err("no first byte within 15 s".into());
        }
        let n = match conn.read(&mut buf) {
            Ok(0) => return Err(format!("closed: {}", first_line(&head))),
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e.to_string()),
        };
        // Body bytes of this read: all of it once past the head, else what follows the head.
        let body = match in_head {
            false => n,
            true => {
                head.extend_from_slice(&buf[..n]);
                let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if head.len() > 8192 {
                        return Err("response head too long".into());
                    }
                    continue;
                };
                if !head.starts_with(b"HTTP/1.1 200") {
                    return Err(first_line(&head));
                }
                in_head = false;
                head.len() - (end + 4)
            }
        };
        if body > 0 {
            counter.fetch_add(body as u64, Ordering::Relaxed);
            return Ok((conn, started.elapsed()));
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
    matches!(e.kind(), WouldBlock | TimedOut | Interrupted)
}

fn first_line(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    text.lines().next().unwrap_or("nothing").to_string()
}

/// V viewers of `server`, joining spread over one chunk period, then the measured window.
fn measure(
    server: &Server,
    v: usize,
    chunk: Duration,
    window: Duration,
) -> Result<Figures, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..v).map(|_| AtomicU64::new(0)).collect());
    let (tx, rx) = crossbeam_channel::bounded(v);
    let start = Instant::now();
    let mut threads = Vec::with_capacity(v);
    for i in 0..v {
        let (halt, counters, tx, addr) = (stop.clone(), counters.clone(), tx.clone(), server.addr);
        let at = start + chunk.mul_f64(i as f64 / v as f64);
        let spawned = std::thread::Builder::new()
            .name(format!("viewer {i}"))
            .stack_size(128 * 1024)
            .spawn(move || {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let _ = watch(addr, &counters[i], &halt, &mut |r| {
                    let _ = tx.send((i, r));
                });
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(Failure::other(format!("cannot start a viewer thread: {e}")));
            }
        }
    }
    drop(tx);
    let (mut joins, mut live, mut refused) = (Vec::with_capacity(v), None, None);
    let deadline = start + chunk + FIRST_BYTE_LIMIT + Duration::from_secs(5);
    for _ in 0..v {
        match rx.recv_deadline(deadline) {
            Ok((i, Ok(latency))) => {
                joins.push(latency);
                live.get_or_insert(i);
            }
            Ok((i, Err(why))) => {
                refused.get_or_insert((i, why));
            }
            Err(_) => break,
        }
    }
    if let Some((i, why)) = refused {
        eprintln!("{}: viewer {i} of {v} did not start: {why}", server.name);
    }
    let failed = v - joins.len();
    let aligned = match live {
        Some(i) => between_deliveries(&counters[i], chunk),
        None => false,
    };
    let status0 = status(server.addr).map_err(Failure::other)?;
    let me = std::process::id();
    let (cpu0, threads0, clients0) = (
        cpu_seconds(server.pid),
        connection_cpu(server),
        cpu_seconds(me),
    );
    let bytes0: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let bytes1: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let elapsed = t0.elapsed();
    let (cpu1, threads1, clients1) = (
        cpu_seconds(server.pid),
        connection_cpu(server),
        cpu_seconds(me),
    );
    let status1 = status(server.addr).map_err(Failure::other)?;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    joins.sort();
    Ok(Figures {
        window: elapsed,
        received: bytes1.iter().zip(&bytes0).map(|(b, a)| b - a).collect(),
        offered: status1.bytes_in.saturating_sub(status0.bytes_in),
        joins,
        failed,
        cpu_s: cpu1 - cpu0,
        connection_cpu_s: threads0.zip(threads1).map(|(a, b)| b - a),
        clients_cpu_s: clients1 - clients0,
        peak_rss_kib: peak_rss_kib(server.pid),
        skipped: status1.skipped.saturating_sub(status0.skipped),
        dropped: status1.dropped.saturating_sub(status0.dropped),
        aligned,
    })
}

/// Waits for a delivery to begin at `counter` after a quiet quarter period, then half a period
/// more: a moment between two deliveries. False when no such pause was seen within three periods
/// (deliveries as long as the period).
fn between_deliveries(counter: &AtomicU64, chunk: Duration) -> bool {
    let give_up = Instant::now() + chunk * 3;
    let mut last = counter.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(5));
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            let was_quiet = quiet_since.elapsed() >= chunk / 4;
            last = now;
            quiet_since = Instant::now();
            if was_quiet {
                std::thread::sleep(chunk / 2);
                return true;
            }
        }
    }
    false
}

/// CPU seconds of serve's connection threads (`http PEER`), if the server names them: the sum
/// of each thread's time on a CPU from its `schedstat` (nanoseconds). The clock-tick figures of
/// `stat` round each thread's small share down and lose most of it over hundreds of threads.
fn connection_cpu(server: &Server) -> Option<f64> {
    if !server.named_threads {
        return None;
    }
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid)).ok()?;
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .map(|task| task.path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|name| name.starts_with("http"))
        })
        .filter_map(|dir| {
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    Some(nanos as f64 / 1e9)
}

/// The channel's counters from `/status.json`.
struct Status {
    bytes_in: u64,
    chunks: u64,
    viewers: u64,
    skipped: u64,
    dropped: u64,
}

fn status(addr: SocketAddr) -> Result<Status, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("status: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    conn.write_all(format!("GET /status.json HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("status: {e}"))?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply)
        .map_err(|e| format!("status: {e}"))?;
    let body = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| &reply[end + 4..])
        .ok_or("status: no response head")?;
    let rows: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("status: {e}"))?;
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["GuideNumber"] == GUIDE))
        .ok_or_else(|| format!("status: no channel {GUIDE}"))?;
    let field = |name: &str| row[name].as_u64().unwrap_or(0);
    Ok(Status {
        bytes_in: field("BytesIn"),
        chunks: field("Chunks"),
        viewers: field("Viewers"),
        skipped: field("SkippedChunks"),
        dropped: field("DroppedViewers"),
    })
}

/// Waits (up to 5 s) until serve has let the last run's viewers go.
fn drain(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match status(addr) {
            Ok(s) if s.viewers > 0 => std::thread::sleep(Duration::from_millis(100)),
            _ => break,
        }
    }
}

fn goodput_mbps(f: &Figures) -> f64 {
    f.received.iter().sum::<u64>() as f64 * 8.0 / f.window.as_secs_f64() / 1e6
}

fn per_viewer_second(f: &Figures, v: usize) -> f64 {
    f.cpu_s / (v as f64 * f.window.as_secs_f64()) * 1e6
}

fn per_gb(f: &Figures) -> f64 {
    f.cpu_s / (f.received.iter().sum::<u64>() as f64 / 1e9).max(1e-12)
}

/// The nearest-rank percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: usize) -> Option<f64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).map(|d| d.as_secs_f64() * 1000.0)
}

/// serve's figures over the copier's, where the copier's CPU is above /proc's resolution.
fn print_ratio(served: &Figures, copied: &Figures) {
    let measurable = copied.cpu_s >= MIN_CPU_S;
    let ratio = |s: f64, c: f64| match measurable {
        true => format!("{:.2}", s / c.max(1e-12)),
        false => "– (copier under 2 ticks)".into(),
    };
    let joins = match (percentile(&served.joins, 99), percentile(&copied.joins, 99)) {
        (Some(s), Some(c)) => format!("{:.2} (p99)", s / c.max(0.001)),
        _ => "–".into(),
    };
    println!(
        "|  | ratio serve / copier | {:.2} | {} | | {} | {joins} | | | |",
        goodput_mbps(served) / goodput_mbps(copied).max(1e-9),
        ratio(served.cpu_s, copied.cpu_s),
        ratio(per_gb(served), per_gb(copied)),
    );
}

fn print_row(v: usize, server: &str, f: &Figures) {
    let wall = f.window.as_secs_f64();
    let offered = f.offered as f64 * 8.0 / wall / 1e6 * v as f64;
    let behind = f
        .received
        .iter()
        .filter(|&&b| (b as f64) < BEHIND * f.offered as f64)
        .count();
    let mut fell = match behind {
        0 => "none".to_string(),
        n => format!("{n} of {v}"),
    };
    if f.failed > 0 {
        fell.push_str(&format!(" ({} never started)", f.failed));
    }
    if f.skipped > 0 || f.dropped > 0 {
        fell.push_str(&format!(
            " ({} chunks skipped, {} dropped)",
            f.skipped, f.dropped
        ));
    }
    if !f.aligned {
        fell.push_str(" (window not aligned)");
    }
    let joins = match (percentile(&f.joins, 50), percentile(&f.joins, 99)) {
        (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1}"),
        _ => "–".into(),
    };
    println!(
        "| {v} | {server} | {:.0} ({offered:.0}) | {:.2}{} | {:.0} | {:.2} | {joins} | {fell} | {:.0} | {:.1} |",
        goodput_mbps(f),
        f.cpu_s / wall * 100.0,
        f.connection_cpu_s
            .map(|s| format!(" ({:.2})", s / wall * 100.0))
            .unwrap_or_default(),
        per_viewer_second(f, v),
        per_gb(f),
        f.peak_rss_kib as f64 / 1024.0,
        f.clients_cpu_s / wall * 100.0,
    );
}

/// The copier reference (hidden mode): prints `{"listen":ADDR}`, then serves until killed.
fn copier(input: &Path, chunk_bytes: usize, chunk_ms: u32) -> Result<(), Failure> {
    if chunk_bytes == 0 {
        return Err(Failure::usage("--copier-chunk-bytes must be at least 1"));
    }
    let chunks = Arc::new(
        read_chunks(input, chunk_bytes)
            .map_err(|e| Failure::other(format!("{}: {e}", input.display())))?,
    );
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::other(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::other(e.to_string()))?;
    println!("{}", serde_json::json!({ "listen": addr.to_string() }));
    let _ = std::io::stdout().flush();
    let clock = Copier {
        start: Instant::now(),
        period: Duration::from_millis(u64::from(chunk_ms)),
        chunk_bytes: chunk_bytes as u64,
    };
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let chunks = chunks.clone();
        let _ = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || clock.connection(conn, &chunks));
    }
    Ok(())
}

/// COPIER_CHUNKS chunks of `chunk_bytes` cut from the start of `input` in order (a short file
/// repeats), read straight into them so the copier's memory is the chunks'.
fn read_chunks(input: &Path, chunk_bytes: usize) -> std::io::Result<Vec<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(input)?;
    let mut chunks = Vec::with_capacity(COPIER_CHUNKS);
    for _ in 0..COPIER_CHUNKS {
        let mut chunk = vec![0u8; chunk_bytes];
        let mut filled = 0;
        while filled < chunk_bytes {
            match file.read(&mut chunk[filled..])? {
                0 if filled == 0 && file.stream_position()? == 0 => {
                    return Err(std::io::Error::other("empty"))
                }
                0 => {
                    file.seek(SeekFrom::Start(0))?;
                }
                n => filled += n,
            }
        }
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// The copier's schedule: chunk k is published at `start + k × period`.
#[derive(Clone, Copy)]
struct Copier {
    start: Instant,
    period: Duration,
    chunk_bytes: u64,
}

impl Copier {
    /// The newest chunk published.
    fn newest(&self) -> u64 {
        (self.start.elapsed().as_nanos() / self.period.as_nanos().max(1)) as u64
    }

    /// One connection: `/status.json` gets the published count in serve's format; anything
    /// else gets a stream: the newest chunk at once, then each chunk when it is published.
    fn connection(&self, mut conn: TcpStream, chunks: &[Vec<u8>]) {
        let _ = conn.set_nodelay(true);
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(n) if n > 0 && head.len() < 8192 => head.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        if head.starts_with(b"GET /status.json ") {
            let published = self.newest() + 1;
            let body = serde_json::json!([{
                "GuideNumber": GUIDE,
                "BytesIn": published * self.chunk_bytes,
                "Chunks": published,
            }])
            .to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Type: video/mpeg\r\nConnection: close\r\n\r\n";
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut k = self.newest();
        loop {
            if conn.write_all(&chunks[k as usize % chunks.len()]).is_err() {
                return;
            }
            k += 1;
            let due = self.start + self.period * k as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
}
