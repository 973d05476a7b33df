//! [`Hub`]: every channel of the lineup, each read from its carrier **once** however many
//! viewers watch it.
//!
//! The first viewer of a channel (a `/auto/` stream or an HLS client) opens it: one tuner of the
//! device that carries it, read by an ingest pipeline on a thread of its own, or for a mesh
//! channel one subscription (the subscribing pipeline: only chunks the verifier accepted). Each
//! chunk goes into the channel's HLS window (the newest chunks, served as segments) and every
//! viewer's queue. Who may watch, what each viewer's queue holds, which slow viewer misses
//! chunks or is dropped, and when a channel is released (freeing its tuner) are the rules of the
//! [`Audience`], a sans-I/O owner; the hub feeds it every event under one lock and carries out
//! its actions. Its driver thread sleeps until the audience's next deadline; each viewer's
//! thread sleeps on its [`Bell`] and its client's socket, woken when a chunk is queued for it,
//! its stream ends, the client goes, or the hub stops.
//!
//! The hub owns channel state, the carrier threads and the bells; it never speaks HTTP.

use super::audience::{
    Action, Audience, AudienceConfig, ChunkBytes, Next, ReadId, Refusal, ViewerId,
};
use super::bell::{self, Bell, Woken};
use crate::capture::{CaptureOptions, Source};
use crate::chunk::{ChunkIndex, ChunkerConfig};
use crate::crypto::StreamKeys;
use crate::hdhr::device::LineupEntry;
use crate::hdhr::GuideNumber;
use crate::hls::playlist::{Playlist, PlaylistKind, SegmentEntry};
use crate::hls::ProgramClock;
use crate::manifest::Policy;
use crate::node::ingest::Ingest;
use crate::node::subscribe::{subscribe, Destination, SegmentSink, SubscribeConfig};
use crate::node::tracks::PeerSpec;
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use crossbeam_channel::RecvTimeoutError;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Segments in a channel's HLS window.
pub const HLS_WINDOW: usize = 6;
/// How long a playlist's first-segment wait and a tuner read's chunk wait sleep at most, so a
/// stop is seen.
const WAIT_STEP: Duration = Duration::from_millis(100);
/// How often the driver looks at the stop flag: a signal handler sets it and wakes nobody, so
/// one thread looks (at the pace the HTTP edge's accept loop does) and rings every viewer's bell.
const STOP_LOOK: Duration = crate::http::IO_TIMEOUT;

/// A channel taken from the mesh: a stream, who serves it and whose manifests are trusted.
#[derive(Clone, Debug)]
pub struct MeshSource {
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// What the verifier accepts (manifests required).
    pub policy: Policy,
    /// The peer serving the chunk objects.
    pub objects: PeerSpec,
    /// A different peer serving the manifests (`None`: the objects peer).
    pub manifests: Option<PeerSpec>,
}

/// What a channel is read from.
#[derive(Clone, Debug)]
pub enum ChannelSource {
    /// A tuner: the capture source of the channel on its device.
    Tuner(Source),
    /// The mesh: verified chunks of a stream (boxed: its peers make it far larger than a tuner).
    Mesh(Box<MeshSource>),
}

/// One place a channel can be read from.
#[derive(Clone, Debug)]
pub struct Carrier {
    /// The pooled device that carries it (an index into the hub's tuner counts); `None` for a
    /// mesh channel, which takes no tuner.
    pub device: Option<usize>,
    /// What to read.
    pub source: ChannelSource,
    /// How it is named in the status (e.g. `tuner hdhr://HOST:PORT`).
    pub label: String,
}

/// A channel of the lineup and where it can be read from: every pooled device that carries
/// it, the first with a free tuner taken.
#[derive(Clone, Debug)]
pub struct ChannelSpec {
    /// Its lineup entry.
    pub entry: LineupEntry,
    /// Its carriers, in order of preference.
    pub carriers: Vec<Carrier>,
}

/// How the hub reads channels.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The chunk grid (a chunk is the unit viewers join and skip by, and an HLS segment).
    pub chunker: ChunkerConfig,
    /// How carriers are captured.
    pub capture: CaptureOptions,
    /// How long a channel stays open after its last viewer left.
    pub release: Duration,
    /// The most `/auto/` viewers at once over all channels.
    pub max_viewers: usize,
    /// The HLS target duration, seconds.
    pub target_duration: u64,
}

/// One `/auto/` viewer: takes whole chunks and sleeps until there is one. Dropping it leaves
/// the channel.
pub struct Viewer {
    hub: Arc<Hub>,
    id: ViewerId,
    /// Rung when a chunk is queued for it or its stream ended.
    bell: Arc<Bell>,
}

impl Viewer {
    /// Its next chunk if one is queued (never waits).
    pub fn next(&self) -> Next {
        // Cleared before taking: a chunk queued after this rings again, so a wait that follows
        // a `Nothing` never sleeps through it.
        self.bell.clear();
        self.hub.state.lock().audience.take(self.id)
    }

    /// Sleeps until a chunk may be queued, its stream ended, the hub stops, or `client` is
    /// readable or hung up, at most `timeout` (`None`: no limit).
    pub fn wait(&self, client: &TcpStream, timeout: Option<Duration>) -> std::io::Result<Woken> {
        bell::wait(client, &[&self.bell, &self.hub.stopping], timeout)
    }

    /// Counts bytes sent to this viewer.
    pub fn sent(&self, bytes: usize) {
        self.hub.state.lock().feeds[self.id.channel()].bytes_out += bytes as u64;
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut state = self.hub.state.lock();
        state.audience.leave(self.id, Instant::now());
        state.bells.remove(&self.id);
        self.hub.act(&mut state);
    }
}

/// What the hub needs to know of a chunk besides its bytes.
struct Piece {
    index: ChunkIndex,
    /// 90 kHz ticks.
    duration: u64,
    discontinuity: bool,
}

/// Where a mesh channel's subscriber hands its verified segments: the channel.
struct ChannelSink {
    hub: Arc<Hub>,
    at: usize,
    read: ReadId,
}

impl SegmentSink for ChannelSink {
    fn put(&mut self, entry: &SegmentEntry, bytes: &[u8]) -> bool {
        let piece = Piece {
            index: entry.index,
            duration: entry.duration,
            discontinuity: entry.discontinuity,
        };
        self.hub
            .publish(self.at, self.read, piece, Arc::from(bytes));
        true
    }
}

/// A running carrier read.
struct Reading {
    stop: StopFlag,
    thread: JoinHandle<()>,
}

/// What a channel's read feeds: its HLS window and its figures.
#[derive(Default)]
struct Feed {
    /// Which of the channel's carriers the open read reads.
    carrier: Option<usize>,
    /// When the open read opened.
    since: Option<UnixMillis>,
    window: Option<Playlist>,
    segments: VecDeque<(ChunkIndex, ChunkBytes)>,
    clock: ProgramClock,
    /// Why the last read ended early, if it did.
    failure: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    chunks: u64,
}

impl Feed {
    /// Bits per second over the chunks in the window (0 without a read).
    fn bitrate(&self) -> u64 {
        let Some(window) = &self.window else {
            return 0;
        };
        let ticks: u64 = window.segments().map(|e| e.duration).sum();
        let bytes: u64 = self
            .segments
            .iter()
            .rev()
            .take(window.segments().count())
            .map(|(_, b)| b.len() as u64)
            .sum();
        (bytes * 8 * 90_000).checked_div(ticks).unwrap_or(0)
    }

    /// The read ended or was closed: no window, no segments (the figures stay).
    fn closed(&mut self) {
        self.carrier = None;
        self.since = None;
        self.window = None;
        self.segments.clear();
    }
}

/// Everything the hub's threads share, under one lock: the rules' state, what each channel's
/// read feeds, the running reads and each viewer's bell.
struct State {
    audience: Audience,
    feeds: Vec<Feed>,
    reads: HashMap<ReadId, Reading>,
    /// Reads closed, for the driver to join outside the lock.
    closing: Vec<Reading>,
    bells: HashMap<ViewerId, Arc<Bell>>,
}

/// A channel's figures for `/status.json` and the index page.
#[derive(Clone, Debug)]
pub struct ChannelStatus {
    /// Its lineup entry.
    pub entry: LineupEntry,
    /// Where it comes from: the carrier being read, else every one it could be.
    pub carrier: String,
    /// Whether it is being read now.
    pub open: bool,
    /// Since when (the read's start).
    pub since: Option<UnixMillis>,
    /// `/auto/` viewers now.
    pub viewers: usize,
    /// HLS clients seen within two target durations.
    pub hls_clients: usize,
    /// Bytes read from the carrier.
    pub bytes_in: u64,
    /// Bytes sent to `/auto/` viewers.
    pub bytes_out: u64,
    /// Chunks read.
    pub chunks: u64,
    /// The stream's rate over the open read, bits per second (0 when closed).
    pub bitrate: u64,
    /// Chunks viewers missed for being slow.
    pub skipped: u64,
    /// Viewers dropped for being slow.
    pub dropped_viewers: u64,
    /// Why the last read ended early, if it did.
    pub failure: Option<String>,
}

/// Every channel, the pooled tuners, and who watches what.
pub struct Hub {
    specs: Vec<ChannelSpec>,
    state: Mutex<State>,
    /// Signalled on every new chunk and when a read ends (a first playlist waits on it).
    changed: Condvar,
    /// Signalled after every event: the audience's next deadline may have moved.
    moved: Condvar,
    /// Rung once when the hub stops and never cleared: every viewer's wait returns from then on.
    stopping: Bell,
    /// Tuners pooled over every device.
    tuners: u32,
    config: HubConfig,
    stop: StopFlag,
}

impl Hub {
    /// A hub over `channels`, with `tuners[d]` tuners on pooled device `d`; its driver (the
    /// returned thread) runs until `stop`, then closes every channel.
    pub fn start(
        channels: Vec<ChannelSpec>,
        tuners: Vec<u32>,
        config: HubConfig,
        stop: &StopFlag,
    ) -> std::io::Result<(Arc<Hub>, JoinHandle<()>)> {
        let rules = AudienceConfig {
            max_viewers: config.max_viewers,
            release: config.release,
            // An HLS client has left when it asked for nothing for two target durations.
            hls_idle: Duration::from_secs(2 * config.target_duration.max(1)),
        };
        let devices = channels
            .iter()
            .map(|c| c.carriers.iter().map(|u| u.device).collect())
            .collect();
        let hub = Arc::new(Hub {
            state: Mutex::new(State {
                audience: Audience::new(rules, devices, tuners.clone(), Instant::now()),
                feeds: channels.iter().map(|_| Feed::default()).collect(),
                reads: HashMap::new(),
                closing: Vec::new(),
                bells: HashMap::new(),
            }),
            specs: channels,
            changed: Condvar::new(),
            moved: Condvar::new(),
            stopping: Bell::new()?,
            tuners: tuners.iter().sum(),
            config,
            stop: stop.clone(),
        });
        let driver = std::thread::Builder::new().name("lan hub".into()).spawn({
            let hub = hub.clone();
            move || hub.drive()
        })?;
        Ok((hub, driver))
    }

    /// The lineup, in order.
    pub fn lineup(&self) -> Vec<LineupEntry> {
        self.specs.iter().map(|c| c.entry.clone()).collect()
    }

    /// Tuners pooled over every device.
    pub fn tuner_count(&self) -> u32 {
        self.tuners
    }

    fn find(&self, guide: &GuideNumber) -> Option<usize> {
        self.specs.iter().position(|c| &c.entry.guide == guide)
    }

    /// Adds a `/auto/` viewer of `guide`, opening the channel if needed.
    pub fn watch(self: &Arc<Hub>, guide: &GuideNumber) -> Result<Viewer, Refusal> {
        let at = self.find(guide).ok_or(Refusal::Unknown)?;
        let bell = Bell::new()
            .map(Arc::new)
            .map_err(|e| Refusal::NoData(format!("cannot make a viewer's doorbell: {e}")))?;
        let mut state = self.state.lock();
        let now = Instant::now();
        let id = state.audience.watch(at, now)?;
        state.bells.insert(id, bell.clone());
        self.act(&mut state);
        if state.audience.read_of(at).is_none() {
            // The read did not start.
            state.audience.leave(id, now);
            state.bells.remove(&id);
            return Err(Refusal::NoData(
                state.feeds[at].failure.clone().unwrap_or_default(),
            ));
        }
        Ok(Viewer {
            hub: self.clone(),
            id,
            bell,
        })
    }

    /// The HLS playlist of `guide` for the client at `client`, opening the channel if needed
    /// and waiting (up to `wait`) for its first segment.
    pub fn playlist(
        self: &Arc<Hub>,
        guide: &GuideNumber,
        client: IpAddr,
        wait: Duration,
    ) -> Result<String, Refusal> {
        let at = self.find(guide).ok_or(Refusal::Unknown)?;
        let mut state = self.state.lock();
        let now = Instant::now();
        state.audience.hls_request(at, client, now)?;
        self.act(&mut state);
        let deadline = now + wait;
        while state.feeds[at].segments.is_empty() {
            if let Some(why) = &state.feeds[at].failure {
                return Err(Refusal::NoData(why.clone()));
            }
            if self.stop.is_set()
                || Instant::now() >= deadline
                || state.audience.read_of(at).is_none()
            {
                return Err(Refusal::NoData("no chunk yet".into()));
            }
            self.changed.wait_for(&mut state, WAIT_STEP);
        }
        Ok(state.feeds[at]
            .window
            .as_ref()
            .map(Playlist::render)
            .unwrap_or_default())
    }

    /// A segment of `guide`'s HLS window, for the client at `client`.
    pub fn segment(
        self: &Arc<Hub>,
        guide: &GuideNumber,
        index: ChunkIndex,
        client: IpAddr,
    ) -> Option<ChunkBytes> {
        let at = self.find(guide)?;
        let mut state = self.state.lock();
        let feed = &mut state.feeds[at];
        let bytes = feed
            .segments
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b.clone())?;
        feed.bytes_out += bytes.len() as u64;
        state.audience.hls_segment(at, client, Instant::now());
        self.act(&mut state);
        Some(bytes)
    }

    /// Every channel's figures.
    pub fn status(&self) -> Vec<ChannelStatus> {
        let state = self.state.lock();
        let now = Instant::now();
        self.specs
            .iter()
            .zip(&state.feeds)
            .enumerate()
            .map(|(at, (spec, feed))| {
                let carrier = match feed.carrier {
                    Some(u) => spec.carriers[u].label.clone(),
                    None => spec
                        .carriers
                        .iter()
                        .map(|u| u.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let (skipped, dropped_viewers) = state.audience.slow(at);
                ChannelStatus {
                    entry: spec.entry.clone(),
                    carrier,
                    open: state.audience.read_of(at).is_some(),
                    since: feed.since,
                    viewers: state.audience.viewers(at),
                    hls_clients: state.audience.hls_clients(at, now),
                    bytes_in: feed.bytes_in,
                    bytes_out: feed.bytes_out,
                    chunks: feed.chunks,
                    bitrate: feed.bitrate(),
                    skipped,
                    dropped_viewers,
                    failure: feed.failure.clone(),
                }
            })
            .collect()
    }

    /// Carries out what the audience asks (under the lock): starts reads, hands closed reads
    /// to the driver to join, rings viewers' bells; then tells the driver its deadline may
    /// have moved.
    fn act(self: &Arc<Hub>, state: &mut State) {
        while let Some(action) = state.audience.poll_action() {
            match action {
                Action::Open {
                    channel,
                    carrier,
                    read,
                } => self.start_read(state, channel, carrier, read),
                Action::Close { channel, read } => {
                    if let Some(reading) = state.reads.remove(&read) {
                        reading.stop.set();
                        state.closing.push(reading);
                    }
                    state.feeds[channel].closed();
                    log::info!("channel {}: closed", self.specs[channel].entry.guide);
                }
                Action::Wake(viewer) => {
                    if let Some(bell) = state.bells.get(&viewer) {
                        bell.ring();
                    }
                }
            }
        }
        self.moved.notify_one();
    }

    /// Starts read `read` of channel `at` from its carrier `carrier` on a thread of its own;
    /// a thread that cannot start is a read that ended at once.
    fn start_read(self: &Arc<Hub>, state: &mut State, at: usize, carrier: usize, read: ReadId) {
        let stop = StopFlag::default();
        let thread = std::thread::Builder::new()
            .name(format!("lan {}", self.specs[at].entry.guide))
            .spawn({
                let (hub, stop) = (self.clone(), stop.clone());
                move || hub.read(at, carrier, read, &stop)
            });
        let feed = &mut state.feeds[at];
        match thread {
            Ok(thread) => {
                state.reads.insert(read, Reading { stop, thread });
                *feed = Feed {
                    carrier: Some(carrier),
                    since: Some(UnixMillis::now()),
                    window: Some(Playlist::new(
                        PlaylistKind::Window(HLS_WINDOW),
                        self.config.target_duration,
                    )),
                    bytes_in: feed.bytes_in,
                    bytes_out: feed.bytes_out,
                    chunks: feed.chunks,
                    ..Feed::default()
                };
                log::info!("channel {}: opened", self.specs[at].entry.guide);
            }
            Err(e) => {
                feed.failure = Some(format!("cannot start a thread: {e}"));
                state.audience.read_ended(read);
            }
        }
    }

    /// Read `read` of channel `at` from its carrier `carrier`, on its own thread, until `stop`
    /// or the carrier ends; then the audience is told (the tuner is free once the device
    /// connection is closed, which it is by now).
    fn read(self: &Arc<Hub>, at: usize, carrier: usize, read: ReadId, stop: &StopFlag) {
        let spec = &self.specs[at];
        let failure = match &spec.carriers[carrier].source {
            ChannelSource::Tuner(source) => self.read_tuner(at, read, source, stop),
            ChannelSource::Mesh(mesh) => self.read_mesh(at, read, mesh, stop),
        };
        let mut state = self.state.lock();
        // Ended on its own: nobody joins it (a closed read's handle is with the driver already).
        state.reads.remove(&read);
        if state.audience.read_ended(read) {
            if let Some(why) = &failure {
                log::warn!("channel {}: {why}", spec.entry.guide);
            }
            let feed = &mut state.feeds[at];
            feed.failure = failure;
            feed.closed();
            log::info!("channel {}: closed", spec.entry.guide);
        }
        self.act(&mut state);
        self.changed.notify_all();
    }

    /// Reads a tuner until `stop` or the capture ends; the failure, if any.
    fn read_tuner(
        self: &Arc<Hub>,
        at: usize,
        read: ReadId,
        source: &Source,
        stop: &StopFlag,
    ) -> Option<String> {
        let ingest = match Ingest::start(source, &self.config.capture, self.config.chunker, stop) {
            Ok(ingest) => ingest,
            Err(e) => return Some(e.to_string()),
        };
        loop {
            match ingest.chunks().recv_timeout(WAIT_STEP) {
                Ok((chunk, _)) => {
                    let piece = Piece {
                        index: chunk.index,
                        duration: chunk.duration,
                        discontinuity: chunk.flags.discontinuity(),
                    };
                    self.publish(at, read, piece, Arc::from(&chunk.bytes[..]));
                    ingest.recycle(chunk.bytes);
                }
                Err(RecvTimeoutError::Timeout) if stop.is_set() || self.stop.is_set() => break,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        stop.set();
        match ingest.finish().capture {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }

    /// Reads a mesh stream until `stop` or the subscription fails: only chunks the verifier
    /// accepted reach the channel. The failure, if any.
    fn read_mesh(
        self: &Arc<Hub>,
        at: usize,
        read: ReadId,
        mesh: &MeshSource,
        stop: &StopFlag,
    ) -> Option<String> {
        let output = Destination::Sink(Box::new(ChannelSink {
            hub: self.clone(),
            at,
            read,
        }));
        let objects = vec![mesh.objects.clone()];
        let chunk_ms = self.config.chunker.chunk_ms;
        let config = SubscribeConfig {
            manifests: mesh.manifests.iter().cloned().collect(),
            target_duration: self.config.target_duration,
            ..SubscribeConfig::new(
                mesh.keys.clone(),
                mesh.policy.clone(),
                objects,
                chunk_ms,
                output,
            )
        };
        let (_, result) = subscribe(config, stop, &mut |_| {});
        result.err().map(|e| e.to_string())
    }

    /// A new chunk of read `read` of channel `at`: into the HLS window and every viewer's queue
    /// (nothing if the read was closed meanwhile).
    fn publish(self: &Arc<Hub>, at: usize, read: ReadId, piece: Piece, bytes: ChunkBytes) {
        let mut state = self.state.lock();
        if !state.audience.chunk(read, &bytes, Instant::now()) {
            return;
        }
        let feed = &mut state.feeds[at];
        feed.bytes_in += bytes.len() as u64;
        feed.chunks += 1;
        let date_time = feed
            .clock
            .next(piece.duration, piece.discontinuity, UnixMillis::now());
        if let Some(window) = feed.window.as_mut() {
            window.push(SegmentEntry {
                index: piece.index,
                duration: piece.duration,
                discontinuity: piece.discontinuity,
                date_time,
            });
        }
        feed.segments.push_back((piece.index, bytes));
        // Keep one more than the window: a client may fetch a segment just slid out.
        while feed.segments.len() > HLS_WINDOW + 1 {
            feed.segments.pop_front();
        }
        self.act(&mut state);
        self.changed.notify_all();
    }

    /// The driver: sleeps until the audience's next deadline (or an event moves it), closes the
    /// channels it releases and joins their reads; when the hub stops, rings every viewer's
    /// bell, closes every channel and joins every read.
    fn drive(self: &Arc<Hub>) {
        let mut state = self.state.lock();
        while !self.stop.is_set() {
            let now = Instant::now();
            state.audience.handle_timeout(now);
            self.act(&mut state);
            let closing = std::mem::take(&mut state.closing);
            if !closing.is_empty() {
                MutexGuard::unlocked(&mut state, || join(closing));
                continue;
            }
            let look = now + STOP_LOOK;
            let until = state.audience.poll_timeout().map_or(look, |t| t.min(look));
            self.moved.wait_until(&mut state, until);
        }
        self.stopping.ring();
        state.audience.stop();
        self.act(&mut state);
        let closing = std::mem::take(&mut state.closing);
        self.changed.notify_all();
        drop(state);
        join(closing);
    }
}

/// Waits for closed reads to end.
fn join(readings: Vec<Reading>) {
    for reading in readings {
        let _ = reading.thread.join();
    }
}
