//! Errors of the MoQ core, sorted by blame, and the one table that maps them to draft error codes.
//!
//! This module owns `MoqError` and the session-termination code registry. It never decides what
//! to do about an error (the session does) and never formats anything for users beyond `Display`.
//!
//! A `Peer` error is the remote's fault and closes the session with the draft code it carries;
//! `Misuse` is a mistake of the caller and never comes from untrusted bytes; `Internal` is a bug of
//! ours and closes the session with INTERNAL_ERROR; `Blocked` says a new
//! request must wait for the peer to raise MAX_REQUEST_ID; `Closed` is the sticky end state that
//! every call reports once the session is over.

use std::fmt;

/// Session termination codes of draft-16 (sent as the QUIC application error code).
///
/// The numeric values live in one table, [`SessionCode::code`], so no other module spells a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionCode {
    /// 0x0: orderly close.
    NoError,
    /// 0x1: an implementation error.
    InternalError,
    /// 0x2: the peer is not authorised.
    Unauthorized,
    /// 0x3: malformed or unexpected message.
    ProtocolViolation,
    /// 0x4: a request id with the wrong parity or out of sequence.
    InvalidRequestId,
    /// 0x5: a track alias already in use.
    DuplicateTrackAlias,
    /// 0x6: a key-value pair whose value does not match its type's serialization.
    KeyValueFormatting,
    /// 0x7: a request id at or above the limit we granted.
    TooManyRequests,
    /// 0x8: the PATH setup parameter names nothing served here.
    InvalidPath,
    /// 0x9: the PATH setup parameter is malformed.
    MalformedPath,
    /// 0x10: the peer did not leave after GOAWAY in time.
    GoawayTimeout,
    /// 0x11: a control message (such as SETUP) did not arrive in time.
    ControlMessageTimeout,
    /// 0x12: a data stream stayed unusable for too long.
    DataStreamTimeout,
    /// 0x13: the peer's authorization token cache overflowed.
    AuthTokenCacheOverflow,
    /// 0x14: an authorization token alias registered twice.
    DuplicateAuthTokenAlias,
    /// 0x15: no common protocol version.
    VersionNegotiationFailed,
    /// 0x16: a malformed authorization token.
    MalformedAuthToken,
    /// 0x17: an authorization token alias never registered.
    UnknownAuthTokenAlias,
    /// 0x18: an expired authorization token.
    ExpiredAuthToken,
    /// 0x19: the AUTHORITY setup parameter names nothing served here.
    InvalidAuthority,
    /// 0x1A: the AUTHORITY setup parameter is malformed.
    MalformedAuthority,
}

impl SessionCode {
    /// The code as sent on the wire. This is the only table of session codes in the crate.
    pub fn code(self) -> u64 {
        match self {
            SessionCode::NoError => 0x0,
            SessionCode::InternalError => 0x1,
            SessionCode::Unauthorized => 0x2,
            SessionCode::ProtocolViolation => 0x3,
            SessionCode::InvalidRequestId => 0x4,
            SessionCode::DuplicateTrackAlias => 0x5,
            SessionCode::KeyValueFormatting => 0x6,
            SessionCode::TooManyRequests => 0x7,
            SessionCode::InvalidPath => 0x8,
            SessionCode::MalformedPath => 0x9,
            SessionCode::GoawayTimeout => 0x10,
            SessionCode::ControlMessageTimeout => 0x11,
            SessionCode::DataStreamTimeout => 0x12,
            SessionCode::AuthTokenCacheOverflow => 0x13,
            SessionCode::DuplicateAuthTokenAlias => 0x14,
            SessionCode::VersionNegotiationFailed => 0x15,
            SessionCode::MalformedAuthToken => 0x16,
            SessionCode::UnknownAuthTokenAlias => 0x17,
            SessionCode::ExpiredAuthToken => 0x18,
            SessionCode::InvalidAuthority => 0x19,
            SessionCode::MalformedAuthority => 0x1a,
        }
    }
}

/// Request error codes carried by REQUEST_ERROR and PUBLISH_NAMESPACE_CANCEL (draft-16).
///
/// Unknown codes from a peer are kept as plain `u64`s; these constants are what we send.
pub mod request_error {
    /// An implementation error.
    pub const INTERNAL_ERROR: u64 = 0x0;
    /// Not authorised.
    pub const UNAUTHORIZED: u64 = 0x1;
    /// The request timed out upstream.
    pub const TIMEOUT: u64 = 0x2;
    /// The request type is not supported here.
    pub const NOT_SUPPORTED: u64 = 0x3;
    /// The track or namespace does not exist.
    pub const DOES_NOT_EXIST: u64 = 0x10;
    /// The requested range is invalid or not available.
    pub const INVALID_RANGE: u64 = 0x11;
    /// A joining FETCH names no subscription of this session.
    pub const INVALID_JOINING_REQUEST_ID: u64 = 0x32;
}

/// PUBLISH_DONE status codes (draft-16).
pub mod publish_done {
    /// An implementation error.
    pub const INTERNAL_ERROR: u64 = 0x0;
    /// The track ended.
    pub const TRACK_ENDED: u64 = 0x2;
    /// The subscription reached its end (AbsoluteRange end group).
    pub const SUBSCRIPTION_ENDED: u64 = 0x3;
    /// The publisher is going away.
    pub const GOING_AWAY: u64 = 0x4;
    /// The subscriber fell too far behind.
    pub const TOO_FAR_BEHIND: u64 = 0x6;
}

/// RESET_STREAM / STOP_SENDING codes for data streams (draft-16).
pub mod reset {
    /// An implementation error.
    pub const INTERNAL_ERROR: u64 = 0x0;
    /// The sender or receiver no longer wants the stream.
    pub const CANCELLED: u64 = 0x1;
    /// The objects could not be delivered in time.
    pub const DELIVERY_TIMEOUT: u64 = 0x2;
    /// The session is closing.
    pub const SESSION_CLOSED: u64 = 0x3;
}

/// Every error the MoQ core reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoqError {
    /// The peer broke the protocol; the session closes with `code`.
    Peer {
        /// The draft code the session is closed with.
        code: SessionCode,
        /// What was wrong, for logs.
        why: &'static str,
    },
    /// The caller used the API out of order or with invalid values; nothing was sent.
    Misuse(&'static str),
    /// A new request cannot be sent until the peer raises MAX_REQUEST_ID above `limit`.
    Blocked {
        /// The peer's current limit (exclusive).
        limit: u64,
    },
    /// A bug in this crate (a broken internal invariant); the session closes with INTERNAL_ERROR.
    Internal(&'static str),
    /// The session is over; every later call reports this same value.
    Closed {
        /// Whether the peer (rather than this side) ended it.
        by_peer: bool,
        /// The session termination code.
        code: u64,
        /// The reason phrase.
        reason: String,
    },
}

impl MoqError {
    /// A protocol violation by the peer.
    pub(crate) fn violation(why: &'static str) -> Self {
        MoqError::Peer {
            code: SessionCode::ProtocolViolation,
            why,
        }
    }

    /// A key-value pair the peer formatted wrongly.
    pub(crate) fn kvp(why: &'static str) -> Self {
        MoqError::Peer {
            code: SessionCode::KeyValueFormatting,
            why,
        }
    }

    /// The session termination code this error closes the session with, if it is the peer's fault.
    pub fn session_code(&self) -> Option<u64> {
        match self {
            MoqError::Peer { code, .. } => Some(code.code()),
            MoqError::Internal(_) => Some(SessionCode::InternalError.code()),
            MoqError::Closed { code, .. } => Some(*code),
            MoqError::Misuse(_) | MoqError::Blocked { .. } => None,
        }
    }
}

impl fmt::Display for MoqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoqError::Peer { code, why } => {
                write!(f, "peer error {code:?} (0x{:x}): {why}", code.code())
            }
            MoqError::Misuse(why) => write!(f, "API misuse: {why}"),
            MoqError::Internal(why) => write!(f, "internal error: {why}"),
            MoqError::Blocked { limit } => write!(f, "request blocked by the peer's limit {limit}"),
            MoqError::Closed {
                by_peer,
                code,
                reason,
            } => {
                let who = if *by_peer { "peer" } else { "we" };
                write!(f, "session closed by {who} with code 0x{code:x}: {reason}")
            }
        }
    }
}

impl std::error::Error for MoqError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_draft_registry() {
        assert_eq!(SessionCode::ProtocolViolation.code(), 3);
        assert_eq!(SessionCode::InvalidRequestId.code(), 4);
        assert_eq!(SessionCode::KeyValueFormatting.code(), 6);
        assert_eq!(SessionCode::TooManyRequests.code(), 7);
        assert_eq!(MoqError::violation("x").session_code(), Some(3));
        assert_eq!(MoqError::Misuse("x").session_code(), None);
    }
}
