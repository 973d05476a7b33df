//! [`TrackServer`]: a set of tracks served from their group caches to any number of sessions,
//! as the [`Handler`] of an endpoint, on its thread.
//!
//! Each track keeps a bounded [`TrackCache`]. A new group, handed over by value as
//! [`Work::Group`], goes into its track's cache and to every session (each session sends it only
//! on the subscriptions that want it). A SUBSCRIBE is answered from the cache at once (the
//! session decides which cached group its filter gets), a FETCH from any cached range, a
//! TRACK_STATUS with the largest location; requests for other tracks are refused. On a dialed
//! relay session the server announces the tracks' namespaces (PUBLISH_NAMESPACE) as soon as
//! SETUP completes and passes the relay's answers on. A track may instead hold groups known in
//! advance, played per session from its first SUBSCRIBE ([`Playouts`]).
//!
//! This module never decides what to publish or when: the pipeline hands it groups and the end
//! of the input. It never blocks: it runs between packets. Figures a pipeline reports (groups
//! dropped for slow subscribers, groups evicted) are shared through [`ServeStats`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::logged;
use super::playout::Playouts;
use crate::moq::cache::TrackCache;
use crate::moq::error::request_error;
use crate::moq::session::{Event, Session};
use crate::moq::{FullTrackName, GroupId, RequestId, SubscriptionFilter, TrackNamespace};
use crate::net::{ConnId, Handler, Sessions};

/// What a pipeline hands the server.
pub enum Work {
    /// The next group of the track at this position in the server's list.
    Group {
        /// The track's position in the list the server was made with.
        track: usize,
        /// The group id (increasing per track).
        group: GroupId,
        /// The group's one object.
        payload: Arc<[u8]>,
    },
    /// The input ended: every subscription gets PUBLISH_DONE; the caches still serve FETCH.
    End,
}

/// Figures of a server, readable from any thread while it runs.
#[derive(Debug, Default)]
pub struct ServeStats {
    dropped: AtomicU64,
    evicted: AtomicU64,
}

impl ServeStats {
    /// Groups dropped so far for slow subscribers (reported by their sessions).
    pub fn dropped_groups(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Groups evicted from the caches so far.
    pub fn evicted_groups(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

/// One served track: its cache, and how subscriptions get its groups.
struct Served {
    name: FullTrackName,
    cache: TrackCache,
    /// `None`: live (every group to every subscription, as it comes); `Some`: per-session
    /// playouts of the cached groups.
    playouts: Option<Playouts>,
}

/// The tracks an endpoint serves and the sessions it serves them to.
pub struct TrackServer {
    tracks: Vec<Served>,
    /// Namespaces to announce on a dialed relay session once SETUP completes.
    announce: Vec<TrackNamespace>,
    /// Our PUBLISH_NAMESPACE requests, whose answers are passed on.
    announcing: HashSet<RequestId>,
    stats: Arc<ServeStats>,
}

impl TrackServer {
    /// Serves `tracks` live, each cached up to `cache_bytes` of payload (the newest group is
    /// always kept).
    pub fn live(tracks: &[FullTrackName], cache_bytes: usize) -> TrackServer {
        TrackServer {
            tracks: tracks
                .iter()
                .map(|name| Served {
                    name: name.clone(),
                    cache: TrackCache::new(cache_bytes),
                    playouts: None,
                })
                .collect(),
            announce: Vec::new(),
            announcing: HashSet::new(),
            stats: Arc::default(),
        }
    }

    /// Serves one track whose groups 0..N-1 are `groups`: FETCH serves any of them at once, and
    /// a session's first SUBSCRIBE starts a playout at its filter's start, one group per
    /// `interval` (see [`Playouts`]).
    pub fn playout(
        track: FullTrackName,
        groups: Vec<Arc<[u8]>>,
        interval: Duration,
    ) -> TrackServer {
        let mut cache = TrackCache::new(usize::MAX);
        for (i, payload) in groups.into_iter().enumerate() {
            // Ids 0, 1, 2… increase and stay far below 2^62.
            let _ = cache.push(GroupId(i as u64), payload);
        }
        TrackServer {
            tracks: vec![Served {
                name: track,
                cache,
                playouts: Some(Playouts::new(interval)),
            }],
            announce: Vec::new(),
            announcing: HashSet::new(),
            stats: Arc::default(),
        }
    }

    /// The same server, announcing its tracks' namespaces on a dialed relay session.
    pub fn announcing(mut self) -> TrackServer {
        let mut namespaces: Vec<TrackNamespace> = Vec::new();
        for t in &self.tracks {
            if !namespaces.contains(&t.name.namespace) {
                namespaces.push(t.name.namespace.clone());
            }
        }
        self.announce = namespaces;
        self
    }

    /// The namespaces announced on a relay session.
    pub fn namespaces(&self) -> &[TrackNamespace] {
        &self.announce
    }

    /// The figures, shared with whoever reports them.
    pub fn stats(&self) -> Arc<ServeStats> {
        self.stats.clone()
    }

    fn track_of(&self, name: &FullTrackName) -> Option<usize> {
        self.tracks.iter().position(|t| &t.name == name)
    }

    fn on_setup(&mut self, conn: ConnId, sessions: &mut Sessions<'_>) {
        let Some(session) = sessions.get(conn) else {
            return;
        };
        for ns in &self.announce {
            match session.publish_namespace(ns.clone()) {
                Ok(request) => {
                    self.announcing.insert(request);
                }
                Err(e) => log::info!("session {conn:?}: cannot announce: {e}"),
            }
        }
    }

    fn on_subscribe(
        &mut self,
        conn: ConnId,
        request: RequestId,
        at: usize,
        filter: SubscriptionFilter,
        session: &mut Session,
    ) {
        let track = &mut self.tracks[at];
        let result = match &mut track.playouts {
            None => session.accept_subscribe(request, &track.cache),
            Some(playouts) => {
                let played = playouts.join(conn, filter, Instant::now());
                session.accept_subscribe(request, played)
            }
        };
        logged(conn, result);
    }

    fn publish(
        &mut self,
        at: usize,
        group: GroupId,
        payload: Arc<[u8]>,
        sessions: &mut Sessions<'_>,
    ) {
        let Some(track) = self.tracks.get_mut(at) else {
            return;
        };
        let evicted = track.cache.evicted();
        if let Err(e) = track.cache.push(group, payload.clone()) {
            // Groups come from our own pipeline in order; a group going backwards is a bug there.
            log::error!("track {at}: group {group} not served: {e}");
            return;
        }
        self.stats
            .evicted
            .fetch_add(track.cache.evicted() - evicted, Ordering::Relaxed);
        for (conn, session) in sessions.iter_mut() {
            logged(
                conn,
                session.send_group(&track.name, group, payload.clone()),
            );
        }
    }

    fn end(&mut self, sessions: &mut Sessions<'_>) {
        for (conn, session) in sessions.iter_mut() {
            for track in &self.tracks {
                logged(conn, session.end_track(&track.name));
            }
        }
    }
}

impl Handler for TrackServer {
    type Work = Work;

    fn on_event(
        &mut self,
        conn: ConnId,
        event: Event,
        sessions: &mut Sessions<'_>,
    ) -> Option<Event> {
        match event {
            Event::SetupComplete { .. } => {
                self.on_setup(conn, sessions);
                Some(event)
            }
            Event::SubscribeRequested {
                request,
                ref track,
                filter,
            } => {
                let session = sessions.get(conn)?;
                match self.track_of(track) {
                    Some(at) => self.on_subscribe(conn, request, at, filter, session),
                    None => reject(conn, request, session),
                }
                None
            }
            Event::FetchRequested {
                request, ref track, ..
            } => {
                let session = sessions.get(conn)?;
                match self.track_of(track) {
                    Some(at) => logged(conn, session.accept_fetch(request, &self.tracks[at].cache)),
                    None => reject(conn, request, session),
                }
                None
            }
            Event::TrackStatusRequested { request, ref track } => {
                let session = sessions.get(conn)?;
                match self.track_of(track) {
                    Some(at) => logged(
                        conn,
                        session.accept_track_status(request, &self.tracks[at].cache),
                    ),
                    None => reject(conn, request, session),
                }
                None
            }
            Event::GroupsDropped { request, groups } => {
                self.stats.dropped.fetch_add(groups, Ordering::Relaxed);
                log::warn!(
                    "session {conn:?} request {request}: {groups} groups dropped (slow subscriber)"
                );
                None
            }
            Event::NamespaceAccepted { request } | Event::RequestFailed { request, .. }
                if self.announcing.remove(&request) =>
            {
                Some(event)
            }
            _ => Some(event),
        }
    }

    fn on_disconnected(&mut self, conn: ConnId) {
        // Only a dialed relay session announces, one at a time: its requests end with it.
        self.announcing.clear();
        for track in &mut self.tracks {
            if let Some(playouts) = &mut track.playouts {
                playouts.leave(conn);
            }
        }
    }

    fn on_work(&mut self, work: Work, sessions: &mut Sessions<'_>) {
        match work {
            Work::Group {
                track,
                group,
                payload,
            } => self.publish(track, group, payload, sessions),
            Work::End => self.end(sessions),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.tracks
            .iter()
            .filter_map(|t| t.playouts.as_ref()?.next_due())
            .min()
    }

    fn on_timeout(&mut self, now: Instant, sessions: &mut Sessions<'_>) {
        for track in &mut self.tracks {
            if let Some(playouts) = &mut track.playouts {
                playouts.play_due(now, &track.name, &track.cache, sessions);
            }
        }
    }
}

/// Refuses a request for a track that is not served.
fn reject(conn: ConnId, request: RequestId, session: &mut Session) {
    logged(
        conn,
        session.reject_request(request, request_error::DOES_NOT_EXIST, "no such track"),
    );
}
