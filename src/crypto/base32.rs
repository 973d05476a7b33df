//! Lowercase RFC 4648 base32 without padding, the text form of node ids and stream locators.
//!
//! Owns only the 32-byte case the project needs. It never accepts more than one spelling of a value:
//! uppercase letters, padding and non-zero unused trailing bits are all refused, so a text form can
//! be compared as a string.

use std::fmt;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Characters in the text form of 32 bytes: ceil(256 / 5).
pub const TEXT_LEN: usize = 52;

/// Why a text form is not a valid encoding of 32 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base32Error {
    /// The text is not exactly [`TEXT_LEN`] characters long.
    Length(usize),
    /// A character outside `[a-z2-7]` at the given position.
    Character(usize),
    /// The last character carries non-zero bits past the 256th, so the spelling is not canonical.
    TrailingBits,
}

impl fmt::Display for Base32Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base32Error::Length(n) => write!(f, "is {n} characters long, expected {TEXT_LEN}"),
            Base32Error::Character(at) => {
                write!(f, "has a character outside [a-z2-7] at position {at}")
            }
            Base32Error::TrailingBits => f.write_str("is not canonical (non-zero trailing bits)"),
        }
    }
}

impl std::error::Error for Base32Error {}

/// The 52-character lowercase text form of 32 bytes.
pub fn encode32(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(TEXT_LEN);
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[usize::from((acc >> bits) & 31)] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[usize::from((acc << (5 - bits)) & 31)] as char);
    }
    out
}

/// Parses the canonical 52-character text form back into 32 bytes.
pub fn decode32(text: &str) -> Result<[u8; 32], Base32Error> {
    let chars = text.as_bytes();
    if chars.len() != TEXT_LEN {
        return Err(Base32Error::Length(text.chars().count()));
    }
    let mut out = [0u8; 32];
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    let mut filled = 0;
    for (at, &c) in chars.iter().enumerate() {
        let value = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return Err(Base32Error::Character(at)),
        };
        acc = (acc << 5) | u16::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[filled] = (acc >> bits) as u8;
            filled += 1;
            acc &= (1 << bits) - 1;
        }
    }
    // 52 * 5 = 260 bits: the last 4 must be zero, or two texts would name the same bytes.
    if acc != 0 {
        return Err(Base32Error::TrailingBits);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alphabet() {
        for seed in 0u8..=255 {
            let bytes: [u8; 32] =
                std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let text = encode32(&bytes);
            assert_eq!(text.len(), TEXT_LEN);
            assert!(text
                .bytes()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)));
            assert_eq!(decode32(&text), Ok(bytes));
        }
    }

    #[test]
    fn known_vector_matches_rfc4648() {
        // RFC 4648 base32 of 32 zero bytes is "A" * 52 with padding removed; of 0xff.. ends in "7q".
        assert_eq!(encode32(&[0; 32]), "a".repeat(52));
        let ff = encode32(&[0xff; 32]);
        assert_eq!(&ff[..51], "7".repeat(51));
        assert_eq!(&ff[51..], "q");
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let text = encode32(&[0x5a; 32]);
        assert_eq!(
            decode32(&text.to_uppercase()),
            Err(Base32Error::Character(0))
        );
        assert_eq!(decode32(&text[..51]), Err(Base32Error::Length(51)));
        assert_eq!(decode32(&format!("{text}=")), Err(Base32Error::Length(53)));
        let mut last = text.clone();
        last.pop();
        last.push('7');
        assert_eq!(decode32(&last), Err(Base32Error::TrailingBits));
        assert_eq!(decode32(&"é".repeat(26)), Err(Base32Error::Character(0)));
    }
}
