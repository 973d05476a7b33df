//! Deliberate misbehaviour of a forwarding node, for tests of the subscriber's acceptance policy
//! (`ec-node moq-forward --tamper`): the hostile availability node of ECP-0032.
//!
//! [`Tamper`] takes the chunk groups a forwarder received, in order, and hands back what it
//! forwards: every `every`-th group is tampered with, cycling through the configured modes.
//! It is deterministic (no randomness, no clock), so a test knows what to expect, and it never
//! sees a key: every mode works on encrypted objects as a real intermediary could.

use crate::crypto::object::HEADER_LEN;
use crate::moq::GroupId;
use std::sync::Arc;

/// One way of tampering with a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Flip one ciphertext byte of the object.
    Flip,
    /// Exchange the object with the next group's.
    Swap,
    /// Send the previous group's object again in this group's place.
    Replay,
    /// Replace the object with a forged one: the real header, garbage after it.
    Inject,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "flip" => Ok(Mode::Flip),
            "swap" => Ok(Mode::Swap),
            "replay" => Ok(Mode::Replay),
            "inject" => Ok(Mode::Inject),
            other => Err(format!(
                "unknown tamper mode {other:?} (flip, swap, replay or inject)"
            )),
        }
    }
}

/// A group as forwarded.
pub type Group = (GroupId, Arc<[u8]>);

/// Tampers with every `every`-th group; see the module documentation.
pub struct Tamper {
    modes: Vec<Mode>,
    every: u64,
    seen: u64,
    next_mode: usize,
    previous: Option<Arc<[u8]>>,
    /// A group held back to be swapped with the next one.
    swapping: Option<Group>,
    tampered: u64,
}

impl Tamper {
    /// Tampers with every `every`-th group (at least 1) with `modes` in turn; no modes: none.
    pub fn new(modes: Vec<Mode>, every: u64) -> Tamper {
        Tamper {
            modes,
            every: every.max(1),
            seen: 0,
            next_mode: 0,
            previous: None,
            swapping: None,
            tampered: 0,
        }
    }

    /// Groups tampered with so far (a swap counts two).
    pub fn tampered(&self) -> u64 {
        self.tampered
    }

    /// Takes the next received group; returns the groups to forward, in order.
    pub fn push(&mut self, group: GroupId, payload: Arc<[u8]>) -> Vec<Group> {
        let previous = self.previous.replace(payload.clone());
        if let Some((held, held_payload)) = self.swapping.take() {
            self.tampered += 2;
            return vec![(held, payload), (group, held_payload)];
        }
        self.seen += 1;
        if self.modes.is_empty() || !self.seen.is_multiple_of(self.every) {
            return vec![(group, payload)];
        }
        let mode = self.modes[self.next_mode % self.modes.len()];
        self.next_mode += 1;
        let forged = match mode {
            Mode::Swap => {
                self.swapping = Some((group, payload));
                return Vec::new();
            }
            Mode::Replay => match previous {
                Some(previous) => previous,
                None => return vec![(group, payload)],
            },
            Mode::Flip => {
                let mut bytes = payload.to_vec();
                if let Some(b) = bytes.get_mut(HEADER_LEN) {
                    *b ^= 0x01;
                }
                bytes.into()
            }
            Mode::Inject => {
                let mut bytes = payload.to_vec();
                for (i, b) in bytes.iter_mut().enumerate().skip(HEADER_LEN) {
                    *b = (i as u8).wrapping_mul(31) ^ 0x5a;
                }
                bytes.into()
            }
        };
        self.tampered += 1;
        vec![(group, forged)]
    }

    /// The group held for a swap, if the stream ended before its partner came.
    pub fn finish(&mut self) -> Option<Group> {
        self.swapping.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: u8) -> Arc<[u8]> {
        vec![n; HEADER_LEN + 20].into()
    }

    fn run(t: &mut Tamper, groups: u64) -> Vec<(u64, Vec<u8>)> {
        (0..groups)
            .flat_map(|g| t.push(GroupId(g), payload(g as u8)))
            .map(|(g, p)| (g.0, p.to_vec()))
            .collect()
    }

    #[test]
    fn without_modes_everything_passes_untouched() {
        let mut t = Tamper::new(Vec::new(), 1);
        let out = run(&mut t, 4);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|(g, p)| p == &payload(*g as u8).to_vec()));
        assert_eq!(t.tampered(), 0);
    }

    #[test]
    fn every_nth_group_is_tampered_with_each_mode_in_turn() {
        let modes = vec![Mode::Flip, Mode::Swap, Mode::Replay, Mode::Inject];
        let mut t = Tamper::new(modes, 2);
        let out = run(&mut t, 10);
        let groups: Vec<u64> = out.iter().map(|(g, _)| *g).collect();
        assert_eq!(groups, (0..10).collect::<Vec<_>>(), "group order is kept");
        let original = |g: u64| payload(g as u8).to_vec();
        // Group 1: flipped in its first ciphertext byte.
        assert_eq!(out[1].1[HEADER_LEN], original(1)[HEADER_LEN] ^ 1);
        assert_eq!(out[1].1[..HEADER_LEN], original(1)[..HEADER_LEN]);
        // Groups 3 and 4: swapped.
        assert_eq!(out[3].1, original(4));
        assert_eq!(out[4].1, original(3));
        // Group 6 (the next even count): the previous group's object again.
        assert_eq!(out[6].1, original(5));
        // Group 8: forged body under the real header.
        assert_eq!(out[8].1[..HEADER_LEN], original(8)[..HEADER_LEN]);
        assert_ne!(out[8].1, original(8));
        for g in [0, 2, 5, 7, 9] {
            assert_eq!(out[g as usize].1, original(g), "group {g}");
        }
        assert_eq!(t.tampered(), 5);
    }

    #[test]
    fn a_swap_cut_short_by_the_end_gives_back_the_held_group() {
        let mut t = Tamper::new(vec![Mode::Swap], 1);
        assert!(t.push(GroupId(0), payload(0)).is_empty());
        assert_eq!(t.finish().map(|(g, _)| g), Some(GroupId(0)));
    }
}
