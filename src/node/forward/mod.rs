//! The forwarding pipeline: re-serves one stream's tracks, received from another peer, to its
//! own subscribers — an availability node without a tuner.
//!
//! ```text
//!  upstream peer(s) ─(endpoint threads)─► forward loop (caller): [Verifier] → Tamper (test faults)
//!                   ─(the outlet's feed: bounded)─► endpoint thread: TrackServer ─► subscribers
//! ```
//!
//! Each track is subscribed from the next group with a joining FETCH of the current one, and
//! every group is handed to the outlet as received (duplicates and groups behind the newest are
//! skipped, as a track's groups only increase). Without [`Verification`] the node holds no key:
//! what it forwards is only as good as a subscriber's verifier finds it, which is the point of
//! ECP-0032. With it, every object waits (bounded) for the verifier and only what a trusted
//! manifest vouches for, and the manifests that vouched, enter the cache. [`tamper::Tamper`]
//! makes the node deliberately hostile for tests. This module only wires the upstreams, the
//! verifier, the tamperer and the outlet.

pub mod tamper;

use super::tracks::{Ask, Delivery, Outlet, PeerSpec, ServeError, Upstream, UpstreamError, Work};
use crate::chunk::ChunkIndex;
use crate::crypto::StreamKeys;
use crate::manifest::{Event as Verdict, Manifest, ManifestId, Policy, Verifier};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{FullTrackName, GroupId};
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tamper::Tamper;

/// What to forward and how.
pub struct ForwardConfig {
    /// The peer to forward from.
    pub upstream: PeerSpec,
    /// The tracks forwarded (by their full names).
    pub tracks: Vec<FullTrackName>,
    /// What to do to the chunk groups on the way (nothing, unless testing).
    pub tamper: Tamper,
    /// Verify before forwarding: only objects a trusted manifest vouches for, and the manifests
    /// that vouched, are forwarded (`None`: forward as received, unverified).
    pub verify: Option<Verification>,
}

/// How a forwarder verifies what it forwards.
pub struct Verification {
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// The trusted signers (manifests are required).
    pub policy: Policy,
    /// A peer serving the manifests, if not the upstream peer.
    pub manifests: Option<PeerSpec>,
}

/// Objects and manifests held while the verifier decides, at most this many of each.
const HELD: usize = 64;

/// How a forwarding run went.
#[derive(Debug, Default)]
pub struct ForwardSummary {
    /// Groups forwarded, all tracks.
    pub forwarded: u64,
    /// Chunk groups tampered with.
    pub tampered: u64,
    /// Objects and manifests the verifier rejected (never forwarded).
    pub rejected: u64,
}

/// Why forwarding stopped early.
#[derive(Debug)]
pub enum ForwardError {
    /// Taking the tracks from the upstream peer failed.
    Upstream(UpstreamError),
    /// Serving our subscribers failed.
    Serve(ServeError),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Upstream(e) => write!(f, "upstream: {e}"),
            ForwardError::Serve(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ForwardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ForwardError::Upstream(e) => Some(e),
            ForwardError::Serve(e) => Some(e),
        }
    }
}

/// Longest the loop sleeps when nothing is ready, so a stop request is seen.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Forwards to `outlet` until the upstream stream ends (Ok), the upstream peer fails or
/// leaves, or `stop`.
pub fn forward(
    outlet: &mut Outlet,
    config: ForwardConfig,
    stop: &StopFlag,
) -> Result<ForwardSummary, ForwardError> {
    let position = |kind| {
        config
            .tracks
            .iter()
            .position(|t| BroadcastTrack::from_full_name(t).is_some_and(|b| b.kind() == kind))
    };
    let (chunks, manifests) = (position(TrackKind::Chunks), position(TrackKind::Manifests));
    // Each upstream's tracks, as positions in what the outlet serves.
    let side = config.verify.as_ref().and_then(|v| v.manifests.clone());
    let main: Vec<usize> = (0..config.tracks.len())
        .filter(|at| side.is_none() || Some(*at) != manifests)
        .collect();
    let join = |at: &usize| (config.tracks[*at].clone(), Ask::Join { backfill: 0 });
    let mut upstreams = vec![(
        Upstream::dial(&config.upstream, main.iter().map(join).collect())
            .map_err(ForwardError::Upstream)?,
        main,
    )];
    if let (Some(peer), Some(at)) = (&side, manifests) {
        let upstream = Upstream::dial(peer, vec![join(&at)]).map_err(ForwardError::Upstream)?;
        upstreams.push((upstream, vec![at]));
    }
    let gate = config.verify.map(|v| Gate {
        verifier: Verifier::new(v.keys, v.policy),
        chunks: VecDeque::new(),
        manifests: VecDeque::new(),
    });
    let mut run = Forward {
        outlet,
        newest: vec![None; config.tracks.len()],
        chunks,
        manifests,
        tamper: config.tamper,
        gate,
        summary: ForwardSummary::default(),
    };
    let result = run.run(&mut upstreams, stop);
    for (upstream, _) in upstreams {
        upstream.close();
    }
    run.summary.tampered = run.tamper.tampered();
    result.map(|()| run.summary)
}

/// The forward loop's state.
struct Forward<'a> {
    outlet: &'a mut Outlet,
    /// The newest group forwarded, per track.
    newest: Vec<Option<GroupId>>,
    /// The chunks track's position, if forwarded.
    chunks: Option<usize>,
    /// The manifests track's position, if forwarded.
    manifests: Option<usize>,
    tamper: Tamper,
    /// The verifier, when verifying before forwarding.
    gate: Option<Gate>,
    summary: ForwardSummary,
}

/// What waits for the verifier: objects by chunk index, manifests by id, with their groups.
struct Gate {
    verifier: Verifier,
    chunks: VecDeque<(ChunkIndex, Arc<[u8]>)>,
    manifests: VecDeque<(ManifestId, GroupId, Arc<[u8]>)>,
}

impl Forward<'_> {
    fn run(
        &mut self,
        upstreams: &mut [(Upstream, Vec<usize>)],
        stop: &StopFlag,
    ) -> Result<(), ForwardError> {
        while !stop.is_set() {
            self.outlet.poll().map_err(ForwardError::Serve)?;
            let mut busy = false;
            for (upstream, routes) in upstreams.iter_mut() {
                while let Some(delivery) = upstream
                    .next(Duration::ZERO)
                    .map_err(ForwardError::Upstream)?
                {
                    busy = true;
                    match delivery {
                        Delivery::Object { track, object, .. } => {
                            self.receive(routes[track], object.group, object.payload.into())?
                        }
                        Delivery::Ended { track, .. } if Some(routes[track]) == self.chunks => {
                            return self.end()
                        }
                        _ => {}
                    }
                }
            }
            if let Some(gate) = &mut self.gate {
                let now = UnixMillis::now();
                if gate.verifier.poll_timeout().is_some_and(|t| t <= now) {
                    gate.verifier.handle_timeout(now);
                    self.drain()?;
                }
            }
            if !busy {
                let waiting: Vec<&Upstream> = upstreams.iter().map(|(u, _)| u).collect();
                super::tracks::wait_any::<()>(
                    &waiting,
                    std::slice::from_ref(&*self.outlet),
                    None,
                    IDLE_WAIT,
                );
            }
        }
        Ok(())
    }

    /// A received group of track `at`: forwarded as is, or held until the verifier decides.
    fn receive(
        &mut self,
        at: usize,
        group: GroupId,
        payload: Arc<[u8]>,
    ) -> Result<(), ForwardError> {
        let Some(gate) = &mut self.gate else {
            return self.pass(at, group, payload);
        };
        let now = UnixMillis::now();
        if Some(at) == self.chunks {
            let index = ChunkIndex(group.0);
            gate.chunks.push_back((index, payload.clone()));
            if gate.chunks.len() > HELD {
                gate.chunks.pop_front();
            }
            gate.verifier
                .push_object(payload.to_vec(), None, Some(index), now);
        } else {
            if let Ok(manifest) = Manifest::decode(&payload) {
                gate.manifests
                    .push_back((manifest.id, group, payload.clone()));
                if gate.manifests.len() > HELD {
                    gate.manifests.pop_front();
                }
            }
            gate.verifier.push_manifest(&payload, now);
        }
        self.drain()
    }

    /// Forwards what the verifier accepted; counts and drops what it rejected.
    fn drain(&mut self) -> Result<(), ForwardError> {
        loop {
            let Some(gate) = &mut self.gate else {
                return Ok(());
            };
            let Some(verdict) = gate.verifier.poll_event() else {
                return Ok(());
            };
            let (at, group, payload) = match verdict {
                Verdict::Chunk(chunk) => {
                    let Some(i) = gate.chunks.iter().position(|(c, _)| *c == chunk.index) else {
                        continue;
                    };
                    let (index, payload) = gate.chunks.remove(i).expect("found above");
                    (self.chunks, GroupId(index.0), payload)
                }
                Verdict::Manifest { id, .. } => {
                    let Some(i) = gate.manifests.iter().position(|(m, ..)| *m == id) else {
                        continue;
                    };
                    let (_, group, payload) = gate.manifests.remove(i).expect("found above");
                    (self.manifests, group, payload)
                }
                Verdict::Rejected(r) => {
                    log::warn!("not forwarded: {r}");
                    self.summary.rejected += 1;
                    if let Some(index) = r.index {
                        gate.chunks.retain(|(c, _)| *c != index);
                    }
                    continue;
                }
                _ => continue,
            };
            if let Some(at) = at {
                self.pass(at, group, payload)?;
            }
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
        self.summary.forwarded += 1;
        self.outlet
            .feed()
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
        self.outlet
            .feed()
            .send(Work::End)
            .map_err(|e| ForwardError::Serve(ServeError::Net(e)))
    }
}
