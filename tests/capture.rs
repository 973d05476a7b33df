//! Capture from a (simulated) HDHomeRun over real HTTP: recordings with a duration query, every
//! device error and simulator fault with its clear error or its recovery, and two recorders of one
//! broadcast agreeing byte for byte.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::process;
use ec_node_testkit::sim;

use process::stderr;
use sim::Sim;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

fn out_dir(name: &str) -> PathBuf {
    process::out_dir("capture", name)
}

fn record(input: &str, dir: &Path, extra: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut args = vec!["record", "--input", input, "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    (process::run(&args), started.elapsed())
}

fn hdhr(sim: &Sim) -> String {
    format!("hdhr://{}/5.1", sim.addr)
}

#[test]
fn records_h264_and_atsc_broadcasts_with_a_duration_query() {
    let atsc = media::media_path("atsc.ts", &media::atsc_mpeg2_ac3(12));
    for (name, args) in [
        ("h264", vec![]),
        ("atsc", vec!["--input", atsc.to_str().unwrap()]),
    ] {
        let sim = Sim::start(&args);
        let dir = out_dir(&format!("duration-{name}"));
        let (out, took) = record(&hdhr(&sim), &dir, &["--duration", "9"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        // The wait for the end is bounded (generously), not timed.
        assert!(
            took < process::STEP,
            "{name}: the device's end of body ends the run"
        );
        let playlist = hls::read_playlist(&dir);
        assert!(playlist.ended && playlist.event);
        assert!(
            playlist.segments.len() >= 2,
            "{name}: {} segments",
            playlist.segments.len()
        );
        hls::assert_decodes_clean(&dir);
        for (segment, ..) in &playlist.segments {
            assert!(
                media::first_video_frame_is_key(&dir.join(segment)),
                "{name}: {segment}"
            );
        }
    }
}

#[test]
fn device_errors_exit_3_with_the_code_and_text() {
    let sim = Sim::start(&["--tuners", "1"]);
    let cases: Vec<(String, &str)> = vec![
        (
            format!("hdhr://{}/9.9", sim.addr),
            "HDHomeRun error 801: Unknown Channel",
        ),
        (sim.url("/tuner0/v5.1"), ""), // filled below: 804 once tuner 0 is busy
    ];
    let (out, took) = record(&cases[0].0, &out_dir("801"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(cases[0].1), "{}", stderr(&out));
    assert!(took < process::STEP, "took {took:?}");

    // Hold the only tuner: /auto/ answers 805, /tuner0/ answers 804.
    let _held = sim.open("/auto/v5.1");
    for (input, expected) in [
        (hdhr(&sim), "HDHomeRun error 805: All Tuners In Use"),
        (cases[1].0.clone(), "HDHomeRun error 804: Tuner In Use"),
    ] {
        let (out, took) = record(&input, &out_dir("busy"), &[]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{}", stderr(&out));
        assert!(took < process::STEP, "took {took:?}");
    }

    let refusing = Sim::start(&["--fault", "refuse"]);
    let (out, _) = record(&hdhr(&refusing), &out_dir("807"), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("HDHomeRun error 807: No Video Data"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_connection_and_no_signal_exit_3() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (out, took) = record(&format!("hdhr://{closed}/5.1"), &out_dir("refused"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    assert!(took < process::STEP, "took {took:?}");

    let silent = Sim::start(&["--fault", "no-data"]);
    let (out, took) = record(&hdhr(&silent), &out_dir("no-data"), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no data"), "{}", stderr(&out));
    assert!(took < process::STEP, "took {took:?}");
    let playlist = hls::read_playlist(&process::tmp_root().join("capture/no-data"));
    assert!(playlist.ended && playlist.segments.is_empty());
}

#[test]
fn a_dropped_or_stalled_stream_is_reconnected_and_flagged() {
    // The break comes after the first segments, so the gap separates two runs of segments.
    for (name, fault) in [("close", "close-after:9"), ("stall", "stall-after:9")] {
        let sim = Sim::start(&["--fault", fault, "--fault-connections", "1"]);
        let dir = out_dir(&format!("recover-{name}"));
        let (out, _) = record(
            &hdhr(&sim),
            &dir,
            &["--duration", "20", "--source-timeout", "2"],
        );
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let playlist = hls::read_playlist(&dir);
        assert!(playlist.ended);
        let flagged = playlist.segments.iter().filter(|s| s.2).count();
        assert_eq!(
            flagged, 1,
            "{name}: the reconnect gap is one discontinuity: {playlist:?}"
        );
        assert!(playlist.segments.len() >= 3, "{name}: {playlist:?}");
        hls::assert_decodes_clean(&dir);
    }
}

#[test]
fn repeated_failure_ends_the_run_with_exit_5() {
    let sim = Sim::start(&["--fault", "close-after:2"]);
    let dir = out_dir("lost");
    let (out, _) = record(&hdhr(&sim), &dir, &["--source-timeout", "2"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reconnect attempts failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        hls::read_playlist(&dir).ended,
        "the playlist is finished even on failure"
    );
}

#[test]
fn damaged_streams_are_recorded_and_flagged() {
    for (name, fault) in [("drop", "drop-every:300"), ("garbage", "garbage-every:1.5")] {
        let sim = Sim::start(&["--fault", fault]);
        let dir = out_dir(&format!("damage-{name}"));
        let (out, _) = record(&hdhr(&sim), &dir, &["--duration", "9"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("damage"), "{}", stderr(&out));
        assert!(!hls::read_playlist(&dir).segments.is_empty(), "{name}");
    }
}

#[test]
fn two_recorders_of_one_broadcast_agree_on_every_shared_segment() {
    let sim = Sim::start(&[]);
    let (a_dir, b_dir) = (out_dir("agree-a"), out_dir("agree-b"));
    let input = hdhr(&sim);
    let first = {
        let (input, dir) = (input.clone(), a_dir.clone());
        std::thread::spawn(move || record(&input, &dir, &["--duration", "14"]))
    };
    std::thread::sleep(Duration::from_secs(3));
    let (b, _) = record(&input, &b_dir, &["--duration", "11"]);
    let (a, _) = first.join().unwrap();
    assert!(
        a.status.success() && b.status.success(),
        "{} {}",
        stderr(&a),
        stderr(&b)
    );
    let a_segments = hls::read_playlist(&a_dir).segments;
    let b_segments = hls::read_playlist(&b_dir).segments;
    let mut shared = 0;
    for (name, ..) in &b_segments {
        if a_segments.iter().any(|(other, ..)| other == name) {
            let (x, y) = (
                std::fs::read(a_dir.join(name)).unwrap(),
                std::fs::read(b_dir.join(name)).unwrap(),
            );
            assert!(x == y, "segment {name} differs between the two recorders");
            shared += 1;
        }
    }
    assert!(
        shared >= 2,
        "only {shared} shared segments: {a_segments:?} / {b_segments:?}"
    );
}

#[test]
fn hdhr_lineup_prints_the_device_and_its_channels() {
    let atsc = media::media_path("atsc.ts", &media::atsc_mpeg2_ac3(12));
    let channel = format!("7.1={}", atsc.display());
    let sim = Sim::start(&["--channel", &channel, "--tuners", "3"]);
    let out = process::run(&["hdhr-lineup", &sim.addr.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let device = lines.next().unwrap();
    assert!(
        device.starts_with("device ") && device.ends_with("3 tuners"),
        "{device}"
    );
    let entry: Vec<_> = lines.next().unwrap().split('\t').collect();
    assert_eq!(entry[0], "7.1");
    assert_eq!(entry[2], "MPEG2 AC3");
    assert_eq!(entry[3], format!("http://{}/auto/v7.1", sim.addr));
}

/// Standard input goes through the capture ring and copied chunks; the same file named on the
/// command line is read in place and written from its own pages: the segments must not differ.
#[test]
fn records_from_standard_input_the_same_segments_as_from_the_file() {
    let path = media::media_path("h264.ts", &media::H264_AAC.args());
    let input = std::fs::read(&path).unwrap();
    let dir = out_dir("stdin");
    let out = process::run_with_stdin(
        &["record", "--input", "-", "--out", dir.to_str().unwrap()],
        &input,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let playlist = hls::read_playlist(&dir);
    assert!(
        playlist.ended && playlist.segments.len() >= 7,
        "{playlist:?}"
    );
    hls::assert_decodes_clean(&dir);
    let from_file = out_dir("stdin-file");
    let (out, _) = record(path.to_str().unwrap(), &from_file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file_playlist = hls::read_playlist(&from_file);
    assert_eq!(file_playlist.segments.len(), playlist.segments.len());
    for (name, ..) in &playlist.segments {
        let (a, b) = (dir.join(name), from_file.join(name));
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{name} differs between stdin and file"
        );
    }
}
