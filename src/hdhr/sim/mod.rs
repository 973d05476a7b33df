//! The HDHomeRun simulator's owner: its channels, its tuners and who holds them, the faults it
//! injects, the routes it answers and the JSON documents it serves.
//!
//! It never touches sockets, the clock or threads: [`server`] does the HTTP I/O and asks this
//! module what to answer, [`broadcast`] makes the packets. Tuner allocation is the only shared
//! state (a mutex), released when the [`Tuned`] lease is dropped.

pub mod broadcast;
pub mod server;

use super::device::{self, DeviceId, Identity, LineupEntry};
use super::{DeviceError, GuideNumber};
use crate::ts::psi::StreamType;
use broadcast::Broadcast;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The most tuners a simulated device may have.
pub const MAX_TUNERS: u8 = 16;
/// Model number sent in `discover.json` (a four-tuner ATSC FLEX 4K).
pub const MODEL_NUMBER: &str = "HDHR5-4US";
/// Device ID sent in `discover.json`; its last digit is the checksum real devices carry.
pub const DEVICE_ID: &str = "1EC0DE08";
/// The longest `duration=` honoured, in seconds (a day; real devices accept any).
pub const MAX_DURATION_S: u64 = 86_400;

/// Why a simulator configuration is unusable. Every variant is the caller's fault.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No channel was configured.
    NoChannels,
    /// Two channels share a guide number.
    DuplicateChannel(GuideNumber),
    /// The tuner count is outside `1..=MAX_TUNERS`.
    Tuners(u8),
    /// A `--fault` spec could not be read (the text says which and why).
    Fault(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::NoChannels => write!(f, "no channel to serve"),
            ConfigError::DuplicateChannel(g) => write!(f, "channel {g} is configured twice"),
            ConfigError::Tuners(n) => write!(f, "{n} tuners is outside 1..={MAX_TUNERS}"),
            ConfigError::Fault(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One fault to inject into stream connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// `no-data`: send the headers, then nothing, keeping the connection open.
    NoData,
    /// `stall-after:SECS`: stop sending after SECS, keeping the connection open.
    StallAfter(Duration),
    /// `close-after:SECS`: close the connection after SECS, like a dropped tuner.
    CloseAfter(Duration),
    /// `drop-every:N`: omit every Nth packet of the connection.
    DropEvery(u64),
    /// `garbage-every:SECS`: insert a burst of [`server::GARBAGE_BYTES`] garbage bytes every SECS.
    GarbageEvery(Duration),
    /// `refuse`: answer 503 with `807 No Video Data`.
    Refuse,
}

impl Fault {
    /// Reads a `--fault` spec (`no-data`, `stall-after:2.5`, `drop-every:100`, ...).
    pub fn parse(spec: &str) -> Result<Fault, ConfigError> {
        let bad = |why: &str| ConfigError::Fault(format!("--fault {spec}: {why}"));
        let seconds = |value: &str| {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=86_400.0).contains(s))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad("SECS must be a number of seconds in 0..=86400"))
        };
        match spec.split_once(':') {
            None if spec == "no-data" => Ok(Fault::NoData),
            None if spec == "refuse" => Ok(Fault::Refuse),
            Some(("stall-after", value)) => seconds(value).map(Fault::StallAfter),
            Some(("close-after", value)) => seconds(value).map(Fault::CloseAfter),
            Some(("garbage-every", value)) => match seconds(value)? {
                every if every >= Duration::from_millis(10) => Ok(Fault::GarbageEvery(every)),
                _ => Err(bad("SECS must be at least 0.01")),
            },
            Some(("drop-every", value)) => match value.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(Fault::DropEvery(n)),
                _ => Err(bad("N must be a whole number of at least 1")),
            },
            _ => Err(bad(
                "expected no-data, stall-after:SECS, close-after:SECS, drop-every:N, \
                 garbage-every:SECS or refuse",
            )),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::NoData => write!(f, "no-data"),
            Fault::StallAfter(d) => write!(f, "stall-after:{}", d.as_secs_f64()),
            Fault::CloseAfter(d) => write!(f, "close-after:{}", d.as_secs_f64()),
            Fault::DropEvery(n) => write!(f, "drop-every:{n}"),
            Fault::GarbageEvery(d) => write!(f, "garbage-every:{}", d.as_secs_f64()),
            Fault::Refuse => write!(f, "refuse"),
        }
    }
}

/// The faults of one stream connection, asked about by the server as the stream runs. Pure: the
/// caller says how long the connection has been open.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults<'a>(&'a [Fault]);

impl Faults<'_> {
    fn refuses(&self) -> bool {
        self.0.contains(&Fault::Refuse)
    }

    /// Whether packets are sent `elapsed` after the stream started.
    pub fn sends_at(&self, elapsed: Duration) -> bool {
        self.0.iter().all(|fault| match fault {
            Fault::NoData => false,
            Fault::StallAfter(after) => elapsed < *after,
            _ => true,
        })
    }

    /// Whether the connection is dropped `elapsed` after the stream started.
    pub fn closes_at(&self, elapsed: Duration) -> bool {
        self.0
            .iter()
            .any(|fault| matches!(fault, Fault::CloseAfter(after) if elapsed >= *after))
    }

    /// Whether the connection's `index`th packet (from 0) is omitted.
    pub fn drops(&self, index: u64) -> bool {
        self.0
            .iter()
            .any(|fault| matches!(fault, Fault::DropEvery(n) if (index + 1).is_multiple_of(*n)))
    }

    /// Whether a garbage burst is due `elapsed` after the stream started, when `bursts` were sent.
    pub fn garbage_due(&self, elapsed: Duration, bursts: u32) -> bool {
        self.0.iter().any(|fault| match fault {
            Fault::GarbageEvery(every) => every
                .checked_mul(bursts.saturating_add(1))
                .is_some_and(|due| elapsed >= due),
            _ => false,
        })
    }
}

impl std::fmt::Display for Faults<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        for (i, fault) in self.0.iter().enumerate() {
            write!(f, "{}{fault}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// One virtual channel: its guide number and name, and the broadcast it carries.
pub struct Channel {
    /// The guide number clients tune (`/auto/v5.1`).
    pub guide: GuideNumber,
    /// The name in `lineup.json`.
    pub name: String,
    /// The looped clip.
    pub broadcast: Broadcast,
}

/// Everything a simulator is made from.
pub struct SimConfig {
    /// The channel lineup, in `lineup.json` order.
    pub channels: Vec<Channel>,
    /// The number of tuners (`TunerCount`).
    pub tuners: u8,
    /// Faults injected into stream connections.
    pub faults: Vec<Fault>,
    /// Apply the faults only to the first N stream connections (all when `None`).
    pub fault_connections: Option<u64>,
}

/// Which tuner a stream request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunerChoice {
    /// `/auto/`: the first free tuner.
    Auto,
    /// `/tunerN/`: that tuner.
    Index(u8),
}

/// What a request path asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/discover.json`.
    Discover,
    /// `/lineup.json`.
    Lineup,
    /// `/status.json`.
    Status,
    /// `/auto/vGUIDE` or `/tunerN/vGUIDE`, with an optional `duration=` in seconds.
    Stream {
        /// The tuner asked for.
        tuner: TunerChoice,
        /// The channel as written after `v` (checked against the lineup when tuning).
        channel: String,
        /// Close the body after this many seconds.
        duration_s: Option<u64>,
    },
    /// Anything else.
    NotFound,
}

impl Route {
    /// Reads a request target (`/auto/v5.1?duration=30`); `None` for a malformed query.
    pub fn parse(target: &str) -> Option<Route> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let route = match path {
            "/discover.json" => Route::Discover,
            "/lineup.json" => Route::Lineup,
            "/status.json" => Route::Status,
            _ => {
                let Some((tuner, channel)) = path
                    .strip_prefix('/')
                    .and_then(|p| p.split_once("/v"))
                    .filter(|(_, channel)| !channel.contains('/'))
                else {
                    return Some(Route::NotFound);
                };
                let tuner = match tuner {
                    "auto" => TunerChoice::Auto,
                    _ => match tuner.strip_prefix("tuner").map(str::parse::<u8>) {
                        Some(Ok(index)) if index < MAX_TUNERS => TunerChoice::Index(index),
                        _ => return Some(Route::NotFound),
                    },
                };
                let mut duration_s = None;
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    if let Some(value) = pair.strip_prefix("duration=") {
                        duration_s =
                            Some(value.parse::<u64>().ok().filter(|&s| s <= MAX_DURATION_S)?);
                    }
                }
                Route::Stream {
                    tuner,
                    channel: channel.to_string(),
                    duration_s,
                }
            }
        };
        Some(route)
    }
}

/// Who holds a tuner.
#[derive(Clone, Debug)]
struct TunerUse {
    channel: usize,
    client: IpAddr,
}

/// The simulated device; see the module doc.
pub struct Simulator {
    config: SimConfig,
    tuners: Mutex<Vec<Option<TunerUse>>>,
    stream_connections: AtomicU64,
}

impl Simulator {
    /// The built-in broadcast: channel 5.1 carrying the built-in clip, two tuners, no faults —
    /// what `record` and the demo capture when no source is given.
    pub fn builtin() -> Simulator {
        // The embedded clip is checked by the tests to loop cleanly, so it always parses.
        let broadcast = Broadcast::new(crate::clip::BUILTIN_TS)
            .expect("the built-in clip is a valid broadcast");
        let guide = GuideNumber::parse("5.1").expect("5.1 is a valid guide number");
        let config = SimConfig {
            channels: vec![Channel {
                guide,
                name: "Built-in clip".into(),
                broadcast,
            }],
            tuners: 2,
            faults: Vec::new(),
            fault_connections: None,
        };
        Simulator::new(config).expect("one channel and two tuners is a valid configuration")
    }

    /// Checks a configuration and makes a device with every tuner free.
    pub fn new(config: SimConfig) -> Result<Simulator, ConfigError> {
        if config.channels.is_empty() {
            return Err(ConfigError::NoChannels);
        }
        for (i, channel) in config.channels.iter().enumerate() {
            if config.channels[..i]
                .iter()
                .any(|c| c.guide == channel.guide)
            {
                return Err(ConfigError::DuplicateChannel(channel.guide.clone()));
            }
        }
        if !(1..=MAX_TUNERS).contains(&config.tuners) {
            return Err(ConfigError::Tuners(config.tuners));
        }
        Ok(Simulator {
            tuners: Mutex::new(vec![None; usize::from(config.tuners)]),
            config,
            stream_connections: AtomicU64::new(0),
        })
    }

    /// The channel lineup.
    pub fn channels(&self) -> &[Channel] {
        &self.config.channels
    }

    /// `discover.json` for a device reachable at `addr`.
    pub fn discover_json(&self, addr: SocketAddr) -> String {
        let identity = Identity {
            id: DeviceId::parse(DEVICE_ID).expect("the simulator's device id is valid"),
            friendly_name: "ec-node tuner-sim".into(),
            model: MODEL_NUMBER.into(),
            firmware_name: "hdhomerun5_atsc".into(),
            firmware_version: "20250815".into(),
            auth: "ecnodeSimulatedDeviceAuth0".into(),
            tuners: u32::from(self.config.tuners),
        };
        device::discover_json(&identity, &format!("http://{addr}"))
    }

    /// `lineup.json` for a device reachable at `addr`: one entry per channel.
    pub fn lineup_json(&self, addr: SocketAddr) -> String {
        let entries: Vec<LineupEntry> = self
            .channels()
            .iter()
            .map(|channel| LineupEntry {
                guide: channel.guide.clone(),
                name: channel.name.clone(),
                video_codec: channel
                    .broadcast
                    .video()
                    .and_then(codec_name)
                    .map(Into::into),
                audio_codec: channel
                    .broadcast
                    .audio()
                    .and_then(codec_name)
                    .map(Into::into),
            })
            .collect();
        device::lineup_json(&entries, &format!("http://{addr}"))
    }

    /// `status.json`: one row per tuner, with the channel and client of the busy ones.
    pub fn status_json(&self) -> String {
        let rows: Vec<_> = self
            .lock_tuners()
            .iter()
            .enumerate()
            .map(|(i, state)| match state {
                None => serde_json::json!({ "Resource": format!("tuner{i}") }),
                Some(held) => {
                    let channel = &self.config.channels[held.channel];
                    serde_json::json!({
                        "Resource": format!("tuner{i}"),
                        "InUse": 1,
                        "VctNumber": channel.guide.as_str(),
                        "VctName": channel.name,
                        "TargetIP": held.client.to_string(),
                    })
                }
            })
            .collect();
        serde_json::Value::from(rows).to_string()
    }

    /// Tunes `channel` on the chosen tuner for `client`, as a device would: 801 for an unknown
    /// channel, 805 when every tuner is busy, 804 when the chosen one is, and 807 when the
    /// `refuse` fault applies. The tuner is held until the returned lease is dropped.
    pub fn tune(
        &self,
        choice: TunerChoice,
        channel: &str,
        client: IpAddr,
    ) -> Result<Tuned<'_>, DeviceError> {
        let index = self
            .channels()
            .iter()
            .position(|c| c.guide.as_str() == channel)
            .ok_or(DeviceError::UNKNOWN_CHANNEL)?;
        let mut tuners = self.lock_tuners();
        let tuner = match choice {
            TunerChoice::Auto => tuners
                .iter()
                .position(Option::is_none)
                .ok_or(DeviceError::ALL_TUNERS_IN_USE)?,
            TunerChoice::Index(i) => match tuners.get(usize::from(i)) {
                None => return Err(DeviceError::UNKNOWN_CHANNEL),
                Some(Some(_)) => return Err(DeviceError::TUNER_IN_USE),
                Some(None) => usize::from(i),
            },
        };
        tuners[tuner] = Some(TunerUse {
            channel: index,
            client,
        });
        drop(tuners);
        let connection = self.stream_connections.fetch_add(1, Ordering::Relaxed);
        let faulty = self
            .config
            .fault_connections
            .is_none_or(|first| connection < first);
        let tuned = Tuned {
            sim: self,
            tuner,
            channel: &self.config.channels[index],
            faults: Faults(if faulty { &self.config.faults } else { &[] }),
        };
        if tuned.faults.refuses() {
            return Err(DeviceError::NO_VIDEO_DATA); // dropping `tuned` frees the tuner
        }
        Ok(tuned)
    }

    fn lock_tuners(&self) -> MutexGuard<'_, Vec<Option<TunerUse>>> {
        // No code panics while holding the lock, and the table is valid at every step anyway.
        self.tuners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A tuned tuner: the channel it carries and the faults of this connection. Dropping it frees
/// the tuner.
pub struct Tuned<'a> {
    sim: &'a Simulator,
    tuner: usize,
    channel: &'a Channel,
    faults: Faults<'a>,
}

impl<'a> Tuned<'a> {
    /// The tuner's resource name (`tuner0`), as in `X-HDHomeRun-Resource`.
    pub fn resource(&self) -> String {
        format!("tuner{}", self.tuner)
    }

    /// The channel tuned.
    pub fn channel(&self) -> &'a Channel {
        self.channel
    }

    /// The faults to inject into this connection.
    pub fn faults(&self) -> Faults<'a> {
        self.faults
    }
}

impl Drop for Tuned<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.sim.lock_tuners().get_mut(self.tuner) {
            *slot = None;
        }
    }
}

/// The `lineup.json` codec names of HDHomeRun firmware.
fn codec_name(codec: StreamType) -> Option<&'static str> {
    Some(match codec {
        StreamType::Mpeg2Video => "MPEG2",
        StreamType::H264 => "H264",
        StreamType::Hevc => "HEVC",
        StreamType::Ac3 => "AC3",
        StreamType::Aac => "AAC",
        StreamType::Eac3 => "EAC3",
        StreamType::MpegAudio => "MPEG",
        StreamType::Other(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::BUILTIN_TS;
    use std::net::Ipv4Addr;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn sim(tuners: u8, faults: Vec<Fault>, fault_connections: Option<u64>) -> Simulator {
        Simulator::new(SimConfig {
            channels: vec![Channel {
                guide: GuideNumber::parse("5.1").unwrap(),
                name: "Clip".into(),
                broadcast: Broadcast::new(BUILTIN_TS).unwrap(),
            }],
            tuners,
            faults,
            fault_connections,
        })
        .unwrap()
    }

    #[test]
    fn the_device_id_carries_a_valid_check_digit() {
        assert!(DeviceId::parse(DEVICE_ID).is_ok());
    }

    #[test]
    fn routes() {
        let stream = |tuner, duration_s| Route::Stream {
            tuner,
            channel: "5.1".into(),
            duration_s,
        };
        assert_eq!(Route::parse("/discover.json"), Some(Route::Discover));
        assert_eq!(Route::parse("/lineup.json?show=found"), Some(Route::Lineup));
        assert_eq!(
            Route::parse("/auto/v5.1?duration=30"),
            Some(stream(TunerChoice::Auto, Some(30)))
        );
        assert_eq!(
            Route::parse("/tuner1/v5.1"),
            Some(stream(TunerChoice::Index(1), None))
        );
        assert_eq!(Route::parse("/auto/v5.1?duration=x"), None);
        for other in [
            "/",
            "/auto/5.1",
            "/tunerx/v5.1",
            "/tuner99/v5.1",
            "/auto/v5/1",
        ] {
            assert_eq!(Route::parse(other), Some(Route::NotFound), "{other}");
        }
    }

    #[test]
    fn fault_specs() {
        assert_eq!(Fault::parse("no-data"), Ok(Fault::NoData));
        assert_eq!(
            Fault::parse("stall-after:1.5"),
            Ok(Fault::StallAfter(Duration::from_millis(1500)))
        );
        assert_eq!(Fault::parse("drop-every:100"), Ok(Fault::DropEvery(100)));
        assert_eq!(Fault::parse("refuse"), Ok(Fault::Refuse));
        for bad in [
            "",
            "drop-every:0",
            "stall-after:-1",
            "close-after",
            "nope:1",
            "refuse:1",
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
        let faults = [
            Fault::StallAfter(Duration::from_secs(2)),
            Fault::DropEvery(3),
            Fault::GarbageEvery(Duration::from_secs(1)),
        ];
        let faults = Faults(&faults);
        assert!(
            faults.sends_at(Duration::from_secs(1)) && !faults.sends_at(Duration::from_secs(2))
        );
        assert!(!faults.closes_at(Duration::from_secs(100)));
        assert_eq!(
            (0..9).filter(|&i| faults.drops(i)).collect::<Vec<_>>(),
            [2, 5, 8]
        );
        assert!(!faults.garbage_due(Duration::from_millis(999), 0));
        assert!(faults.garbage_due(Duration::from_secs(1), 0));
        assert!(!faults.garbage_due(Duration::from_secs(1), 1));
        assert_eq!(
            faults.to_string(),
            "stall-after:2,drop-every:3,garbage-every:1"
        );
    }

    #[test]
    fn tuners_are_allocated_and_freed_like_a_device() {
        let sim = sim(2, vec![], None);
        let err = |r: Result<Tuned<'_>, DeviceError>| r.err().map(|e| e.code);
        assert_eq!(err(sim.tune(TunerChoice::Auto, "9.9", CLIENT)), Some(801));
        let first = sim.tune(TunerChoice::Auto, "5.1", CLIENT).unwrap();
        assert_eq!(first.resource(), "tuner0");
        assert_eq!(
            err(sim.tune(TunerChoice::Index(0), "5.1", CLIENT)),
            Some(804)
        );
        assert_eq!(
            err(sim.tune(TunerChoice::Index(5), "5.1", CLIENT)),
            Some(801)
        );
        let second = sim.tune(TunerChoice::Auto, "5.1", CLIENT).unwrap();
        assert_eq!(second.resource(), "tuner1");
        assert_eq!(err(sim.tune(TunerChoice::Auto, "5.1", CLIENT)), Some(805));
        let status: serde_json::Value = serde_json::from_str(&sim.status_json()).unwrap();
        assert_eq!(status[1]["VctNumber"], "5.1");
        drop(first);
        assert_eq!(
            sim.tune(TunerChoice::Auto, "5.1", CLIENT)
                .unwrap()
                .resource(),
            "tuner0"
        );
    }

    #[test]
    fn faults_apply_to_the_first_connections_only() {
        let sim = sim(1, vec![Fault::Refuse], Some(2));
        let code = || {
            sim.tune(TunerChoice::Auto, "5.1", CLIENT)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code(), Some(807));
        assert_eq!(code(), Some(807));
        assert_eq!(code(), None);
    }

    #[test]
    fn documents() {
        let sim = sim(2, vec![], None);
        let addr: SocketAddr = "127.0.0.1:5004".parse().unwrap();
        let discover: serde_json::Value = serde_json::from_str(&sim.discover_json(addr)).unwrap();
        assert_eq!(discover["TunerCount"], 2);
        assert_eq!(discover["LineupURL"], "http://127.0.0.1:5004/lineup.json");
        let lineup: serde_json::Value = serde_json::from_str(&sim.lineup_json(addr)).unwrap();
        assert_eq!(lineup[0]["URL"], "http://127.0.0.1:5004/auto/v5.1");
        assert_eq!(lineup[0]["VideoCodec"], "H264");
        assert_eq!(lineup[0]["AudioCodec"], "AAC");
        assert!(Simulator::new(SimConfig {
            channels: vec![],
            tuners: 2,
            faults: vec![],
            fault_connections: None
        })
        .is_err());
    }
}
