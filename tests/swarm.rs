//! The swarm (issue 16) end to end: one subscriber and many sources as real processes on
//! loopback — sources that die, lie or sit behind a third-party relay, a forwarder that verifies
//! before it forwards, a publisher in several relays. Every wait is bounded; no assertion is
//! about timing.

use ec_node_testkit::hls;
use ec_node_testkit::media;
use ec_node_testkit::moq;
use ec_node_testkit::nodes;
use ec_node_testkit::process;
use ec_node_testkit::sim;

use nodes::*;
use process::wait_limited;
use sim::Sim;
use std::time::Duration;

/// A forwarder's test faults: every second chunk group flipped or swapped, in turn.
const TAMPER: [&str; 6] = [
    "--tamper",
    "flip",
    "--tamper",
    "swap",
    "--tamper-every",
    "2",
];

#[test]
fn swarm_a_source_killed_mid_stream_leaves_no_gap() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "4"]);
    let fast = ["--chunk-ms", "1000"];
    let (key_a, _) = key("swarm-kill-a");
    let leader = Publisher::leader(&sim, &key_a, &fast);
    let nodes: Vec<Publisher> = (0..3)
        .map(|i| Publisher::start(&sim, &key(&format!("swarm-kill-{i}")).0, &fast))
        .collect();
    let dir = process::out_dir("mesh", "swarm-kill");
    let json = dir.with_extension("json");
    let mut args = vec![];
    for node in &nodes {
        args.extend(["--remote", node.endpoint.as_str()]);
    }
    let json_arg = json.to_str().unwrap().to_string();
    args.extend([
        "--remote-manifests",
        &leader.endpoint,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        "1000",
        "--stop-after",
        "12",
        "--summary-json",
        &json_arg,
    ]);
    let mut subscriber = start_subscriber(STREAM, &dir, &args);
    // The first source holds the live subscription; kill it once the stream runs.
    hls::wait_for_segments(&dir, 3, &mut subscriber);
    let mut nodes = nodes.into_iter();
    drop(nodes.next());
    let out = wait_limited(subscriber, Duration::from_secs(90));
    assert!(out.status.success(), "{}", process::stderr(&out));

    // Every chunk index from the first to the last: no gap, and it decodes clean.
    let indices = playlist_indices(&dir);
    assert_eq!(indices.len(), 12, "{indices:?}");
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    hls::assert_decodes_clean(&dir);
    let summary = summary_json(&json);
    let sources = summary["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 3);
    // A killed process sends no close: the first source either timed out on its chunks (and
    // handed the live subscription on) or is seen gone.
    let first = &sources[0];
    assert!(
        first["state"] == "gone" || first["timeouts"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let served: u64 = sources.iter().map(|s| s["chunks"].as_u64().unwrap()).sum();
    assert!(served >= 12, "{summary}");
    assert!(
        sources[1]["chunks"].as_u64().unwrap() > 0,
        "the next source took over: {summary}"
    );
}

#[test]
fn swarm_a_tampering_source_is_demoted_and_nothing_invalid_is_written() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "3"]);
    let fast = ["--chunk-ms", "1000"];
    let (key_a, _) = key("swarm-tamper-a");
    let leader = Publisher::leader(&sim, &key_a, &fast);
    let honest = Publisher::start(&sim, &key("swarm-tamper-b").0, &fast);
    let upstream = Publisher::start(&sim, &key("swarm-tamper-c").0, &fast);
    let liar = Publisher::forward(&upstream, &key("swarm-tamper-f").0, &TAMPER);
    let dir = process::out_dir("mesh", "swarm-tamper");
    let json = dir.with_extension("json");
    let json_arg = json.to_str().unwrap().to_string();
    // The liar is given first, so it starts with the live subscription.
    let args = [
        "--remote",
        &liar.endpoint,
        "--remote",
        &honest.endpoint,
        "--remote-manifests",
        &leader.endpoint,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        "1000",
        "--max-source-invalid",
        "2",
        "--stop-after",
        "10",
        "--summary-json",
        &json_arg,
    ];
    let out = subscribe(&dir, &args, Duration::from_secs(90));
    assert!(out.status.success(), "{}", process::stderr(&out));
    let indices = playlist_indices(&dir);
    assert_eq!(indices.len(), 10, "{indices:?}");
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    hls::assert_decodes_clean(&dir);
    let summary = summary_json(&json);
    let sources = summary["sources"].as_array().unwrap();
    assert_eq!(sources[0]["state"], "demoted", "{summary}");
    let rejections = sources[0]["rejections"].as_object().unwrap();
    assert!(
        !rejections.is_empty(),
        "the liar's objects were rejected by reason: {summary}"
    );
    assert!(
        sources[1]["rejections"].as_object().unwrap().is_empty(),
        "{summary}"
    );
    assert!(sources[1]["chunks"].as_u64().unwrap() > 0, "{summary}");
    drop((liar, upstream, honest, leader));
}

/// Issue 16, test 3: a verifying forwarder with a tampering upstream (given first) and an
/// honest one: the junk stops at the forwarder, which fetches those chunks from the honest
/// upstream, so its subscriber rejects nothing and misses nothing.
#[test]
fn a_verifying_forwarder_stops_junk_and_fills_the_gap_from_another_upstream() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "3"]);
    let fast = ["--chunk-ms", "1000"];
    let (key_a, leader_id) = key("verify-fwd-a");
    let leader = Publisher::leader(&sim, &key_a, &fast);
    let honest = Publisher::start(&sim, &key("verify-fwd-b").0, &fast);
    let upstream = Publisher::start(&sim, &key("verify-fwd-c").0, &fast);
    let liar = Publisher::forward(&upstream, &key("verify-fwd-f").0, &TAMPER);
    // Between the upstreams and the subscriber: a forwarder that verifies against the leader's
    // manifests before anything enters its cache, and forwards those manifests too.
    let gate = Publisher::forward(
        &liar,
        &key("verify-fwd-v").0,
        &[
            "--remote",
            &honest.endpoint,
            "--remote-manifests",
            &leader.endpoint,
            "--group-timeout",
            "1000",
            "--max-source-invalid",
            "2",
        ],
    );
    let dir = process::out_dir("swarm", "verifying-forwarder");
    let args = [
        "--remote",
        &gate.endpoint,
        "--trust",
        &leader_id,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        "1000",
        "--stop-after",
        "8",
        "--max-invalid-chunks",
        "0",
        "--json",
    ];
    let out = subscribe(&dir, &args, Duration::from_secs(120));
    assert!(out.status.success(), "{}", process::stderr(&out));
    // The junk stopped at the forwarder: the subscriber rejected nothing, and no chunk is
    // missing.
    let summary = summary(&out);
    assert_eq!(summary["rejections"], serde_json::json!({}), "{summary}");
    let indices = playlist_indices(&dir);
    assert_eq!(indices.len(), 8, "{indices:?}");
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    hls::assert_decodes_clean(&dir);
    drop((gate, liar, upstream, honest, leader));
}

/// Issue 16, test 4: two sources of the stream, one through the third-party relay (given
/// first, so it starts with the live subscription) and one direct; the relayed one dies and the
/// direct one carries on.
#[test]
fn a_relayed_source_and_a_direct_source_are_combined() {
    media::require_tool("ffmpeg");
    let relay_dir = process::out_dir("swarm", "combined-relay");
    std::fs::create_dir_all(&relay_dir).unwrap();
    let (_relay, url, cert) = moq::relay(&relay_dir);
    let cert = cert.to_str().unwrap();
    let sim = Sim::start(&["--tuners", "3"]);
    let fast = ["--chunk-ms", "1000"];
    let (key_a, leader_id) = key("combined-a");
    let leader = Publisher::leader(&sim, &key_a, &fast);
    let input = format!("hdhr://{}/5.1", sim.addr);
    let relayed = Publisher::spawn(
        &[
            "moq-publish",
            "--input",
            &input,
            "--relay",
            &url,
            "--relay-ca",
            cert,
            "--chunk-ms",
            "1000",
        ],
        &key("combined-r").0,
    );
    let direct = Publisher::start(&sim, &key("combined-d").0, &fast);
    let dir = process::out_dir("swarm", "combined");
    let json = dir.with_extension("json");
    let json_arg = json.to_str().unwrap().to_string();
    let args = [
        "--remote",
        &url,
        "--remote",
        &direct.endpoint,
        "--relay-ca",
        cert,
        "--remote-manifests",
        &leader.endpoint,
        "--trust",
        &leader_id,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        "1000",
        "--stop-after",
        "10",
        "--summary-json",
        &json_arg,
    ];
    let mut subscriber = start_subscriber(STREAM, &dir, &args);
    hls::wait_for_segments(&dir, 3, &mut subscriber);
    drop(relayed);
    let out = wait_limited(subscriber, Duration::from_secs(90));
    assert!(out.status.success(), "{}", process::stderr(&out));
    let indices = playlist_indices(&dir);
    assert_eq!(indices.len(), 10, "{indices:?}");
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    hls::assert_decodes_clean(&dir);
    let summary = summary_json(&json);
    let sources = summary["sources"].as_array().unwrap();
    assert_eq!(sources[0]["remote"], url.as_str(), "{summary}");
    for source in sources {
        assert!(source["chunks"].as_u64().unwrap() > 0, "{summary}");
    }
    drop((direct, leader));
}

/// Issue 16, test 5: every source killed: the subscriber exits 5 once nothing came for
/// `--idle-timeout`, and its playlist is finished (ENDLIST) with whole, verified segments only.
#[test]
fn all_sources_killed_ends_the_subscriber_with_exit_5_and_a_finished_playlist() {
    media::require_tool("ffmpeg");
    let sim = Sim::start(&["--tuners", "3"]);
    let fast = ["--chunk-ms", "1000"];
    let (key_a, _) = key("all-killed-a");
    let leader = Publisher::leader(&sim, &key_a, &fast);
    let nodes: Vec<Publisher> = (0..2)
        .map(|i| Publisher::start(&sim, &key(&format!("all-killed-{i}")).0, &fast))
        .collect();
    let dir = process::out_dir("swarm", "all-killed");
    let mut args = vec![];
    for node in &nodes {
        args.extend(["--remote", node.endpoint.as_str()]);
    }
    args.extend([
        "--remote-manifests",
        &leader.endpoint,
        "--require-manifest",
        "--backfill",
        "0",
        "--chunk-ms",
        "1000",
        "--idle-timeout",
        "4",
    ]);
    let mut subscriber = start_subscriber(STREAM, &dir, &args);
    hls::wait_for_segments(&dir, 3, &mut subscriber);
    drop(nodes);
    drop(leader);
    // Bounded well above the idle timeout: the claim is the exit code and the playlist.
    let out = wait_limited(subscriber, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(5), "{}", process::stderr(&out));
    let last = process::stderr(&out)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("no object for 4 s"), "{last}");
    let playlist = hls::read_playlist(&dir);
    assert!(playlist.ended, "the playlist ends with ENDLIST");
    let indices = playlist_indices(&dir);
    assert!(indices.len() >= 3, "{indices:?}");
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    hls::assert_decodes_clean(&dir);
}

/// Issue 16, test 6: a publisher in two third-party relays; one relay killed: the subscribers of
/// the other are unaffected, and the publisher announces again into the relay once it is back.
#[test]
fn a_publisher_in_two_relays_rides_out_one_relay_dying() {
    media::require_tool("ffmpeg");
    let dirs = ["one", "two"].map(|name| {
        let dir = process::out_dir("swarm", &format!("relay-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    });
    let (relay_one, url_one, cert_one) = moq::relay(&dirs[0]);
    let (_relay_two, url_two, cert_two) = moq::relay(&dirs[1]);
    // One bundle trusts both relays' certificates.
    let bundle = process::out_dir("swarm", "relays-ca.pem");
    let mut pem = std::fs::read(&cert_one).unwrap();
    pem.extend(std::fs::read(&cert_two).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let bundle = bundle.to_str().unwrap();
    let sim = Sim::start(&["--tuners", "1"]);
    let (key_p, id_p) = key("two-relays");
    let input = format!("hdhr://{}/5.1", sim.addr);
    let publisher = Publisher::spawn(
        &[
            "moq-publish",
            "--input",
            &input,
            "--relay",
            &url_one,
            "--relay",
            &url_two,
            "--relay-ca",
            bundle,
            "--publish-manifests",
            "--chunk-ms",
            "1000",
        ],
        &key_p,
    );
    let via = |url: &str, name: &str, count: &str| {
        let dir = process::out_dir("swarm", name);
        let args = [
            "--remote",
            url,
            "--relay-ca",
            bundle,
            "--trust",
            &id_p,
            "--require-manifest",
            "--backfill",
            "0",
            "--chunk-ms",
            "1000",
            "--stop-after",
            count,
        ];
        (start_subscriber(STREAM, &dir, &args), dir)
    };
    let (mut doomed, _) = via(&url_one, "two-relays-sub-one", "100");
    let (mut steady, steady_dir) = via(&url_two, "two-relays-sub-two", "10");
    hls::wait_for_segments(&steady_dir, 3, &mut steady);
    drop(relay_one);
    let out = wait_limited(steady, Duration::from_secs(60));
    assert!(out.status.success(), "{}", process::stderr(&out));
    let indices = playlist_indices(&steady_dir);
    assert_eq!(indices.len(), 10, "{indices:?}");
    assert!(indices.windows(2).all(|w| w[1] == w[0] + 1), "{indices:?}");
    hls::assert_decodes_clean(&steady_dir);
    let _ = doomed.kill();
    let _ = doomed.wait();

    // The same relay again: the publisher notices the old link is dead, dials again and
    // announces, so a new subscriber through it plays. Until then the relay refuses the
    // track (exit 4, as for a stream nobody publishes), so the subscriber is started again for
    // at most a minute. The relay starts afresh: it forgets the namespaces it knew.
    let bind = url_one.trim_start_matches("moqt://").to_string();
    std::fs::remove_file(dirs[0].join("coordinator.json")).unwrap();
    let (_relay_again, _, _) = moq::relay_on(&dirs[0], &bind);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (out, again_dir) = loop {
        let (again, dir) = via(&url_one, "two-relays-sub-again", "3");
        let out = wait_limited(again, Duration::from_secs(60));
        if out.status.code() != Some(4) || std::time::Instant::now() > deadline {
            break (out, dir);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(out.status.success(), "{}", process::stderr(&out));
    hls::assert_decodes_clean(&again_dir);
    drop(publisher);
}
