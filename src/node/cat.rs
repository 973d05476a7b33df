//! The raw reading pipeline behind `moq-cat`: one track from one peer, each object written to
//! a file of its own and listed.
//!
//! The track is subscribed from group 0 or fetched as a range ([`Ask`]); each object's payload
//! goes to `DIR/<group>-<object>.bin` and a line `group object size blake3hex` to the listing.
//! It ends at the count, at the end of the subscription or fetch, when nothing came for the idle
//! time, or on `stop`. It trusts nothing and verifies nothing: it shows what a peer sends.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::tracks::{Ask, Delivery, FetchEnd, PeerSpec, Upstream, UpstreamError};
use crate::moq::{FullTrackName, GroupId};
use crate::stop::StopFlag;

/// Longest one wait for the peer, so a stop request is seen.
const TICK: Duration = Duration::from_millis(100);

/// What to read and where to put it.
pub struct CatConfig {
    /// The peer.
    pub peer: PeerSpec,
    /// The track.
    pub track: FullTrackName,
    /// FETCH these groups (inclusive) instead of subscribing from group 0.
    pub range: Option<(GroupId, GroupId)>,
    /// The folder the payloads are written to (it exists).
    pub out: PathBuf,
    /// Stop after this many objects.
    pub count: Option<u64>,
    /// Give up when nothing came for this long.
    pub idle: Duration,
}

/// Why reading stopped early.
#[derive(Debug)]
pub enum CatError {
    /// The peer failed, refused or left.
    Upstream(UpstreamError),
    /// No handshake with the peer within the idle time.
    NoHandshake(String, Duration),
    /// No object for the idle time.
    Idle(Duration),
    /// The FETCH stream was reset (the code).
    FetchReset(u64),
    /// The peer refused the FETCH (REQUEST_ERROR code and reason).
    FetchRefused(u64, String),
    /// A payload file could not be written (its name).
    Write(String, std::io::Error),
}

impl std::fmt::Display for CatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatError::Upstream(e) => e.fmt(f),
            CatError::NoHandshake(peer, t) => write!(
                f,
                "cannot connect to {peer}: no handshake within {} s",
                t.as_secs()
            ),
            CatError::Idle(t) => write!(f, "no object for {} s", t.as_secs()),
            CatError::FetchReset(code) => write!(f, "the FETCH stream was reset (code {code:#x})"),
            CatError::FetchRefused(code, reason) => {
                write!(f, "the peer refused the request: code {code:#x} {reason}")
            }
            CatError::Write(name, e) => write!(f, "{name}: {e}"),
        }
    }
}

impl std::error::Error for CatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CatError::Upstream(e) => Some(e),
            CatError::Write(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Reads until the track or fetch ends, `count` objects, idleness or `stop`; returns the
/// objects written. A closed listing (e.g. `| head`) only ends the listing.
pub fn cat(config: &CatConfig, listing: &mut dyn Write, stop: &StopFlag) -> Result<u64, CatError> {
    let ask = match config.range {
        Some((first, last)) => Ask::Fetch(first, last),
        None => Ask::From(GroupId(0)),
    };
    let mut upstream = Upstream::dial(&config.peer, vec![(config.track.clone(), ask)])
        .map_err(CatError::Upstream)?;
    let result = read(&mut upstream, config, listing, stop);
    let _ = listing.flush();
    upstream.close();
    result
}

fn read(
    upstream: &mut Upstream,
    config: &CatConfig,
    listing: &mut dyn Write,
    stop: &StopFlag,
) -> Result<u64, CatError> {
    let mut last_heard = Instant::now();
    let mut received = 0u64;
    while !stop.is_set() {
        let Some(delivery) = upstream.next(TICK).map_err(CatError::Upstream)? else {
            if last_heard.elapsed() < config.idle {
                continue;
            }
            return Err(if upstream.is_connected() {
                CatError::Idle(config.idle)
            } else {
                CatError::NoHandshake(upstream.name().to_string(), config.idle)
            });
        };
        last_heard = Instant::now();
        match delivery {
            Delivery::Object { object, .. } => {
                let name = format!("{}-{}.bin", object.group, object.object);
                std::fs::write(config.out.join(&name), &object.payload)
                    .map_err(|e| CatError::Write(name, e))?;
                let hash = blake3::hash(&object.payload);
                let _ = writeln!(
                    listing,
                    "{} {} {} {}",
                    object.group,
                    object.object,
                    object.payload.len(),
                    hash.to_hex()
                );
                received += 1;
                if config.count.is_some_and(|n| received >= n) {
                    break;
                }
            }
            Delivery::FetchDone { end, .. } => match end {
                FetchEnd::Complete => break,
                FetchEnd::Reset(code) => return Err(CatError::FetchReset(code)),
                FetchEnd::Refused(code, reason) => {
                    return Err(CatError::FetchRefused(code, reason))
                }
            },
            Delivery::Ended { .. } => break,
            Delivery::Connected(node) => {
                if let Some(node) = node {
                    log::info!("connected to node {node}");
                }
            }
        }
    }
    Ok(received)
}
