//! Random-access detection from the video elementary stream itself.
//!
//! Broadcasters set the adaptation field's random_access_indicator unreliably, so whether a video
//! PES starts a decodable point is read from the coded data: an H.264 IDR slice, or an intra slice
//! after a recovery-point SEI; an HEVC IRAP picture (NAL types 16–23); an MPEG-2 I-picture after a
//! sequence header. The first coded picture in the PES decides. Pure parsing: no I/O.

use super::psi::StreamType;

/// Elementary-stream bytes examined at most per PES before giving up (SEI with captions, parameter
/// sets and headers all fit well within this).
pub const MAX_HEAD: usize = 16 * 1024;

/// The verdict on the start of a video PES.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Decoding can start at this PES.
    RandomAccess,
    /// The first picture depends on earlier ones.
    Dependent,
    /// The first picture has not been seen yet: feed more bytes.
    NeedMore,
}

/// Classifies the elementary-stream bytes at the start of a video PES (`es` begins right after the
/// PES header). Codecs that are not video are always [`Access::Dependent`].
pub fn classify(codec: StreamType, es: &[u8]) -> Access {
    match codec {
        StreamType::H264 => h264(es),
        StreamType::Hevc => hevc(es),
        StreamType::Mpeg2Video => mpeg2(es),
        _ => Access::Dependent,
    }
}

/// Offsets just past each `00 00 01` start code in `es`.
fn start_codes(es: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i + 3 <= es.len() {
            // Skip fast to the next 0x01 that could end a start code.
            match es[i + 2..].iter().position(|&b| b == 1) {
                None => {
                    i = es.len();
                    return None;
                }
                Some(k) => i += k,
            }
            let at = i;
            i += 1;
            if es[at] == 0 && es[at + 1] == 0 {
                return Some(at + 3);
            }
        }
        None
    })
}

fn h264(es: &[u8]) -> Access {
    let mut recovery_point = false;
    let mut codes = start_codes(es).peekable();
    while let Some(start) = codes.next() {
        let Some(&header) = es.get(start) else {
            return Access::NeedMore;
        };
        let end = codes.peek().map(|&next| next - 3);
        match header & 0x1f {
            5 => return Access::RandomAccess,
            1 => {
                return match h264_slice_is_intra(&es[start + 1..]) {
                    None => Access::NeedMore,
                    Some(intra) if intra && recovery_point => Access::RandomAccess,
                    Some(_) => Access::Dependent,
                }
            }
            2..=4 => return Access::Dependent,
            6 => {
                let Some(end) = end else {
                    return Access::NeedMore;
                };
                recovery_point |= sei_has_recovery_point(&unescape(&es[start + 1..end]));
            }
            _ => {}
        }
    }
    Access::NeedMore
}

/// Whether an H.264 slice header (after the NAL header byte) is an I or SI slice; `None` if the
/// bytes run out first.
fn h264_slice_is_intra(rbsp: &[u8]) -> Option<bool> {
    let prefix = unescape(&rbsp[..rbsp.len().min(16)]);
    let mut bits = BitReader::new(&prefix);
    bits.read_ue()?; // first_mb_in_slice
    let slice_type = bits.read_ue()?;
    Some(matches!(slice_type % 5, 2 | 4))
}

/// Walks the SEI messages of an SEI RBSP looking for a recovery point (payload type 6).
fn sei_has_recovery_point(mut rbsp: &[u8]) -> bool {
    let read_number = |rbsp: &mut &[u8]| -> Option<usize> {
        let mut value = 0usize;
        loop {
            let (&b, rest) = rbsp.split_first()?;
            *rbsp = rest;
            value += usize::from(b);
            if b != 0xff {
                return Some(value);
            }
        }
    };
    while rbsp.len() > 1 {
        let (Some(kind), Some(size)) = (read_number(&mut rbsp), read_number(&mut rbsp)) else {
            return false;
        };
        if kind == 6 {
            return true;
        }
        let Some(rest) = rbsp.get(size..) else {
            return false;
        };
        rbsp = rest;
    }
    false
}

fn hevc(es: &[u8]) -> Access {
    for start in start_codes(es) {
        let Some(&header) = es.get(start) else {
            return Access::NeedMore;
        };
        match (header >> 1) & 0x3f {
            16..=23 => return Access::RandomAccess,
            0..=31 => return Access::Dependent,
            _ => {}
        }
    }
    Access::NeedMore
}

fn mpeg2(es: &[u8]) -> Access {
    let mut sequence_header = false;
    for start in start_codes(es) {
        let Some(&code) = es.get(start) else {
            return Access::NeedMore;
        };
        match code {
            0xb3 => sequence_header = true,
            0x00 => {
                let Some(&b) = es.get(start + 2) else {
                    return Access::NeedMore;
                };
                let intra = (b >> 3) & 0x07 == 1;
                return if intra && sequence_header {
                    Access::RandomAccess
                } else {
                    Access::Dependent
                };
            }
            0x01..=0xaf => return Access::Dependent,
            _ => {}
        }
    }
    Access::NeedMore
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Reads Exp-Golomb codes MSB first.
struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, bit: 0 }
    }

    fn read_bit(&mut self) -> Option<u32> {
        let byte = self.bytes.get(self.bit / 8)?;
        let value = (byte >> (7 - self.bit % 8)) & 1;
        self.bit += 1;
        Some(u32::from(value))
    }

    fn read_ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read_bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Some(u32::MAX); // not a valid code; callers treat it as "not intra"
            }
        }
        let mut value = 1u32;
        for _ in 0..zeros {
            value = (value << 1) | self.read_bit()?;
        }
        Some(value - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_idr_and_non_idr() {
        let idr = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(classify(StreamType::H264, &idr), Access::RandomAccess);
        // Non-IDR slice: first_mb 0 ("1"), slice_type P=0 ("1") -> 0b11xxxxxx.
        let p = [0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0xc0];
        assert_eq!(classify(StreamType::H264, &p), Access::Dependent);
        assert_eq!(classify(StreamType::H264, &p[..8]), Access::NeedMore);
    }

    #[test]
    fn h264_recovery_point_with_intra_slice() {
        // SEI: payload type 6, size 1, payload, trailing bits; then a slice with slice_type 7 (I).
        // first_mb 0 = "1", slice_type 7 = "0001000" -> bits 1 0001000 -> 0x88.
        let es = [
            0, 0, 1, 0x06, 0x06, 0x01, 0x84, 0x80, 0, 0, 1, 0x01, 0x88, 0x00,
        ];
        assert_eq!(classify(StreamType::H264, &es), Access::RandomAccess);
        let without_sei = &es[8..];
        assert_eq!(classify(StreamType::H264, without_sei), Access::Dependent);
    }

    #[test]
    fn hevc_irap_and_trail() {
        let cra = [0, 0, 1, 0x40, 0x01, 0, 0, 1, 21 << 1, 0x01];
        assert_eq!(classify(StreamType::Hevc, &cra), Access::RandomAccess);
        let trail = [0, 0, 1, 0x46, 0x01, 0, 0, 1, 1 << 1, 0x01];
        assert_eq!(classify(StreamType::Hevc, &trail), Access::Dependent);
    }

    #[test]
    fn mpeg2_needs_sequence_header_and_i_picture() {
        // picture header: temporal_reference 10 bits, picture_coding_type 3 bits (1 = I).
        let i_pic = [
            0, 0, 1, 0xb3, 0x2d, 0, 0, 1, 0xb8, 0, 0, 1, 0x00, 0x00, 0x0f, 0xff,
        ];
        assert_eq!(
            classify(StreamType::Mpeg2Video, &i_pic),
            Access::RandomAccess
        );
        let no_seq = &i_pic[4..];
        assert_eq!(classify(StreamType::Mpeg2Video, no_seq), Access::Dependent);
        let b_pic = [0, 0, 1, 0xb3, 0, 0, 1, 0x00, 0x00, 0x1f];
        assert_eq!(classify(StreamType::Mpeg2Video, &b_pic), Access::Dependent);
    }

    #[test]
    fn unescape_removes_emulation_prevention() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }
}
