//! The split-source mesh of ECP-0032 in one process, for `ec-node demo`: the built-in broadcast
//! on an in-process tuner simulator, a leader that publishes only signed manifests, an
//! availability node that publishes only encrypted chunk objects (each capturing on its own
//! tuner), and a subscriber that takes objects from the one and manifests from the other and
//! writes HLS. Every node is the real pipeline on real loopback sockets; this module only starts
//! them, one thread per publisher, the subscriber on the caller's thread, and stops them in order.

use super::publish::{publish, PublishConfig, PublishError, PublishSummary};
use super::subscribe::{subscribe, Destination, SubscribeConfig, SubscribeError, SubscribeSummary};
use super::tracks::{Outlet, PeerSpec, ServeError};
use super::tuner::LocalTuner;
use crate::capture::CaptureOptions;
use crate::chunk::ChunkerConfig;
use crate::crypto::{KeyError, NodeKey, StreamId, StreamKey};
use crate::hdhr::sim::server::BindError;
use crate::hls::playlist::PlaylistKind;
use crate::manifest::Policy;
use crate::net::{EndpointAddr, PeerCheck, Target};
use crate::stop::StopFlag;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

/// The demo's stream id.
pub const STREAM_ID: &str = "ec/demo/v1/builtin/5.1";

/// What the demo runs.
pub struct DemoConfig {
    /// The HLS output folder.
    pub out: PathBuf,
}

/// Who is where, for the caller to tell the user once the nodes are up.
pub struct DemoNodes {
    /// The tuner simulator's HTTP address.
    pub tuner: SocketAddr,
    /// The leader (manifests only).
    pub leader: String,
    /// The availability node (chunk objects only).
    pub availability: String,
}

/// How the demo went.
pub struct DemoSummary {
    /// The subscriber's run.
    pub subscriber: SubscribeSummary,
    /// The leader's run.
    pub leader: Option<PublishSummary>,
    /// The availability node's run.
    pub availability: Option<PublishSummary>,
}

/// Why the demo could not run.
#[derive(Debug)]
pub enum DemoError {
    /// The tuner simulator did not start.
    Tuner(BindError),
    /// A node's endpoint did not start.
    Serve(ServeError),
    /// A publisher thread did not start.
    Start(std::io::Error),
    /// No node key could be made.
    Key(KeyError),
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoError::Tuner(e) => write!(f, "the tuner simulator did not start: {e}"),
            DemoError::Serve(e) => write!(f, "a node did not start: {e}"),
            DemoError::Start(e) => write!(f, "cannot start a publisher thread: {e}"),
            DemoError::Key(e) => write!(f, "cannot make a node key: {e}"),
        }
    }
}

impl std::error::Error for DemoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DemoError::Tuner(e) => Some(e),
            DemoError::Serve(e) => Some(e),
            DemoError::Start(e) => Some(e),
            DemoError::Key(e) => Some(e),
        }
    }
}

/// A publisher running on its own thread.
struct Running {
    addr: EndpointAddr,
    thread: JoinHandle<Result<PublishSummary, PublishError>>,
}

/// Runs the mesh until `stop` (the subscriber then finishes its playlist, and the publishers
/// stop). `started` is told who is where once every node listens.
pub fn demo(
    config: DemoConfig,
    stop: &StopFlag,
    started: &mut dyn FnMut(&DemoNodes),
    progress: &mut dyn FnMut(&SubscribeSummary),
) -> Result<(DemoSummary, Result<(), SubscribeError>), DemoError> {
    let tuner = LocalTuner::start().map_err(DemoError::Tuner)?;
    let stream = StreamId::new(STREAM_ID).expect("the demo's stream id is valid");
    let keys = StreamKey::derive(None, &stream).subkeys();
    let chunker = ChunkerConfig::default();
    let leader_key = NodeKey::generate().map_err(DemoError::Key)?;
    let leader_id = leader_key.node_id();
    let publishers = StopFlag::default();
    let node = |publish_chunks: bool| {
        let (source, keys) = (tuner.source(), keys.clone());
        move |leader: Option<NodeKey>| PublishConfig {
            source,
            capture: CaptureOptions::default(),
            chunker,
            keys,
            leader: leader.map(|k| (k, 1)),
            publish_chunks,
            cache_bytes: 32 << 20,
            linger: Duration::ZERO,
            startup_delay: Duration::ZERO,
        }
    };
    let leader = start(leader_key, true, node(false), &publishers)?;
    let availability_key = NodeKey::generate().map_err(DemoError::Key)?;
    let availability = start(availability_key, false, node(true), &publishers)?;
    started(&DemoNodes {
        tuner: tuner.addr(),
        leader: leader.addr.to_string(),
        availability: availability.addr.to_string(),
    });
    let pinned = |addr: &EndpointAddr| PeerSpec {
        target: Target::Node(addr.clone()),
        check: addr.node.map_or(PeerCheck::Unpinned, PeerCheck::Pinned),
    };
    let mut policy = Policy::new(vec![leader_id]);
    policy.require_manifest = true;
    let subscriber = SubscribeConfig {
        manifests: vec![pinned(&leader.addr)],
        backfill: 3,
        ..SubscribeConfig::new(
            keys,
            policy,
            vec![pinned(&availability.addr)],
            chunker.chunk_ms,
            Destination::Folder(config.out, PlaylistKind::Event),
        )
    };
    let (summary, outcome) = subscribe(subscriber, stop, progress);
    publishers.set();
    let join = |r: Running| r.thread.join().ok().and_then(Result::ok);
    Ok((
        DemoSummary {
            subscriber: summary,
            leader: join(leader),
            availability: join(availability),
        },
        outcome,
    ))
}

/// Starts a publisher with identity `key` listening on a free loopback port, on its own thread;
/// a leader also signs with `key`.
fn start(
    key: NodeKey,
    leader: bool,
    config: impl FnOnce(Option<NodeKey>) -> PublishConfig,
    stop: &StopFlag,
) -> Result<Running, DemoError> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let config = config(leader.then(|| key.clone()));
    let outlet = Outlet::listen(listen, &key, config.server()).map_err(DemoError::Serve)?;
    let local = outlet.local_addr();
    let addr = EndpointAddr {
        node: Some(key.node_id()),
        host: local.ip().to_string(),
        port: local.port(),
    };
    let stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let mut outlets = [outlet];
            let outcome = publish(&mut outlets, config, &stop);
            let [outlet] = outlets;
            outlet.shutdown();
            outcome
        })
        .map_err(DemoError::Start)?;
    Ok(Running { addr, thread })
}
