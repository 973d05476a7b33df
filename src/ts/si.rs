//! Wall-clock tables carried in the stream: the ATSC system time table and the DVB time and date
//! / time offset tables.
//!
//! They tell the chunker what time the broadcaster says it is, so independent nodes resolve the
//! 33-bit timestamp wrap from the same clock. Pure parsing: no I/O, no clock reads.

use super::psi::{crc32, long_section, MAX_SECTION};
use super::TsError;
use crate::time::UnixMillis;

/// 1980-01-06 00:00:00 UTC (the GPS epoch) in Unix seconds.
const GPS_EPOCH_UNIX: u64 = 315_964_800;
/// Modified Julian Date of 1970-01-01.
const MJD_UNIX_EPOCH: u64 = 40_587;

/// Parses a section from the ATSC PSIP PID: `Some(time)` for a current system time table
/// (table_id 0xCD), `None` for any other PSIP table.
pub fn parse_atsc_stt(section: &[u8]) -> Result<Option<UnixMillis>, TsError> {
    if section.first() != Some(&0xcd) {
        return Ok(None);
    }
    let s = long_section(section, MAX_SECTION)?;
    let [_protocol, t0, t1, t2, t3, gps_utc_offset, ..] = *s.body else {
        return Err(TsError::SectionMalformed("short system time table"));
    };
    if !s.current {
        return Ok(None);
    }
    let gps_seconds = u64::from(u32::from_be_bytes([t0, t1, t2, t3]));
    let unix = (GPS_EPOCH_UNIX + gps_seconds)
        .checked_sub(u64::from(gps_utc_offset))
        .ok_or(TsError::SectionMalformed(
            "system time before the GPS epoch",
        ))?;
    Ok(Some(UnixMillis(unix * 1000)))
}

/// Parses a section from the DVB TDT PID: `Some(time)` for a time and date table (0x70) or a
/// time offset table (0x73, CRC-checked), `None` for other tables on that PID.
pub fn parse_dvb_time(section: &[u8]) -> Result<Option<UnixMillis>, TsError> {
    match section.first() {
        Some(0x70) if section.len() == 8 => Ok(Some(dvb_utc_time(&section[3..8])?)),
        Some(0x73) if section.len() >= 14 => {
            let (data, crc) = section.split_at(section.len() - 4);
            if crc32(data) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
                return Err(TsError::SectionCrc);
            }
            Ok(Some(dvb_utc_time(&section[3..8])?))
        }
        Some(0x70 | 0x73) => Err(TsError::SectionMalformed("bad time table length")),
        _ => Ok(None),
    }
}

/// 16-bit Modified Julian Date followed by six BCD digits hhmmss.
fn dvb_utc_time(b: &[u8]) -> Result<UnixMillis, TsError> {
    let mjd = u64::from(u16::from_be_bytes([b[0], b[1]]));
    let bcd = |v: u8| -> Result<u64, TsError> {
        let (hi, lo) = (v >> 4, v & 0x0f);
        if hi > 9 || lo > 9 {
            return Err(TsError::SectionMalformed("time is not BCD"));
        }
        Ok(u64::from(hi * 10 + lo))
    };
    let (h, m, s) = (bcd(b[2])?, bcd(b[3])?, bcd(b[4])?);
    if h > 23 || m > 59 || s > 60 {
        return Err(TsError::SectionMalformed("time of day out of range"));
    }
    let days = mjd
        .checked_sub(MJD_UNIX_EPOCH)
        .ok_or(TsError::SectionMalformed("date before 1970"))?;
    Ok(UnixMillis((days * 86_400 + h * 3600 + m * 60 + s) * 1000))
}

/// Encodes an ATSC system time table section for `unix_seconds` (used by tests and the tuner
/// simulator to give generated streams a broadcaster clock).
pub fn encode_atsc_stt(unix_seconds: u64, gps_utc_offset: u8) -> Vec<u8> {
    let gps = (unix_seconds + u64::from(gps_utc_offset)).saturating_sub(GPS_EPOCH_UNIX) as u32;
    let body_len = 5 + 1 + 4 + 1 + 2 + 4; // header tail + protocol + time + offset + DS + CRC
    let mut s = vec![
        0xcd,
        0xf0 | (body_len >> 8) as u8,
        body_len as u8,
        0,
        0,
        0xc1,
        0,
        0,
        0,
    ];
    s.extend_from_slice(&gps.to_be_bytes());
    s.extend_from_slice(&[gps_utc_offset, 0, 0]);
    let crc = crc32(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stt_round_trip() {
        let stt = encode_atsc_stt(1_764_072_000, 18);
        assert_eq!(
            parse_atsc_stt(&stt).unwrap(),
            Some(UnixMillis(1_764_072_000_000))
        );
        let mut bad = stt.clone();
        bad[10] ^= 1;
        assert_eq!(parse_atsc_stt(&bad), Err(TsError::SectionCrc));
        assert_eq!(parse_atsc_stt(&[0xc7, 0, 0]).unwrap(), None);
    }

    #[test]
    fn tdt_decodes_mjd_and_bcd() {
        // 1993-10-13 12:45:00 UTC is MJD 0xC079 (EN 300 468 annex C example).
        let tdt = [0x70, 0x70, 0x05, 0xc0, 0x79, 0x12, 0x45, 0x00];
        assert_eq!(
            parse_dvb_time(&tdt).unwrap(),
            Some(UnixMillis(750_516_300_000))
        );
        let not_bcd = [0x70, 0x70, 0x05, 0xc0, 0x79, 0x1a, 0x45, 0x00];
        assert!(parse_dvb_time(&not_bcd).is_err());
    }
}
