//! The demuxer: follows one program through PAT and PMT, checks continuity, and reports per
//! packet what the chunker needs — PCR, video PES starts with their timestamps, random-access
//! verdicts, table changes and broadcaster wall-clock time.
//!
//! It is fed one parsed packet at a time and answers with a small [`PacketReport`]; it keeps only
//! the latest tables, one PES head of at most [`super::es::MAX_HEAD`] bytes and per-PID
//! counters, so its memory is bounded whatever the input. No I/O, no clock reads.

use super::clock::Pcr;
use super::es::{self, Access, MAX_HEAD};
use super::packet::{Packet, Pid};
use super::pes::PesHeader;
use super::psi::{EsInfo, Pat, Pmt, SectionAssembler};
use super::si;
use super::TsError;
use crate::time::UnixMillis;

/// What the continuity counter says about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// The expected counter (or the first packet seen on its PID, or a signalled discontinuity).
    Ok,
    /// The same counter as the previous payload packet: a legal repeat.
    Duplicate,
    /// This many packets went missing before this one.
    Lost(u8),
}

/// What one packet meant, as far as the chunker is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketReport {
    /// Continuity on this packet's PID.
    pub continuity: Continuity,
    /// The PCR, if this packet is on the program's PCR PID and carries one.
    pub pcr: Option<Pcr>,
    /// `discontinuity_indicator` on the PCR PID: the broadcaster announced a time-base change.
    pub time_base_discontinuity: bool,
    /// A video PES starts in this packet.
    pub video_pes_start: bool,
    /// The header of the current video PES became complete in this packet.
    pub video_header: Option<PesHeader>,
    /// Whether the current video PES is a random-access point, decided in this packet.
    pub video_random_access: Option<bool>,
    /// The PAT or the selected program's PMT changed in this packet.
    pub tables_changed: bool,
    /// The broadcaster's wall clock (ATSC STT or DVB TDT/TOT) arrived in this packet.
    pub wall_clock: Option<UnixMillis>,
    /// Something in this packet was malformed (a section, a PES header).
    pub error: Option<TsError>,
}

/// Parses one wall-clock table section (`si::parse_atsc_stt` or `si::parse_dvb_time`).
type TimeTableParser = fn(&[u8]) -> Result<Option<UnixMillis>, TsError>;

/// Per-PID continuity state: the last counter of a payload packet, if any.
#[derive(Clone, Copy)]
struct CounterState(u8);

const NO_COUNTER: CounterState = CounterState(0xff);

/// Follows the first program of the PAT; see the module doc.
pub struct Demuxer {
    counters: Box<[CounterState; 8192]>,
    pat_sections: SectionAssembler,
    pmt_sections: SectionAssembler,
    stt_sections: SectionAssembler,
    tdt_sections: SectionAssembler,
    pat: Option<(Pat, Vec<u8>)>,
    pmt_pid: Option<Pid>,
    pmt: Option<(Pmt, Vec<u8>)>,
    video: Option<EsInfo>,
    head: Vec<u8>,
    header: Option<PesHeader>,
    decided: bool,
}

impl Default for Demuxer {
    fn default() -> Self {
        Demuxer::new()
    }
}

impl Demuxer {
    /// A demuxer that has seen nothing yet.
    pub fn new() -> Demuxer {
        Demuxer {
            counters: Box::new([NO_COUNTER; 8192]),
            pat_sections: SectionAssembler::default(),
            pmt_sections: SectionAssembler::default(),
            stt_sections: SectionAssembler::default(),
            tdt_sections: SectionAssembler::default(),
            pat: None,
            pmt_pid: None,
            pmt: None,
            video: None,
            head: Vec::with_capacity(MAX_HEAD),
            header: None,
            decided: true,
        }
    }

    /// The latest PAT section, as sent.
    pub fn pat_section(&self) -> Option<&[u8]> {
        self.pat.as_ref().map(|(_, bytes)| bytes.as_slice())
    }

    /// The PMT PID and latest PMT section of the followed program, as sent.
    pub fn pmt_section(&self) -> Option<(Pid, &[u8])> {
        Some((self.pmt_pid?, self.pmt.as_ref()?.1.as_slice()))
    }

    /// The followed program's map, once known.
    pub fn pmt(&self) -> Option<&Pmt> {
        self.pmt.as_ref().map(|(pmt, _)| pmt)
    }

    /// The video stream the chunker cuts on, once known.
    pub fn video(&self) -> Option<EsInfo> {
        self.video
    }

    /// The continuity counter of the last payload packet seen on `pid`.
    pub fn last_counter(&self, pid: Pid) -> Option<u8> {
        let CounterState(cc) = self.counters[pid.index()];
        (cc != NO_COUNTER.0).then_some(cc)
    }

    /// Forgets continuity state, e.g. after the capture lost data.
    pub fn reset_continuity(&mut self) {
        self.counters.fill(NO_COUNTER);
    }

    /// Processes one packet (which must not carry the transport error indicator).
    pub fn handle(&mut self, packet: &Packet<'_>) -> PacketReport {
        let pid = packet.pid();
        let af = packet.adaptation();
        let pcr_pid = self.pmt.as_ref().map(|(pmt, _)| pmt.pcr_pid);
        let mut report = PacketReport {
            continuity: self.continuity(packet),
            pcr: af.pcr.filter(|_| Some(pid) == pcr_pid),
            time_base_discontinuity: af.discontinuity && Some(pid) == pcr_pid,
            video_pes_start: false,
            video_header: None,
            video_random_access: None,
            tables_changed: false,
            wall_clock: None,
            error: None,
        };
        if !packet.has_payload() || pid == Pid::NULL {
            return report;
        }
        let unit_start = packet.payload_unit_start();
        let payload = packet.payload();
        if self.video.is_some_and(|v| v.pid == pid) {
            self.video_payload(unit_start, payload, &mut report);
        } else if pid == Pid::PAT {
            let mut sections = Vec::new();
            let result = self
                .pat_sections
                .push(unit_start, payload, &mut |s| sections.push(s.to_vec()));
            report.error = result.err();
            for section in sections {
                self.pat_section_complete(section, &mut report);
            }
        } else if Some(pid) == self.pmt_pid {
            let mut sections = Vec::new();
            let result = self
                .pmt_sections
                .push(unit_start, payload, &mut |s| sections.push(s.to_vec()));
            report.error = result.err();
            for section in sections {
                self.pmt_section_complete(section, &mut report);
            }
        } else if pid == Pid::ATSC_PSIP || pid == Pid::DVB_TDT {
            self.time_payload(pid, unit_start, payload, &mut report);
        }
        report
    }

    fn continuity(&mut self, packet: &Packet<'_>) -> Continuity {
        let pid = packet.pid();
        if pid == Pid::NULL || !packet.has_payload() {
            return Continuity::Ok;
        }
        let cc = packet.continuity_counter();
        let last = std::mem::replace(&mut self.counters[pid.index()], CounterState(cc)).0;
        if last == NO_COUNTER.0 || packet.adaptation().discontinuity {
            Continuity::Ok
        } else if cc == last {
            Continuity::Duplicate
        } else {
            match cc.wrapping_sub(last) & 0x0f {
                1 => Continuity::Ok,
                gap => Continuity::Lost(gap - 1),
            }
        }
    }

    fn pat_section_complete(&mut self, section: Vec<u8>, report: &mut PacketReport) {
        match Pat::parse(&section) {
            Err(e) => report.error = Some(e),
            Ok(None) => {}
            Ok(Some(pat)) => {
                if self.pat.as_ref().is_some_and(|(_, old)| *old == section) {
                    return;
                }
                let pmt_pid = pat.programs.first().map(|&(_, pid)| pid);
                if pmt_pid != self.pmt_pid {
                    self.pmt_pid = pmt_pid;
                    self.pmt = None;
                    self.video = None;
                    self.pmt_sections = SectionAssembler::default();
                }
                self.pat = Some((pat, section));
                report.tables_changed = true;
            }
        }
    }

    fn pmt_section_complete(&mut self, section: Vec<u8>, report: &mut PacketReport) {
        let program = self
            .pat
            .as_ref()
            .and_then(|(pat, _)| pat.programs.first().map(|p| p.0));
        match Pmt::parse(&section) {
            Err(e) => report.error = Some(e),
            Ok(Some(pmt)) if Some(pmt.program) == program => {
                if self.pmt.as_ref().is_some_and(|(_, old)| *old == section) {
                    return;
                }
                if pmt.video() != self.video {
                    self.video = pmt.video();
                    self.decided = true;
                }
                self.pmt = Some((pmt, section));
                report.tables_changed = true;
            }
            Ok(_) => {}
        }
    }

    fn time_payload(
        &mut self,
        pid: Pid,
        unit_start: bool,
        payload: &[u8],
        report: &mut PacketReport,
    ) {
        let (assembler, parse): (_, TimeTableParser) = if pid == Pid::ATSC_PSIP {
            (&mut self.stt_sections, si::parse_atsc_stt)
        } else {
            (&mut self.tdt_sections, si::parse_dvb_time)
        };
        let mut outcome = Ok(None);
        let pushed = assembler.push(unit_start, payload, &mut |section| {
            if section
                .first()
                .is_some_and(|&t| t == 0xcd || t == 0x70 || t == 0x73)
            {
                outcome = parse(section);
            }
        });
        match (pushed, outcome) {
            (Err(e), _) | (_, Err(e)) => report.error = Some(e),
            (Ok(()), Ok(time)) => report.wall_clock = time,
        }
    }

    fn video_payload(&mut self, unit_start: bool, payload: &[u8], report: &mut PacketReport) {
        if unit_start {
            report.video_pes_start = true;
            self.head.clear();
            self.header = None;
            self.decided = false;
        }
        if self.decided {
            return;
        }
        let room = (MAX_HEAD + 64).saturating_sub(self.head.len());
        self.head
            .extend_from_slice(&payload[..payload.len().min(room)]);
        if self.header.is_none() {
            match PesHeader::parse(&self.head) {
                Ok(None) => return,
                Ok(Some(header)) => {
                    self.header = Some(header);
                    report.video_header = Some(header);
                }
                Err(e) => {
                    report.error = Some(e);
                    self.decide(false, report);
                    return;
                }
            }
        }
        let (Some(header), Some(video)) = (self.header, self.video) else {
            return;
        };
        let es = self.head.get(header.payload_offset..).unwrap_or(&[]);
        match es::classify(video.stream_type, es) {
            Access::RandomAccess => self.decide(true, report),
            Access::Dependent => self.decide(false, report),
            Access::NeedMore if es.len() >= MAX_HEAD || room == 0 => self.decide(false, report),
            Access::NeedMore => {}
        }
    }

    fn decide(&mut self, random_access: bool, report: &mut PacketReport) {
        self.decided = true;
        report.video_random_access = Some(random_access);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::{write_header, PACKET_SIZE};

    fn payload_packet(pid: u16, cc: u8, pusi: bool, payload: &[u8]) -> [u8; PACKET_SIZE] {
        let mut p = [0xff; PACKET_SIZE];
        write_header(&mut p, pusi, Pid::new(pid), cc);
        p[4..4 + payload.len()].copy_from_slice(payload);
        p
    }

    #[test]
    fn continuity_tells_duplicates_from_losses() {
        let mut d = Demuxer::new();
        let mut run = |cc| {
            d.handle(&Packet::parse(&payload_packet(0x200, cc, false, &[])).unwrap())
                .continuity
        };
        assert_eq!(run(14), Continuity::Ok);
        assert_eq!(run(15), Continuity::Ok);
        assert_eq!(run(15), Continuity::Duplicate);
        assert_eq!(run(0), Continuity::Ok);
        assert_eq!(run(3), Continuity::Lost(2));
    }
}
