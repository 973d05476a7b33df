//! `ec-node moq-serve`: publishes the files of a folder as one MoQ track, listening for
//! subscribers or publishing into a relay.
//!
//! Files sorted by name become groups 0..N-1 (object 0 each), played to each session from its
//! first SUBSCRIBE one group per `--interval-ms` (`node::tracks::playout`); FETCH serves any
//! range at once. Flags become a track server on an outlet, the ready line names it, and
//! [`ec_node::node::folder::serve`] runs until Ctrl-C or the relay leaves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::peer::{
    advertised, node_key, parse_target, peer_check, ready_line, serve_failure, track_name,
};
use super::Failure;
use argh::FromArgs;
use ec_node::net::Target;
use ec_node::node::folder;
use ec_node::node::tracks::{Outlet, TrackServer};
use ec_node::stop::StopFlag;

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

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let track = track_name(&args.namespace, &args.track)?;
    let groups = folder::read_groups(&args.dir).map_err(|e| Failure::usage(e.to_string()))?;
    let server = TrackServer::playout(
        track.clone(),
        groups,
        Duration::from_millis(args.interval_ms.max(1)),
    );
    let stop = StopFlag::on_signals().map_err(|e| Failure::other(e.to_string()))?;
    let tracks = std::slice::from_ref(&track);
    let mut outlet = match (args.listen, &args.relay) {
        (Some(addr), None) => {
            let key = node_key(args.key.as_deref())?;
            let outlet = Outlet::listen(addr, &key, server).map_err(serve_failure)?;
            let endpoint = format!("{}@{}", key.node_id(), advertised(outlet.local_addr()));
            println!("{}", ready_line(Some(endpoint), tracks));
            outlet
        }
        (None, Some(url)) => {
            let target = parse_target(url)?;
            if !matches!(target, Target::Relay(_)) {
                return Err(Failure::usage("--relay takes a moqt:// URL"));
            }
            let check = peer_check(&target, args.relay_ca.clone(), args.insecure);
            let mut outlet = Outlet::relay(&target, check, server).map_err(serve_failure)?;
            if !outlet.announced(&stop).map_err(serve_failure)? {
                return Ok(());
            }
            println!("{}", ready_line(None, tracks));
            outlet
        }
        _ => return Err(Failure::usage("give exactly one of --listen and --relay")),
    };
    let outcome = folder::serve(&mut outlet, &stop).map_err(serve_failure);
    outlet.shutdown();
    outcome
}
