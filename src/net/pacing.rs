//! Pacing (`EC_NODE_QUIC=pacing=on`; off by default, see `net::tuning`): quiche stamps each
//! packet it builds with the time its pacer wants it sent (`SendInfo::at`); a packet stamped
//! later than the loop's horizon is held here until then, and nothing of its connection is sent
//! before it.
//!
//! Unpaced, a whole congestion window leaves in one burst (a 2 MB chunk object at once), and a
//! shallow queue on the path (a home router's, a capped uplink's) drops what does not fit.
//! This module owns the held packet and the horizon; it never touches a socket or quiche and is
//! fed the time, so it is tested without either.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How early a packet may leave: everything due within it goes now, as one short burst.
///
/// The loop must wake well within it: quiche does not make up sending time a late wake-up
/// lost, so a loop that wakes later than the horizon sends little more than a horizon's worth
/// per wake-up, and BBRv2 takes that rate for the path's bandwidth. With the loop asleep in a
/// socket read timeout (rounded up to the kernel's 4 ms tick) the 40 ± 20 ms and 25 Mb/s paths
/// of tests/network.rs carried 2–3 Mb/s and failed; the loop sleeps in `ppoll` instead
/// (docs/PERFORMANCE.md, "QUIC settings").
pub(super) const HORIZON: Duration = Duration::from_millis(1);

/// At most one packet of one connection, waiting for its send time.
#[derive(Default)]
pub(super) struct PacketPacer {
    held: Vec<u8>,
    /// Where and when the held packet goes; `None`: nothing is held.
    due: Option<(SocketAddr, Instant)>,
}

impl PacketPacer {
    /// Whether a packet stamped `at` must wait, at `now`.
    pub(super) fn is_early(at: Instant, now: Instant) -> bool {
        at > now + HORIZON
    }

    /// Keeps `packet` until `at`; the caller sends nothing of this connection until
    /// [`PacketPacer::release`] hands it back.
    pub(super) fn hold(&mut self, packet: &[u8], to: SocketAddr, at: Instant) {
        self.held.clear();
        self.held.extend_from_slice(packet);
        self.due = Some((to, at));
    }

    /// Whether a packet is held.
    pub(super) fn is_holding(&self) -> bool {
        self.due.is_some()
    }

    /// The held packet and its address once it is due at `now` (or at once when `force`: the
    /// connection is closing), and nothing is held after; `None` while it must wait or when
    /// nothing is held.
    pub(super) fn release(&mut self, now: Instant, force: bool) -> Option<(&[u8], SocketAddr)> {
        let (to, at) = self.due?;
        if !force && Self::is_early(at, now) {
            return None;
        }
        self.due = None;
        Some((&self.held, to))
    }

    /// When the loop must wake to send the held packet.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.due.map(|(_, at)| at - HORIZON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:4433".parse().unwrap()
    }

    #[test]
    fn a_packet_due_within_the_horizon_is_not_early() {
        let now = Instant::now();
        assert!(!PacketPacer::is_early(now, now));
        assert!(!PacketPacer::is_early(now + HORIZON, now));
        assert!(PacketPacer::is_early(now + HORIZON * 2, now));
    }

    #[test]
    fn a_held_packet_waits_for_its_time_then_leaves_once() {
        let now = Instant::now();
        let at = now + HORIZON * 5;
        let mut pacer = PacketPacer::default();
        assert!(pacer.release(now, false).is_none());
        assert_eq!(pacer.deadline(), None);
        pacer.hold(b"packet", addr(), at);
        assert!(pacer.is_holding());
        assert_eq!(pacer.deadline(), Some(at - HORIZON));
        assert!(pacer.release(now, false).is_none());
        assert!(pacer.release(at - HORIZON * 2, false).is_none());
        assert_eq!(
            pacer.release(at - HORIZON, false),
            Some((&b"packet"[..], addr()))
        );
        assert!(!pacer.is_holding());
        assert!(pacer.release(at, false).is_none());
        assert_eq!(pacer.deadline(), None);
    }

    #[test]
    fn a_closing_connection_sends_its_held_packet_at_once() {
        let now = Instant::now();
        let mut pacer = PacketPacer::default();
        pacer.hold(b"close", addr(), now + Duration::from_secs(1));
        assert_eq!(pacer.release(now, true), Some((&b"close"[..], addr())));
    }

    #[test]
    fn holding_again_replaces_the_bytes() {
        let now = Instant::now();
        let mut pacer = PacketPacer::default();
        pacer.hold(b"a longer packet", addr(), now);
        assert!(pacer.release(now, false).is_some());
        pacer.hold(b"short", addr(), now);
        assert_eq!(pacer.release(now, false), Some((&b"short"[..], addr())));
    }
}
