//! The publisher's side of the trust layer: turns each chunk into its encrypted object and, on a
//! leader, collects the objects' entries into epochs and signs one manifest per epoch.
//!
//! A manifests-only leader (`--publish-chunks=false`) runs the same sealing — deterministically,
//! with the stream key — only to learn the object ids its manifests vouch for. Pure: the caller
//! passes the wall time a manifest is created at; no I/O, no clock.

use super::body::{Entry, ManifestChain, ManifestError};
use super::epochs::EpochCollector;
use crate::chunk::Chunk;
use crate::crypto::object::{self, Object, ObjectError};
use crate::crypto::{NodeKey, StreamKeys};
use crate::time::UnixMillis;
use std::sync::Arc;

/// A signed manifest ready to publish: group = epoch on the manifests track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedManifest {
    /// The epoch it covers.
    pub epoch: u64,
    /// Its canonical bytes.
    pub bytes: Vec<u8>,
}

/// Why sealing failed (both are local faults: a chunk too large, or a bug in epoch bookkeeping).
#[derive(Debug)]
pub enum SealError {
    /// The chunk could not be encrypted.
    Object(ObjectError),
    /// The epoch's manifest could not be signed.
    Manifest(ManifestError),
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::Object(e) => write!(f, "cannot seal chunk: {e:?}"),
            SealError::Manifest(e) => write!(f, "cannot sign manifest: {e}"),
        }
    }
}

impl std::error::Error for SealError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SealError::Object(e) => Some(e),
            SealError::Manifest(e) => Some(e),
        }
    }
}

/// Seals chunks, and signs manifests when given a leader key.
pub struct Sealer {
    keys: StreamKeys,
    signer: Option<(ManifestChain, EpochCollector)>,
}

impl Sealer {
    /// A sealer for the stream `keys`. With `leader` (the node key and chunks per epoch) it also
    /// signs manifests; `chunk_ms` is the grid step D they record.
    pub fn new(keys: StreamKeys, leader: Option<(NodeKey, u32)>, chunk_ms: u32) -> Sealer {
        let signer = leader.map(|(key, epoch_chunks)| {
            let chain = ManifestChain::new(
                key,
                keys.locator(),
                epoch_chunks,
                chunk_ms.saturating_mul(90),
            );
            (chain, EpochCollector::new(epoch_chunks))
        });
        Sealer { keys, signer }
    }

    /// Encrypts `chunk`; returns its object, in the shared buffer it is cached and sent from, and
    /// the manifests of the epochs it completes.
    pub fn seal(
        &mut self,
        chunk: &Chunk,
        now: UnixMillis,
    ) -> Result<(Arc<[u8]>, Vec<SignedManifest>), SealError> {
        let object = object::seal_shared(&self.keys, chunk.index, chunk.flags, &chunk.bytes)
            .map_err(SealError::Object)?;
        let mut manifests = Vec::new();
        if let Some((chain, epochs)) = &mut self.signer {
            let parsed = Object::parse(&object).map_err(SealError::Object)?;
            let duration = u32::try_from(chunk.duration).unwrap_or(u32::MAX);
            for (epoch, entries) in epochs.push(Entry::for_object(&parsed, duration)) {
                let bytes = chain
                    .sign_epoch(epoch, entries, now)
                    .map_err(SealError::Manifest)?;
                manifests.push(SignedManifest { epoch, bytes });
            }
        }
        Ok((object, manifests))
    }

    /// At the end of the stream: the manifest of the epoch still open, if any.
    pub fn finish(&mut self, now: UnixMillis) -> Result<Option<SignedManifest>, SealError> {
        let Some((chain, epochs)) = &mut self.signer else {
            return Ok(None);
        };
        let Some((epoch, entries)) = epochs.finish() else {
            return Ok(None);
        };
        let bytes = chain
            .sign_epoch(epoch, entries, now)
            .map_err(SealError::Manifest)?;
        Ok(Some(SignedManifest { epoch, bytes }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkFlags, ChunkIndex};
    use crate::crypto::{StreamId, StreamKey};
    use crate::manifest::{Event, Policy, Verifier};
    use crate::ts::clock::Pts;
    use std::time::Instant;

    fn keys() -> StreamKeys {
        StreamKey::derive(None, &StreamId::new("ec/stream/v1/test").unwrap()).subkeys()
    }

    fn chunk(index: u64) -> Chunk {
        Chunk {
            index: ChunkIndex(index),
            pts: Pts::new(index * 180_000),
            duration: 180_000,
            flags: ChunkFlags::default(),
            bytes: vec![index as u8; 188 * 3],
        }
    }

    #[test]
    fn a_leader_and_an_availability_node_agree_and_verify() {
        let leader_key = NodeKey::generate().unwrap();
        let trusted = Policy::new(vec![leader_key.node_id()]);
        let mut leader = Sealer::new(keys(), Some((leader_key, 2)), 2000);
        let mut availability = Sealer::new(keys(), None, 2000);
        let mut verifier = Verifier::new(keys(), trusted);
        let now = UnixMillis(1_764_072_000_000);
        let mut signed = 0;
        for index in [10, 11, 12, 14] {
            let (from_leader, manifests) = leader.seal(&chunk(index), now).unwrap();
            let (object, none) = availability.seal(&chunk(index), now).unwrap();
            assert_eq!(object, from_leader, "sealing is deterministic");
            assert!(none.is_empty());
            for m in manifests {
                verifier.push_manifest(&m.bytes, Instant::now());
                signed += 1;
            }
            verifier.push_object(object.to_vec(), None, None, Instant::now());
        }
        // 10 and 11 complete epoch 5; 14 (13 skipped) closes epoch 6; epoch 7 is signed at the end.
        assert_eq!(signed, 2);
        let last = leader.finish(now).unwrap().unwrap();
        verifier.push_manifest(&last.bytes, Instant::now());
        let mut accepted = Vec::new();
        while let Some(event) = verifier.poll_event() {
            if let Event::Chunk(c) = event {
                accepted.push(c.index.0);
            }
        }
        accepted.sort();
        assert_eq!(accepted, vec![10, 11, 12, 14]);
    }
}
