//! Program-specific information: section reassembly across packets, CRC32, PAT and PMT.
//!
//! Sections are reassembled from packet payloads (pointer field, sections spanning several packets,
//! several sections in one packet) into a buffer bounded by the largest legal section, then the
//! table parsers check the CRC and every length before reading. Pure parsing: no I/O.

use super::packet::Pid;
use super::TsError;

/// The longest section any table may have (private sections: 4093 + 3 bytes).
pub const MAX_SECTION: usize = 4096;
/// PAT and PMT sections may not exceed 1024 bytes (section_length ≤ 1021).
const MAX_PSI_SECTION: usize = 1024;

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial value all ones, no reflection, no final xor).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04c1_1db7
                } else {
                    crc << 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    bytes.iter().fold(0xffff_ffff, |crc, &b| {
        (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize]
    })
}

/// Reassembles the sections carried on one PID.
#[derive(Debug, Default)]
pub struct SectionAssembler {
    buf: Vec<u8>,
    active: bool,
}

impl SectionAssembler {
    /// Feeds one packet payload; `sink` receives each complete section (CRC not yet checked).
    /// A malformed pointer field or an oversized section is an error; the assembler then waits
    /// for the next section start.
    pub fn push(
        &mut self,
        unit_start: bool,
        payload: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), TsError> {
        if !unit_start {
            return if self.active {
                self.feed(payload, sink)
            } else {
                Ok(())
            };
        }
        let Some((&pointer, rest)) = payload.split_first() else {
            self.active = false;
            return Err(TsError::SectionMalformed(
                "empty payload at a section start",
            ));
        };
        let pointer = pointer as usize;
        if pointer > rest.len() {
            self.active = false;
            return Err(TsError::SectionMalformed(
                "pointer field past the packet end",
            ));
        }
        let (tail, next) = rest.split_at(pointer);
        let tail_result = if self.active {
            self.feed(tail, sink)
        } else {
            Ok(())
        };
        // Whatever the tail did, a new section starts after the pointer.
        self.active = false;
        self.feed(next, sink)?;
        tail_result
    }

    fn feed(&mut self, mut data: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<(), TsError> {
        while let Some(&first) = data.first() {
            if !self.active {
                if first == 0xff {
                    return Ok(()); // stuffing after the last section
                }
                self.active = true;
                self.buf.clear();
            }
            let want = self.total_len().unwrap_or(3);
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            match self.total_len() {
                Some(total) if total > MAX_SECTION => {
                    self.active = false;
                    return Err(TsError::SectionMalformed("section longer than 4096 bytes"));
                }
                Some(total) if self.buf.len() == total => {
                    sink(&self.buf);
                    self.active = false;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn total_len(&self) -> Option<usize> {
        (self.buf.len() >= 3)
            .then(|| ((usize::from(self.buf[1] & 0x0f) << 8) | usize::from(self.buf[2])) + 3)
    }
}

/// The long-form section header fields shared by PAT, PMT and other tables.
pub(super) struct LongSection<'a> {
    pub(super) table_id: u8,
    id: u16,
    version: u8,
    pub(super) current: bool,
    pub(super) body: &'a [u8],
}

pub(super) fn long_section(section: &[u8], max: usize) -> Result<LongSection<'_>, TsError> {
    if section.len() > max {
        return Err(TsError::SectionMalformed("section too long for its table"));
    }
    if section.len() < 12 || section[1] & 0x80 == 0 {
        return Err(TsError::SectionMalformed(
            "short section or no section syntax",
        ));
    }
    let (data, crc) = section.split_at(section.len() - 4);
    if crc32(data) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(TsError::SectionCrc);
    }
    Ok(LongSection {
        table_id: section[0],
        id: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1f,
        current: section[5] & 1 != 0,
        body: &data[8..],
    })
}

/// A program association table section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pat {
    /// `transport_stream_id`.
    pub transport_stream_id: u16,
    /// `version_number`.
    pub version: u8,
    /// (program_number, PMT PID) for every program except the network PID entry (program 0).
    pub programs: Vec<(u16, Pid)>,
}

impl Pat {
    /// Parses and CRC-checks a PAT section; `Ok(None)` for a not-yet-current one.
    pub fn parse(section: &[u8]) -> Result<Option<Pat>, TsError> {
        let s = long_section(section, MAX_PSI_SECTION)?;
        if s.table_id != 0x00 || s.body.len() % 4 != 0 {
            return Err(TsError::SectionMalformed("not a PAT section"));
        }
        if !s.current {
            return Ok(None);
        }
        let programs = s
            .body
            .chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    Pid::new(u16::from_be_bytes([e[2], e[3]])),
                )
            })
            .filter(|&(program, _)| program != 0)
            .collect();
        Ok(Some(Pat {
            transport_stream_id: s.id,
            version: s.version,
            programs,
        }))
    }
}

/// An elementary stream's coding, from the PMT `stream_type` (and descriptors for DVB audio).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    /// 0x01 / 0x02: MPEG-1 or MPEG-2 video.
    Mpeg2Video,
    /// 0x1B: H.264 / AVC.
    H264,
    /// 0x24: H.265 / HEVC.
    Hevc,
    /// 0x0F: AAC in ADTS (0x11 LATM is `Other`).
    Aac,
    /// 0x81 (ATSC) or 0x06 with an AC-3 descriptor (DVB): AC-3.
    Ac3,
    /// 0x87 (ATSC) or 0x06 with an E-AC-3 descriptor (DVB): E-AC-3.
    Eac3,
    /// 0x03 / 0x04: MPEG-1/2 audio.
    MpegAudio,
    /// Anything else, with its stream_type byte.
    Other(u8),
}

impl StreamType {
    fn from_pmt(stream_type: u8, descriptors: &[u8]) -> StreamType {
        match stream_type {
            0x01 | 0x02 => StreamType::Mpeg2Video,
            0x1b => StreamType::H264,
            0x24 => StreamType::Hevc,
            0x0f => StreamType::Aac,
            0x81 => StreamType::Ac3,
            0x87 => StreamType::Eac3,
            0x03 | 0x04 => StreamType::MpegAudio,
            0x06 => dvb_private_stream(descriptors),
            other => StreamType::Other(other),
        }
    }

    /// Whether this is a video coding the chunker can find random-access points in.
    pub fn is_video(self) -> bool {
        matches!(
            self,
            StreamType::Mpeg2Video | StreamType::H264 | StreamType::Hevc
        )
    }
}

/// DVB signals AC-3 / E-AC-3 as private data (0x06) with descriptor 0x6A / 0x7A.
fn dvb_private_stream(mut descriptors: &[u8]) -> StreamType {
    while let [tag, len, rest @ ..] = descriptors {
        match tag {
            0x6a => return StreamType::Ac3,
            0x7a => return StreamType::Eac3,
            _ => {}
        }
        descriptors = rest.get(usize::from(*len)..).unwrap_or(&[]);
    }
    StreamType::Other(0x06)
}

/// One elementary stream of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EsInfo {
    /// The stream's PID.
    pub pid: Pid,
    /// Its coding.
    pub stream_type: StreamType,
}

/// A program map table section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pmt {
    /// `program_number`.
    pub program: u16,
    /// `version_number`.
    pub version: u8,
    /// The PID carrying this program's PCR.
    pub pcr_pid: Pid,
    /// Elementary streams in PMT order.
    pub streams: Vec<EsInfo>,
}

impl Pmt {
    /// Parses and CRC-checks a PMT section; `Ok(None)` for a not-yet-current one.
    pub fn parse(section: &[u8]) -> Result<Option<Pmt>, TsError> {
        let s = long_section(section, MAX_PSI_SECTION)?;
        if s.table_id != 0x02 || s.body.len() < 4 {
            return Err(TsError::SectionMalformed("not a PMT section"));
        }
        if !s.current {
            return Ok(None);
        }
        let pcr_pid = Pid::new(u16::from_be_bytes([s.body[0], s.body[1]]));
        let info_len = usize::from(u16::from_be_bytes([s.body[2], s.body[3]]) & 0x0fff);
        let mut rest = s.body.get(4 + info_len..).ok_or(TsError::SectionMalformed(
            "program info past the section end",
        ))?;
        let mut streams = Vec::new();
        while !rest.is_empty() {
            let [stream_type, p0, p1, l0, l1, tail @ ..] = rest else {
                return Err(TsError::SectionMalformed("truncated PMT stream entry"));
            };
            let es_len = usize::from(u16::from_be_bytes([*l0, *l1]) & 0x0fff);
            let descriptors = tail
                .get(..es_len)
                .ok_or(TsError::SectionMalformed("ES info past the section end"))?;
            streams.push(EsInfo {
                pid: Pid::new(u16::from_be_bytes([*p0, *p1])),
                stream_type: StreamType::from_pmt(*stream_type, descriptors),
            });
            rest = &tail[es_len..];
        }
        Ok(Some(Pmt {
            program: s.id,
            version: s.version,
            pcr_pid,
            streams,
        }))
    }

    /// The first video stream the chunker can cut on.
    pub fn video(&self) -> Option<EsInfo> {
        self.streams
            .iter()
            .copied()
            .find(|es| es.stream_type.is_video())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a long-form section with a valid CRC.
    pub(crate) fn section(table_id: u8, id: u16, version: u8, body: &[u8]) -> Vec<u8> {
        let len = 5 + body.len() + 4;
        let mut s = vec![table_id, 0xb0 | (len >> 8) as u8, len as u8];
        s.extend_from_slice(&id.to_be_bytes());
        s.extend_from_slice(&[0xc1 | (version << 1), 0, 0]);
        s.extend_from_slice(body);
        let crc = crc32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        s
    }

    #[test]
    fn crc_of_known_vector() {
        // CRC-32/MPEG-2 check value for "123456789".
        assert_eq!(crc32(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn pat_and_pmt_parse() {
        let pat = section(0, 7, 3, &[0, 0, 0xe0, 0x10, 0, 1, 0xe1, 0x00]);
        let parsed = Pat::parse(&pat).unwrap().unwrap();
        assert_eq!(parsed.programs, vec![(1, Pid::new(0x100))]);
        assert_eq!(parsed.version, 3);

        let body = [
            0xe1, 0x01, 0xf0, 0x00, // PCR PID 0x101, no program info
            0x02, 0xe1, 0x01, 0xf0, 0x00, // MPEG-2 video
            0x06, 0xe1, 0x02, 0xf0, 0x03, 0x6a, 0x01, 0x00, // DVB AC-3
            0x87, 0xe1, 0x03, 0xf0, 0x00, // E-AC-3
        ];
        let pmt = Pmt::parse(&section(2, 1, 0, &body)).unwrap().unwrap();
        assert_eq!(pmt.pcr_pid, Pid::new(0x101));
        let types: Vec<_> = pmt.streams.iter().map(|s| s.stream_type).collect();
        assert_eq!(
            types,
            vec![StreamType::Mpeg2Video, StreamType::Ac3, StreamType::Eac3]
        );
        assert_eq!(pmt.video().unwrap().pid, Pid::new(0x101));
    }

    #[test]
    fn bad_crc_and_truncation_are_rejected() {
        let mut pat = section(0, 7, 0, &[0, 1, 0xe1, 0x00]);
        let last = pat.len() - 1;
        pat[last] ^= 1;
        assert_eq!(Pat::parse(&pat), Err(TsError::SectionCrc));
        let pmt = section(
            2,
            1,
            0,
            &[0xe1, 0x01, 0xf0, 0x00, 0x02, 0xe1, 0x01, 0xf0, 0x05],
        );
        assert!(Pmt::parse(&pmt).is_err());
    }

    #[test]
    fn sections_span_packets_and_share_packets() {
        let long = section(2, 1, 0, &[0xab; 300]);
        let short = section(0, 1, 0, &[0, 1, 0xe1, 0]);
        let mut got = Vec::new();
        let mut sink = |s: &[u8]| got.push(s.to_vec());
        let mut asm = SectionAssembler::default();
        // Packet 1: pointer 0, first 183 bytes of the long section.
        let mut p1 = vec![0u8];
        p1.extend_from_slice(&long[..183]);
        asm.push(true, &p1, &mut sink).unwrap();
        // Packet 2: the long section's middle.
        asm.push(false, &long[183..300], &mut sink).unwrap();
        // Packet 3: pointer to the tail, then a short section, then stuffing.
        let tail = &long[300..];
        let mut p3 = vec![tail.len() as u8];
        p3.extend_from_slice(tail);
        p3.extend_from_slice(&short);
        p3.extend_from_slice(&[0xff; 20]);
        asm.push(true, &p3, &mut sink).unwrap();
        assert_eq!(got, vec![long, short]);
    }

    #[test]
    fn oversized_and_bad_pointer_sections_are_errors() {
        let mut asm = SectionAssembler::default();
        let mut sink = |_: &[u8]| panic!("no section expected");
        assert!(asm.push(true, &[200, 1, 2], &mut sink).is_err());
        assert!(asm.push(true, &[0, 0x02, 0xff, 0xff], &mut sink).is_err());
    }
}
