//! Stream keys: the per-stream key, its purpose-bound subkeys and the stream locator.
//!
//! Owns the derivations (all BLAKE3 `derive_key` with fixed context strings, listed in
//! docs/PROTOCOL.md §2) and the parsing of `--network-secret` and `--stream-id` values. It never
//! encrypts anything, never does I/O and never lets the stream id leave this module in a form a
//! relay could see: relays only ever get the [`StreamLocator`].

use super::base32;
use std::fmt;

/// Context of the stream-key derivation, shared with the original every.channel implementation.
pub const STREAM_KEY_CONTEXT: &str = "every.channel stream key v1";
/// Context of the object AEAD subkey.
pub const AEAD_KEY_CONTEXT: &str = "every.channel object aead key v1";
/// Context of the synthetic-nonce subkey.
pub const NONCE_KEY_CONTEXT: &str = "every.channel object nonce key v1";
/// Context of the stream locator.
pub const LOCATOR_CONTEXT: &str = "every.channel stream locator v1";

/// Shortest accepted network secret: 128 bits.
pub const MIN_SECRET_BYTES: usize = 16;
/// Longest accepted network secret, a sanity bound on command-line input.
pub const MAX_SECRET_BYTES: usize = 64;
/// Longest accepted stream id in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 256;

/// Why a network secret or stream id is not acceptable (all caller input, so usage errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The secret is not an even number of hex digits.
    SecretNotHex,
    /// The secret is shorter than [`MIN_SECRET_BYTES`] or longer than [`MAX_SECRET_BYTES`].
    SecretLength(usize),
    /// The stream id is empty or longer than [`MAX_STREAM_ID_BYTES`].
    StreamIdLength(usize),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::SecretNotHex => f.write_str("network secret is not hex"),
            StreamError::SecretLength(n) => write!(
                f,
                "network secret is {n} bytes, expected {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}"
            ),
            StreamError::StreamIdLength(n) => write!(
                f,
                "stream id is {n} bytes, expected 1 to {MAX_STREAM_ID_BYTES}"
            ),
        }
    }
}

impl std::error::Error for StreamError {}

/// The secret shared by a private network; without one, stream keys only obfuscate.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSecret(Vec<u8>);

impl NetworkSecret {
    /// Parses `--network-secret HEX`: 16 to 64 bytes as hex digits (either case).
    pub fn from_hex(text: &str) -> Result<NetworkSecret, StreamError> {
        let digits = text.as_bytes();
        if !digits.len().is_multiple_of(2) {
            return Err(StreamError::SecretNotHex);
        }
        let len = digits.len() / 2;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&len) {
            return Err(StreamError::SecretLength(len));
        }
        let nibble = |c: u8| (c as char).to_digit(16).ok_or(StreamError::SecretNotHex);
        let bytes = digits
            .chunks_exact(2)
            .map(|pair| Ok((nibble(pair[0])? << 4 | nibble(pair[1])?) as u8))
            .collect::<Result<Vec<u8>, StreamError>>()?;
        Ok(NetworkSecret(bytes))
    }
}

impl fmt::Debug for NetworkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkSecret({} bytes)", self.0.len())
    }
}

/// A stream's id, e.g. `ec/stream/v1/broadcast/atsc/...`; secret from relays, known to subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamId(String);

impl StreamId {
    /// A stream id of 1 to [`MAX_STREAM_ID_BYTES`] bytes.
    pub fn new(id: &str) -> Result<StreamId, StreamError> {
        if id.is_empty() || id.len() > MAX_STREAM_ID_BYTES {
            return Err(StreamError::StreamIdLength(id.len()));
        }
        Ok(StreamId(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The per-stream root key. Everything else about a stream is derived from it.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamKey([u8; 32]);

impl StreamKey {
    /// BLAKE3 `derive_key(STREAM_KEY_CONTEXT, secret || 0x00 || stream_id)`, with an empty secret
    /// when none is given (compatible with the original every.channel derivation).
    pub fn derive(secret: Option<&NetworkSecret>, id: &StreamId) -> StreamKey {
        let mut hasher = blake3::Hasher::new_derive_key(STREAM_KEY_CONTEXT);
        if let Some(secret) = secret {
            hasher.update(&secret.0);
        }
        hasher.update(&[0]);
        hasher.update(id.0.as_bytes());
        StreamKey(*hasher.finalize().as_bytes())
    }

    /// A stream key from raw bytes (tests, and keys distributed out of band).
    pub fn from_bytes(bytes: [u8; 32]) -> StreamKey {
        StreamKey(bytes)
    }

    /// The purpose-bound subkeys and the locator.
    pub fn subkeys(&self) -> StreamKeys {
        StreamKeys {
            aead: blake3::derive_key(AEAD_KEY_CONTEXT, &self.0),
            nonce: blake3::derive_key(NONCE_KEY_CONTEXT, &self.0),
            locator: StreamLocator(blake3::derive_key(LOCATOR_CONTEXT, &self.0)),
        }
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(..)")
    }
}

/// The subkeys of one stream, each used for exactly one purpose so that no output of one use can
/// be replayed as input to another.
#[derive(Clone)]
pub struct StreamKeys {
    pub(crate) aead: [u8; 32],
    pub(crate) nonce: [u8; 32],
    locator: StreamLocator,
}

impl StreamKeys {
    /// The stream's public locator.
    pub fn locator(&self) -> StreamLocator {
        self.locator
    }
}

impl fmt::Debug for StreamKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKeys({})", self.locator)
    }
}

/// The name a stream travels under: a one-way function of the stream key, so relays can route a
/// stream without learning its id. Text form: 52 lowercase base32 characters (`[a-z2-7]`, never
/// `/`); those ASCII bytes are the MoQ namespace field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamLocator([u8; 32]);

impl StreamLocator {
    /// A locator from its 32 bytes (as carried in manifests).
    pub fn from_bytes(bytes: [u8; 32]) -> StreamLocator {
        StreamLocator(bytes)
    }

    /// The 32 locator bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::str::FromStr for StreamLocator {
    type Err = base32::Base32Error;

    fn from_str(text: &str) -> Result<StreamLocator, base32::Base32Error> {
        base32::decode32(text).map(StreamLocator)
    }
}

impl fmt::Display for StreamLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode32(&self.0))
    }
}

impl fmt::Debug for StreamLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamLocator({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> NetworkSecret {
        NetworkSecret::from_hex("00112233445566778899aabbccddeeff").unwrap()
    }

    #[test]
    fn stream_key_matches_the_documented_derivation() {
        let id = StreamId::new("ec/stream/v1/test").unwrap();
        let mut material = secret().0.clone();
        material.push(0);
        material.extend_from_slice(b"ec/stream/v1/test");
        let expected = blake3::derive_key("every.channel stream key v1", &material);
        assert_eq!(StreamKey::derive(Some(&secret()), &id), StreamKey(expected));
        let open = blake3::derive_key("every.channel stream key v1", b"\0ec/stream/v1/test");
        assert_eq!(StreamKey::derive(None, &id), StreamKey(open));
    }

    #[test]
    fn subkeys_are_distinct_and_depend_on_secret_and_id() {
        let id = StreamId::new("a").unwrap();
        let keys = StreamKey::derive(Some(&secret()), &id).subkeys();
        assert_ne!(keys.aead, keys.nonce);
        assert_ne!(&keys.aead, keys.locator.as_bytes());
        let other_id = StreamKey::derive(Some(&secret()), &StreamId::new("b").unwrap()).subkeys();
        let no_secret = StreamKey::derive(None, &id).subkeys();
        assert_ne!(keys.locator, other_id.locator);
        assert_ne!(keys.locator, no_secret.locator);
    }

    #[test]
    fn locator_text_is_base32_without_slash_and_round_trips() {
        let loc = StreamKey::derive(None, &StreamId::new("x").unwrap())
            .subkeys()
            .locator();
        let text = loc.to_string();
        assert_eq!(text.len(), 52);
        assert!(!text.contains('/'));
        assert_eq!(text.parse::<StreamLocator>(), Ok(loc));
    }

    #[test]
    fn bad_secrets_and_ids_are_refused() {
        assert_eq!(
            NetworkSecret::from_hex("0011"),
            Err(StreamError::SecretLength(2))
        );
        assert_eq!(
            NetworkSecret::from_hex("001"),
            Err(StreamError::SecretNotHex)
        );
        assert_eq!(
            NetworkSecret::from_hex(&"zz".repeat(16)),
            Err(StreamError::SecretNotHex)
        );
        assert_eq!(
            NetworkSecret::from_hex(&"ab".repeat(65)),
            Err(StreamError::SecretLength(65))
        );
        assert!(NetworkSecret::from_hex(&"AB".repeat(16)).is_ok());
        assert_eq!(StreamId::new(""), Err(StreamError::StreamIdLength(0)));
        assert_eq!(
            StreamId::new(&"a".repeat(257)),
            Err(StreamError::StreamIdLength(257))
        );
    }
}
