//! Runs the `moq_control` and `moq_stream` fuzz seed corpora, plus a few thousand deterministic
//! mutations of each seed, on stable Rust: the MoQ decoders and a live session must never panic,
//! every seed must decode, and every refusal must carry a draft-16 session error code.

use ec_node_testkit::mutate;

use std::path::PathBuf;
use std::time::Instant;

use std::sync::Arc;

use ec_node::moq::cache::TrackCache;
use ec_node::moq::session::{
    Config, Event, JoiningStart, Output, QuicStreamId, Role, Session, SubscribeOptions,
};
use ec_node::moq::track::{BroadcastTrack, TrackKind};
use ec_node::moq::wire::{
    decode_control_stream, decode_data_stream, decode_datagram, DataStreamReader, Version,
};
use ec_node::moq::MoqError;
use ec_node::moq::{GroupId, Location, SubscriptionFilter};

const V: Version = Version::Draft16;
/// Mutations per seed; with ~35 seeds that is about 10,000 inputs per run.
const MUTATIONS: usize = 300;
/// CLIENT_SETUP with MAX_REQUEST_ID 100 (same prefix as the fuzz target).
const SETUP: [u8; 7] = [0x20, 0x00, 0x04, 0x01, 0x02, 0x40, 0x64];
/// The codes a decoder or session may close with on bad peer bytes.
const DRAFT_CODES: [u64; 5] = [
    0x3, // PROTOCOL_VIOLATION
    0x4, // INVALID_REQUEST_ID
    0x5, // DUPLICATE_TRACK_ALIAS
    0x6, // KEY_VALUE_FORMATTING
    0x7, // TOO_MANY_REQUESTS
];

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "empty corpus {}", dir.display());
    seeds
}

fn assert_draft_code(e: &MoqError, input: &[u8]) {
    let code = e
        .session_code()
        .unwrap_or_else(|| panic!("{e} has no session code for {input:02x?}"));
    assert!(
        DRAFT_CODES.contains(&code),
        "code {code:#x} ({e}) for {input:02x?}"
    );
}

/// Feeds `data` to a server session as its control stream after a valid setup.
fn session_control(data: &[u8]) {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, V, Config::default(), now);
    s.handle_stream_data(now, QuicStreamId::CONTROL, &SETUP, false)
        .unwrap();
    if let Err(e) = s.handle_stream_data(now, QuicStreamId::CONTROL, data, false) {
        assert_draft_code(&e, data);
    }
    while s.poll_output().is_some() {}
    while s.poll_write(1 << 16).is_some() {}
}

/// Feeds `data` to an established client session as an incoming unidirectional stream.
fn session_stream(data: &[u8]) {
    let now = Instant::now();
    let mut s = Session::new(Role::Client, V, Config::default(), now);
    // SERVER_SETUP with MAX_REQUEST_ID 100.
    s.handle_stream_data(
        now,
        QuicStreamId::CONTROL,
        &[0x21, 0x00, 0x04, 0x01, 0x02, 0x40, 0x64],
        false,
    )
    .unwrap();
    if let Err(e) = s.handle_stream_data(now, QuicStreamId(3), data, true) {
        assert_draft_code(&e, data);
    }
    if let Err(e) = s.handle_datagram(data) {
        assert_draft_code(&e, data);
    }
    while s.poll_output().is_some() {}
}

fn stream_items_split(data: &[u8]) -> Result<usize, MoqError> {
    let mut reader = DataStreamReader::new(V, 1 << 16);
    let (mut buf, mut n) = (Vec::new(), 0);
    for b in data {
        buf.push(*b);
        while let Some((_, used)) = reader.next(&buf)? {
            buf.drain(..used);
            n += 1;
        }
    }
    Ok(n)
}

#[test]
fn moq_control_corpus_decodes_and_mutations_never_panic() {
    let mut refused = 0;
    let mut total = 0;
    for (salt, (name, seed)) in corpus("moq_control").into_iter().enumerate() {
        let msgs = decode_control_stream(V, &seed).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert!(!msgs.is_empty(), "seed {name} holds no complete message");
        for m in
            std::iter::once(seed.clone()).chain(mutate::mutations(&seed, MUTATIONS, salt as u64))
        {
            total += 1;
            if let Err(e) = decode_control_stream(V, &m) {
                assert_draft_code(&e, &m);
                refused += 1;
            }
            session_control(&m);
        }
    }
    assert!(total > 8_000, "ran {total} inputs");
    assert!(
        refused > total / 10,
        "mutations should often be refused ({refused} of {total})"
    );
}

#[test]
fn moq_stream_corpus_decodes_and_mutations_never_panic() {
    let mut total = 0;
    for (salt, (name, seed)) in corpus("moq_stream").into_iter().enumerate() {
        let whole = if name.starts_with("datagram") {
            decode_datagram(V, &seed).map(|_| 1)
        } else {
            decode_data_stream(V, &seed, 1 << 16).map(|items| items.len())
        };
        assert!(
            whole.unwrap_or_else(|e| panic!("seed {name}: {e}")) > 0,
            "seed {name}"
        );
        for m in std::iter::once(seed.clone()).chain(mutate::mutations(
            &seed,
            4 * MUTATIONS,
            1000 + salt as u64,
        )) {
            total += 1;
            let whole = decode_data_stream(V, &m, 1 << 16);
            match (&whole, stream_items_split(&m)) {
                (Ok(items), Ok(n)) => {
                    assert_eq!(items.len(), n, "split decoding differs for {m:02x?}")
                }
                (Err(e), Err(_)) => assert_draft_code(e, &m),
                (w, s) => panic!("whole {w:?} vs split {s:?} for {m:02x?}"),
            }
            if let Err(e) = decode_datagram(V, &m) {
                assert_draft_code(&e, &m);
            }
            session_stream(&m);
        }
    }
    assert!(total > 8_000, "ran {total} inputs");
}

/// One write from the server to the client.
type Write = (QuicStreamId, Vec<u8>, bool);

/// Moves every write of `from` into `to`; returns them.
fn pump(now: Instant, from: &mut Session, to: &mut Session) -> Vec<Write> {
    let mut writes = Vec::new();
    while let Some(o) = from.poll_output() {
        if let Output::ResetStream { stream, code } = o {
            to.handle_stream_reset(stream, code).unwrap();
        }
    }
    while let Some(w) = from.poll_write(1 << 16) {
        to.handle_stream_data(now, w.stream, &w.data, w.fin)
            .unwrap();
        writes.push((w.stream, w.data, w.fin));
    }
    writes
}

/// The client's requests of the scripted exchange, issued once SERVER_SETUP is in.
fn client_requests(
    client: &mut Session,
    track: &ec_node::moq::FullTrackName,
) -> Result<(), MoqError> {
    let opts = SubscribeOptions {
        filter: SubscriptionFilter::AbsoluteStart(Location::new(0, 0)),
        ..Default::default()
    };
    let sub = client.subscribe(track.clone(), opts)?;
    client.joining_fetch(sub, JoiningStart::Relative(1))?;
    client.fetch(track.clone(), Location::new(0, 0), Location::new(2, 0))?;
    Ok(())
}

/// Everything a server writes to a client over a scripted exchange: setup, a subscription with
/// cached and live groups, a joining and a standalone fetch, and PUBLISH_DONE.
fn server_transcript() -> Vec<Write> {
    let now = Instant::now();
    let track = BroadcastTrack::new("abc", TrackKind::Chunks)
        .unwrap()
        .full_name();
    let mut cache = TrackCache::new(1 << 20);
    for g in 0..3 {
        cache
            .push(GroupId(g), Arc::from(vec![g as u8; 40]))
            .unwrap();
    }
    let mut client = Session::new(Role::Client, V, Config::default(), now);
    let mut server = Session::new(Role::Server, V, Config::default(), now);
    pump(now, &mut client, &mut server);
    let mut transcript = pump(now, &mut server, &mut client);
    client_requests(&mut client, &track).unwrap();
    for _ in 0..4 {
        pump(now, &mut client, &mut server);
        while let Some(o) = server.poll_output() {
            match o {
                Output::Event(Event::SubscribeRequested { request, .. }) => {
                    server.accept_subscribe(request, &cache).unwrap()
                }
                Output::Event(Event::FetchRequested { request, .. }) => {
                    server.accept_fetch(request, &cache).unwrap()
                }
                _ => {}
            }
        }
        transcript.extend(pump(now, &mut server, &mut client));
    }
    for g in 3..5 {
        let p: Arc<[u8]> = Arc::from(vec![g as u8; 40]);
        cache.push(GroupId(g), p.clone()).unwrap();
        server.send_group(&track, GroupId(g), p).unwrap();
    }
    server.end_track(&track).unwrap();
    transcript.extend(pump(now, &mut server, &mut client));
    transcript
}

/// Replays `transcript` into a fresh client; errors must carry draft codes, nothing may panic.
/// Returns the events the client reported.
fn replay(transcript: &[Write]) -> Vec<Event> {
    let mut events = Vec::new();
    let now = Instant::now();
    let track = BroadcastTrack::new("abc", TrackKind::Chunks)
        .unwrap()
        .full_name();
    let mut client = Session::new(Role::Client, V, Config::default(), now);
    while client.poll_write(1 << 16).is_some() {}
    for (i, (stream, data, fin)) in transcript.iter().enumerate() {
        if let Err(e) = client.handle_stream_data(now, *stream, data, *fin) {
            assert_draft_code(&e, data);
            return events;
        }
        if i == 0 && client_requests(&mut client, &track).is_err() {
            return events;
        }
        while let Some(o) = client.poll_output() {
            if let Output::Event(e) = o {
                events.push(e);
            }
        }
        while client.poll_write(1 << 16).is_some() {}
    }
    events
}

#[test]
fn mutated_server_transcripts_never_panic_a_client_session() {
    let transcript = server_transcript();
    assert!(
        transcript.len() > 8,
        "a rich exchange: {} writes",
        transcript.len()
    );
    let events = replay(&transcript);
    let objects = events
        .iter()
        .filter(|e| matches!(e, Event::Object { .. }))
        .count();
    // The subscription: the current cached group and 2 live ones (earlier cached groups are
    // FETCH's); 2 by the joining fetch, 3 by the standalone fetch.
    assert_eq!(objects, 8, "{events:?}");
    assert!(
        matches!(events.last(), Some(Event::SubscriptionDone { .. })),
        "{events:?}"
    );
    let mut rng = ec_node_testkit::rng::SplitMix64::new(7);
    for _ in 0..3000 {
        let mut t = transcript.clone();
        let i = rng.below(t.len());
        t[i].1 = mutate::mutate(&t[i].1, &mut rng);
        if rng.below(4) == 0 {
            // Reorder: a data stream can overtake the control message naming it.
            let j = rng.below(t.len());
            t.swap(i.max(1), j.max(1));
        }
        replay(&t);
    }
}
