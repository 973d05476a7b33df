//! Byte-level primitives: QUIC varints (RFC 9000 §16), a bounds-checked reader and append-only
//! writers for the field types of the draft (`(i)`, `(8)`, `(b)`, `(tuple)`, Location).
//!
//! This module owns no protocol meaning. It never allocates from a length it has not checked
//! against a caller-supplied limit, and it never panics on input bytes.

use crate::moq::error::MoqError;
use crate::moq::types::{
    FullTrackName, GroupId, Location, ObjectId, TrackNamespace, MAX_FULL_NAME_BYTES,
    MAX_NAMESPACE_FIELDS, MAX_VARINT,
};

/// Why a read stopped: more bytes are needed, or the bytes are invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The input ends inside a field; wait for more bytes (or treat as malformed if framed).
    Short,
    /// The input is invalid; the session must close with this error.
    Bad(MoqError),
}

impl From<MoqError> for ReadError {
    fn from(e: MoqError) -> Self {
        ReadError::Bad(e)
    }
}

/// Result of one read.
pub(crate) type Read<T> = Result<T, ReadError>;

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether everything was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Read<u8> {
        let b = *self.buf.get(self.pos).ok_or(ReadError::Short)?;
        self.pos += 1;
        Ok(b)
    }

    /// A big-endian u16.
    pub(crate) fn u16(&mut self) -> Read<u16> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// `n` bytes, borrowed. `n` must already be checked against a limit by the caller; this only
    /// checks that the bytes are there.
    pub(crate) fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if self.remaining() < n {
            return Err(ReadError::Short);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Everything left, borrowed.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// A QUIC varint.
    pub(crate) fn varint(&mut self) -> Read<u64> {
        let first = *self.buf.get(self.pos).ok_or(ReadError::Short)?;
        let len = 1usize << (first >> 6);
        let bytes = self.take(len)?;
        let mut v = u64::from(first & 0x3f);
        for b in &bytes[1..] {
            v = (v << 8) | u64::from(*b);
        }
        Ok(v)
    }

    /// A varint length checked against `max` before anything is read or allocated.
    pub(crate) fn len(&mut self, max: usize, why: &'static str) -> Read<usize> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(MoqError::violation(why).into());
        }
        Ok(n as usize)
    }

    /// A `(b)` field of at most `max` bytes.
    pub(crate) fn bytes(&mut self, max: usize, why: &'static str) -> Read<&'a [u8]> {
        let n = self.len(max, why)?;
        self.take(n)
    }

    /// A Location.
    pub(crate) fn location(&mut self) -> Read<Location> {
        Ok(Location {
            group: GroupId(self.varint()?),
            object: ObjectId(self.varint()?),
        })
    }

    /// A track namespace tuple (draft-16 limits: at most 32 non-empty fields).
    pub(crate) fn namespace(&mut self) -> Read<TrackNamespace> {
        let count = self.len(MAX_NAMESPACE_FIELDS, "too many namespace fields")?;
        let mut fields = Vec::with_capacity(count);
        let mut total = 0usize;
        for _ in 0..count {
            let f = self.bytes(MAX_FULL_NAME_BYTES, "namespace field too long")?;
            if f.is_empty() {
                return Err(MoqError::violation("empty namespace field").into());
            }
            total += f.len();
            if total > MAX_FULL_NAME_BYTES {
                return Err(MoqError::violation("namespace too long").into());
            }
            fields.push(f.to_vec());
        }
        Ok(TrackNamespace(fields))
    }

    /// A full track name: namespace tuple then `(b)` name, at most 4096 bytes together.
    pub(crate) fn full_name(&mut self) -> Read<FullTrackName> {
        let namespace = self.namespace()?;
        let room = MAX_FULL_NAME_BYTES - namespace.byte_len();
        let name = self.bytes(room, "full track name too long")?.to_vec();
        Ok(FullTrackName { namespace, name })
    }

    /// A reason phrase: at most 1024 bytes of UTF-8.
    pub(crate) fn reason(&mut self) -> Read<String> {
        let b = self.bytes(MAX_REASON_BYTES, "reason phrase too long")?;
        String::from_utf8(b.to_vec())
            .map_err(|_| MoqError::violation("reason phrase not UTF-8").into())
    }
}

/// Most bytes of a reason phrase (draft-16).
pub const MAX_REASON_BYTES: usize = 1024;

/// Appends a varint. Values above 2^62-1 never reach here: the decoder cannot produce them and
/// the session API rejects them as misuse, so exceeding the range is a bug in this crate.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: u64) {
    assert!(
        v <= MAX_VARINT,
        "varint out of range: callers validate values first"
    );
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// Appends a `(b)` field.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a Location.
pub(crate) fn put_location(out: &mut Vec<u8>, l: Location) {
    put_varint(out, l.group.0);
    put_varint(out, l.object.0);
}

/// Appends a namespace tuple.
pub(crate) fn put_namespace(out: &mut Vec<u8>, ns: &TrackNamespace) {
    put_varint(out, ns.0.len() as u64);
    for f in &ns.0 {
        put_bytes(out, f);
    }
}

/// Appends a full track name.
pub(crate) fn put_full_name(out: &mut Vec<u8>, t: &FullTrackName) {
    put_namespace(out, &t.namespace);
    put_bytes(out, &t.name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_rfc9000_examples() {
        // RFC 9000 §A.1 sample encodings.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            assert_eq!(Reader::new(bytes).varint(), Ok(v));
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out, bytes);
        }
        // Non-minimal encodings decode to the same value.
        assert_eq!(Reader::new(&[0x40, 0x25]).varint(), Ok(37));
        assert_eq!(Reader::new(&[0x80]).varint(), Err(ReadError::Short));
        assert_eq!(Reader::new(&[]).varint(), Err(ReadError::Short));
    }

    #[test]
    fn lengths_are_checked_before_reading() {
        // A claimed 2^30 byte field is refused without waiting for the bytes.
        let mut r = Reader::new(&[0xc0, 0, 0, 0, 0x40, 0, 0, 0]);
        assert!(matches!(r.bytes(1024, "x"), Err(ReadError::Bad(_))));
    }

    #[test]
    fn namespace_rejects_empty_fields_and_too_many() {
        assert!(matches!(
            Reader::new(&[0x01, 0x00]).namespace(),
            Err(ReadError::Bad(_))
        ));
        assert!(matches!(
            Reader::new(&[0x21]).namespace(),
            Err(ReadError::Bad(_))
        ));
        assert_eq!(Reader::new(&[0x00]).namespace(), Ok(TrackNamespace(vec![])));
    }
}
