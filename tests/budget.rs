//! A Pi-class budget (issue 15): a publisher (capture from the simulator, chunk, encrypt, sign,
//! serve two subscribers) and a subscriber each keep real time for 60 s inside a cgroup capped at
//! 5 % of one core and 64 MiB of memory: no gap, no late chunk, no group dropped, no capture
//! overrun, no OOM. The simulator and the second subscriber run outside the caps.
//!
//! Real processes on loopback. The caps are Linux control groups: v1 (`cpu.cfs_quota_us` over
//! `cpu.cfs_period_us`, `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`) or v2
//! (`cpu.max`, `memory.max`, `memory.swap.max`). Each node is started through `sh`, which puts
//! itself into its cgroup before it execs `ec-node`, so not one instruction of the node runs
//! uncapped. Each cgroup is a child of the test's own cgroup and is removed when its guard drops.
//! The tests fail, saying why, when they are not root or find no writable cpu and memory
//! controllers. They are real-time scenarios: ignored by a plain `cargo test`, run one at a time
//! by README's test command (`cargo test --locked --test budget -- --ignored --test-threads=1`); the figures
//! (CPU used, throttling, peak memory, CPU per thread) are printed with `--nocapture`.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::nodes;
use ec_node_testkit::process;
use ec_node_testkit::sim;

use ec_node_testkit::process::Proc;
use ec_node_testkit::procfs;
use nodes::{key, playlist_indices, summary_json, STREAM};
use sim::Sim;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// CFS period and quota: 5 ms of CPU in every 100 ms, 5 % of one core.
const CPU_PERIOD_US: u64 = 100_000;
const CPU_QUOTA_US: u64 = 5_000;
/// 64 MiB, swap included.
const MEMORY_LIMIT: u64 = 64 << 20;
/// The default chunk duration, which a Pi user runs.
const CHUNK_MS: u64 = 2000;
/// Chunks the capped subscriber may write fewer than window / CHUNK_MS in the window after its
/// first segment. Start-up (tuning, the first chunk boundary, the join) is outside the window, so
/// segment k is due at k·D plus how much longer its latency is than the first one's; with one
/// chunk allowed, the pipeline may lag up to 2–4 s more at the end than at the start (the latency
/// bound below) and still pass, but not fall further and further behind.
const ALLOWANCE: u64 = 1;

/// How long the window runs, from the capped subscriber's first segment to the first SIGTERM:
/// 60 s, or `EC_NODE_BUDGET_SECONDS` to look further (see PERFORMANCE on the page cache).
fn run_time() -> Duration {
    let seconds = std::env::var("EC_NODE_BUDGET_SECONDS").map_or(60, |s| {
        s.parse()
            .expect("EC_NODE_BUDGET_SECONDS: a whole number of seconds")
    });
    Duration::from_secs(seconds)
}

/// Which cgroup file system this host has, with the folders new cgroups go under.
enum Hierarchy {
    /// One mount per controller; `cpuacct` only when it is not the cpu mount itself.
    V1 {
        cpu: PathBuf,
        cpuacct: Option<PathBuf>,
        memory: PathBuf,
    },
    /// The unified hierarchy: the parent folder, with cpu and memory enabled for its children.
    V2 { parent: PathBuf },
}

/// A capped cgroup (one folder per v1 controller), removed on drop.
struct Cgroup {
    name: String,
    v2: bool,
    /// cpu (or the v2 folder), then memory, then cpuacct if separate.
    dirs: Vec<PathBuf>,
}

/// What a cgroup's counters said at the end of the run.
#[derive(Debug, Default)]
struct Usage {
    cpu_ns: u64,
    periods: u64,
    throttled_periods: u64,
    throttled_ns: u64,
    peak_bytes: Option<u64>,
    /// v1 `memory.failcnt` / v2 `memory.events` `max`: times usage reached the limit (and the
    /// kernel reclaimed, page cache first); not an OOM.
    limit_hits: u64,
    oom: u64,
    oom_kill: u64,
    /// Charged now: all, anonymous (the heap), page cache (segments written) and kernel memory
    /// (sockets, page tables, slab; v1 `memory.kmem.usage_in_bytes`).
    now_bytes: Option<u64>,
    anon_bytes: Option<u64>,
    file_bytes: Option<u64>,
    kernel_bytes: Option<u64>,
}

/// Why the budget cannot be enforced here, if it cannot.
fn hierarchy() -> Result<Hierarchy, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err(format!(
            "not root (effective uid {euid}): cannot create cgroups"
        ));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    // `N:controllers:path`; the v2 line is `0::path`.
    let own_path = |controller: &str| {
        own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let listed = if controller.is_empty() {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == controller)
            };
            listed.then(|| path.trim_start_matches('/').to_string())
        })
    };
    // A child of the test's own cgroup, where the mount shows it (no cgroup namespace hides it).
    let parent = |mount: &Path, controller: &str| {
        let own = mount.join(own_path(controller).unwrap_or_default());
        if own.is_dir() {
            own
        } else {
            mount.to_path_buf()
        }
    };
    let root = Path::new("/sys/fs/cgroup");
    if let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        let listed: Vec<&str> = controllers.split_whitespace().collect();
        if !(listed.contains(&"cpu") && listed.contains(&"memory")) {
            return Err(format!(
                "cgroup v2 without the cpu and memory controllers (has: {controllers:?})"
            ));
        }
        return Ok(Hierarchy::V2 {
            parent: parent(root, ""),
        });
    }
    let (cpu, memory) = (root.join("cpu"), root.join("memory"));
    if !cpu.join("cpu.cfs_quota_us").exists() || !memory.join("memory.limit_in_bytes").exists() {
        return Err("no cgroup v1 cpu and memory controllers under /sys/fs/cgroup".into());
    }
    let cpuacct = root.join("cpuacct");
    let separate = cpuacct.join("cpuacct.usage").exists()
        && !cpu.join("cpuacct.usage").exists()
        && cpuacct.canonicalize().ok() != cpu.canonicalize().ok();
    Ok(Hierarchy::V1 {
        cpu: parent(&cpu, "cpu"),
        cpuacct: separate.then(|| parent(&cpuacct, "cpuacct")),
        memory: parent(&memory, "memory"),
    })
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `KEY VALUE` lines (cpu.stat, memory.stat, memory.events, memory.oom_control).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl Cgroup {
    /// Creates `NAME` capped at 5 % of a core and 64 MiB; an error says why it could not.
    fn create(hierarchy: &Hierarchy, name: &str) -> Result<Cgroup, String> {
        let name = format!("ec-node-budget-{}-{name}", std::process::id());
        let mut group = Cgroup {
            name: name.clone(),
            v2: matches!(hierarchy, Hierarchy::V2 { .. }),
            dirs: Vec::new(),
        };
        let mut mkdir = |parent: &Path| {
            let dir = parent.join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            group.dirs.push(dir.clone());
            Ok::<PathBuf, String>(dir)
        };
        let cpu_max = format!("{CPU_QUOTA_US} {CPU_PERIOD_US}");
        let memory_max = MEMORY_LIMIT.to_string();
        match hierarchy {
            Hierarchy::V2 { parent } => {
                // Enable the controllers for the parent's children (refused when the parent holds
                // processes and is not the root: then there is nowhere to put a capped child).
                let enabled = read(&parent.join("cgroup.subtree_control"));
                if !(enabled.contains("cpu") && enabled.contains("memory")) {
                    write(&parent.join("cgroup.subtree_control"), "+cpu +memory")?;
                }
                let dir = mkdir(parent)?;
                write(&dir.join("cpu.max"), &cpu_max)?;
                write(&dir.join("memory.max"), &memory_max)?;
                if dir.join("memory.swap.max").exists() {
                    write(&dir.join("memory.swap.max"), "0")?;
                }
            }
            Hierarchy::V1 {
                cpu,
                cpuacct,
                memory,
            } => {
                let dir = mkdir(cpu)?;
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &CPU_QUOTA_US.to_string())?;
                let dir = mkdir(memory)?;
                write(&dir.join("memory.limit_in_bytes"), &memory_max)?;
                // Swap must not hide memory: the memory + swap limit is the same 64 MiB.
                if dir.join("memory.memsw.limit_in_bytes").exists() {
                    write(&dir.join("memory.memsw.limit_in_bytes"), &memory_max)?;
                }
                if let Some(cpuacct) = cpuacct {
                    mkdir(cpuacct)?;
                }
            }
        }
        Ok(group)
    }

    /// `ec-node ARGS`, started by `sh` after it wrote its own pid into every folder of the cgroup.
    fn ec_node(&self, args: &[&str]) -> Command {
        let procs: Vec<String> = self
            .dirs
            .iter()
            .map(|d| d.join("cgroup.procs").display().to_string())
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(
                r#"IFS='|'; for f in $EC_NODE_BUDGET_PROCS; do echo $$ > "$f" || exit 97; done
                unset IFS; exec "$0" "$@""#,
            )
            .arg(process::ec_node_path())
            .args(args)
            .env("EC_NODE_BUDGET_PROCS", procs.join("|"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn cpu_dir(&self) -> &Path {
        &self.dirs[0]
    }

    fn memory_dir(&self) -> &Path {
        &self.dirs[if self.v2 { 0 } else { 1 }]
    }

    fn usage(&self) -> Usage {
        let cpu = read(&self.cpu_dir().join("cpu.stat"));
        let memory = self.memory_dir();
        let number = |file: &str| read(&memory.join(file)).trim().parse::<u64>().ok();
        if self.v2 {
            let events = read(&memory.join("memory.events"));
            let stat = read(&memory.join("memory.stat"));
            return Usage {
                cpu_ns: field(&cpu, "usage_usec").unwrap_or(0) * 1000,
                periods: field(&cpu, "nr_periods").unwrap_or(0),
                throttled_periods: field(&cpu, "nr_throttled").unwrap_or(0),
                throttled_ns: field(&cpu, "throttled_usec").unwrap_or(0) * 1000,
                peak_bytes: number("memory.peak"),
                limit_hits: field(&events, "max").unwrap_or(0),
                oom: field(&events, "oom").unwrap_or(0),
                oom_kill: field(&events, "oom_kill").unwrap_or(0),
                now_bytes: number("memory.current"),
                anon_bytes: field(&stat, "anon"),
                file_bytes: field(&stat, "file"),
                kernel_bytes: field(&stat, "kernel"),
            };
        }
        let cpuacct = self.dirs.get(2).unwrap_or(&self.dirs[0]);
        let oom = read(&memory.join("memory.oom_control"));
        Usage {
            cpu_ns: read(&cpuacct.join("cpuacct.usage"))
                .trim()
                .parse()
                .unwrap_or(0),
            periods: field(&cpu, "nr_periods").unwrap_or(0),
            throttled_periods: field(&cpu, "nr_throttled").unwrap_or(0),
            throttled_ns: field(&cpu, "throttled_time").unwrap_or(0),
            peak_bytes: number("memory.max_usage_in_bytes"),
            limit_hits: number("memory.failcnt").unwrap_or(0),
            oom: field(&oom, "under_oom").unwrap_or(0),
            oom_kill: field(&oom, "oom_kill").unwrap_or(0),
            now_bytes: number("memory.usage_in_bytes"),
            anon_bytes: field(&read(&memory.join("memory.stat")), "total_rss"),
            file_bytes: field(&read(&memory.join("memory.stat")), "total_cache"),
            kernel_bytes: number("memory.kmem.usage_in_bytes"),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The nodes were killed and reaped before this guard drops; the kernel may take a moment
        // to let their cgroup go.
        for dir in self.dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if dir.exists() {
                eprintln!("could not remove cgroup {} ({})", dir.display(), self.name);
            }
        }
    }
}

/// CPU seconds per thread of a running process, busiest first.
fn threads(node: &Proc) -> Vec<(String, f64)> {
    let mut threads: Vec<(String, f64)> =
        procfs::thread_cpu_seconds(node.pid()).into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads
}

/// `VmRSS` and `VmHWM` (peak) of a running process, in bytes.
fn rss(node: &Proc) -> (u64, u64) {
    let kib = |v: Option<u64>| v.expect("the node's /proc/PID/status") * 1024;
    (
        kib(procfs::rss_kib(node.pid())),
        kib(procfs::peak_rss_kib(node.pid())),
    )
}

/// Starts `moq-publish` in `group` and reads its endpoint from the ready line.
fn publish(group: &Cgroup, input: &str, key: &Path) -> (Proc, String) {
    let args = [
        "moq-publish",
        "--input",
        input,
        "--listen",
        "127.0.0.1:0",
        "--publish-manifests",
        "--chunk-ms",
        &CHUNK_MS.to_string(),
        "--key",
        key.to_str().unwrap(),
        "--stream-id",
        STREAM,
        "--json",
    ];
    let mut node = Proc::spawn("moq-publish", &mut group.ec_node(&args));
    let endpoint = node.ready()["endpoint"].as_str().unwrap().to_string();
    (node, endpoint)
}

/// The subscriber's flags: manifests required, live chunks only, its summary as JSON.
fn subscriber_args<'a>(endpoint: &'a str, json: &'a str, chunk_ms: &'a str) -> Vec<&'a str> {
    vec![
        "--remote",
        endpoint,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        chunk_ms,
        "--summary-json",
        json,
    ]
}

/// Prints what a capped node used during the window: `usage` read before the stop, over
/// `seconds` since the node started.
fn report(role: &str, usage: &Usage, rss: (u64, u64), threads: &[(String, f64)], seconds: f64) {
    let mib = |b: Option<u64>| {
        b.map_or("n/a".to_string(), |b| {
            format!("{:.1}", b as f64 / 1048576.0)
        })
    };
    eprintln!(
        "{role}: CPU {:.3} s in {seconds:.1} s = {:.2} % of a core (cap 5 %); throttled in {} \
         of {} periods, {:.3} s in all",
        usage.cpu_ns as f64 / 1e9,
        usage.cpu_ns as f64 / 1e9 / seconds * 100.0,
        usage.throttled_periods,
        usage.periods,
        usage.throttled_ns as f64 / 1e9,
    );
    eprintln!(
        "  memory: peak {} MiB of 64; now {} MiB = anon {} + page cache {} (kernel {}); \
         process RSS {} MiB, peak {} MiB",
        mib(usage.peak_bytes),
        mib(usage.now_bytes),
        mib(usage.anon_bytes),
        mib(usage.file_bytes),
        mib(usage.kernel_bytes),
        mib(Some(rss.0)),
        mib(Some(rss.1)),
    );
    let per_thread: Vec<String> = threads
        .iter()
        .map(|(name, s)| format!("{name} {:.2} %", s / seconds * 100.0))
        .collect();
    eprintln!("  CPU per thread: {}", per_thread.join(", "));
}

/// The publisher's and the subscriber's capped cgroups; the test fails saying why where they
/// cannot be made (run it as root on a host with writable cpu and memory controllers).
fn capped_groups(name: &str) -> (Cgroup, Cgroup) {
    let groups = hierarchy().and_then(|hierarchy| {
        let publisher = Cgroup::create(&hierarchy, &format!("{name}-publisher"))?;
        let subscriber = Cgroup::create(&hierarchy, &format!("{name}-subscriber"))?;
        Ok((publisher, subscriber))
    });
    groups.unwrap_or_else(|why| {
        panic!("the budget cannot be enforced here: {why} (run as root with cgroup cpu and memory)")
    })
}

/// Runs channel 5.1 of `sim` through a capped publisher to a capped subscriber and one outside
/// the caps for the window, and checks every promise.
fn keeps_real_time_in_budget(name: &str, sim: &Sim, groups: (Cgroup, Cgroup)) {
    let (publisher_group, subscriber_group) = groups;
    let (key_p, _) = key(&format!("budget-{name}"));
    let input = format!("hdhr://{}/5.1", sim.addr);
    let started = Instant::now();
    let (mut publisher, endpoint) = publish(&publisher_group, &input, &key_p);

    let dir = process::out_dir("budget", name);
    let other_dir = process::out_dir("budget", &format!("{name}-outside"));
    let (json, other_json) = (dir.with_extension("json"), other_dir.with_extension("json"));
    let (json_arg, other_json_arg) = (
        json.to_str().unwrap().to_string(),
        other_json.to_str().unwrap().to_string(),
    );
    let chunk_ms = CHUNK_MS.to_string();
    let mut args = vec!["moq-subscribe", "--stream-id", STREAM, "--out"];
    args.push(dir.to_str().unwrap());
    args.extend(subscriber_args(&endpoint, &json_arg, &chunk_ms));
    let mut subscriber = Proc::spawn("moq-subscribe", &mut subscriber_group.ec_node(&args));
    let subscriber_started = Instant::now();
    let mut other_args = vec!["moq-subscribe", "--stream-id", STREAM, "--out"];
    other_args.push(other_dir.to_str().unwrap());
    other_args.extend(subscriber_args(&endpoint, &other_json_arg, &chunk_ms));
    let mut other = Proc::ec_node("moq-subscribe (outside)", &other_args);
    let mut all_alive = || {
        assert!(publisher.alive(), "the capped publisher exited early");
        assert!(subscriber.alive(), "the capped subscriber exited early");
        assert!(other.alive(), "the second subscriber exited early");
        std::thread::sleep(Duration::from_millis(100));
    };

    // The window opens when the capped subscriber's first segment is in place.
    while !dir.join("index.m3u8").exists() {
        assert!(
            subscriber_started.elapsed() < Duration::from_secs(30),
            "no segment within 30 s"
        );
        all_alive();
    }
    let window = Instant::now();
    let start_up = started.elapsed();
    let run = run_time();
    while window.elapsed() < run {
        all_alive();
    }
    let written = hls::read_playlist(&dir).segments.len() as u64;
    let during = (publisher_group.usage(), subscriber_group.usage());
    let (publisher_threads, subscriber_threads) = (threads(&publisher), threads(&subscriber));
    let (publisher_rss, subscriber_rss) = (rss(&publisher), rss(&subscriber));
    let seconds = (
        started.elapsed().as_secs_f64(),
        subscriber_started.elapsed().as_secs_f64(),
    );

    // Subscribers first: a publisher that leaves would end them with exit 5.
    let sub_out = subscriber.stop();
    let other_out = other.stop();
    let pub_out = publisher.stop();
    // Read again after the exits, so the shutdown counts too.
    let (pub_usage, sub_usage) = (publisher_group.usage(), subscriber_group.usage());
    eprintln!(
        "{name}: first segment {:.1} s after the publisher started, then a {run:?} window",
        start_up.as_secs_f64()
    );
    report(
        "publisher",
        &during.0,
        publisher_rss,
        &publisher_threads,
        seconds.0,
    );
    report(
        "subscriber",
        &during.1,
        subscriber_rss,
        &subscriber_threads,
        seconds.1,
    );
    let pub_summary = process::summary_object(&pub_out);
    eprintln!("publisher: {pub_summary}");

    assert!(sub_out.status.success(), "{}", process::stderr(&sub_out));
    assert!(
        other_out.status.success(),
        "{}",
        process::stderr(&other_out)
    );
    for (usage, role) in [(&pub_usage, "publisher"), (&sub_usage, "subscriber")] {
        assert_eq!(
            (usage.oom, usage.oom_kill),
            (0, 0),
            "the {role}'s cgroup went out of memory: {usage:?}"
        );
    }
    // The publisher writes no file: reaching its limit would mean its own memory (heap, cache,
    // sockets) does not fit. The subscriber's segments are page cache charged to its cgroup, which
    // grows by what it writes until the kernel reclaims it at the limit (about 80 s of the
    // 19.39 Mb/s stream); that is counted and printed, not a failure.
    assert_eq!(
        pub_usage.limit_hits, 0,
        "the publisher's cgroup reached its memory limit: {pub_usage:?}"
    );
    eprintln!(
        "memory limit reached (v1 failcnt / v2 events max): publisher {}, subscriber {}; oom: \
         publisher {}/{}, subscriber {}/{}",
        pub_usage.limit_hits,
        sub_usage.limit_hits,
        pub_usage.oom,
        pub_usage.oom_kill,
        sub_usage.oom,
        sub_usage.oom_kill
    );
    for (usage, role) in [(&pub_usage, "publisher"), (&sub_usage, "subscriber")] {
        assert!(
            usage.cpu_ns > 0,
            "the {role}'s cgroup counted no CPU: {usage:?}"
        );
    }
    let ingest = &pub_summary["ingest"];
    assert_eq!(
        (
            &pub_summary["dropped"],
            &ingest["chunker"]["lost_packets"],
            &ingest["overrun_bytes"]
        ),
        (&0.into(), &0.into(), &0.into()),
        "groups dropped for slow subscribers, packets lost, bytes overrun: {pub_summary}"
    );

    let expected = run.as_millis() as u64 / CHUNK_MS - ALLOWANCE;
    eprintln!("capped subscriber: {written} segments in the {run:?} window (at least {expected})");
    assert!(
        written >= expected,
        "the capped subscriber wrote {written} chunks in the {run:?} after its first, expected at \
         least {expected}"
    );
    for (dir, json, role) in [
        (&dir, &json, "capped subscriber"),
        (&other_dir, &other_json, "second subscriber"),
    ] {
        let indices = playlist_indices(dir);
        assert!(
            indices.windows(2).all(|w| w[1] == w[0] + 1),
            "the {role} has a gap: {indices:?}"
        );
        let summary = summary_json(json);
        assert_eq!(summary["late"], 0, "{role}: {summary}");
        assert_eq!(
            summary["rejections"],
            serde_json::json!({}),
            "{role}: {summary}"
        );
        let p99 = summary["latency_ms"]["p99"].as_u64().unwrap_or(u64::MAX);
        eprintln!(
            "{role}: {} chunks ({}..={}), latency p50 {} ms, p99 {} ms",
            indices.len(),
            indices.first().unwrap_or(&0),
            indices.last().unwrap_or(&0),
            summary["latency_ms"]["p50"],
            summary["latency_ms"]["p99"],
        );
        // A chunk more than two chunks late would hold up a player three target durations behind
        // the live edge. (On this shared 2-core machine a load average of 14 pushed both
        // subscribers' p99 to 1.9 s once, the one outside the caps too: the CPU it waited for was
        // the machine's, not the quota's.)
        assert!(
            p99 < 2 * CHUNK_MS,
            "{role}: latency p99 {p99} ms: {summary}"
        );
        hls::assert_decodes_clean(dir);
    }
}

#[test]
#[ignore = "real-time scenario: README's test command runs it serially"]
fn the_built_in_broadcast_keeps_real_time_in_5_percent_of_a_core_and_64_mib() {
    let groups = capped_groups("builtin");
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "1"]);
    keeps_real_time_in_budget("builtin", &sim, groups);
}

/// The issue's stream: the ATSC-like 19.39 Mb/s clip (MPEG-2 + AC-3) looped by the simulator.
#[test]
#[ignore = "real-time scenario: README's test command runs it serially"]
fn a_19_39_mb_s_broadcast_keeps_real_time_in_5_percent_of_a_core_and_64_mib() {
    let groups = capped_groups("atsc");
    let atsc = media::media_path("atsc.ts", &media::atsc_mpeg2_ac3(12));
    let sim = Sim::start(&["--tuners", "1", "--input", atsc.to_str().unwrap()]);
    keeps_real_time_in_budget("atsc", &sim, groups);
}
