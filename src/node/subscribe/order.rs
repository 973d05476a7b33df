//! Segment order for a late joiner: HLS segments must be written in index order, but a joining
//! FETCH (the chunks before the join) and the live subscription arrive side by side.
//!
//! [`Reorder`] holds verified chunks while the backfill is outstanding and hands them out in
//! ascending index order once it is over (or the caller gives up waiting); after that it passes
//! chunks straight through — except those behind a chunk still being fetched from another
//! source, which wait for it ([`Reorder::push`]) — and drops any that arrive behind the
//! last one handed out (counted as late). It holds at most `cap` chunks: past that the oldest go out early. It never reads a
//! clock or touches a file.

use crate::chunk::ChunkIndex;
use std::collections::BTreeMap;

/// Puts chunks in index order; see the module documentation.
pub struct Reorder<T> {
    holding: bool,
    held: BTreeMap<ChunkIndex, T>,
    last: Option<ChunkIndex>,
    late: u64,
    cap: usize,
}

impl<T> Reorder<T> {
    /// A reorder stage that holds chunks (at most `cap`) until [`Reorder::release`] when
    /// `hold`, and passes them through in order otherwise.
    pub fn new(hold: bool, cap: usize) -> Reorder<T> {
        Reorder {
            holding: hold,
            held: BTreeMap::new(),
            last: None,
            late: 0,
            cap: cap.max(1),
        }
    }

    /// Whether chunks are being held for the backfill.
    pub fn is_holding(&self) -> bool {
        self.holding
    }

    /// Takes chunk `index` while chunk `missing` (if any) is still on its way: once holding is
    /// over, chunks from `missing` on wait for it; returns what may be written now, ascending.
    pub fn push(
        &mut self,
        index: ChunkIndex,
        item: T,
        missing: Option<ChunkIndex>,
    ) -> Vec<(ChunkIndex, T)> {
        if self.last.is_some_and(|last| index <= last) {
            self.late += 1;
            return Vec::new();
        }
        self.held.insert(index, item);
        self.flush(missing)
    }

    /// Hands out what no longer waits: everything before `missing` (all when `None`) once
    /// holding is over, and the oldest past the cap in any case.
    pub fn flush(&mut self, missing: Option<ChunkIndex>) -> Vec<(ChunkIndex, T)> {
        let ready = match (self.holding, missing) {
            (true, _) => 0,
            (false, None) => self.held.len(),
            (false, Some(m)) => self.held.range(..m).count(),
        };
        let over = self.held.len().saturating_sub(self.cap);
        self.take(ready.max(over))
    }

    /// Ends holding: everything held goes out, ascending.
    pub fn release(&mut self) -> Vec<(ChunkIndex, T)> {
        self.holding = false;
        self.take(self.held.len())
    }

    /// How many chunks it holds.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Chunks dropped because a later one had already been handed out.
    pub fn late(&self) -> u64 {
        self.late
    }

    fn take(&mut self, count: usize) -> Vec<(ChunkIndex, T)> {
        let out: Vec<(ChunkIndex, T)> = (0..count).filter_map(|_| self.held.pop_first()).collect();
        if let Some((index, _)) = out.last() {
            self.last = Some(*index);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_behind_a_missing_one_wait_for_it_or_for_the_cap() {
        let mut r = Reorder::new(false, 3);
        assert_eq!(indices(r.push(ChunkIndex(1), (), None)), [1]);
        // 2 is being fetched elsewhere: 3 and 4 wait.
        assert_eq!(
            indices(r.push(ChunkIndex(3), (), Some(ChunkIndex(2)))),
            [0u64; 0]
        );
        assert_eq!(
            indices(r.push(ChunkIndex(4), (), Some(ChunkIndex(2)))),
            [0u64; 0]
        );
        assert_eq!(indices(r.push(ChunkIndex(2), (), None)), [2, 3, 4]);
        // Given up on 5: what waited goes out.
        assert_eq!(
            indices(r.push(ChunkIndex(6), (), Some(ChunkIndex(5)))),
            [0u64; 0]
        );
        assert_eq!(indices(r.flush(None)), [6]);
        // The cap bounds what waits.
        for i in 8..11 {
            assert_eq!(
                indices(r.push(ChunkIndex(i), (), Some(ChunkIndex(7)))),
                [0u64; 0]
            );
        }
        assert_eq!(
            indices(r.push(ChunkIndex(11), (), Some(ChunkIndex(7)))),
            [8]
        );
    }

    #[test]
    fn a_gap_refilled_in_order_releases_only_up_to_the_next_missing_chunk() {
        // 1 written; after a cut 5 and 6 arrive, and 2..=4 are fetched again.
        let mut r = Reorder::new(false, 8);
        assert_eq!(indices(r.push(ChunkIndex(1), (), None)), [1]);
        for i in [5, 6] {
            assert!(indices(r.push(ChunkIndex(i), (), Some(ChunkIndex(2)))).is_empty());
        }
        // The missing chunk passed on is the lowest still awaited, even when it lies past the
        // chunk pushed: 2 goes out, 5 and 6 still wait for 3 and 4.
        assert_eq!(indices(r.push(ChunkIndex(2), (), Some(ChunkIndex(3)))), [2]);
        assert_eq!(indices(r.push(ChunkIndex(3), (), Some(ChunkIndex(4)))), [3]);
        assert_eq!(indices(r.push(ChunkIndex(4), (), None)), [4, 5, 6]);
    }

    fn indices(out: Vec<(ChunkIndex, ())>) -> Vec<u64> {
        out.into_iter().map(|(i, ())| i.0).collect()
    }

    #[test]
    fn holds_until_released_then_hands_out_ascending() {
        let mut r = Reorder::new(true, 8);
        assert!(indices(r.push(ChunkIndex(10), (), None)).is_empty());
        assert!(indices(r.push(ChunkIndex(8), (), None)).is_empty());
        assert!(indices(r.push(ChunkIndex(9), (), None)).is_empty());
        assert_eq!(indices(r.release()), vec![8, 9, 10]);
        assert_eq!(indices(r.push(ChunkIndex(11), (), None)), vec![11]);
        assert!(!r.is_holding());
    }

    #[test]
    fn chunks_behind_the_last_written_are_late() {
        let mut r = Reorder::new(false, 8);
        assert_eq!(indices(r.push(ChunkIndex(5), (), None)), vec![5]);
        assert!(indices(r.push(ChunkIndex(4), (), None)).is_empty());
        assert!(indices(r.push(ChunkIndex(5), (), None)).is_empty());
        assert_eq!(indices(r.push(ChunkIndex(7), (), None)), vec![7]);
        assert_eq!(r.late(), 2);
    }

    #[test]
    fn holding_is_bounded_and_the_oldest_go_out_first() {
        let mut r = Reorder::new(true, 2);
        assert!(indices(r.push(ChunkIndex(3), (), None)).is_empty());
        assert!(indices(r.push(ChunkIndex(1), (), None)).is_empty());
        assert_eq!(indices(r.push(ChunkIndex(2), (), None)), vec![1]);
        assert_eq!(indices(r.release()), vec![2, 3]);
        assert!(indices(r.push(ChunkIndex(0), (), None)).is_empty());
        assert_eq!(r.late(), 1);
    }
}
