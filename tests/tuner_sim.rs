//! `ec-node tuner-sim` as the capture side will meet it: a real process on a loopback port, real
//! HTTP, every device error and every fault. Timing is judged only where load cannot make it
//! flake: an end no sooner than promised (timed from before the request), never more bytes than
//! real time allows; every wait for an outcome is bounded, generously.

use ec_node_testkit::media;
use ec_node_testkit::sim;

use ec_node::chunk::{Chunk, Chunker, ChunkerConfig, ChunkerStats};
use ec_node::clip::BUILTIN_TS;
use ec_node::hdhr::sim::broadcast::Broadcast;
use ec_node::ts::packet::PACKET_SIZE;
use ec_node_testkit::process;
use sim::Sim;
use std::time::{Duration, Instant};

/// H.264 + AAC, 3 s, a keyframe every second: loops three times in a 9 s capture.
const SHORT_CLIP: media::H264Clip = media::H264Clip {
    size: "320x180",
    rate: "30",
    seconds: 3,
    gop: 30,
    ts_offset: None,
};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Chunks received bytes at the fixed clock; returns the chunks and the chunker's counters.
fn chunk(bytes: &[u8]) -> (Vec<Chunk>, ChunkerStats) {
    let mut chunker = Chunker::new(ChunkerConfig::default());
    chunker.push(bytes, media::NOW);
    chunker.finish(media::NOW);
    let chunks = std::iter::from_fn(|| chunker.poll_chunk()).collect();
    (chunks, chunker.stats().clone())
}

/// The bytes the built-in clip sends per second, from its size and its 12 s loop.
fn builtin_rate() -> f64 {
    BUILTIN_TS.len() as f64 / 12.0
}

#[test]
fn discover_lineup_and_status_documents() {
    let sim = Sim::start(&["--tuners", "3"]);
    assert_eq!(sim.channels, ["5.1"]);
    let discover = sim.get("/discover.json");
    assert_eq!(discover.status, 200);
    let d: serde_json::Value = serde_json::from_str(&discover.body).unwrap();
    let base = format!("http://{}", sim.addr);
    assert_eq!(d["BaseURL"], base.as_str());
    assert_eq!(d["LineupURL"], format!("{base}/lineup.json").as_str());
    assert_eq!(d["TunerCount"], 3);
    assert_eq!(d["ModelNumber"], "HDHR5-4US");
    let id = d["DeviceID"].as_str().unwrap();
    assert!(id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    for field in [
        "FriendlyName",
        "FirmwareName",
        "FirmwareVersion",
        "DeviceAuth",
    ] {
        assert!(d[field].as_str().is_some_and(|v| !v.is_empty()), "{field}");
    }

    let lineup = sim.get("/lineup.json");
    assert_eq!(lineup.status, 200);
    let l: serde_json::Value = serde_json::from_str(&lineup.body).unwrap();
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["GuideNumber"], "5.1");
    assert_eq!(l[0]["VideoCodec"], "H264");
    assert_eq!(l[0]["AudioCodec"], "AAC");
    assert_eq!(l[0]["URL"], format!("{base}/auto/v5.1").as_str());
    assert!(l[0]["GuideName"].as_str().is_some());

    let mut held = sim.open("/tuner2/v5.1");
    assert_eq!(held.status, 200);
    held.read_for(secs(0.2));
    let s: serde_json::Value = serde_json::from_str(&sim.get("/status.json").body).unwrap();
    assert_eq!(s.as_array().unwrap().len(), 3);
    assert_eq!(s[2]["Resource"], "tuner2");
    assert_eq!(s[2]["InUse"], 1);
    assert_eq!(s[2]["VctNumber"], "5.1");
    assert!(s[0].get("InUse").is_none());
}

#[test]
fn two_clients_of_one_channel_receive_the_same_bytes() {
    let sim = Sim::start(&[]);
    let first = std::thread::spawn({
        let mut stream = sim.open("/auto/v5.1");
        move || stream.read_for(secs(2.5)).bytes
    });
    std::thread::sleep(secs(0.4));
    let mut second = sim.open("/auto/v5.1");
    let b = second.read_for(secs(1.5)).bytes;
    let a = first.join().unwrap();
    assert!(a.len() % PACKET_SIZE == 0 && b.len().is_multiple_of(PACKET_SIZE));
    assert!(
        b.len() > 50 * PACKET_SIZE,
        "second client got {} bytes",
        b.len()
    );
    // Align on the second client's first packet (PCR or PES timestamps make packets unique).
    let start = a
        .chunks_exact(PACKET_SIZE)
        .position(|p| p == &b[..PACKET_SIZE])
        .expect("the first client received the second client's first packet")
        * PACKET_SIZE;
    assert!(start > 0, "the second client tuned in later");
    let shared = (a.len() - start).min(b.len());
    assert!(shared > 50 * PACKET_SIZE, "only {shared} bytes in common");
    assert!(
        a[start..start + shared] == b[..shared],
        "the streams differ after aligning"
    );
}

#[test]
fn a_looped_clip_has_no_seam() {
    let clip = media::media_path("sim-3s.ts", &SHORT_CLIP.args());
    let channel = format!("7={}", clip.display());
    let sim = Sim::start(&["--channel", &channel]);
    assert_eq!(sim.channels, ["7"]);
    let received = sim.open("/auto/v7?duration=8").read_for(process::STEP);
    assert!(received.closed_after.is_some(), "duration=8 ended the body");
    let (chunks, stats) = chunk(&received.bytes);
    let summary: Vec<_> = chunks
        .iter()
        .map(|c| (c.index.0, c.duration_ms()))
        .collect();
    // Chunks cover whole slots between the first and the last random-access point received
    // (and PTS lags the PCR by over a second), so 8 s give two or three: more than one loop.
    assert!(chunks.len() >= 2, "{summary:?} from 8 s: {stats:?}");
    for c in &chunks {
        assert!(
            !c.flags.discontinuity() && !c.flags.damaged(),
            "chunk {} flags {:?}",
            c.index,
            c.flags
        );
    }
    assert_eq!(stats.lost_packets, 0);
    assert_eq!(stats.skipped_bytes, 0);
    assert_eq!(stats.discontinuities, 0);
    // From the first chunk on (a real tuner starts mid-GOP), ffmpeg decodes without a word.
    let decodable: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.clone()).collect();
    let path = media::write_temp("sim-looped.ts", &decodable);
    assert_eq!(media::decode_errors(&path), "");
}

/// A recipe with its `-t` duration replaced.
/// Three whole loops of a clip (so the last frame is whole), as the simulator sends them from
/// its first packet.
fn loops(clip: &[u8]) -> Vec<u8> {
    let broadcast = Broadcast::new(clip).unwrap();
    let count = broadcast.packets_per_loop() * 3;
    let mut out = Vec::with_capacity(count as usize * PACKET_SIZE);
    let mut packet = [0u8; PACKET_SIZE];
    for n in 0..count {
        broadcast.packet(n, &mut packet);
        out.extend_from_slice(&packet);
    }
    out
}

#[test]
fn atsc_and_wrapping_clips_loop_without_a_seam() {
    let atsc = media::media("sim-atsc-3s.ts", &media::atsc_mpeg2_ac3(3));
    let wrap = media::media(
        "sim-wrap.ts",
        &media::H264Clip {
            seconds: 16,
            ..media::H264_ACROSS_WRAP
        }
        .args(),
    );
    for (name, clip) in [("atsc", atsc), ("wrap", wrap)] {
        let looped = loops(&clip);
        let (chunks, stats) = chunk(&looped);
        assert!(chunks.len() >= 2, "{name}: {stats:?}");
        assert_eq!(stats.lost_packets, 0, "{name}");
        assert_eq!(stats.discontinuities, 0, "{name}");
        assert!(
            chunks.iter().all(|c| c.flags.bits() == 0),
            "{name}: flagged chunks"
        );
        let path = media::write_temp(&format!("sim-{name}-looped.ts"), &looped);
        assert_eq!(media::decode_errors(&path), "", "{name}");
    }
}

#[test]
fn a_lineup_of_two_channels_names_their_codecs() {
    let atsc = media::media_path("sim-atsc-3s.ts", &media::atsc_mpeg2_ac3(3));
    let h264 = media::media_path("sim-3s.ts", &SHORT_CLIP.args());
    let sim = Sim::start(&[
        "--channel",
        &format!("9.1={}", atsc.display()),
        "--channel",
        &format!("5.1={}", h264.display()),
    ]);
    assert_eq!(sim.channels, ["9.1", "5.1"]);
    let l: serde_json::Value = serde_json::from_str(&sim.get("/lineup.json").body).unwrap();
    assert_eq!(l[0]["GuideNumber"], "9.1");
    assert_eq!(l[0]["GuideName"], "sim-atsc-3s");
    assert_eq!(
        (&l[0]["VideoCodec"], &l[0]["AudioCodec"]),
        (&"MPEG2".into(), &"AC3".into())
    );
    assert_eq!(
        (&l[1]["VideoCodec"], &l[1]["AudioCodec"]),
        (&"H264".into(), &"AAC".into())
    );
    let mut atsc_stream = sim.open("/auto/v9.1?duration=2");
    assert_eq!(atsc_stream.status, 200);
    // CBR 19.39 Mb/s: about 2.4 MB/s, so about 4.8 MB in the 2 s asked for (the bytes follow the
    // stream's schedule, not the machine's load; the wait for the end is bounded).
    let got = atsc_stream.read_for(process::STEP).bytes.len() as f64;
    assert!((2.4e6..8.0e6).contains(&got), "{got} bytes in 2 s");
}

#[test]
fn streams_run_in_real_time_and_duration_closes_the_body() {
    let sim = Sim::start(&[]);
    // Timed from before the request: the body cannot end sooner after it than `duration`, however
    // loaded the machine (how much later it ends is not judged).
    let asked = Instant::now();
    let mut stream = sim.open("/auto/v5.1?duration=3");
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("Content-Type").as_deref(), Some("video/mpeg"));
    assert_eq!(stream.header("Connection").as_deref(), Some("close"));
    assert_eq!(
        stream.header("X-HDHomeRun-Resource").as_deref(),
        Some("tuner0")
    );
    let received = stream.read_for(process::STEP);
    received.closed_after.expect("the body ends after 3 s");
    let closed = asked.elapsed();
    assert!(secs(2.5) < closed, "closed after {closed:?}");
    // Never faster than real time: at most about 3 s of the stream (the bytes also show the body
    // was a stream at all; too few would be a stall).
    let expected = 3.0 * builtin_rate();
    let got = received.bytes.len() as f64;
    assert!(
        (0.3 * expected..1.5 * expected).contains(&got),
        "{got} bytes in 3 s, expected about {expected}"
    );
    // The tuner is free again.
    assert_eq!(sim.open("/tuner0/v5.1").status, 200);
}

#[test]
fn device_errors() {
    let sim = Sim::start(&["--tuners", "1"]);
    let mut held = sim.open("/auto/v5.1");
    assert_eq!(held.status, 200);
    held.read_for(secs(0.2));

    let all_busy = sim.get("/auto/v5.1");
    assert_eq!(all_busy.status, 503);
    assert_eq!(
        all_busy.device_error.as_deref(),
        Some("805 All Tuners In Use")
    );
    let busy = sim.get("/tuner0/v5.1");
    assert_eq!(busy.status, 503);
    assert_eq!(busy.device_error.as_deref(), Some("804 Tuner In Use"));
    let unknown = sim.get("/auto/v9.1");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.device_error.as_deref(), Some("801 Unknown Channel"));
    assert_eq!(sim.get("/tuner1/v5.1").status, 404, "only one tuner");
    assert_eq!(sim.get("/nothing").status, 404);
    assert_eq!(sim.get("/auto/v5.1?duration=soon").status, 400);

    let post = sim.raw(b"POST /auto/v5.1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let mut huge = b"GET /lineup.json HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 9000));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_long = sim.raw(&huge);
    assert!(too_long.starts_with("HTTP/1.1 400 "), "{too_long}");
    let garbage = sim.raw(b"\x16\x03\x01 hello\r\n\r\n");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");

    // Closing the stream frees the tuner.
    drop(held);
    process::wait_until("the tuner freed", process::STEP, || {
        sim.open("/auto/v5.1").status == 200
    });
}

#[test]
fn refuse_answers_807_for_the_first_connections_only() {
    let sim = Sim::start(&["--fault", "refuse", "--fault-connections", "2"]);
    for _ in 0..2 {
        let refused = sim.get("/auto/v5.1");
        assert_eq!(refused.status, 503);
        assert_eq!(refused.device_error.as_deref(), Some("807 No Video Data"));
    }
    let mut healthy = sim.open("/auto/v5.1");
    assert_eq!(healthy.status, 200);
    assert!(!healthy.read_some().is_empty());
}

#[test]
fn no_data_sends_headers_then_nothing() {
    let sim = Sim::start(&["--fault", "no-data"]);
    let mut stream = sim.open("/auto/v5.1");
    assert_eq!(stream.status, 200);
    let received = stream.read_for(secs(1.5));
    assert!(received.bytes.is_empty());
    assert!(received.closed_after.is_none(), "the connection stays open");
}

#[test]
fn stall_after_stops_sending_and_keeps_the_connection() {
    let sim = Sim::start(&["--fault", "stall-after:1"]);
    let mut stream = sim.open("/auto/v5.1");
    // It sends, then falls quiet for good with the connection open: wait (bounded) for a quiet
    // second, then check that nothing more came in the next two and it was about 1 s of stream.
    let begun = Instant::now();
    let mut got = 0;
    loop {
        let read = stream.read_for(secs(1.0));
        assert!(read.closed_after.is_none(), "the connection was closed");
        if read.bytes.is_empty() && got > 0 {
            break;
        }
        got += read.bytes.len();
        assert!(begun.elapsed() < process::STEP, "never stalled");
    }
    let after = stream.read_for(secs(2.0));
    assert!(
        after.bytes.is_empty(),
        "{} bytes after the stall",
        after.bytes.len()
    );
    assert!(after.closed_after.is_none());
    let rate = builtin_rate();
    assert!(
        (0.4 * rate..1.5 * rate).contains(&(got as f64)),
        "{got} bytes before the stall, expected about {rate}"
    );
}

#[test]
fn close_after_drops_the_connection_then_reconnects_are_healthy() {
    let sim = Sim::start(&["--fault", "close-after:1", "--fault-connections", "1"]);
    // Timed from before the request: it cannot close sooner after it than 1 s, however loaded
    // the machine (how much later is not judged; the wait for the close is bounded).
    let asked = Instant::now();
    let dropped = sim.open("/auto/v5.1").read_for(process::STEP);
    dropped.closed_after.expect("the connection is closed");
    let closed = asked.elapsed();
    assert!(secs(0.7) < closed, "closed after {closed:?}");
    assert!(!dropped.bytes.is_empty());
    let mut healthy = sim.open("/auto/v5.1");
    assert!(!healthy.read_some().is_empty());
    assert!(healthy.read_for(secs(1.5)).closed_after.is_none());
}

#[test]
fn drop_every_loses_packets() {
    let sim = Sim::start(&["--fault", "drop-every:20"]);
    let received = sim.open("/auto/v5.1?duration=2").read_for(process::STEP);
    assert_eq!(received.bytes.len() % PACKET_SIZE, 0);
    let (_, stats) = chunk(&received.bytes);
    let packets = (received.bytes.len() / PACKET_SIZE) as u64;
    assert!(stats.lost_packets > 0, "no loss seen");
    assert!(
        stats.lost_packets <= packets / 10,
        "{} lost of {packets}",
        stats.lost_packets
    );
}

#[test]
fn garbage_every_inserts_bursts_the_framer_skips() {
    let sim = Sim::start(&["--fault", "garbage-every:0.5"]);
    let received = sim.open("/auto/v5.1?duration=2").read_for(process::STEP);
    let (_, stats) = chunk(&received.bytes);
    assert!(
        stats.skipped_bytes >= 2 * 1000,
        "{} bytes skipped",
        stats.skipped_bytes
    );
    // The framer cannot vouch for the packet just before a burst (no sync byte follows it), so it
    // drops that one; nothing else is lost.
    assert!(stats.lost_packets <= stats.skipped_bytes / 1000);
}

#[test]
fn sigterm_stops_the_simulator_cleanly_even_while_streaming() {
    let sim = Sim::start(&[]);
    let mut stream = sim.open("/auto/v5.1");
    stream.read_for(secs(0.3));
    let status = sim.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(stream.read_for(secs(2.0)).closed_after.is_some());
}

#[test]
fn bad_flags_and_inputs_exit_2_and_a_taken_port_exits_3() {
    let run = |args: &[&str]| {
        let mut all = vec!["tuner-sim"];
        all.extend_from_slice(args);
        process::run(&all)
    };
    let not_ts = media::write_temp("sim-not-ts.ts", &[0x55; 5000]);
    let not_ts = not_ts.to_str().unwrap();
    for (args, cause) in [
        (vec!["--listen", "nowhere"], "--listen"),
        (vec!["--input", "/no/such/file.ts"], "cannot read"),
        (vec!["--input", not_ts], "no MPEG-TS packets"),
        (vec!["--fault", "explode"], "--fault explode"),
        (vec!["--tuners", "0"], "tuners"),
        (vec!["--guide-number", "5..1"], "guide number"),
        (vec!["--channel", "5.1"], "GUIDE=FILE"),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(cause), "{args:?}: {stderr}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["--listen", &addr]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn connections_past_the_cap_get_803_until_others_close() {
    let sim = Sim::start(&[]);
    // Connections that never send a request each hold one of the 32 slots.
    let idle: Vec<_> = (0..32)
        .map(|_| std::net::TcpStream::connect(sim.addr).unwrap())
        .collect();
    // Once the simulator has taken them all (the wait is bounded), a request is refused.
    let mut busy = sim.get("/discover.json");
    process::wait_until("all 32 slots held", process::STEP, || {
        busy = sim.get("/discover.json");
        busy.status == 503
    });
    assert_eq!(busy.device_error.as_deref(), Some("803 System Busy"));
    drop(idle);
    process::wait_until("slots given back", process::STEP, || {
        sim.get("/discover.json").status == 200
    });
}

#[test]
fn the_simulator_also_runs_in_process() {
    use ec_node::hdhr::sim::server::Server;
    use ec_node::hdhr::sim::{Channel, SimConfig, Simulator};
    use ec_node::hdhr::GuideNumber;
    use ec_node::stop::StopFlag;

    let sim = Simulator::new(SimConfig {
        channels: vec![Channel {
            guide: GuideNumber::parse("2.1").unwrap(),
            name: "In process".into(),
            broadcast: Broadcast::new(BUILTIN_TS).unwrap(),
        }],
        tuners: 1,
        faults: vec![],
        fault_connections: None,
    })
    .unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}/lineup.json", server.local_addr());
    let stop = StopFlag::default();
    let running = std::thread::spawn({
        let stop = stop.clone();
        move || server.run(&sim, &stop)
    });
    let lineup = ureq::get(&url).call().unwrap().into_string().unwrap();
    assert!(lineup.contains("\"GuideNumber\":\"2.1\""), "{lineup}");
    stop.set();
    running.join().unwrap();
}
