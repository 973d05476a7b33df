//! Session tests: a client and a server `Session` joined by in-memory byte queues with a virtual
//! clock (`Pair`, after quinn-proto's test pair). `step` moves everything each side wants to
//! send across once; `drive` steps until both are idle; loss is a cleared queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::moq::error::{publish_done, request_error};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::types::ObjectId;
use crate::moq::wire::{decode_control_stream, ControlMessage};

/// Something crossing the connection.
#[derive(Debug, Clone)]
enum Wire {
    Data(QuicStreamId, Vec<u8>, bool),
    Reset(QuicStreamId, u64),
    StopSending(QuicStreamId, u64),
    Close(u64, String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Client,
    Server,
}

struct Pair {
    now: Instant,
    client: Session,
    server: Session,
    /// Bytes each side may write per step (models congestion when small).
    budget: usize,
    to_server: VecDeque<Wire>,
    to_client: VecDeque<Wire>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Every control-stream byte each side sent, to check messages on the wire.
    client_control: Vec<u8>,
    server_control: Vec<u8>,
}

fn track() -> FullTrackName {
    BroadcastTrack::new("abc", TrackKind::Chunks)
        .unwrap()
        .full_name()
}

/// The namespace of broadcast "abc"'s `kind` track.
fn namespace(kind: TrackKind) -> TrackNamespace {
    BroadcastTrack::new("abc", kind).unwrap().namespace()
}

/// A cache of `track()` holding `groups`, each with `payload(g)`.
fn cache_with(groups: std::ops::Range<u64>) -> TrackCache {
    bounded_cache(1 << 20, groups)
}

/// `cache_with`, limited to `capacity` bytes (older groups are evicted).
fn bounded_cache(capacity: usize, groups: std::ops::Range<u64>) -> TrackCache {
    let mut c = TrackCache::new(capacity);
    for g in groups {
        c.push(GroupId(g), payload(g)).unwrap();
    }
    c
}

fn payload(g: u64) -> Arc<[u8]> {
    format!("group-{g}").into_bytes().into()
}

impl Pair {
    fn new(client: Config, server: Config) -> Self {
        let now = Instant::now();
        Pair {
            now,
            client: Session::new(Role::Client, Version::Draft16, client, now),
            server: Session::new(Role::Server, Version::Draft16, server, now),
            budget: usize::MAX,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_control: Vec::new(),
            server_control: Vec::new(),
        }
    }

    /// A pair that completed SETUP.
    fn connected() -> Self {
        Self::connected_with(Config::default(), Config::default())
    }

    /// A pair that completed SETUP, the client's config being the default changed by `f`.
    fn connected_with_client(f: impl FnOnce(&mut Config)) -> Self {
        let mut client = Config::default();
        f(&mut client);
        Self::connected_with(client, Config::default())
    }

    /// A pair that completed SETUP, the server's config being the default changed by `f`.
    fn connected_with_server(f: impl FnOnce(&mut Config)) -> Self {
        let mut server = Config::default();
        f(&mut server);
        Self::connected_with(Config::default(), server)
    }

    fn connected_with(client: Config, server: Config) -> Self {
        let mut p = Pair::new(client, server);
        p.drive();
        assert!(p.client.is_established() && p.server.is_established());
        assert!(matches!(
            p.client_events.remove(0),
            Event::SetupComplete { .. }
        ));
        assert!(matches!(
            p.server_events.remove(0),
            Event::SetupComplete { .. }
        ));
        p
    }

    fn session(&mut self, side: Side) -> &mut Session {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// Collects what `side` wants to send, without delivering it.
    fn transmit(&mut self, side: Side) -> Vec<Wire> {
        let mut wires = Vec::new();
        let mut events = Vec::new();
        let budget = self.budget;
        let s = self.session(side);
        while let Some(o) = s.poll_output() {
            match o {
                Output::Event(e) => events.push(e),
                Output::ResetStream { stream, code } => wires.push(Wire::Reset(stream, code)),
                Output::StopSending { stream, code } => wires.push(Wire::StopSending(stream, code)),
                Output::CloseConnection { code, reason } => wires.push(Wire::Close(code, reason)),
            }
        }
        let mut left = budget;
        while left > 0 {
            let Some(w) = s.poll_write(left.min(1 << 16)) else {
                break;
            };
            left -= w.data.len();
            wires.push(Wire::Data(w.stream, w.data, w.fin));
        }
        for w in &wires {
            if let Wire::Data(QuicStreamId::CONTROL, d, _) = w {
                match side {
                    Side::Client => self.client_control.extend_from_slice(d),
                    Side::Server => self.server_control.extend_from_slice(d),
                }
            }
        }
        match side {
            Side::Client => self.client_events.extend(events),
            Side::Server => self.server_events.extend(events),
        }
        wires
    }

    /// Hands wires to `side`, as its endpoint would.
    fn deliver(&mut self, side: Side, wires: impl IntoIterator<Item = Wire>) {
        let now = self.now;
        let s = self.session(side);
        for w in wires {
            // Errors are also reported as outputs (close + event); the result adds nothing here.
            let _ = match w {
                Wire::Data(id, d, fin) => s.handle_stream_data(now, id, &d, fin),
                Wire::Reset(id, code) => s.handle_stream_reset(id, code),
                Wire::StopSending(id, code) => s.handle_stop_sending(id, code),
                Wire::Close(code, reason) => {
                    s.handle_connection_closed(code, &reason);
                    Ok(())
                }
            };
        }
    }

    /// Moves everything once in each direction; true if anything moved.
    fn step(&mut self) -> bool {
        let c = self.transmit(Side::Client);
        self.to_server.extend(c);
        let s = self.transmit(Side::Server);
        self.to_client.extend(s);
        let moved = !self.to_server.is_empty() || !self.to_client.is_empty();
        let to_server: Vec<Wire> = self.to_server.drain(..).collect();
        self.deliver(Side::Server, to_server);
        let to_client: Vec<Wire> = self.to_client.drain(..).collect();
        self.deliver(Side::Client, to_client);
        moved
    }

    fn drive(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                // Flush events produced by the last deliveries.
                self.transmit(Side::Client);
                self.transmit(Side::Server);
                if !self.to_client.is_empty()
                    || !self.to_server.is_empty()
                    || self.client.wants_write()
                    || self.server.wants_write()
                {
                    continue;
                }
                return;
            }
        }
        panic!("pair did not settle");
    }

    /// Advances the virtual clock and fires due timers.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        for side in [Side::Client, Side::Server] {
            let s = self.session(side);
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }

    fn events(&mut self, side: Side) -> Vec<Event> {
        match side {
            Side::Client => std::mem::take(&mut self.client_events),
            Side::Server => std::mem::take(&mut self.server_events),
        }
    }

    fn control_sent(&self, side: Side) -> Vec<ControlMessage> {
        let bytes = match side {
            Side::Client => &self.client_control,
            Side::Server => &self.server_control,
        };
        decode_control_stream(Version::Draft16, bytes).unwrap()
    }

    /// `subscriber` asks for `track()` with `opts`; checks that the other side was asked, once,
    /// for this request, and returns its id. Nobody has answered yet.
    fn request_subscribe(&mut self, subscriber: Side, opts: SubscribeOptions) -> RequestId {
        let req = self.session(subscriber).subscribe(track(), opts).unwrap();
        self.drive();
        let ev = self.events(subscriber.other());
        assert!(
            matches!(&ev[..], [Event::SubscribeRequested { request, .. }] if *request == req),
            "{ev:?}"
        );
        req
    }

    /// `side` asks for `track()` with default options, without moving any bytes.
    fn try_subscribe(&mut self, side: Side) -> Result<RequestId, MoqError> {
        self.session(side)
            .subscribe(track(), SubscribeOptions::default())
    }

    /// Client subscribes to `track()` with `opts`, server accepts from `cache`; returns the
    /// request id.
    fn subscribe_with(&mut self, opts: SubscribeOptions, cache: &TrackCache) -> RequestId {
        let req = self.request_subscribe(Side::Client, opts);
        self.server.accept_subscribe(req, cache).unwrap();
        self.drive();
        req
    }

    /// Client subscribes to `track()` with `filter`, server accepts from `cache`; returns the
    /// request id.
    fn subscribe(&mut self, filter: SubscriptionFilter, cache: &TrackCache) -> RequestId {
        self.subscribe_with(filtered(filter), cache)
    }

    /// A live subscription: `NextGroupStart` on a track whose cache holds group 0. The client's
    /// events so far (SUBSCRIBE_OK) are dropped.
    fn subscribe_live(&mut self) -> RequestId {
        let req = self.subscribe(SubscriptionFilter::NextGroupStart, &cache_with(0..1));
        self.events(Side::Client);
        req
    }

    /// The server hands its session each of `groups` of `track()` (payload `payload(g)`),
    /// without moving any bytes.
    fn queue_groups(&mut self, groups: impl IntoIterator<Item = u64>) {
        for g in groups {
            self.server
                .send_group(&track(), GroupId(g), payload(g))
                .unwrap();
        }
    }

    /// `queue_groups`, then `drive`.
    fn send_groups(&mut self, groups: impl IntoIterator<Item = u64>) {
        self.queue_groups(groups);
        self.drive();
    }

    /// Groups of the objects `side` received for `request` since its events were last taken.
    fn groups(&mut self, side: Side, request: RequestId) -> Vec<u64> {
        groups_of(&self.events(side), request)
    }

    /// Client sends a standalone FETCH of groups `first..=last` of `track()`; checks the server
    /// was asked for exactly that, and returns the request id.
    fn request_fetch(&mut self, first: u64, last: u64) -> RequestId {
        let f = self
            .client
            .fetch(track(), Location::new(first, 0), Location::new(last, 0))
            .unwrap();
        self.drive();
        self.expect_fetch_requested(f, first, last);
        f
    }

    /// Client sends a joining FETCH for subscription `sub`; checks the server was asked for
    /// groups `first..=last`, and returns the request id.
    fn request_joining_fetch(
        &mut self,
        sub: RequestId,
        start: JoiningStart,
        first: u64,
        last: u64,
    ) -> RequestId {
        let f = self.client.joining_fetch(sub, start).unwrap();
        self.drive();
        self.expect_fetch_requested(f, first, last);
        f
    }

    /// The server's only new event is a FETCH of groups `first..=last` of `track()`.
    fn expect_fetch_requested(&mut self, request: RequestId, first: u64, last: u64) {
        assert_eq!(
            self.events(Side::Server),
            vec![Event::FetchRequested {
                request,
                track: track(),
                first: GroupId(first),
                last: GroupId(last)
            }]
        );
    }

    /// Server answers FETCH `request` from `cache`, then `drive`.
    fn serve_fetch(&mut self, request: RequestId, cache: &TrackCache) {
        self.server.accept_fetch(request, cache).unwrap();
        self.drive();
    }

    /// `side` takes `bytes` on its control stream, as if the peer had sent them.
    fn control_in(&mut self, side: Side, bytes: &[u8]) -> Result<(), MoqError> {
        let now = self.now;
        self.session(side)
            .handle_stream_data(now, QuicStreamId::CONTROL, bytes, false)
    }

    /// `side` takes `msg` on its control stream and accepts it; returns what it wants to send
    /// in answer (not delivered).
    fn inject(&mut self, side: Side, msg: ControlMessage) -> Vec<Wire> {
        self.control_in(side, &raw(msg)).unwrap();
        self.transmit(side)
    }

    /// `side` takes `bytes` on its control stream, which must fail; returns the session code
    /// it closed with.
    fn violation(&mut self, side: Side, bytes: &[u8]) -> Option<u64> {
        assert!(self.control_in(side, bytes).is_err());
        self.closed_code(side)
    }

    /// The session code `side` closed with, if it closed with one.
    fn closed_code(&mut self, side: Side) -> Option<u64> {
        match &self.session(side).phase {
            Phase::Closed(e) => e.session_code(),
            _ => None,
        }
    }

    /// `stream_count` of the first PUBLISH_DONE the server sent.
    fn publish_done_stream_count(&self) -> Option<u64> {
        self.control_sent(Side::Server)
            .into_iter()
            .find_map(|m| match m {
                ControlMessage::PublishDone { stream_count, .. } => Some(stream_count),
                _ => None,
            })
    }

    /// `(request, code)` of every REQUEST_ERROR `side` sent on the control stream.
    fn request_errors(&self, side: Side) -> Vec<(RequestId, u64)> {
        self.control_sent(side)
            .into_iter()
            .filter_map(|m| match m {
                ControlMessage::RequestError { request, code, .. } => Some((request, code)),
                _ => None,
            })
            .collect()
    }
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Subscribe options with `filter` and defaults otherwise.
fn filtered(filter: SubscriptionFilter) -> SubscribeOptions {
    SubscribeOptions {
        filter,
        ..Default::default()
    }
}

/// A SUBSCRIBE_OK body with no parameters or extensions.
fn subscribe_ok(request: RequestId, alias: TrackAlias) -> crate::moq::wire::SubscribeOk {
    crate::moq::wire::SubscribeOk {
        request,
        alias,
        params: MessageParams::default(),
        extensions: vec![],
    }
}

/// Groups of the objects in `events` for `request`, in arrival order.
fn groups_of(events: &[Event], request: RequestId) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Object { request: r, object } if *r == request => {
                assert_eq!(object.object, ObjectId(0));
                assert_eq!(object.payload, &payload(object.group.0)[..]);
                Some(object.group.0)
            }
            _ => None,
        })
        .collect()
}

fn raw(msg: ControlMessage) -> Vec<u8> {
    let mut out = Vec::new();
    crate::moq::wire::encode_control(Version::Draft16, &msg, &mut out).unwrap();
    out
}

#[test]
fn setup_exchanges_max_request_id_both_ways() {
    let p = Pair::connected();
    let server_sent = p.control_sent(Side::Server);
    assert!(
        matches!(&server_sent[0], ControlMessage::ServerSetup(s) if s.max_request_id == Some(128))
    );
    let client_sent = p.control_sent(Side::Client);
    assert!(
        matches!(&client_sent[0], ControlMessage::ClientSetup(s) if s.max_request_id == Some(129))
    );
    assert_eq!(p.client.peer_limit, 128);
    assert_eq!(p.server.peer_limit, 129);
}

#[test]
fn announce_and_withdraw() {
    let mut p = Pair::connected();
    let ns = namespace(TrackKind::Chunks);
    let req = p.client.publish_namespace(ns.clone()).unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Server),
        vec![Event::NamespacePublished {
            request: req,
            namespace: ns
        }]
    );
    assert_eq!(
        p.events(Side::Client),
        vec![Event::NamespaceAccepted { request: req }]
    );
    p.client.publish_namespace_done(req).unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Server),
        vec![Event::NamespaceDone { request: req }]
    );
}

#[test]
fn subscribe_next_group_start_gets_only_new_groups() {
    let mut p = Pair::connected();
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache_with(0..6));
    let ev = p.events(Side::Client);
    assert!(ev.contains(&Event::Subscribed {
        request: req,
        alias: TrackAlias(0),
        largest: Some(Location::new(5, 0))
    }));
    assert!(groups_of(&ev, req).is_empty());
    p.send_groups([6]);
    assert_eq!(p.groups(Side::Client, req), vec![6]);
}

#[test]
fn subscribe_largest_object_starts_after_the_current_object() {
    let mut p = Pair::connected();
    let req = p.subscribe(SubscriptionFilter::LargestObject, &cache_with(0..6));
    assert!(p.groups(Side::Client, req).is_empty());
    p.send_groups([6]);
    assert_eq!(p.groups(Side::Client, req), vec![6]);
}

#[test]
fn subscribe_absolute_start_gets_the_current_group_at_once_then_new_ones() {
    let mut p = Pair::connected();
    let from_3 = SubscriptionFilter::AbsoluteStart(Location::new(3, 0));
    let req = p.subscribe(from_3, &cache_with(0..6));
    // Groups 3 and 4 are cached too, but they are older than the current one: FETCH's.
    assert_eq!(p.groups(Side::Client, req), vec![5]);
    p.send_groups([6]);
    assert_eq!(p.groups(Side::Client, req), vec![6]);
}

#[test]
fn subscribe_absolute_range_ends_with_publish_done_after_its_streams() {
    let mut p = Pair::connected();
    let range = SubscriptionFilter::AbsoluteRange(Location::new(2, 0), GroupId(5));
    let req = p.subscribe(range, &cache_with(0..4));
    assert_eq!(p.groups(Side::Client, req), vec![3]);
    p.send_groups(4..7);
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, req), vec![4, 5], "ascending");
    assert_eq!(
        ev.last(),
        Some(&Event::SubscriptionDone {
            request: req,
            status: publish_done::SUBSCRIPTION_ENDED,
            reason: "end of range".into()
        })
    );
    assert_eq!(p.publish_done_stream_count(), Some(3));
}

#[test]
fn end_track_sends_publish_done_with_stream_count() {
    let mut p = Pair::connected();
    let req = p.subscribe_live();
    p.queue_groups(1..4);
    p.server.end_track(&track()).unwrap();
    p.drive();
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, req), vec![1, 2, 3], "ascending by default");
    assert!(matches!(
        ev.last(),
        Some(Event::SubscriptionDone {
            status: publish_done::TRACK_ENDED,
            ..
        })
    ));
    assert_eq!(p.publish_done_stream_count(), Some(3));
}

#[test]
fn late_join_pipelines_subscribe_and_joining_fetch() {
    let mut p = Pair::connected();
    let cache = cache_with(0..10);
    let sub = p.try_subscribe(Side::Client).unwrap();
    // Sent before SUBSCRIBE_OK: no startup delay.
    let fetch = p
        .client
        .joining_fetch(sub, JoiningStart::Relative(0))
        .unwrap();
    p.drive();
    let ev = p.events(Side::Server);
    assert_eq!(
        ev.len(),
        1,
        "the joining fetch waits for the subscription's answer: {ev:?}"
    );
    p.server.accept_subscribe(sub, &cache).unwrap();
    p.drive();
    p.expect_fetch_requested(fetch, 9, 9);
    p.serve_fetch(fetch, &cache);
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, fetch), vec![9]);
    assert!(ev.contains(&Event::FetchAccepted {
        request: fetch,
        end_of_track: false,
        end: Location::new(9, 1)
    }));
    assert!(ev.contains(&Event::FetchComplete { request: fetch }));
    // A relative joining fetch further back, then an absolute one.
    let f2 = p.request_joining_fetch(sub, JoiningStart::Relative(3), 6, 9);
    p.serve_fetch(f2, &cache);
    assert_eq!(p.groups(Side::Client, f2), vec![6, 7, 8, 9]);
    let f3 = p.request_joining_fetch(sub, JoiningStart::Absolute(GroupId(8)), 8, 9);
    p.server
        .reject_request(f3, request_error::INTERNAL_ERROR, "nope")
        .unwrap();
    p.drive();
    assert!(
        matches!(&p.events(Side::Client)[..], [Event::RequestFailed { request, .. }] if *request == f3)
    );
}

#[test]
fn joining_fetch_for_unknown_subscription_is_refused() {
    let mut p = Pair::connected();
    // The server never saw request 40; send the FETCH by hand with the next id.
    p.inject(
        Side::Server,
        ControlMessage::Fetch {
            request: RequestId(0),
            kind: FetchKind::RelativeJoining {
                joining: RequestId(40),
                offset: 0,
            },
            params: MessageParams::default(),
        },
    );
    assert!(p
        .request_errors(Side::Server)
        .contains(&(RequestId(0), request_error::INVALID_JOINING_REQUEST_ID)));
}

#[test]
fn standalone_fetch_of_a_range_and_of_an_evicted_range() {
    let mut p = Pair::connected();
    let cache = bounded_cache(40, 0..10);
    let f = p.request_fetch(6, 8);
    p.serve_fetch(f, &cache);
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, f), vec![6, 7, 8]);
    assert!(ev.contains(&Event::FetchComplete { request: f }));
    let old = p.request_fetch(0, 2);
    p.serve_fetch(old, &cache);
    assert!(matches!(
        &p.events(Side::Client)[..],
        [Event::RequestFailed {
            code: request_error::INVALID_RANGE,
            ..
        }]
    ));
}

#[test]
fn unsubscribe_stops_delivery_and_frees_the_request_id() {
    let mut p = Pair::connected();
    let req = p.subscribe_live();
    let limit_before = p.client.peer_limit;
    p.client.unsubscribe(req).unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Server),
        vec![Event::RequestCancelled { request: req }]
    );
    assert_eq!(
        p.client.peer_limit,
        limit_before + 2,
        "MAX_REQUEST_ID raised when the request completed"
    );
    p.send_groups([1]);
    assert!(p.groups(Side::Client, req).is_empty());
    assert!(!p.server.wants_write());
}

#[test]
fn goaway_blocks_new_requests_and_a_second_one_is_a_violation() {
    let mut p = Pair::connected();
    assert!(matches!(
        p.client.goaway(b"moqt://x"),
        Err(MoqError::Misuse(_))
    ));
    p.server.goaway(b"moqt://elsewhere").unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Client),
        vec![Event::GoAway {
            uri: b"moqt://elsewhere".to_vec()
        }]
    );
    assert!(matches!(
        p.try_subscribe(Side::Client),
        Err(MoqError::Misuse(_))
    ));
    let again = raw(ControlMessage::Goaway { uri: vec![] });
    assert_eq!(p.violation(Side::Client, &again), Some(3));
}

#[test]
fn request_id_limit_blocks_then_max_request_id_unblocks() {
    let mut p = Pair::connected_with_server(|c| c.request_window = 2);
    let cache = cache_with(0..1);
    let a = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    let _b = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    assert_eq!(
        p.try_subscribe(Side::Client),
        Err(MoqError::Blocked { limit: 4 })
    );
    p.drive();
    assert!(p
        .control_sent(Side::Client)
        .contains(&ControlMessage::RequestsBlocked(4)));
    p.client.unsubscribe(a).unwrap();
    p.drive();
    assert!(p
        .control_sent(Side::Server)
        .contains(&ControlMessage::MaxRequestId(6)));
    assert!(p.try_subscribe(Side::Client).is_ok());
}

#[test]
fn peer_request_id_errors_close_with_draft_codes() {
    let sub = |id: u64| {
        raw(ControlMessage::Subscribe(Subscribe {
            request: RequestId(id),
            track: track(),
            params: MessageParams::default(),
        }))
    };
    // Skipping an id: INVALID_REQUEST_ID.
    assert_eq!(Pair::connected().violation(Side::Server, &sub(2)), Some(4));
    // Wrong parity: INVALID_REQUEST_ID.
    assert_eq!(Pair::connected().violation(Side::Server, &sub(1)), Some(4));
    // At the limit: TOO_MANY_REQUESTS.
    let mut p = Pair::connected_with_server(|c| c.request_window = 1);
    p.control_in(Side::Server, &sub(0)).unwrap();
    assert_eq!(p.violation(Side::Server, &sub(2)), Some(7));
}

#[test]
fn malformed_and_unexpected_control_messages_close_the_session() {
    // Non-SETUP first: PROTOCOL_VIOLATION.
    let mut p = Pair::new(Config::default(), Config::default());
    let bad = raw(ControlMessage::MaxRequestId(9));
    assert_eq!(p.violation(Side::Server, &bad), Some(3));
    // Sticky: the same error afterwards, and a CloseConnection output with the code.
    let again = p.control_in(Side::Server, &[]).unwrap_err();
    assert_eq!(again.session_code(), Some(3));
    assert!(matches!(
        p.server.poll_output(),
        Some(Output::CloseConnection { code: 3, .. })
    ));
    assert!(matches!(
        p.server.poll_output(),
        Some(Output::Event(Event::Closed(_)))
    ));
    // Key-value formatting: FORWARD = 7.
    let b = [
        0x03, 0x00, 0x0a, 0x00, 0x01, 0x02, 0x65, 0x63, 0x01, 0x74, 0x01, 0x10, 0x07,
    ];
    assert_eq!(Pair::connected().violation(Side::Server, &b), Some(6));
    // Unknown message type.
    let unknown = [0x3f, 0x00, 0x00];
    assert_eq!(Pair::connected().violation(Side::Server, &unknown), Some(3));
    // MAX_REQUEST_ID that does not increase.
    let lower = raw(ControlMessage::MaxRequestId(3));
    assert_eq!(Pair::connected().violation(Side::Client, &lower), Some(3));
    // Closing the control stream.
    let mut p = Pair::connected();
    assert!(p
        .client
        .handle_stream_data(p.now, QuicStreamId::CONTROL, &[], true)
        .is_err());
    assert_eq!(p.closed_code(Side::Client), Some(3));
    // SUBSCRIBE_OK for nothing we asked.
    let ok = raw(ControlMessage::SubscribeOk(subscribe_ok(
        RequestId(0),
        TrackAlias(1),
    )));
    assert_eq!(Pair::connected().violation(Side::Client, &ok), Some(3));
}

#[test]
fn duplicate_track_alias_closes_the_session() {
    let mut p = Pair::connected();
    let a = p.try_subscribe(Side::Client).unwrap();
    let b = p.try_subscribe(Side::Client).unwrap();
    for request in [a, b] {
        let ok = ControlMessage::SubscribeOk(subscribe_ok(request, TrackAlias(3)));
        let _ = p.control_in(Side::Client, &raw(ok));
    }
    assert_eq!(p.closed_code(Side::Client), Some(5));
}

#[test]
fn lost_setup_times_out_with_control_message_timeout() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.transmit(Side::Client); // CLIENT_SETUP is lost: never delivered.
    p.advance(Duration::from_secs(11));
    assert_eq!(p.closed_code(Side::Server), Some(0x11));
    assert_eq!(p.closed_code(Side::Client), Some(0x11));
}

#[test]
fn data_stream_before_subscribe_ok_is_held_then_delivered() {
    let mut p = Pair::connected();
    let from_2 = filtered(SubscriptionFilter::AbsoluteStart(Location::new(2, 0)));
    let req = p.request_subscribe(Side::Client, from_2);
    p.server.accept_subscribe(req, &cache_with(0..3)).unwrap();
    let wires = p.transmit(Side::Server);
    let (control, data): (Vec<Wire>, Vec<Wire>) = wires
        .into_iter()
        .partition(|w| matches!(w, Wire::Data(QuicStreamId::CONTROL, ..)));
    assert!(!data.is_empty());
    p.deliver(Side::Client, data);
    assert!(p.groups(Side::Client, req).is_empty());
    assert_eq!(p.client.recvs.early_count(), 1);
    p.deliver(Side::Client, control);
    p.transmit(Side::Client);
    assert_eq!(p.groups(Side::Client, req), vec![2]);
    assert_eq!(p.client.recvs.early_bytes, 0);
}

#[test]
fn held_data_streams_are_bounded_in_time_and_count() {
    let mut p = Pair::connected_with_client(|c| c.max_early_streams = 1);
    // Two subgroup streams for alias 9, which no SUBSCRIBE_OK names.
    let stream = |id: u64| {
        Wire::Data(
            QuicStreamId(id),
            vec![0x18, 0x09, 0x01, 0x80, 0x00, 0x01, b'x'],
            false,
        )
    };
    p.deliver(Side::Client, [stream(3), stream(7)]);
    let out: Vec<Wire> = p.transmit(Side::Client);
    assert!(
        out.iter()
            .any(|w| matches!(w, Wire::StopSending(QuicStreamId(7), _))),
        "the second is refused: {out:?}"
    );
    p.advance(Duration::from_secs(3));
    let out: Vec<Wire> = p.transmit(Side::Client);
    assert!(
        out.iter()
            .any(|w| matches!(w, Wire::StopSending(QuicStreamId(3), _))),
        "the first expires: {out:?}"
    );
    assert_eq!(p.client.recvs.early_bytes, 0);
    assert!(p.client.is_established());
}

#[test]
fn slow_subscriber_drops_oldest_groups_and_resets_started_streams() {
    let mut p = Pair::connected_with_server(|c| c.max_subscriber_backlog = 80);
    let req = p.subscribe_live();
    // Congestion: the endpoint can take only a few bytes per step.
    p.budget = 4;
    let big: Arc<[u8]> = vec![1u8; 30].into();
    p.server
        .send_group(&track(), GroupId(1), big.clone())
        .unwrap();
    p.step(); // group 1's stream starts (4 bytes out).
    for g in 2..6 {
        p.server
            .send_group(&track(), GroupId(g), big.clone())
            .unwrap();
    }
    // Collect the server's outputs (events, resets) without writing more bytes.
    p.budget = 0;
    let resets = p.transmit(Side::Server);
    p.to_client.extend(resets);
    let backlog = p.server.sends.backlog(send::Owner::Subscription(req));
    assert!(backlog <= 80, "backlog bounded: {backlog}");
    let dropped: u64 = p
        .events(Side::Server)
        .iter()
        .map(|e| {
            if let Event::GroupsDropped { groups, .. } = e {
                *groups
            } else {
                0
            }
        })
        .sum();
    assert_eq!(dropped, 3);
    p.budget = usize::MAX;
    p.drive();
    let ev = p.events(Side::Client);
    let got: Vec<u64> = ev
        .iter()
        .filter_map(|e| {
            if let Event::Object { object, .. } = e {
                Some(object.group.0)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(got, vec![4, 5], "the newest groups survive, in order");
    assert!(ev.contains(&Event::StreamReset {
        request: req,
        code: crate::moq::error::reset::DELIVERY_TIMEOUT
    }));
    assert!(p.client.is_established());
}

#[test]
fn subscribe_namespace_on_its_own_stream_and_publish_are_not_supported() {
    let mut p = Pair::connected();
    let sn = raw(ControlMessage::SubscribeNamespace {
        request: RequestId(0),
        prefix: TrackNamespace::from_strs(&["ec"]),
        options: 1,
        params: MessageParams::default(),
    });
    p.server
        .handle_stream_data(p.now, QuicStreamId(4), &sn, false)
        .unwrap();
    let out = p.transmit(Side::Server);
    let reply = out.iter().find_map(|w| match w {
        Wire::Data(QuicStreamId(4), d, true) => {
            Some(decode_control_stream(Version::Draft16, d).unwrap())
        }
        _ => None,
    });
    assert!(
        matches!(
            reply.as_deref(),
            Some([ControlMessage::RequestError {
                code: request_error::NOT_SUPPORTED,
                ..
            }])
        ),
        "{out:?}"
    );
    p.inject(
        Side::Server,
        ControlMessage::Publish {
            request: RequestId(2),
            track: track(),
            ok: subscribe_ok(RequestId(2), TrackAlias(0)),
        },
    );
    assert!(p
        .request_errors(Side::Server)
        .contains(&(RequestId(2), request_error::NOT_SUPPORTED)));
    // SUBSCRIBE_NAMESPACE on the control stream is a violation.
    assert_eq!(p.violation(Side::Server, &sn), Some(3));
}

#[test]
fn track_status_reports_largest() {
    let mut p = Pair::connected();
    let req = p.client.track_status(track()).unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Server),
        vec![Event::TrackStatusRequested {
            request: req,
            track: track()
        }]
    );
    p.server
        .accept_track_status(req, &cache_with(0..4))
        .unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Client),
        vec![Event::TrackStatus {
            request: req,
            largest: Some(Location::new(3, 0))
        }]
    );
}

#[test]
fn request_update_pauses_forwarding() {
    let mut p = Pair::connected();
    let req = p.subscribe_live();
    p.client.request_update(req, Some(false), None).unwrap();
    p.drive();
    p.send_groups([1]);
    assert!(p.groups(Side::Client, req).is_empty());
    p.client.request_update(req, Some(true), None).unwrap();
    p.drive();
    p.send_groups([2]);
    assert_eq!(p.groups(Side::Client, req), vec![2]);
}

#[test]
fn server_can_subscribe_to_a_publishing_client() {
    let mut p = Pair::connected();
    let from_0 = filtered(SubscriptionFilter::AbsoluteStart(Location::new(0, 0)));
    let req = p.request_subscribe(Side::Server, from_0);
    assert_eq!(req, RequestId(1));
    p.client.accept_subscribe(req, &cache_with(0..2)).unwrap();
    p.drive();
    assert_eq!(p.groups(Side::Server, req), vec![1]);
    p.client
        .send_group(&track(), GroupId(2), payload(2))
        .unwrap();
    p.drive();
    assert_eq!(p.groups(Side::Server, req), vec![2]);
}

#[test]
fn datagram_objects_are_delivered() {
    let mut p = Pair::connected();
    let req = p.subscribe_live();
    // type 0x04 (object id 0 omitted), alias 0, group 7, priority 1, payload "group-7".
    let mut d = vec![0x04, 0x00, 0x07, 0x01];
    d.extend_from_slice(b"group-7");
    p.client.handle_datagram(&d).unwrap();
    p.transmit(Side::Client);
    assert_eq!(p.groups(Side::Client, req), vec![7]);
}

#[test]
fn truncated_data_stream_is_a_violation() {
    let mut p = Pair::connected();
    p.subscribe_live();
    // alias 0, group 5, then an object claiming 9 bytes but the stream ends after 1.
    let w = Wire::Data(
        QuicStreamId(3),
        vec![0x18, 0x00, 0x05, 0x80, 0x00, 0x09, b'x'],
        true,
    );
    p.deliver(Side::Client, [w]);
    assert_eq!(p.closed_code(Side::Client), Some(3));
}

#[test]
fn a_slow_subscriber_does_not_hold_back_another_session() {
    let mut slow = Pair::connected_with_server(|c| c.max_subscriber_backlog = 100);
    let mut fast = Pair::connected_with_server(|c| c.max_subscriber_backlog = 100);
    let rs = slow.subscribe_live();
    let rf = fast.subscribe_live();
    slow.budget = 0;
    for g in 1..50 {
        slow.queue_groups([g]);
        fast.queue_groups([g]);
        slow.step();
        fast.step();
        assert!(slow.server.sends.backlog(send::Owner::Subscription(rs)) <= 100);
    }
    fast.drive();
    let mut got = fast.groups(Side::Client, rf);
    got.sort();
    assert_eq!(
        got,
        (1..50).collect::<Vec<u64>>(),
        "the fast subscriber gets every group"
    );
    slow.budget = usize::MAX;
    slow.drive();
    let got = slow.groups(Side::Client, rs);
    assert!(
        got.len() < 10 && got.contains(&49),
        "the slow one gets only the newest: {got:?}"
    );
}

/// A live subscription with `order` gets groups 1..=3 queued before any was written.
fn waiting_groups_in(order: Option<GroupOrder>) -> Vec<u64> {
    let mut p = Pair::connected();
    let opts = SubscribeOptions {
        filter: SubscriptionFilter::NextGroupStart,
        group_order: order,
        ..Default::default()
    };
    let req = p.subscribe_with(opts, &cache_with(0..1));
    p.events(Side::Client);
    p.queue_groups(1..4);
    p.drive();
    p.groups(Side::Client, req)
}

#[test]
fn waiting_groups_go_out_ascending_unless_descending_was_asked() {
    assert_eq!(waiting_groups_in(None), vec![1, 2, 3], "publisher default");
    assert_eq!(
        waiting_groups_in(Some(GroupOrder::Ascending)),
        vec![1, 2, 3]
    );
    assert_eq!(
        waiting_groups_in(Some(GroupOrder::Descending)),
        vec![3, 2, 1],
        "an explicit descending request is honoured"
    );
}

#[test]
fn a_subscription_gets_at_most_the_current_group_from_the_cache_whatever_its_filter() {
    let mut p = Pair::connected();
    let cache = cache_with(0..6);
    // Unfiltered (AbsoluteStart {0,0}): the current group only; earlier ones by FETCH.
    let all = p.subscribe(
        SubscriptionFilter::AbsoluteStart(Location::default()),
        &cache,
    );
    assert_eq!(p.groups(Side::Client, all), vec![5]);
    let f = p.request_fetch(0, 4);
    p.serve_fetch(f, &cache);
    assert_eq!(p.groups(Side::Client, f), vec![0, 1, 2, 3, 4]);
    // Asking explicitly for descending order does not bring older groups either.
    let desc = p.subscribe_with(
        SubscribeOptions {
            filter: SubscriptionFilter::AbsoluteStart(Location::new(1, 0)),
            group_order: Some(GroupOrder::Descending),
            ..Default::default()
        },
        &cache,
    );
    assert_eq!(p.groups(Side::Client, desc), vec![5]);
    // A start after the current group: nothing yet.
    let later = p.subscribe(
        SubscriptionFilter::AbsoluteStart(Location::new(7, 0)),
        &cache,
    );
    assert!(p.groups(Side::Client, later).is_empty());
    // A range wholly before the current group: nothing to deliver, PUBLISH_DONE at once.
    let past = p.subscribe(
        SubscriptionFilter::AbsoluteRange(Location::new(1, 0), GroupId(3)),
        &cache,
    );
    let ev = p.events(Side::Client);
    assert!(groups_of(&ev, past).is_empty());
    assert!(ev.contains(&Event::SubscriptionDone {
        request: past,
        status: publish_done::SUBSCRIPTION_ENDED,
        reason: "end of range".into()
    }));
    assert_eq!(p.publish_done_stream_count(), Some(0));
}

#[test]
fn a_group_older_than_one_already_queued_opens_no_stream() {
    let mut p = Pair::connected();
    let sub = p.subscribe(
        SubscriptionFilter::AbsoluteStart(Location::default()),
        &cache_with(0..6),
    );
    assert_eq!(p.groups(Side::Client, sub), vec![5]);
    // The application hands over the group the backlog already sent (it was cached before the
    // SUBSCRIBE was answered), then an older one, then a new one.
    p.send_groups([5, 4]);
    assert!(p.groups(Side::Client, sub).is_empty());
    p.send_groups([6]);
    assert_eq!(p.groups(Side::Client, sub), vec![6]);
    // Out of order while both still wait: the older one is skipped, not queued behind.
    p.queue_groups([8, 7]);
    p.drive();
    assert_eq!(p.groups(Side::Client, sub), vec![8]);
    p.server.end_track(&track()).unwrap();
    p.drive();
    assert!(matches!(
        p.events(Side::Client).last(),
        Some(Event::SubscriptionDone {
            status: publish_done::TRACK_ENDED,
            ..
        })
    ));
    assert_eq!(p.publish_done_stream_count(), Some(3), "groups 5, 6 and 8");
}

#[test]
fn refused_subscribe_frees_its_request_id() {
    let mut p = Pair::connected();
    let req = p.request_subscribe(Side::Client, SubscribeOptions::default());
    let before = p.client.peer_limit;
    p.server
        .reject_request(req, request_error::DOES_NOT_EXIST, "no such track")
        .unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Client),
        vec![Event::RequestFailed {
            request: req,
            code: request_error::DOES_NOT_EXIST,
            reason: "no such track".into()
        }]
    );
    assert_eq!(p.client.peer_limit, before + 2);
    assert!(
        matches!(
            p.server.reject_request(req, 0, ""),
            Err(MoqError::Misuse(_))
        ),
        "answered once only"
    );
}

#[test]
fn fetch_cancel_resets_the_response_stream() {
    let mut p = Pair::connected();
    let f = p.request_fetch(0, 4);
    p.server.accept_fetch(f, &cache_with(0..5)).unwrap();
    p.budget = 12;
    p.step(); // FETCH_OK and the first bytes of the stream go out.
    p.client.cancel_fetch(f).unwrap();
    p.budget = usize::MAX;
    // FETCH_CANCEL reaches the server before it writes more of the stream.
    let cancel = p.transmit(Side::Client);
    p.deliver(Side::Server, cancel);
    let out = p.transmit(Side::Server);
    assert!(
        out.iter().any(|w| matches!(
            w,
            Wire::Reset(QuicStreamId(3), crate::moq::error::reset::CANCELLED)
        )),
        "{out:?}"
    );
    assert!(p
        .events(Side::Server)
        .contains(&Event::RequestCancelled { request: f }));
    p.deliver(Side::Client, out);
    p.drive();
    assert!(!p.server.wants_write());
    assert!(p.client.is_established() && p.server.is_established());
}

#[test]
fn publish_namespace_cancel_is_reported() {
    let mut p = Pair::connected();
    let req = p
        .client
        .publish_namespace(namespace(TrackKind::Manifests))
        .unwrap();
    p.drive();
    p.events(Side::Client);
    p.inject(
        Side::Client,
        ControlMessage::PublishNamespaceCancel {
            request: req,
            code: 0x1,
            reason: "go".into(),
        },
    );
    assert_eq!(
        p.events(Side::Client),
        vec![Event::NamespaceCancelled {
            request: req,
            code: 0x1,
            reason: "go".into()
        }]
    );
}

#[test]
fn early_timeout_calls_are_harmless_and_closed_sessions_stay_closed() {
    let mut p = Pair::connected();
    assert_eq!(p.client.poll_timeout(), None, "nothing pending after setup");
    p.client.handle_timeout(p.now);
    assert!(p.client.is_established());
    p.client.close(SessionCode::NoError, "bye");
    p.drive();
    assert!(matches!(
        p.try_subscribe(Side::Server),
        Err(MoqError::Closed {
            by_peer: true,
            code: 0,
            ..
        })
    ));
    assert!(matches!(
        p.try_subscribe(Side::Client),
        Err(MoqError::Closed { by_peer: false, .. })
    ));
    assert_eq!(p.client.poll_write(100), None);
}

#[test]
fn publish_done_waits_for_counted_streams_then_gives_up_after_a_deadline() {
    let mut p = Pair::connected();
    let req = p.subscribe_live();
    // The publisher claims 2 streams, but none arrives (say, both reset before their headers).
    p.inject(
        Side::Client,
        ControlMessage::PublishDone {
            request: req,
            status: 2,
            stream_count: 2,
            reason: String::new(),
        },
    );
    assert!(p.events(Side::Client).is_empty(), "waits for the streams");
    let deadline = p
        .client
        .poll_timeout()
        .expect("a deadline for the missing streams");
    p.advance(deadline - p.now);
    p.transmit(Side::Client);
    assert_eq!(
        p.events(Side::Client),
        vec![Event::SubscriptionDone {
            request: req,
            status: 2,
            reason: String::new()
        }]
    );
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn unsubscribe_stops_streams_in_flight() {
    let mut p = Pair::connected();
    let req = p.subscribe_live();
    p.server
        .send_group(&track(), GroupId(1), vec![9u8; 100].into())
        .unwrap();
    p.budget = 10;
    p.step(); // the header and a few payload bytes arrive
    p.client.unsubscribe(req).unwrap();
    p.budget = usize::MAX;
    let out = p.transmit(Side::Client);
    assert!(
        out.iter()
            .any(|w| matches!(w, Wire::StopSending(QuicStreamId(3), _))),
        "{out:?}"
    );
    p.deliver(Side::Server, out);
    p.drive();
    assert!(p
        .events(Side::Client)
        .iter()
        .all(|e| !matches!(e, Event::Object { .. })));
    assert!(p.client.is_established() && p.server.is_established());
    assert!(!p.server.wants_write());
}
