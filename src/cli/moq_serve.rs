//! `ec-node moq-serve`: publishes the files of a folder as one MoQ track, listening for
//! subscribers or publishing into a relay.
//!
//! Files sorted by name become groups 0..N-1 (object 0 each). A session's first SUBSCRIBE starts
//! a playout at the filter's start (group 0 unless an absolute filter says otherwise): that group
//! at once, then one group per `--interval-ms`, and PUBLISH_DONE one interval after the last group.
//! Later SUBSCRIBEs on that session get what was already played at once, then the rest. FETCH
//! serves any range of the folder at once.
//!
//! Sessions share playouts: a first SUBSCRIBE that asks for the start of a playout begun less
//! than one interval earlier joins it (it gets the start group at once, as with a playout of its
//! own, and each later group at most one interval sooner). So a crowd subscribing together costs
//! one clock, one cache of played groups and one command to the endpoint per group, not one per
//! session.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::peer::{
    advertised, net_failure, parse_target, peer_check, ready_line, serve_failure, track_name,
};
use super::stop::StopFlag;
use super::Failure;
use crate::crypto::NodeKey;
use crate::moq::cache::TrackCache;
use crate::moq::session::Event;
use crate::moq::{FullTrackName, GroupId, RequestId, SubscriptionFilter};
use crate::net::{ConnId, Endpoint, NetEvent, Settings, Target};
use crate::node::serve;
use argh::FromArgs;

/// Publish the files of a folder, sorted by name, as groups 0..N-1 of one MoQ track, until Ctrl-C.
#[derive(FromArgs)]
#[argh(subcommand, name = "moq-serve")]
pub struct Args {
    /// listen for subscribers on this UDP address (e.g. 127.0.0.1:0 picks a free port)
    #[argh(option)]
    listen: Option<SocketAddr>,
    /// publish into this relay instead (moqt://HOST:PORT[/path])
    #[argh(option)]
    relay: Option<String>,
    /// track namespace, fields separated by '/'
    #[argh(option)]
    namespace: String,
    /// track name
    #[argh(option)]
    track: String,
    /// folder whose files become the groups
    #[argh(option)]
    dir: PathBuf,
    /// milliseconds between groups of a subscription (default 100)
    #[argh(option, default = "100")]
    interval_ms: u64,
    /// node key file for the listening identity (default: a fresh key for this run)
    #[argh(option)]
    key: Option<PathBuf>,
    /// trust this PEM certificate or CA for the relay instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// do not check the relay's certificate (warns)
    #[argh(switch)]
    insecure: bool,
}

/// One playout of the track and the sessions that follow it.
struct Playout {
    start: u64,
    begun: Instant,
    /// The groups played so far (a joining session's SUBSCRIBE is answered from them).
    played: Arc<TrackCache>,
    next: u64,
    due: Instant,
    ended: bool,
    sessions: Vec<ConnId>,
}

struct Server {
    ep: Endpoint,
    track: FullTrackName,
    groups: Vec<Arc<[u8]>>,
    all: Arc<TrackCache>,
    interval: Duration,
    playouts: Vec<Playout>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let track = track_name(&args.namespace, &args.track)?;
    let groups = read_groups(&args.dir)?;
    let mut all = TrackCache::new(usize::MAX);
    for (i, g) in groups.iter().enumerate() {
        all.push(GroupId(i as u64), g.clone())
            .map_err(|e| Failure::other(e.to_string()))?;
    }
    let stop = StopFlag::on_signals().map_err(|e| Failure::other(e.to_string()))?;
    let (ep, relay) = match (args.listen, &args.relay) {
        (Some(addr), None) => {
            let key = match &args.key {
                Some(path) => NodeKey::read(path).map_err(|e| Failure::usage(e.to_string()))?,
                None => NodeKey::generate().map_err(|e| Failure::other(e.to_string()))?,
            };
            let ep = Endpoint::listen(addr, &key, Settings::default()).map_err(net_failure)?;
            let endpoint = format!("{}@{}", key.node_id(), advertised(ep.local_addr()));
            println!(
                "{}",
                ready_line(Some(endpoint), std::slice::from_ref(&track))
            );
            (ep, None)
        }
        (None, Some(url)) => {
            let target = parse_target(url)?;
            if !matches!(target, Target::Relay(_)) {
                return Err(Failure::usage("--relay takes a moqt:// URL"));
            }
            let check = peer_check(&target, args.relay_ca.clone(), args.insecure);
            let (mut ep, conn) =
                Endpoint::dial(&target, check, Settings::default()).map_err(net_failure)?;
            let namespace = std::slice::from_ref(&track.namespace);
            let deferred =
                serve::announce(&mut ep, conn, namespace, &stop).map_err(serve_failure)?;
            println!("{}", ready_line(None, std::slice::from_ref(&track)));
            (ep, Some((conn, deferred)))
        }
        _ => return Err(Failure::usage("give exactly one of --listen and --relay")),
    };
    let mut server = Server {
        ep,
        track,
        groups,
        all: Arc::new(all),
        interval: Duration::from_millis(args.interval_ms.max(1)),
        playouts: Vec::new(),
    };
    let outcome = server.serve(relay, &stop);
    server.ep.shutdown();
    outcome
}

fn read_groups(dir: &PathBuf) -> Result<Vec<Arc<[u8]>>, Failure> {
    let unreadable = |e: std::io::Error| Failure::usage(format!("{}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(Failure::usage(format!(
            "{}: no files to publish",
            dir.display()
        )));
    }
    paths
        .iter()
        .map(|p| std::fs::read(p).map(Arc::from).map_err(unreadable))
        .collect()
}

impl Server {
    /// Serves until Ctrl-C; with a relay (and the events that came while it was announced to),
    /// until the relay connection ends.
    fn serve(
        &mut self,
        relay: Option<(ConnId, Vec<NetEvent>)>,
        stop: &StopFlag,
    ) -> Result<(), Failure> {
        let (relay, deferred) = match relay {
            Some((conn, deferred)) => (Some(conn), deferred),
            None => (None, Vec::new()),
        };
        for ev in deferred {
            self.on_net_event(relay, ev)?;
        }
        while !stop.is_set() {
            let now = Instant::now();
            self.play_due(now)?;
            let wait = self
                .playouts
                .iter()
                .filter(|p| !p.ended)
                .map(|p| p.due.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(200))
                .min(Duration::from_millis(200));
            if let Some(ev) = self.ep.next_event(wait).map_err(net_failure)? {
                self.on_net_event(relay, ev)?;
            }
        }
        Ok(())
    }

    fn on_net_event(&mut self, relay: Option<ConnId>, ev: NetEvent) -> Result<(), Failure> {
        match ev {
            NetEvent::Connected { conn, peer, .. } => {
                log::info!("session {conn:?} with {peer}");
                Ok(())
            }
            NetEvent::Disconnected { conn, why } => {
                for p in &mut self.playouts {
                    p.sessions.retain(|c| *c != conn);
                }
                self.playouts.retain(|p| !p.sessions.is_empty());
                if Some(conn) == relay {
                    return Err(serve_failure(serve::ServeError::RelayLeft(why)));
                }
                log::info!("session {conn:?} ended: {why}");
                Ok(())
            }
            NetEvent::Session { conn, event } => self.on_event(conn, event),
        }
    }

    fn on_event(&mut self, conn: ConnId, event: Event) -> Result<(), Failure> {
        let unknown = |t: &FullTrackName| t != &self.track;
        match event {
            Event::SubscribeRequested {
                request,
                track,
                filter,
            } => {
                if unknown(&track) {
                    return self.reject(conn, request);
                }
                let start = match filter {
                    SubscriptionFilter::AbsoluteStart(l)
                    | SubscriptionFilter::AbsoluteRange(l, _) => l.group.0,
                    SubscriptionFilter::NextGroupStart | SubscriptionFilter::LargestObject => 0,
                };
                let played = self.playout_for(conn, start, Instant::now()).played.clone();
                self.session(conn, move |s| s.accept_subscribe(request, &played))
            }
            Event::FetchRequested { request, track, .. } => {
                if unknown(&track) {
                    return self.reject(conn, request);
                }
                let all = self.all.clone();
                self.session(conn, move |s| s.accept_fetch(request, &all))
            }
            Event::TrackStatusRequested { request, track } => {
                if unknown(&track) {
                    return self.reject(conn, request);
                }
                let all = self.all.clone();
                self.session(conn, move |s| s.accept_track_status(request, &all))
            }
            Event::GroupsDropped { request, groups } => {
                log::warn!(
                    "session {conn:?} request {request}: {groups} groups dropped (slow subscriber)"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The playout `conn` follows: the one it joined with its first SUBSCRIBE, else one begun
    /// less than an interval ago at `start`, else a new one.
    fn playout_for(&mut self, conn: ConnId, start: u64, now: Instant) -> &Playout {
        let interval = self.interval;
        let i = match self
            .playouts
            .iter()
            .position(|p| p.sessions.contains(&conn))
        {
            Some(i) => i,
            None => {
                let joinable = self
                    .playouts
                    .iter()
                    .position(|p| p.start == start && now < p.begun + interval);
                if joinable.is_some() {
                    log::debug!("session {conn:?} joins the playout from group {start}");
                }
                let i = joinable.unwrap_or_else(|| {
                    log::debug!("session {conn:?} starts a playout from group {start}");
                    self.playouts.push(Playout {
                        start,
                        begun: now,
                        played: Arc::new(TrackCache::new(usize::MAX)),
                        next: start,
                        due: now,
                        ended: false,
                        sessions: Vec::new(),
                    });
                    self.playouts.len() - 1
                });
                self.playouts[i].sessions.push(conn);
                i
            }
        };
        &self.playouts[i]
    }

    /// Sends the groups whose time has come to the sessions of every playout, and PUBLISH_DONE
    /// one interval after the last (some subscribers close the track at PUBLISH_DONE even while
    /// its last streams are still arriving).
    fn play_due(&mut self, now: Instant) -> Result<(), Failure> {
        let total = self.groups.len() as u64;
        let mut sends = Vec::new();
        for p in &mut self.playouts {
            if p.ended || p.due > now {
                continue;
            }
            p.due += self.interval;
            if p.next >= total {
                p.ended = true;
                sends.push((p.sessions.clone(), None));
                continue;
            }
            let g = GroupId(p.next);
            let payload = self.groups[p.next as usize].clone();
            // No SUBSCRIBE holds a clone at this point (they are answered synchronously), so
            // this pushes in place.
            Arc::make_mut(&mut p.played)
                .push(g, payload.clone())
                .map_err(|e| Failure::other(e.to_string()))?;
            p.next += 1;
            sends.push((p.sessions.clone(), Some((g, payload))));
        }
        for (conns, group) in sends {
            let track = self.track.clone();
            let results = self
                .ep
                .call_each(&conns, move |_, s| match &group {
                    Some((g, payload)) => s.send_group(&track, *g, payload.clone()),
                    None => s.end_track(&track),
                })
                .map_err(net_failure)?;
            for (conn, r) in results {
                if let Err(e) = r {
                    log::info!("session {conn:?}: {e}");
                }
            }
        }
        Ok(())
    }

    fn reject(&mut self, conn: ConnId, request: RequestId) -> Result<(), Failure> {
        serve::reject(&mut self.ep, conn, request).map_err(serve_failure)
    }

    /// Runs a session command; a connection that just ended or a closed session is not an error
    /// for the server, only logged.
    fn session<F>(&mut self, conn: ConnId, f: F) -> Result<(), Failure>
    where
        F: FnOnce(&mut crate::moq::session::Session) -> Result<(), crate::moq::MoqError>
            + Send
            + 'static,
    {
        serve::call(&mut self.ep, conn, f).map_err(serve_failure)
    }
}
