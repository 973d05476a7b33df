//! [`Assembly`]: the subscriber's rules — how chunk objects and manifests from several peers
//! become one verified sequence of segments in index order, and when the run must end.
//!
//! A sans-I/O owner, like [`Swarm`] (which it holds, with the [`Verifier`]): the receive loop
//! tells it what a peer delivered or how a peer failed, with the time, and carries out the
//! [`Action`]s it hands back (ask a peer's track for something, dial a peer again, close one,
//! write a segment, pass a manifest on), then sleeps until [`Assembly::poll_timeout`] or the next
//! delivery. It never touches a socket, a thread or a file, and never reads a clock: every input
//! comes with a [`Moment`], whose monotonic reading times every deadline and whose wall-clock
//! reading is only content (a segment's program date-time), so a step of the wall clock moves
//! no deadline and expires nothing.
//!
//! The rules it owns:
//! - **Verification** by the [`Verifier`], which decides what is accepted; a rejection is blamed
//!   on the source that sent the object ([`Swarm::rejected`]).
//! - **Order**: a late joiner's backfill and its live chunks arrive side by side; [`Reorder`]
//!   holds the live ones until the joining FETCHes are over (or [`BACKFILL_WAIT`] after the first
//!   object), and later lets chunks wait for an earlier one still being fetched.
//! - **Gap repair**: a chunk object or manifest group past a gap since the newest one (a blackout,
//!   a redial) makes it fetch the ones in between, if at most [`GAP_REPAIR`] wide.
//! - **Expectations**: the chunks a trusted manifest vouches for are awaited from the live source
//!   (and then others, by the swarm), from the first chunk object on; what manifests covered
//!   before that object are remembered ([`MANIFEST_TIMES`] at most) and awaited then.
//! - **Backfill accounting**: chunks that came by the joining FETCH are counted as backfilled and
//!   kept out of the latency figure.
//! - **Onward**: a verifying forwarder passes on the sealed object of each written chunk and
//!   each trusted manifest once, as it is accepted.
//! - **Peers that leave**: a chunk source goes back to the swarm, which redials it; a
//!   manifests-only peer is dialled again with a [`Backoff`]; a peer that cannot be replaced ends
//!   the run.
//! - **Deadlines**: no trusted manifest by `manifest_timeout`, nothing at all by start-up's end,
//!   no object for `idle_timeout`, or objects but none verified for `idle_timeout`.
//!
//! Memory is bounded whatever peers send or fail to send: besides the verifier's policy and the
//! swarm's own bounds, every map here has a stated cap (the tests check them).

use super::order::Reorder;
use super::output::Segment;
use super::swarm::{Action as SwarmAction, SourceState, SourceStats, Swarm, SwarmConfig};
use super::SubscribeError;
use crate::chunk::ChunkIndex;
use crate::hls::playlist::SegmentEntry;
use crate::hls::ProgramClock;
use crate::manifest::{AcceptedChunk, Event as Verdict, ManifestId, Reason, Verifier};
use crate::moq::track::TrackKind;
use crate::moq::GroupId;
use crate::net::NetError;
use crate::node::timing::{self, Stage};
use crate::node::tracks::Ask;
use crate::retry::Backoff;
use crate::time::UnixMillis;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a late joiner holds live chunks back for its backfill to arrive.
pub const BACKFILL_WAIT: Duration = Duration::from_secs(5);
/// Most verified chunks held back meanwhile (and behind a chunk being fetched).
pub const REORDER_CAP: usize = 32;
/// Manifest creation times remembered for the latency figure, and manifest covers remembered
/// from before the first chunk object.
pub const MANIFEST_TIMES: usize = 1024;
/// Chunk sources remembered by index, to blame a rejection on the source that sent it.
pub const SOURCES_REMEMBERED: usize = 1024;
/// The most sealed objects an Onward's run keeps until their chunk is written: what the
/// reorder stage may hold, and as many again waiting for the verifier. Objects of chunks that
/// will never be written (late, rejected) are dropped as soon as a later chunk is written.
pub const SEALED_HELD: usize = 2 * REORDER_CAP;
/// The widest gap in a track's groups that is fetched when a later group arrives (a blackout,
/// a reconnect); a wider one is left as a gap, marked as a discontinuity.
pub const GAP_REPAIR: u64 = 32;
/// Chunk indices remembered as asked of another source by FETCH, or as come by a joining FETCH,
/// until they are written (or will never be).
pub const FETCHES_REMEMBERED: usize = 1024;
/// The first wait before a manifests-only peer that left is dialled again (chunk sources: the
/// swarm's own back-off).
const REDIAL_FIRST: Duration = Duration::from_millis(500);
/// The longest wait before a manifests-only peer is dialled again.
const REDIAL_MAX: Duration = Duration::from_secs(30);

/// A moment as both clocks read it: the monotonic one times every deadline; the wall one is
/// content only (a segment's program date-time).
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    /// The monotonic clock.
    pub now: Instant,
    /// The wall clock.
    pub wall: UnixMillis,
}

impl Moment {
    /// Both clocks read now (at the I/O edge).
    pub fn read() -> Moment {
        Moment {
            now: Instant::now(),
            wall: UnixMillis::now(),
        }
    }
}

/// The subscriber's tunables, as the owner needs them.
#[derive(Clone, Debug)]
pub struct AssemblyConfig {
    /// Whether objects need a trusted manifest (the verifier's policy); then a run without one
    /// ends at `manifest_timeout`.
    pub require_manifest: bool,
    /// Groups before the current one fetched on joining, per track.
    pub backfill: u64,
    /// A segment's duration when no manifest says it (90 kHz ticks).
    pub chunk_ticks: u64,
    /// Stop after this many chunks written.
    pub stop_after: Option<u64>,
    /// Fail after more invalid objects than this.
    pub max_invalid: Option<u64>,
    /// See `SubscribeConfig::manifest_timeout`.
    pub manifest_timeout: Duration,
    /// See `SubscribeConfig::idle_timeout`.
    pub idle_timeout: Duration,
    /// Whether the output passes sealed objects and manifests on (a verifying forwarder).
    pub passes_on: bool,
    /// The newest chunk an earlier run wrote (resuming its folder).
    pub resumed: Option<ChunkIndex>,
    /// The swarm's tunables.
    pub swarm: SwarmConfig,
}

/// What a peer is for.
#[derive(Clone, Debug)]
pub struct PeerRole {
    /// Its address as given (for messages).
    pub name: String,
    /// Its place among the chunk sources (`None`: it serves manifests only).
    pub source: Option<usize>,
    /// Whether its manifests track is asked for.
    pub manifests: bool,
}

/// What the receive loop is to do.
#[derive(Debug)]
pub enum Action {
    /// Ask the track of `kind` of peer `peer` for `ask`.
    Ask {
        /// The peer, by position.
        peer: usize,
        /// Its track.
        kind: TrackKind,
        /// What to ask.
        ask: Ask,
    },
    /// Open a new session to the peer (its chunks track known, its manifests track asked for).
    Redial(usize),
    /// Close the peer's session (it left, or was demoted).
    Close(usize),
    /// Hand a verified segment to the output, in index order.
    Write(Segment),
    /// Hand a trusted manifest (its group and bytes) to the output's Onward.
    PassOn(GroupId, Arc<[u8]>),
}

/// How many entries each of the owner's maps holds, against the caps it states (for tests:
/// the caps are what bounds them).
#[cfg(test)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Remembered senders of recent chunks (≤ [`SOURCES_REMEMBERED`]).
    pub sources_remembered: usize,
    /// Sealed objects held for an Onward (≤ [`SEALED_HELD`]).
    pub sealed: usize,
    /// Chunks asked of another source by FETCH (≤ [`FETCHES_REMEMBERED`]).
    pub refetching: usize,
    /// Chunks come by the joining FETCH, not yet written (≤ [`FETCHES_REMEMBERED`]).
    pub backfilled: usize,
    /// Covers remembered from before the first chunk object (≤ [`MANIFEST_TIMES`]).
    pub early_covers: usize,
    /// Manifest creation times (≤ [`MANIFEST_TIMES`]).
    pub manifest_times: usize,
    /// Chunks held in order (≤ [`REORDER_CAP`]).
    pub reordering: usize,
}

/// One peer as the owner sees it.
struct PeerState {
    role: PeerRole,
    /// Whether its session is open (dialled and not closed since).
    open: bool,
    /// Whether its session is up now.
    up: bool,
    /// Whether its session was ever up: a peer that leaves after that is dialled again.
    was_up: bool,
    /// For a manifests-only peer that left: when to dial it again.
    redial_at: Option<Instant>,
    backoff: Backoff,
}

/// The subscriber's rules; see the module documentation.
pub struct Assembly {
    config: AssemblyConfig,
    verifier: Verifier,
    swarm: Swarm,
    peers: Vec<PeerState>,
    reorder: Reorder<AcceptedChunk>,
    clock: ProgramClock,
    actions: VecDeque<Action>,
    /// Which source sent the object of each recent chunk index.
    source_of: BTreeMap<ChunkIndex, usize>,
    /// The newest chunk object and manifest group received, to see gaps.
    newest_chunk: Option<ChunkIndex>,
    newest_manifest: Option<GroupId>,
    /// For an Onward: the sealed objects of chunks not written yet.
    sealed: BTreeMap<ChunkIndex, Arc<[u8]>>,
    /// For an Onward: the manifest being pushed into the verifier (which decides on it at
    /// once), with its group.
    pushing_manifest: Option<(GroupId, Arc<[u8]>)>,
    /// Chunks asked of another source by FETCH (not part of the join's backfill).
    refetching: BTreeSet<ChunkIndex>,
    /// Chunks that came by a joining FETCH, not written yet.
    backfill: BTreeSet<ChunkIndex>,
    /// The newest chunk handed to the output.
    newest_handed: Option<ChunkIndex>,
    /// The source of the object being pushed into the verifier right now.
    pushing_from: Option<usize>,
    /// The first chunk object's index: chunks from there on are awaited once a manifest
    /// vouches for them.
    start: Option<ChunkIndex>,
    /// What manifests covered before the first chunk object came.
    early_covers: Vec<(ChunkIndex, ChunkIndex)>,
    /// Creation times of recent trusted manifests, oldest first.
    manifest_times: VecDeque<(ManifestId, UnixMillis)>,
    /// Joining FETCHes not yet complete (sent or still to send).
    backfills: usize,
    started: Instant,
    first_object: Option<Instant>,
    last_object: Instant,
    last_verified: Option<Instant>,
    /// Rejected objects when a chunk last verified.
    rejected_at_verified: u64,
    handed: u64,
    backfilled: u64,
    manifests: u64,
}

impl Assembly {
    /// The rules for one run that started at `started`, with `peers` (all being dialled) and
    /// the verifier that decides what is accepted.
    pub fn new(
        config: AssemblyConfig,
        verifier: Verifier,
        peers: Vec<PeerRole>,
        started: Instant,
    ) -> Assembly {
        let sources = peers.iter().filter(|p| p.source.is_some()).count();
        // Each manifests track's joining FETCH, and the live chunks subscription's.
        let backfills = peers.iter().filter(|p| p.manifests).count() + 1;
        Assembly {
            swarm: Swarm::new(sources, config.swarm),
            verifier,
            peers: peers
                .into_iter()
                .map(|role| PeerState {
                    role,
                    open: true,
                    up: false,
                    was_up: false,
                    redial_at: None,
                    backoff: Backoff::new(REDIAL_FIRST, REDIAL_MAX),
                })
                .collect(),
            reorder: Reorder::new(true, REORDER_CAP),
            clock: ProgramClock::default(),
            actions: VecDeque::new(),
            source_of: BTreeMap::new(),
            newest_chunk: None,
            newest_manifest: None,
            sealed: BTreeMap::new(),
            pushing_manifest: None,
            refetching: BTreeSet::new(),
            backfill: BTreeSet::new(),
            newest_handed: config.resumed,
            pushing_from: None,
            start: None,
            early_covers: Vec::new(),
            manifest_times: VecDeque::new(),
            backfills,
            started,
            first_object: None,
            last_object: started,
            last_verified: None,
            rejected_at_verified: 0,
            handed: 0,
            backfilled: 0,
            manifests: 0,
            config,
        }
    }

    /// Peer `peer`'s session is up.
    pub fn connected(&mut self, peer: usize, at: Moment) -> Result<(), SubscribeError> {
        let state = &mut self.peers[peer];
        state.up = true;
        state.was_up = true;
        state.backoff.reset();
        if let Some(source) = state.role.source {
            self.swarm.connected(source, at.now);
        }
        self.settle(at)
    }

    /// Peer `peer` delivered an object of its track of `kind`, at `group`; `fetched` when it
    /// came by FETCH (a join's or one asked for).
    pub fn object(
        &mut self,
        peer: usize,
        kind: TrackKind,
        group: GroupId,
        payload: Vec<u8>,
        fetched: bool,
        at: Moment,
    ) -> Result<(), SubscribeError> {
        match kind {
            TrackKind::Chunks => {
                self.chunk_object(peer, ChunkIndex(group.0), payload, fetched, at)?
            }
            TrackKind::Manifests => {
                self.repair_manifests(peer, group);
                if self.config.passes_on {
                    self.pushing_manifest = Some((group, payload.as_slice().into()));
                }
                self.verifier.push_manifest(&payload, at.now);
                let drained = self.drain(at);
                self.pushing_manifest = None;
                drained?;
            }
        }
        self.settle(at)
    }

    fn chunk_object(
        &mut self,
        peer: usize,
        placed: ChunkIndex,
        payload: Vec<u8>,
        fetched: bool,
        at: Moment,
    ) -> Result<(), SubscribeError> {
        self.repair_chunks(placed, at.now);
        self.first_object.get_or_insert(at.now);
        self.last_object = at.now;
        if self.start.is_none() {
            self.start = Some(placed);
            for (first, last) in std::mem::take(&mut self.early_covers) {
                self.expect(first, last, at.now);
            }
        }
        let source = self.peers[peer].role.source;
        if let Some(source) = source {
            if !self.swarm.received(source, placed, payload.len(), at.now) {
                return Ok(()); // a copy of a chunk already accepted
            }
            self.source_of.insert(placed, source);
            while self.source_of.len() > SOURCES_REMEMBERED {
                self.source_of.pop_first();
            }
        }
        if fetched && !self.refetching.remove(&placed) {
            remember(&mut self.backfill, placed);
        }
        if self.config.passes_on {
            // A chunk written already is never written again.
            if self.newest_handed.is_none_or(|n| placed > n) {
                self.sealed.insert(placed, payload.as_slice().into());
            }
            while self.sealed.len() > SEALED_HELD {
                self.sealed.pop_first();
            }
        }
        // What the verifier rejects at once is this source's doing.
        self.pushing_from = source;
        self.verifier
            .push_object(payload, None, Some(placed), at.now);
        let drained = self.drain(at);
        self.pushing_from = None;
        drained
    }

    /// A FETCH asked of peer `peer` is over: the joining FETCH of a late join (`first: None`),
    /// or one that began at `first`; `failed` when the peer did not have it all (refused, or
    /// its stream was reset).
    pub fn fetch_done(
        &mut self,
        peer: usize,
        first: Option<GroupId>,
        failed: bool,
        at: Moment,
    ) -> Result<(), SubscribeError> {
        match (first, self.peers[peer].role.source) {
            (None, _) => self.backfills = self.backfills.saturating_sub(1),
            // A chunk fetched from a source that does not have it (yet): asked again shortly.
            (Some(group), Some(source)) if failed => {
                self.swarm.fetch_failed(source, ChunkIndex(group.0), at.now)
            }
            _ => {}
        }
        self.settle(at)
    }

    /// Peer `peer` ended its chunks track (`why` says who and why). Err when nobody can stand
    /// in for it.
    pub fn ended(&mut self, peer: usize, why: String, at: Moment) -> Result<(), SubscribeError> {
        match self.leave(peer, &why, true, at.now) {
            true => self.settle(at),
            false => Err(SubscribeError::Left(why)),
        }
    }

    /// Peer `peer`'s session failed (`refused`: it refused the stream), as `why` says. False
    /// when the run must end on it: it is not one of several chunk sources, and it never came
    /// up or refused (no redial changes that).
    pub fn failed(&mut self, peer: usize, refused: bool, why: &str, at: Moment) -> bool {
        self.leave(peer, why, !refused, at.now)
    }

    /// The time `at` has come: deadlines that passed are acted on. Err when the run must end.
    pub fn handle_timeout(&mut self, at: Moment) -> Result<(), SubscribeError> {
        self.settle(at)
    }

    /// The next thing to do, oldest first; call until `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Assembly::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        let idle = self.config.idle_timeout;
        let manifest = self.config.manifest_timeout;
        let run_ends = match self.first_object {
            None => self.started + idle.max(manifest),
            Some(first) => {
                (self.last_object + idle).min(self.last_verified.unwrap_or(first) + idle)
            }
        };
        let no_manifest =
            (self.config.require_manifest && self.manifests == 0).then(|| self.started + manifest);
        let release = self
            .first_object
            .filter(|_| self.reorder.is_holding())
            .map(|t| t + BACKFILL_WAIT);
        let redials = self.peers.iter().filter_map(|p| p.redial_at);
        [
            Some(run_ends),
            no_manifest,
            release,
            self.verifier.poll_timeout(),
            self.swarm.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .chain(redials)
        .min()
        .unwrap_or(run_ends)
    }

    /// Whether `stop_after` chunks were written.
    pub fn done(&self) -> bool {
        self.config.stop_after.is_some_and(|n| self.handed >= n)
    }

    /// The run is over: whatever is held is written.
    pub fn finish(&mut self, at: Moment) {
        let ready = self.reorder.release();
        self.write(ready, at);
    }

    /// Trusted manifests accepted.
    pub fn manifests(&self) -> u64 {
        self.manifests
    }

    /// Chunks written that came by the joining FETCH.
    pub fn backfilled(&self) -> u64 {
        self.backfilled
    }

    /// Verified chunks not written because a later one already was.
    pub fn late(&self) -> u64 {
        self.reorder.late()
    }

    /// The verifier's rejections by reason, only reasons that occurred.
    pub fn rejections(&self) -> Vec<(Reason, u64)> {
        Reason::ALL
            .iter()
            .map(|r| (*r, self.verifier.rejected(*r)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Each chunk source's name, standing and figures, in the order given.
    pub fn sources(&self) -> impl Iterator<Item = (&str, SourceState, &SourceStats)> {
        self.peers.iter().filter_map(|p| {
            let (state, stats) = self.swarm.source(p.role.source?);
            Some((p.role.name.as_str(), state, stats))
        })
    }

    /// How much each map holds.
    #[cfg(test)]
    pub fn footprint(&self) -> Footprint {
        Footprint {
            sources_remembered: self.source_of.len(),
            sealed: self.sealed.len(),
            refetching: self.refetching.len(),
            backfilled: self.backfill.len(),
            early_covers: self.early_covers.len(),
            manifest_times: self.manifest_times.len(),
            reordering: self.reorder.held(),
        }
    }

    /// After every input: deadlines that passed, the swarm's decisions, chunks that no longer
    /// wait, and the run's own deadlines.
    fn settle(&mut self, at: Moment) -> Result<(), SubscribeError> {
        if self.verifier.poll_timeout().is_some_and(|t| t <= at.now) {
            self.verifier.handle_timeout(at.now);
            self.drain(at)?;
        }
        let backfill_over = self.backfills == 0
            || self
                .first_object
                .is_some_and(|t| at.now >= t + BACKFILL_WAIT);
        if self.reorder.is_holding() && backfill_over {
            let ready = self.reorder.release();
            self.write(ready, at);
        }
        self.act_on_swarm(at);
        self.redial_manifest_peers(at.now);
        self.check_deadlines(at.now)
    }

    /// Takes the swarm's decisions: the live subscription, fetches of missing chunks, redials;
    /// closes demoted sources; writes chunks no longer waiting for a missing one.
    fn act_on_swarm(&mut self, at: Moment) {
        for action in self.swarm.poll(at.now) {
            let source = match action {
                SwarmAction::Subscribe(s) | SwarmAction::Fetch { source: s, .. } => s,
                SwarmAction::Redial(s) => s,
            };
            let Some(peer) = self
                .peers
                .iter()
                .position(|p| p.role.source == Some(source))
            else {
                continue;
            };
            let ask = match action {
                SwarmAction::Subscribe(_) => Ask::Join {
                    backfill: self.config.backfill,
                },
                SwarmAction::Fetch { index, .. } => {
                    log::info!("chunk {index}: fetched from {}", self.peers[peer].role.name);
                    remember(&mut self.refetching, index);
                    Ask::Fetch(GroupId(index.0), GroupId(index.0))
                }
                SwarmAction::Redial(_) => {
                    self.swarm.redialled(source);
                    self.peers[peer].open = true;
                    self.actions.push_back(Action::Redial(peer));
                    continue;
                }
            };
            self.actions.push_back(Action::Ask {
                peer,
                kind: TrackKind::Chunks,
                ask,
            });
        }
        for peer in 0..self.peers.len() {
            let state = &self.peers[peer];
            let demoted = state
                .role
                .source
                .is_some_and(|s| matches!(self.swarm.source(s).0, SourceState::Demoted { .. }));
            if demoted && state.open {
                log::warn!(
                    "source {} demoted: too many invalid objects",
                    state.role.name
                );
                self.close(peer);
            }
        }
        if !self.reorder.is_holding() {
            let ready = self.reorder.flush(self.swarm.first_wanted());
            self.write(ready, at);
        }
    }

    /// A peer left (for `why`): a chunk source goes to the swarm, which redials it; a
    /// manifests-only peer is redialled with back-off. False — the run ends — when it is not one
    /// of several chunk sources and either never came up or `may_return` is false (it refused).
    fn leave(&mut self, peer: usize, why: &str, may_return: bool, now: Instant) -> bool {
        let sources = self
            .peers
            .iter()
            .filter(|p| p.role.source.is_some())
            .count();
        let state = &self.peers[peer];
        let swarmed = state.role.source.is_some() && sources > 1;
        if !(swarmed || (state.was_up && may_return)) {
            return false;
        }
        log::warn!("{why}; dialling it again");
        self.close(peer);
        let state = &mut self.peers[peer];
        match state.role.source {
            Some(source) => self.swarm.gone(source, now),
            None => state.redial_at = Some(now + state.backoff.next_wait()),
        }
        true
    }

    fn close(&mut self, peer: usize) {
        let state = &mut self.peers[peer];
        state.up = false;
        if state.open {
            state.open = false;
            self.actions.push_back(Action::Close(peer));
        }
    }

    /// Dials manifests-only peers that left once their back-off passed.
    fn redial_manifest_peers(&mut self, now: Instant) {
        for (peer, state) in self.peers.iter_mut().enumerate() {
            if state.redial_at.is_some_and(|t| t <= now) {
                state.redial_at = None;
                state.open = true;
                self.actions.push_back(Action::Redial(peer));
            }
        }
    }

    /// The run's deadlines: start-up and the first trusted manifest, then idleness.
    fn check_deadlines(&self, now: Instant) -> Result<(), SubscribeError> {
        let manifest_timeout = self.config.manifest_timeout;
        if self.config.require_manifest
            && self.manifests == 0
            && now >= self.started + manifest_timeout
        {
            return Err(SubscribeError::NoManifest(manifest_timeout));
        }
        let idle = self.config.idle_timeout;
        let Some(first) = self.first_object else {
            let startup = idle.max(manifest_timeout);
            if now < self.started + startup {
                return Ok(());
            }
            // Unreachable: no chunk source ever answered, or a manifests peer did not.
            let sources_up = self.peers.iter().any(|p| p.role.source.is_some() && p.up);
            let unreachable = self
                .peers
                .iter()
                .find(|p| !p.up && (p.role.source.is_none() || !sources_up));
            return Err(match unreachable {
                Some(p) => SubscribeError::Connect(p.role.name.clone(), NetError::IdleTimeout),
                None => SubscribeError::Idle(startup),
            });
        };
        if now >= self.last_object + idle {
            return Err(SubscribeError::Idle(idle));
        }
        if now >= self.last_verified.unwrap_or(first) + idle {
            let rejected = self.verifier.rejected_objects() - self.rejected_at_verified;
            return Err(SubscribeError::NothingVerified(idle, rejected));
        }
        Ok(())
    }

    /// Takes the verifier's events: orders and writes accepted chunks, counts manifests, blames
    /// rejections.
    fn drain(&mut self, at: Moment) -> Result<(), SubscribeError> {
        while let Some(verdict) = self.verifier.poll_event() {
            match verdict {
                Verdict::Chunk(chunk) => {
                    timing::mark(Stage::Verified, chunk.index);
                    self.swarm.accepted(chunk.index, at.now);
                    self.last_verified = Some(at.now);
                    self.rejected_at_verified = self.verifier.rejected_objects();
                    // The lowest chunk still awaited, wherever it lies: a repaired gap's first
                    // chunk goes out, the chunks past the gap wait for the rest of it.
                    let missing = self.swarm.first_wanted();
                    let ready = self.reorder.push(chunk.index, chunk, missing);
                    self.write(ready, at);
                }
                Verdict::Manifest {
                    id,
                    signer,
                    epoch,
                    created,
                    covers: (first, last),
                    ..
                } => {
                    self.manifests += 1;
                    match self.start {
                        Some(_) => self.expect(first, last, at.now),
                        None if self.early_covers.len() < MANIFEST_TIMES => {
                            self.early_covers.push((first, last))
                        }
                        None => {}
                    }
                    if self.manifest_times.len() == MANIFEST_TIMES {
                        self.manifest_times.pop_front();
                    }
                    self.manifest_times.push_back((id, created));
                    log::debug!("manifest for epoch {epoch} from {signer}");
                    // Accepted only as it is pushed, and only once: a copy from another peer
                    // is ignored by the verifier, so never passed on twice.
                    if let Some((group, bytes)) = self.pushing_manifest.take() {
                        self.actions.push_back(Action::PassOn(group, bytes));
                    }
                }
                Verdict::Rejected(r) => {
                    log::warn!("rejected: {r}");
                    // The object just pushed, or one that waited for its manifest (then it was
                    // placed at its own index).
                    let blamed = self
                        .pushing_from
                        .or_else(|| r.index.and_then(|i| self.source_of.get(&i).copied()));
                    if let Some(source) = blamed {
                        self.swarm.rejected(source, r.reason, at.now);
                    }
                }
                Verdict::ChainGap { signer, missing } => {
                    log::info!("manifest chain of {signer} skips {missing:?}")
                }
                Verdict::ChainBreak { signer, sequence } => {
                    log::warn!("manifest chain of {signer} breaks at {sequence}")
                }
            }
        }
        let invalid = self.verifier.rejected_objects();
        match self.config.max_invalid {
            Some(max) if invalid > max => Err(SubscribeError::TooManyInvalid(invalid)),
            _ => Ok(()),
        }
    }

    /// A chunk object at `index` past a gap since the newest one (the source was cut off or
    /// redialled): the chunks in between are fetched, from the best source, if narrow enough.
    fn repair_chunks(&mut self, index: ChunkIndex, now: Instant) {
        if let Some(n) = self.newest_chunk.filter(|n| index.0 > n.0 + 1) {
            if index.0 - n.0 <= GAP_REPAIR {
                for missed in n.0 + 1..index.0 {
                    self.swarm.missing(ChunkIndex(missed), now);
                }
            }
        }
        self.newest_chunk = Some(self.newest_chunk.map_or(index, |n| n.max(index)));
    }

    /// A manifest group past a gap since the newest one: the groups in between are fetched from
    /// the peer that sent it, if narrow enough, so the chunks they vouch for can verify.
    fn repair_manifests(&mut self, peer: usize, group: GroupId) {
        if let Some(n) = self.newest_manifest.filter(|n| group.0 > n.0 + 1) {
            if group.0 - n.0 <= GAP_REPAIR {
                self.actions.push_back(Action::Ask {
                    peer,
                    kind: TrackKind::Manifests,
                    ask: Ask::Fetch(GroupId(n.0 + 1), GroupId(group.0 - 1)),
                });
            }
        }
        self.newest_manifest = Some(self.newest_manifest.map_or(group, |n| n.max(group)));
    }

    /// The chunks `first..=last` a manifest vouches for are awaited (from the live source, then
    /// others), except those before the first chunk object or already written.
    fn expect(&mut self, first: ChunkIndex, last: ChunkIndex, now: Instant) {
        let Some(start) = self.start else {
            return;
        };
        let after = self.newest_handed.map_or(start.0, |n| n.0 + 1).max(start.0);
        for i in first.0.max(after)..=last.0 {
            self.swarm.expected(ChunkIndex(i), now);
        }
    }

    /// Hands verified chunks to the output in the order given, up to `stop_after`.
    fn write(&mut self, ready: Vec<(ChunkIndex, AcceptedChunk)>, at: Moment) {
        for (index, chunk) in ready {
            if self.done() {
                return;
            }
            // Written by an earlier run into the folder this one resumes.
            if self.newest_handed.is_some_and(|n| index <= n) {
                continue;
            }
            let duration = chunk
                .vouched
                .map_or(self.config.chunk_ticks, |(_, d)| u64::from(d));
            // A chunk no source held leaves a gap: players must not bridge the timestamps.
            let gap = self.newest_handed.is_some_and(|n| index.0 > n.0 + 1);
            let discontinuity = chunk.flags.discontinuity() || gap;
            let entry = SegmentEntry {
                index,
                duration,
                discontinuity,
                date_time: self.clock.next(duration, discontinuity, at.wall),
            };
            let fetched = self.backfill.contains(&index);
            if fetched {
                self.backfilled += 1;
            }
            let created = (!fetched).then(|| self.created(chunk.vouched)).flatten();
            let segment = Segment {
                entry,
                bytes: chunk.bytes,
                created,
                sealed: self.take_sealed(index),
            };
            self.actions.push_back(Action::Write(segment));
            self.handed += 1;
            self.newest_handed = Some(index);
            // What is at or below the newest chunk written will never be written again.
            let after = ChunkIndex(index.0.saturating_add(1));
            self.backfill = self.backfill.split_off(&after);
            self.refetching = self.refetching.split_off(&after);
        }
    }

    /// The sealed object of chunk `index`, about to be written; objects of earlier chunks will
    /// never be (they were late or rejected) and are dropped with it.
    fn take_sealed(&mut self, index: ChunkIndex) -> Option<Arc<[u8]>> {
        let later = self
            .sealed
            .split_off(&ChunkIndex(index.0.saturating_add(1)));
        let taken = self.sealed.remove(&index);
        self.sealed = later;
        taken
    }

    /// When the manifest that vouched for a chunk was created, if it is remembered.
    fn created(&self, vouched: Option<(ManifestId, u32)>) -> Option<UnixMillis> {
        let (id, _) = vouched?;
        self.manifest_times
            .iter()
            .rev()
            .find(|(m, _)| *m == id)
            .map(|(_, t)| *t)
    }
}

/// Adds `index` to a set of remembered chunk indices, forgetting the oldest past
/// [`FETCHES_REMEMBERED`].
fn remember(set: &mut BTreeSet<ChunkIndex>, index: ChunkIndex) {
    set.insert(index);
    while set.len() > FETCHES_REMEMBERED {
        set.pop_first();
    }
}

#[cfg(test)]
mod tests;
