//! Flag values with bounds, checked as argh parses them: a value out of range is a usage error
//! (exit 2) that names the flag, before any work starts, and a command never holds a number
//! outside its flag's range — no hand-written check after parsing.

use std::fmt::{self, Display};
use std::str::FromStr;

/// A count or a duration that must be at least 1 (a zero would mean "nothing", or a busy loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AtLeastOne<T>(T);

impl<T: Copy + PartialOrd + From<u8> + Display> AtLeastOne<T> {
    /// A default written in the source; below 1 it is a bug in this program.
    pub fn literal(value: T) -> AtLeastOne<T> {
        assert!(value >= T::from(1), "a flag's default {value} is below 1");
        AtLeastOne(value)
    }

    /// The value.
    pub fn get(self) -> T {
        self.0
    }
}

impl<T> FromStr for AtLeastOne<T>
where
    T: FromStr + PartialOrd + From<u8>,
    T::Err: Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let value: T = text.parse().map_err(|e: T::Err| e.to_string())?;
        if value < T::from(1) {
            return Err("must be at least 1".into());
        }
        Ok(AtLeastOne(value))
    }
}

impl<T: Display> Display for AtLeastOne<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `--chunk-ms`: the grid step every node of a stream shares (docs/PROTOCOL.md §1.4), 100 ms to
/// a minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMs(u32);

impl ChunkMs {
    /// The shortest chunk.
    pub const MIN: u32 = 100;
    /// The longest chunk.
    pub const MAX: u32 = 60_000;
    /// The default, two seconds.
    pub const DEFAULT: ChunkMs = ChunkMs::literal(2000);

    /// A default written in the source; outside the range it is a bug in this program.
    pub const fn literal(ms: u32) -> ChunkMs {
        assert!(
            ms >= ChunkMs::MIN && ms <= ChunkMs::MAX,
            "a --chunk-ms default out of range"
        );
        ChunkMs(ms)
    }

    /// Milliseconds.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FromStr for ChunkMs {
    type Err = String;

    fn from_str(text: &str) -> Result<ChunkMs, String> {
        let ms: u32 = text
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())?;
        if !(ChunkMs::MIN..=ChunkMs::MAX).contains(&ms) {
            return Err(format!(
                "{ms} is outside {}..={}",
                ChunkMs::MIN,
                ChunkMs::MAX
            ));
        }
        Ok(ChunkMs(ms))
    }
}

impl Display for ChunkMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_non_numbers_are_refused_with_a_reason() {
        assert_eq!("3".parse::<AtLeastOne<u64>>().map(AtLeastOne::get), Ok(3));
        assert_eq!(
            "0".parse::<AtLeastOne<usize>>(),
            Err("must be at least 1".to_string())
        );
        assert!("-1".parse::<AtLeastOne<u32>>().is_err());
        assert!("x".parse::<AtLeastOne<u32>>().is_err());
    }

    #[test]
    fn chunk_ms_stays_within_its_range() {
        assert_eq!("100".parse::<ChunkMs>().map(ChunkMs::get), Ok(100));
        assert_eq!("60000".parse::<ChunkMs>().map(ChunkMs::get), Ok(60_000));
        assert_eq!(
            "99".parse::<ChunkMs>(),
            Err("99 is outside 100..=60000".to_string())
        );
        assert!("60001".parse::<ChunkMs>().is_err());
    }
}
