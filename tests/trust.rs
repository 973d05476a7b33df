//! The trust layer end to end, as two publishers and a subscriber would use it: independent
//! encryptors, manifests vouching across nodes, and forged, truncated, bit-flipped and replayed
//! input that must never get through.

use ec_node_testkit::mutate;

use ec_node::crypto::object::{self, Object};
use ec_node::crypto::{
    ChunkFlags, ChunkIndex, NetworkSecret, NodeKey, StreamId, StreamKey, StreamKeys,
};
use ec_node::manifest::{Entry, Event, Manifest, ManifestChain, Policy, Proof, Reason, Verifier};
use ec_node::time::UnixMillis;
use std::time::{Duration, Instant};

const NOW: UnixMillis = UnixMillis(1_750_000_000_000);
const SECRET: &str = "000102030405060708090a0b0c0d0e0f";
const STREAM: &str = "ec/stream/v1/broadcast/atsc/test/7.1";

/// One node's view of the stream, derived from the flags alone, as a separate process would.
fn node_keys() -> StreamKeys {
    let secret = NetworkSecret::from_hex(SECRET).unwrap();
    StreamKey::derive(Some(&secret), &StreamId::new(STREAM).unwrap()).subkeys()
}

fn chunk(i: u64) -> (ChunkIndex, ChunkFlags, Vec<u8>) {
    let flags = ChunkFlags::from_bits(if i == 0 { ChunkFlags::DISCONTINUITY } else { 0 }).unwrap();
    let bytes = (0..188 * 7)
        .map(|b| (b as u64 * 31 + i * 7) as u8)
        .collect();
    (ChunkIndex(i), flags, bytes)
}

fn publish(keys: &StreamKeys, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (index, flags, bytes) = chunk(i);
            object::seal(keys, index, flags, &bytes).unwrap()
        })
        .collect()
}

fn entries(objects: &[Vec<u8>]) -> Vec<Entry> {
    objects
        .iter()
        .map(|o| Entry::for_object(&Object::parse(o).unwrap(), 180_000))
        .collect()
}

fn drain(v: &mut Verifier) -> Vec<Event> {
    std::iter::from_fn(|| v.poll_event()).collect()
}

fn delivered(events: &[Event]) -> Vec<(u64, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some((c.index.0, c.bytes.to_vec())),
            _ => None,
        })
        .collect()
}

fn accepted_manifests(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Manifest { .. }))
        .count()
}

#[test]
fn independent_encryptors_agree_and_manifests_vouch_across_nodes() {
    let node_a = node_keys();
    let node_b = node_keys();
    let from_a = publish(&node_a, 8);
    let from_b = publish(&node_b, 8);
    assert_eq!(
        from_a, from_b,
        "deterministic encryption: byte-identical objects"
    );

    // Two leaders sign the same epochs (4 chunks each) independently.
    let leader_a = NodeKey::from_seed([0xa; 32]);
    let leader_b = NodeKey::from_seed([0xb; 32]);
    let mut chain_a =
        ManifestChain::new(NodeKey::from_seed([0xa; 32]), node_a.locator(), 4, 180_000);
    let mut chain_b =
        ManifestChain::new(NodeKey::from_seed([0xb; 32]), node_b.locator(), 4, 180_000);
    let manifests_a: Vec<Vec<u8>> = (0..2)
        .map(|e| {
            chain_a
                .sign_epoch(e, entries(&from_a[e as usize * 4..][..4]), NOW)
                .unwrap()
        })
        .collect();
    let manifests_b: Vec<Vec<u8>> = (0..2)
        .map(|e| {
            chain_b
                .sign_epoch(e, entries(&from_b[e as usize * 4..][..4]), NOW)
                .unwrap()
        })
        .collect();
    assert_eq!(
        Manifest::decode(&manifests_a[0]).unwrap().root,
        Manifest::decode(&manifests_b[0]).unwrap().root,
        "same entries, same root, whoever signs"
    );

    // A subscriber trusting only A takes B's objects on A's word, and ignores B's manifests.
    let mut v = Verifier::new(node_keys(), Policy::new(vec![leader_a.node_id()]));
    for m in &manifests_a {
        v.push_manifest(m, Instant::now());
    }
    v.push_manifest(&manifests_b[1], Instant::now());
    for o in &from_b {
        v.push_object(o.clone(), None, None, Instant::now());
    }
    let events = drain(&mut v);
    assert_eq!(accepted_manifests(&events), 2);
    assert_eq!(v.rejected(Reason::UnknownSigner), 1);
    let got = delivered(&events);
    assert_eq!(got.len(), 8);
    for (i, bytes) in got {
        assert_eq!(bytes, chunk(i).2);
    }

    // Trusting both: both chains are accepted and do not count as equivocation.
    let mut both = Verifier::new(
        node_keys(),
        Policy::new(vec![leader_a.node_id(), leader_b.node_id()]),
    );
    for m in manifests_a.iter().chain(&manifests_b) {
        both.push_manifest(m, Instant::now());
    }
    assert_eq!(accepted_manifests(&drain(&mut both)), 4);
    assert_eq!(both.rejected(Reason::Equivocation), 0);
}

#[test]
fn objects_with_proofs_are_accepted_against_the_signed_root() {
    let keys = node_keys();
    let objects = publish(&keys, 4);
    let list = entries(&objects);
    let leader = NodeKey::from_seed([0xa; 32]);
    let mut chain = ManifestChain::new(NodeKey::from_seed([0xa; 32]), keys.locator(), 4, 180_000);
    let manifest = chain.sign_epoch(0, list.clone(), NOW).unwrap();
    let id = Manifest::decode(&manifest).unwrap().id;
    let mut v = Verifier::new(node_keys(), Policy::new(vec![leader.node_id()]));
    v.push_manifest(&manifest, Instant::now());
    for (i, o) in objects.iter().enumerate() {
        let proof = Proof::build(id, &list, i).unwrap().encode();
        v.push_object(o.clone(), Some(&proof), None, Instant::now());
    }
    let events = drain(&mut v);
    let vouched: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => c.vouched.map(|(m, _)| (c.index.0, m)),
            _ => None,
        })
        .collect();
    assert_eq!(vouched, (0..4).map(|i| (i, id)).collect::<Vec<_>>());
}

/// Every mutation of a valid manifest is rejected or ignored; none is accepted, and the objects
/// it would have vouched for stay undelivered.
#[test]
fn forged_truncated_and_bit_flipped_manifests_are_never_accepted() {
    let keys = node_keys();
    let objects = publish(&keys, 3);
    let leader = NodeKey::from_seed([0xa; 32]);
    let mut chain = ManifestChain::new(NodeKey::from_seed([0xa; 32]), keys.locator(), 4, 180_000);
    let manifest = chain.sign_epoch(0, entries(&objects), NOW).unwrap();
    let mut v = Verifier::new(node_keys(), Policy::new(vec![leader.node_id()]));
    let mut tried = 0;
    for bad in mutate::mutations(&manifest, 3000, 11) {
        if bad == manifest {
            continue;
        }
        v.push_manifest(&bad, Instant::now());
        tried += 1;
    }
    for o in &objects {
        v.push_object(o.clone(), None, None, Instant::now());
    }
    v.handle_timeout(Instant::now() + Duration::from_secs(60));
    let events = drain(&mut v);
    assert_eq!(accepted_manifests(&events), 0);
    assert!(delivered(&events).is_empty());
    let manifest_rejections: u64 = [
        Reason::MalformedManifest,
        Reason::BadSignature,
        Reason::OtherStream,
        Reason::UnknownSigner,
    ]
    .iter()
    .map(|r| v.rejected(*r))
    .sum();
    assert_eq!(
        manifest_rejections, tried,
        "every mutation was rejected with a reason"
    );
    assert!(v.rejected(Reason::MalformedManifest) > 0 && v.rejected(Reason::BadSignature) > 0);
    assert_eq!(v.rejected(Reason::Uncovered), 3);

    // The genuine manifest still works after all that.
    v.push_manifest(&manifest, Instant::now());
    for o in &objects {
        v.push_object(o.clone(), None, None, Instant::now());
    }
    assert_eq!(delivered(&drain(&mut v)).len(), 3);
}

/// Every mutation of a valid object is rejected once a manifest covers its index, including
/// objects replayed under another index.
#[test]
fn truncated_bit_flipped_and_replayed_objects_are_never_delivered() {
    let keys = node_keys();
    let objects = publish(&keys, 4);
    let leader = NodeKey::from_seed([0xa; 32]);
    let mut chain = ManifestChain::new(NodeKey::from_seed([0xa; 32]), keys.locator(), 4, 180_000);
    let manifest = chain.sign_epoch(0, entries(&objects), NOW).unwrap();
    for require_manifest in [true, false] {
        let mut policy = Policy::new(vec![leader.node_id()]);
        policy.require_manifest = require_manifest;
        let mut v = Verifier::new(node_keys(), policy);
        v.push_manifest(&manifest, Instant::now());
        drain(&mut v);
        let mut tried = 0;
        for bad in mutate::mutations(&objects[1], 3000, 5) {
            if objects.contains(&bad) {
                continue;
            }
            v.push_object(bad, None, None, Instant::now());
            tried += 1;
        }
        // Replays: object 1's bytes relabelled as indices 0, 2 and 3.
        for index in [0u8, 2, 3] {
            let mut replayed = objects[1].clone();
            replayed[9] = index;
            v.push_object(replayed, None, None, Instant::now());
            tried += 1;
        }
        v.handle_timeout(Instant::now() + Duration::from_secs(60));
        let events = drain(&mut v);
        assert!(
            delivered(&events).is_empty(),
            "require_manifest={require_manifest}"
        );
        assert_eq!(v.rejected_objects(), tried);
        assert!(v.rejected(Reason::IdMismatch) > 0 && v.rejected(Reason::MalformedObject) > 0);
    }
}
