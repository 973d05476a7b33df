//! End-to-end latency of accepted chunks, in a fixed-size histogram: from the moment the signer
//! created the chunk's manifest to the segment being in place, so the figure needs no clock
//! of the publisher's other than what the signed manifest states. Bounded memory whatever the
//! run length; millisecond resolution up to [`MAX_MS`], everything above counted in one bucket.

/// The largest latency with its own bucket, in milliseconds.
pub const MAX_MS: usize = 60_000;

/// Counts of latencies by millisecond.
#[derive(Clone)]
pub struct Latency {
    buckets: Box<[u32]>,
    count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: vec![0; MAX_MS + 1].into_boxed_slice(),
            count: 0,
        }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency")
            .field("count", &self.count)
            .field("p50", &self.percentile(50))
            .field("p99", &self.percentile(99))
            .finish()
    }
}

impl Latency {
    /// Records one latency.
    pub fn record(&mut self, millis: u64) {
        let at = (millis as usize).min(MAX_MS);
        self.buckets[at] = self.buckets[at].saturating_add(1);
        self.count += 1;
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latency at or below which `percent` % of the recorded ones fall (`None` if none).
    pub fn percentile(&self, percent: u64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = (self.count * percent.min(100)).div_ceil(100).max(1);
        let mut seen = 0u64;
        self.buckets.iter().enumerate().find_map(|(ms, n)| {
            seen += u64::from(*n);
            (seen >= rank).then_some(ms as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_spread() {
        let mut l = Latency::default();
        assert_eq!(l.percentile(50), None);
        for ms in 1..=100 {
            l.record(ms);
        }
        assert_eq!(l.percentile(50), Some(50));
        assert_eq!(l.percentile(99), Some(99));
        assert_eq!(l.percentile(100), Some(100));
        l.record(1_000_000);
        assert_eq!(l.percentile(100), Some(MAX_MS as u64));
        assert_eq!(l.count(), 101);
    }
}
