//! The forwarding pipeline: re-serves one stream's tracks, received from another peer, to its
//! own subscribers — an availability node without a tuner.
//!
//! ```text
//!  upstream peer ─(endpoint thread)─► forward loop (caller): Tamper (test faults only)
//!                 ─(the outlet's feed: bounded)─► endpoint thread: TrackServer ─► subscribers
//! ```
//!
//! Each track is subscribed from the next group with a joining FETCH of the current one, and
//! every group is handed to the outlet as received (duplicates and groups behind the newest are
//! skipped, as a track's groups only increase). The node holds no key: what it forwards is only as good as a
//! subscriber's verifier finds it, which is the point of ECP-0032. [`tamper::Tamper`] makes it
//! deliberately hostile for tests. This module only wires the upstream, the tamperer and the outlet.

pub mod tamper;

use super::tracks::{Ask, Delivery, Outlet, PeerSpec, ServeError, Upstream, UpstreamError, Work};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{FullTrackName, GroupId};
use crate::stop::StopFlag;
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
}

/// How a forwarding run went.
#[derive(Debug, Default)]
pub struct ForwardSummary {
    /// Groups forwarded, all tracks.
    pub forwarded: u64,
    /// Chunk groups tampered with.
    pub tampered: u64,
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
    let asks = config
        .tracks
        .iter()
        .map(|t| (t.clone(), Ask::Join { backfill: 0 }))
        .collect();
    let upstream = Upstream::dial(&config.upstream, asks).map_err(ForwardError::Upstream)?;
    let chunks = config.tracks.iter().position(|t| {
        BroadcastTrack::from_full_name(t).is_some_and(|b| b.kind() == TrackKind::Chunks)
    });
    let mut run = Forward {
        outlet,
        newest: vec![None; config.tracks.len()],
        chunks,
        tamper: config.tamper,
        summary: ForwardSummary::default(),
    };
    let mut upstream = upstream;
    let result = run.run(&mut upstream, stop);
    upstream.close();
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
    tamper: Tamper,
    summary: ForwardSummary,
}

impl Forward<'_> {
    fn run(&mut self, upstream: &mut Upstream, stop: &StopFlag) -> Result<(), ForwardError> {
        while !stop.is_set() {
            self.outlet.poll().map_err(ForwardError::Serve)?;
            match upstream
                .next(Duration::ZERO)
                .map_err(ForwardError::Upstream)?
            {
                Some(Delivery::Object { track, object, .. }) => {
                    self.receive(track, object.group, object.payload.into())?
                }
                Some(Delivery::Ended { .. }) => return self.end(),
                Some(_) => {}
                None => super::tracks::wait_any::<()>(
                    &[&*upstream],
                    std::slice::from_ref(&*self.outlet),
                    None,
                    IDLE_WAIT,
                ),
            }
        }
        Ok(())
    }

    /// Forwards a received group of track `at`, through the tamperer for chunks.
    fn receive(
        &mut self,
        at: usize,
        group: GroupId,
        payload: Arc<[u8]>,
    ) -> Result<(), ForwardError> {
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
