//! The subscribing pipeline: receive → verify → decrypt → HLS.
//!
//! ```text
//!  objects peer ───(endpoint thread)──┐
//!                                     ├─► receive loop (caller) ◄─► Assembly (the rules:
//!  manifests peer ─(endpoint thread)──┘   Verifier, Swarm, Reorder, deadlines)
//!                                            │ bounded
//!                                            ▼
//!                                         output thread: HlsWriter / sink / onward
//! ```
//!
//! Objects come from one or several peers (sources) and manifests from the same or other ones,
//! each an [`Upstream`] with its own network thread. Each track is asked for as a late join
//! ([`Ask::Join`]: from the next group, with a joining FETCH of the current group and `backfill`
//! earlier ones), so a late joiner starts at once. Every rule — what is accepted ("no manifests,
//! no data" under [`Policy::require_manifest`]), segment order, which source serves which chunk,
//! gap repair, redials, the start-up, manifest and idle deadlines — is the sans-I/O
//! `assembly::Assembly`'s. This module only moves deliveries into it and carries its actions
//! out (asks, dials, closes, segments to the output thread), sleeps until its next deadline,
//! reports progress, and always finishes the playlist with ENDLIST. Memory is bounded by the
//! verifier's policy and the caps the owner states.

mod assembly;
mod latency;
mod order;
mod output;
pub mod swarm;

pub use latency::Latency;

use crate::chunk::ChunkIndex;
use crate::crypto::StreamKeys;
use crate::hls::playlist::PlaylistKind;
use crate::hls::HlsError;
use crate::manifest::{Policy, Reason, Verifier};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::net::NetError;
use crate::node::timing::{self, Stage};
use crate::node::tracks::{Ask, Delivery, FetchEnd, PeerSpec, Upstream, UpstreamError};
use crate::stop::StopFlag;
use assembly::{Action, Assembly, AssemblyConfig, Moment, PeerRole};
pub use output::{Destination, Onward, SegmentSink};
use output::{Output, OutputError};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use swarm::{SourceStats, SwarmConfig};

/// Shortest time between two progress reports.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Longest the receive loop sleeps with nothing to do: how soon it sees a stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

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

/// How long a subscriber waits, by default, for its first trusted manifest and, after the
/// first object, between objects.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl SubscribeConfig {
    /// Subscribes to the stream of `keys` from the chunk sources `objects` (they serve the
    /// manifests too), for `chunk_ms` chunks, into `output`, with the defaults: the manifests
    /// track taken, no backfill, a chunk awaited one chunk duration before another source is
    /// asked, a source demoted after 3 rejections, [`DEFAULT_TIMEOUT`] for the first manifest
    /// and for idleness, no limit on chunks or invalid objects.
    pub fn new(
        keys: StreamKeys,
        policy: Policy,
        objects: Vec<PeerSpec>,
        chunk_ms: u32,
        output: Destination,
    ) -> SubscribeConfig {
        let chunker = crate::chunk::ChunkerConfig {
            chunk_ms,
            ..crate::chunk::ChunkerConfig::default()
        };
        SubscribeConfig {
            keys,
            policy,
            objects,
            manifests: Vec::new(),
            group_timeout: Duration::from_millis(u64::from(chunk_ms)),
            max_source_invalid: 3,
            subscribe_manifests: true,
            backfill: 0,
            output,
            target_duration: crate::hls::target_duration(&chunker),
            chunk_ticks: u64::from(chunk_ms) * 90,
            stop_after: None,
            max_invalid: None,
            manifest_timeout: DEFAULT_TIMEOUT,
            idle_timeout: DEFAULT_TIMEOUT,
        }
    }
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
    /// Takes the owner's figures: manifests, backfill, late chunks, rejections, sources.
    fn copy_assembly(&mut self, assembly: &Assembly) {
        self.manifests = assembly.manifests();
        self.backfilled = assembly.backfilled();
        self.late = assembly.late();
        self.rejected = assembly.rejections();
        self.sources = assembly
            .sources()
            .map(|(name, state, stats)| SourceSummary {
                remote: name.to_string(),
                state: state.name(),
                stats: stats.clone(),
            })
            .collect();
    }

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

/// One peer's connection (none while it is gone or demoted) and the kinds of its tracks by
/// position; what it is for and what to do when it leaves is the [`Assembly`]'s.
struct Peer {
    spec: PeerSpec,
    upstream: Option<Upstream>,
    kinds: Vec<TrackKind>,
    /// Whether its manifests track is asked for.
    manifests: bool,
    /// Whether it is a chunk source.
    chunks: bool,
}

impl Peer {
    /// Dials `spec`: its manifests track (if it serves them) is asked for at once; its chunks
    /// track (if it is a chunk source) when the swarm says.
    fn dial(
        spec: &PeerSpec,
        locator: &str,
        role: &PeerRole,
        backfill: u64,
    ) -> Result<Peer, UpstreamError> {
        let mut peer = Peer {
            spec: spec.clone(),
            upstream: None,
            kinds: Vec::new(),
            manifests: role.manifests,
            chunks: role.source.is_some(),
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
        if let (true, Ok(t)) = (self.chunks, track(TrackKind::Chunks)) {
            upstream.track(t);
            kinds.push(TrackKind::Chunks);
        }
        self.upstream = Some(upstream);
        self.kinds = kinds;
        Ok(())
    }

    fn name(&self) -> String {
        self.spec.target.to_string()
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
    let roles = roles(&config);
    let mut assembly = Assembly::new(
        assembly_config(&config, &output),
        Verifier::new(config.keys.clone(), config.policy.clone()),
        roles.clone(),
        started,
    );
    let result = match dial_peers(&config, &roles) {
        Ok(mut peers) => {
            let mut run = Run {
                config: &config,
                assembly: &mut assembly,
                output: &output,
                summary: &mut summary,
                started,
                reported: started,
                progress,
            };
            let result = run.receive(&mut peers, stop);
            run.assembly.finish(Moment::read());
            let flushed = run.carry_out(&mut peers);
            for mut peer in peers {
                peer.close();
            }
            result.and(flushed)
        }
        Err(e) => Err(e),
    };
    let (written, finished) = output.finish();
    summary.copy_written(&written);
    summary.copy_assembly(&assembly);
    summary.elapsed = started.elapsed();
    // A write error stops the receive loop (as `OutputStopped`); report the error itself.
    let result = match (result, finished) {
        (Err(SubscribeError::OutputStopped), Err(e)) | (Ok(()), Err(e)) => Err(e.into()),
        (result, _) => result,
    };
    (summary, result)
}

/// The peers: the chunk sources in the order given (carrying the manifests too when no other
/// peer does), then the manifests-only peers.
fn roles(config: &SubscribeConfig) -> Vec<PeerRole> {
    let manifests = config.subscribe_manifests || config.policy.require_manifest;
    let on_objects = manifests && config.manifests.is_empty();
    let objects = config
        .objects
        .iter()
        .enumerate()
        .map(|(at, spec)| PeerRole {
            name: spec.target.to_string(),
            source: Some(at),
            manifests: on_objects,
        });
    let manifests_only = config
        .manifests
        .iter()
        .filter(|_| manifests)
        .map(|spec| PeerRole {
            name: spec.target.to_string(),
            source: None,
            manifests: true,
        });
    objects.chain(manifests_only).collect()
}

fn assembly_config(config: &SubscribeConfig, output: &Output) -> AssemblyConfig {
    AssemblyConfig {
        require_manifest: config.policy.require_manifest,
        backfill: config.backfill,
        chunk_ticks: config.chunk_ticks,
        stop_after: config.stop_after,
        max_invalid: config.max_invalid,
        manifest_timeout: config.manifest_timeout,
        idle_timeout: config.idle_timeout,
        passes_on: output.passes_on(),
        resumed: output.resumed(),
        swarm: SwarmConfig {
            group_timeout: config.group_timeout,
            max_invalid: config.max_source_invalid,
            ..SwarmConfig::default()
        },
    }
}

/// Dials every peer, in the order of `roles`.
fn dial_peers(config: &SubscribeConfig, roles: &[PeerRole]) -> Result<Vec<Peer>, SubscribeError> {
    let locator = config.keys.locator().to_string();
    let specs = config.objects.iter().chain(&config.manifests);
    specs
        .zip(roles)
        .map(|(spec, role)| {
            Peer::dial(spec, &locator, role, config.backfill).map_err(|e| upstream_failure(&[], e))
        })
        .collect()
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

/// The receive loop's state: the owner of the rules and the ends it carries their actions to.
struct Run<'a> {
    config: &'a SubscribeConfig,
    assembly: &'a mut Assembly,
    output: &'a Output,
    summary: &'a mut SubscribeSummary,
    started: Instant,
    reported: Instant,
    progress: &'a mut dyn FnMut(&SubscribeSummary),
}

impl Run<'_> {
    /// Moves deliveries into the owner and its actions out until the run ends, sleeping until
    /// the owner's next deadline (or the next progress report) when nothing arrives.
    fn receive(&mut self, peers: &mut [Peer], stop: &StopFlag) -> Result<(), SubscribeError> {
        while !stop.is_set() {
            let mut busy = false;
            for at in 0..peers.len() {
                while let Some(next) = peers[at].upstream.as_mut().map(|u| u.next(Duration::ZERO)) {
                    match next {
                        Ok(Some(delivery)) => self.deliver(peers, at, delivery)?,
                        Ok(None) => break,
                        Err(e) => self.peer_failed(peers, at, e)?,
                    }
                    busy = true;
                    self.carry_out(peers)?;
                    if self.assembly.done() {
                        return Ok(());
                    }
                }
            }
            if self.assembly.poll_timeout() <= Instant::now() {
                self.assembly.handle_timeout(Moment::read())?;
                self.carry_out(peers)?;
            }
            if self.assembly.done() {
                return Ok(());
            }
            if self.reported.elapsed() >= PROGRESS_EVERY {
                self.report();
            }
            if !busy {
                let upstreams: Vec<&Upstream> =
                    peers.iter().filter_map(|p| p.upstream.as_ref()).collect();
                let until = self
                    .assembly
                    .poll_timeout()
                    .min(self.reported + PROGRESS_EVERY)
                    .min(Instant::now() + STOP_CHECK);
                let wait = until.saturating_duration_since(Instant::now());
                crate::node::tracks::wait_any::<()>(&upstreams, &[], None, wait);
            }
        }
        Ok(())
    }

    /// Hands one delivery of peer `at` to the owner.
    fn deliver(
        &mut self,
        peers: &[Peer],
        at: usize,
        delivery: Delivery,
    ) -> Result<(), SubscribeError> {
        let moment = Moment::read();
        let peer = &peers[at];
        match delivery {
            Delivery::Object {
                track,
                object,
                fetched,
            } => {
                let kind = peer.kinds[track];
                if kind == TrackKind::Chunks {
                    timing::mark(Stage::Received, ChunkIndex(object.group.0));
                }
                let (group, payload) = (object.group, object.payload);
                self.assembly
                    .object(at, kind, group, payload, fetched, moment)
            }
            Delivery::FetchDone { first, end, .. } => {
                let failed = matches!(end, FetchEnd::Refused(..) | FetchEnd::Reset(_));
                self.assembly.fetch_done(at, first, failed, moment)
            }
            Delivery::Ended { track, reason } if peer.kinds[track] == TrackKind::Chunks => {
                let why = format!("{} ended the stream: {reason}", peer.name());
                self.assembly.ended(at, why, moment)
            }
            Delivery::Ended { .. } => Ok(()),
            Delivery::Connected(_) => self.assembly.connected(at, moment),
        }
    }

    /// Peer `at` failed: the owner decides whether it is dialled again or the run ends.
    fn peer_failed(
        &mut self,
        peers: &mut [Peer],
        at: usize,
        e: UpstreamError,
    ) -> Result<(), SubscribeError> {
        // A peer that refuses the stream does not serve it: no redial changes that, unless
        // other sources stand in meanwhile.
        let refused = matches!(e, UpstreamError::Refused { .. });
        let why = format!("{} left: {e}", peers[at].name());
        // Its connection is over whatever the owner decides next.
        peers[at].close();
        match self.assembly.failed(at, refused, &why, Moment::read()) {
            true => Ok(()),
            false => Err(upstream_failure(&peers[at].kinds, e)),
        }
    }

    /// Carries out what the owner decided, until it has nothing more to say.
    fn carry_out(&mut self, peers: &mut [Peer]) -> Result<(), SubscribeError> {
        while let Some(action) = self.assembly.poll_action() {
            let (at, asked) = match action {
                Action::Ask { peer, kind, ask } => (peer, peers[peer].ask(kind, ask)),
                Action::Redial(peer) => {
                    let locator = self.config.keys.locator().to_string();
                    (peer, peers[peer].connect(&locator, self.config.backfill))
                }
                Action::Close(peer) => {
                    peers[peer].close();
                    continue;
                }
                Action::Write(segment) => match self.output.send(segment) {
                    true => continue,
                    false => return Err(SubscribeError::OutputStopped),
                },
                Action::PassOn(group, bytes) => match self.output.send_manifest(group, bytes) {
                    true => continue,
                    false => return Err(SubscribeError::OutputStopped),
                },
            };
            if let Err(e) = asked {
                self.peer_failed(peers, at, e)?;
            }
        }
        Ok(())
    }

    /// Calls `progress` with the run so far.
    fn report(&mut self) {
        self.reported = Instant::now();
        self.summary.elapsed = self.started.elapsed();
        self.summary.copy_assembly(self.assembly);
        self.output.written(|w| self.summary.copy_written(w));
        (self.progress)(self.summary);
    }
}
