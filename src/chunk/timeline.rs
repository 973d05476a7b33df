//! The unwrapped video timeline: 33-bit PTS values become 64-bit "extended" times whose wrap
//! count comes from a reference wall clock, so nodes that started at different moments (even on
//! opposite sides of a PTS wrap) agree on every extended time, and so on every chunk index.
//!
//! Rule (docs/PROTOCOL.md §1.3): an anchor maps a PTS `p` and a wall-clock reading `u` (in 90 kHz
//! ticks since 1970) to the value congruent to `p` modulo 2^33 that lies nearest to `u`. Later
//! PTS values are unwrapped by continuity from the previous one. The reference is the
//! broadcaster's clock (ATSC STT, DVB TDT/TOT) when one arrives within [`ANCHOR_WAIT`] of stream
//! time, otherwise the caller's system clock. No clock is read here: times are arguments.

use crate::time::UnixMillis;
use crate::ts::clock::{Pts, TICKS_PER_MS, WRAP};

/// How much video time to wait for a broadcaster clock before anchoring on the system clock
/// (ATSC sends its STT every second).
pub const ANCHOR_WAIT: u64 = 1500 * TICKS_PER_MS;

/// The 64-bit extended time for `pts` nearest to the wall clock `reference`.
pub fn resolve(pts: Pts, reference: UnixMillis) -> u64 {
    let u = reference.0 * TICKS_PER_MS;
    let phase = pts.ticks().wrapping_sub(u) & (WRAP - 1);
    if phase >= WRAP / 2 {
        u - (WRAP - phase)
    } else {
        u + phase
    }
}

/// Unwraps video timestamps; see the module doc.
#[derive(Debug, Default)]
pub struct Timeline {
    last: Option<(Pts, u64)>,
    waiting_since: Option<Pts>,
    broadcaster_clock: Option<UnixMillis>,
    floor: Option<u64>,
}

impl Timeline {
    /// Records the broadcaster's wall clock; it anchors the next video timestamp if unanchored.
    pub fn observe_broadcaster_clock(&mut self, time: UnixMillis) {
        if self.last.is_none() {
            self.broadcaster_clock = Some(time);
        }
    }

    /// Forgets the anchor after a timestamp discontinuity. Extended times issued afterwards stay
    /// above every time issued before.
    pub fn reanchor(&mut self) {
        if let Some((_, ext)) = self.last.take() {
            self.floor = Some(self.floor.map_or(ext, |f| f.max(ext)));
        }
        self.waiting_since = None;
        self.broadcaster_clock = None;
    }

    /// The extended time of a video timestamp, or `None` while waiting for an anchor.
    /// `now` is the system clock when this timestamp was read.
    pub fn extend(&mut self, pts: Pts, now: UnixMillis) -> Option<u64> {
        let ext = match self.last {
            Some((last_pts, last_ext)) => {
                last_ext.checked_add_signed(pts.wrapping_delta(last_pts))?
            }
            None => self.anchor(pts, now)?,
        };
        let ext = match self.floor {
            Some(floor) if self.last.is_none() && ext <= floor => floor + 1,
            _ => ext,
        };
        self.last = Some((pts, ext));
        Some(ext)
    }

    fn anchor(&mut self, pts: Pts, now: UnixMillis) -> Option<u64> {
        if let Some(clock) = self.broadcaster_clock {
            return Some(resolve(pts, clock));
        }
        let since = *self.waiting_since.get_or_insert(pts);
        let waited = pts.wrapping_delta(since);
        (waited >= ANCHOR_WAIT as i64 || waited < 0).then(|| resolve(pts, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = UnixMillis(1_764_072_000_000);

    #[test]
    fn resolve_is_congruent_and_near_the_clock() {
        for pts in [0, 1, WRAP / 2 - 1, WRAP / 2, WRAP - 1, 123_456_789] {
            let e = resolve(Pts::new(pts), NOW);
            assert_eq!(e % WRAP, pts);
            assert!(e.abs_diff(NOW.0 * TICKS_PER_MS) <= WRAP / 2);
        }
    }

    #[test]
    fn nodes_starting_on_both_sides_of_a_wrap_agree() {
        let before = Pts::new(WRAP - 90_000); // one second before the wrap
        let after = Pts::new(90_000); // one second after
        let early = resolve(before, NOW) + 180_000;
        // A node that starts two seconds later reads its clock two seconds later.
        let late = resolve(after, UnixMillis(NOW.0 + 2000));
        assert_eq!(early, late);
    }

    #[test]
    fn broadcaster_clock_anchors_at_once_else_after_the_wait() {
        let mut t = Timeline::default();
        assert_eq!(t.extend(Pts::new(1000), NOW), None);
        assert_eq!(t.extend(Pts::new(1000 + ANCHOR_WAIT - 1), NOW), None);
        assert!(t.extend(Pts::new(1000 + ANCHOR_WAIT), NOW).is_some());

        let mut t = Timeline::default();
        t.observe_broadcaster_clock(NOW);
        assert_eq!(
            t.extend(Pts::new(5), UnixMillis(0)),
            Some(resolve(Pts::new(5), NOW))
        );
    }

    #[test]
    fn reanchoring_never_goes_backwards() {
        let mut t = Timeline::default();
        t.observe_broadcaster_clock(NOW);
        let first = t.extend(Pts::new(900_000), NOW).unwrap();
        t.reanchor();
        t.observe_broadcaster_clock(NOW);
        let after_splice = t.extend(Pts::new(90_000), NOW).unwrap();
        assert_eq!(after_splice, first + 1);
        assert_eq!(t.extend(Pts::new(93_003), NOW).unwrap(), first + 1 + 3003);
    }
}
