//! `ec-node moq-serve` and `ec-node moq-cat` talking over real QUIC on loopback: SUBSCRIBE and
//! FETCH byte-exact by BLAKE3, identity pinning (including a man-in-the-middle with the right
//! address and the wrong key), unpinned dials, IPv6, a clean stop on SIGTERM, and several
//! subscribers at once (shared playouts).

use ec_node_testkit::moq;

use ec_node_testkit::process::{run_bounded, work_dir, STEP};
use moq::{cat, logged_ec_node, make_groups, object_lines, serve_listen};

fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = run_bounded(
        "keygen",
        logged_ec_node().args(["keygen", "--out"]).arg(&path),
        STEP,
    );
    assert!(out.status.success());
    (
        path,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn moq_cat_subscribes_and_fetches_from_moq_serve_byte_exact_with_a_pinned_identity() {
    let dir = work_dir("moq_net", "sub-fetch");
    let expected = make_groups(&dir.join("src"), 6);
    let (key, id) = keygen(&dir, "node.key");
    let (mut serve, endpoint) = serve_listen(
        &dir.join("src"),
        "127.0.0.1:0",
        20,
        &["--key", key.to_str().unwrap()],
    );
    assert!(
        endpoint.starts_with(&format!("{id}@127.0.0.1:")),
        "{endpoint}"
    );

    let out = cat(&endpoint, &dir.join("sub"), &["--count", "6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected);
    for line in &expected {
        let group = line.split(' ').next().unwrap();
        let bytes = std::fs::read(dir.join("sub").join(format!("{group}-0.bin"))).unwrap();
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            line.split(' ').nth(3).unwrap()
        );
    }

    let out = cat(&endpoint, &dir.join("fetch"), &["--fetch", "1..4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected[1..=4].to_vec());

    assert_eq!(
        serve.terminate().code(),
        Some(0),
        "moq-serve stops cleanly on SIGTERM"
    );
}

#[test]
fn a_man_in_the_middle_with_the_right_address_and_the_wrong_key_is_refused() {
    let dir = work_dir("moq_net", "mitm");
    make_groups(&dir.join("src"), 2);
    let (mallory_key, _) = keygen(&dir, "mallory.key");
    let (_, alice_id) = keygen(&dir, "alice.key");
    // Mallory listens where the subscriber expects Alice.
    let (_serve, endpoint) = serve_listen(
        &dir.join("src"),
        "127.0.0.1:0",
        20,
        &["--key", mallory_key.to_str().unwrap()],
    );
    let addr = endpoint.split_once('@').unwrap().1;
    let out = cat(
        &format!("{alice_id}@{addr}"),
        &dir.join("out"),
        &["--count", "1"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("identity mismatch") && err.contains(&alice_id),
        "{err}"
    );
    assert!(object_lines(&out.stdout).is_empty());
    assert_eq!(std::fs::read_dir(dir.join("out")).unwrap().count(), 0);
}

#[test]
fn a_plain_host_port_connects_unpinned_with_a_warning() {
    let dir = work_dir("moq_net", "unpinned");
    let expected = make_groups(&dir.join("src"), 2);
    let (_serve, endpoint) = serve_listen(&dir.join("src"), "127.0.0.1:0", 20, &[]);
    let addr = endpoint.split_once('@').unwrap().1;
    let out = cat(addr, &dir.join("out"), &["--count", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without checking"),
        "{}",
        stderr(&out)
    );
    assert_eq!(object_lines(&out.stdout), expected);
}

#[test]
fn ipv6_loopback_addresses_are_bracketed_and_pinned() {
    if let Err(e) = std::net::UdpSocket::bind("[::1]:0") {
        panic!("this test needs the IPv6 loopback ::1, which this host lacks: {e}");
    }
    let dir = work_dir("moq_net", "ipv6");
    let expected = make_groups(&dir.join("src"), 3);
    let (_serve, endpoint) = serve_listen(&dir.join("src"), "[::1]:0", 20, &[]);
    assert!(endpoint.contains("@[::1]:"), "{endpoint}");
    let out = cat(&endpoint, &dir.join("out"), &["--fetch", "0..2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected);
}

#[test]
fn nothing_answering_is_a_connect_failure() {
    let dir = work_dir("moq_net", "nobody");
    let id = keygen(&dir, "k").1;
    // A bound but silent UDP port: the handshake never completes.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let out = run_bounded(
        "moq-cat",
        logged_ec_node()
            .args(["moq-cat", "--remote", &format!("{id}@{addr}")])
            .args([
                "--namespace",
                "a",
                "--track",
                "b",
                "--timeout-s",
                "2",
                "--out",
            ])
            .arg(dir.join("out")),
        STEP,
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[test]
fn subscribers_arriving_together_and_one_arriving_later_each_get_every_group() {
    // Sessions that subscribe within one interval of each other follow one shared playout; a
    // later one gets a playout of its own. Either way every subscriber gets every group.
    let dir = work_dir("moq_net", "shared-playout");
    let expected = make_groups(&dir.join("src"), 5);
    let (_serve, endpoint) = serve_listen(&dir.join("src"), "127.0.0.1:0", 300, &[]);
    let together: Vec<_> = (0..3)
        .map(|i| {
            let (endpoint, out) = (endpoint.clone(), dir.join(format!("sub{i}")));
            std::thread::spawn(move || cat(&endpoint, &out, &["--count", "5"]))
        })
        .collect();
    for t in together {
        let out = t.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(object_lines(&out.stdout), expected);
    }
    let out = cat(&endpoint, &dir.join("later"), &["--count", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(object_lines(&out.stdout), expected);
}
