//! The synchronous HTTP/1.1 edge every server of the node shares (the tuner simulator, `serve`):
//! a bounded accept loop with one thread per connection, the request head read within a size
//! and a time limit, a total parser of that head, and responses.
//!
//! It owns sockets and threads and never decides what to answer: each server passes the
//! function that serves one connection. Every blocking call has a short timeout, so every loop
//! notices the stop flag within about 100 ms; a client that sends its head too slowly (a
//! slowloris) or too much of it is dropped; one request per connection (`Connection: close`).

use crate::stop::StopFlag;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Timeout of every blocking socket call, and the accept loop's poll interval.
pub const IO_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a client may take to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long a streaming write waits between retries when the client's window is full.
const SEND_RETRY: Duration = Duration::from_millis(10);

/// Why a server could not listen. Every variant is the environment's fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum BindError {
    /// The listening socket could not be bound (address in use, not local, no permission).
    Bind(SocketAddr, std::io::Error),
    /// The bound socket could not be set up, or a thread not started.
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

/// How writing a streamed body ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The server is stopping.
    Stopped,
    /// The client closed the connection.
    ClientLeft,
    /// The client read nothing for the stall limit.
    SlowClient,
}

/// A listening socket and the connections it serves.
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr) -> Result<Listener, BindError> {
        let listener = TcpListener::bind(addr).map_err(|e| BindError::Bind(addr, e))?;
        let addr = listener.local_addr().map_err(BindError::Listener)?;
        // A blocking accept that times out (SO_RCVTIMEO applies to accept on Linux): a new
        // connection is taken at once, and the stop flag is still seen within IO_TIMEOUT.
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(BindError::Listener)?;
        Ok(Listener { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts until `stop`, serving each connection with `serve` on a thread of its own, at
    /// most `max` at once (a connection past that goes to `busy`, on the accepting thread);
    /// then waits for every connection to finish (each notices the flag within ~100 ms).
    pub fn run(
        &self,
        max: usize,
        stop: &StopFlag,
        serve: &(dyn Fn(TcpStream, SocketAddr) + Sync),
        busy: &dyn Fn(TcpStream),
    ) {
        let active = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            while !stop.is_set() {
                let (conn, peer) = match self.listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Out of file descriptors, say: wait a little instead of spinning.
                        log::warn!("accept failed: {e}");
                        std::thread::sleep(IO_TIMEOUT);
                        continue;
                    }
                };
                if active.load(Ordering::Relaxed) >= max {
                    log::warn!("{peer}: refused, {max} connections already open");
                    if prepare(&conn, false) {
                        busy(conn);
                    }
                    continue;
                }
                let slot = Slot::take(&active);
                let spawned = std::thread::Builder::new()
                    .name(format!("http {peer}"))
                    .spawn_scoped(scope, move || {
                        let _slot = slot;
                        serve(conn, peer);
                    });
                if let Err(e) = spawned {
                    log::warn!("{peer}: cannot start a thread: {e}");
                }
            }
        });
    }
}

/// One connection slot, given back when dropped.
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

/// Puts an accepted socket in blocking mode with short timeouts; false if the socket is unusable.
pub fn prepare(conn: &TcpStream, nodelay: bool) -> bool {
    let ready = conn.set_nonblocking(false).is_ok()
        && conn.set_read_timeout(Some(IO_TIMEOUT)).is_ok()
        && conn.set_write_timeout(Some(IO_TIMEOUT)).is_ok();
    if nodelay {
        let _ = conn.set_nodelay(true);
    }
    ready
}

/// Reads the request head (at most [`MAX_HEAD`] bytes, within [`HEAD_DEADLINE`]) and returns
/// the request target.
pub fn read_head(conn: &mut TcpStream, stop: &StopFlag) -> Result<String, BadRequest> {
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

/// Prepares an accepted connection and reads its request: the GET target, or `None` when the
/// client left or the request was answered already (400 malformed, 405 not a GET).
pub fn read_request(mut conn: TcpStream, stop: &StopFlag) -> Option<(TcpStream, String)> {
    if !prepare(&conn, true) {
        return None;
    }
    match read_head(&mut conn, stop) {
        Ok(target) => Some((conn, target)),
        Err(BadRequest::Gone) => None,
        Err(BadRequest::Malformed) => {
            respond(conn, 400, &[], b"Bad Request\n");
            None
        }
        Err(BadRequest::Method) => {
            respond(conn, 405, &[("Allow", "GET")], b"Method Not Allowed\n");
            None
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

/// The reason phrase of a status this edge sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    }
}

/// Sends a whole response with a body, then closes.
pub fn respond(mut conn: TcpStream, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: ec-node\r\nConnection: close\r\nContent-Length: {}\r\n",
        reason(status),
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

/// Starts a streamed 200 response of unknown length (the body ends when the connection closes)
/// and makes the socket non-blocking for [`send`]; false if the client is gone.
pub fn start_stream(conn: &mut TcpStream, headers: &[(&str, &str)]) -> bool {
    let mut head = String::from(
        "HTTP/1.1 200 OK\r\nServer: ec-node\r\nCache-Control: no-cache\r\nConnection: close\r\n",
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).is_ok() && conn.set_nonblocking(true).is_ok()
}

/// Ends the response, then reads briefly what the client may still send, so the close is a FIN
/// the client sees after all the data rather than a reset that could discard it.
pub fn close(mut conn: TcpStream) {
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

/// Aborts a streamed response (the client sees the connection end).
pub fn abort(conn: TcpStream) {
    let _ = conn.shutdown(Shutdown::Both);
}

/// Writes all of `bytes` to a non-blocking socket, waiting for a client that reads slowly up to
/// `stall` without progress.
pub fn send(
    conn: &mut TcpStream,
    mut bytes: &[u8],
    stop: &StopFlag,
    stall: Duration,
) -> Result<(), SendError> {
    let mut stuck_since = None;
    while !bytes.is_empty() {
        match conn.write(bytes) {
            Ok(0) => return Err(SendError::ClientLeft),
            Ok(n) => {
                bytes = &bytes[n..];
                stuck_since = None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.is_set() {
                    return Err(SendError::Stopped);
                }
                if stuck_since.get_or_insert_with(Instant::now).elapsed() > stall {
                    return Err(SendError::SlowClient);
                }
                std::thread::sleep(SEND_RETRY);
            }
            Err(_) => return Err(SendError::ClientLeft),
        }
    }
    Ok(())
}

/// Whether the client closed its side of a non-blocking socket (reads and discards anything it
/// sent).
pub fn client_left(conn: &mut TcpStream) -> bool {
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
