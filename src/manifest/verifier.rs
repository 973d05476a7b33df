//! The acceptance policy: which manifests and objects a node takes, and why it refuses the rest.
//!
//! A sans-I/O owner used by subscribers and, later, relays. The caller feeds manifests and objects
//! (with an optional inclusion proof) from any peer, trusted or not, together with the current
//! time on the monotonic clock (an [`Instant`]: only how long an object has waited matters, so a
//! step of the wall clock expires nothing), and polls [`Event`]s: accepted plaintext chunks, accepted manifests, hash-chain gaps and
//! rejections with a counted [`Reason`]. "No manifests, no data": with
//! [`Policy::require_manifest`] an object that no held manifest covers waits in a buffer bounded
//! by bytes and by time and is dropped when no manifest comes. The verifier never reads the clock,
//! never does I/O and never hands out a chunk that failed any check.
//!
//! Memory is bounded by the policy (held manifests, waiting bytes) plus the event queue, which the
//! caller drains with [`Verifier::poll_event`] after every push.

use super::body::{Manifest, ManifestId};
use super::merkle::Proof;
use crate::crypto::object::{self, Object, Plaintext};
use crate::crypto::{ChunkFlags, ChunkIndex, NodeId, StreamKeys};
use crate::time::UnixMillis;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

/// What the verifier accepts and how much it holds.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Signers whose manifests are accepted.
    pub trusted: Vec<NodeId>,
    /// Objects need a manifest (hash match or proof); without one they wait, then are dropped.
    /// When false, objects no manifest covers are delivered on AEAD authentication alone.
    pub require_manifest: bool,
    /// Most object bytes waiting for a manifest.
    pub max_pending_bytes: usize,
    /// Longest an object waits for a manifest.
    pub max_pending: Duration,
    /// Most manifests held; beyond it the lowest epochs are forgotten and their chunks are stale.
    pub max_manifests: usize,
}

impl Policy {
    /// A strict policy trusting `trusted`: manifests required, 64 MiB and 10 s of waiting
    /// objects, 1024 manifests held.
    pub fn new(trusted: Vec<NodeId>) -> Policy {
        Policy {
            trusted,
            require_manifest: true,
            max_pending_bytes: 64 << 20,
            max_pending: Duration::from_secs(10),
            max_manifests: 1024,
        }
    }
}

/// Why something was rejected; each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A manifest that does not decode (truncated, non-canonical, over a limit, bad root).
    MalformedManifest,
    /// A manifest for another stream locator.
    OtherStream,
    /// A manifest signed by a node that is not trusted.
    UnknownSigner,
    /// A manifest whose signature does not verify.
    BadSignature,
    /// A manifest whose signer already vouched for a different entry at one of its indices.
    Equivocation,
    /// An object that does not parse.
    MalformedObject,
    /// An inclusion proof that does not decode.
    MalformedProof,
    /// An object whose id matches no held entry for its index.
    IdMismatch,
    /// An object whose proof does not lead to the named manifest's root, or proves another object.
    ProofMismatch,
    /// An object no manifest covered before it timed out or was pushed out of the buffer.
    Uncovered,
    /// An object delivered at another place than its own index (a swapped or replayed object).
    Misplaced,
    /// An object that failed AEAD authentication.
    Aead,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 12] = [
        Reason::MalformedManifest,
        Reason::OtherStream,
        Reason::UnknownSigner,
        Reason::BadSignature,
        Reason::Equivocation,
        Reason::MalformedObject,
        Reason::MalformedProof,
        Reason::IdMismatch,
        Reason::ProofMismatch,
        Reason::Uncovered,
        Reason::Misplaced,
        Reason::Aead,
    ];

    /// Whether the reason rejects an object (counted by `--max-invalid-chunks`).
    pub fn is_object(self) -> bool {
        !matches!(
            self,
            Reason::MalformedManifest
                | Reason::OtherStream
                | Reason::UnknownSigner
                | Reason::BadSignature
                | Reason::Equivocation
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::MalformedManifest => "malformed manifest",
            Reason::OtherStream => "manifest for another stream",
            Reason::UnknownSigner => "manifest from an untrusted signer",
            Reason::BadSignature => "bad manifest signature",
            Reason::Equivocation => "equivocation",
            Reason::MalformedObject => "malformed object",
            Reason::MalformedProof => "malformed proof",
            Reason::IdMismatch => "object id mismatch",
            Reason::ProofMismatch => "proof mismatch",
            Reason::Uncovered => "object not covered by any manifest",
            Reason::Misplaced => "object delivered at another index",
            Reason::Aead => "object failed authentication",
        })
    }
}

/// One rejected manifest or object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Why.
    pub reason: Reason,
    /// The chunk index concerned, when known.
    pub index: Option<ChunkIndex>,
    /// The manifest signer concerned, when known.
    pub signer: Option<NodeId>,
    /// A human-readable detail for the log line.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(index) = self.index {
            write!(f, " at chunk {index}")?;
        }
        if let Some(signer) = self.signer {
            write!(f, " from {signer}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// A verified, decrypted chunk.
#[derive(Debug, PartialEq, Eq)]
pub struct AcceptedChunk {
    /// The chunk index.
    pub index: ChunkIndex,
    /// The chunk flags.
    pub flags: ChunkFlags,
    /// The manifest that vouched for it and the entry's duration (90 kHz ticks); `None` only
    /// when manifests are not required and none covered the object.
    pub vouched: Option<(ManifestId, u32)>,
    /// The plaintext chunk bytes, decrypted in the buffer the object arrived in.
    pub bytes: Plaintext,
}

/// What the verifier reports.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A chunk passed every check.
    Chunk(AcceptedChunk),
    /// A manifest was accepted.
    Manifest {
        /// Its id.
        id: ManifestId,
        /// Its signer.
        signer: NodeId,
        /// Its epoch.
        epoch: u64,
        /// Its place in the signer's chain.
        sequence: u64,
        /// When the signer says it created it.
        created: UnixMillis,
        /// The chunk indices it vouches for, first and last (entries are strictly ordered).
        covers: (ChunkIndex, ChunkIndex),
    },
    /// A signer's chain skipped sequence numbers (they may still arrive out of order).
    ChainGap {
        /// The signer.
        signer: NodeId,
        /// The missing sequence numbers.
        missing: Range<u64>,
    },
    /// A signer's chain links disagree (e.g. the signer restarted its chain, or forked it); the
    /// manifest is still accepted, since its entries passed the equivocation check.
    ChainBreak {
        /// The signer.
        signer: NodeId,
        /// The sequence number whose link disagrees.
        sequence: u64,
    },
    /// Something was rejected.
    Rejected(Rejection),
}

struct Pending {
    index: ChunkIndex,
    bytes: Vec<u8>,
    proof: Option<Vec<u8>>,
    expires: Instant,
}

/// The acceptance policy for one stream. See the module documentation.
pub struct Verifier {
    keys: StreamKeys,
    policy: Policy,
    held: HashMap<ManifestId, Manifest>,
    /// Held manifests by first covered index, for eviction of the oldest.
    by_start: BTreeSet<(ChunkIndex, ManifestId)>,
    /// Which held manifests have an entry at each index.
    vouches: BTreeMap<ChunkIndex, Vec<ManifestId>>,
    /// Each signer's chain: sequence → (manifest id, previous id).
    chains: HashMap<NodeId, BTreeMap<u64, (ManifestId, Option<ManifestId>)>>,
    /// Chunks below this index are stale: their manifests were forgotten.
    floor: ChunkIndex,
    /// The first index the first trusted manifest covered: an uncovered object below it predates
    /// what this subscriber could ever verify, and is ignored rather than counted.
    first_trusted: Option<ChunkIndex>,
    delivered: BTreeSet<ChunkIndex>,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    events: VecDeque<Event>,
    rejected: [u64; Reason::ALL.len()],
    ignored: u64,
}

impl Verifier {
    /// A verifier for the stream whose subkeys are `keys`.
    pub fn new(keys: StreamKeys, policy: Policy) -> Verifier {
        Verifier {
            keys,
            policy,
            held: HashMap::new(),
            by_start: BTreeSet::new(),
            vouches: BTreeMap::new(),
            chains: HashMap::new(),
            floor: ChunkIndex(0),
            first_trusted: None,
            delivered: BTreeSet::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            events: VecDeque::new(),
            rejected: [0; Reason::ALL.len()],
            ignored: 0,
        }
    }

    /// Feeds a signed manifest from any peer.
    pub fn push_manifest(&mut self, bytes: &[u8], now: Instant) {
        self.expire(now);
        let manifest = match Manifest::decode(bytes) {
            Ok(m) => m,
            Err(e) => return self.reject(Reason::MalformedManifest, None, None, e.to_string()),
        };
        let signer = manifest.body.signer;
        let first = manifest.body.entries[0].index;
        if manifest.body.locator != self.keys.locator() {
            let detail = format!("locator {}", manifest.body.locator);
            return self.reject(Reason::OtherStream, Some(first), Some(signer), detail);
        }
        if !self.policy.trusted.contains(&signer) {
            let detail = "the signer is not among the trusted signers".to_string();
            return self.reject(Reason::UnknownSigner, Some(first), Some(signer), detail);
        }
        if !manifest.signature_valid() {
            let detail = format!("manifest {}", manifest.id);
            return self.reject(Reason::BadSignature, Some(first), Some(signer), detail);
        }
        let last = manifest.body.entries[manifest.body.entries.len() - 1].index;
        if self.held.contains_key(&manifest.id) || last < self.floor {
            self.ignored += 1;
            return;
        }
        if let Some((index, other)) = self.equivocation(&manifest) {
            let detail = format!("manifest {} contradicts held manifest {other}", manifest.id);
            return self.reject(Reason::Equivocation, Some(index), Some(signer), detail);
        }
        self.link(&manifest);
        self.events.push_back(Event::Manifest {
            id: manifest.id,
            signer,
            epoch: manifest.body.epoch,
            sequence: manifest.body.sequence,
            created: manifest.body.created,
            covers: (first, last),
        });
        for entry in &manifest.body.entries {
            self.vouches
                .entry(entry.index)
                .or_default()
                .push(manifest.id);
        }
        self.first_trusted.get_or_insert(first);
        self.by_start.insert((first, manifest.id));
        self.held.insert(manifest.id, manifest);
        self.evict();
        self.retry_pending();
    }

    /// Feeds an object from any peer, with the inclusion proof that travelled with it, if any,
    /// and the index the transport placed it at (its MoQ group), if it has one: an object must
    /// sit at its own index. Takes the buffer: an accepted object is decrypted in place and
    /// handed out without a copy.
    pub fn push_object(
        &mut self,
        bytes: Vec<u8>,
        proof: Option<&[u8]>,
        placed: Option<ChunkIndex>,
        now: Instant,
    ) {
        self.expire(now);
        let verdict = match Object::parse(&bytes) {
            Err(e) => return self.reject(Reason::MalformedObject, None, None, e.to_string()),
            Ok(o) if placed.is_some_and(|at| at != o.index) => {
                let detail = format!("placed at {}", placed.unwrap_or(o.index));
                return self.reject(Reason::Misplaced, Some(o.index), None, detail);
            }
            Ok(o) if o.index < self.floor || self.delivered.contains(&o.index) => {
                self.ignored += 1;
                return;
            }
            Ok(o) => (o.index, o.flags, self.vouch(&o, proof)),
        };
        match verdict {
            (_, _, Err(rejection)) => self.push_rejection(rejection),
            (index, flags, Ok(Some(vouched))) => self.deliver(bytes, index, flags, Some(vouched)),
            (index, flags, Ok(None)) if !self.policy.require_manifest => {
                self.deliver(bytes, index, flags, None)
            }
            (index, _, Ok(None)) => self.wait(bytes, index, proof, now),
        }
    }

    /// Drops waiting objects whose time is up; call when [`Verifier::poll_timeout`] passes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    /// When the next waiting object times out, if any waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.expires).min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How many manifests or objects were rejected for `reason`.
    pub fn rejected(&self, reason: Reason) -> u64 {
        let at = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.rejected[at]
    }

    /// How many objects were rejected for any reason (what `--max-invalid-chunks` bounds).
    pub fn rejected_objects(&self) -> u64 {
        Reason::ALL
            .iter()
            .zip(self.rejected)
            .filter(|(r, _)| r.is_object())
            .map(|(_, n)| n)
            .sum()
    }

    /// How many inputs were dropped as harmless: manifests already held, chunks already
    /// delivered, anything below the forgotten epochs, and uncovered objects from before the
    /// first trusted manifest (a late joiner's backlog).
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    fn reject(
        &mut self,
        reason: Reason,
        index: Option<ChunkIndex>,
        signer: Option<NodeId>,
        detail: String,
    ) {
        self.push_rejection(Rejection {
            reason,
            index,
            signer,
            detail,
        });
    }

    fn push_rejection(&mut self, rejection: Rejection) {
        if let Some(at) = Reason::ALL.iter().position(|r| *r == rejection.reason) {
            self.rejected[at] += 1;
        }
        log::debug!("rejected {rejection}");
        self.events.push_back(Event::Rejected(rejection));
    }

    /// The first index where the signer's held manifests already say something else.
    fn equivocation(&self, manifest: &Manifest) -> Option<(ChunkIndex, ManifestId)> {
        manifest.body.entries.iter().find_map(|entry| {
            self.vouches
                .get(&entry.index)?
                .iter()
                .filter_map(|id| self.held.get(id))
                .find(|held| {
                    held.body.signer == manifest.body.signer
                        && held.entry(entry.index) != Some(entry)
                })
                .map(|held| (entry.index, held.id))
        })
    }

    /// Records the manifest in its signer's hash chain, reporting gaps and disagreeing links.
    fn link(&mut self, manifest: &Manifest) {
        let signer = manifest.body.signer;
        let (seq, id, previous) = (manifest.body.sequence, manifest.id, manifest.body.previous);
        let chain = self.chains.entry(signer).or_default();
        let mut breaks = Vec::new();
        if chain.get(&seq).is_some_and(|(other, _)| *other != id) {
            breaks.push(seq);
        }
        let before = seq.checked_sub(1).and_then(|s| chain.get(&s));
        if before.is_some_and(|(prev_id, _)| Some(*prev_id) != previous) {
            breaks.push(seq);
        }
        let after = seq.checked_add(1).and_then(|s| chain.get(&s));
        if after.is_some_and(|(_, link)| *link != Some(id)) {
            breaks.push(seq + 1);
        }
        let highest = chain.last_key_value().map(|(s, _)| *s);
        chain.entry(seq).or_insert((id, previous));
        breaks.dedup();
        for sequence in breaks {
            self.events
                .push_back(Event::ChainBreak { signer, sequence });
        }
        if let Some(h) = highest.filter(|h| seq > h.saturating_add(1)) {
            self.events.push_back(Event::ChainGap {
                signer,
                missing: h + 1..seq,
            });
        }
    }

    /// Forgets the oldest manifests beyond the policy's limit; their chunks become stale.
    fn evict(&mut self) {
        while self.held.len() > self.policy.max_manifests {
            let Some((_, id)) = self.by_start.pop_first() else {
                return;
            };
            let Some(old) = self.held.remove(&id) else {
                continue;
            };
            for entry in &old.body.entries {
                if let Some(list) = self.vouches.get_mut(&entry.index) {
                    list.retain(|v| *v != id);
                    if list.is_empty() {
                        self.vouches.remove(&entry.index);
                    }
                }
            }
            if let Some(chain) = self.chains.get_mut(&old.body.signer) {
                if chain.get(&old.body.sequence).is_some_and(|(c, _)| *c == id) {
                    chain.remove(&old.body.sequence);
                }
            }
            let last = old.body.entries[old.body.entries.len() - 1].index;
            self.floor = self.floor.max(ChunkIndex(last.0.saturating_add(1)));
            self.delivered = self.delivered.split_off(&self.floor);
        }
    }

    /// Finds the held manifest entry that vouches for `object`: by proof if one came and its
    /// manifest is held, else by id among the entries at the object's index.
    fn vouch(
        &self,
        object: &Object<'_>,
        proof: Option<&[u8]>,
    ) -> Result<Option<(ManifestId, u32)>, Rejection> {
        let id = object.id();
        let reject = |reason, detail: String| Rejection {
            reason,
            index: Some(object.index),
            signer: None,
            detail,
        };
        if let Some(bytes) = proof {
            let proof =
                Proof::decode(bytes).map_err(|e| reject(Reason::MalformedProof, e.to_string()))?;
            if let Some(manifest) = self.held.get(&proof.manifest) {
                proof
                    .verify(&manifest.root)
                    .map_err(|e| reject(Reason::ProofMismatch, e.to_string()))?;
                if !proof.entry.vouches_for(object, &id) {
                    let detail = format!("proof in manifest {} is for another object", manifest.id);
                    return Err(reject(Reason::ProofMismatch, detail));
                }
                return Ok(Some((manifest.id, proof.entry.duration)));
            }
        }
        let Some(ids) = self.vouches.get(&object.index) else {
            return Ok(None);
        };
        ids.iter()
            .filter_map(|m| self.held.get(m)?.entry(object.index).map(|e| (*m, e)))
            .find(|(_, entry)| entry.vouches_for(object, &id))
            .map(|(m, entry)| Some((m, entry.duration)))
            .ok_or_else(|| {
                let detail = format!("object {id:?} matches none of {} held entries", ids.len());
                reject(Reason::IdMismatch, detail)
            })
    }

    /// Decrypts a vouched-for (or, by policy, unvouched) object and hands it out.
    fn deliver(
        &mut self,
        bytes: Vec<u8>,
        index: ChunkIndex,
        flags: ChunkFlags,
        vouched: Option<(ManifestId, u32)>,
    ) {
        match object::open(&self.keys, bytes) {
            Ok(plaintext) => {
                self.delivered.insert(index);
                self.events.push_back(Event::Chunk(AcceptedChunk {
                    index,
                    flags,
                    vouched,
                    bytes: plaintext,
                }));
            }
            Err(e) => self.reject(Reason::Aead, Some(index), None, e.to_string()),
        }
    }

    /// Parks an object until a manifest covers it, making room by dropping the oldest.
    fn wait(&mut self, bytes: Vec<u8>, index: ChunkIndex, proof: Option<&[u8]>, now: Instant) {
        if bytes.len() > self.policy.max_pending_bytes {
            let detail = "object is larger than the waiting buffer".to_string();
            return self.reject(Reason::Uncovered, Some(index), None, detail);
        }
        while self.pending_bytes + bytes.len() > self.policy.max_pending_bytes {
            match self.pending.pop_front() {
                Some(old) => self.drop_pending(old, "waiting buffer full"),
                None => break,
            }
        }
        self.pending_bytes += bytes.len();
        self.pending.push_back(Pending {
            index,
            bytes,
            proof: proof.map(<[u8]>::to_vec),
            expires: now + self.policy.max_pending,
        });
    }

    fn drop_pending(&mut self, old: Pending, why: &str) {
        self.pending_bytes -= old.bytes.len();
        if self.first_trusted.is_some_and(|first| old.index < first) {
            log::debug!(
                "dropped chunk {} from before the first trusted manifest",
                old.index
            );
            self.ignored += 1;
            return;
        }
        self.reject(
            Reason::Uncovered,
            Some(old.index),
            None,
            format!("{why}, no manifest came"),
        );
    }

    fn expire(&mut self, now: Instant) {
        let (expired, kept): (VecDeque<Pending>, VecDeque<Pending>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.expires <= now);
        self.pending = kept;
        for old in expired {
            self.drop_pending(old, "waited too long");
        }
    }

    /// Re-examines waiting objects after a manifest arrived.
    fn retry_pending(&mut self) {
        for waiting in std::mem::take(&mut self.pending) {
            self.pending_bytes -= waiting.bytes.len();
            // Parsed when it was queued, so this cannot fail; drop rather than panic if it did.
            let verdict = match Object::parse(&waiting.bytes) {
                Err(_) => continue,
                Ok(o) if self.delivered.contains(&o.index) || o.index < self.floor => {
                    self.ignored += 1;
                    continue;
                }
                Ok(o) => (o.flags, self.vouch(&o, waiting.proof.as_deref())),
            };
            match verdict {
                (_, Ok(None)) => {
                    self.pending_bytes += waiting.bytes.len();
                    self.pending.push_back(waiting);
                }
                (flags, Ok(Some(vouched))) => {
                    self.deliver(waiting.bytes, waiting.index, flags, Some(vouched))
                }
                (_, Err(rejection)) => self.push_rejection(rejection),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{NodeKey, StreamId, StreamKey};
    use crate::manifest::{Entry, ManifestChain};

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    /// `ms` after the start of the test on the monotonic clock.
    fn now(ms: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    fn keys(id: &str) -> StreamKeys {
        StreamKey::derive(None, &StreamId::new(id).unwrap()).subkeys()
    }

    fn leader() -> NodeKey {
        NodeKey::from_seed([1; 32])
    }

    fn seal(keys: &StreamKeys, index: u64, payload: &[u8]) -> Vec<u8> {
        object::seal(keys, ChunkIndex(index), ChunkFlags::default(), payload).unwrap()
    }

    fn entry(object: &[u8]) -> Entry {
        Entry::for_object(&Object::parse(object).unwrap(), 180_000)
    }

    fn chain(key: NodeKey, epoch_chunks: u32) -> ManifestChain {
        ManifestChain::new(key, keys("s").locator(), epoch_chunks, 180_000)
    }

    fn verifier() -> Verifier {
        Verifier::new(keys("s"), Policy::new(vec![leader().node_id()]))
    }

    fn drain(v: &mut Verifier) -> Vec<Event> {
        std::iter::from_fn(|| v.poll_event()).collect()
    }

    fn chunk_indices(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Chunk(c) => Some(c.index.0),
                _ => None,
            })
            .collect()
    }

    /// Asserts that exactly one rejection happened, for `reason`, and nothing was accepted.
    fn assert_only_rejected(v: &mut Verifier, reason: Reason) -> Rejection {
        let events = drain(v);
        assert_eq!(chunk_indices(&events), Vec::<u64>::new(), "{events:?}");
        let rejections: Vec<&Rejection> = events
            .iter()
            .filter_map(|e| match e {
                Event::Rejected(r) => Some(r),
                Event::Manifest { .. } => panic!("a manifest was accepted: {events:?}"),
                _ => None,
            })
            .collect();
        assert_eq!(rejections.len(), 1, "{events:?}");
        assert_eq!(rejections[0].reason, reason, "{}", rejections[0]);
        assert_eq!(v.rejected(reason), 1);
        rejections[0].clone()
    }

    #[test]
    fn object_with_a_matching_manifest_entry_is_delivered_once() {
        let mut v = verifier();
        let obj = seal(&keys("s"), 0, b"chunk zero");
        let m = chain(leader(), 1)
            .sign_epoch(0, vec![entry(&obj)], T0)
            .unwrap();
        v.push_manifest(&m, now(0));
        v.push_object(obj.clone(), None, None, now(0));
        v.push_object(obj.clone(), None, None, now(0)); // the same object from a second peer
        let events = drain(&mut v);
        assert!(matches!(
            events[0],
            Event::Manifest {
                epoch: 0,
                sequence: 0,
                ..
            }
        ));
        let Event::Chunk(chunk) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(chunk.bytes.as_bytes(), b"chunk zero");
        assert_eq!(chunk.vouched.map(|(_, d)| d), Some(180_000));
        assert_eq!(events.len(), 2);
        assert_eq!(v.ignored(), 1);
        assert_eq!(v.rejected_objects(), 0);
    }

    #[test]
    fn object_waits_for_its_manifest_then_is_delivered() {
        let mut v = verifier();
        let objs: Vec<Vec<u8>> = (4..8)
            .map(|i| seal(&keys("s"), i, &[i as u8; 300]))
            .collect();
        for o in &objs {
            v.push_object(o.clone(), None, None, now(0));
        }
        assert_eq!(
            drain(&mut v),
            vec![],
            "nothing is delivered before a manifest"
        );
        assert_eq!(v.poll_timeout(), Some(now(10_000)));
        let entries = objs.iter().map(|o| entry(o)).collect();
        let m = chain(leader(), 4).sign_epoch(1, entries, T0).unwrap();
        v.push_manifest(&m, now(5));
        assert_eq!(chunk_indices(&drain(&mut v)), vec![4, 5, 6, 7]);
        assert_eq!(v.poll_timeout(), None);
    }

    #[test]
    fn an_object_placed_at_another_index_is_rejected_as_misplaced() {
        let mut v = verifier();
        let obj = seal(&keys("s"), 3, b"three");
        let m = chain(leader(), 1)
            .sign_epoch(3, vec![entry(&obj)], T0)
            .unwrap();
        v.push_manifest(&m, now(0));
        drain(&mut v);
        v.push_object(obj.clone(), None, Some(ChunkIndex(4)), now(0));
        let r = assert_only_rejected(&mut v, Reason::Misplaced);
        assert_eq!(r.index, Some(ChunkIndex(3)));
        v.push_object(obj, None, Some(ChunkIndex(3)), now(0));
        assert_eq!(chunk_indices(&drain(&mut v)), vec![3]);
        assert_eq!(v.rejected_objects(), 1);
    }

    #[test]
    fn uncovered_objects_from_before_the_first_trusted_manifest_are_not_counted() {
        let mut v = verifier();
        v.push_object(seal(&keys("s"), 4, b"old"), None, None, now(0));
        v.push_object(seal(&keys("s"), 9, b"new"), None, None, now(0));
        let obj = seal(&keys("s"), 5, b"five");
        let m = chain(leader(), 1)
            .sign_epoch(5, vec![entry(&obj)], T0)
            .unwrap();
        v.push_manifest(&m, now(0));
        drain(&mut v);
        v.handle_timeout(now(10_000));
        let r = assert_only_rejected(&mut v, Reason::Uncovered);
        assert_eq!(r.index, Some(ChunkIndex(9)));
        assert_eq!(v.ignored(), 1);
    }

    #[test]
    fn uncovered_objects_time_out_and_are_counted() {
        let mut v = verifier();
        v.push_object(seal(&keys("s"), 9, b"x"), None, None, now(0));
        v.handle_timeout(now(9_999));
        assert_eq!(drain(&mut v), vec![]);
        v.handle_timeout(now(10_000));
        let r = assert_only_rejected(&mut v, Reason::Uncovered);
        assert_eq!(r.index, Some(ChunkIndex(9)));
        assert_eq!(v.rejected_objects(), 1);
        // The manifest arriving later no longer releases it.
        let m = chain(leader(), 1)
            .sign_epoch(9, vec![entry(&seal(&keys("s"), 9, b"x"))], T0)
            .unwrap();
        v.push_manifest(&m, now(10_001));
        assert_eq!(chunk_indices(&drain(&mut v)), Vec::<u64>::new());
    }

    #[test]
    fn waiting_buffer_is_bounded_by_bytes() {
        let mut policy = Policy::new(vec![leader().node_id()]);
        policy.max_pending_bytes = 1000;
        let mut v = Verifier::new(keys("s"), policy);
        v.push_object(seal(&keys("s"), 1, &[0; 600]), None, None, now(0));
        v.push_object(seal(&keys("s"), 2, &[0; 600]), None, None, now(0));
        let r = assert_only_rejected(&mut v, Reason::Uncovered);
        assert_eq!(r.index, Some(ChunkIndex(1)), "the oldest makes room");
        v.push_object(seal(&keys("s"), 3, &[0; 2000]), None, None, now(0));
        assert_eq!(v.rejected(Reason::Uncovered), 2);
    }

    #[test]
    fn without_require_manifest_uncovered_objects_pass_on_aead_alone() {
        let mut policy = Policy::new(vec![]);
        policy.require_manifest = false;
        let mut v = Verifier::new(keys("s"), policy);
        v.push_object(seal(&keys("s"), 1, b"open"), None, None, now(0));
        let events = drain(&mut v);
        assert!(matches!(
            &events[..],
            [Event::Chunk(AcceptedChunk { vouched: None, .. })]
        ));
        let mut flipped = seal(&keys("s"), 2, b"open");
        flipped[40] ^= 1;
        v.push_object(flipped.clone(), None, None, now(0));
        assert_only_rejected(&mut v, Reason::Aead);
    }

    #[test]
    fn inclusion_proof_accepts_against_the_signed_root() {
        let mut v = verifier();
        let objs: Vec<Vec<u8>> = (0..5)
            .map(|i| seal(&keys("s"), i, &[i as u8; 10]))
            .collect();
        let entries: Vec<Entry> = objs.iter().map(|o| entry(o)).collect();
        let m = chain(leader(), 8)
            .sign_epoch(0, entries.clone(), T0)
            .unwrap();
        let id = Manifest::decode(&m).unwrap().id;
        let proof = Proof::build(id, &entries, 3).unwrap().encode();
        // Proof before the manifest: the object waits, then the proof path accepts it.
        v.push_object(objs[3].clone(), Some(&proof), None, now(0));
        assert_eq!(drain(&mut v), vec![]);
        v.push_manifest(&m, now(0));
        let events = drain(&mut v);
        assert_eq!(chunk_indices(&events), vec![3]);
        // A proof for leaf 3 does not carry object 4.
        v.push_object(objs[4].clone(), Some(&proof), None, now(0));
        assert_only_rejected(&mut v, Reason::ProofMismatch);
        // A proof with a forged sibling does not reach the root.
        let mut forged = Proof::build(id, &entries, 2).unwrap();
        forged.siblings[0][0] ^= 1;
        v.push_object(objs[2].clone(), Some(&forged.encode()), None, now(0));
        assert_eq!(v.rejected(Reason::ProofMismatch), 1 + 1);
        assert_eq!(chunk_indices(&drain(&mut v)), Vec::<u64>::new());
        v.push_object(objs[1].clone(), Some(&proof[..20]), None, now(0));
        assert_only_rejected(&mut v, Reason::MalformedProof);
    }

    #[test]
    fn object_not_matching_the_entry_is_rejected() {
        let mut v = verifier();
        let good = seal(&keys("s"), 0, b"real");
        v.push_manifest(
            &chain(leader(), 1)
                .sign_epoch(0, vec![entry(&good)], T0)
                .unwrap(),
            now(0),
        );
        drain(&mut v);
        v.push_object(seal(&keys("s"), 0, b"fake"), None, None, now(0));
        let r = assert_only_rejected(&mut v, Reason::IdMismatch);
        assert_eq!(r.index, Some(ChunkIndex(0)));
        // Replayed under another index: header changed, so the id matches nothing there either.
        let mut c = chain(leader(), 1);
        c.sign_epoch(0, vec![entry(&good)], T0).unwrap();
        let other = seal(&keys("s"), 1, b"one");
        v.push_manifest(&c.sign_epoch(1, vec![entry(&other)], T0).unwrap(), now(0));
        drain(&mut v);
        let mut replayed = good.clone();
        replayed[9] = 1;
        v.push_object(replayed.clone(), None, None, now(0));
        assert_eq!(v.rejected(Reason::IdMismatch), 2);
        assert_eq!(chunk_indices(&drain(&mut v)), Vec::<u64>::new());
    }

    #[test]
    fn vouched_object_that_fails_aead_is_rejected() {
        // A trusted signer vouching for an object sealed under another stream's keys.
        let mut v = verifier();
        let alien = seal(&keys("other"), 0, b"alien");
        v.push_manifest(
            &chain(leader(), 1)
                .sign_epoch(0, vec![entry(&alien)], T0)
                .unwrap(),
            now(0),
        );
        drain(&mut v);
        v.push_object(alien.clone(), None, None, now(0));
        assert_only_rejected(&mut v, Reason::Aead);
    }

    #[test]
    fn malformed_objects_are_rejected() {
        let mut v = verifier();
        v.push_object(seal(&keys("s"), 0, b"x")[..30].to_vec(), None, None, now(0));
        assert_only_rejected(&mut v, Reason::MalformedObject);
    }

    #[test]
    fn manifest_rejections_name_their_reason() {
        let obj = seal(&keys("s"), 0, b"zero");
        let good = chain(leader(), 1)
            .sign_epoch(0, vec![entry(&obj)], T0)
            .unwrap();

        let mut v = verifier();
        v.push_manifest(&good[..good.len() - 1], now(0));
        assert_only_rejected(&mut v, Reason::MalformedManifest);

        let mut v = verifier();
        let stranger = chain(NodeKey::from_seed([2; 32]), 1)
            .sign_epoch(0, vec![entry(&obj)], T0)
            .unwrap();
        v.push_manifest(&stranger, now(0));
        let r = assert_only_rejected(&mut v, Reason::UnknownSigner);
        assert_eq!(r.signer, Some(NodeKey::from_seed([2; 32]).node_id()));

        let mut v = verifier();
        let mut forged = good.clone();
        let n = forged.len();
        forged[n - 10] ^= 1;
        v.push_manifest(&forged, now(0));
        assert_only_rejected(&mut v, Reason::BadSignature);

        let mut v = verifier();
        let other = ManifestChain::new(leader(), keys("t").locator(), 1, 180_000)
            .sign_epoch(0, vec![entry(&obj)], T0)
            .unwrap();
        v.push_manifest(&other, now(0));
        assert_only_rejected(&mut v, Reason::OtherStream);

        // None of the rejected manifests lets the object through.
        v.push_object(obj.clone(), None, None, now(0));
        v.handle_timeout(now(60_000));
        assert_eq!(v.rejected(Reason::Uncovered), 1);
        assert_eq!(chunk_indices(&drain(&mut v)), Vec::<u64>::new());
    }

    #[test]
    fn equivocation_is_rejected_and_named() {
        let mut v = verifier();
        let a = seal(&keys("s"), 4, b"version a");
        let b = seal(&keys("s"), 4, b"version b");
        v.push_manifest(
            &chain(leader(), 2)
                .sign_epoch(2, vec![entry(&a)], T0)
                .unwrap(),
            now(0),
        );
        drain(&mut v);
        let mut c = chain(leader(), 2);
        c.sign_epoch(0, vec![entry(&seal(&keys("s"), 0, b"z"))], T0)
            .unwrap();
        let contradicting = c.sign_epoch(2, vec![entry(&b)], T0).unwrap();
        v.push_manifest(&contradicting, now(0));
        let r = assert_only_rejected(&mut v, Reason::Equivocation);
        assert_eq!(
            (r.index, r.signer),
            (Some(ChunkIndex(4)), Some(leader().node_id()))
        );
        v.push_object(b.clone(), None, None, now(0));
        assert_only_rejected(&mut v, Reason::IdMismatch);
        // The same entry re-signed (e.g. a new creation time) is not equivocation.
        let again = chain(leader(), 2)
            .sign_epoch(2, vec![entry(&a)], T0.plus_ms(1))
            .unwrap();
        v.push_manifest(&again, now(0));
        let events = drain(&mut v);
        assert!(
            events.iter().any(|e| matches!(e, Event::Manifest { .. })),
            "{events:?}"
        );
        assert_eq!(v.rejected(Reason::Equivocation), 1);
    }

    #[test]
    fn out_of_order_manifests_are_accepted_and_gaps_reported() {
        let mut c = chain(leader(), 1);
        let objs: Vec<Vec<u8>> = (0..4).map(|i| seal(&keys("s"), i, &[i as u8])).collect();
        let ms: Vec<Vec<u8>> = (0..4)
            .map(|i| c.sign_epoch(i as u64, vec![entry(&objs[i])], T0).unwrap())
            .collect();
        let mut v = verifier();
        v.push_manifest(&ms[0], now(0));
        v.push_manifest(&ms[3], now(0));
        let events = drain(&mut v);
        let signer = leader().node_id();
        assert!(
            events.contains(&Event::ChainGap {
                signer,
                missing: 1..3
            }),
            "{events:?}"
        );
        v.push_manifest(&ms[2], now(0));
        v.push_manifest(&ms[1], now(0));
        v.push_manifest(&ms[1], now(0)); // already held: ignored
        let events = drain(&mut v);
        assert_eq!(
            events.len(),
            2,
            "no breaks, no gaps, no duplicate: {events:?}"
        );
        for o in objs.iter().rev() {
            v.push_object(o.clone(), None, None, now(0));
        }
        assert_eq!(chunk_indices(&drain(&mut v)), vec![3, 2, 1, 0]);
    }

    #[test]
    fn restarted_chain_is_reported_as_a_break() {
        let mut v = verifier();
        let mut first = chain(leader(), 1);
        first
            .sign_epoch(0, vec![entry(&seal(&keys("s"), 0, b"a"))], T0)
            .unwrap();
        v.push_manifest(
            &first
                .sign_epoch(1, vec![entry(&seal(&keys("s"), 1, b"b"))], T0)
                .unwrap(),
            now(0),
        );
        let mut restarted = chain(leader(), 1);
        restarted
            .sign_epoch(5, vec![entry(&seal(&keys("s"), 5, b"c"))], T0)
            .unwrap();
        let m = restarted
            .sign_epoch(6, vec![entry(&seal(&keys("s"), 6, b"d"))], T0)
            .unwrap();
        v.push_manifest(&m, now(0));
        let signer = leader().node_id();
        assert!(drain(&mut v).contains(&Event::ChainBreak {
            signer,
            sequence: 1
        }));
    }

    #[test]
    fn oldest_manifests_are_forgotten_and_their_chunks_become_stale() {
        let mut policy = Policy::new(vec![leader().node_id()]);
        policy.max_manifests = 2;
        let mut v = Verifier::new(keys("s"), policy);
        let mut c = chain(leader(), 1);
        let objs: Vec<Vec<u8>> = (0..3).map(|i| seal(&keys("s"), i, &[i as u8])).collect();
        for (i, o) in objs.iter().enumerate() {
            v.push_manifest(&c.sign_epoch(i as u64, vec![entry(o)], T0).unwrap(), now(0));
        }
        drain(&mut v);
        v.push_object(objs[0].clone(), None, None, now(0));
        v.push_object(objs[2].clone(), None, None, now(0));
        assert_eq!(chunk_indices(&drain(&mut v)), vec![2]);
        assert_eq!(v.ignored(), 1);
        assert_eq!(Reason::ALL.map(|r| v.rejected(r)), [0; Reason::ALL.len()]);
    }
}
