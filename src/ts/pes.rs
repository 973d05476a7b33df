//! PES packet headers: stream id, PTS, DTS and where the elementary stream data begins.
//!
//! The header of a PES packet can straddle transport packets, so parsing takes the bytes gathered
//! so far and answers "need more" until the whole header is there. Pure parsing: no I/O.

use super::clock::Pts;
use super::TsError;

/// A parsed PES header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PesHeader {
    /// `stream_id` (0xE0–0xEF video, 0xC0–0xDF MPEG audio, 0xBD private stream 1, ...).
    pub stream_id: u8,
    /// Presentation timestamp.
    pub pts: Option<Pts>,
    /// Decoding timestamp (only sent when it differs from the PTS).
    pub dts: Option<Pts>,
    /// Offset of the first elementary-stream byte after the header.
    pub payload_offset: usize,
}

impl PesHeader {
    /// The decoding timestamp: the DTS when sent, otherwise the PTS.
    pub fn decode_time(&self) -> Option<Pts> {
        self.dts.or(self.pts)
    }

    /// Parses the header at the start of `head`; `Ok(None)` when more bytes are needed.
    pub fn parse(head: &[u8]) -> Result<Option<PesHeader>, TsError> {
        if head.len() < 6 {
            return if head.iter().zip([0, 0, 1]).all(|(&a, b)| a == b) {
                Ok(None)
            } else {
                Err(TsError::PesMalformed("no PES start code"))
            };
        }
        if head[..3] != [0, 0, 1] {
            return Err(TsError::PesMalformed("no PES start code"));
        }
        let stream_id = head[3];
        if !has_optional_header(stream_id) {
            return Ok(Some(PesHeader {
                stream_id,
                pts: None,
                dts: None,
                payload_offset: 6,
            }));
        }
        if head.len() < 9 {
            return Ok(None);
        }
        if head[6] & 0xc0 != 0x80 {
            return Err(TsError::PesMalformed("optional header marker bits"));
        }
        let flags = head[7] >> 6;
        let header_len = usize::from(head[8]);
        let payload_offset = 9 + header_len;
        let needed = match flags {
            0b10 => 5,
            0b11 => 10,
            0b00 => 0,
            _ => return Err(TsError::PesMalformed("DTS without PTS")),
        };
        if needed > header_len {
            return Err(TsError::PesMalformed("header too short for its timestamps"));
        }
        if head.len() < 9 + needed {
            return Ok(None);
        }
        let pts = (flags & 0b10 != 0).then(|| timestamp(&head[9..14]));
        let dts = (flags == 0b11).then(|| timestamp(&head[14..19]));
        Ok(Some(PesHeader {
            stream_id,
            pts,
            dts,
            payload_offset,
        }))
    }
}

fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    )
}

/// Reads a 33-bit timestamp from its 5-byte field (marker bits are not enforced: some muxers
/// get them wrong, and the value is still readable).
fn timestamp(b: &[u8]) -> Pts {
    let v = (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1);
    Pts::new(v)
}

/// Writes a 5-byte timestamp field with the given 4-bit prefix (0b0010 PTS only, 0b0011 PTS with
/// DTS, 0b0001 DTS).
pub fn write_timestamp(out: &mut [u8], prefix: u8, ts: Pts) {
    let v = ts.ticks();
    out[0] = (prefix << 4) | ((v >> 29) as u8 & 0x0e) | 1;
    out[1] = (v >> 22) as u8;
    out[2] = ((v >> 14) as u8 & 0xfe) | 1;
    out[3] = (v >> 7) as u8;
    out[4] = ((v << 1) as u8) | 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pts: u64, dts: Option<u64>) -> Vec<u8> {
        let mut h = vec![0, 0, 1, 0xe0, 0, 0, 0x80];
        match dts {
            None => {
                h.extend_from_slice(&[0x80, 5, 0, 0, 0, 0, 0]);
                write_timestamp(&mut h[9..14], 0b0010, Pts::new(pts));
            }
            Some(dts) => {
                h.extend_from_slice(&[0xc0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                write_timestamp(&mut h[9..14], 0b0011, Pts::new(pts));
                write_timestamp(&mut h[14..19], 0b0001, Pts::new(dts));
            }
        }
        h.extend_from_slice(&[0, 0, 0, 1, 9]);
        h
    }

    #[test]
    fn pts_and_dts_round_trip_at_33_bits() {
        let max = (1u64 << 33) - 1;
        let h = header(max, Some(max - 3003));
        let parsed = PesHeader::parse(&h).unwrap().unwrap();
        assert_eq!(parsed.pts, Some(Pts::new(max)));
        assert_eq!(parsed.dts, Some(Pts::new(max - 3003)));
        assert_eq!(parsed.payload_offset, 19);
        assert_eq!(&h[parsed.payload_offset..], &[0, 0, 0, 1, 9]);
    }

    #[test]
    fn short_heads_ask_for_more_and_garbage_is_an_error() {
        let h = header(90_000, None);
        for cut in 0..14 {
            assert_eq!(PesHeader::parse(&h[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(PesHeader::parse(&h[..14]).unwrap().is_some());
        assert!(PesHeader::parse(&[0, 0, 2, 0xe0, 0, 0]).is_err());
        assert!(PesHeader::parse(&[1]).is_err());
        assert!(PesHeader::parse(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 3]).is_err());
    }
}
