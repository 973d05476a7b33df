//! [`Backoff`]: the one rule for how long to wait before trying again — a reconnect to a tuner,
//! a redial of a peer or a relay.
//!
//! The wait starts at `first` and doubles after every failure up to `max`; a success starts it
//! over. It is pure arithmetic on [`Duration`]s: it never reads the clock or sleeps; the caller
//! adds the wait to its own `now` and sleeps until then (or hands that deadline back).
//!
//! It depends on nothing else in the crate, so every layer may use it.

use std::time::Duration;

/// A doubling wait between attempts; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits that start at `first` and double up to `max` (at least `first`).
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        let max = if max.as_nanos() < first.as_nanos() {
            first
        } else {
            max
        };
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt; the one after it is twice as long, up to the maximum.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// The wait [`Backoff::next_wait`] will give, without counting an attempt.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// An attempt succeeded: the next wait is the first one again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_up_to_the_maximum_and_starts_over_after_a_success() {
        let mut b = Backoff::new(MS(500), MS(3000));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [MS(500), MS(1000), MS(2000), MS(3000), MS(3000)]);
        assert_eq!(b.peek(), MS(3000));
        b.reset();
        assert_eq!(b.next_wait(), MS(500));
    }

    #[test]
    fn a_maximum_below_the_first_wait_is_the_first_wait() {
        let mut b = Backoff::new(MS(800), MS(100));
        assert_eq!((b.next_wait(), b.next_wait()), (MS(800), MS(800)));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::MAX / 3, Duration::MAX);
        for _ in 0..10 {
            assert!(b.next_wait() <= Duration::MAX);
        }
        assert_eq!(b.peek(), Duration::MAX);
    }
}
