//! The publishing pipeline: capture → chunk ([`super::ingest`]) → seal thread → the outlets'
//! endpoint threads.
//!
//! ```text
//!  capture ─► chunk ─(bounded)─► seal thread ─(each outlet's feed: bounded)─► endpoint thread
//!                                 Sealer: encrypt,                           TrackServer: caches,
//!                                 sign epochs (leader)                       every session
//! ```
//!
//! The seal thread encrypts each chunk (and on a leader signs one manifest per epoch); a
//! manifests-only leader seals too, to learn the object ids its manifests vouch for, but hands
//! out no objects. Each sealed group goes by value to the [`TrackServer`] of every [`Outlet`]
//! (a listening endpoint, relay links, or both), which caches it and puts it on every
//! subscription on its own thread. The caller's thread only polls the outlets (a relay that
//! leaves is dialled again while the others go on), ends the tracks when the input ends and lingers. Capture never waits
//! for the network: the ring overwrites, and a slow subscriber's session drops its oldest queued
//! groups (counted). Nothing here speaks the protocol or knows a format: it only wires the
//! stages.

use super::ingest::{Ingest, IngestError, IngestReport};
use super::tracks::{Outlet, ServeError, TrackServer, Work};
use crate::capture::{CaptureOptions, Source};
use crate::chunk::{ChunkIndex, ChunkerConfig};
use crate::crypto::{NodeKey, StreamKeys};
use crate::manifest::{SealError, Sealer};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{FullTrackName, GroupId};
use crate::net::Feed;
use crate::node::timing::{self, Stage};
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use crossbeam_channel::{bounded, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest the caller's thread sleeps when nothing is ready, so a stop request is seen.
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
        self.kinds()
            .into_iter()
            .filter_map(|k| BroadcastTrack::new(&locator, k).ok())
            .map(|t| t.full_name())
            .collect()
    }

    /// A server of these tracks with its caches, for one outlet. The caches of several
    /// outlets hold the same payloads (shared `Arc`s), not copies.
    pub fn server(&self) -> TrackServer {
        TrackServer::live(&self.tracks(), self.cache_bytes)
    }

    fn kinds(&self) -> Vec<TrackKind> {
        let mut kinds = Vec::new();
        if self.publish_chunks {
            kinds.push(TrackKind::Chunks);
        }
        if self.leader.is_some() {
            kinds.push(TrackKind::Manifests);
        }
        kinds
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
    /// Times a relay was dialled again after it left or refused, all relays.
    pub relay_reconnects: u64,
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

impl std::error::Error for PublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PublishError::Ingest(e) => Some(e),
            PublishError::Seal(e) => Some(e),
            PublishError::Serve(e) => Some(e),
            PublishError::Start(e) => Some(e),
        }
    }
}

/// Where the seal thread hands its groups: each outlet's feed, and the tracks' positions in the
/// servers' lists.
struct Destinations {
    feeds: Vec<Feed<Work>>,
    chunks: Option<usize>,
    manifests: Option<usize>,
}

impl Destinations {
    /// Hands a group of `kind` to every outlet; false once an outlet has stopped.
    fn send(&self, kind: TrackKind, group: u64, payload: Arc<[u8]>) -> bool {
        let at = match kind {
            TrackKind::Chunks => self.chunks,
            TrackKind::Manifests => self.manifests,
        };
        let Some(track) = at else {
            return true;
        };
        self.feeds.iter().all(|feed| {
            feed.send(Work::Group {
                track,
                group: GroupId(group),
                payload: payload.clone(),
            })
            .is_ok()
        })
    }
}

/// What the seal thread did.
struct Sealed {
    chunks: u64,
    manifests: u64,
    ingest: Option<IngestReport>,
}

/// Publishes from `outlets` until the input ends and `linger` passes, or `stop` is set. A
/// relay that leaves is dialled again; subscribers come and go.
pub fn publish(
    outlets: &mut [Outlet],
    config: PublishConfig,
    stop: &StopFlag,
) -> Result<PublishSummary, PublishError> {
    let kinds = config.kinds();
    let at = |kind| kinds.iter().position(|k| *k == kind);
    let destinations = Destinations {
        feeds: outlets.iter().map(Outlet::feed).collect(),
        chunks: at(TrackKind::Chunks),
        manifests: at(TrackKind::Manifests),
    };
    let linger = config.linger;
    let (done_tx, done) = bounded::<()>(1);
    let seal = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("seal".into())
            .spawn(move || {
                let _done = done_tx; // dropped when sealing ends: wakes the caller
                seal_stage(config, &destinations, &stop)
            })
            .map_err(PublishError::Start)?
    };
    let served = watch(
        outlets,
        stop,
        || !matches!(done.try_recv(), Err(TryRecvError::Disconnected)),
        &done,
    )
    .and_then(|()| {
        if stop.is_set() {
            return Ok(());
        }
        log::info!(
            "input ended; serving the cache for {} s",
            linger.as_secs_f32()
        );
        for outlet in outlets.iter() {
            // An outlet that stopped already has nothing left to end.
            let _ = outlet.feed().send(Work::End);
        }
        let until = Instant::now() + linger;
        watch(outlets, stop, || Instant::now() < until, &done)
    });
    stop.set();
    let sealed = seal.join().unwrap_or(Ok(Sealed {
        chunks: 0,
        manifests: 0,
        ingest: None,
    }));
    served.map_err(PublishError::Serve)?;
    let sealed = sealed?;
    Ok(PublishSummary {
        chunks: sealed.chunks,
        manifests: sealed.manifests,
        evicted: outlets
            .iter()
            .map(|o| o.stats().evicted_groups())
            .max()
            .unwrap_or(0),
        dropped: outlets.iter().map(|o| o.stats().dropped_groups()).sum(),
        relay_reconnects: outlets.iter().map(Outlet::reconnects).sum(),
        ingest: sealed.ingest,
    })
}

/// Watches the outlets while `going` holds and no stop was requested.
fn watch(
    outlets: &mut [Outlet],
    stop: &StopFlag,
    mut going: impl FnMut() -> bool,
    wake: &crossbeam_channel::Receiver<()>,
) -> Result<(), ServeError> {
    while !stop.is_set() && going() {
        for outlet in outlets.iter_mut() {
            outlet.poll()?;
        }
        super::tracks::wait_any(&[], outlets, Some(wake), IDLE_WAIT);
    }
    Ok(())
}

/// The seal thread: starts ingest after the startup delay, seals every chunk and hands the
/// groups to every outlet; returns what it published and how ingest ended.
fn seal_stage(
    config: PublishConfig,
    out: &Destinations,
    stop: &StopFlag,
) -> Result<Sealed, PublishError> {
    let mut sealed = Sealed {
        chunks: 0,
        manifests: 0,
        ingest: None,
    };
    let deadline = Instant::now() + config.startup_delay;
    while Instant::now() < deadline {
        if stop.is_set() {
            return Ok(sealed);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ingest = Ingest::start(&config.source, &config.capture, config.chunker, stop)
        .map_err(PublishError::Ingest)?;
    let mut sealer = Sealer::new(config.keys, config.leader, config.chunker.chunk_ms);
    let mut result = Ok(());
    loop {
        let (chunk, _) = match ingest.chunks().recv_timeout(Duration::from_millis(100)) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) if stop.is_set() => break,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let (object, manifests) = match sealer.seal(&chunk, UnixMillis::now()) {
            Ok(sealed) => sealed,
            Err(e) => {
                result = Err(PublishError::Seal(e));
                break;
            }
        };
        timing::mark(Stage::Sealed, chunk.index);
        let index = chunk.index;
        ingest.recycle(chunk.bytes);
        let mut open = true;
        if config.publish_chunks {
            open = out.send(TrackKind::Chunks, index.0, object);
            timing::mark(Stage::Sent, ChunkIndex(index.0));
            sealed.chunks += 1;
        }
        for m in manifests {
            open = open && out.send(TrackKind::Manifests, m.epoch, m.bytes.into());
            sealed.manifests += 1;
        }
        if !open {
            break;
        }
    }
    if result.is_ok() {
        match sealer.finish(UnixMillis::now()) {
            Ok(Some(m)) => {
                out.send(TrackKind::Manifests, m.epoch, m.bytes.into());
                sealed.manifests += 1;
            }
            Ok(None) => {}
            Err(e) => result = Err(PublishError::Seal(e)),
        }
    }
    if result.is_err() {
        stop.set();
    }
    sealed.ingest = Some(ingest.finish());
    result.map(|()| sealed)
}
