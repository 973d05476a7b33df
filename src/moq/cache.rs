//! A bounded cache of the most recent groups of one track, shared by every session serving it.
//!
//! This module owns group storage and eviction: groups are kept in order, bounded by total
//! payload bytes, oldest evicted first, and the newest group is always kept so a late subscriber
//! can be served at once. It never sends anything; sessions read from it when they accept a
//! SUBSCRIBE or FETCH. Payloads are `Arc<[u8]>` so many sessions queue the same bytes without
//! copying them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::moq::error::MoqError;
use crate::moq::types::{GroupId, Location, MAX_VARINT};

/// The recent groups of one track, each holding exactly object 0.
#[derive(Debug, Clone)]
pub struct TrackCache {
    groups: BTreeMap<GroupId, Arc<[u8]>>,
    bytes: usize,
    max_bytes: usize,
    largest: Option<GroupId>,
    evicted: u64,
}

impl TrackCache {
    /// An empty cache holding at most `max_bytes` of payload (plus the newest group if larger).
    pub fn new(max_bytes: usize) -> Self {
        TrackCache {
            groups: BTreeMap::new(),
            bytes: 0,
            max_bytes,
            largest: None,
            evicted: 0,
        }
    }

    /// Adds the next group. Groups must increase; evicts the oldest groups beyond the byte bound.
    pub fn push(&mut self, group: GroupId, payload: Arc<[u8]>) -> Result<(), MoqError> {
        if group.0 > MAX_VARINT {
            return Err(MoqError::Misuse("group id above 2^62-1"));
        }
        if self.largest.is_some_and(|l| group <= l) {
            return Err(MoqError::Misuse(
                "groups must be pushed in increasing order",
            ));
        }
        self.bytes += payload.len();
        self.groups.insert(group, payload);
        self.largest = Some(group);
        while self.bytes > self.max_bytes && self.groups.len() > 1 {
            if let Some((_, old)) = self.groups.pop_first() {
                self.bytes -= old.len();
                self.evicted += 1;
            }
        }
        Ok(())
    }

    /// The largest location published so far (object 0 of the newest group).
    pub fn largest(&self) -> Option<Location> {
        self.largest.map(|g| Location {
            group: g,
            object: Default::default(),
        })
    }

    /// The payload of a cached group.
    pub fn get(&self, group: GroupId) -> Option<&Arc<[u8]>> {
        self.groups.get(&group)
    }

    /// Cached groups from `first` to `last` inclusive, oldest first.
    pub fn range(
        &self,
        first: GroupId,
        last: GroupId,
    ) -> impl Iterator<Item = (GroupId, &Arc<[u8]>)> + '_ {
        let bounds = if first <= last {
            Some(first..=last)
        } else {
            None
        };
        bounds
            .into_iter()
            .flat_map(move |b| self.groups.range(b).map(|(g, p)| (*g, p)))
    }

    /// The oldest group still cached.
    pub fn oldest(&self) -> Option<GroupId> {
        self.groups.keys().next().copied()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Groups evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: usize) -> Arc<[u8]> {
        vec![7u8; n].into()
    }

    #[test]
    fn evicts_oldest_by_bytes_and_keeps_newest() {
        let mut c = TrackCache::new(10);
        for g in 0..5 {
            c.push(GroupId(g), p(4)).unwrap();
        }
        assert_eq!(c.oldest(), Some(GroupId(3)));
        assert_eq!(c.bytes(), 8);
        assert_eq!(c.evicted(), 3);
        c.push(GroupId(9), p(50)).unwrap();
        assert_eq!(
            c.oldest(),
            Some(GroupId(9)),
            "a group larger than the bound is still kept alone"
        );
        assert_eq!(c.largest(), Some(Location::new(9, 0)));
    }

    #[test]
    fn refuses_non_increasing_groups_and_ranges_are_inclusive() {
        let mut c = TrackCache::new(100);
        c.push(GroupId(2), p(1)).unwrap();
        assert!(c.push(GroupId(2), p(1)).is_err());
        c.push(GroupId(3), p(1)).unwrap();
        c.push(GroupId(5), p(1)).unwrap();
        let got: Vec<u64> = c.range(GroupId(3), GroupId(5)).map(|(g, _)| g.0).collect();
        assert_eq!(got, vec![3, 5]);
        assert_eq!(c.range(GroupId(5), GroupId(3)).count(), 0);
    }
}
