//! The deterministic chunker: transport-stream bytes in, self-contained chunks out, cut only where
//! the stream itself says, so that every node fed the same broadcast emits byte-identical chunks
//! with identical indices without talking to the others.
//!
//! It never reads files, sockets or the clock: the caller pushes reads with the system time they
//! were taken at ([`Chunker::push`]), reports local data loss ([`Chunker::mark_gap`]) and the end
//! of input ([`Chunker::finish`]), and polls finished chunks ([`Chunker::poll_chunk`]). Memory is
//! bounded by [`ChunkerConfig::max_chunk_bytes`] whatever the input.
//!
//! The rule, in short (docs/PROTOCOL.md §1 has it exactly): a chunk starts at a video PES that is
//! a random-access point and whose slot `floor(extended PTS / D)` is greater than the slot of the
//! previous random-access point; its index is that slot. It ends where the next chunk starts, or
//! at a timestamp discontinuity. Data before the first boundary and the unfinished last chunk are
//! dropped, so no node emits a cut-short variant of a chunk another emits whole.

mod body;
mod cutter;
mod prefix;
pub mod timeline;

use crate::time::UnixMillis;
use crate::ts::clock::{Pts, TICKS_PER_MS};
use crate::ts::sync::{Framed, Framer};
use cutter::Cutter;

pub use body::{Body, Spans};
pub use cutter::ChunkerStats;

/// A chunk's position on the stream's grid: `floor(extended PTS of its first picture / D)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkIndex(pub u64);

impl std::fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Flags a chunk carries. The bit values are part of the object and manifest formats, and bits
/// outside [`ChunkFlags::KNOWN`] are refused there, so each flag set has one encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChunkFlags(u8);

impl ChunkFlags {
    /// A timestamp discontinuity or lost data precedes this chunk (an HLS discontinuity).
    pub const DISCONTINUITY: u8 = 0x01;
    /// Packets were lost or unparseable bytes dropped inside this chunk.
    pub const DAMAGED: u8 = 0x02;
    /// No random-access point came for 3·D, so this chunk was cut at a plain video PES start.
    pub const NO_RANDOM_ACCESS: u8 = 0x04;
    /// Every defined bit.
    pub const KNOWN: u8 = Self::DISCONTINUITY | Self::DAMAGED | Self::NO_RANDOM_ACCESS;

    /// Flags from their bits, or `None` when an undefined bit is set.
    pub const fn from_bits(bits: u8) -> Option<ChunkFlags> {
        if bits & !Self::KNOWN == 0 {
            Some(ChunkFlags(bits))
        } else {
            None
        }
    }

    /// The bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether a discontinuity precedes this chunk.
    pub const fn discontinuity(self) -> bool {
        self.0 & Self::DISCONTINUITY != 0
    }

    /// Whether data inside this chunk was lost or dropped.
    pub const fn damaged(self) -> bool {
        self.0 & Self::DAMAGED != 0
    }

    /// Whether the chunk starts without a random-access point.
    pub const fn no_random_access(self) -> bool {
        self.0 & Self::NO_RANDOM_ACCESS != 0
    }

    fn with(self, bit: u8, on: bool) -> ChunkFlags {
        if on {
            ChunkFlags(self.0 | bit)
        } else {
            self
        }
    }
}

/// One self-contained piece of the broadcast: PAT, PMT, then the stream's packets from a video
/// random-access point up to the next chunk's start, null packets removed. Its bytes are a
/// buffer, or [`Spans`] of the input for a chunker fed a mapped input ([`Chunker::in_place`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk<B = Vec<u8>> {
    /// Grid slot of its first picture.
    pub index: ChunkIndex,
    /// The 33-bit PTS of its first picture, as in the stream.
    pub pts: Pts,
    /// Length in 90 kHz ticks: up to the next chunk's first picture, or, for a chunk closed by a
    /// discontinuity, up to the end of its last picture.
    pub duration: u64,
    /// Discontinuity, damage and forced-cut flags.
    pub flags: ChunkFlags,
    /// The transport-stream bytes, a whole number of 188-byte packets.
    pub bytes: B,
}

impl<B> Chunk<B> {
    /// The duration in milliseconds, rounded to the nearest.
    pub fn duration_ms(&self) -> u64 {
        (self.duration + TICKS_PER_MS / 2) / TICKS_PER_MS
    }
}

/// Settings every node of a stream must share (the chunk duration) and local limits.
#[derive(Clone, Copy, Debug)]
pub struct ChunkerConfig {
    /// The grid step D in milliseconds (`--chunk-ms`, default 2000).
    pub chunk_ms: u32,
    /// A chunk that grows past this many bytes is dropped (a stream without usable video
    /// timestamps would otherwise grow it forever).
    pub max_chunk_bytes: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            chunk_ms: 2000,
            max_chunk_bytes: 64 << 20,
        }
    }
}

/// The chunker; see the module doc.
pub struct Chunker<B = Vec<u8>> {
    framer: Framer,
    cutter: Cutter<B>,
}

impl Chunker {
    /// A chunker that has seen nothing yet and copies each chunk's packets into its buffer.
    pub fn new(config: ChunkerConfig) -> Chunker {
        Chunker::with_body(config)
    }
}

impl Chunker<Spans> {
    /// A chunker for input that stays mapped for the whole run and is pushed in order from its
    /// first byte: chunks name where their packets lie ([`Spans`]) instead of copying them.
    pub fn in_place(config: ChunkerConfig) -> Chunker<Spans> {
        Chunker::with_body(config)
    }
}

impl<B: Body> Chunker<B> {
    fn with_body(config: ChunkerConfig) -> Chunker<B> {
        Chunker {
            framer: Framer::new(),
            cutter: Cutter::new(config),
        }
    }

    /// Feeds the next read of the input, taken at system time `now` (used only if the stream
    /// carries no broadcaster clock to resolve the timestamp wrap).
    pub fn push(&mut self, bytes: &[u8], now: UnixMillis) {
        self.framer.push(bytes, &mut sink(&mut self.cutter, now));
    }

    /// Reports that the input lost data here (a reconnect, a ring-buffer overrun): the open chunk
    /// is dropped, since it would be a cut-short variant, and the next one is flagged.
    pub fn mark_gap(&mut self) {
        self.framer.restart();
        self.cutter.on_gap();
    }

    /// Ends the input: a last whole packet is used, the unfinished chunk is dropped.
    pub fn finish(&mut self, now: UnixMillis) {
        self.framer.finish(&mut sink(&mut self.cutter, now));
        self.cutter.on_end();
    }

    /// The next finished chunk, in stream order.
    pub fn poll_chunk(&mut self) -> Option<Chunk<B>> {
        self.cutter.poll_chunk()
    }

    /// Gives back the bytes of a chunk that has been written out, so the next chunk reuses the
    /// allocation instead of faulting in fresh pages (a few spare buffers are kept).
    pub fn recycle(&mut self, bytes: B) {
        self.cutter.recycle(bytes);
    }

    /// What the chunker has seen so far.
    pub fn stats(&self) -> &ChunkerStats {
        self.cutter.stats()
    }
}

/// Routes what the framer found to the cutter.
fn sink<B: Body>(cutter: &mut Cutter<B>, now: UnixMillis) -> impl FnMut(Framed<'_>) + '_ {
    move |framed| match framed {
        Framed::Packet { at, packet } => cutter.on_packet(at, packet, now),
        Framed::Skipped(n) => cutter.on_skipped(n),
    }
}
