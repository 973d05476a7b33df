//! Manifests: what a trusted signer vouches for, and the policy that decides what to accept.
//!
//! Owns the manifest body and its canonical encoding and signature ([`body`]), the Merkle tree and
//! inclusion proofs ([`merkle`]) and the acceptance policy ([`verifier`]). Everything is a pure
//! function or a sans-I/O owner fed bytes and a `now` argument: nothing here reads the clock,
//! opens files or sockets, or knows how bytes travel. Keys and encryption live in `crypto`.

pub mod body;
pub mod epochs;
pub mod merkle;
pub mod sealer;
pub mod verifier;
mod wire;

pub use body::{
    Entry, Manifest, ManifestBody, ManifestChain, ManifestError, ManifestId, UnixTime,
    MAX_EPOCH_CHUNKS, MAX_MANIFEST_BYTES,
};
pub use epochs::{Epoch, EpochCollector};
pub use merkle::{Proof, ProofError};
pub use sealer::{SealError, Sealer, SignedManifest};
pub use verifier::{AcceptedChunk, Event, Policy, Reason, Rejection, Verifier};
