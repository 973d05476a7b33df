//! Deterministic mutations of valid encodings, so the test suite exercises every decoder of
//! untrusted bytes on stable Rust (cargo-fuzz needs nightly features; see docs/USAGE.md).
//!
//! `mutations(seed, n)` yields `n` variants of `seed`: bit flips, byte overwrites, insertions,
//! deletions, truncations, duplicated ranges and "interesting" values, chosen by a fixed-seed
//! xorshift generator so every run tests the same inputs.

/// A small deterministic PRNG (xorshift64*); no external crate needed for test mutations.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x3f, 0x40, 0x7f, 0x80, 0xc0, 0xff];

/// One random mutation of `input`.
pub fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
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
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ salt);
    (0..count).map(move |_| mutate(seed, &mut rng))
}
