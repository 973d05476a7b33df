//! Deterministic mutations of valid encodings, so the test suite exercises every decoder of
//! untrusted bytes on stable Rust (cargo-fuzz needs nightly features; see docs/USAGE.md).
//!
//! `mutations(seed, n)` yields `n` variants of `seed`: bit flips, byte overwrites, insertions,
//! deletions, truncations, duplicated ranges and "interesting" values, chosen by a fixed-seed
//! generator ([`crate::rng`]) so every run tests the same inputs.

use crate::rng::SplitMix64;

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff];

/// One random mutation of `input`.
pub fn mutate(input: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next_u64() as u8);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            4 if len > 0 => out.truncate(rng.below(len)),
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let copy: Vec<u8> = out[i..i + n].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, copy);
            }
            _ => {
                let i = rng.below(len + 1);
                let word = rng.next_u64().to_be_bytes();
                let n = 1 + rng.below(8);
                out.splice(i..i, word[..n].iter().copied());
            }
        }
    }
    out
}

/// `count` deterministic mutations of `seed`, the same on every run for the same `salt`.
pub fn mutations(seed: &[u8], count: usize, salt: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut rng = SplitMix64::new(0x9e37_79b9_7f4a_7c15 ^ salt);
    (0..count).map(move |_| mutate(seed, &mut rng))
}
