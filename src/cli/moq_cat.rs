//! `ec-node moq-cat`: a raw MoQ subscriber for people and tests.
//!
//! It dials a node (`NODE_ID@HOST:PORT` pins its identity) or a relay (`moqt://`), SUBSCRIBEs to
//! one track from group 0 (or FETCHes a group range), writes each object's payload to
//! `DIR/<group>-<object>.bin` and prints `group object size blake3hex` per object on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::peer::{net_failure, parse_target, peer_check, track_name};
use super::{Exit, Failure};
use crate::moq::session::{Event, SubscribeOptions};
use crate::moq::{Location, ObjectStatus, SessionCode, SubscriptionFilter};
use crate::net::{Endpoint, NetEvent, Settings};
use argh::FromArgs;

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
    let check = peer_check(&target, args.relay_ca.clone(), args.insecure);
    let (mut ep, conn) =
        Endpoint::dial(&target, check, Settings::default()).map_err(net_failure)?;
    let idle = Duration::from_secs(args.timeout_s.max(1));
    let mut last_heard = Instant::now();
    let mut received = 0u64;
    let mut connected = false;
    let mut stdout = std::io::stdout().lock();
    let result = loop {
        let Some(ev) = ep
            .next_event(Duration::from_millis(100))
            .map_err(net_failure)?
        else {
            if last_heard.elapsed() >= idle {
                break Err(if connected {
                    Failure::new(Exit::Idle, format!("no object for {} s", idle.as_secs()))
                } else {
                    Failure::new(
                        Exit::Connect,
                        format!(
                            "cannot connect to {}: no handshake within {} s",
                            args.remote,
                            idle.as_secs()
                        ),
                    )
                });
            }
            continue;
        };
        let event = match ev {
            NetEvent::Connected { node, .. } => {
                connected = true;
                last_heard = Instant::now();
                if let Some(node) = node {
                    log::info!("connected to node {node}");
                }
                continue;
            }
            NetEvent::Disconnected { why, .. } => break Err(net_failure(why)),
            NetEvent::Session { event, .. } => event,
        };
        match event {
            Event::SetupComplete { .. } => {
                let t = track.clone();
                let sent = ep.call(conn, move |s| match range {
                    Some((first, last)) => {
                        s.fetch(t, Location::new(first, 0), Location::new(last, 0))
                    }
                    None => s.subscribe(
                        t,
                        SubscribeOptions {
                            filter: SubscriptionFilter::AbsoluteStart(Location::new(0, 0)),
                            ..SubscribeOptions::default()
                        },
                    ),
                });
                if let Err(e) = sent.map_err(net_failure)? {
                    break Err(Failure::other(e.to_string()));
                }
            }
            Event::Object { object, .. } => {
                last_heard = Instant::now();
                if object.status != ObjectStatus::Normal {
                    continue;
                }
                let name = format!("{}-{}.bin", object.group, object.object);
                std::fs::write(args.out.join(&name), &object.payload)
                    .map_err(|e| Failure::other(format!("{name}: {e}")))?;
                let hash = blake3::hash(&object.payload);
                // A closed stdout (e.g. `| head`) just ends the listing early.
                let _ = writeln!(
                    stdout,
                    "{} {} {} {}",
                    object.group,
                    object.object,
                    object.payload.len(),
                    hash.to_hex()
                );
                received += 1;
                if args.count.is_some_and(|n| received >= n) {
                    break Ok(());
                }
            }
            Event::FetchComplete { .. } | Event::SubscriptionDone { .. } => break Ok(()),
            Event::RequestFailed { code, reason, .. } => {
                break Err(Failure::new(
                    Exit::Connect,
                    format!("the peer refused the request: code {code:#x} {reason}"),
                ));
            }
            Event::StreamReset { code, .. } if range.is_some() => {
                break Err(Failure::new(
                    Exit::Idle,
                    format!("the FETCH stream was reset (code {code:#x})"),
                ));
            }
            Event::GoAway { .. } => log::info!("the peer is going away"),
            _ => {}
        }
    };
    let _ = stdout.flush();
    // Already gone if the connection failed; otherwise a clean NO_ERROR close.
    let _ = ep.close(conn, SessionCode::NoError, "done");
    ep.shutdown();
    result
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
