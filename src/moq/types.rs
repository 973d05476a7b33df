//! The vocabulary shared by the codec and the session: id newtypes, locations and track names.
//!
//! This module owns the value types and their limits. It never parses bytes (see `wire`) and never
//! keeps state.

use std::fmt;

/// The largest value a QUIC varint can hold (2^62 - 1).
pub const MAX_VARINT: u64 = (1 << 62) - 1;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_newtype!(
    /// A request id: even for the client's requests, odd for the server's.
    RequestId
);
id_newtype!(
    /// The publisher-chosen short name of a subscribed track, unique per session.
    TrackAlias
);
id_newtype!(
    /// A group number within a track (for ec-node: chunk index or manifest epoch).
    GroupId
);
id_newtype!(
    /// An object number within a group.
    ObjectId
);
id_newtype!(
    /// A subgroup number within a group.
    SubgroupId
);

/// A position in a track: group, then object, ordered lexicographically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    /// The group.
    pub group: GroupId,
    /// The object within the group.
    pub object: ObjectId,
}

impl Location {
    /// A location from raw numbers.
    pub fn new(group: u64, object: u64) -> Self {
        Location {
            group: GroupId(group),
            object: ObjectId(object),
        }
    }
}

/// Most fields a track namespace may have (draft-16).
pub const MAX_NAMESPACE_FIELDS: usize = 32;
/// Most bytes a full track name (namespace fields plus name) may have (draft-16).
pub const MAX_FULL_NAME_BYTES: usize = 4096;

/// A track namespace: an ordered tuple of non-empty byte fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TrackNamespace(pub Vec<Vec<u8>>);

impl TrackNamespace {
    /// A namespace from text fields.
    pub fn from_strs(fields: &[&str]) -> Self {
        TrackNamespace(fields.iter().map(|f| f.as_bytes().to_vec()).collect())
    }

    /// Total bytes of all fields.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    /// Whether this namespace satisfies the draft's limits (field count, non-empty fields, and
    /// at most 4096 bytes, the bound on namespace plus name).
    pub fn is_valid(&self) -> bool {
        self.0.len() <= MAX_NAMESPACE_FIELDS
            && self.0.iter().all(|f| !f.is_empty())
            && self.byte_len() <= MAX_FULL_NAME_BYTES
    }
}

/// A full track name: namespace plus name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FullTrackName {
    /// The namespace tuple.
    pub namespace: TrackNamespace,
    /// The track name within the namespace.
    pub name: Vec<u8>,
}

impl FullTrackName {
    /// Whether this name satisfies the draft's limits.
    pub fn is_valid(&self) -> bool {
        self.namespace.is_valid()
            && self.namespace.byte_len() + self.name.len() <= MAX_FULL_NAME_BYTES
    }
}

/// The order in which a publisher sends groups of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOrder {
    /// Oldest group first (wire value 1).
    Ascending,
    /// Newest group first (wire value 2).
    Descending,
}

/// Where a subscription starts (and possibly ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionFilter {
    /// Start at the first object of the next group to be published (type 0x1).
    NextGroupStart,
    /// Start just after the largest object published so far (type 0x2).
    LargestObject,
    /// Start at a given location, open-ended (type 0x3).
    AbsoluteStart(Location),
    /// Start at a location and end after an inclusive end group (type 0x4).
    AbsoluteRange(Location, GroupId),
}

/// The status of an object on a subgroup stream or datagram (draft-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectStatus {
    /// A normal object with a payload (0x0).
    Normal,
    /// Marks the end of a group (0x3).
    EndOfGroup,
    /// Marks the end of a track (0x4).
    EndOfTrack,
}

impl ObjectStatus {
    /// The wire value.
    pub fn code(self) -> u64 {
        match self {
            ObjectStatus::Normal => 0x0,
            ObjectStatus::EndOfGroup => 0x3,
            ObjectStatus::EndOfTrack => 0x4,
        }
    }

    /// The status for a wire value, if draft-16 defines it.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0x0 => Some(ObjectStatus::Normal),
            0x3 => Some(ObjectStatus::EndOfGroup),
            0x4 => Some(ObjectStatus::EndOfTrack),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_order_by_group_then_object() {
        assert!(Location::new(1, 9) < Location::new(2, 0));
        assert!(Location::new(2, 0) < Location::new(2, 1));
    }

    #[test]
    fn namespace_limits() {
        assert!(TrackNamespace(vec![]).is_valid());
        assert!(!TrackNamespace(vec![vec![]]).is_valid());
        assert!(!TrackNamespace(vec![vec![1]; 33]).is_valid());
        let long = FullTrackName {
            namespace: TrackNamespace(vec![vec![1; 4000]]),
            name: vec![0; 97],
        };
        assert!(!long.is_valid());
    }
}
