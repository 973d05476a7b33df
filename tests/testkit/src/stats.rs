//! Percentiles of measured figures (latencies, gaps, join times), for tests and harnesses.

/// The nearest-rank percentile `p` (0–100) of `sorted` (ascending); `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: usize) -> Option<T> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[7.5], 99), Some(7.5));
        assert_eq!(percentile::<u8>(&[], 50), None);
    }
}
