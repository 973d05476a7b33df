//! The forwarding pipeline: re-serves one stream's tracks, received from another peer, to its
//! own subscribers — an availability node without a tuner, on the caller's thread.
//!
//! ```text
//!  upstream peer ─(endpoint thread)─► forward loop (caller): Tamper (test faults only)
//!                                     → TrackServer: caches, sessions ─(endpoint thread)─► subscribers
//! ```
//!
//! Each track is subscribed from the next group with a joining FETCH of the current one, and
//! every group is forwarded as received (duplicates and groups behind the newest are skipped, as
//! a track's groups only increase). The node holds no key: what it forwards is only as good as a
//! subscriber's verifier finds it, which is the point of ECP-0032. [`tamper::Tamper`] makes it
//! deliberately hostile for tests. This module only wires the two endpoints and the server.

pub mod tamper;

use super::serve::{ServeError, TrackServer};
use super::subscribe::PeerSpec;
use crate::cli::stop::StopFlag;
use crate::moq::session::Event;
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{FullTrackName, GroupId, ObjectStatus, RequestId, SessionCode};
use crate::net::{ConnId, Endpoint, NetError, NetEvent, Settings};
use std::collections::HashMap;
use std::time::Duration;
use tamper::Tamper;

/// Longest the loop sleeps when nothing is ready, so a stop request is seen.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// What to forward and how.
pub struct ForwardConfig {
    /// The peer to forward from.
    pub upstream: PeerSpec,
    /// The tracks forwarded (by their full names).
    pub tracks: Vec<FullTrackName>,
    /// Payload bytes cached per track for late joiners and FETCH.
    pub cache_bytes: usize,
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
    /// The upstream peer could not be reached or is not who its address says.
    Connect(String, NetError),
    /// The upstream peer refused a track.
    Refused(String),
    /// The upstream peer left.
    Left(String),
    /// Serving our subscribers failed.
    Serve(ServeError),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Connect(peer, e) => write!(f, "cannot connect to {peer}: {e}"),
            ForwardError::Refused(why) => write!(f, "the upstream peer refused a track: {why}"),
            ForwardError::Left(why) => write!(f, "the upstream peer left: {why}"),
            ForwardError::Serve(e) => e.fmt(f),
        }
    }
}

/// The forward loop's state.
struct Forward<'a> {
    listen: &'a mut Endpoint,
    upstream: Endpoint,
    conn: ConnId,
    server: TrackServer,
    tracks: Vec<FullTrackName>,
    /// Our requests upstream: the track they are for, and whether it is the live subscription
    /// (not the joining FETCH, whose failure only means there was nothing to fetch yet).
    requests: HashMap<RequestId, (usize, bool)>,
    newest: Vec<Option<GroupId>>,
    tamper: Tamper,
    summary: ForwardSummary,
}

/// Forwards until the upstream stream ends (Ok), the upstream peer fails or leaves, or `stop`.
pub fn forward(
    listen: &mut Endpoint,
    config: ForwardConfig,
    stop: &StopFlag,
) -> Result<ForwardSummary, ForwardError> {
    let name = config.upstream.target.to_string();
    let (upstream, conn) = Endpoint::dial(
        &config.upstream.target,
        config.upstream.check.clone(),
        Settings::default(),
    )
    .map_err(|e| ForwardError::Connect(name.clone(), e))?;
    let mut run = Forward {
        listen,
        upstream,
        conn,
        server: TrackServer::new(&config.tracks, config.cache_bytes),
        newest: vec![None; config.tracks.len()],
        tracks: config.tracks,
        requests: HashMap::new(),
        tamper: config.tamper,
        summary: ForwardSummary::default(),
    };
    let result = run.run(&name, stop);
    let _ = run.upstream.close(run.conn, SessionCode::NoError, "done");
    run.upstream.shutdown();
    run.summary.tampered = run.tamper.tampered();
    result.map(|()| run.summary)
}

impl Forward<'_> {
    fn run(&mut self, name: &str, stop: &StopFlag) -> Result<(), ForwardError> {
        while !stop.is_set() {
            let mut busy = false;
            while let Some(ev) = self.upstream.next_event(Duration::ZERO).map_err(net)? {
                if self.on_upstream(name, ev)? {
                    return self.end();
                }
                busy = true;
            }
            while let Some(ev) = self.listen.next_event(Duration::ZERO).map_err(net)? {
                self.on_downstream(ev)?;
                busy = true;
            }
            if !busy {
                Endpoint::wait_any::<()>(&[&self.upstream, self.listen], None, IDLE_WAIT);
            }
        }
        Ok(())
    }

    /// Handles an upstream event; true when the stream ended.
    fn on_upstream(&mut self, name: &str, ev: NetEvent) -> Result<bool, ForwardError> {
        let event = match ev {
            NetEvent::Connected { .. } => return Ok(false),
            NetEvent::Disconnected { why, .. } => {
                return Err(ForwardError::Left(format!("{name}: {why}")))
            }
            NetEvent::Session { event, .. } => event,
        };
        match event {
            Event::SetupComplete { .. } => self.subscribe_all()?,
            Event::Object { request, object } if object.status == ObjectStatus::Normal => {
                if let Some(&(at, _)) = self.requests.get(&request) {
                    self.receive(at, object.group, object.payload.into())?;
                }
            }
            Event::RequestFailed {
                request, reason, ..
            } => match self.requests.remove(&request) {
                Some((_, true)) => return Err(ForwardError::Refused(format!("{name}: {reason}"))),
                Some((_, false)) => log::info!("nothing to fetch from {name} yet: {reason}"),
                None => {}
            },
            Event::SubscriptionDone { request, .. }
                if self.requests.get(&request).is_some_and(|(_, live)| *live) =>
            {
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    fn on_downstream(&mut self, ev: NetEvent) -> Result<(), ForwardError> {
        match ev {
            NetEvent::Connected { conn, peer, .. } => {
                log::info!("session {conn:?} with {peer}");
                self.server.connected(conn);
            }
            NetEvent::Disconnected { conn, why } => {
                log::info!("session {conn:?} ended: {why}");
                self.server.disconnected(conn);
            }
            NetEvent::Session { conn, event } => self
                .server
                .on_event(self.listen, conn, event)
                .map_err(ForwardError::Serve)?,
        }
        Ok(())
    }

    /// Subscribes to every track from the next group, with a joining FETCH of the current one.
    fn subscribe_all(&mut self) -> Result<(), ForwardError> {
        for (at, track) in self.tracks.iter().enumerate() {
            let track = track.clone();
            let (live, joining) = self
                .upstream
                .call(self.conn, move |s| s.subscribe_joining(track, 0))
                .map_err(net)?
                .map_err(|e| ForwardError::Left(e.to_string()))?;
            self.requests.insert(live, (at, true));
            self.requests.insert(joining, (at, false));
        }
        Ok(())
    }

    /// Forwards a received group of track `at`, through the tamperer for chunks.
    fn receive(
        &mut self,
        at: usize,
        group: GroupId,
        payload: std::sync::Arc<[u8]>,
    ) -> Result<(), ForwardError> {
        if self.newest[at].is_some_and(|newest| group <= newest) {
            return Ok(());
        }
        self.newest[at] = Some(group);
        let groups = if Some(at) == self.chunks_track() {
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
        at: usize,
        group: GroupId,
        payload: std::sync::Arc<[u8]>,
    ) -> Result<(), ForwardError> {
        let track = self.tracks[at].clone();
        self.summary.forwarded += 1;
        self.server
            .publish(self.listen, &track, group, payload)
            .map_err(ForwardError::Serve)
    }

    /// The upstream stream ended: forward a group held for a swap, then end our subscriptions.
    fn end(&mut self) -> Result<(), ForwardError> {
        if let Some((group, payload)) = self.tamper.finish() {
            if let Some(at) = self.chunks_track() {
                self.publish(at, group, payload)?;
            }
        }
        self.server.end(self.listen).map_err(ForwardError::Serve)
    }

    fn chunks_track(&self) -> Option<usize> {
        self.tracks.iter().position(|t| {
            BroadcastTrack::from_full_name(t).is_some_and(|b| b.kind() == TrackKind::Chunks)
        })
    }
}

fn net(e: NetError) -> ForwardError {
    ForwardError::Serve(ServeError::Net(e))
}
