//! One QUIC endpoint: a thread that owns a UDP socket, its quiche connections and their MoQ
//! sessions, and the handle the rest of the node uses to talk to it.
//!
//! The thread is the only code that touches the socket, a `quiche::Connection` or a `Session`;
//! it reads the clock for quiche and passes `now` into the sessions. Application logic reaches
//! the sessions in two ways:
//!
//! - A [`Handler`] runs on the endpoint thread itself, beside the sessions it serves: it sees each
//!   session event first and answers it at once, takes work handed over by value through the
//!   endpoint's bounded [`Feed`] channel (a new group to serve, say), and has a timer. No round
//!   trip and no closure per item: this is how a node serves tracks to any number of sessions.
//! - The handle sends a closure to run on one session ([`Endpoint::call`], for the occasional
//!   request such as a SUBSCRIBE) and reads the [`NetEvent`]s the handler passes on from another
//!   bounded channel.
//!
//! After queueing a command or work the sender sends a one-byte "poke" datagram from a loopback
//! socket to the endpoint's own port, so the loop wakes at once instead of at its read timeout.
//!
//! # The loop
//!
//! 1. Run queued commands, then hand the handler its queued work and due timer. 2. For every
//!    connection: once established (and, for a pinned dial,
//!    once the peer's certificate carries the pinned node key) start its MoQ session; feed it
//!    readable stream bytes, resets, STOP_SENDING and datagrams; drain its outputs; write its
//!    bytes, buffered writes first (control stream first), then new writes while less than
//!    [`PENDING_LIMIT`] bytes wait on flow control; flush packets with `send`, batched for UDP
//!    GSO (see `net::udp`), paced when the settings ask (`net::pacing`, `net::tuning`). Session
//!    events go to the handler between reading and writing, so its answers leave in the same
//!    pass. 3. Drop closed connections, reporting why. 4. Sleep in `ppoll` on the socket until
//!    the earliest of quiche's, the pacer's, the sessions' and the handler's deadlines (at least
//!    1 ms, at most 1 s), then take the queued datagrams or run the timers.
//!
//! Memory is bounded: events, commands and work go through bounded channels (a full event channel
//! stalls the loop, and QUIC flow control then pushes back on the peer), and at most
//! [`PENDING_LIMIT`] bytes per connection are pulled from a session before QUIC accepts them;
//! what the session still holds it may drop under its own slow-subscriber policy.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::crypto::{NodeId, NodeKey};
use crate::moq::session::{Config as SessionConfig, Event, Output, QuicStreamId, Role, Session};
use crate::moq::wire::Version;
use crate::moq::{MoqError, SessionCode};
use crate::net::addr::Target;
use crate::net::identity::{self, PeerCheck, ALPN};
use crate::net::pacing::PacketPacer;
use crate::net::tuning::Tuning;
use crate::net::udp::{self, Transmit};
use crate::net::NetError;

/// Bytes per connection pulled from a session but not yet accepted by QUIC (flow control).
pub const PENDING_LIMIT: usize = 1 << 20;

/// Largest single write pulled from a session.
const WRITE_CHUNK: usize = 64 * 1024;

/// Socket buffer size asked for (the kernel may cap it at `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 8 << 20;

/// How long a graceful shutdown waits between GOAWAY and CONNECTION_CLOSE.
const GOAWAY_GRACE: Duration = Duration::from_millis(300);

/// QUIC CRYPTO_ERROR carrying TLS alert 42 (bad_certificate): the close a pinned dial sends
/// when the peer's key is not the pinned one. (quiche does not send an application close from
/// this state, just after the handshake and before the client's Finished went out.)
const BAD_CERTIFICATE: u64 = 0x100 + 42;

/// PINGs a connection sends per idle timeout. After an outage each side must hear the other
/// before its idle timer runs out, and a side whose congestion window is full of packets lost
/// in the outage sends nothing but its backed-off probes, so the other side's next PING is
/// what revives it: an outage up to the idle timeout less one PING interval is ridden through
/// (9 s of 10 s). With a third (3.3 s) an 8 s blackout in tests/network.rs ended the connection
/// in 4 of 14 runs, when no PING happened to fall in its last 2 s.
const KEEP_ALIVES_PER_IDLE_TIMEOUT: u32 = 10;

/// Connections a listener holds at once; further Initials are ignored.
pub const MAX_CONNECTIONS: usize = 4096;

/// Datagrams taken in one go after the loop wakes.
const RECV_BATCH: usize = 64;

/// Capacity of the command and event channels.
const CHANNEL_CAPACITY: usize = 1024;

/// An endpoint-local handle for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the endpoint tells the application.
#[derive(Debug)]
pub enum NetEvent {
    /// A connection's handshake (and identity check, for a pinned dial) is done and its MoQ
    /// session has started.
    Connected {
        /// The connection.
        conn: ConnId,
        /// The peer's address.
        peer: SocketAddr,
        /// The node key the peer's certificate carries, if it is an Ed25519 certificate.
        node: Option<NodeId>,
    },
    /// An event of a connection's MoQ session (its end is reported as `Disconnected`).
    Session {
        /// The connection.
        conn: ConnId,
        /// The session's event.
        event: Event,
    },
    /// The connection ended; nothing more comes for it.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// Why.
        why: NetError,
    },
}

/// Endpoint settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// MoQ session settings for every connection (PATH/AUTHORITY are set from a relay URL).
    pub session: SessionConfig,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// A dialing endpoint stays up when its connection ends, so [`Endpoint::redial`] can dial
    /// the same peer again (a relay link that reconnects); otherwise it ends with its
    /// connection.
    pub redials: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session: SessionConfig::default(),
            // Every connection PINGs every tenth of it, so only a dead or cut-off peer idles
            // out: noticed within 10 s, yet an outage of up to 9 s is ridden through.
            idle_timeout: Duration::from_secs(10),
            redials: false,
        }
    }
}

/// Application logic that runs on the endpoint thread, beside the sessions it serves.
///
/// The loop hands it every session event before the application thread sees any (it returns
/// the ones that thread should see too), the work queued on the endpoint's [`Feed`], and its
/// timer; its session commands leave in the same pass. It must not block: it runs between
/// packets.
pub trait Handler: Send + 'static {
    /// What the application hands over by value through the endpoint's [`Feed`].
    type Work: Send + 'static;

    /// A session started on `conn` (its `Connected` event follows on the channel).
    fn on_connected(&mut self, _conn: ConnId, _sessions: &mut Sessions<'_>) {}

    /// An event of the session on `conn`; returns it if the application thread should see it.
    fn on_event(
        &mut self,
        conn: ConnId,
        event: Event,
        sessions: &mut Sessions<'_>,
    ) -> Option<Event>;

    /// The connection `conn` ended (its `Disconnected` event follows on the channel).
    fn on_disconnected(&mut self, _conn: ConnId) {}

    /// Work taken from the feed.
    fn on_work(&mut self, work: Self::Work, sessions: &mut Sessions<'_>);

    /// When [`Handler::on_timeout`] next wants to run.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Runs what is due at `now`.
    fn on_timeout(&mut self, _now: Instant, _sessions: &mut Sessions<'_>) {}
}

/// The handler of an endpoint whose application does everything on its own thread: every
/// event is passed on, and there is no work to take.
pub struct PassOn;

impl Handler for PassOn {
    type Work = std::convert::Infallible;

    fn on_event(&mut self, _: ConnId, event: Event, _: &mut Sessions<'_>) -> Option<Event> {
        Some(event)
    }

    fn on_work(&mut self, work: Self::Work, _: &mut Sessions<'_>) {
        match work {}
    }
}

/// The sessions of an endpoint, as its [`Handler`] sees them: only those that have started.
pub struct Sessions<'a> {
    conns: &'a mut BTreeMap<ConnId, Conn>,
}

impl Sessions<'_> {
    /// The session on `conn`, if it has one.
    pub fn get(&mut self, conn: ConnId) -> Option<&mut Session> {
        self.conns.get_mut(&conn).and_then(|c| c.session.as_mut())
    }

    /// Every started session, in connection id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut Session)> {
        self.conns
            .iter_mut()
            .filter_map(|(id, c)| c.session.as_mut().map(|s| (*id, s)))
    }
}

/// Hands work to an endpoint's [`Handler`] by value: a bounded channel plus a wake-up, so the
/// sender never waits for the endpoint thread to run it. Cheap to clone.
pub struct Feed<W> {
    work: Sender<W>,
    waker: Arc<Waker>,
}

impl<W> Clone for Feed<W> {
    fn clone(&self) -> Self {
        Feed {
            work: self.work.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<W> Feed<W> {
    /// Queues `work` for the handler, waiting while the channel is full (the endpoint thread
    /// is behind); `Err(Stopped)` once the endpoint has ended.
    pub fn send(&self, work: W) -> Result<(), NetError> {
        self.work.send(work).map_err(|_| NetError::Stopped)?;
        self.waker.wake();
        Ok(())
    }
}

type SessionOp = Box<dyn FnOnce(&mut Session) + Send>;

enum Command {
    /// Run a closure on a connection's session.
    Session { conn: ConnId, op: SessionOp },
    /// Close one connection (MoQ code and reason).
    Close {
        conn: ConnId,
        code: SessionCode,
        reason: String,
    },
    /// Dial the dialing endpoint's peer again; the new connection's id is sent back.
    Redial(Sender<Result<ConnId, NetError>>),
    /// GOAWAY everywhere, then close everything and end the thread.
    Shutdown,
}

/// Wakes the endpoint loop: a loopback datagram to its port.
struct Waker {
    socket: UdpSocket,
}

impl Waker {
    fn wake(&self) {
        // A lost poke only delays the command to the next read timeout (at most 1 s).
        let _ = self.socket.send(&[0]);
    }
}

/// The handle of a running endpoint. Dropping it shuts the endpoint down gracefully.
pub struct Endpoint {
    commands: Sender<Command>,
    events: Receiver<NetEvent>,
    backlog: VecDeque<NetEvent>,
    waker: Arc<Waker>,
    local: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Listens on `addr` with the node's identity; every accepted connection gets a server
    /// session, and every event reaches the handle.
    pub fn listen(addr: SocketAddr, key: &NodeKey, settings: Settings) -> Result<Self, NetError> {
        Endpoint::listen_with(addr, key, settings, PassOn).map(|(ep, _)| ep)
    }

    /// Listens as [`Endpoint::listen`] does, with `handler` on the endpoint thread; returns the
    /// handle and the handler's feed.
    pub fn listen_with<H: Handler>(
        addr: SocketAddr,
        key: &NodeKey,
        settings: Settings,
        handler: H,
    ) -> Result<(Self, Feed<H::Work>), NetError> {
        let ctx = identity::server_context(key)?;
        // A listener on a loopback address only ever has loopback peers.
        let quic = quic_config(ctx, &settings, addr.ip().is_loopback())?;
        let socket = bind(addr)?;
        Endpoint::start(socket, quic, settings, Mode::Server, None, handler)
    }

    /// Dials `target` from an ephemeral port; the peer is checked as `check` says. Returns the
    /// handle and the id of the (single) connection; every event reaches the handle.
    pub fn dial(
        target: &Target,
        check: PeerCheck,
        settings: Settings,
    ) -> Result<(Self, ConnId), NetError> {
        Endpoint::dial_with(target, check, settings, PassOn).map(|(ep, conn, _)| (ep, conn))
    }

    /// Dials as [`Endpoint::dial`] does, with `handler` on the endpoint thread; returns the
    /// handle, the connection and the handler's feed.
    pub fn dial_with<H: Handler>(
        target: &Target,
        check: PeerCheck,
        mut settings: Settings,
        handler: H,
    ) -> Result<(Self, ConnId, Feed<H::Work>), NetError> {
        let peer = target.resolve()?;
        if let Target::Relay(url) = target {
            settings.session.path = (!url.path.is_empty()).then(|| url.path.as_bytes().to_vec());
            settings.session.authority = Some(url.authority().into_bytes());
        }
        let ctx = identity::client_context(&check)?;
        let quic = quic_config(ctx, &settings, peer.ip().is_loopback())?;
        let unspecified: IpAddr = match peer {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let socket = bind(SocketAddr::new(unspecified, 0))?;
        // quiche checks a DNS server name against the certificate; IP SANs are checked by the
        // verify callback, and node certificates carry no names at all.
        let (host, _) = target.host_port();
        let server_name = match &check {
            PeerCheck::WebPki { .. } if host.parse::<IpAddr>().is_err() => Some(host.to_owned()),
            _ => None,
        };
        let dial = Dial {
            peer,
            server_name,
            pin: match check {
                PeerCheck::Pinned(id) => Some(id),
                _ => None,
            },
        };
        let (ep, feed) =
            Endpoint::start(socket, quic, settings, Mode::Client, Some(dial), handler)?;
        Ok((ep, ConnId(0), feed))
    }

    fn start<H: Handler>(
        socket: UdpSocket,
        quic: quiche::Config,
        settings: Settings,
        mode: Mode,
        dial: Option<Dial>,
        handler: H,
    ) -> Result<(Self, Feed<H::Work>), NetError> {
        let local = socket.local_addr().map_err(NetError::io("local address"))?;
        let poke_to = SocketAddr::new(
            match local.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
                ip => ip,
            },
            local.port(),
        );
        let waker_socket = UdpSocket::bind(SocketAddr::new(
            match poke_to {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            },
            0,
        ))
        .map_err(NetError::io("bind waker"))?;
        waker_socket
            .connect(poke_to)
            .map_err(NetError::io("connect waker"))?;
        let waker_addr = waker_socket
            .local_addr()
            .map_err(NetError::io("waker address"))?;
        let (cmd_tx, cmd_rx) = bounded(CHANNEL_CAPACITY);
        let (ev_tx, ev_rx) = bounded(CHANNEL_CAPACITY);
        let (work_tx, work_rx) = bounded(CHANNEL_CAPACITY);
        let mut lp = Loop {
            socket,
            tx: Transmit::new(),
            local,
            waker_addr,
            quic,
            settings,
            mode,
            conns: BTreeMap::new(),
            routes: HashMap::new(),
            next_conn: 0,
            commands: cmd_rx,
            events: ev_tx,
            handler,
            work: work_rx,
            shutdown_at: None,
            dial: dial.clone(),
        };
        if let Some(dial) = dial {
            lp.connect(dial)?;
        }
        let thread = std::thread::Builder::new()
            .name(format!("quic {local}"))
            .spawn(move || lp.run())
            .map_err(NetError::io("spawn endpoint thread"))?;
        let waker = Arc::new(Waker {
            socket: waker_socket,
        });
        let feed = Feed {
            work: work_tx,
            waker: waker.clone(),
        };
        let ep = Endpoint {
            commands: cmd_tx,
            events: ev_rx,
            backlog: VecDeque::new(),
            waker,
            local,
            thread: Some(thread),
        };
        Ok((ep, feed))
    }

    /// The bound address (for a listener on port 0, the port actually picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Runs `f` on the session of `conn` inside the endpoint thread and returns its result.
    /// Events arriving meanwhile are kept for [`Endpoint::next_event`].
    pub fn call<R, F>(&mut self, conn: ConnId, f: F) -> Result<R, NetError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Session) -> R + Send + 'static,
    {
        let (tx, rx) = bounded(1);
        let op: SessionOp = Box::new(move |s| {
            // The caller waits on `rx`; if it gave up, the result is simply dropped.
            let _ = tx.send(f(s));
        });
        self.send(Command::Session { conn, op })?;
        self.reply(rx)?.ok_or(NetError::NoConnection(conn))
    }

    /// Waits for the endpoint thread's reply on `rx` (`None`: it dropped the command), keeping
    /// the events that arrive meanwhile for [`Endpoint::next_event`].
    fn reply<R>(&mut self, rx: Receiver<R>) -> Result<Option<R>, NetError> {
        loop {
            select! {
                recv(rx) -> r => return Ok(r.ok()),
                recv(self.events) -> ev => match ev {
                    Ok(ev) => self.backlog.push_back(ev),
                    Err(_) => return Err(NetError::Stopped),
                },
            }
        }
    }

    /// Dials the peer of a dialing endpoint made with [`Settings::redials`] again, and returns
    /// the new connection (a dialing endpoint has one connection at a time: call this once the
    /// previous one is `Disconnected`).
    pub fn redial(&mut self) -> Result<ConnId, NetError> {
        let (tx, rx) = bounded(1);
        self.send(Command::Redial(tx))?;
        self.reply(rx)?.unwrap_or(Err(NetError::Stopped))
    }

    /// The next event, waiting at most `timeout`; `None` if nothing came in time.
    /// `Err(Stopped)` once the endpoint thread has ended and every event was read.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<NetEvent>, NetError> {
        if let Some(ev) = self.backlog.pop_front() {
            return Ok(Some(ev));
        }
        match self.events.recv_timeout(timeout) {
            Ok(ev) => Ok(Some(ev)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Ok(None),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(NetError::Stopped),
        }
    }

    /// Blocks until one of `endpoints` has an event, `also` (if given) is ready, or `timeout`
    /// passes, without taking anything: a loop that serves several endpoints and a pipeline
    /// channel sleeps on all of them at once instead of polling each in turn.
    pub fn wait_any<T>(endpoints: &[&Endpoint], also: Option<&Receiver<T>>, timeout: Duration) {
        if endpoints.iter().any(|ep| !ep.backlog.is_empty()) {
            return;
        }
        let mut ready = crossbeam_channel::Select::new();
        for ep in endpoints {
            ready.recv(&ep.events);
        }
        if let Some(rx) = also {
            ready.recv(rx);
        }
        let _ = ready.ready_timeout(timeout);
    }

    /// Closes one connection with a MoQ session code (its `Disconnected` event follows).
    pub fn close(&mut self, conn: ConnId, code: SessionCode, reason: &str) -> Result<(), NetError> {
        self.send(Command::Close {
            conn,
            code,
            reason: reason.to_owned(),
        })
    }

    /// Graceful shutdown: GOAWAY on every session, a short grace period, CONNECTION_CLOSE, and
    /// the thread ends. Returns once it has.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if self.send(Command::Shutdown).is_ok() {
                // Keep draining so the loop never blocks on a full event channel while closing.
                while self.events.recv().is_ok() {}
            }
            // A panic in the endpoint thread is a bug already reported on stderr.
            let _ = thread.join();
        }
    }

    fn send(&self, cmd: Command) -> Result<(), NetError> {
        self.commands.send(cmd).map_err(|_| NetError::Stopped)?;
        self.waker.wake();
        Ok(())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Server,
    Client,
}

#[derive(Clone)]
struct Dial {
    peer: SocketAddr,
    server_name: Option<String>,
    pin: Option<NodeId>,
}

/// Bytes pulled from a session that QUIC has not accepted yet: `data[sent..]`, then FIN if set.
struct PendingWrite {
    data: Vec<u8>,
    sent: usize,
    fin: bool,
}

impl PendingWrite {
    fn len(&self) -> usize {
        self.data.len() - self.sent
    }
}

struct Conn {
    quic: quiche::Connection,
    peer: SocketAddr,
    cids: Vec<Vec<u8>>,
    session: Option<Session>,
    pin: Option<NodeId>,
    pending: BTreeMap<u64, PendingWrite>,
    pending_bytes: usize,
    /// Streams we have written on and not finished (their priority is set).
    open: HashSet<u64>,
    /// Why it ended, once known before quiche's own reason (identity, session close).
    end: Option<NetError>,
    /// When to send the next keep-alive PING.
    ping_at: Instant,
    /// The packet quiche stamped for later, if any.
    pacer: PacketPacer,
}

struct Loop<H: Handler> {
    socket: UdpSocket,
    tx: Transmit,
    local: SocketAddr,
    waker_addr: SocketAddr,
    quic: quiche::Config,
    settings: Settings,
    mode: Mode,
    conns: BTreeMap<ConnId, Conn>,
    routes: HashMap<Vec<u8>, ConnId>,
    next_conn: u64,
    commands: Receiver<Command>,
    events: Sender<NetEvent>,
    handler: H,
    work: Receiver<H::Work>,
    shutdown_at: Option<Instant>,
    /// What a dialing endpoint dialled, to dial again.
    dial: Option<Dial>,
}

/// What a pass over the connections found, in order, for the handler and the channel.
enum Found {
    Connected {
        conn: ConnId,
        peer: SocketAddr,
        node: Option<NodeId>,
    },
    Event(ConnId, Event),
}

fn bind(addr: SocketAddr) -> Result<UdpSocket, NetError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(NetError::io("create UDP socket"))?;
    // Larger buffers absorb bursts between loop iterations; the kernel may cap them.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&addr.into())
        .map_err(NetError::io("bind UDP socket"))?;
    Ok(s.into())
}

/// QUIC settings ([`Tuning::from_env`]); `loopback`: every path is the loopback interface.
fn quic_config(
    ctx: boring::ssl::SslContextBuilder,
    settings: &Settings,
    loopback: bool,
) -> Result<quiche::Config, NetError> {
    let tuning = Tuning::from_env()?;
    let q = |what: &'static str| {
        move |e: quiche::Error| NetError::Tls {
            what,
            detail: e.to_string(),
        }
    };
    let mut c = quiche::Config::with_boring_ssl_ctx_builder(quiche::PROTOCOL_VERSION, ctx)
        .map_err(q("QUIC config"))?;
    c.set_application_protos(&[ALPN]).map_err(q("ALPN"))?;
    tuning.apply(&mut c, settings.idle_timeout, loopback);
    Ok(c)
}

/// Queues one packet built earlier (a paced one) in `tx`.
fn send_one(
    socket: &UdpSocket,
    tx: &mut Transmit,
    packet: &[u8],
    to: SocketAddr,
    max: usize,
    quantum: usize,
) -> std::io::Result<()> {
    let space = tx.space(socket, max.max(packet.len()), quantum)?;
    space[..packet.len()].copy_from_slice(packet);
    tx.commit(socket, packet.len(), to)
}

fn random_cid() -> Result<[u8; quiche::MAX_CONN_ID_LEN], NetError> {
    let mut cid = [0u8; quiche::MAX_CONN_ID_LEN];
    getrandom::fill(&mut cid).map_err(|e| NetError::Io {
        what: "random connection id",
        detail: e.to_string(),
    })?;
    Ok(cid)
}

impl<H: Handler> Loop<H> {
    fn connect(&mut self, dial: Dial) -> Result<ConnId, NetError> {
        let scid = random_cid()?;
        let quic = quiche::connect(
            dial.server_name.as_deref(),
            &quiche::ConnectionId::from_ref(&scid),
            self.local,
            dial.peer,
            &mut self.quic,
        )
        .map_err(|e| NetError::Handshake {
            detail: e.to_string(),
        })?;
        Ok(self.add_conn(quic, dial.peer, vec![scid.to_vec()], dial.pin))
    }

    fn add_conn(
        &mut self,
        quic: quiche::Connection,
        peer: SocketAddr,
        cids: Vec<Vec<u8>>,
        pin: Option<NodeId>,
    ) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        for cid in &cids {
            self.routes.insert(cid.clone(), id);
        }
        self.conns.insert(
            id,
            Conn {
                quic,
                peer,
                cids,
                session: None,
                pin,
                pending: BTreeMap::new(),
                pending_bytes: 0,
                open: HashSet::new(),
                end: None,
                ping_at: Instant::now(),
                pacer: PacketPacer::default(),
            },
        );
        id
    }

    fn run(mut self) {
        let mut buf = vec![0u8; 65535];
        loop {
            if !self.run_commands() {
                return;
            }
            self.feed_handler();
            let now = Instant::now();
            let mut found = Vec::new();
            for (id, conn) in self.conns.iter_mut() {
                conn.pump_in(*id, now, &self.settings, self.mode, &mut found);
            }
            // The handler answers before anything is written, so its answers leave in this pass.
            if self.dispatch(&mut found).is_err() {
                return; // the application dropped the event receiver
            }
            let mut ended = Vec::new();
            let ping_every = self.settings.idle_timeout / KEEP_ALIVES_PER_IDLE_TIMEOUT;
            for (id, conn) in self.conns.iter_mut() {
                conn.keep_alive(now, ping_every);
                conn.pump_out(*id, &mut found);
                conn.flush(&self.socket, &mut self.tx);
                if conn.quic.is_closed() {
                    ended.push(*id);
                }
            }
            // Events that writing produced: their answers leave in the next pass, at once.
            let again = match self.dispatch(&mut found) {
                Ok(dispatched) => dispatched,
                Err(()) => return,
            };
            for id in ended {
                if let Some(conn) = self.conns.remove(&id) {
                    for cid in &conn.cids {
                        self.routes.remove(cid);
                    }
                    self.handler.on_disconnected(id);
                    let why = conn.end_reason();
                    if self
                        .events
                        .send(NetEvent::Disconnected { conn: id, why })
                        .is_err()
                    {
                        return;
                    }
                }
            }
            if let Some(at) = self.shutdown_at {
                if self.conns.is_empty() {
                    return;
                }
                if Instant::now() >= at {
                    for conn in self.conns.values_mut() {
                        let _ = conn
                            .quic
                            .close(true, SessionCode::NoError.code(), b"shutdown");
                        conn.flush(&self.socket, &mut self.tx);
                    }
                }
            }
            if self.mode == Mode::Client
                && !self.settings.redials
                && self.conns.is_empty()
                && self.shutdown_at.is_none()
            {
                // A dialing endpoint has one connection; once it is gone, wait for the handle.
                self.shutdown_at = Some(Instant::now());
            }
            if !again {
                self.wait_and_receive(&mut buf);
            }
        }
    }

    /// Hands the handler its queued work (at most one channel's worth, so I/O interleaves) and
    /// runs its timer if due.
    fn feed_handler(&mut self) {
        let mut sessions = Sessions {
            conns: &mut self.conns,
        };
        for _ in 0..CHANNEL_CAPACITY {
            let Ok(work) = self.work.try_recv() else {
                break;
            };
            self.handler.on_work(work, &mut sessions);
        }
        let now = Instant::now();
        if self.handler.poll_timeout().is_some_and(|t| t <= now) {
            self.handler.on_timeout(now, &mut sessions);
        }
    }

    /// Gives what a pass found to the handler, and what it passes on to the application.
    /// Returns whether there was anything; `Err` when the application dropped the receiver.
    fn dispatch(&mut self, found: &mut Vec<Found>) -> Result<bool, ()> {
        let any = !found.is_empty();
        let mut sessions = Sessions {
            conns: &mut self.conns,
        };
        for item in found.drain(..) {
            let passed = match item {
                Found::Connected { conn, peer, node } => {
                    self.handler.on_connected(conn, &mut sessions);
                    Some(NetEvent::Connected { conn, peer, node })
                }
                Found::Event(conn, event) => self
                    .handler
                    .on_event(conn, event, &mut sessions)
                    .map(|event| NetEvent::Session { conn, event }),
            };
            if let Some(ev) = passed {
                self.events.send(ev).map_err(|_| ())?;
            }
        }
        Ok(any)
    }

    /// Runs queued commands; false when the handle is gone.
    fn run_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Session { conn, op }) => {
                    if let Some(s) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) {
                        op(s);
                    }
                }
                Ok(Command::Close { conn, code, reason }) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        match c.session.as_mut() {
                            Some(s) => s.close(code, &reason),
                            None => {
                                let _ = c.quic.close(true, code.code(), reason.as_bytes());
                            }
                        }
                    }
                }
                Ok(Command::Redial(reply)) => {
                    let dialled = match (&self.dial, self.shutdown_at) {
                        (Some(dial), None) => self.connect(dial.clone()),
                        _ => Err(NetError::Stopped),
                    };
                    // The caller waits on `reply`; if it gave up, the connection idles out.
                    let _ = reply.send(dialled);
                }
                Ok(Command::Shutdown) => {
                    if self.shutdown_at.is_none() {
                        for c in self.conns.values_mut() {
                            if let Some(s) = c.session.as_mut() {
                                // Already sent, or the session is closed: nothing to announce.
                                let _ = s.goaway(b"");
                            }
                        }
                        self.shutdown_at = Some(Instant::now() + GOAWAY_GRACE);
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // The handle is gone without a shutdown: close at once.
                    for c in self.conns.values_mut() {
                        let _ =
                            c.quic
                                .close(true, SessionCode::NoError.code(), b"endpoint dropped");
                        c.flush(&self.socket, &mut self.tx);
                    }
                    return false;
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let quic = self.conns.values().filter_map(|c| c.quic.timeout_instant());
        let paced = self.conns.values().filter_map(|c| c.pacer.deadline());
        let sessions = self
            .conns
            .values()
            .filter_map(|c| c.session.as_ref().and_then(Session::poll_timeout));
        quic.chain(paced)
            .chain(sessions)
            .chain(self.handler.poll_timeout())
            .chain(self.shutdown_at)
            .min()
    }

    fn wait_and_receive(&mut self, buf: &mut [u8]) {
        let now = Instant::now();
        let wait = self
            .next_deadline()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        if !self.commands.is_empty() || !self.work.is_empty() {
            return;
        }
        match udp::wait_readable(&self.socket, wait) {
            // Take everything queued before processing, so a burst costs one pass over the
            // connections instead of one per packet.
            Ok(true) => {
                if self.socket.set_nonblocking(true).is_ok() {
                    for _ in 0..RECV_BATCH {
                        if !self.receive(buf) {
                            break;
                        }
                    }
                    let _ = self.socket.set_nonblocking(false);
                }
            }
            Ok(false) => {}
            Err(e) => log::warn!("waiting on UDP socket {}: {e}", self.local),
        }
        let now = Instant::now();
        for c in self.conns.values_mut() {
            if c.quic.timeout_instant().is_some_and(|t| t <= now) {
                c.quic.on_timeout();
            }
            if let Some(s) = c.session.as_mut() {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
        }
    }

    /// Receives and routes one datagram; false when none came (timeout or nothing queued).
    fn receive(&mut self, buf: &mut [u8]) -> bool {
        match self.socket.recv_from(buf) {
            Ok((len, from)) => {
                self.on_datagram(&mut buf[..len], from);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) => {
                log::warn!("UDP receive on {}: {e}", self.local);
                false
            }
        }
    }

    fn on_datagram(&mut self, pkt: &mut [u8], from: SocketAddr) {
        if from == self.waker_addr {
            return; // a poke: the loop runs the commands next
        }
        let info = quiche::RecvInfo {
            from,
            to: self.local,
        };
        let id = match self.mode {
            // By the connection id we chose; else the newest connection (a redialled one
            // while the previous one still drains).
            Mode::Client => quiche::Header::from_slice(pkt, quiche::MAX_CONN_ID_LEN)
                .ok()
                .and_then(|hdr| self.routes.get(hdr.dcid.as_ref()).copied())
                .or_else(|| self.conns.keys().next_back().copied()),
            Mode::Server => match self.route(pkt, from) {
                Some(id) => Some(id),
                None => return,
            },
        };
        if let Some(conn) = id.and_then(|id| self.conns.get_mut(&id)) {
            if let Err(e) = conn.quic.recv(pkt, info) {
                log::debug!("QUIC packet from {from} refused: {e}");
            }
        }
    }

    /// The connection a server-side packet belongs to, accepting a new one for an Initial.
    fn route(&mut self, pkt: &mut [u8], from: SocketAddr) -> Option<ConnId> {
        let hdr = quiche::Header::from_slice(pkt, quiche::MAX_CONN_ID_LEN).ok()?;
        if let Some(id) = self.routes.get(hdr.dcid.as_ref()) {
            return Some(*id);
        }
        if hdr.ty != quiche::Type::Initial
            || self.shutdown_at.is_some()
            || self.conns.len() >= MAX_CONNECTIONS
        {
            return None;
        }
        let mut out = [0u8; 1500];
        if !quiche::version_is_supported(hdr.version) {
            if let Ok(n) = quiche::negotiate_version(&hdr.scid, &hdr.dcid, &mut out) {
                let _ = self.socket.send_to(&out[..n], from);
            }
            return None;
        }
        let scid = random_cid().ok()?;
        let quic = quiche::accept(
            &quiche::ConnectionId::from_ref(&scid),
            None,
            self.local,
            from,
            &mut self.quic,
        )
        .ok()?;
        let cids = vec![scid.to_vec(), hdr.dcid.to_vec()];
        Some(self.add_conn(quic, from, cids, None))
    }
}

impl Conn {
    /// Starts the session once the handshake allows, feeds it what QUIC received and takes
    /// its outputs; what it found (a started session, events) goes to `found`.
    fn pump_in(
        &mut self,
        id: ConnId,
        now: Instant,
        settings: &Settings,
        mode: Mode,
        found: &mut Vec<Found>,
    ) {
        if self.session.is_none() {
            if !self.quic.is_established() || self.quic.is_closed() || self.end.is_some() {
                return;
            }
            let node = self
                .quic
                .peer_cert()
                .and_then(identity::certificate_node_id);
            if let Some(expected) = self.pin {
                if node != Some(expected) {
                    // Refuse before any MoQ byte is sent: no session is ever created.
                    let _ = self
                        .quic
                        .close(false, BAD_CERTIFICATE, b"node identity mismatch");
                    self.end = Some(NetError::IdentityMismatch {
                        expected,
                        got: node,
                    });
                    return;
                }
            }
            let role = match mode {
                Mode::Server => Role::Server,
                Mode::Client => Role::Client,
            };
            self.session = Some(Session::new(
                role,
                Version::Draft16,
                settings.session.clone(),
                now,
            ));
            found.push(Found::Connected {
                conn: id,
                peer: self.peer,
                node,
            });
        }
        self.read(now);
        self.drain_outputs(id, found);
    }

    /// PINGs the peer every `every` (the loop wakes at least once a second): a quiet session
    /// (a relay link nobody subscribes through) stays up, and a peer that died without a word
    /// is noticed at the idle timeout.
    fn keep_alive(&mut self, now: Instant, every: Duration) {
        if self.quic.is_established() && now >= self.ping_at {
            // Fails only on a closed connection, which needs no PING.
            let _ = self.quic.send_ack_eliciting();
            self.ping_at = now + every;
        }
    }

    /// Writes what the session has for QUIC: buffered writes, then new ones; writing can
    /// produce outputs again.
    fn pump_out(&mut self, id: ConnId, found: &mut Vec<Found>) {
        for _ in 0..2 {
            self.write_pending();
            self.write_new();
            self.drain_outputs(id, found);
        }
    }

    fn read(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut buf = [0u8; 16 * 1024];
        let readable: Vec<u64> = self.quic.readable().collect();
        for s in readable {
            loop {
                match self.quic.stream_recv(s, &mut buf) {
                    Ok((n, fin)) => {
                        // A peer error closes the session; its outputs say how.
                        if session
                            .handle_stream_data(now, QuicStreamId(s), &buf[..n], fin)
                            .is_err()
                        {
                            return;
                        }
                        if fin {
                            break;
                        }
                    }
                    Err(quiche::Error::StreamReset(code)) => {
                        let _ = session.handle_stream_reset(QuicStreamId(s), code);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        while let Ok(n) = self.quic.dgram_recv(&mut buf) {
            if session.handle_datagram(&buf[..n]).is_err() {
                return;
            }
        }
        let writable: Vec<u64> = self.quic.writable().collect();
        for s in writable {
            if let Err(quiche::Error::StreamStopped(code)) = self.quic.stream_writable(s, 0) {
                self.stopped(s, code);
            }
        }
    }

    /// The peer sent STOP_SENDING on a stream we write: drop its buffered bytes and tell the
    /// session (which resets the stream).
    fn stopped(&mut self, s: u64, code: u64) {
        self.forget_stream(s);
        if let Some(session) = self.session.as_mut() {
            let _ = session.handle_stop_sending(QuicStreamId(s), code);
        }
    }

    fn forget_stream(&mut self, s: u64) {
        if let Some(p) = self.pending.remove(&s) {
            self.pending_bytes -= p.len();
        }
        self.open.remove(&s);
    }

    fn drain_outputs(&mut self, id: ConnId, found: &mut Vec<Found>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let mut forget = Vec::new();
        while let Some(out) = session.poll_output() {
            match out {
                Output::Event(Event::Closed(e)) => {
                    self.end.get_or_insert(NetError::Session(e));
                }
                Output::Event(event) => found.push(Found::Event(id, event)),
                Output::ResetStream { stream, code } => {
                    let _ = self
                        .quic
                        .stream_shutdown(stream.0, quiche::Shutdown::Write, code);
                    forget.push(stream.0);
                }
                Output::StopSending { stream, code } => {
                    let _ = self
                        .quic
                        .stream_shutdown(stream.0, quiche::Shutdown::Read, code);
                }
                Output::CloseConnection { code, reason } => {
                    let _ = self.quic.close(true, code, reason.as_bytes());
                }
            }
        }
        for s in forget {
            self.forget_stream(s);
        }
    }

    /// Retries buffered writes, lowest stream id (the control stream) first.
    fn write_pending(&mut self) {
        let streams: Vec<u64> = self.pending.keys().copied().collect();
        for s in streams {
            let Some(p) = self.pending.get_mut(&s) else {
                continue;
            };
            // Without copying: a blocked stream is retried every pass.
            let fin = p.fin;
            match self.quic.stream_send(s, &p.data[p.sent..], fin) {
                Ok(n) => {
                    p.sent += n;
                    self.pending_bytes -= n;
                    if p.len() == 0 {
                        self.pending.remove(&s);
                        if fin {
                            self.open.remove(&s);
                        }
                    } else if p.sent > p.data.len() / 2 {
                        p.data.drain(..p.sent);
                        p.sent = 0;
                    }
                }
                Err(quiche::Error::Done) => {}
                Err(quiche::Error::StreamStopped(code)) => self.stopped(s, code),
                Err(_) => self.forget_stream(s),
            }
        }
    }

    /// Pulls new writes from the session while little is buffered.
    fn write_new(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while self.pending_bytes < PENDING_LIMIT && !self.quic.is_closed() {
            let Some(w) = session.poll_write(WRITE_CHUNK) else {
                break;
            };
            let s = w.stream.0;
            if self.open.insert(s) {
                // MoQ priorities map onto quiche urgencies (lower first); control is 0.
                let _ = self
                    .quic
                    .stream_priority(s, w.priority.urgency, w.priority.incremental);
            }
            // `None`: nothing went out (flow control, or queued behind buffered bytes).
            let sent = if self.pending.contains_key(&s) {
                None
            } else {
                match self.quic.stream_send(s, &w.data, w.fin) {
                    Ok(n) => Some(n),
                    Err(quiche::Error::Done) => None,
                    Err(quiche::Error::StreamStopped(code)) => {
                        self.open.remove(&s);
                        let _ = session.handle_stop_sending(QuicStreamId(s), code);
                        continue;
                    }
                    Err(e) => {
                        log::debug!("stream {s}: write failed: {e}");
                        self.open.remove(&s);
                        continue;
                    }
                }
            };
            if sent == Some(w.data.len()) {
                if w.fin {
                    self.open.remove(&s);
                }
                continue;
            }
            let written = sent.unwrap_or(0);
            let rest = &w.data[written..];
            let p = self.pending.entry(s).or_insert(PendingWrite {
                data: Vec::new(),
                sent: 0,
                fin: false,
            });
            p.data.extend_from_slice(rest);
            p.fin |= w.fin;
            self.pending_bytes += rest.len();
        }
    }

    /// Sends every packet quiche has ready, in batches of at most its send quantum (the burst
    /// its congestion controller allows; see [`Transmit`]), each no earlier than its pacing
    /// time allows: the first one stamped later than that is held (see [`PacketPacer`]) and ends the
    /// flush. A closing connection sends everything at once.
    fn flush(&mut self, socket: &UdpSocket, tx: &mut Transmit) {
        let now = Instant::now();
        let closing = self.quic.local_error().is_some();
        let max = self.quic.max_send_udp_payload_size();
        let quantum = self.quic.send_quantum();
        if self.pacer.is_holding() {
            let Some((packet, to)) = self.pacer.release(now, closing) else {
                return;
            };
            if let Err(e) = send_one(socket, tx, packet, to, max, quantum) {
                log::debug!("UDP send to {to}: {e}");
            }
        }
        loop {
            let space = match tx.space(socket, max, quantum) {
                Ok(space) => space,
                Err(e) => {
                    log::debug!("UDP send to {}: {e}", self.peer);
                    break;
                }
            };
            match self.quic.send(space) {
                Ok((n, info)) if !closing && PacketPacer::is_early(info.at, now) => {
                    self.pacer.hold(&space[..n], info.to, info.at);
                    break;
                }
                Ok((n, info)) => {
                    if let Err(e) = tx.commit(socket, n, info.to) {
                        log::debug!("UDP send to {}: {e}", info.to);
                        break;
                    }
                }
                Err(quiche::Error::Done) => break,
                Err(e) => {
                    log::debug!("QUIC send: {e}");
                    let _ = self.quic.close(false, 0x1, b"send failed");
                    break;
                }
            }
        }
        if let Err(e) = tx.flush(socket) {
            log::debug!("UDP send to {}: {e}", self.peer);
        }
    }

    fn end_reason(&self) -> NetError {
        if let Some(e) = &self.end {
            return e.clone();
        }
        if self.quic.is_timed_out() {
            return NetError::IdleTimeout;
        }
        let (by_peer, err) = match (self.quic.peer_error(), self.quic.local_error()) {
            (Some(e), _) => (true, e),
            (None, Some(e)) => (false, e),
            (None, None) => return NetError::IdleTimeout,
        };
        let reason = String::from_utf8_lossy(&err.reason).into_owned();
        if err.is_app {
            NetError::Session(MoqError::Closed {
                by_peer,
                code: err.error_code,
                reason,
            })
        } else if !self.quic.is_established() && self.session.is_none() {
            NetError::Handshake {
                detail: format!("error {:#x} {reason}", err.error_code),
            }
        } else {
            NetError::Transport {
                by_peer,
                code: err.error_code,
                reason,
            }
        }
    }
}
