//! The MoQ Transport wire codec, keyed by the negotiated version.
//!
//! This module owns every byte layout: varints and primitive fields (`codec`), key-value pairs
//! and typed parameters (`kvp`), control messages (`control`) and data streams and datagrams
//! (`data`). It never keeps session state, never touches I/O and never panics on input bytes;
//! each decoder checks a length against a limit before it allocates.
//!
//! Every encoder and decoder takes a [`Version`]. Only draft-16 exists today; a later draft is a
//! new `Version` variant and new match arms here, with no change to the session.

pub(crate) mod codec;
pub mod control;
pub mod data;
#[cfg(test)]
mod golden;
pub mod kvp;

pub use codec::MAX_REASON_BYTES;
pub use control::{
    decode_control, encode_control, ControlMessage, FetchKind, Subscribe, SubscribeOk,
};
pub use data::{
    decode_datagram, DataItem, DataObject, DataStreamReader, Datagram, SubgroupHeader,
    SubgroupIdMode,
};
pub use kvp::{KeyValue, KvValue, MessageParams, SetupParams};

use crate::moq::error::MoqError;

/// A MoQ Transport version this codec speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version {
    /// draft-ietf-moq-transport-16, ALPN `moqt-16`.
    Draft16,
}

impl Version {
    /// The ALPN token that negotiates this version.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Version::Draft16 => b"moqt-16",
        }
    }

    /// The version an ALPN token negotiates, if supported.
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        match alpn {
            b"moqt-16" => Some(Version::Draft16),
            _ => None,
        }
    }
}

/// Decodes a whole data stream held in `buf` (for fuzzing and tests): every complete item, in
/// order. Trailing bytes that do not yet form an item are ignored, as a live stream would wait.
pub fn decode_data_stream(
    version: Version,
    buf: &[u8],
    max_payload: usize,
) -> Result<Vec<DataItem>, MoqError> {
    let mut reader = DataStreamReader::new(version, max_payload);
    let mut items = Vec::new();
    let mut at = 0;
    while let Some((item, used)) = reader.next(&buf[at..])? {
        at += used;
        items.push(item);
    }
    Ok(items)
}

/// Decodes every complete control message at the front of `buf` (for fuzzing and tests).
pub fn decode_control_stream(
    version: Version,
    buf: &[u8],
) -> Result<Vec<ControlMessage>, MoqError> {
    let mut msgs = Vec::new();
    let mut at = 0;
    while let Some((m, used)) = decode_control(version, &buf[at..])? {
        at += used;
        msgs.push(m);
    }
    Ok(msgs)
}
