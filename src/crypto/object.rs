//! Objects: deterministic, nonce-misuse-resistant encryption of one chunk, and object ids.
//!
//! Owns the object byte layout, the synthetic nonce and the associated data. Encryption is a pure
//! function of (stream subkeys, chunk index, flags, plaintext), so every node that encrypts the same
//! chunk of the same stream sends byte-identical objects, and a manifest signed by one node vouches
//! for objects served by any other. Nothing here decides whether an object is wanted (that is the
//! manifest `Verifier`), reads the clock or does I/O.

use super::stream::{StreamKeys, StreamLocator};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use std::fmt;
use std::sync::Arc;

/// The only object format version.
pub const OBJECT_VERSION: u8 = 1;
/// Header bytes before the ciphertext: version, flags, chunk index, nonce.
pub const HEADER_LEN: usize = 1 + 1 + 8 + NONCE_LEN;
/// Synthetic nonce length (XChaCha20-Poly1305).
pub const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an object adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Largest object accepted or produced: 64 MiB, far above any broadcast chunk.
pub const MAX_OBJECT_BYTES: usize = 64 << 20;

pub use crate::chunk::{ChunkFlags, ChunkIndex};

/// An object's id: BLAKE3 of its bytes exactly as sent, checkable without the stream key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// The id of an object's bytes.
    pub fn of(object: &[u8]) -> ObjectId {
        ObjectId(*blake3::hash(object).as_bytes())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", blake3::Hash::from_bytes(self.0).to_hex())
    }
}

/// Why an object cannot be made or opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectError {
    /// Malformed input: shorter than a header and tag.
    TooShort(usize),
    /// Malformed input, or caller misuse when encrypting: over [`MAX_OBJECT_BYTES`].
    TooLong(usize),
    /// Malformed input: an unknown format version.
    Version(u8),
    /// Malformed input: undefined flag bits.
    Flags(u8),
    /// Authentication failed: wrong stream, tampered bytes or a replayed header.
    Aead,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::TooShort(n) => write!(f, "object of {n} bytes is shorter than {OVERHEAD}"),
            ObjectError::TooLong(n) => {
                write!(
                    f,
                    "object of {n} bytes is over the {MAX_OBJECT_BYTES}-byte limit"
                )
            }
            ObjectError::Version(v) => write!(f, "object version {v} is unknown"),
            ObjectError::Flags(b) => write!(f, "object flags {b:#04x} have undefined bits"),
            ObjectError::Aead => f.write_str("object failed authentication"),
        }
    }
}

impl std::error::Error for ObjectError {}

/// An object's parsed header and a view of its sealed payload; no key needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object<'a> {
    /// The chunk index the object claims (authenticated only by [`open`]).
    pub index: ChunkIndex,
    /// The flags the object claims (authenticated only by [`open`]).
    pub flags: ChunkFlags,
    bytes: &'a [u8],
}

impl<'a> Object<'a> {
    /// Parses the header of untrusted object bytes.
    pub fn parse(bytes: &'a [u8]) -> Result<Object<'a>, ObjectError> {
        if bytes.len() > MAX_OBJECT_BYTES {
            return Err(ObjectError::TooLong(bytes.len()));
        }
        if bytes.len() < OVERHEAD {
            return Err(ObjectError::TooShort(bytes.len()));
        }
        if bytes[0] != OBJECT_VERSION {
            return Err(ObjectError::Version(bytes[0]));
        }
        let flags = ChunkFlags::from_bits(bytes[1]).ok_or(ObjectError::Flags(bytes[1]))?;
        let mut index = [0u8; 8];
        index.copy_from_slice(&bytes[2..10]);
        Ok(Object {
            index: ChunkIndex(u64::from_be_bytes(index)),
            flags,
            bytes,
        })
    }

    /// The object's bytes as sent.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The object's id.
    pub fn id(&self) -> ObjectId {
        ObjectId::of(self.bytes)
    }
}

/// Prefix of the associated data; names the format version, so a future version can never share
/// associated data with this one.
pub const AAD_CONTEXT: &[u8; 23] = b"every.channel object v1";
/// Associated data length: exactly four Poly1305 blocks. Any length that is not a multiple of
/// 64 bytes knocks the AVX2 Poly1305 backend off its four-blocks-at-a-time path for the whole
/// ciphertext (measured: about 30 % slower), so the layout is chosen to fill 64 bytes.
const AAD_LEN: usize = 64;

/// The associated data: context, locator, flags and index, so a valid object cannot be replayed
/// under another stream, index or flag set. The nonce needs no binding: it is the AEAD nonce, so
/// any other nonce fails authentication anyway.
fn associated_data(locator: &StreamLocator, flags: ChunkFlags, index: ChunkIndex) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..23].copy_from_slice(AAD_CONTEXT);
    aad[23..55].copy_from_slice(locator.as_bytes());
    aad[55] = flags.bits();
    aad[56..].copy_from_slice(&index.0.to_be_bytes());
    aad
}

/// Encrypts one chunk into an object. Deterministic: the same inputs always give the same bytes.
pub fn seal(
    keys: &StreamKeys,
    index: ChunkIndex,
    flags: ChunkFlags,
    plaintext: &[u8],
) -> Result<Vec<u8>, ObjectError> {
    let mut out = vec![0u8; object_len(plaintext)?];
    seal_into(keys, index, flags, plaintext, &mut out)?;
    Ok(out)
}

/// [`seal`] straight into a shared buffer, as a publisher caches and sends it: the object is
/// written once, where it will stay (making an `Arc<[u8]>` from a `Vec` would copy it again, and
/// fault a second fresh megabyte-sized mapping in).
pub fn seal_shared(
    keys: &StreamKeys,
    index: ChunkIndex,
    flags: ChunkFlags,
    plaintext: &[u8],
) -> Result<Arc<[u8]>, ObjectError> {
    let mut out: Arc<[u8]> = std::iter::repeat_n(0u8, object_len(plaintext)?).collect();
    let bytes = Arc::get_mut(&mut out).expect("a new Arc has no other owner");
    seal_into(keys, index, flags, plaintext, bytes)?;
    Ok(out)
}

/// The length of the object of `plaintext`, if within [`MAX_OBJECT_BYTES`].
fn object_len(plaintext: &[u8]) -> Result<usize, ObjectError> {
    let total = plaintext.len().saturating_add(OVERHEAD);
    if total > MAX_OBJECT_BYTES {
        return Err(ObjectError::TooLong(total));
    }
    Ok(total)
}

/// Writes the object of `plaintext` into `out`, exactly [`object_len`] bytes.
///
/// The nonce is synthetic: BLAKE3 keyed with the nonce subkey over index, flags and plaintext,
/// so two different (index, flags, plaintext) triples never share a nonce, whoever numbers them.
fn seal_into(
    keys: &StreamKeys,
    index: ChunkIndex,
    flags: ChunkFlags,
    plaintext: &[u8],
    out: &mut [u8],
) -> Result<(), ObjectError> {
    let mut hasher = blake3::Hasher::new_keyed(&keys.nonce);
    hasher.update(&index.0.to_be_bytes());
    hasher.update(&[flags.bits()]);
    hasher.update(plaintext);
    let (header, rest) = out.split_at_mut(HEADER_LEN);
    let (body, tag) = rest.split_at_mut(plaintext.len());
    let (fixed, nonce) = header.split_at_mut(HEADER_LEN - NONCE_LEN);
    fixed[0] = OBJECT_VERSION;
    fixed[1] = flags.bits();
    fixed[2..].copy_from_slice(&index.0.to_be_bytes());
    hasher.finalize_xof().fill(nonce);
    body.copy_from_slice(plaintext);
    let aad = associated_data(&keys.locator(), flags, index);
    let cipher = XChaCha20Poly1305::new((&keys.aead).into());
    let computed = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), &aad, body)
        .map_err(|_| ObjectError::TooLong(plaintext.len() + OVERHEAD))?;
    tag.copy_from_slice(&computed);
    Ok(())
}

/// A decrypted chunk, left in the buffer its object arrived in: opening an object copies and
/// allocates nothing, which keeps verify + decrypt close to raw cipher speed.
pub struct Plaintext {
    /// The whole object buffer; the plaintext is `buf[HEADER_LEN..len - TAG_LEN]`.
    buf: Vec<u8>,
}

impl Plaintext {
    /// The chunk bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[HEADER_LEN..self.buf.len() - TAG_LEN]
    }

    /// Gives back the underlying buffer (header and tag included) for reuse by the receiver.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Plaintext {
    fn eq(&self, other: &Plaintext) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Plaintext {}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.as_bytes().len())
    }
}

/// Authenticates and decrypts an object in place, taking ownership of its buffer.
pub fn open(keys: &StreamKeys, mut bytes: Vec<u8>) -> Result<Plaintext, ObjectError> {
    let Object { index, flags, .. } = Object::parse(&bytes)?;
    let aad = associated_data(&keys.locator(), flags, index);
    let (header, rest) = bytes.split_at_mut(HEADER_LEN);
    let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let cipher = XChaCha20Poly1305::new((&keys.aead).into());
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(&header[10..]),
            &aad,
            ciphertext,
            Tag::from_slice(tag),
        )
        .map_err(|_| ObjectError::Aead)?;
    Ok(Plaintext { buf: bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::stream::{StreamId, StreamKey};

    fn keys(id: &str) -> StreamKeys {
        StreamKey::derive(None, &StreamId::new(id).unwrap()).subkeys()
    }

    #[test]
    fn round_trip_and_determinism() {
        let k = keys("s");
        let flags = ChunkFlags::from_bits(ChunkFlags::DAMAGED).unwrap();
        let a = seal(&k, ChunkIndex(7), flags, b"chunk bytes").unwrap();
        // An independently derived key set (another node) yields the same bytes.
        let b = seal(&keys("s"), ChunkIndex(7), flags, b"chunk bytes").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), b"chunk bytes".len() + OVERHEAD);
        let obj = Object::parse(&a).unwrap();
        assert_eq!((obj.index, obj.flags), (ChunkIndex(7), flags));
        assert_eq!(open(&k, a.clone()).unwrap().as_bytes(), b"chunk bytes");
        let empty = seal(&k, ChunkIndex(0), ChunkFlags::default(), b"").unwrap();
        assert_eq!(open(&k, empty).unwrap().as_bytes(), b"");
    }

    #[test]
    fn nonces_differ_for_different_plaintext_index_or_flags() {
        let k = keys("s");
        let nonce = |i, f, p: &[u8]| {
            seal(&k, ChunkIndex(i), ChunkFlags::from_bits(f).unwrap(), p).unwrap()[10..34].to_vec()
        };
        let base = nonce(1, 0, b"a");
        assert_ne!(base, nonce(2, 0, b"a"));
        assert_ne!(base, nonce(1, 1, b"a"));
        assert_ne!(base, nonce(1, 0, b"b"));
    }

    #[test]
    fn replay_under_other_index_flags_or_stream_fails_authentication() {
        let k = keys("s");
        let obj = seal(&k, ChunkIndex(5), ChunkFlags::default(), b"payload").unwrap();
        let mut reindexed = obj.clone();
        reindexed[9] = 6;
        assert_eq!(open(&k, reindexed.clone()), Err(ObjectError::Aead));
        let mut reflagged = obj.clone();
        reflagged[1] = ChunkFlags::DISCONTINUITY;
        assert_eq!(open(&k, reflagged.clone()), Err(ObjectError::Aead));
        assert_eq!(open(&keys("t"), obj.clone()), Err(ObjectError::Aead));
        for at in [10, 40, obj.len() - 1] {
            let mut flipped = obj.clone();
            flipped[at] ^= 0x80;
            assert_eq!(open(&k, flipped.clone()), Err(ObjectError::Aead));
        }
    }

    #[test]
    fn malformed_objects_are_named() {
        let k = keys("s");
        let obj = seal(&k, ChunkIndex(5), ChunkFlags::default(), b"x").unwrap();
        assert_eq!(Object::parse(&obj[..49]), Err(ObjectError::TooShort(49)));
        let mut v = obj.clone();
        v[0] = 2;
        assert_eq!(Object::parse(&v), Err(ObjectError::Version(2)));
        let mut f = obj.clone();
        f[1] = 0x80;
        assert_eq!(Object::parse(&f), Err(ObjectError::Flags(0x80)));
        let big = vec![1u8; MAX_OBJECT_BYTES + 1];
        assert_eq!(
            Object::parse(&big),
            Err(ObjectError::TooLong(MAX_OBJECT_BYTES + 1))
        );
        assert_eq!(
            seal(
                &k,
                ChunkIndex(0),
                ChunkFlags::default(),
                &big[..MAX_OBJECT_BYTES]
            ),
            Err(ObjectError::TooLong(MAX_OBJECT_BYTES + OVERHEAD))
        );
    }
}
