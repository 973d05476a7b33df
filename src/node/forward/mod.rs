//! The forwarding pipeline: re-serves one stream's tracks, received from other peers, to its
//! own subscribers — an availability node without a tuner.
//!
//! ```text
//!  unverified:  upstream peer ─(endpoint thread)─► forward loop (caller): Tamper (test faults)
//!  verified:    upstream peers ─► subscribing pipeline (swarm, Verifier) ─► output thread: Passer
//!                 ─(the outlet's feed: bounded)─► endpoint thread: TrackServer ─► subscribers
//! ```
//!
//! Unverified ([`Upstreams::Unverified`]), each track of one peer is subscribed from the next
//! group with a joining FETCH of the current one, and every group is handed to the outlet as
//! received (duplicates and groups behind the newest are skipped, as a track's groups only
//! increase). The node holds no key: what it forwards is only as good as a subscriber's verifier
//! finds it, which is the point of ECP-0032.
//!
//! Verified ([`Upstreams::Verified`]), the node is a subscriber whose output is its outlet: the
//! subscribing pipeline takes the objects from one or several peers (the swarm: failover,
//! demotion, redial) and the manifests, and only what a trusted manifest vouches for — each
//! verified chunk's sealed object, in index order, and the manifests that vouched — enters the
//! cache. [`tamper::Tamper`] makes the node deliberately hostile for tests. This module only
//! wires the upstreams, the subscribing pipeline, the tamperer and the outlet.

pub mod tamper;

use super::subscribe::{
    subscribe, Destination, Onward, SourceSummary, SubscribeConfig, SubscribeError,
};
use super::tracks::{Ask, Delivery, Outlet, PeerSpec, ServeError, Upstream, UpstreamError, Work};
use crate::chunk::ChunkIndex;
use crate::crypto::StreamKeys;
use crate::manifest::{Policy, Reason};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{FullTrackName, GroupId};
use crate::net::Feed;
use crate::stop::StopFlag;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tamper::Tamper;

/// What to forward and how.
pub struct ForwardConfig {
    /// Where the tracks come from, and whether they are verified first.
    pub upstreams: Upstreams,
    /// The tracks forwarded (by their full names).
    pub tracks: Vec<FullTrackName>,
    /// What to do to the chunk groups on the way (nothing, unless testing).
    pub tamper: Tamper,
}

/// Where a forwarder takes the tracks from.
pub enum Upstreams {
    /// One peer, forwarded as received.
    Unverified(PeerSpec),
    /// One or several peers, everything verified before it is forwarded.
    Verified(Verification),
}

/// How a verifying forwarder takes and checks what it forwards.
pub struct Verification {
    /// The peers serving the chunk objects (at least one), best first when scores tie.
    pub objects: Vec<PeerSpec>,
    /// Other peers serving the manifests (none: the objects peers).
    pub manifests: Vec<PeerSpec>,
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// The trusted signers (manifests are required).
    pub policy: Policy,
    /// How long a vouched-for chunk may take before another source is asked.
    pub group_timeout: Duration,
    /// Rejections after which a source is demoted.
    pub max_source_invalid: u32,
    /// Fail when no object came for this long, or none verified.
    pub idle_timeout: Duration,
}

/// How a forwarding run went.
#[derive(Debug, Default)]
pub struct ForwardSummary {
    /// Groups forwarded, all tracks.
    pub forwarded: u64,
    /// Chunk groups tampered with.
    pub tampered: u64,
    /// Objects the verifier rejected (never forwarded), by reason.
    pub rejected: Vec<(Reason, u64)>,
    /// Per object source of a verifying forwarder: its address, standing and figures.
    pub sources: Vec<SourceSummary>,
}

/// Why forwarding stopped early.
#[derive(Debug)]
pub enum ForwardError {
    /// Taking the tracks from the upstream peer failed.
    Upstream(UpstreamError),
    /// Taking and verifying the tracks from the upstream peers failed.
    Verified(SubscribeError),
    /// Serving our subscribers failed.
    Serve(ServeError),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Upstream(e) => write!(f, "upstream: {e}"),
            ForwardError::Verified(e) => write!(f, "upstream: {e}"),
            ForwardError::Serve(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ForwardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ForwardError::Upstream(e) => Some(e),
            ForwardError::Verified(e) => Some(e),
            ForwardError::Serve(e) => Some(e),
        }
    }
}

/// Longest the loop sleeps when nothing is ready, so a stop request is seen.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Forwards to `outlet` until the upstream stream ends (Ok), the upstream peers fail or leave,
/// or `stop`.
pub fn forward(
    outlet: &mut Outlet,
    config: ForwardConfig,
    stop: &StopFlag,
) -> Result<ForwardSummary, ForwardError> {
    let passer = Passer::new(outlet.feed(), &config.tracks, config.tamper);
    match config.upstreams {
        Upstreams::Unverified(peer) => {
            forward_unverified(outlet, peer, config.tracks, passer, stop)
        }
        Upstreams::Verified(verification) => forward_verified(outlet, verification, passer, stop),
    }
}

/// The unverified loop: every group of one peer's tracks, as received.
fn forward_unverified(
    outlet: &mut Outlet,
    peer: PeerSpec,
    tracks: Vec<FullTrackName>,
    mut passer: Passer,
    stop: &StopFlag,
) -> Result<ForwardSummary, ForwardError> {
    let asks = tracks
        .iter()
        .map(|t| (t.clone(), Ask::Join { backfill: 0 }))
        .collect();
    let mut upstream = Upstream::dial(&peer, asks).map_err(ForwardError::Upstream)?;
    let result = relay_groups(outlet, &mut upstream, &mut passer, stop);
    upstream.close();
    result.map(|()| passer.summary())
}

/// Hands every group `upstream` delivers to `passer` until its chunks track ends or `stop`.
fn relay_groups(
    outlet: &mut Outlet,
    upstream: &mut Upstream,
    passer: &mut Passer,
    stop: &StopFlag,
) -> Result<(), ForwardError> {
    while !stop.is_set() {
        outlet.poll().map_err(ForwardError::Serve)?;
        let mut busy = false;
        while let Some(delivery) = upstream
            .next(Duration::ZERO)
            .map_err(ForwardError::Upstream)?
        {
            busy = true;
            match delivery {
                Delivery::Object { track, object, .. } => {
                    passer.pass(track, object.group, object.payload.into())?
                }
                Delivery::Ended { track, .. } if Some(track) == passer.chunks => {
                    return passer.end();
                }
                _ => {}
            }
        }
        if !busy {
            super::tracks::wait_any::<()>(
                &[&*upstream],
                std::slice::from_ref(&*outlet),
                None,
                IDLE_WAIT,
            );
        }
    }
    Ok(())
}

/// The verified path: the subscribing pipeline with the outlet as its output, while this
/// thread's scope keeps the outlet polled.
fn forward_verified(
    outlet: &mut Outlet,
    v: Verification,
    passer: Passer,
    stop: &StopFlag,
) -> Result<ForwardSummary, ForwardError> {
    let passer = Arc::new(Mutex::new(passer));
    let output = Destination::Onward(Box::new(Passing(passer.clone())));
    let default_chunk_ms = crate::chunk::ChunkerConfig::default().chunk_ms;
    let config = SubscribeConfig {
        manifests: v.manifests,
        group_timeout: v.group_timeout,
        max_source_invalid: v.max_source_invalid,
        manifest_timeout: v.idle_timeout,
        idle_timeout: v.idle_timeout,
        // A forwarder writes no playlist, so the chunk duration only shapes figures it never
        // shows; the group timeout is the one that matters, given above.
        ..SubscribeConfig::new(v.keys, v.policy, v.objects, default_chunk_ms, output)
    };
    // The pipeline stops on a signal, and when the outlet fails.
    let running = StopFlag::default();
    let (subscribed, served) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| keep_polled(outlet, stop, &running));
        let subscribed = subscribe(config, &running, &mut |_| {});
        running.set();
        (subscribed, watcher.join().unwrap_or(Ok(())))
    });
    let (summary, result) = subscribed;
    served.map_err(ForwardError::Serve)?;
    let mut passer = passer.lock();
    // The stream ending (or our only source leaving) ends our subscribers' tracks too.
    if matches!(result, Ok(()) | Err(SubscribeError::Left(_))) && !stop.is_set() {
        passer.end()?;
    }
    result.map_err(ForwardError::Verified)?;
    let mut forwarded = passer.summary();
    forwarded.rejected = summary.rejected;
    forwarded.sources = summary.sources;
    Ok(forwarded)
}

/// Polls `outlet` until `running` is cleared by the pipeline's end; a stop request or the
/// outlet failing clears it first.
fn keep_polled(outlet: &mut Outlet, stop: &StopFlag, running: &StopFlag) -> Result<(), ServeError> {
    while !running.is_set() {
        if stop.is_set() {
            running.set();
        }
        if let Err(e) = outlet.poll() {
            running.set();
            return Err(e);
        }
        super::tracks::wait_any::<()>(&[], std::slice::from_ref(&*outlet), None, IDLE_WAIT);
    }
    Ok(())
}

/// The subscribing pipeline's [`Onward`]: hands what it passes on to the shared [`Passer`].
struct Passing(Arc<Mutex<Passer>>);

impl Onward for Passing {
    fn manifest(&mut self, group: GroupId, bytes: Arc<[u8]>) -> bool {
        let mut passer = self.0.lock();
        match passer.manifests {
            Some(at) => passer.pass(at, group, bytes).is_ok(),
            None => true,
        }
    }

    fn object(&mut self, index: ChunkIndex, sealed: Arc<[u8]>) -> bool {
        let mut passer = self.0.lock();
        match passer.chunks {
            Some(at) => passer.pass(at, GroupId(index.0), sealed).is_ok(),
            None => true,
        }
    }
}

/// Hands groups to the outlet: each track's groups only go up (duplicates and older groups
/// are skipped), chunk groups through the tamperer.
struct Passer {
    feed: Feed<Work>,
    /// The newest group forwarded, per track.
    newest: Vec<Option<GroupId>>,
    /// The chunks track's position, if forwarded.
    chunks: Option<usize>,
    /// The manifests track's position, if forwarded.
    manifests: Option<usize>,
    tamper: Tamper,
    forwarded: u64,
}

impl Passer {
    fn new(feed: Feed<Work>, tracks: &[FullTrackName], tamper: Tamper) -> Passer {
        let position = |kind| {
            tracks
                .iter()
                .position(|t| BroadcastTrack::from_full_name(t).is_some_and(|b| b.kind() == kind))
        };
        Passer {
            feed,
            newest: vec![None; tracks.len()],
            chunks: position(TrackKind::Chunks),
            manifests: position(TrackKind::Manifests),
            tamper,
            forwarded: 0,
        }
    }

    /// Forwards a group of track `at`, through the tamperer for chunks.
    fn pass(&mut self, at: usize, group: GroupId, payload: Arc<[u8]>) -> Result<(), ForwardError> {
        if self.newest[at].is_some_and(|newest| group <= newest) {
            return Ok(());
        }
        self.newest[at] = Some(group);
        let groups = if Some(at) == self.chunks {
            self.tamper.push(group, payload)
        } else {
            vec![(group, payload)]
        };
        for (group, payload) in groups {
            self.publish(at, group, payload)?;
        }
        Ok(())
    }

    fn publish(
        &mut self,
        track: usize,
        group: GroupId,
        payload: Arc<[u8]>,
    ) -> Result<(), ForwardError> {
        self.forwarded += 1;
        self.feed
            .send(Work::Group {
                track,
                group,
                payload,
            })
            .map_err(|e| ForwardError::Serve(ServeError::Net(e)))
    }

    /// The upstream stream ended: forward a group held for a swap, then end our subscriptions.
    fn end(&mut self) -> Result<(), ForwardError> {
        if let Some((group, payload)) = self.tamper.finish() {
            if let Some(at) = self.chunks {
                self.publish(at, group, payload)?;
            }
        }
        self.feed
            .send(Work::End)
            .map_err(|e| ForwardError::Serve(ServeError::Net(e)))
    }

    /// The figures so far.
    fn summary(&self) -> ForwardSummary {
        ForwardSummary {
            forwarded: self.forwarded,
            tampered: self.tamper.tampered(),
            ..ForwardSummary::default()
        }
    }
}
