//! Packet framing and sync recovery: arbitrary byte reads in, 188-byte packets out.
//!
//! The framer never copies a packet that lies wholly inside one read: it hands out references
//! into the caller's buffer. Only the few bytes that straddle two reads are carried over. Each
//! packet comes with its offset in the stream of bytes pushed, so a caller whose reads are
//! consecutive pieces of one mapping can name a packet by where it lies instead of copying it.
//!
//! Sync rule: lock is (re)gained at a position only when [`LOCK_PACKETS`] consecutive sync bytes
//! sit 188 bytes apart there, so one stray 0x47 inside garbage never fakes a packet. While locked,
//! a packet is released only once the byte after it is a sync byte too (or the input ended); a
//! packet followed by anything else was truncated or overwritten, so it is dropped and the framer
//! hunts for lock again. Dropped bytes are reported, never silently lost.

use super::packet::{PACKET_SIZE, SYNC_BYTE};

/// Consecutive sync bytes, 188 bytes apart, needed to gain or regain lock.
pub const LOCK_PACKETS: usize = 4;
/// Bytes of look-ahead needed to decide at any position.
const LOOKAHEAD: usize = (LOCK_PACKETS - 1) * PACKET_SIZE + 1;

/// What the framer found in the input, in input order.
#[derive(Debug)]
pub enum Framed<'a> {
    /// A packet that starts with the sync byte and is followed by one (or ends the input).
    Packet {
        /// Offset of its first byte in the stream: bytes pushed before it, skipped ones included.
        at: u64,
        /// The packet.
        packet: &'a [u8; PACKET_SIZE],
    },
    /// This many bytes were not part of any packet (garbage, truncated packets) and were dropped.
    Skipped(usize),
}

/// Turns byte reads of any size into packets; see the module doc for the sync rule.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`, or of the next byte pushed when nothing is pending.
    offset: u64,
    locked: bool,
    ever_locked: bool,
    resyncs: u64,
}

impl Framer {
    /// A framer that has not yet found sync.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// How many times sync was regained after it had been lost.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Feeds the next read; `sink` receives packets and skipped-byte counts in input order.
    pub fn push(&mut self, input: &[u8], sink: &mut impl FnMut(Framed<'_>)) {
        let mut input = input;
        if !self.pending.is_empty() {
            let carried = self.pending.len();
            let take = input.len().min(LOOKAHEAD);
            self.pending.extend_from_slice(&input[..take]);
            let pending = std::mem::take(&mut self.pending);
            let consumed = self.scan(&pending, false, sink);
            self.pending = pending;
            if consumed < carried {
                // Only possible when the whole (short) input went into `pending`.
                self.pending.drain(..consumed);
                return;
            }
            self.pending.clear();
            input = &input[consumed - carried..];
        }
        let consumed = self.scan(input, false, sink);
        self.pending.extend_from_slice(&input[consumed..]);
    }

    /// Signals the end of input: releases a last packet and reports a truncated tail as skipped.
    pub fn finish(&mut self, sink: &mut impl FnMut(Framed<'_>)) {
        let pending = std::mem::take(&mut self.pending);
        let consumed = self.scan(&pending, true, sink);
        if consumed < pending.len() {
            sink(Framed::Skipped(pending.len() - consumed));
        }
        self.pending = pending;
        self.drop_pending();
    }

    /// Forgets a partial packet and the lock after the input lost data (a reconnect, a ring
    /// overrun): what comes next does not continue what came before. Offsets keep counting.
    pub fn restart(&mut self) {
        self.drop_pending();
        self.locked = false;
        self.ever_locked = false;
    }

    fn drop_pending(&mut self) {
        self.offset += self.pending.len() as u64;
        self.pending.clear();
    }

    /// Emits what can be decided in `buf`; returns how many bytes were consumed.
    fn scan(&mut self, buf: &[u8], eof: bool, sink: &mut impl FnMut(Framed<'_>)) -> usize {
        let mut pos = 0;
        let mut skipped = 0;
        loop {
            if self.locked {
                let end = pos + PACKET_SIZE;
                if end > buf.len() || (end == buf.len() && !eof) {
                    break;
                }
                if buf[pos] != SYNC_BYTE || (end < buf.len() && buf[end] != SYNC_BYTE) {
                    self.locked = false;
                    skipped += 1;
                    pos += 1;
                    continue;
                }
                if skipped > 0 {
                    sink(Framed::Skipped(skipped));
                    skipped = 0;
                }
                let packet: &[u8; PACKET_SIZE] = buf[pos..end]
                    .try_into()
                    .expect("slice is exactly one packet long");
                sink(Framed::Packet {
                    at: self.offset + pos as u64,
                    packet,
                });
                pos = end;
            } else {
                match self.hunt(buf, pos, eof) {
                    Hunt::Locked => {
                        if self.ever_locked {
                            self.resyncs += 1;
                        }
                        self.locked = true;
                        self.ever_locked = true;
                    }
                    Hunt::Skip(next) => {
                        skipped += next - pos;
                        pos = next;
                    }
                    Hunt::NeedMore => break,
                }
            }
        }
        if skipped > 0 {
            sink(Framed::Skipped(skipped));
        }
        self.offset += pos as u64;
        pos
    }

    /// Decides whether lock can be taken at `pos`.
    fn hunt(&self, buf: &[u8], pos: usize, eof: bool) -> Hunt {
        if pos >= buf.len() {
            return Hunt::NeedMore;
        }
        let confirmed = |count: usize| (0..count).all(|k| buf[pos + k * PACKET_SIZE] == SYNC_BYTE);
        if pos + LOOKAHEAD <= buf.len() {
            if confirmed(LOCK_PACKETS) {
                return Hunt::Locked;
            }
        } else if !eof {
            return Hunt::NeedMore;
        } else {
            // At the end of input, accept the sync positions that still exist, if a whole packet does.
            let available = (buf.len() - pos - 1) / PACKET_SIZE + 1;
            if pos + PACKET_SIZE <= buf.len() && confirmed(available) {
                return Hunt::Locked;
            }
        }
        let next = buf[pos + 1..]
            .iter()
            .position(|&b| b == SYNC_BYTE)
            .map_or(buf.len(), |i| pos + 1 + i);
        Hunt::Skip(next)
    }
}

enum Hunt {
    Locked,
    Skip(usize),
    NeedMore,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let mut p = [i as u8; PACKET_SIZE];
            p[0] = SYNC_BYTE;
            out.extend_from_slice(&p);
        }
        out
    }

    /// Frames `input` split into reads of `read` bytes; returns packet first bytes after sync and
    /// skipped total, checking that every packet lies in `input` where its offset says.
    fn frame(input: &[u8], read: usize) -> (Vec<u8>, usize) {
        let mut framer = Framer::new();
        let mut seen = Vec::new();
        let mut skipped = 0;
        let mut sink = |f: Framed<'_>| match f {
            Framed::Packet { at, packet } => {
                let at = at as usize;
                assert_eq!(&input[at..at + PACKET_SIZE], packet, "offset {at}");
                seen.push(packet[1]);
            }
            Framed::Skipped(n) => skipped += n,
        };
        for part in input.chunks(read) {
            framer.push(part, &mut sink);
        }
        framer.finish(&mut sink);
        (seen, skipped)
    }

    #[test]
    fn any_read_size_gives_the_same_packets() {
        let input = packets(20);
        for read in [1, 7, 187, 188, 189, 565, 1000, 4096] {
            let (seen, skipped) = frame(&input, read);
            assert_eq!(seen, (0..20).collect::<Vec<u8>>(), "read size {read}");
            assert_eq!(skipped, 0);
        }
    }

    #[test]
    fn garbage_and_truncation_are_skipped_and_counted() {
        let mut input = vec![0x47, 1, 2, 0x47, 9]; // stray sync bytes in garbage
        input.extend_from_slice(&packets(6));
        input.truncate(input.len() - 100); // last packet truncated...
        input.extend_from_slice(&packets(6)); // ...and followed by good ones
        input.extend_from_slice(&[0x47; 50]); // truncated tail
        for read in [1, 100, 188, 10_000] {
            let (seen, skipped) = frame(&input, read);
            assert_eq!(
                seen,
                vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5],
                "read size {read}"
            );
            assert_eq!(skipped, 5 + 88 + 50, "read size {read}");
        }
    }

    #[test]
    fn a_single_stray_sync_byte_does_not_lock() {
        let mut input = vec![0u8; 1000];
        input[10] = SYNC_BYTE;
        input[198] = SYNC_BYTE;
        let (seen, skipped) = frame(&input, 64);
        assert!(seen.is_empty());
        assert_eq!(skipped, 1000);
    }

    #[test]
    fn offsets_keep_counting_across_a_restart() {
        let input = packets(10);
        let mut framer = Framer::new();
        let mut offsets = Vec::new();
        let mut sink = |f: Framed<'_>| {
            if let Framed::Packet { at, .. } = f {
                offsets.push(at);
            }
        };
        framer.push(&input[..1000], &mut sink); // five packets and 60 bytes of a sixth
        framer.restart(); // the rest of the sixth is lost
        framer.push(&input[1000..], &mut sink);
        framer.finish(&mut sink);
        let after_gap = input[1000..].iter().position(|&b| b == SYNC_BYTE).unwrap() + 1000;
        let mut expected: Vec<u64> = (0..5).map(|i| i * 188).collect();
        expected.extend((after_gap..input.len()).step_by(188).map(|at| at as u64));
        assert_eq!(offsets, expected);
    }
}
