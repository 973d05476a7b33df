//! The manifest body, its one canonical binary encoding, and signing.
//!
//! Owns the byte layout (docs/PROTOCOL.md §2.5), the decoder of untrusted manifests and the
//! signature input. The decoder accepts exactly one encoding per manifest: fixed-width big-endian
//! fields, every count checked against a fixed limit before anything is allocated, no trailing
//! bytes, strictly ordered entries and a root that matches them, so manifest ids are stable and
//! re-encoding a decoded manifest always gives back the input. Trust decisions (which signers,
//! which streams) belong to the `Verifier`.

pub use super::entry::{Entry, ManifestId, ENTRY_LEN, MAX_EPOCH_CHUNKS};
use super::merkle;
use super::wire::Reader;
use crate::crypto::{ChunkIndex, NodeId, NodeKey, StreamLocator};
use crate::time::UnixMillis;
use std::fmt;

/// The only manifest format version.
pub const MANIFEST_VERSION: u8 = 1;
/// Bytes of a body without entries: fixed header, entry count and root.
const BODY_FIXED_LEN: usize = 1 + 32 + 8 + 4 + 4 + 8 + 8 + 32 + 32 + 4 + 32;
/// Ed25519 signature length.
pub const SIGNATURE_LEN: usize = 64;
/// Longest signed manifest: a full epoch of entries.
pub const MAX_MANIFEST_BYTES: usize =
    BODY_FIXED_LEN + ENTRY_LEN * MAX_EPOCH_CHUNKS as usize + SIGNATURE_LEN;
/// Prefix of the signed message, so a manifest signature can never be taken for any other
/// signature a node key makes (the endpoint layer signs TLS handshakes with the same key).
pub const SIGNATURE_CONTEXT: &[u8] = b"every.channel manifest signature v1";

/// A manifest body: what the signer vouches for in one epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestBody {
    /// The stream the manifest is about.
    pub locator: StreamLocator,
    /// Epoch `e` covers chunk indices `e·N ..= e·N + N − 1`.
    pub epoch: u64,
    /// `N`, chunks per epoch (1 ..= [`MAX_EPOCH_CHUNKS`]).
    pub epoch_chunks: u32,
    /// Nominal chunk duration in 90 kHz ticks.
    pub chunk_duration: u32,
    /// When the signer made the manifest.
    pub created: UnixMillis,
    /// Position in the signer's hash chain, from 0.
    pub sequence: u64,
    /// Id of the signer's previous manifest; `None` exactly when `sequence` is 0.
    pub previous: Option<ManifestId>,
    /// The signer's node id.
    pub signer: NodeId,
    /// One entry per chunk, strictly ascending by index, all inside the epoch; at least one.
    pub entries: Vec<Entry>,
}

/// A decoded, well-formed manifest whose signature has not been checked yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The body.
    pub body: ManifestBody,
    /// BLAKE3 of the encoded body.
    pub id: ManifestId,
    /// The Merkle root over the entries (also in the encoding).
    pub root: [u8; 32],
    /// The signer's Ed25519 signature over [`signature_message`] of the id.
    pub signature: [u8; 64],
}

/// Why a manifest could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// Malformed input: the bytes end early, run on, or exceed [`MAX_MANIFEST_BYTES`].
    Length(usize),
    /// Malformed input: unknown format version.
    Version(u8),
    /// Malformed (or misuse when signing): chunks per epoch outside 1 ..= [`MAX_EPOCH_CHUNKS`],
    /// or the epoch's last index overflows.
    EpochChunks(u32),
    /// Malformed (or misuse): entry count 0 or above chunks per epoch.
    EntryCount(u32),
    /// Malformed (or misuse): an entry's index is outside the epoch or not above the previous one.
    EntryIndex(ChunkIndex),
    /// Malformed: an entry has undefined flag bits or an impossible object size.
    Entry(usize),
    /// Malformed (or misuse): `previous` is present at sequence 0, or missing after it.
    Previous,
    /// Malformed: the signer field is not an Ed25519 public key.
    Signer,
    /// Malformed: the root does not match the entries.
    Root,
    /// Caller misuse: the signing key is not the body's signer.
    WrongKey,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Length(n) => write!(f, "manifest of {n} bytes has the wrong length"),
            ManifestError::Version(v) => write!(f, "manifest version {v} is unknown"),
            ManifestError::EpochChunks(n) => write!(f, "manifest epoch of {n} chunks is invalid"),
            ManifestError::EntryCount(n) => write!(f, "manifest entry count {n} is invalid"),
            ManifestError::EntryIndex(i) => {
                write!(
                    f,
                    "manifest entry index {i} is out of order or outside the epoch"
                )
            }
            ManifestError::Entry(at) => write!(f, "manifest entry {at} is invalid"),
            ManifestError::Previous => {
                f.write_str("manifest previous id does not agree with its sequence number")
            }
            ManifestError::Signer => f.write_str("manifest signer is not a valid node id"),
            ManifestError::Root => f.write_str("manifest root does not match its entries"),
            ManifestError::WrongKey => f.write_str("signing key is not the manifest's signer"),
        }
    }
}

impl std::error::Error for ManifestError {}

/// The message a manifest signature covers: [`SIGNATURE_CONTEXT`] followed by the manifest id.
pub fn signature_message(id: &ManifestId) -> [u8; SIGNATURE_CONTEXT.len() + 32] {
    let mut out = [0u8; SIGNATURE_CONTEXT.len() + 32];
    out[..SIGNATURE_CONTEXT.len()].copy_from_slice(SIGNATURE_CONTEXT);
    out[SIGNATURE_CONTEXT.len()..].copy_from_slice(&id.0);
    out
}

impl ManifestBody {
    /// The epoch that chunk `index` belongs to with `epoch_chunks` per epoch (caller keeps
    /// `epoch_chunks` non-zero).
    pub fn epoch_of(index: ChunkIndex, epoch_chunks: u32) -> u64 {
        index.0 / u64::from(epoch_chunks.max(1))
    }

    /// The first and last chunk index of this body's epoch, or `None` if they overflow or the
    /// epoch size is out of range.
    pub fn span(&self) -> Option<(ChunkIndex, ChunkIndex)> {
        if !(1..=MAX_EPOCH_CHUNKS).contains(&self.epoch_chunks) {
            return None;
        }
        let n = u64::from(self.epoch_chunks);
        let first = self.epoch.checked_mul(n)?;
        let last = first.checked_add(n - 1)?;
        Some((ChunkIndex(first), ChunkIndex(last)))
    }

    /// Checks every structural rule shared by the encoder and the decoder.
    fn check(&self) -> Result<(), ManifestError> {
        let (first, last) = self
            .span()
            .ok_or(ManifestError::EpochChunks(self.epoch_chunks))?;
        let count = self.entries.len();
        if count == 0 || count > self.epoch_chunks as usize {
            return Err(ManifestError::EntryCount(
                count.min(u32::MAX as usize) as u32
            ));
        }
        // The lowest index the next entry may have; `None` once u64::MAX has been used.
        let mut min = Some(first);
        for (at, entry) in self.entries.iter().enumerate() {
            if min.is_none_or(|m| entry.index < m) || entry.index > last {
                return Err(ManifestError::EntryIndex(entry.index));
            }
            if !entry.valid() {
                return Err(ManifestError::Entry(at));
            }
            min = entry.index.0.checked_add(1).map(ChunkIndex);
        }
        if (self.sequence == 0) != self.previous.is_none() {
            return Err(ManifestError::Previous);
        }
        Ok(())
    }

    /// The canonical body encoding (what the manifest id hashes), with the root appended.
    fn encode_body(&self, root: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(BODY_FIXED_LEN + ENTRY_LEN * self.entries.len());
        out.push(MANIFEST_VERSION);
        out.extend_from_slice(self.locator.as_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.epoch_chunks.to_be_bytes());
        out.extend_from_slice(&self.chunk_duration.to_be_bytes());
        out.extend_from_slice(&self.created.0.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.previous.map_or([0; 32], |p| p.0));
        out.extend_from_slice(self.signer.as_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.to_bytes());
        }
        out.extend_from_slice(root);
        out
    }

    /// Signs the body with the signer's key, returning the signed manifest's encoding.
    pub fn sign(&self, key: &NodeKey) -> Result<Vec<u8>, ManifestError> {
        if key.node_id() != self.signer {
            return Err(ManifestError::WrongKey);
        }
        self.check()?;
        let mut out = self.encode_body(&merkle::root(&self.entries));
        let id = ManifestId(*blake3::hash(&out).as_bytes());
        out.extend_from_slice(&key.sign(&signature_message(&id)));
        Ok(out)
    }
}

impl Manifest {
    /// Decodes an untrusted signed manifest. Succeeds only on the one canonical encoding of a
    /// well-formed manifest; the signature is parsed but not checked ([`Manifest::signature_valid`]).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let len = bytes.len();
        if !(BODY_FIXED_LEN + ENTRY_LEN + SIGNATURE_LEN..=MAX_MANIFEST_BYTES).contains(&len) {
            return Err(ManifestError::Length(len));
        }
        let short = || ManifestError::Length(len);
        let mut r = Reader::new(bytes);
        let version = r.u8().ok_or_else(short)?;
        if version != MANIFEST_VERSION {
            return Err(ManifestError::Version(version));
        }
        let locator = StreamLocator::from_bytes(r.array().ok_or_else(short)?);
        let epoch = r.u64().ok_or_else(short)?;
        let epoch_chunks = r.u32().ok_or_else(short)?;
        let chunk_duration = r.u32().ok_or_else(short)?;
        let created = UnixMillis(r.u64().ok_or_else(short)?);
        let sequence = r.u64().ok_or_else(short)?;
        let previous = r.array().ok_or_else(short)?;
        let signer =
            NodeId::from_bytes(r.array().ok_or_else(short)?).map_err(|_| ManifestError::Signer)?;
        let count = r.u32().ok_or_else(short)?;
        // Check the count against the fixed limit and the bytes actually present before
        // allocating anything for it.
        if count == 0 || count > MAX_EPOCH_CHUNKS {
            return Err(ManifestError::EntryCount(count));
        }
        if r.remaining() != ENTRY_LEN * count as usize + 32 + SIGNATURE_LEN {
            return Err(short());
        }
        let mut entries = Vec::with_capacity(count as usize);
        for at in 0..count as usize {
            let raw = r.array().ok_or_else(short)?;
            entries.push(Entry::from_bytes(&raw).ok_or(ManifestError::Entry(at))?);
        }
        let root: [u8; 32] = r.array().ok_or_else(short)?;
        let body_len = len - r.remaining();
        let signature = r.array().ok_or_else(short)?;
        let body = ManifestBody {
            locator,
            epoch,
            epoch_chunks,
            chunk_duration,
            created,
            sequence,
            // All-zero means "none"; a zero id after sequence 0 is refused by `check`.
            previous: (previous != [0; 32]).then_some(ManifestId(previous)),
            signer,
            entries,
        };
        body.check()?;
        if merkle::root(&body.entries) != root {
            return Err(ManifestError::Root);
        }
        Ok(Manifest {
            id: ManifestId(*blake3::hash(&bytes[..body_len]).as_bytes()),
            body,
            root,
            signature,
        })
    }

    /// The signed manifest's encoding: exactly the bytes it was decoded from.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body.encode_body(&self.root);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Whether the signature is the body signer's over this manifest's id.
    pub fn signature_valid(&self) -> bool {
        self.body
            .signer
            .verify(&signature_message(&self.id), &self.signature)
    }

    /// The entry for chunk `index`, if this manifest has one.
    pub fn entry(&self, index: ChunkIndex) -> Option<&Entry> {
        self.body
            .entries
            .binary_search_by_key(&index, |e| e.index)
            .ok()
            .map(|at| &self.body.entries[at])
    }
}

/// The signer's side of a hash chain: numbers manifests and links each to the previous one.
#[derive(Debug)]
pub struct ManifestChain {
    key: NodeKey,
    locator: StreamLocator,
    epoch_chunks: u32,
    chunk_duration: u32,
    sequence: u64,
    previous: Option<ManifestId>,
}

impl ManifestChain {
    /// A new chain (starting at sequence 0) for one stream, `epoch_chunks` chunks per epoch and
    /// a nominal chunk duration in 90 kHz ticks.
    pub fn new(
        key: NodeKey,
        locator: StreamLocator,
        epoch_chunks: u32,
        chunk_duration: u32,
    ) -> Self {
        ManifestChain {
            key,
            locator,
            epoch_chunks,
            chunk_duration,
            sequence: 0,
            previous: None,
        }
    }

    /// Signs the manifest of `epoch` with `entries` and advances the chain. On error (entries
    /// not valid for the epoch) the chain is unchanged.
    pub fn sign_epoch(
        &mut self,
        epoch: u64,
        entries: Vec<Entry>,
        created: UnixMillis,
    ) -> Result<Vec<u8>, ManifestError> {
        let body = ManifestBody {
            locator: self.locator,
            epoch,
            epoch_chunks: self.epoch_chunks,
            chunk_duration: self.chunk_duration,
            created,
            sequence: self.sequence,
            previous: self.previous,
            signer: self.key.node_id(),
            entries,
        };
        let bytes = body.sign(&self.key)?;
        self.previous = Some(ManifestId(
            *blake3::hash(&bytes[..bytes.len() - SIGNATURE_LEN]).as_bytes(),
        ));
        self.sequence += 1;
        Ok(bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crypto::{ChunkFlags, ObjectId, StreamId, StreamKey};

    pub(crate) fn sample_body(key: &NodeKey, n: u64) -> ManifestBody {
        let locator = StreamKey::derive(None, &StreamId::new("t").unwrap())
            .subkeys()
            .locator();
        ManifestBody {
            locator,
            epoch: 3,
            epoch_chunks: n as u32,
            chunk_duration: 180_000,
            created: UnixMillis(1_700_000_000_000),
            sequence: 0,
            previous: None,
            signer: key.node_id(),
            entries: (0..n)
                .map(|i| Entry {
                    index: ChunkIndex(3 * n + i),
                    object: ObjectId([i as u8; 32]),
                    size: 1000,
                    duration: 180_000,
                    flags: ChunkFlags::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn sign_decode_round_trip_and_re_encoding_is_identical() {
        let key = NodeKey::from_seed([3; 32]);
        for n in [1, 2, 5] {
            let body = sample_body(&key, n);
            let bytes = body.sign(&key).unwrap();
            let m = Manifest::decode(&bytes).unwrap();
            assert_eq!(m.body, body);
            assert!(m.signature_valid());
            assert_eq!(m.encode(), bytes);
            assert_eq!(
                m.id,
                ManifestId(*blake3::hash(&bytes[..bytes.len() - 64]).as_bytes())
            );
            assert_eq!(
                body.sign(&key).unwrap(),
                bytes,
                "Ed25519 signing is deterministic"
            );
            assert_eq!(m.entry(ChunkIndex(3 * n)), Some(&body.entries[0]));
            assert_eq!(m.entry(ChunkIndex(3 * n + n)), None);
        }
    }

    #[test]
    fn signing_refuses_invalid_bodies_and_wrong_keys() {
        let key = NodeKey::from_seed([3; 32]);
        let body = sample_body(&key, 4);
        assert_eq!(
            body.sign(&NodeKey::from_seed([4; 32])),
            Err(ManifestError::WrongKey)
        );
        let mut unordered = body.clone();
        unordered.entries.swap(1, 2);
        assert_eq!(
            unordered.sign(&key),
            Err(ManifestError::EntryIndex(ChunkIndex(13)))
        );
        let mut outside = body.clone();
        outside.entries[3].index = ChunkIndex(16);
        assert_eq!(
            outside.sign(&key),
            Err(ManifestError::EntryIndex(ChunkIndex(16)))
        );
        let mut empty = body.clone();
        empty.entries.clear();
        assert_eq!(empty.sign(&key), Err(ManifestError::EntryCount(0)));
        let mut chain = body.clone();
        chain.sequence = 1;
        assert_eq!(chain.sign(&key), Err(ManifestError::Previous));
        let mut huge = body.clone();
        huge.epoch = u64::MAX;
        assert_eq!(huge.sign(&key), Err(ManifestError::EpochChunks(4)));
        let mut zero = body;
        zero.epoch_chunks = 0;
        assert_eq!(zero.sign(&key), Err(ManifestError::EpochChunks(0)));
    }

    #[test]
    fn chain_links_each_manifest_to_the_previous_one() {
        let key = NodeKey::from_seed([3; 32]);
        let body = sample_body(&key, 1);
        let mut chain = ManifestChain::new(NodeKey::from_seed([3; 32]), body.locator, 1, 180_000);
        let first = Manifest::decode(
            &chain
                .sign_epoch(3, body.entries.clone(), UnixMillis(1))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            chain.sign_epoch(5, body.entries.clone(), UnixMillis(2)),
            Err(ManifestError::EntryIndex(ChunkIndex(3)))
        );
        let mut later = body.entries[0];
        later.index = ChunkIndex(4);
        let second =
            Manifest::decode(&chain.sign_epoch(4, vec![later], UnixMillis(2)).unwrap()).unwrap();
        assert_eq!((first.body.sequence, first.body.previous), (0, None));
        assert_eq!(
            (second.body.sequence, second.body.previous),
            (1, Some(first.id))
        );
        assert!(second.signature_valid());
    }

    #[test]
    fn decoder_names_malformed_input() {
        let key = NodeKey::from_seed([3; 32]);
        let bytes = sample_body(&key, 2).sign(&key).unwrap();
        let n = bytes.len();
        assert_eq!(
            Manifest::decode(&bytes[..n - 1]),
            Err(ManifestError::Length(n - 1))
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Manifest::decode(&long), Err(ManifestError::Length(n + 1)));
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(Manifest::decode(&v), Err(ManifestError::Version(2)));
        let mut count = bytes.clone();
        count[129..133].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Manifest::decode(&count),
            Err(ManifestError::EntryCount(u32::MAX))
        );
        let mut root = bytes.clone();
        root[n - 65] ^= 1;
        assert_eq!(Manifest::decode(&root), Err(ManifestError::Root));
        let mut flags = bytes.clone();
        flags[133 + 48] = 0x80;
        assert_eq!(Manifest::decode(&flags), Err(ManifestError::Entry(0)));
        let mut prev = bytes.clone();
        prev[65] = 1; // previous id at sequence 0
        assert_eq!(Manifest::decode(&prev), Err(ManifestError::Previous));
        let mut sig = bytes;
        sig[n - 1] ^= 1;
        assert!(!Manifest::decode(&sig).unwrap().signature_valid());
    }
}
