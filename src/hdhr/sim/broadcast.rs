//! One simulated channel's broadcast: a clip looped forever on a virtual clock, as a pure function
//! of packet number → 188 bytes, and of elapsed broadcast time → the live packet number.
//!
//! It never reads the clock, sleeps, opens sockets or spawns threads: the server asks "which packet
//! is live after this much time" and "what are the bytes of packet n", so two clients asking about
//! the same packet get the same bytes. Memory is the clip plus a few bytes per packet.
//!
//! Looping without a seam: loop k of the clip adds k × L to every PCR, PTS and DTS (modulo 2^33
//! at 90 kHz, modulo 2^33 × 300 for the 27 MHz PCR) and k × (counter advance per loop) to each
//! continuity counter. L, the loop duration, is the PCR span of the clip plus one mean PCR interval,
//! so the step from the last PCR of a loop to the first of the next is as regular as the rest —
//! unless an elementary stream lasts longer (audio frames rarely end with the video), in which
//! case L is that stream's decode span, so no stream overlaps itself at the seam. The
//! counter advance of a PID is `last − first + 1` (mod 16) of its counters in the clip — the number
//! of its payload packets for a clean clip — so counters continue across the seam.
//!
//! Pacing: each packet is due at a time interpolated linearly between the PCRs around it (the
//! packets between the last PCR and the next loop's first PCR share the seam interval), so a clip
//! plays at the rate its PCR says.

use crate::ts::clock::{Pts, WRAP};
use crate::ts::demux::Demuxer;
use crate::ts::packet::{Packet, Pid, PACKET_SIZE};
use crate::ts::pes::{write_timestamp, PesHeader};
use crate::ts::psi::StreamType;
use crate::ts::sync::{Framed, Framer};
use std::collections::BTreeMap;
use std::time::Duration;

/// The largest clip accepted, in bytes (the clip is held in memory).
pub const MAX_CLIP_BYTES: usize = 256 << 20;
/// 27 MHz PCR ticks per 90 kHz tick.
const PCR_PER_TICK: u64 = 300;
/// The 27 MHz PCR wraps at this many ticks.
const PCR_WRAP: u64 = WRAP * PCR_PER_TICK;
/// PCR ticks per second.
const PCR_PER_SECOND: u64 = 27_000_000;
/// Two consecutive PCRs further apart than this are a time-base jump the clip may not contain.
const MAX_PCR_STEP: u64 = 10 * PCR_PER_SECOND;

/// Why a clip cannot be broadcast. Every variant is the clip's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClipError {
    /// The clip is larger than [`MAX_CLIP_BYTES`].
    TooLarge(usize),
    /// No transport packets were found in it.
    NoPackets,
    /// It has no PAT, or its first program has no PMT.
    NoProgram,
    /// Its PCR PID carries fewer than two PCRs, so it has no real-time rate.
    NoPcr,
    /// Two consecutive PCRs go backwards or jump by more than 10 s.
    PcrJump,
    /// The timestamps of this PID span over 10 s more than the PCR: they jump.
    TimestampJump(Pid),
    /// A PES header on this PID is split across packets, so its timestamps cannot be rewritten.
    SplitPesHeader(Pid),
}

impl std::fmt::Display for ClipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClipError::TooLarge(n) => write!(
                f,
                "clip of {n} bytes is larger than the {} MiB limit",
                MAX_CLIP_BYTES >> 20
            ),
            ClipError::NoPackets => write!(f, "no MPEG-TS packets in the clip"),
            ClipError::NoProgram => write!(f, "no PAT/PMT in the clip"),
            ClipError::NoPcr => write!(f, "no PCR in the clip (at least two are needed)"),
            ClipError::PcrJump => write!(f, "the clip's PCR goes backwards or jumps"),
            ClipError::TimestampJump(pid) => write!(f, "the timestamps on PID {pid} jump"),
            ClipError::SplitPesHeader(pid) => {
                write!(f, "a PES header on PID {pid} is split across packets")
            }
        }
    }
}

impl std::error::Error for ClipError {}

/// What to rewrite in one clip packet when it is sent in a later loop.
#[derive(Clone, Copy, Debug, Default)]
struct Patch {
    /// The continuity counter advances per loop (any PID but the null PID).
    counter: bool,
    /// The adaptation field carries a PCR (at bytes 6..12).
    pcr: bool,
    /// A PES header with timestamps starts at this offset in the packet.
    pes_at: Option<u8>,
}

/// A clip looped as a broadcast; see the module doc.
pub struct Broadcast {
    /// The clip's packets, back to back.
    clip: Vec<u8>,
    /// Per packet: when it is due, in 27 MHz ticks from the start of its loop (non-decreasing,
    /// the first is 0, all below `loop_pcr`).
    due: Vec<u64>,
    /// Per packet: what to rewrite.
    patches: Vec<Patch>,
    /// Per PID: the continuity counter advance per loop.
    counter_advance: Box<[u8; 8192]>,
    /// The loop duration L in 90 kHz ticks.
    loop_ticks: u64,
    video: Option<StreamType>,
    audio: Option<StreamType>,
}

impl Broadcast {
    /// Analyses a clip: frames it, finds its program and PCRs, and plans the rewriting.
    pub fn new(input: &[u8]) -> Result<Broadcast, ClipError> {
        if input.len() > MAX_CLIP_BYTES {
            return Err(ClipError::TooLarge(input.len()));
        }
        let clip = frame(input);
        if clip.is_empty() {
            return Err(ClipError::NoPackets);
        }
        let mut demuxer = Demuxer::new();
        for raw in packets(&clip) {
            if let Ok(packet) = Packet::parse(raw) {
                if !packet.transport_error() {
                    demuxer.handle(&packet);
                }
            }
        }
        let pmt = demuxer.pmt().ok_or(ClipError::NoProgram)?.clone();
        let audio = pmt.streams.iter().map(|es| es.stream_type).find(|t| {
            matches!(
                t,
                StreamType::Aac | StreamType::Ac3 | StreamType::Eac3 | StreamType::MpegAudio
            )
        });

        let count = clip.len() / PACKET_SIZE;
        let mut patches = vec![Patch::default(); count];
        let mut first_cc = [None::<u8>; 8192];
        let mut last_cc = [0u8; 8192];
        let mut pcrs = Vec::new();
        let mut spans: BTreeMap<Pid, StreamSpan> = BTreeMap::new();
        for (j, raw) in packets(&clip).enumerate() {
            let Ok(packet) = Packet::parse(raw) else {
                continue; // sent as it is, like any malformed packet a broadcast carries
            };
            let pid = packet.pid();
            let patch = &mut patches[j];
            patch.counter = pid != Pid::NULL;
            if patch.counter && packet.has_payload() {
                first_cc[pid.index()].get_or_insert(packet.continuity_counter());
                last_cc[pid.index()] = packet.continuity_counter();
            }
            if let Some(pcr) = packet.adaptation().pcr {
                patch.pcr = true;
                if pid == pmt.pcr_pid {
                    let value = pcr.base().ticks() * PCR_PER_TICK + u64::from(pcr.extension());
                    pcrs.push((j, value % PCR_WRAP));
                }
            }
            let Some(es) = pmt.streams.iter().find(|es| es.pid == pid) else {
                continue;
            };
            if !packet.payload_unit_start() {
                if let Some(span) = spans.get_mut(&pid) {
                    span.push_data(packet.payload());
                }
                continue;
            }
            let at = PACKET_SIZE - packet.payload().len();
            match PesHeader::parse(packet.payload()) {
                Ok(None) => return Err(ClipError::SplitPesHeader(pid)),
                Ok(Some(header)) => {
                    let data = packet.payload().get(header.payload_offset..);
                    if let Some(time) = header.decode_time() {
                        patch.pes_at = Some(at as u8);
                        spans
                            .entry(pid)
                            .or_insert_with(|| StreamSpan::new(es.stream_type, time))
                            .push_start(time, data.unwrap_or_default());
                    }
                }
                // A malformed header the clip carries as it is.
                Err(_) => {}
            }
        }
        let mut counter_advance = Box::new([0u8; 8192]);
        for (pid, first) in first_cc.iter().enumerate() {
            if let Some(first) = first {
                counter_advance[pid] = last_cc[pid].wrapping_sub(*first).wrapping_add(1) & 0x0f;
            }
        }
        let (due, loop_ticks) = schedule(count, &pcrs, &spans)?;
        Ok(Broadcast {
            clip,
            due,
            patches,
            counter_advance,
            loop_ticks,
            video: pmt.video().map(|es| es.stream_type),
            audio,
        })
    }

    /// Packets in one loop of the clip.
    pub fn packets_per_loop(&self) -> u64 {
        self.due.len() as u64
    }

    /// The loop duration L in 90 kHz ticks (PCR span plus one PCR interval).
    pub fn loop_ticks(&self) -> u64 {
        self.loop_ticks
    }

    /// The loop duration as a [`Duration`].
    pub fn loop_duration(&self) -> Duration {
        Duration::from_nanos(self.loop_ticks.saturating_mul(100_000).div_ceil(9))
    }

    /// The clip's video coding (from its PMT), if it has video.
    pub fn video(&self) -> Option<StreamType> {
        self.video
    }

    /// The clip's first audio coding (from its PMT), if it has audio.
    pub fn audio(&self) -> Option<StreamType> {
        self.audio
    }

    /// How many packets are due once `elapsed` of broadcast time has passed: the number of the
    /// next packet to go on air, which is where a client tuning in at that moment starts.
    pub fn live_packet(&self, elapsed: Duration) -> u64 {
        let ticks = u64::try_from(elapsed.as_nanos() * 27 / 1000).unwrap_or(u64::MAX);
        let loop_pcr = self.loop_ticks * PCR_PER_TICK;
        let (k, within) = (ticks / loop_pcr, ticks % loop_pcr);
        let in_loop = self.due.partition_point(|&due| due <= within) as u64;
        k.saturating_mul(self.packets_per_loop())
            .saturating_add(in_loop)
    }

    /// Writes packet `n` of the endless broadcast into `out`: packet `n mod N` of the clip, with
    /// its timestamps and continuity counter moved on by `n div N` loops.
    pub fn packet(&self, n: u64, out: &mut [u8; PACKET_SIZE]) {
        let count = self.packets_per_loop();
        let (k, j) = (n / count, (n % count) as usize);
        out.copy_from_slice(&self.clip[j * PACKET_SIZE..(j + 1) * PACKET_SIZE]);
        if k == 0 {
            return;
        }
        let patch = self.patches[j];
        if patch.counter {
            let pid = Pid::new(u16::from_be_bytes([out[1], out[2]]));
            let advance = ((k % 16) as u8).wrapping_mul(self.counter_advance[pid.index()]);
            out[3] = (out[3] & 0xf0) | (out[3].wrapping_add(advance) & 0x0f);
        }
        let shift = ((u128::from(k) * u128::from(self.loop_ticks)) % u128::from(WRAP)) as u64;
        if patch.pcr {
            shift_pcr(&mut out[6..12], shift * PCR_PER_TICK);
        }
        if let Some(at) = patch.pes_at {
            shift_pes_timestamps(&mut out[usize::from(at)..], shift);
        }
    }
}

/// Frames the input into whole packets, dropping whatever is not part of one.
fn frame(input: &[u8]) -> Vec<u8> {
    let mut clip = Vec::with_capacity(input.len());
    let mut framer = Framer::new();
    let mut sink = |framed: Framed<'_>| {
        if let Framed::Packet { packet, .. } = framed {
            clip.extend_from_slice(packet);
        }
    };
    framer.push(input, &mut sink);
    framer.finish(&mut sink);
    clip
}

fn packets(clip: &[u8]) -> impl Iterator<Item = &[u8; PACKET_SIZE]> {
    clip.chunks_exact(PACKET_SIZE)
        .map(|raw| raw.try_into().expect("chunks_exact yields whole packets"))
}

/// The decode-time span of one elementary stream in the clip, from its PES headers.
struct StreamSpan {
    codec: StreamType,
    last: Pts,
    /// The last decode time, from the first, unwrapped.
    elapsed: u64,
    /// The step between the last two decode times.
    step: u64,
    /// The elementary-stream bytes of the last PES (at most [`MAX_TAIL`]).
    tail: Vec<u8>,
}

/// Bytes of the last PES kept to count its audio frames.
const MAX_TAIL: usize = 64 * 1024;

impl StreamSpan {
    fn new(codec: StreamType, first: Pts) -> StreamSpan {
        StreamSpan {
            codec,
            last: first,
            elapsed: 0,
            step: 0,
            tail: Vec::new(),
        }
    }

    fn push_start(&mut self, time: Pts, data: &[u8]) {
        let step = time.wrapping_delta(self.last);
        if step > 0 {
            self.elapsed += step as u64;
            self.step = step as u64;
            self.last = time;
        }
        self.tail.clear();
        self.push_data(data);
    }

    fn push_data(&mut self, data: &[u8]) {
        let room = MAX_TAIL - self.tail.len();
        self.tail.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// From the first decode time to the end of the last PES, in 90 kHz ticks. The last PES
    /// lasts as long as its audio frames say, or else as long as the step before it.
    fn ticks(&self) -> u64 {
        self.elapsed + audio_ticks(self.codec, &self.tail).unwrap_or(self.step)
    }
}

/// The duration in 90 kHz ticks of whole AAC (ADTS), AC-3 (48 kHz) or E-AC-3 frames filling
/// `es`; `None` for other codecs, or bytes that are not such frames.
fn audio_ticks(codec: StreamType, mut es: &[u8]) -> Option<u64> {
    const ADTS_RATES: [u64; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    const AC3_KBPS: [usize; 19] = [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
    ];
    let mut ticks = 0;
    while !es.is_empty() {
        // (frame bytes, samples counted, sample rate)
        let (len, samples, rate) = match (codec, es) {
            (StreamType::Aac, [0xff, b1, b2, b3, b4, b5, b6, ..]) if b1 & 0xf6 == 0xf0 => {
                let rate = *ADTS_RATES.get(usize::from(b2 >> 2 & 0x0f))?;
                let len =
                    (usize::from(b3 & 0x03) << 11) | (usize::from(*b4) << 3) | usize::from(b5 >> 5);
                (len, 1024 * (u64::from(b6 & 0x03) + 1), rate)
            }
            (StreamType::Ac3 | StreamType::Eac3, [0x0b, 0x77, b2, b3, b4, b5, ..]) => {
                if b5 >> 3 <= 10 {
                    // AC-3: 48 kHz only (frame size tables differ for the other rates).
                    let kbps = *AC3_KBPS.get(usize::from(b4 & 0x3f) >> 1)?;
                    if b4 >> 6 != 0 {
                        return None;
                    }
                    (kbps * 4, 1536, 48000)
                } else {
                    let len = ((usize::from(b2 & 0x07) << 8) | usize::from(*b3)) * 2 + 2;
                    let (rate, blocks) = match b4 >> 6 {
                        3 => ([24000, 22050, 16000, 0][usize::from(b4 >> 4 & 3)], 6),
                        fscod => (
                            [48000, 44100, 32000][usize::from(fscod)],
                            [1, 2, 3, 6][usize::from(b4 >> 4 & 3)],
                        ),
                    };
                    // Dependent substreams (type 1) extend a frame already counted.
                    let independent = b2 >> 6 != 1;
                    (len, if independent { 256 * blocks } else { 0 }, rate)
                }
            }
            _ => return None,
        };
        if len == 0 || len > es.len() || rate == 0 {
            return None;
        }
        ticks += samples * 90_000 / rate;
        es = &es[len..];
    }
    Some(ticks)
}

/// Plans when each of `count` packets is due, from the PCRs `(packet index, 27 MHz value)`.
/// Returns the due times (27 MHz, from the loop start) and the loop duration in 90 kHz ticks:
/// the PCR span plus one mean PCR interval, or the longest stream's decode span when that is
/// longer, so that no stream overlaps itself at the seam.
fn schedule(
    count: usize,
    pcrs: &[(usize, u64)],
    spans: &BTreeMap<Pid, StreamSpan>,
) -> Result<(Vec<u64>, u64), ClipError> {
    let &(first_at, first) = match pcrs.first() {
        Some(first) if pcrs.len() >= 2 => first,
        _ => return Err(ClipError::NoPcr),
    };
    // PCR times relative to the first, unwrapped.
    let mut anchors = Vec::with_capacity(pcrs.len() + 1);
    let mut time = 0u64;
    let mut previous = first;
    for &(at, value) in pcrs {
        let step = (value + PCR_WRAP - previous) % PCR_WRAP;
        if at != first_at && (step == 0 || step > MAX_PCR_STEP) {
            return Err(ClipError::PcrJump);
        }
        time += step;
        previous = value;
        anchors.push((at as u64, time));
    }
    let span = time;
    let interval = span / (pcrs.len() as u64 - 1);
    let mut loop_ticks = (span + interval + PCR_PER_TICK / 2) / PCR_PER_TICK;
    for (&pid, stream) in spans {
        if stream.ticks() > loop_ticks + MAX_PCR_STEP / PCR_PER_TICK {
            return Err(ClipError::TimestampJump(pid));
        }
        loop_ticks = loop_ticks.max(stream.ticks());
    }
    let loop_pcr = loop_ticks * PCR_PER_TICK;
    if loop_pcr <= span {
        return Err(ClipError::PcrJump);
    }
    // The next loop's first PCR closes the seam segment.
    let count = count as u64;
    anchors.push((count + first_at as u64, loop_pcr));

    // Time of a packet position in [first_at, count + first_at), relative to the first PCR.
    let mut relative = vec![0i64; count as usize];
    for pair in anchors.windows(2) {
        let ((a, ta), (b, tb)) = (pair[0], pair[1]);
        for position in a..b {
            let t = ta + (tb - ta) * (position - a) / (b - a);
            // Positions past the clip's end are the next loop's first packets: one loop earlier.
            let (j, t) = if position >= count {
                (position - count, t as i64 - loop_pcr as i64)
            } else {
                (position, t as i64)
            };
            relative[j as usize] = t;
        }
    }
    let origin = relative[0];
    let due = relative.iter().map(|&t| (t - origin) as u64).collect();
    Ok((due, loop_ticks))
}

/// Adds `shift` (27 MHz) to the PCR in `field` (6 bytes), modulo 2^33 × 300.
fn shift_pcr(field: &mut [u8], shift: u64) {
    let base = (u64::from(field[0]) << 25)
        | (u64::from(field[1]) << 17)
        | (u64::from(field[2]) << 9)
        | (u64::from(field[3]) << 1)
        | (u64::from(field[4]) >> 7);
    let extension = (u64::from(field[4] & 1) << 8) | u64::from(field[5]);
    let value = (base * PCR_PER_TICK + extension + shift) % PCR_WRAP;
    let (base, extension) = (value / PCR_PER_TICK, value % PCR_PER_TICK);
    field[0] = (base >> 25) as u8;
    field[1] = (base >> 17) as u8;
    field[2] = (base >> 9) as u8;
    field[3] = (base >> 1) as u8;
    field[4] = ((base & 1) << 7) as u8 | 0x7e | (extension >> 8) as u8;
    field[5] = extension as u8;
}

/// Adds `shift` (90 kHz) to the PTS and DTS of the PES header at the start of `pes`.
fn shift_pes_timestamps(pes: &mut [u8], shift: u64) {
    let Ok(Some(header)) = PesHeader::parse(pes) else {
        return; // checked when the clip was analysed; the bytes have not changed since
    };
    let moved = |ts: Pts| Pts::new(ts.ticks() + shift);
    if let Some(pts) = header.pts {
        let prefix = pes[9] >> 4;
        write_timestamp(&mut pes[9..14], prefix, moved(pts));
    }
    if let Some(dts) = header.dts {
        write_timestamp(&mut pes[14..19], 0b0001, moved(dts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Chunker, ChunkerConfig};
    use crate::clip::BUILTIN_TS;
    use crate::time::UnixMillis;
    use crate::ts::demux::Continuity;

    fn builtin() -> Broadcast {
        Broadcast::new(BUILTIN_TS).unwrap()
    }

    fn stream(b: &Broadcast, from: u64, to: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(((to - from) as usize) * PACKET_SIZE);
        let mut packet = [0u8; PACKET_SIZE];
        for n in from..to {
            b.packet(n, &mut packet);
            out.extend_from_slice(&packet);
        }
        out
    }

    fn only_pids(keep: &[u16]) -> Vec<u8> {
        packets(BUILTIN_TS)
            .filter(|p| keep.contains(&Packet::parse(p).unwrap().pid().value()))
            .flatten()
            .copied()
            .collect()
    }

    #[test]
    fn the_builtin_clip_loops_every_twelve_seconds_and_loop_zero_is_the_clip() {
        let b = builtin();
        let seconds = b.loop_ticks() as f64 / 90_000.0;
        // The AAC track (564 frames of 1920 ticks with the encoder's priming frame) is the longest.
        assert_eq!(b.loop_ticks(), 564 * 1920, "loop of {seconds} s");
        assert_eq!(
            b.packets_per_loop() as usize * PACKET_SIZE,
            BUILTIN_TS.len()
        );
        assert_eq!(b.video(), Some(StreamType::H264));
        assert_eq!(b.audio(), Some(StreamType::Aac));
        assert_eq!(stream(&b, 0, b.packets_per_loop()), BUILTIN_TS);
    }

    #[test]
    fn three_loops_have_no_continuity_or_timestamp_seam() {
        let b = builtin();
        let bytes = stream(&b, 0, 3 * b.packets_per_loop());
        let mut demuxer = Demuxer::new();
        let mut last_pcr = None;
        let mut steps = Vec::new();
        for raw in packets(&bytes) {
            let report = demuxer.handle(&Packet::parse(raw).unwrap());
            assert_eq!(report.continuity, Continuity::Ok);
            if let Some(pcr) = report.pcr {
                if let Some(last) = last_pcr {
                    steps.push(pcr.base().wrapping_delta(last));
                }
                last_pcr = Some(pcr.base());
            }
        }
        // The clip has a PCR every 100 ms; the seam step is that plus the audio track's overhang
        // past the video (the AAC priming frame and half a frame at the end: 32 ms).
        let per_loop = steps.len() / 3;
        let largest_in_clip = *steps[..per_loop].iter().max().unwrap();
        for step in steps {
            assert!(
                (1..=largest_in_clip + 2 * 1920).contains(&step),
                "PCR step {step}"
            );
        }
        let mut chunker = Chunker::new(ChunkerConfig::default());
        chunker.push(&bytes, UnixMillis(1_764_072_000_000));
        chunker.finish(UnixMillis(1_764_072_000_000));
        let chunks: Vec<_> = std::iter::from_fn(|| chunker.poll_chunk()).collect();
        assert!(chunks.len() >= 16, "{} chunks", chunks.len());
        for chunk in &chunks {
            assert_eq!(chunk.flags.bits(), 0, "chunk {} flags", chunk.index);
            let ms = chunk.duration_ms();
            assert!(
                (1900..=2100).contains(&ms),
                "chunk {} lasts {ms} ms",
                chunk.index
            );
        }
        for pair in chunks.windows(2) {
            assert_eq!(pair[1].index.0, pair[0].index.0 + 1);
        }
        assert_eq!(chunker.stats().discontinuities, 0);
    }

    #[test]
    fn pacing_follows_the_pcr_and_repeats_every_loop() {
        let b = builtin();
        let n = b.packets_per_loop();
        let loop_time = b.loop_duration();
        assert_eq!(b.live_packet(Duration::ZERO), 1);
        assert_eq!(b.live_packet(loop_time * 2), 2 * n + 1);
        let mut last = 0;
        for ms in (0..30_000).step_by(97) {
            let live = b.live_packet(Duration::from_millis(ms));
            assert!(live >= last);
            last = live;
        }
        // Half a loop in, about half a loop's packets are due.
        let half = b.live_packet(loop_time / 2) as f64 / n as f64;
        assert!((0.35..0.65).contains(&half), "{half}");
        assert!(b.live_packet(Duration::MAX) > 0);
    }

    #[test]
    fn timestamps_wrap_modulo_2_pow_33() {
        let b = builtin();
        let k = WRAP / b.loop_ticks() + 1; // the first loop past the wrap
        let (mut original, mut looped) = ([0u8; PACKET_SIZE], [0u8; PACKET_SIZE]);
        let j = (0..b.packets_per_loop())
            .find(|&j| b.patches[j as usize].pcr)
            .unwrap();
        b.packet(j, &mut original);
        b.packet(k * b.packets_per_loop() + j, &mut looped);
        let pcr = |p: &[u8; PACKET_SIZE]| Packet::parse(p).unwrap().adaptation().pcr.unwrap();
        let expected = (pcr(&original).base().ticks() + k * b.loop_ticks()) % WRAP;
        assert_eq!(pcr(&looped).base().ticks(), expected);
        assert_eq!(pcr(&looped).extension(), pcr(&original).extension());
    }

    #[test]
    fn audio_frames_are_counted_for_the_seam() {
        let adts = |len: usize| {
            let mut frame = vec![
                0xff,
                0xf1,
                0x4c,
                0x80,
                (len >> 3) as u8,
                (len << 5) as u8 | 0x1f,
                0xfc,
            ];
            frame.resize(len, 0);
            frame
        };
        let two_aac = [adts(10), adts(20)].concat();
        assert_eq!(audio_ticks(StreamType::Aac, &two_aac), Some(2 * 1920));
        let mut ac3 = vec![0x0b, 0x77, 0, 0, 28, 8 << 3];
        ac3.resize(1536, 0);
        assert_eq!(
            audio_ticks(StreamType::Ac3, &[ac3.clone(), ac3].concat()),
            Some(5760)
        );
        let mut eac3 = vec![0x0b, 0x77, 0x01, 0x7f, 0x30, 16 << 3];
        eac3.resize(768, 0);
        assert_eq!(audio_ticks(StreamType::Eac3, &eac3), Some(2880));
        assert_eq!(
            audio_ticks(StreamType::Aac, &two_aac[..25]),
            None,
            "truncated"
        );
        assert_eq!(audio_ticks(StreamType::Aac, &[0x12; 40]), None);
        assert_eq!(audio_ticks(StreamType::H264, &two_aac), None);
    }

    #[test]
    fn unusable_clips_are_refused_with_their_cause() {
        assert_eq!(Broadcast::new(&[]).err(), Some(ClipError::NoPackets));
        assert_eq!(
            Broadcast::new(&[0x55; 1000]).err(),
            Some(ClipError::NoPackets)
        );
        // PMT and media without a PAT.
        assert_eq!(
            Broadcast::new(&only_pids(&[0x1000, 0x100, 0x101])).err(),
            Some(ClipError::NoProgram)
        );
        // PAT and PMT without the PCR PID.
        assert_eq!(
            Broadcast::new(&only_pids(&[0, 0x1000, 0x101])).err(),
            Some(ClipError::NoPcr)
        );
    }
}
