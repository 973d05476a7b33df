//! `ec-node serve` as the house uses it: real processes (the tuner simulator, the node), real
//! HTTP clients (ureq, raw sockets, ffmpeg), checked against what an HDHomeRun answers and
//! against the simulator's own count of tuner connections.

use ec_node_testkit::media;
use ec_node_testkit::sim;

use ec_node_testkit::process::{self, Proc};
use sim::{get_at, open_at, Sim};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A running `ec-node serve` (killed on drop).
struct Serve {
    proc: Proc,
    addr: SocketAddr,
    device_id: String,
}

impl Serve {
    /// Starts `ec-node serve --listen 127.0.0.1:0 ARGS...` and waits for its ready line.
    fn start(args: &[&str]) -> Serve {
        // Only the discovery test answers on 127.0.0.1:65001; the others leave the port free.
        let discovery = match args.contains(&"--discovery") {
            true => &[][..],
            false => &["--discovery", "false"][..],
        };
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(discovery);
        all.extend_from_slice(args);
        let mut proc = Proc::spawn("serve", process::ec_node(&all).stderr(Stdio::null()));
        let ready = proc.ready();
        Serve {
            addr: ready["listen"].as_str().unwrap().parse().unwrap(),
            device_id: ready["device_id"].as_str().unwrap().to_string(),
            proc,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let reply = get_at(self.addr, path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// The status row of channel `guide`.
    fn channel(&self, guide: &str) -> serde_json::Value {
        let status = self.json("/status.json");
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["GuideNumber"] == guide)
            .cloned()
            .unwrap_or_else(|| panic!("no channel {guide} in {status}"))
    }
}

/// A simulator with channels 5.1, 7.1 and 9.1 (the same small H.264 clip) and `tuners` tuners.
fn three_channel_sim(tuners: &str) -> Sim {
    let clip = media::media_path("h264.ts", &media::H264_AAC.args());
    let clip = clip.to_str().unwrap();
    let channels: Vec<String> = ["5.1", "7.1", "9.1"]
        .iter()
        .map(|g| format!("{g}={clip}"))
        .collect();
    let mut args = vec!["--tuners", tuners];
    for c in &channels {
        args.extend(["--channel", c.as_str()]);
    }
    Sim::start(&args)
}

/// Tuners the simulator has in use, by channel.
fn sim_streams(sim: &Sim) -> Vec<String> {
    let status: serde_json::Value = serde_json::from_str(&sim.get("/status.json").body).unwrap();
    status
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["InUse"] == 1)
        .map(|t| t["VctNumber"].as_str().unwrap().to_string())
        .collect()
}

/// The PID of a TS packet.
fn pid(packet: &[u8]) -> u16 {
    u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2])
}

/// Whether `bytes` is whole TS packets starting with the PAT (a chunk boundary).
fn starts_on_a_chunk_boundary(bytes: &[u8]) -> bool {
    bytes.len() >= 188 && bytes[0] == 0x47 && pid(&bytes[..188]) == 0
}

/// ffmpeg's error lines decoding `url` for `seconds`.
fn ffmpeg_errors(url: &str, seconds: u32) -> String {
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "20000000",
            "-t",
            &seconds.to_string(),
        ])
        .args(["-i", url, "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg on {url}: {:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn documents_answer_like_an_hdhomerun_and_the_lineup_is_the_tuners() {
    let sim = three_channel_sim("2");
    let serve = Serve::start(&["--tuner", &format!("hdhr://{}", sim.addr)]);
    let d = serve.json("/discover.json");
    for field in [
        "FriendlyName",
        "ModelNumber",
        "FirmwareName",
        "FirmwareVersion",
        "DeviceID",
        "DeviceAuth",
        "BaseURL",
        "LineupURL",
    ] {
        assert!(
            d[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} in {d}"
        );
    }
    assert_eq!(d["DeviceID"], serve.device_id.as_str());
    assert!(ec_node::hdhr::device::DeviceId::parse(&serve.device_id).is_ok());
    assert_eq!(d["BaseURL"], serve.url("").as_str());
    assert_eq!(d["LineupURL"], serve.url("/lineup.json").as_str());
    assert_eq!(d["TunerCount"], 2);

    let lineup = serve.json("/lineup.json");
    let ours: Vec<(String, String, String)> = lineup
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["GuideNumber"].as_str().unwrap().to_string(),
                c["GuideName"].as_str().unwrap().to_string(),
                c["URL"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let theirs: serde_json::Value = serde_json::from_str(&sim.get("/lineup.json").body).unwrap();
    assert_eq!(ours.len(), theirs.as_array().unwrap().len());
    for (entry, (guide, name, url)) in theirs.as_array().unwrap().iter().zip(&ours) {
        assert_eq!(entry["GuideNumber"], guide.as_str());
        assert_eq!(entry["GuideName"], name.as_str());
        assert_eq!(url, &serve.url(&format!("/auto/v{guide}")));
    }
    let status = serve.json("/lineup_status.json");
    assert_eq!(status["ScanInProgress"], 0);

    // The IPTV playlist lists every channel with a URL that plays.
    let m3u = get_at(serve.addr, "/lineup.m3u").body;
    assert!(m3u.starts_with("#EXTM3U\n"));
    for (guide, name, url) in &ours {
        assert!(
            m3u.contains(&format!("tvg-chno=\"{guide}\" tvg-name=\"{name}\"")),
            "{m3u}"
        );
        assert!(m3u.lines().any(|l| l == url), "{m3u}");
    }
    let mut stream = open_at(serve.addr, "/auto/v5.1");
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("Content-Type").as_deref(), Some("video/mpeg"));
    let got = stream.read_some();
    assert!(starts_on_a_chunk_boundary(&got), "{} bytes", got.len());

    // Unknown channels, paths and malformed requests, as a device answers them.
    let unknown = get_at(serve.addr, "/auto/v99.9");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.device_error.as_deref(), Some("801 Unknown Channel"));
    assert_eq!(get_at(serve.addr, "/hls/5.1/../../etc/passwd").status, 404);
    assert_eq!(get_at(serve.addr, "/nothing").status, 404);
    let mut raw = TcpStream::connect(serve.addr).unwrap();
    raw.write_all(b"GET nothing\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // The index page links every channel.
    let index = get_at(serve.addr, "/").body;
    for (guide, ..) in &ours {
        assert!(
            index.contains(&format!("/hls/{guide}/index.m3u8")),
            "{index}"
        );
    }
}

#[test]
fn ffmpeg_plays_the_stream_and_the_hls_playlist_without_an_error() {
    media::require_tool("ffmpeg");
    let serve = Serve::start(&[]);
    assert_eq!(ffmpeg_errors(&serve.url("/auto/v5.1"), 5), "");
    assert_eq!(ffmpeg_errors(&serve.url("/hls/5.1/index.m3u8"), 5), "");
    let row = serve.channel("5.1");
    assert_eq!(row["Open"], true, "{row}");
    assert!(row["Chunks"].as_u64().unwrap() >= 2, "{row}");
}

#[test]
fn thirty_viewers_share_one_tuner_read_and_a_late_joiner_starts_on_a_boundary() {
    let sim = three_channel_sim("2");
    let serve = Serve::start(&["--tuner", &format!("hdhr://{}", sim.addr)]);
    // The first viewer opens the channel; wait for its first chunk.
    let mut first = open_at(serve.addr, "/auto/v5.1");
    assert_eq!(first.status, 200);
    assert!(starts_on_a_chunk_boundary(&first.read_some()));

    // 20 more stream viewers and 10 HLS clients, all at once.
    let streams: Vec<_> = (0..20)
        .map(|_| {
            let addr = serve.addr;
            std::thread::spawn(move || {
                let begun = Instant::now();
                let mut s = open_at(addr, "/auto/v5.1");
                assert_eq!(s.status, 200);
                let got = s.read_for(Duration::from_secs(6));
                (begun.elapsed(), got.bytes)
            })
        })
        .collect();
    let hls: Vec<_> = (0..10)
        .map(|_| {
            let addr = serve.addr;
            std::thread::spawn(move || {
                let mut segments = Vec::new();
                // At least 6 s and two segments; the wait for them is bounded, not timed.
                let (begun, until) = (Instant::now(), Duration::from_secs(6));
                while begun.elapsed() < until || segments.len() < 2 {
                    assert!(
                        begun.elapsed() < process::STEP,
                        "{} segments",
                        segments.len()
                    );
                    let playlist = get_at(addr, "/hls/5.1/index.m3u8");
                    assert_eq!(playlist.status, 200, "{}", playlist.body);
                    for name in playlist.body.lines().filter(|l| l.ends_with(".ts")) {
                        if !segments.iter().any(|(n, _)| n == name) {
                            let body = ureq::get(&format!("http://{addr}/hls/5.1/{name}"))
                                .call()
                                .unwrap();
                            let mut bytes = Vec::new();
                            body.into_reader().read_to_end(&mut bytes).unwrap();
                            segments.push((name.to_string(), bytes));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                segments
            })
        })
        .collect();
    // Meanwhile the simulator serves exactly one stream: ours, of 5.1.
    process::wait_until("21 viewers", process::STEP, || {
        serve.channel("5.1")["Viewers"] == 21
    });
    assert_eq!(sim_streams(&sim), ["5.1"]);

    // A late joiner starts on a chunk boundary. (How soon its first byte comes is a timing
    // promise, not checked here: a wall-clock bound on a loaded machine only flakes.)
    let mut late = open_at(serve.addr, "/auto/v5.1");
    assert!(starts_on_a_chunk_boundary(&late.read_some()));

    // Every segment any HLS client fetched, whole chunks as the hub cut them.
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for (i, client) in hls.into_iter().enumerate() {
        let fetched = client.join().unwrap();
        assert!(
            fetched.len() >= 2,
            "HLS client {i}: {} segments",
            fetched.len()
        );
        for (name, bytes) in fetched {
            assert!(starts_on_a_chunk_boundary(&bytes), "{name}");
            if !segments.contains(&bytes) {
                segments.push(bytes);
            }
        }
    }
    // Each stream viewer got whole chunks, back to back: its bytes are segments in a row (the
    // last one cut by the read's deadline), and they decode clean.
    let dir = process::work_dir("serve", "viewers");
    for (i, viewer) in streams.into_iter().enumerate() {
        let (_, bytes) = viewer.join().unwrap();
        assert!(starts_on_a_chunk_boundary(&bytes), "viewer {i}");
        let mut whole = 0;
        while let Some(segment) = segments.iter().find(|s| bytes[whole..].starts_with(s)) {
            whole += segment.len();
        }
        assert!(
            whole > 0,
            "viewer {i}: no whole segment among {} bytes",
            bytes.len()
        );
        let rest = &bytes[whole..];
        assert!(
            rest.is_empty() || starts_on_a_chunk_boundary(rest) || rest.len() < 188,
            "viewer {i}: {} bytes after {whole} that are no chunk",
            rest.len()
        );
        if i < 3 {
            let path = dir.join(format!("viewer-{i}.ts"));
            std::fs::write(&path, &bytes[..whole]).unwrap();
            assert_eq!(media::decode_errors(&path), "", "viewer {i}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sim_streams(&sim), ["5.1"], "still one tuner read");
}

#[test]
fn past_the_tuners_805_then_a_released_channel_frees_its_tuner() {
    let sim = three_channel_sim("2");
    let serve = Serve::start(&[
        "--tuner",
        &format!("hdhr://{}", sim.addr),
        "--release-ms",
        "2000",
    ]);
    let mut a = open_at(serve.addr, "/auto/v5.1");
    let mut b = open_at(serve.addr, "/auto/v7.1");
    assert_eq!((a.status, b.status), (200, 200));
    assert!(starts_on_a_chunk_boundary(&a.read_some()));
    assert!(starts_on_a_chunk_boundary(&b.read_some()));
    let c = get_at(serve.addr, "/auto/v9.1");
    assert_eq!(c.status, 503);
    assert_eq!(c.device_error.as_deref(), Some("805 All Tuners In Use"));
    // Viewers of channels already tuned still get in.
    let mut a2 = open_at(serve.addr, "/auto/v5.1");
    let b2 = open_at(serve.addr, "/auto/v7.1");
    assert_eq!((a2.status, b2.status), (200, 200));
    assert!(!a2.read_for(Duration::from_secs(1)).bytes.is_empty());

    // The last viewer of 5.1 leaves: the simulator sees that stream closed (after the release
    // delay; the wait for it is bounded, not timed).
    drop(a);
    drop(a2);
    process::wait_until("5.1 released", process::STEP, || {
        !sim_streams(&sim).contains(&"5.1".to_string())
    });
    let mut c = open_at(serve.addr, "/auto/v9.1");
    assert_eq!(c.status, 200);
    assert!(starts_on_a_chunk_boundary(&c.read_some()));
    drop(b);
}

#[test]
fn a_viewer_that_stops_reading_hurts_nobody_and_half_open_connections_do_not_block() {
    // A full-rate broadcast, so a stalled reader fills its socket buffers quickly.
    let atsc = media::media_path("atsc-8s.ts", &media::atsc_mpeg2_ac3(8));
    let channel = format!("5.1={}", atsc.to_str().unwrap());
    let sim = Sim::start(&["--channel", &channel]);
    let serve = Serve::start(&[
        "--tuner",
        &format!("hdhr://{}", sim.addr),
        "--chunk-ms",
        "500",
    ]);
    // 200 connections that never send a request.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(serve.addr).unwrap())
        .collect();
    let mut reader = open_at(serve.addr, "/auto/v5.1");
    assert_eq!(
        reader.status, 200,
        "a new viewer gets in past 200 half-open connections"
    );
    // The stalled viewer: a small receive window, and it never reads.
    let stalled = {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&serve.addr.into()).unwrap();
        let mut conn: TcpStream = socket.into();
        write!(conn, "GET /auto/v5.1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        conn
    };
    // The reader keeps getting about all the channel reads. (Its longest gap is printed, not
    // judged: a wall-clock bound on a loaded machine only flakes.)
    let mut total = reader.read_some().len();
    let read_before = serve.channel("5.1")["BytesIn"].as_u64().unwrap();
    let mut longest_gap = Duration::ZERO;
    let mut last = Instant::now();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let got = reader.read_for(Duration::from_millis(50)).bytes.len();
        if got > 0 {
            longest_gap = longest_gap.max(last.elapsed());
            last = Instant::now();
            total += got;
        }
    }
    let row = serve.channel("5.1");
    let read = row["BytesIn"].as_u64().unwrap() - read_before;
    println!("the reader's longest gap: {longest_gap:?}");
    assert!(total as u64 >= read * 8 / 10, "{total} bytes of {read}");
    let slowed = row["SkippedChunks"].as_u64().unwrap() + row["DroppedViewers"].as_u64().unwrap();
    assert!(slowed > 0, "the stalled viewer is counted: {row}");
    drop(stalled);
    drop(idle);
}

#[test]
fn hdhomerun_config_finds_the_node_and_reads_its_model_and_tuners() {
    media::require_tool("hdhomerun_config");
    let sim = three_channel_sim("2");
    let serve = Serve::start(&[
        "--tuner",
        &format!("hdhr://{}", sim.addr),
        "--discovery",
        "true",
    ]);
    let config = |args: &[&str]| {
        let out = Command::new("hdhomerun_config")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    // Unicast only: the responder answers the asker directly.
    let found = config(&["discover", "127.0.0.1"]);
    assert!(
        found.contains(&format!(
            "hdhomerun device {} found at 127.0.0.1",
            serve.device_id
        )),
        "{found}"
    );
    assert_eq!(
        config(&["127.0.0.1", "get", "/sys/model"]).trim(),
        "hdhomerun5_atsc"
    );
    assert_eq!(
        config(&["127.0.0.1", "get", "/sys/hwmodel"]).trim(),
        "HDHR5-4US"
    );
    assert!(config(&["127.0.0.1", "get", "/tuner0/status"]).starts_with("ch=none"));
    // A viewer tunes channel 7.1: the first tuner reports it.
    let mut viewer = open_at(serve.addr, "/auto/v7.1");
    assert_eq!(viewer.status, 200);
    assert!(starts_on_a_chunk_boundary(&viewer.read_some()));
    let status = config(&["127.0.0.1", "get", "/tuner0/status"]);
    assert!(status.starts_with("ch=auto:7.1 lock=8vsb"), "{status}");
    assert!(config(&["127.0.0.1", "get", "/tuner2/status"]).contains("ERROR"));
}

#[test]
fn two_hundred_concurrent_joins_admit_exactly_max_viewers_and_refuse_the_rest_with_809() {
    const JOINS: usize = 200;
    let sim = three_channel_sim("3");
    let mut serve = Serve::start(&[
        "--tuner",
        &format!("hdhr://{}", sim.addr),
        "--max-viewers",
        "64",
    ]);
    // All at once, over the three channels (the limit is over all of them, and the first joins
    // of each channel open it concurrently). Every thread reaches both barriers, whatever its
    // answer, so a failed join cannot leave the others waiting.
    let go = Arc::new(Barrier::new(JOINS));
    let answered = Arc::new(Barrier::new(JOINS + 1));
    let counted = Arc::new(Barrier::new(JOINS + 1));
    let joins: Vec<_> = (0..JOINS)
        .map(|i| {
            let (addr, go) = (serve.addr, go.clone());
            let (answered, counted) = (answered.clone(), counted.clone());
            std::thread::spawn(move || {
                let path = format!("/auto/v{}", ["5.1", "7.1", "9.1"][i % 3]);
                go.wait();
                // `open_at` gives up (panics) after 20 s without a response head.
                let stream = std::panic::catch_unwind(|| open_at(addr, &path));
                let answer = match &stream {
                    Ok(s) => Ok((s.status, s.header("X-HDHomeRun-Error"))),
                    Err(_) => Err(format!("{path}: no answer")),
                };
                // An admitted viewer keeps its place until every join was answered and counted.
                answered.wait();
                counted.wait();
                drop(stream);
                answer
            })
        })
        .collect();
    answered.wait();
    let viewers: u64 = serve
        .json("/status.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Viewers"].as_u64().unwrap())
        .sum();
    // Stopping (as Ctrl-C) with 64 viewers waiting for chunks ends the process cleanly.
    let status = serve.proc.terminate();
    counted.wait();
    let mut answers = std::collections::BTreeMap::new();
    for join in joins {
        *answers.entry(join.join().unwrap()).or_insert(0usize) += 1;
    }
    let admitted = Ok((200, None));
    let refused = Ok((503, Some("809 Playback Connection Limit".to_string())));
    assert_eq!(
        (answers.get(&admitted), answers.get(&refused), answers.len()),
        (Some(&64), Some(&(JOINS - 64)), 2),
        "answers: {answers:?}"
    );
    assert_eq!(viewers, 64, "viewers in /status.json");
    assert!(status.success(), "serve after SIGTERM: {status}");
}
