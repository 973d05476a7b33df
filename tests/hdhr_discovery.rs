//! The node's HDHomeRun responder on port 65001 (`node::lan::discovery`), in-process on
//! 127.0.0.1: raw discover and get frames, then the real `hdhomerun_config` (Debian package
//! `hdhomerun-config`, installed by `.ci/setup`) listing the node and reading its variables.
//!
//! Everything is sent to loopback only: `hdhomerun_config discover 127.0.0.1` and the IP form
//! `hdhomerun_config 127.0.0.1 get ...` (which discovers by unicast to that address, then talks
//! TCP to it). The device-id form would broadcast, so it is not used. Tests that bind 65001
//! take one lock and run one at a time.

use ec_node::hdhr::device::{DeviceId, Identity};
use ec_node::hdhr::protocol::{
    self, DiscoverRequest, GetSetOutcome, GetSetReply, GetSetRequest, Message, DEVICE_ID_WILDCARD,
    DEVICE_TYPE_TUNER, DEVICE_TYPE_WILDCARD,
};
use ec_node::node::lan::discovery::{DeviceView, Discovery};
use ec_node::stop::StopFlag;
use ec_node_testkit::process;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const DEVICE_ID: &str = "1EC0DE08";
const STATUS: &str = "ch=none lock=none ss=0 snq=0 seq=0 bps=0 pps=0";
const HDHOMERUN_CONFIG: &str = "/usr/bin/hdhomerun_config";

/// Port 65001 is one per machine: one test at a time holds it.
static PORT_65001: Mutex<()> = Mutex::new(());

fn port_lock() -> MutexGuard<'static, ()> {
    PORT_65001
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct TestDevice;

impl DeviceView for TestDevice {
    fn identity(&self) -> Identity {
        Identity {
            id: DeviceId::parse(DEVICE_ID).unwrap(),
            friendly_name: "ec-node test".into(),
            model: "HDHR5-2US".into(),
            firmware_name: "hdhomerun5_atsc".into(),
            firmware_version: "20250815".into(),
            auth: "ec-node-test".into(),
            tuners: 2,
        }
    }

    fn base_url(&self, asker: IpAddr) -> String {
        assert!(asker.is_loopback(), "{asker}");
        "http://127.0.0.1:5004".into()
    }

    fn tuner_status(&self, tuner: u32) -> Option<String> {
        (tuner < 2).then(|| STATUS.to_string())
    }
}

fn start(stop: &StopFlag) -> Discovery {
    Discovery::start(LOOPBACK, Arc::new(TestDevice), stop).expect("127.0.0.1:65001 is free")
}

fn discover_frame(device_types: Vec<u32>, device_id: Option<u32>) -> Vec<u8> {
    protocol::encode(&Message::DiscoverRequest(DiscoverRequest {
        device_types,
        device_id,
    }))
    .unwrap()
}

/// Sends `frame` to the responder from a fresh socket; the decoded answer, if one came.
fn ask_udp(frame: &[u8], wait: Duration) -> Option<(Message, SocketAddr)> {
    let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(frame, (LOOPBACK, protocol::PORT)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((protocol::decode(&buf[..n]).unwrap(), from))
}

fn get_frame(name: &str, value: Option<&str>) -> Vec<u8> {
    protocol::encode(&Message::GetSetRequest(GetSetRequest {
        name: name.into(),
        value: value.map(String::from),
        lockkey: None,
    }))
    .unwrap()
}

/// Reads one frame from a control connection.
fn read_reply(conn: &mut TcpStream) -> GetSetReply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        if let Ok(Some(len)) = protocol::frame_len(&buf) {
            if buf.len() >= len {
                let frame: Vec<u8> = buf.drain(..len).collect();
                assert!(buf.is_empty(), "one reply at a time here");
                match protocol::decode(&frame).unwrap() {
                    Message::GetSetReply(reply) => return reply,
                    other => panic!("{other:?}"),
                }
            }
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn discover_requests_get_a_unicast_reply_when_they_match() {
    let _port = port_lock();
    let stop = StopFlag::default();
    let discovery = start(&stop);
    assert_eq!(discovery.udp_addr(), SocketAddr::new(LOOPBACK, 65001));
    let wait = Duration::from_secs(2);
    let id = DeviceId::parse(DEVICE_ID).unwrap().value();

    for request in [
        discover_frame(vec![DEVICE_TYPE_WILDCARD], Some(DEVICE_ID_WILDCARD)),
        discover_frame(vec![DEVICE_TYPE_TUNER], Some(id)),
        discover_frame(vec![5, DEVICE_TYPE_TUNER], None),
    ] {
        let (reply, from) = ask_udp(&request, wait).expect("a reply");
        assert_eq!(from, SocketAddr::new(LOOPBACK, 65001));
        let Message::DiscoverReply(reply) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(reply.device_id, id);
        assert_eq!(reply.device_types, vec![DEVICE_TYPE_TUNER]);
        assert_eq!(reply.tuner_count, Some(2));
        assert_eq!(reply.base_url.as_deref(), Some("http://127.0.0.1:5004"));
        assert_eq!(
            reply.lineup_url.as_deref(),
            Some("http://127.0.0.1:5004/lineup.json")
        );
        assert_eq!(reply.device_auth.as_deref(), Some("ec-node-test"));
    }

    // Another id, another type, a broken CRC, a get over UDP: no answer.
    let short = Duration::from_millis(300);
    let mut bad_crc = discover_frame(vec![DEVICE_TYPE_TUNER], None);
    *bad_crc.last_mut().unwrap() ^= 1;
    for silent in [
        discover_frame(vec![DEVICE_TYPE_TUNER], Some(0x1010_0006)),
        discover_frame(vec![5], None),
        bad_crc,
        get_frame("/sys/model", None),
        vec![0xff; 64],
    ] {
        assert!(ask_udp(&silent, short).is_none(), "{silent:02x?}");
    }
    // Still answering after all that.
    assert!(ask_udp(&discover_frame(vec![], None), wait).is_some());
    discovery.join();
}

#[test]
fn control_connections_answer_gets_in_order_and_close_on_garbage() {
    let _port = port_lock();
    let stop = StopFlag::default();
    let discovery = start(&stop);
    let mut conn = TcpStream::connect((LOOPBACK, protocol::PORT)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Two requests in one write, the second split across a later write.
    let second = get_frame("/tuner1/status", None);
    let mut bytes = get_frame("/sys/model", None);
    bytes.extend_from_slice(&second[..5]);
    conn.write_all(&bytes).unwrap();
    let reply = read_reply(&mut conn);
    assert_eq!(reply.name.as_deref(), Some("/sys/model"));
    assert_eq!(
        reply.outcome,
        GetSetOutcome::Value("hdhomerun5_atsc".into())
    );
    std::thread::sleep(Duration::from_millis(150));
    conn.write_all(&second[5..]).unwrap();
    assert_eq!(
        read_reply(&mut conn).outcome,
        GetSetOutcome::Value(STATUS.into())
    );

    for (name, value, want) in [
        (
            "/sys/version",
            None,
            GetSetOutcome::Value("20250815".into()),
        ),
        (
            "/sys/hwmodel",
            None,
            GetSetOutcome::Value("HDHR5-2US".into()),
        ),
        (
            "/tuner2/status",
            None,
            GetSetOutcome::Error(protocol::UNKNOWN_VARIABLE.into()),
        ),
        (
            "/sys/model",
            Some("x"),
            GetSetOutcome::Error(protocol::READ_ONLY.into()),
        ),
    ] {
        conn.write_all(&get_frame(name, value)).unwrap();
        assert_eq!(read_reply(&mut conn).outcome, want, "{name}");
    }

    // A frame with a bad CRC ends the connection, as libhdhomerun's own reader does.
    let mut bad = get_frame("/sys/model", None);
    bad[6] ^= 0x20;
    conn.write_all(&bad).unwrap();
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap_or(0), 0);

    // An announced length past the limit ends it at once, before any payload.
    let mut conn = TcpStream::connect((LOOPBACK, protocol::PORT)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(&[0, 4, 0xff, 0xff]).unwrap();
    assert_eq!(conn.read_to_end(&mut rest).unwrap_or(0), 0);
    discovery.join();
}

#[test]
fn the_callers_stop_flag_ends_both_threads() {
    let _port = port_lock();
    let stop = StopFlag::default();
    let discovery = start(&stop);
    // An idle control connection must not hold the stop up.
    let _idle = TcpStream::connect((LOOPBACK, protocol::PORT)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stop.set();
    // Both threads end: the wait for them is bounded (generously), not timed.
    let (done, joined) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        discovery.join();
        let _ = done.send(());
    });
    joined
        .recv_timeout(Duration::from_secs(60))
        .expect("the discovery threads did not end after the stop flag was set");
    // The ports are free again.
    let again = start(&StopFlag::default());
    drop(again);
}

/// Runs `hdhomerun_config` with `args`, killed past [`process::STEP`]; (exit ok, stdout,
/// stderr).
fn hdhomerun_config(args: &[&str]) -> (bool, String, String) {
    let out = process::run_bounded(
        "hdhomerun_config",
        Command::new(HDHOMERUN_CONFIG).args(args),
        process::STEP,
    );
    (
        out.status.success(),
        process::stdout(&out),
        process::stderr(&out),
    )
}

/// Fails the test, naming the fix, when the real client is not installed (`.ci/setup` installs
/// it, as root; on a machine where it cannot, the test fails rather than pass without running).
fn require_hdhomerun_config() {
    assert!(
        Path::new(HDHOMERUN_CONFIG).exists(),
        "{HDHOMERUN_CONFIG} is required by this test: install the Debian package \
         hdhomerun-config (bash .ci/setup does, as root)"
    );
}

#[test]
fn hdhomerun_config_discovers_the_node_on_loopback() {
    require_hdhomerun_config();
    let _port = port_lock();
    let stop = StopFlag::default();
    let discovery = start(&stop);
    let (_, out, err) = hdhomerun_config(&["discover", "127.0.0.1"]);
    eprintln!("$ hdhomerun_config discover 127.0.0.1\n{out}{err}");
    assert!(
        out.contains(&format!("hdhomerun device {DEVICE_ID} found at 127.0.0.1")),
        "stdout: {out}\nstderr: {err}"
    );
    discovery.join();
}

#[test]
fn hdhomerun_config_reads_model_version_and_tuner_status() {
    require_hdhomerun_config();
    let _port = port_lock();
    let stop = StopFlag::default();
    let discovery = start(&stop);
    for (args, want) in [
        (&["127.0.0.1", "get", "/sys/model"][..], "hdhomerun5_atsc"),
        (&["127.0.0.1", "get", "/sys/hwmodel"], "HDHR5-2US"),
        (&["127.0.0.1", "get", "/sys/version"], "20250815"),
        (&["127.0.0.1", "get", "/tuner0/status"], STATUS),
        (&["127.0.0.1-1", "get", "/tuner1/status"], STATUS),
        (
            &["127.0.0.1", "get", "/tuner7/status"],
            protocol::UNKNOWN_VARIABLE,
        ),
        (
            &["127.0.0.1", "set", "/sys/model", "x"],
            protocol::READ_ONLY,
        ),
    ] {
        let (_, out, err) = hdhomerun_config(args);
        eprintln!("$ hdhomerun_config {}\n{out}{err}", args.join(" "));
        assert_eq!(out.trim_end(), want, "{args:?}; stderr: {err}");
    }
    discovery.join();
}
