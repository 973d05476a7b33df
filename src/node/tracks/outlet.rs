//! [`Outlet`]: one endpoint a node serves its tracks from — listening for subscribers, or a
//! link to a relay that accepted the tracks' namespaces — with its [`TrackServer`] running on
//! the endpoint thread.
//!
//! The pipeline hands groups to the outlet's [`Feed`] by value (from any thread, no round
//! trip), and polls the outlet. A relay link that ends after it was announced is dialled again
//! with a doubling back-off (the same server, so its caches and the feed live on), and
//! re-announced: one relay leaving or refusing never stops the node's other outlets. Listening
//! and dialing a relay are written here once for every command that serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::serve::{ServeStats, TrackServer, Work};
use crate::crypto::NodeKey;
use crate::moq::session::Event;
use crate::moq::SessionCode;
use crate::net::{ConnId, Endpoint, Feed, NetError, NetEvent, PeerCheck, Settings, Target};
use crate::retry::Backoff;
use crate::stop::StopFlag;

/// How long [`Outlet::announced`] waits for one network event before checking `stop`.
const ANNOUNCE_POLL: Duration = Duration::from_millis(100);
/// The wait before a relay is dialled again: 0.5 s, doubling on each failure to 30 s, and back
/// to 0.5 s once it accepted the namespaces.
const REDIAL: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// How long a relay may take to accept the namespaces before the attempt counts as failed.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why serving failed: we could not listen or reach the relay, the relay refused us, or left.
/// A subscriber session's own failure is only logged.
#[derive(Debug)]
pub enum ServeError {
    /// Listening or dialing failed, or the endpoint stopped.
    Net(NetError),
    /// The relay refused a PUBLISH_NAMESPACE (its reason).
    Refused(String),
    /// The relay connection ended (the relay, why).
    RelayLeft(String, NetError),
    /// The relay did not accept the namespaces in time.
    NoAnswer(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Net(e) => e.fmt(f),
            ServeError::Refused(why) => write!(f, "the relay refused PUBLISH_NAMESPACE: {why}"),
            ServeError::RelayLeft(relay, e) => write!(f, "the relay {relay} left: {e}"),
            ServeError::NoAnswer(relay) => write!(
                f,
                "the relay {relay} did not answer within {} s",
                ANNOUNCE_TIMEOUT.as_secs()
            ),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Net(e) | ServeError::RelayLeft(_, e) => Some(e),
            ServeError::Refused(_) | ServeError::NoAnswer(_) => None,
        }
    }
}

/// One endpoint serving tracks.
pub struct Outlet {
    ep: Endpoint,
    feed: Feed<Work>,
    relay: Option<RelayLink>,
    stats: Arc<ServeStats>,
}

/// A dialed relay: the connection being announced or announced, or the time to dial again.
struct RelayLink {
    /// The relay, for people.
    name: String,
    /// Namespaces to announce on each connection.
    namespaces: usize,
    state: Link,
    /// The waits between redials.
    backoff: Backoff,
    /// Times the relay was dialled again.
    reconnects: u64,
}

#[derive(Clone, Copy)]
enum Link {
    /// Dialled at `since`; `waiting` namespaces not accepted yet.
    Announcing {
        conn: ConnId,
        since: Instant,
        waiting: usize,
    },
    /// Every namespace accepted: subscribers reach us through the relay.
    Announced,
    /// The last connection failed or ended: dial again then.
    Waiting(Instant),
}

impl RelayLink {
    /// The connection failed: dial again after the back-off, which doubles for next time.
    fn wait(&mut self) {
        let wait = self.backoff.next_wait();
        log::info!(
            "dialling the relay {} again in {:.1} s",
            self.name,
            wait.as_secs_f32()
        );
        self.state = Link::Waiting(Instant::now() + wait);
    }
}

impl Outlet {
    /// Listens on `addr` with the node's identity and serves `server` to every session.
    pub fn listen(
        addr: SocketAddr,
        key: &NodeKey,
        server: TrackServer,
    ) -> Result<Outlet, ServeError> {
        let stats = server.stats();
        let (ep, feed) = Endpoint::listen_with(addr, key, Settings::default(), server)
            .map_err(ServeError::Net)?;
        Ok(Outlet {
            ep,
            feed,
            relay: None,
            stats,
        })
    }

    /// Dials the relay `target` to announce `server`'s namespaces; [`Outlet::announced`] waits
    /// for the relay's answer.
    pub fn relay(
        target: &Target,
        check: PeerCheck,
        server: TrackServer,
    ) -> Result<Outlet, ServeError> {
        let server = server.announcing();
        let namespaces = server.namespaces().len();
        let stats = server.stats();
        let settings = Settings {
            redials: true,
            ..Settings::default()
        };
        let (ep, conn, feed) =
            Endpoint::dial_with(target, check, settings, server).map_err(ServeError::Net)?;
        Ok(Outlet {
            ep,
            feed,
            relay: Some(RelayLink {
                name: target.to_string(),
                namespaces,
                state: Link::Announcing {
                    conn,
                    since: Instant::now(),
                    waiting: namespaces,
                },
                backoff: REDIAL,
                reconnects: 0,
            }),
            stats,
        })
    }

    /// Waits until the relay accepted every namespace (`Ok(true)`), refused one or left
    /// (an error), or `stop` (`Ok(false)`); a listening outlet is ready at once. After an
    /// error the outlet dials the relay again later, when polled.
    pub fn announced(&mut self, stop: &StopFlag) -> Result<bool, ServeError> {
        loop {
            if !matches!(
                self.relay.as_ref().map(|r| r.state),
                Some(Link::Announcing { .. })
            ) {
                return Ok(true);
            }
            if stop.is_set() {
                return Ok(false);
            }
            if let Some(silent) = self.give_up_silent_relay() {
                return Err(silent);
            }
            let Some(ev) = self.ep.next_event(ANNOUNCE_POLL).map_err(ServeError::Net)? else {
                continue;
            };
            if let Some(failed) = self.on_event(ev) {
                return Err(failed);
            }
        }
    }

    /// Where the outlet hands groups to its server.
    pub fn feed(&self) -> Feed<Work> {
        self.feed.clone()
    }

    /// The bound address (a listener on port 0 gets a free port).
    pub fn local_addr(&self) -> SocketAddr {
        self.ep.local_addr()
    }

    /// The server's figures.
    pub fn stats(&self) -> &ServeStats {
        &self.stats
    }

    /// Times the relay was dialled again (0 for a listening outlet).
    pub fn reconnects(&self) -> u64 {
        self.relay.as_ref().map_or(0, |r| r.reconnects)
    }

    /// Takes the network events that are ready without waiting, and dials a relay again when
    /// its back-off has passed. Sessions come and go (logged); a relay leaving or refusing is
    /// logged and dialled again. Only the endpoint failing is an error.
    pub fn poll(&mut self) -> Result<(), ServeError> {
        while let Some(ev) = self
            .ep
            .next_event(Duration::ZERO)
            .map_err(ServeError::Net)?
        {
            if let Some(failed) = self.on_event(ev) {
                log::warn!("{failed}");
            }
        }
        self.keep_relay()
    }

    /// Takes one network event; returns why the relay link failed, if it did.
    fn on_event(&mut self, ev: NetEvent) -> Option<ServeError> {
        let Some(relay) = self.relay.as_mut() else {
            match ev {
                NetEvent::Connected { conn, peer, .. } => {
                    log::info!("session {conn:?} with {peer}")
                }
                NetEvent::Disconnected { conn, why } => {
                    log::info!("session {conn:?} ended: {why}")
                }
                NetEvent::Session { .. } => {}
            }
            return None;
        };
        match (ev, relay.state) {
            (
                NetEvent::Session {
                    event: Event::NamespaceAccepted { .. },
                    ..
                },
                Link::Announcing { conn, waiting, .. },
            ) => {
                relay.state = match waiting {
                    0 | 1 => {
                        log::info!("announced to the relay {}", relay.name);
                        relay.backoff.reset();
                        Link::Announced
                    }
                    _ => Link::Announcing {
                        conn,
                        since: Instant::now(),
                        waiting: waiting - 1,
                    },
                };
                None
            }
            (
                NetEvent::Session {
                    event: Event::RequestFailed { code, reason, .. },
                    conn,
                },
                Link::Announcing { .. },
            ) => {
                let _ = self
                    .ep
                    .close(conn, SessionCode::NoError, "namespace refused");
                relay.wait();
                Some(ServeError::Refused(format!(
                    "{}: code {code:#x} {reason}",
                    relay.name
                )))
            }
            // A connection given up on already: its end changes nothing.
            (NetEvent::Disconnected { .. }, Link::Waiting(_)) => None,
            (NetEvent::Disconnected { why, .. }, _) => {
                relay.wait();
                Some(ServeError::RelayLeft(relay.name.clone(), why))
            }
            _ => None,
        }
    }

    /// Dials the relay again once its back-off passed, and gives up an attempt it does not
    /// answer in time.
    fn keep_relay(&mut self) -> Result<(), ServeError> {
        if let Some(silent) = self.give_up_silent_relay() {
            log::warn!("{silent}");
        }
        let Some(relay) = self.relay.as_mut() else {
            return Ok(());
        };
        if let Link::Waiting(at) = relay.state {
            if Instant::now() >= at {
                let conn = self.ep.redial().map_err(ServeError::Net)?;
                relay.reconnects += 1;
                relay.state = Link::Announcing {
                    conn,
                    since: Instant::now(),
                    waiting: relay.namespaces,
                };
            }
        }
        Ok(())
    }

    /// Closes a relay connection not announced within [`ANNOUNCE_TIMEOUT`] (a dead relay's
    /// handshake would otherwise last the QUIC idle timeout) and schedules the next attempt.
    fn give_up_silent_relay(&mut self) -> Option<ServeError> {
        let relay = self.relay.as_mut()?;
        let Link::Announcing { conn, since, .. } = relay.state else {
            return None;
        };
        if since.elapsed() < ANNOUNCE_TIMEOUT {
            return None;
        }
        let _ = self.ep.close(conn, SessionCode::NoError, "no answer");
        relay.wait();
        Some(ServeError::NoAnswer(relay.name.clone()))
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Closes the endpoint (GOAWAY, CONNECTION_CLOSE) and joins its thread.
    pub fn shutdown(self) {
        self.ep.shutdown();
    }
}
