//! A bounded single-producer, single-consumer byte ring in an anonymous memory map.
//!
//! The capture thread reads from its source straight into the ring ([`Producer::fill`]); the
//! chunker thread borrows filled bytes in place ([`Consumer::next`] returns a [`Lease`]) and hands
//! them to the chunker without a copy. The producer never waits for the consumer: when the ring is
//! full it overwrites the oldest unread bytes, counts them, and the consumer learns of the hole as a
//! [`Next::Gap`] before the bytes that follow it. Only the region the consumer holds at that
//! moment (one lease, released as soon as it has been pushed to the chunker) is never overwritten;
//! if the producer catches up with it, it waits for the release for a moment, then drops its
//! read instead.
//!
//! Positions are absolute byte counts (`u64`, never wrap in practice); a position maps to offset
//! `pos % capacity` in the buffer.

use memmap2::MmapMut;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The producer wakes the consumer once this many bytes gathered...
const WAKE_BYTES: usize = 64 * 1024;
/// ...or this long after the last wake-up, whichever comes first. Shorter than the live capture's
/// gather wait, so a broadcast read every 10 ms wakes the chunker at each read, at once.
const WAKE_AFTER: Duration = Duration::from_millis(5);
/// How long the producer waits for the consumer to release a lease that blocks its write.
const LEASE_WAIT: Duration = Duration::from_millis(100);
/// Gap markers kept at most; older ones merge into the newest (a gap is a gap).
const MAX_GAPS: usize = 64;

struct State {
    /// Bytes before this were consumed (or dropped).
    read: u64,
    /// Bytes before this were written.
    write: u64,
    /// End of the region the consumer holds, if it holds one (it starts at `read`).
    lease_end: Option<u64>,
    /// Positions at which data is missing before them, in increasing order.
    gaps: VecDeque<u64>,
    /// Bytes overwritten or never stored because the consumer was behind.
    dropped: u64,
    /// The producer finished.
    closed: bool,
}

struct Shared {
    buffer: *mut u8,
    capacity: usize,
    _map: MmapMut,
    state: Mutex<State>,
    changed: Condvar,
}

// SAFETY: the buffer pointer is only dereferenced by the one producer (inside `fill`, on the span
// it reserved under the lock) and the one consumer (inside a `Lease`, on the span it leased under
// the lock); the state machine keeps those spans disjoint. Everything else is behind the mutex.
#[allow(unsafe_code)]
unsafe impl Send for Shared {}
#[allow(unsafe_code)]
unsafe impl Sync for Shared {}

/// Creates a ring of `capacity` bytes (rounded up to a page by the map) and its two ends.
pub fn ring(capacity: usize) -> std::io::Result<(Producer, Consumer)> {
    let capacity = capacity.max(4096);
    // Populated up front: the capture thread should not take page faults while a tuner streams.
    let mut map = memmap2::MmapOptions::new()
        .len(capacity)
        .populate()
        .map_anon()?;
    let shared = Arc::new(Shared {
        buffer: map.as_mut_ptr(),
        capacity,
        _map: map,
        state: Mutex::new(State {
            read: 0,
            write: 0,
            lease_end: None,
            gaps: VecDeque::new(),
            dropped: 0,
            closed: false,
        }),
        changed: Condvar::new(),
    });
    Ok((
        Producer {
            shared: shared.clone(),
            unannounced: 0,
            announced: Instant::now(),
        },
        Consumer { shared },
    ))
}

/// The writing end, owned by the capture thread.
pub struct Producer {
    shared: Arc<Shared>,
    /// Bytes committed since the consumer was last woken, and when that was.
    unannounced: usize,
    announced: Instant,
}

impl Producer {
    /// Lets `read_into` fill up to `max` bytes of the ring in place and commits what it wrote.
    /// Returns `read_into`'s result (0 means its source ended).
    pub fn fill(
        &mut self,
        max: usize,
        read_into: impl FnOnce(&mut [u8]) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        let Some((start, len)) = self.reserve(max) else {
            // The consumer sat on its lease: read into scratch space and drop it, so the source
            // (a tuner) is never left waiting.
            let mut scratch = vec![0u8; max.min(64 * 1024)];
            let n = read_into(&mut scratch)?;
            if n > 0 {
                let mut state = self.shared.state.lock();
                state.dropped += n as u64;
                let write = state.write;
                push_gap(&mut state.gaps, write);
            }
            return Ok(n);
        };
        let offset = (start % self.shared.capacity as u64) as usize;
        // SAFETY: `reserve` gave this span to the producer alone: it lies within the map, the
        // consumer's lease (if any) does not overlap it, and the consumer will not lease it
        // before `write` moves past it below.
        #[allow(unsafe_code)]
        let span = unsafe { std::slice::from_raw_parts_mut(self.shared.buffer.add(offset), len) };
        let n = read_into(span)?;
        let mut state = self.shared.state.lock();
        state.write = start + n.min(len) as u64;
        drop(state);
        self.announce(n);
        Ok(n)
    }

    /// Wakes the consumer once enough bytes or time gathered: a tuner streams in small bursts,
    /// and waking the chunker for each would cost more than chunking them. The consumer's own
    /// wait is bounded, so bytes committed just before a pause are never stranded.
    fn announce(&mut self, committed: usize) {
        self.unannounced += committed;
        if committed == 0
            || self.unannounced >= WAKE_BYTES
            || self.announced.elapsed() >= WAKE_AFTER
        {
            self.unannounced = 0;
            self.announced = Instant::now();
            self.shared.changed.notify_all();
        }
    }

    /// Records that data is missing from here on (a reconnect), so the consumer can flag it.
    pub fn mark_gap(&mut self) {
        let mut state = self.shared.state.lock();
        let write = state.write;
        push_gap(&mut state.gaps, write);
    }

    /// Reserves a contiguous span at the write position, overwriting the oldest unread bytes if
    /// needed; `None` if the consumer's lease blocks it for longer than [`LEASE_WAIT`].
    fn reserve(&mut self, max: usize) -> Option<(u64, usize)> {
        let capacity = self.shared.capacity as u64;
        let mut state = self.shared.state.lock();
        loop {
            let start = state.write;
            let to_end = capacity - start % capacity;
            // Never overwrite the leased region, which begins at `read`.
            let limit = match state.lease_end {
                Some(_) => state.read + capacity - start,
                None => capacity,
            };
            let len = (max as u64).min(to_end).min(limit);
            if len > 0 {
                let overwritten_until = (start + len).saturating_sub(capacity);
                if overwritten_until > state.read {
                    state.dropped += overwritten_until - state.read;
                    state.read = overwritten_until;
                    push_gap(&mut state.gaps, overwritten_until);
                }
                return Some((start, len as usize));
            }
            if self
                .shared
                .changed
                .wait_for(&mut state, LEASE_WAIT)
                .timed_out()
            {
                return None;
            }
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.state.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

fn push_gap(gaps: &mut VecDeque<u64>, at: u64) {
    if gaps.back().is_some_and(|&last| last >= at) {
        return;
    }
    if gaps.len() == MAX_GAPS {
        gaps.pop_back();
    }
    gaps.push_back(at);
}

/// The reading end, owned by the chunker thread.
pub struct Consumer {
    shared: Arc<Shared>,
}

/// What the consumer gets next.
pub enum Next<'a> {
    /// Bytes to process in place; released when dropped.
    Data(Lease<'a>),
    /// Data was lost before what follows.
    Gap,
    /// Nothing arrived within the timeout.
    Idle,
    /// The producer finished and everything was read.
    End,
}

impl Consumer {
    /// Bytes the producer dropped so far because this consumer was behind.
    pub fn dropped(&self) -> u64 {
        self.shared.state.lock().dropped
    }

    /// Waits up to `timeout` for data, a gap or the end.
    pub fn next(&mut self, max: usize, timeout: Duration) -> Next<'_> {
        let capacity = self.shared.capacity as u64;
        let mut state = self.shared.state.lock();
        loop {
            // Gaps at or before the read position are due now.
            if state.gaps.front().is_some_and(|&g| g <= state.read) {
                while state.gaps.front().is_some_and(|&g| g <= state.read) {
                    state.gaps.pop_front();
                }
                return Next::Gap;
            }
            let available = state.write - state.read;
            if available > 0 {
                let until_gap = state.gaps.front().map_or(u64::MAX, |&g| g - state.read);
                let offset = state.read % capacity;
                let len = available
                    .min(capacity - offset)
                    .min(until_gap)
                    .min(max as u64);
                state.lease_end = Some(state.read + len);
                // SAFETY: the span holds committed bytes the producer will not touch while
                // `lease_end` is set (see `Producer::reserve`), and it lies within the map.
                #[allow(unsafe_code)]
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        self.shared.buffer.add(offset as usize),
                        len as usize,
                    )
                };
                return Next::Data(Lease {
                    consumer: self,
                    bytes,
                });
            }
            if state.closed {
                return Next::End;
            }
            if self
                .shared
                .changed
                .wait_for(&mut state, timeout)
                .timed_out()
            {
                return Next::Idle;
            }
        }
    }
}

/// Leased ring bytes; the region is released (consumed) when the lease is dropped.
pub struct Lease<'a> {
    consumer: &'a Consumer,
    bytes: &'a [u8],
}

impl std::ops::Deref for Lease<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let shared = &self.consumer.shared;
        let mut state = shared.state.lock();
        if let Some(end) = state.lease_end.take() {
            state.read = state.read.max(end);
        }
        drop(state);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(10);

    fn write(p: &mut Producer, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = p
                .fill(rest.len(), |span| {
                    let n = span.len().min(rest.len());
                    span[..n].copy_from_slice(&rest[..n]);
                    Ok(n)
                })
                .unwrap();
            rest = &rest[n..];
        }
    }

    fn read_all(c: &mut Consumer) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut gaps = 0;
        loop {
            match c.next(1 << 20, T) {
                Next::Data(lease) => out.extend_from_slice(&lease),
                Next::Gap => gaps += 1,
                Next::Idle | Next::End => return (out, gaps),
            }
        }
    }

    #[test]
    fn bytes_pass_through_across_the_wrap() {
        let (mut p, mut c) = ring(4096).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut got = Vec::new();
        for part in data.chunks(3000) {
            write(&mut p, part);
            got.extend(read_all(&mut c).0);
        }
        assert_eq!(got, data);
        assert_eq!(c.dropped(), 0);
    }

    #[test]
    fn overflow_drops_the_oldest_and_reports_a_gap() {
        let (mut p, mut c) = ring(4096).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        write(&mut p, &data);
        let (got, gaps) = read_all(&mut c);
        assert_eq!(gaps, 1);
        assert_eq!(got, data[data.len() - 4096..]);
        assert_eq!(c.dropped(), (data.len() - 4096) as u64);
    }

    #[test]
    fn a_held_lease_is_never_overwritten() {
        let (mut p, mut c) = ring(4096).unwrap();
        write(&mut p, &[1u8; 1000]);
        let Next::Data(lease) = c.next(1000, T) else {
            panic!("data expected")
        };
        // The producer fills the rest, then has to drop its read rather than touch the lease.
        write(&mut p, &[2u8; 3096]);
        let n = p.fill(500, |span| {
            span.fill(3);
            Ok(span.len())
        });
        assert_eq!(n.unwrap(), 500);
        assert!(lease.iter().all(|&b| b == 1));
        drop(lease);
        let (got, gaps) = read_all(&mut c);
        assert_eq!(got, vec![2u8; 3096]);
        assert_eq!(gaps, 1);
    }

    #[test]
    fn marked_gaps_arrive_in_order_and_end_follows_the_data() {
        let (mut p, mut c) = ring(4096).unwrap();
        write(&mut p, b"abc");
        p.mark_gap();
        write(&mut p, b"def");
        drop(p);
        let mut events = Vec::new();
        loop {
            match c.next(100, T) {
                Next::Data(l) => events.push(String::from_utf8(l.to_vec()).unwrap()),
                Next::Gap => events.push("gap".into()),
                Next::Idle => events.push("idle".into()),
                Next::End => break,
            }
        }
        assert_eq!(events, ["abc", "gap", "def"]);
    }
}
