//! The track layout of an every.channel broadcast on MoQ.
//!
//! This module owns the naming rule: for a stream locator `L` (the trust layer's lowercase
//! base32 text), chunks are track `chunks` in namespace `(ec, L, objects)` (group = chunk index)
//! and manifests are track `manifests` in namespace `(ec, L, manifests)` (group = epoch). Each
//! role has its own namespace so a leader and an availability node can both announce into one
//! relay. Every group holds exactly object 0 on its own subgroup stream. It never sends or
//! caches anything.

use crate::moq::error::MoqError;
use crate::moq::types::{FullTrackName, TrackNamespace};

/// First namespace field of every ec-node track.
const ROOT: &str = "ec";
/// Most characters of a locator; keeps full track names far below the draft's 4096 bytes.
pub const MAX_LOCATOR_LEN: usize = 256;

/// Which of a broadcast's two tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Encrypted chunks; group = chunk index.
    Chunks,
    /// Signed manifests; group = epoch.
    Manifests,
}

impl TrackKind {
    fn namespace_field(self) -> &'static str {
        match self {
            TrackKind::Chunks => "objects",
            TrackKind::Manifests => "manifests",
        }
    }

    fn track_name(self) -> &'static str {
        match self {
            TrackKind::Chunks => "chunks",
            TrackKind::Manifests => "manifests",
        }
    }
}

/// One track of one broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BroadcastTrack {
    locator: String,
    kind: TrackKind,
}

fn is_locator(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LOCATOR_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

impl BroadcastTrack {
    /// The track of `kind` for `locator`, which must be lowercase base32 (`a-z`, `2-7`).
    pub fn new(locator: &str, kind: TrackKind) -> Result<Self, MoqError> {
        if !is_locator(locator) {
            return Err(MoqError::Misuse("locator is not lowercase base32"));
        }
        Ok(BroadcastTrack {
            locator: locator.to_owned(),
            kind,
        })
    }

    /// The stream locator.
    pub fn locator(&self) -> &str {
        &self.locator
    }

    /// Which track.
    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    /// The namespace this track is announced in.
    pub fn namespace(&self) -> TrackNamespace {
        TrackNamespace::from_strs(&[ROOT, &self.locator, self.kind.namespace_field()])
    }

    /// The full track name subscribers ask for.
    pub fn full_name(&self) -> FullTrackName {
        FullTrackName {
            namespace: self.namespace(),
            name: self.kind.track_name().as_bytes().to_vec(),
        }
    }

    /// The broadcast track a full name denotes, if it follows the layout.
    pub fn from_full_name(name: &FullTrackName) -> Option<Self> {
        let [root, locator, field] = name.namespace.0.as_slice() else {
            return None;
        };
        let locator = std::str::from_utf8(locator).ok()?;
        if root.as_slice() != ROOT.as_bytes() || !is_locator(locator) {
            return None;
        }
        let kind = [TrackKind::Chunks, TrackKind::Manifests]
            .into_iter()
            .find(|k| {
                field.as_slice() == k.namespace_field().as_bytes()
                    && name.name == k.track_name().as_bytes()
            })?;
        Some(BroadcastTrack {
            locator: locator.to_owned(),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        for kind in [TrackKind::Chunks, TrackKind::Manifests] {
            let t = BroadcastTrack::new("abc234", kind).unwrap();
            let name = t.full_name();
            assert!(name.is_valid());
            assert_eq!(BroadcastTrack::from_full_name(&name), Some(t));
        }
        let c = BroadcastTrack::new("abc", TrackKind::Chunks)
            .unwrap()
            .full_name();
        assert_eq!(
            c.namespace,
            TrackNamespace::from_strs(&["ec", "abc", "objects"])
        );
        assert_eq!(c.name, b"chunks");
    }

    #[test]
    fn rejects_bad_locators_and_foreign_names() {
        assert!(BroadcastTrack::new("ABC", TrackKind::Chunks).is_err());
        assert!(BroadcastTrack::new("a1", TrackKind::Chunks).is_err());
        assert!(BroadcastTrack::new("", TrackKind::Chunks).is_err());
        let mut n = BroadcastTrack::new("abc", TrackKind::Chunks)
            .unwrap()
            .full_name();
        n.name = b"manifests".to_vec();
        assert_eq!(BroadcastTrack::from_full_name(&n), None);
    }
}
