//! The control plane of a session: SETUP, the control stream's messages in both directions, and
//! the one-message request streams the peer may open (SUBSCRIBE_NAMESPACE, answered
//! NOT_SUPPORTED).
//!
//! This module owns message dispatch and the checks that depend on session state (SETUP first,
//! request ids in sequence, responses only to our own open requests, one GOAWAY). It never parses
//! bytes itself (see `wire`) and never builds data streams (see `serve`).

use std::time::Instant;

use crate::moq::error::{request_error, MoqError, SessionCode};
use crate::moq::session::send::{Chunk, OrderKey, Owner, SendStream};
use crate::moq::session::{
    DoneReceived, Event, OurSubscription, Pending, Phase, Priority, QuicStreamId, Role, Session,
};
use crate::moq::types::{GroupId, RequestId, MAX_VARINT};
use crate::moq::wire::{
    decode_control, encode_control, ControlMessage, MessageParams, SetupParams,
};

impl Session {
    pub(super) fn on_control_bytes(
        &mut self,
        now: Instant,
        data: &[u8],
        fin: bool,
    ) -> Result<(), MoqError> {
        self.control_in.extend_from_slice(data);
        // A partial message is at most a varint, two length bytes and 65535 payload bytes, so this
        // buffer stays bounded: every complete message is consumed right away.
        while let Some((msg, used)) = decode_control(self.version, &self.control_in)? {
            self.control_in.drain(..used);
            self.on_control(now, msg)?;
            if self.is_closed() {
                return Ok(());
            }
        }
        if fin {
            return Err(MoqError::violation("control stream closed"));
        }
        Ok(())
    }

    fn on_control(&mut self, now: Instant, msg: ControlMessage) -> Result<(), MoqError> {
        match (&self.phase, self.role, msg) {
            (Phase::AwaitingSetup, Role::Server, ControlMessage::ClientSetup(p)) => {
                self.peer_limit = p.max_request_id.unwrap_or(0);
                let reply = SetupParams {
                    max_request_id: Some(self.granted_limit),
                    implementation: Some(self.config.implementation.clone()),
                    ..Default::default()
                };
                self.send_control(ControlMessage::ServerSetup(reply));
                self.established(p.implementation);
                Ok(())
            }
            (Phase::AwaitingSetup, Role::Client, ControlMessage::ServerSetup(p)) => {
                self.peer_limit = p.max_request_id.unwrap_or(0);
                self.established(p.implementation);
                Ok(())
            }
            (Phase::AwaitingSetup, _, _) => Err(MoqError::violation(
                "first control message is not the peer's SETUP",
            )),
            (_, _, ControlMessage::ClientSetup(_) | ControlMessage::ServerSetup(_)) => {
                Err(MoqError::violation("SETUP after setup"))
            }
            (_, _, msg) => self.on_established(now, msg),
        }
    }

    fn established(&mut self, implementation: Option<Vec<u8>>) {
        self.phase = Phase::Established;
        self.setup_deadline = None;
        self.event(Event::SetupComplete { implementation });
    }

    fn on_established(&mut self, now: Instant, msg: ControlMessage) -> Result<(), MoqError> {
        use ControlMessage as M;
        match msg {
            M::Goaway { uri } => {
                if self.goaway_received {
                    return Err(MoqError::violation("second GOAWAY"));
                }
                if self.role == Role::Server && !uri.is_empty() {
                    return Err(MoqError::violation("GOAWAY from a client with a URI"));
                }
                self.goaway_received = true;
                self.event(Event::GoAway { uri });
            }
            M::MaxRequestId(v) => {
                if v <= self.peer_limit {
                    return Err(MoqError::violation("MAX_REQUEST_ID did not increase"));
                }
                self.peer_limit = v;
            }
            // We raise the peer's limit as its requests complete; nothing more to do.
            M::RequestsBlocked(_) => {}
            M::Subscribe(s) => {
                self.take_peer_request(s.request)?;
                self.on_peer_subscribe(s);
            }
            M::TrackStatus(s) => {
                self.take_peer_request(s.request)?;
                self.on_peer_track_status(s);
            }
            M::Fetch {
                request,
                kind,
                params,
            } => {
                self.take_peer_request(request)?;
                self.on_peer_fetch(request, kind, params);
            }
            M::RequestUpdate {
                request,
                existing,
                params,
            } => {
                self.take_peer_request(request)?;
                self.on_peer_update(request, existing, params);
            }
            M::Unsubscribe { request } => self.on_peer_unsubscribe(request),
            M::FetchCancel { request } => self.on_peer_fetch_cancel(request),
            M::PublishNamespace {
                request, namespace, ..
            } => {
                self.take_peer_request(request)?;
                self.peer_namespaces.insert(request);
                self.send_control(M::RequestOk {
                    request,
                    params: MessageParams::default(),
                });
                self.event(Event::NamespacePublished { request, namespace });
            }
            M::PublishNamespaceDone { request } => {
                if self.peer_namespaces.remove(&request) {
                    self.peer_request_done();
                    self.event(Event::NamespaceDone { request });
                }
            }
            M::Publish { request, .. } => {
                self.take_peer_request(request)?;
                self.send_control(M::RequestError {
                    request,
                    code: request_error::NOT_SUPPORTED,
                    retry_interval: 0,
                    reason: "PUBLISH not supported; subscribe instead".into(),
                });
                self.peer_request_done();
            }
            M::SubscribeOk(ok) => {
                if !self.take_pending(ok.request, &Pending::Subscribe)? {
                    self.retire_alias(ok.alias);
                    return Ok(());
                }
                if self.aliases.contains_key(&ok.alias) {
                    return Err(MoqError::Peer {
                        code: SessionCode::DuplicateTrackAlias,
                        why: "track alias already in use",
                    });
                }
                self.aliases.insert(ok.alias, ok.request);
                if let Some(sub) = self.subscriptions.get_mut(&ok.request) {
                    sub.alias = Some(ok.alias);
                }
                self.event(Event::Subscribed {
                    request: ok.request,
                    alias: ok.alias,
                    largest: ok.params.largest_object,
                });
                self.release_alias(now, ok.alias, ok.request)?;
            }
            M::RequestOk { request, params } => match self.pending.remove(&request) {
                Some(Pending::PublishNamespace) => {
                    self.announced.insert(request);
                    self.event(Event::NamespaceAccepted { request });
                }
                Some(Pending::TrackStatus) => {
                    self.event(Event::TrackStatus {
                        request,
                        largest: params.largest_object,
                    });
                }
                Some(Pending::RequestUpdate) => {}
                Some(other) => {
                    self.pending.insert(request, other);
                    return Err(MoqError::violation("REQUEST_OK for a SUBSCRIBE or FETCH"));
                }
                None if self.retired_requests.remove(&request) => {}
                None => return Err(MoqError::violation("REQUEST_OK for no open request")),
            },
            M::RequestError {
                request,
                code,
                reason,
                ..
            } => {
                if self.pending.remove(&request).is_none() {
                    if self.retired_requests.remove(&request) {
                        return Ok(());
                    }
                    return Err(MoqError::violation("REQUEST_ERROR for no open request"));
                }
                self.subscriptions.remove(&request);
                self.fetches.remove(&request);
                self.stop_request_streams(request);
                self.event(Event::RequestFailed {
                    request,
                    code,
                    reason,
                });
            }
            M::FetchOk {
                request,
                end_of_track,
                end,
                ..
            } => {
                if self.take_pending(request, &Pending::Fetch)? {
                    self.event(Event::FetchAccepted {
                        request,
                        end_of_track,
                        end,
                    });
                }
            }
            M::PublishDone {
                request,
                status,
                stream_count,
                reason,
            } => {
                let deadline = now + self.config.early_stream_timeout;
                if let Some(sub) = self.subscriptions.get_mut(&request) {
                    sub.done = Some(DoneReceived {
                        status,
                        reason,
                        stream_count,
                        deadline,
                    });
                    self.check_subscription_done(request);
                }
            }
            M::PublishNamespaceCancel {
                request,
                code,
                reason,
            } => {
                let ours = self.announced.remove(&request)
                    || self.pending.get(&request) == Some(&Pending::PublishNamespace);
                if ours {
                    self.pending.remove(&request);
                    self.event(Event::NamespaceCancelled {
                        request,
                        code,
                        reason,
                    });
                }
            }
            M::PublishOk { .. } => {
                return Err(MoqError::violation("PUBLISH_OK but we never PUBLISH"))
            }
            M::SubscribeNamespace { .. } | M::Namespace { .. } | M::NamespaceDone { .. } => {
                return Err(MoqError::violation(
                    "namespace subscription message on the control stream",
                ))
            }
            // Only a new variant of a later draft reaches here; it cannot be valid in this session.
            _ => return Err(MoqError::violation("unexpected control message")),
        }
        Ok(())
    }

    /// Removes an open request of ours of kind `kind`: `Ok(true)` if it was open, `Ok(false)` if
    /// we already gave it up (a late answer), a protocol violation otherwise.
    fn take_pending(&mut self, request: RequestId, kind: &Pending) -> Result<bool, MoqError> {
        if self.pending.get(&request) == Some(kind) {
            self.pending.remove(&request);
            return Ok(true);
        }
        if self.retired_requests.remove(&request) {
            return Ok(false);
        }
        Err(MoqError::violation(
            "response to no open request of that kind",
        ))
    }

    /// Reports a subscription's end once PUBLISH_DONE arrived and all its streams ended.
    pub(super) fn check_subscription_done(&mut self, request: RequestId) {
        let Some(sub) = self.subscriptions.get(&request) else {
            return;
        };
        let Some(done) = &sub.done else { return };
        if done.stream_count == MAX_VARINT || sub.streams_ended >= done.stream_count {
            self.finish_subscription(request);
        }
    }

    /// Ends a subscription that received PUBLISH_DONE and reports it.
    pub(super) fn finish_subscription(&mut self, request: RequestId) {
        // Only a subscription that received PUBLISH_DONE is finished here.
        if self
            .subscriptions
            .get(&request)
            .is_none_or(|s| s.done.is_none())
        {
            return;
        }
        let Some(OurSubscription {
            alias,
            done: Some(done),
            ..
        }) = self.subscriptions.remove(&request)
        else {
            return;
        };
        if let Some(alias) = alias {
            self.aliases.remove(&alias);
            self.retire_alias(alias);
        }
        self.event(Event::SubscriptionDone {
            request,
            status: done.status,
            reason: done.reason,
        });
    }

    /// Bytes on a bidirectional stream other than the control stream: draft-16 runs each
    /// SUBSCRIBE_NAMESPACE on its own stream. We answer NOT_SUPPORTED and FIN.
    pub(super) fn on_request_stream_bytes(
        &mut self,
        stream: QuicStreamId,
        data: &[u8],
        fin: bool,
    ) -> Result<(), MoqError> {
        if stream.opened_by() == self.role {
            return Err(MoqError::Misuse("we never open request streams"));
        }
        let Some(buf) = self.recvs.request_stream(stream) else {
            // Already answered: the peer's FIN closes the request (and lets us forget the stream).
            if fin {
                self.recvs.forget_request_stream(stream);
            }
            return Ok(());
        };
        buf.extend_from_slice(data);
        match decode_control(self.version, buf)? {
            Some((ControlMessage::SubscribeNamespace { request, .. }, _)) => {
                self.recvs.answered(stream);
                if fin {
                    self.recvs.forget_request_stream(stream);
                }
                self.take_peer_request(request)?;
                let reply = ControlMessage::RequestError {
                    request,
                    code: request_error::NOT_SUPPORTED,
                    retry_interval: 0,
                    reason: "SUBSCRIBE_NAMESPACE not supported".into(),
                };
                let mut bytes = Vec::new();
                if encode_control(self.version, &reply, &mut bytes).is_ok() {
                    let key = OrderKey {
                        subscriber_priority: 0,
                        publisher_priority: 0,
                        group_rank: 0,
                    };
                    let priority = Priority {
                        urgency: 0,
                        incremental: false,
                    };
                    let s = SendStream::new(
                        Some(stream),
                        Owner::Reply,
                        GroupId(0),
                        key,
                        priority,
                        vec![Chunk::Owned(bytes)],
                    );
                    self.sends.push(s);
                }
                self.peer_request_done();
                Ok(())
            }
            Some(_) => Err(MoqError::violation(
                "request stream does not start with SUBSCRIBE_NAMESPACE",
            )),
            None if fin => Err(MoqError::violation("request stream ended inside a message")),
            None => Ok(()),
        }
    }
}
