//! Fuzzes the MoQ control-message decoder, and a server session fed the same bytes as its
//! control stream after a valid CLIENT_SETUP. Neither may panic; errors must carry draft codes.
#![no_main]

use std::time::Instant;

use ec_node::moq::session::{Config, Role, Session, QuicStreamId};
use ec_node::moq::wire::{decode_control_stream, Version};
use libfuzzer_sys::fuzz_target;

/// CLIENT_SETUP with MAX_REQUEST_ID 100, so requests in `data` reach the session logic.
const SETUP: [u8; 7] = [0x20, 0x00, 0x04, 0x01, 0x02, 0x40, 0x64];

fuzz_target!(|data: &[u8]| {
    if let Err(e) = decode_control_stream(Version::Draft16, data) {
        assert!(e.session_code().is_some());
    }
    let now = Instant::now();
    let mut s = Session::new(Role::Server, Version::Draft16, Config::default(), now);
    if s.handle_stream_data(now, QuicStreamId::CONTROL, &SETUP, false).is_ok() {
        if let Err(e) = s.handle_stream_data(now, QuicStreamId::CONTROL, data, false) {
            assert!(e.session_code().is_some());
        }
    }
    while s.poll_output().is_some() {}
    while s.poll_write(1 << 16).is_some() {}
});
