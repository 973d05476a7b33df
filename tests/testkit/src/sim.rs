//! Starting `ec-node tuner-sim` as a real process on a free loopback port, and reading from it
//! over real sockets: plain GETs with ureq, streams with a raw `TcpStream` so tests can watch
//! timing, stalls and closes.
//!
//! Usage: `let sim = Sim::start(&["--tuners", "1"]);` then `sim.get("/lineup.json")` or
//! `sim.open("/auto/v5.1")`; the process is killed on drop, or stopped with SIGTERM by
//! [`Sim::terminate`].

use crate::process::{ec_node, Proc};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running simulator process (killed on drop).
pub struct Sim {
    proc: Proc,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The channels it announced.
    pub channels: Vec<String>,
}

/// A GET answered by the simulator.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `X-HDHomeRun-Error`, if sent.
    pub device_error: Option<String>,
    /// The body.
    pub body: String,
}

/// An open stream: the response head has been read, the body follows on `conn`.
pub struct Stream {
    /// Status code of the response.
    pub status: u16,
    /// The response head, as text.
    pub head: String,
    conn: TcpStream,
    /// Body bytes that arrived with the head.
    pending: Vec<u8>,
}

/// What reading a stream for a while gave.
pub struct Received {
    /// The bytes received.
    pub bytes: Vec<u8>,
    /// Whether the server closed the connection (EOF), and when, from the start of the read.
    pub closed_after: Option<Duration>,
}

impl Sim {
    /// Starts `ec-node tuner-sim --listen 127.0.0.1:0 ARGS...` and waits (bounded) for its
    /// ready line.
    pub fn start(args: &[&str]) -> Sim {
        let mut all = vec!["tuner-sim", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut proc = Proc::spawn("tuner-sim", ec_node(&all).stderr(Stdio::null()));
        let ready = proc.ready();
        Sim {
            addr: ready["listen"].as_str().unwrap().parse().unwrap(),
            channels: ready["channels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect(),
            proc,
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A GET with ureq, any status accepted.
    pub fn get(&self, path: &str) -> Reply {
        get_at(self.addr, path)
    }

    /// Sends a raw request and reads the whole answer (for requests ureq would not send).
    pub fn raw(&self, request: &[u8]) -> String {
        let mut conn = TcpStream::connect(self.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = conn.write_all(request);
        let mut answer = Vec::new();
        let _ = conn.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Opens a stream: sends the GET and reads the response head.
    pub fn open(&self, path: &str) -> Stream {
        open_at(self.addr, path)
    }
}

/// A GET of `path` from the HTTP server at `addr` with ureq, any status accepted.
pub fn get_at(addr: SocketAddr, path: &str) -> Reply {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build();
    // ureq 2 reports error statuses as `Error::Status`, still carrying the response.
    let response = match agent.get(&format!("http://{addr}{path}")).call() {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("GET {path}: {e}"),
    };
    Reply {
        status: response.status(),
        device_error: response.header("X-HDHomeRun-Error").map(str::to_string),
        body: response.into_string().unwrap(),
    }
}

/// Opens a stream from the HTTP server at `addr`: sends the GET and reads the response head.
pub fn open_at(addr: SocketAddr, path: &str) -> Stream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        assert!(Instant::now() < deadline, "no response head for {path}");
        match conn.read(&mut chunk) {
            Ok(0) => panic!("closed before the response head for {path}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("reading the head of {path}: {e}"),
        }
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Stream {
        status,
        head,
        conn,
        pending: buf[end..].to_vec(),
    }
}

impl Sim {
    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.proc.terminate()
    }
}

impl Stream {
    /// Reads for `time` or until the server closes, whichever comes first.
    pub fn read_for(&mut self, time: Duration) -> Received {
        let start = Instant::now();
        let mut bytes = std::mem::take(&mut self.pending);
        let mut chunk = [0u8; 64 * 1024];
        while start.elapsed() < time {
            match self.conn.read(&mut chunk) {
                Ok(0) => {
                    return Received {
                        bytes,
                        closed_after: Some(start.elapsed()),
                    }
                }
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    return Received {
                        bytes,
                        closed_after: Some(start.elapsed()),
                    }
                }
                Err(e) => panic!("reading a stream: {e}"),
            }
        }
        Received {
            bytes,
            closed_after: None,
        }
    }

    /// Reads until at least one whole TS packet has arrived (a channel's first chunk may come
    /// seconds after it opens), at most [`crate::process::STEP`]; returns what arrived, which a
    /// test finding it short fails on.
    pub fn read_some(&mut self) -> Vec<u8> {
        let begun = Instant::now();
        let mut bytes = Vec::new();
        while bytes.len() < 188 && begun.elapsed() < crate::process::STEP {
            let read = self.read_for(Duration::from_millis(20));
            bytes.extend(read.bytes);
            if read.closed_after.is_some() {
                break;
            }
        }
        bytes
    }

    /// A header value from the response head.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
