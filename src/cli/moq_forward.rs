//! `ec-node moq-forward`: re-serve a stream's tracks received from another peer (an availability
//! node without a tuner), optionally as a deliberately hostile node for tests (`--tamper`).
//!
//! Flags become a [`ForwardConfig`]; the endpoint listens, the ready line names it and the
//! tracks, and [`ec_node::node::forward`] runs the loop. Exit codes as every command.

use super::peer::{
    advertised, node_key, parse_target, peer_check, ready_line, serve_failure, stream_keys,
    trusted_signers, upstream_failure,
};
use super::summary::Summary;
use super::Failure;
use argh::FromArgs;
use ec_node::manifest::Policy;
use ec_node::moq::track::{BroadcastTrack, TrackKind};
use ec_node::net::Target;
use ec_node::node::forward::tamper::{Mode, Tamper};
use ec_node::node::forward::{forward, ForwardConfig, ForwardError, Verification};
use ec_node::node::tracks::{Outlet, PeerSpec, TrackServer};
use ec_node::stop::StopFlag;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Re-serve a stream received from another peer: subscribe to its tracks and publish them to
/// our own subscribers. What is forwarded is verified by subscribers, never trusted.
#[derive(FromArgs)]
#[argh(subcommand, name = "moq-forward")]
pub struct Args {
    /// the peer to forward from: NODE_ID@HOST:PORT, HOST:PORT or moqt://URL
    #[argh(option)]
    remote: String,
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
    /// verify before forwarding, with the manifests from this peer (default: --remote)
    #[argh(option)]
    remote_manifests: Option<String>,
    /// verify before forwarding, trusting manifests signed by this node id (repeatable; default
    /// with --remote-manifests: its pinned node id)
    #[argh(option)]
    trust: Vec<String>,
    /// node key file for the listening identity (default: a fresh key)
    #[argh(option)]
    key: Option<PathBuf>,
    /// group cache per track for late joiners and FETCH, in MiB (default 32)
    #[argh(option, default = "32")]
    cache_mb: usize,
    /// TEST ONLY: tamper with chunk groups: flip, swap, replay or inject (repeatable; used in turn)
    #[argh(option)]
    tamper: Vec<Mode>,
    /// with --tamper: tamper with every Nth chunk group (default 3)
    #[argh(option, default = "3")]
    tamper_every: u64,
    /// trust this PEM certificate or CA for a moqt:// remote instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// do not check the remote's certificate (warns)
    #[argh(switch)]
    insecure: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    if args.cache_mb == 0 || args.tamper_every == 0 {
        return Err(Failure::usage(
            "--cache-mb and --tamper-every must be at least 1",
        ));
    }
    let keys = stream_keys(Some(&args.stream_id), args.network_secret.as_deref(), None)?;
    let target = parse_target(&args.remote)?;
    let key = node_key(args.key.as_deref())?;
    let locator = keys.locator().to_string();
    let manifests_peer = args
        .remote_manifests
        .as_deref()
        .map(parse_target)
        .transpose()?;
    let verifying = manifests_peer.is_some() || !args.trust.is_empty();
    let mut kinds = vec![TrackKind::Chunks];
    if args.manifests || verifying {
        kinds.push(TrackKind::Manifests);
    }
    let tracks = kinds
        .into_iter()
        .map(|k| BroadcastTrack::new(&locator, k).map(|t| t.full_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::other(e.to_string()))?;
    if !args.tamper.is_empty() {
        log::warn!(
            "--tamper {:?}: this node forwards corrupted objects on purpose",
            args.tamper
        );
    }
    let server = TrackServer::live(&tracks, args.cache_mb.saturating_mul(1 << 20));
    let mut outlet = Outlet::listen(args.listen, &key, server).map_err(serve_failure)?;
    let endpoint = format!("{}@{}", key.node_id(), advertised(outlet.local_addr()));
    println!("{}", ready_line(Some(endpoint), &tracks));
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    let spec = |target: &Target| PeerSpec {
        check: peer_check(target, args.relay_ca.clone(), args.insecure),
        target: target.clone(),
    };
    let verify = if verifying {
        let signers = std::slice::from_ref(manifests_peer.as_ref().unwrap_or(&target));
        let trusted = trusted_signers(&args.trust, signers)?;
        if trusted.is_empty() {
            return Err(Failure::usage(
                "verifying needs a signer to trust: --trust NODE_ID or a NODE_ID@ address",
            ));
        }
        let mut policy = Policy::new(trusted);
        policy.require_manifest = true;
        Some(Verification {
            keys: keys.clone(),
            policy,
            manifests: manifests_peer.as_ref().map(spec),
        })
    } else {
        eprintln!(
            "moq-forward: forwarding unverified bytes (give --trust or --remote-manifests to \
             verify before forwarding); subscribers verify what they get"
        );
        None
    };
    let config = ForwardConfig {
        upstream: spec(&target),
        tracks,
        tamper: Tamper::new(args.tamper, args.tamper_every),
        verify,
    };
    let outcome = forward(&mut outlet, config, &stop);
    outlet.shutdown();
    match outcome {
        Ok(summary) => {
            Summary::new(
                "moq-forward",
                format!(
                    "{} groups forwarded, {} tampered with",
                    summary.forwarded, summary.tampered
                ),
            )
            .parts(verifying.then(|| format!("{} rejected before forwarding", summary.rejected)))
            .print(false);
            Ok(())
        }
        Err(ForwardError::Upstream(e)) => Err(upstream_failure(e, "the upstream peer")),
        Err(ForwardError::Serve(e)) => Err(serve_failure(e)),
    }
}
