//! The simulator's HTTP edge: a minimal, synchronous HTTP/1.1 server over `std::net` that answers
//! GET requests from the [`Simulator`] and paces each stream on the broadcast clock.
//!
//! It owns sockets, threads (one per connection, at most [`MAX_CONNECTIONS`]) and the clock; it
//! never decides what a device would answer — routes, tuners, faults and documents are the
//! simulator's, packets are the broadcast's. Every blocking call has a short timeout, so all loops
//! notice the stop flag within about 100 ms. One request per connection (`Connection: close`).

use super::{Route, Simulator, Tuned};
use crate::hdhr::DeviceError;
use crate::stop::StopFlag;
use crate::ts::packet::PACKET_SIZE;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most connections served at once; more get 503 with `803 System Busy`.
pub const MAX_CONNECTIONS: usize = 32;
/// The size of one `garbage-every` burst.
pub const GARBAGE_BYTES: usize = 1000;
/// The longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Timeout of every blocking socket call, and the accept loop's poll interval.
const IO_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a client may take to send its request head.
const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// How often a stream wakes up to send the packets that became due.
const TICK: Duration = Duration::from_millis(10);
/// Packets sent per write at most.
const BATCH_PACKETS: usize = 512;
/// A client that reads nothing for this long is dropped.
const SLOW_CLIENT: Duration = Duration::from_secs(10);
/// Bytes of a garbage burst: a fixed pseudo-random pattern (xorshift32).
const GARBAGE: [u8; GARBAGE_BYTES] = {
    let mut bytes = [0u8; GARBAGE_BYTES];
    let mut state: u32 = 0x2545_f491;
    let mut i = 0;
    while i < GARBAGE_BYTES {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes[i] = (state >> 24) as u8;
        i += 1;
    }
    bytes
};

/// Why the server could not run. Every variant is the environment's fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum BindError {
    /// The listening socket could not be bound (address in use, not local, no permission).
    Bind(SocketAddr, std::io::Error),
    /// The bound socket could not be set up.
    Listener(std::io::Error),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            BindError::Listener(e) => write!(f, "cannot set up the listening socket: {e}"),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BindError::Bind(_, e) | BindError::Listener(e) => Some(e),
        }
    }
}

/// A bound server. The broadcast clock of every channel starts when it is bound.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    epoch: Instant,
}

impl Server {
    /// Binds the listening socket (port 0 picks a free port; see [`Server::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<Server, BindError> {
        let listener = TcpListener::bind(addr).map_err(|e| BindError::Bind(addr, e))?;
        let addr = listener.local_addr().map_err(BindError::Listener)?;
        listener
            .set_nonblocking(true)
            .map_err(BindError::Listener)?;
        Ok(Server {
            listener,
            addr,
            epoch: Instant::now(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is set, then waits for every connection to finish (each notices the
    /// flag within about 100 ms).
    pub fn run(&self, sim: &Simulator, stop: &StopFlag) {
        let active = AtomicUsize::new(0);
        let context = Context {
            sim,
            addr: self.addr,
            epoch: self.epoch,
            stop,
        };
        std::thread::scope(|scope| {
            while !stop.is_set() {
                let (conn, peer) = match self.listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        if e.kind() != ErrorKind::WouldBlock {
                            log::warn!("accept failed: {e}");
                        }
                        std::thread::sleep(IO_TIMEOUT);
                        continue;
                    }
                };
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    log::warn!("{peer}: refused, {MAX_CONNECTIONS} connections already open");
                    if prepare(&conn, false) {
                        device_error(conn, DeviceError::SYSTEM_BUSY);
                    }
                    continue;
                }
                let slot = Slot::take(&active);
                let context = &context;
                let spawned = std::thread::Builder::new()
                    .name(format!("sim {peer}"))
                    .spawn_scoped(scope, move || {
                        let _slot = slot;
                        context.serve(conn, peer);
                    });
                if let Err(e) = spawned {
                    log::warn!("{peer}: cannot start a thread: {e}");
                }
            }
        });
    }
}

/// One of the [`MAX_CONNECTIONS`] connection slots, given back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(active: &'a AtomicUsize) -> Slot<'a> {
        active.fetch_add(1, Ordering::Relaxed);
        Slot(active)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every connection thread shares.
struct Context<'a> {
    sim: &'a Simulator,
    addr: SocketAddr,
    epoch: Instant,
    stop: &'a StopFlag,
}

/// Why a request head was not served.
#[derive(Debug, PartialEq, Eq)]
pub enum BadRequest {
    /// The client left, was too slow, or the server is stopping: nothing to answer.
    Gone,
    /// Malformed or too long: 400.
    Malformed,
    /// A method other than GET: 405.
    Method,
}

/// How a stream ended.
#[derive(Debug)]
enum End {
    Stopped,
    Duration,
    CloseFault,
    ClientLeft,
    SlowClient,
}

impl Context<'_> {
    fn serve(&self, mut conn: TcpStream, peer: SocketAddr) {
        if !prepare(&conn, true) {
            return;
        }
        let target = match read_head(&mut conn, self.stop) {
            Ok(target) => target,
            Err(BadRequest::Gone) => return,
            Err(BadRequest::Malformed) => return respond(conn, 400, &[], b"Bad Request\n"),
            Err(BadRequest::Method) => {
                return respond(conn, 405, &[("Allow", "GET")], b"Method Not Allowed\n")
            }
        };
        log::debug!("{peer}: GET {target}");
        // Documents name the address the client reached (the listen address may be 0.0.0.0).
        let local = conn.local_addr().unwrap_or(self.addr);
        let json = [("Content-Type", "application/json")];
        match Route::parse(&target) {
            None => respond(conn, 400, &[], b"Bad Request\n"),
            Some(Route::NotFound) => respond(conn, 404, &[], b"Not Found\n"),
            Some(Route::Discover) => {
                respond(conn, 200, &json, self.sim.discover_json(local).as_bytes())
            }
            Some(Route::Lineup) => {
                respond(conn, 200, &json, self.sim.lineup_json(local).as_bytes())
            }
            Some(Route::Status) => respond(conn, 200, &json, self.sim.status_json().as_bytes()),
            Some(Route::Stream {
                tuner,
                channel,
                duration_s,
            }) => match self.sim.tune(tuner, &channel, peer.ip()) {
                Err(error) => {
                    log::info!("{peer}: {target}: {}", error.header_value());
                    device_error(conn, error);
                }
                Ok(tuned) => self.stream(conn, peer, tuned, duration_s.map(Duration::from_secs)),
            },
        }
    }

    /// Sends the live broadcast of the tuned channel until the duration, a fault, the client or
    /// the stop flag ends it. The tuner is freed before the connection is closed.
    fn stream(
        &self,
        mut conn: TcpStream,
        peer: SocketAddr,
        tuned: Tuned<'_>,
        limit: Option<Duration>,
    ) {
        let (channel, faults, resource) = (tuned.channel(), tuned.faults(), tuned.resource());
        let head = format!(
            "HTTP/1.1 200 OK\r\nServer: ec-node-tuner-sim\r\nContent-Type: video/mpeg\r\n\
             Cache-Control: no-cache\r\nConnection: close\r\nX-HDHomeRun-Resource: {resource}\r\n\r\n"
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.set_nonblocking(true).is_err() {
            return;
        }
        log::info!(
            "{resource}: {} to {peer} (duration {}, faults {faults})",
            channel.guide,
            limit.map_or("none".into(), |d| format!("{} s", d.as_secs())),
        );
        let broadcast = &channel.broadcast;
        let started = Instant::now();
        let first = broadcast.live_packet(started.duration_since(self.epoch));
        let mut next = first;
        let mut bursts = 0u32;
        let mut out = Vec::with_capacity(BATCH_PACKETS * PACKET_SIZE + GARBAGE_BYTES);
        let mut packet = [0u8; PACKET_SIZE];
        let end = loop {
            let elapsed = started.elapsed();
            if self.stop.is_set() {
                break End::Stopped;
            }
            if limit.is_some_and(|limit| elapsed >= limit) {
                break End::Duration;
            }
            if faults.closes_at(elapsed) {
                break End::CloseFault;
            }
            let mut behind = false;
            if faults.sends_at(elapsed) {
                let live = broadcast.live_packet(self.epoch.elapsed());
                while next < live && out.len() < BATCH_PACKETS * PACKET_SIZE {
                    if !faults.drops(next - first) {
                        broadcast.packet(next, &mut packet);
                        out.extend_from_slice(&packet);
                    }
                    next += 1;
                }
                behind = next < live;
                if faults.garbage_due(elapsed, bursts) {
                    out.extend_from_slice(&GARBAGE);
                    bursts = bursts.saturating_add(1);
                }
            }
            if out.is_empty() {
                if client_left(&mut conn) {
                    break End::ClientLeft;
                }
            } else if let Err(end) = send(&mut conn, &out, self.stop) {
                break end;
            }
            out.clear();
            if !behind {
                std::thread::sleep(TICK);
            }
        };
        log::info!(
            "{resource}: {} to {peer} ended after {:.1} s: {end:?}",
            channel.guide,
            started.elapsed().as_secs_f64()
        );
        drop(tuned); // the tuner is free before the client sees the end
        match end {
            End::Duration => close(conn),
            End::CloseFault => {
                let _ = conn.shutdown(Shutdown::Both);
            }
            End::Stopped | End::ClientLeft | End::SlowClient => {}
        }
    }
}

/// Puts an accepted socket in blocking mode with short timeouts; false if the socket is unusable.
fn prepare(conn: &TcpStream, nodelay: bool) -> bool {
    let ready = conn.set_nonblocking(false).is_ok()
        && conn.set_read_timeout(Some(IO_TIMEOUT)).is_ok()
        && conn.set_write_timeout(Some(IO_TIMEOUT)).is_ok();
    if nodelay {
        let _ = conn.set_nodelay(true);
    }
    ready
}

/// Reads the request head (at most [`MAX_HEAD`] bytes) and returns the request target.
fn read_head(conn: &mut TcpStream, stop: &StopFlag) -> Result<String, BadRequest> {
    let mut buf = [0u8; MAX_HEAD];
    let mut len = 0usize;
    let deadline = Instant::now() + HEAD_DEADLINE;
    loop {
        let scan_from = len.saturating_sub(3);
        match conn.read(&mut buf[len..]) {
            Ok(0) => return Err(BadRequest::Gone),
            Ok(n) => len += n,
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(BadRequest::Gone),
        }
        if let Some(end) = buf[scan_from..len]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            return parse_request_head(&buf[..scan_from + end]);
        }
        if len == MAX_HEAD {
            return Err(BadRequest::Malformed);
        }
        if stop.is_set() || Instant::now() > deadline {
            return Err(BadRequest::Gone);
        }
    }
}

/// Checks a request head (without its final blank line) and returns the GET target, a token of
/// visible ASCII starting with `/`. Total on any bytes (fuzzed: target `sim_request`).
pub fn parse_request_head(head: &[u8]) -> Result<String, BadRequest> {
    let head = std::str::from_utf8(head).map_err(|_| BadRequest::Malformed)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let [method, target, version] = request_line
        .split(' ')
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|_| BadRequest::Malformed)?;
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    if !token(method) || !token(target) || !target.starts_with('/') {
        return Err(BadRequest::Malformed);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(BadRequest::Malformed);
    }
    for line in lines {
        match line.split_once(':') {
            Some((name, _)) if token(name) => {}
            _ => return Err(BadRequest::Malformed),
        }
    }
    if method != "GET" {
        return Err(BadRequest::Method);
    }
    Ok(target.to_string())
}

/// Sends a whole response with a body, then closes.
fn respond(mut conn: TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: ec-node-tuner-sim\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_ok() && conn.write_all(body).is_ok() {
        close(conn);
    }
}

/// Answers with a device error: its HTTP status and `X-HDHomeRun-Error`.
fn device_error(conn: TcpStream, error: DeviceError) {
    let value = error.header_value();
    respond(
        conn,
        error.http_status(),
        &[("X-HDHomeRun-Error", &value)],
        format!("{value}\n").as_bytes(),
    );
}

/// Ends the response, then reads briefly what the client may still send, so the close is a FIN
/// the client sees after all the data rather than a reset that could discard it.
fn close(mut conn: TcpStream) {
    let _ = conn.shutdown(Shutdown::Write);
    let _ = conn.set_nonblocking(false);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match conn.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket, waiting for a slow client up to a limit.
fn send(conn: &mut TcpStream, mut bytes: &[u8], stop: &StopFlag) -> Result<(), End> {
    let mut stuck_since = None;
    while !bytes.is_empty() {
        match conn.write(bytes) {
            Ok(0) => return Err(End::ClientLeft),
            Ok(n) => {
                bytes = &bytes[n..];
                stuck_since = None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.is_set() {
                    return Err(End::Stopped);
                }
                if stuck_since.get_or_insert_with(Instant::now).elapsed() > SLOW_CLIENT {
                    return Err(End::SlowClient);
                }
                std::thread::sleep(TICK);
            }
            Err(_) => return Err(End::ClientLeft),
        }
    }
    Ok(())
}

/// Whether the client closed its side (reads and discards anything it sent).
fn client_left(conn: &mut TcpStream) -> bool {
    let mut sink = [0u8; 512];
    match conn.read(&mut sink) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !(e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        let ok = |head: &str| parse_request_head(head.as_bytes());
        assert_eq!(
            ok("GET /auto/v5.1?duration=3 HTTP/1.1\r\nHost: x\r\nUser-Agent: t"),
            Ok("/auto/v5.1?duration=3".into())
        );
        assert_eq!(ok("GET / HTTP/1.0"), Ok("/".into()));
        assert_eq!(ok("POST / HTTP/1.1"), Err(BadRequest::Method));
        assert_eq!(ok("HEAD / HTTP/1.1\r\nHost: x"), Err(BadRequest::Method));
        for bad in [
            "",
            "GET",
            "GET /",
            "GET  / HTTP/1.1",
            "GET x HTTP/1.1",
            "GET / HTTP/2",
            "GET / HTTP/1.1 extra",
            "GET / HTTP/1.1\r\nno colon",
            "GET / HTTP/1.1\r\n: empty name",
            "POST / HTTP/1.1\r\nbad header",
        ] {
            assert_eq!(ok(bad), Err(BadRequest::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse_request_head(b"GET /\xff HTTP/1.1"),
            Err(BadRequest::Malformed)
        );
    }
}
