//! `ec-node moq-subscribe`: subscribe to a stream's objects (and manifests, possibly from another
//! peer), verify and decrypt them, and write HLS exactly as `record` does.
//!
//! Flags become a [`SubscribeConfig`]; [`ec_node::node::subscribe`] runs the pipeline; its outcome
//! becomes the exit code: 0 done, 2 usage, 3 cannot connect or identity mismatch, 4 verification
//! failed, 5 idle or the publisher left, 1 anything else.

use super::bounded::{AtLeastOne, ChunkMs};
use super::peer::{parse_target, peer_check, stream_keys, trusted_signers};
use super::summary::{self, Line, Summary};
use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::hls::playlist::PlaylistKind;
use ec_node::manifest::{Policy, Reason};
use ec_node::net::{NetError, Target};
use ec_node::node::subscribe::{
    subscribe, Destination, Latency, SourceSummary, SubscribeConfig, SubscribeError,
    SubscribeSummary,
};
use ec_node::node::tracks::PeerSpec;
use ec_node::stop::StopFlag;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Subscribe to a stream over MoQ, verify it against signed manifests, decrypt it, write HLS.
#[derive(FromArgs)]
#[argh(subcommand, name = "moq-subscribe")]
pub struct Args {
    /// a peer serving the chunk objects: NODE_ID@HOST:PORT (identity pinned), HOST:PORT or
    /// moqt://HOST:PORT (repeatable: the first is tried first, the others take over a chunk or
    /// the stream when it stalls, lies or leaves)
    #[argh(option)]
    remote: Vec<String>,
    /// a peer serving the manifests, if not the --remote peers (repeatable)
    #[argh(option)]
    remote_manifests: Vec<String>,
    /// with several --remote: milliseconds a chunk a manifest vouches for may take before it is
    /// fetched from the next source (default: the chunk duration)
    #[argh(option)]
    group_timeout: Option<AtLeastOne<u64>>,
    /// with several --remote: rejections after which a source is demoted (default 3)
    #[argh(option, default = "AtLeastOne::literal(3)")]
    max_source_invalid: AtLeastOne<u32>,
    /// write the exit summary to this file as the object --json prints (totals and one entry per
    /// source)
    #[argh(option)]
    summary_json: Option<PathBuf>,
    /// print the summary as one JSON object on stdout instead of text on stderr
    #[argh(switch)]
    json: bool,
    /// subscribe to the manifests track
    #[argh(switch)]
    subscribe_manifests: bool,
    /// accept only objects a trusted manifest vouches for (implies --subscribe-manifests)
    #[argh(switch)]
    require_manifest: bool,
    /// trust manifests signed by this node id (repeatable; default: the manifests peer's pinned id)
    #[argh(option)]
    trust: Vec<String>,
    /// stream id
    #[argh(option)]
    stream_id: String,
    /// network secret, hex (default: none)
    #[argh(option)]
    network_secret: Option<String>,
    /// HLS output folder (created if needed; must be empty unless --resume)
    #[argh(option)]
    out: PathBuf,
    /// go on with the playlist an earlier run left in --out: its segments stay, later chunks
    /// follow (EXT-X-DISCONTINUITY where chunks are missing in between)
    #[argh(switch)]
    resume: bool,
    /// keep a sliding live window of this many segments, deleting older ones, instead of every
    /// segment (for a subscriber that runs for days)
    #[argh(option)]
    hls_window: Option<AtLeastOne<usize>>,
    /// chunk duration D in milliseconds, for the playlist (default 2000)
    #[argh(option, default = "ChunkMs::DEFAULT")]
    chunk_ms: ChunkMs,
    /// on joining, also fetch this many chunks from before the current one (default 3)
    #[argh(option, default = "3")]
    backfill: u64,
    /// exit 0 after this many verified chunks
    #[argh(option)]
    stop_after: Option<AtLeastOne<u64>>,
    /// exit 4 after more invalid objects than this (default unlimited)
    #[argh(option)]
    max_invalid_chunks: Option<u64>,
    /// exit 4 when no trusted manifest came within this many seconds; also the longest wait for
    /// the first object (default 10)
    #[argh(option, default = "10")]
    manifest_timeout: u64,
    /// exit 5 when no object came for this many seconds (exit 4 when objects came but none
    /// verified) (default 10)
    #[argh(option, default = "10")]
    idle_timeout: u64,
    /// trust this PEM certificate or CA for moqt:// remotes instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// do not check the peers' certificates (warns)
    #[argh(switch)]
    insecure: bool,
}

/// Runs the subcommand and tells its summary (also into `--summary-json`).
pub fn run(args: Args) -> Result<(), Failure> {
    let mut told = None;
    let outcome = subscribe_to_hls(&args, &mut told);
    let outcome = match (&args.summary_json, &told) {
        (Some(path), Some(report)) => {
            let object = summary::object("moq-subscribe", Some(report), &outcome);
            std::fs::write(path, object.to_string())
                .map_err(|e| Failure::other(format!("{}: {e}", path.display())))
                .and(outcome)
        }
        _ => outcome,
    };
    summary::report("moq-subscribe", args.json, told.as_ref(), outcome)
}

/// Subscribes; `told` gets the summary once the pipeline has run.
fn subscribe_to_hls(args: &Args, told: &mut Option<SubscribeReport>) -> Result<(), Failure> {
    if args.resume && args.hls_window.is_some() {
        return Err(Failure::usage(
            "--resume goes on with a playlist of every segment; it takes no --hls-window",
        ));
    }
    let keys = stream_keys(Some(&args.stream_id), args.network_secret.as_deref(), None)?;
    if args.remote.is_empty() {
        return Err(Failure::usage("--remote is required"));
    }
    let objects = args
        .remote
        .iter()
        .map(|r| parse_target(r))
        .collect::<Result<Vec<_>, _>>()?;
    let manifests = args
        .remote_manifests
        .iter()
        .map(|r| parse_target(r))
        .collect::<Result<Vec<_>, _>>()?;
    let manifests_peers = if manifests.is_empty() {
        &objects
    } else {
        &manifests
    };
    let trusted = trusted_signers(&args.trust, manifests_peers)?;
    if args.require_manifest && trusted.is_empty() {
        return Err(Failure::usage(
            "--require-manifest needs a signer to trust: --trust NODE_ID or a NODE_ID@ address",
        ));
    }
    if !args.require_manifest {
        log::warn!("without --require-manifest, objects are accepted on AEAD authentication alone");
    }
    let mut policy = Policy::new(trusted);
    policy.require_manifest = args.require_manifest;
    let spec = |target: Target| PeerSpec {
        check: peer_check(&target, args.relay_ca.clone(), args.insecure),
        target,
    };
    let output = match (args.resume, args.hls_window) {
        (true, _) => Destination::Resume(args.out.clone()),
        (false, None) => Destination::Folder(args.out.clone(), PlaylistKind::Event),
        (false, Some(n)) => Destination::Folder(args.out.clone(), PlaylistKind::Window(n.get())),
    };
    let objects = objects.into_iter().map(spec).collect();
    let defaults = SubscribeConfig::new(keys, policy, objects, args.chunk_ms.get(), output);
    let config = SubscribeConfig {
        manifests: manifests.into_iter().map(spec).collect(),
        group_timeout: args
            .group_timeout
            .map_or(defaults.group_timeout, |ms| Duration::from_millis(ms.get())),
        max_source_invalid: args.max_source_invalid.get(),
        subscribe_manifests: args.subscribe_manifests,
        backfill: args.backfill,
        stop_after: args.stop_after.map(AtLeastOne::get),
        max_invalid: args.max_invalid_chunks,
        manifest_timeout: Duration::from_secs(args.manifest_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        ..defaults
    };
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    let (summary, outcome) = with_progress(|progress| subscribe(config, &stop, progress));
    let outcome = outcome.map_err(|e| subscribe_failure(e, &summary));
    *told = Some(SubscribeReport {
        summary,
        out: args.out.clone(),
    });
    outcome
}

/// Runs `run` with a progress reporter that keeps one line on stderr when it is a terminal.
pub(super) fn with_progress<T>(run: impl FnOnce(&mut dyn FnMut(&SubscribeSummary)) -> T) -> T {
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |s: &SubscribeSummary| {
        if terminal {
            eprint!("\r{}\x1b[K", progress_line(s));
        }
    };
    let result = run(&mut progress);
    if terminal {
        eprint!("\r\x1b[K");
    }
    result
}

/// The exit code and cause of a failed subscription, with the rejections that led to it.
pub(super) fn subscribe_failure(e: SubscribeError, summary: &SubscribeSummary) -> Failure {
    let exit = match &e {
        SubscribeError::Connect(_, NetError::Config { .. } | NetError::Address { .. }) => {
            Exit::Usage
        }
        SubscribeError::Connect(..) => Exit::Connect,
        SubscribeError::Refused(..)
        | SubscribeError::NoManifest(_)
        | SubscribeError::TooManyInvalid(_)
        | SubscribeError::NothingVerified(..) => Exit::Verify,
        SubscribeError::Idle(_) | SubscribeError::Left(_) => Exit::Idle,
        SubscribeError::Hls(
            ec_node::hls::HlsError::NotEmpty(_) | ec_node::hls::HlsError::NotResumable(..),
        ) => Exit::Usage,
        SubscribeError::Net(_)
        | SubscribeError::Hls(_)
        | SubscribeError::Start(_)
        | SubscribeError::SinkClosed
        | SubscribeError::OutputStopped => Exit::Other,
    };
    let rejected = summary
        .rejected
        .iter()
        .map(|(r, n)| format!("{n} × {r}"))
        .collect::<Vec<_>>();
    // What the user can do about it, in the terms of the command line.
    let hint = match &e {
        SubscribeError::Refused(..) => {
            " (wrong --stream-id or --network-secret, or the peer does not publish it)"
        }
        SubscribeError::TooManyInvalid(_) => " (--max-invalid-chunks)",
        SubscribeError::Hls(ec_node::hls::HlsError::NotEmpty(_)) => {
            " (give --resume to go on with its playlist)"
        }
        _ => "",
    };
    let cause = if rejected.is_empty() {
        format!("{e}{hint}")
    } else {
        format!("{e}{hint} (rejected: {})", rejected.join(", "))
    };
    Failure::new(exit, cause)
}

/// What a subscribing run wrote, and where.
struct SubscribeReport {
    summary: SubscribeSummary,
    /// The HLS folder.
    out: PathBuf,
}

impl Summary for SubscribeReport {
    fn text(&self) -> String {
        subscribe_line("moq-subscribe", &self.summary, &self.out).to_string()
    }

    fn fields(&self) -> serde_json::Value {
        subscribe_fields(&self.summary, &self.out)
    }
}

/// The line for people of a subscribing run (`command` names who ran it: `moq-subscribe`, or
/// the demo's subscriber).
pub(super) fn subscribe_line(command: &str, s: &SubscribeSummary, out: &Path) -> Line {
    let rejected: u64 = s.rejected.iter().map(|(_, n)| n).sum();
    let reasons = reasons(&s.rejected);
    Line::new(
        command,
        format!(
            "{} chunks accepted ({} fetched from before the join, {} bytes) into {}, \
             {} manifests, {} rejected{}{}, {} late",
            s.accepted,
            s.backfilled,
            s.bytes,
            out.display(),
            s.manifests,
            rejected,
            if reasons.is_empty() { "" } else { " — " },
            reasons,
            s.late,
        ),
    )
    .part(format!("latency {}", latency(&s.latency)))
    .part(format!("in {:.1} s", s.elapsed.as_secs_f64()))
    .parts(sources_lines(&s.sources))
}

/// Rejections by reason, for people: `reason: n; reason: n`.
pub(super) fn reasons(rejected: &[(Reason, u64)]) -> String {
    rejected
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line per chunk source when there are several: what each delivered, what of it was
/// rejected, how often it stalled or was redialled, and where it stands.
pub(super) fn sources_lines(sources: &[SourceSummary]) -> Vec<String> {
    if sources.len() < 2 {
        return Vec::new();
    }
    sources
        .iter()
        .map(|src| {
            let rejected: u64 = src.stats.rejections.values().sum();
            format!(
                "source {}: {} chunks ({} bytes), {rejected} rejected, {} timeouts, {} reconnects, {}",
                src.remote, src.stats.chunks, src.stats.bytes, src.stats.timeouts, src.stats.reconnects, src.state
            )
        })
        .collect()
}

/// The figures of a subscribing run for scripts: totals, and one object per chunk source.
pub(super) fn subscribe_fields(s: &SubscribeSummary, out: &Path) -> serde_json::Value {
    serde_json::json!({
        "out": out.display().to_string(),
        "chunks": s.accepted,
        "backfilled": s.backfilled,
        "bytes": s.bytes,
        "newest": s.newest.map(|i| i.0),
        "manifests": s.manifests,
        "rejections": rejections_json(s.rejected.iter().map(|(r, n)| (r, *n))),
        "late": s.late,
        "latency_ms": {"p50": s.latency.percentile(50), "p99": s.latency.percentile(99)},
        "elapsed_s": s.elapsed.as_secs_f64(),
        "sources": sources_json(&s.sources),
    })
}

/// Rejections by reason, for scripts: `{"reason": n, …}`.
pub(super) fn rejections_json<'a>(
    rejected: impl Iterator<Item = (&'a Reason, u64)>,
) -> serde_json::Value {
    serde_json::Value::Object(rejected.map(|(r, n)| (r.to_string(), n.into())).collect())
}

/// One object per chunk source, for scripts: what it delivered, what of it was rejected, how
/// often it stalled or was redialled, and where it stands.
pub(super) fn sources_json(sources: &[SourceSummary]) -> serde_json::Value {
    sources
        .iter()
        .map(|src| {
            serde_json::json!({
                "remote": src.remote,
                "chunks": src.stats.chunks,
                "bytes": src.stats.bytes,
                "rejections": rejections_json(src.stats.rejections.iter().map(|(r, n)| (r, *n))),
                "timeouts": src.stats.timeouts,
                "reconnects": src.stats.reconnects,
                "state": src.state,
            })
        })
        .collect()
}

/// The terminal's progress line: where the stream is and what was refused so far.
fn progress_line(s: &SubscribeSummary) -> String {
    let rejected: u64 = s.rejected.iter().map(|(_, n)| n).sum();
    let newest = s.newest.map_or("-".to_string(), |i| i.to_string());
    let sources = match s.sources.len() {
        0 | 1 => String::new(),
        n => {
            let up = s.sources.iter().filter(|src| src.state == "ok").count();
            let demoted = s
                .sources
                .iter()
                .filter(|src| src.state == "demoted")
                .count();
            format!(", sources {up}/{n} up, {demoted} demoted")
        }
    };
    format!(
        "{:>6.0} s  {} chunks ({:.1} MB), newest {newest}, {} manifests, {rejected} rejected, \
         latency {}{sources}",
        s.elapsed.as_secs_f64(),
        s.accepted,
        s.bytes as f64 / 1e6,
        s.manifests,
        latency(&s.latency)
    )
}

fn latency(l: &Latency) -> String {
    match (l.percentile(50), l.percentile(99)) {
        (Some(p50), Some(p99)) => format!("p50 {p50} ms, p99 {p99} ms"),
        _ => "n/a (no live chunk vouched for by a manifest)".to_string(),
    }
}
