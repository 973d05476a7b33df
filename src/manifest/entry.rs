//! What a manifest says about one chunk ([`Entry`], its fixed-width encoding) and how a
//! manifest is named ([`ManifestId`]).
//!
//! The vocabulary shared by the manifest body and the Merkle tree over its entries; it knows
//! neither of them, so the tree never depends on the body that uses it.

use super::wire::Reader;
use crate::crypto::object::{MAX_OBJECT_BYTES, OVERHEAD};
use crate::crypto::{ChunkFlags, ChunkIndex, Object, ObjectId};
use std::fmt;

/// Most chunks per epoch, and so most entries per manifest.
pub const MAX_EPOCH_CHUNKS: u32 = 4096;
/// Bytes of one encoded entry: index, object id, size, duration, flags.
pub const ENTRY_LEN: usize = 8 + 32 + 4 + 4 + 1;
/// A manifest's id: BLAKE3 of its encoded body. Names the manifest in the signer's hash chain
/// and in proofs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ManifestId(pub [u8; 32]);

impl fmt::Debug for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ManifestId({})",
            blake3::Hash::from_bytes(self.0).to_hex()
        )
    }
}

impl fmt::Display for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&blake3::Hash::from_bytes(self.0).to_hex()[..16])
    }
}

/// What a manifest says about one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The chunk index.
    pub index: ChunkIndex,
    /// BLAKE3 of the object bytes.
    pub object: ObjectId,
    /// Object length in bytes.
    pub size: u32,
    /// Chunk duration in 90 kHz ticks.
    pub duration: u32,
    /// The chunk's flags.
    pub flags: ChunkFlags,
}

impl Entry {
    /// The entry describing an object (as produced by `crypto::object::seal`).
    pub fn for_object(object: &Object<'_>, duration: u32) -> Entry {
        Entry {
            index: object.index,
            object: object.id(),
            size: object.bytes().len() as u32,
            duration,
            flags: object.flags,
        }
    }

    /// Whether this entry vouches for `object`, whose id the caller computed once. The id
    /// covers every byte, so a match fixes index and flags too; they are compared anyway so an
    /// entry whose own fields disagree with the object never vouches for it.
    pub fn vouches_for(&self, object: &Object<'_>, id: &ObjectId) -> bool {
        self.object == *id
            && self.index == object.index
            && self.flags == object.flags
            && self.size as usize == object.bytes().len()
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[..8].copy_from_slice(&self.index.0.to_be_bytes());
        out[8..40].copy_from_slice(&self.object.0);
        out[40..44].copy_from_slice(&self.size.to_be_bytes());
        out[44..48].copy_from_slice(&self.duration.to_be_bytes());
        out[48] = self.flags.bits();
        out
    }

    /// Decodes an entry; `None` when the flags or size are not valid.
    pub fn from_bytes(bytes: &[u8; ENTRY_LEN]) -> Option<Entry> {
        let mut r = Reader::new(bytes);
        let entry = Entry {
            index: ChunkIndex(r.u64()?),
            object: ObjectId(r.array()?),
            size: r.u32()?,
            duration: r.u32()?,
            flags: ChunkFlags::from_bits(r.u8()?)?,
        };
        entry.valid().then_some(entry)
    }

    /// Whether the size is possible for an object (flags are valid by construction).
    pub(super) fn valid(&self) -> bool {
        (OVERHEAD..=MAX_OBJECT_BYTES).contains(&(self.size as usize))
    }
}
