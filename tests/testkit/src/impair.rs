//! A userspace UDP impairment proxy for loopback tests: it sits between a QUIC client and a
//! server, and applies loss, delay with jitter (which reorders), duplication, a bandwidth cap
//! with a bounded drop-tail queue, and scheduled blackouts, each direction on its own.
//!
//! The kernel's `netem` qdisc is the usual tool, but it needs `CAP_NET_ADMIN` and the
//! `sch_netem` module, neither of which these machines (CI containers included) have; a
//! userspace proxy is the portable way, and it makes the impairment deterministic per seed.
//!
//! Two layers, the I/O at the edge:
//!
//! * [`Policy`] is the whole decision and never touches a socket, a clock or a thread: it is fed
//!   one datagram at a time (its direction, its length and the time it arrived, as a
//!   [`Duration`] since the start) and answers when to send it — zero, one or two times (a
//!   duplicate) — counting what it did in [`Stats`]. Random draws come from a [`SplitMix64`]
//!   per direction seeded from one seed, so the same inputs give the same answers.
//! * [`Proxy`] is the socket shell: it listens on `127.0.0.1:0`, forwards what a client sends
//!   there to the target from a socket of its own, and what comes back to the client that sent
//!   last (one that dials again from a new port takes over).
//!   Two reader threads (blocking sockets with a short read timeout) feed the policy; a sender
//!   thread sends each datagram when its time comes. Dropping the proxy stops and joins them.
//!
//! Usage: `let proxy = Proxy::start(target, Impairment { .. }.both(), seed);` then dial
//! `proxy.addr()` instead of `target`; `proxy.stop()` returns the [`Stats`]. Traffic never
//! leaves loopback; nodes that should size datagrams for a real path run with
//! `EC_NODE_UDP_PAYLOAD=1350`.

pub use crate::rng::SplitMix64;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which way a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the client (the dialler) to the target.
    Up,
    /// From the target back to the client.
    Down,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }
}

/// A bandwidth cap: a link of `bits_per_s` in front of a drop-tail queue of `queue_bytes`.
#[derive(Clone, Copy, Debug)]
pub struct Cap {
    pub bits_per_s: u64,
    /// Bytes that may wait for the link (the datagram being serialised counts); a datagram that
    /// would go over is dropped.
    pub queue_bytes: usize,
}

/// What one direction of the path does to datagrams.
#[derive(Clone, Debug, Default)]
pub struct Impairment {
    /// Probability that a datagram is lost (independent per datagram).
    pub loss: f64,
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay is `delay ± jitter`, uniform; datagrams closer together than the
    /// spread overtake each other (reordering), as with netem.
    pub jitter: Duration,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// A bandwidth cap with a bounded queue, applied before the delay.
    pub cap: Option<Cap>,
    /// Periods `(from, to)`, since the start, in which every arriving datagram is dropped.
    pub blackouts: Vec<(Duration, Duration)>,
}

impl Impairment {
    /// The same impairment both ways.
    pub fn both(&self) -> [Impairment; 2] {
        [self.clone(), self.clone()]
    }
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Loss,
    Queue,
    Blackout,
}

/// The policy's answer for one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it at each of these times (since the start); two times: it is duplicated.
    Send(Vec<Duration>),
    Dropped(DropReason),
}

/// What the proxy did in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams that arrived.
    pub received: u64,
    /// Datagrams sent on (duplicates included).
    pub forwarded: u64,
    pub dropped_loss: u64,
    pub dropped_queue: u64,
    pub dropped_blackout: u64,
    pub duplicated: u64,
    /// Datagrams held back at all (by the delay or the cap's queue).
    pub delayed: u64,
    /// Datagrams scheduled before one that arrived earlier.
    pub reordered: u64,
}

/// What the proxy did, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub up: DirStats,
    pub down: DirStats,
}

impl fmt::Display for DirStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in, {} forwarded, dropped {} by loss / {} by the cap's queue / {} in blackout, \
             {} duplicated, {} delayed, {} reordered",
            self.received,
            self.forwarded,
            self.dropped_loss,
            self.dropped_queue,
            self.dropped_blackout,
            self.duplicated,
            self.delayed,
            self.reordered
        )
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "up: {}; down: {}", self.up, self.down)
    }
}

/// One direction's state.
#[derive(Debug)]
struct Lane {
    imp: Impairment,
    rng: SplitMix64,
    /// When the capped link finishes serialising what it has accepted.
    link_free_at: Duration,
    /// The latest send time scheduled so far (to count reordering).
    latest: Duration,
    stats: DirStats,
}

/// The sans-I/O impairment policy of both directions. Inputs must come in non-decreasing time
/// per direction.
#[derive(Debug)]
pub struct Policy {
    lanes: [Lane; 2],
}

impl Policy {
    /// `impairments[0]` applies to [`Dir::Up`], `[1]` to [`Dir::Down`].
    pub fn new(impairments: [Impairment; 2], seed: u64) -> Policy {
        // One generator per direction, so one direction's traffic never shifts the other's draws.
        let mut seeds = SplitMix64::new(seed);
        let [up, down] = impairments;
        let lane = |imp, seed| Lane {
            imp,
            rng: SplitMix64::new(seed),
            link_free_at: Duration::ZERO,
            latest: Duration::ZERO,
            stats: DirStats::default(),
        };
        Policy {
            lanes: [lane(up, seeds.next_u64()), lane(down, seeds.next_u64())],
        }
    }

    /// Decides the fate of a datagram of `len` bytes going `dir` that arrived at `now`.
    pub fn on_datagram(&mut self, dir: Dir, len: usize, now: Duration) -> Verdict {
        let lane = &mut self.lanes[dir.index()];
        lane.stats.received += 1;
        if lane.imp.blackouts.iter().any(|&(a, b)| a <= now && now < b) {
            lane.stats.dropped_blackout += 1;
            return Verdict::Dropped(DropReason::Blackout);
        }
        if lane.rng.chance(lane.imp.loss) {
            lane.stats.dropped_loss += 1;
            return Verdict::Dropped(DropReason::Loss);
        }
        let mut leaves = now;
        if let Some(cap) = lane.imp.cap {
            let start = lane.link_free_at.max(now);
            // Bytes still waiting or being serialised when this one arrives (integer
            // arithmetic, so a queue filled exactly is not tipped over by rounding).
            let backlog = (start - now).as_nanos() * u128::from(cap.bits_per_s) / 8_000_000_000;
            if backlog + len as u128 > cap.queue_bytes as u128 {
                lane.stats.dropped_queue += 1;
                return Verdict::Dropped(DropReason::Queue);
            }
            let wire_ns = len as u128 * 8_000_000_000 / u128::from(cap.bits_per_s);
            let wire = Duration::from_nanos(wire_ns as u64);
            lane.link_free_at = start + wire;
            leaves = lane.link_free_at;
        }
        let send = |lane: &mut Lane| {
            let jitter = lane.imp.jitter.as_secs_f64();
            let offset = if jitter > 0.0 {
                (lane.rng.next_f64() * 2.0 - 1.0) * jitter
            } else {
                0.0
            };
            let delay = (lane.imp.delay.as_secs_f64() + offset).max(0.0);
            leaves + Duration::from_secs_f64(delay)
        };
        let mut times = vec![send(lane)];
        if lane.rng.chance(lane.imp.duplicate) {
            times.push(send(lane));
            lane.stats.duplicated += 1;
        }
        if times[0] > now {
            lane.stats.delayed += 1;
        }
        if times[0] < lane.latest {
            lane.stats.reordered += 1;
        }
        for &t in &times {
            lane.latest = lane.latest.max(t);
        }
        lane.stats.forwarded += times.len() as u64;
        Verdict::Send(times)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            up: self.lanes[0].stats,
            down: self.lanes[1].stats,
        }
    }
}

/// A datagram waiting for its send time; ordered by time, then arrival.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: Duration,
    seq: u64,
    up: bool,
    bytes: Vec<u8>,
}

struct Shared {
    policy: Policy,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    client: Option<SocketAddr>,
}

/// A running proxy; stopped and joined on drop.
pub struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

const READ_TIMEOUT: Duration = Duration::from_millis(20);

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `target` through `impairments` (up, down).
    pub fn start(target: SocketAddr, impairments: [Impairment; 2], seed: u64) -> Proxy {
        let front =
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy's front socket");
        let unspecified: IpAddr = match target {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let back = UdpSocket::bind((unspecified, 0)).expect("bind the proxy's back socket");
        back.connect(target).expect("connect to the target");
        for s in [&front, &back] {
            s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((
            Mutex::new(Shared {
                policy: Policy::new(impairments, seed),
                queue: BinaryHeap::new(),
                seq: 0,
                client: None,
            }),
            Condvar::new(),
        ));
        let start = Instant::now();
        let reader = |socket: UdpSocket, dir: Dir| {
            let (stop, shared) = (stop.clone(), shared.clone());
            std::thread::spawn(move || read_loop(socket, dir, start, &stop, &shared))
        };
        let threads = vec![
            reader(front.try_clone().unwrap(), Dir::Up),
            reader(back.try_clone().unwrap(), Dir::Down),
            {
                let (stop, shared) = (stop.clone(), shared.clone());
                std::thread::spawn(move || send_loop(front, back, start, &stop, &shared))
            },
        ];
        Proxy {
            addr,
            stop,
            shared,
            threads,
        }
    }

    /// Where the client dials.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it did so far.
    pub fn stats(&self) -> Stats {
        self.shared.0.lock().unwrap().policy.stats()
    }

    /// Stops the threads and returns what it did.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.shared.1.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.halt();
    }
}

fn read_loop(
    socket: UdpSocket,
    dir: Dir,
    start: Instant,
    stop: &AtomicBool,
    shared: &(Mutex<Shared>, Condvar),
) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::SeqCst) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // Timeouts let the loop see `stop`; an ICMP "port unreachable" (the peer not up
            // yet, or gone) is a lost datagram, as on a real path.
            Err(_) => continue,
        };
        let now = start.elapsed();
        let mut s = shared.0.lock().unwrap();
        if dir == Dir::Up {
            // The latest client owns the proxy: one that dials again from a new port (a new
            // connection) gets the answers from then on.
            s.client = Some(from);
        }
        if let Verdict::Send(times) = s.policy.on_datagram(dir, n, now) {
            for at in times {
                s.seq += 1;
                let seq = s.seq;
                s.queue.push(Reverse(Pending {
                    at,
                    seq,
                    up: dir == Dir::Up,
                    bytes: buf[..n].to_vec(),
                }));
            }
            shared.1.notify_all();
        }
    }
}

fn send_loop(
    front: UdpSocket,
    back: UdpSocket,
    start: Instant,
    stop: &AtomicBool,
    shared: &(Mutex<Shared>, Condvar),
) {
    let mut s = shared.0.lock().unwrap();
    while !stop.load(Ordering::SeqCst) {
        let now = start.elapsed();
        let due = match s.queue.peek() {
            Some(Reverse(p)) if p.at <= now => s.queue.pop().map(|Reverse(p)| p),
            Some(Reverse(p)) => {
                let wait = p.at - now;
                s = shared.1.wait_timeout(s, wait).unwrap().0;
                continue;
            }
            None => {
                s = shared.1.wait_timeout(s, READ_TIMEOUT).unwrap().0;
                continue;
            }
        };
        // `due` was just popped from a non-empty queue.
        let p = due.unwrap();
        let client = s.client;
        drop(s);
        // A send that fails (buffer full, peer gone) is a lost datagram, as on a real path.
        let _ = if p.up {
            back.send(&p.bytes)
        } else if let Some(client) = client {
            front.send_to(&p.bytes, client)
        } else {
            Ok(0)
        };
        s = shared.0.lock().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn run(policy: &mut Policy, n: u32, len: usize, every: Duration) -> Vec<Verdict> {
        (0..n)
            .map(|i| policy.on_datagram(Dir::Up, len, every * i))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_verdicts_and_another_seed_others() {
        let imp = Impairment {
            loss: 0.1,
            delay: 40 * MS,
            jitter: 20 * MS,
            duplicate: 0.05,
            ..Impairment::default()
        };
        let a = run(&mut Policy::new(imp.both(), 7), 2000, 1200, MS);
        let b = run(&mut Policy::new(imp.both(), 7), 2000, 1200, MS);
        let c = run(&mut Policy::new(imp.both(), 8), 2000, 1200, MS);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn loss_and_duplication_come_near_their_rates_and_are_counted() {
        let imp = Impairment {
            loss: 0.05,
            duplicate: 0.02,
            ..Impairment::default()
        };
        let mut p = Policy::new(imp.both(), 1);
        let verdicts = run(&mut p, 100_000, 1200, Duration::ZERO);
        let s = p.stats().up;
        assert_eq!(s.received, 100_000);
        assert!((4500..5500).contains(&s.dropped_loss), "{s}");
        assert!((1700..2300).contains(&s.duplicated), "{s}");
        assert_eq!(s.forwarded, s.received - s.dropped_loss + s.duplicated);
        let sent: usize = verdicts
            .iter()
            .map(|v| match v {
                Verdict::Send(t) => t.len(),
                Verdict::Dropped(_) => 0,
            })
            .sum();
        assert_eq!(sent as u64, s.forwarded);
        // Nothing was held back, so nothing overtook anything.
        assert_eq!((s.delayed, s.reordered), (0, 0));
        assert_eq!(p.stats().down, DirStats::default());
    }

    #[test]
    fn delay_with_jitter_stays_in_its_range_and_reorders() {
        let imp = Impairment {
            delay: 40 * MS,
            jitter: 20 * MS,
            ..Impairment::default()
        };
        let mut p = Policy::new(imp.both(), 3);
        let mut last = Duration::ZERO;
        let mut reordered = 0;
        for i in 0..1000u32 {
            let now = MS * i;
            let Verdict::Send(t) = p.on_datagram(Dir::Down, 1200, now) else {
                panic!("nothing is dropped here");
            };
            assert_eq!(t.len(), 1);
            let delay = t[0] - now;
            assert!(20 * MS <= delay && delay <= 60 * MS, "{delay:?}");
            if t[0] < last {
                reordered += 1;
            }
            last = last.max(t[0]);
        }
        let s = p.stats().down;
        assert_eq!(s.reordered, reordered);
        assert!(s.reordered > 100, "{s}");
        assert_eq!(s.delayed, 1000);
    }

    #[test]
    fn a_cap_serialises_at_its_rate_and_drops_the_tail_of_a_full_queue() {
        // 8 Mb/s: a 1000-byte datagram takes 1 ms on the link; the queue holds 10 of them.
        let cap = Cap {
            bits_per_s: 8_000_000,
            queue_bytes: 10_000,
        };
        let imp = Impairment {
            cap: Some(cap),
            ..Impairment::default()
        };
        let mut p = Policy::new(imp.both(), 0);
        // A burst of 15 at once: 10 fit, one leaving per millisecond; 5 are dropped.
        let burst = run(&mut p, 15, 1000, Duration::ZERO);
        for (i, v) in burst.iter().enumerate() {
            if i < 10 {
                assert_eq!(*v, Verdict::Send(vec![MS * (i as u32 + 1)]));
            } else {
                assert_eq!(*v, Verdict::Dropped(DropReason::Queue));
            }
        }
        // Once the queue has drained, a datagram goes straight through the link.
        assert_eq!(
            p.on_datagram(Dir::Up, 1000, 20 * MS),
            Verdict::Send(vec![21 * MS])
        );
        let s = p.stats().up;
        assert_eq!((s.forwarded, s.dropped_queue, s.reordered), (11, 5, 0));
        // At the cap's rate exactly, nothing is dropped and everything waits only its own time.
        let mut p = Policy::new(imp.both(), 0);
        for v in run(&mut p, 1000, 1000, MS) {
            assert!(matches!(v, Verdict::Send(_)));
        }
        assert_eq!(p.stats().up.dropped_queue, 0);
    }

    #[test]
    fn a_blackout_drops_everything_in_its_window_only() {
        let imp = Impairment {
            blackouts: vec![(100 * MS, 200 * MS)],
            ..Impairment::default()
        };
        let mut p = Policy::new(imp.both(), 0);
        let verdicts = run(&mut p, 300, 100, MS);
        for (i, v) in verdicts.iter().enumerate() {
            let dark = (100..200).contains(&i);
            assert_eq!(
                *v == Verdict::Dropped(DropReason::Blackout),
                dark,
                "datagram {i}: {v:?}"
            );
        }
        assert_eq!(p.stats().up.dropped_blackout, 100);
    }

    #[test]
    fn the_proxy_forwards_both_ways_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let imp = Impairment {
            delay: 5 * MS,
            ..Impairment::default()
        };
        let proxy = Proxy::start(server.local_addr().unwrap(), imp.both(), 0);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 100];
        for i in 0..5u8 {
            client.send_to(&[i; 10], proxy.addr()).unwrap();
            let (n, from) = server.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 10]);
            server.send_to(&[i + 100; 20], from).unwrap();
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (&[i + 100; 20][..], proxy.addr()));
        }
        let stats = proxy.stop();
        assert_eq!((stats.up.forwarded, stats.down.forwarded), (5, 5));
        assert_eq!((stats.up.delayed, stats.down.delayed), (5, 5));
    }
}
