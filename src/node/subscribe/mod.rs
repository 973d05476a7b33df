//! The subscribing pipeline: receive → verify → decrypt → HLS.
//!
//! ```text
//!  objects peer ───(endpoint thread)──┐
//!                                     ├─► receive loop (caller): Verifier (verify + decrypt in
//!  manifests peer ─(endpoint thread)──┘   place) → Reorder ─(bounded)─► HLS thread: HlsWriter
//! ```
//!
//! Objects come from one or several peers (sources) and manifests from the same or other ones,
//! each an [`Upstream`] with its own network thread. Each track is asked for as a late join
//! ([`Ask::Join`]: from the next group, with a joining FETCH of the current group and `backfill`
//! earlier ones), so a late joiner starts at once; `order::Reorder` keeps the segments in index
//! order meanwhile. With several sources, [`swarm::Swarm`] decides which one holds the live
//! subscription and which one a missing or rejected chunk is fetched from; a source that leaves
//! is redialled, one that lies is demoted, and the run goes on from the others.
//! The verifier decides what is accepted ("no manifests, no data" under
//! [`Policy::require_manifest`]); this module only wires the peers, the verifier and the writer,
//! keeps the clocks (start-up, manifest and idle timeouts) and always finishes the playlist with
//! ENDLIST. Memory is bounded by the verifier's policy and the reorder cap.

mod latency;
mod order;
mod output;
pub mod swarm;

pub use latency::Latency;

use crate::chunk::ChunkIndex;
use crate::crypto::StreamKeys;
use crate::hls::playlist::{PlaylistKind, SegmentEntry};
use crate::hls::{HlsError, ProgramClock};
use crate::manifest::{
    AcceptedChunk, Event as Verdict, Manifest, ManifestId, Policy, Reason, Verifier,
};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::GroupId;
use crate::net::NetError;
use crate::node::timing::{self, Stage};
use crate::node::tracks::{Ask, Delivery, FetchEnd, PeerSpec, Upstream, UpstreamError};
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use order::Reorder;
pub use output::{Destination, Onward, SegmentSink};
use output::{Output, OutputError, Segment};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm::{Action, SourceState, SourceStats, Swarm, SwarmConfig};

/// Longest a late joiner holds live chunks back for its backfill to arrive.
const BACKFILL_WAIT: Duration = Duration::from_secs(5);
/// Most verified chunks held back meanwhile.
const REORDER_CAP: usize = 32;
/// Manifest creation times remembered for the latency figure.
const MANIFEST_TIMES: usize = 1024;
/// Longest the receive loop sleeps when no event is ready: how often the clocks are checked.
const TICK: Duration = Duration::from_millis(50);
/// Shortest time between two progress reports.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Chunk sources remembered by index, to blame a rejection on the source that sent it.
const SOURCES_REMEMBERED: usize = 1024;
/// The most sealed objects an [`Onward`]'s run keeps until their chunk is written: what the
/// reorder stage may hold, and as many again waiting for the verifier. Objects of chunks that
/// will never be written (late, rejected) are dropped as soon as a later chunk is written.
const SEALED_HELD: usize = 2 * REORDER_CAP;
/// Manifests kept for an [`Onward`] until the verifier decides on them.
const MANIFESTS_HELD: usize = 64;
/// The widest gap in a track's groups that is fetched when a later group arrives (a blackout,
/// a reconnect); a wider one is left as a gap, marked as a discontinuity.
const GAP_REPAIR: u64 = 32;
/// The first wait before a manifests-only peer that left is dialled again (chunk sources: the
/// swarm's own back-off); it doubles up to [`REDIAL_MAX`].
const REDIAL_MIN: Duration = Duration::from_millis(500);
/// The longest wait before a manifests-only peer is dialled again.
const REDIAL_MAX: Duration = Duration::from_secs(30);

/// What to subscribe to and how.
pub struct SubscribeConfig {
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// What the verifier accepts.
    pub policy: Policy,
    /// The peers serving the chunk objects (at least one), best first when scores tie.
    pub objects: Vec<PeerSpec>,
    /// Other peers serving the manifests (none: the objects peers).
    pub manifests: Vec<PeerSpec>,
    /// How long a chunk a trusted manifest vouches for may take before another source is asked.
    pub group_timeout: Duration,
    /// Rejections after which a source is demoted.
    pub max_source_invalid: u32,
    /// Whether to subscribe to the manifests track.
    pub subscribe_manifests: bool,
    /// Groups before the current one fetched on joining, per track.
    pub backfill: u64,
    /// Where verified segments go.
    pub output: Destination,
    /// The playlist's target duration (seconds).
    pub target_duration: u64,
    /// A segment's duration when no manifest says it (90 kHz ticks).
    pub chunk_ticks: u64,
    /// Stop after this many verified chunks.
    pub stop_after: Option<u64>,
    /// Fail after more invalid objects than this.
    pub max_invalid: Option<u64>,
    /// Fail when no trusted manifest came by then (with manifests subscribed); also bounds
    /// start-up, the wait for the first object.
    pub manifest_timeout: Duration,
    /// Fail when no object came for this long after the first, or none verified.
    pub idle_timeout: Duration,
}

/// How a subscribing run went (so far, in a progress report).
#[derive(Debug, Default)]
pub struct SubscribeSummary {
    /// Chunks verified and written.
    pub accepted: u64,
    /// Of those, chunks from before the join, fetched.
    pub backfilled: u64,
    /// Verified chunks not written because a later one already was.
    pub late: u64,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// The newest chunk written.
    pub newest: Option<ChunkIndex>,
    /// Trusted manifests accepted.
    pub manifests: u64,
    /// Rejections by reason (only reasons that occurred).
    pub rejected: Vec<(Reason, u64)>,
    /// From the signer's manifest to the segment in place, for live chunks a manifest vouched for.
    pub latency: Latency,
    /// How long the run took.
    pub elapsed: Duration,
    /// Per chunk source (in the order given): its address, standing and figures.
    pub sources: Vec<SourceSummary>,
}

/// What one chunk source did.
#[derive(Debug, Clone)]
pub struct SourceSummary {
    /// Its address as given.
    pub remote: String,
    /// `ok`, `demoted` or `gone`.
    pub state: &'static str,
    /// Its figures.
    pub stats: SourceStats,
}

impl SubscribeSummary {
    /// Takes the figures of what reached the disk.
    fn copy_written(&mut self, w: &output::Written) {
        self.accepted = w.segments;
        self.bytes = w.bytes;
        self.newest = w.newest;
        self.latency.clone_from(&w.latency);
    }
}

/// Why a subscribing run failed; the playlist is finished (ENDLIST) before this is returned.
#[derive(Debug)]
pub enum SubscribeError {
    /// A peer could not be reached or is not who its address says.
    Connect(String, NetError),
    /// The endpoint failed.
    Net(NetError),
    /// A peer refused a track (it does not serve this stream, or not that role).
    Refused(TrackKind, String),
    /// No trusted manifest came in time.
    NoManifest(Duration),
    /// More invalid objects than allowed.
    TooManyInvalid(u64),
    /// Objects kept coming but none verified for the idle timeout (how many were rejected
    /// meanwhile; the others were stale).
    NothingVerified(Duration, u64),
    /// No object for the idle timeout (or none at all by the end of start-up).
    Idle(Duration),
    /// A peer left or ended the stream.
    Left(String),
    /// Writing the output failed.
    Hls(HlsError),
    /// The HLS thread could not be started.
    Start(std::io::Error),
    /// The output's sink took no more (`serve` closing the channel).
    SinkClosed,
    /// The HLS thread stopped on an error (replaced by that error before it is returned).
    OutputStopped,
}

impl From<OutputError> for SubscribeError {
    fn from(e: OutputError) -> SubscribeError {
        match e {
            OutputError::Hls(e) => SubscribeError::Hls(e),
            OutputError::SinkClosed => SubscribeError::SinkClosed,
            OutputError::Start(e) => SubscribeError::Start(e),
        }
    }
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Connect(peer, e) => write!(f, "cannot connect to {peer}: {e}"),
            SubscribeError::Net(e) => e.fmt(f),
            SubscribeError::Refused(kind, reason) => write!(
                f,
                "the peer refused the {} track: {reason}",
                kind_name(*kind)
            ),
            SubscribeError::NoManifest(t) => {
                write!(f, "no trusted manifest within {} s", t.as_secs())
            }
            SubscribeError::TooManyInvalid(n) => {
                write!(f, "{n} invalid objects, more than allowed")
            }
            SubscribeError::NothingVerified(t, n) => write!(
                f,
                "no object verified for {} s ({n} rejected meanwhile)",
                t.as_secs()
            ),
            SubscribeError::Idle(t) => {
                write!(f, "no object for {} s: the stream went idle", t.as_secs())
            }
            SubscribeError::Left(why) => write!(f, "the publisher left: {why}"),
            SubscribeError::Hls(e) => e.fmt(f),
            SubscribeError::Start(e) => write!(f, "cannot start the HLS thread: {e}"),
            SubscribeError::SinkClosed => write!(f, "the output took no more"),
            SubscribeError::OutputStopped => write!(f, "the HLS thread stopped"),
        }
    }
}

impl std::error::Error for SubscribeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubscribeError::Connect(_, e) | SubscribeError::Net(e) => Some(e),
            SubscribeError::Hls(e) => Some(e),
            SubscribeError::Start(e) => Some(e),
            _ => None,
        }
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Chunks => "chunks",
        TrackKind::Manifests => "manifests",
    }
}

/// One peer: its connection (none while it is gone or demoted), the kinds of its tracks by
/// position, and its place among the chunk sources.
struct Peer {
    spec: PeerSpec,
    upstream: Option<Upstream>,
    kinds: Vec<TrackKind>,
    /// Whether its manifests track is asked for.
    manifests: bool,
    /// Its place among the chunk sources (`None`: it serves manifests only).
    source: Option<usize>,
    /// Whether its session was ever up: a peer that leaves after that is dialled again.
    was_up: bool,
    /// For a manifests-only peer that left: when to dial it again, and the wait after that.
    redial_at: Option<Instant>,
    backoff: Duration,
}

impl Peer {
    /// Dials `spec`: its manifests track (if it serves them) is asked for at once; its chunks
    /// track (if it is a chunk source) when the swarm says.
    fn dial(
        spec: &PeerSpec,
        locator: &str,
        manifests: bool,
        backfill: u64,
        source: Option<usize>,
    ) -> Result<Peer, UpstreamError> {
        let mut peer = Peer {
            spec: spec.clone(),
            upstream: None,
            kinds: Vec::new(),
            manifests,
            source,
            was_up: false,
            redial_at: None,
            backoff: REDIAL_MIN,
        };
        peer.connect(locator, backfill)?;
        Ok(peer)
    }

    /// Opens a session to the peer (again): the manifests track asked for, the chunks track
    /// known.
    fn connect(&mut self, locator: &str, backfill: u64) -> Result<(), UpstreamError> {
        let track = |kind| BroadcastTrack::new(locator, kind).map(|t| t.full_name());
        let mut kinds = Vec::new();
        let mut asks = Vec::new();
        if let (true, Ok(t)) = (self.manifests, track(TrackKind::Manifests)) {
            kinds.push(TrackKind::Manifests);
            asks.push((t, Ask::Join { backfill }));
        }
        let mut upstream = Upstream::dial(&self.spec, asks)?;
        if let (Some(_), Ok(t)) = (self.source, track(TrackKind::Chunks)) {
            upstream.track(t);
            kinds.push(TrackKind::Chunks);
        }
        self.upstream = Some(upstream);
        self.kinds = kinds;
        Ok(())
    }

    /// A manifests-only peer left: dial it again after the back-off, which doubles.
    fn redial_later(&mut self, now: Instant) {
        self.redial_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(REDIAL_MAX);
    }

    fn name(&self) -> String {
        self.spec.target.to_string()
    }

    fn connected(&self) -> bool {
        self.upstream.as_ref().is_some_and(Upstream::is_connected)
    }

    /// Asks its track of `kind` for `ask`; a failure is the peer's.
    fn ask(&mut self, kind: TrackKind, ask: Ask) -> Result<(), UpstreamError> {
        let at = self.kinds.iter().position(|k| *k == kind);
        match (self.upstream.as_mut(), at) {
            (Some(upstream), Some(at)) => upstream.ask(at, ask),
            _ => Ok(()),
        }
    }

    fn close(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            upstream.close();
        }
    }
}

/// Runs the pipeline until `stop_after` chunks, a failure, or `stop`; calls `progress` with the
/// run so far about once a second. The summary is returned in both cases.
pub fn subscribe(
    mut config: SubscribeConfig,
    stop: &StopFlag,
    progress: &mut dyn FnMut(&SubscribeSummary),
) -> (SubscribeSummary, Result<(), SubscribeError>) {
    let started = Instant::now();
    let mut summary = SubscribeSummary::default();
    let destination = std::mem::replace(
        &mut config.output,
        Destination::Folder(PathBuf::new(), PlaylistKind::Event),
    );
    let output = match Output::start(destination, config.target_duration) {
        Ok(output) => output,
        Err(e) => return (summary, Err(e.into())),
    };
    let mut verifier = Verifier::new(config.keys.clone(), config.policy.clone());
    let mut swarm = Swarm::new(
        config.objects.len(),
        SwarmConfig {
            group_timeout: config.group_timeout,
            max_invalid: config.max_source_invalid,
            ..SwarmConfig::default()
        },
    );
    let result = match dial_peers(&config) {
        Ok(mut peers) => {
            let mut run = Run {
                swarm: &mut swarm,
                source_of: BTreeMap::new(),
                newest_chunk: None,
                newest_manifest: None,
                sealed: BTreeMap::new(),
                manifests_held: VecDeque::new(),
                refetching: BTreeSet::new(),
                newest_handed: output.resumed(),
                pushing_from: None,
                start: None,
                early_covers: Vec::new(),
                config: &config,
                verifier: &mut verifier,
                output: &output,
                handed: 0,
                reorder: Reorder::new(true, REORDER_CAP),
                clock: ProgramClock::default(),
                summary: &mut summary,
                started,
                first_object: None,
                last_object: started,
                last_verified: None,
                rejected_at_verified: 0,
                // Each manifests track's joining FETCH, and the live chunks subscription's.
                backfills: peers.iter().filter(|p| p.manifests).count() + 1,
                backfill_indices: Vec::new(),
                manifest_times: VecDeque::new(),
                reported: started,
                progress,
            };
            let result = run.receive(&mut peers, stop);
            let flushed = run.release();
            run.summary.sources = sources(run.swarm, &peers);
            for mut peer in peers {
                peer.close();
            }
            result.and(flushed)
        }
        Err(e) => Err(e),
    };
    let (written, finished) = output.finish();
    summary.copy_written(&written);
    summary.rejected = rejections(&verifier);
    summary.elapsed = started.elapsed();
    // A write error stops the receive loop (as `OutputStopped`); report the error itself.
    let result = match (result, finished) {
        (Err(SubscribeError::OutputStopped), Err(e)) | (Ok(()), Err(e)) => Err(e.into()),
        (result, _) => result,
    };
    (summary, result)
}

/// The verifier's rejections by reason, only reasons that occurred.
fn rejections(verifier: &Verifier) -> Vec<(Reason, u64)> {
    Reason::ALL
        .iter()
        .map(|r| (*r, verifier.rejected(*r)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The chunk sources' figures, in the order given.
fn sources(swarm: &Swarm, peers: &[Peer]) -> Vec<SourceSummary> {
    peers
        .iter()
        .filter_map(|p| {
            let (state, stats) = swarm.source(p.source?);
            Some(SourceSummary {
                remote: p.name(),
                state: state.name(),
                stats: stats.clone(),
            })
        })
        .collect()
}

fn dial_peers(config: &SubscribeConfig) -> Result<Vec<Peer>, SubscribeError> {
    let manifests = config.subscribe_manifests || config.policy.require_manifest;
    let on_objects = manifests && config.manifests.is_empty();
    let locator = config.keys.locator().to_string();
    let dial = |spec, carries, source| {
        Peer::dial(spec, &locator, carries, config.backfill, source)
            .map_err(|e| upstream_failure(&[], e))
    };
    let objects = config
        .objects
        .iter()
        .enumerate()
        .map(|(at, spec)| dial(spec, on_objects, Some(at)));
    let manifests_only = config
        .manifests
        .iter()
        .filter(|_| manifests)
        .map(|spec| dial(spec, true, None));
    objects.chain(manifests_only).collect()
}

/// The run's error for an upstream failure, with the refused track named by its kind.
fn upstream_failure(kinds: &[TrackKind], e: UpstreamError) -> SubscribeError {
    match e {
        UpstreamError::Connect { peer, why } => SubscribeError::Connect(peer, why),
        UpstreamError::Refused {
            peer,
            track,
            reason,
            ..
        } => {
            let kind = kinds.get(track).copied().unwrap_or(TrackKind::Chunks);
            SubscribeError::Refused(kind, format!("{peer}: {reason}"))
        }
        UpstreamError::Left { peer, why } => SubscribeError::Left(format!("{peer}: {why}")),
        UpstreamError::Request(e) => SubscribeError::Left(e.to_string()),
        UpstreamError::Net(e) => SubscribeError::Net(e),
    }
}

/// The receive loop's state.
struct Run<'a> {
    config: &'a SubscribeConfig,
    swarm: &'a mut Swarm,
    /// Which source sent the object of each recent chunk index.
    source_of: BTreeMap<ChunkIndex, usize>,
    /// The newest chunk object and manifest group received, to see gaps.
    newest_chunk: Option<ChunkIndex>,
    newest_manifest: Option<GroupId>,
    /// For an [`Onward`]: the sealed objects of chunks not written yet.
    sealed: BTreeMap<ChunkIndex, Arc<[u8]>>,
    /// For an [`Onward`]: manifests the verifier has not decided on, with their groups.
    manifests_held: VecDeque<(ManifestId, GroupId, Arc<[u8]>)>,
    /// Chunks asked of another source by FETCH (not part of the join's backfill).
    refetching: BTreeSet<ChunkIndex>,
    /// The newest chunk handed to the output.
    newest_handed: Option<ChunkIndex>,
    /// The source of the object being pushed into the verifier right now.
    pushing_from: Option<usize>,
    /// The first chunk object's index: chunks from there on are awaited once a manifest
    /// vouches for them.
    start: Option<ChunkIndex>,
    /// What manifests covered before the first chunk object came (bounded).
    early_covers: Vec<(ChunkIndex, ChunkIndex)>,
    verifier: &'a mut Verifier,
    output: &'a Output,
    /// Chunks handed to the HLS thread.
    handed: u64,
    reorder: Reorder<AcceptedChunk>,
    clock: ProgramClock,
    summary: &'a mut SubscribeSummary,
    started: Instant,
    first_object: Option<Instant>,
    last_object: Instant,
    last_verified: Option<Instant>,
    /// Rejected objects when a chunk last verified.
    rejected_at_verified: u64,
    /// Joining FETCHes not yet complete (sent or still to send).
    backfills: usize,
    /// Chunk indices that came by joining FETCH.
    backfill_indices: Vec<ChunkIndex>,
    /// Creation times of recent trusted manifests, oldest first.
    manifest_times: VecDeque<(ManifestId, UnixMillis)>,
    reported: Instant,
    progress: &'a mut dyn FnMut(&SubscribeSummary),
}

impl Run<'_> {
    fn receive(&mut self, peers: &mut [Peer], stop: &StopFlag) -> Result<(), SubscribeError> {
        while !stop.is_set() {
            let mut busy = false;
            for peer in peers.iter_mut() {
                while let Some(next) = peer.upstream.as_mut().map(|u| u.next(Duration::ZERO)) {
                    match next {
                        Ok(Some(delivery)) => self.on_delivery(peer, delivery)?,
                        Ok(None) => break,
                        Err(e) => {
                            self.source_failed(peer, e)?;
                            break;
                        }
                    }
                    busy = true;
                }
            }
            self.act(peers)?;
            self.redial_manifest_peers(peers);
            if self.done() {
                return Ok(());
            }
            let now = UnixMillis::now();
            if self.verifier.poll_timeout().is_some_and(|t| t <= now) {
                self.verifier.handle_timeout(now);
                self.drain()?;
            }
            if self.reorder.is_holding()
                && (self.backfills == 0
                    || self
                        .first_object
                        .is_some_and(|t| t.elapsed() >= BACKFILL_WAIT))
            {
                self.release()?;
            }
            self.check_clocks(peers)?;
            if self.reported.elapsed() >= PROGRESS_EVERY {
                self.reported = Instant::now();
                self.summary.elapsed = self.started.elapsed();
                self.summary.rejected = rejections(self.verifier);
                self.summary.sources = sources(self.swarm, peers);
                self.output.written(|w| self.summary.copy_written(w));
                (self.progress)(self.summary);
            }
            if !busy {
                let upstreams: Vec<&Upstream> =
                    peers.iter().filter_map(|p| p.upstream.as_ref()).collect();
                let wait = self.swarm.poll_timeout().map_or(TICK, |t| {
                    t.saturating_duration_since(Instant::now()).min(TICK)
                });
                crate::node::tracks::wait_any::<()>(&upstreams, &[], None, wait);
            }
        }
        Ok(())
    }

    /// A peer failed: it is dialled again while the others (or nobody) carry the stream, or,
    /// when it never came up and nobody can stand in for it, the run ends.
    fn source_failed(&mut self, peer: &mut Peer, e: UpstreamError) -> Result<(), SubscribeError> {
        // A peer that refuses the stream does not serve it: no redial changes that, unless
        // other sources stand in meanwhile.
        let refused = matches!(e, UpstreamError::Refused { .. });
        let why = format!("{} left: {e}", peer.name());
        match self.leave(peer, &why, !refused) {
            true => Ok(()),
            false => Err(upstream_failure(&peer.kinds, e)),
        }
    }

    /// A peer left (for `why`): a chunk source goes to the swarm, which redials it; a
    /// manifests-only peer is redialled with back-off. False — the run ends — when it is not one
    /// of several chunk sources and either never came up or `may_return` is false (it refused).
    fn leave(&mut self, peer: &mut Peer, why: &str, may_return: bool) -> bool {
        let swarmed = peer.source.is_some() && self.config.objects.len() > 1;
        if !(swarmed || (peer.was_up && may_return)) {
            return false;
        }
        log::warn!("{why}; dialling it again");
        peer.close();
        let now = Instant::now();
        match peer.source {
            Some(at) => self.swarm.gone(at, now),
            None => peer.redial_later(now),
        }
        true
    }

    /// Dials manifests-only peers that left once their back-off passed.
    fn redial_manifest_peers(&mut self, peers: &mut [Peer]) {
        let now = Instant::now();
        let locator = self.config.keys.locator().to_string();
        for peer in peers.iter_mut() {
            if peer.redial_at.is_some_and(|t| t <= now) {
                peer.redial_at = None;
                if let Err(e) = peer.connect(&locator, self.config.backfill) {
                    log::warn!("{} cannot be dialled again: {e}", peer.name());
                    peer.redial_later(now);
                }
            }
        }
    }

    /// Carries out what the swarm decided: the live subscription, fetches of missing chunks,
    /// redials; closes demoted sources; writes chunks no longer waiting for a missing one.
    fn act(&mut self, peers: &mut [Peer]) -> Result<(), SubscribeError> {
        for action in self.swarm.poll(Instant::now()) {
            let at = match action {
                Action::Subscribe(at) | Action::Fetch { source: at, .. } | Action::Redial(at) => at,
            };
            let Some(peer) = peers.iter_mut().find(|p| p.source == Some(at)) else {
                continue;
            };
            let asked = match action {
                Action::Subscribe(_) => peer.ask(
                    TrackKind::Chunks,
                    Ask::Join {
                        backfill: self.config.backfill,
                    },
                ),
                Action::Fetch { index, .. } => {
                    log::info!("chunk {index}: fetched from {}", peer.name());
                    self.refetching.insert(index);
                    peer.ask(
                        TrackKind::Chunks,
                        Ask::Fetch(GroupId(index.0), GroupId(index.0)),
                    )
                }
                Action::Redial(_) => {
                    self.swarm.redialled(at);
                    let locator = self.config.keys.locator().to_string();
                    peer.connect(&locator, self.config.backfill)
                }
            };
            if let Err(e) = asked {
                self.source_failed(peer, e)?;
            }
        }
        for peer in peers.iter_mut() {
            let demoted = peer
                .source
                .is_some_and(|at| matches!(self.swarm.source(at).0, SourceState::Demoted { .. }));
            if demoted && peer.upstream.is_some() {
                log::warn!("source {} demoted: too many invalid objects", peer.name());
                peer.close();
            }
        }
        if !self.reorder.is_holding() {
            let ready = self.reorder.flush(self.swarm.first_wanted());
            self.write(ready)?;
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.config.stop_after.is_some_and(|n| self.handed >= n)
    }

    /// The run's deadlines: start-up and the first trusted manifest, then idleness.
    fn check_clocks(&self, peers: &[Peer]) -> Result<(), SubscribeError> {
        let needs_manifest = self.config.policy.require_manifest;
        let manifest_timeout = self.config.manifest_timeout;
        if needs_manifest
            && self.summary.manifests == 0
            && self.started.elapsed() >= manifest_timeout
        {
            return Err(SubscribeError::NoManifest(manifest_timeout));
        }
        let idle = self.config.idle_timeout;
        let Some(first) = self.first_object else {
            if self.started.elapsed() < idle.max(manifest_timeout) {
                return Ok(());
            }
            // Unreachable: no chunk source ever answered, or a manifests peer did not.
            let sources_up = peers.iter().any(|p| p.source.is_some() && p.connected());
            let unreachable = peers
                .iter()
                .find(|p| !p.connected() && (p.source.is_none() || !sources_up));
            return Err(match unreachable {
                Some(p) => SubscribeError::Connect(p.name(), NetError::IdleTimeout),
                None => SubscribeError::Idle(idle.max(manifest_timeout)),
            });
        };
        if self.last_object.elapsed() >= idle {
            return Err(SubscribeError::Idle(idle));
        }
        if self.last_verified.unwrap_or(first).elapsed() >= idle {
            let rejected = self.verifier.rejected_objects() - self.rejected_at_verified;
            return Err(SubscribeError::NothingVerified(idle, rejected));
        }
        Ok(())
    }

    fn on_delivery(&mut self, peer: &mut Peer, delivery: Delivery) -> Result<(), SubscribeError> {
        match delivery {
            Delivery::Object {
                track,
                object,
                fetched,
            } => {
                let now = UnixMillis::now();
                match peer.kinds[track] {
                    TrackKind::Chunks => {
                        let placed = ChunkIndex(object.group.0);
                        timing::mark(Stage::Received, placed);
                        self.repair_chunks(placed);
                        self.first_object.get_or_insert_with(Instant::now);
                        self.last_object = Instant::now();
                        if self.start.is_none() {
                            self.start = Some(placed);
                            for (first, last) in std::mem::take(&mut self.early_covers) {
                                self.expect(first, last);
                            }
                        }
                        if let Some(at) = peer.source {
                            let len = object.payload.len();
                            if !self.swarm.received(at, placed, len, Instant::now()) {
                                return Ok(()); // a copy of a chunk already accepted
                            }
                            self.source_of.insert(placed, at);
                            while self.source_of.len() > SOURCES_REMEMBERED {
                                self.source_of.pop_first();
                            }
                        }
                        if fetched && !self.refetching.remove(&placed) {
                            self.backfill_indices.push(placed);
                        }
                        if self.output.passes_on() {
                            // A chunk written already is never written again.
                            if self.newest_handed.is_none_or(|n| placed > n) {
                                self.sealed.insert(placed, object.payload.as_slice().into());
                            }
                            while self.sealed.len() > SEALED_HELD {
                                self.sealed.pop_first();
                            }
                        }
                        // What the verifier rejects at once is this source's doing.
                        self.pushing_from = peer.source;
                        self.verifier
                            .push_object(object.payload, None, Some(placed), now);
                        let drained = self.drain();
                        self.pushing_from = None;
                        return drained;
                    }
                    TrackKind::Manifests => {
                        self.repair_manifests(peer, object.group);
                        self.hold_manifest(object.group, &object.payload);
                        self.verifier.push_manifest(&object.payload, now);
                    }
                }
                self.drain()
            }
            Delivery::FetchDone { first: None, .. } => {
                self.backfills = self.backfills.saturating_sub(1);
                Ok(())
            }
            // A chunk fetched from a source that does not have it (yet): asked again shortly.
            Delivery::FetchDone {
                first: Some(group),
                end: FetchEnd::Refused(..) | FetchEnd::Reset(_),
                ..
            } => {
                if let Some(at) = peer.source {
                    self.swarm
                        .fetch_failed(at, ChunkIndex(group.0), Instant::now());
                }
                Ok(())
            }
            Delivery::FetchDone { .. } => Ok(()),
            Delivery::Ended { track, reason } if peer.kinds[track] == TrackKind::Chunks => {
                let why = format!("{} ended the stream: {reason}", peer.name());
                match self.leave(peer, &why, true) {
                    true => Ok(()),
                    false => Err(SubscribeError::Left(why)),
                }
            }
            Delivery::Connected(_) => {
                peer.was_up = true;
                peer.backoff = REDIAL_MIN;
                if let Some(at) = peer.source {
                    self.swarm.connected(at, Instant::now());
                }
                Ok(())
            }
            Delivery::Ended { .. } => Ok(()),
        }
    }

    /// Takes the verifier's events: orders and writes accepted chunks, counts manifests, logs
    /// rejections.
    fn drain(&mut self) -> Result<(), SubscribeError> {
        while let Some(verdict) = self.verifier.poll_event() {
            match verdict {
                Verdict::Chunk(chunk) => {
                    timing::mark(Stage::Verified, chunk.index);
                    self.swarm.accepted(chunk.index, Instant::now());
                    self.last_verified = Some(Instant::now());
                    self.rejected_at_verified = self.verifier.rejected_objects();
                    // The lowest chunk still awaited, wherever it lies: a repaired gap's first
                    // chunk goes out, the chunks past the gap wait for the rest of it.
                    let missing = self.swarm.first_wanted();
                    let ready = self.reorder.push(chunk.index, chunk, missing);
                    self.write(ready)?;
                }
                Verdict::Manifest {
                    id,
                    signer,
                    epoch,
                    created,
                    covers: (first, last),
                    ..
                } => {
                    self.summary.manifests += 1;
                    match self.start {
                        Some(_) => self.expect(first, last),
                        None if self.early_covers.len() < MANIFEST_TIMES => {
                            self.early_covers.push((first, last))
                        }
                        None => {}
                    }
                    if self.manifest_times.len() == MANIFEST_TIMES {
                        self.manifest_times.pop_front();
                    }
                    self.manifest_times.push_back((id, created));
                    log::debug!("manifest for epoch {epoch} from {signer}");
                    self.pass_on_manifest(id)?;
                }
                Verdict::Rejected(r) => {
                    log::warn!("rejected: {r}");
                    // The object just pushed, or one that waited for its manifest (then it was
                    // placed at its own index).
                    let blamed = self
                        .pushing_from
                        .or_else(|| r.index.and_then(|i| self.source_of.get(&i).copied()));
                    if let Some(at) = blamed {
                        self.swarm.rejected(at, r.reason, Instant::now());
                    }
                }
                Verdict::ChainGap { signer, missing } => {
                    log::info!("manifest chain of {signer} skips {missing:?}")
                }
                Verdict::ChainBreak { signer, sequence } => {
                    log::warn!("manifest chain of {signer} breaks at {sequence}")
                }
            }
        }
        let invalid = self.verifier.rejected_objects();
        if self.config.max_invalid.is_some_and(|max| invalid > max) {
            return Err(SubscribeError::TooManyInvalid(invalid));
        }
        Ok(())
    }

    /// A chunk object at `index` past a gap since the newest one (the source was cut off or
    /// redialled): the chunks in between are fetched, from the best source, if narrow enough.
    fn repair_chunks(&mut self, index: ChunkIndex) {
        let newest = self.newest_chunk.map_or(index, |n| n.max(index));
        if let Some(n) = self.newest_chunk.filter(|n| index.0 > n.0 + 1) {
            if index.0 - n.0 <= GAP_REPAIR {
                let now = Instant::now();
                for missed in n.0 + 1..index.0 {
                    self.swarm.missing(ChunkIndex(missed), now);
                }
            }
        }
        self.newest_chunk = Some(newest);
    }

    /// A manifest group past a gap since the newest one: the groups in between are fetched from
    /// the peer that sent it, if narrow enough, so the chunks they vouch for can verify.
    fn repair_manifests(&mut self, peer: &mut Peer, group: GroupId) {
        let newest = self.newest_manifest.map_or(group, |n| n.max(group));
        if let Some(n) = self.newest_manifest.filter(|n| group.0 > n.0 + 1) {
            if group.0 - n.0 <= GAP_REPAIR {
                let missed = Ask::Fetch(GroupId(n.0 + 1), GroupId(group.0 - 1));
                if let Err(e) = peer.ask(TrackKind::Manifests, missed) {
                    log::warn!("{}: cannot fetch missed manifests: {e}", peer.name());
                }
            }
        }
        self.newest_manifest = Some(newest);
    }

    /// The sealed object of chunk `index`, about to be written; objects of earlier chunks will
    /// never be (they were late or rejected) and are dropped with it.
    fn take_sealed(&mut self, index: ChunkIndex) -> Option<Arc<[u8]>> {
        let later = self
            .sealed
            .split_off(&ChunkIndex(index.0.saturating_add(1)));
        let taken = self.sealed.remove(&index);
        self.sealed = later;
        taken
    }

    /// Keeps a manifest's bytes for an [`Onward`] until the verifier decides on it.
    fn hold_manifest(&mut self, group: GroupId, bytes: &[u8]) {
        if !self.output.passes_on() {
            return;
        }
        if let Ok(manifest) = Manifest::decode(bytes) {
            if self.manifests_held.len() == MANIFESTS_HELD {
                self.manifests_held.pop_front();
            }
            self.manifests_held
                .push_back((manifest.id, group, bytes.into()));
        }
    }

    /// Hands a trusted manifest to an [`Onward`] (the first copy; any other is dropped).
    fn pass_on_manifest(&mut self, id: ManifestId) -> Result<(), SubscribeError> {
        let Some(at) = self.manifests_held.iter().position(|(m, ..)| *m == id) else {
            return Ok(());
        };
        let (_, group, bytes) = self.manifests_held.remove(at).expect("found above");
        // Copies of it from other manifests peers are not passed on again.
        self.manifests_held.retain(|(m, ..)| *m != id);
        match self.output.send_manifest(group, bytes) {
            true => Ok(()),
            false => Err(SubscribeError::OutputStopped),
        }
    }

    /// The chunks `first..=last` a manifest vouches for are awaited (from the live source, then
    /// others), except those before the first chunk object or already written.
    fn expect(&mut self, first: ChunkIndex, last: ChunkIndex) {
        let Some(start) = self.start else {
            return;
        };
        let after = self.newest_handed.map_or(start.0, |n| n.0 + 1).max(start.0);
        let now = Instant::now();
        for i in first.0.max(after)..=last.0 {
            self.swarm.expected(ChunkIndex(i), now);
        }
    }

    /// Stops holding chunks for the backfill and writes what was held.
    fn release(&mut self) -> Result<(), SubscribeError> {
        let ready = self.reorder.release();
        self.write(ready)
    }

    /// Hands verified chunks to the HLS thread in the order given, up to `stop_after`.
    fn write(&mut self, ready: Vec<(ChunkIndex, AcceptedChunk)>) -> Result<(), SubscribeError> {
        self.summary.late = self.reorder.late();
        for (index, chunk) in ready {
            if self.done() {
                return Ok(());
            }
            // Written by an earlier run into the folder this one resumes.
            if self.newest_handed.is_some_and(|n| index <= n) {
                continue;
            }
            let duration = chunk
                .vouched
                .map_or(self.config.chunk_ticks, |(_, d)| u64::from(d));
            // A chunk no source held leaves a gap: players must not bridge the timestamps.
            let gap = self.newest_handed.is_some_and(|n| index.0 > n.0 + 1);
            let discontinuity = chunk.flags.discontinuity() || gap;
            let entry = SegmentEntry {
                index,
                duration,
                discontinuity,
                date_time: self.clock.next(duration, discontinuity, UnixMillis::now()),
            };
            let fetched = self.backfill_indices.contains(&index);
            if fetched {
                self.summary.backfilled += 1;
            }
            let created = (!fetched).then(|| self.created(chunk.vouched)).flatten();
            let segment = Segment {
                entry,
                bytes: chunk.bytes,
                created,
                sealed: self.take_sealed(index),
            };
            if !self.output.send(segment) {
                return Err(SubscribeError::OutputStopped);
            }
            self.handed += 1;
            self.newest_handed = Some(index);
        }
        Ok(())
    }

    /// When the manifest that vouched for a chunk was created, if it is remembered.
    fn created(&self, vouched: Option<(ManifestId, u32)>) -> Option<UnixMillis> {
        let (id, _) = vouched?;
        self.manifest_times
            .iter()
            .rev()
            .find(|(m, _)| *m == id)
            .map(|(_, t)| *t)
    }
}
