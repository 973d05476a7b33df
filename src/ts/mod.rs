//! MPEG transport stream parsing (ISO/IEC 13818-1): packet framing with sync recovery, packet
//! headers and adaptation fields, PSI sections (PAT, PMT, CRC32), PES headers, 33-bit clocks,
//! broadcaster wall-clock tables and random-access detection in the video elementary stream.
//!
//! Everything here is a pure function or an owner fed bytes that hands back what it found. It
//! never reads files, sockets or the clock, and no input can make it panic or grow without bound.
//!
//! The path of a read: [`sync::Framer`] cuts bytes into [`packet::Packet`]s, and
//! [`demux::Demuxer`] turns each packet into a [`demux::PacketReport`].

pub mod clock;
pub mod demux;
pub mod es;
pub mod packet;
pub mod pes;
pub mod psi;
pub mod si;
pub mod sync;

/// Malformed transport-stream data. Every variant is the input's fault; none is a caller mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsError {
    /// A packet did not start with 0x47.
    NoSyncByte,
    /// The adaptation field is longer than the packet allows.
    AdaptationFieldLength(u8),
    /// adaptation_field_control is the reserved value 00.
    ReservedAdaptationControl,
    /// A PSI section failed its CRC32 check.
    SectionCrc,
    /// A PSI section is malformed (the text says how).
    SectionMalformed(&'static str),
    /// A PES header is malformed (the text says how).
    PesMalformed(&'static str),
}

impl std::fmt::Display for TsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TsError::NoSyncByte => write!(f, "packet without sync byte"),
            TsError::AdaptationFieldLength(n) => write!(f, "adaptation field length {n} too long"),
            TsError::ReservedAdaptationControl => write!(f, "reserved adaptation_field_control"),
            TsError::SectionCrc => write!(f, "PSI section CRC mismatch"),
            TsError::SectionMalformed(why) => write!(f, "malformed PSI section: {why}"),
            TsError::PesMalformed(why) => write!(f, "malformed PES header: {why}"),
        }
    }
}

impl std::error::Error for TsError {}
