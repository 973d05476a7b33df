//! The 188-byte transport packet: header fields, adaptation field and payload.
//!
//! Parsing borrows the caller's bytes and never copies them. A [`Packet`] is only made from
//! exactly 188 bytes that start with the sync byte, so its header accessors cannot fail; the
//! adaptation field, which can be malformed, is checked once in [`Packet::parse`].

use super::clock::Pcr;
use super::TsError;

/// Bytes in one transport packet.
pub const PACKET_SIZE: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;

/// A 13-bit packet identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(u16);

impl Pid {
    /// Program association table.
    pub const PAT: Pid = Pid(0x0000);
    /// DVB time and date / time offset tables.
    pub const DVB_TDT: Pid = Pid(0x0014);
    /// ATSC PSIP base PID (system time table among others).
    pub const ATSC_PSIP: Pid = Pid(0x1ffb);
    /// Stuffing.
    pub const NULL: Pid = Pid(0x1fff);

    /// The PID from its 13 low bits (higher bits are ignored).
    pub const fn new(value: u16) -> Pid {
        Pid(value & 0x1fff)
    }

    /// The numeric value, `0..=0x1fff`.
    pub const fn value(self) -> u16 {
        self.0
    }

    /// Index into per-PID tables of 8192 entries.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// The adaptation field flags that matter for cutting and timing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdaptationField {
    /// `discontinuity_indicator`: a time-base (PCR PID) or continuity discontinuity.
    pub discontinuity: bool,
    /// `random_access_indicator`: the broadcaster's (unreliable) random-access hint.
    pub random_access: bool,
    /// The program clock reference, when present.
    pub pcr: Option<Pcr>,
}

/// One transport packet, borrowed from the input.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    bytes: &'a [u8; PACKET_SIZE],
    adaptation: AdaptationField,
    payload_start: usize,
}

impl<'a> Packet<'a> {
    /// Parses a packet; fails on a missing sync byte or a malformed adaptation field.
    pub fn parse(bytes: &'a [u8; PACKET_SIZE]) -> Result<Packet<'a>, TsError> {
        if bytes[0] != SYNC_BYTE {
            return Err(TsError::NoSyncByte);
        }
        let control = (bytes[3] >> 4) & 0x3;
        let (adaptation, payload_start) = match control {
            0b01 => (AdaptationField::default(), 4),
            0b10 | 0b11 => {
                let len = bytes[4] as usize;
                // With a payload the field leaves at least one payload byte; without, it fills the packet.
                let max = if control == 0b11 { 182 } else { 183 };
                if len > max {
                    return Err(TsError::AdaptationFieldLength(len as u8));
                }
                (parse_adaptation(&bytes[5..5 + len])?, 5 + len)
            }
            _ => return Err(TsError::ReservedAdaptationControl),
        };
        let payload_start = if control & 0b01 == 0 {
            PACKET_SIZE
        } else {
            payload_start
        };
        Ok(Packet {
            bytes,
            adaptation,
            payload_start,
        })
    }

    /// The whole 188 bytes.
    pub fn bytes(&self) -> &'a [u8; PACKET_SIZE] {
        self.bytes
    }

    /// `transport_error_indicator`: the demodulator could not correct this packet.
    pub fn transport_error(&self) -> bool {
        self.bytes[1] & 0x80 != 0
    }

    /// `payload_unit_start_indicator`: a PES packet or PSI section starts in this payload.
    pub fn payload_unit_start(&self) -> bool {
        self.bytes[1] & 0x40 != 0
    }

    /// The packet identifier.
    pub fn pid(&self) -> Pid {
        Pid::new(u16::from_be_bytes([self.bytes[1], self.bytes[2]]))
    }

    /// `transport_scrambling_control` is non-zero.
    pub fn scrambled(&self) -> bool {
        self.bytes[3] & 0xc0 != 0
    }

    /// Whether the packet carries payload (the continuity counter advances only then).
    pub fn has_payload(&self) -> bool {
        self.bytes[3] & 0x10 != 0
    }

    /// The 4-bit continuity counter.
    pub fn continuity_counter(&self) -> u8 {
        self.bytes[3] & 0x0f
    }

    /// The parsed adaptation field (all false / none when absent).
    pub fn adaptation(&self) -> AdaptationField {
        self.adaptation
    }

    /// The payload bytes (empty when the packet carries none).
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.payload_start..]
    }
}

fn parse_adaptation(field: &[u8]) -> Result<AdaptationField, TsError> {
    let Some(&flags) = field.first() else {
        return Ok(AdaptationField::default());
    };
    let pcr = if flags & 0x10 != 0 {
        let b = field
            .get(1..7)
            .ok_or(TsError::AdaptationFieldLength(field.len() as u8))?;
        let base = (u64::from(b[0]) << 25)
            | (u64::from(b[1]) << 17)
            | (u64::from(b[2]) << 9)
            | (u64::from(b[3]) << 1)
            | (u64::from(b[4]) >> 7);
        let extension = (u16::from(b[4] & 1) << 8) | u16::from(b[5]);
        Some(Pcr::new(base, extension))
    } else {
        None
    };
    Ok(AdaptationField {
        discontinuity: flags & 0x80 != 0,
        random_access: flags & 0x40 != 0,
        pcr,
    })
}

/// Writes a packet header: `pusi`, `pid`, payload only, continuity counter `cc`.
pub fn write_header(out: &mut [u8; PACKET_SIZE], pusi: bool, pid: Pid, cc: u8) {
    let pid = pid.value();
    out[0] = SYNC_BYTE;
    out[1] = (u8::from(pusi) << 6) | (pid >> 8) as u8;
    out[2] = pid as u8;
    out[3] = 0x10 | (cc & 0x0f);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(header: [u8; 4], rest: &[u8]) -> [u8; PACKET_SIZE] {
        let mut p = [0xffu8; PACKET_SIZE];
        p[..4].copy_from_slice(&header);
        p[4..4 + rest.len()].copy_from_slice(rest);
        p
    }

    #[test]
    fn header_fields() {
        let bytes = packet([0x47, 0xc1, 0x00, 0x1a], &[]);
        let p = Packet::parse(&bytes).unwrap();
        assert!(p.transport_error());
        assert!(p.payload_unit_start());
        assert_eq!(p.pid(), Pid::new(0x100));
        assert_eq!(p.continuity_counter(), 0xa);
        assert!(p.has_payload());
        assert_eq!(p.payload().len(), 184);
    }

    #[test]
    fn pcr_and_flags_in_adaptation_field() {
        // PCR base 0x1_2345_6789 (33 bits), extension 0x123.
        let base: u64 = 0x1_2345_6789;
        let ext: u16 = 0x123;
        let pcr = [
            (base >> 25) as u8,
            (base >> 17) as u8,
            (base >> 9) as u8,
            (base >> 1) as u8,
            ((base & 1) << 7) as u8 | 0x7e | (ext >> 8) as u8,
            ext as u8,
        ];
        let mut rest = vec![7u8, 0xd0];
        rest.extend_from_slice(&pcr);
        let bytes = packet([0x47, 0x01, 0x00, 0x30], &rest);
        let p = Packet::parse(&bytes).unwrap();
        let af = p.adaptation();
        assert!(af.discontinuity && af.random_access);
        assert_eq!(af.pcr, Some(Pcr::new(base, ext)));
        assert_eq!(p.payload().len(), 188 - 4 - 8);
    }

    #[test]
    fn malformed_adaptation_fields_are_errors() {
        let too_long = packet([0x47, 0x01, 0x00, 0x30], &[183]);
        assert_eq!(
            Packet::parse(&too_long).unwrap_err(),
            TsError::AdaptationFieldLength(183)
        );
        let truncated_pcr = packet([0x47, 0x01, 0x00, 0x30], &[2, 0x10]);
        assert!(Packet::parse(&truncated_pcr).is_err());
        let reserved = packet([0x47, 0x01, 0x00, 0x00], &[]);
        assert_eq!(
            Packet::parse(&reserved).unwrap_err(),
            TsError::ReservedAdaptationControl
        );
        let no_payload = packet([0x47, 0x01, 0x00, 0x20], &[183]);
        assert!(Packet::parse(&no_payload).unwrap().payload().is_empty());
    }
}
