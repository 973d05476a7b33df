//! The Merkle tree over a manifest's entries and inclusion proofs for single objects.
//!
//! Owns the tree shape (RFC 6962 style: split at the largest power of two below the leaf count, so
//! no node is ever duplicated), the hash domains, the root (which binds the leaf count) and the
//! proof byte layout. It never looks at signatures or policy: a proof only says "this entry is leaf
//! `i` of `n` under this root"; the `Verifier` decides whether that root is trusted.

use super::entry::{Entry, ManifestId, ENTRY_LEN, MAX_EPOCH_CHUNKS};
use super::wire::Reader;
use std::fmt;

/// BLAKE3 `derive_key` context of every tree hash, so tree nodes never collide with object ids,
/// manifest ids or any other BLAKE3 use in the protocol.
pub const MERKLE_CONTEXT: &str = "every.channel manifest merkle v1";
const LEAF: u8 = 0x00;
const NODE: u8 = 0x01;
const ROOT: u8 = 0x02;

/// The only proof format version.
pub const PROOF_VERSION: u8 = 1;
/// Deepest possible path: ceil(log2(MAX_EPOCH_CHUNKS)).
pub const MAX_PROOF_DEPTH: usize = 12;
/// Fixed part of an encoded proof: version, manifest id, leaf index, leaf count, entry, depth.
const PROOF_FIXED_LEN: usize = 1 + 32 + 4 + 4 + ENTRY_LEN + 1;
/// Longest encoded proof.
pub const MAX_PROOF_BYTES: usize = PROOF_FIXED_LEN + 32 * MAX_PROOF_DEPTH;

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(MERKLE_CONTEXT);
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

fn leaf(entry: &Entry) -> [u8; 32] {
    hash(&[&[LEAF], &entry.to_bytes()])
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    hash(&[&[NODE], left, right])
}

/// Size of the left subtree of a tree of `n > 1` leaves: the largest power of two below `n`.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree(entries: &[Entry]) -> [u8; 32] {
    match entries.len() {
        0 => hash(&[]), // unreachable for valid manifests (at least one entry); kept total
        1 => leaf(&entries[0]),
        n => {
            let k = split(n);
            node(&subtree(&entries[..k]), &subtree(&entries[k..]))
        }
    }
}

fn seal_root(count: u32, top: &[u8; 32]) -> [u8; 32] {
    hash(&[&[ROOT], &count.to_be_bytes(), top])
}

/// The root over `entries`: the tree top hashed again with the leaf count, so lists of different
/// lengths can never share a root. Callers keep `entries.len()` within [`MAX_EPOCH_CHUNKS`].
pub fn root(entries: &[Entry]) -> [u8; 32] {
    seal_root(entries.len() as u32, &subtree(entries))
}

/// For leaf `i` of `n`, whether the target goes right at each split, top-down.
fn directions(mut i: usize, mut n: usize) -> Vec<bool> {
    let mut out = Vec::with_capacity(MAX_PROOF_DEPTH);
    while n > 1 {
        let k = split(n);
        if i < k {
            out.push(false);
            n = k;
        } else {
            out.push(true);
            i -= k;
            n -= k;
        }
    }
    out
}

/// An inclusion proof: `entry` is leaf `leaf_index` of the `leaf_count` leaves under the root of
/// manifest `manifest`. Travels beside an object so it can be accepted against a signed root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The manifest whose root the proof leads to.
    pub manifest: ManifestId,
    /// The leaf's position.
    pub leaf_index: u32,
    /// Leaves in the tree.
    pub leaf_count: u32,
    /// The proven entry.
    pub entry: Entry,
    /// Sibling hashes, bottom-up.
    pub siblings: Vec<[u8; 32]>,
}

/// Why a proof was not decoded or does not prove what it claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// Malformed input: too short, too long, or trailing bytes.
    Length(usize),
    /// Malformed input: unknown version.
    Version(u8),
    /// Malformed input: leaf count 0 or over the limit, or leaf index not below it.
    Position,
    /// Malformed input: the sibling count is not the path length for this position.
    Depth(u8),
    /// Malformed input: the entry is not canonical.
    Entry,
    /// Caller misuse when building: leaf index out of range.
    NoSuchLeaf,
    /// The proof does not lead to the expected root.
    Mismatch,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProofError::Length(n) => write!(f, "proof of {n} bytes has the wrong length"),
            ProofError::Version(v) => write!(f, "proof version {v} is unknown"),
            ProofError::Position => f.write_str("proof leaf index or count is out of range"),
            ProofError::Depth(d) => write!(f, "proof has {d} siblings, not its path length"),
            ProofError::Entry => f.write_str("proof entry is not canonical"),
            ProofError::NoSuchLeaf => f.write_str("no such leaf"),
            ProofError::Mismatch => f.write_str("proof does not lead to the manifest root"),
        }
    }
}

impl std::error::Error for ProofError {}

impl Proof {
    /// The proof for entry `i` of a manifest's entries.
    pub fn build(manifest: ManifestId, entries: &[Entry], i: usize) -> Result<Proof, ProofError> {
        if i >= entries.len() || entries.len() > MAX_EPOCH_CHUNKS as usize {
            return Err(ProofError::NoSuchLeaf);
        }
        let mut siblings = Vec::with_capacity(MAX_PROOF_DEPTH);
        let (mut lo, mut hi) = (0, entries.len());
        for right in directions(i, entries.len()) {
            let mid = lo + split(hi - lo);
            if right {
                siblings.push(subtree(&entries[lo..mid]));
                lo = mid;
            } else {
                siblings.push(subtree(&entries[mid..hi]));
                hi = mid;
            }
        }
        siblings.reverse();
        Ok(Proof {
            manifest,
            leaf_index: i as u32,
            leaf_count: entries.len() as u32,
            entry: entries[i],
            siblings,
        })
    }

    /// Checks that the proof leads from its entry to `expected_root`.
    pub fn verify(&self, expected_root: &[u8; 32]) -> Result<(), ProofError> {
        let dirs = directions(self.leaf_index as usize, self.leaf_count as usize);
        if dirs.len() != self.siblings.len() {
            return Err(ProofError::Depth(self.siblings.len() as u8));
        }
        let mut acc = leaf(&self.entry);
        for (right, sibling) in dirs.iter().rev().zip(&self.siblings) {
            acc = if *right {
                node(sibling, &acc)
            } else {
                node(&acc, sibling)
            };
        }
        if seal_root(self.leaf_count, &acc) == *expected_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PROOF_FIXED_LEN + 32 * self.siblings.len());
        out.push(PROOF_VERSION);
        out.extend_from_slice(&self.manifest.0);
        out.extend_from_slice(&self.leaf_index.to_be_bytes());
        out.extend_from_slice(&self.leaf_count.to_be_bytes());
        out.extend_from_slice(&self.entry.to_bytes());
        out.push(self.siblings.len() as u8);
        for s in &self.siblings {
            out.extend_from_slice(s);
        }
        out
    }

    /// Decodes untrusted proof bytes; the only valid encoding of a proof is accepted.
    pub fn decode(bytes: &[u8]) -> Result<Proof, ProofError> {
        if !(PROOF_FIXED_LEN..=MAX_PROOF_BYTES).contains(&bytes.len()) {
            return Err(ProofError::Length(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let short = || ProofError::Length(bytes.len());
        let version = r.u8().ok_or_else(short)?;
        if version != PROOF_VERSION {
            return Err(ProofError::Version(version));
        }
        let manifest = ManifestId(r.array().ok_or_else(short)?);
        let leaf_index = r.u32().ok_or_else(short)?;
        let leaf_count = r.u32().ok_or_else(short)?;
        if leaf_count == 0 || leaf_count > MAX_EPOCH_CHUNKS || leaf_index >= leaf_count {
            return Err(ProofError::Position);
        }
        let entry = Entry::from_bytes(&r.array().ok_or_else(short)?).ok_or(ProofError::Entry)?;
        let depth = r.u8().ok_or_else(short)?;
        if usize::from(depth) != directions(leaf_index as usize, leaf_count as usize).len() {
            return Err(ProofError::Depth(depth));
        }
        if r.remaining() != 32 * usize::from(depth) {
            return Err(short());
        }
        let siblings = (0..depth)
            .map(|_| r.array().ok_or_else(short))
            .collect::<Result<_, _>>()?;
        Ok(Proof {
            manifest,
            leaf_index,
            leaf_count,
            entry,
            siblings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{ChunkFlags, ChunkIndex, ObjectId};

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                index: ChunkIndex(i as u64),
                object: ObjectId([i as u8; 32]),
                size: 100 + i as u32,
                duration: 180_000,
                flags: ChunkFlags::default(),
            })
            .collect()
    }

    #[test]
    fn every_leaf_of_every_size_proves_and_round_trips() {
        for n in 1..=33 {
            let list = entries(n);
            let r = root(&list);
            for i in 0..n {
                let proof = Proof::build(ManifestId([1; 32]), &list, i).unwrap();
                assert_eq!(proof.verify(&r), Ok(()));
                let bytes = proof.encode();
                assert_eq!(Proof::decode(&bytes), Ok(proof.clone()));
                let mut other = proof.clone();
                other.entry.size += 1;
                assert_eq!(other.verify(&r), Err(ProofError::Mismatch));
                if n > 1 {
                    let mut moved = proof;
                    moved.leaf_index = ((i + 1) % n) as u32;
                    assert!(moved.verify(&r).is_err());
                }
            }
        }
    }

    #[test]
    fn no_duplication_and_count_bound_into_root() {
        // A duplicating odd-node rule would give [a, b, c] and [a, b, c, c] the same tree top.
        let three = entries(3);
        let mut four = three.clone();
        four.push(three[2]);
        assert_ne!(root(&three), root(&four));
        assert_ne!(subtree(&three), subtree(&four));
        // Two leaves vs one leaf holding their parent's preimage cannot collide: domains differ.
        assert_ne!(root(&entries(1)), root(&entries(2)));
    }

    #[test]
    fn shape_matches_rfc6962_split() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(8), 4);
        assert_eq!(directions(4, 5), vec![true]);
        assert_eq!(directions(0, 5), vec![false, false, false]);
        let max = directions(0, MAX_EPOCH_CHUNKS as usize).len();
        assert_eq!(max, MAX_PROOF_DEPTH);
    }

    #[test]
    fn malformed_proofs_are_named() {
        let list = entries(5);
        let bytes = Proof::build(ManifestId([0; 32]), &list, 2)
            .unwrap()
            .encode();
        assert_eq!(
            Proof::decode(&bytes[..bytes.len() - 1]),
            Err(ProofError::Length(bytes.len() - 1))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Proof::decode(&trailing),
            Err(ProofError::Length(bytes.len() + 1))
        );
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(Proof::decode(&v), Err(ProofError::Version(9)));
        let mut pos = bytes.clone();
        pos[36] = 5; // leaf index 5 of 5
        assert_eq!(Proof::decode(&pos), Err(ProofError::Position));
        let mut depth = bytes.clone();
        depth[PROOF_FIXED_LEN - 1] = 2;
        assert_eq!(Proof::decode(&depth), Err(ProofError::Depth(2)));
        assert_eq!(
            Proof::build(ManifestId([0; 32]), &list, 5),
            Err(ProofError::NoSuchLeaf)
        );
    }
}
