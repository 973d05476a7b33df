//! How a chunk's bytes are held: copied into a buffer (`Vec<u8>`), or as the places where its
//! packets lie in an input that stays mapped for the whole run ([`Spans`]: a file or the built-in
//! clip read in place), so a writer can hand the kernel the input's own pages without a copy.
//!
//! The cutter builds both the same way; only what a packet costs differs. Either way the bytes
//! a chunk stands for are the same: its PAT/PMT prefix, then its packets in stream order.

use crate::ts::packet::PACKET_SIZE;
use build::Build;
use std::ops::Range;

/// A chunk's bytes. Offsets are bytes from the body's start. Only the cutter builds a body (its
/// building operations are a sealed supertrait), so one always holds its prefix, then its
/// packets in stream order.
pub trait Body: build::Build + Default + Send + 'static {
    /// Bytes it stands for.
    fn len(&self) -> usize;

    /// Whether it holds nothing.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in order, as slices; `input` is the stream the chunker was fed (offset 0 its
    /// first byte), which a body of copies does not need.
    ///
    /// # Panics
    /// If the body names bytes outside `input`: it was cut from another input.
    fn parts<'a>(&'a self, input: &'a [u8]) -> Vec<&'a [u8]>;
}

/// How the cutter builds a body; not nameable outside the chunk module.
pub(super) mod build {
    use crate::ts::packet::PACKET_SIZE;

    /// The building operations behind [`Body`](super::Body).
    pub trait Build {
        /// Empties it, keeping its allocations for the next chunk.
        fn clear(&mut self);

        /// Makes room for about `bytes` more, where that saves regrowing.
        fn reserve(&mut self, _bytes: usize) {}

        /// Where the opening PAT/PMT packets are written; only while the body is empty.
        fn prefix(&mut self) -> &mut Vec<u8>;

        /// Appends `packet`, found at offset `at` of the input stream.
        fn push_packet(&mut self, at: u64, packet: &[u8; PACKET_SIZE]);

        /// Moves bytes `from..` to the end of `to`; `from` is a packet boundary not inside the
        /// prefix.
        fn move_tail(&mut self, from: usize, to: &mut Self);
    }
}

impl Body for Vec<u8> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn parts<'a>(&'a self, _input: &'a [u8]) -> Vec<&'a [u8]> {
        vec![self]
    }
}

impl Build for Vec<u8> {
    fn clear(&mut self) {
        Vec::clear(self);
    }

    fn reserve(&mut self, bytes: usize) {
        Vec::reserve(self, bytes);
    }

    fn prefix(&mut self) -> &mut Vec<u8> {
        self
    }

    fn push_packet(&mut self, _at: u64, packet: &[u8; PACKET_SIZE]) {
        self.extend_from_slice(packet);
    }

    fn move_tail(&mut self, from: usize, to: &mut Self) {
        to.extend_from_slice(&self[from..]);
        self.truncate(from);
    }
}

/// A chunk as its generated prefix plus runs of consecutive input bytes, by stream offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spans {
    prefix: Vec<u8>,
    runs: Vec<Range<u64>>,
    /// Bytes in `runs`.
    run_bytes: usize,
}

impl Spans {
    /// Copies the bytes out of `input` (what the copying chunker would have built).
    pub fn to_vec(&self, input: &[u8]) -> Vec<u8> {
        self.parts(input).concat()
    }

    /// Appends a run, joining it to the last one when they touch.
    fn push_run(&mut self, run: Range<u64>) {
        match self.runs.last_mut() {
            Some(last) if last.end == run.start => last.end = run.end,
            _ => self.runs.push(run),
        }
    }
}

impl Body for Spans {
    fn len(&self) -> usize {
        self.prefix.len() + self.run_bytes
    }

    fn parts<'a>(&'a self, input: &'a [u8]) -> Vec<&'a [u8]> {
        let prefix = (!self.prefix.is_empty()).then_some(self.prefix.as_slice());
        let runs = self
            .runs
            .iter()
            .map(|run| &input[run.start as usize..run.end as usize]);
        prefix.into_iter().chain(runs).collect()
    }
}

impl Build for Spans {
    fn clear(&mut self) {
        self.prefix.clear();
        self.runs.clear();
        self.run_bytes = 0;
    }

    fn prefix(&mut self) -> &mut Vec<u8> {
        debug_assert!(self.runs.is_empty(), "the prefix comes before any packet");
        &mut self.prefix
    }

    fn push_packet(&mut self, at: u64, _packet: &[u8; PACKET_SIZE]) {
        self.push_run(at..at + PACKET_SIZE as u64);
        self.run_bytes += PACKET_SIZE;
    }

    fn move_tail(&mut self, from: usize, to: &mut Self) {
        debug_assert!(from >= self.prefix.len(), "the prefix stays with its chunk");
        let moved = self.len().saturating_sub(from);
        let mut keep = from.saturating_sub(self.prefix.len()) as u64;
        let split = self.runs.iter().position(|run| {
            let inside = keep < run.end - run.start;
            if !inside {
                keep -= run.end - run.start;
            }
            inside
        });
        if let Some(i) = split {
            let mut tail = self.runs.split_off(i);
            if keep > 0 {
                let head_end = tail[0].start + keep;
                self.runs.push(tail[0].start..head_end);
                tail[0].start = head_end;
            }
            for run in tail {
                to.push_run(run);
            }
        }
        self.run_bytes -= moved;
        to.run_bytes += moved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of `n` packets, packet `i` filled with byte `i`.
    fn stream(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| [i as u8; PACKET_SIZE]).collect()
    }

    fn packet(input: &[u8], i: usize) -> &[u8; PACKET_SIZE] {
        input[i * PACKET_SIZE..(i + 1) * PACKET_SIZE]
            .try_into()
            .unwrap()
    }

    /// Builds the same body both ways from the packets `picked` of `input`, after a 2-packet prefix.
    fn both(input: &[u8], picked: &[usize]) -> (Vec<u8>, Spans) {
        let (mut copied, mut spans) = (Vec::new(), Spans::default());
        copied.prefix().extend_from_slice(&[0xAA; 2 * PACKET_SIZE]);
        spans.prefix().extend_from_slice(&[0xAA; 2 * PACKET_SIZE]);
        for &i in picked {
            let at = (i * PACKET_SIZE) as u64;
            copied.push_packet(at, packet(input, i));
            spans.push_packet(at, packet(input, i));
        }
        (copied, spans)
    }

    #[test]
    fn consecutive_packets_make_one_run() {
        let input = stream(10);
        let (copied, spans) = both(&input, &[0, 1, 2, 5, 6, 9]);
        assert_eq!(spans.runs, vec![0..564, 940..1316, 1692..1880]);
        assert_eq!(spans.len(), copied.len());
        assert_eq!(spans.to_vec(&input), copied);
    }

    #[test]
    fn moving_a_tail_gives_the_same_bytes_as_copying() {
        let input = stream(12);
        let picked = [0, 1, 2, 5, 6, 7, 9, 10];
        for cut in 2..=picked.len() + 2 {
            let from = cut * PACKET_SIZE;
            let (mut copied, mut spans) = both(&input, &picked);
            let (mut copied_to, mut spans_to) = both(&input, &[11]);
            copied.move_tail(from, &mut copied_to);
            spans.move_tail(from, &mut spans_to);
            assert_eq!(spans.to_vec(&input), copied, "cut at packet {cut}");
            assert_eq!(spans_to.to_vec(&input), copied_to, "cut at packet {cut}");
            assert_eq!(
                (spans.len(), spans_to.len()),
                (copied.len(), copied_to.len())
            );
        }
    }

    #[test]
    fn a_moved_tail_joins_an_adjacent_run() {
        let input = stream(6);
        let mut staging = Spans::default();
        staging.push_packet(0, packet(&input, 0));
        let mut rest = Spans::default();
        for i in 1..4 {
            rest.push_packet((i * PACKET_SIZE) as u64, packet(&input, i));
        }
        rest.move_tail(0, &mut staging);
        assert_eq!(staging.runs, vec![0..752]);
        assert!(rest.is_empty());
    }
}
