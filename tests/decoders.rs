//! Every decoder of untrusted bytes, run on stable: the fuzz targets' seed corpora plus a few
//! thousand deterministic mutations of each seed go through the same property checks as
//! `cargo fuzz` (fuzz/checks.rs). `cargo test -- --ignored write_seed_corpora` regenerates the
//! seeds.

#[allow(dead_code)] // the shared file also serves the fuzz targets
#[path = "../fuzz/checks.rs"]
mod checks;
use ec_node_testkit::mutate;

use ec_node::capture::http;
use ec_node::crypto::object::{self, Object};
use ec_node::crypto::{ChunkFlags, ChunkIndex};
use ec_node::hdhr::client::{parse_discover, parse_lineup};
use ec_node::hdhr::sim::{Simulator, TunerRoute};
use ec_node::http::parse_request_head;
use ec_node::manifest::{Entry, Manifest, ManifestChain, Proof};
use ec_node::time::UnixMillis;
use std::net::SocketAddr;
use std::path::PathBuf;

const TARGETS: [&str; 6] = [
    "manifest_decode",
    "object_decode",
    "merkle_proof",
    "http_response",
    "hdhr_documents",
    "sim_request",
];
const MUTATIONS_PER_SEED: usize = 1500;

fn check(target: &str, data: &[u8]) {
    match target {
        "manifest_decode" => checks::manifest_decode(data),
        "object_decode" => checks::object_decode(data),
        "merkle_proof" => checks::merkle_proof(data),
        "http_response" => checks::http_response(data),
        "hdhr_documents" => checks::hdhr_documents(data),
        "sim_request" => checks::sim_request(data),
        other => panic!("unknown target {other}"),
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The seed encodings, deterministic so the committed files can be checked against them.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let keys = checks::seed_keys();
    let objects: Vec<Vec<u8>> = [&b""[..], b"ten bytes!", &[0x47; 188]]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let flags = ChunkFlags::from_bits(i as u8 & ChunkFlags::KNOWN).unwrap();
            object::seal(&keys, ChunkIndex(8 + i as u64), flags, p).unwrap()
        })
        .collect();
    let entries: Vec<Entry> = objects
        .iter()
        .map(|o| Entry::for_object(&Object::parse(o).unwrap(), 90_000))
        .collect();
    let mut chain = ManifestChain::new(checks::seed_signer(), keys.locator(), 4, 90_000);
    let first = chain
        .sign_epoch(2, entries.clone(), UnixMillis(1_700_000_000_000))
        .unwrap();
    let mut later = entries[0];
    later.index = ChunkIndex(12);
    let second = chain
        .sign_epoch(3, vec![later], UnixMillis(1_700_000_002_000))
        .unwrap();
    let id = Manifest::decode(&first).unwrap().id;
    let mut out = vec![
        ("manifest_decode", "three-entries".into(), first),
        ("manifest_decode", "chained".into(), second),
    ];
    for (i, o) in objects.into_iter().enumerate() {
        out.push(("object_decode", format!("object-{i}"), o));
    }
    for leaf in [0, 2] {
        let proof = Proof::build(id, &entries, leaf).unwrap().encode();
        out.push(("merkle_proof", format!("leaf-{leaf}-of-3"), proof));
    }
    let responses: [(&str, &[u8]); 3] = [
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        ),
        (
            "tuners-in-use",
            b"HTTP/1.1 503 Service Unavailable\r\nX-HDHomeRun-Error: 805 All Tuners In Use\r\nContent-Length: 0\r\n\r\n",
        ),
        (
            "stream",
            b"HTTP/1.0 200 OK\r\nContent-Type: video/mpeg\r\n\r\nG@\x00\x10",
        ),
    ];
    for (name, bytes) in responses {
        out.push(("http_response", name.to_string(), bytes.to_vec()));
    }
    let sim = Simulator::builtin();
    let device: SocketAddr = "192.168.1.50:80".parse().unwrap();
    let documents = [sim.discover_json(device), sim.lineup_json(device)].join("\0");
    out.push(("hdhr_documents", "simulator".into(), documents.into_bytes()));
    let requests: [(&str, &[u8]); 4] = [
        (
            "auto-duration",
            b"GET /auto/v5.1?duration=30 HTTP/1.1\r\nHost: 10.0.0.9:5004\r\nUser-Agent: ec-node",
        ),
        (
            "auto-transcode",
            b"GET /auto/v7?transcode=mobile&duration=90000 HTTP/1.1\r\nHost: 10.0.0.9:5004",
        ),
        ("tuner", b"GET /tuner1/v5.1 HTTP/1.1\r\nHost: 10.0.0.9:5004"),
        ("lineup", b"GET /lineup.json HTTP/1.0"),
    ];
    for (name, bytes) in requests {
        out.push(("sim_request", name.to_string(), bytes.to_vec()));
    }
    out
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand when a format changes"]
fn write_seed_corpora() {
    for (target, name, bytes) in seeds() {
        std::fs::create_dir_all(corpus_dir(target)).unwrap();
        std::fs::write(corpus_dir(target).join(name), bytes).unwrap();
    }
}

#[test]
fn committed_seeds_are_current_and_valid() {
    for (target, name, bytes) in seeds() {
        let path = corpus_dir(target).join(&name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            on_disk,
            bytes,
            "{} is stale: regenerate the seeds",
            path.display()
        );
        let valid = match target {
            "manifest_decode" => Manifest::decode(&bytes).is_ok_and(|m| m.signature_valid()),
            "object_decode" => object::open(&checks::seed_keys(), bytes.clone()).is_ok(),
            "http_response" => http::parse_head(&bytes).is_ok_and(|h| h.is_some()),
            "hdhr_documents" => {
                let (discover, lineup) =
                    bytes.split_at(bytes.iter().position(|&b| b == 0).unwrap());
                parse_discover(discover).is_ok() && parse_lineup(&lineup[1..]).is_ok()
            }
            "sim_request" => {
                parse_request_head(&bytes).is_ok_and(|t| TunerRoute::parse(&t).is_some())
            }
            _ => Proof::decode(&bytes).is_ok(),
        };
        assert!(valid, "{name} is not a valid {target} encoding");
    }
}

#[test]
fn every_corpus_file_and_its_mutations_pass_the_fuzz_checks() {
    let mut runs = 0;
    for (salt, target) in TARGETS.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target} has no seed corpus");
        for file in files {
            let seed = std::fs::read(&file).unwrap();
            check(target, &seed);
            for mutated in mutate::mutations(&seed, MUTATIONS_PER_SEED, salt as u64) {
                check(target, &mutated);
                runs += 1;
            }
        }
    }
    assert!(runs >= TARGETS.len() * MUTATIONS_PER_SEED);
}

#[test]
fn decoders_are_total_on_edge_inputs() {
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0], vec![1], vec![0xff; 4096]];
    for len in [49, 50, 91, 222, 230, 286, 300] {
        inputs.push(vec![1; len]);
        inputs.push(vec![0; len]);
    }
    for target in TARGETS {
        for input in &inputs {
            check(target, input);
        }
    }
}

/// `hdhr_protocol`, kept apart from the table above: its committed seeds (frames captured from
/// `hdhomerun_config` and frames as the node answers) decode, and they, their mutations and the
/// edge inputs pass the fuzz check.
#[test]
fn hdhr_protocol_seeds_and_mutations_pass_the_fuzz_check() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir("hdhr_protocol"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "hdhr_protocol has too few seeds");
    for file in files {
        let seed = std::fs::read(&file).unwrap();
        let decoded = ec_node::hdhr::protocol::decode(&seed);
        assert!(decoded.is_ok(), "{}: {decoded:?}", file.display());
        checks::hdhr_protocol(&seed);
        for mutated in mutate::mutations(&seed, MUTATIONS_PER_SEED, 65001) {
            checks::hdhr_protocol(&mutated);
        }
    }
    for input in [
        vec![],
        vec![0],
        vec![0, 2, 0, 0],
        vec![0xff; 4096],
        vec![0; 1460],
    ] {
        checks::hdhr_protocol(&input);
    }
}
