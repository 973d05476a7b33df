//! `--json` summaries as scripts read them: each command with a summary, run for real on small
//! inputs and loopback, ends with one JSON object as the last line of stdout, on success and on
//! failure, with the figures of its run, its exit code and its error (docs/USAGE.md, "Summaries
//! and --json"). Every wait is bounded; no assertion is about timing.

use ec_node_testkit::hls;
use ec_node_testkit::nodes::key;
use ec_node_testkit::process::{
    self, ec_node, last_object, run, run_with_stdin, stderr, stdout, Proc,
};
use ec_node_testkit::sim;

use serde_json::Value;
use sim::Sim;
use std::path::PathBuf;
use std::time::Duration;

const STREAM: &str = "ec/stream/v1/test/json";
const LIMIT: Duration = Duration::from_secs(90);

/// The summary object of a command whose stdout is nothing else: exactly one line.
fn only_object(text: &str) -> Value {
    assert_eq!(text.lines().count(), 1, "not exactly one line: {text:?}");
    last_object(text)
}

/// A count field that must be a positive integer.
fn positive(v: &Value, what: &str) -> u64 {
    let n = v
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not a count: {v}"));
    assert!(n > 0, "{what} is 0");
    n
}

/// The built-in clip as a file, for commands that read one.
fn clip_file(group: &str) -> PathBuf {
    let dir = process::out_dir(group, "input");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.ts");
    std::fs::write(&path, ec_node::clip::BUILTIN_TS).unwrap();
    path
}

/// Starts a node and reads its endpoint from its ready line (under the testkit's timeout).
fn start_node(name: &str, args: &[&str]) -> (Proc, String) {
    let mut node = Proc::ec_node(name, args);
    let endpoint = node.ready()["endpoint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (node, endpoint)
}

#[test]
fn chunks_ends_its_chunk_lines_with_the_summary_object() {
    let out = run(&["chunks", "--json", "--clock", "1764072000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let summary = last_object(&text);
    let chunk_lines = text.lines().count() - 1;
    assert_eq!(summary["command"], "chunks");
    assert_eq!(summary["exit"], 0);
    assert_eq!(summary["error"], Value::Null);
    assert_eq!(summary["source"], "the built-in clip");
    let chunks = positive(&summary["chunker"]["chunks"], "chunks");
    assert_eq!(chunks as usize, chunk_lines, "{text}");
    positive(&summary["chunker"]["packets"], "packets");
    assert_eq!(summary["chunker"]["lost_packets"], 0);
    // The chunk lines before it are as without a summary; none carries a `command`.
    for line in text.lines().take(chunk_lines) {
        let chunk: Value = serde_json::from_str(line).unwrap();
        assert!(
            chunk["index"].is_u64() && chunk.get("command").is_none(),
            "{line}"
        );
    }
    // The human summary is not printed beside it.
    assert!(!stderr(&out).contains("chunks: "), "{}", stderr(&out));
}

#[test]
fn chunks_of_input_that_is_not_mpeg_ts_reports_exit_2_with_its_counters() {
    let junk: Vec<u8> = (0..100_000u32).map(|i| (i % 71) as u8).collect();
    let out = run_with_stdin(&["chunks", "--input", "-", "--json"], &junk);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(summary["exit"], 2);
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("no MPEG-TS found"), "{error}");
    assert_eq!(summary["chunker"]["packets"], 0);
    assert_eq!(summary["chunker"]["skipped_bytes"], junk.len() as u64);
    // The one-line cause stays on stderr.
    let err = stderr(&out);
    assert_eq!(err.trim_end(), format!("ec-node: {error}"));
}

#[test]
fn record_prints_one_object_with_the_segments_it_wrote() {
    let input = clip_file("json-record");
    let dir = process::out_dir("json-record", "out");
    let out = run(&[
        "record",
        "--input",
        input.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(summary["command"], "record");
    assert_eq!(
        (&summary["exit"], &summary["error"]),
        (&0.into(), &Value::Null)
    );
    assert_eq!(summary["ended"], "source ended");
    assert_eq!(summary["out"], dir.to_str().unwrap());
    let segments = positive(&summary["segments"], "segments");
    assert_eq!(segments as usize, hls::read_playlist(&dir).segments.len());
    assert_eq!(summary["chunker"]["chunks"], segments);
    assert!(!stderr(&out).contains("record: "), "{}", stderr(&out));

    // Failures are one object too: a folder already written (the run refuses it), and a flag
    // missing (the flag parser refuses the command line).
    let again = run(&[
        "record",
        "--input",
        input.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let refused = only_object(&stdout(&again));
    assert_eq!(
        (&refused["command"], &refused["exit"]),
        (&"record".into(), &2.into())
    );
    assert!(
        refused["error"].as_str().unwrap().contains("not empty"),
        "{refused}"
    );
    assert!(refused.get("segments").is_none(), "{refused}");

    let unparsed = run(&["record", "--json"]);
    assert_eq!(unparsed.status.code(), Some(2), "{}", stderr(&unparsed));
    let refused = only_object(&stdout(&unparsed));
    assert_eq!(refused["exit"], 2);
    assert!(
        refused["error"].as_str().unwrap().contains("--out"),
        "{refused}"
    );
}

#[test]
fn publish_forward_and_subscribe_each_end_with_one_object() {
    let sim = Sim::start(&["--tuners", "1"]);
    let (key_p, _) = key("json-publisher");
    let (key_f, _) = key("json-forwarder");
    let input = format!("hdhr://{}/5.1", sim.addr);
    let (key_p, key_f) = (key_p.to_str().unwrap(), key_f.to_str().unwrap());
    let (publisher, publisher_at) = start_node(
        "moq-publish",
        &[
            "moq-publish",
            "--input",
            &input,
            "--listen",
            "127.0.0.1:0",
            "--publish-manifests",
            "--key",
            key_p,
            "--stream-id",
            STREAM,
            "--json",
        ],
    );
    let (forwarder, forwarder_at) = start_node(
        "moq-forward",
        &[
            "moq-forward",
            "--remote",
            &publisher_at,
            "--listen",
            "127.0.0.1:0",
            "--key",
            key_f,
            "--stream-id",
            STREAM,
            "--json",
        ],
    );
    let dir = process::out_dir("json-mesh", "subscriber");
    let file = process::out_dir("json-mesh", "summary").with_extension("json");
    let subscriber = ec_node(&[
        "moq-subscribe",
        "--remote",
        &forwarder_at,
        "--remote-manifests",
        &publisher_at,
        "--require-manifest",
        "--stream-id",
        STREAM,
        "--out",
        dir.to_str().unwrap(),
        "--stop-after",
        "2",
        "--json",
        "--summary-json",
        file.to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    let out = process::wait_limited(subscriber, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(summary["command"], "moq-subscribe");
    assert_eq!(
        (&summary["exit"], &summary["error"]),
        (&0.into(), &Value::Null)
    );
    assert_eq!(summary["chunks"], 2);
    assert_eq!(summary["out"], dir.to_str().unwrap());
    positive(&summary["bytes"], "bytes");
    positive(&summary["manifests"], "manifests");
    assert_eq!(summary["rejections"], serde_json::json!({}));
    let sources = summary["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{summary}");
    assert_eq!(sources[0]["remote"], forwarder_at.as_str());
    positive(&sources[0]["chunks"], "the source's chunks");
    assert_eq!(hls::read_playlist(&dir).segments.len(), 2);
    // --summary-json writes the same object to its file.
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, summary);

    let out = forwarder.stop();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(summary["command"], "moq-forward");
    assert_eq!(summary["exit"], 0);
    positive(&summary["forwarded"], "forwarded");
    assert_eq!(summary["tampered"], 0);
    assert_eq!(summary["verifying"], false);

    let out = publisher.stop();
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(summary["command"], "moq-publish");
    assert_eq!(summary["exit"], 0);
    let chunks = positive(&summary["chunks"], "chunks");
    positive(&summary["manifests"], "manifests");
    positive(&summary["ingest"]["chunker"]["packets"], "packets");
    assert!(summary["ingest"]["chunker"]["chunks"].as_u64() >= Some(chunks));
    assert!(!stderr(&out).contains("moq-publish: "), "{}", stderr(&out));
}

/// A UDP port on loopback that is bound but never answers: a QUIC handshake there never ends.
fn silent_port() -> (std::net::UdpSocket, String) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    (socket, addr)
}

#[test]
fn an_unreachable_peer_is_exit_3_in_the_object() {
    let (_silent, addr) = silent_port();
    let (_, id) = key("json-absent");
    let dir = process::out_dir("json-unreachable", "subscriber");
    let child = ec_node(&[
        "moq-subscribe",
        "--remote",
        &format!("{id}@{addr}"),
        "--stream-id",
        STREAM,
        "--out",
        dir.to_str().unwrap(),
        "--manifest-timeout",
        "2",
        "--json",
    ])
    .spawn()
    .unwrap();
    let out = process::wait_limited(child, LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(
        (&summary["command"], &summary["exit"]),
        (&"moq-subscribe".into(), &3.into())
    );
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("cannot connect"), "{error}");
    assert_eq!(summary["chunks"], 0);
    let err = stderr(&out);
    assert!(
        err.trim_end().ends_with(&format!("ec-node: {error}")),
        "{err}"
    );

    // A publisher whose only relay never answers fails before its run: the object has no
    // figures, only how it ended.
    let input = clip_file("json-unreachable");
    let relay = format!("moqt://{addr}");
    let child = ec_node(&[
        "moq-publish",
        "--input",
        input.to_str().unwrap(),
        "--relay",
        &relay,
        "--insecure",
        "--stream-id",
        STREAM,
        "--json",
    ])
    .spawn()
    .unwrap();
    let out = process::wait_limited(child, LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(
        (&summary["command"], &summary["exit"]),
        (&"moq-publish".into(), &3.into())
    );
    assert!(summary["error"].is_string(), "{summary}");
    assert!(summary.get("chunks").is_none(), "{summary}");
}

#[test]
fn demo_reports_each_node_in_one_object() {
    let dir = process::out_dir("json-demo", "out");
    let out = run(&[
        "demo",
        "--out",
        dir.to_str().unwrap(),
        "--seconds",
        "10",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = only_object(&stdout(&out));
    assert_eq!(summary["command"], "demo");
    assert_eq!(
        (&summary["exit"], &summary["error"]),
        (&0.into(), &Value::Null)
    );
    positive(&summary["leader"]["manifests"], "the leader's manifests");
    assert_eq!(
        summary["leader"]["chunks"], 0,
        "the leader publishes no chunks"
    );
    positive(
        &summary["availability"]["chunks"],
        "the availability node's chunks",
    );
    let chunks = positive(&summary["subscriber"]["chunks"], "the subscriber's chunks");
    assert_eq!(chunks as usize, hls::read_playlist(&dir).segments.len());
    assert_eq!(summary["subscriber"]["out"], dir.to_str().unwrap());
    // People still get the player hints on stderr, not the summary lines.
    let err = stderr(&out);
    assert!(
        err.contains("ffplay ") && !err.contains("demo: leader published"),
        "{err}"
    );
}
