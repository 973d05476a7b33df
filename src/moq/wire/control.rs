//! Control messages: the version-neutral message values and their draft-16 serialization
//! (`Type (i) | Length (16) | Payload`).
//!
//! This module owns framing, field order and per-field limits of every control message. It never
//! checks session rules (request-id sequence, which side may send what); the session does.

use crate::moq::error::MoqError;
use crate::moq::types::{
    FullTrackName, Location, RequestId, TrackAlias, TrackNamespace, MAX_VARINT,
};
use crate::moq::wire::codec::{
    put_bytes, put_full_name, put_location, put_namespace, put_varint, Read, ReadError, Reader,
};
use crate::moq::wire::kvp::{read_to_end, write_pairs, KeyValue, MessageParams, SetupParams};
use crate::moq::wire::Version;

/// Most bytes of a GOAWAY URI (draft-16).
pub const MAX_GOAWAY_URI: usize = 8192;

/// SUBSCRIBE and TRACK_STATUS share this body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The new request id.
    pub request: RequestId,
    /// The track.
    pub track: FullTrackName,
    /// Parameters (filter, forward, priority, group order...).
    pub params: MessageParams,
}

/// SUBSCRIBE_OK and PUBLISH share the alias, parameters and track extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOk {
    /// The request being answered.
    pub request: RequestId,
    /// The alias the publisher chose for data streams.
    pub alias: TrackAlias,
    /// Parameters (LARGEST_OBJECT, EXPIRES...).
    pub params: MessageParams,
    /// Track extensions, running to the end of the message.
    pub extensions: Vec<KeyValue>,
}

/// How a FETCH names its range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchKind {
    /// Standalone (0x1): a track and a range; `end.object == 0` means the whole end group.
    Standalone {
        /// The track.
        track: FullTrackName,
        /// First location.
        start: Location,
        /// End location.
        end: Location,
    },
    /// Relative joining (0x2): the `offset` groups before the subscription's largest group.
    RelativeJoining {
        /// The subscription joined.
        joining: RequestId,
        /// Groups back from the largest group.
        offset: u64,
    },
    /// Absolute joining (0x3): from group `start` to the subscription's largest object.
    AbsoluteJoining {
        /// The subscription joined.
        joining: RequestId,
        /// First group.
        start: u64,
    },
}

/// A control message of any supported version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlMessage {
    /// CLIENT_SETUP.
    ClientSetup(SetupParams),
    /// SERVER_SETUP.
    ServerSetup(SetupParams),
    /// GOAWAY with an optional new session URI.
    Goaway {
        /// The new session URI (empty when none).
        uri: Vec<u8>,
    },
    /// MAX_REQUEST_ID: the new exclusive limit on the receiver's request ids.
    MaxRequestId(u64),
    /// REQUESTS_BLOCKED: the sender is blocked at this limit.
    RequestsBlocked(u64),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBSCRIBE_OK.
    SubscribeOk(SubscribeOk),
    /// REQUEST_UPDATE: a new request id updating an existing request.
    RequestUpdate {
        /// The new request id.
        request: RequestId,
        /// The request updated.
        existing: RequestId,
        /// New parameter values.
        params: MessageParams,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// The subscription.
        request: RequestId,
    },
    /// PUBLISH_DONE.
    PublishDone {
        /// The subscription.
        request: RequestId,
        /// Status code (see `error::publish_done`).
        status: u64,
        /// Number of data streams opened for the subscription.
        stream_count: u64,
        /// Reason phrase.
        reason: String,
    },
    /// PUBLISH_NAMESPACE.
    PublishNamespace {
        /// The new request id.
        request: RequestId,
        /// The namespace.
        namespace: TrackNamespace,
        /// Parameters.
        params: MessageParams,
    },
    /// PUBLISH_NAMESPACE_DONE.
    PublishNamespaceDone {
        /// The PUBLISH_NAMESPACE request.
        request: RequestId,
    },
    /// PUBLISH_NAMESPACE_CANCEL.
    PublishNamespaceCancel {
        /// The PUBLISH_NAMESPACE request.
        request: RequestId,
        /// Error code (see `error::request_error`).
        code: u64,
        /// Reason phrase.
        reason: String,
    },
    /// REQUEST_OK.
    RequestOk {
        /// The request answered.
        request: RequestId,
        /// Parameters.
        params: MessageParams,
    },
    /// REQUEST_ERROR.
    RequestError {
        /// The request answered.
        request: RequestId,
        /// Error code (see `error::request_error`).
        code: u64,
        /// Retry interval in ms plus one; 0 means do not retry.
        retry_interval: u64,
        /// Reason phrase.
        reason: String,
    },
    /// FETCH.
    Fetch {
        /// The new request id.
        request: RequestId,
        /// Range.
        kind: FetchKind,
        /// Parameters.
        params: MessageParams,
    },
    /// FETCH_OK.
    FetchOk {
        /// The request answered.
        request: RequestId,
        /// Whether the range reaches the end of the track.
        end_of_track: bool,
        /// The largest location the response covers.
        end: Location,
        /// Parameters.
        params: MessageParams,
        /// Track extensions.
        extensions: Vec<KeyValue>,
    },
    /// FETCH_CANCEL.
    FetchCancel {
        /// The fetch.
        request: RequestId,
    },
    /// TRACK_STATUS (same body as SUBSCRIBE).
    TrackStatus(Subscribe),
    /// PUBLISH (parsed; answered NOT_SUPPORTED).
    Publish {
        /// The new request id.
        request: RequestId,
        /// The track.
        track: FullTrackName,
        /// Alias, parameters, extensions.
        ok: SubscribeOk,
    },
    /// PUBLISH_OK (parsed only).
    PublishOk {
        /// The PUBLISH answered.
        request: RequestId,
        /// Parameters.
        params: MessageParams,
    },
    /// SUBSCRIBE_NAMESPACE (parsed; answered NOT_SUPPORTED on its own stream).
    SubscribeNamespace {
        /// The new request id.
        request: RequestId,
        /// The namespace prefix.
        prefix: TrackNamespace,
        /// 0 = PUBLISH, 1 = NAMESPACE, 2 = both.
        options: u64,
        /// Parameters.
        params: MessageParams,
    },
    /// NAMESPACE (on a SUBSCRIBE_NAMESPACE stream; parsed only).
    Namespace {
        /// The namespace suffix.
        suffix: TrackNamespace,
    },
    /// NAMESPACE_DONE (on a SUBSCRIBE_NAMESPACE stream; parsed only).
    NamespaceDone {
        /// The namespace suffix.
        suffix: TrackNamespace,
    },
}

/// Draft-16 message type codes. This is the only table of control type numbers.
mod d16 {
    pub const REQUEST_UPDATE: u64 = 0x02;
    pub const SUBSCRIBE: u64 = 0x03;
    pub const SUBSCRIBE_OK: u64 = 0x04;
    pub const REQUEST_ERROR: u64 = 0x05;
    pub const PUBLISH_NAMESPACE: u64 = 0x06;
    pub const REQUEST_OK: u64 = 0x07;
    pub const NAMESPACE: u64 = 0x08;
    pub const PUBLISH_NAMESPACE_DONE: u64 = 0x09;
    pub const UNSUBSCRIBE: u64 = 0x0a;
    pub const PUBLISH_DONE: u64 = 0x0b;
    pub const PUBLISH_NAMESPACE_CANCEL: u64 = 0x0c;
    pub const TRACK_STATUS: u64 = 0x0d;
    pub const NAMESPACE_DONE: u64 = 0x0e;
    pub const GOAWAY: u64 = 0x10;
    pub const SUBSCRIBE_NAMESPACE: u64 = 0x11;
    pub const MAX_REQUEST_ID: u64 = 0x15;
    pub const FETCH: u64 = 0x16;
    pub const FETCH_CANCEL: u64 = 0x17;
    pub const FETCH_OK: u64 = 0x18;
    pub const REQUESTS_BLOCKED: u64 = 0x1a;
    pub const PUBLISH: u64 = 0x1d;
    pub const PUBLISH_OK: u64 = 0x1e;
    pub const CLIENT_SETUP: u64 = 0x20;
    pub const SERVER_SETUP: u64 = 0x21;
}

fn request_id(r: &mut Reader<'_>) -> Read<RequestId> {
    Ok(RequestId(r.varint()?))
}

fn decode_payload_d16(kind: u64, r: &mut Reader<'_>) -> Read<ControlMessage> {
    use ControlMessage as M;
    Ok(match kind {
        d16::CLIENT_SETUP => M::ClientSetup(SetupParams::read(r)?),
        d16::SERVER_SETUP => M::ServerSetup(SetupParams::read(r)?),
        d16::GOAWAY => M::Goaway {
            uri: r.bytes(MAX_GOAWAY_URI, "GOAWAY URI too long")?.to_vec(),
        },
        d16::MAX_REQUEST_ID => M::MaxRequestId(r.varint()?),
        d16::REQUESTS_BLOCKED => M::RequestsBlocked(r.varint()?),
        d16::SUBSCRIBE => M::Subscribe(read_subscribe(r)?),
        d16::TRACK_STATUS => M::TrackStatus(read_subscribe(r)?),
        d16::SUBSCRIBE_OK => {
            let request = request_id(r)?;
            M::SubscribeOk(read_subscribe_ok(r, request)?)
        }
        d16::REQUEST_UPDATE => M::RequestUpdate {
            request: request_id(r)?,
            existing: request_id(r)?,
            params: MessageParams::read(r)?,
        },
        d16::UNSUBSCRIBE => M::Unsubscribe {
            request: request_id(r)?,
        },
        d16::PUBLISH_DONE => M::PublishDone {
            request: request_id(r)?,
            status: r.varint()?,
            stream_count: r.varint()?,
            reason: r.reason()?,
        },
        d16::PUBLISH_NAMESPACE => M::PublishNamespace {
            request: request_id(r)?,
            namespace: r.namespace()?,
            params: MessageParams::read(r)?,
        },
        d16::PUBLISH_NAMESPACE_DONE => M::PublishNamespaceDone {
            request: request_id(r)?,
        },
        d16::PUBLISH_NAMESPACE_CANCEL => M::PublishNamespaceCancel {
            request: request_id(r)?,
            code: r.varint()?,
            reason: r.reason()?,
        },
        d16::REQUEST_OK => M::RequestOk {
            request: request_id(r)?,
            params: MessageParams::read(r)?,
        },
        d16::REQUEST_ERROR => M::RequestError {
            request: request_id(r)?,
            code: r.varint()?,
            retry_interval: r.varint()?,
            reason: r.reason()?,
        },
        d16::FETCH => {
            let request = request_id(r)?;
            let kind = match r.varint()? {
                0x1 => FetchKind::Standalone {
                    track: r.full_name()?,
                    start: r.location()?,
                    end: r.location()?,
                },
                0x2 => FetchKind::RelativeJoining {
                    joining: request_id(r)?,
                    offset: r.varint()?,
                },
                0x3 => FetchKind::AbsoluteJoining {
                    joining: request_id(r)?,
                    start: r.varint()?,
                },
                _ => return Err(MoqError::violation("unknown fetch type").into()),
            };
            M::Fetch {
                request,
                kind,
                params: MessageParams::read(r)?,
            }
        }
        d16::FETCH_OK => {
            let request = request_id(r)?;
            let end_of_track = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(MoqError::violation("FETCH_OK end-of-track not 0 or 1").into()),
            };
            M::FetchOk {
                request,
                end_of_track,
                end: r.location()?,
                params: MessageParams::read(r)?,
                extensions: read_to_end(r)?,
            }
        }
        d16::FETCH_CANCEL => M::FetchCancel {
            request: request_id(r)?,
        },
        d16::PUBLISH => {
            let request = request_id(r)?;
            let track = r.full_name()?;
            let ok = read_subscribe_ok(r, request)?;
            M::Publish { request, track, ok }
        }
        d16::PUBLISH_OK => M::PublishOk {
            request: request_id(r)?,
            params: MessageParams::read(r)?,
        },
        d16::SUBSCRIBE_NAMESPACE => M::SubscribeNamespace {
            request: request_id(r)?,
            prefix: r.namespace()?,
            options: match r.varint()? {
                o @ 0..=2 => o,
                _ => return Err(MoqError::violation("unknown subscribe options").into()),
            },
            params: MessageParams::read(r)?,
        },
        d16::NAMESPACE => M::Namespace {
            suffix: r.namespace()?,
        },
        d16::NAMESPACE_DONE => M::NamespaceDone {
            suffix: r.namespace()?,
        },
        _ => return Err(MoqError::violation("unknown control message type").into()),
    })
}

fn read_subscribe(r: &mut Reader<'_>) -> Read<Subscribe> {
    Ok(Subscribe {
        request: request_id(r)?,
        track: r.full_name()?,
        params: MessageParams::read(r)?,
    })
}

fn read_subscribe_ok(r: &mut Reader<'_>, request: RequestId) -> Read<SubscribeOk> {
    Ok(SubscribeOk {
        request,
        alias: TrackAlias(r.varint()?),
        params: MessageParams::read(r)?,
        extensions: read_to_end(r)?,
    })
}

/// Decodes one framed control message from the front of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((msg, n)))`: a message used the first `n` bytes.
/// `Err`: the bytes are malformed; the session must close with the error's code.
pub fn decode_control(
    version: Version,
    buf: &[u8],
) -> Result<Option<(ControlMessage, usize)>, MoqError> {
    let mut r = Reader::new(buf);
    let head = (|| -> Read<(u64, usize)> { Ok((r.varint()?, usize::from(r.u16()?))) })();
    let (kind, len) = match head {
        Ok(h) => h,
        Err(ReadError::Short) => return Ok(None),
        Err(ReadError::Bad(e)) => return Err(e),
    };
    let payload = match r.take(len) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    let mut pr = Reader::new(payload);
    let msg = match version {
        Version::Draft16 => decode_payload_d16(kind, &mut pr),
    };
    match msg {
        // The length field framed the message, so running out inside it is malformed.
        Err(ReadError::Short) => Err(MoqError::violation(
            "control message shorter than its fields",
        )),
        Err(ReadError::Bad(e)) => Err(e),
        Ok(_) if !pr.is_empty() => Err(MoqError::violation(
            "control message longer than its fields",
        )),
        Ok(m) => Ok(Some((m, r.pos()))),
    }
}

fn write_subscribe(out: &mut Vec<u8>, s: &Subscribe) {
    put_varint(out, s.request.0);
    put_full_name(out, &s.track);
    s.params.write(out);
}

fn write_subscribe_ok_tail(out: &mut Vec<u8>, ok: &SubscribeOk) {
    put_varint(out, ok.alias.0);
    ok.params.write(out);
    write_pairs(out, &ok.extensions);
}

fn encode_payload_d16(msg: &ControlMessage, out: &mut Vec<u8>) -> u64 {
    use ControlMessage as M;
    match msg {
        M::ClientSetup(p) => {
            p.write(out);
            d16::CLIENT_SETUP
        }
        M::ServerSetup(p) => {
            p.write(out);
            d16::SERVER_SETUP
        }
        M::Goaway { uri } => {
            put_bytes(out, uri);
            d16::GOAWAY
        }
        M::MaxRequestId(v) => {
            put_varint(out, *v);
            d16::MAX_REQUEST_ID
        }
        M::RequestsBlocked(v) => {
            put_varint(out, *v);
            d16::REQUESTS_BLOCKED
        }
        M::Subscribe(s) => {
            write_subscribe(out, s);
            d16::SUBSCRIBE
        }
        M::TrackStatus(s) => {
            write_subscribe(out, s);
            d16::TRACK_STATUS
        }
        M::SubscribeOk(ok) => {
            put_varint(out, ok.request.0);
            write_subscribe_ok_tail(out, ok);
            d16::SUBSCRIBE_OK
        }
        M::RequestUpdate {
            request,
            existing,
            params,
        } => {
            put_varint(out, request.0);
            put_varint(out, existing.0);
            params.write(out);
            d16::REQUEST_UPDATE
        }
        M::Unsubscribe { request } => {
            put_varint(out, request.0);
            d16::UNSUBSCRIBE
        }
        M::PublishDone {
            request,
            status,
            stream_count,
            reason,
        } => {
            put_varint(out, request.0);
            put_varint(out, *status);
            put_varint(out, (*stream_count).min(MAX_VARINT));
            put_bytes(out, reason.as_bytes());
            d16::PUBLISH_DONE
        }
        M::PublishNamespace {
            request,
            namespace,
            params,
        } => {
            put_varint(out, request.0);
            put_namespace(out, namespace);
            params.write(out);
            d16::PUBLISH_NAMESPACE
        }
        M::PublishNamespaceDone { request } => {
            put_varint(out, request.0);
            d16::PUBLISH_NAMESPACE_DONE
        }
        M::PublishNamespaceCancel {
            request,
            code,
            reason,
        } => {
            put_varint(out, request.0);
            put_varint(out, *code);
            put_bytes(out, reason.as_bytes());
            d16::PUBLISH_NAMESPACE_CANCEL
        }
        M::RequestOk { request, params } => {
            put_varint(out, request.0);
            params.write(out);
            d16::REQUEST_OK
        }
        M::RequestError {
            request,
            code,
            retry_interval,
            reason,
        } => {
            put_varint(out, request.0);
            put_varint(out, *code);
            put_varint(out, *retry_interval);
            put_bytes(out, reason.as_bytes());
            d16::REQUEST_ERROR
        }
        M::Fetch {
            request,
            kind,
            params,
        } => {
            put_varint(out, request.0);
            match kind {
                FetchKind::Standalone { track, start, end } => {
                    put_varint(out, 0x1);
                    put_full_name(out, track);
                    put_location(out, *start);
                    put_location(out, *end);
                }
                FetchKind::RelativeJoining { joining, offset } => {
                    put_varint(out, 0x2);
                    put_varint(out, joining.0);
                    put_varint(out, *offset);
                }
                FetchKind::AbsoluteJoining { joining, start } => {
                    put_varint(out, 0x3);
                    put_varint(out, joining.0);
                    put_varint(out, *start);
                }
            }
            params.write(out);
            d16::FETCH
        }
        M::FetchOk {
            request,
            end_of_track,
            end,
            params,
            extensions,
        } => {
            put_varint(out, request.0);
            out.push(u8::from(*end_of_track));
            put_location(out, *end);
            params.write(out);
            write_pairs(out, extensions);
            d16::FETCH_OK
        }
        M::FetchCancel { request } => {
            put_varint(out, request.0);
            d16::FETCH_CANCEL
        }
        M::Publish { request, track, ok } => {
            put_varint(out, request.0);
            put_full_name(out, track);
            write_subscribe_ok_tail(out, ok);
            d16::PUBLISH
        }
        M::PublishOk { request, params } => {
            put_varint(out, request.0);
            params.write(out);
            d16::PUBLISH_OK
        }
        M::SubscribeNamespace {
            request,
            prefix,
            options,
            params,
        } => {
            put_varint(out, request.0);
            put_namespace(out, prefix);
            put_varint(out, *options);
            params.write(out);
            d16::SUBSCRIBE_NAMESPACE
        }
        M::Namespace { suffix } => {
            put_namespace(out, suffix);
            d16::NAMESPACE
        }
        M::NamespaceDone { suffix } => {
            put_namespace(out, suffix);
            d16::NAMESPACE_DONE
        }
    }
}

/// Appends one framed control message to `out`.
///
/// Errors with `Misuse` if the payload does not fit the 16-bit length (only possible with values
/// the session never builds, such as a 60 KiB reason phrase); nothing is appended then.
///
/// # Panics
///
/// If a number in the value exceeds 2^62-1, the varint range (the session never builds one).
pub fn encode_control(
    version: Version,
    msg: &ControlMessage,
    out: &mut Vec<u8>,
) -> Result<(), MoqError> {
    let mut payload = Vec::new();
    let kind = match version {
        Version::Draft16 => encode_payload_d16(msg, &mut payload),
    };
    let len = u16::try_from(payload.len())
        .map_err(|_| MoqError::Misuse("control message above 65535 bytes"))?;
    put_varint(out, kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}
