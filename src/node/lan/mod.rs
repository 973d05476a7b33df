//! Serving the house (`ec-node serve`): every channel of the pooled tuners over HTTP — as an
//! HDHomeRun for Plex, Jellyfin, Emby and Channels DVR, as an IPTV playlist for VLC, and as HLS
//! for any player — each channel read **once** however many screens watch it.
//!
//! ```text
//!  UDP/TCP 65001 ─► Discovery: HDHomeRun discovery and read-only control, from LanDevice
//!  HTTP listener ─► one thread per connection (at most MAX_CONNECTIONS): Site
//!                      │ watch / playlist / segment / status
//!                      ▼
//!                    Hub ─► per open channel: a read thread (ingest: capture → chunk) that puts
//!                      │    each chunk in the channel's HLS window and every viewer's bounded queue
//!                      ├─► Audience (sans-I/O): admission, queues, slow viewers, release
//!                      └─► driver thread: sleeps until the audience's next deadline (a channel
//!                           released `release` after its last viewer left)
//! ```
//!
//! This module only wires the sources, the hub, the listener and the discovery responder; what
//! is answered is the site's and the protocol's, who reads what is the hub's.

pub mod audience;
pub mod bell;
pub mod discovery;
pub mod hub;
pub mod site;

use crate::capture::{CaptureOptions, Source};
use crate::chunk::ChunkerConfig;
use crate::hdhr::client::{self, ClientError};
use crate::hdhr::device::{Identity, LineupEntry};
use crate::hdhr::GuideNumber;
use crate::http::{BindError, Listener};
use crate::node::tuner::LocalTuner;
use crate::stop::StopFlag;
use discovery::{DeviceView, Discovery};
use hub::{Carrier, ChannelSource, ChannelSpec, Hub, HubConfig, MeshSource};
use site::Site;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// The most HTTP connections served at once (viewers, HLS clients, half-open sockets).
pub const MAX_CONNECTIONS: usize = 1024;

/// A pooled HDHomeRun device (`--tuner hdhr://HOST[:PORT]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunerDevice {
    /// Its host.
    pub host: String,
    /// Its HTTP port.
    pub port: u16,
}

/// A channel taken from the mesh (`--mesh GUIDE=STREAM_ID`).
#[derive(Clone, Debug)]
pub struct MeshChannel {
    /// Its guide number in the lineup.
    pub guide: GuideNumber,
    /// Its name in the lineup.
    pub name: String,
    /// The stream and its peers.
    pub source: MeshSource,
}

/// What `serve` serves and how.
pub struct LanConfig {
    /// The HTTP address.
    pub listen: SocketAddr,
    /// The pooled devices; with no device and no mesh channel, the built-in broadcast on an
    /// in-process simulator.
    pub tuners: Vec<TunerDevice>,
    /// Channels taken from the mesh.
    pub mesh: Vec<MeshChannel>,
    /// Who the node says it is (its tuner count is the pool's).
    pub identity: Identity,
    /// The chunk grid: the unit viewers join and skip by, and the HLS segment.
    pub chunker: ChunkerConfig,
    /// How long a channel stays open after its last viewer left.
    pub release: Duration,
    /// The most `/auto/` viewers at once.
    pub max_viewers: usize,
    /// Whether to answer HDHomeRun discovery and control on port 65001.
    pub discovery: bool,
}

/// What is up once `serve` listens, for the caller to tell the user.
pub struct LanReady {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    /// Channels in the lineup.
    pub channels: usize,
    /// Tuners pooled.
    pub tuners: u32,
    /// Where the channels come from.
    pub sources: Vec<String>,
    /// Where discovery is answered, or why not.
    pub discovery: Result<SocketAddr, String>,
}

/// Why `serve` could not run.
#[derive(Debug)]
pub enum LanError {
    /// The HTTP address could not be bound.
    Bind(BindError),
    /// The built-in simulator did not start.
    Builtin(BindError),
    /// A device could not be asked for its lineup.
    Device(String, ClientError),
    /// No device carried a channel.
    NoChannels,
    /// A thread could not be started.
    Start(std::io::Error),
}

impl std::fmt::Display for LanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LanError::Bind(e) => e.fmt(f),
            LanError::Builtin(e) => write!(f, "the built-in broadcast did not start: {e}"),
            LanError::Device(device, e) => write!(f, "tuner {device}: {e}"),
            LanError::NoChannels => write!(
                f,
                "no channel to serve: the tuners' lineups are empty and no mesh channel was given"
            ),
            LanError::Start(e) => write!(f, "cannot start a thread: {e}"),
        }
    }
}

impl std::error::Error for LanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LanError::Bind(e) | LanError::Builtin(e) => Some(e),
            LanError::Device(_, e) => Some(e),
            LanError::Start(e) => Some(e),
            LanError::NoChannels => None,
        }
    }
}

/// Serves until `stop`; `ready` is told where once the listener is up.
pub fn serve(
    config: LanConfig,
    stop: &StopFlag,
    ready: &mut dyn FnMut(&LanReady),
) -> Result<(), LanError> {
    // With no source at all, the built-in broadcast; it lives as long as the run.
    let builtin = match config.tuners.is_empty() && config.mesh.is_empty() {
        true => Some(LocalTuner::start().map_err(LanError::Builtin)?),
        false => None,
    };
    let devices = match &builtin {
        Some(tuner) => vec![TunerDevice {
            host: tuner.addr().ip().to_string(),
            port: tuner.addr().port(),
        }],
        None => config.tuners.clone(),
    };
    let (mut channels, tuners) = lineup(&devices)?;
    for mesh in &config.mesh {
        let carrier = Carrier {
            device: None,
            source: ChannelSource::Mesh(Box::new(mesh.source.clone())),
            label: format!("mesh {}", mesh.source.objects.target),
        };
        match channels.iter_mut().find(|c| c.entry.guide == mesh.guide) {
            Some(known) => known.carriers.push(carrier),
            None => channels.push(ChannelSpec {
                entry: LineupEntry {
                    guide: mesh.guide.clone(),
                    name: mesh.name.clone(),
                    video_codec: None,
                    audio_codec: None,
                },
                carriers: vec![carrier],
            }),
        }
    }
    if channels.is_empty() {
        return Err(LanError::NoChannels);
    }
    let listener = Listener::bind(config.listen).map_err(LanError::Bind)?;
    let hub_config = HubConfig {
        chunker: config.chunker,
        capture: CaptureOptions {
            realtime: true,
            ..CaptureOptions::default()
        },
        release: config.release,
        max_viewers: config.max_viewers,
        target_duration: crate::hls::target_duration(&config.chunker),
    };
    let (hub, driver) = Hub::start(channels, tuners, hub_config, stop).map_err(LanError::Start)?;
    let http = listener.local_addr();
    let discovery = match config.discovery {
        true => start_discovery(http, &hub, &config.identity, stop),
        false => Err("off (--discovery=false)".to_string()),
    };
    ready(&LanReady {
        addr: listener.local_addr(),
        channels: hub.lineup().len(),
        tuners: hub.tuner_count(),
        sources: match builtin {
            Some(_) => vec!["the built-in broadcast".into()],
            None => devices
                .iter()
                .map(|d| format!("hdhr://{}:{}", d.host, d.port))
                .chain(config.mesh.iter().map(|m| format!("mesh {}", m.guide)))
                .collect(),
        },
        discovery: discovery
            .as_ref()
            .map(Discovery::udp_addr)
            .map_err(Clone::clone),
    });
    let site = Site::new(hub, config.identity, stop);
    listener.run(
        MAX_CONNECTIONS,
        stop,
        &|conn, peer| site.serve(conn, peer),
        &|conn| crate::hdhr::DeviceError::SYSTEM_BUSY.respond(conn),
    );
    let _ = driver.join();
    drop(discovery);
    drop(builtin);
    Ok(())
}

/// Starts the discovery responder next to the HTTP listener at `http`: on loopback when the
/// node serves loopback only, else on every interface (a socket bound to one unicast address
/// does not receive the broadcasts clients discover with). A port already taken is not fatal:
/// the node still serves by address.
fn start_discovery(
    http: SocketAddr,
    hub: &Arc<Hub>,
    identity: &Identity,
    stop: &StopFlag,
) -> Result<Discovery, String> {
    let ip: IpAddr = match http.ip() {
        ip if ip.is_loopback() => ip,
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    let device = Arc::new(LanDevice {
        hub: hub.clone(),
        identity: identity.clone(),
        http,
    });
    Discovery::start(ip, device, stop).map_err(|e| {
        log::warn!("HDHomeRun discovery is off: {e}");
        e.to_string()
    })
}

/// The node as the discovery responder sees it.
struct LanDevice {
    hub: Arc<Hub>,
    identity: Identity,
    http: SocketAddr,
}

impl DeviceView for LanDevice {
    fn identity(&self) -> Identity {
        Identity {
            tuners: self.hub.tuner_count(),
            ..self.identity.clone()
        }
    }

    fn base_url(&self, asker: IpAddr) -> String {
        let ip = match self.http.ip() {
            ip if !ip.is_unspecified() => ip,
            _ => route_to(asker).unwrap_or(Ipv4Addr::LOCALHOST.into()),
        };
        format!("http://{}", SocketAddr::new(ip, self.http.port()))
    }

    fn tuner_status(&self, tuner: u32) -> Option<String> {
        if tuner >= self.hub.tuner_count() {
            return None;
        }
        let open: Vec<_> = self.hub.status().into_iter().filter(|c| c.open).collect();
        Some(match open.get(tuner as usize) {
            Some(c) => format!(
                "ch=auto:{} lock=8vsb ss=100 snq=100 seq=100 bps={} pps=0",
                c.entry.guide, c.bitrate
            ),
            None => "ch=none lock=none ss=0 snq=0 seq=0 bps=0 pps=0".to_string(),
        })
    }
}

/// The local address this machine would use to reach `asker` (no packet is sent).
fn route_to(asker: IpAddr) -> Option<IpAddr> {
    let any: IpAddr = match asker {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
    socket.connect(SocketAddr::new(asker, 9)).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

/// The pooled lineup: every channel of every device (a channel several devices carry can be
/// read from any of them), and each device's tuner count.
fn lineup(devices: &[TunerDevice]) -> Result<(Vec<ChannelSpec>, Vec<u32>), LanError> {
    let mut channels: Vec<ChannelSpec> = Vec::new();
    let mut tuners = Vec::with_capacity(devices.len());
    for (at, d) in devices.iter().enumerate() {
        let authority = format!("{}:{}", d.host, d.port);
        let (device, lineup) =
            client::fetch(&authority).map_err(|e| LanError::Device(authority.clone(), e))?;
        tuners.push(u32::try_from(device.tuners).unwrap_or(u32::MAX));
        for channel in lineup {
            let Some(guide) = GuideNumber::parse(&channel.guide_number) else {
                log::warn!(
                    "{authority}: channel {:?} skipped: not a guide number",
                    channel.guide_number
                );
                continue;
            };
            let carrier = Carrier {
                device: Some(at),
                source: ChannelSource::Tuner(Source::Hdhr {
                    host: d.host.clone(),
                    port: d.port,
                    guide: guide.clone(),
                }),
                label: format!("tuner hdhr://{authority}"),
            };
            match channels.iter_mut().find(|c| c.entry.guide == guide) {
                Some(known) => known.carriers.push(carrier),
                None => channels.push(ChannelSpec {
                    entry: LineupEntry {
                        guide,
                        name: channel.guide_name,
                        video_codec: Some(channel.video_codec).filter(|c| !c.is_empty()),
                        audio_codec: Some(channel.audio_codec).filter(|c| !c.is_empty()),
                    },
                    carriers: vec![carrier],
                }),
            }
        }
    }
    Ok((channels, tuners))
}
