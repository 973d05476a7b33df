//! The subscribing pipeline: receive → verify → decrypt → HLS.
//!
//! ```text
//!  objects peer ───(endpoint thread)──┐
//!                                     ├─► receive loop (caller): Verifier (verify + decrypt in
//!  manifests peer ─(endpoint thread)──┘   place) → Reorder ─(bounded)─► HLS thread: HlsWriter
//! ```
//!
//! Objects come from one peer and manifests from the same or another one, each an
//! [`Upstream`] with its own network thread. Each track is asked for as a late join
//! ([`Ask::Join`]: from the next group, with a joining FETCH of the current group and `backfill`
//! earlier ones), so a late joiner starts at once; `order::Reorder` keeps the segments in index
//! order meanwhile.
//! The verifier decides what is accepted ("no manifests, no data" under
//! [`Policy::require_manifest`]); this module only wires the peers, the verifier and the writer,
//! keeps the clocks (start-up, manifest and idle timeouts) and always finishes the playlist with
//! ENDLIST. Memory is bounded by the verifier's policy and the reorder cap.

mod latency;
mod order;
mod output;

pub use latency::Latency;

use crate::chunk::ChunkIndex;
use crate::crypto::StreamKeys;
use crate::hls::playlist::SegmentEntry;
use crate::hls::{HlsError, ProgramClock};
use crate::manifest::{AcceptedChunk, Event as Verdict, ManifestId, Policy, Reason, Verifier};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::net::NetError;
use crate::node::timing::{self, Stage};
use crate::node::tracks::{Ask, Delivery, PeerSpec, Upstream, UpstreamError};
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use order::Reorder;
pub use output::{Destination, SegmentSink};
use output::{Output, OutputError, Segment};
use std::collections::VecDeque;
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

/// One upstream peer and the kinds of the tracks asked of it, in order.
struct Peer {
    upstream: Upstream,
    kinds: Vec<TrackKind>,
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
    let destination = std::mem::replace(&mut config.output, Destination::Folder(PathBuf::new()));
    let output = match Output::start(destination, config.target_duration) {
        Ok(output) => output,
        Err(e) => return (summary, Err(e.into())),
    };
    let mut verifier = Verifier::new(config.keys.clone(), config.policy.clone());
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
                peer.upstream.close();
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

fn dial_peers(config: &SubscribeConfig) -> Result<Vec<Peer>, SubscribeError> {
    let manifests = config.subscribe_manifests || config.policy.require_manifest;
    let mut specs = vec![(&config.objects, vec![TrackKind::Chunks])];
    match &config.manifests {
        Some(spec) if manifests => specs.push((spec, vec![TrackKind::Manifests])),
        _ if manifests => specs[0].1.push(TrackKind::Manifests),
        _ => {}
    }
    let locator = config.keys.locator().to_string();
    let ask = Ask::Join {
        backfill: config.backfill,
    };
    specs
        .into_iter()
        .map(|(spec, kinds)| {
            let asks = kinds
                .iter()
                .filter_map(|&kind| BroadcastTrack::new(&locator, kind).ok())
                .map(|track| (track.full_name(), ask))
                .collect();
            let upstream = Upstream::dial(spec, asks).map_err(upstream_failure(&kinds))?;
            Ok(Peer { upstream, kinds })
        })
        .collect()
}

/// The run's error for an upstream failure, with the refused track named by its kind.
fn upstream_failure(kinds: &[TrackKind]) -> impl Fn(UpstreamError) -> SubscribeError + '_ {
    move |e| match e {
        UpstreamError::Connect { peer, why } => SubscribeError::Connect(peer, why),
        UpstreamError::Refused {
            peer,
            track,
            reason,
            ..
        } => SubscribeError::Refused(kinds[track], format!("{peer}: {reason}")),
        UpstreamError::Left { peer, why } => SubscribeError::Left(format!("{peer}: {why}")),
        UpstreamError::Request(e) => SubscribeError::Left(e.to_string()),
        UpstreamError::Net(e) => SubscribeError::Net(e),
    }
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
    manifest_times: VecDeque<(ManifestId, UnixMillis)>,
    reported: Instant,
    progress: &'a mut dyn FnMut(&SubscribeSummary),
}

impl Run<'_> {
    fn receive(&mut self, peers: &mut [Peer], stop: &StopFlag) -> Result<(), SubscribeError> {
        while !stop.is_set() {
            let mut busy = false;
            for peer in peers.iter_mut() {
                while let Some(delivery) = peer
                    .upstream
                    .next(Duration::ZERO)
                    .map_err(upstream_failure(&peer.kinds))?
                {
                    self.on_delivery(peer, delivery)?;
                    busy = true;
                }
            }
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
                self.output.written(|w| self.summary.copy_written(w));
                (self.progress)(self.summary);
            }
            if !busy {
                let upstreams: Vec<&Upstream> = peers.iter().map(|p| &p.upstream).collect();
                crate::node::tracks::wait_any::<()>(&upstreams, &[], None, TICK);
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
            return Err(match peers.iter().find(|p| !p.upstream.is_connected()) {
                Some(p) => {
                    SubscribeError::Connect(p.upstream.name().to_string(), NetError::IdleTimeout)
                }
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

    fn on_delivery(&mut self, peer: &Peer, delivery: Delivery) -> Result<(), SubscribeError> {
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
                        self.first_object.get_or_insert_with(Instant::now);
                        self.last_object = Instant::now();
                        if fetched {
                            self.backfill_indices.push(placed);
                        }
                        self.verifier
                            .push_object(object.payload, None, Some(placed), now);
                    }
                    TrackKind::Manifests => self.verifier.push_manifest(&object.payload, now),
                }
                self.drain()
            }
            Delivery::FetchDone { .. } => {
                self.backfills = self.backfills.saturating_sub(1);
                Ok(())
            }
            Delivery::Ended { track, reason } if peer.kinds[track] == TrackKind::Chunks => {
                Err(SubscribeError::Left(format!(
                    "{} ended the stream: {reason}",
                    peer.upstream.name()
                )))
            }
            Delivery::Ended { .. } | Delivery::Connected(_) => Ok(()),
        }
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
            };
            if !self.output.send(segment) {
                return Err(SubscribeError::OutputStopped);
            }
            self.handed += 1;
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
