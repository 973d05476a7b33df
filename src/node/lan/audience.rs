//! [`Audience`]: who watches which channel of the LAN hub, and the rules that follow from it —
//! admission, each viewer's bounded queue, the slow-viewer rule, and when a channel is released.
//!
//! A sans-I/O owner. It is fed events with the time they happened (a viewer asks to watch or
//! leaves, an HLS client asks, a chunk arrives, a read ends, a deadline passed) and answers with
//! [`Action`]s to carry out — open a read, close a read, wake a viewer — and its next deadline
//! ([`Audience::poll_timeout`]). It never reads the clock and never touches a socket, a thread or
//! a tuner: the hub (`node::lan::hub`) carries out its actions and sleeps until that deadline.
//!
//! The rules:
//! - **Admission.** At most `max_viewers` `/auto/` viewers over all channels; one more is refused
//!   with 809. A channel that is not open takes the first of its carriers with a free tuner (a
//!   mesh carrier takes none), else it is refused with 805; an open channel always takes more
//!   viewers. The check and the admission are one step, so concurrent joins cannot pass the limit.
//! - **Joining.** A new viewer's queue starts with the channel's newest whole chunk (each chunk
//!   begins at a random access point), so its first byte leaves at once.
//! - **Queues.** A viewer's queue holds at most [`VIEWER_QUEUE`] chunks. A chunk that finds it
//!   full is missed (counted); [`MAX_SKIPS_IN_A_ROW`] missed in a row drop the viewer. A viewer
//!   that was dropped, or whose channel closed, still takes what its queue holds, then is told
//!   the stream ended; it no longer counts against `max_viewers`.
//! - **Release.** An open channel is watched while it has a viewer, or an HLS client that asked
//!   for something within `hls_idle` (an HLS client "leaves" by going quiet). It is closed
//!   `release` after it was last watched; its tuner is free once the hub reports its read ended
//!   (a device frees a tuner only when the connection closes).
//!
//! Bounds: live viewers ≤ `max_viewers`; a dropped viewer stays (with at most [`VIEWER_QUEUE`]
//! chunks) only until its thread leaves, which it does as soon as it is woken; HLS clients are
//! those heard from within `hls_idle`, pruned on every request and deadline; reads ≤ open
//! channels plus reads closing.

use crate::hdhr::DeviceError;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Chunks a viewer's queue holds before it misses the next one.
pub const VIEWER_QUEUE: usize = 4;
/// Chunks missed in a row after which a viewer is dropped.
pub const MAX_SKIPS_IN_A_ROW: u32 = 3;

/// A whole chunk's bytes, shared by every queue that holds it.
pub type ChunkBytes = Arc<[u8]>;

/// One `/auto/` viewer, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewerId {
    channel: usize,
    serial: u64,
}

/// One read of a channel from a carrier, never reused: chunks and the end of a read that was
/// already closed are told apart from those of the channel's next read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(u64);

impl ViewerId {
    /// The channel it watches.
    pub fn channel(&self) -> usize {
        self.channel
    }
}

/// The limits the rules apply.
#[derive(Clone, Copy, Debug)]
pub struct AudienceConfig {
    /// The most `/auto/` viewers at once over all channels.
    pub max_viewers: usize,
    /// How long a channel stays open after it was last watched.
    pub release: Duration,
    /// How long after its last request an HLS client still watches.
    pub hls_idle: Duration,
}

/// Why a viewer was not let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such channel (801).
    Unknown,
    /// Every pooled tuner is busy (805).
    AllTunersInUse,
    /// The viewer limit is reached (809).
    TooManyViewers,
    /// The carrier did not deliver (807, with the cause).
    NoData(String),
}

impl Refusal {
    /// The device error a client is answered with.
    pub fn device_error(&self) -> DeviceError {
        match self {
            Refusal::Unknown => DeviceError::UNKNOWN_CHANNEL,
            Refusal::AllTunersInUse => DeviceError::ALL_TUNERS_IN_USE,
            Refusal::TooManyViewers => DeviceError::PLAYBACK_CONNECTION_LIMIT,
            Refusal::NoData(_) => DeviceError::NO_VIDEO_DATA,
        }
    }
}

/// What the hub is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start reading `channel` from its carrier number `carrier`, as read `read`; a read that
    /// cannot start is reported ended at once.
    Open {
        /// The channel.
        channel: usize,
        /// Which of its carriers.
        carrier: usize,
        /// The read's id, for its chunks and its end.
        read: ReadId,
    },
    /// Stop read `read` of `channel` (released, or the hub stops); its HLS window goes with it.
    Close {
        /// The channel.
        channel: usize,
        /// The read.
        read: ReadId,
    },
    /// The viewer has a chunk waiting, or its stream ended: wake it.
    Wake(ViewerId),
}

/// What a viewer taking its next chunk gets.
#[derive(Debug)]
pub enum Next {
    /// A whole chunk, to send.
    Chunk(ChunkBytes),
    /// Nothing yet.
    Nothing,
    /// The viewer was dropped (too slow) or the channel closed, and its queue is empty.
    Closed,
}

/// A viewer's queue and standing.
struct Watching {
    queue: VecDeque<ChunkBytes>,
    skips_in_row: u32,
    /// Dropped, or its channel closed: takes what is queued, gets nothing more.
    ended: bool,
}

/// One channel as the rules see it.
struct Channel {
    /// The pooled device each carrier takes a tuner of (`None`: a mesh carrier, no tuner).
    devices: Vec<Option<usize>>,
    /// The read open now.
    read: Option<ReadId>,
    viewers: BTreeMap<ViewerId, Watching>,
    /// HLS clients heard from within `hls_idle`, with their last request.
    hls: HashMap<IpAddr, Instant>,
    /// When it was last watched (meaningful while open and unwatched).
    watched_until: Instant,
    newest: Option<ChunkBytes>,
    skipped: u64,
    dropped: u64,
}

impl Channel {
    fn live_viewers(&self) -> usize {
        self.viewers.values().filter(|w| !w.ended).count()
    }
}

/// Who watches what, and what follows from it.
pub struct Audience {
    config: AudienceConfig,
    channels: Vec<Channel>,
    /// Free tuners per pooled device.
    free_tuners: Vec<u32>,
    /// Every read not yet reported ended: its channel and the device whose tuner it holds.
    reads: BTreeMap<ReadId, (usize, Option<usize>)>,
    next_serial: u64,
    actions: VecDeque<Action>,
}

impl Audience {
    /// An audience of nobody. `channels[c]` lists, per carrier of channel `c` in order of
    /// preference, the pooled device it takes a tuner of (`None` for a mesh carrier);
    /// `tuners[d]` is device `d`'s tuner count; `now` is when the hub starts.
    pub fn new(
        config: AudienceConfig,
        channels: Vec<Vec<Option<usize>>>,
        tuners: Vec<u32>,
        now: Instant,
    ) -> Audience {
        Audience {
            config,
            channels: channels
                .into_iter()
                .map(|devices| Channel {
                    devices,
                    read: None,
                    viewers: BTreeMap::new(),
                    hls: HashMap::new(),
                    watched_until: now,
                    newest: None,
                    skipped: 0,
                    dropped: 0,
                })
                .collect(),
            free_tuners: tuners,
            reads: BTreeMap::new(),
            next_serial: 0,
            actions: VecDeque::new(),
        }
    }

    /// A `/auto/` viewer of `channel` asks in: admitted (the channel opened if needed) or refused.
    pub fn watch(&mut self, channel: usize, now: Instant) -> Result<ViewerId, Refusal> {
        let live: usize = self.channels.iter().map(Channel::live_viewers).sum();
        if live >= self.config.max_viewers {
            return Err(Refusal::TooManyViewers);
        }
        self.open(channel, now)?;
        self.next_serial += 1;
        let id = ViewerId {
            channel,
            serial: self.next_serial,
        };
        let c = &mut self.channels[channel];
        c.viewers.insert(
            id,
            Watching {
                // Join at the newest chunk boundary: the newest whole chunk goes out at once.
                queue: c.newest.iter().cloned().collect(),
                skips_in_row: 0,
                ended: false,
            },
        );
        Ok(id)
    }

    /// The viewer left (or its stream ended and it is done).
    pub fn leave(&mut self, viewer: ViewerId, now: Instant) {
        let c = &mut self.channels[viewer.channel];
        let was_live = c.viewers.remove(&viewer).is_some_and(|w| !w.ended);
        if was_live && c.live_viewers() == 0 {
            c.watched_until = c.watched_until.max(now);
        }
    }

    /// The viewer's next chunk, if one is queued.
    pub fn take(&mut self, viewer: ViewerId) -> Next {
        match self.channels[viewer.channel].viewers.get_mut(&viewer) {
            Some(w) => match w.queue.pop_front() {
                Some(chunk) => Next::Chunk(chunk),
                None if w.ended => Next::Closed,
                None => Next::Nothing,
            },
            None => Next::Closed,
        }
    }

    /// An HLS client asks for `channel`'s playlist: the channel opened if needed.
    pub fn hls_request(
        &mut self,
        channel: usize,
        client: IpAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.open(channel, now)?;
        self.heard(channel, client, now);
        Ok(())
    }

    /// An HLS client fetched a segment of `channel` (it still watches, if the channel is open).
    pub fn hls_segment(&mut self, channel: usize, client: IpAddr, now: Instant) {
        if self.channels[channel].read.is_some() {
            self.heard(channel, client, now);
        }
    }

    fn heard(&mut self, channel: usize, client: IpAddr, now: Instant) {
        self.prune_hls(channel, now);
        self.channels[channel].hls.insert(client, now);
    }

    /// Forgets the HLS clients of `channel` quiet for `hls_idle` by `now`; each was watching
    /// until then.
    fn prune_hls(&mut self, channel: usize, now: Instant) {
        let idle = self.config.hls_idle;
        let c = &mut self.channels[channel];
        let mut watched_until = c.watched_until;
        c.hls.retain(|_, seen| {
            let leaves = *seen + idle;
            if leaves <= now {
                watched_until = watched_until.max(leaves);
            }
            leaves > now
        });
        c.watched_until = watched_until;
    }

    /// A chunk of read `read`: into every viewer's queue, or missed by those whose queue is
    /// full. False (and nothing done) when the read is no longer its channel's open read.
    pub fn chunk(&mut self, read: ReadId, chunk: &ChunkBytes, now: Instant) -> bool {
        let Some(&(channel, _)) = self.reads.get(&read) else {
            return false;
        };
        let c = &mut self.channels[channel];
        if c.read != Some(read) {
            return false;
        }
        c.newest = Some(chunk.clone());
        let live_before = c.live_viewers();
        for (id, w) in c.viewers.iter_mut().filter(|(_, w)| !w.ended) {
            if w.queue.len() < VIEWER_QUEUE {
                w.queue.push_back(chunk.clone());
                w.skips_in_row = 0;
                self.actions.push_back(Action::Wake(*id));
                continue;
            }
            c.skipped += 1;
            w.skips_in_row += 1;
            if w.skips_in_row >= MAX_SKIPS_IN_A_ROW {
                w.ended = true;
                c.dropped += 1;
                self.actions.push_back(Action::Wake(*id));
            }
        }
        if live_before > 0 && c.live_viewers() == 0 {
            c.watched_until = c.watched_until.max(now);
        }
        true
    }

    /// Read `read` ended (stopped, failed, or it never started): its tuner is free. If it was
    /// its channel's open read, the channel closes and its viewers' streams end; true then.
    pub fn read_ended(&mut self, read: ReadId) -> bool {
        let Some((channel, device)) = self.reads.remove(&read) else {
            return false;
        };
        if let Some(d) = device {
            self.free_tuners[d] += 1;
        }
        if self.channels[channel].read != Some(read) {
            return false;
        }
        self.close(channel);
        true
    }

    /// Closes the channels unwatched for `release` by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for channel in 0..self.channels.len() {
            if self.channels[channel].read.is_none() {
                continue;
            }
            self.prune_hls(channel, now);
            let c = &self.channels[channel];
            if let Some(read) = c.read {
                let unwatched = c.live_viewers() == 0 && c.hls.is_empty();
                if unwatched && now >= c.watched_until + self.config.release {
                    self.close(channel);
                    self.actions.push_back(Action::Close { channel, read });
                }
            }
        }
    }

    /// The hub stops: every open channel closes and every viewer's stream ends.
    pub fn stop(&mut self) {
        for channel in 0..self.channels.len() {
            if let Some(read) = self.channels[channel].read {
                self.close(channel);
                self.actions.push_back(Action::Close { channel, read });
            }
        }
    }

    /// Channel `channel` is no longer read: its viewers' streams end (they are woken), its HLS
    /// clients are forgotten. Its tuner stays taken until the read is reported ended.
    fn close(&mut self, channel: usize) {
        let c = &mut self.channels[channel];
        c.read = None;
        c.newest = None;
        c.hls.clear();
        for (id, w) in c.viewers.iter_mut().filter(|(_, w)| !w.ended) {
            w.ended = true;
            self.actions.push_back(Action::Wake(*id));
        }
    }

    /// Opens `channel` if it is not open: takes a tuner of the first carrier with one free.
    fn open(&mut self, channel: usize, now: Instant) -> Result<(), Refusal> {
        let c = &mut self.channels[channel];
        if c.read.is_some() {
            return Ok(());
        }
        let free = &mut self.free_tuners;
        let carrier = c
            .devices
            .iter()
            .position(|d| d.is_none_or(|d| free[d] > 0))
            .ok_or(Refusal::AllTunersInUse)?;
        let device = c.devices[carrier];
        if let Some(d) = device {
            free[d] -= 1;
        }
        self.next_serial += 1;
        let read = ReadId(self.next_serial);
        self.reads.insert(read, (channel, device));
        c.read = Some(read);
        c.watched_until = now;
        c.newest = None;
        self.actions.push_back(Action::Open {
            channel,
            carrier,
            read,
        });
        Ok(())
    }

    /// The next thing to do, until `None`.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Audience::handle_timeout`] is next due: the first open channel to be released, or
    /// to lose an HLS client while nothing else watches it. `None`: no deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .iter()
            .filter(|c| c.read.is_some() && c.live_viewers() == 0)
            .map(|c| match c.hls.values().min() {
                Some(first_seen) => *first_seen + self.config.hls_idle,
                None => c.watched_until + self.config.release,
            })
            .min()
    }

    /// The read open on `channel`, if it is open.
    pub fn read_of(&self, channel: usize) -> Option<ReadId> {
        self.channels[channel].read
    }

    /// The `/auto/` viewers of `channel` (not counting those whose stream ended).
    pub fn viewers(&self, channel: usize) -> usize {
        self.channels[channel].live_viewers()
    }

    /// The HLS clients of `channel` heard from within `hls_idle` of `now`.
    pub fn hls_clients(&self, channel: usize, now: Instant) -> usize {
        let c = &self.channels[channel];
        c.hls
            .values()
            .filter(|seen| **seen + self.config.hls_idle > now)
            .count()
    }

    /// Chunks `channel`'s viewers missed for being slow, and viewers dropped for it.
    pub fn slow(&self, channel: usize) -> (u64, u64) {
        let c = &self.channels[channel];
        (c.skipped, c.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: Duration = Duration::from_secs(2);
    const HLS_IDLE: Duration = Duration::from_secs(4);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An audience over `channels` (each a list of carrier devices) and `tuners`.
    fn audience(
        max_viewers: usize,
        channels: Vec<Vec<Option<usize>>>,
        tuners: Vec<u32>,
        t0: Instant,
    ) -> Audience {
        let config = AudienceConfig {
            max_viewers,
            release: RELEASE,
            hls_idle: HLS_IDLE,
        };
        Audience::new(config, channels, tuners, t0)
    }

    fn actions(a: &mut Audience) -> Vec<Action> {
        std::iter::from_fn(|| a.poll_action()).collect()
    }

    fn chunk(n: u8) -> ChunkBytes {
        Arc::from(&[n][..])
    }

    fn taken(a: &mut Audience, v: ViewerId) -> Option<u8> {
        match a.take(v) {
            Next::Chunk(c) => Some(c[0]),
            Next::Nothing => None,
            Next::Closed => panic!("{v:?} closed"),
        }
    }

    fn opened(a: &mut Audience) -> ReadId {
        match actions(a).as_slice() {
            [Action::Open { read, .. }] => *read,
            other => panic!("expected one Open, got {other:?}"),
        }
    }

    #[test]
    fn admission_stops_at_max_viewers_and_a_leaver_or_a_dropped_viewer_frees_a_place() {
        let t0 = Instant::now();
        let mut a = audience(3, vec![vec![Some(0)], vec![None]], vec![1], t0);
        let first = a.watch(0, t0).unwrap();
        let read = opened(&mut a);
        let keeps_up = a.watch(0, t0).unwrap();
        a.watch(1, t0).unwrap(); // over all channels
        assert_eq!(a.watch(0, t0), Err(Refusal::TooManyViewers));
        assert_eq!(a.watch(1, t0), Err(Refusal::TooManyViewers));
        assert_eq!(
            Refusal::TooManyViewers.device_error(),
            DeviceError::PLAYBACK_CONNECTION_LIMIT
        );
        a.leave(first, t0);
        let slow = a.watch(0, t0).unwrap();
        assert_eq!(a.watch(0, t0), Err(Refusal::TooManyViewers));
        // `slow` never takes a chunk: it is dropped and its place is free, though it has not left.
        for n in 0..(VIEWER_QUEUE as u8 + MAX_SKIPS_IN_A_ROW as u8) {
            assert!(a.chunk(read, &chunk(n), t0));
            while taken(&mut a, keeps_up).is_some() {}
        }
        assert_eq!(a.viewers(0), 1);
        assert!(a.watch(0, t0).is_ok());
        a.leave(slow, t0);
    }

    #[test]
    fn a_closed_channel_past_the_free_tuners_is_refused_805_an_open_one_is_not() {
        let t0 = Instant::now();
        // Channels 0 and 1 on device 0 (one tuner); channel 2 on device 0, else device 1;
        // channel 3 from the mesh.
        let channels = vec![
            vec![Some(0)],
            vec![Some(0)],
            vec![Some(0), Some(1)],
            vec![None],
        ];
        let mut a = audience(10, channels, vec![1, 1], t0);
        a.watch(0, t0).unwrap();
        assert!(matches!(
            actions(&mut a)[..],
            [Action::Open {
                channel: 0,
                carrier: 0,
                ..
            }]
        ));
        assert_eq!(a.watch(1, t0), Err(Refusal::AllTunersInUse));
        assert_eq!(
            a.hls_request(1, [10, 0, 0, 9].into(), t0),
            Err(Refusal::AllTunersInUse)
        );
        assert!(a.watch(0, t0).is_ok(), "an open channel takes more viewers");
        a.watch(2, t0).unwrap();
        assert!(matches!(
            actions(&mut a)[..],
            [Action::Open {
                channel: 2,
                carrier: 1,
                ..
            }]
        ));
        a.watch(3, t0).unwrap();
        assert!(matches!(
            actions(&mut a)[..],
            [Action::Open { channel: 3, .. }]
        ));
        assert_eq!(a.watch(1, t0), Err(Refusal::AllTunersInUse));
        assert!(actions(&mut a).is_empty());
    }

    #[test]
    fn a_joining_viewer_starts_with_the_newest_chunk() {
        let t0 = Instant::now();
        let mut a = audience(10, vec![vec![Some(0)]], vec![1], t0);
        let first = a.watch(0, t0).unwrap();
        let read = opened(&mut a);
        assert_eq!(taken(&mut a, first), None);
        for n in 1..=3 {
            a.chunk(read, &chunk(n), t0);
        }
        assert_eq!(
            actions(&mut a),
            vec![Action::Wake(first); 3],
            "the viewer is woken for each chunk"
        );
        let late = a.watch(0, t0).unwrap();
        assert_eq!(taken(&mut a, late), Some(3));
        assert_eq!(taken(&mut a, late), None);
        assert_eq!(
            (1..=3)
                .map(|_| taken(&mut a, first).unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_slow_viewer_misses_whole_chunks_then_is_dropped_after_max_skips_in_a_row() {
        let t0 = Instant::now();
        let mut a = audience(10, vec![vec![Some(0)]], vec![1], t0);
        let slow = a.watch(0, t0).unwrap();
        let fast = a.watch(0, t0).unwrap();
        let read = opened(&mut a);
        let mut n = 0u8;
        let mut publish = |a: &mut Audience| {
            n += 1;
            a.chunk(read, &chunk(n), t0);
            while taken(a, fast).is_some() {}
            actions(a)
        };
        for _ in 0..VIEWER_QUEUE {
            publish(&mut a);
        }
        // Full: the next chunks are missed, counted, and the viewer is not woken for them.
        for missed in 1..MAX_SKIPS_IN_A_ROW {
            assert_eq!(publish(&mut a), vec![Action::Wake(fast)]);
            assert_eq!(a.slow(0), (u64::from(missed), 0));
        }
        // It takes one chunk: the row is broken, the next chunk fits.
        assert_eq!(taken(&mut a, slow), Some(1));
        assert_eq!(
            publish(&mut a),
            vec![Action::Wake(slow), Action::Wake(fast)]
        );
        for missed in 1..MAX_SKIPS_IN_A_ROW {
            publish(&mut a);
            assert_eq!(a.slow(0).1, 0, "{missed} missed in a row: still a viewer");
        }
        // The last miss in a row drops it: woken to find its stream ending.
        assert_eq!(
            publish(&mut a),
            vec![Action::Wake(slow), Action::Wake(fast)]
        );
        assert_eq!(
            a.slow(0),
            (2 * u64::from(MAX_SKIPS_IN_A_ROW) - 1, 1),
            "skipped, dropped"
        );
        assert_eq!(a.viewers(0), 1);
        // What it holds is still its own, whole chunks in order; then the end.
        let held: Vec<u8> = std::iter::from_fn(|| match a.take(slow) {
            Next::Chunk(c) => Some(c[0]),
            _ => None,
        })
        .collect();
        assert_eq!(
            held,
            [2, 3, 4, 7],
            "chunk 1 taken, 5 and 6 missed, 8 to 10 missed"
        );
        assert!(matches!(a.take(slow), Next::Closed));
        // The fast viewer kept every chunk and is never dropped.
        publish(&mut a);
        assert_eq!(a.viewers(0), 1);
    }

    #[test]
    fn a_channel_is_released_exactly_release_after_its_last_viewer_left() {
        let t0 = Instant::now();
        let mut a = audience(10, vec![vec![Some(0)], vec![Some(0)]], vec![1], t0);
        let v1 = a.watch(0, t0).unwrap();
        let v2 = a.watch(0, t0).unwrap();
        let read = opened(&mut a);
        assert_eq!(a.poll_timeout(), None, "watched: no deadline");
        a.leave(v1, t0 + ms(1000));
        assert_eq!(a.poll_timeout(), None);
        let left = t0 + ms(5000);
        a.leave(v2, left);
        assert_eq!(a.poll_timeout(), Some(left + RELEASE));
        a.handle_timeout(left + RELEASE - ms(1));
        assert!(actions(&mut a).is_empty(), "not before the deadline");
        // A viewer who comes and goes within the release moves the deadline.
        let back = a.watch(0, left + ms(500)).unwrap();
        assert_eq!(a.poll_timeout(), None);
        let left = left + ms(1500);
        a.leave(back, left);
        assert_eq!(a.poll_timeout(), Some(left + RELEASE));
        a.handle_timeout(left + RELEASE - ms(1));
        assert!(actions(&mut a).is_empty());
        a.handle_timeout(left + RELEASE);
        assert_eq!(actions(&mut a), [Action::Close { channel: 0, read }]);
        assert_eq!(a.read_of(0), None);
        assert_eq!(a.poll_timeout(), None);
        // Its tuner is taken until the read is reported ended.
        let at = left + RELEASE;
        assert_eq!(a.watch(1, at), Err(Refusal::AllTunersInUse));
        assert!(!a.read_ended(read), "no longer the open read");
        assert!(a.watch(1, at).is_ok());
    }

    #[test]
    fn an_hls_client_watches_until_two_quiet_target_durations_then_release_counts() {
        let t0 = Instant::now();
        let mut a = audience(10, vec![vec![Some(0)]], vec![1], t0);
        let client: IpAddr = [10, 0, 0, 7].into();
        a.hls_request(0, client, t0).unwrap();
        let read = opened(&mut a);
        assert_eq!(a.hls_clients(0, t0), 1);
        // It keeps asking for segments every second for 10 s.
        for s in 1..=10 {
            a.hls_segment(0, client, t0 + ms(1000 * s));
        }
        let last = t0 + ms(10_000);
        assert_eq!(a.poll_timeout(), Some(last + HLS_IDLE));
        a.handle_timeout(last + HLS_IDLE - ms(1));
        assert_eq!(a.hls_clients(0, last + HLS_IDLE - ms(1)), 1);
        a.handle_timeout(last + HLS_IDLE);
        assert_eq!(a.hls_clients(0, last + HLS_IDLE), 0);
        assert!(actions(&mut a).is_empty());
        // Gone at `last + HLS_IDLE`: released `RELEASE` after that.
        let due = last + HLS_IDLE + RELEASE;
        assert_eq!(a.poll_timeout(), Some(due));
        a.handle_timeout(due - ms(1));
        assert!(actions(&mut a).is_empty());
        a.handle_timeout(due);
        assert_eq!(actions(&mut a), [Action::Close { channel: 0, read }]);
        // A segment asked for after the close does not count as watching.
        a.hls_segment(0, client, due);
        assert_eq!(a.hls_clients(0, due), 0);
    }

    #[test]
    fn a_viewer_and_an_hls_client_together_release_after_the_later_leaves() {
        let t0 = Instant::now();
        let mut a = audience(10, vec![vec![Some(0)]], vec![1], t0);
        let viewer = a.watch(0, t0).unwrap();
        let read = opened(&mut a);
        a.hls_request(0, [10, 0, 0, 7].into(), t0 + ms(100))
            .unwrap();
        // The viewer leaves before the client goes quiet: the client's leaving counts.
        a.leave(viewer, t0 + ms(1000));
        let client_left = t0 + ms(100) + HLS_IDLE;
        assert_eq!(a.poll_timeout(), Some(client_left));
        a.handle_timeout(client_left);
        assert_eq!(a.poll_timeout(), Some(client_left + RELEASE));
        a.handle_timeout(client_left + RELEASE);
        assert_eq!(actions(&mut a), [Action::Close { channel: 0, read }]);
    }

    #[test]
    fn a_read_that_ends_closes_its_channel_and_a_stale_read_is_ignored() {
        let t0 = Instant::now();
        let mut a = audience(10, vec![vec![Some(0)]], vec![1], t0);
        let viewer = a.watch(0, t0).unwrap();
        let old = opened(&mut a);
        a.chunk(old, &chunk(1), t0);
        actions(&mut a);
        assert!(a.read_ended(old), "the open read ended: the channel closes");
        assert_eq!(actions(&mut a), [Action::Wake(viewer)]);
        assert_eq!(a.read_of(0), None);
        // The viewer still gets what was queued, then the end.
        assert_eq!(taken(&mut a, viewer), Some(1));
        assert!(matches!(a.take(viewer), Next::Closed));
        assert_eq!(a.viewers(0), 0);
        a.leave(viewer, t0);
        // The tuner is free again: the next viewer opens a new read.
        let next = a.watch(0, t0).unwrap();
        let new = opened(&mut a);
        assert_ne!(old, new);
        assert!(!a.chunk(old, &chunk(9), t0), "a chunk of the old read");
        assert!(!a.read_ended(old));
        assert_eq!(a.read_of(0), Some(new));
        assert!(a.chunk(new, &chunk(2), t0));
        assert_eq!(taken(&mut a, next), Some(2));
    }

    #[test]
    fn stopping_closes_every_open_channel_and_ends_every_stream() {
        let t0 = Instant::now();
        let mut a = audience(
            10,
            vec![vec![Some(0)], vec![None], vec![Some(0)]],
            vec![2],
            t0,
        );
        let v0 = a.watch(0, t0).unwrap();
        let v1 = a.watch(1, t0).unwrap();
        let reads: Vec<ReadId> = actions(&mut a)
            .into_iter()
            .map(|action| match action {
                Action::Open { read, .. } => read,
                other => panic!("{other:?}"),
            })
            .collect();
        a.stop();
        assert_eq!(
            actions(&mut a),
            [
                Action::Wake(v0),
                Action::Close {
                    channel: 0,
                    read: reads[0]
                },
                Action::Wake(v1),
                Action::Close {
                    channel: 1,
                    read: reads[1]
                },
            ]
        );
        assert!(matches!(a.take(v0), Next::Closed));
        assert!(matches!(a.take(v1), Next::Closed));
        assert_eq!(a.poll_timeout(), None);
    }
}
