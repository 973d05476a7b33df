//! Manifests: what a trusted signer vouches for, and the policy that decides what to accept.
//!
//! Owns the chunk entries and manifest ids ([`entry`]), the manifest body and its canonical
//! encoding and signature ([`body`]), the Merkle tree over the entries and inclusion proofs
//! ([`merkle`], which depends on `entry` only) and the acceptance policy ([`verifier`]). Everything is a pure
//! function or a sans-I/O owner fed bytes and a `now` argument: nothing here reads the clock,
//! opens files or sockets, or knows how bytes travel. Keys and encryption live in `crypto`.

pub mod body;
pub mod entry;
pub mod epochs;
pub mod merkle;
pub mod sealer;
pub mod verifier;
mod wire;

pub use body::{Manifest, ManifestBody, ManifestChain, ManifestError, MAX_MANIFEST_BYTES};
pub use entry::{Entry, ManifestId, MAX_EPOCH_CHUNKS};
pub use epochs::{Epoch, EpochCollector};
pub use merkle::{Proof, ProofError};
pub use sealer::{SealError, Sealer, SignedManifest};
pub use verifier::{AcceptedChunk, Event, Policy, Reason, Rejection, Verifier};
