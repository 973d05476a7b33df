//! The packet-level state machine behind [`Chunker`](super::Chunker): decides cut points, builds
//! chunk bytes, attributes damage and keeps the counters behind the end-of-run summary.

use super::body::Body;
use super::prefix::write_section_packets;
use super::timeline::Timeline;
use super::{Chunk, ChunkFlags, ChunkIndex, ChunkerConfig};
use crate::time::UnixMillis;
use crate::ts::clock::{Pts, TICKS_PER_MS, TICKS_PER_SECOND};
use crate::ts::demux::{Continuity, Demuxer, PacketReport};
use crate::ts::packet::{Packet, Pid, PACKET_SIZE};
use crate::ts::pes::PesHeader;
use std::collections::VecDeque;

/// A PCR that steps back more than this, or forward more than [`PCR_FORWARD`], is a discontinuity.
const PCR_BACK: i64 = 100 * TICKS_PER_MS as i64;
const PCR_FORWARD: i64 = TICKS_PER_SECOND as i64;
/// A video PTS that moves further than this from the previous one is a discontinuity (B-frame
/// reordering moves it back by a fraction of a second at most).
const PTS_JUMP: i64 = 5 * TICKS_PER_SECOND as i64;
/// Bytes kept from a video PES start while no chunk is open, waiting for its verdict.
const MAX_STAGING: usize = 1 << 20;
/// Spent chunk buffers kept for reuse: enough for every chunk in flight between the chunker and
/// a consumer, so that steady state neither faults in fresh pages nor returns them.
const MAX_SPARES: usize = 6;

/// Counters for the end-of-run summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkerStats {
    /// Packets framed from the input.
    pub packets: u64,
    /// Null packets stripped.
    pub null_packets: u64,
    /// Bytes dropped because they were not part of any packet.
    pub skipped_bytes: u64,
    /// Packets missing according to continuity counters.
    pub lost_packets: u64,
    /// Packets dropped because the transport error indicator was set.
    pub error_packets: u64,
    /// Malformed packets, sections or PES headers.
    pub malformed: u64,
    /// Chunks emitted.
    pub chunks: u64,
    /// Chunks dropped: unfinished at the end, cut short by a gap, or over the size limit.
    pub dropped_chunks: u64,
    /// Timestamp discontinuities seen.
    pub discontinuities: u64,
    /// Chunks cut without a random-access point.
    pub forced_cuts: u64,
}

/// The chunk being built.
struct OpenChunk<B> {
    index: ChunkIndex,
    pts: Pts,
    start: u64,
    max_ext: u64,
    flags: ChunkFlags,
    bytes: B,
}

/// The latest video PES: where it starts in the open chunk (or the staging buffer), its time,
/// and the PSI counters in force when it started.
struct VideoPes {
    offset: usize,
    time: Option<(u64, Pts)>,
    pat_counter: u8,
    pmt_counter: u8,
}

/// PAT and PMT sections in force at the latest video PES start.
struct Tables {
    pat: Vec<u8>,
    pmt_pid: Pid,
    pmt: Vec<u8>,
}

pub(super) struct Cutter<B> {
    step: u64,
    max_chunk_bytes: usize,
    demux: Demuxer,
    timeline: Timeline,
    open: Option<OpenChunk<B>>,
    staging: B,
    pes: Option<VideoPes>,
    pes_damaged: bool,
    tables: Option<Tables>,
    tables_stale: bool,
    last_rap_slot: Option<u64>,
    last_index: Option<ChunkIndex>,
    last_pcr: Option<Pts>,
    last_video_pts: Option<Pts>,
    last_decode_time: Option<Pts>,
    frame_ticks: u64,
    flag_next: ChunkFlags,
    size_hint: usize,
    spares: Vec<B>,
    ready: VecDeque<Chunk<B>>,
    stats: ChunkerStats,
}

impl<B: Body> Cutter<B> {
    pub(super) fn new(config: ChunkerConfig) -> Cutter<B> {
        Cutter {
            step: u64::from(config.chunk_ms.max(1)) * TICKS_PER_MS,
            max_chunk_bytes: config.max_chunk_bytes,
            demux: Demuxer::new(),
            timeline: Timeline::default(),
            open: None,
            staging: B::default(),
            pes: None,
            pes_damaged: false,
            tables: None,
            tables_stale: true,
            last_rap_slot: None,
            last_index: None,
            last_pcr: None,
            last_video_pts: None,
            last_decode_time: None,
            frame_ticks: 0,
            flag_next: ChunkFlags::default(),
            size_hint: 0,
            spares: Vec::new(),
            ready: VecDeque::new(),
            stats: ChunkerStats::default(),
        }
    }

    pub(super) fn stats(&self) -> &ChunkerStats {
        &self.stats
    }

    pub(super) fn recycle(&mut self, mut bytes: B) {
        if self.spares.len() < MAX_SPARES {
            bytes.clear();
            self.spares.push(bytes);
        }
    }

    pub(super) fn poll_chunk(&mut self) -> Option<Chunk<B>> {
        self.ready.pop_front()
    }

    pub(super) fn on_skipped(&mut self, bytes: usize) {
        self.stats.skipped_bytes += bytes as u64;
        self.damage();
    }

    /// A packet found at offset `at` of the input stream.
    pub(super) fn on_packet(&mut self, at: u64, raw: &[u8; PACKET_SIZE], now: UnixMillis) {
        self.stats.packets += 1;
        let Ok(packet) = Packet::parse(raw) else {
            self.stats.malformed += 1;
            self.damage();
            return;
        };
        if packet.transport_error() {
            self.stats.error_packets += 1;
            self.damage();
            return;
        }
        if packet.pid() == Pid::NULL {
            self.stats.null_packets += 1;
            return;
        }
        let report = self.demux.handle(&packet);
        self.account(&report);
        if self.pcr_discontinuity(&report) {
            self.discontinuity(None);
        }
        if report.video_pes_start {
            self.start_pes();
        }
        self.append(at, raw);
        if let Some(header) = report.video_header {
            self.on_video_header(header, now);
        }
        if let Some(random_access) = report.video_random_access {
            self.on_verdict(random_access);
        }
        self.enforce_limits();
    }

    /// Local data loss: the open chunk would be a cut-short variant, so it goes.
    pub(super) fn on_gap(&mut self) {
        self.drop_open_chunk();
        self.demux.reset_continuity();
        self.restart_timeline();
    }

    pub(super) fn on_end(&mut self) {
        self.drop_open_chunk();
    }

    fn account(&mut self, report: &PacketReport) {
        if report.tables_changed {
            self.tables_stale = true;
        }
        if let Continuity::Lost(n) = report.continuity {
            self.stats.lost_packets += u64::from(n.max(1));
            self.damage();
        }
        if report.error.is_some() {
            self.stats.malformed += 1;
            self.damage();
        }
        if let Some(time) = report.wall_clock {
            self.timeline.observe_broadcaster_clock(time);
        }
    }

    fn damage(&mut self) {
        self.pes_damaged = true;
    }

    fn pcr_discontinuity(&mut self, report: &PacketReport) -> bool {
        let Some(pcr) = report.pcr.map(|p| p.base()) else {
            return report.time_base_discontinuity;
        };
        let jumped = self.last_pcr.is_some_and(|last| {
            let delta = pcr.wrapping_delta(last);
            !(-PCR_BACK..=PCR_FORWARD).contains(&delta)
        });
        self.last_pcr = Some(pcr);
        jumped || report.time_base_discontinuity
    }

    fn start_pes(&mut self) {
        if let Some(open) = &mut self.open {
            open.flags = open.flags.with(ChunkFlags::DAMAGED, self.pes_damaged);
        } else {
            self.staging.clear();
        }
        self.pes_damaged = false;
        if self.tables_stale {
            self.tables = match (self.demux.pat_section(), self.demux.pmt_section()) {
                (Some(pat), Some((pmt_pid, pmt))) => Some(Tables {
                    pat: pat.to_vec(),
                    pmt_pid,
                    pmt: pmt.to_vec(),
                }),
                _ => None,
            };
            self.tables_stale = false;
        }
        let counter = |pid| self.demux.last_counter(pid).unwrap_or(0);
        let pmt_pid = self.tables.as_ref().map_or(Pid::NULL, |t| t.pmt_pid);
        self.pes = Some(VideoPes {
            offset: self.open.as_ref().map_or(0, |open| open.bytes.len()),
            time: None,
            pat_counter: counter(Pid::PAT),
            pmt_counter: counter(pmt_pid),
        });
    }

    fn append(&mut self, at: u64, raw: &[u8; PACKET_SIZE]) {
        if let Some(open) = &mut self.open {
            open.bytes.push_packet(at, raw);
        } else if self.pes.is_some() {
            self.staging.push_packet(at, raw);
        }
    }

    fn on_video_header(&mut self, header: PesHeader, now: UnixMillis) {
        let Some(pts) = header.pts else { return };
        if let Some(time) = header.decode_time() {
            if let Some(last) = self.last_decode_time {
                let delta = time.wrapping_delta(last);
                if delta > 0 && delta < TICKS_PER_SECOND as i64 {
                    self.frame_ticks = delta as u64;
                }
            }
            self.last_decode_time = Some(time);
        }
        let jumped = self
            .last_video_pts
            .is_some_and(|last| pts.wrapping_delta(last).abs() > PTS_JUMP);
        self.last_video_pts = Some(pts);
        if jumped {
            let offset = self.pes.as_ref().map(|pes| pes.offset);
            self.discontinuity(offset);
        }
        let Some(ext) = self.timeline.extend(pts, now) else {
            return;
        };
        if let Some(pes) = &mut self.pes {
            pes.time = Some((ext, pts));
        }
        if let Some(open) = &mut self.open {
            open.max_ext = open.max_ext.max(ext);
        }
    }

    fn on_verdict(&mut self, random_access: bool) {
        let Some((ext, pts)) = self.pes.as_ref().and_then(|pes| pes.time) else {
            return;
        };
        let slot = ext / self.step;
        let boundary = random_access && self.last_rap_slot.is_some_and(|last| slot > last);
        let forced = self
            .open
            .as_ref()
            .is_some_and(|open| ext >= open.start + 3 * self.step);
        let above_last = self.last_index.is_none_or(|last| slot > last.0);
        if random_access {
            self.last_rap_slot = Some(self.last_rap_slot.map_or(slot, |last| last.max(slot)));
        }
        if (boundary || forced) && above_last {
            self.cut(ChunkIndex(slot), ext, pts, !boundary);
        } else if self.open.is_none() {
            self.pes = None;
            self.staging.clear();
        }
    }

    /// Starts chunk `index` at the current video PES, finishing the open chunk if there is one.
    fn cut(&mut self, index: ChunkIndex, ext: u64, pts: Pts, forced: bool) {
        let (Some(tables), Some(pes)) = (&self.tables, &mut self.pes) else {
            return;
        };
        let mut bytes = self.spares.pop().unwrap_or_default();
        bytes.reserve(self.size_hint);
        let prefix = bytes.prefix();
        write_section_packets(prefix, Pid::PAT, &tables.pat, pes.pat_counter);
        write_section_packets(prefix, tables.pmt_pid, &tables.pmt, pes.pmt_counter);
        let offset = std::mem::replace(&mut pes.offset, bytes.len());
        match self.open.take() {
            Some(mut finished) => {
                finished.bytes.move_tail(offset, &mut bytes);
                let duration = ext - finished.start;
                self.emit(finished, duration);
            }
            None => self.staging.move_tail(0, &mut bytes),
        }
        let flags = self
            .flag_next
            .with(ChunkFlags::DAMAGED, self.pes_damaged)
            .with(ChunkFlags::NO_RANDOM_ACCESS, forced);
        self.stats.forced_cuts += u64::from(forced);
        self.flag_next = ChunkFlags::default();
        self.pes_damaged = false;
        self.last_index = Some(index);
        self.open = Some(OpenChunk {
            index,
            pts,
            start: ext,
            max_ext: ext,
            flags,
            bytes,
        });
    }

    fn emit(&mut self, chunk: OpenChunk<B>, duration: u64) {
        // The next chunk is most likely about as large: reserve a little more to avoid regrowth.
        self.size_hint = chunk.bytes.len() + chunk.bytes.len() / 4;
        self.stats.chunks += 1;
        self.ready.push_back(Chunk {
            index: chunk.index,
            pts: chunk.pts,
            duration,
            flags: chunk.flags,
            bytes: chunk.bytes,
        });
    }

    /// A timestamp discontinuity: the open chunk ends before `at` (the offset of the video PES
    /// that jumped) or, with `None`, before the current packet; that PES, if any, stays staged as
    /// the first candidate on the new timeline.
    fn discontinuity(&mut self, at: Option<usize>) {
        self.stats.discontinuities += 1;
        if let Some(mut closed) = self.open.take() {
            let end = at.unwrap_or(closed.bytes.len());
            self.staging.clear();
            closed.bytes.move_tail(end, &mut self.staging);
            if at.is_none() {
                closed.flags = closed.flags.with(ChunkFlags::DAMAGED, self.pes_damaged);
                self.pes_damaged = false;
            }
            let duration = closed.max_ext + self.frame_ticks - closed.start;
            self.emit(closed, duration);
        } else if at.is_none() {
            self.staging.clear();
        }
        match (at, &mut self.pes) {
            (Some(_), Some(pes)) => pes.offset = 0,
            _ => self.pes = None,
        }
        self.restart_timeline();
    }

    /// After a discontinuity or a gap: re-anchor, forget the last random-access slot (one may
    /// have been missed), and flag the next chunk if one came before.
    fn restart_timeline(&mut self) {
        self.timeline.reanchor();
        self.last_rap_slot = None;
        self.last_pcr = None;
        self.last_video_pts = None;
        self.last_decode_time = None;
        if self.last_index.is_some() {
            self.flag_next = self.flag_next.with(ChunkFlags::DISCONTINUITY, true);
        }
    }

    fn drop_open_chunk(&mut self) {
        if self.open.take().is_some() {
            self.stats.dropped_chunks += 1;
        }
        self.staging.clear();
        self.pes = None;
        self.pes_damaged = false;
    }

    fn enforce_limits(&mut self) {
        if self
            .open
            .as_ref()
            .is_some_and(|open| open.bytes.len() > self.max_chunk_bytes)
        {
            log::warn!(
                "chunk over {} bytes without a cut point: dropped",
                self.max_chunk_bytes
            );
            self.on_gap();
        } else if self.staging.len() > MAX_STAGING {
            self.staging.clear();
            self.pes = None;
        }
    }
}
