//! The HTTP/1.1 GET that a live stream arrives by (a tuner's `/auto/v…`, a plain `http://` URL),
//! read straight into the capture ring in large reads.
//!
//! Why not the HTTP client crate the node uses for JSON documents: its body reader goes through an
//! 8 KiB buffer, so a 19.39 Mb/s stream costs about 300 reads a second where one read per
//! gathered burst will do, and that was most of a publisher's CPU. This module owns only what a
//! streaming GET needs: the request, the response head ([`parse_head`]: status, `Content-Length`,
//! `Transfer-Encoding: chunked`, the HDHomeRun error header), and the body framing (length, chunked
//! — decoded in place by [`Dechunker`] — or until close). The parsers are sans-I/O, total and
//! fuzzed (`fuzz/fuzz_targets/http_response.rs`); the socket is a plain blocking `TcpStream` whose
//! read timeout is the stall detector. No redirects, no TLS, no keep-alive.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The longest chunk-size line accepted (hex digits, extensions, CRLF).
const MAX_SIZE_LINE: usize = 256;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not `http://HOST[:PORT][/PATH]`.
    Url(String),
    /// No connection could be made.
    Connect(String),
    /// The server sent nothing for the read timeout before the end of the head.
    Timeout,
    /// The response head or the chunk framing is malformed.
    Malformed(&'static str),
    /// The connection failed while reading the head.
    Io(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Url(why) => write!(f, "bad URL: {why}"),
            HttpError::Connect(why) => write!(f, "{why}"),
            HttpError::Timeout => write!(f, "no response in time"),
            HttpError::Malformed(what) => write!(f, "malformed HTTP response: {what}"),
            HttpError::Io(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// An `http://` URL split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 80).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl HttpUrl {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]`.
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let bad = |why: &str| HttpError::Url(format!("{url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_string()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return Err(bad("no usable host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None => 80,
        };
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The `Host` header value.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            80 => host,
            port => format!("{host}:{port}"),
        }
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The `X-HDHomeRun-Error` header, if present.
    pub device_error: Option<String>,
    /// The body framing.
    pub framing: Framing,
}

/// Parses a response head from the start of `buf`: `Ok(None)` while the blank line has not
/// arrived, else the head and its length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::Malformed("head longer than 16 KiB"))
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(HttpError::Malformed("head longer than 16 KiB"));
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::Malformed("not text"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not an HTTP/1.x status line"));
    }
    let status = words
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or(HttpError::Malformed("bad status code"))?;
    let mut head = Head {
        status,
        device_error: None,
        framing: Framing::Close,
    };
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header without ':'"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(HttpError::Malformed("unsupported Transfer-Encoding"));
            }
            head.framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("x-hdhomerun-error") {
            head.device_error = Some(value.to_string());
        }
    }
    if head.framing != Framing::Chunked {
        if let Some(n) = length {
            head.framing = Framing::Length(n);
        }
    }
    Ok(Some((head, end + 4)))
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line: the value so far, its digit count, the line's length so far,
    /// and whether an extension (`;…`) began.
    Size {
        value: u64,
        digits: usize,
        len: usize,
        in_ext: bool,
    },
    /// The size line's CR came; expecting LF.
    SizeLf { value: u64, digits: usize },
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: expecting CR (false) or LF (true).
    DataEnd(bool),
    /// After the last (zero) chunk: skipping trailer lines (this one's length so far, whether
    /// its CR came) until an empty line.
    Trailer { line: usize, cr: bool },
    /// The body ended.
    Done,
}

const SIZE_START: ChunkState = ChunkState::Size {
    value: 0,
    digits: 0,
    len: 0,
    in_ext: false,
};

/// Decodes `Transfer-Encoding: chunked` in place: raw bytes in, payload bytes moved to the front.
#[derive(Debug, Clone)]
pub struct Dechunker {
    state: ChunkState,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker { state: SIZE_START }
    }
}

impl Dechunker {
    /// Whether the last chunk and its trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes the raw bytes in `buf`, moving the payload to its front; returns the payload
    /// length. Bytes after the end of the body are ignored.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<usize, HttpError> {
        let mut kept = 0;
        let mut at = 0;
        while at < buf.len() {
            match &mut self.state {
                ChunkState::Data(left) => {
                    let n = (*left).min((buf.len() - at) as u64) as usize;
                    buf.copy_within(at..at + n, kept);
                    kept += n;
                    at += n;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd(false);
                    }
                }
                ChunkState::Done => break,
                _ => {
                    self.state = next_state(self.state, buf[at])?;
                    at += 1;
                }
            }
        }
        Ok(kept)
    }
}

/// The framing state after byte `b` (outside chunk data).
fn next_state(state: ChunkState, b: u8) -> Result<ChunkState, HttpError> {
    use ChunkState::*;
    let malformed = HttpError::Malformed;
    Ok(match state {
        Size { len, .. } if len >= MAX_SIZE_LINE => {
            return Err(malformed("chunk-size line too long"))
        }
        Size { value, digits, .. } if b == b'\r' => SizeLf { value, digits },
        Size {
            value,
            digits,
            len,
            in_ext,
        } if in_ext || (digits > 0 && matches!(b, b';' | b' ' | b'\t')) => Size {
            value,
            digits,
            len: len + 1,
            in_ext: true,
        },
        Size {
            value, digits, len, ..
        } => {
            let digit = (b as char)
                .to_digit(16)
                .ok_or(malformed("bad chunk-size digit"))?;
            if digits >= 15 {
                return Err(malformed("chunk size too large"));
            }
            Size {
                value: value * 16 + u64::from(digit),
                digits: digits + 1,
                len: len + 1,
                in_ext: false,
            }
        }
        SizeLf { digits: 0, .. } => return Err(malformed("chunk size without digits")),
        SizeLf { value: 0, .. } if b == b'\n' => Trailer { line: 0, cr: false },
        SizeLf { value, .. } if b == b'\n' => Data(value),
        SizeLf { .. } => return Err(malformed("chunk-size line without LF")),
        DataEnd(false) if b == b'\r' => DataEnd(true),
        DataEnd(true) if b == b'\n' => SIZE_START,
        DataEnd(_) => return Err(malformed("chunk data without CRLF")),
        Trailer { line, .. } if line >= MAX_HEAD => return Err(malformed("trailers too long")),
        Trailer { line: 0, cr: true } if b == b'\n' => Done,
        Trailer { cr: true, .. } if b == b'\n' => Trailer { line: 0, cr: false },
        Trailer { cr: true, .. } => return Err(malformed("trailer line without LF")),
        Trailer { line, cr: false } if b == b'\r' => Trailer { line, cr: true },
        Trailer { line, cr: false } => Trailer {
            line: line + 1,
            cr: false,
        },
        Data(_) | Done => state,
    })
}

/// An open response body.
pub struct Body {
    socket: TcpStream,
    /// Body bytes that arrived with the head, not yet handed out.
    early: Vec<u8>,
    framing: Framing,
    /// For `Length`: bytes still to come.
    left: u64,
    dechunker: Dechunker,
}

/// Sends `GET` for `url` and reads the response head. The read timeout applies to every read,
/// the head's and the body's: it is what tells a stalled stream.
pub fn get(
    url: &HttpUrl,
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<(Head, Body), HttpError> {
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| HttpError::Connect(format!("cannot resolve {}: {e}", url.host)))?;
    let mut last = format!("{} resolves to no address", url.host);
    let mut socket = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, connect_timeout) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let mut socket = socket.ok_or(HttpError::Connect(last))?;
    let io = |e: std::io::Error| HttpError::Io(e.to_string());
    socket.set_read_timeout(Some(read_timeout)).map_err(io)?;
    let _ = socket.set_nodelay(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ec-node\r\nConnection: close\r\n\r\n",
        url.target,
        url.authority()
    );
    socket.write_all(request.as_bytes()).map_err(io)?;
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    let (head, head_len) = loop {
        if let Some(found) = parse_head(&buf[..filled])? {
            break found;
        }
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match socket.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(HttpError::Malformed(
                    "connection closed before the head ended",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HttpError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    };
    buf.truncate(filled);
    buf.drain(..head_len);
    let left = match head.framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let body = Body {
        socket,
        early: buf,
        framing: head.framing,
        left,
        dechunker: Dechunker::default(),
    };
    Ok((head, body))
}

impl Body {
    /// From now on a read waits until `bytes` have arrived, or until `wait` has passed with at
    /// least one byte (then it returns what there is; with none it fails with `WouldBlock` or
    /// `TimedOut`). The kernel wakes the reader once per `bytes` instead of per segment, and no
    /// timer runs while data flows faster than `bytes` per `wait`.
    pub fn gather(&mut self, bytes: usize, wait: Duration) -> std::io::Result<()> {
        set_receive_low_water(&self.socket, bytes)?;
        self.socket.set_read_timeout(Some(wait))
    }
}

/// `SO_RCVLOWAT`: the bytes a blocking read waits for (Linux honours it for TCP reads and wakes
/// the reader only then).
#[cfg(target_os = "linux")]
fn set_receive_low_water(socket: &TcpStream, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the socket is open for the duration of the call and `value` outlives it; the length
    // passed is the size of the value pointed to.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere a read returns as soon as anything arrived; only the wait applies.
#[cfg(not(target_os = "linux"))]
fn set_receive_low_water(_socket: &TcpStream, _bytes: usize) -> std::io::Result<()> {
    Ok(())
}

impl Read for Body {
    /// Reads body bytes into `out` (0 at the end of the body); raw bytes are read straight into
    /// `out` and, when chunked, decoded there.
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let limit = match self.framing {
                Framing::Length(_) => self.left.min(out.len() as u64) as usize,
                _ => out.len(),
            };
            if limit == 0 || self.dechunker.is_done() {
                return Ok(0);
            }
            let raw = if self.early.is_empty() {
                self.socket.read(&mut out[..limit])?
            } else {
                let n = self.early.len().min(limit);
                out[..n].copy_from_slice(&self.early[..n]);
                self.early.drain(..n);
                n
            };
            if raw == 0 {
                return match self.framing {
                    Framing::Close => Ok(0),
                    _ => Err(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed the connection before the end of the body",
                    )),
                };
            }
            let n = match self.framing {
                Framing::Chunked => self
                    .dechunker
                    .decode(&mut out[..raw])
                    .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e.to_string()))?,
                Framing::Length(_) => {
                    self.left -= raw as u64;
                    raw
                }
                Framing::Close => raw,
            };
            // A read of only framing bytes gives no payload: read on, never report a false end.
            if n > 0 || self.dechunker.is_done() {
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = HttpUrl::parse("http://10.0.0.5:5004/auto/v5.1?duration=30").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("10.0.0.5", 5004));
        assert_eq!(u.target, "/auto/v5.1?duration=30");
        let u = HttpUrl::parse("http://[::1]/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority()),
            ("::1", 80, "[::1]".into())
        );
        assert_eq!(HttpUrl::parse("http://tuner?a=1").unwrap().target, "/?a=1");
        for bad in [
            "https://x/",
            "http://",
            "http://x:99999/",
            "http://[::1/",
            "ftp://x",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn heads_give_status_framing_and_the_device_error() {
        let raw =
            b"HTTP/1.1 503 Service Unavailable\r\nX-HDHomeRun-Error: 805 All Tuners In Use\r\n\
                    Content-Length: 0\r\n\r\nrest";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(head.status, 503);
        assert_eq!(head.device_error.as_deref(), Some("805 All Tuners In Use"));
        assert_eq!(head.framing, Framing::Length(0));
        assert_eq!(&raw[len..], b"rest");
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
        assert_eq!(
            parse_head(chunked).unwrap().unwrap().0.framing,
            Framing::Chunked
        );
        let close = b"HTTP/1.0 200 OK\r\nContent-Type: video/mpeg\r\n\r\n";
        assert_eq!(
            parse_head(close).unwrap().unwrap().0.framing,
            Framing::Close
        );
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n").unwrap(), None);
        for bad in [
            &b"SPDY 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn chunked_bodies_decode_in_place_whatever_the_read_sizes() {
        let raw = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\nafter";
        for step in [1, 2, 3, 7, raw.len()] {
            let mut d = Dechunker::default();
            let mut payload = Vec::new();
            for piece in raw.chunks(step) {
                let mut buf = piece.to_vec();
                let n = d.decode(&mut buf).unwrap();
                payload.extend_from_slice(&buf[..n]);
            }
            assert_eq!(
                payload, b"helloabcdefghijklmnopqrstuvwxyz",
                "read size {step}"
            );
            assert!(d.is_done());
        }
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"5\rX",
            b"ffffffffffffffff\r\n",
        ] {
            let mut buf = bad.to_vec();
            assert!(Dechunker::default().decode(&mut buf).is_err(), "{bad:?}");
        }
    }

    /// Bytes below the low-water mark still come out once the wait is over; a wait with nothing
    /// is a timeout error, not a hang; the end of a `Connection: close` body is a clean end.
    #[test]
    fn a_gathering_read_returns_what_came_once_the_wait_is_over() {
        use std::io::Write;
        use std::sync::mpsc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = HttpUrl::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (send_body, body_due) = mpsc::channel::<&'static [u8]>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).unwrap();
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
            for part in body_due {
                conn.write_all(part).unwrap();
            }
        });
        let (head, mut body) = get(&url, Duration::from_secs(2), Duration::from_secs(2)).unwrap();
        assert_eq!((head.status, head.framing), (200, Framing::Close));
        body.gather(32 * 1024, Duration::from_millis(20)).unwrap();
        let mut buf = [0u8; 64];
        let timed_out =
            |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
        let empty = body.read(&mut buf).unwrap_err();
        assert!(timed_out(&empty), "{empty}");
        send_body.send(b"hello").unwrap();
        let n = loop {
            match body.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if timed_out(&e) => continue,
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[..n], b"hello");
        drop(send_body);
        server.join().unwrap();
        assert_eq!(body.read(&mut buf).unwrap(), 0);
    }
}
