//! Runs the `ts_demux` fuzz target's seed corpus plus thousands of deterministic mutations on
//! stable Rust, so every CI run exercises the TS decoders on hostile input (cargo-fuzz itself
//! needs a nightly-only sanitizer build; docs/USAGE.md says how to run it here).

use ec_node_testkit::mutate;

#[allow(dead_code)] // this suite uses the ts_demux check only
#[path = "../fuzz/checks.rs"]
mod checks;

use checks::ts_demux as run;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/ts_demux");
    let mut seeds: Vec<_> = std::fs::read_dir(dir)
        .expect("seed corpus")
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 4, "seed corpus missing");
    seeds
}

#[test]
fn seeds_produce_chunks() {
    for (name, seed) in corpus() {
        assert!(run(&seed) > 0, "seed {name} should exercise chunk output");
    }
}

#[test]
fn mutated_seeds_never_panic() {
    for (i, (_, seed)) in corpus().iter().enumerate() {
        // Whole seeds with a few mutations, and short heads where mutations hit PSI and PES headers.
        for input in mutate::mutations(seed, 1000, i as u64) {
            run(&input);
        }
        for input in mutate::mutations(&seed[..seed.len().min(4096)], 1500, 100 + i as u64) {
            run(&input);
        }
    }
}

#[test]
fn random_bytes_and_sync_storms_never_panic() {
    let mut rng = ec_node_testkit::rng::SplitMix64::new(7);
    for len in [0, 1, 187, 188, 189, 376, 5000, 100_000] {
        let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        run(&noise);
        run(&vec![0x47; len]);
    }
}
