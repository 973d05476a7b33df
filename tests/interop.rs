//! Interop with MoQ software ec-node did not write, byte-exact by BLAKE3, both directions:
//! Cloudflare's `moq-transport` 0.16 (draft-16) through our small harness `moq-peer`
//! (interop/), and Cloudflare's relay `moq-relay-ietf` 0.7.31. `.ci/setup` builds both into
//! `${EC_NODE_CACHE:-~/.cache/ec-node}`; these tests fail with that hint when they are missing.

use ec_node_testkit::moq;
use ec_node_testkit::sim;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ec_node_testkit::process::{run_bounded, work_dir, Proc, STEP};
use moq::{
    arrival_groups, cat, logged_ec_node, make_groups, object_lines, openssl_cert, ready_tracks,
    relay, serve_listen, tool,
};

const NS: &str = "ec/test/objects";
const GROUPS: usize = 8;
/// Milliseconds between groups: that stack hands a reader only the newest group, so a reader
/// that falls behind (2 shared cores, tests in parallel) would skip groups; FETCH is exact.
const PACE_MS: u32 = 100;
/// The track flags of a publisher feeding the relay, up to its folder argument (paced a little
/// faster: one reader, no fan-out).
const PACED_TRACK: [&str; 7] = [
    "--namespace",
    NS,
    "--track",
    "chunks",
    "--interval-ms",
    "60",
    "--dir",
];

/// Runs the interop tests one at a time (they are timing-sensitive, see [`PACE_MS`]).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The harness. Against the relay it does not verify the certificate: rustls (webpki) refuses
/// the CA:TRUE self-signed certificate `openssl req -x509` makes as an end entity, and checking
/// the relay is ec-node's side of these tests (`--relay-ca`), not the harness's.
fn peer() -> Command {
    tool("bin/moq-peer")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn peer_lines(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "moq-peer failed: {}", stderr(out));
    object_lines(&out.stdout)
}

#[test]
fn a_third_party_client_subscribes_to_and_fetches_from_moq_serve() {
    let _serial = one_at_a_time();
    let dir = work_dir("interop", "interop-client");
    let expected = make_groups(&dir.join("src"), GROUPS);
    let (_serve, endpoint) = serve_listen(&dir.join("src"), "127.0.0.1:0", PACE_MS, &[]);
    let url = format!("moqt://{}", endpoint.split_once('@').unwrap().1);

    let out = run_bounded(
        "moq-peer sub",
        peer()
            .args(["sub", "--url", &url, "--namespace", NS, "--track", "chunks"])
            .args(["--count", &GROUPS.to_string()]),
        STEP,
    );
    assert_eq!(peer_lines(&out), expected);

    let out = run_bounded(
        "moq-peer fetch",
        peer()
            .args([
                "fetch",
                "--url",
                &url,
                "--namespace",
                NS,
                "--track",
                "chunks",
            ])
            .args(["--from", "2", "--to", "6"]),
        STEP,
    );
    assert_eq!(peer_lines(&out), expected[2..=6].to_vec());
}

/// Chunk duration of the live publisher below: one group per track every this many ms.
const LIVE_CHUNK_MS: u64 = 500;
/// Objects each live subscriber waits for: the group current when it subscribed, then two new.
const LIVE_COUNT: usize = 3;
/// When the live subscribers subscribe, in ms after a new group: right after it, early,
/// mid-period and late in the period.
const LIVE_PHASES_MS: [u64; 4] = [
    0,
    LIVE_CHUNK_MS / 4,
    LIVE_CHUNK_MS / 2,
    LIVE_CHUNK_MS * 4 / 5,
];

/// A third-party subscriber (an unfiltered SUBSCRIBE, i.e. AbsoluteStart {0,0}) joining a live
/// `moq-publish` at several moments of the group period, on both of its tracks: it gets at most
/// the current group from the cache and then the new ones, always in increasing group order
/// (earlier groups are FETCH's job), and its run succeeds. Before the fix the cached groups went
/// out newest first and that stack gave up on the subscription.
#[test]
fn a_third_party_client_joining_live_moq_publish_gets_groups_only_in_increasing_order() {
    let _serial = one_at_a_time();
    let dir = work_dir("interop", "interop-live");
    let sim = sim::Sim::start(&["--tuners", "2"]);
    let mut publisher = Proc::spawn(
        "moq-publish",
        logged_ec_node()
            .args([
                "moq-publish",
                "--input",
                &format!("hdhr://{}/5.1", sim.addr),
            ])
            .args(["--listen", "127.0.0.1:0", "--publish-manifests"])
            .args(["--chunk-ms", &LIVE_CHUNK_MS.to_string()])
            .args(["--stream-id", "ec/stream/v1/test/interop-live"]),
    );
    let (endpoint, tracks) = ready_tracks(&publisher.wait_line(|l| l.starts_with('{')));
    let endpoint = endpoint.expect("a listening node prints its endpoint");
    let url = format!("moqt://{}", endpoint.split_once('@').unwrap().1);
    let names: Vec<&str> = tracks.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names, ["chunks", "manifests"]);

    // A clock: ec-node's own client follows the chunks track and prints each group on arrival
    // (loopback: within milliseconds of its publication).
    let (chunks_ns, _) = &tracks[0];
    let mut clock = Proc::spawn(
        "moq-cat (clock)",
        logged_ec_node()
            .args(["moq-cat", "--remote", &endpoint, "--namespace", chunks_ns])
            .args(["--track", "chunks", "--timeout-s", "120", "--out"])
            .arg(dir.join("clock")),
    );
    let mut newest = None;
    let mut next_group = || loop {
        let line = clock.wait_line(|l| l.split(' ').count() == 4);
        let g: u64 = line.split(' ').next().unwrap().parse().unwrap();
        if newest.is_none_or(|n| g > n) {
            newest = Some(g);
            return g;
        }
    };
    next_group();

    for offset_ms in LIVE_PHASES_MS {
        let g = next_group();
        std::thread::sleep(Duration::from_millis(offset_ms));
        let runs: Vec<_> = tracks
            .iter()
            .map(|(ns, name)| {
                let (url, ns, name) = (url.clone(), ns.clone(), name.clone());
                std::thread::spawn(move || {
                    let out = run_bounded(
                        "moq-peer sub (live)",
                        peer()
                            .args(["sub", "--url", &url, "--namespace", &ns, "--track", &name])
                            .args(["--count", &LIVE_COUNT.to_string()]),
                        STEP,
                    );
                    (name, out)
                })
            })
            .collect();
        for run in runs {
            let (name, out) = run.join().unwrap();
            let when = format!("{name}, {offset_ms} ms after chunk group {g}");
            let got = arrival_groups(&out.stdout);
            assert!(
                out.status.success(),
                "moq-peer failed ({when}) after groups {got:?}: {}",
                stderr(&out)
            );
            assert_eq!(got.len(), LIVE_COUNT, "{when}: {got:?}");
            if name == "chunks" {
                // Group g was already out when it subscribed: nothing older may come.
                assert!(
                    got[0] >= g,
                    "{when}: a group older than the current {got:?}"
                );
            }
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "{when}: groups out of order {got:?}"
            );
        }
    }
}

/// Starts `moq-peer pub --listen` (one session); returns it and its address.
fn third_party_publisher(dir: &Path) -> (Proc, String) {
    let (cert, key) = openssl_cert(dir);
    let mut p = Proc::spawn(
        "moq-peer pub",
        peer()
            .args(["pub", "--listen", "127.0.0.1:0", "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--namespace", NS, "--track", "chunks", "--dir"])
            .arg(dir.join("src"))
            .args(["--interval-ms", &PACE_MS.to_string()]),
    );
    let line = p.wait_line(|l| l.starts_with("listening "));
    (p, line.trim_start_matches("listening ").to_string())
}

#[test]
fn moq_cat_subscribes_to_and_fetches_from_a_third_party_publisher() {
    let _serial = one_at_a_time();
    let dir = work_dir("interop", "interop-publisher");
    let expected = make_groups(&dir.join("src"), GROUPS);

    let (_publisher, addr) = third_party_publisher(&dir);
    let out = cat(&addr, &dir.join("sub"), &["--count", &GROUPS.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected);

    let (_publisher, addr) = third_party_publisher(&dir);
    let out = cat(&addr, &dir.join("fetch"), &["--fetch", "1..5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected[1..=5].to_vec());
}

#[test]
fn moq_serve_publishes_into_a_third_party_relay_and_a_third_party_client_reads_through_it() {
    let _serial = one_at_a_time();
    let dir = work_dir("interop", "interop-relay-in");
    let expected = make_groups(&dir.join("src"), GROUPS);
    let (_relay, url, ca) = relay(&dir);
    let mut serve = Proc::spawn(
        "moq-serve --relay",
        logged_ec_node()
            .args(["moq-serve", "--relay", &url, "--relay-ca"])
            .arg(&ca)
            .args(PACED_TRACK)
            .arg(dir.join("src")),
    );
    let (endpoint, ns, _) = moq::ready(&serve.wait_line(|l| l.starts_with('{')));
    assert_eq!((endpoint, ns.join("/")), (None, NS.to_string()));

    let out = run_bounded(
        "moq-peer sub via relay",
        peer()
            .args(["sub", "--url", &url])
            .args(["--namespace", NS, "--track", "chunks"])
            .args(["--count", &GROUPS.to_string()]),
        STEP,
    );
    assert_eq!(peer_lines(&out), expected);

    let out = run_bounded(
        "moq-peer fetch via relay",
        peer()
            .args(["fetch", "--url", &url])
            .args([
                "--namespace",
                NS,
                "--track",
                "chunks",
                "--from",
                "0",
                "--to",
            ])
            .arg((GROUPS - 1).to_string()),
        STEP,
    );
    assert_eq!(peer_lines(&out), expected);
}

#[test]
fn a_third_party_publisher_publishes_into_the_relay_and_moq_cat_reads_through_it() {
    let _serial = one_at_a_time();
    let dir = work_dir("interop", "interop-relay-out");
    let expected = make_groups(&dir.join("src"), GROUPS);
    let (_relay, url, ca) = relay(&dir);
    let mut publisher = Proc::spawn(
        "moq-peer pub --relay",
        peer()
            .args(["pub", "--relay", &url])
            .args(PACED_TRACK)
            .arg(dir.join("src")),
    );
    publisher.wait_line(|l| l == "ready");
    let remote_args = ["--relay-ca", ca.to_str().unwrap()];

    // The relay learns the namespace from PUBLISH_NAMESPACE shortly after "ready": retry the
    // first request a few times while it answers "does not exist".
    let mut out = cat(
        &url,
        &dir.join("sub"),
        &[&remote_args[..], &["--count", "8"]].concat(),
    );
    for _ in 0..20 {
        if out.status.code() != Some(3) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        out = cat(
            &url,
            &dir.join("sub"),
            &[&remote_args[..], &["--count", "8"]].concat(),
        );
    }
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected);

    let out = cat(
        &url,
        &dir.join("fetch"),
        &[&remote_args[..], &["--fetch", "0..7"]].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected);
}

#[test]
fn the_relay_certificate_is_verified_unless_insecure() {
    let _serial = one_at_a_time();
    let dir = work_dir("interop", "interop-relay-tls");
    let (_relay, url, ca) = relay(&dir);
    // Not in the system roots: the handshake fails (exit 3) before any request.
    let out = cat(&url, &dir.join("a"), &["--count", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("handshake failed"),
        "{}",
        stderr(&out)
    );
    // With --relay-ca the session comes up; the relay then refuses the unknown track (exit 3).
    let out = cat(
        &url,
        &dir.join("b"),
        &["--count", "1", "--relay-ca", ca.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the request"),
        "{}",
        stderr(&out)
    );
    // --insecure skips the check, with a warning.
    let out = cat(&url, &dir.join("c"), &["--count", "1", "--insecure"]);
    assert!(stderr(&out).contains("--insecure"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the request"),
        "{}",
        stderr(&out)
    );
}
