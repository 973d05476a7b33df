//! Tuner signal loss (issue 15) with real processes on loopback: `ec-node tuner-sim` with a
//! `silence` window (and `no-video` / `busy` windows answering 807 / 805), a `moq-publish` that
//! rides through it, a `moq-subscribe` that waits it out, and `record` giving up after
//! `--signal-loss-timeout`. Chunk indices after the gap are compared with a node that saw no gap.
//! Every wait is bounded; no assertion is about timing.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::nodes;
use ec_node_testkit::process;
use ec_node_testkit::sim;

use nodes::*;
use process::{ec_node, wait_limited};
use sim::Sim;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

/// A keyframe every second, for 1000 ms chunks: many chunks before and after a short gap.
const CLIP: media::H264Clip = media::H264Clip {
    size: "320x180",
    rate: "30",
    seconds: 20,
    gop: 30,
    ts_offset: None,
};

/// Sends SIGTERM and waits (bounded) for the process to finish, collecting its output.
fn terminate(child: Child) -> Output {
    assert!(process::signal(child.id(), "TERM"));
    wait_limited(child, process::STEP)
}

/// Waits (bounded) until the playlist in `dir` has a discontinuity followed by `after` segments.
fn wait_past_the_gap(dir: &Path, after: usize) {
    let what = format!("a discontinuity followed by {after} segments");
    process::wait_until(&what, process::STEP, || {
        if !dir.join("index.m3u8").exists() {
            return false;
        }
        let segments = hls::read_playlist(dir).segments;
        segments
            .iter()
            .position(|s| s.2)
            .is_some_and(|gap| segments.len() - gap >= after)
    });
}

/// The segments of the playlist in `dir`: (chunk index, discontinuity before it).
fn listed(dir: &Path) -> Vec<(u64, bool)> {
    let playlist = hls::read_playlist(dir);
    playlist_indices(dir)
        .into_iter()
        .zip(playlist.segments.iter().map(|s| s.2))
        .collect()
}

/// Kills the publisher and returns what it wrote to stderr.
fn publisher_stderr(mut publisher: Publisher) -> String {
    let _ = publisher.proc.child.kill();
    let _ = publisher.proc.child.wait();
    let mut err = String::new();
    if let Some(mut pipe) = publisher.proc.child.stderr.take() {
        let _ = pipe.read_to_string(&mut err);
    }
    err
}

#[test]
fn a_publisher_rides_through_silence_and_its_indices_follow_the_broadcast_clock() {
    let clip = media::media_path("signal-loss.ts", &CLIP.args());
    let clip = clip.to_str().unwrap();
    // Two channels carry the same clip on one clock; only 5.1 loses its signal, for 8 s.
    let sim = Sim::start(&[
        "--tuners",
        "4",
        "--channel",
        &format!("5.1={clip}"),
        "--channel",
        &format!("5.2={clip}"),
        "--fault",
        "silence:8:8",
        "--fault-channel",
        "5.1",
    ]);
    let (key, _) = key("signal-loss");
    let mut publisher = Publisher::start(
        &sim,
        &key,
        &[
            "--publish-manifests",
            "--chunk-ms",
            "1000",
            "--source-timeout",
            "2",
        ],
    );
    // The reference: a node reading the same broadcast without the fault.
    let reference_dir = process::out_dir("signal-loss", "reference");
    let reference = ec_node(&[
        "record",
        "--input",
        &format!("hdhr://{}/5.2", sim.addr),
        "--out",
        reference_dir.to_str().unwrap(),
        "--chunk-ms",
        "1000",
    ])
    .spawn()
    .expect("start record");
    let dir = process::out_dir("signal-loss", "subscriber");
    let subscriber = start_subscriber(
        STREAM,
        &dir,
        &[
            "--remote",
            &publisher.endpoint,
            "--require-manifest",
            "--chunk-ms",
            "1000",
            "--idle-timeout",
            "20",
        ],
    );
    wait_past_the_gap(&dir, 4);
    assert!(
        publisher.proc.child.try_wait().unwrap().is_none(),
        "the publisher exited during the gap"
    );
    let out = terminate(subscriber);
    assert!(out.status.success(), "{}", process::stderr(&out));
    let reference = terminate(reference);
    assert!(
        reference.status.success(),
        "{}",
        process::stderr(&reference)
    );
    let err = publisher_stderr(publisher);

    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended, "the subscriber finishes its playlist");
    let segments = listed(&dir);
    let flagged: Vec<usize> = (0..segments.len()).filter(|&i| segments[i].1).collect();
    assert_eq!(flagged.len(), 1, "one gap, one discontinuity: {segments:?}");
    let first_after = flagged[0];
    assert!(first_after >= 1, "segments before the gap: {segments:?}");
    hls::assert_decodes_clean(&dir);
    assert!(err.contains("streams again"), "publisher log: {err}");

    // Indices after the gap are the ones the node without the gap cut, with the same bytes.
    let reference_segments = listed(&reference_dir);
    let reference_indices: Vec<u64> = reference_segments.iter().map(|s| s.0).collect();
    assert!(
        reference_segments.iter().all(|s| !s.1),
        "the reference saw no gap: {reference_segments:?}"
    );
    let (before, after) = (segments[first_after - 1].0, segments[first_after].0);
    let skipped = reference_indices
        .iter()
        .filter(|&&i| i > before && i < after)
        .count();
    assert!(
        skipped >= 5,
        "an 8 s silence skips indices: {before} → {after}"
    );
    for &(index, _) in &segments[first_after..] {
        assert!(
            reference_indices.contains(&index),
            "index {index} after the gap is not on the reference's grid {reference_indices:?}"
        );
        let name = format!("segment_{index:06}.ts");
        assert_eq!(
            std::fs::read(dir.join(&name)).unwrap(),
            std::fs::read(reference_dir.join(&name)).unwrap(),
            "{name} differs from the reference's"
        );
    }
}

#[test]
fn a_publisher_retries_a_tuner_answering_807_then_805_and_resumes() {
    // The signal goes at 6 s for 8 s; retunes get 807 until 10 s, then 805 until 14 s.
    let sim = Sim::start(&[
        "--tuners",
        "2",
        "--fault",
        "silence:6:8",
        "--fault",
        "no-video:6:4",
        "--fault",
        "busy:10:4",
    ]);
    let (key, _) = key("signal-loss-807");
    let mut publisher = Publisher::start(
        &sim,
        &key,
        &[
            "--publish-manifests",
            "--chunk-ms",
            "1000",
            "--source-timeout",
            "2",
        ],
    );
    let dir = process::out_dir("signal-loss", "refused");
    let subscriber = start_subscriber(
        STREAM,
        &dir,
        &[
            "--remote",
            &publisher.endpoint,
            "--require-manifest",
            "--chunk-ms",
            "1000",
            "--idle-timeout",
            "20",
        ],
    );
    wait_past_the_gap(&dir, 3);
    assert!(
        publisher.proc.child.try_wait().unwrap().is_none(),
        "the publisher exited during the outage"
    );
    let out = terminate(subscriber);
    assert!(out.status.success(), "{}", process::stderr(&out));
    let err = publisher_stderr(publisher);
    assert!(err.contains("HDHomeRun error 807"), "publisher log: {err}");
    assert!(err.contains("HDHomeRun error 805"), "publisher log: {err}");
    assert!(err.contains("streams again"), "publisher log: {err}");
    let segments = listed(&dir);
    assert_eq!(
        segments.iter().filter(|s| s.1).count(),
        1,
        "one outage, one discontinuity: {segments:?}"
    );
    hls::assert_decodes_clean(&dir);
}

#[test]
fn record_gives_up_after_the_signal_loss_timeout_with_exit_5() {
    let sim = Sim::start(&["--fault", "silence:10:120"]);
    let dir = process::out_dir("signal-loss", "gives-up");
    let child = ec_node(&[
        "record",
        "--input",
        &format!("hdhr://{}/5.1", sim.addr),
        "--out",
        dir.to_str().unwrap(),
        "--chunk-ms",
        "1000",
        "--source-timeout",
        "2",
        "--signal-loss-timeout",
        "6",
    ])
    .spawn()
    .expect("start record");
    let out = wait_limited(child, Duration::from_secs(40));
    let err = process::stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("signal-loss timeout"), "{err}");
    assert!(
        err.contains("reconnect attempt"),
        "retries are logged: {err}"
    );
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended, "the playlist is finished on giving up");
    assert!(!playlist.segments.is_empty(), "segments before the silence");
    hls::assert_decodes_clean(&dir);
}
