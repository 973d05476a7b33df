//! The mission end to end: `moq-publish` and `moq-subscribe` as real processes on loopback,
//! capturing `ec-node tuner-sim`; the split-source mesh (ECP-0032), "no manifests, no data", a
//! tampering node in the middle, late join, a third-party relay, and a publisher that dies. Every
//! wait is bounded; no assertion is about timing.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::moq;
use ec_node_testkit::nodes;
use ec_node_testkit::process;
use ec_node_testkit::sim;

use nodes::*;
use process::{ec_node, wait_limited, Proc};
use sim::Sim;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

#[test]
fn one_publisher_with_manifests_plays_the_same_bytes_as_record() {
    let sim = Sim::start(&["--tuners", "3"]);
    let (key, _) = key("single");
    let publisher = Publisher::start(&sim, &key, &["--publish-manifests"]);
    let record_dir = process::out_dir("mesh", "single-record");
    let record = ec_node(&[
        "record",
        "--input",
        &format!("hdhr://{}/5.1", sim.addr),
        "--out",
        record_dir.to_str().unwrap(),
        "--stop-after",
        "6",
    ])
    .spawn()
    .expect("start record");
    let dir = process::out_dir("mesh", "single");
    let out = subscribe(
        &dir,
        &[
            "--remote",
            &publisher.endpoint,
            "--require-manifest",
            "--stop-after",
            "4",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", process::stderr(&out));
    let record = wait_limited(record, Duration::from_secs(60));
    assert!(record.status.success(), "{}", process::stderr(&record));
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended);
    assert_eq!(playlist.segments.len(), 4);
    hls::assert_decodes_clean(&dir);
    let recorded = segments(&record_dir);
    let mut shared = 0;
    for name in segments(&dir) {
        if recorded.contains(&name) {
            assert_eq!(
                std::fs::read(dir.join(&name)).unwrap(),
                std::fs::read(record_dir.join(&name)).unwrap(),
                "{name} differs from record's"
            );
            shared += 1;
        }
    }
    assert!(shared >= 1, "no index in common with record: {recorded:?}");
}

#[test]
fn split_source_manifests_from_a_leader_objects_from_an_availability_node() {
    let sim = Sim::start(&["--tuners", "2"]);
    let (key_a, _) = key("split-a");
    let (key_b, _) = key("split-b");
    let a = Publisher::start(
        &sim,
        &key_a,
        &["--publish-manifests", "--publish-chunks=false"],
    );
    let b = Publisher::start(&sim, &key_b, &["--publish-chunks=true"]);
    let dir = process::out_dir("mesh", "split");
    subscribe_split(&dir, &a, &b);
    hls::assert_decodes_clean(&dir);
}

/// The ECP-0032 subscriber: objects from `b`, manifests from `a`; three verified segments.
fn subscribe_split(dir: &Path, a: &Publisher, b: &Publisher) {
    let out = subscribe(
        dir,
        &[
            "--remote",
            &b.endpoint,
            "--remote-manifests",
            &a.endpoint,
            "--subscribe-manifests",
            "--require-manifest",
            "--stop-after",
            "3",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", process::stderr(&out));
    let playlist = hls::read_playlist(dir);
    assert!(playlist.ended);
    assert_eq!(playlist.segments.len(), 3);
}

/// Expects exit `code`, no segment, and a cause line containing `cause`.
fn assert_refused(dir: &Path, out: &Output, code: i32, cause: &str) {
    let err = process::stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(segments(dir).is_empty(), "segments written: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ec-node: ") && last.contains(cause),
        "{last}"
    );
}

#[test]
fn no_manifests_no_data() {
    let sim = Sim::start(&["--tuners", "2"]);
    let (key_a, _) = key("nodata-a");
    let (key_b, _) = key("nodata-b");
    let b = Publisher::start(&sim, &key_b, &[]);
    let limit = Duration::from_secs(40);
    let strict = [
        "--require-manifest",
        "--manifest-timeout",
        "5",
        "--stop-after",
        "2",
    ];

    // Without A: B publishes no manifests track.
    let dir = process::out_dir("mesh", "no-leader");
    let mut args = vec!["--remote", &b.endpoint];
    args.extend_from_slice(&strict);
    let out = subscribe(&dir, &args, limit);
    assert_refused(&dir, &out, 4, "manifests track");

    // A signs under a key the subscriber does not trust.
    let a = Publisher::start(
        &sim,
        &key_a,
        &["--publish-manifests", "--publish-chunks=false"],
    );
    let (_, stranger) = key("nodata-stranger");
    let dir = process::out_dir("mesh", "untrusted");
    let mut args = vec![
        "--remote",
        &b.endpoint,
        "--remote-manifests",
        &a.endpoint,
        "--trust",
        &stranger,
    ];
    args.extend_from_slice(&strict);
    let out = subscribe(&dir, &args, limit);
    assert_refused(&dir, &out, 4, "no trusted manifest");

    // The wrong network secret: another locator, which no one serves.
    let dir = process::out_dir("mesh", "wrong-secret");
    let mut args = vec![
        "--remote",
        &b.endpoint,
        "--remote-manifests",
        &a.endpoint,
        "--network-secret",
        "00112233445566778899aabbccddeeff",
    ];
    args.extend_from_slice(&strict);
    let out = subscribe(&dir, &args, limit);
    assert_refused(&dir, &out, 4, "refused");

    // The wrong stream id: another locator, which no one serves.
    let dir = process::out_dir("mesh", "wrong-stream");
    let mut args = vec!["--remote", &b.endpoint, "--remote-manifests", &a.endpoint];
    args.extend_from_slice(&strict);
    let out = subscribe_to("ec/stream/v1/test/other", &dir, &args, limit);
    assert_refused(&dir, &out, 4, "refused");

    // B serves another broadcast under the same stream id: its objects match none of A's
    // manifests, so nothing verifies.
    let clip = media::media_path("other-broadcast.ts", &media::atsc_mpeg2_ac3(12));
    let other_sim = Sim::start(&[
        "--tuners",
        "1",
        "--channel",
        &format!("5.1={}", clip.display()),
    ]);
    let (key_c, _) = key("nodata-c");
    let c = Publisher::start(&other_sim, &key_c, &[]);
    let dir = process::out_dir("mesh", "other-broadcast");
    let mut args = vec!["--remote", &c.endpoint, "--remote-manifests", &a.endpoint];
    args.extend_from_slice(&strict);
    let out = subscribe(&dir, &args, Duration::from_secs(60));
    assert_refused(&dir, &out, 4, "no object verified");

    // A pinned node id the peer does not hold.
    let addr = b.endpoint.split_once('@').unwrap().1;
    let wrong = format!("{stranger}@{addr}");
    let dir = process::out_dir("mesh", "wrong-id");
    let mut args = vec!["--remote", &wrong];
    args.extend_from_slice(&strict);
    let out = subscribe(&dir, &args, limit);
    assert_refused(&dir, &out, 3, "cannot connect");
}

#[test]
fn a_publisher_killed_mid_stream_ends_the_subscriber_with_exit_5() {
    let sim = Sim::start(&["--tuners", "1"]);
    let (key, _) = key("killed");
    let mut publisher = Publisher::start(&sim, &key, &["--publish-manifests"]);
    let dir = process::out_dir("mesh", "killed");
    let mut child = start_subscriber(
        STREAM,
        &dir,
        &["--remote", &publisher.endpoint, "--require-manifest"],
    );
    let start = Instant::now();
    while segments(&dir).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "no segments");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the subscriber ended early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    publisher.proc.child.kill().unwrap();
    let out = wait_limited(child, Duration::from_secs(40));
    assert_eq!(out.status.code(), Some(5), "{}", process::stderr(&out));
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended);
    assert!(playlist.segments.len() >= 2);
    for (name, ..) in &playlist.segments {
        assert!(dir.join(name).is_file(), "{name} listed but missing");
    }
    assert!(segments(&dir).iter().all(|n| !n.contains(".tmp")));
}

#[test]
fn a_late_subscriber_gets_the_current_chunk_at_once_and_fetches_earlier_ones() {
    let sim = Sim::start(&["--tuners", "1"]);
    let (key, _) = key("late");
    let publisher = Publisher::start(&sim, &key, &["--publish-manifests"]);
    // Join well after the start, without --startup-delay-ms.
    std::thread::sleep(Duration::from_secs(20));
    let dir = process::out_dir("mesh", "late");
    let out = subscribe(
        &dir,
        &[
            "--remote",
            &publisher.endpoint,
            "--require-manifest",
            "--backfill",
            "3",
            "--stop-after",
            "5",
            "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", process::stderr(&out));
    // The current chunk and the three before it came by joining FETCH, the fifth live.
    let summary = summary(&out);
    assert_eq!(
        (&summary["chunks"], &summary["backfilled"]),
        (&5.into(), &4.into()),
        "{summary}"
    );
    let indices: Vec<u64> = segments(&dir)
        .iter()
        .map(|n| n["segment_".len()..n.len() - 3].parse().unwrap())
        .collect();
    assert_eq!(indices.len(), 5, "{indices:?}");
    assert!(
        indices.windows(2).all(|w| w[1] == w[0] + 1),
        "not consecutive: {indices:?}"
    );
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended);
    hls::assert_decodes_clean(&dir);
}

#[test]
fn a_tampering_node_between_subscriber_and_b_is_caught_object_by_object() {
    let sim = Sim::start(&["--tuners", "2"]);
    let (key_a, _) = key("tamper-a");
    let (key_b, _) = key("tamper-b");
    let (key_f, _) = key("tamper-f");
    let a = Publisher::start(
        &sim,
        &key_a,
        &["--publish-manifests", "--publish-chunks=false"],
    );
    let b = Publisher::start(&sim, &key_b, &[]);
    let tamper = [
        "--tamper",
        "flip",
        "--tamper",
        "swap",
        "--tamper",
        "replay",
        "--tamper",
        "inject",
        "--tamper-every",
        "2",
    ];
    let f = Publisher::forward(&b, &key_f, &tamper);
    let split = ["--remote", &f.endpoint, "--remote-manifests", &a.endpoint];
    let dir = process::out_dir("mesh", "tampered");
    let strict_dir = process::out_dir("mesh", "tampered-strict");
    let mut strict_args = split.to_vec();
    strict_args.extend_from_slice(&["--require-manifest", "--max-invalid-chunks", "1"]);
    let strict = start_subscriber(STREAM, &strict_dir, &strict_args);
    let mut args = split.to_vec();
    args.extend_from_slice(&[
        "--require-manifest",
        "--backfill",
        "0",
        "--stop-after",
        "5",
        "--json",
    ]);
    let out = subscribe(&dir, &args, Duration::from_secs(120));

    // Every tampered object was rejected with its reason; the untouched ones played.
    assert!(out.status.success(), "{}", process::stderr(&out));
    let summary = summary(&out);
    for reason in ["object id mismatch", "object delivered at another index"] {
        let rejected = summary["rejections"][reason].as_u64().unwrap_or(0);
        assert!(rejected > 0, "{reason} missing: {summary}");
    }
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended);
    assert_eq!(playlist.segments.len(), 5);
    hls::assert_decodes_clean(&dir);

    // With --max-invalid-chunks 1 the second bad object ends the run.
    let out = wait_limited(strict, Duration::from_secs(120));
    let err = process::stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("more than allowed (--max-invalid-chunks)"),
        "{last}"
    );
    assert!(hls::read_playlist(&strict_dir).ended);
}

#[test]
fn through_a_third_party_relay_with_trust_in_the_leader() {
    let relay_dir = process::out_dir("mesh", "relay");
    std::fs::create_dir_all(&relay_dir).unwrap();
    let (_relay, url, cert) = moq::relay(&relay_dir);
    let cert = cert.to_str().unwrap();
    let sim = Sim::start(&["--tuners", "2"]);
    let (key_a, id_a) = key("relay-a");
    let (key_b, _) = key("relay-b");
    let input = format!("hdhr://{}/5.1", sim.addr);
    let into_relay = ["--input", &input, "--relay", &url, "--relay-ca", cert];
    let mut args = vec!["moq-publish"];
    args.extend_from_slice(&into_relay);
    args.extend_from_slice(&["--publish-manifests", "--publish-chunks=false"]);
    let _a = Publisher::spawn(&args, &key_a);
    let mut args = vec!["moq-publish"];
    args.extend_from_slice(&into_relay);
    let _b = Publisher::spawn(&args, &key_b);
    let dir = process::out_dir("mesh", "relay-subscriber");
    let out = subscribe(
        &dir,
        &[
            "--remote",
            &url,
            "--relay-ca",
            cert,
            "--trust",
            &id_a,
            "--require-manifest",
            "--stop-after",
            "3",
        ],
        Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", process::stderr(&out));
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended);
    assert_eq!(playlist.segments.len(), 3);
    hls::assert_decodes_clean(&dir);
}

/// The split of test 2 on a real HDHomeRun: a short recording from the device, two publishers on
/// it, the split subscriber. Runs only with `EVERY_CHANNEL_E2E_HDHR_HOST` and
/// `EVERY_CHANNEL_E2E_HDHR_CHANNEL` set (`cargo test --test mesh -- --ignored`).
#[test]
#[ignore = "needs a real HDHomeRun (EVERY_CHANNEL_E2E_HDHR_HOST, EVERY_CHANNEL_E2E_HDHR_CHANNEL)"]
fn hardware_split_source_from_a_real_hdhomerun_recording() {
    let host = std::env::var("EVERY_CHANNEL_E2E_HDHR_HOST")
        .expect("set EVERY_CHANNEL_E2E_HDHR_HOST to the HDHomeRun's address");
    let channel = std::env::var("EVERY_CHANNEL_E2E_HDHR_CHANNEL")
        .expect("set EVERY_CHANNEL_E2E_HDHR_CHANNEL to a channel it receives (e.g. 5.1)");
    let dir = process::out_dir("mesh", "hardware-recording");
    std::fs::create_dir_all(&dir).unwrap();
    let recording = dir.join("recording.ts");
    let url = format!("http://{host}:5004/auto/v{channel}?duration=30");
    let mut body = ureq::get(&url)
        .call()
        .expect("GET the channel")
        .into_reader();
    let mut file = std::fs::File::create(&recording).unwrap();
    std::io::copy(&mut body, &mut file).expect("record from the device");
    let input = recording.to_str().unwrap();
    let (key_a, _) = key("hardware-a");
    let (key_b, _) = key("hardware-b");
    let a = Publisher::from_input(
        input,
        &key_a,
        &["--publish-manifests", "--publish-chunks=false"],
    );
    let b = Publisher::from_input(input, &key_b, &[]);
    subscribe_split(&process::out_dir("mesh", "hardware"), &a, &b);
}

#[test]
fn an_unreadable_relay_ca_is_a_configuration_error() {
    let dir = process::out_dir("mesh", "bad-ca");
    let missing = dir.join("missing-ca.pem");
    let missing = missing.to_str().unwrap();
    let subscriber = subscribe(
        &dir,
        &["--remote", "moqt://127.0.0.1:9", "--relay-ca", missing],
        Duration::from_secs(30),
    );
    let forwarder = process::run(&[
        "moq-forward",
        "--remote",
        "moqt://127.0.0.1:9",
        "--relay-ca",
        missing,
        "--listen",
        "127.0.0.1:0",
        "--stream-id",
        STREAM,
    ]);
    for out in [subscriber, forwarder] {
        let err = process::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("missing-ca.pem"), "{last}");
    }
}

/// On a terminal the subscriber keeps one progress line on stderr, redrawn in place, and clears
/// it before its summary (run under `script`, which gives it a pseudo-terminal).
#[test]
fn on_a_terminal_the_subscriber_redraws_one_progress_line() {
    let sim = Sim::start(&[]);
    let (key, _) = key("progress");
    let publisher = Publisher::start(&sim, &key, &["--publish-manifests"]);
    let dir = process::out_dir("mesh", "progress");
    let bin = process::ec_node_path();
    let command = [
        bin.to_str().unwrap(),
        "moq-subscribe",
        "--stream-id",
        STREAM,
        "--out",
        dir.to_str().unwrap(),
        "--remote",
        &publisher.endpoint,
        "--require-manifest",
        "--stop-after",
        "3",
    ]
    .map(|arg| format!("'{arg}'"))
    .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("RUST_LOG", "off")
        .output()
        .expect("run script(1)");
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{terminal}");
    let redraws: Vec<&str> = terminal
        .split('\r')
        .filter(|part| part.contains(" chunks (") && part.contains(" manifests, "))
        .collect();
    assert!(!redraws.is_empty(), "no progress line: {terminal:?}");
    assert!(
        redraws.iter().all(|line| line.ends_with("\x1b[K")),
        "each redraw clears the rest of the line: {redraws:?}"
    );
    let summary = terminal
        .split("\r\x1b[K")
        .last()
        .expect("the progress line is cleared");
    assert!(
        summary.starts_with("moq-subscribe: 3 chunks"),
        "the summary follows the cleared line: {summary:?}"
    );
}

/// A running `ec-node serve` with mesh channels; killed on drop.
struct Serve {
    _proc: Proc,
    addr: std::net::SocketAddr,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--discovery", "false"];
        all.extend_from_slice(args);
        let mut proc = Proc::ec_node("serve", &all);
        let ready = proc.ready();
        Serve {
            addr: ready["listen"].as_str().unwrap().parse().unwrap(),
            _proc: proc,
        }
    }

    fn get(&self, path: &str) -> Option<Vec<u8>> {
        let response = ureq::get(&format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(30))
            .call()
            .ok()?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).ok()?;
        Some(bytes)
    }

    /// The segments of the channel's HLS window, by name.
    fn segments(&self, guide: &str) -> Vec<(String, Vec<u8>)> {
        let playlist = self
            .get(&format!("/hls/{guide}/index.m3u8"))
            .unwrap_or_default();
        String::from_utf8_lossy(&playlist)
            .lines()
            .filter(|l| l.ends_with(".ts"))
            .filter_map(|name| {
                let bytes = self.get(&format!("/hls/{guide}/{name}"))?;
                Some((name.to_string(), bytes))
            })
            .collect()
    }
}

#[test]
fn serve_plays_a_mesh_channel_and_no_tampered_object_reaches_a_viewer() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "2"]);
    let (key_a, _) = key("serve-a");
    let (key_b, _) = key("serve-b");
    let (key_f, _) = key("serve-f");
    let a = Publisher::leader(&sim, &key_a, &[]);
    let b = Publisher::start(&sim, &key_b, &[]);
    let f = Publisher::forward(&b, &key_f, &["--tamper", "flip", "--tamper-every", "2"]);
    let mesh = format!("5.1={STREAM}");
    // An honest channel: objects from B, manifests from the leader A (trusted: pinned).
    let honest = Serve::start(&[
        "--mesh",
        &mesh,
        "--remote",
        &b.endpoint,
        "--remote-manifests",
        &a.endpoint,
    ]);
    // The same channel through F, which flips every second object on the way.
    let hostile = Serve::start(&[
        "--mesh",
        &mesh,
        "--remote",
        &f.endpoint,
        "--remote-manifests",
        &a.endpoint,
    ]);

    // ffmpeg plays the honest mesh channel as a stream and as HLS, without an error line.
    for path in ["/auto/v5.1", "/hls/5.1/index.m3u8"] {
        let url = format!("http://{}{path}", honest.addr);
        let out = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-rw_timeout",
                "30000000",
                "-t",
                "4",
                "-i",
                &url,
                "-f",
                "null",
                "-",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "ffmpeg {path}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "ffmpeg {path}");
    }

    // Through the tamperer: every segment a viewer can get is byte for byte the honest one
    // of the same index (the flipped objects were rejected, never served).
    let mut viewer = sim::open_at(hostile.addr, "/auto/v5.1");
    assert_eq!(viewer.status, 200);
    let streamed = viewer.read_for(Duration::from_secs(8)).bytes;
    let (tampered, clean) = (hostile.segments("5.1"), honest.segments("5.1"));
    let mut compared = 0;
    for (name, bytes) in &tampered {
        if let Some((_, honest_bytes)) = clean.iter().find(|(n, _)| n == name) {
            assert!(
                bytes == honest_bytes,
                "{name} differs from the honest segment"
            );
            compared += 1;
        }
    }
    assert!(
        compared >= 1,
        "no segment in common: {tampered:?} vs {clean:?}",
        tampered = tampered.iter().map(|t| &t.0).collect::<Vec<_>>(),
        clean = clean.iter().map(|c| &c.0).collect::<Vec<_>>()
    );
    // The stream a viewer got is made of those verified segments only (its last one cut by the
    // read's deadline).
    let known = || tampered.iter().chain(&clean).map(|(_, s)| s);
    let mut at = 0;
    while let Some(segment) = known().find(|s| streamed[at..].starts_with(s)) {
        at += segment.len();
    }
    assert!(at > 0, "the viewer got no whole verified segment");
    let rest = &streamed[at..];
    assert!(
        rest.is_empty() || known().any(|s| s.starts_with(rest)),
        "{} streamed bytes are no verified segment",
        rest.len()
    );
    drop((honest, hostile, f, b, a));
}
