//! [`Hub`]: every channel of the lineup, each read from its upstream **once** however many
//! viewers watch it.
//!
//! The first viewer of a channel (a `/auto/` stream or an HLS client) opens it: one tuner of the
//! device that carries it, read by an ingest pipeline on a thread of its own, or for a mesh
//! channel one subscription (the subscribing pipeline: only chunks the verifier accepted). Every later viewer
//! joins that read at the newest chunk boundary: its queue starts with the newest whole chunk
//! (each chunk begins with the PAT and PMT at a random access point), so its first byte leaves at
//! once. A viewer's queue is bounded; a viewer that cannot keep up misses whole chunks (counted)
//! and, after [`MAX_SKIPS_IN_A_ROW`], is dropped — it never slows the upstream or the others.
//! HLS clients read a window of the newest chunks as segments. A channel is closed
//! `release` after its last viewer left (an HLS client has left when it asked for nothing for
//! two target durations), which frees its tuner. A channel past the pooled tuner count is
//! refused with `805 All Tuners In Use`; channels already open still take viewers.
//!
//! The hub owns channel state and the upstream threads; it never speaks HTTP.

use crate::capture::{CaptureOptions, Source};
use crate::chunk::{ChunkIndex, ChunkerConfig};
use crate::crypto::StreamKeys;
use crate::hdhr::device::LineupEntry;
use crate::hdhr::{DeviceError, GuideNumber};
use crate::hls::playlist::{Playlist, PlaylistKind, SegmentEntry};
use crate::hls::ProgramClock;
use crate::manifest::Policy;
use crate::node::ingest::Ingest;
use crate::node::subscribe::{subscribe, Destination, SegmentSink, SubscribeConfig};
use crate::node::tracks::PeerSpec;
use crate::stop::StopFlag;
use crate::time::UnixMillis;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Chunks a viewer's queue holds before it misses the next one.
pub const VIEWER_QUEUE: usize = 4;
/// Chunks missed in a row after which a viewer is dropped.
pub const MAX_SKIPS_IN_A_ROW: u32 = 3;
/// Segments in a channel's HLS window.
pub const HLS_WINDOW: usize = 6;
/// How often the reaper looks for channels to close.
const REAP_EVERY: Duration = Duration::from_millis(50);
/// How long a chunk wait sleeps at most, so a stop is seen.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// How long a mesh channel waits for its first trusted manifest, and for objects after that.
const MESH_TIMEOUT: Duration = Duration::from_secs(15);

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
pub struct Upstream {
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
    /// Its upstreams, in order of preference.
    pub upstreams: Vec<Upstream>,
}

/// How the hub reads channels.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The chunk grid (a chunk is the unit viewers join and skip by, and an HLS segment).
    pub chunker: ChunkerConfig,
    /// How upstreams are captured.
    pub capture: CaptureOptions,
    /// How long a channel stays open after its last viewer left.
    pub release: Duration,
    /// The most `/auto/` viewers at once over all channels.
    pub max_viewers: usize,
    /// The HLS target duration, seconds.
    pub target_duration: u64,
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
    /// The upstream did not deliver (807, with the cause).
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

/// One `/auto/` viewer: its queue of whole chunks. Dropping it leaves the channel.
pub struct Viewer {
    chunks: Receiver<Arc<[u8]>>,
    hub: Arc<Hub>,
    at: usize,
    id: u64,
}

/// What a viewer waiting for its next chunk gets.
pub enum Next {
    /// A whole chunk, to send.
    Chunk(Arc<[u8]>),
    /// Nothing within the wait.
    Nothing,
    /// The viewer was dropped (too slow) or the channel closed.
    Closed,
}

impl Viewer {
    /// The next chunk, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Next {
        match self.chunks.recv_timeout(timeout) {
            Ok(chunk) => Next::Chunk(chunk),
            Err(RecvTimeoutError::Timeout) => Next::Nothing,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }

    /// Counts bytes sent to this viewer.
    pub fn sent(&self, bytes: usize) {
        self.hub.channels[self.at].state.lock().bytes_out += bytes as u64;
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut state = self.hub.channels[self.at].state.lock();
        state.viewers.retain(|v| v.id != self.id);
        if state.viewers.is_empty() {
            state.idle_since.get_or_insert_with(Instant::now);
        }
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
}

impl SegmentSink for ChannelSink {
    fn put(&mut self, entry: &SegmentEntry, bytes: &[u8]) -> bool {
        let piece = Piece {
            index: entry.index,
            duration: entry.duration,
            discontinuity: entry.discontinuity,
        };
        self.hub.publish(self.at, piece, Arc::from(bytes));
        true
    }
}

/// A viewer's end of its queue, held by the channel.
struct ViewerSlot {
    id: u64,
    chunks: Sender<Arc<[u8]>>,
    skips_in_row: u32,
}

/// A running upstream read.
struct Reading {
    stop: StopFlag,
    thread: JoinHandle<()>,
    /// Which of the channel's upstreams it reads.
    upstream: usize,
}

/// What a channel is doing, under its lock.
#[derive(Default)]
struct ChannelState {
    reading: Option<Reading>,
    /// When the current read opened.
    since: Option<UnixMillis>,
    viewers: Vec<ViewerSlot>,
    /// HLS clients by address, with their last request.
    hls_clients: HashMap<IpAddr, Instant>,
    /// Since when nobody watches (the channel closes `release` later).
    idle_since: Option<Instant>,
    window: Option<Playlist>,
    segments: VecDeque<(ChunkIndex, Arc<[u8]>)>,
    clock: ProgramClock,
    /// Why the last read ended early, if it did.
    failure: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
    chunks: u64,
    skipped: u64,
    dropped_viewers: u64,
}

impl ChannelState {
    fn newest(&self) -> Option<&Arc<[u8]>> {
        self.segments.back().map(|(_, bytes)| bytes)
    }

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
}

/// One channel of the hub.
struct ChannelSlot {
    spec: ChannelSpec,
    state: Mutex<ChannelState>,
    /// Signalled on every new chunk and when a read ends.
    changed: Condvar,
}

/// A channel's figures for `/status.json` and the index page.
#[derive(Clone, Debug)]
pub struct ChannelStatus {
    /// Its lineup entry.
    pub entry: LineupEntry,
    /// Where it comes from: the upstream being read, else every one it could be.
    pub upstream: String,
    /// Whether it is being read now.
    pub open: bool,
    /// Since when (the read's start).
    pub since: Option<UnixMillis>,
    /// `/auto/` viewers now.
    pub viewers: usize,
    /// HLS clients seen within two target durations.
    pub hls_clients: usize,
    /// Bytes read from the upstream.
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
    channels: Vec<ChannelSlot>,
    /// Free tuners per pooled device.
    free_tuners: Mutex<Vec<u32>>,
    config: HubConfig,
    next_viewer: Mutex<u64>,
    stop: StopFlag,
}

impl Hub {
    /// A hub over `channels`, with `tuners[d]` tuners on pooled device `d`; its reaper runs
    /// until `stop`.
    pub fn start(
        channels: Vec<ChannelSpec>,
        tuners: Vec<u32>,
        config: HubConfig,
        stop: &StopFlag,
    ) -> std::io::Result<(Arc<Hub>, JoinHandle<()>)> {
        let hub = Arc::new(Hub {
            channels: channels
                .into_iter()
                .map(|spec| ChannelSlot {
                    spec,
                    state: Mutex::default(),
                    changed: Condvar::new(),
                })
                .collect(),
            free_tuners: Mutex::new(tuners),
            config,
            next_viewer: Mutex::new(0),
            stop: stop.clone(),
        });
        let reaper = std::thread::Builder::new()
            .name("lan reaper".into())
            .spawn({
                let hub = hub.clone();
                move || hub.reap()
            })?;
        Ok((hub, reaper))
    }

    /// The lineup, in order.
    pub fn lineup(&self) -> Vec<LineupEntry> {
        self.channels.iter().map(|c| c.spec.entry.clone()).collect()
    }

    /// Tuners pooled over every device.
    pub fn tuner_count(&self) -> u32 {
        let free = self.free_tuners.lock().iter().sum::<u32>();
        let tuned = self
            .channels
            .iter()
            .filter(|c| {
                let state = c.state.lock();
                state
                    .reading
                    .as_ref()
                    .is_some_and(|r| c.spec.upstreams[r.upstream].device.is_some())
            })
            .count() as u32;
        free + tuned
    }

    fn find(&self, guide: &GuideNumber) -> Option<usize> {
        self.channels
            .iter()
            .position(|c| &c.spec.entry.guide == guide)
    }

    /// Adds a `/auto/` viewer of `guide`, opening the channel if needed.
    pub fn watch(self: &Arc<Hub>, guide: &GuideNumber) -> Result<Viewer, Refusal> {
        let at = self.find(guide).ok_or(Refusal::Unknown)?;
        let viewers: usize = self
            .channels
            .iter()
            .map(|c| c.state.lock().viewers.len())
            .sum();
        if viewers >= self.config.max_viewers {
            return Err(Refusal::TooManyViewers);
        }
        let id = {
            let mut next = self.next_viewer.lock();
            *next += 1;
            *next
        };
        let (tx, rx) = bounded(VIEWER_QUEUE);
        let slot = &self.channels[at];
        let mut state = slot.state.lock();
        self.open(at, &mut state)?;
        // Join at the newest chunk boundary: the newest whole chunk goes out at once.
        if let Some(newest) = state.newest() {
            let _ = tx.try_send(newest.clone());
        }
        state.viewers.push(ViewerSlot {
            id,
            chunks: tx,
            skips_in_row: 0,
        });
        state.idle_since = None;
        Ok(Viewer {
            chunks: rx,
            hub: self.clone(),
            at,
            id,
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
        let slot = &self.channels[at];
        let mut state = slot.state.lock();
        self.open(at, &mut state)?;
        state.hls_clients.insert(client, Instant::now());
        state.idle_since = None;
        let deadline = Instant::now() + wait;
        while state.segments.is_empty() {
            if let Some(why) = &state.failure {
                return Err(Refusal::NoData(why.clone()));
            }
            if self.stop.is_set() || Instant::now() >= deadline || state.reading.is_none() {
                return Err(Refusal::NoData("no chunk yet".into()));
            }
            slot.changed.wait_for(&mut state, WAIT_STEP);
        }
        Ok(state
            .window
            .as_ref()
            .map(Playlist::render)
            .unwrap_or_default())
    }

    /// A segment of `guide`'s HLS window, for the client at `client`.
    pub fn segment(
        &self,
        guide: &GuideNumber,
        index: ChunkIndex,
        client: IpAddr,
    ) -> Option<Arc<[u8]>> {
        let at = self.find(guide)?;
        let mut state = self.channels[at].state.lock();
        let bytes = state
            .segments
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b.clone())?;
        state.hls_clients.insert(client, Instant::now());
        state.bytes_out += bytes.len() as u64;
        Some(bytes)
    }

    /// Every channel's figures.
    pub fn status(&self) -> Vec<ChannelStatus> {
        let hls_idle = self.hls_idle();
        self.channels
            .iter()
            .map(|c| {
                let s = c.state.lock();
                let upstream = match &s.reading {
                    Some(r) => c.spec.upstreams[r.upstream].label.clone(),
                    None => c
                        .spec
                        .upstreams
                        .iter()
                        .map(|u| u.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                ChannelStatus {
                    entry: c.spec.entry.clone(),
                    upstream,
                    open: s.reading.is_some(),
                    since: s.since,
                    viewers: s.viewers.len(),
                    hls_clients: s
                        .hls_clients
                        .values()
                        .filter(|t| t.elapsed() < hls_idle)
                        .count(),
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    chunks: s.chunks,
                    bitrate: s.bitrate(),
                    skipped: s.skipped,
                    dropped_viewers: s.dropped_viewers,
                    failure: s.failure.clone(),
                }
            })
            .collect()
    }

    /// An HLS client has left when it asked for nothing for two target durations.
    fn hls_idle(&self) -> Duration {
        Duration::from_secs(2 * self.config.target_duration.max(1))
    }

    /// Opens channel `at` if it is not being read: takes a tuner and starts the read.
    fn open(self: &Arc<Hub>, at: usize, state: &mut ChannelState) -> Result<(), Refusal> {
        match &state.reading {
            Some(r) if !r.thread.is_finished() => return Ok(()),
            // A read that ended on its own (the upstream failed or ended): gone, its tuner free.
            Some(_) => {
                if let Some(r) = state.reading.take() {
                    let _ = r.thread.join();
                }
            }
            None => {}
        }
        let upstreams = &self.channels[at].spec.upstreams;
        let upstream = {
            let mut free = self.free_tuners.lock();
            let chosen = upstreams
                .iter()
                .position(|u| match u.device {
                    Some(d) => free.get(d).is_some_and(|n| *n > 0),
                    None => true,
                })
                .ok_or(Refusal::AllTunersInUse)?;
            if let Some(d) = upstreams[chosen].device {
                free[d] -= 1;
            }
            chosen
        };
        let device = upstreams[upstream].device;
        let stop = StopFlag::default();
        let thread = std::thread::Builder::new()
            .name(format!("lan {}", self.channels[at].spec.entry.guide))
            .spawn({
                let (hub, stop) = (self.clone(), stop.clone());
                move || hub.read(at, upstream, &stop)
            });
        match thread {
            Ok(thread) => {
                *state = ChannelState {
                    reading: Some(Reading {
                        stop,
                        thread,
                        upstream,
                    }),
                    since: Some(UnixMillis::now()),
                    window: Some(Playlist::new(
                        PlaylistKind::Window(HLS_WINDOW),
                        self.config.target_duration,
                    )),
                    bytes_in: state.bytes_in,
                    bytes_out: state.bytes_out,
                    chunks: state.chunks,
                    skipped: state.skipped,
                    dropped_viewers: state.dropped_viewers,
                    ..ChannelState::default()
                };
                log::info!("channel {}: opened", self.channels[at].spec.entry.guide);
                Ok(())
            }
            Err(e) => {
                if let Some(d) = device {
                    self.free_tuners.lock()[d] += 1;
                }
                Err(Refusal::NoData(format!("cannot start a thread: {e}")))
            }
        }
    }

    /// The read of channel `at` from its upstream `upstream`, on its own thread, until `stop`
    /// or the upstream ends; then the channel is closed and its tuner freed.
    fn read(self: &Arc<Hub>, at: usize, upstream: usize, stop: &StopFlag) {
        let slot = &self.channels[at];
        let device = slot.spec.upstreams[upstream].device;
        let failure = match &slot.spec.upstreams[upstream].source {
            ChannelSource::Tuner(source) => self.read_tuner(at, source, stop),
            ChannelSource::Mesh(mesh) => self.read_mesh(at, mesh, stop),
        };
        let mut state = slot.state.lock();
        if let Some(why) = &failure {
            log::warn!("channel {}: {why}", slot.spec.entry.guide);
        }
        state.failure = failure;
        state.viewers.clear(); // their queues end: the viewers see the channel close
        state.segments.clear();
        state.window = None;
        state.since = None;
        // The reaper joins the thread; the tuner is free once the device connection is closed.
        if let Some(d) = device {
            self.free_tuners.lock()[d] += 1;
        }
        slot.changed.notify_all();
        log::info!("channel {}: closed", slot.spec.entry.guide);
    }

    /// Reads a tuner until `stop` or the capture ends; the failure, if any.
    fn read_tuner(&self, at: usize, source: &Source, stop: &StopFlag) -> Option<String> {
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
                    self.publish(at, piece, Arc::from(&chunk.bytes[..]));
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
    fn read_mesh(self: &Arc<Hub>, at: usize, mesh: &MeshSource, stop: &StopFlag) -> Option<String> {
        let config = SubscribeConfig {
            keys: mesh.keys.clone(),
            policy: mesh.policy.clone(),
            objects: vec![mesh.objects.clone()],
            manifests: mesh.manifests.iter().cloned().collect(),
            group_timeout: Duration::from_millis(u64::from(self.config.chunker.chunk_ms)),
            max_source_invalid: 3,
            subscribe_manifests: true,
            backfill: 0,
            output: Destination::Sink(Box::new(ChannelSink {
                hub: self.clone(),
                at,
            })),
            target_duration: self.config.target_duration,
            chunk_ticks: u64::from(self.config.chunker.chunk_ms) * 90,
            stop_after: None,
            max_invalid: None,
            manifest_timeout: MESH_TIMEOUT,
            idle_timeout: MESH_TIMEOUT,
        };
        let (_, result) = subscribe(config, stop, &mut |_| {});
        result.err().map(|e| e.to_string())
    }

    /// A new chunk of channel `at`: into the HLS window and every viewer's queue.
    fn publish(&self, at: usize, piece: Piece, bytes: Arc<[u8]>) {
        let slot = &self.channels[at];
        let mut state = slot.state.lock();
        state.bytes_in += bytes.len() as u64;
        state.chunks += 1;
        let date_time = state
            .clock
            .next(piece.duration, piece.discontinuity, UnixMillis::now());
        if let Some(window) = state.window.as_mut() {
            window.push(SegmentEntry {
                index: piece.index,
                duration: piece.duration,
                discontinuity: piece.discontinuity,
                date_time,
            });
        }
        state.segments.push_back((piece.index, bytes.clone()));
        // Keep one more than the window: a client may fetch a segment just slid out.
        while state.segments.len() > HLS_WINDOW + 1 {
            state.segments.pop_front();
        }
        let (mut skipped, mut dropped) = (0, 0);
        state
            .viewers
            .retain_mut(|v| match v.chunks.try_send(bytes.clone()) {
                Ok(()) => {
                    v.skips_in_row = 0;
                    true
                }
                Err(TrySendError::Full(_)) => {
                    skipped += 1;
                    v.skips_in_row += 1;
                    let keep = v.skips_in_row < MAX_SKIPS_IN_A_ROW;
                    dropped += u64::from(!keep);
                    keep
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
        state.skipped += skipped;
        state.dropped_viewers += dropped;
        slot.changed.notify_all();
    }

    /// Closes channels nobody watched for `release`, until the hub stops; then closes all.
    fn reap(&self) {
        let hls_idle = self.hls_idle();
        while !self.stop.is_set() {
            std::thread::sleep(REAP_EVERY);
            for slot in &self.channels {
                let reading = {
                    let mut state = slot.state.lock();
                    state.hls_clients.retain(|_, t| t.elapsed() < hls_idle);
                    let watched = !state.viewers.is_empty() || !state.hls_clients.is_empty();
                    let Some(reading) = &state.reading else {
                        continue;
                    };
                    if !reading.thread.is_finished() {
                        if watched {
                            state.idle_since = None;
                            continue;
                        }
                        let idle = *state.idle_since.get_or_insert_with(Instant::now);
                        if idle.elapsed() < self.config.release {
                            continue;
                        }
                    }
                    state.reading.take()
                };
                if let Some(reading) = reading {
                    reading.stop.set();
                    let _ = reading.thread.join();
                }
            }
        }
        for slot in &self.channels {
            let reading = slot.state.lock().reading.take();
            if let Some(reading) = reading {
                reading.stop.set();
                let _ = reading.thread.join();
            }
        }
    }
}
