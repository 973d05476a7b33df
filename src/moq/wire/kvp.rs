//! Key-value pairs (draft-16 §1.4): delta-encoded types in ascending order, even types carry a
//! varint, odd types a length-prefixed byte string of at most 65535 bytes.
//!
//! This module owns the generic list codec and the two typed parameter sets built on it:
//! setup parameters (unknown ones ignored) and message parameters (unknown ones a protocol
//! violation). It never interprets track extensions beyond their framing.

use crate::moq::error::MoqError;
use crate::moq::types::{GroupId, GroupOrder, Location, SubscriptionFilter, MAX_VARINT};
use crate::moq::wire::codec::{put_location, put_varint, Read, ReadError, Reader};

/// Most bytes of an odd-typed value (draft-16).
pub const MAX_KVP_VALUE: usize = 65535;
/// Most pairs we accept in one list; a limit of ours so a list cannot cost unbounded work.
pub const MAX_KVP_COUNT: usize = 64;

/// The value of one pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvValue {
    /// Even type: a varint.
    Int(u64),
    /// Odd type: bytes.
    Bytes(Vec<u8>),
}

/// One key-value pair with its absolute type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The absolute type (the wire carries the delta from the previous pair).
    pub kind: u64,
    /// The value; its variant always matches the type's parity.
    pub value: KvValue,
}

impl KeyValue {
    /// A varint-valued pair (`kind` must be even).
    pub fn int(kind: u64, v: u64) -> Self {
        KeyValue {
            kind,
            value: KvValue::Int(v),
        }
    }

    /// A bytes-valued pair (`kind` must be odd).
    pub fn bytes(kind: u64, v: Vec<u8>) -> Self {
        KeyValue {
            kind,
            value: KvValue::Bytes(v),
        }
    }
}

/// Reads one pair whose type is `prev` plus the wire delta.
fn read_pair(r: &mut Reader<'_>, prev: u64) -> Read<KeyValue> {
    let delta = r.varint()?;
    let kind = prev
        .checked_add(delta)
        .filter(|k| *k <= MAX_VARINT)
        .ok_or(ReadError::Bad(MoqError::kvp("key-value type overflows")))?;
    let value = if kind % 2 == 0 {
        KvValue::Int(r.varint()?)
    } else {
        KvValue::Bytes(
            r.bytes(MAX_KVP_VALUE, "key-value length above 65535")?
                .to_vec(),
        )
    };
    Ok(KeyValue { kind, value })
}

/// Reads `count(i)` then that many pairs.
pub(crate) fn read_counted(r: &mut Reader<'_>) -> Read<Vec<KeyValue>> {
    let count = r.len(MAX_KVP_COUNT, "too many key-value pairs")?;
    let mut out = Vec::with_capacity(count);
    let mut prev = 0;
    for _ in 0..count {
        let kv = read_pair(r, prev)?;
        prev = kv.kind;
        out.push(kv);
    }
    Ok(out)
}

/// Reads pairs until the end of the reader (track extensions and object extensions).
pub(crate) fn read_to_end(r: &mut Reader<'_>) -> Read<Vec<KeyValue>> {
    let mut out = Vec::new();
    let mut prev = 0;
    while !r.is_empty() {
        if out.len() == MAX_KVP_COUNT {
            return Err(MoqError::violation("too many key-value pairs").into());
        }
        // Inside a framed region a short pair is malformed, not "wait for more".
        let kv = read_pair(r, prev).map_err(|e| match e {
            ReadError::Short => ReadError::Bad(MoqError::kvp("truncated key-value pair")),
            bad => bad,
        })?;
        prev = kv.kind;
        out.push(kv);
    }
    Ok(out)
}

/// Writes pairs (which must already be sorted by type) without a count.
pub(crate) fn write_pairs(out: &mut Vec<u8>, pairs: &[KeyValue]) {
    let mut prev = 0;
    for kv in pairs {
        debug_assert!(kv.kind >= prev, "pairs are built in ascending order");
        put_varint(out, kv.kind - prev);
        prev = kv.kind;
        match &kv.value {
            KvValue::Int(v) => put_varint(out, *v),
            KvValue::Bytes(b) => crate::moq::wire::codec::put_bytes(out, b),
        }
    }
}

/// Writes `count(i)` then the pairs.
pub(crate) fn write_counted(out: &mut Vec<u8>, pairs: &[KeyValue]) {
    put_varint(out, pairs.len() as u64);
    write_pairs(out, pairs);
}

/// Setup parameter types (draft-16).
mod setup_kind {
    pub const PATH: u64 = 0x01;
    pub const MAX_REQUEST_ID: u64 = 0x02;
    pub const AUTHORIZATION_TOKEN: u64 = 0x03;
    pub const MAX_AUTH_TOKEN_CACHE_SIZE: u64 = 0x04;
    pub const AUTHORITY: u64 = 0x05;
    pub const MOQT_IMPLEMENTATION: u64 = 0x07;
}

/// The parameters of CLIENT_SETUP / SERVER_SETUP. Unknown setup parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetupParams {
    /// PATH (0x01), client only, raw QUIC only.
    pub path: Option<Vec<u8>>,
    /// MAX_REQUEST_ID (0x02): the exclusive limit on the receiver's request ids; absent means 0.
    pub max_request_id: Option<u64>,
    /// AUTHORIZATION_TOKEN (0x03), kept opaque.
    pub auth_tokens: Vec<Vec<u8>>,
    /// MAX_AUTH_TOKEN_CACHE_SIZE (0x04).
    pub max_auth_token_cache_size: Option<u64>,
    /// AUTHORITY (0x05), client only, raw QUIC only.
    pub authority: Option<Vec<u8>>,
    /// MOQT_IMPLEMENTATION (0x07), free text.
    pub implementation: Option<Vec<u8>>,
}

impl SetupParams {
    pub(crate) fn read(r: &mut Reader<'_>) -> Read<Self> {
        let mut p = SetupParams::default();
        for kv in read_counted(r)? {
            match (kv.kind, kv.value) {
                (setup_kind::PATH, KvValue::Bytes(b)) => set_once(&mut p.path, b)?,
                (setup_kind::MAX_REQUEST_ID, KvValue::Int(v)) => {
                    set_once(&mut p.max_request_id, v)?
                }
                (setup_kind::AUTHORIZATION_TOKEN, KvValue::Bytes(b)) => p.auth_tokens.push(b),
                (setup_kind::MAX_AUTH_TOKEN_CACHE_SIZE, KvValue::Int(v)) => {
                    set_once(&mut p.max_auth_token_cache_size, v)?
                }
                (setup_kind::AUTHORITY, KvValue::Bytes(b)) => set_once(&mut p.authority, b)?,
                (setup_kind::MOQT_IMPLEMENTATION, KvValue::Bytes(b)) => {
                    set_once(&mut p.implementation, b)?
                }
                // Unknown setup parameters are ignored (draft-16), so extensions can be added.
                _ => {}
            }
        }
        Ok(p)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let mut pairs = Vec::new();
        if let Some(b) = &self.path {
            pairs.push(KeyValue::bytes(setup_kind::PATH, b.clone()));
        }
        if let Some(v) = self.max_request_id {
            pairs.push(KeyValue::int(setup_kind::MAX_REQUEST_ID, v));
        }
        for t in &self.auth_tokens {
            pairs.push(KeyValue::bytes(setup_kind::AUTHORIZATION_TOKEN, t.clone()));
        }
        if let Some(v) = self.max_auth_token_cache_size {
            pairs.push(KeyValue::int(setup_kind::MAX_AUTH_TOKEN_CACHE_SIZE, v));
        }
        if let Some(b) = &self.authority {
            pairs.push(KeyValue::bytes(setup_kind::AUTHORITY, b.clone()));
        }
        if let Some(b) = &self.implementation {
            pairs.push(KeyValue::bytes(setup_kind::MOQT_IMPLEMENTATION, b.clone()));
        }
        write_counted(out, &pairs);
    }
}

/// Message parameter types (draft-16).
mod param_kind {
    pub const DELIVERY_TIMEOUT: u64 = 0x02;
    pub const AUTHORIZATION_TOKEN: u64 = 0x03;
    pub const MAX_CACHE_DURATION: u64 = 0x04;
    pub const EXPIRES: u64 = 0x08;
    pub const LARGEST_OBJECT: u64 = 0x09;
    pub const PUBLISHER_PRIORITY: u64 = 0x0e;
    pub const FORWARD: u64 = 0x10;
    pub const SUBSCRIBER_PRIORITY: u64 = 0x20;
    pub const SUBSCRIPTION_FILTER: u64 = 0x21;
    pub const GROUP_ORDER: u64 = 0x22;
    pub const DYNAMIC_GROUPS: u64 = 0x30;
    pub const NEW_GROUP_REQUEST: u64 = 0x32;
}

/// The parameters of request messages (SUBSCRIBE, SUBSCRIBE_OK, FETCH, REQUEST_OK...).
///
/// Draft-16 makes an unknown message parameter a PROTOCOL_VIOLATION and a known one with a value
/// that does not fit its type a KEY_VALUE_FORMATTING error. Which message may carry which
/// parameter is not enforced here (the session ignores parameters that do not apply).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageParams {
    /// DELIVERY_TIMEOUT (0x02), milliseconds.
    pub delivery_timeout: Option<u64>,
    /// AUTHORIZATION_TOKEN (0x03), kept opaque; may repeat.
    pub auth_tokens: Vec<Vec<u8>>,
    /// MAX_CACHE_DURATION (0x04), milliseconds.
    pub max_cache_duration: Option<u64>,
    /// EXPIRES (0x08), milliseconds.
    pub expires: Option<u64>,
    /// LARGEST_OBJECT (0x09).
    pub largest_object: Option<Location>,
    /// PUBLISHER_PRIORITY (0x0E): the default for objects whose framing omits it.
    pub publisher_priority: Option<u8>,
    /// FORWARD (0x10); absent means true.
    pub forward: Option<bool>,
    /// SUBSCRIBER_PRIORITY (0x20); absent means 128.
    pub subscriber_priority: Option<u8>,
    /// SUBSCRIPTION_FILTER (0x21); absent means unfiltered (AbsoluteStart {0, 0}).
    pub filter: Option<SubscriptionFilter>,
    /// GROUP_ORDER (0x22).
    pub group_order: Option<GroupOrder>,
    /// DYNAMIC_GROUPS (0x30).
    pub dynamic_groups: Option<u64>,
    /// NEW_GROUP_REQUEST (0x32).
    pub new_group_request: Option<u64>,
}

fn read_filter(b: &[u8]) -> Read<SubscriptionFilter> {
    let bad = || ReadError::Bad(MoqError::kvp("malformed SUBSCRIPTION_FILTER"));
    let mut r = Reader::new(b);
    let f = (|| -> Read<SubscriptionFilter> {
        Ok(match r.varint()? {
            0x1 => SubscriptionFilter::NextGroupStart,
            0x2 => SubscriptionFilter::LargestObject,
            0x3 => SubscriptionFilter::AbsoluteStart(r.location()?),
            0x4 => {
                let start = r.location()?;
                SubscriptionFilter::AbsoluteRange(start, GroupId(r.varint()?))
            }
            _ => return Err(bad()),
        })
    })()
    .map_err(|_| bad())?;
    if !r.is_empty() {
        return Err(bad());
    }
    Ok(f)
}

fn write_filter(f: &SubscriptionFilter) -> Vec<u8> {
    let mut out = Vec::new();
    match f {
        SubscriptionFilter::NextGroupStart => put_varint(&mut out, 0x1),
        SubscriptionFilter::LargestObject => put_varint(&mut out, 0x2),
        SubscriptionFilter::AbsoluteStart(l) => {
            put_varint(&mut out, 0x3);
            put_location(&mut out, *l);
        }
        SubscriptionFilter::AbsoluteRange(l, end) => {
            put_varint(&mut out, 0x4);
            put_location(&mut out, *l);
            put_varint(&mut out, end.0);
        }
    }
    out
}

fn set_once<T>(slot: &mut Option<T>, v: T) -> Read<()> {
    if slot.replace(v).is_some() {
        return Err(MoqError::violation("duplicate parameter").into());
    }
    Ok(())
}

impl MessageParams {
    pub(crate) fn read(r: &mut Reader<'_>) -> Read<Self> {
        let mut p = MessageParams::default();
        let kvf = |why| ReadError::Bad(MoqError::kvp(why));
        for kv in read_counted(r)? {
            match (kv.kind, kv.value) {
                (param_kind::DELIVERY_TIMEOUT, KvValue::Int(v)) => {
                    set_once(&mut p.delivery_timeout, v)?
                }
                (param_kind::AUTHORIZATION_TOKEN, KvValue::Bytes(b)) => p.auth_tokens.push(b),
                (param_kind::MAX_CACHE_DURATION, KvValue::Int(v)) => {
                    set_once(&mut p.max_cache_duration, v)?
                }
                (param_kind::EXPIRES, KvValue::Int(v)) => set_once(&mut p.expires, v)?,
                (param_kind::LARGEST_OBJECT, KvValue::Bytes(b)) => {
                    let mut lr = Reader::new(&b);
                    let loc = lr.location().map_err(|_| kvf("malformed LARGEST_OBJECT"))?;
                    if !lr.is_empty() {
                        return Err(kvf("malformed LARGEST_OBJECT"));
                    }
                    set_once(&mut p.largest_object, loc)?
                }
                (param_kind::PUBLISHER_PRIORITY, KvValue::Int(v)) => {
                    let v = u8::try_from(v).map_err(|_| kvf("PUBLISHER_PRIORITY above 255"))?;
                    set_once(&mut p.publisher_priority, v)?
                }
                (param_kind::FORWARD, KvValue::Int(v)) => {
                    let f = match v {
                        0 => false,
                        1 => true,
                        _ => return Err(kvf("FORWARD not 0 or 1")),
                    };
                    set_once(&mut p.forward, f)?
                }
                (param_kind::SUBSCRIBER_PRIORITY, KvValue::Int(v)) => {
                    let v = u8::try_from(v).map_err(|_| kvf("SUBSCRIBER_PRIORITY above 255"))?;
                    set_once(&mut p.subscriber_priority, v)?
                }
                (param_kind::SUBSCRIPTION_FILTER, KvValue::Bytes(b)) => {
                    set_once(&mut p.filter, read_filter(&b)?)?
                }
                (param_kind::GROUP_ORDER, KvValue::Int(v)) => {
                    let o = match v {
                        1 => GroupOrder::Ascending,
                        2 => GroupOrder::Descending,
                        _ => return Err(kvf("GROUP_ORDER not 1 or 2")),
                    };
                    set_once(&mut p.group_order, o)?
                }
                (param_kind::DYNAMIC_GROUPS, KvValue::Int(v)) => {
                    set_once(&mut p.dynamic_groups, v)?
                }
                (param_kind::NEW_GROUP_REQUEST, KvValue::Int(v)) => {
                    set_once(&mut p.new_group_request, v)?
                }
                _ => return Err(MoqError::violation("unknown message parameter").into()),
            }
        }
        Ok(p)
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let mut pairs = Vec::new();
        if let Some(v) = self.delivery_timeout {
            pairs.push(KeyValue::int(param_kind::DELIVERY_TIMEOUT, v));
        }
        for t in &self.auth_tokens {
            pairs.push(KeyValue::bytes(param_kind::AUTHORIZATION_TOKEN, t.clone()));
        }
        if let Some(v) = self.max_cache_duration {
            pairs.push(KeyValue::int(param_kind::MAX_CACHE_DURATION, v));
        }
        if let Some(v) = self.expires {
            pairs.push(KeyValue::int(param_kind::EXPIRES, v));
        }
        if let Some(l) = self.largest_object {
            let mut b = Vec::new();
            put_location(&mut b, l);
            pairs.push(KeyValue::bytes(param_kind::LARGEST_OBJECT, b));
        }
        if let Some(p) = self.publisher_priority {
            pairs.push(KeyValue::int(param_kind::PUBLISHER_PRIORITY, u64::from(p)));
        }
        if let Some(f) = self.forward {
            pairs.push(KeyValue::int(param_kind::FORWARD, u64::from(f)));
        }
        if let Some(p) = self.subscriber_priority {
            pairs.push(KeyValue::int(param_kind::SUBSCRIBER_PRIORITY, u64::from(p)));
        }
        if let Some(f) = &self.filter {
            pairs.push(KeyValue::bytes(
                param_kind::SUBSCRIPTION_FILTER,
                write_filter(f),
            ));
        }
        if let Some(o) = self.group_order {
            let v = match o {
                GroupOrder::Ascending => 1,
                GroupOrder::Descending => 2,
            };
            pairs.push(KeyValue::int(param_kind::GROUP_ORDER, v));
        }
        if let Some(v) = self.dynamic_groups {
            pairs.push(KeyValue::int(param_kind::DYNAMIC_GROUPS, v));
        }
        if let Some(v) = self.new_group_request {
            pairs.push(KeyValue::int(param_kind::NEW_GROUP_REQUEST, v));
        }
        write_counted(out, &pairs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: ReadError) -> u64 {
        match e {
            ReadError::Bad(e) => e.session_code().unwrap(),
            ReadError::Short => panic!("expected a decode error"),
        }
    }

    #[test]
    fn delta_encoded_types_by_hand() {
        // count=2; delta 0x02 -> type 2 (even) value 0x05; delta 0x03 -> type 5 (odd) len 2 "ab".
        let bytes = [0x02, 0x02, 0x05, 0x03, 0x02, b'a', b'b'];
        let pairs = read_counted(&mut Reader::new(&bytes)).unwrap();
        assert_eq!(
            pairs,
            vec![KeyValue::int(2, 5), KeyValue::bytes(5, b"ab".to_vec())]
        );
        let mut out = Vec::new();
        write_counted(&mut out, &pairs);
        assert_eq!(out, bytes);
    }

    #[test]
    fn value_length_above_limit_is_a_violation() {
        // type 1, length 65536 (4-byte varint 0x80010000).
        let bytes = [0x01, 0x01, 0x80, 0x01, 0x00, 0x00];
        assert_eq!(code(read_counted(&mut Reader::new(&bytes)).unwrap_err()), 3);
    }

    #[test]
    fn message_params_strictness() {
        // Unknown type 0x06 -> PROTOCOL_VIOLATION.
        assert_eq!(
            code(MessageParams::read(&mut Reader::new(&[0x01, 0x06, 0x00])).unwrap_err()),
            3
        );
        // PUBLISHER_PRIORITY = 256 -> KEY_VALUE_FORMATTING.
        assert_eq!(
            code(MessageParams::read(&mut Reader::new(&[0x01, 0x0e, 0x41, 0x00])).unwrap_err()),
            6
        );
        // FORWARD = 2 -> KEY_VALUE_FORMATTING.
        assert_eq!(
            code(MessageParams::read(&mut Reader::new(&[0x01, 0x10, 0x02])).unwrap_err()),
            6
        );
        // LARGEST_OBJECT with a trailing byte -> KEY_VALUE_FORMATTING.
        let b = [0x01, 0x09, 0x03, 0x01, 0x02, 0x03];
        assert_eq!(
            code(MessageParams::read(&mut Reader::new(&b)).unwrap_err()),
            6
        );
        // Filter type 5 -> KEY_VALUE_FORMATTING.
        assert_eq!(
            code(MessageParams::read(&mut Reader::new(&[0x01, 0x21, 0x01, 0x05])).unwrap_err()),
            6
        );
        // FORWARD twice (delta 0) -> PROTOCOL_VIOLATION.
        assert_eq!(
            code(
                MessageParams::read(&mut Reader::new(&[0x02, 0x10, 0x01, 0x00, 0x01])).unwrap_err()
            ),
            3
        );
    }

    #[test]
    fn unknown_setup_params_are_ignored() {
        // count=2: type 0x02 MAX_REQUEST_ID=0x10, then delta 0x3e -> type 0x40 (unknown, even) value 1.
        let p = SetupParams::read(&mut Reader::new(&[0x02, 0x02, 0x10, 0x3e, 0x01])).unwrap();
        assert_eq!(p.max_request_id, Some(0x10));
    }
}
