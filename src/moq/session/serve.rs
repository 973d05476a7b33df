//! The publisher side of a session: requests the peer made of us (SUBSCRIBE, FETCH,
//! TRACK_STATUS, REQUEST_UPDATE), the subscriptions and fetches we serve, the streams they get,
//! the slow-subscriber policy and PUBLISH_DONE.
//!
//! This module serves tracks laid out as ec-node publishes them: every group holds exactly
//! object 0, sent on its own subgroup stream (type 0x18: subgroup 0, end of group, priority byte)
//! ended with FIN; no status objects. It never reads a cache on its own: the application passes
//! the track's `TrackCache` when it answers a request.
//!
//! # What a subscription delivers
//!
//! A SUBSCRIBE asks for newly published objects; objects from the past are FETCH's (draft-16,
//! SUBSCRIBE). So on every subscription the groups only go up:
//!
//! * When it is accepted, at most one group comes from the cache: the newest (the largest
//!   location's group), if the filter's start is at or before it. Earlier cached groups are
//!   never queued on a subscription, whatever its filter; a subscriber that wants them sends a
//!   FETCH (or a joining FETCH).
//! * After that, a group is queued only if it is newer than every group already queued on the
//!   subscription; an older or repeated group handed to [`Session::send_group`] is skipped (it
//!   opens no stream and is not counted in PUBLISH_DONE's `stream_count`).
//! * Queued groups are scheduled in the subscription's group order, which is ascending (the
//!   draft's default publisher preference, which SUBSCRIBE_OK leaves implicit) unless the
//!   subscriber asked for GROUP_ORDER descending: only then may a newer group that is waiting
//!   overtake an older one that has not started.

use std::collections::HashMap;
use std::sync::Arc;

use crate::moq::cache::TrackCache;
use crate::moq::error::{publish_done, request_error, reset};
use crate::moq::session::send::{Chunk, OrderKey, Owner, SendStream, WriteNote};
use crate::moq::session::{Event, Output, Priority, Session};
use crate::moq::types::{
    FullTrackName, GroupId, GroupOrder, Location, ObjectId, ObjectStatus, RequestId, SubgroupId,
    SubscriptionFilter, TrackAlias, MAX_VARINT,
};
use crate::moq::wire::control::{FetchKind, Subscribe, SubscribeOk};
use crate::moq::wire::data::{
    encode_fetch_header, encode_fetch_object_head, encode_subgroup_header,
    encode_subgroup_object_head,
};
use crate::moq::wire::{ControlMessage, MessageParams, SubgroupHeader, SubgroupIdMode};
use crate::moq::MoqError;

/// A peer request waiting for the application's answer.
enum Requested {
    Subscribe {
        track: FullTrackName,
        filter: SubscriptionFilter,
        forward: bool,
        priority: u8,
        order: Option<GroupOrder>,
    },
    Fetch {
        first: GroupId,
        last: GroupId,
        priority: u8,
        order: Option<GroupOrder>,
    },
    TrackStatus,
}

/// A subscription we serve.
struct ServedSub {
    track: FullTrackName,
    alias: TrackAlias,
    start: Location,
    end: Option<GroupId>,
    forward: bool,
    priority: u8,
    /// The subscriber asked for GROUP_ORDER descending (otherwise ascending, our default).
    descending: bool,
    /// The newest group queued on this subscription: only newer ones are queued after it.
    newest: Option<GroupId>,
    /// The largest location when SUBSCRIBE_OK went out: the end of joining fetches.
    largest_at_ok: Option<Location>,
    streams_opened: u64,
    /// Set when the subscription must end: PUBLISH_DONE status and reason, sent once its
    /// streams are all written.
    ending: Option<(u64, &'static str)>,
}

impl ServedSub {
    /// `group` passes the filter.
    fn wants(&self, group: GroupId) -> bool {
        Location {
            group,
            object: ObjectId(0),
        } >= self.start
            && self.end.is_none_or(|e| group <= e)
    }

    /// `group` passes the filter and is newer than every group already queued.
    fn takes(&self, group: GroupId) -> bool {
        self.wants(group) && self.newest.is_none_or(|n| group > n)
    }
}

/// A joining FETCH that arrived while its SUBSCRIBE still awaits the application's answer.
struct DeferredJoin {
    fetch: RequestId,
    subscription: RequestId,
    kind: FetchKind,
    params: MessageParams,
}

/// Publisher-side state of a session.
#[derive(Default)]
pub(super) struct Served {
    requested: HashMap<RequestId, Requested>,
    subs: HashMap<RequestId, ServedSub>,
    fetches: HashMap<RequestId, ()>,
    deferred: Vec<DeferredJoin>,
    next_alias: u64,
}

/// Urgency for a data stream: below the control stream, ordered by subscriber priority.
fn urgency(subscriber_priority: u8) -> u8 {
    1 + subscriber_priority / 2
}

impl Session {
    pub(super) fn on_peer_subscribe(&mut self, s: Subscribe) {
        // An absent filter means unfiltered: from the start of the track.
        let filter = s
            .params
            .filter
            .unwrap_or(SubscriptionFilter::AbsoluteStart(Location::default()));
        self.served.requested.insert(
            s.request,
            Requested::Subscribe {
                track: s.track.clone(),
                filter,
                forward: s.params.forward.unwrap_or(true),
                priority: s.params.subscriber_priority.unwrap_or(128),
                order: s.params.group_order,
            },
        );
        self.event(Event::SubscribeRequested {
            request: s.request,
            track: s.track,
            filter,
        });
    }

    pub(super) fn on_peer_track_status(&mut self, s: Subscribe) {
        self.served
            .requested
            .insert(s.request, Requested::TrackStatus);
        self.event(Event::TrackStatusRequested {
            request: s.request,
            track: s.track,
        });
    }

    pub(super) fn on_peer_fetch(
        &mut self,
        request: RequestId,
        kind: FetchKind,
        params: MessageParams,
    ) {
        let priority = params.subscriber_priority.unwrap_or(128);
        match kind {
            FetchKind::Standalone { track, start, end } => {
                // Groups hold only object 0, so a start inside a group begins at the next one;
                // the end group is included whatever its object bound.
                let first = if start.object.0 > 0 {
                    start.group.0.saturating_add(1)
                } else {
                    start.group.0
                };
                self.request_fetch(
                    request,
                    track,
                    GroupId(first),
                    end.group,
                    priority,
                    params.group_order,
                );
            }
            FetchKind::RelativeJoining { joining, .. }
            | FetchKind::AbsoluteJoining { joining, .. } => {
                if self.served.subs.contains_key(&joining) {
                    self.resolve_join(request, joining, &kind, &params);
                } else if matches!(
                    self.served.requested.get(&joining),
                    Some(Requested::Subscribe { .. })
                ) {
                    self.served.deferred.push(DeferredJoin {
                        fetch: request,
                        subscription: joining,
                        kind,
                        params,
                    });
                } else {
                    self.refuse(
                        request,
                        request_error::INVALID_JOINING_REQUEST_ID,
                        "no such subscription",
                    );
                }
            }
        }
    }

    fn resolve_join(
        &mut self,
        request: RequestId,
        joining: RequestId,
        kind: &FetchKind,
        params: &MessageParams,
    ) {
        let Some(sub) = self.served.subs.get(&joining) else {
            return self.refuse(
                request,
                request_error::INVALID_JOINING_REQUEST_ID,
                "no such subscription",
            );
        };
        let Some(largest) = sub.largest_at_ok else {
            return self.refuse(
                request,
                request_error::INVALID_RANGE,
                "track has no objects yet",
            );
        };
        let first = match kind {
            FetchKind::RelativeJoining { offset, .. } => largest.group.0.saturating_sub(*offset),
            FetchKind::AbsoluteJoining { start, .. } => *start,
            FetchKind::Standalone { .. } => largest.group.0,
        };
        let track = sub.track.clone();
        let priority = params.subscriber_priority.unwrap_or(sub.priority);
        self.request_fetch(
            request,
            track,
            GroupId(first),
            largest.group,
            priority,
            params.group_order,
        );
    }

    fn request_fetch(
        &mut self,
        request: RequestId,
        track: FullTrackName,
        first: GroupId,
        last: GroupId,
        priority: u8,
        order: Option<GroupOrder>,
    ) {
        if first > last {
            return self.refuse(request, request_error::INVALID_RANGE, "empty range");
        }
        self.served.requested.insert(
            request,
            Requested::Fetch {
                first,
                last,
                priority,
                order,
            },
        );
        self.event(Event::FetchRequested {
            request,
            track,
            first,
            last,
        });
    }

    /// REQUEST_ERROR for a peer request that is then complete.
    fn refuse(&mut self, request: RequestId, code: u64, reason: &str) {
        self.send_control(ControlMessage::RequestError {
            request,
            code,
            retry_interval: 0,
            reason: reason.into(),
        });
        self.peer_request_done();
    }

    pub(super) fn on_peer_update(
        &mut self,
        request: RequestId,
        existing: RequestId,
        params: MessageParams,
    ) {
        match self.served.subs.get_mut(&existing) {
            Some(sub) => {
                if let Some(f) = params.forward {
                    sub.forward = f;
                }
                if let Some(p) = params.subscriber_priority {
                    sub.priority = p;
                }
                self.send_control(ControlMessage::RequestOk {
                    request,
                    params: MessageParams::default(),
                });
                self.peer_request_done();
            }
            None => self.refuse(
                request,
                request_error::DOES_NOT_EXIST,
                "no such subscription",
            ),
        }
    }

    pub(super) fn on_peer_unsubscribe(&mut self, request: RequestId) {
        let known = match self.served.requested.remove(&request) {
            Some(Requested::Subscribe { .. }) => {
                self.refuse_deferred(request);
                true
            }
            Some(other) => {
                self.served.requested.insert(request, other);
                false
            }
            None => self.served.subs.remove(&request).is_some(),
        };
        if known {
            self.drop_streams(Owner::Subscription(request), reset::CANCELLED);
            self.peer_request_done();
            self.event(Event::RequestCancelled { request });
        }
    }

    pub(super) fn on_peer_fetch_cancel(&mut self, request: RequestId) {
        let known = match self.served.requested.remove(&request) {
            Some(Requested::Fetch { .. }) => true,
            Some(other) => {
                self.served.requested.insert(request, other);
                false
            }
            None => self.served.fetches.remove(&request).is_some(),
        };
        if known {
            self.drop_streams(Owner::Fetch(request), reset::CANCELLED);
            self.peer_request_done();
            self.event(Event::RequestCancelled { request });
        }
    }

    /// Removes every queued stream of `owner`, resetting those already started.
    fn drop_streams(&mut self, owner: Owner, code: u64) {
        for seq in self.sends.streams_of(owner) {
            if let Some(stream) = self.sends.drop_stream(seq) {
                self.outputs.push_back(Output::ResetStream { stream, code });
            }
        }
    }

    fn refuse_deferred(&mut self, subscription: RequestId) {
        let (refused, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.served.deferred)
            .into_iter()
            .partition(|d| d.subscription == subscription);
        self.served.deferred = kept;
        for d in refused {
            self.refuse(
                d.fetch,
                request_error::INVALID_JOINING_REQUEST_ID,
                "subscription refused",
            );
        }
    }

    pub(super) fn serve_subscribe(
        &mut self,
        request: RequestId,
        cache: &TrackCache,
    ) -> Result<(), MoqError> {
        let Some(Requested::Subscribe {
            track,
            filter,
            forward,
            priority,
            order,
        }) = self.take_requested(request, |r| matches!(r, Requested::Subscribe { .. }))
        else {
            return Err(MoqError::Misuse(
                "no SUBSCRIBE awaiting an answer with that id",
            ));
        };
        let largest = cache.largest();
        let after = |l: Location| Location {
            group: l.group,
            object: ObjectId(l.object.0.saturating_add(1).min(MAX_VARINT)),
        };
        let (start, end) = match filter {
            SubscriptionFilter::NextGroupStart => (
                largest.map_or(Location::default(), |l| {
                    Location::new(l.group.0.saturating_add(1).min(MAX_VARINT), 0)
                }),
                None,
            ),
            SubscriptionFilter::LargestObject => (largest.map_or(Location::default(), after), None),
            SubscriptionFilter::AbsoluteStart(l) => (l, None),
            SubscriptionFilter::AbsoluteRange(l, e) => {
                if e < l.group {
                    self.refuse(
                        request,
                        request_error::INVALID_RANGE,
                        "end group before start",
                    );
                    self.refuse_deferred(request);
                    return Ok(());
                }
                (l, Some(e))
            }
        };
        let alias = TrackAlias(self.served.next_alias);
        self.served.next_alias += 1;
        let params = MessageParams {
            largest_object: largest,
            ..Default::default()
        };
        self.send_control(ControlMessage::SubscribeOk(SubscribeOk {
            request,
            alias,
            params,
            extensions: Vec::new(),
        }));
        let sub = ServedSub {
            track,
            alias,
            start,
            end,
            forward,
            priority,
            descending: order == Some(GroupOrder::Descending),
            newest: None,
            largest_at_ok: largest,
            streams_opened: 0,
            ending: None,
        };
        // Only the newest cached group, if the filter wants it: earlier ones are FETCH's, and
        // sending them would take the subscription's groups backwards.
        let current = largest
            .map(|l| l.group)
            .filter(|g| forward && sub.wants(*g))
            .and_then(|g| cache.get(g).map(|p| (g, p.clone())));
        self.served.subs.insert(request, sub);
        if let Some((g, p)) = current {
            self.queue_group(request, g, p);
        }
        if end.is_some_and(|e| largest.is_some_and(|l| l.group >= e)) {
            self.end_subscription(request, publish_done::SUBSCRIPTION_ENDED, "end of range");
        }
        let (joins, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.served.deferred)
            .into_iter()
            .partition(|d| d.subscription == request);
        self.served.deferred = kept;
        for d in joins {
            self.resolve_join(d.fetch, request, &d.kind, &d.params);
        }
        Ok(())
    }

    fn take_requested(
        &mut self,
        request: RequestId,
        is: impl Fn(&Requested) -> bool,
    ) -> Option<Requested> {
        if self.served.requested.get(&request).is_some_and(is) {
            return self.served.requested.remove(&request);
        }
        None
    }

    pub(super) fn serve_fetch(
        &mut self,
        request: RequestId,
        cache: &TrackCache,
    ) -> Result<(), MoqError> {
        let Some(Requested::Fetch {
            first,
            last,
            priority,
            order,
            ..
        }) = self.take_requested(request, |r| matches!(r, Requested::Fetch { .. }))
        else {
            return Err(MoqError::Misuse("no FETCH awaiting an answer with that id"));
        };
        let mut groups: Vec<(GroupId, Arc<[u8]>)> = cache
            .range(first, last)
            .map(|(g, p)| (g, p.clone()))
            .collect();
        // The end as FETCH's own End Location reads, exclusive (object 0 would mean the whole
        // group): just past the one object of the last group sent. A relay checks it against
        // the End Location it asked for.
        let Some(end) = groups.last().map(|(g, _)| Location {
            group: *g,
            object: ObjectId(1),
        }) else {
            self.refuse(
                request,
                request_error::INVALID_RANGE,
                "nothing cached in range",
            );
            return Ok(());
        };
        if order == Some(GroupOrder::Descending) {
            groups.reverse();
        }
        self.send_control(ControlMessage::FetchOk {
            request,
            end_of_track: false,
            end,
            params: MessageParams::default(),
            extensions: Vec::new(),
        });
        let pp = self.config.publisher_priority;
        let mut head = Vec::new();
        encode_fetch_header(self.version, request, &mut head);
        let mut chunks = Vec::with_capacity(2 * groups.len() + 1);
        for (g, payload) in groups {
            encode_fetch_object_head(
                self.version,
                g,
                SubgroupId(0),
                ObjectId(0),
                pp,
                payload.len(),
                &mut head,
            );
            chunks.push(Chunk::Owned(std::mem::take(&mut head)));
            chunks.push(Chunk::Shared(payload));
        }
        let key = OrderKey {
            subscriber_priority: priority,
            publisher_priority: pp,
            group_rank: 0,
        };
        let prio = Priority {
            urgency: urgency(priority),
            incremental: false,
        };
        self.sends.push(SendStream::new(
            None,
            Owner::Fetch(request),
            first,
            key,
            prio,
            chunks,
        ));
        self.served.fetches.insert(request, ());
        Ok(())
    }

    pub(super) fn serve_track_status(
        &mut self,
        request: RequestId,
        cache: &TrackCache,
    ) -> Result<(), MoqError> {
        if self
            .take_requested(request, |r| matches!(r, Requested::TrackStatus))
            .is_none()
        {
            return Err(MoqError::Misuse(
                "no TRACK_STATUS awaiting an answer with that id",
            ));
        }
        let params = MessageParams {
            largest_object: cache.largest(),
            ..Default::default()
        };
        self.send_control(ControlMessage::RequestOk { request, params });
        self.peer_request_done();
        Ok(())
    }

    pub(super) fn serve_reject(
        &mut self,
        request: RequestId,
        code: u64,
        reason: &str,
    ) -> Result<(), MoqError> {
        let Some(r) = self.served.requested.remove(&request) else {
            return Err(MoqError::Misuse(
                "no request awaiting an answer with that id",
            ));
        };
        self.refuse(request, code, reason);
        if let Requested::Subscribe { .. } = r {
            self.refuse_deferred(request);
        }
        Ok(())
    }

    pub(super) fn serve_group(
        &mut self,
        track: &FullTrackName,
        group: GroupId,
        payload: Arc<[u8]>,
    ) {
        let mut ids: Vec<RequestId> = self
            .served
            .subs
            .iter()
            .filter(|(_, s)| &s.track == track && s.ending.is_none() && s.takes(group))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            let Some(sub) = self.served.subs.get(&id) else {
                continue;
            };
            let (forward, end) = (sub.forward, sub.end);
            if forward {
                self.queue_group(id, group, payload.clone());
            }
            if end == Some(group) {
                self.end_subscription(id, publish_done::SUBSCRIPTION_ENDED, "end of range");
            }
        }
    }

    pub(super) fn serve_end_track(&mut self, track: &FullTrackName) {
        let mut ids: Vec<RequestId> = self
            .served
            .subs
            .iter()
            .filter(|(_, s)| &s.track == track && s.ending.is_none())
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            self.end_subscription(id, publish_done::TRACK_ENDED, "track ended");
        }
    }

    fn end_subscription(&mut self, request: RequestId, status: u64, reason: &'static str) {
        if let Some(sub) = self.served.subs.get_mut(&request) {
            sub.ending.get_or_insert((status, reason));
        }
        self.maybe_publish_done(request);
    }

    /// Sends PUBLISH_DONE once an ending subscription has no stream left to write, with the
    /// number of streams it opened.
    fn maybe_publish_done(&mut self, request: RequestId) {
        let Some(sub) = self.served.subs.get(&request) else {
            return;
        };
        let Some((status, reason)) = sub.ending else {
            return;
        };
        if !self
            .sends
            .streams_of(Owner::Subscription(request))
            .is_empty()
        {
            return;
        }
        let stream_count = sub.streams_opened;
        self.served.subs.remove(&request);
        self.send_control(ControlMessage::PublishDone {
            request,
            status,
            stream_count,
            reason: reason.into(),
        });
        self.peer_request_done();
    }

    /// Queues one group on its own subgroup stream, dropping the subscription's oldest queued
    /// groups first if the backlog would exceed `max_subscriber_backlog`. The caller checked
    /// that the group is newer than any queued on the subscription before.
    fn queue_group(&mut self, request: RequestId, group: GroupId, payload: Arc<[u8]>) {
        let Some(sub) = self.served.subs.get_mut(&request) else {
            return;
        };
        sub.newest = Some(group);
        let sub = &*sub;
        let pp = self.config.publisher_priority;
        let header = SubgroupHeader {
            alias: sub.alias,
            group,
            subgroup: SubgroupIdMode::Zero,
            priority: Some(pp),
            has_extensions: false,
            end_of_group: true,
        };
        let mut head = Vec::new();
        encode_subgroup_header(self.version, &header, &mut head);
        encode_subgroup_object_head(
            self.version,
            0, // object 0, the first and only object of the stream
            None,
            ObjectStatus::Normal,
            payload.len(),
            &mut head,
        );
        let key = OrderKey {
            subscriber_priority: sub.priority,
            publisher_priority: pp,
            group_rank: if sub.descending {
                MAX_VARINT - group.0
            } else {
                group.0
            },
        };
        let prio = Priority {
            urgency: urgency(sub.priority),
            incremental: true,
        };
        let owner = Owner::Subscription(request);
        let size = head.len() + payload.len();
        let mut dropped = 0;
        while self.sends.backlog(owner) + size > self.config.max_subscriber_backlog {
            let Some(oldest) = self.sends.streams_of(owner).first().copied() else {
                break;
            };
            if let Some(stream) = self.sends.drop_stream(oldest) {
                self.outputs.push_back(Output::ResetStream {
                    stream,
                    code: reset::DELIVERY_TIMEOUT,
                });
            }
            dropped += 1;
        }
        if dropped > 0 {
            self.event(Event::GroupsDropped {
                request,
                groups: dropped,
            });
        }
        let mut chunks = vec![Chunk::Owned(head)];
        if !payload.is_empty() {
            chunks.push(Chunk::Shared(payload));
        }
        self.sends
            .push(SendStream::new(None, owner, group, key, prio, chunks));
    }

    /// Bookkeeping after `poll_write` handed bytes out.
    pub(super) fn on_write_note(&mut self, note: WriteNote) {
        if let (true, Owner::Subscription(r)) = (note.opened, note.owner) {
            if let Some(sub) = self.served.subs.get_mut(&r) {
                sub.streams_opened += 1;
            }
        }
        if note.finished {
            self.on_send_stream_gone(note.owner);
        }
    }

    /// A stream of `owner` is fully written or was stopped by the peer.
    pub(super) fn on_send_stream_gone(&mut self, owner: Owner) {
        match owner {
            Owner::Subscription(r) => self.maybe_publish_done(r),
            Owner::Fetch(r) => {
                if self.served.fetches.remove(&r).is_some() {
                    self.peer_request_done();
                }
            }
            Owner::Reply => {}
        }
    }
}
