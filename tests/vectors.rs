//! Known-answer vectors, also printed in docs/PROTOCOL.md §2.8, so a second implementation can
//! check itself against this one byte for byte.

use ec_node::crypto::object::{self, Object};
use ec_node::crypto::{ChunkFlags, ChunkIndex, NetworkSecret, NodeKey, StreamId, StreamKey};
use ec_node::manifest::{Entry, Manifest, ManifestChain, Proof};
use ec_node::time::UnixMillis;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Vectors {
    stream_key: String,
    locator: String,
    object: String,
    object_id: String,
    node_id: String,
    manifest_root: String,
    manifest_id: String,
    signature: String,
    proof: String,
}

fn compute() -> Vectors {
    let secret = NetworkSecret::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
    let id = StreamId::new("ec/stream/v1/test").unwrap();
    let keys = StreamKey::derive(Some(&secret), &id).subkeys();
    // The documented formulas, computed here independently of `StreamKey`.
    let mut material: Vec<u8> = (0u8..16).collect();
    material.push(0);
    material.extend_from_slice(b"ec/stream/v1/test");
    let stream_key = blake3::derive_key("every.channel stream key v1", &material);
    let locator = blake3::derive_key("every.channel stream locator v1", &stream_key);
    assert_eq!(&locator, keys.locator().as_bytes());
    let flags = ChunkFlags::from_bits(ChunkFlags::DISCONTINUITY).unwrap();
    let sealed = object::seal(&keys, ChunkIndex(5), flags, b"every.channel").unwrap();
    let parsed = Object::parse(&sealed).unwrap();
    let entry = Entry::for_object(&parsed, 180_000);
    let key = NodeKey::from_seed([1; 32]);
    let node_id = key.node_id().to_string();
    let mut chain = ManifestChain::new(key, keys.locator(), 1, 180_000);
    let signed = chain
        .sign_epoch(5, vec![entry], UnixMillis(1_700_000_000_000))
        .unwrap();
    let manifest = Manifest::decode(&signed).unwrap();
    let proof = Proof::build(manifest.id, &[entry], 0).unwrap().encode();
    Vectors {
        stream_key: hex(&stream_key),
        locator: keys.locator().to_string(),
        object: hex(&sealed),
        object_id: hex(&parsed.id().0),
        node_id,
        manifest_root: hex(&manifest.root),
        manifest_id: hex(&manifest.id.0),
        signature: hex(&manifest.signature),
        proof: hex(&proof),
    }
}

#[test]
fn documented_vectors_hold() {
    let v = compute();
    let expected: [(&str, &str, &str); 9] = [
        ("stream key", v.stream_key.as_str(), "8fbfb298679ea61846f35e527bd3c5dbb9a27b63aa70e31019907e6fa879a5b7"),
        ("locator", &v.locator, "xsmasgwn7fs3dhzg64ogqwg7nug63zvxavj4ygrk2xu27jrrmiiq"),
        ("object", &v.object, "0101000000000000000551a770229c520ee20453a68fe4cb7101f96215ae20df947598fa75c7fbd93a01739e95e9578a800ac3dc34278535f8651be822a8e7"),
        ("object id", &v.object_id, "11979b2c47efb6eca285fbb0959df694cbe01ff472c5262d9288c143462406a4"),
        ("node id", &v.node_id, "rkeohxlubhyzl7ks3mwtzos5olfgocn7dwkbeg7toseadnapn5oa"),
        ("manifest root", &v.manifest_root, "67ce41910189a63dbade24af370a8dfd7c6804ba20395f47cf393921d792ea59"),
        ("manifest id", &v.manifest_id, "51d8e1787f83586385cc19b58c2e2a7b76b60dd4726bb5a0ecc0b2583bedfde7"),
        ("signature", &v.signature, "364918ecb5b11854af5eae2eac7d0fbfa987063f648cc47e01c282fba1da9d91eb153154c04a65baf235ad3bfe01308c887e038e3c6fc8e94f87570b9c7f8104"),
        ("proof", &v.proof, "0151d8e1787f83586385cc19b58c2e2a7b76b60dd4726bb5a0ecc0b2583bedfde70000000000000001000000000000000511979b2c47efb6eca285fbb0959df694cbe01ff472c5262d9288c143462406a40000003f0002bf200100"),
    ];
    for (name, got, _) in &expected {
        println!("{name}: {got}");
    }
    for (name, got, want) in expected {
        assert_eq!(got, want, "{name}");
    }
}
