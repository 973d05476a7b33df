//! Broadcast clocks: 33-bit 90 kHz timestamps (PTS, DTS, PCR base), the 27 MHz PCR, and wall time.
//!
//! Values here are plain data. Nothing in this module reads the system clock: wall time arrives
//! as a [`UnixMillis`](crate::time::UnixMillis) from the stream (ATSC STT, DVB TDT) or from the caller.

/// Ticks per second of PTS, DTS and the PCR base.
pub const TICKS_PER_SECOND: u64 = 90_000;
/// Ticks per millisecond.
pub const TICKS_PER_MS: u64 = 90;
/// The 33-bit timestamps wrap at this many ticks (about 26.5 hours).
pub const WRAP: u64 = 1 << 33;

/// A 33-bit presentation or decoding timestamp, 90 kHz.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pts(u64);

impl Pts {
    /// A timestamp from its low 33 bits.
    pub const fn new(ticks: u64) -> Pts {
        Pts(ticks & (WRAP - 1))
    }

    /// The 33-bit value.
    pub const fn ticks(self) -> u64 {
        self.0
    }

    /// `self - earlier` on the wrapping 33-bit circle, as a signed value in `(-2^32, 2^32]`.
    pub fn wrapping_delta(self, earlier: Pts) -> i64 {
        let d = self.0.wrapping_sub(earlier.0) & (WRAP - 1);
        if d > WRAP / 2 {
            d as i64 - WRAP as i64
        } else {
            d as i64
        }
    }
}

/// A program clock reference: 33-bit 90 kHz base and a 9-bit 27 MHz extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcr {
    base: Pts,
    extension: u16,
}

impl Pcr {
    /// A PCR from its base (low 33 bits kept) and extension (`0..300`; larger values are kept as sent).
    pub const fn new(base: u64, extension: u16) -> Pcr {
        Pcr {
            base: Pts::new(base),
            extension: extension & 0x1ff,
        }
    }

    /// The 90 kHz base, comparable with PTS values.
    pub const fn base(self) -> Pts {
        self.base
    }

    /// The 27 MHz extension.
    pub const fn extension(self) -> u16 {
        self.extension
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_delta_crosses_the_wrap() {
        assert_eq!(Pts::new(5).wrapping_delta(Pts::new(WRAP - 5)), 10);
        assert_eq!(Pts::new(WRAP - 5).wrapping_delta(Pts::new(5)), -10);
        assert_eq!(Pts::new(3000).wrapping_delta(Pts::new(0)), 3000);
        assert_eq!(
            Pts::new(WRAP / 2).wrapping_delta(Pts::new(0)),
            (WRAP / 2) as i64
        );
    }
}
