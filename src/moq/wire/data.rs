//! Data-plane framing: subgroup stream headers and objects, FETCH stream headers and objects
//! (draft-16 serialization flags), and OBJECT_DATAGRAM.
//!
//! This module owns the byte layout of data streams and an incremental reader that turns a
//! stream's bytes into items as they arrive. It never knows which subscription a stream belongs
//! to, never buffers bytes itself (the caller keeps them) and never allocates a payload before
//! checking its length against the caller's limit.

use crate::moq::error::MoqError;
use crate::moq::types::{
    GroupId, Location, ObjectId, ObjectStatus, RequestId, SubgroupId, TrackAlias,
};
use crate::moq::wire::codec::{put_varint, Read, ReadError, Reader};
use crate::moq::wire::kvp::{read_to_end, write_pairs, KeyValue};
use crate::moq::wire::Version;

/// Most bytes of one object's extension block; a limit of ours.
pub const MAX_EXTENSION_BYTES: usize = 65535;

/// Stream type of a FETCH stream.
const FETCH_HEADER: u64 = 0x05;

/// Subgroup header type bits (draft-16).
mod sg {
    pub const EXTENSIONS: u64 = 0x01;
    pub const ID_MODE_MASK: u64 = 0x06;
    pub const END_OF_GROUP: u64 = 0x08;
    pub const BASE: u64 = 0x10;
    pub const NO_PRIORITY: u64 = 0x20;
}

/// How a subgroup header carries the subgroup id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubgroupIdMode {
    /// The subgroup id is 0 and absent (mode 0).
    Zero,
    /// The subgroup id is the first object's id and absent (mode 1).
    FirstObject,
    /// The subgroup id is a field of the header (mode 2).
    Explicit(SubgroupId),
}

/// The header of a subgroup stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubgroupHeader {
    /// The track alias from SUBSCRIBE_OK.
    pub alias: TrackAlias,
    /// The group.
    pub group: GroupId,
    /// How the subgroup id is carried.
    pub subgroup: SubgroupIdMode,
    /// The publisher priority; `None` when the header omits it (the track default applies).
    pub priority: Option<u8>,
    /// Whether every object on the stream carries an extension block.
    pub has_extensions: bool,
    /// Whether this subgroup holds the group's last object, so FIN ends the group.
    pub end_of_group: bool,
}

impl SubgroupHeader {
    /// The stream type value this header is written with.
    pub fn type_code(&self) -> u64 {
        let mut t = sg::BASE;
        if self.has_extensions {
            t |= sg::EXTENSIONS;
        }
        t |= match self.subgroup {
            SubgroupIdMode::Zero => 0,
            SubgroupIdMode::FirstObject => 0x02,
            SubgroupIdMode::Explicit(_) => 0x04,
        };
        if self.end_of_group {
            t |= sg::END_OF_GROUP;
        }
        if self.priority.is_none() {
            t |= sg::NO_PRIORITY;
        }
        t
    }
}

/// Whether `t` is one of the 24 draft-16 subgroup header types.
fn is_subgroup_type(t: u64) -> bool {
    t & !(sg::EXTENSIONS | sg::ID_MODE_MASK | sg::END_OF_GROUP | sg::NO_PRIORITY) == sg::BASE
        && t & sg::ID_MODE_MASK != sg::ID_MODE_MASK
}

fn read_subgroup_header(t: u64, r: &mut Reader<'_>) -> Read<SubgroupHeader> {
    let alias = TrackAlias(r.varint()?);
    let group = GroupId(r.varint()?);
    let subgroup = match (t & sg::ID_MODE_MASK) >> 1 {
        0 => SubgroupIdMode::Zero,
        1 => SubgroupIdMode::FirstObject,
        _ => SubgroupIdMode::Explicit(SubgroupId(r.varint()?)),
    };
    let priority = if t & sg::NO_PRIORITY == 0 {
        Some(r.u8()?)
    } else {
        None
    };
    Ok(SubgroupHeader {
        alias,
        group,
        subgroup,
        priority,
        has_extensions: t & sg::EXTENSIONS != 0,
        end_of_group: t & sg::END_OF_GROUP != 0,
    })
}

/// Appends a subgroup stream header.
///
/// # Panics
///
/// If a number in the value exceeds 2^62-1, the varint range (the session never builds one).
pub fn encode_subgroup_header(version: Version, h: &SubgroupHeader, out: &mut Vec<u8>) {
    match version {
        Version::Draft16 => {
            put_varint(out, h.type_code());
            put_varint(out, h.alias.0);
            put_varint(out, h.group.0);
            if let SubgroupIdMode::Explicit(s) = h.subgroup {
                put_varint(out, s.0);
            }
            if let Some(p) = h.priority {
                out.push(p);
            }
        }
    }
}

/// One object read from a subgroup or FETCH stream, or a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataObject {
    /// The group.
    pub group: GroupId,
    /// The subgroup; `None` for an object with datagram forwarding preference on a FETCH stream.
    pub subgroup: Option<SubgroupId>,
    /// The object.
    pub object: ObjectId,
    /// The publisher priority when the framing carries one.
    pub priority: Option<u8>,
    /// Object extensions.
    pub extensions: Vec<KeyValue>,
    /// The status (always `Normal` on FETCH streams, which carry no status).
    pub status: ObjectStatus,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One item of a data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataItem {
    /// The header of a subgroup stream.
    SubgroupHeader(SubgroupHeader),
    /// The header of a FETCH stream.
    FetchHeader(RequestId),
    /// An object.
    Object(DataObject),
    /// A FETCH end-of-range marker: objects up to `end` were not serialized.
    EndOfRange {
        /// The last location covered.
        end: Location,
        /// True for "status unknown" (0x10C), false for "do not exist" (0x8C).
        unknown: bool,
    },
}

/// The fields a FETCH object may inherit from the object before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FetchPrev {
    group: GroupId,
    subgroup: Option<SubgroupId>,
    object: ObjectId,
    priority: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Header,
    Subgroup {
        header: SubgroupHeader,
        prev: Option<ObjectId>,
        subgroup: Option<SubgroupId>,
    },
    Fetch {
        prev: Option<FetchPrev>,
    },
}

/// FETCH serialization flag bits (draft-16, values below 128).
mod ff {
    pub const SUBGROUP_MASK: u64 = 0x03;
    pub const OBJECT_PRESENT: u64 = 0x04;
    pub const GROUP_PRESENT: u64 = 0x08;
    pub const PRIORITY_PRESENT: u64 = 0x10;
    pub const EXTENSIONS_PRESENT: u64 = 0x20;
    pub const DATAGRAM: u64 = 0x40;
    pub const END_OF_NON_EXISTENT_RANGE: u64 = 0x8c;
    pub const END_OF_UNKNOWN_RANGE: u64 = 0x10c;
}

/// Incremental reader of one incoming data stream.
///
/// Feed it the stream's unconsumed bytes; each call decodes at most one item and says how many
/// bytes it used. Its state only advances when a whole item was decoded, so a short read can be
/// retried with more bytes.
#[derive(Debug, Clone)]
pub struct DataStreamReader {
    version: Version,
    max_payload: usize,
    state: State,
}

fn short_is_bad(e: ReadError, why: &'static str) -> ReadError {
    match e {
        ReadError::Short => ReadError::Bad(MoqError::violation(why)),
        bad => bad,
    }
}

fn read_extensions(r: &mut Reader<'_>) -> Read<Vec<KeyValue>> {
    let block = r.bytes(MAX_EXTENSION_BYTES, "extension block too long")?;
    read_to_end(&mut Reader::new(block)).map_err(|e| short_is_bad(e, "truncated extension"))
}

fn read_payload(r: &mut Reader<'_>, len: usize) -> Read<Vec<u8>> {
    Ok(r.take(len)?.to_vec())
}

impl DataStreamReader {
    /// A reader for a new stream; payloads above `max_payload` bytes are refused.
    pub fn new(version: Version, max_payload: usize) -> Self {
        DataStreamReader {
            version,
            max_payload,
            state: State::Header,
        }
    }

    /// Decodes the next item from the front of `buf`: `Ok(None)` when more bytes are needed.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<(DataItem, usize)>, MoqError> {
        let mut r = Reader::new(buf);
        let mut state = self.state.clone();
        let item = match self.version {
            Version::Draft16 => self.next_d16(&mut r, &mut state),
        };
        match item {
            Ok(item) => {
                self.state = state;
                Ok(Some((item, r.pos())))
            }
            Err(ReadError::Short) => Ok(None),
            Err(ReadError::Bad(e)) => Err(e),
        }
    }

    fn next_d16(&self, r: &mut Reader<'_>, state: &mut State) -> Read<DataItem> {
        match state {
            State::Header => {
                let t = r.varint()?;
                if t == FETCH_HEADER {
                    let req = RequestId(r.varint()?);
                    *state = State::Fetch { prev: None };
                    Ok(DataItem::FetchHeader(req))
                } else if is_subgroup_type(t) {
                    let header = read_subgroup_header(t, r)?;
                    let subgroup = match header.subgroup {
                        SubgroupIdMode::Zero => Some(SubgroupId(0)),
                        SubgroupIdMode::FirstObject => None,
                        SubgroupIdMode::Explicit(s) => Some(s),
                    };
                    *state = State::Subgroup {
                        header,
                        prev: None,
                        subgroup,
                    };
                    Ok(DataItem::SubgroupHeader(header))
                } else {
                    Err(MoqError::violation("unknown data stream type").into())
                }
            }
            State::Subgroup {
                header,
                prev,
                subgroup,
            } => {
                let delta = r.varint()?;
                let object = match prev {
                    None => Some(delta),
                    Some(p) => p.0.checked_add(delta).and_then(|v| v.checked_add(1)),
                }
                .filter(|v| *v <= crate::moq::types::MAX_VARINT)
                .ok_or(ReadError::Bad(MoqError::violation("object id overflows")))?;
                let extensions = if header.has_extensions {
                    read_extensions(r)?
                } else {
                    Vec::new()
                };
                let len = r.len(self.max_payload, "object payload above limit")?;
                let status = if len == 0 {
                    ObjectStatus::from_code(r.varint()?)
                        .ok_or(ReadError::Bad(MoqError::violation("unknown object status")))?
                } else {
                    ObjectStatus::Normal
                };
                if status != ObjectStatus::Normal && !extensions.is_empty() {
                    return Err(MoqError::violation("status object with extensions").into());
                }
                let payload = read_payload(r, len)?;
                let sub = *subgroup.get_or_insert(SubgroupId(object));
                *prev = Some(ObjectId(object));
                Ok(DataItem::Object(DataObject {
                    group: header.group,
                    subgroup: Some(sub),
                    object: ObjectId(object),
                    priority: header.priority,
                    extensions,
                    status,
                    payload,
                }))
            }
            State::Fetch { prev } => {
                let flags = r.varint()?;
                if flags == ff::END_OF_NON_EXISTENT_RANGE || flags == ff::END_OF_UNKNOWN_RANGE {
                    let end = r.location()?;
                    return Ok(DataItem::EndOfRange {
                        end,
                        unknown: flags == ff::END_OF_UNKNOWN_RANGE,
                    });
                }
                if flags >= 0x80 {
                    return Err(MoqError::violation("unknown fetch serialization flags").into());
                }
                let need_prev = || {
                    ReadError::Bad(MoqError::violation(
                        "first fetch object refers to a prior object",
                    ))
                };
                let group = if flags & ff::GROUP_PRESENT != 0 {
                    GroupId(r.varint()?)
                } else {
                    prev.ok_or_else(need_prev)?.group
                };
                let subgroup =
                    if flags & ff::DATAGRAM != 0 {
                        None
                    } else {
                        let prior = || prev.and_then(|p| p.subgroup).ok_or_else(need_prev);
                        Some(match flags & ff::SUBGROUP_MASK {
                            0 => SubgroupId(0),
                            1 => prior()?,
                            2 => SubgroupId(prior()?.0.checked_add(1).ok_or(ReadError::Bad(
                                MoqError::violation("subgroup id overflows"),
                            ))?),
                            _ => SubgroupId(r.varint()?),
                        })
                    };
                let object =
                    if flags & ff::OBJECT_PRESENT != 0 {
                        ObjectId(r.varint()?)
                    } else {
                        ObjectId(
                            prev.ok_or_else(need_prev)?.object.0.checked_add(1).ok_or(
                                ReadError::Bad(MoqError::violation("object id overflows")),
                            )?,
                        )
                    };
                let priority = if flags & ff::PRIORITY_PRESENT != 0 {
                    r.u8()?
                } else {
                    prev.ok_or_else(need_prev)?.priority
                };
                let extensions = if flags & ff::EXTENSIONS_PRESENT != 0 {
                    read_extensions(r)?
                } else {
                    Vec::new()
                };
                let len = r.len(self.max_payload, "object payload above limit")?;
                let payload = read_payload(r, len)?;
                *prev = Some(FetchPrev {
                    group,
                    subgroup,
                    object,
                    priority,
                });
                Ok(DataItem::Object(DataObject {
                    group,
                    subgroup,
                    object,
                    priority: Some(priority),
                    extensions,
                    status: ObjectStatus::Normal,
                    payload,
                }))
            }
        }
    }
}

/// Appends the head of one subgroup object (everything but the payload bytes).
///
/// `object_delta` is the first object's id, or for a later object its id minus the previous id
/// minus one (the caller knows both); `extensions` must be `Some` exactly when the stream header
/// says objects carry extensions.
///
/// # Panics
///
/// If a number in the value exceeds 2^62-1, the varint range (the session never builds one).
pub fn encode_subgroup_object_head(
    version: Version,
    object_delta: u64,
    extensions: Option<&[KeyValue]>,
    status: ObjectStatus,
    payload_len: usize,
    out: &mut Vec<u8>,
) {
    match version {
        Version::Draft16 => {
            put_varint(out, object_delta);
            if let Some(ext) = extensions {
                let mut block = Vec::new();
                write_pairs(&mut block, ext);
                crate::moq::wire::codec::put_bytes(out, &block);
            }
            put_varint(out, payload_len as u64);
            if payload_len == 0 {
                put_varint(out, status.code());
            }
        }
    }
}

/// Appends a FETCH stream header.
///
/// # Panics
///
/// If a number in the value exceeds 2^62-1, the varint range (the session never builds one).
pub fn encode_fetch_header(version: Version, request: RequestId, out: &mut Vec<u8>) {
    match version {
        Version::Draft16 => {
            put_varint(out, FETCH_HEADER);
            put_varint(out, request.0);
        }
    }
}

/// Appends the head of one FETCH object (everything but the payload bytes).
///
/// Every field is written explicitly (flags 0x1F: group, explicit subgroup, object, priority), so
/// the encoding never depends on the previous object; the reader accepts every compact form.
///
/// # Panics
///
/// If a number in the value exceeds 2^62-1, the varint range (the session never builds one).
pub fn encode_fetch_object_head(
    version: Version,
    group: GroupId,
    subgroup: SubgroupId,
    object: ObjectId,
    priority: u8,
    payload_len: usize,
    out: &mut Vec<u8>,
) {
    match version {
        Version::Draft16 => {
            put_varint(
                out,
                ff::GROUP_PRESENT | ff::OBJECT_PRESENT | ff::PRIORITY_PRESENT | ff::SUBGROUP_MASK,
            );
            put_varint(out, group.0);
            put_varint(out, subgroup.0);
            put_varint(out, object.0);
            out.push(priority);
            put_varint(out, payload_len as u64);
        }
    }
}

/// One OBJECT_DATAGRAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The track alias.
    pub alias: TrackAlias,
    /// Whether this object ends its group.
    pub end_of_group: bool,
    /// The object (subgroup is `None`: datagrams have no subgroup).
    pub object: DataObject,
}

/// Datagram type bits (draft-16).
mod dg {
    pub const EXTENSIONS: u64 = 0x01;
    pub const END_OF_GROUP: u64 = 0x02;
    pub const ZERO_OBJECT_ID: u64 = 0x04;
    pub const NO_PRIORITY: u64 = 0x08;
    pub const STATUS: u64 = 0x20;
}

/// Decodes one OBJECT_DATAGRAM (the whole QUIC datagram payload).
pub fn decode_datagram(version: Version, buf: &[u8]) -> Result<Datagram, MoqError> {
    let mut r = Reader::new(buf);
    let res = match version {
        Version::Draft16 => decode_datagram_d16(&mut r),
    };
    res.map_err(|e| match e {
        ReadError::Short => MoqError::violation("truncated datagram"),
        ReadError::Bad(e) => e,
    })
}

fn decode_datagram_d16(r: &mut Reader<'_>) -> Read<Datagram> {
    let t = r.varint()?;
    let known =
        dg::EXTENSIONS | dg::END_OF_GROUP | dg::ZERO_OBJECT_ID | dg::NO_PRIORITY | dg::STATUS;
    if t & !known != 0 || (t & dg::STATUS != 0 && t & dg::END_OF_GROUP != 0) {
        return Err(MoqError::violation("invalid datagram type").into());
    }
    let alias = TrackAlias(r.varint()?);
    let group = GroupId(r.varint()?);
    let object = if t & dg::ZERO_OBJECT_ID != 0 {
        ObjectId(0)
    } else {
        ObjectId(r.varint()?)
    };
    let priority = if t & dg::NO_PRIORITY == 0 {
        Some(r.u8()?)
    } else {
        None
    };
    let extensions = if t & dg::EXTENSIONS != 0 {
        read_extensions(r)?
    } else {
        Vec::new()
    };
    let (status, payload) = if t & dg::STATUS != 0 {
        let s = ObjectStatus::from_code(r.varint()?)
            .ok_or(ReadError::Bad(MoqError::violation("unknown object status")))?;
        if !r.is_empty() {
            return Err(MoqError::violation("bytes after datagram status").into());
        }
        (s, Vec::new())
    } else {
        (ObjectStatus::Normal, r.rest().to_vec())
    };
    Ok(Datagram {
        alias,
        end_of_group: t & dg::END_OF_GROUP != 0,
        object: DataObject {
            group,
            subgroup: None,
            object,
            priority,
            extensions,
            status,
            payload,
        },
    })
}
