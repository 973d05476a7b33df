//! The simulator's HTTP edge: answers GET requests from the [`Simulator`] over the node's
//! shared HTTP/1.1 edge ([`crate::http`]) and paces each stream on the broadcast clock.
//!
//! It owns the pacing of streams and the clock; it never decides what a device would answer —
//! routes, tuners, faults and documents are the simulator's, packets are the broadcast's. At most
//! [`MAX_CONNECTIONS`] connections are served at once; one request per connection.

use super::{Simulator, Tuned, TunerRoute};
use crate::hdhr::DeviceError;
use crate::http::{self, Listener, SendError};
use crate::stop::StopFlag;
use crate::ts::packet::PACKET_SIZE;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub use crate::http::BindError;

/// The most connections served at once; more get 503 with `803 System Busy`.
pub const MAX_CONNECTIONS: usize = 32;
/// The size of one `garbage-every` burst.
pub const GARBAGE_BYTES: usize = 1000;
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

/// A bound server. The broadcast clock of every channel starts when it is bound.
pub struct Server {
    listener: Listener,
    epoch: Instant,
}

impl Server {
    /// Binds the listening socket (port 0 picks a free port; see [`Server::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<Server, BindError> {
        Ok(Server {
            listener: Listener::bind(addr)?,
            epoch: Instant::now(),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Serves until `stop` is set, then waits for every connection to finish (each notices the
    /// flag within about 100 ms).
    pub fn run(&self, sim: &Simulator, stop: &StopFlag) {
        let context = Context {
            sim,
            addr: self.local_addr(),
            epoch: self.epoch,
            stop,
        };
        self.listener.run(
            MAX_CONNECTIONS,
            stop,
            &|conn, peer| context.serve(conn, peer),
            &|conn| DeviceError::SYSTEM_BUSY.respond(conn),
        );
    }
}

/// What every connection thread shares.
struct Context<'a> {
    sim: &'a Simulator,
    addr: SocketAddr,
    epoch: Instant,
    stop: &'a StopFlag,
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

impl From<SendError> for End {
    fn from(e: SendError) -> End {
        match e {
            SendError::Stopped => End::Stopped,
            SendError::ClientLeft => End::ClientLeft,
            SendError::SlowClient => End::SlowClient,
        }
    }
}

impl Context<'_> {
    fn serve(&self, conn: TcpStream, peer: SocketAddr) {
        let Some((conn, target)) = http::read_request(conn, self.stop) else {
            return;
        };
        log::debug!("{peer}: GET {target}");
        // Documents name the address the client reached (the listen address may be 0.0.0.0).
        let local = conn.local_addr().unwrap_or(self.addr);
        let json = [("Content-Type", "application/json")];
        match TunerRoute::parse(&target) {
            None => http::respond(conn, 400, &[], b"Bad Request\n"),
            Some(TunerRoute::NotFound) => http::respond(conn, 404, &[], b"Not Found\n"),
            Some(TunerRoute::Discover) => {
                http::respond(conn, 200, &json, self.sim.discover_json(local).as_bytes())
            }
            Some(TunerRoute::Lineup) => {
                http::respond(conn, 200, &json, self.sim.lineup_json(local).as_bytes())
            }
            Some(TunerRoute::Status) => {
                http::respond(conn, 200, &json, self.sim.status_json().as_bytes())
            }
            Some(TunerRoute::UnknownChannel) => {
                refuse(conn, peer, &target, DeviceError::UNKNOWN_CHANNEL)
            }
            Some(TunerRoute::Stream(request)) => match self.sim.tune(
                request.tuner,
                request.channel.as_str(),
                peer.ip(),
                self.epoch.elapsed(),
            ) {
                Err(error) => refuse(conn, peer, &target, error),
                Ok(tuned) => {
                    let limit = request.duration_s.map(Duration::from_secs);
                    self.stream(conn, peer, tuned, limit)
                }
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
        let (channel, faults, resource) =
            (tuned.channel(), tuned.faults().clone(), tuned.resource());
        let headers = [
            ("Content-Type", "video/mpeg"),
            ("X-HDHomeRun-Resource", resource.as_str()),
        ];
        if !http::start_stream(&mut conn, &headers) {
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
        let mut silent = false;
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
            let on_air = self.epoch.elapsed();
            if faults.silent_at(on_air) != silent {
                silent = !silent;
                log::info!(
                    "{resource}: {} to {peer}: signal {} at {:.1} s on air",
                    channel.guide,
                    if silent { "lost" } else { "back" },
                    on_air.as_secs_f64()
                );
            }
            if silent {
                // The packets due during a signal loss never arrive: resume at the live one.
                next = next.max(broadcast.live_packet(on_air));
            } else if faults.sends_at(elapsed) {
                let live = broadcast.live_packet(on_air);
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
                if http::client_left(&mut conn) {
                    break End::ClientLeft;
                }
            } else if let Err(e) = http::send(&mut conn, &out, self.stop, SLOW_CLIENT) {
                break e.into();
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
            End::Duration => http::close(conn),
            End::CloseFault => http::abort(conn),
            End::Stopped | End::ClientLeft | End::SlowClient => {}
        }
    }
}

/// Answers a stream request the device cannot serve with its error, as a device does.
fn refuse(conn: TcpStream, peer: SocketAddr, target: &str, error: DeviceError) {
    log::info!("{peer}: {target}: {}", error.header_value());
    error.respond(conn);
}
