//! The MoQ application layer: what a node does with tracks over MoQ, written once for every
//! command.
//!
//! - [`serve`]: [`TrackServer`], a set of tracks served from their group caches to any number
//!   of sessions (SUBSCRIBE, joining FETCH, FETCH, TRACK_STATUS, PUBLISH_NAMESPACE to a relay),
//!   running as the handler of an endpoint, on its thread; [`playout`] for a track known in
//!   advance and played per session.
//! - [`outlet`]: [`Outlet`], an endpoint serving tracks, listening or dialed into a relay; the
//!   pipeline hands it groups by value through its feed.
//! - [`upstream`]: [`Upstream`], a peer tracks are taken from, with late join and backfill.
//!
//! Used by `publish` (outlets), `forward` (an upstream feeding an outlet), `subscribe` (one or
//! two upstreams), `cat` (an upstream) and `folder` (an outlet playing files). It speaks MoQ
//! through `moq::session` and reaches the network through `net`; it knows no media format and
//! no key.

pub mod outlet;
pub mod playout;
pub mod serve;
pub mod upstream;

pub use outlet::{Outlet, ServeError};
pub use serve::{ServeStats, TrackServer, Work};
pub use upstream::{Ask, Delivery, FetchEnd, PeerSpec, Upstream, UpstreamError};

use crate::moq::MoqError;
use crate::net::{ConnId, Endpoint};
use std::time::Duration;

/// A session command's failure is the session's own (closed, or a request it no longer has),
/// never the server's: it is only logged.
fn logged(conn: ConnId, result: Result<(), MoqError>) {
    if let Err(e) = result {
        log::info!("session {conn:?}: {e}");
    }
}

/// Blocks until one of `upstreams` or `outlets` has an event, `also` is ready, or `timeout`
/// passes, without taking anything: a loop over several peers sleeps on all of them at once.
pub fn wait_any<T>(
    upstreams: &[&Upstream],
    outlets: &[Outlet],
    also: Option<&crossbeam_channel::Receiver<T>>,
    timeout: Duration,
) {
    let endpoints: Vec<&Endpoint> = upstreams
        .iter()
        .map(|u| u.endpoint())
        .chain(outlets.iter().map(Outlet::endpoint))
        .collect();
    Endpoint::wait_any(&endpoints, also, timeout);
}
