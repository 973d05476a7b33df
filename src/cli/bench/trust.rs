//! `ec-node bench trust`: throughput of the trust layer next to raw BLAKE3 and raw AEAD speed,
//! measured in the same run on one core. A benchmark to read, not a test: nothing here fails on a
//! slow machine.
use crate::cli::Failure;
use argh::FromArgs;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ec_node::crypto::object::{self, Object};
use ec_node::crypto::{ChunkFlags, ChunkIndex, NodeKey, StreamId, StreamKey};
use ec_node::manifest::{Entry, Event, Manifest, ManifestChain, Policy, Verifier};
use ec_node::time::UnixMillis;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Measure verify+decrypt and manifest sign/verify speed against raw BLAKE3 and AEAD.
#[derive(FromArgs)]
#[argh(subcommand, name = "trust")]
pub struct Args {
    /// chunk size in KiB (default 2048, about 2 s of an 8 Mb/s broadcast)
    #[argh(option, default = "2048")]
    chunk_kib: usize,
    /// total time per figure in milliseconds, split over 5 interleaved trials (default 2000)
    #[argh(option, default = "2000")]
    millis: u64,
}

/// Chunks per verify round: one manifest covers them all.
const ROUND_CHUNKS: u64 = 16;
/// Trials per figure; the best counts, so a neighbour's burst of work does not skew a ratio.
const TRIALS: u32 = 5;

/// One figure: a name, its unit, how many units one step processes, and the step.
struct Figure<'a> {
    name: &'static str,
    unit: &'static str,
    units: f64,
    step: Box<dyn FnMut() + 'a>,
    best: f64,
}

impl<'a> Figure<'a> {
    fn new(name: &'static str, unit: &'static str, units: f64, step: impl FnMut() + 'a) -> Self {
        Figure {
            name,
            unit,
            units,
            step: Box::new(step),
            best: 0.0,
        }
    }

    /// Runs the step for `budget` (after one warm-up step) and keeps the best rate seen.
    fn trial(&mut self, budget: Duration) {
        (self.step)();
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < budget {
            (self.step)();
            runs += 1;
        }
        let rate = self.units * runs as f64 / start.elapsed().as_secs_f64();
        self.best = self.best.max(rate);
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    if args.chunk_kib == 0 || args.chunk_kib > 32 * 1024 {
        return Err(Failure::usage("--chunk-kib must be 1 to 32768"));
    }
    let trial = Duration::from_millis(args.millis.max(TRIALS.into())) / TRIALS;
    let size = args.chunk_kib * 1024;
    let mb = size as f64 / 1e6;
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    let keys = StreamKey::derive(None, &StreamId::new("ec/bench").expect("valid id")).subkeys();
    let leader = NodeKey::from_seed([1; 32]);

    // A round of objects and the manifest that covers them.
    let objects: Vec<Vec<u8>> = (0..ROUND_CHUNKS)
        .map(|i| object::seal(&keys, ChunkIndex(i), ChunkFlags::default(), &plaintext))
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::other(e.to_string()))?;
    let entries: Vec<Entry> = objects
        .iter()
        .filter_map(|o| Object::parse(o).ok())
        .map(|o| Entry::for_object(&o, 180_000))
        .collect();
    let locator = keys.locator();
    let manifest = ManifestChain::new(NodeKey::from_seed([1; 32]), locator, 16, 180_000)
        .sign_epoch(0, entries.clone(), UnixMillis(0))
        .map_err(|e| Failure::other(e.to_string()))?;
    // Manifests of one entry each (`--epoch-chunks 1`, the default), signed on a fresh chain.
    let mut signer = ManifestChain::new(NodeKey::from_seed([1; 32]), locator, 1, 180_000);
    let mut first = entries[0];
    first.index = ChunkIndex(0);
    let single = signer
        .sign_epoch(0, vec![first], UnixMillis(0))
        .map_err(|e| Failure::other(e.to_string()))?;

    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    // The raw figures cycle through as many distinct buffers as a verify round touches, so both
    // see the same cache footprint (one hot buffer would flatter the raw speeds).
    let mut scratch: Vec<Vec<u8>> = vec![plaintext.clone(); ROUND_CHUNKS as usize];
    // Buffers stand in for the receive path: each round copies the objects into the buffers it
    // got back from the previous round's plaintexts, as a receiver reusing buffers would; the
    // verify figure includes that copy.
    let mut buffers: Vec<Vec<u8>> = objects.clone();
    let mut copies: Vec<Vec<u8>> = objects.clone();
    let mut delivered = 0u64;
    let mut epoch = 1u64;
    let mut sign_failures = 0u64;
    let verify_step = || {
        let mut verifier = Verifier::new(keys.clone(), Policy::new(vec![leader.node_id()]));
        verifier.push_manifest(&manifest, Instant::now());
        for (mut buffer, object) in buffers.drain(..).zip(&objects) {
            buffer.clear();
            buffer.extend_from_slice(object);
            verifier.push_object(buffer, None, None, Instant::now());
        }
        while let Some(event) = verifier.poll_event() {
            if let Event::Chunk(chunk) = event {
                delivered += 1;
                buffers.push(chunk.bytes.into_buffer());
            }
        }
        // Rejected objects lose their buffers; keep the count so every round pushes them all.
        buffers.resize_with(objects.len(), Vec::new);
    };
    let sign_step = || {
        let mut entry = first;
        entry.index = ChunkIndex(epoch);
        match signer.sign_epoch(epoch, vec![entry], UnixMillis(epoch)) {
            Ok(bytes) => drop(black_box(bytes)),
            Err(_) => sign_failures += 1,
        }
        epoch += 1;
    };
    let mut figures = [
        Figure::new("raw BLAKE3", "MB/s", mb * ROUND_CHUNKS as f64, || {
            for object in &objects {
                black_box(blake3::hash(black_box(object)));
            }
        }),
        Figure::new(
            "raw XChaCha20-Poly1305",
            "MB/s",
            mb * ROUND_CHUNKS as f64,
            || {
                let nonce = XNonce::from_slice(&[1; 24]);
                for buffer in &mut scratch {
                    black_box(cipher.encrypt_in_place_detached(nonce, b"", buffer).ok());
                }
            },
        ),
        Figure::new("memory copy", "MB/s", mb * ROUND_CHUNKS as f64, || {
            for (copy, object) in copies.iter_mut().zip(&objects) {
                copy.clear();
                copy.extend_from_slice(black_box(object));
            }
            black_box(&copies);
        }),
        Figure::new("seal (nonce + AEAD)", "MB/s", mb, || {
            let sealed = object::seal(&keys, ChunkIndex(1), ChunkFlags::default(), &plaintext);
            black_box(sealed.ok());
        }),
        Figure::new(
            "verify + decrypt",
            "MB/s",
            mb * ROUND_CHUNKS as f64,
            verify_step,
        ),
        Figure::new("manifest sign", "/s", 1.0, sign_step),
        Figure::new("manifest decode + verify", "/s", 1.0, || {
            let ok = Manifest::decode(black_box(&single)).is_ok_and(|m| m.signature_valid());
            black_box(ok);
        }),
    ];
    println!(
        "bench trust: {} KiB chunks, one core, best of {TRIALS} interleaved trials of {} ms",
        args.chunk_kib,
        trial.as_millis()
    );
    for _ in 0..TRIALS {
        for figure in &mut figures {
            figure.trial(trial);
        }
    }
    let (blake3, aead, copy, verify) = (
        figures[0].best,
        figures[1].best,
        figures[2].best,
        figures[4].best,
    );
    for figure in &figures {
        println!("{:<26} {:10.1} {}", figure.name, figure.best, figure.unit);
        if figure.name == "verify + decrypt" {
            // The figure includes copying each object into its receive buffer; take that time
            // out to compare the verifier alone with the raw cipher. Checking the object id is a
            // BLAKE3 pass on top of the AEAD, so the ceiling is both passes back to back.
            let alone = 1.0 / (1.0 / verify - 1.0 / copy);
            let ceiling = 1.0 / (1.0 / aead + 1.0 / blake3);
            let pct = |x: f64| 100.0 * x / aead;
            println!("  = {:.0}% of raw AEAD", pct(verify));
            println!(
                "  without the receive copy {alone:10.1} MB/s = {:.0}% of raw AEAD",
                pct(alone)
            );
            println!(
                "  ceiling, AEAD + BLAKE3   {ceiling:10.1} MB/s = {:.0}% of raw AEAD",
                pct(ceiling)
            );
        }
    }
    drop(figures);
    if delivered == 0 || !delivered.is_multiple_of(ROUND_CHUNKS) || sign_failures > 0 {
        return Err(Failure::other(
            "bench trust: the verifier rejected benchmark objects or signing failed",
        ));
    }
    Ok(())
}
