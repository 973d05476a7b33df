//! Restarts and long runs (issue 15): a publisher killed and started again with the same key and
//! address, a subscriber killed and started again into the same folder with `--resume`, and a
//! subscriber whose `--hls-window` keeps its folder and playlist bounded. Real processes on
//! loopback; every wait is bounded; no assertion is about timing.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::nodes;
use ec_node_testkit::process;
use ec_node_testkit::sim;

use nodes::*;
use process::wait_limited;
use sim::Sim;
use std::path::Path;
use std::time::Duration;

/// A free loopback UDP port, for a publisher that must come back on the same address.
fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

/// A publisher with manifests of channel 5.1 of `sim`, 1 s chunks, listening on `port`.
fn publisher_on(sim: &Sim, key: &Path, port: u16) -> Publisher {
    let input = format!("hdhr://{}/5.1", sim.addr);
    let listen = format!("127.0.0.1:{port}");
    Publisher::spawn(
        &[
            "moq-publish",
            "--input",
            &input,
            "--listen",
            &listen,
            "--publish-manifests",
            "--chunk-ms",
            "1000",
        ],
        key,
    )
}

/// A publisher with manifests of channel 5.1 of `sim` and 1 s chunks, keyed `NAME-publisher`.
fn publisher_of(sim: &Sim, name: &str) -> Publisher {
    let (key, _) = key(&format!("{name}-publisher"));
    Publisher::start(sim, &key, &["--publish-manifests", "--chunk-ms", "1000"])
}

/// Subscriber flags for `publisher`'s stream: its pinned endpoint, manifests required.
fn pinned_to(publisher: &Publisher) -> Vec<&str> {
    vec![
        "--remote",
        publisher.endpoint.as_str(),
        "--require-manifest",
        "--chunk-ms",
        "1000",
    ]
}

/// `moq-subscribe ARGS --out DIR` exits 2 with a cause that names each of `named`.
fn assert_usage_error(dir: &Path, args: &[&str], named: &[&str]) {
    let refused = subscribe(dir, args, Duration::from_secs(30));
    let cause = process::stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{cause}");
    assert!(named.iter().all(|n| cause.contains(n)), "{cause}");
}

/// Where indices jump, the later segment is marked EXT-X-DISCONTINUITY.
fn assert_gaps_marked(dir: &Path) {
    let playlist = hls::read_playlist(dir);
    let indices = playlist_indices(dir);
    for (i, pair) in indices.windows(2).enumerate() {
        assert!(pair[1] > pair[0], "{indices:?}");
        if pair[1] > pair[0] + 1 {
            assert!(
                playlist.segments[i + 1].2,
                "no EXT-X-DISCONTINUITY before {} after the gap: {indices:?}",
                playlist.segments[i + 1].0
            );
        }
    }
}

#[test]
fn a_publisher_restarted_on_its_address_is_redialled_and_the_subscriber_goes_on() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "2"]);
    let (key_p, _) = key("restart-publisher");
    let port = free_port();
    let first = publisher_on(&sim, &key_p, port);
    let dir = process::out_dir("restart", "publisher");
    let json = dir.with_extension("json");
    let json_arg = json.to_str().unwrap().to_string();
    let args = [
        "--remote",
        &first.endpoint,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        "1000",
        "--idle-timeout",
        "30",
        "--stop-after",
        "8",
        "--summary-json",
        &json_arg,
    ];
    let mut subscriber = start_subscriber(STREAM, &dir, &args);
    hls::wait_for_segments(&dir, 3, &mut subscriber);
    drop(first);
    std::thread::sleep(Duration::from_secs(2));
    let _second = publisher_on(&sim, &key_p, port);
    let out = wait_limited(subscriber, Duration::from_secs(90));
    assert!(out.status.success(), "{}", process::stderr(&out));
    assert_eq!(playlist_indices(&dir).len(), 8);
    assert_gaps_marked(&dir);
    hls::assert_decodes_clean(&dir);
    let summary = summary_json(&json);
    assert!(
        summary["sources"][0]["reconnects"].as_u64().unwrap() >= 1,
        "{summary}"
    );
}

#[test]
fn a_subscriber_killed_and_started_again_with_resume_goes_on_with_its_playlist() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "1"]);
    let publisher = publisher_of(&sim, "resume");
    let dir = process::out_dir("restart", "resume");
    let args = pinned_to(&publisher);
    let mut first = start_subscriber(STREAM, &dir, &args);
    hls::wait_for_segments(&dir, 3, &mut first);
    first.kill().unwrap();
    first.wait().unwrap();
    let before = hls::read_playlist(&dir);
    assert!(!before.ended, "killed: no ENDLIST");

    // Without --resume the folder is refused, with the way out named.
    assert_usage_error(&dir, &args, &["--resume"]);

    let mut again = args.to_vec();
    again.extend(["--resume", "--stop-after", "3"]);
    let out = subscribe(&dir, &again, Duration::from_secs(60));
    assert!(out.status.success(), "{}", process::stderr(&out));
    let after = hls::read_playlist(&dir);
    assert!(after.ended);
    assert_eq!(after.segments.len(), before.segments.len() + 3);
    assert_eq!(
        after.segments[..before.segments.len()],
        before.segments[..],
        "the earlier run's segments stay as they were"
    );
    assert_gaps_marked(&dir);
    hls::assert_decodes_clean(&dir);
    drop(publisher);
}

#[test]
fn a_subscriber_with_a_live_window_keeps_its_playlist_and_folder_bounded() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "1"]);
    let publisher = publisher_of(&sim, "window");
    let dir = process::out_dir("restart", "window");
    let mut args = pinned_to(&publisher);
    args.extend(["--backfill", "0", "--hls-window", "3", "--stop-after", "10"]);
    let out = subscribe(&dir, &args, Duration::from_secs(60));
    assert!(out.status.success(), "{}", process::stderr(&out));
    let playlist = hls::read_playlist(&dir);
    assert!(!playlist.event, "a live window is not an EVENT playlist");
    assert_eq!(playlist.segments.len(), 3, "the window");
    assert_eq!(
        playlist.media_sequence, 7,
        "10 segments written, the first 7 slid out"
    );
    // Slid-out segments stay a little for players still fetching them, then go.
    let on_disk = segments(&dir);
    assert!(on_disk.len() < 10, "old segments deleted: {on_disk:?}");
    let listed: Vec<&str> = playlist.segments.iter().map(|(n, ..)| n.as_str()).collect();
    assert!(
        listed.iter().all(|n| on_disk.iter().any(|d| d == n)),
        "{listed:?} {on_disk:?}"
    );
    hls::assert_decodes_clean(&dir);

    // A window cannot be resumed: the flags are refused together, naming both.
    let mut again = args.to_vec();
    again.push("--resume");
    assert_usage_error(&dir, &again, &["--resume", "--hls-window"]);
    drop(publisher);
}
