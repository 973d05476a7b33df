//! Interop with MoQ software ec-node did not write, byte-exact by BLAKE3, both directions:
//! Cloudflare's `moq-transport` 0.16 (draft-16) through our small harness `moq-peer`
//! (interop/), and Cloudflare's relay `moq-relay-ietf` 0.7.31. `.ci/setup` builds both into
//! `${EC_NODE_CACHE:-~/.cache/ec-node}`; these tests fail with that hint when they are missing.

#[path = "common/moq.rs"]
mod moq;

use std::path::Path;
use std::process::Command;

use moq::{
    cat, make_groups, object_lines, openssl_cert, relay, run_bounded, serve_listen, temp_dir, tool,
    Proc, STEP,
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
    let dir = temp_dir("interop-client");
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

/// Starts `moq-peer pub --listen` (one session); returns it and its address.
fn third_party_publisher(dir: &Path) -> (Proc, String) {
    let (cert, key) = openssl_cert(dir);
    let p = Proc::spawn(
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
    let dir = temp_dir("interop-publisher");
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
    let dir = temp_dir("interop-relay-in");
    let expected = make_groups(&dir.join("src"), GROUPS);
    let (_relay, url, ca) = relay(&dir);
    let serve = Proc::spawn(
        "moq-serve --relay",
        moq::ec_node()
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
    let dir = temp_dir("interop-relay-out");
    let expected = make_groups(&dir.join("src"), GROUPS);
    let (_relay, url, ca) = relay(&dir);
    let publisher = Proc::spawn(
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
    let dir = temp_dir("interop-relay-tls");
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
