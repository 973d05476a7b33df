//! The `net::Endpoint` API as the node's pipeline uses it, over real QUIC on loopback: a
//! listening publisher and a pinned dialing subscriber, a live group pushed by the publisher
//! after the subscription, a FETCH, and a graceful shutdown that the subscriber sees; and a
//! handler on the endpoint thread (the node's track server) fed groups by value through the
//! endpoint's feed, reaching several subscribers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ec_node::crypto::NodeKey;
use ec_node::moq::cache::TrackCache;
use ec_node::moq::session::{Event, SubscribeOptions};
use ec_node::moq::track::{BroadcastTrack, TrackKind};
use ec_node::moq::{GroupId, Location, SessionCode};
use ec_node::net::{
    ConnId, Endpoint, EndpointAddr, NetError, NetEvent, PeerCheck, Settings, Target,
};

/// The next session event (or end) of an endpoint, within 20 s.
fn next(ep: &mut Endpoint) -> NetEvent {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(ev) = ep.next_event(Duration::from_millis(50)).unwrap() {
            return ev;
        }
    }
    panic!("no event within 20 s");
}

/// Waits for a session event matching `pred`, answering nothing else.
fn wait_for(ep: &mut Endpoint, pred: impl Fn(&Event) -> bool) -> (ConnId, Event) {
    loop {
        match next(ep) {
            NetEvent::Session { conn, event } if pred(&event) => return (conn, event),
            NetEvent::Disconnected { why, .. } => panic!("disconnected: {why}"),
            _ => {}
        }
    }
}

#[test]
fn a_pinned_subscriber_gets_live_groups_and_a_fetch_then_sees_the_publisher_leave() {
    let key = NodeKey::from_seed([42; 32]);
    let track = BroadcastTrack::new("loopback", TrackKind::Chunks)
        .unwrap()
        .full_name();
    let mut cache = TrackCache::new(1 << 20);
    for g in 0..3u64 {
        cache
            .push(GroupId(g), vec![g as u8; 1000 + g as usize].into())
            .unwrap();
    }

    let mut server =
        Endpoint::listen("127.0.0.1:0".parse().unwrap(), &key, Settings::default()).unwrap();
    let addr = EndpointAddr {
        node: Some(key.node_id()),
        host: "127.0.0.1".into(),
        port: server.local_addr().port(),
    };
    let (mut client, conn) = Endpoint::dial(
        &Target::Node(addr),
        PeerCheck::Pinned(key.node_id()),
        Settings::default(),
    )
    .unwrap();

    // The subscriber learns the proven node id, then subscribes from the next group.
    match next(&mut client) {
        NetEvent::Connected { node, .. } => assert_eq!(node, Some(key.node_id())),
        other => panic!("{other:?}"),
    }
    wait_for(&mut client, |e| matches!(e, Event::SetupComplete { .. }));
    let t = track.clone();
    let sub = client
        .call(conn, move |s| {
            s.subscribe(
                t,
                SubscribeOptions {
                    filter: ec_node::moq::SubscriptionFilter::NextGroupStart,
                    ..SubscribeOptions::default()
                },
            )
        })
        .unwrap()
        .unwrap();

    // The publisher answers from its cache, then publishes group 3 live.
    let (sconn, event) = wait_for(&mut server, |e| {
        matches!(e, Event::SubscribeRequested { .. })
    });
    let Event::SubscribeRequested { request, .. } = event else {
        unreachable!()
    };
    let shared = Arc::new(cache.clone());
    let c = shared.clone();
    server
        .call(sconn, move |s| s.accept_subscribe(request, &c))
        .unwrap()
        .unwrap();
    wait_for(&mut client, |e| matches!(e, Event::Subscribed { .. }));
    // Large enough to leave in many GSO batches. A connection the endpoint does not have is
    // an error, not a panic.
    let live: Arc<[u8]> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (t, p) = (track.clone(), live.clone());
    server
        .call(sconn, move |s| s.send_group(&t, GroupId(3), p))
        .unwrap()
        .unwrap();
    assert_eq!(
        server.call(ConnId(999), |_| ()),
        Err(NetError::NoConnection(ConnId(999)))
    );
    let (_, event) = wait_for(&mut client, |e| matches!(e, Event::Object { .. }));
    let Event::Object { request, object } = event else {
        unreachable!()
    };
    assert_eq!(
        (request, object.group, &object.payload[..]),
        (sub, GroupId(3), &live[..])
    );

    // FETCH of groups 0..=2 from the cache.
    let t = track.clone();
    let fetch = client
        .call(conn, move |s| {
            s.fetch(t, Location::new(0, 0), Location::new(2, 0))
        })
        .unwrap()
        .unwrap();
    let (_, event) = wait_for(&mut server, |e| matches!(e, Event::FetchRequested { .. }));
    let Event::FetchRequested { request, .. } = event else {
        unreachable!()
    };
    server
        .call(sconn, move |s| s.accept_fetch(request, &shared))
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    loop {
        match wait_for(&mut client, |e| {
            matches!(e, Event::Object { .. } | Event::FetchComplete { .. })
        }) {
            (_, Event::Object { request, object }) if request == fetch => {
                got.push((object.group.0, object.payload.len()))
            }
            (_, Event::FetchComplete { .. }) => break,
            _ => {}
        }
    }
    assert_eq!(got, [(0, 1000), (1, 1001), (2, 1002)]);

    // Graceful shutdown: GOAWAY then CONNECTION_CLOSE (NO_ERROR) reach the subscriber.
    server.shutdown();
    let mut saw_goaway = false;
    let why = loop {
        match next(&mut client) {
            NetEvent::Session {
                event: Event::GoAway { .. },
                ..
            } => saw_goaway = true,
            NetEvent::Disconnected { why, .. } => break why,
            _ => {}
        }
    };
    assert!(saw_goaway);
    match why {
        NetError::Session(ec_node::moq::MoqError::Closed { by_peer, code, .. }) => {
            assert!(by_peer);
            assert_eq!(code, SessionCode::NoError.code());
        }
        other => panic!("{other}"),
    }
    client.shutdown();
}

#[test]
fn groups_fed_to_the_track_server_on_the_endpoint_thread_reach_every_subscriber() {
    use ec_node::node::tracks::{Outlet, TrackServer, Work};

    let key = NodeKey::from_seed([7; 32]);
    let track = BroadcastTrack::new("fed", TrackKind::Chunks)
        .unwrap()
        .full_name();
    let server = TrackServer::live(std::slice::from_ref(&track), 1 << 20);
    let outlet = Outlet::listen("127.0.0.1:0".parse().unwrap(), &key, server).unwrap();
    let addr = EndpointAddr {
        node: Some(key.node_id()),
        host: "127.0.0.1".into(),
        port: outlet.local_addr().port(),
    };
    let feed = outlet.feed();
    let group = |g: u64| Work::Group {
        track: 0,
        group: GroupId(g),
        payload: vec![g as u8; 50_000].into(),
    };
    // A group before anyone subscribes: cached, the current group a late joiner fetches.
    feed.send(group(0)).unwrap();

    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut client, conn) = Endpoint::dial(
            &Target::Node(addr.clone()),
            PeerCheck::Pinned(key.node_id()),
            Settings::default(),
        )
        .unwrap();
        wait_for(&mut client, |e| matches!(e, Event::SetupComplete { .. }));
        let t = track.clone();
        let (live, joining) = client
            .call(conn, move |s| s.subscribe_joining(t, 0))
            .unwrap()
            .unwrap();
        wait_for(&mut client, |e| matches!(e, Event::Subscribed { .. }));
        clients.push((client, live, joining));
    }
    // The server answered every SUBSCRIBE and joining FETCH on its own thread; now groups 1
    // and 2 go in by value, with no round trip.
    feed.send(group(1)).unwrap();
    feed.send(group(2)).unwrap();
    for (client, live, joining) in &mut clients {
        let mut got = Vec::new();
        while got.len() < 3 {
            if let (_, Event::Object { request, object }) =
                wait_for(client, |e| matches!(e, Event::Object { .. }))
            {
                assert!(request == *live || request == *joining);
                assert_eq!(object.payload.len(), 50_000);
                got.push(object.group.0);
            }
        }
        got.sort();
        assert_eq!(got, [0, 1, 2]);
    }
    // The end of the input: every subscription gets PUBLISH_DONE.
    feed.send(Work::End).unwrap();
    for (client, live, _) in &mut clients {
        let (_, done) = wait_for(client, |e| matches!(e, Event::SubscriptionDone { .. }));
        assert!(matches!(done, Event::SubscriptionDone { request, .. } if request == *live));
    }
    outlet.shutdown();
}
