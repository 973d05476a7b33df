//! `ec-node bench-trust`: throughput of the trust layer next to raw BLAKE3 and raw AEAD speed,
//! measured in the same run on one core. A benchmark to read, not a test: nothing here fails on a
//! slow machine.
use super::Failure;
use crate::crypto::object::{self, Object};
use crate::crypto::{ChunkFlags, ChunkIndex, NodeKey, StreamId, StreamKey};
use crate::manifest::{Entry, Event, Manifest, ManifestChain, Policy, UnixTime, Verifier};
use argh::FromArgs;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Measure verify+decrypt and manifest sign/verify speed against raw BLAKE3 and AEAD.
#[derive(FromArgs)]
#[argh(subcommand, name = "bench-trust")]
pub struct Args {
    /// chunk size in KiB (default 2048, about 2 s of an 8 Mb/s broadcast)
    #[argh(option, default = "2048")]
    chunk_kib: usize,
    /// how long to run each measurement, in milliseconds (default 1000)
    #[argh(option, default = "1000")]
    millis: u64,
}

/// Chunks per verify round: one manifest covers them all.
const ROUND_CHUNKS: u64 = 16;

/// Runs `step` (which processes `bytes` bytes or one item) until `budget` has passed;
/// returns units per second.
fn rate(budget: Duration, units: f64, mut step: impl FnMut()) -> f64 {
    step(); // warm-up: caches, lazy CPU-feature detection
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < budget {
        step();
        runs += 1;
    }
    units * runs as f64 / start.elapsed().as_secs_f64()
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    if args.chunk_kib == 0 || args.chunk_kib > 32 * 1024 {
        return Err(Failure::usage("--chunk-kib must be 1 to 32768"));
    }
    let budget = Duration::from_millis(args.millis.max(1));
    let size = args.chunk_kib * 1024;
    let mb = size as f64 / 1e6;
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    let keys = StreamKey::derive(None, &StreamId::new("ec/bench").expect("valid id")).subkeys();
    println!(
        "bench-trust: {} KiB chunks, one core, {} ms per figure",
        args.chunk_kib, args.millis
    );

    let blake3 = rate(budget, mb, || {
        black_box(blake3::hash(black_box(&plaintext)));
    });
    println!("raw BLAKE3                 {blake3:9.1} MB/s");

    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buffer = plaintext.clone();
    let aead = rate(budget, mb, || {
        let tag = cipher.encrypt_in_place_detached(XNonce::from_slice(&[1; 24]), b"", &mut buffer);
        black_box(tag.ok());
    });
    println!("raw XChaCha20-Poly1305     {aead:9.1} MB/s");

    let seal = rate(budget, mb, || {
        let sealed = object::seal(&keys, ChunkIndex(1), ChunkFlags::default(), &plaintext);
        black_box(sealed.ok());
    });
    println!("seal (nonce + AEAD)        {seal:9.1} MB/s");

    let leader = NodeKey::from_seed([1; 32]);
    let objects: Vec<Vec<u8>> = (0..ROUND_CHUNKS)
        .map(|i| object::seal(&keys, ChunkIndex(i), ChunkFlags::default(), &plaintext))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::other(e.to_string()))?;
    let entries: Vec<Entry> = objects
        .iter()
        .filter_map(|o| Object::parse(o).ok())
        .map(|o| Entry::for_object(&o, 180_000))
        .collect();
    let mut chain = ManifestChain::new(NodeKey::from_seed([1; 32]), keys.locator(), 16, 180_000);
    let manifest = chain
        .sign_epoch(0, entries.clone(), UnixTime(0))
        .map_err(|e| Failure::other(e.to_string()))?;
    let mut delivered = 0u64;
    let verify = rate(budget, mb * ROUND_CHUNKS as f64, || {
        let mut verifier = Verifier::new(keys.clone(), Policy::new(vec![leader.node_id()]));
        verifier.push_manifest(&manifest, UnixTime(0));
        for o in &objects {
            verifier.push_object(o, None, UnixTime(0));
        }
        while let Some(event) = verifier.poll_event() {
            delivered += u64::from(matches!(event, Event::Chunk(_)));
        }
    });
    if delivered % ROUND_CHUNKS != 0 || delivered == 0 {
        return Err(Failure::other(
            "bench-trust: the verifier rejected benchmark objects",
        ));
    }
    println!(
        "verify + decrypt (Verifier){verify:9.1} MB/s  ({:.0}% of raw AEAD)",
        100.0 * verify / aead
    );

    // Manifests of one entry each (`--epoch-chunks 1`, the default), signed on a fresh chain.
    let mut signer = ManifestChain::new(NodeKey::from_seed([1; 32]), keys.locator(), 1, 180_000);
    let mut first = entries[0];
    first.index = ChunkIndex(0);
    let single = signer
        .sign_epoch(0, vec![first], UnixTime(0))
        .map_err(|e| Failure::other(e.to_string()))?;
    let mut epoch = 1u64;
    let mut failed = None;
    let sign = rate(budget, 1.0, || {
        let mut entry = entries[0];
        entry.index = ChunkIndex(epoch);
        match signer.sign_epoch(epoch, vec![entry], UnixTime(epoch)) {
            Ok(bytes) => drop(black_box(bytes)),
            Err(e) => failed = Some(e),
        }
        epoch += 1;
    });
    if let Some(e) = failed {
        return Err(Failure::other(format!("bench-trust: signing failed: {e}")));
    }
    println!("manifest sign              {sign:9.0} /s");
    let verify_manifest = rate(budget, 1.0, || {
        let ok = Manifest::decode(black_box(&single)).is_ok_and(|m| m.signature_valid());
        black_box(ok);
    });
    println!("manifest decode + verify   {verify_manifest:9.0} /s");
    Ok(())
}
