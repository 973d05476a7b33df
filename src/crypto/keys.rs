//! Node identity: the Ed25519 secret key a node signs with, its public [`NodeId`], and the key file.
//!
//! Owns key generation (from the operating system's random source), the key-file format and the
//! node id's text form. Reading and writing the key file is the only I/O in the trust layer; nothing
//! here reads the clock or knows about streams.

use super::base32::{self, Base32Error};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// First bytes of a key file, so a wrong file is named as such rather than as a bad key.
const KEY_FILE_MAGIC: &[u8; 8] = b"ecnodek1";
/// Key file length: magic, 32-byte secret seed, 32-byte public key (a corruption check).
pub const KEY_FILE_LEN: usize = 8 + 32 + 32;

/// A node's identity: its full 32-byte Ed25519 public key.
///
/// The text form is 52 characters of lowercase unpadded base32 (`[a-z2-7]`), used on the command
/// line, in logs and (by the endpoint layer) as the TLS identity that addresses pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

/// Why a node id is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeIdError {
    /// The text form is not canonical base32 of 32 bytes.
    Text(Base32Error),
    /// The bytes are not a valid Ed25519 public key.
    NotAKey,
}

impl fmt::Display for NodeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeIdError::Text(e) => write!(f, "node id {e}"),
            NodeIdError::NotAKey => f.write_str("node id is not a valid Ed25519 public key"),
        }
    }
}

impl std::error::Error for NodeIdError {}

impl NodeId {
    /// A node id from its 32 public-key bytes, refusing bytes that are not a curve point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<NodeId, NodeIdError> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| NodeIdError::NotAKey)?;
        Ok(NodeId(bytes))
    }

    /// The 32 public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Checks an Ed25519 signature by this node over `message`.
    ///
    /// Uses strict verification (no small-order keys, canonical `S`), so one message has one
    /// accepted signature per key and a signature cannot be re-encoded to pass as a new one.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl std::str::FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(text: &str) -> Result<NodeId, NodeIdError> {
        NodeId::from_bytes(base32::decode32(text).map_err(NodeIdError::Text)?)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode32(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A node's Ed25519 secret key. Its `Debug` form shows only the node id. A clone (the TLS
/// identity and the manifest signer each hold one) is wiped on drop like the original.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<NodeKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(NodeKey::from_seed(seed))
    }

    /// The key with the given 32-byte secret seed (tests and deterministic tooling).
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(&seed))
    }

    /// This key's public node id.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// The key file contents: magic, seed, public key.
    pub fn to_file_bytes(&self) -> [u8; KEY_FILE_LEN] {
        let mut out = [0u8; KEY_FILE_LEN];
        out[..8].copy_from_slice(KEY_FILE_MAGIC);
        out[8..40].copy_from_slice(self.0.as_bytes());
        out[40..].copy_from_slice(self.node_id().as_bytes());
        out
    }

    /// Parses key file contents, saying what is wrong with them.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<NodeKey, KeyFileError> {
        if bytes.len() != KEY_FILE_LEN {
            return Err(KeyFileError::Length(bytes.len()));
        }
        if &bytes[..8] != KEY_FILE_MAGIC {
            return Err(KeyFileError::Magic);
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[8..40]);
        let key = NodeKey::from_seed(seed);
        if key.node_id().as_bytes()[..] != bytes[40..] {
            return Err(KeyFileError::Mismatch);
        }
        Ok(key)
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<NodeKey, KeyError> {
        // A key file is 72 bytes; read at most one byte more so a huge wrong file costs nothing.
        let file = std::fs::File::open(path).map_err(|e| KeyError::Io(path.to_path_buf(), e))?;
        let mut bytes = Vec::with_capacity(KEY_FILE_LEN + 1);
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, KEY_FILE_LEN as u64 + 1),
            &mut bytes,
        )
        .map_err(|e| KeyError::Io(path.to_path_buf(), e))?;
        NodeKey::from_file_bytes(&bytes).map_err(|e| KeyError::Corrupt(path.to_path_buf(), e))
    }

    /// Writes the key file with mode 0600; refuses to replace an existing file unless `force`.
    ///
    /// Without `force` the file is created exclusively, so two concurrent runs cannot both win.
    /// With `force` the key goes to a fresh temporary file beside the target that is then renamed
    /// over it, so the old key is never half-overwritten and the new file never has looser mode.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), KeyError> {
        let io = |e| KeyError::Io(path.to_path_buf(), e);
        if !force {
            return match create_private(path) {
                Ok(file) => write_and_sync(file, &self.to_file_bytes()).map_err(io),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(KeyError::Exists(path.to_path_buf()))
                }
                Err(e) => Err(io(e)),
            };
        }
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let written = create_private(&tmp)
            .and_then(|file| write_and_sync(file, &self.to_file_bytes()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.node_id())
    }
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn write_and_sync(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// What is wrong with the contents of a key file (malformed input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyFileError {
    /// The file has the wrong length (at most one byte past the expected length is read).
    Length(usize),
    /// The file does not start with the key-file magic.
    Magic,
    /// The stored public key does not match the secret key: the file is damaged.
    Mismatch,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFileError::Length(n) if *n > KEY_FILE_LEN => {
                write!(f, "is longer than {KEY_FILE_LEN} bytes")
            }
            KeyFileError::Length(n) => write!(f, "is {n} bytes long, expected {KEY_FILE_LEN}"),
            KeyFileError::Magic => f.write_str("is not an ec-node key file (bad magic)"),
            KeyFileError::Mismatch => {
                f.write_str("is corrupt (stored public key does not match the secret key)")
            }
        }
    }
}

impl std::error::Error for KeyFileError {}

/// Why a key could not be generated, read or written.
#[derive(Debug)]
pub enum KeyError {
    /// The operating system's random source failed.
    Random(String),
    /// The file exists and overwriting was not asked for (caller misuse).
    Exists(PathBuf),
    /// The file could not be opened, read or written.
    Io(PathBuf, std::io::Error),
    /// The file was read but its contents are not a valid key (malformed input).
    Corrupt(PathBuf, KeyFileError),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Random(e) => write!(f, "cannot get random bytes for a key: {e}"),
            KeyError::Exists(p) => write!(
                f,
                "key file {} already exists (use --force to replace it)",
                p.display()
            ),
            KeyError::Io(p, e) => write!(f, "key file {}: {e}", p.display()),
            KeyError::Corrupt(p, e) => write!(f, "key file {} {e}", p.display()),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io(_, e) => Some(e),
            KeyError::Corrupt(_, e) => Some(e),
            KeyError::Random(_) | KeyError::Exists(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_text_round_trips_and_is_52_base32_chars() {
        let key = NodeKey::from_seed([7; 32]);
        let id = key.node_id();
        let text = id.to_string();
        assert_eq!(text.len(), 52);
        assert!(text.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7')));
        assert_eq!(text.parse::<NodeId>(), Ok(id));
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = NodeKey::from_seed([1; 32]);
        let other = NodeKey::from_seed([2; 32]);
        let sig = key.sign(b"hello");
        assert!(key.node_id().verify(b"hello", &sig));
        assert!(!key.node_id().verify(b"hellO", &sig));
        assert!(!other.node_id().verify(b"hello", &sig));
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(!key.node_id().verify(b"hello", &flipped));
    }

    #[test]
    fn key_file_bytes_round_trip_and_damage_is_named() {
        let key = NodeKey::from_seed([9; 32]);
        let bytes = key.to_file_bytes();
        assert_eq!(
            NodeKey::from_file_bytes(&bytes).unwrap().node_id(),
            key.node_id()
        );
        assert_eq!(
            NodeKey::from_file_bytes(&bytes[..71]).unwrap_err(),
            KeyFileError::Length(71)
        );
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(
            NodeKey::from_file_bytes(&bad).unwrap_err(),
            KeyFileError::Magic
        );
        let mut bad = bytes;
        bad[20] ^= 1;
        assert_eq!(
            NodeKey::from_file_bytes(&bad).unwrap_err(),
            KeyFileError::Mismatch
        );
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            NodeKey::generate().unwrap().node_id(),
            NodeKey::generate().unwrap().node_id()
        );
    }

    #[test]
    fn invalid_points_are_not_node_ids() {
        // y = 2 is not on the curve (decompression fails).
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert_eq!(NodeId::from_bytes(bytes), Err(NodeIdError::NotAKey));
    }
}
