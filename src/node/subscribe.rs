//! The subscribing pipeline: receive → verify → decrypt → HLS, on the caller's thread.
//!
//! ```text
//!  objects peer ───(endpoint thread)──┐
//!                                     ├─► receive loop (caller): Verifier (verify + decrypt in
//!  manifests peer ─(endpoint thread)──┘   place) → HlsWriter (segment, then playlist)
//! ```
//!
//! Objects come from one peer and manifests from the same or another one; each endpoint runs its
//! own network thread and hands events over its bounded channel. The verifier decides what is
//! accepted ("no manifests, no data" under [`Policy::require_manifest`]); this module only wires
//! the peers, the verifier and the writer, keeps the clocks (manifest timeout, idle timeout) and
//! always finishes the playlist with ENDLIST. Memory is bounded by the verifier's policy.

use crate::capture::wall_clock;
use crate::cli::stop::StopFlag;
use crate::crypto::StreamKeys;
use crate::hls::playlist::{PlaylistKind, SegmentEntry};
use crate::hls::writer::HlsWriter;
use crate::hls::{HlsError, ProgramClock};
use crate::manifest::{Event as Verdict, Policy, Reason, UnixTime, Verifier};
use crate::moq::session::{Event, SubscribeOptions};
use crate::moq::track::{BroadcastTrack, TrackKind};
use crate::moq::{ObjectStatus, RequestId, SessionCode};
use crate::net::{ConnId, Endpoint, NetError, NetEvent, PeerCheck, Settings, Target};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A peer to subscribe from.
pub struct PeerSpec {
    /// Where it is.
    pub target: Target,
    /// How its identity is checked.
    pub check: PeerCheck,
}

/// What to subscribe to and how.
pub struct SubscribeConfig {
    /// The stream's subkeys.
    pub keys: StreamKeys,
    /// What the verifier accepts.
    pub policy: Policy,
    /// The peer serving the chunk objects.
    pub objects: PeerSpec,
    /// A different peer serving the manifests (`None`: the objects peer).
    pub manifests: Option<PeerSpec>,
    /// Whether to subscribe to the manifests track.
    pub subscribe_manifests: bool,
    /// The HLS output folder.
    pub out: PathBuf,
    /// The playlist's target duration (seconds).
    pub target_duration: u64,
    /// A segment's duration when no manifest says it (90 kHz ticks).
    pub chunk_ticks: u64,
    /// Stop after this many verified chunks.
    pub stop_after: Option<u64>,
    /// Fail after more invalid objects than this.
    pub max_invalid: Option<u64>,
    /// Fail when no trusted manifest came by then (with manifests subscribed).
    pub manifest_timeout: Duration,
    /// Fail when no object came for this long.
    pub idle_timeout: Duration,
}

/// How a subscribing run went.
#[derive(Debug, Default)]
pub struct SubscribeSummary {
    /// Chunks verified and written.
    pub accepted: u64,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// Trusted manifests accepted.
    pub manifests: u64,
    /// Rejections by reason (only reasons that occurred).
    pub rejected: Vec<(Reason, u64)>,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Why a subscribing run failed; the playlist is finished (ENDLIST) before this is returned.
#[derive(Debug)]
pub enum SubscribeError {
    /// A peer could not be reached or is not who its address says.
    Connect(String, NetError),
    /// The endpoint failed.
    Net(NetError),
    /// A peer refused a track (it does not serve this stream, or not that role).
    Refused(TrackKind, String),
    /// No trusted manifest came in time.
    NoManifest(Duration),
    /// More invalid objects than allowed.
    TooManyInvalid(u64),
    /// No object for the idle timeout.
    Idle(Duration),
    /// A peer left or ended the stream.
    Left(String),
    /// Writing the output failed.
    Hls(HlsError),
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubscribeError::Connect(peer, e) => write!(f, "cannot connect to {peer}: {e}"),
            SubscribeError::Net(e) => e.fmt(f),
            SubscribeError::Refused(kind, reason) => write!(
                f,
                "the peer refused the {} track: {reason} (wrong --stream-id or --network-secret, \
                 or the peer does not publish it)",
                kind_name(*kind)
            ),
            SubscribeError::NoManifest(t) => {
                write!(f, "no trusted manifest within {} s", t.as_secs())
            }
            SubscribeError::TooManyInvalid(n) => {
                write!(f, "{n} invalid objects, more than --max-invalid-chunks")
            }
            SubscribeError::Idle(t) => {
                write!(f, "no object for {} s: the stream went idle", t.as_secs())
            }
            SubscribeError::Left(why) => write!(f, "the publisher left: {why}"),
            SubscribeError::Hls(e) => e.fmt(f),
        }
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Chunks => "chunks",
        TrackKind::Manifests => "manifests",
    }
}

/// One dialed peer and the tracks it is asked for.
struct Peer {
    name: String,
    ep: Endpoint,
    conn: ConnId,
    kinds: Vec<TrackKind>,
    requests: HashMap<RequestId, TrackKind>,
    connected: bool,
}

/// Runs the pipeline until `stop_after` chunks, a failure, or `stop`. The summary is returned
/// in both cases.
pub fn subscribe(
    config: SubscribeConfig,
    stop: &StopFlag,
) -> (SubscribeSummary, Result<(), SubscribeError>) {
    let started = Instant::now();
    let mut summary = SubscribeSummary::default();
    let mut writer =
        match HlsWriter::create(&config.out, PlaylistKind::Event, config.target_duration) {
            Ok(w) => w,
            Err(e) => return (summary, Err(SubscribeError::Hls(e))),
        };
    let mut verifier = Verifier::new(config.keys.clone(), config.policy.clone());
    let result = match dial_peers(&config) {
        Ok(mut peers) => {
            let mut run = Run {
                config: &config,
                verifier: &mut verifier,
                writer: &mut writer,
                clock: ProgramClock::default(),
                summary: &mut summary,
                started,
                last_object: Instant::now(),
            };
            let result = run.receive(&mut peers, stop);
            for peer in peers {
                let mut ep = peer.ep;
                let _ = ep.close(peer.conn, SessionCode::NoError, "done");
                ep.shutdown();
            }
            result
        }
        Err(e) => Err(e),
    };
    let finished = writer.finish().map_err(SubscribeError::Hls);
    summary.rejected = Reason::ALL
        .iter()
        .map(|r| (*r, verifier.rejected(*r)))
        .filter(|(_, n)| *n > 0)
        .collect();
    summary.elapsed = started.elapsed();
    (summary, result.and(finished))
}

fn dial_peers(config: &SubscribeConfig) -> Result<Vec<Peer>, SubscribeError> {
    let manifests = config.subscribe_manifests || config.policy.require_manifest;
    let mut specs = vec![(&config.objects, vec![TrackKind::Chunks])];
    match &config.manifests {
        Some(spec) if manifests => specs.push((spec, vec![TrackKind::Manifests])),
        _ if manifests => specs[0].1.push(TrackKind::Manifests),
        _ => {}
    }
    specs
        .into_iter()
        .map(|(spec, kinds)| {
            let name = target_name(&spec.target);
            let (ep, conn) = Endpoint::dial(&spec.target, spec.check.clone(), Settings::default())
                .map_err(|e| SubscribeError::Connect(name.clone(), e))?;
            Ok(Peer {
                name,
                ep,
                conn,
                kinds,
                requests: HashMap::new(),
                connected: false,
            })
        })
        .collect()
}

fn target_name(target: &Target) -> String {
    match target {
        Target::Node(addr) => addr.to_string(),
        Target::Relay(url) => url.authority(),
    }
}

/// The receive loop's state.
struct Run<'a> {
    config: &'a SubscribeConfig,
    verifier: &'a mut Verifier,
    writer: &'a mut HlsWriter,
    clock: ProgramClock,
    summary: &'a mut SubscribeSummary,
    started: Instant,
    last_object: Instant,
}

impl Run<'_> {
    fn receive(&mut self, peers: &mut [Peer], stop: &StopFlag) -> Result<(), SubscribeError> {
        let wait = Duration::from_millis(10) / peers.len().max(1) as u32;
        let needs_manifest = self.config.policy.require_manifest;
        while !stop.is_set() {
            for peer in peers.iter_mut() {
                if let Some(ev) = peer.ep.next_event(wait).map_err(SubscribeError::Net)? {
                    self.on_net_event(peer, ev)?;
                }
            }
            if self
                .config
                .stop_after
                .is_some_and(|n| self.summary.accepted >= n)
            {
                return Ok(());
            }
            let now = now();
            if self.verifier.poll_timeout().is_some_and(|t| t <= now) {
                self.verifier.handle_timeout(now);
                self.drain()?;
            }
            if needs_manifest
                && self.summary.manifests == 0
                && self.started.elapsed() >= self.config.manifest_timeout
            {
                return Err(SubscribeError::NoManifest(self.config.manifest_timeout));
            }
            let idle = self.config.idle_timeout;
            if self.last_object.elapsed() >= idle {
                return Err(match peers.iter().find(|p| !p.connected) {
                    Some(p) => SubscribeError::Connect(p.name.clone(), NetError::IdleTimeout),
                    None => SubscribeError::Idle(idle),
                });
            }
        }
        Ok(())
    }

    fn on_net_event(&mut self, peer: &mut Peer, ev: NetEvent) -> Result<(), SubscribeError> {
        let event = match ev {
            NetEvent::Connected { node, .. } => {
                peer.connected = true;
                self.last_object = Instant::now();
                log::info!("connected to {} (node {node:?})", peer.name);
                return Ok(());
            }
            NetEvent::Disconnected { why, .. } if peer.connected => {
                return Err(SubscribeError::Left(format!("{}: {why}", peer.name)))
            }
            NetEvent::Disconnected { why, .. } => {
                return Err(SubscribeError::Connect(peer.name.clone(), why))
            }
            NetEvent::Session { event, .. } => event,
        };
        match event {
            Event::SetupComplete { .. } => {
                let locator = self.config.keys.locator().to_string();
                for &kind in &peer.kinds {
                    let Ok(track) = BroadcastTrack::new(&locator, kind) else {
                        continue;
                    };
                    let track = track.full_name();
                    let request = peer
                        .ep
                        .call(peer.conn, move |s| {
                            s.subscribe(track, SubscribeOptions::default())
                        })
                        .map_err(SubscribeError::Net)?
                        .map_err(|e| SubscribeError::Left(e.to_string()))?;
                    peer.requests.insert(request, kind);
                }
            }
            Event::Object { request, object } => {
                if object.status != ObjectStatus::Normal {
                    return Ok(());
                }
                let now = now();
                match peer.requests.get(&request) {
                    Some(TrackKind::Chunks) => {
                        self.last_object = Instant::now();
                        self.verifier.push_object(object.payload, None, now);
                    }
                    Some(TrackKind::Manifests) => self.verifier.push_manifest(&object.payload, now),
                    None => return Ok(()),
                }
                self.drain()?;
            }
            Event::RequestFailed {
                request, reason, ..
            } => {
                if let Some(kind) = peer.requests.get(&request) {
                    return Err(SubscribeError::Refused(
                        *kind,
                        format!("{}: {reason}", peer.name),
                    ));
                }
            }
            Event::SubscriptionDone {
                request, reason, ..
            } if peer.requests.get(&request) == Some(&TrackKind::Chunks) => {
                return Err(SubscribeError::Left(format!(
                    "{} ended the stream: {reason}",
                    peer.name
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes the verifier's events: writes accepted chunks, counts manifests, logs rejections.
    fn drain(&mut self) -> Result<(), SubscribeError> {
        while let Some(verdict) = self.verifier.poll_event() {
            match verdict {
                Verdict::Chunk(chunk) => {
                    if self
                        .config
                        .stop_after
                        .is_some_and(|n| self.summary.accepted >= n)
                    {
                        continue;
                    }
                    let duration = chunk
                        .vouched
                        .map_or(self.config.chunk_ticks, |(_, d)| u64::from(d));
                    let discontinuity = chunk.flags.discontinuity();
                    let entry = SegmentEntry {
                        index: chunk.index,
                        duration,
                        discontinuity,
                        date_time: self.clock.next(duration, discontinuity, wall_clock()),
                    };
                    let bytes = chunk.bytes.as_bytes();
                    self.writer
                        .write(&entry, bytes)
                        .map_err(SubscribeError::Hls)?;
                    self.summary.accepted += 1;
                    self.summary.bytes += bytes.len() as u64;
                }
                Verdict::Manifest { signer, epoch, .. } => {
                    self.summary.manifests += 1;
                    log::debug!("manifest for epoch {epoch} from {signer}");
                }
                Verdict::Rejected(r) => log::warn!("rejected: {r}"),
                Verdict::ChainGap { signer, missing } => {
                    log::info!("manifest chain of {signer} skips {missing:?}")
                }
                Verdict::ChainBreak { signer, sequence } => {
                    log::warn!("manifest chain of {signer} breaks at {sequence}")
                }
            }
        }
        let invalid = self.verifier.rejected_objects();
        if self.config.max_invalid.is_some_and(|max| invalid > max) {
            return Err(SubscribeError::TooManyInvalid(invalid));
        }
        Ok(())
    }
}

fn now() -> UnixTime {
    UnixTime(wall_clock().0)
}
