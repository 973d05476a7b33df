//! Keys, identities and object encryption: everything that needs a secret.
//!
//! Owns node keys and node ids ([`keys`]), stream keys, subkeys and locators ([`stream`]), the
//! deterministic object encryption ([`object`]) and the base32 text form they share. Keys, indices
//! and plaintext are arguments; nothing here reads the clock, and the only I/O is the key-file
//! helper in [`keys`]. Deciding which objects to accept belongs to `manifest`.

pub mod base32;
pub mod keys;
pub mod object;
pub mod stream;

pub use keys::{KeyError, KeyFileError, NodeId, NodeIdError, NodeKey};
pub use object::{ChunkFlags, ChunkIndex, Object, ObjectError, ObjectId};
pub use stream::{NetworkSecret, StreamError, StreamId, StreamKey, StreamKeys, StreamLocator};
