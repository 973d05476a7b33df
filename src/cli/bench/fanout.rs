//! `ec-node bench fanout`: one publisher process (`ec-node moq-serve`) sending a real-time
//! 19.39 Mb/s track to 1, 10 and 50 subscribers over loopback, and the same fan-out done by a
//! third-party relay (`moq-relay-ietf`, fed by `moq-serve --relay`) in the same run.
//!
//! Subscribers are `node::tracks::Upstream`s in this process, each subscribing from group 0; the figures are the serving process's:
//! aggregate goodput, CPU seconds per GB delivered and peak RSS, read from /proc. A subscriber
//! "fell behind" when it did not receive every group, or received one more than a second after
//! its real-time due time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proc::{cpu_seconds, peak_rss_kib, Kid};
use crate::cli::Failure;
use argh::FromArgs;
use ec_node::moq::{FullTrackName, GroupId, TrackNamespace};
use ec_node::net::{PeerCheck, Target};
use ec_node::node::tracks::{Ask, Delivery, PeerSpec, Upstream};

/// Fan-out goodput of moq-serve to many subscribers, next to a third-party relay.
#[derive(FromArgs)]
#[argh(subcommand, name = "fanout")]
pub struct Args {
    /// seconds of stream per run (default 10)
    #[argh(option, default = "10")]
    seconds: u64,
    /// subscriber counts, comma-separated (default 1,10,50)
    #[argh(option, default = "String::from(\"1,10,50\")")]
    subscribers: String,
    /// moq-relay-ietf binary (default: the one .ci/setup installs; skipped if missing)
    #[argh(option)]
    relay: Option<PathBuf>,
}

/// 19.39 Mb/s in 100 ms groups.
const GROUP_BYTES: usize = 19_390_000 / 8 / 10;
const INTERVAL_MS: u64 = 100;

struct Figures {
    bytes: u64,
    elapsed: Duration,
    cpu_s: f64,
    rss_kib: u64,
    behind: usize,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let counts: Vec<usize> = args
        .subscribers
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .map_err(|_| Failure::usage("--subscribers takes numbers"))
        })
        .collect::<Result<_, _>>()?;
    let dir = std::env::temp_dir().join(format!("ec-node-fanout-{}", std::process::id()));
    let groups = (args.seconds * 1000 / INTERVAL_MS) as usize;
    write_groups(&dir.join("src"), groups).map_err(|e| Failure::other(e.to_string()))?;
    let relay = args.relay.or_else(default_relay).filter(|p| p.exists());
    println!("fan-out of a 19.39 Mb/s track ({groups} groups of {GROUP_BYTES} B, {INTERVAL_MS} ms apart) over loopback");
    println!("| subscribers | server | aggregate goodput Mb/s | CPU s per GB | peak RSS MiB | fell behind |");
    println!("|---|---|---|---|---|---|");
    for &n in &counts {
        let direct = run_direct(&dir, n, groups)?;
        print_row(n, "ec-node moq-serve", &direct);
        if let Some(relay) = &relay {
            let via = run_relay(&dir, relay, n, groups)?;
            print_row(n, "moq-relay-ietf 0.7.31", &via);
            println!(
                "|  | ratio (relay CPU per GB / ec-node) | | {:.2} | | |",
                (via.cpu_s / gb(via.bytes)) / (direct.cpu_s / gb(direct.bytes)).max(1e-9)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn gb(bytes: u64) -> f64 {
    (bytes as f64 / 1e9).max(1e-12)
}

fn print_row(n: usize, server: &str, f: &Figures) {
    println!(
        "| {n} | {server} | {:.0} | {:.2} | {:.0} | {} |",
        f.bytes as f64 * 8.0 / f.elapsed.as_secs_f64() / 1e6,
        f.cpu_s / gb(f.bytes),
        f.rss_kib as f64 / 1024.0,
        if f.behind == 0 {
            "none".to_string()
        } else {
            format!("{} of {n}", f.behind)
        }
    );
}

fn default_relay() -> Option<PathBuf> {
    let cache = std::env::var_os("EC_NODE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ec-node")))?;
    Some(cache.join("relay/bin/moq-relay-ietf"))
}

fn write_groups(dir: &Path, groups: usize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for g in 0..groups {
        // Incompressible-looking bytes (xorshift), as encrypted chunks are.
        let bytes: Vec<u8> = (0..GROUP_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(dir.join(format!("{g:06}.bin")), bytes)?;
    }
    Ok(())
}

fn track() -> FullTrackName {
    FullTrackName {
        namespace: TrackNamespace::from_strs(&["bench", "fanout"]),
        name: b"chunks".to_vec(),
    }
}

/// Starts a quiet benchmark process (warnings only, stderr discarded).
fn spawn(cmd: &mut Command) -> Result<Kid, Failure> {
    Kid::spawn(cmd.stderr(Stdio::null()).env("RUST_LOG", "warn"))
}

fn serve_cmd(dir: &Path) -> Result<Command, Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure::other(e.to_string()))?;
    let mut c = Command::new(exe);
    c.args([
        "moq-serve",
        "--namespace",
        "bench/fanout",
        "--track",
        "chunks",
    ])
    .args(["--interval-ms", &INTERVAL_MS.to_string(), "--dir"])
    .arg(dir.join("src"));
    Ok(c)
}

fn run_direct(dir: &Path, n: usize, groups: usize) -> Result<Figures, Failure> {
    let mut serve = spawn(serve_cmd(dir)?.args(["--listen", "127.0.0.1:0"]))?;
    let line = serve.first_line(|l| l.starts_with('{'))?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| Failure::other(e.to_string()))?;
    let endpoint = v["endpoint"].as_str().unwrap_or_default();
    let target = Target::parse(endpoint).map_err(|e| Failure::other(e.to_string()))?;
    let check = match &target {
        Target::Node(a) => a.node.map_or(PeerCheck::Unpinned, PeerCheck::Pinned),
        Target::Relay(_) => PeerCheck::Insecure,
    };
    measure(serve.pid(), &target, check, n, groups)
}

fn run_relay(dir: &Path, relay: &Path, n: usize, groups: usize) -> Result<Figures, Failure> {
    let (cert, key) = (dir.join("relay.pem"), dir.join("relay.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(Failure::other(
            "openssl could not make the relay certificate",
        ));
    }
    // The relay logs its address on stderr; give it a fixed free port instead.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map_err(|e| Failure::other(e.to_string()))?
        .port();
    let url = format!("moqt://127.0.0.1:{port}");
    let relay = spawn(
        Command::new(relay)
            .args(["--bind", &format!("127.0.0.1:{port}"), "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--coordinator-file")
            .arg(dir.join("coordinator.json")),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let mut serve = spawn(
        serve_cmd(dir)?
            .args(["--relay", &url, "--relay-ca"])
            .arg(&cert),
    )?;
    serve.first_line(|l| l.starts_with('{'))?;
    let target = Target::parse(&url).map_err(|e| Failure::other(e.to_string()))?;
    let check = PeerCheck::WebPki {
        ca_file: Some(cert.clone()),
        host: "127.0.0.1".into(),
    };
    measure(relay.pid(), &target, check, n, groups)
}

/// What one subscriber got: payload bytes, groups, and whether any group came late.
#[derive(Default)]
struct Got {
    bytes: u64,
    groups: usize,
    late: bool,
}

/// One subscriber on its own thread: receives until it has every group, its connection ends,
/// or `deadline`.
fn subscriber(upstream: &mut Upstream, groups: usize, deadline: Instant) -> Got {
    let mut got = Got::default();
    let mut first: Option<Instant> = None;
    while got.groups < groups && Instant::now() < deadline {
        match upstream.next(Duration::from_millis(100)) {
            Ok(Some(Delivery::Object { object, .. })) => {
                let now = Instant::now();
                let first = *first.get_or_insert(now);
                let due = first + Duration::from_millis(INTERVAL_MS * object.group.0);
                got.late |= now > due + Duration::from_secs(1);
                got.bytes += object.payload.len() as u64;
                got.groups += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    got
}

/// Dials `n` subscribers (a thread each), waits for them, and reads the serving process's CPU
/// and peak RSS.
fn measure(
    pid: u32,
    target: &Target,
    check: PeerCheck,
    n: usize,
    groups: usize,
) -> Result<Figures, Failure> {
    let cpu0 = cpu_seconds(pid);
    let start = Instant::now();
    let deadline =
        start + Duration::from_millis(INTERVAL_MS * groups as u64) + Duration::from_secs(10);
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let peer = PeerSpec {
            target: target.clone(),
            check: check.clone(),
        };
        let mut upstream = Upstream::dial(&peer, vec![(track(), Ask::From(GroupId(0)))])
            .map_err(|e| Failure::other(e.to_string()))?;
        threads.push(std::thread::spawn(move || {
            let got = subscriber(&mut upstream, groups, deadline);
            upstream.close();
            got
        }));
    }
    let got: Vec<Got> = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .collect();
    let elapsed = start.elapsed();
    let cpu_s = cpu_seconds(pid) - cpu0;
    Ok(Figures {
        bytes: got.iter().map(|g| g.bytes).sum(),
        elapsed,
        cpu_s,
        rss_kib: peak_rss_kib(pid),
        behind: got.iter().filter(|g| g.late || g.groups < groups).count(),
    })
}
