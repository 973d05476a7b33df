//! The subscribing pipeline: receive → verify → decrypt → HLS.
//!
//! ```text
//!  objects peer ───(endpoint thread)──┐
//!                                     ├─► receive loop (caller): Verifier (verify + decrypt in
//!  manifests peer ─(endpoint thread)──┘   place) → Reorder ─(bounded)─► HLS thread: HlsWriter
//! ```
//!
//! Objects come from one peer and manifests from the same or another one; each endpoint runs its
//! own network thread and hands events over its bounded channel. Each track is subscribed from
//! the next group with a joining FETCH for the current group and `backfill` earlier ones, so a
//! late joiner starts at once; `order::Reorder` keeps the segments in index order meanwhile.
//! The verifier decides what is accepted ("no manifests, no data" under
//! [`Policy::require_manifest`]); this module only wires the peers, the verifier and the writer,
//! keeps the clocks (start-up, manifest and idle timeouts) and always finishes the playlist with
//! ENDLIST. Memory is bounded by the verifier's policy and the reorder cap.

mod latency;
mod order;
mod output;

pub use latency::Latency;

use crate::capture::wall_clock;
use crate::chunk::ChunkIndex;
use crate::cli::stop::StopFlag;
use crate::crypto::StreamKeys;
use crate::hls::playlist::{PlaylistKind, SegmentEntry};
use crate::hls::writer::HlsWriter;
use crate::hls::{HlsError, ProgramClock};
use crate::manifest::{
    AcceptedChunk, Event as Verdict, ManifestId, Policy, Reason, UnixTime, Verifier,
};
use crate::moq::session::Event;
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{ObjectStatus, RequestId, SessionCode};
use crate::net::{ConnId, Endpoint, NetError, NetEvent, PeerCheck, Settings, Target};
use crate::node::timing::{self, Stage};
use order::Reorder;
use output::{Output, Segment};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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

/// A peer to subscribe from.
pub struct PeerSpec {
    /// Where it is.
    pub target: Target,
    /// How its identity is checked.
    pub check: PeerCheck,
}

/// What to subscribe to and how.
pub struct SubscribeConfig {
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// What the verifier accepts.
    pub policy: Policy,
    /// The peer serving the chunk objects.
    pub objects: PeerSpec,
    /// A different peer serving the manifests (`None`: the objects peer).
    pub manifests: Option<PeerSpec>,
    /// Whether to subscribe to the manifests track.
    pub subscribe_manifests: bool,
    /// Groups before the current one fetched on joining, per track.
    pub backfill: u64,
    /// The HLS output folder.
    pub out: PathBuf,
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
    /// The HLS thread stopped on an error (replaced by that error before it is returned).
    OutputStopped,
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Connect(peer, e) => write!(f, "cannot connect to {peer}: {e}"),
            SubscribeError::Net(e) => e.fmt(f),
            SubscribeError::Refused(kind, reason) => write!(
                f,
                "the peer refused the {} track: {reason} (wrong --stream-id or --network-secret, \
                 or the peer does not publish it)",
                kind_name(*kind)
            ),
            SubscribeError::NoManifest(t) => {
                write!(f, "no trusted manifest within {} s", t.as_secs())
            }
            SubscribeError::TooManyInvalid(n) => {
                write!(f, "{n} invalid objects, more than --max-invalid-chunks")
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
            SubscribeError::OutputStopped => write!(f, "the HLS thread stopped"),
        }
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Chunks => "chunks",
        TrackKind::Manifests => "manifests",
    }
}

/// What one of our requests is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    /// The live subscription of a track.
    Live(TrackKind),
    /// The joining FETCH of a track: its current group and the backfill.
    Backfill(TrackKind),
}

impl Request {
    fn kind(self) -> TrackKind {
        match self {
            Request::Live(kind) | Request::Backfill(kind) => kind,
        }
    }
}

/// One dialed peer and the tracks it is asked for.
struct Peer {
    name: String,
    ep: Endpoint,
    conn: ConnId,
    kinds: Vec<TrackKind>,
    requests: HashMap<RequestId, Request>,
    connected: bool,
}

/// Runs the pipeline until `stop_after` chunks, a failure, or `stop`; calls `progress` with the
/// run so far about once a second. The summary is returned in both cases.
pub fn subscribe(
    config: SubscribeConfig,
    stop: &StopFlag,
    progress: &mut dyn FnMut(&SubscribeSummary),
) -> (SubscribeSummary, Result<(), SubscribeError>) {
    let started = Instant::now();
    let mut summary = SubscribeSummary::default();
    let writer = match HlsWriter::create(&config.out, PlaylistKind::Event, config.target_duration) {
        Ok(w) => w,
        Err(e) => return (summary, Err(SubscribeError::Hls(e))),
    };
    let mut verifier = Verifier::new(config.keys.clone(), config.policy.clone());
    let output = match Output::start(writer) {
        Ok(output) => output,
        Err(e) => return (summary, Err(SubscribeError::Start(e))),
    };
    let result = match dial_peers(&config) {
        Ok(mut peers) => {
            let mut run = Run {
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
                backfills: peers.iter().map(|p| p.kinds.len()).sum(),
                backfill_indices: Vec::new(),
                manifest_times: VecDeque::new(),
                reported: started,
                progress,
            };
            let result = run.receive(&mut peers, stop);
            let flushed = run.release();
            for peer in peers {
                let mut ep = peer.ep;
                let _ = ep.close(peer.conn, SessionCode::NoError, "done");
                ep.shutdown();
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
        (Err(SubscribeError::OutputStopped), Err(e)) | (Ok(()), Err(e)) => {
            Err(SubscribeError::Hls(e))
        }
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

fn dial_peers(config: &SubscribeConfig) -> Result<Vec<Peer>, SubscribeError> {
    let manifests = config.subscribe_manifests || config.policy.require_manifest;
    let mut specs = vec![(&config.objects, vec![TrackKind::Chunks])];
    match &config.manifests {
        Some(spec) if manifests => specs.push((spec, vec![TrackKind::Manifests])),
        _ if manifests => specs[0].1.push(TrackKind::Manifests),
        _ => {}
    }
    specs
        .into_iter()
        .map(|(spec, kinds)| {
            let name = spec.target.to_string();
            let (ep, conn) = Endpoint::dial(&spec.target, spec.check.clone(), Settings::default())
                .map_err(|e| SubscribeError::Connect(name.clone(), e))?;
            Ok(Peer {
                name,
                ep,
                conn,
                kinds,
                requests: HashMap::new(),
                connected: false,
            })
        })
        .collect()
}

/// The receive loop's state.
struct Run<'a> {
    config: &'a SubscribeConfig,
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
    manifest_times: VecDeque<(ManifestId, UnixTime)>,
    reported: Instant,
    progress: &'a mut dyn FnMut(&SubscribeSummary),
}

impl Run<'_> {
    fn receive(&mut self, peers: &mut [Peer], stop: &StopFlag) -> Result<(), SubscribeError> {
        while !stop.is_set() {
            let mut busy = false;
            for peer in peers.iter_mut() {
                while let Some(ev) = peer
                    .ep
                    .next_event(Duration::ZERO)
                    .map_err(SubscribeError::Net)?
                {
                    self.on_net_event(peer, ev)?;
                    busy = true;
                }
            }
            if self.done() {
                return Ok(());
            }
            let now = now();
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
                self.output.written(|w| self.summary.copy_written(w));
                (self.progress)(self.summary);
            }
            if !busy {
                let endpoints: Vec<&Endpoint> = peers.iter().map(|p| &p.ep).collect();
                Endpoint::wait_any::<()>(&endpoints, None, TICK);
            }
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
            return Err(match peers.iter().find(|p| !p.connected) {
                Some(p) => SubscribeError::Connect(p.name.clone(), NetError::IdleTimeout),
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

    fn on_net_event(&mut self, peer: &mut Peer, ev: NetEvent) -> Result<(), SubscribeError> {
        let event = match ev {
            NetEvent::Connected { node, .. } => {
                peer.connected = true;
                log::info!("connected to {} (node {node:?})", peer.name);
                return Ok(());
            }
            NetEvent::Disconnected { why, .. } if peer.connected => {
                return Err(SubscribeError::Left(format!("{}: {why}", peer.name)))
            }
            NetEvent::Disconnected { why, .. } => {
                return Err(SubscribeError::Connect(peer.name.clone(), why))
            }
            NetEvent::Session { event, .. } => event,
        };
        match event {
            Event::SetupComplete { .. } => self.request_tracks(peer)?,
            Event::Object { request, object } => {
                if object.status != ObjectStatus::Normal {
                    return Ok(());
                }
                let Some(asked) = peer.requests.get(&request).copied() else {
                    return Ok(());
                };
                let now = now();
                match asked.kind() {
                    TrackKind::Chunks => {
                        let placed = ChunkIndex(object.group.0);
                        timing::mark(Stage::Received, placed);
                        self.first_object.get_or_insert_with(Instant::now);
                        self.last_object = Instant::now();
                        if let Request::Backfill(_) = asked {
                            self.backfill_indices.push(placed);
                        }
                        self.verifier
                            .push_object(object.payload, None, Some(placed), now);
                    }
                    TrackKind::Manifests => self.verifier.push_manifest(&object.payload, now),
                }
                self.drain()?;
            }
            Event::FetchComplete { request } | Event::StreamReset { request, .. }
                if matches!(peer.requests.get(&request), Some(Request::Backfill(_))) =>
            {
                peer.requests.remove(&request);
                self.backfills = self.backfills.saturating_sub(1);
            }
            Event::RequestFailed {
                request, reason, ..
            } => match peer.requests.remove(&request) {
                Some(Request::Live(kind)) => {
                    return Err(SubscribeError::Refused(
                        kind,
                        format!("{}: {reason}", peer.name),
                    ));
                }
                Some(Request::Backfill(kind)) => {
                    log::info!(
                        "{} has no earlier {} to fetch: {reason}",
                        peer.name,
                        kind_name(kind)
                    );
                    self.backfills = self.backfills.saturating_sub(1);
                }
                None => {}
            },
            Event::SubscriptionDone {
                request, reason, ..
            } if peer.requests.get(&request) == Some(&Request::Live(TrackKind::Chunks)) => {
                return Err(SubscribeError::Left(format!(
                    "{} ended the stream: {reason}",
                    peer.name
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Subscribes to the peer's tracks from the next group, each with a joining FETCH of the
    /// current group and the backfill before it (sent at once: no round trip before data).
    fn request_tracks(&mut self, peer: &mut Peer) -> Result<(), SubscribeError> {
        let locator = self.config.keys.locator().to_string();
        let backfill = self.config.backfill;
        for &kind in &peer.kinds {
            let Ok(track) = BroadcastTrack::new(&locator, kind) else {
                continue;
            };
            let track = track.full_name();
            let (live, joining) = peer
                .ep
                .call(peer.conn, move |s| s.subscribe_joining(track, backfill))
                .map_err(SubscribeError::Net)?
                .map_err(|e| SubscribeError::Left(e.to_string()))?;
            peer.requests.insert(live, Request::Live(kind));
            peer.requests.insert(joining, Request::Backfill(kind));
        }
        Ok(())
    }

    /// Takes the verifier's events: orders and writes accepted chunks, counts manifests, logs
    /// rejections.
    fn drain(&mut self) -> Result<(), SubscribeError> {
        while let Some(verdict) = self.verifier.poll_event() {
            match verdict {
                Verdict::Chunk(chunk) => {
                    timing::mark(Stage::Verified, chunk.index);
                    self.last_verified = Some(Instant::now());
                    self.rejected_at_verified = self.verifier.rejected_objects();
                    let ready = self.reorder.push(chunk.index, chunk);
                    self.write(ready)?;
                }
                Verdict::Manifest {
                    id,
                    signer,
                    epoch,
                    created,
                    ..
                } => {
                    self.summary.manifests += 1;
                    if self.manifest_times.len() == MANIFEST_TIMES {
                        self.manifest_times.pop_front();
                    }
                    self.manifest_times.push_back((id, created));
                    log::debug!("manifest for epoch {epoch} from {signer}");
                }
                Verdict::Rejected(r) => log::warn!("rejected: {r}"),
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
            let duration = chunk
                .vouched
                .map_or(self.config.chunk_ticks, |(_, d)| u64::from(d));
            let discontinuity = chunk.flags.discontinuity();
            let entry = SegmentEntry {
                index,
                duration,
                discontinuity,
                date_time: self.clock.next(duration, discontinuity, wall_clock()),
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
            };
            if !self.output.send(segment) {
                return Err(SubscribeError::OutputStopped);
            }
            self.handed += 1;
        }
        Ok(())
    }

    /// When the manifest that vouched for a chunk was created, if it is remembered.
    fn created(&self, vouched: Option<(ManifestId, u32)>) -> Option<UnixTime> {
        let (id, _) = vouched?;
        self.manifest_times
            .iter()
            .rev()
            .find(|(m, _)| *m == id)
            .map(|(_, t)| *t)
    }
}

fn now() -> UnixTime {
    UnixTime(wall_clock().0)
}
