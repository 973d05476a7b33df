//! The network edge: MoQ Transport sessions over QUIC (quiche), driven by one blocking UDP loop
//! per endpoint, with node identities that addresses can pin.
//!
//! This module owns the UDP socket, the quiche connections and their TLS identities, and moves
//! bytes between QUIC streams and the sans-I/O [`crate::moq::session::Session`]s. It never
//! interprets MoQ messages (that is `moq`'s job), never decides what to publish or subscribe (the
//! application's [`Handler`] runs beside the sessions, or the application sends a closure to
//! run on one) and never uses an async runtime: one
//! thread per endpoint, bounded crossbeam channels, and a waker datagram so commands never wait
//! for the read timeout. See [`endpoint`] for the loop, [`identity`] for the certificate and
//! `udp` for batched sending (UDP GSO).

pub mod addr;
pub mod endpoint;
pub mod identity;
mod pacing;
pub mod tuning;
mod udp;

pub use addr::{EndpointAddr, RelayUrl, Target};
pub use endpoint::{ConnId, Endpoint, Feed, Handler, NetEvent, PassOn, Sessions, Settings};
pub use identity::{PeerCheck, ALPN};
pub use tuning::{Congestion, Tuning};

use std::fmt;

use crate::crypto::NodeId;
use crate::moq::MoqError;

/// What went wrong on the network edge, split by who is to blame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetError {
    // --- the caller or its configuration ---
    /// An address or URL that does not parse.
    Address {
        /// The text given.
        text: String,
        /// Why it is refused.
        why: String,
    },
    /// Unusable settings (e.g. an unreadable CA file).
    Config {
        /// What is wrong.
        what: String,
    },
    /// A command for a connection the endpoint does not have (never opened or already ended).
    NoConnection(ConnId),
    // --- the local system ---
    /// A socket call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's error text.
        detail: String,
    },
    /// A host name did not resolve.
    Resolve {
        /// The host.
        host: String,
        /// The resolver's answer.
        detail: String,
    },
    /// BoringSSL refused a context setting.
    Tls {
        /// What was being set.
        what: &'static str,
        /// BoringSSL's error text.
        detail: String,
    },
    /// The endpoint thread is gone.
    Stopped,
    // --- the peer or the path ---
    /// The QUIC handshake failed (certificate refused, no common ALPN, no answer...).
    Handshake {
        /// quiche's or the peer's reason.
        detail: String,
    },
    /// The peer's certificate does not carry the node key the address pins.
    IdentityMismatch {
        /// The pinned node id.
        expected: NodeId,
        /// The node id the peer proved, if its certificate is an Ed25519 one.
        got: Option<NodeId>,
    },
    /// Nothing was heard from the peer for the idle timeout.
    IdleTimeout,
    /// The QUIC connection was closed with a transport error.
    Transport {
        /// Whether the peer sent the close.
        by_peer: bool,
        /// The QUIC error code.
        code: u64,
        /// The reason phrase.
        reason: String,
    },
    /// The MoQ session ended (closed by either side, or a protocol error).
    Session(MoqError),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Address { text, why } => write!(f, "bad address {text:?}: {why}"),
            NetError::Config { what } => write!(f, "{what}"),
            NetError::NoConnection(c) => write!(f, "no connection {c:?}"),
            NetError::Io { what, detail } => write!(f, "{what}: {detail}"),
            NetError::Resolve { host, detail } => write!(f, "cannot resolve {host}: {detail}"),
            NetError::Tls { what, detail } => write!(f, "TLS setup ({what}): {detail}"),
            NetError::Stopped => write!(f, "the network endpoint stopped"),
            NetError::Handshake { detail } => write!(f, "QUIC/TLS handshake failed: {detail}"),
            NetError::IdentityMismatch { expected, got } => match got {
                Some(got) => write!(
                    f,
                    "peer identity mismatch: expected node {expected}, the peer proved {got}"
                ),
                None => write!(
                    f,
                    "peer identity mismatch: expected node {expected}, the peer's certificate carries no Ed25519 node key"
                ),
            },
            NetError::IdleTimeout => write!(f, "the connection went idle (no packets from the peer)"),
            NetError::Transport {
                by_peer,
                code,
                reason,
            } => write!(
                f,
                "QUIC connection closed by {} with transport error {code:#x} {reason:?}",
                if *by_peer { "the peer" } else { "us" }
            ),
            NetError::Session(e) => write!(f, "MoQ session ended: {e}"),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Session(e) => Some(e),
            _ => None,
        }
    }
}

impl NetError {
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> NetError {
        move |e| NetError::Io {
            what,
            detail: e.to_string(),
        }
    }
}
