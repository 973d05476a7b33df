//! Fuzzes MoQ data-plane decoding: subgroup and FETCH streams (whole and split at every
//! point a live stream could be), and OBJECT_DATAGRAM. No panic; errors carry draft codes.
#![no_main]

use ec_node::moq::wire::{decode_data_stream, decode_datagram, DataStreamReader, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = decode_data_stream(Version::Draft16, data, 1 << 16);
    if let Err(e) = &whole {
        assert!(e.session_code().is_some());
    }
    // Byte-at-a-time feeding must decode the same items as the whole buffer.
    let mut reader = DataStreamReader::new(Version::Draft16, 1 << 16);
    let (mut buf, mut items, mut failed) = (Vec::new(), Vec::new(), false);
    for b in data {
        buf.push(*b);
        loop {
            match reader.next(&buf) {
                Ok(Some((item, used))) => {
                    buf.drain(..used);
                    items.push(item);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    if let Ok(w) = whole {
        assert_eq!(w, items);
    }
    if let Err(e) = decode_datagram(Version::Draft16, data) {
        assert!(e.session_code().is_some());
    }
});
