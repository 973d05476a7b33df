//! The subscriber's rules on virtual time: no sockets, no threads, no sleeps.

use super::*;
use crate::chunk::ChunkFlags;
use crate::crypto::object;
use crate::crypto::{NodeKey, StreamId, StreamKey, StreamKeys};
use crate::manifest::{Entry, ManifestChain, Policy};

const SECOND: Duration = Duration::from_secs(1);
const WALL0: UnixMillis = UnixMillis(1_764_072_000_000);

fn keys() -> StreamKeys {
    StreamKey::derive(None, &StreamId::new("ec/stream/v1/assembly").unwrap()).subkeys()
}

fn leader() -> NodeKey {
    NodeKey::from_seed([7; 32])
}

fn seal(index: u64) -> Vec<u8> {
    let payload = format!("chunk {index}");
    object::seal(
        &keys(),
        ChunkIndex(index),
        ChunkFlags::default(),
        payload.as_bytes(),
    )
    .unwrap()
}

fn config() -> AssemblyConfig {
    AssemblyConfig {
        require_manifest: true,
        backfill: 2,
        chunk_ticks: 180_000,
        stop_after: None,
        max_invalid: None,
        manifest_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        passes_on: false,
        resumed: None,
        swarm: SwarmConfig::default(),
    }
}

fn source(at: usize) -> PeerRole {
    PeerRole {
        name: format!("source{at}"),
        source: Some(at),
        manifests: false,
    }
}

fn manifests_only(name: &str) -> PeerRole {
    PeerRole {
        name: name.to_string(),
        source: None,
        manifests: true,
    }
}

/// What the owner asked for, by kind.
#[derive(Default)]
struct Done {
    asks: Vec<(usize, TrackKind, Ask)>,
    redials: Vec<usize>,
    closes: Vec<usize>,
    written: Vec<Segment>,
    passed_on: Vec<GroupId>,
}

impl Done {
    fn written_indices(&self) -> Vec<u64> {
        self.written.iter().map(|s| s.entry.index.0).collect()
    }

    fn chunk_fetches(&self) -> Vec<(usize, u64)> {
        self.asks
            .iter()
            .filter_map(|(peer, kind, ask)| match (kind, ask) {
                (TrackKind::Chunks, Ask::Fetch(first, last)) if first == last => {
                    Some((*peer, first.0))
                }
                _ => None,
            })
            .collect()
    }
}

/// One owner on a virtual clock, with a leader signing one manifest per chunk.
struct Rig {
    assembly: Assembly,
    start: Instant,
    /// Where the wall clock stands against the monotonic one (a step moves it).
    wall_offset: i64,
    elapsed: Duration,
    chain: ManifestChain,
    done: Done,
}

impl Rig {
    fn new(config: AssemblyConfig, peers: Vec<PeerRole>) -> Rig {
        let start = Instant::now();
        let policy = Policy::new(vec![leader().node_id()]);
        let verifier = Verifier::new(keys(), policy);
        Rig {
            assembly: Assembly::new(config, verifier, peers, start),
            start,
            wall_offset: 0,
            elapsed: Duration::ZERO,
            chain: ManifestChain::new(leader(), keys().locator(), 1, 180_000),
            done: Done::default(),
        }
    }

    fn at(&self) -> Moment {
        let wall = WALL0.0 as i64 + self.elapsed.as_millis() as i64 + self.wall_offset;
        Moment {
            now: self.start + self.elapsed,
            wall: UnixMillis(wall as u64),
        }
    }

    /// Moves the virtual clock on and lets the owner act on what is due.
    fn advance(&mut self, by: Duration) -> Result<(), SubscribeError> {
        self.elapsed += by;
        let at = self.at();
        let result = self.assembly.handle_timeout(at);
        self.collect();
        result
    }

    fn collect(&mut self) {
        while let Some(action) = self.assembly.poll_action() {
            match action {
                Action::Ask { peer, kind, ask } => self.done.asks.push((peer, kind, ask)),
                Action::Redial(peer) => self.done.redials.push(peer),
                Action::Close(peer) => self.done.closes.push(peer),
                Action::Write(segment) => self.done.written.push(segment),
                Action::PassOn(group, _) => self.done.passed_on.push(group),
            }
        }
    }

    fn connected(&mut self, peer: usize) {
        let at = self.at();
        self.assembly.connected(peer, at).unwrap();
        self.collect();
    }

    /// The signed manifest of chunk `index` (its own epoch).
    fn sign(&mut self, index: u64) -> Vec<u8> {
        let entry = Entry::for_object(&object::Object::parse(&seal(index)).unwrap(), 180_000);
        let created = UnixMillis(WALL0.0 + index * 2000);
        self.chain.sign_epoch(index, vec![entry], created).unwrap()
    }

    fn manifest(&mut self, peer: usize, index: u64) -> Result<(), SubscribeError> {
        let bytes = self.sign(index);
        self.manifest_bytes(peer, index, bytes)
    }

    fn manifest_bytes(
        &mut self,
        peer: usize,
        group: u64,
        bytes: Vec<u8>,
    ) -> Result<(), SubscribeError> {
        let at = self.at();
        let result =
            self.assembly
                .object(peer, TrackKind::Manifests, GroupId(group), bytes, false, at);
        self.collect();
        result
    }

    fn chunk(&mut self, peer: usize, index: u64, fetched: bool) -> Result<(), SubscribeError> {
        self.chunk_bytes(peer, index, seal(index), fetched)
    }

    fn chunk_bytes(
        &mut self,
        peer: usize,
        index: u64,
        bytes: Vec<u8>,
        fetched: bool,
    ) -> Result<(), SubscribeError> {
        let at = self.at();
        let result =
            self.assembly
                .object(peer, TrackKind::Chunks, GroupId(index), bytes, fetched, at);
        self.collect();
        result
    }

    fn fetch_done(&mut self, peer: usize, first: Option<u64>, failed: bool) {
        let at = self.at();
        self.assembly
            .fetch_done(peer, first.map(GroupId), failed, at)
            .unwrap();
        self.collect();
    }

    /// A lone source carrying the manifests too, up.
    fn lone() -> Rig {
        let peer = PeerRole {
            manifests: true,
            ..source(0)
        };
        let mut rig = Rig::new(config(), vec![peer]);
        rig.connected(0);
        rig
    }

    /// [`Rig::lone`] past its late join (both joining FETCHes over), with chunk 0 written.
    fn joined() -> Rig {
        let mut rig = Rig::lone();
        rig.manifest(0, 0).unwrap();
        rig.chunk(0, 0, false).unwrap();
        rig.fetch_done(0, None, false);
        rig.fetch_done(0, None, false);
        assert_eq!(rig.done.written_indices(), [0]);
        rig
    }
}

#[test]
fn a_late_joiner_writes_its_backfill_first_then_the_live_chunks() {
    let mut rig = Rig::lone();
    assert!(
        rig.done
            .asks
            .contains(&(0, TrackKind::Chunks, Ask::Join { backfill: 2 })),
        "the live subscription is a late join: {:?}",
        rig.done.asks
    );
    for index in 1..=3 {
        rig.manifest(0, index).unwrap();
    }
    rig.chunk(0, 3, false).unwrap(); // live, ahead of its backfill
    assert!(rig.done.written.is_empty(), "held for the backfill");
    rig.chunk(0, 1, true).unwrap();
    rig.chunk(0, 2, true).unwrap();
    rig.fetch_done(0, None, false); // the manifests' joining FETCH
    assert!(
        rig.done.written.is_empty(),
        "the chunks' joining FETCH is not over"
    );
    rig.fetch_done(0, None, false);
    assert_eq!(rig.done.written_indices(), [1, 2, 3]);
    assert_eq!(rig.assembly.backfilled(), 2);
    let created: Vec<bool> = rig
        .done
        .written
        .iter()
        .map(|s| s.created.is_some())
        .collect();
    assert_eq!(
        created,
        [false, false, true],
        "backfill stays out of the latency figure"
    );
    assert_eq!(
        rig.assembly.footprint().backfilled,
        0,
        "forgotten once written"
    );
}

#[test]
fn a_backfill_that_never_completes_is_given_up_after_the_wait() {
    let mut rig = Rig::lone();
    rig.manifest(0, 5).unwrap();
    rig.chunk(0, 5, false).unwrap();
    assert_eq!(rig.assembly.poll_timeout(), rig.start + BACKFILL_WAIT);
    rig.advance(BACKFILL_WAIT - Duration::from_millis(1))
        .unwrap();
    assert!(rig.done.written.is_empty());
    rig.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(rig.done.written_indices(), [5]);
}

#[test]
fn a_gap_in_the_chunks_is_fetched_and_the_chunks_past_it_wait() {
    let mut rig = Rig::joined();
    rig.manifest(0, 1).unwrap();
    rig.chunk(0, 1, false).unwrap();
    rig.manifest(0, 4).unwrap(); // 2 and 3 and their manifests lost in a blackout
    assert_eq!(
        rig.done.asks.last(),
        Some(&(0, TrackKind::Manifests, Ask::Fetch(GroupId(2), GroupId(3))))
    );
    rig.chunk(0, 4, false).unwrap();
    assert_eq!(
        rig.done.chunk_fetches(),
        [(0, 2), (0, 3)],
        "fetched at once"
    );
    assert_eq!(rig.done.written_indices(), [0, 1], "4 waits for 2 and 3");
    rig.manifest(0, 2).unwrap();
    rig.manifest(0, 3).unwrap();
    rig.chunk(0, 3, true).unwrap();
    assert_eq!(rig.done.written_indices(), [0, 1]);
    rig.chunk(0, 2, true).unwrap();
    assert_eq!(rig.done.written_indices(), [0, 1, 2, 3, 4]);
    assert!(rig.done.written.iter().all(|s| !s.entry.discontinuity));
    assert_eq!(
        rig.assembly.backfilled(),
        0,
        "a repair is not the join's backfill"
    );
}

#[test]
fn a_gap_wider_than_the_repair_is_left_and_marked() {
    let mut rig = Rig::joined();
    let far = GAP_REPAIR + 2;
    rig.manifest(0, far).unwrap();
    rig.chunk(0, far, false).unwrap();
    assert_eq!(rig.done.chunk_fetches(), Vec::<(usize, u64)>::new());
    assert_eq!(rig.done.written_indices(), [0, far]);
    assert!(
        rig.done.written[1].entry.discontinuity,
        "players must not bridge it"
    );
}

#[test]
fn a_gap_in_the_manifests_is_fetched_from_the_peer_that_sent_it() {
    let mut rig = Rig::new(config(), vec![source(0), manifests_only("leader")]);
    rig.manifest(1, 1).unwrap();
    rig.manifest(1, 4).unwrap();
    assert_eq!(
        rig.done.asks,
        [(1, TrackKind::Manifests, Ask::Fetch(GroupId(2), GroupId(3)))]
    );
}

#[test]
fn covers_from_before_the_first_object_are_awaited_from_it_on() {
    let mut rig = Rig::new(config(), vec![source(0), source(1)]);
    rig.connected(0);
    rig.connected(1);
    rig.advance(Duration::from_millis(300)).unwrap(); // past the start-up grace
    for index in 10..=13 {
        rig.manifest(0, index).unwrap();
    }
    rig.chunk(0, 12, false).unwrap(); // the first object: 10 and 11 predate the join
    rig.advance(SwarmConfig::default().group_timeout).unwrap();
    assert_eq!(
        rig.done.chunk_fetches(),
        [(1, 13)],
        "only 13 was late; 10 and 11 came before the first object"
    );
}

#[test]
fn no_trusted_manifest_by_the_deadline_ends_the_run() {
    let mut rig = Rig::new(config(), vec![source(0)]);
    rig.connected(0);
    rig.chunk(0, 0, false).unwrap(); // waits for a manifest
    rig.advance(SECOND * 10 - Duration::from_millis(1)).unwrap();
    assert_eq!(rig.assembly.poll_timeout(), rig.start + SECOND * 10);
    match rig.advance(Duration::from_millis(1)) {
        Err(SubscribeError::NoManifest(t)) => assert_eq!(t, SECOND * 10),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_object_for_the_idle_timeout_ends_the_run() {
    let mut rig = Rig::joined();
    rig.advance(SECOND * 19).unwrap();
    match rig.advance(SECOND) {
        Err(SubscribeError::Idle(t)) => assert_eq!(t, SECOND * 20),
        other => panic!("{other:?}"),
    }
}

#[test]
fn objects_that_never_verify_end_the_run_naming_the_rejections() {
    let mut rig = Rig::joined();
    for step in 1..=20 {
        let mut forged = seal(step);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        rig.manifest(0, step).unwrap();
        rig.chunk_bytes(0, step, forged, false).unwrap();
        if step < 20 {
            rig.advance(SECOND).unwrap();
        }
    }
    match rig.advance(SECOND) {
        Err(SubscribeError::NothingVerified(t, rejected)) => {
            assert_eq!((t, rejected), (SECOND * 20, 20))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_many_invalid_objects_end_the_run() {
    let mut rig = Rig::new(
        AssemblyConfig {
            max_invalid: Some(1),
            ..config()
        },
        vec![source(0)],
    );
    rig.connected(0);
    rig.chunk_bytes(0, 0, b"not an object".to_vec(), false)
        .unwrap();
    match rig.chunk_bytes(0, 1, b"nor this".to_vec(), false) {
        Err(SubscribeError::TooManyInvalid(2)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_source_that_never_answers_is_named_at_the_end_of_start_up() {
    let mut rig = Rig::new(config(), vec![source(0), manifests_only("leader")]);
    rig.connected(1);
    rig.manifest(1, 0).unwrap();
    rig.advance(SECOND * 19).unwrap();
    match rig.advance(SECOND) {
        Err(SubscribeError::Connect(name, NetError::IdleTimeout)) => assert_eq!(name, "source0"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lone_source_that_never_came_up_ends_the_run_when_it_fails() {
    let mut rig = Rig::new(config(), vec![source(0)]);
    let at = rig.at();
    assert!(!rig.assembly.failed(0, false, "refused", at));
    let mut up = Rig::joined();
    let at = up.at();
    assert!(
        up.assembly.failed(0, false, "left", at),
        "once up, it is dialled again"
    );
    assert!(
        !up.assembly.failed(0, true, "refused", at),
        "a refusal is final"
    );
}

#[test]
fn a_manifests_only_peer_that_left_is_dialled_again_with_a_doubling_wait() {
    let mut rig = Rig::new(config(), vec![source(0), manifests_only("leader")]);
    rig.connected(0);
    rig.connected(1);
    let at = rig.at();
    assert!(rig.assembly.failed(1, false, "leader left", at));
    rig.collect();
    assert_eq!(rig.done.closes, [1]);
    assert_eq!(
        rig.assembly.poll_timeout(),
        rig.at().now + Duration::from_millis(500)
    );
    rig.advance(Duration::from_millis(499)).unwrap();
    assert!(rig.done.redials.is_empty());
    rig.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(rig.done.redials, [1]);
    let at = rig.at();
    assert!(rig.assembly.failed(1, false, "cannot dial", at));
    rig.advance(Duration::from_millis(999)).unwrap();
    assert_eq!(rig.done.redials, [1], "the second wait is twice the first");
    rig.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(rig.done.redials, [1, 1]);
    rig.connected(1); // up again: the next wait starts over
    let at = rig.at();
    assert!(rig.assembly.failed(1, false, "left again", at));
    rig.advance(Duration::from_millis(500)).unwrap();
    assert_eq!(rig.done.redials, [1, 1, 1]);
}

#[test]
fn an_onward_gets_each_trusted_manifest_once_and_each_written_chunks_sealed_object() {
    let mut rig = Rig::new(
        AssemblyConfig {
            passes_on: true,
            ..config()
        },
        vec![source(0), manifests_only("a"), manifests_only("b")],
    );
    rig.connected(0);
    let manifest = rig.sign(0);
    rig.manifest_bytes(1, 0, manifest.clone()).unwrap();
    rig.manifest_bytes(2, 0, manifest).unwrap(); // the same manifest from another peer
    assert_eq!(rig.done.passed_on, [GroupId(0)]);
    rig.chunk(0, 0, false).unwrap();
    for _ in 0..3 {
        rig.fetch_done(0, None, false);
    }
    assert_eq!(rig.done.written_indices(), [0]);
    assert_eq!(rig.done.written[0].sealed.as_deref(), Some(&seal(0)[..]));
    assert_eq!(rig.assembly.footprint().sealed, 0);
}

#[test]
fn a_wall_clock_step_while_objects_wait_expires_none_and_rejects_nothing() {
    for step in [3_600_000, -3_600_000] {
        let mut rig = Rig::joined();
        rig.chunk(0, 1, false).unwrap(); // waits for its manifest
        rig.chunk(0, 2, false).unwrap();
        rig.wall_offset = step; // NTP sets the clock an hour forward (or back)
        rig.advance(SECOND).unwrap();
        rig.manifest(0, 1).unwrap();
        rig.manifest(0, 2).unwrap();
        assert_eq!(rig.done.written_indices(), [0, 1, 2], "step {step}");
        assert_eq!(rig.assembly.rejections(), Vec::new(), "step {step}");
        // The program date-time runs on with the stream, not with the step.
        let dates: Vec<u64> = rig
            .done
            .written
            .iter()
            .map(|s| s.entry.date_time.0)
            .collect();
        assert_eq!(
            [dates[1] - dates[0], dates[2] - dates[1]],
            [2000, 2000],
            "step {step}"
        );
    }
}

#[test]
fn chunks_that_never_arrive_for_ten_minutes_keep_every_map_within_its_bound() {
    let mut rig = Rig::new(
        AssemblyConfig {
            passes_on: true,
            idle_timeout: Duration::from_secs(3600),
            ..config()
        },
        vec![source(0), source(1), manifests_only("leader")],
    );
    for peer in 0..3 {
        rig.connected(peer);
    }
    let mut most = Footprint::default();
    let step = Duration::from_millis(200);
    let mut index = 0;
    while rig.elapsed < Duration::from_secs(600) {
        // The leader vouches for chunk `index`; what arrives for it is never the real object.
        rig.manifest(2, index).unwrap();
        let mut forged = seal(index);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let sender = (index % 2) as usize;
        rig.chunk_bytes(sender, index, forged, false).unwrap();
        // Every fetch is answered "not here"; every redial comes up.
        for (peer, chunk) in
            std::mem::take(&mut rig.done.asks)
                .into_iter()
                .filter_map(|(peer, _, ask)| match ask {
                    Ask::Fetch(first, _) => Some((peer, first.0)),
                    _ => None,
                })
        {
            rig.fetch_done(peer, Some(chunk), true);
        }
        for peer in std::mem::take(&mut rig.done.redials) {
            rig.connected(peer);
        }
        rig.advance(step).unwrap();
        let f = rig.assembly.footprint();
        most = Footprint {
            sources_remembered: most.sources_remembered.max(f.sources_remembered),
            sealed: most.sealed.max(f.sealed),
            refetching: most.refetching.max(f.refetching),
            backfilled: most.backfilled.max(f.backfilled),
            early_covers: most.early_covers.max(f.early_covers),
            manifest_times: most.manifest_times.max(f.manifest_times),
            reordering: most.reordering.max(f.reordering),
        };
        index += 1;
    }
    assert!(rig.done.written.is_empty(), "nothing real ever arrived");
    assert_eq!(index, 3000);
    // Every cap held, and the busiest maps were driven up to theirs.
    assert_eq!(most.sources_remembered, SOURCES_REMEMBERED);
    assert_eq!(most.sealed, SEALED_HELD);
    assert!(
        most.refetching > 0 && most.refetching <= FETCHES_REMEMBERED,
        "{most:?}"
    );
    assert!(most.backfilled <= FETCHES_REMEMBERED);
    assert!(most.early_covers <= MANIFEST_TIMES);
    assert_eq!(most.manifest_times, MANIFEST_TIMES);
    assert!(most.reordering <= REORDER_CAP);
}
