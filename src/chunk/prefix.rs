//! The PAT and PMT packets that open every chunk, so each chunk decodes on its own.
//!
//! They are built from the section bytes alone, never copied from received packets, so two nodes
//! produce the same bytes: the section starts in the first packet after a zero pointer field, runs
//! on in 184-byte payloads, and the last packet is filled with 0xFF. Continuity counters follow
//! the fixed rule of docs/PROTOCOL.md §1.5: the `n` packets of a PID get `c-n+1 … c` (mod 16),
//! where `c` is the counter of the last packet received on that PID before the chunk's first packet,
//! so the chunk's own packets on that PID continue the count without a gap.

use crate::ts::packet::{write_header, Pid, PACKET_SIZE};

/// Appends the packets carrying `section` on `pid` to `out`.
pub fn write_section_packets(out: &mut Vec<u8>, pid: Pid, section: &[u8], last_counter: u8) {
    let count = packets_for(section.len());
    let mut rest = section;
    for i in 0..count {
        let cc = last_counter.wrapping_sub((count - 1 - i) as u8) & 0x0f;
        let mut packet = [0xffu8; PACKET_SIZE];
        write_header(&mut packet, i == 0, pid, cc);
        let start = if i == 0 {
            packet[4] = 0; // pointer_field: the section starts right away
            5
        } else {
            4
        };
        let take = rest.len().min(PACKET_SIZE - start);
        packet[start..start + take].copy_from_slice(&rest[..take]);
        rest = &rest[take..];
        out.extend_from_slice(&packet);
    }
}

/// Packets needed for a section of `len` bytes (183 in the first, 184 in each further one).
fn packets_for(len: usize) -> usize {
    1 + len.saturating_sub(183).div_ceil(184)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::Packet;
    use crate::ts::psi::SectionAssembler;

    #[test]
    fn long_sections_span_packets_with_continuous_counters() {
        let mut section = vec![0x02, 0xb1, 0x2c];
        section.resize(300 + 3, 0xab);
        let mut out = Vec::new();
        write_section_packets(&mut out, Pid::new(0x30), &section, 1);
        assert_eq!(out.len(), 2 * PACKET_SIZE);
        let mut assembler = SectionAssembler::default();
        let mut got = Vec::new();
        let mut counters = Vec::new();
        for raw in out.chunks_exact(PACKET_SIZE) {
            let p = Packet::parse(raw.try_into().unwrap()).unwrap();
            counters.push(p.continuity_counter());
            assembler
                .push(p.payload_unit_start(), p.payload(), &mut |s| {
                    got.push(s.to_vec())
                })
                .unwrap();
        }
        assert_eq!(counters, vec![0, 1]);
        assert_eq!(got, vec![section]);
    }

    #[test]
    fn counter_wraps_below_zero() {
        let mut out = Vec::new();
        write_section_packets(&mut out, Pid::PAT, &[0u8; 200], 0);
        let p = Packet::parse(out[..PACKET_SIZE].try_into().unwrap()).unwrap();
        assert_eq!(p.continuity_counter(), 15);
        assert_eq!(packets_for(183), 1);
        assert_eq!(packets_for(184), 2);
    }
}
