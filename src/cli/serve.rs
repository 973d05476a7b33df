//! `ec-node serve`: every channel of the pooled tuners over HTTP, as an HDHomeRun, an IPTV
//! playlist and HLS, each channel read once for all viewers.
//!
//! Flags become a [`LanConfig`] (errors exit 2); [`ec_node::node::lan::serve`] runs until
//! Ctrl-C; the address to open is printed once the listener is up.

use super::bounded::{AtLeastOne, ChunkMs};
use super::peer::{node_key, parse_target, peer_check, stream_keys, trusted_signers};
use super::{Exit, Failure};
use argh::FromArgs;
use ec_node::capture::Source;
use ec_node::chunk::ChunkerConfig;
use ec_node::hdhr::device::{DeviceId, Identity};
use ec_node::hdhr::GuideNumber;
use ec_node::manifest::Policy;
use ec_node::net::Target;
use ec_node::node::lan::hub::MeshSource;
use ec_node::node::lan::{serve, LanConfig, LanError, MeshChannel, TunerDevice};
use ec_node::node::tracks::PeerSpec;
use ec_node::stop::StopFlag;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Serve every channel over HTTP to the house: a drop-in HDHomeRun for Plex, Jellyfin, Emby and
/// Channels DVR, an M3U playlist for VLC, and HLS; each channel is read once for all viewers.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
pub struct Args {
    /// HTTP address (default 127.0.0.1:5004, this machine only; give a LAN address or
    /// 0.0.0.0:5004 to serve the house)
    #[argh(option, default = "SocketAddr::from(([127, 0, 0, 1], 5004))")]
    listen: SocketAddr,
    /// an HDHomeRun whose channels and tuners are pooled: hdhr://HOST[:PORT] (repeatable;
    /// default: the built-in broadcast on an in-process simulator)
    #[argh(option)]
    tuner: Vec<String>,
    /// milliseconds a channel stays open after its last viewer left (default 2000)
    #[argh(option, default = "2000")]
    release_ms: u64,
    /// the most continuous-stream viewers at once (default 64)
    #[argh(option, default = "AtLeastOne::literal(64)")]
    max_viewers: AtLeastOne<usize>,
    /// HDHomeRun device id: 8 hex digits with a valid check digit (default: derived from the
    /// node key, else from the friendly name)
    #[argh(option)]
    device_id: Option<String>,
    /// the name media servers show (default "ec-node")
    #[argh(option, default = "String::from(\"ec-node\")")]
    friendly_name: String,
    /// node key file whose id the device id is derived from
    #[argh(option)]
    key: Option<PathBuf>,
    /// chunk duration D in milliseconds: the unit viewers join at and HLS segments (default 2000)
    #[argh(option, default = "ChunkMs::DEFAULT")]
    chunk_ms: ChunkMs,
    /// answer HDHomeRun discovery and control on port 65001: true (default) or false
    #[argh(option, default = "true")]
    discovery: bool,
    /// a channel from the mesh: GUIDE=STREAM_ID (repeatable; needs --remote and a trusted signer)
    #[argh(option)]
    mesh: Vec<String>,
    /// for --mesh: the peer serving the chunk objects (NODE_ID@HOST:PORT or moqt://HOST:PORT)
    #[argh(option)]
    remote: Option<String>,
    /// for --mesh: a different peer serving the manifests
    #[argh(option)]
    remote_manifests: Option<String>,
    /// for --mesh: a manifest signer to trust (repeatable; default: the node id pinned in
    /// --remote-manifests, else --remote)
    #[argh(option)]
    trust: Vec<String>,
    /// for --mesh: the network secret, hex (default: none, public streams)
    #[argh(option)]
    network_secret: Option<String>,
    /// for --mesh through a relay: trust this PEM certificate or CA instead of the system roots
    #[argh(option)]
    relay_ca: Option<PathBuf>,
    /// for --mesh: do not check the peer's certificate (warns)
    #[argh(switch)]
    insecure: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> Result<(), Failure> {
    let tuners = args
        .tuner
        .iter()
        .map(|t| {
            Source::parse_device(t)
                .map(|(host, port)| TunerDevice { host, port })
                .map_err(|e| Failure::usage(format!("--tuner: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let id = match (&args.device_id, &args.key) {
        (Some(text), _) => {
            DeviceId::parse(text).map_err(|e| Failure::usage(format!("--device-id: {e}")))?
        }
        (None, Some(path)) => {
            DeviceId::derive(node_key(Some(path))?.node_id().to_string().as_bytes())
        }
        (None, None) => DeviceId::derive(args.friendly_name.as_bytes()),
    };
    let mesh = mesh_channels(&args)?;
    let config = LanConfig {
        listen: args.listen,
        tuners,
        mesh,
        identity: Identity {
            id,
            friendly_name: args.friendly_name.clone(),
            model: "HDHR5-4US".into(),
            firmware_name: "hdhomerun5_atsc".into(),
            firmware_version: "20250815".into(),
            auth: format!("ecnode{id}"),
            tuners: 0,
        },
        chunker: ChunkerConfig {
            chunk_ms: args.chunk_ms.get(),
            ..ChunkerConfig::default()
        },
        release: Duration::from_millis(args.release_ms),
        max_viewers: args.max_viewers.get(),
        discovery: args.discovery,
    };
    let stop = StopFlag::on_signals()
        .map_err(|e| Failure::other(format!("cannot install signal handlers: {e}")))?;
    let outcome = serve(config, &stop, &mut |ready| {
        // The ready line for scripts, on stdout; the same for people on stderr.
        println!(
            "{}",
            serde_json::json!({
                "listen": ready.addr.to_string(),
                "device_id": id.to_string(),
                "channels": ready.channels,
                "tuners": ready.tuners,
                "discovery": ready.discovery.as_ref().ok().map(ToString::to_string),
            })
        );
        eprintln!(
            "serve: {} channels from {} on {} tuners; open http://{}/ (device {id})",
            ready.channels,
            ready.sources.join(", "),
            ready.tuners,
            ready.addr
        );
        if let Err(why) = &ready.discovery {
            eprintln!("serve: HDHomeRun discovery: {why}");
        }
        if ready.addr.ip().is_loopback() {
            eprintln!(
                "serve: listening on this machine only; --listen 0.0.0.0:5004 serves the LAN"
            );
        }
    });
    match outcome {
        Ok(()) => Ok(()),
        // As the tuner simulator: an address that cannot be listened on is a connection failure.
        Err(e @ (LanError::Bind(_) | LanError::Device(..))) => {
            Err(Failure::new(Exit::Connect, e.to_string()))
        }
        Err(e) => Err(Failure::other(e.to_string())),
    }
}

/// The `--mesh` channels, each fed only by chunks a trusted manifest vouches for.
fn mesh_channels(args: &Args) -> Result<Vec<MeshChannel>, Failure> {
    if args.mesh.is_empty() {
        return Ok(Vec::new());
    }
    let remote = args
        .remote
        .as_deref()
        .ok_or_else(|| Failure::usage("--mesh needs --remote"))?;
    let objects = parse_target(remote)?;
    let manifests = args
        .remote_manifests
        .as_deref()
        .map(parse_target)
        .transpose()?;
    let trusted = match &manifests {
        Some(manifests) => trusted_signers(&args.trust, std::slice::from_ref(manifests))?,
        None => trusted_signers(&args.trust, std::slice::from_ref(&objects))?,
    };
    if trusted.is_empty() {
        return Err(Failure::usage(
            "--mesh needs a signer to trust: --trust NODE_ID or a NODE_ID@ address",
        ));
    }
    let mut policy = Policy::new(trusted);
    policy.require_manifest = true;
    let spec = |target: &Target| PeerSpec {
        check: peer_check(target, args.relay_ca.clone(), args.insecure),
        target: target.clone(),
    };
    args.mesh
        .iter()
        .map(|m| {
            let bad = || Failure::usage(format!("--mesh takes GUIDE=STREAM_ID, not {m:?}"));
            let (guide, stream) = m.split_once('=').ok_or_else(bad)?;
            let guide = GuideNumber::parse(guide).ok_or_else(bad)?;
            Ok(MeshChannel {
                guide,
                name: stream.to_string(),
                source: MeshSource {
                    keys: stream_keys(Some(stream), args.network_secret.as_deref(), None)?,
                    policy: policy.clone(),
                    objects: spec(&objects),
                    manifests: manifests.as_ref().map(spec),
                },
            })
        })
        .collect()
}
