//! `ec-node record` as a user runs it: real processes, real files, checked by ffmpeg/ffprobe.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::process;

use process::{ec_node, run, stderr};
use std::path::PathBuf;

fn out_dir(name: &str) -> PathBuf {
    process::out_dir("record", name)
}

#[test]
fn records_atsc_like_mpeg2_ac3_to_a_playable_event_playlist() {
    let input = media::media_path("atsc.ts", &media::atsc_mpeg2_ac3(12));
    let dir = out_dir("atsc");
    let out = run(&[
        "record",
        "--input",
        input.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.event && playlist.ended);
    assert_eq!(playlist.media_sequence, 0);
    assert_eq!(playlist.target_duration, 6);
    assert!(playlist.segments.len() >= 4);
    hls::assert_decodes_clean(&dir);
    for (name, ..) in &playlist.segments {
        assert!(
            media::first_video_frame_is_key(&dir.join(name)),
            "{name} must start with a keyframe"
        );
    }
    // The segments are exactly the chunks the chunker makes of the file (resolving the PTS wrap
    // from the system clock, as record did moments ago).
    let chunks = media::chunk_with(
        &std::fs::read(&input).unwrap(),
        1 << 16,
        ec_node::time::UnixMillis::now(),
    );
    let chunk_hashes: Vec<_> = chunks.iter().map(|c| blake3::hash(&c.bytes)).collect();
    for (name, ..) in &playlist.segments {
        let hash = blake3::hash(&std::fs::read(dir.join(name)).unwrap());
        assert!(
            chunk_hashes.contains(&hash),
            "{name} is not a chunk of the input"
        );
    }
}

#[test]
fn without_input_it_records_ten_seconds_of_the_built_in_broadcast() {
    // The README's main job.
    let dir = out_dir("builtin");
    // What it records is an INFO line, shown when asked for.
    let out = ec_node(&["record", "--out", dir.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .expect("run ec-node");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("recording hdhr://127.0.0.1:"),
        "{}",
        stderr(&out)
    );
    let playlist = hls::read_playlist(&dir);
    // 10 s of stream: an anchor and one random-access point of start-up, then 2 s chunks.
    assert!(
        playlist.ended && playlist.segments.len() >= 2,
        "{playlist:?}"
    );
    hls::assert_decodes_clean(&dir);
}

/// Records the 20 s H.264 test clip into a fresh folder `name` with `extra` flags.
fn record_h264(name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let input = media::media_path("h264.ts", &media::H264_AAC.args());
    let dir = out_dir(name);
    let mut args = vec![
        "record",
        "--input",
        input.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    (input, dir)
}

#[test]
fn stop_after_writes_exactly_n_segments_and_ends_the_playlist() {
    let (_, dir) = record_h264("stop-after", &["--stop-after", "2"]);
    let playlist = hls::read_playlist(&dir);
    assert_eq!(playlist.segments.len(), 2);
    assert!(playlist.ended);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files, 3,
        "two segments and the playlist, no temporary files"
    );
    hls::assert_decodes_clean(&dir);
}

#[test]
fn a_sliding_window_keeps_media_sequence_and_removes_old_files() {
    let (input, dir) = record_h264("window", &["--hls-window", "2"]);
    let playlist = hls::read_playlist(&dir);
    assert_eq!(playlist.segments.len(), 2);
    assert!(!playlist.event);
    let written = media::chunk_all(&std::fs::read(&input).unwrap()).len() as u64;
    assert_eq!(playlist.media_sequence, written - 2);
    let segment_files = std::fs::read_dir(&dir).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("segment_")
    });
    assert_eq!(
        segment_files.count(),
        2 + 3,
        "the window plus three retired segments stay on disk"
    );
}

#[test]
fn sigterm_stops_cleanly_and_kill_9_leaves_only_complete_segments() {
    let input = media::media_path("h264.ts", &media::H264_AAC.args());
    for signal in ["TERM", "KILL"] {
        let dir = out_dir(&format!("signal-{signal}"));
        let mut child = ec_node(&[
            "record",
            "--input",
            input.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--realtime",
        ])
        .spawn()
        .unwrap();
        hls::wait_for_segments(&dir, 2, &mut child);
        assert!(process::signal(child.id(), signal));
        let exit = process::wait_limited(child, process::STEP).status;
        let playlist = hls::read_playlist(&dir); // every listed segment exists and is whole
        assert!(playlist.segments.len() >= 2);
        if signal == "TERM" {
            assert_eq!(exit.code(), Some(0), "SIGTERM is a clean stop");
            assert!(playlist.ended, "a clean stop finishes the playlist");
            hls::assert_decodes_clean(&dir);
        } else {
            assert!(!playlist.ended);
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = out_dir("not-empty");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("other.txt"), b"x").unwrap();
    let out = run(&["record", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not empty"));
    for args in [
        vec!["record"],
        vec!["record", "--out", "/tmp/x", "--input", "hdhr://host"],
        vec!["record", "--out", "/tmp/x", "--chunk-ms", "1"],
        vec!["record", "--out", "/tmp/x", "--input", "/nonexistent.ts"],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out)
                .trim_end()
                .lines()
                .last()
                .map(|l| !l.is_empty()),
            Some(true)
        );
    }
}
