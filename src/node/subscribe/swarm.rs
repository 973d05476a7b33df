//! [`Swarm`]: which of several uncoordinated sources serves the subscriber's chunks, and what
//! to do when one stalls, lies or leaves — so the viewer sees neither.
//!
//! A sans-I/O owner: it is told what happened (a source is up or gone, an object arrived, the
//! verifier accepted a chunk or rejected an object from a source, a trusted manifest says a
//! chunk exists) with the time,
//! and hands back [`Action`]s: take the live subscription at a source, fetch one group from a
//! source, redial a source. It never touches a socket or reads the clock.
//!
//! The rules (docs/PROTOCOL.md, "Swarm"):
//! - Each chunk is pulled from one source. The live subscription is held by the best source
//!   that is up; sources start equal and ties go to the order given, so the first is tried
//!   first (at start, a source that is up waits up to [`STARTUP_GRACE`] for sources given
//!   before it that are still connecting). A source's score is the mean delay of its recent
//!   deliveries — past the chunk's expected time, or for a fetch past the moment it was asked —
//!   plus a penalty for every timeout and rejection; a source that has delivered nothing yet
//!   is scored [`UNPROVEN_DELAY_MS`], so one known to hold the stream goes first.
//! - A chunk a trusted manifest vouches for and that was not accepted `group_timeout` after the
//!   subscriber learned of it is fetched from the next-best source that was not asked for it
//!   yet, another one than the source waited for if there is one (the live source may be
//!   fetched from too: its live subscription may have started after the chunk); one timeout
//!   per source per chunk at most. The live source after two timeouts in a row
//!   hands the live subscription to the best other source (it may be gone without a word).
//! - An object the verifier rejects costs its source a penalty, and every chunk awaited from it
//!   is fetched elsewhere at once; after `max_invalid` rejections the source is demoted: asked for nothing
//!   for a back-off that doubles on each demotion (from `demote_for`), then redialled and
//!   re-admitted with a clean count (the subscriber closes a demoted source's connection, so it
//!   sends nothing meanwhile). A lone source is never demoted: there is nobody else to ask.
//! - A source whose connection ends is redialled with exponential back-off (`redial_min` doubling
//!   to `redial_max` with each redial, [`Backoff`]); if it held the live subscription, the
//!   next-best source takes it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::chunk::ChunkIndex;
use crate::manifest::Reason;
use crate::retry::Backoff;

/// A source's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Dialled, session not up yet.
    Connecting,
    /// Up and trusted to serve.
    Up,
    /// Lied too often: asked for nothing until then.
    Demoted {
        /// When it is re-admitted.
        until: Instant,
    },
    /// Its connection ended: redialled then.
    Gone {
        /// When to redial.
        redial_at: Instant,
    },
}

impl SourceState {
    /// The state's name for people and JSON: `connecting`, `ok`, `demoted` or `gone`.
    pub fn name(self) -> &'static str {
        match self {
            // A source being dialled (again) is not known to be up: a dead node redialled in a
            // loop must not read as healthy.
            SourceState::Connecting => "connecting",
            SourceState::Up => "ok",
            SourceState::Demoted { .. } => "demoted",
            SourceState::Gone { .. } => "gone",
        }
    }
}

/// What one source did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Chunk objects it delivered.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Its objects the verifier rejected, by reason.
    pub rejections: BTreeMap<Reason, u64>,
    /// Chunks it was asked for and did not deliver in time.
    pub timeouts: u64,
    /// Times it was redialled.
    pub reconnects: u64,
}

/// What the subscriber should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Take the live subscription (with late join) at this source.
    Subscribe(usize),
    /// Fetch one chunk's group from this source.
    Fetch {
        /// The source.
        source: usize,
        /// The chunk index (= the group id).
        index: ChunkIndex,
    },
    /// Dial this source again.
    Redial(usize),
}

/// The swarm's tunables.
#[derive(Clone, Copy, Debug)]
pub struct SwarmConfig {
    /// How long a chunk known to exist may take to arrive before another source is asked.
    pub group_timeout: Duration,
    /// Rejections after which a source is demoted.
    pub max_invalid: u32,
    /// The first demotion's length (doubling on each further one, up to 16 times it).
    pub demote_for: Duration,
    /// The first redial delay (doubling up to `redial_max`).
    pub redial_min: Duration,
    /// The longest redial delay.
    pub redial_max: Duration,
}

impl Default for SwarmConfig {
    fn default() -> SwarmConfig {
        SwarmConfig {
            group_timeout: Duration::from_secs(2),
            max_invalid: 3,
            demote_for: Duration::from_secs(30),
            redial_min: Duration::from_millis(500),
            redial_max: Duration::from_secs(30),
        }
    }
}

/// One source.
struct Source {
    state: SourceState,
    /// Mean recent delay past expectation, milliseconds (exponentially weighted).
    delay_ms: f64,
    /// Penalty points (timeouts and rejections), decaying with good deliveries.
    penalty: f64,
    invalid: u32,
    /// How long its next demotion lasts: `demote_for`, doubling with each one up to 16 times it.
    demotion: Backoff,
    /// The wait before its next redial: longer with every redial (never reset, so a source
    /// that keeps leaving is dialled ever less often, up to `redial_max`).
    redial: Backoff,
    /// Timeouts in a row (reset by a delivery).
    stalls: u32,
    stats: SourceStats,
}

impl Source {
    fn score(&self) -> f64 {
        let delay = match self.stats.chunks {
            0 => UNPROVEN_DELAY_MS,
            _ => self.delay_ms,
        };
        delay + 1000.0 * self.penalty
    }

    fn usable(&self) -> bool {
        self.state == SourceState::Up
    }
}

/// A chunk known to exist and not delivered yet.
struct Wanted {
    /// When the current source is given up on.
    deadline: Instant,
    /// When the subscriber learned of it (a live delivery's delay is measured from here).
    since: Instant,
    /// The source last fetched from and when (its delivery's delay is measured from then).
    fetched: Option<(usize, Instant)>,
    /// The source waited for: the live one, then the last one fetched from.
    waiting: Option<usize>,
    /// The sources it was fetched from so far.
    asked: Vec<usize>,
    /// Whether the deadline was moved up because the source left or lied (not a timeout).
    forced: bool,
    /// Times the waited source said it does not have the chunk (yet) and is asked again.
    retries: u32,
    /// Whether the waited source is asked again at the deadline (it did not have it yet).
    again: bool,
}

/// Chunks remembered as accepted, so a late manifest does not ask for them again.
const ACCEPTED_MEMORY: usize = 4096;
/// The longest demotion, in multiples of the first (`demote_for`).
const MAX_DEMOTION_FACTOR: u32 = 16;
/// Timeouts in a row after which the live source hands the live subscription on.
const STALLS_BEFORE_HANDOVER: u32 = 2;
/// How often a source that did not have a chunk yet is asked for it again.
pub const FETCH_RETRIES: u32 = 5;
/// How long after such an answer it is asked again.
const FETCH_RETRY_AFTER: Duration = Duration::from_millis(200);
/// The delay a source that has delivered nothing is scored with: as much as one timeout's
/// penalty, far above a real delivery's tens of milliseconds, so that after a handover the
/// source that just answered a fetch takes the live subscription rather than one never heard
/// from (`bench swarm --kill-after` showed the latter every time).
const UNPROVEN_DELAY_MS: f64 = 1000.0;
/// How long, at start, the first source up waits for sources given before it to come up, so
/// that ties go to the order given rather than to whichever handshake finished first.
pub const STARTUP_GRACE: Duration = Duration::from_millis(250);

/// The sources of one stream's chunks.
pub struct Swarm {
    config: SwarmConfig,
    sources: Vec<Source>,
    live: Option<usize>,
    /// Until when the first live subscription waits for sources given before the first one up
    /// (`None` before any is up, and once the grace is over or the live subscription placed).
    grace_until: Option<Instant>,
    /// Whether a source has come up yet.
    any_up: bool,
    wanted: BTreeMap<ChunkIndex, Wanted>,
    accepted: BTreeMap<ChunkIndex, Instant>,
    actions: Vec<Action>,
}

impl Swarm {
    /// `n` sources, all connecting.
    pub fn new(n: usize, config: SwarmConfig) -> Swarm {
        Swarm {
            config,
            sources: (0..n)
                .map(|_| Source {
                    state: SourceState::Connecting,
                    delay_ms: 0.0,
                    penalty: 0.0,
                    invalid: 0,
                    demotion: Backoff::new(
                        config.demote_for,
                        config.demote_for.saturating_mul(MAX_DEMOTION_FACTOR),
                    ),
                    redial: Backoff::new(config.redial_min, config.redial_max),
                    stalls: 0,
                    stats: SourceStats::default(),
                })
                .collect(),
            live: None,
            grace_until: None,
            any_up: false,
            wanted: BTreeMap::new(),
            accepted: BTreeMap::new(),
            actions: Vec::new(),
        }
    }

    /// The source holding the live subscription.
    pub fn live(&self) -> Option<usize> {
        self.live
    }

    /// A source's standing and figures.
    pub fn source(&self, at: usize) -> (SourceState, &SourceStats) {
        (self.sources[at].state, &self.sources[at].stats)
    }

    /// The session with `at` is up.
    pub fn connected(&mut self, at: usize, now: Instant) {
        if matches!(self.sources[at].state, SourceState::Connecting) {
            self.sources[at].state = SourceState::Up;
        }
        if !self.any_up {
            self.any_up = true;
            self.grace_until = Some(now + STARTUP_GRACE);
        }
        self.place_live(now);
    }

    /// The connection to `at` ended.
    pub fn gone(&mut self, at: usize, now: Instant) {
        let source = &mut self.sources[at];
        source.state = SourceState::Gone {
            redial_at: now + source.redial.peek(),
        };
        self.leave(at, now);
    }

    /// The dial of `at` was redone (its session is connecting again).
    pub fn redialled(&mut self, at: usize) {
        let source = &mut self.sources[at];
        // Each redial, after a departure or a demotion, doubles the wait before the next.
        source.redial.next_wait();
        source.stats.reconnects += 1;
        source.state = SourceState::Connecting;
    }

    /// A trusted manifest says chunk `index` exists: it is waited for from the live source.
    pub fn expected(&mut self, index: ChunkIndex, now: Instant) {
        let live = self.live;
        self.await_chunk(index, now + self.config.group_timeout, live, now);
    }

    /// Chunk `index` was skipped (a later one arrived first, after a cut): it is fetched from
    /// the best source at once, charging nobody a timeout.
    pub fn missing(&mut self, index: ChunkIndex, now: Instant) {
        self.await_chunk(index, now, None, now);
    }

    /// Awaits chunk `index` (unless accepted or awaited already) from `waiting` until
    /// `deadline`; with no source waited for, nobody is charged when it passes.
    fn await_chunk(
        &mut self,
        index: ChunkIndex,
        deadline: Instant,
        waiting: Option<usize>,
        now: Instant,
    ) {
        if self.accepted.contains_key(&index) || self.wanted.contains_key(&index) {
            return;
        }
        self.wanted.insert(
            index,
            Wanted {
                deadline,
                since: now,
                fetched: None,
                waiting,
                asked: Vec::new(),
                forced: waiting.is_none(),
                retries: 0,
                again: false,
            },
        );
    }

    /// `at` delivered an object placed at chunk `index` (`bytes` long); false when that chunk
    /// was accepted already (a second copy, to drop).
    pub fn received(&mut self, at: usize, index: ChunkIndex, bytes: usize, now: Instant) -> bool {
        let source = &mut self.sources[at];
        source.stats.chunks += 1;
        source.stats.bytes += bytes as u64;
        source.stalls = 0;
        let delay = self.wanted.get(&index).map_or(0.0, |w| {
            let from = match w.fetched {
                Some((source, asked)) if source == at => asked,
                _ => w.since,
            };
            now.saturating_duration_since(from).as_secs_f64() * 1000.0
        });
        source.delay_ms = 0.8 * source.delay_ms + 0.2 * delay;
        source.penalty *= 0.9;
        !self.accepted.contains_key(&index)
    }

    /// The verifier accepted chunk `index`: it is no longer awaited.
    pub fn accepted(&mut self, index: ChunkIndex, now: Instant) {
        self.wanted.remove(&index);
        self.accepted.insert(index, now);
        while self.accepted.len() > ACCEPTED_MEMORY {
            self.accepted.pop_first();
        }
    }

    /// `at` answered a FETCH of chunk `index` without it (nothing cached yet, or the stream was
    /// reset): it is asked again a moment later, up to [`FETCH_RETRIES`] times, before the
    /// chunk's deadline moves on to the next source.
    pub fn fetch_failed(&mut self, at: usize, index: ChunkIndex, now: Instant) {
        let Some(wanted) = self.wanted.get_mut(&index) else {
            return;
        };
        if wanted.waiting != Some(at) || wanted.retries >= FETCH_RETRIES {
            return;
        }
        wanted.retries += 1;
        wanted.again = true;
        wanted.forced = true; // not a timeout of `at`
        wanted.deadline = now + FETCH_RETRY_AFTER.min(self.config.group_timeout);
    }

    /// The verifier rejected an object `at` delivered: every chunk awaited from it is asked of
    /// another source at once.
    pub fn rejected(&mut self, at: usize, reason: Reason, now: Instant) {
        let alone = self.sources.len() == 1;
        let source = &mut self.sources[at];
        *source.stats.rejections.entry(reason).or_default() += 1;
        source.penalty += 1.0;
        source.invalid += 1;
        // A lone source is never demoted: there is nobody else to ask.
        if source.invalid >= self.config.max_invalid && !alone {
            source.invalid = 0;
            source.state = SourceState::Demoted {
                until: now + source.demotion.next_wait(),
            };
        }
        self.leave(at, now);
    }

    /// Advances the clocks: timed-out chunks are asked of the next source, demotions and redial
    /// delays that ended are acted on. Returns what to do.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        self.place_live(now);
        for at in 0..self.sources.len() {
            match self.sources[at].state {
                SourceState::Demoted { until: due } | SourceState::Gone { redial_at: due }
                    if due <= now =>
                {
                    // Redialled: it reports `redialled` then `connected` or `gone` again.
                    self.sources[at].state = SourceState::Gone {
                        redial_at: now + self.config.redial_max,
                    };
                    self.actions.push(Action::Redial(at));
                }
                _ => {}
            }
        }
        let due: Vec<ChunkIndex> = self
            .wanted
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(i, _)| *i)
            .collect();
        for index in due {
            let Some(wanted) = self.wanted.get(&index) else {
                continue;
            };
            if wanted.again && wanted.waiting.is_some_and(|w| self.sources[w].usable()) {
                let wanted = self.wanted.get_mut(&index).expect("present above");
                wanted.again = false;
                wanted.forced = false;
                wanted.deadline = now + self.config.group_timeout;
                if let Some(source) = wanted.waiting {
                    wanted.fetched = Some((source, now));
                    self.actions.push(Action::Fetch { source, index });
                }
                continue;
            }
            let asked = wanted.asked.clone();
            let waiting = wanted.waiting;
            if let (Some(waited), false) = (waiting, wanted.forced) {
                let s = &mut self.sources[waited];
                s.stats.timeouts += 1;
                s.penalty += 1.0;
                s.stalls += 1;
                if self.live == Some(waited) && s.stalls >= STALLS_BEFORE_HANDOVER {
                    self.hand_over(waited);
                }
            }
            let next = self
                .best(|i| !asked.contains(&i) && Some(i) != waiting)
                .or_else(|| self.best(|i| !asked.contains(&i)));
            match next {
                Some(next) => {
                    let wanted = self.wanted.get_mut(&index).expect("present above");
                    wanted.asked.push(next);
                    wanted.waiting = Some(next);
                    wanted.fetched = Some((next, now));
                    wanted.deadline = now + self.config.group_timeout;
                    wanted.forced = false;
                    wanted.again = false;
                    self.actions.push(Action::Fetch {
                        source: next,
                        index,
                    });
                }
                // Every usable source was asked: the chunk is lost unless one still delivers.
                None => {
                    self.wanted.remove(&index);
                }
            }
        }
        std::mem::take(&mut self.actions)
    }

    /// The lowest chunk still awaited (later chunks wait for it before they are written).
    pub fn first_wanted(&self) -> Option<ChunkIndex> {
        self.wanted.keys().next().copied()
    }

    /// When [`Swarm::poll`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let wanted = self.wanted.values().map(|w| w.deadline);
        let sources = self.sources.iter().filter_map(|s| match s.state {
            SourceState::Demoted { until } => Some(until),
            SourceState::Gone { redial_at } => Some(redial_at),
            _ => None,
        });
        wanted.chain(sources).chain(self.grace_until).min()
    }

    /// The best usable source among those `allowed`: lowest score, ties to the lowest index.
    fn best(&self, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(i, s)| s.usable() && allowed(*i))
            .min_by(|(_, a), (_, b)| a.score().total_cmp(&b.score()))
            .map(|(i, _)| i)
    }

    /// The live source `from` stalls: the best other usable source takes the live subscription
    /// (`from` keeps its own; a copy of a chunk already accepted is dropped).
    fn hand_over(&mut self, from: usize) {
        if let Some(next) = self.best(|i| i != from) {
            self.sources[from].stalls = 0;
            self.live = Some(next);
            self.actions.push(Action::Subscribe(next));
        }
    }

    /// Gives the live subscription to the best usable source if nobody holds it — at start,
    /// once no source given before it is still connecting for the first time, or the grace
    /// is over.
    fn place_live(&mut self, now: Instant) {
        // A passed grace is never waited for again (a deadline in the past would make the
        // caller's wait zero).
        if self.grace_until.is_some_and(|t| now >= t) {
            self.grace_until = None;
        }
        if self.live.is_some_and(|l| self.sources[l].usable()) {
            return;
        }
        let Some(best) = self.best(|_| true) else {
            self.live = None;
            return;
        };
        let starting = self.grace_until.is_some_and(|t| now < t);
        let earlier_connecting = self.sources[..best]
            .iter()
            .any(|s| s.state == SourceState::Connecting && s.stats.reconnects == 0);
        if starting && earlier_connecting {
            return;
        }
        self.grace_until = None;
        self.live = Some(best);
        self.actions.push(Action::Subscribe(best));
    }

    /// Source `at` is not to be waited for: its chunks are due elsewhere at once, and the live
    /// subscription moves on if it held it and is no longer usable.
    fn leave(&mut self, at: usize, now: Instant) {
        for wanted in self.wanted.values_mut() {
            if wanted.waiting == Some(at) {
                wanted.deadline = now;
                wanted.forced = true;
            }
        }
        if self.live == Some(at) && !self.sources[at].usable() {
            self.live = None;
            self.place_live(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm(n: usize) -> (Swarm, Instant) {
        let config = SwarmConfig {
            group_timeout: Duration::from_millis(500),
            max_invalid: 2,
            demote_for: Duration::from_secs(10),
            redial_min: Duration::from_secs(1),
            redial_max: Duration::from_secs(8),
        };
        (Swarm::new(n, config), Instant::now())
    }

    fn ms(t: Instant, ms: u64) -> Instant {
        t + Duration::from_millis(ms)
    }

    #[test]
    fn a_source_being_dialled_is_not_reported_up() {
        assert_eq!(SourceState::Connecting.name(), "connecting");
        assert_eq!(SourceState::Up.name(), "ok");
    }

    #[test]
    fn ties_go_to_the_order_given_even_when_a_later_source_comes_up_first() {
        // The second source is up first: it waits for the first, which comes up in time.
        let (mut s, t) = swarm(3);
        s.connected(1, t);
        assert_eq!(s.poll(ms(t, 100)), []);
        assert_eq!(s.live(), None);
        s.connected(0, ms(t, 150));
        assert_eq!(s.poll(ms(t, 150)), [Action::Subscribe(0)]);
        assert_eq!(s.live(), Some(0));
        // The first never comes up: after the grace the best source that is up takes it.
        let (mut s, t) = swarm(3);
        s.connected(2, t);
        assert_eq!(s.poll_timeout(), Some(t + STARTUP_GRACE));
        assert_eq!(s.poll(ms(t, 100)), []);
        assert_eq!(s.poll(t + STARTUP_GRACE), [Action::Subscribe(2)]);
        // The first up, the first given: at once.
        let (mut s, t) = swarm(3);
        s.connected(0, t);
        assert_eq!(s.poll(t), [Action::Subscribe(0)]);
        // The grace is over for good: a lone source gone later leaves nothing due but its
        // redial (no deadline in the past to spin on).
        let (mut s, t) = swarm(1);
        s.connected(0, t);
        s.poll(t);
        s.gone(0, ms(t, 5000));
        assert_eq!(s.poll_timeout(), Some(ms(t, 6000)));
    }

    #[test]
    fn a_skipped_chunk_is_fetched_at_once_from_the_best_source_without_blame() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        s.missing(ChunkIndex(4), t);
        assert_eq!(s.first_wanted(), Some(ChunkIndex(4)));
        assert_eq!(
            s.poll(t),
            [Action::Fetch {
                source: 0,
                index: ChunkIndex(4)
            }]
        );
        assert_eq!(s.source(0).1.timeouts, 0);
        s.received(0, ChunkIndex(4), 100, ms(t, 30));
        s.accepted(ChunkIndex(4), ms(t, 30));
        assert_eq!(s.first_wanted(), None);
        // Already accepted: not asked again.
        s.missing(ChunkIndex(4), ms(t, 40));
        assert_eq!(s.poll(ms(t, 40)), []);
    }

    #[test]
    fn a_chunk_not_delivered_in_time_is_fetched_from_the_next_source_once_each() {
        let (mut s, t) = swarm(3);
        for i in 0..3 {
            s.connected(i, t);
        }
        s.poll(t);
        s.expected(ChunkIndex(7), t);
        assert_eq!(s.poll(ms(t, 400)), []);
        assert_eq!(
            s.poll(ms(t, 500)),
            [Action::Fetch {
                source: 1,
                index: ChunkIndex(7)
            }]
        );
        assert_eq!(s.source(0).1.timeouts, 1);
        assert_eq!(
            s.poll(ms(t, 1000)),
            [Action::Fetch {
                source: 2,
                index: ChunkIndex(7)
            }]
        );
        // The live source is fetched from too (its subscription may have started later).
        assert_eq!(
            s.poll(ms(t, 1500)),
            [Action::Fetch {
                source: 0,
                index: ChunkIndex(7)
            }]
        );
        // Every source was asked: given up, not asked again; the live source, having stalled
        // twice in a row, hands the live subscription on.
        assert_eq!(s.poll(ms(t, 2000)), [Action::Subscribe(1)]);
        assert_eq!(s.poll(ms(t, 5000)), []);
    }

    #[test]
    fn after_a_handover_the_source_that_answered_takes_the_live_subscription() {
        let (mut s, t) = swarm(3);
        for i in 0..3 {
            s.connected(i, t);
        }
        assert_eq!(s.poll(t), [Action::Subscribe(0)]);
        // Source 0 dies silently: chunk 7 is fetched from source 1, which delivers it.
        s.expected(ChunkIndex(7), t);
        let fetch7 = Action::Fetch {
            source: 1,
            index: ChunkIndex(7),
        };
        assert_eq!(s.poll(ms(t, 500)), [fetch7]);
        assert!(s.received(1, ChunkIndex(7), 100, ms(t, 540)));
        s.accepted(ChunkIndex(7), ms(t, 540));
        // Chunk 8 times out on source 0 too: its second stall in a row hands the live
        // subscription to source 1, proven, not to source 2, never heard from.
        s.expected(ChunkIndex(8), ms(t, 1000));
        let actions = s.poll(ms(t, 1500));
        assert!(actions.contains(&Action::Subscribe(1)), "{actions:?}");
        assert_eq!(s.live(), Some(1));
    }

    #[test]
    fn a_delivered_chunk_is_not_asked_for_again() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        s.expected(ChunkIndex(3), t);
        assert!(s.received(0, ChunkIndex(3), 100, ms(t, 100)));
        s.accepted(ChunkIndex(3), ms(t, 101));
        assert!(!s.received(1, ChunkIndex(3), 100, ms(t, 120)));
        s.expected(ChunkIndex(3), ms(t, 200));
        assert_eq!(s.poll(ms(t, 2000)), []);
        assert_eq!(s.source(0).1.chunks, 1);
    }

    #[test]
    fn a_source_without_the_chunk_yet_is_asked_again_shortly_not_charged_a_timeout() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        s.expected(ChunkIndex(5), t);
        let fetch = |source| Action::Fetch {
            source,
            index: ChunkIndex(5),
        };
        assert_eq!(s.poll(ms(t, 500)), [fetch(1)]);
        s.fetch_failed(1, ChunkIndex(5), ms(t, 510));
        assert_eq!(s.poll(ms(t, 600)), []);
        assert_eq!(s.poll(ms(t, 710)), [fetch(1)]);
        assert_eq!(s.source(1).1.timeouts, 0);
    }

    #[test]
    fn a_live_source_that_stalls_twice_in_a_row_hands_the_live_subscription_over() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        s.expected(ChunkIndex(1), t);
        s.expected(ChunkIndex(2), t);
        let actions = s.poll(ms(t, 500));
        assert!(actions.contains(&Action::Subscribe(1)), "{actions:?}");
        assert_eq!(s.live(), Some(1));
        assert_eq!(s.source(0).1.timeouts, 2);
    }

    #[test]
    fn rejections_refetch_at_once_then_demote_and_readmit_later() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        s.expected(ChunkIndex(1), t);
        s.received(0, ChunkIndex(1), 10, t);
        s.rejected(0, Reason::IdMismatch, t);
        assert_eq!(
            s.poll(t),
            [Action::Fetch {
                source: 1,
                index: ChunkIndex(1)
            }]
        );
        s.rejected(0, Reason::Aead, ms(t, 10));
        assert!(matches!(s.source(0).0, SourceState::Demoted { .. }));
        // The live subscription moved to the honest source; the liar is asked for nothing.
        let actions = s.poll(ms(t, 10));
        assert!(actions.contains(&Action::Subscribe(1)), "{actions:?}");
        assert_eq!(s.live(), Some(1));
        s.expected(ChunkIndex(9), ms(t, 20));
        assert!(s
            .poll(ms(t, 2000))
            .iter()
            .all(|a| !matches!(a, Action::Fetch { source: 0, .. })));
        // After the demotion it is redialled and back, with a clean count.
        assert!(s.poll(ms(t, 10_011)).contains(&Action::Redial(0)));
        s.redialled(0);
        s.connected(0, t);
        assert_eq!(s.source(0).0, SourceState::Up);
        assert_eq!(s.source(0).1.rejections[&Reason::IdMismatch], 1);
    }

    #[test]
    fn each_demotion_lasts_twice_as_long_as_the_last_up_to_16_times_the_first() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        let mut now = t;
        let mut lengths = Vec::new();
        for _ in 0..6 {
            s.rejected(0, Reason::Aead, now);
            s.rejected(0, Reason::Aead, now);
            let SourceState::Demoted { until } = s.source(0).0 else {
                panic!("not demoted: {:?}", s.source(0).0);
            };
            lengths.push((until - now).as_secs());
            assert!(s.poll(until).contains(&Action::Redial(0)));
            s.redialled(0);
            s.connected(0, until);
            now = until;
        }
        assert_eq!(lengths, [10, 20, 40, 80, 160, 160]);
        // Those redials count for the redial back-off too: leaving now waits its longest.
        s.gone(0, now);
        assert_eq!(
            s.source(0).0,
            SourceState::Gone {
                redial_at: now + Duration::from_secs(8)
            }
        );
    }

    #[test]
    fn a_source_that_leaves_hands_over_the_live_subscription_and_is_redialled_with_backoff() {
        let (mut s, t) = swarm(2);
        s.connected(0, t);
        s.connected(1, t);
        s.poll(t);
        s.expected(ChunkIndex(4), t);
        s.gone(0, t);
        let actions = s.poll(t);
        assert!(actions.contains(&Action::Subscribe(1)), "{actions:?}");
        assert!(actions.contains(&Action::Fetch {
            source: 1,
            index: ChunkIndex(4)
        }));
        assert_eq!(s.poll(ms(t, 999)), []);
        assert_eq!(s.poll(ms(t, 1000)), [Action::Redial(0)]);
        s.redialled(0);
        s.gone(0, ms(t, 1100));
        // The second redial waits twice as long.
        assert_eq!(s.poll(ms(t, 3000)), []);
        assert_eq!(s.poll(ms(t, 3100)), [Action::Redial(0)]);
        assert_eq!(s.source(0).1.reconnects, 1);
        assert_eq!(s.source(0).0.name(), "gone");
    }
}
