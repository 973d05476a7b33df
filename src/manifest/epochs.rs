//! The signer's side of epochs: collects the entries of consecutive chunks and hands each epoch
//! over to be signed once it is complete, so a leader signs every epoch exactly once.
//!
//! An epoch is complete when the entry of its last index arrives, or when an entry of a later
//! epoch arrives first (chunk indices may skip). Epochs are aligned to indices
//! ([`ManifestBody::epoch_of`]), so any two signers form the same epochs. Pure bookkeeping: no
//! signing, no clock.

use super::body::{Entry, ManifestBody};

/// Collects entries into epochs of `epoch_chunks` chunk indices.
#[derive(Debug)]
pub struct EpochCollector {
    epoch_chunks: u32,
    open: Option<(u64, Vec<Entry>)>,
}

/// A complete epoch: its number and the entries of the chunks it covers, in index order.
pub type Epoch = (u64, Vec<Entry>);

impl EpochCollector {
    /// A collector for epochs of `epoch_chunks` (at least 1) chunk indices.
    pub fn new(epoch_chunks: u32) -> EpochCollector {
        EpochCollector {
            epoch_chunks: epoch_chunks.max(1),
            open: None,
        }
    }

    /// Adds the entry of the next chunk (indices increase) and returns the epochs it completes,
    /// oldest first: at most the open one it closes and its own.
    pub fn push(&mut self, entry: Entry) -> Vec<Epoch> {
        let epoch = ManifestBody::epoch_of(entry.index, self.epoch_chunks);
        let mut complete = Vec::new();
        if self.open.as_ref().is_some_and(|(open, _)| *open != epoch) {
            complete.extend(self.open.take());
        }
        let (_, entries) = self.open.get_or_insert_with(|| (epoch, Vec::new()));
        entries.push(entry);
        let last_index = (epoch + 1) * u64::from(self.epoch_chunks) - 1;
        if entry.index.0 == last_index {
            complete.extend(self.open.take());
        }
        complete
    }

    /// The epoch still open (at the end of a stream), as far as it got.
    pub fn finish(&mut self) -> Option<Epoch> {
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{ChunkFlags, ChunkIndex, ObjectId};

    fn entry(index: u64) -> Entry {
        Entry {
            index: ChunkIndex(index),
            object: ObjectId([index as u8; 32]),
            size: 100,
            duration: 180_000,
            flags: ChunkFlags::default(),
        }
    }

    fn indices(epochs: &[Epoch]) -> Vec<(u64, Vec<u64>)> {
        epochs
            .iter()
            .map(|(e, entries)| (*e, entries.iter().map(|x| x.index.0).collect()))
            .collect()
    }

    #[test]
    fn one_chunk_epochs_complete_at_once() {
        let mut c = EpochCollector::new(1);
        assert_eq!(indices(&c.push(entry(7))), vec![(7, vec![7])]);
        assert_eq!(indices(&c.push(entry(9))), vec![(9, vec![9])]);
        assert!(c.finish().is_none());
    }

    #[test]
    fn epochs_close_on_their_last_index_or_on_a_later_epoch() {
        let mut c = EpochCollector::new(4);
        // Joined mid-epoch 2 (indices 8..=11): 10 and 11 complete it.
        assert!(c.push(entry(10)).is_empty());
        assert_eq!(indices(&c.push(entry(11))), vec![(2, vec![10, 11])]);
        assert!(c.push(entry(12)).is_empty());
        assert!(c.push(entry(13)).is_empty());
        // 14 and 15 skipped (a long GOP): 17 closes epoch 3 and opens 4.
        assert_eq!(indices(&c.push(entry(17))), vec![(3, vec![12, 13])]);
        // 23 closes epoch 4 and completes epoch 5 by itself.
        assert_eq!(
            indices(&c.push(entry(23))),
            vec![(4, vec![17]), (5, vec![23])]
        );
        assert!(c.push(entry(24)).is_empty());
        assert_eq!(
            indices(&c.finish().into_iter().collect::<Vec<_>>()),
            vec![(6, vec![24])]
        );
    }
}
