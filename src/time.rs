//! Wall-clock time, the one type every layer uses for it: the TS clock's anchor, a manifest's
//! creation time, the latency figures.
//!
//! It depends on nothing else in the crate, so every layer may use it. Format and protocol
//! logic never reads the clock: [`UnixMillis::now`] is called at the I/O
//! edges (capture, the pipelines) and the reading is passed in as data.

use std::time::SystemTime;

/// Wall-clock time: milliseconds since 1970-01-01 00:00:00 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The system clock now (a clock before 1970 reads as 0).
    pub fn now() -> UnixMillis {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(since_epoch.as_millis() as u64)
    }

    /// This time plus `ms` milliseconds, saturating.
    pub fn plus_ms(self, ms: u64) -> UnixMillis {
        UnixMillis(self.0.saturating_add(ms))
    }
}
