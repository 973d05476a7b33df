//! One MoQ Transport session (one QUIC connection), for either role, publishing and subscribing.
//!
//! This module owns the session state machines: setup, request ids and their limits, announces,
//! subscriptions (both directions), FETCH, PUBLISH_DONE accounting and GOAWAY. It never touches
//! sockets, threads or the clock: time arrives as an `Instant` argument and bytes arrive and
//! leave through the calls below. It never panics on peer bytes; every peer error closes the
//! session with the draft's code and the error is then sticky.
//!
//! # Drive loop
//!
//! The endpoint owns the QUIC connection and maps [`QuicStreamId`]s (RFC 9000 numbering; the core
//! picks the ids of the streams it opens, in order) to QUIC streams:
//!
//! 1. Create the session with [`Session::new`] once the handshake negotiated ALPN `moqt-16`
//!    (the client's CLIENT_SETUP is queued at once on the control stream, bidi stream 0).
//! 2. Feed input: [`Session::handle_stream_data`] (bytes and FIN of any stream),
//!    [`Session::handle_stream_reset`], [`Session::handle_stop_sending`],
//!    [`Session::handle_datagram`], [`Session::handle_connection_closed`] and, when the deadline
//!    from [`Session::poll_timeout`] passes, [`Session::handle_timeout`].
//! 3. Drain [`Session::poll_output`] until `None`: events for the application, stream resets,
//!    STOP_SENDING and a final connection close.
//! 4. While QUIC has send capacity, call [`Session::poll_write`] with that capacity and write the
//!    returned bytes on the named stream (opening it if new) with the given priority, FIN as told.
//!    The core keeps everything not yet pulled, so under congestion it can drop the oldest groups
//!    of a slow subscriber instead of growing without bound.
//! 5. Wait for the next input or the [`Session::poll_timeout`] deadline, then go to 2.
//!
//! The application answers events with commands ([`Session::accept_subscribe`],
//! [`Session::accept_fetch`], [`Session::reject_request`], [`Session::send_group`]...), after
//! which it again drains outputs and writes.
//!
//! # Example
//!
//! Two sessions joined in memory; an endpoint does the same with QUIC streams.
//!
//! ```
//! use std::time::Instant;
//! use ec_node::moq::cache::TrackCache;
//! use ec_node::moq::session::{Config, Event, Output, Role, Session, SubscribeOptions};
//! use ec_node::moq::track::{BroadcastTrack, TrackKind};
//! use ec_node::moq::wire::Version;
//! use ec_node::moq::GroupId;
//!
//! // Moves everything `from` wants to send into `to`; returns `from`'s events.
//! fn pump(now: Instant, from: &mut Session, to: &mut Session) -> Vec<Event> {
//!     let mut events = Vec::new();
//!     while let Some(out) = from.poll_output() {
//!         match out {
//!             Output::Event(e) => events.push(e),
//!             Output::ResetStream { stream, code } => to.handle_stream_reset(stream, code).unwrap(),
//!             _ => {}
//!         }
//!     }
//!     while let Some(w) = from.poll_write(1200) {
//!         to.handle_stream_data(now, w.stream, &w.data, w.fin).unwrap();
//!     }
//!     events
//! }
//!
//! let now = Instant::now();
//! let mut client = Session::new(Role::Client, Version::Draft16, Config::default(), now);
//! let mut server = Session::new(Role::Server, Version::Draft16, Config::default(), now);
//! pump(now, &mut client, &mut server); // CLIENT_SETUP
//! pump(now, &mut server, &mut client); // SERVER_SETUP
//!
//! let track = BroadcastTrack::new("abc", TrackKind::Chunks).unwrap().full_name();
//! let mut cache = TrackCache::new(1 << 20);
//! cache.push(GroupId(7), b"chunk 7".to_vec().into()).unwrap();
//!
//! let sub = client.subscribe(track.clone(), SubscribeOptions::default()).unwrap();
//! pump(now, &mut client, &mut server);
//! for e in pump(now, &mut server, &mut client) {
//!     if let Event::SubscribeRequested { request, .. } = e {
//!         server.accept_subscribe(request, &cache).unwrap();
//!     }
//! }
//! pump(now, &mut server, &mut client); // SUBSCRIBE_OK
//!
//! cache.push(GroupId(8), b"chunk 8".to_vec().into()).unwrap();
//! server.send_group(&track, GroupId(8), cache.get(GroupId(8)).unwrap().clone()).unwrap();
//! pump(now, &mut server, &mut client);
//! let events = pump(now, &mut client, &mut server);
//! assert!(events.iter().any(|e| matches!(e,
//!     Event::Object { request, object } if *request == sub && object.payload == b"chunk 8")));
//! ```

mod control;
mod recv;
mod send;
mod serve;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::moq::cache::TrackCache;
use crate::moq::error::{MoqError, SessionCode};
use crate::moq::types::{
    FullTrackName, GroupId, GroupOrder, Location, RequestId, SubscriptionFilter, TrackAlias,
    TrackNamespace, MAX_VARINT,
};
use crate::moq::wire::control::{FetchKind, Subscribe};
use crate::moq::wire::{
    encode_control, ControlMessage, DataObject, MessageParams, SetupParams, Version,
};

use recv::RecvStreams;
use send::SendQueues;
use serve::Served;

/// Which side of the QUIC connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opened the connection; opens the control stream and uses even request ids.
    Client,
    /// Accepted the connection; uses odd request ids.
    Server,
}

/// A QUIC stream, numbered as in RFC 9000 (low bits: initiator and direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QuicStreamId(pub u64);

impl QuicStreamId {
    /// The control stream: the client's first bidirectional stream.
    pub const CONTROL: QuicStreamId = QuicStreamId(0);

    fn is_bidi(self) -> bool {
        self.0 & 0x2 == 0
    }

    fn opened_by(self) -> Role {
        if self.0 & 0x1 == 0 {
            Role::Client
        } else {
            Role::Server
        }
    }
}

/// How urgently the endpoint should send a stream's bytes (map onto QUIC stream priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// Lower is sent first; the control stream is 0.
    pub urgency: u8,
    /// Whether the stream may share bandwidth round-robin with others of the same urgency.
    pub incremental: bool,
}

/// Bytes for the endpoint to write on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct StreamWrite {
    /// The stream; a unidirectional stream the endpoint has not seen before must be opened.
    pub stream: QuicStreamId,
    /// The bytes, at most the capacity passed to `poll_write`.
    pub data: Vec<u8>,
    /// Whether to send FIN after the bytes.
    pub fin: bool,
    /// The stream's priority.
    pub priority: Priority,
}

/// Session settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests the peer may have open at once (drives MAX_REQUEST_ID).
    pub request_window: u64,
    /// Largest object payload accepted from the peer.
    pub max_object_size: usize,
    /// Bytes a subscription may have queued before its oldest groups are dropped.
    pub max_subscriber_backlog: usize,
    /// Data streams buffered while their track alias is unknown.
    pub max_early_streams: usize,
    /// Bytes buffered over all such streams.
    pub max_early_bytes: usize,
    /// How long such a stream may wait for its alias.
    pub early_stream_timeout: Duration,
    /// How long to wait for the peer's SETUP.
    pub setup_timeout: Duration,
    /// Our publisher priority for the streams we send.
    pub publisher_priority: u8,
    /// MOQT_IMPLEMENTATION sent in SETUP.
    pub implementation: Vec<u8>,
    /// PATH sent by a client over raw QUIC.
    pub path: Option<Vec<u8>>,
    /// AUTHORITY sent by a client over raw QUIC (the `host:port` of a `moqt://` URL).
    pub authority: Option<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_window: 64,
            max_object_size: 64 << 20,
            max_subscriber_backlog: 16 << 20,
            max_early_streams: 16,
            max_early_bytes: 1 << 20,
            early_stream_timeout: Duration::from_secs(2),
            setup_timeout: Duration::from_secs(10),
            publisher_priority: 128,
            implementation: b"ec-node".to_vec(),
            path: None,
            authority: None,
        }
    }
}

/// Options of a SUBSCRIBE we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Where the subscription starts.
    pub filter: SubscriptionFilter,
    /// Our priority for it (lower is more urgent).
    pub priority: u8,
    /// The group order we ask for, if any.
    pub group_order: Option<GroupOrder>,
    /// Whether the publisher should forward objects now.
    pub forward: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            filter: SubscriptionFilter::LargestObject,
            priority: 128,
            group_order: None,
            forward: true,
        }
    }
}

/// Where a joining FETCH starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoiningStart {
    /// This many groups before the subscription's largest group (0 = that group only).
    Relative(u64),
    /// At this group.
    Absolute(GroupId),
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// SETUP completed; requests may flow.
    SetupComplete {
        /// The peer's MOQT_IMPLEMENTATION, if sent.
        implementation: Option<Vec<u8>>,
    },
    /// The peer announced a namespace (accepted automatically).
    NamespacePublished {
        /// The peer's request.
        request: RequestId,
        /// The namespace.
        namespace: TrackNamespace,
    },
    /// The peer withdrew a namespace.
    NamespaceDone {
        /// The peer's PUBLISH_NAMESPACE request.
        request: RequestId,
    },
    /// Our PUBLISH_NAMESPACE was accepted.
    NamespaceAccepted {
        /// Our request.
        request: RequestId,
    },
    /// The peer cancelled our PUBLISH_NAMESPACE.
    NamespaceCancelled {
        /// Our request.
        request: RequestId,
        /// Error code.
        code: u64,
        /// Reason.
        reason: String,
    },
    /// The peer subscribes to a track; answer with `accept_subscribe` or `reject_request`.
    SubscribeRequested {
        /// The peer's request.
        request: RequestId,
        /// The track.
        track: FullTrackName,
        /// The filter (absent on the wire means AbsoluteStart {0, 0}).
        filter: SubscriptionFilter,
    },
    /// The peer asks for a track's status; answer with `accept_track_status` or `reject_request`.
    TrackStatusRequested {
        /// The peer's request.
        request: RequestId,
        /// The track.
        track: FullTrackName,
    },
    /// The peer fetches groups `first..=last` of a track; answer with `accept_fetch` or `reject_request`.
    FetchRequested {
        /// The peer's request.
        request: RequestId,
        /// The track.
        track: FullTrackName,
        /// First group.
        first: GroupId,
        /// Last group (inclusive).
        last: GroupId,
    },
    /// The peer ended a subscription we served (UNSUBSCRIBE) or cancelled a fetch.
    RequestCancelled {
        /// The peer's request.
        request: RequestId,
    },
    /// Groups of a subscription we serve were dropped because the subscriber fell behind.
    GroupsDropped {
        /// The peer's subscription.
        request: RequestId,
        /// How many groups were dropped this time.
        groups: u64,
    },
    /// Our SUBSCRIBE was accepted.
    Subscribed {
        /// Our request.
        request: RequestId,
        /// The alias data streams carry.
        alias: TrackAlias,
        /// The largest location published so far, if any.
        largest: Option<Location>,
    },
    /// Our TRACK_STATUS was answered.
    TrackStatus {
        /// Our request.
        request: RequestId,
        /// The largest location published so far, if any.
        largest: Option<Location>,
    },
    /// Our FETCH was accepted.
    FetchAccepted {
        /// Our request.
        request: RequestId,
        /// Whether the range reaches the end of the track.
        end_of_track: bool,
        /// Where the response ends, exclusive as FETCH's End Location (object 0: the whole
        /// group).
        end: Location,
    },
    /// An object of one of our subscriptions or fetches.
    Object {
        /// Our SUBSCRIBE or FETCH request.
        request: RequestId,
        /// The object.
        object: DataObject,
    },
    /// A FETCH response stream ended; every object has been delivered.
    FetchComplete {
        /// Our request.
        request: RequestId,
    },
    /// A data stream of ours was reset by the peer (the group or fetch is incomplete).
    StreamReset {
        /// Our SUBSCRIBE or FETCH request.
        request: RequestId,
        /// The reset code.
        code: u64,
    },
    /// The publisher ended our subscription and all its streams have ended.
    SubscriptionDone {
        /// Our request.
        request: RequestId,
        /// PUBLISH_DONE status code.
        status: u64,
        /// Reason.
        reason: String,
    },
    /// One of our requests was refused.
    RequestFailed {
        /// Our request.
        request: RequestId,
        /// REQUEST_ERROR code.
        code: u64,
        /// Reason.
        reason: String,
    },
    /// The peer sent GOAWAY: make no new requests and move to `uri` (if not empty).
    GoAway {
        /// The new session URI.
        uri: Vec<u8>,
    },
    /// The session ended; the error says why and by whom.
    Closed(MoqError),
}

/// Work for the endpoint other than stream bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// An event for the application.
    Event(Event),
    /// Reset our sending side of a stream with this code.
    ResetStream {
        /// The stream.
        stream: QuicStreamId,
        /// The reset code.
        code: u64,
    },
    /// Ask the peer to stop sending on a stream.
    StopSending {
        /// The stream.
        stream: QuicStreamId,
        /// The code.
        code: u64,
    },
    /// Close the QUIC connection with this application error code and reason; nothing follows.
    CloseConnection {
        /// Session termination code.
        code: u64,
        /// Reason phrase.
        reason: String,
    },
}

/// What one of our outstanding requests is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Subscribe,
    Fetch,
    PublishNamespace,
    TrackStatus,
    RequestUpdate,
}

/// A subscription we made.
#[derive(Debug, Clone)]
struct OurSubscription {
    alias: Option<TrackAlias>,
    streams_ended: u64,
    /// PUBLISH_DONE received; reported once the streams ended or the deadline passed.
    done: Option<DoneReceived>,
}

/// A PUBLISH_DONE waiting for the subscription's streams to end.
#[derive(Debug, Clone)]
struct DoneReceived {
    status: u64,
    reason: String,
    stream_count: u64,
    /// A stream reset before its header arrived cannot be counted, so we stop waiting here.
    deadline: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    AwaitingSetup,
    Established,
    Closed(MoqError),
}

/// One MoQ session. See the module documentation for the drive loop.
pub struct Session {
    role: Role,
    version: Version,
    config: Config,
    phase: Phase,
    setup_deadline: Option<Instant>,
    control_in: Vec<u8>,
    control_out: Vec<u8>,
    outputs: VecDeque<Output>,
    // Our requests.
    next_request: u64,
    peer_limit: u64,
    blocked_reported: Option<u64>,
    pending: HashMap<RequestId, Pending>,
    subscriptions: HashMap<RequestId, OurSubscription>,
    aliases: HashMap<TrackAlias, RequestId>,
    /// Aliases of subscriptions that ended, so their late streams are stopped at once; the
    /// oldest are forgotten beyond `MAX_RETIRED_ALIASES`.
    retired_aliases: BTreeSet<TrackAlias>,
    /// Our requests we gave up (UNSUBSCRIBE, FETCH_CANCEL); late answers to them are ignored.
    retired_requests: HashSet<RequestId>,
    fetches: HashSet<RequestId>,
    announced: HashSet<RequestId>,
    // The peer's requests.
    next_peer_request: u64,
    granted_limit: u64,
    peer_requests_done: u64,
    peer_namespaces: HashSet<RequestId>,
    goaway_received: bool,
    goaway_sent: bool,
    served: Served,
    sends: SendQueues,
    recvs: RecvStreams,
}

/// Ended aliases remembered; beyond this a late stream waits as an unknown alias would.
const MAX_RETIRED_ALIASES: usize = 1024;

/// The first request id of a role.
fn first_request_id(role: Role) -> u64 {
    match role {
        Role::Client => 0,
        Role::Server => 1,
    }
}

fn check_varint(v: u64) -> Result<u64, MoqError> {
    if v > MAX_VARINT {
        return Err(MoqError::Misuse("value above 2^62-1"));
    }
    Ok(v)
}

impl Session {
    /// A new session for `role` speaking `version` (from ALPN), started at `now`.
    pub fn new(role: Role, version: Version, config: Config, now: Instant) -> Self {
        let peer = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        // Saturating: the window is configuration, and the limit must stay a varint.
        let granted_limit = config
            .request_window
            .saturating_mul(2)
            .saturating_add(first_request_id(peer))
            .min(MAX_VARINT);
        let mut s = Session {
            role,
            version,
            phase: Phase::AwaitingSetup,
            setup_deadline: Some(now + config.setup_timeout),
            control_in: Vec::new(),
            control_out: Vec::new(),
            outputs: VecDeque::new(),
            next_request: first_request_id(role),
            peer_limit: 0,
            blocked_reported: None,
            pending: HashMap::new(),
            subscriptions: HashMap::new(),
            aliases: HashMap::new(),
            retired_aliases: BTreeSet::new(),
            retired_requests: HashSet::new(),
            fetches: HashSet::new(),
            announced: HashSet::new(),
            next_peer_request: first_request_id(peer),
            granted_limit,
            peer_requests_done: 0,
            peer_namespaces: HashSet::new(),
            goaway_received: false,
            goaway_sent: false,
            served: Served::default(),
            sends: SendQueues::new(role),
            recvs: RecvStreams::default(),
            config,
        };
        if role == Role::Client {
            let setup = SetupParams {
                path: s.config.path.clone(),
                authority: s.config.authority.clone(),
                max_request_id: Some(granted_limit),
                implementation: Some(s.config.implementation.clone()),
                ..Default::default()
            };
            s.send_control(ControlMessage::ClientSetup(setup));
        }
        s
    }

    /// This session's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether SETUP has completed and the session is not closed.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    // ----- endpoint input -----

    /// Bytes (and possibly FIN) received on a stream.
    pub fn handle_stream_data(
        &mut self,
        now: Instant,
        stream: QuicStreamId,
        data: &[u8],
        fin: bool,
    ) -> Result<(), MoqError> {
        self.check_open()?;
        let res = if stream == QuicStreamId::CONTROL {
            self.on_control_bytes(now, data, fin)
        } else if stream.is_bidi() {
            self.on_request_stream_bytes(stream, data, fin)
        } else if stream.opened_by() == self.role {
            Err(MoqError::Misuse(
                "data on a unidirectional stream we opened",
            ))
        } else {
            self.on_data_stream_bytes(now, stream, data, fin)
        };
        self.fail_on_peer_error(res)
    }

    /// The peer reset its sending side of a stream.
    pub fn handle_stream_reset(&mut self, stream: QuicStreamId, code: u64) -> Result<(), MoqError> {
        self.check_open()?;
        if stream == QuicStreamId::CONTROL {
            return self.fail_on_peer_error(Err(MoqError::violation("control stream reset")));
        }
        self.on_data_stream_reset(stream, code);
        Ok(())
    }

    /// The peer asked us to stop sending on a stream.
    pub fn handle_stop_sending(&mut self, stream: QuicStreamId, code: u64) -> Result<(), MoqError> {
        self.check_open()?;
        if stream == QuicStreamId::CONTROL {
            return self.fail_on_peer_error(Err(MoqError::violation(
                "STOP_SENDING on the control stream",
            )));
        }
        if let Some((seq, owner)) = self.sends.find(stream) {
            self.sends.drop_stream(seq);
            self.outputs.push_back(Output::ResetStream { stream, code });
            // A fetch has one stream: stopping it cancels the fetch (FETCH_CANCEL may follow).
            if let send::Owner::Fetch(request) = owner {
                self.event(Event::RequestCancelled { request });
            }
            self.on_send_stream_gone(owner);
        }
        Ok(())
    }

    /// A QUIC datagram arrived.
    pub fn handle_datagram(&mut self, datagram: &[u8]) -> Result<(), MoqError> {
        self.check_open()?;
        let res = self.on_datagram(datagram);
        self.fail_on_peer_error(res)
    }

    /// The QUIC connection closed (by the peer or the transport).
    pub fn handle_connection_closed(&mut self, code: u64, reason: &str) {
        if !self.is_closed() {
            let e = MoqError::Closed {
                by_peer: true,
                code,
                reason: reason.to_owned(),
            };
            self.phase = Phase::Closed(e.clone());
            self.outputs.push_back(Output::Event(Event::Closed(e)));
        }
    }

    /// Timers: a missing SETUP closes the session; streams whose alias never came are dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.setup_deadline.is_some_and(|d| now >= d) {
            self.close_with(MoqError::Peer {
                code: SessionCode::ControlMessageTimeout,
                why: "no SETUP in time",
            });
            return;
        }
        let mut overdue: Vec<RequestId> = self
            .subscriptions
            .iter()
            .filter(|(_, sub)| sub.done.as_ref().is_some_and(|d| d.deadline <= now))
            .map(|(r, _)| *r)
            .collect();
        overdue.sort();
        for request in overdue {
            self.finish_subscription(request);
        }
        for stream in self.recvs.expire(now) {
            self.outputs.push_back(Output::StopSending {
                stream,
                code: crate::moq::error::reset::DELIVERY_TIMEOUT,
            });
        }
    }

    /// The next instant at which `handle_timeout` must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let done = self
            .subscriptions
            .values()
            .filter_map(|s| s.done.as_ref().map(|d| d.deadline))
            .min();
        [self.setup_deadline, self.recvs.next_deadline(), done]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- endpoint output -----

    /// The next event, reset, STOP_SENDING or connection close.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Up to `max` bytes for one stream, most urgent first: the control stream, then replies,
    /// then data streams by subscriber priority, publisher priority and group (in the
    /// subscription's group order: ascending unless the subscriber asked for descending).
    pub fn poll_write(&mut self, max: usize) -> Option<StreamWrite> {
        if max == 0 || self.is_closed() {
            return None;
        }
        if !self.control_out.is_empty() {
            let n = max.min(self.control_out.len());
            let data: Vec<u8> = self.control_out.drain(..n).collect();
            return Some(StreamWrite {
                stream: QuicStreamId::CONTROL,
                data,
                fin: false,
                priority: Priority {
                    urgency: 0,
                    incremental: false,
                },
            });
        }
        let (write, note) = self.sends.next_write(max)?;
        self.on_write_note(note);
        Some(write)
    }

    /// Whether bytes are waiting for `poll_write`.
    pub fn wants_write(&self) -> bool {
        !self.is_closed() && (!self.control_out.is_empty() || !self.sends.is_empty())
    }

    // ----- application commands: our requests -----

    /// Announces a namespace we publish (PUBLISH_NAMESPACE).
    pub fn publish_namespace(&mut self, namespace: TrackNamespace) -> Result<RequestId, MoqError> {
        if !namespace.is_valid() {
            return Err(MoqError::Misuse("invalid namespace"));
        }
        let request = self.new_request()?;
        self.pending.insert(request, Pending::PublishNamespace);
        let params = MessageParams::default();
        self.send_control(ControlMessage::PublishNamespace {
            request,
            namespace,
            params,
        });
        Ok(request)
    }

    /// Withdraws a namespace we announced (PUBLISH_NAMESPACE_DONE).
    pub fn publish_namespace_done(&mut self, request: RequestId) -> Result<(), MoqError> {
        self.check_open()?;
        if !self.announced.remove(&request)
            && self.pending.get(&request) != Some(&Pending::PublishNamespace)
        {
            return Err(MoqError::Misuse("no such announcement"));
        }
        self.pending.remove(&request);
        self.send_control(ControlMessage::PublishNamespaceDone { request });
        Ok(())
    }

    /// Subscribes to a track.
    pub fn subscribe(
        &mut self,
        track: FullTrackName,
        options: SubscribeOptions,
    ) -> Result<RequestId, MoqError> {
        if !track.is_valid() {
            return Err(MoqError::Misuse("invalid track name"));
        }
        if let SubscriptionFilter::AbsoluteStart(l) | SubscriptionFilter::AbsoluteRange(l, _) =
            options.filter
        {
            check_varint(l.group.0)?;
            check_varint(l.object.0)?;
        }
        if let SubscriptionFilter::AbsoluteRange(_, end) = options.filter {
            check_varint(end.0)?;
        }
        let request = self.new_request()?;
        self.pending.insert(request, Pending::Subscribe);
        self.subscriptions.insert(
            request,
            OurSubscription {
                alias: None,
                streams_ended: 0,
                done: None,
            },
        );
        let params = MessageParams {
            filter: Some(options.filter),
            subscriber_priority: Some(options.priority),
            group_order: options.group_order,
            forward: Some(options.forward),
            ..Default::default()
        };
        self.send_control(ControlMessage::Subscribe(Subscribe {
            request,
            track,
            params,
        }));
        Ok(request)
    }

    /// Ends one of our subscriptions (UNSUBSCRIBE); later streams for it are refused.
    pub fn unsubscribe(&mut self, request: RequestId) -> Result<(), MoqError> {
        self.check_open()?;
        let sub = self
            .subscriptions
            .remove(&request)
            .ok_or(MoqError::Misuse("no such subscription"))?;
        self.give_up(request);
        if let Some(alias) = sub.alias {
            self.aliases.remove(&alias);
            self.retire_alias(alias);
        }
        self.stop_request_streams(request);
        self.send_control(ControlMessage::Unsubscribe { request });
        Ok(())
    }

    /// Asks the publisher to change forwarding or priority of one of our subscriptions.
    pub fn request_update(
        &mut self,
        subscription: RequestId,
        forward: Option<bool>,
        priority: Option<u8>,
    ) -> Result<RequestId, MoqError> {
        if !self.subscriptions.contains_key(&subscription) {
            return Err(MoqError::Misuse("no such subscription"));
        }
        let request = self.new_request()?;
        self.pending.insert(request, Pending::RequestUpdate);
        let params = MessageParams {
            forward,
            subscriber_priority: priority,
            ..Default::default()
        };
        self.send_control(ControlMessage::RequestUpdate {
            request,
            existing: subscription,
            params,
        });
        Ok(request)
    }

    /// Fetches a range of a track (standalone FETCH). `end.object == 0` means all of `end.group`.
    pub fn fetch(
        &mut self,
        track: FullTrackName,
        start: Location,
        end: Location,
    ) -> Result<RequestId, MoqError> {
        if !track.is_valid() {
            return Err(MoqError::Misuse("invalid track name"));
        }
        for v in [start.group.0, start.object.0, end.group.0, end.object.0] {
            check_varint(v)?;
        }
        self.send_fetch(FetchKind::Standalone { track, start, end })
    }

    /// Fetches the groups before one of our subscriptions' start (joining FETCH). It may be sent
    /// right after `subscribe`, before SUBSCRIBE_OK, so a late joiner gets the current group at once.
    pub fn joining_fetch(
        &mut self,
        subscription: RequestId,
        start: JoiningStart,
    ) -> Result<RequestId, MoqError> {
        if !self.subscriptions.contains_key(&subscription) {
            return Err(MoqError::Misuse("no such subscription"));
        }
        let kind = match start {
            JoiningStart::Relative(offset) => FetchKind::RelativeJoining {
                joining: subscription,
                offset: check_varint(offset)?,
            },
            JoiningStart::Absolute(g) => FetchKind::AbsoluteJoining {
                joining: subscription,
                start: check_varint(g.0)?,
            },
        };
        self.send_fetch(kind)
    }

    /// Late join in one flight: SUBSCRIBE from the next group (LargestObject) and a relative
    /// joining FETCH of the current group and `backfill` groups before it, sent together so the
    /// current group comes without waiting for SUBSCRIBE_OK. Returns (subscription, fetch).
    pub fn subscribe_joining(
        &mut self,
        track: FullTrackName,
        backfill: u64,
    ) -> Result<(RequestId, RequestId), MoqError> {
        let live = self.subscribe(track, SubscribeOptions::default())?;
        let joining = self.joining_fetch(live, JoiningStart::Relative(backfill))?;
        Ok((live, joining))
    }

    fn send_fetch(&mut self, kind: FetchKind) -> Result<RequestId, MoqError> {
        let request = self.new_request()?;
        self.pending.insert(request, Pending::Fetch);
        self.fetches.insert(request);
        self.send_control(ControlMessage::Fetch {
            request,
            kind,
            params: MessageParams::default(),
        });
        Ok(request)
    }

    /// Cancels one of our fetches (FETCH_CANCEL); its stream is refused from now on.
    pub fn cancel_fetch(&mut self, request: RequestId) -> Result<(), MoqError> {
        self.check_open()?;
        if !self.fetches.remove(&request) {
            return Err(MoqError::Misuse("no such fetch"));
        }
        self.give_up(request);
        self.stop_request_streams(request);
        self.send_control(ControlMessage::FetchCancel { request });
        Ok(())
    }

    /// Asks for a track's status (TRACK_STATUS).
    pub fn track_status(&mut self, track: FullTrackName) -> Result<RequestId, MoqError> {
        if !track.is_valid() {
            return Err(MoqError::Misuse("invalid track name"));
        }
        let request = self.new_request()?;
        self.pending.insert(request, Pending::TrackStatus);
        self.send_control(ControlMessage::TrackStatus(Subscribe {
            request,
            track,
            params: MessageParams::default(),
        }));
        Ok(request)
    }

    /// Sends GOAWAY. A client must send an empty `uri`; only a server may redirect.
    pub fn goaway(&mut self, uri: &[u8]) -> Result<(), MoqError> {
        self.check_open()?;
        if self.goaway_sent {
            return Err(MoqError::Misuse("GOAWAY already sent"));
        }
        if self.role == Role::Client && !uri.is_empty() {
            return Err(MoqError::Misuse("a client's GOAWAY carries no URI"));
        }
        if uri.len() > crate::moq::wire::control::MAX_GOAWAY_URI {
            return Err(MoqError::Misuse("GOAWAY URI too long"));
        }
        self.goaway_sent = true;
        self.send_control(ControlMessage::Goaway { uri: uri.to_vec() });
        Ok(())
    }

    /// Closes the session with a code and reason; every later call reports `Closed`.
    pub fn close(&mut self, code: SessionCode, reason: &str) {
        if self.is_closed() {
            return;
        }
        let e = MoqError::Closed {
            by_peer: false,
            code: code.code(),
            reason: reason.to_owned(),
        };
        self.phase = Phase::Closed(e.clone());
        self.outputs.push_back(Output::CloseConnection {
            code: code.code(),
            reason: reason.to_owned(),
        });
        self.outputs.push_back(Output::Event(Event::Closed(e)));
    }

    // ----- application commands: serving the peer -----

    /// Accepts a SUBSCRIBE for a track served from `cache`: SUBSCRIBE_OK (with LARGEST_OBJECT)
    /// goes out and the newest cached group is queued at once if the filter's start is at or
    /// before it. Older cached groups are never sent on a subscription (they are FETCH's), and
    /// later only groups newer than every group already queued on it are sent.
    pub fn accept_subscribe(
        &mut self,
        request: RequestId,
        cache: &TrackCache,
    ) -> Result<(), MoqError> {
        self.check_open()?;
        self.serve_subscribe(request, cache)
    }

    /// Accepts a FETCH (standalone or joining) from `cache`: FETCH_OK and one stream with every
    /// cached group of the range. Nothing cached in the range answers INVALID_RANGE.
    pub fn accept_fetch(&mut self, request: RequestId, cache: &TrackCache) -> Result<(), MoqError> {
        self.check_open()?;
        self.serve_fetch(request, cache)
    }

    /// Answers a TRACK_STATUS with REQUEST_OK carrying the track's largest location.
    pub fn accept_track_status(
        &mut self,
        request: RequestId,
        cache: &TrackCache,
    ) -> Result<(), MoqError> {
        self.check_open()?;
        self.serve_track_status(request, cache)
    }

    /// Refuses a peer's SUBSCRIBE, FETCH or TRACK_STATUS with REQUEST_ERROR.
    pub fn reject_request(
        &mut self,
        request: RequestId,
        code: u64,
        reason: &str,
    ) -> Result<(), MoqError> {
        self.check_open()?;
        check_varint(code)?;
        if reason.len() > crate::moq::wire::MAX_REASON_BYTES {
            return Err(MoqError::Misuse("reason phrase above 1024 bytes"));
        }
        self.serve_reject(request, code, reason)
    }

    /// Publishes a new group (object 0 = `payload`) of `track` to every subscription of it that
    /// wants it, each on its own subgroup stream ended with FIN. Push it into the track's cache
    /// first so later subscribers and fetches find it. A subscription that already queued this
    /// group or a newer one skips it (no stream), so groups on a subscription only go up.
    pub fn send_group(
        &mut self,
        track: &FullTrackName,
        group: GroupId,
        payload: Arc<[u8]>,
    ) -> Result<(), MoqError> {
        self.check_open()?;
        check_varint(group.0)?;
        self.serve_group(track, group, payload);
        Ok(())
    }

    /// Ends every subscription of `track` with PUBLISH_DONE (TRACK_ENDED), each once its streams
    /// have been written.
    pub fn end_track(&mut self, track: &FullTrackName) -> Result<(), MoqError> {
        self.check_open()?;
        self.serve_end_track(track);
        Ok(())
    }

    // ----- internals shared by the submodules -----

    fn check_open(&self) -> Result<(), MoqError> {
        match &self.phase {
            Phase::Closed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Closes the session if `res` is a peer error; returns the sticky error then.
    fn fail_on_peer_error(&mut self, res: Result<(), MoqError>) -> Result<(), MoqError> {
        match res {
            Err(e @ (MoqError::Peer { .. } | MoqError::Internal(_))) => {
                self.close_with(e);
                self.check_open()
            }
            other => other,
        }
    }

    fn close_with(&mut self, e: MoqError) {
        let (code, why) = match &e {
            MoqError::Peer { code, why } => (*code, *why),
            MoqError::Internal(why) => (SessionCode::InternalError, *why),
            _ => return,
        };
        self.close(code, why);
    }

    fn send_control(&mut self, msg: ControlMessage) {
        // Names, reasons and URIs are bounded by the API, so every message we build fits the
        // 16-bit length; failing here would be our bug.
        if encode_control(self.version, &msg, &mut self.control_out).is_err() {
            self.close_with(MoqError::Internal("control message above 65535 bytes"));
        }
    }

    fn new_request(&mut self) -> Result<RequestId, MoqError> {
        self.check_open()?;
        if self.goaway_received {
            return Err(MoqError::Misuse("the peer sent GOAWAY; open a new session"));
        }
        if self.next_request >= self.peer_limit {
            if self.blocked_reported != Some(self.peer_limit) && self.phase == Phase::Established {
                self.blocked_reported = Some(self.peer_limit);
                self.send_control(ControlMessage::RequestsBlocked(self.peer_limit));
            }
            return Err(MoqError::Blocked {
                limit: self.peer_limit,
            });
        }
        let id = RequestId(self.next_request);
        self.next_request += 2;
        Ok(id)
    }

    /// Checks a new request id from the peer: the next in sequence and below our limit.
    fn take_peer_request(&mut self, id: RequestId) -> Result<(), MoqError> {
        if id.0 != self.next_peer_request {
            return Err(MoqError::Peer {
                code: SessionCode::InvalidRequestId,
                why: "request id out of sequence or wrong parity",
            });
        }
        if id.0 >= self.granted_limit {
            return Err(MoqError::Peer {
                code: SessionCode::TooManyRequests,
                why: "request id at or above MAX_REQUEST_ID",
            });
        }
        self.next_peer_request += 2;
        Ok(())
    }

    /// A peer request finished: raise the peer's limit so it keeps `request_window` open.
    fn peer_request_done(&mut self) {
        self.peer_requests_done += 1;
        let peer_first = first_request_id(match self.role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        });
        let open = self
            .peer_requests_done
            .saturating_add(self.config.request_window);
        let limit = open
            .saturating_mul(2)
            .saturating_add(peer_first)
            .min(MAX_VARINT);
        if limit > self.granted_limit {
            self.granted_limit = limit;
            self.send_control(ControlMessage::MaxRequestId(limit));
        }
    }

    /// Forgets one of our requests; if it was still unanswered, its answer will be ignored.
    fn give_up(&mut self, request: RequestId) {
        if self.pending.remove(&request).is_some() {
            self.retired_requests.insert(request);
        }
    }

    fn retire_alias(&mut self, alias: TrackAlias) {
        self.retired_aliases.insert(alias);
        if self.retired_aliases.len() > MAX_RETIRED_ALIASES {
            self.retired_aliases.pop_first();
        }
    }

    /// Whether `request` is an id we used (our parity, already issued).
    fn is_our_request(&self, request: RequestId) -> bool {
        request.0 % 2 == first_request_id(self.role) && request.0 < self.next_request
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }
}
