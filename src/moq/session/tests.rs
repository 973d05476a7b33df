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
    Data(StreamId, Vec<u8>, bool),
    Reset(StreamId, u64),
    StopSending(StreamId, u64),
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

fn cache_with(groups: std::ops::Range<u64>) -> TrackCache {
    let mut c = TrackCache::new(1 << 20);
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
            if let Wire::Data(StreamId::CONTROL, d, _) = w {
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

    /// Client subscribes to `track()`, server accepts from `cache`; returns the request id.
    fn subscribe(&mut self, filter: SubscriptionFilter, cache: &TrackCache) -> RequestId {
        let opts = SubscribeOptions {
            filter,
            ..Default::default()
        };
        let req = self.client.subscribe(track(), opts).unwrap();
        self.drive();
        let ev = self.events(Side::Server);
        assert!(
            matches!(&ev[..], [Event::SubscribeRequested { request, .. }] if *request == req),
            "{ev:?}"
        );
        self.server.accept_subscribe(req, cache).unwrap();
        self.drive();
        req
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

fn closed_code(s: &Session) -> Option<u64> {
    match &s.phase {
        Phase::Closed(e) => e.session_code(),
        _ => None,
    }
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
    let ns = BroadcastTrack::new("abc", TrackKind::Chunks)
        .unwrap()
        .namespace();
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
    let mut cache = cache_with(0..6);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    let ev = p.events(Side::Client);
    assert!(ev.contains(&Event::Subscribed {
        request: req,
        alias: TrackAlias(0),
        largest: Some(Location::new(5, 0))
    }));
    assert!(groups_of(&ev, req).is_empty());
    cache.push(GroupId(6), payload(6)).unwrap();
    p.server
        .send_group(&track(), GroupId(6), payload(6))
        .unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![6]);
}

#[test]
fn subscribe_largest_object_starts_after_the_current_object() {
    let mut p = Pair::connected();
    let cache = cache_with(0..6);
    let req = p.subscribe(SubscriptionFilter::LargestObject, &cache);
    assert!(groups_of(&p.events(Side::Client), req).is_empty());
    p.server
        .send_group(&track(), GroupId(6), payload(6))
        .unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![6]);
}

#[test]
fn subscribe_absolute_start_gets_cached_groups_at_once_newest_first() {
    let mut p = Pair::connected();
    let cache = cache_with(0..6);
    let req = p.subscribe(
        SubscriptionFilter::AbsoluteStart(Location::new(3, 0)),
        &cache,
    );
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![5, 4, 3]);
    p.server
        .send_group(&track(), GroupId(6), payload(6))
        .unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![6]);
}

#[test]
fn subscribe_absolute_range_ends_with_publish_done_after_its_streams() {
    let mut p = Pair::connected();
    let cache = cache_with(0..4);
    let req = p.subscribe(
        SubscriptionFilter::AbsoluteRange(Location::new(2, 0), GroupId(5)),
        &cache,
    );
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![3, 2]);
    for g in 4..7 {
        p.server
            .send_group(&track(), GroupId(g), payload(g))
            .unwrap();
    }
    p.drive();
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, req), vec![5, 4], "newest first");
    assert_eq!(
        ev.last(),
        Some(&Event::SubscriptionDone {
            request: req,
            status: publish_done::SUBSCRIPTION_ENDED,
            reason: "end of range".into()
        })
    );
    let done = p
        .control_sent(Side::Server)
        .into_iter()
        .find(|m| matches!(m, ControlMessage::PublishDone { .. }));
    assert!(
        matches!(
            done,
            Some(ControlMessage::PublishDone {
                stream_count: 4,
                ..
            })
        ),
        "{done:?}"
    );
}

#[test]
fn end_track_sends_publish_done_with_stream_count() {
    let mut p = Pair::connected();
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    for g in 1..4 {
        p.server
            .send_group(&track(), GroupId(g), payload(g))
            .unwrap();
    }
    p.server.end_track(&track()).unwrap();
    p.drive();
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, req), vec![3, 2, 1]);
    assert!(matches!(
        ev.last(),
        Some(Event::SubscriptionDone {
            status: publish_done::TRACK_ENDED,
            ..
        })
    ));
    let done = p
        .control_sent(Side::Server)
        .into_iter()
        .find(|m| matches!(m, ControlMessage::PublishDone { .. }));
    assert!(matches!(
        done,
        Some(ControlMessage::PublishDone {
            stream_count: 3,
            ..
        })
    ));
}

#[test]
fn late_join_pipelines_subscribe_and_joining_fetch() {
    let mut p = Pair::connected();
    let cache = cache_with(0..10);
    let sub = p
        .client
        .subscribe(track(), SubscribeOptions::default())
        .unwrap();
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
    let ev = p.events(Side::Server);
    assert_eq!(
        ev,
        vec![Event::FetchRequested {
            request: fetch,
            track: track(),
            first: GroupId(9),
            last: GroupId(9)
        }]
    );
    p.server.accept_fetch(fetch, &cache).unwrap();
    p.drive();
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, fetch), vec![9]);
    assert!(ev.contains(&Event::FetchAccepted {
        request: fetch,
        end_of_track: false,
        end: Location::new(9, 0)
    }));
    assert!(ev.contains(&Event::FetchComplete { request: fetch }));
    // A relative joining fetch further back, then an absolute one.
    let f2 = p
        .client
        .joining_fetch(sub, JoiningStart::Relative(3))
        .unwrap();
    p.drive();
    assert!(matches!(
        &p.events(Side::Server)[..],
        [Event::FetchRequested {
            first: GroupId(6),
            last: GroupId(9),
            ..
        }]
    ));
    p.server.accept_fetch(f2, &cache).unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Client), f2), vec![6, 7, 8, 9]);
    let f3 = p
        .client
        .joining_fetch(sub, JoiningStart::Absolute(GroupId(8)))
        .unwrap();
    p.drive();
    assert!(matches!(
        &p.events(Side::Server)[..],
        [Event::FetchRequested {
            first: GroupId(8),
            last: GroupId(9),
            ..
        }]
    ));
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
    let fetch = ControlMessage::Fetch {
        request: RequestId(0),
        kind: FetchKind::RelativeJoining {
            joining: RequestId(40),
            offset: 0,
        },
        params: MessageParams::default(),
    };
    p.server
        .handle_stream_data(p.now, StreamId::CONTROL, &raw(fetch), false)
        .unwrap();
    p.transmit(Side::Server);
    let sent = decode_control_stream(Version::Draft16, &p.server_control).unwrap();
    assert!(sent.iter().any(|m| matches!(
        m,
        ControlMessage::RequestError {
            code: request_error::INVALID_JOINING_REQUEST_ID,
            ..
        }
    )));
}

#[test]
fn standalone_fetch_of_a_range_and_of_an_evicted_range() {
    let mut p = Pair::connected();
    let mut cache = TrackCache::new(40);
    for g in 0..10 {
        cache.push(GroupId(g), payload(g)).unwrap();
    }
    let f = p
        .client
        .fetch(track(), Location::new(6, 0), Location::new(8, 0))
        .unwrap();
    p.drive();
    assert!(matches!(
        &p.events(Side::Server)[..],
        [Event::FetchRequested {
            first: GroupId(6),
            last: GroupId(8),
            ..
        }]
    ));
    p.server.accept_fetch(f, &cache).unwrap();
    p.drive();
    let ev = p.events(Side::Client);
    assert_eq!(groups_of(&ev, f), vec![6, 7, 8]);
    assert!(ev.contains(&Event::FetchComplete { request: f }));
    let old = p
        .client
        .fetch(track(), Location::new(0, 0), Location::new(2, 0))
        .unwrap();
    p.drive();
    p.events(Side::Server);
    p.server.accept_fetch(old, &cache).unwrap();
    p.drive();
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
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    p.events(Side::Client);
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
    p.server
        .send_group(&track(), GroupId(1), payload(1))
        .unwrap();
    p.drive();
    assert!(groups_of(&p.events(Side::Client), req).is_empty());
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
        p.client.subscribe(track(), SubscribeOptions::default()),
        Err(MoqError::Misuse(_))
    ));
    let again = raw(ControlMessage::Goaway { uri: vec![] });
    assert!(p
        .client
        .handle_stream_data(p.now, StreamId::CONTROL, &again, false)
        .is_err());
    assert_eq!(closed_code(&p.client), Some(3));
}

#[test]
fn request_id_limit_blocks_then_max_request_id_unblocks() {
    let server = Config {
        request_window: 2,
        ..Config::default()
    };
    let mut p = Pair::connected_with(Config::default(), server);
    let cache = cache_with(0..1);
    let a = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    let _b = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    assert_eq!(
        p.client.subscribe(track(), SubscribeOptions::default()),
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
    assert!(p
        .client
        .subscribe(track(), SubscribeOptions::default())
        .is_ok());
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
    let mut p = Pair::connected();
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &sub(2), false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(4));
    // Wrong parity: INVALID_REQUEST_ID.
    let mut p = Pair::connected();
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &sub(1), false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(4));
    // At the limit: TOO_MANY_REQUESTS.
    let mut p = Pair::connected_with(
        Config::default(),
        Config {
            request_window: 1,
            ..Config::default()
        },
    );
    p.server
        .handle_stream_data(p.now, StreamId::CONTROL, &sub(0), false)
        .unwrap();
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &sub(2), false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(7));
}

#[test]
fn malformed_and_unexpected_control_messages_close_the_session() {
    // Non-SETUP first: PROTOCOL_VIOLATION.
    let mut p = Pair::new(Config::default(), Config::default());
    let bad = raw(ControlMessage::MaxRequestId(9));
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &bad, false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(3));
    // Sticky: the same error afterwards, and a CloseConnection output with the code.
    let again = p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &[], false)
        .unwrap_err();
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
    let mut p = Pair::connected();
    let b = [
        0x03, 0x00, 0x0a, 0x00, 0x01, 0x02, 0x65, 0x63, 0x01, 0x74, 0x01, 0x10, 0x07,
    ];
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &b, false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(6));
    // Unknown message type.
    let mut p = Pair::connected();
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &[0x3f, 0x00, 0x00], false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(3));
    // MAX_REQUEST_ID that does not increase.
    let mut p = Pair::connected();
    assert!(p
        .client
        .handle_stream_data(
            p.now,
            StreamId::CONTROL,
            &raw(ControlMessage::MaxRequestId(3)),
            false
        )
        .is_err());
    assert_eq!(closed_code(&p.client), Some(3));
    // Closing the control stream.
    let mut p = Pair::connected();
    assert!(p
        .client
        .handle_stream_data(p.now, StreamId::CONTROL, &[], true)
        .is_err());
    assert_eq!(closed_code(&p.client), Some(3));
    // SUBSCRIBE_OK for nothing we asked.
    let mut p = Pair::connected();
    let ok = ControlMessage::SubscribeOk(crate::moq::wire::SubscribeOk {
        request: RequestId(0),
        alias: TrackAlias(1),
        params: MessageParams::default(),
        extensions: vec![],
    });
    assert!(p
        .client
        .handle_stream_data(p.now, StreamId::CONTROL, &raw(ok), false)
        .is_err());
    assert_eq!(closed_code(&p.client), Some(3));
}

#[test]
fn duplicate_track_alias_closes_the_session() {
    let mut p = Pair::connected();
    let a = p
        .client
        .subscribe(track(), SubscribeOptions::default())
        .unwrap();
    let b = p
        .client
        .subscribe(track(), SubscribeOptions::default())
        .unwrap();
    for request in [a, b] {
        let ok = ControlMessage::SubscribeOk(crate::moq::wire::SubscribeOk {
            request,
            alias: TrackAlias(3),
            params: MessageParams::default(),
            extensions: vec![],
        });
        let _ = p
            .client
            .handle_stream_data(p.now, StreamId::CONTROL, &raw(ok), false);
    }
    assert_eq!(closed_code(&p.client), Some(5));
}

#[test]
fn lost_setup_times_out_with_control_message_timeout() {
    let mut p = Pair::new(Config::default(), Config::default());
    p.transmit(Side::Client); // CLIENT_SETUP is lost: never delivered.
    p.advance(Duration::from_secs(11));
    assert_eq!(closed_code(&p.server), Some(0x11));
    assert_eq!(closed_code(&p.client), Some(0x11));
}

#[test]
fn data_stream_before_subscribe_ok_is_held_then_delivered() {
    let mut p = Pair::connected();
    let cache = cache_with(0..3);
    let req = p
        .client
        .subscribe(
            track(),
            SubscribeOptions {
                filter: SubscriptionFilter::AbsoluteStart(Location::new(2, 0)),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    p.events(Side::Server);
    p.server.accept_subscribe(req, &cache).unwrap();
    let wires = p.transmit(Side::Server);
    let (control, data): (Vec<Wire>, Vec<Wire>) = wires
        .into_iter()
        .partition(|w| matches!(w, Wire::Data(StreamId::CONTROL, ..)));
    assert!(!data.is_empty());
    p.deliver(Side::Client, data);
    assert!(groups_of(&p.events(Side::Client), req).is_empty());
    assert_eq!(p.client.recvs.early_count(), 1);
    p.deliver(Side::Client, control);
    p.transmit(Side::Client);
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![2]);
    assert_eq!(p.client.recvs.early_bytes, 0);
}

#[test]
fn held_data_streams_are_bounded_in_time_and_count() {
    let client = Config {
        max_early_streams: 1,
        ..Config::default()
    };
    let mut p = Pair::connected_with(client, Config::default());
    // Two subgroup streams for alias 9, which no SUBSCRIBE_OK names.
    let stream = |id: u64| {
        Wire::Data(
            StreamId(id),
            vec![0x18, 0x09, 0x01, 0x80, 0x00, 0x01, b'x'],
            false,
        )
    };
    p.deliver(Side::Client, [stream(3), stream(7)]);
    let out: Vec<Wire> = p.transmit(Side::Client);
    assert!(
        out.iter()
            .any(|w| matches!(w, Wire::StopSending(StreamId(7), _))),
        "the second is refused: {out:?}"
    );
    p.advance(Duration::from_secs(3));
    let out: Vec<Wire> = p.transmit(Side::Client);
    assert!(
        out.iter()
            .any(|w| matches!(w, Wire::StopSending(StreamId(3), _))),
        "the first expires: {out:?}"
    );
    assert_eq!(p.client.recvs.early_bytes, 0);
    assert!(p.client.is_established());
}

#[test]
fn slow_subscriber_drops_oldest_groups_and_resets_started_streams() {
    let server = Config {
        max_subscriber_backlog: 80,
        ..Config::default()
    };
    let mut p = Pair::connected_with(Config::default(), server);
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    p.events(Side::Client);
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
    assert_eq!(got, vec![5, 4], "newest groups survive, newest first");
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
        .handle_stream_data(p.now, StreamId(4), &sn, false)
        .unwrap();
    let out = p.transmit(Side::Server);
    let reply = out.iter().find_map(|w| match w {
        Wire::Data(StreamId(4), d, true) => {
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
    let publish = raw(ControlMessage::Publish {
        request: RequestId(2),
        track: track(),
        ok: crate::moq::wire::SubscribeOk {
            request: RequestId(2),
            alias: TrackAlias(0),
            params: MessageParams::default(),
            extensions: vec![],
        },
    });
    p.server
        .handle_stream_data(p.now, StreamId::CONTROL, &publish, false)
        .unwrap();
    p.transmit(Side::Server);
    let sent = p.control_sent(Side::Server);
    assert!(sent.iter().any(|m| matches!(
        m,
        ControlMessage::RequestError {
            request: RequestId(2),
            code: request_error::NOT_SUPPORTED,
            ..
        }
    )));
    // SUBSCRIBE_NAMESPACE on the control stream is a violation.
    assert!(p
        .server
        .handle_stream_data(p.now, StreamId::CONTROL, &sn, false)
        .is_err());
    assert_eq!(closed_code(&p.server), Some(3));
}

#[test]
fn track_status_reports_largest() {
    let mut p = Pair::connected();
    let cache = cache_with(0..4);
    let req = p.client.track_status(track()).unwrap();
    p.drive();
    assert_eq!(
        p.events(Side::Server),
        vec![Event::TrackStatusRequested {
            request: req,
            track: track()
        }]
    );
    p.server.accept_track_status(req, &cache).unwrap();
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
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    p.client.request_update(req, Some(false), None).unwrap();
    p.drive();
    p.server
        .send_group(&track(), GroupId(1), payload(1))
        .unwrap();
    p.drive();
    assert!(groups_of(&p.events(Side::Client), req).is_empty());
    p.client.request_update(req, Some(true), None).unwrap();
    p.drive();
    p.server
        .send_group(&track(), GroupId(2), payload(2))
        .unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![2]);
}

#[test]
fn server_can_subscribe_to_a_publishing_client() {
    let mut p = Pair::connected();
    let cache = cache_with(0..2);
    let req = p
        .server
        .subscribe(
            track(),
            SubscribeOptions {
                filter: SubscriptionFilter::AbsoluteStart(Location::new(0, 0)),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(req, RequestId(1));
    p.drive();
    assert!(matches!(
        &p.events(Side::Client)[..],
        [Event::SubscribeRequested { .. }]
    ));
    p.client.accept_subscribe(req, &cache).unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Server), req), vec![1, 0]);
}

#[test]
fn datagram_objects_are_delivered() {
    let mut p = Pair::connected();
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    p.events(Side::Client);
    // type 0x04 (object id 0 omitted), alias 0, group 7, priority 1, payload "group-7".
    let mut d = vec![0x04, 0x00, 0x07, 0x01];
    d.extend_from_slice(b"group-7");
    p.client.handle_datagram(&d).unwrap();
    p.transmit(Side::Client);
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![7]);
}

#[test]
fn truncated_data_stream_is_a_violation() {
    let mut p = Pair::connected();
    let cache = cache_with(0..1);
    let _req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    // alias 0, group 5, then an object claiming 9 bytes but the stream ends after 1.
    let w = Wire::Data(
        StreamId(3),
        vec![0x18, 0x00, 0x05, 0x80, 0x00, 0x09, b'x'],
        true,
    );
    p.deliver(Side::Client, [w]);
    assert_eq!(closed_code(&p.client), Some(3));
}

#[test]
fn a_slow_subscriber_does_not_hold_back_another_session() {
    let server = Config {
        max_subscriber_backlog: 100,
        ..Config::default()
    };
    let mut slow = Pair::connected_with(Config::default(), server.clone());
    let mut fast = Pair::connected_with(Config::default(), server);
    let mut cache = cache_with(0..1);
    let rs = slow.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    let rf = fast.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    slow.budget = 0;
    for g in 1..50 {
        cache.push(GroupId(g), payload(g)).unwrap();
        slow.server
            .send_group(&track(), GroupId(g), cache.get(GroupId(g)).unwrap().clone())
            .unwrap();
        fast.server
            .send_group(&track(), GroupId(g), cache.get(GroupId(g)).unwrap().clone())
            .unwrap();
        slow.step();
        fast.step();
        assert!(slow.server.sends.backlog(send::Owner::Subscription(rs)) <= 100);
    }
    fast.drive();
    let mut got = groups_of(&fast.events(Side::Client), rf);
    got.sort();
    assert_eq!(
        got,
        (1..50).collect::<Vec<u64>>(),
        "the fast subscriber gets every group"
    );
    slow.budget = usize::MAX;
    slow.drive();
    let got = groups_of(&slow.events(Side::Client), rs);
    assert!(
        got.len() < 10 && got.contains(&49),
        "the slow one gets only the newest: {got:?}"
    );
}

#[test]
fn ascending_order_is_honoured() {
    let mut p = Pair::connected();
    let cache = cache_with(0..4);
    let opts = SubscribeOptions {
        filter: SubscriptionFilter::AbsoluteStart(Location::new(1, 0)),
        group_order: Some(GroupOrder::Ascending),
        ..Default::default()
    };
    let req = p.client.subscribe(track(), opts).unwrap();
    p.drive();
    p.events(Side::Server);
    p.server.accept_subscribe(req, &cache).unwrap();
    p.drive();
    assert_eq!(groups_of(&p.events(Side::Client), req), vec![1, 2, 3]);
}

#[test]
fn refused_subscribe_frees_its_request_id() {
    let mut p = Pair::connected();
    let req = p
        .client
        .subscribe(track(), SubscribeOptions::default())
        .unwrap();
    p.drive();
    p.events(Side::Server);
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
    let cache = cache_with(0..5);
    let f = p
        .client
        .fetch(track(), Location::new(0, 0), Location::new(4, 0))
        .unwrap();
    p.drive();
    p.events(Side::Server);
    p.server.accept_fetch(f, &cache).unwrap();
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
            Wire::Reset(StreamId(3), crate::moq::error::reset::CANCELLED)
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
    let ns = BroadcastTrack::new("abc", TrackKind::Manifests)
        .unwrap()
        .namespace();
    let req = p.client.publish_namespace(ns).unwrap();
    p.drive();
    p.events(Side::Client);
    let cancel = raw(ControlMessage::PublishNamespaceCancel {
        request: req,
        code: 0x1,
        reason: "go".into(),
    });
    p.client
        .handle_stream_data(p.now, StreamId::CONTROL, &cancel, false)
        .unwrap();
    p.transmit(Side::Client);
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
        p.server.subscribe(track(), SubscribeOptions::default()),
        Err(MoqError::Closed {
            by_peer: true,
            code: 0,
            ..
        })
    ));
    assert!(matches!(
        p.client.subscribe(track(), SubscribeOptions::default()),
        Err(MoqError::Closed { by_peer: false, .. })
    ));
    assert_eq!(p.client.poll_write(100), None);
}

#[test]
fn publish_done_waits_for_counted_streams_then_gives_up_after_a_deadline() {
    let mut p = Pair::connected();
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    p.events(Side::Client);
    // The publisher claims 2 streams, but none arrives (say, both reset before their headers).
    let done = raw(ControlMessage::PublishDone {
        request: req,
        status: 2,
        stream_count: 2,
        reason: String::new(),
    });
    p.client
        .handle_stream_data(p.now, StreamId::CONTROL, &done, false)
        .unwrap();
    p.transmit(Side::Client);
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
    let cache = cache_with(0..1);
    let req = p.subscribe(SubscriptionFilter::NextGroupStart, &cache);
    p.events(Side::Client);
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
            .any(|w| matches!(w, Wire::StopSending(StreamId(3), _))),
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
