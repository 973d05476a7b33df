//! [`Playouts`]: a track whose groups are all known in advance (the files of a folder), played
//! to each session from where its first SUBSCRIBE asks, one group per interval.
//!
//! A session's first SUBSCRIBE starts a playout at the filter's start (group 0 unless an
//! absolute filter says otherwise): that group at once, then one group per interval, and
//! PUBLISH_DONE one interval after the last group (some subscribers close the track at
//! PUBLISH_DONE even while its last streams are still arriving). A later SUBSCRIBE of that session
//! is answered from what its playout already played (the session gives it the newest played
//! group at most, then the rest as they play).
//!
//! Sessions share playouts: a first SUBSCRIBE that asks for the start of a playout begun less
//! than one interval earlier joins it (it gets the start group at once, as with a playout of its
//! own, and each later group at most one interval sooner). So a crowd subscribing together costs
//! one clock and one cache of played groups, not one per session. This module only schedules:
//! the sessions send.

use std::time::{Duration, Instant};

use super::logged;
use crate::moq::cache::TrackCache;
use crate::moq::{FullTrackName, GroupId, SubscriptionFilter};
use crate::net::{ConnId, Sessions};

/// One playout of the track and the sessions that follow it.
struct Playout {
    start: GroupId,
    begun: Instant,
    /// The groups played so far (a joining session's SUBSCRIBE is answered from them).
    played: TrackCache,
    next: GroupId,
    due: Instant,
    ended: bool,
    sessions: Vec<ConnId>,
}

/// The playouts of one track.
pub struct Playouts {
    interval: Duration,
    list: Vec<Playout>,
}

impl Playouts {
    /// No playout yet; each will play one group per `interval` (at least 1 ms).
    pub fn new(interval: Duration) -> Playouts {
        Playouts {
            interval: interval.max(Duration::from_millis(1)),
            list: Vec::new(),
        }
    }

    /// The playout `conn` follows, for a SUBSCRIBE with `filter`: the one it joined with its
    /// first SUBSCRIBE, else one begun less than an interval ago at the same start, else a new
    /// one. Returns the groups it played so far.
    pub fn join(&mut self, conn: ConnId, filter: SubscriptionFilter, now: Instant) -> &TrackCache {
        if let Some(i) = self.list.iter().position(|p| p.sessions.contains(&conn)) {
            return &self.list[i].played;
        }
        let start = match filter {
            SubscriptionFilter::AbsoluteStart(l) | SubscriptionFilter::AbsoluteRange(l, _) => {
                l.group
            }
            SubscriptionFilter::NextGroupStart | SubscriptionFilter::LargestObject => GroupId(0),
        };
        let interval = self.interval;
        let joinable = self
            .list
            .iter()
            .position(|p| p.start == start && now < p.begun + interval);
        let i = match joinable {
            Some(i) => {
                log::debug!("session {conn:?} joins the playout from group {start}");
                i
            }
            None => {
                log::debug!("session {conn:?} starts a playout from group {start}");
                self.list.push(Playout {
                    start,
                    begun: now,
                    played: TrackCache::new(usize::MAX),
                    next: start,
                    due: now,
                    ended: false,
                    sessions: Vec::new(),
                });
                self.list.len() - 1
            }
        };
        self.list[i].sessions.push(conn);
        &self.list[i].played
    }

    /// The session on `conn` ended; a playout nobody follows any more ends with it.
    pub fn leave(&mut self, conn: ConnId) {
        for p in &mut self.list {
            p.sessions.retain(|c| *c != conn);
        }
        self.list.retain(|p| !p.sessions.is_empty());
    }

    /// When the next group of some playout is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.list.iter().filter(|p| !p.ended).map(|p| p.due).min()
    }

    /// Sends the groups of `all` whose time has come to the sessions of every playout, and
    /// PUBLISH_DONE one interval after the last.
    pub fn play_due(
        &mut self,
        now: Instant,
        track: &FullTrackName,
        all: &TrackCache,
        sessions: &mut Sessions<'_>,
    ) {
        for p in &mut self.list {
            if p.ended || p.due > now {
                continue;
            }
            p.due += self.interval;
            let Some(payload) = all.get(p.next) else {
                p.ended = true;
                for &conn in &p.sessions {
                    if let Some(session) = sessions.get(conn) {
                        logged(conn, session.end_track(track));
                    }
                }
                continue;
            };
            // Groups of a playout increase from its start, far below 2^62.
            let _ = p.played.push(p.next, payload.clone());
            for &conn in &p.sessions {
                if let Some(session) = sessions.get(conn) {
                    logged(conn, session.send_group(track, p.next, payload.clone()));
                }
            }
            p.next = GroupId(p.next.0 + 1);
        }
    }
}
