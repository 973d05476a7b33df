//! Serving live tracks from an [`Endpoint`]: one bounded [`TrackCache`] per track, shared by
//! every session.
//!
//! A new group goes into its track's cache and to every session (each session sends it only on
//! the subscriptions that want it). A SUBSCRIBE gets the cached groups from its filter's start at
//! once (a late joiner gets the current group), a FETCH any cached range, a TRACK_STATUS the
//! largest location; requests for other tracks are refused. [`announce`] makes a relay session
//! ready to serve (PUBLISH_NAMESPACE). This module never decides what to publish or when: the
//! pipeline calls [`TrackServer::publish`] and [`TrackServer::end`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::stop::StopFlag;
use crate::moq::cache::TrackCache;
use crate::moq::error::request_error;
use crate::moq::session::{Event, Session};
use crate::moq::{FullTrackName, GroupId, MoqError, RequestId, TrackNamespace};
use crate::net::{ConnId, Endpoint, NetError, NetEvent};

/// How long [`announce`] waits for one network event before checking `stop`.
const ANNOUNCE_POLL: Duration = Duration::from_millis(100);

/// Why serving failed: the endpoint itself failed, or the relay we publish into refused us or
/// left (a subscriber session's own failure is only logged).
#[derive(Debug)]
pub enum ServeError {
    /// The endpoint failed.
    Net(NetError),
    /// A group id went backwards or out of range (a pipeline bug).
    Group(MoqError),
    /// The relay refused a PUBLISH_NAMESPACE.
    Refused(String),
    /// The relay connection ended.
    RelayLeft(NetError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Net(e) => e.fmt(f),
            ServeError::Group(e) => write!(f, "cannot publish group: {e}"),
            ServeError::Refused(why) => write!(f, "the relay refused PUBLISH_NAMESPACE: {why}"),
            ServeError::RelayLeft(e) => write!(f, "the relay connection ended: {e}"),
        }
    }
}

/// Announces `namespaces` on the relay session `conn` (one PUBLISH_NAMESPACE each, once SETUP
/// completed) and waits until the relay accepted them all, or `stop`. Returns the events that
/// arrived meanwhile and are not about the announcement, for the serving loop to handle.
pub fn announce(
    ep: &mut Endpoint,
    conn: ConnId,
    namespaces: &[TrackNamespace],
    stop: &StopFlag,
) -> Result<Vec<NetEvent>, ServeError> {
    let mut waiting: Vec<RequestId> = Vec::new();
    let mut sent = false;
    let mut deferred = Vec::new();
    while !(stop.is_set() || sent && waiting.is_empty()) {
        let Some(ev) = ep.next_event(ANNOUNCE_POLL).map_err(ServeError::Net)? else {
            continue;
        };
        match ev {
            NetEvent::Disconnected { conn: c, why } if c == conn => {
                return Err(ServeError::RelayLeft(why))
            }
            NetEvent::Session {
                event: Event::SetupComplete { .. },
                conn: c,
            } if c == conn => {
                for ns in namespaces {
                    let ns = ns.clone();
                    let request = ep
                        .call(conn, move |s| s.publish_namespace(ns))
                        .map_err(ServeError::Net)?
                        .map_err(|e| ServeError::Refused(e.to_string()))?;
                    waiting.push(request);
                }
                sent = true;
            }
            NetEvent::Session {
                event: Event::NamespaceAccepted { request },
                ..
            } if waiting.contains(&request) => waiting.retain(|r| *r != request),
            NetEvent::Session {
                event:
                    Event::RequestFailed {
                        request,
                        code,
                        reason,
                    },
                ..
            } if waiting.contains(&request) => {
                return Err(ServeError::Refused(format!("code {code:#x} {reason}")))
            }
            other => deferred.push(other),
        }
    }
    Ok(deferred)
}

/// The tracks an endpoint serves and the sessions it serves them to.
pub struct TrackServer {
    tracks: HashMap<FullTrackName, Arc<TrackCache>>,
    conns: BTreeSet<ConnId>,
    dropped: u64,
}

impl TrackServer {
    /// Serves `tracks`, each cached up to `cache_bytes` of payload (the newest group is always kept).
    pub fn new(tracks: &[FullTrackName], cache_bytes: usize) -> TrackServer {
        TrackServer {
            tracks: tracks
                .iter()
                .map(|t| (t.clone(), Arc::new(TrackCache::new(cache_bytes))))
                .collect(),
            conns: BTreeSet::new(),
            dropped: 0,
        }
    }

    /// A session started on `conn`.
    pub fn connected(&mut self, conn: ConnId) {
        self.conns.insert(conn);
    }

    /// The session on `conn` ended.
    pub fn disconnected(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Groups dropped so far for slow subscribers (reported by their sessions).
    pub fn dropped_groups(&self) -> u64 {
        self.dropped
    }

    /// Groups evicted from the caches so far.
    pub fn evicted_groups(&self) -> u64 {
        self.tracks.values().map(|c| c.evicted()).sum()
    }

    /// Answers a session event that concerns serving; other events are ignored.
    pub fn on_event(
        &mut self,
        ep: &mut Endpoint,
        conn: ConnId,
        event: Event,
    ) -> Result<(), ServeError> {
        match event {
            Event::SubscribeRequested { request, track, .. } => match self.tracks.get(&track) {
                Some(cache) => {
                    let cache = cache.clone();
                    call(ep, conn, move |s| s.accept_subscribe(request, &cache))
                }
                None => reject(ep, conn, request),
            },
            Event::FetchRequested { request, track, .. } => match self.tracks.get(&track) {
                Some(cache) => {
                    let cache = cache.clone();
                    call(ep, conn, move |s| s.accept_fetch(request, &cache))
                }
                None => reject(ep, conn, request),
            },
            Event::TrackStatusRequested { request, track } => match self.tracks.get(&track) {
                Some(cache) => {
                    let cache = cache.clone();
                    call(ep, conn, move |s| s.accept_track_status(request, &cache))
                }
                None => reject(ep, conn, request),
            },
            Event::GroupsDropped { request, groups } => {
                self.dropped += groups;
                log::warn!(
                    "session {conn:?} request {request}: {groups} groups dropped (slow subscriber)"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Caches `group` of `track` and sends it to every session.
    pub fn publish(
        &mut self,
        ep: &mut Endpoint,
        track: &FullTrackName,
        group: GroupId,
        payload: Arc<[u8]>,
    ) -> Result<(), ServeError> {
        let Some(cache) = self.tracks.get_mut(track) else {
            return Ok(());
        };
        Arc::make_mut(cache)
            .push(group, payload.clone())
            .map_err(ServeError::Group)?;
        let track = track.clone();
        self.call_each(ep, move |s| s.send_group(&track, group, payload.clone()))
    }

    /// Ends every subscription of every track (PUBLISH_DONE); the caches still serve FETCH.
    pub fn end(&mut self, ep: &mut Endpoint) -> Result<(), ServeError> {
        let tracks: Vec<FullTrackName> = self.tracks.keys().cloned().collect();
        self.call_each(ep, move |s| {
            tracks.iter().try_for_each(|track| s.end_track(track))
        })
    }

    /// Runs a session command on every session at once (one round trip to the endpoint thread);
    /// a session's own failure is only logged.
    fn call_each<F>(&self, ep: &mut Endpoint, mut f: F) -> Result<(), ServeError>
    where
        F: FnMut(&mut Session) -> Result<(), MoqError> + Send + 'static,
    {
        let conns: Vec<ConnId> = self.conns.iter().copied().collect();
        let results = ep
            .call_each(&conns, move |_, s| f(s))
            .map_err(ServeError::Net)?;
        for (conn, result) in results {
            if let Err(e) = result {
                log::info!("session {conn:?}: {e}");
            }
        }
        Ok(())
    }
}

/// Refuses a request for a track that is not served.
pub fn reject(ep: &mut Endpoint, conn: ConnId, request: RequestId) -> Result<(), ServeError> {
    call(ep, conn, move |s| {
        s.reject_request(request, request_error::DOES_NOT_EXIST, "no such track")
    })
}

/// Runs a session command; a connection that just ended or a closed session is not an error for
/// a server, only logged.
pub fn call<F>(ep: &mut Endpoint, conn: ConnId, f: F) -> Result<(), ServeError>
where
    F: FnOnce(&mut Session) -> Result<(), MoqError> + Send + 'static,
{
    match ep.call(conn, f) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            log::info!("session {conn:?}: {e}");
            Ok(())
        }
        Err(NetError::NoConnection(_)) => Ok(()),
        Err(e) => Err(ServeError::Net(e)),
    }
}
