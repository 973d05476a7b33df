//! MPEG transport stream parsing (ISO/IEC 13818-1): packets, PSI, PES and clocks.
