//! Runs MoQ peers as real processes on loopback: `ec-node moq-serve`/`moq-cat`, and (for the
//! interop tests) the third-party `moq-peer` harness and `moq-relay-ietf` relay that `.ci/setup`
//! builds into the cache directory. Every child is killed when its guard drops, and every wait
//! is bounded.

use crate::process::{ec_node_path, run_bounded, Proc, STEP};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `ec-node` for the MoQ tests: no stdin, logging at info straight to the test's stderr (shown
/// when a test fails), stdout as the caller sets it.
pub fn logged_ec_node() -> Command {
    let mut c = Command::new(ec_node_path());
    c.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

/// Writes `n` files of varied, deterministic sizes (one over 1 MB) into `dir`; returns their
/// expected `group object size blake3` lines.
pub fn make_groups(dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let size = match i % 4 {
                0 => 1_200_000,
                1 => 1,
                2 => 40_000,
                _ => 1000 + 17 * i,
            };
            let bytes: Vec<u8> = (0..size).map(|j| ((j * 31 + i * 7) % 251) as u8).collect();
            std::fs::write(dir.join(format!("{i:04}.bin")), &bytes).unwrap();
            format!("{i} 0 {size} {}", blake3::hash(&bytes).to_hex())
        })
        .collect()
}

/// The object lines of a listing (`group object size hash`), sorted by group.
pub fn object_lines(stdout: &[u8]) -> Vec<String> {
    let mut lines: Vec<(u64, String)> = String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.split(' ').count() == 4)
        .map(|l| {
            (
                l.split(' ').next().unwrap().parse().unwrap_or(u64::MAX),
                l.to_string(),
            )
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, l)| l).collect()
}

/// Parses the ready line: the endpoint (if any) and the first track's namespace and name.
pub fn ready(line: &str) -> (Option<String>, Vec<String>, String) {
    let v: serde_json::Value = serde_json::from_str(line).expect("ready line is JSON");
    let endpoint = v["endpoint"].as_str().map(str::to_string);
    let track = &v["tracks"][0];
    let ns = track["namespace"]
        .as_array()
        .expect("namespace")
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    (endpoint, ns, track["name"].as_str().unwrap().to_string())
}

/// Starts `ec-node moq-serve --listen ADDR` on `dir`, one group per `interval_ms`; returns it
/// and its endpoint text.
pub fn serve_listen(dir: &Path, listen: &str, interval_ms: u32, extra: &[&str]) -> (Proc, String) {
    let mut p = Proc::spawn(
        "moq-serve",
        logged_ec_node()
            .args([
                "moq-serve",
                "--listen",
                listen,
                "--namespace",
                "ec/test/objects",
            ])
            .args([
                "--track",
                "chunks",
                "--interval-ms",
                &interval_ms.to_string(),
            ])
            .arg("--dir")
            .arg(dir)
            .args(extra),
    );
    let line = p.wait_line(|l| l.starts_with('{'));
    let (endpoint, ns, name) = ready(&line);
    assert_eq!(ns, ["ec", "test", "objects"]);
    assert_eq!(name, "chunks");
    (p, endpoint.expect("a listening node prints its endpoint"))
}

/// Runs `ec-node moq-cat` to completion.
pub fn cat(remote: &str, out: &Path, extra: &[&str]) -> Output {
    run_bounded(
        "moq-cat",
        logged_ec_node()
            .args([
                "moq-cat",
                "--remote",
                remote,
                "--namespace",
                "ec/test/objects",
            ])
            .args(["--track", "chunks", "--timeout-s", "20", "--out"])
            .arg(out)
            .args(extra),
        STEP,
    )
}

/// Where `.ci/setup` keeps the interop peers and the relay.
pub fn cache() -> PathBuf {
    match std::env::var_os("EC_NODE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ec-node"),
    }
}

/// A tool from the cache; fails with a hint when `.ci/setup` has not built it.
pub fn tool(rel: &str) -> Command {
    let path = cache().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run `bash .ci/setup` (it builds the interop peers)",
        path.display()
    );
    Command::new(path)
}

/// A self-signed CA:TRUE certificate for 127.0.0.1, as `openssl req -x509` makes it.
pub fn openssl_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = run_bounded(
        "openssl",
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost", "-addext"])
            .args(["subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        STEP,
    );
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The text of a log line without its colour codes.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Starts the relay on a free loopback port; returns it, its moqt:// URL and its certificate.
pub fn relay(dir: &Path) -> (Proc, String, PathBuf) {
    relay_on(dir, "127.0.0.1:0")
}

/// Starts the relay on `bind` with the certificate in `dir` (made on the first start, so a relay
/// started again in the same folder is the same relay to its peers); returns it, its moqt://
/// URL and its certificate.
pub fn relay_on(dir: &Path, bind: &str) -> (Proc, String, PathBuf) {
    let (cert, key) = match (dir.join("cert.pem"), dir.join("key.pem")) {
        (cert, key) if cert.exists() && key.exists() => (cert, key),
        _ => openssl_cert(dir),
    };
    let mut p = Proc::spawn_stderr(
        "moq-relay-ietf",
        tool("relay/bin/moq-relay-ietf")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--bind", bind, "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--coordinator-file")
            .arg(dir.join("coordinator.json")),
    );
    let line = strip_ansi(&p.wait_line(|l| strip_ansi(l).contains("listening on ")));
    let addr = line
        .rsplit("listening on ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    (p, format!("moqt://{addr}"), cert)
}

/// Parses the ready line: the endpoint (if any) and every track as `(namespace joined by '/',
/// name)`, in the order listed.
pub fn ready_tracks(line: &str) -> (Option<String>, Vec<(String, String)>) {
    let v: serde_json::Value = serde_json::from_str(line).expect("ready line is JSON");
    let endpoint = v["endpoint"].as_str().map(str::to_string);
    let tracks = v["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .map(|t| {
            let ns: Vec<&str> = t["namespace"]
                .as_array()
                .expect("namespace")
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            (ns.join("/"), t["name"].as_str().unwrap().to_string())
        })
        .collect();
    (endpoint, tracks)
}

/// The groups of a listing (`group object size hash` lines), in the order they were printed.
pub fn arrival_groups(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.split(' ').count() == 4)
        .map(|l| l.split(' ').next().unwrap().parse().expect("a group id"))
        .collect()
}
