//! The node as an HDHomeRun on the LAN's port 65001: it answers discover requests (UDP) and
//! the read-only gets of the control protocol (TCP) that `hdhomerun_config` and media servers
//! use to find a tuner and read its model, version and tuner status.
//!
//! This module owns the two sockets and their threads: one UDP thread, and one TCP accept
//! thread with a short-lived thread per control connection (at most [`MAX_CONTROL_CONNECTIONS`]).
//! What is answered is decided by [`crate::hdhr::protocol`] from a [`DeviceView`]; this file
//! only moves frames. Replies go to the asker's address only: the responder never broadcasts.
//! Every blocking call has a ~100 ms timeout, so both threads notice the stop flag (or a drop of
//! the [`Discovery`]) within about 100 ms.
//!
//! A UDP socket bound to a unicast address does not receive broadcast datagrams (Linux), so a
//! node that media servers should find by broadcast starts this on the unspecified address.

use crate::hdhr::device::Identity;
use crate::hdhr::protocol::{self, DeviceInfo, Message, PORT};
use crate::http::{self, BindError, Listener};
use crate::stop::StopFlag;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most control connections served at once; more are closed at once.
pub const MAX_CONTROL_CONNECTIONS: usize = 16;
/// How long a control connection may stay without a complete request.
pub const CONTROL_IDLE: Duration = Duration::from_secs(10);
/// The poll interval of the UDP socket.
const POLL: Duration = Duration::from_millis(100);

/// What the device answers with; `serve` implements it over its hub and configuration.
pub trait DeviceView: Send + Sync {
    /// Device id (with a valid check digit), tuner count, model, firmware version, device auth.
    fn identity(&self) -> Identity;
    /// The HTTP base URL a client at `asker` should use, e.g. "http://127.0.0.1:5004".
    fn base_url(&self, asker: IpAddr) -> String;
    /// `/tunerN/status` text as a device gives it, e.g.
    /// "ch=none lock=none ss=0 snq=0 seq=0 bps=0 pps=0", or None past the tuner count.
    fn tuner_status(&self, tuner: u32) -> Option<String>;
}

/// The running responder; dropping it (or [`Discovery::join`]) stops both threads.
pub struct Discovery {
    udp: SocketAddr,
    halt: StopFlag,
    threads: Vec<JoinHandle<()>>,
}

impl Discovery {
    /// Binds UDP and TCP `ip:65001` and starts answering; both threads end when `stop` is set
    /// or the value is dropped.
    pub fn start(
        ip: IpAddr,
        device: Arc<dyn DeviceView>,
        stop: &StopFlag,
    ) -> Result<Discovery, BindError> {
        let addr = SocketAddr::new(ip, PORT);
        let udp_socket = UdpSocket::bind(addr).map_err(|e| BindError::Bind(addr, e))?;
        udp_socket
            .set_read_timeout(Some(POLL))
            .map_err(BindError::Listener)?;
        let udp = udp_socket.local_addr().map_err(BindError::Listener)?;
        let listener = Listener::bind(addr)?;
        let tcp = listener.local_addr();

        // `halt` is this responder's own flag: set by a drop, or by the UDP thread once the
        // caller's `stop` is set, so the TCP side (which polls one flag) follows either.
        let halt = StopFlag::default();
        let mut threads = Vec::new();
        let udp_thread = {
            let (device, stop, halt) = (device.clone(), stop.clone(), halt.clone());
            std::thread::Builder::new()
                .name("hdhr discovery".into())
                .spawn(move || {
                    answer_datagrams(&udp_socket, device.as_ref(), &stop, &halt);
                    halt.set();
                })
                .map_err(BindError::Listener)?
        };
        threads.push(udp_thread);
        let tcp_thread = {
            let halt = halt.clone();
            std::thread::Builder::new()
                .name("hdhr control".into())
                .spawn(move || {
                    let serve = |conn: TcpStream, peer: SocketAddr| {
                        serve_control(conn, peer, device.as_ref(), &halt)
                    };
                    listener.run(
                        MAX_CONTROL_CONNECTIONS,
                        &halt,
                        &serve,
                        &|_busy: TcpStream| {},
                    );
                })
        };
        match tcp_thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                let failed = Discovery { udp, halt, threads };
                drop(failed);
                return Err(BindError::Listener(e));
            }
        }
        log::info!("hdhomerun discovery on udp {udp}, control on tcp {tcp}");
        Ok(Discovery { udp, halt, threads })
    }

    /// The bound UDP (discovery) address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// Stops both threads and waits for them (and every control connection) to end.
    pub fn join(self) {
        drop(self);
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.halt.set();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The device as the protocol sees it, for an asker at `asker`.
fn device_info(device: &dyn DeviceView, asker: IpAddr) -> DeviceInfo {
    let identity = device.identity();
    let base_url = device.base_url(asker);
    DeviceInfo {
        device_id: identity.id.value(),
        tuner_count: u8::try_from(identity.tuners).unwrap_or(u8::MAX),
        lineup_url: if base_url.is_empty() {
            String::new()
        } else {
            format!("{base_url}/lineup.json")
        },
        base_url,
        device_auth: identity.auth,
        model: identity.firmware_name,
        hardware_model: identity.model,
        firmware_version: identity.firmware_version,
    }
}

/// Whether a datagram's source can be answered: a unicast address with a port.
fn answerable(peer: SocketAddr) -> bool {
    let unicast = match peer.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    };
    unicast && peer.port() != 0
}

/// The UDP loop: one reply per matching discover request, to its sender.
fn answer_datagrams(socket: &UdpSocket, device: &dyn DeviceView, stop: &StopFlag, halt: &StopFlag) {
    let mut buf = [0u8; protocol::MAX_FRAME + 1];
    while !stop.is_set() && !halt.is_set() {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => {
                log::debug!("discovery: receive failed: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        };
        if !answerable(peer) {
            continue;
        }
        let request = match protocol::decode(&buf[..n]) {
            Ok(Message::DiscoverRequest(request)) => request,
            Ok(other) => {
                log::debug!("discovery: {peer} sent packet type {:#06x}", other.kind());
                continue;
            }
            Err(e) => {
                log::debug!("discovery: {peer}: {e}");
                continue;
            }
        };
        let Some(reply) = protocol::answer_discover(&request, &device_info(device, peer.ip()))
        else {
            continue;
        };
        match protocol::encode(&Message::DiscoverReply(reply)) {
            Ok(frame) => {
                if let Err(e) = socket.send_to(&frame, peer) {
                    log::debug!("discovery: reply to {peer} failed: {e}");
                }
            }
            Err(e) => log::warn!("discovery: cannot encode the reply: {e}"),
        }
    }
}

/// One control connection: get requests answered in order until the client leaves, idles for
/// [`CONTROL_IDLE`], sends something other than a get/set, or the responder stops.
fn serve_control(mut conn: TcpStream, peer: SocketAddr, device: &dyn DeviceView, halt: &StopFlag) {
    if !http::prepare(&conn, true) {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(protocol::MAX_FRAME);
    let mut chunk = [0u8; protocol::MAX_FRAME];
    let mut last = Instant::now();
    while !halt.is_set() && last.elapsed() < CONTROL_IDLE {
        // Answer every whole frame already read.
        loop {
            let len = match protocol::frame_len(&buf) {
                Ok(Some(len)) if buf.len() >= len => len,
                Ok(_) => break,
                Err(e) => {
                    log::debug!("control: {peer}: {e}");
                    return;
                }
            };
            let frame: Vec<u8> = buf.drain(..len).collect();
            last = Instant::now();
            let request = match protocol::decode(&frame) {
                Ok(Message::GetSetRequest(request)) => request,
                Ok(other) => {
                    log::debug!("control: {peer} sent packet type {:#06x}", other.kind());
                    return;
                }
                Err(e) => {
                    log::debug!("control: {peer}: {e}");
                    return;
                }
            };
            let info = device_info(device, peer.ip());
            let status = |tuner: u32| device.tuner_status(tuner);
            let reply = protocol::answer_getset(&request, &|name: &str| {
                protocol::device_variable(name, &info, &status)
            });
            let frame = match protocol::encode(&Message::GetSetReply(reply)) {
                Ok(frame) => frame,
                Err(e) => {
                    log::warn!("control: cannot encode the reply: {e}");
                    return;
                }
            };
            if conn.write_all(&frame).is_err() {
                return;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
