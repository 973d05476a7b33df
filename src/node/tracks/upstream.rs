//! [`Upstream`]: one peer a node takes tracks from — dialed, asked for its tracks once SETUP
//! completes, and read as a stream of [`Delivery`]s.
//!
//! What a track is asked for is an [`Ask`]: a late join (SUBSCRIBE from the next group with a
//! joining FETCH of the current group and a backfill before it, in one flight, so the current
//! group comes without waiting for SUBSCRIBE_OK), a subscription from a given group, or a FETCH
//! of a range. The bookkeeping of which request is which, and which failures matter (a live
//! subscription refused ends the run; a joining FETCH refused only means nothing was cached yet),
//! is written here once for every command that subscribes. It never decides what an object is
//! worth: the verifier, the forwarder or the writer does.

use std::collections::HashMap;
use std::time::Duration;

use crate::crypto::NodeId;
use crate::moq::session::{Event, SubscribeOptions};
use crate::moq::wire::DataObject;
use crate::moq::{
    FullTrackName, GroupId, Location, MoqError, ObjectStatus, RequestId, SessionCode,
    SubscriptionFilter,
};
use crate::net::{ConnId, Endpoint, NetError, NetEvent, PeerCheck, Settings, Target};

/// A peer to take tracks from.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// Where it is.
    pub target: Target,
    /// How its identity is checked.
    pub check: PeerCheck,
}

/// What a track is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Late join: SUBSCRIBE from the next group, and a joining FETCH of the current group and
    /// `backfill` groups before it.
    Join {
        /// Groups before the current one to fetch.
        backfill: u64,
    },
    /// SUBSCRIBE from this group on (an absolute start).
    From(GroupId),
    /// FETCH groups `first..=last`, nothing live.
    Fetch(GroupId, GroupId),
}

/// What one of our requests is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    /// The live subscription of the track at this position.
    Live(usize),
    /// The joining FETCH of the track at this position.
    Backfill(usize),
    /// The FETCH a track was asked for, from this group.
    Fetch(usize, GroupId),
}

impl Request {
    fn track(self) -> usize {
        match self {
            Request::Live(t) | Request::Backfill(t) | Request::Fetch(t, _) => t,
        }
    }
}

/// What the peer delivered.
#[derive(Debug)]
pub enum Delivery {
    /// The session started (with the node key the peer's certificate carries, if any).
    Connected(Option<NodeId>),
    /// An object of the track at position `track`; `fetched` when it came by FETCH.
    Object {
        /// The track's position in the list asked for.
        track: usize,
        /// The object (its status is normal).
        object: DataObject,
        /// Whether it came by FETCH (joining or asked) rather than the live subscription.
        fetched: bool,
    },
    /// A FETCH of the track at position `track` is over.
    FetchDone {
        /// The track's position.
        track: usize,
        /// The first group of a FETCH asked for; `None` for the joining FETCH of a late join.
        first: Option<GroupId>,
        /// How it ended.
        end: FetchEnd,
    },
    /// The publisher ended the live subscription of the track at position `track`.
    Ended {
        /// The track's position.
        track: usize,
        /// The publisher's reason.
        reason: String,
    },
}

/// How a FETCH ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchEnd {
    /// Every object was delivered.
    Complete,
    /// Its stream was reset (the code): the range is incomplete.
    Reset(u64),
    /// The peer refused it (REQUEST_ERROR code and reason), e.g. nothing cached in the range.
    Refused(u64, String),
}

/// Why taking tracks from a peer failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// The peer could not be reached or is not who its address says.
    Connect {
        /// The peer as given.
        peer: String,
        /// Why.
        why: NetError,
    },
    /// The peer refused what a track was asked for.
    Refused {
        /// The peer as given.
        peer: String,
        /// The track's position.
        track: usize,
        /// REQUEST_ERROR code.
        code: u64,
        /// The peer's reason.
        reason: String,
    },
    /// The peer left.
    Left {
        /// The peer as given.
        peer: String,
        /// Why.
        why: NetError,
    },
    /// Our session could not send a request (it is closing).
    Request(MoqError),
    /// The endpoint stopped.
    Net(NetError),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect { peer, why } => write!(f, "cannot connect to {peer}: {why}"),
            UpstreamError::Refused {
                peer, code, reason, ..
            } => write!(f, "{peer} refused the request: code {code:#x} {reason}"),
            UpstreamError::Left { peer, why } => write!(f, "{peer} left: {why}"),
            UpstreamError::Request(e) => write!(f, "cannot send the request: {e}"),
            UpstreamError::Net(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect { why, .. } | UpstreamError::Left { why, .. } => Some(why),
            UpstreamError::Request(e) => Some(e),
            UpstreamError::Net(e) => Some(e),
            UpstreamError::Refused { .. } => None,
        }
    }
}

/// One dialed peer and the tracks asked of it.
pub struct Upstream {
    name: String,
    ep: Endpoint,
    conn: ConnId,
    /// The tracks, by position.
    tracks: Vec<FullTrackName>,
    /// Asks not sent yet (the session is not set up): track position and ask.
    pending: Vec<(usize, Ask)>,
    set_up: bool,
    requests: HashMap<RequestId, Request>,
    connected: bool,
}

impl Upstream {
    /// Dials `peer`; once SETUP completes each track of `asks` is asked for as it says. Tracks
    /// are numbered in this order; more may be added with [`Upstream::track`].
    pub fn dial(
        peer: &PeerSpec,
        asks: Vec<(FullTrackName, Ask)>,
    ) -> Result<Upstream, UpstreamError> {
        let name = peer.target.to_string();
        let (ep, conn) = Endpoint::dial(&peer.target, peer.check.clone(), Settings::default())
            .map_err(|why| UpstreamError::Connect {
                peer: name.clone(),
                why,
            })?;
        let (tracks, pending) = asks
            .into_iter()
            .enumerate()
            .map(|(at, (track, ask))| (track, (at, ask)))
            .unzip();
        Ok(Upstream {
            name,
            ep,
            conn,
            tracks,
            pending,
            set_up: false,
            requests: HashMap::new(),
            connected: false,
        })
    }

    /// Adds a track to ask for later; returns its position.
    pub fn track(&mut self, track: FullTrackName) -> usize {
        self.tracks.push(track);
        self.tracks.len() - 1
    }

    /// Asks for the track at `at`: now if the session is set up, else once it is.
    pub fn ask(&mut self, at: usize, ask: Ask) -> Result<(), UpstreamError> {
        match self.set_up {
            true => self.send(at, ask),
            false => {
                self.pending.push((at, ask));
                Ok(())
            }
        }
    }

    /// The peer as given (its address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the session with the peer has started.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The next delivery, waiting at most `timeout` for the first network event.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Delivery>, UpstreamError> {
        let mut wait = timeout;
        while let Some(ev) = self.ep.next_event(wait).map_err(UpstreamError::Net)? {
            wait = Duration::ZERO;
            if let Some(delivery) = self.on_net_event(ev)? {
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// Ends the session (NO_ERROR) and the endpoint.
    pub fn close(mut self) {
        // Already gone if the connection failed.
        let _ = self.ep.close(self.conn, SessionCode::NoError, "done");
        self.ep.shutdown();
    }

    fn on_net_event(&mut self, ev: NetEvent) -> Result<Option<Delivery>, UpstreamError> {
        let event = match ev {
            NetEvent::Connected { node, .. } => {
                self.connected = true;
                log::debug!("connected to {} (node {node:?})", self.name);
                return Ok(Some(Delivery::Connected(node)));
            }
            NetEvent::Disconnected { why, .. } => {
                let peer = self.name.clone();
                return Err(if self.connected {
                    UpstreamError::Left { peer, why }
                } else {
                    UpstreamError::Connect { peer, why }
                });
            }
            NetEvent::Session { event, .. } => event,
        };
        match event {
            Event::SetupComplete { .. } => {
                self.set_up = true;
                for (at, ask) in std::mem::take(&mut self.pending) {
                    self.send(at, ask)?;
                }
                Ok(None)
            }
            Event::Object { request, object } if object.status == ObjectStatus::Normal => {
                Ok(self.requests.get(&request).map(|r| Delivery::Object {
                    track: r.track(),
                    object,
                    fetched: !matches!(r, Request::Live(_)),
                }))
            }
            Event::FetchComplete { request } => Ok(self.fetch_done(request, FetchEnd::Complete)),
            Event::StreamReset { request, code } => {
                Ok(self.fetch_done(request, FetchEnd::Reset(code)))
            }
            Event::RequestFailed {
                request,
                code,
                reason,
            } => match self.requests.get(&request) {
                Some(Request::Backfill(_) | Request::Fetch(..)) => {
                    log::info!("{} refused a FETCH: {reason}", self.name);
                    Ok(self.fetch_done(request, FetchEnd::Refused(code, reason)))
                }
                Some(&r) => Err(UpstreamError::Refused {
                    peer: self.name.clone(),
                    track: r.track(),
                    code,
                    reason,
                }),
                None => Ok(None),
            },
            Event::SubscriptionDone {
                request, reason, ..
            } => match self.requests.get(&request) {
                Some(&Request::Live(track)) => Ok(Some(Delivery::Ended { track, reason })),
                _ => Ok(None),
            },
            Event::GoAway { .. } => {
                log::info!("{} is going away", self.name);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A FETCH ended (a reset of a live subscription's stream is only a lost group).
    fn fetch_done(&mut self, request: RequestId, end: FetchEnd) -> Option<Delivery> {
        let (track, first) = match self.requests.get(&request) {
            Some(&Request::Backfill(track)) => (track, None),
            Some(&Request::Fetch(track, first)) => (track, Some(first)),
            _ => return None,
        };
        self.requests.remove(&request);
        Some(Delivery::FetchDone { track, first, end })
    }

    /// Sends what the track at `at` is asked for.
    fn send(&mut self, at: usize, ask: Ask) -> Result<(), UpstreamError> {
        let track = self.tracks[at].clone();
        let asked = self
            .ep
            .call(self.conn, move |s| match ask {
                Ask::Join { backfill } => {
                    s.subscribe_joining(track, backfill).map(|(live, joining)| {
                        vec![(live, Request::Live(at)), (joining, Request::Backfill(at))]
                    })
                }
                Ask::From(group) => {
                    let options = SubscribeOptions {
                        filter: SubscriptionFilter::AbsoluteStart(Location::new(group.0, 0)),
                        ..SubscribeOptions::default()
                    };
                    s.subscribe(track, options)
                        .map(|live| vec![(live, Request::Live(at))])
                }
                Ask::Fetch(first, last) => s
                    .fetch(track, Location::new(first.0, 0), Location::new(last.0, 0))
                    .map(|fetch| vec![(fetch, Request::Fetch(at, first))]),
            })
            .map_err(UpstreamError::Net)?
            .map_err(UpstreamError::Request)?;
        self.requests.extend(asked);
        Ok(())
    }
}
