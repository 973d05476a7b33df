//! The publishing pipeline: capture → chunk ([`super::ingest`]) → seal thread → publish on the
//! caller's thread.
//!
//! ```text
//!  capture ─► chunk ─(bounded)─► seal thread ─(bounded: SEALED_QUEUE)─► publish loop (caller)
//!                                 Sealer: encrypt,                        TrackServer: caches,
//!                                 sign epochs (leader)                    sessions, endpoint
//! ```
//!
//! The seal thread encrypts each chunk (and on a leader signs one manifest per epoch); a
//! manifests-only leader seals too, to learn the object ids its manifests vouch for, but hands
//! out no objects. The publish loop serves sessions on every [`Outlet`] (a listening endpoint,
//! a relay session, or both) and puts each new group into its track's cache and on every
//! subscription. Capture never waits for the network: the ring overwrites, and
//! a slow subscriber's session drops its oldest queued groups (counted). Nothing here speaks the
//! protocol or knows a format: it only wires the stages.

use super::ingest::{Ingest, IngestError, IngestReport};
use super::serve::{ServeError, TrackServer};
use crate::capture::{CaptureOptions, Source};
use crate::chunk::{ChunkIndex, ChunkerConfig};
use crate::cli::stop::StopFlag;
use crate::crypto::{NodeKey, StreamKeys};
use crate::manifest::{SealError, Sealer, UnixTime};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{FullTrackName, GroupId};
use crate::net::{ConnId, Endpoint, NetEvent};
use crate::node::timing::{self, Stage};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sealed groups in flight between the seal thread and the publish loop.
const SEALED_QUEUE: usize = 8;
/// Longest the publish loop sleeps when nothing is ready, so a stop request is seen.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// What to publish and how.
pub struct PublishConfig {
    /// The source.
    pub source: Source,
    /// How to capture it.
    pub capture: CaptureOptions,
    /// The chunk grid.
    pub chunker: ChunkerConfig,
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// With manifests: the signing key and chunks per epoch.
    pub leader: Option<(NodeKey, u32)>,
    /// Whether the chunk objects are published.
    pub publish_chunks: bool,
    /// Payload bytes cached per track.
    pub cache_bytes: usize,
    /// How long to keep serving after the input ends.
    pub linger: Duration,
    /// How long to hold ingest before it starts.
    pub startup_delay: Duration,
}

impl PublishConfig {
    /// The tracks this configuration publishes: chunks unless disabled, manifests on a leader.
    pub fn tracks(&self) -> Vec<FullTrackName> {
        let locator = self.keys.locator().to_string();
        let mut kinds = Vec::new();
        if self.publish_chunks {
            kinds.push(TrackKind::Chunks);
        }
        if self.leader.is_some() {
            kinds.push(TrackKind::Manifests);
        }
        kinds
            .into_iter()
            .filter_map(|k| BroadcastTrack::new(&locator, k).ok())
            .map(|t| t.full_name())
            .collect()
    }

    /// A server of these tracks with their caches. The caches of several outlets hold the same
    /// payloads (shared `Arc`s), not copies.
    fn server(&self) -> TrackServer {
        TrackServer::new(&self.tracks(), self.cache_bytes)
    }
}

/// How a publishing run went.
#[derive(Debug, Default)]
pub struct PublishSummary {
    /// Chunk groups published.
    pub chunks: u64,
    /// Manifest groups published.
    pub manifests: u64,
    /// Groups evicted from the caches.
    pub evicted: u64,
    /// Groups dropped for slow subscribers.
    pub dropped: u64,
    /// How ingest ended (`None` if it never started).
    pub ingest: Option<IngestReport>,
}

/// Why publishing failed.
#[derive(Debug)]
pub enum PublishError {
    /// Ingest could not start.
    Ingest(IngestError),
    /// Sealing failed.
    Seal(SealError),
    /// Serving failed.
    Serve(ServeError),
    /// The seal thread could not be started.
    Start(std::io::Error),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Ingest(e) => e.fmt(f),
            PublishError::Seal(e) => e.fmt(f),
            PublishError::Serve(e) => e.fmt(f),
            PublishError::Start(e) => write!(f, "cannot start the seal thread: {e}"),
        }
    }
}

/// A group sealed for one of the tracks.
struct Sealed {
    kind: TrackKind,
    group: GroupId,
    payload: Arc<[u8]>,
}

/// One endpoint the pipeline serves from: listening for subscribers, or a session with a relay
/// that already accepted our namespaces.
pub struct Outlet {
    ep: Endpoint,
    relay: Option<ConnId>,
    deferred: Vec<NetEvent>,
    server: TrackServer,
}

impl Outlet {
    /// A listening endpoint serving the tracks of `config`.
    pub fn listening(ep: Endpoint, config: &PublishConfig) -> Outlet {
        Outlet {
            ep,
            relay: None,
            deferred: Vec::new(),
            server: config.server(),
        }
    }

    /// A relay session on `conn` serving the tracks of `config`, with the events that arrived
    /// while it was announced to ([`super::serve::announce`]).
    pub fn relay(
        ep: Endpoint,
        conn: ConnId,
        deferred: Vec<NetEvent>,
        config: &PublishConfig,
    ) -> Outlet {
        Outlet {
            ep,
            relay: Some(conn),
            deferred,
            server: config.server(),
        }
    }

    /// Closes the endpoint (GOAWAY, CONNECTION_CLOSE) and joins its thread.
    pub fn shutdown(self) {
        self.ep.shutdown();
    }

    /// Handles one network event; the relay leaving is an error.
    fn on_net_event(&mut self, ev: NetEvent) -> Result<(), ServeError> {
        let server = &mut self.server;
        match ev {
            NetEvent::Connected { conn, peer, .. } => {
                log::info!("session {conn:?} with {peer}");
                server.connected(conn);
            }
            NetEvent::Disconnected { conn, why } if Some(conn) == self.relay => {
                return Err(ServeError::RelayLeft(why));
            }
            NetEvent::Disconnected { conn, why } => {
                log::info!("session {conn:?} ended: {why}");
                server.disconnected(conn);
            }
            NetEvent::Session { conn, event } => server.on_event(&mut self.ep, conn, event)?,
        }
        Ok(())
    }

    /// Handles the network events that are ready without waiting; true if there were any.
    fn poll(&mut self) -> Result<bool, ServeError> {
        let mut handled = false;
        for ev in std::mem::take(&mut self.deferred) {
            self.on_net_event(ev)?;
            handled = true;
        }
        while let Some(ev) = self
            .ep
            .next_event(Duration::ZERO)
            .map_err(ServeError::Net)?
        {
            self.on_net_event(ev)?;
            handled = true;
        }
        Ok(handled)
    }

    fn server(&mut self) -> (&mut TrackServer, &mut Endpoint) {
        (&mut self.server, &mut self.ep)
    }
}

/// Publishes from `outlets` until the input ends and `linger` passes, or `stop` is set. A
/// relay outlet's session ending is an error; subscribers come and go.
pub fn publish(
    outlets: &mut [Outlet],
    config: PublishConfig,
    stop: &StopFlag,
) -> Result<PublishSummary, PublishError> {
    let tracks = config.tracks();
    let name_of = |kind: TrackKind| {
        tracks
            .iter()
            .find(|t| BroadcastTrack::from_full_name(t).is_some_and(|b| b.kind() == kind))
            .cloned()
    };
    let (chunks_track, manifests_track) =
        (name_of(TrackKind::Chunks), name_of(TrackKind::Manifests));
    let linger = config.linger;
    let (tx, rx) = bounded(SEALED_QUEUE);
    let seal = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("seal".into())
            .spawn(move || seal_stage(config, tx, &stop))
            .map_err(PublishError::Start)?
    };
    let mut summary = PublishSummary::default();
    let served = serve_loop(outlets, &rx, stop, linger, &mut |outlet, sealed| {
        let track = match sealed.kind {
            TrackKind::Chunks => &chunks_track,
            TrackKind::Manifests => &manifests_track,
        };
        let (server, ep) = outlet.server();
        match track {
            Some(track) => server.publish(ep, track, sealed.group, sealed.payload.clone()),
            None => Ok(()),
        }
    });
    stop.set();
    drop(rx);
    let sealed = seal.join().unwrap_or(Ok(None));
    for outlet in outlets.iter() {
        summary.evicted = summary.evicted.max(outlet.server.evicted_groups());
        summary.dropped += outlet.server.dropped_groups();
    }
    let (chunks, manifests) = served.map_err(PublishError::Serve)?;
    summary.chunks = chunks;
    summary.manifests = manifests;
    summary.ingest = sealed?;
    Ok(summary)
}

/// The publish loop: network events and sealed groups, until the input ends and `linger`
/// passes. Returns the chunk and manifest groups published.
fn serve_loop(
    outlets: &mut [Outlet],
    rx: &Receiver<Sealed>,
    stop: &StopFlag,
    linger: Duration,
    on_sealed: &mut dyn FnMut(&mut Outlet, &Sealed) -> Result<(), ServeError>,
) -> Result<(u64, u64), ServeError> {
    let mut published = (0, 0);
    let mut ended: Option<Instant> = None;
    while !stop.is_set() {
        let mut busy = false;
        if ended.is_none() {
            match rx.try_recv() {
                Ok(sealed) => {
                    for outlet in outlets.iter_mut() {
                        on_sealed(outlet, &sealed)?;
                    }
                    if sealed.kind == TrackKind::Chunks {
                        timing::mark(Stage::Sent, ChunkIndex(sealed.group.0));
                        published.0 += 1;
                    } else {
                        published.1 += 1;
                    }
                    busy = true;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    log::info!(
                        "input ended; serving the cache for {} s",
                        linger.as_secs_f32()
                    );
                    for outlet in outlets.iter_mut() {
                        let (server, ep) = outlet.server();
                        server.end(ep)?;
                    }
                    ended = Some(Instant::now());
                }
            }
        }
        if ended.is_some_and(|t| t.elapsed() >= linger) {
            break;
        }
        for outlet in outlets.iter_mut() {
            busy |= outlet.poll()?;
        }
        if !busy {
            let endpoints: Vec<&Endpoint> = outlets.iter().map(|o| &o.ep).collect();
            Endpoint::wait_any(&endpoints, ended.is_none().then_some(rx), IDLE_WAIT);
        }
    }
    Ok(published)
}

/// The seal thread: starts ingest after the startup delay, seals every chunk and sends the
/// groups to publish; returns how ingest ended.
fn seal_stage(
    config: PublishConfig,
    out: Sender<Sealed>,
    stop: &StopFlag,
) -> Result<Option<IngestReport>, PublishError> {
    let deadline = Instant::now() + config.startup_delay;
    while Instant::now() < deadline {
        if stop.is_set() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ingest = Ingest::start(&config.source, &config.capture, config.chunker, stop)
        .map_err(PublishError::Ingest)?;
    let mut sealer = Sealer::new(config.keys, config.leader, config.chunker.chunk_ms);
    let send = |kind, group, payload: Arc<[u8]>| {
        let sealed = Sealed {
            kind,
            group: GroupId(group),
            payload,
        };
        out.send(sealed).is_ok()
    };
    let mut result = Ok(());
    loop {
        let (chunk, _) = match ingest.chunks().recv_timeout(Duration::from_millis(100)) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) if stop.is_set() => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (object, manifests) = match sealer.seal(&chunk, now()) {
            Ok(sealed) => sealed,
            Err(e) => {
                result = Err(PublishError::Seal(e));
                break;
            }
        };
        timing::mark(Stage::Sealed, chunk.index);
        let index = chunk.index.0;
        ingest.recycle(chunk.bytes);
        let open = (!config.publish_chunks || send(TrackKind::Chunks, index, object))
            && manifests
                .into_iter()
                .all(|m| send(TrackKind::Manifests, m.epoch, m.bytes.into()));
        if !open {
            break;
        }
    }
    if result.is_ok() {
        match sealer.finish(now()) {
            Ok(Some(m)) => {
                send(TrackKind::Manifests, m.epoch, m.bytes.into());
            }
            Ok(None) => {}
            Err(e) => result = Err(PublishError::Seal(e)),
        }
    }
    if result.is_err() {
        stop.set();
    }
    let report = ingest.finish();
    result.map(|()| Some(report))
}

fn now() -> UnixTime {
    UnixTime(crate::capture::wall_clock().0)
}
