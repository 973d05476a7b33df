//! [`Outlet`]: one endpoint a node serves its tracks from — listening for subscribers, or a
//! session with a relay that accepted the tracks' namespaces — with its [`TrackServer`] running
//! on the endpoint thread.
//!
//! The pipeline hands groups to the outlet's [`Feed`] by value (from any thread, no round
//! trip), and watches the outlet only for what ends a run: the relay leaving. Listening and
//! dialing a relay are written here once for every command that serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::serve::{ServeStats, TrackServer, Work};
use crate::crypto::NodeKey;
use crate::moq::session::Event;
use crate::net::{ConnId, Endpoint, Feed, NetError, NetEvent, PeerCheck, Settings, Target};
use crate::stop::StopFlag;

/// How long [`Outlet::relay`] waits for one network event before checking `stop`.
const ANNOUNCE_POLL: Duration = Duration::from_millis(100);

/// Why serving failed: we could not listen or reach the relay, the relay refused us, or left.
/// A subscriber session's own failure is only logged.
#[derive(Debug)]
pub enum ServeError {
    /// Listening or dialing failed, or the endpoint stopped.
    Net(NetError),
    /// The relay refused a PUBLISH_NAMESPACE (its reason).
    Refused(String),
    /// The relay connection ended.
    RelayLeft(NetError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Net(e) => e.fmt(f),
            ServeError::Refused(why) => write!(f, "the relay refused PUBLISH_NAMESPACE: {why}"),
            ServeError::RelayLeft(e) => write!(f, "the relay connection ended: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Net(e) | ServeError::RelayLeft(e) => Some(e),
            ServeError::Refused(_) => None,
        }
    }
}

/// One endpoint serving tracks.
pub struct Outlet {
    ep: Endpoint,
    feed: Feed<Work>,
    relay: Option<ConnId>,
    stats: Arc<ServeStats>,
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

    /// Dials the relay `target`, announces `server`'s namespaces and returns once the relay
    /// accepted them all (`Ok(None)` if `stop` came first).
    pub fn relay(
        target: &Target,
        check: PeerCheck,
        server: TrackServer,
        stop: &StopFlag,
    ) -> Result<Option<Outlet>, ServeError> {
        let server = server.announcing();
        let mut waiting = server.namespaces().len();
        let stats = server.stats();
        let (mut ep, conn, feed) = Endpoint::dial_with(target, check, Settings::default(), server)
            .map_err(ServeError::Net)?;
        while waiting > 0 {
            if stop.is_set() {
                return Ok(None);
            }
            let Some(ev) = ep.next_event(ANNOUNCE_POLL).map_err(ServeError::Net)? else {
                continue;
            };
            match ev {
                NetEvent::Disconnected { why, .. } => return Err(ServeError::RelayLeft(why)),
                NetEvent::Session {
                    event: Event::NamespaceAccepted { .. },
                    ..
                } => waiting -= 1,
                NetEvent::Session {
                    event: Event::RequestFailed { code, reason, .. },
                    ..
                } => return Err(ServeError::Refused(format!("code {code:#x} {reason}"))),
                _ => {}
            }
        }
        Ok(Some(Outlet {
            ep,
            feed,
            relay: Some(conn),
            stats,
        }))
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

    /// Takes the network events that are ready without waiting: sessions come and go (logged);
    /// the relay leaving is an error.
    pub fn poll(&mut self) -> Result<(), ServeError> {
        while let Some(ev) = self
            .ep
            .next_event(Duration::ZERO)
            .map_err(ServeError::Net)?
        {
            match ev {
                NetEvent::Connected { conn, peer, .. } => {
                    log::info!("session {conn:?} with {peer}")
                }
                NetEvent::Disconnected { conn, why } if Some(conn) == self.relay => {
                    return Err(ServeError::RelayLeft(why));
                }
                NetEvent::Disconnected { conn, why } => {
                    log::info!("session {conn:?} ended: {why}")
                }
                NetEvent::Session { .. } => {}
            }
        }
        Ok(())
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Closes the endpoint (GOAWAY, CONNECTION_CLOSE) and joins its thread.
    pub fn shutdown(self) {
        self.ep.shutdown();
    }
}
