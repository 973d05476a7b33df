//! Fuzzes the whole TS path — framer, packet, PSI, PES, random-access detection, chunker — on
//! arbitrary bytes in reads of varying size, checking the chunker's output invariants.
#![no_main]

use ec_node::chunk::{Chunker, ChunkerConfig};
use ec_node::ts::clock::UnixMillis;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = UnixMillis(1_764_072_000_000);
    let mut chunker = Chunker::new(ChunkerConfig { chunk_ms: 100, max_chunk_bytes: 1 << 20 });
    let mut last = None;
    let mut check = |chunker: &mut Chunker| {
        while let Some(chunk) = chunker.poll_chunk() {
            assert_eq!(chunk.bytes.len() % 188, 0);
            assert!(last < Some(chunk.index), "indices must increase");
            last = Some(chunk.index);
        }
    };
    for part in data.chunks(1 + data.len() % 997) {
        chunker.push(part, now);
        check(&mut chunker);
    }
    chunker.finish(now);
    check(&mut chunker);
});
