//! `ec-node moq-cat`: a raw MoQ subscriber for people and tests.
//!
//! It dials a node (`NODE_ID@HOST:PORT` pins its identity) or a relay (`moqt://`), SUBSCRIBEs to
//! one track from group 0 (or FETCHes a group range), writes each object's payload to
//! `DIR/<group>-<object>.bin` and prints `group object size blake3hex` per object on stdout
//! ([`ec_node::node::cat`] does the reading).

use std::path::PathBuf;
use std::time::Duration;

use super::peer::{net_failure, parse_target, peer_check, track_name};
use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::moq::GroupId;
use ec_node::node::cat::{cat, CatConfig, CatError};
use ec_node::node::tracks::{PeerSpec, UpstreamError};
use ec_node::stop::StopFlag;

/// Subscribe to (or fetch from) one MoQ track and write its objects to a folder.
#[derive(FromArgs)]
#[argh(subcommand, name = "moq-cat")]
pub struct Args {
    /// NODE_ID@HOST:PORT (identity pinned), HOST:PORT (unpinned) or moqt://HOST:PORT[/path]
    #[argh(option)]
    remote: String,
    /// track namespace, fields separated by '/'
    #[argh(option)]
    namespace: String,
    /// track name
    #[argh(option)]
    track: String,
    /// folder for the object payloads (created if needed)
    #[argh(option)]
    out: PathBuf,
    /// stop after this many objects
    #[argh(option)]
    count: Option<u64>,
    /// FETCH groups FROM..TO (inclusive; FROM alone is one group) instead of subscribing
    #[argh(option)]
    fetch: Option<String>,
    /// give up after this many seconds without an object (exit 5; default 30)
    #[argh(option, default = "30")]
    timeout_s: u64,
    /// trust this PEM certificate or CA for a relay instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// do not check the peer's certificate (warns)
    #[argh(switch)]
    insecure: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let track = track_name(&args.namespace, &args.track)?;
    let range = args.fetch.as_deref().map(parse_range).transpose()?;
    let target = parse_target(&args.remote)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.out.display())))?;
    let config = CatConfig {
        peer: PeerSpec {
            check: peer_check(&target, args.relay_ca.clone(), args.insecure),
            target,
        },
        track,
        range: range.map(|(first, last)| (GroupId(first), GroupId(last))),
        out: args.out,
        count: args.count,
        idle: Duration::from_secs(args.timeout_s.max(1)),
    };
    let stop = StopFlag::on_signals().map_err(|e| Failure::other(e.to_string()))?;
    match cat(&config, &mut std::io::stdout().lock(), &stop) {
        Ok(_) => Ok(()),
        Err(CatError::Upstream(
            UpstreamError::Connect { why, .. } | UpstreamError::Left { why, .. },
        )) => Err(net_failure(why)),
        Err(CatError::Upstream(UpstreamError::Refused { code, reason, .. })) => Err(Failure::new(
            Exit::Connect,
            format!("the peer refused the request: code {code:#x} {reason}"),
        )),
        Err(e @ (CatError::NoHandshake(..) | CatError::FetchRefused(..))) => {
            Err(Failure::new(Exit::Connect, e.to_string()))
        }
        Err(e @ (CatError::Idle(_) | CatError::FetchReset(_))) => {
            Err(Failure::new(Exit::Idle, e.to_string()))
        }
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

/// `FROM` or `FROM..TO` (inclusive group numbers).
fn parse_range(text: &str) -> Result<(u64, u64), Failure> {
    let bad = || Failure::usage(format!("--fetch takes FROM or FROM..TO, not {text:?}"));
    let (from, to) = match text.split_once("..") {
        Some((a, b)) => (a, b),
        None => (text, text),
    };
    let from: u64 = from.parse().map_err(|_| bad())?;
    let to: u64 = to.parse().map_err(|_| bad())?;
    if to < from {
        return Err(bad());
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn fetch_ranges_parse() {
        assert_eq!(parse_range("3").unwrap(), (3, 3));
        assert_eq!(parse_range("2..9").unwrap(), (2, 9));
        assert!(parse_range("9..2").is_err());
        assert!(parse_range("a..2").is_err());
    }
}
