#![no_main]
//! Fuzz target `hdhr_protocol`; the property lives in `fuzz/checks.rs`, shared with the test suite.

#[allow(dead_code)] // each target uses one check of the shared file
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hdhr_protocol(data));
