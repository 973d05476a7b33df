//! `ec-node demo`, the README's main job, as a user runs it: the whole split-source mesh on
//! loopback from one command, stopped by `--seconds` or by SIGTERM, its HLS checked by ffmpeg.

use ec_node_testkit::hls;
use ec_node_testkit::process;

use process::ec_node;
use std::time::{Duration, Instant};

fn segment_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ts"))
            .count()
    })
}

#[test]
fn ten_seconds_of_demo_give_verified_segments_that_play_and_a_rerun_replaces_them() {
    let dir = process::out_dir("demo", "timed");
    for run in 0..2 {
        let out = process::run(&["demo", "--out", dir.to_str().unwrap(), "--seconds", "10"]);
        let err = process::stderr(&out);
        assert!(out.status.success(), "run {run}: {err}");
        assert!(err.contains("publishes signed manifests only"), "{err}");
        assert!(err.contains("ffplay "), "no playing hint: {err}");
        let playlist = hls::read_playlist(&dir);
        assert!(playlist.ended);
        assert!(!playlist.segments.is_empty());
        assert_eq!(segment_count(&dir), playlist.segments.len());
        hls::assert_decodes_clean(&dir);
    }
}

#[test]
fn sigterm_stops_the_demo_cleanly_and_a_foreign_folder_is_refused() {
    let dir = process::out_dir("demo", "until-signal");
    let child = ec_node(&["demo", "--out", dir.to_str().unwrap(), "--seconds", "0"])
        .spawn()
        .expect("start demo");
    let start = Instant::now();
    while segment_count(&dir) < 1 {
        assert!(start.elapsed() < Duration::from_secs(60), "no segment");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(process::signal(child.id(), "TERM"));
    let out = process::wait_limited(child, process::STEP);
    assert_eq!(out.status.code(), Some(0), "{}", process::stderr(&out));
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended);
    hls::assert_decodes_clean(&dir);

    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = process::run(&["demo", "--out", dir.to_str().unwrap(), "--seconds", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", process::stderr(&out));
    assert!(process::stderr(&out).contains("not a previous demo's output"));
    assert!(dir.join("notes.txt").is_file());
}
