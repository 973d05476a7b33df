//! What the MoQ commands share: track names from flags, the peer check chosen from an
//! address and `--relay-ca`/`--insecure`, the ready line, and the exit code of a network error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use super::{Exit, Failure};
use ec_node::capture::Source;
use ec_node::crypto::{NetworkSecret, NodeId, NodeKey, StreamId, StreamKey, StreamKeys};
use ec_node::moq::{FullTrackName, TrackNamespace};
use ec_node::net::{NetError, PeerCheck, Target};
use ec_node::node::tracks::{ServeError, UpstreamError};

/// The track named by `--namespace a/b/c` and `--track NAME`.
pub fn track_name(namespace: &str, track: &str) -> Result<FullTrackName, Failure> {
    let fields: Vec<&str> = namespace.split('/').collect();
    let name = FullTrackName {
        namespace: TrackNamespace::from_strs(&fields),
        name: track.as_bytes().to_vec(),
    };
    if namespace.is_empty() || track.is_empty() || !name.is_valid() {
        return Err(Failure::usage(format!(
            "bad track name {namespace:?} / {track:?} (namespace fields are non-empty and separated by '/')"
        )));
    }
    Ok(name)
}

/// How to check the peer of `target`, logging a warning where nothing is checked.
pub fn peer_check(target: &Target, relay_ca: Option<PathBuf>, insecure: bool) -> PeerCheck {
    if insecure {
        log::warn!("--insecure: the peer's certificate is not checked");
        return PeerCheck::Insecure;
    }
    match target {
        Target::Node(addr) => match addr.node {
            Some(id) => PeerCheck::Pinned(id),
            None => {
                log::warn!(
                    "{addr} names no node id: connecting without checking the peer's identity"
                );
                PeerCheck::Unpinned
            }
        },
        Target::Relay(url) => PeerCheck::WebPki {
            ca_file: relay_ca,
            host: url.host.clone(),
        },
    }
}

/// The node key of `--key` (unreadable: exit 2), or a fresh one for this run.
pub fn node_key(path: Option<&std::path::Path>) -> Result<NodeKey, Failure> {
    match path {
        Some(path) => NodeKey::read(path).map_err(|e| Failure::usage(e.to_string())),
        None => NodeKey::generate().map_err(|e| Failure::other(e.to_string())),
    }
}

/// The manifest signers a subscriber trusts: `--trust`, or else the node ids pinned in the
/// addresses of the peers serving the manifests (none for a relay).
pub fn trusted_signers(
    trust: &[String],
    manifests_peers: &[Target],
) -> Result<Vec<NodeId>, Failure> {
    if trust.is_empty() {
        return Ok(manifests_peers
            .iter()
            .filter_map(|peer| match peer {
                Target::Node(addr) => addr.node,
                Target::Relay(_) => None,
            })
            .collect());
    }
    trust
        .iter()
        .map(|t| t.parse::<NodeId>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::usage(format!("--trust: {e}")))
}

/// The target of `--remote` / `--relay`.
pub fn parse_target(text: &str) -> Result<Target, Failure> {
    Target::parse(text).map_err(|e| Failure::usage(e.to_string()))
}

/// The ready line: `{"endpoint":"NODE_ID@IP:PORT","tracks":[...]}` (no endpoint when `None`).
pub fn ready_line(endpoint: Option<String>, tracks: &[FullTrackName]) -> String {
    let tracks: Vec<serde_json::Value> = tracks
        .iter()
        .map(|t| {
            let ns: Vec<String> = t
                .namespace
                .0
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            serde_json::json!({"namespace": ns, "name": String::from_utf8_lossy(&t.name)})
        })
        .collect();
    let mut line = serde_json::Map::new();
    if let Some(e) = endpoint {
        line.insert("endpoint".into(), e.into());
    }
    line.insert("tracks".into(), tracks.into());
    serde_json::Value::Object(line).to_string()
}

/// The address to advertise for a bound socket: loopback instead of an unspecified address.
pub fn advertised(addr: SocketAddr) -> SocketAddr {
    let ip: IpAddr = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// The exit code and cause for a network error.
pub fn net_failure(e: NetError) -> Failure {
    let exit = match &e {
        NetError::Address { .. } | NetError::Config { .. } => Exit::Usage,
        NetError::Resolve { .. }
        | NetError::Handshake { .. }
        | NetError::IdentityMismatch { .. }
        | NetError::Transport { .. } => Exit::Connect,
        NetError::IdleTimeout | NetError::Session(_) => Exit::Idle,
        _ => Exit::Other,
    };
    Failure::new(exit, e.to_string())
}

/// The exit code and cause for a serving error.
pub fn serve_failure(e: ServeError) -> Failure {
    match e {
        ServeError::Net(e) => net_failure(e),
        // Only a relay's first attempt can end a run: later ones are retried.
        ServeError::Refused(_) | ServeError::RelayLeft(..) | ServeError::NoAnswer(_) => {
            Failure::new(Exit::Connect, e.to_string())
        }
    }
}

/// The exit code and cause for a failure of the peer we take tracks from (`who`, for the
/// cause: "the upstream peer", "the peer").
pub fn upstream_failure(e: UpstreamError, who: &str) -> Failure {
    match e {
        UpstreamError::Connect { peer, why } => {
            let exit = net_failure(why.clone()).exit;
            let exit = if exit == Exit::Usage {
                Exit::Usage
            } else {
                Exit::Connect
            };
            Failure::new(exit, format!("cannot connect to {peer}: {why}"))
        }
        UpstreamError::Refused { peer, reason, .. } => Failure::new(
            Exit::Connect,
            format!("{who} refused a track: {peer}: {reason}"),
        ),
        UpstreamError::Left { peer, why } => {
            Failure::new(Exit::Idle, format!("{who} left: {peer}: {why}"))
        }
        UpstreamError::Request(e) => Failure::new(Exit::Idle, format!("{who} left: {e}")),
        UpstreamError::Net(e) => net_failure(e),
    }
}

/// The stream's subkeys from `--stream-id` and `--network-secret`; without `--stream-id`, the
/// broadcast-scoped id of an `hdhr://` source's channel, read from the device's lineup.
pub fn stream_keys(
    stream_id: Option<&str>,
    network_secret: Option<&str>,
    source: Option<&Source>,
) -> Result<StreamKeys, Failure> {
    let id = match (stream_id, source) {
        (Some(id), _) => id.to_string(),
        (None, Some(Source::Hdhr { host, port, guide })) => {
            let (_, lineup) = ec_node::hdhr::client::fetch(&format!("{host}:{port}"))
                .map_err(|e| Failure::new(Exit::Connect, e.to_string()))?;
            let channel = lineup
                .iter()
                .find(|c| c.guide_number == guide.to_string())
                .ok_or_else(|| {
                    Failure::new(
                        Exit::Connect,
                        format!("channel {guide} is not in the lineup"),
                    )
                })?;
            ec_node::hdhr::broadcast_stream_id(guide, &channel.guide_name)
        }
        (None, _) => {
            return Err(Failure::usage(
                "--stream-id is required (only an hdhr:// source has a default)",
            ))
        }
    };
    let id = StreamId::new(&id).map_err(|e| Failure::usage(format!("--stream-id: {e}")))?;
    let secret = network_secret
        .map(NetworkSecret::from_hex)
        .transpose()
        .map_err(|e| Failure::usage(format!("--network-secret: {e}")))?;
    Ok(StreamKey::derive(secret.as_ref(), &id).subkeys())
}
