//! `ec-node moq-forward`: re-serve a stream's tracks received from another peer (an availability
//! node without a tuner), optionally as a deliberately hostile node for tests (`--tamper`).
//!
//! Flags become a [`ForwardConfig`]; the endpoint listens, the ready line names it and the
//! tracks, and [`ec_node::node::forward`] runs the loop. Exit codes as every command.

use super::bounded::AtLeastOne;
use super::moq_subscribe::{
    reasons, rejections_json, sources_json, sources_lines, subscribe_failure,
};
use super::peer::{
    advertised, node_key, parse_target, peer_check, ready_line, serve_failure, stream_keys,
    trusted_signers, upstream_failure,
};
use super::summary::{self, Line, Summary};
use super::Failure;
use argh::FromArgs;
use ec_node::manifest::Policy;
use ec_node::moq::track::{BroadcastTrack, TrackKind};
use ec_node::net::Target;
use ec_node::node::forward::tamper::{Mode, Tamper};
use ec_node::node::forward::{
    forward, ForwardConfig, ForwardError, ForwardSummary, Upstreams, Verification,
};
use ec_node::node::tracks::{Outlet, PeerSpec, TrackServer};
use ec_node::stop::StopFlag;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Re-serve a stream received from another peer: subscribe to its tracks and publish them to
/// our own subscribers. What is forwarded is verified by subscribers, never trusted.
#[derive(FromArgs)]
#[argh(subcommand, name = "moq-forward")]
pub struct Args {
    /// a peer to forward from: NODE_ID@HOST:PORT, HOST:PORT or moqt://URL (repeatable when
    /// verifying: the first is tried first, the others take over a chunk or the stream when it
    /// stalls, lies or leaves)
    #[argh(option)]
    remote: Vec<String>,
    /// listen for subscribers on this UDP address (e.g. 127.0.0.1:0 picks a free port)
    #[argh(option)]
    listen: SocketAddr,
    /// stream id
    #[argh(option)]
    stream_id: String,
    /// network secret, hex (default: none)
    #[argh(option)]
    network_secret: Option<String>,
    /// forward the manifests track too (default: the chunks track only; always when verifying)
    #[argh(switch)]
    manifests: bool,
    /// verify before forwarding, with the manifests from this peer (repeatable; default: the
    /// --remote peers)
    #[argh(option)]
    remote_manifests: Vec<String>,
    /// verify before forwarding, trusting manifests signed by this node id (repeatable; default
    /// with --remote-manifests: its pinned node id)
    #[argh(option)]
    trust: Vec<String>,
    /// when verifying: milliseconds a chunk a manifest vouches for may take before it is fetched
    /// from the next --remote (default 2000)
    #[argh(option, default = "AtLeastOne::literal(2000)")]
    group_timeout: AtLeastOne<u64>,
    /// when verifying with several --remote: rejections after which a source is demoted
    /// (default 3)
    #[argh(option, default = "AtLeastOne::literal(3)")]
    max_source_invalid: AtLeastOne<u32>,
    /// when verifying: exit 5 when no object came for this many seconds (default 30)
    #[argh(option, default = "AtLeastOne::literal(30)")]
    idle_timeout: AtLeastOne<u64>,
    /// node key file for the listening identity (default: a fresh key)
    #[argh(option)]
    key: Option<PathBuf>,
    /// group cache per track for late joiners and FETCH, in MiB (default 32)
    #[argh(option, default = "AtLeastOne::literal(32)")]
    cache_mb: AtLeastOne<usize>,
    /// TEST ONLY: tamper with chunk groups: flip, swap, replay or inject (repeatable; used in turn)
    #[argh(option)]
    tamper: Vec<Mode>,
    /// with --tamper: tamper with every Nth chunk group (default 3)
    #[argh(option, default = "AtLeastOne::literal(3)")]
    tamper_every: AtLeastOne<u64>,
    /// trust this PEM certificate or CA for a moqt:// remote instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// do not check the remote's certificate (warns)
    #[argh(switch)]
    insecure: bool,
    /// print the summary as one JSON object on the last line of stdout instead of text on stderr
    #[argh(switch)]
    json: bool,
}

/// Runs the subcommand and tells its summary.
pub fn run(args: Args) -> Result<(), Failure> {
    let json = args.json;
    let mut told = None;
    let outcome = forward_tracks(args, &mut told);
    summary::report("moq-forward", json, told.as_ref(), outcome)
}

/// Forwards; `told` gets the summary once the loop has run to its end.
fn forward_tracks(args: Args, told: &mut Option<ForwardReport>) -> Result<(), Failure> {
    let keys = stream_keys(Some(&args.stream_id), args.network_secret.as_deref(), None)?;
    let targets = |list: &[String]| {
        list.iter()
            .map(|r| parse_target(r))
            .collect::<Result<Vec<_>, _>>()
    };
    let (objects, manifests) = (targets(&args.remote)?, targets(&args.remote_manifests)?);
    let verifying = !manifests.is_empty() || !args.trust.is_empty();
    match objects.len() {
        0 => return Err(Failure::usage("--remote is required")),
        1 => {}
        _ if !verifying => {
            return Err(Failure::usage(
                "several --remote need --trust or --remote-manifests: without manifests there \
                 is nothing to tell which source to take a chunk from",
            ))
        }
        _ => {}
    }
    let key = node_key(args.key.as_deref())?;
    let locator = keys.locator().to_string();
    let mut kinds = vec![TrackKind::Chunks];
    if args.manifests || verifying {
        kinds.push(TrackKind::Manifests);
    }
    let tracks = kinds
        .into_iter()
        .map(|k| BroadcastTrack::new(&locator, k).map(|t| t.full_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::other(e.to_string()))?;
    let spec = |target: &Target| PeerSpec {
        check: peer_check(target, args.relay_ca.clone(), args.insecure),
        target: target.clone(),
    };
    let upstreams = if verifying {
        let signers = if manifests.is_empty() {
            &objects
        } else {
            &manifests
        };
        let trusted = trusted_signers(&args.trust, signers)?;
        if trusted.is_empty() {
            return Err(Failure::usage(
                "verifying needs a signer to trust: --trust NODE_ID or a NODE_ID@ address",
            ));
        }
        let mut policy = Policy::new(trusted);
        policy.require_manifest = true;
        Upstreams::Verified(Verification {
            objects: objects.iter().map(spec).collect(),
            manifests: manifests.iter().map(spec).collect(),
            keys: keys.clone(),
            policy,
            group_timeout: Duration::from_millis(args.group_timeout.get()),
            max_source_invalid: args.max_source_invalid.get(),
            idle_timeout: Duration::from_secs(args.idle_timeout.get()),
        })
    } else {
        eprintln!(
            "moq-forward: forwarding unverified bytes (give --trust or --remote-manifests to \
             verify before forwarding); subscribers verify what they get"
        );
        Upstreams::Unverified(spec(&objects[0]))
    };
    if !args.tamper.is_empty() {
        log::warn!(
            "--tamper {:?}: this node forwards corrupted objects on purpose",
            args.tamper
        );
    }
    let server = TrackServer::live(&tracks, args.cache_mb.get().saturating_mul(1 << 20));
    let mut outlet = Outlet::listen(args.listen, &key, server).map_err(serve_failure)?;
    let endpoint = format!("{}@{}", key.node_id(), advertised(outlet.local_addr()));
    println!("{}", ready_line(Some(endpoint), &tracks));
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    let config = ForwardConfig {
        upstreams,
        tracks,
        tamper: Tamper::new(args.tamper, args.tamper_every.get()),
    };
    let outcome = forward(&mut outlet, config, &stop);
    outlet.shutdown();
    match outcome {
        Ok(summary) => {
            *told = Some(ForwardReport { summary, verifying });
            Ok(())
        }
        Err(ForwardError::Upstream(e)) => Err(upstream_failure(e, "the upstream peer")),
        Err(ForwardError::Verified(e)) => Err(subscribe_failure(e, &Default::default())),
        Err(ForwardError::Serve(e)) => Err(serve_failure(e)),
    }
}

/// What `moq-forward` forwarded.
struct ForwardReport {
    summary: ForwardSummary,
    /// Whether it verified before forwarding.
    verifying: bool,
}

impl Summary for ForwardReport {
    fn text(&self) -> String {
        let s = &self.summary;
        let rejected: u64 = s.rejected.iter().map(|(_, n)| n).sum();
        let reasons = reasons(&s.rejected);
        Line::new(
            "moq-forward",
            format!(
                "{} groups forwarded, {} tampered with",
                s.forwarded, s.tampered
            ),
        )
        .parts(self.verifying.then(|| match reasons.is_empty() {
            true => format!("{rejected} rejected before forwarding"),
            false => format!("{rejected} rejected before forwarding — {reasons}"),
        }))
        .parts(sources_lines(&s.sources))
        .to_string()
    }

    fn fields(&self) -> serde_json::Value {
        let s = &self.summary;
        serde_json::json!({
            "forwarded": s.forwarded,
            "tampered": s.tampered,
            "verifying": self.verifying,
            "rejections": rejections_json(s.rejected.iter().map(|(r, n)| (r, *n))),
            "sources": sources_json(&s.sources),
        })
    }
}
