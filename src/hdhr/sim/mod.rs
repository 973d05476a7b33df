//! The HDHomeRun simulator's owner: its channels, its tuners and who holds them, the faults it
//! injects, the routes it answers and the JSON documents it serves.
//!
//! It never touches sockets, the clock or threads: [`server`] does the HTTP I/O and asks this
//! module what to answer, [`broadcast`] makes the packets. Tuner allocation is the only shared
//! state (a mutex), released when the [`Tuned`] lease is dropped.

pub mod broadcast;
pub mod server;

use super::device::{self, DeviceId, Identity, LineupEntry};
use super::request::{StreamRequest, StreamRequestError, TunerChoice, MAX_TUNERS};
use super::{DeviceError, GuideNumber};
use crate::ts::psi::StreamType;
use broadcast::Broadcast;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Model number sent in `discover.json` (a four-tuner ATSC FLEX 4K).
pub const MODEL_NUMBER: &str = "HDHR5-4US";
/// Device ID sent in `discover.json`; its last digit is the checksum real devices carry.
pub const DEVICE_ID: &str = "1EC0DE08";

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

/// One fault to inject. Connection faults (`no-data` … `refuse`) apply to each stream connection
/// from the moment it opens, and obey `--fault-connections`. Window faults (`silence`, `busy`,
/// `no-video`) are events on the broadcast clock — seconds since the simulator started — that
/// every connection of the channel sees, reconnects included, so they ignore
/// `--fault-connections`. Both kinds obey `--fault-channel`.
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
    /// `silence:AT:FOR`: the signal is lost during the window. Open streams stay open and send
    /// nothing; a stream opened meanwhile gets its headers and nothing more. When the window
    /// ends every stream goes on at the broadcast's live position: the packets of the window
    /// are lost, as with a real fade.
    Silence(Window),
    /// `busy:AT:FOR`: tune requests during the window are answered 503 with
    /// `805 All Tuners In Use` (open streams go on).
    Busy(Window),
    /// `no-video:AT:FOR`: tune requests during the window are answered 503 with
    /// `807 No Video Data` (open streams go on; add `silence` for a signal loss).
    NoVideo(Window),
}

/// A stretch of the broadcast clock: from `at` for `length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// When it begins, since the simulator started.
    pub at: Duration,
    /// How long it lasts.
    pub length: Duration,
}

impl Window {
    /// Whether broadcast time `on_air` lies in it.
    pub fn contains(&self, on_air: Duration) -> bool {
        on_air >= self.at && on_air - self.at < self.length
    }
}

impl Fault {
    /// Reads a `--fault` spec (`no-data`, `stall-after:2.5`, `drop-every:100`,
    /// `silence:20:10`, ...).
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
        let window = |value: &str| {
            let (at, length) = value
                .split_once(':')
                .ok_or_else(|| bad("expected AT:FOR, two numbers of seconds"))?;
            let (at, length) = (seconds(at)?, seconds(length)?);
            if length.is_zero() {
                return Err(bad("FOR must be more than 0 seconds"));
            }
            Ok(Window { at, length })
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
            Some(("silence", value)) => window(value).map(Fault::Silence),
            Some(("busy", value)) => window(value).map(Fault::Busy),
            Some(("no-video", value)) => window(value).map(Fault::NoVideo),
            _ => Err(bad(
                "expected no-data, stall-after:SECS, close-after:SECS, drop-every:N, \
                 garbage-every:SECS, refuse, silence:AT:FOR, busy:AT:FOR or no-video:AT:FOR",
            )),
        }
    }

    /// Whether this is a window fault (on the broadcast clock, for every connection).
    pub fn is_window(&self) -> bool {
        matches!(self, Fault::Silence(_) | Fault::Busy(_) | Fault::NoVideo(_))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let window = |f: &mut std::fmt::Formatter<'_>, name: &str, w: &Window| {
            write!(
                f,
                "{name}:{}:{}",
                w.at.as_secs_f64(),
                w.length.as_secs_f64()
            )
        };
        match self {
            Fault::NoData => write!(f, "no-data"),
            Fault::StallAfter(d) => write!(f, "stall-after:{}", d.as_secs_f64()),
            Fault::CloseAfter(d) => write!(f, "close-after:{}", d.as_secs_f64()),
            Fault::DropEvery(n) => write!(f, "drop-every:{n}"),
            Fault::GarbageEvery(d) => write!(f, "garbage-every:{}", d.as_secs_f64()),
            Fault::Refuse => write!(f, "refuse"),
            Fault::Silence(w) => window(f, "silence", w),
            Fault::Busy(w) => window(f, "busy", w),
            Fault::NoVideo(w) => window(f, "no-video", w),
        }
    }
}

/// The faults of one stream connection, asked about by the server as the stream runs. Pure: the
/// caller says how long the connection has been open (`elapsed`) and, for window faults, how
/// long the broadcast has been on air (`on_air`).
#[derive(Clone, Debug, Default)]
pub struct Faults(Vec<Fault>);

impl Faults {
    /// The device error a tune request gets at broadcast time `on_air`, if any.
    fn refusal(&self, on_air: Duration) -> Option<DeviceError> {
        self.0.iter().find_map(|fault| match fault {
            Fault::Refuse => Some(DeviceError::NO_VIDEO_DATA),
            Fault::NoVideo(w) if w.contains(on_air) => Some(DeviceError::NO_VIDEO_DATA),
            Fault::Busy(w) if w.contains(on_air) => Some(DeviceError::ALL_TUNERS_IN_USE),
            _ => None,
        })
    }

    /// Whether packets are sent `elapsed` after the stream started.
    pub fn sends_at(&self, elapsed: Duration) -> bool {
        self.0.iter().all(|fault| match fault {
            Fault::NoData => false,
            Fault::StallAfter(after) => elapsed < *after,
            _ => true,
        })
    }

    /// Whether the signal is lost at broadcast time `on_air` (a `silence` window): nothing is
    /// sent, and the packets due meanwhile are skipped.
    pub fn silent_at(&self, on_air: Duration) -> bool {
        self.0
            .iter()
            .any(|fault| matches!(fault, Fault::Silence(w) if w.contains(on_air)))
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

impl std::fmt::Display for Faults {
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
    /// Apply the connection faults only to the first N stream connections (all when `None`;
    /// window faults apply to every connection). [`Simulator::with_fault_channels`] limits the
    /// faults to some channels.
    pub fault_connections: Option<u64>,
}

/// What a request path asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TunerRoute {
    /// `/discover.json`.
    Discover,
    /// `/lineup.json`.
    Lineup,
    /// `/status.json`.
    Status,
    /// `/auto/vGUIDE` or `/tunerN/vGUIDE`, with an optional `duration=` in seconds (the channel
    /// is checked against the lineup when tuning).
    Stream(StreamRequest),
    /// A stream request for something that is not a guide number: 801, as for a channel not in
    /// the lineup.
    UnknownChannel,
    /// Anything else.
    NotFound,
}

impl TunerRoute {
    /// Reads a request target (`/auto/v5.1?duration=30`); `None` for a malformed query.
    pub fn parse(target: &str) -> Option<TunerRoute> {
        let path = target.split('?').next().unwrap_or_default();
        let route = match path {
            "/discover.json" => TunerRoute::Discover,
            "/lineup.json" => TunerRoute::Lineup,
            "/status.json" => TunerRoute::Status,
            _ => match StreamRequest::parse(target) {
                Some(Ok(request)) => TunerRoute::Stream(request),
                Some(Err(StreamRequestError::UnknownChannel)) => TunerRoute::UnknownChannel,
                Some(Err(StreamRequestError::BadDuration)) => return None,
                Some(Err(_)) | None => TunerRoute::NotFound,
            },
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
    /// The channels the faults apply to (all when empty).
    fault_channels: Vec<GuideNumber>,
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
            fault_channels: Vec::new(),
            stream_connections: AtomicU64::new(0),
        })
    }

    /// Limits the faults to these channels (`--fault-channel`; a signal lost on one RF channel
    /// leaves the others on air). Every one must be in the lineup.
    pub fn with_fault_channels(
        mut self,
        channels: Vec<GuideNumber>,
    ) -> Result<Simulator, ConfigError> {
        if let Some(unknown) = channels
            .iter()
            .find(|g| !self.config.channels.iter().any(|c| &c.guide == *g))
        {
            return Err(ConfigError::Fault(format!(
                "--fault-channel {unknown}: no such channel in the lineup"
            )));
        }
        self.fault_channels = channels;
        Ok(self)
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

    /// Tunes `channel` on the chosen tuner for `client` at broadcast time `on_air`, as a device
    /// would: 801 for an unknown channel, 805 when every tuner is busy, 804 when the chosen one
    /// is, 807 when the `refuse` fault applies, and 805 or 807 inside a `busy` or `no-video`
    /// window. The tuner is held until the returned lease is dropped.
    pub fn tune(
        &self,
        choice: TunerChoice,
        channel: &str,
        client: IpAddr,
        on_air: Duration,
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
        let channel = &self.config.channels[index];
        let connection = self.stream_connections.fetch_add(1, Ordering::Relaxed);
        let faulty = self
            .config
            .fault_connections
            .is_none_or(|first| connection < first);
        let on_channel =
            self.fault_channels.is_empty() || self.fault_channels.contains(&channel.guide);
        let faults = self
            .config
            .faults
            .iter()
            .filter(|fault| on_channel && (faulty || fault.is_window()))
            .copied()
            .collect();
        let tuned = Tuned {
            sim: self,
            tuner,
            channel,
            faults: Faults(faults),
        };
        if let Some(error) = tuned.faults.refusal(on_air) {
            return Err(error); // dropping `tuned` frees the tuner
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
    faults: Faults,
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
    pub fn faults(&self) -> &Faults {
        &self.faults
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
        let stream = |tuner, duration_s| {
            TunerRoute::Stream(StreamRequest {
                tuner,
                channel: GuideNumber::parse("5.1").unwrap(),
                duration_s,
            })
        };
        assert_eq!(
            TunerRoute::parse("/discover.json"),
            Some(TunerRoute::Discover)
        );
        assert_eq!(
            TunerRoute::parse("/lineup.json?show=found"),
            Some(TunerRoute::Lineup)
        );
        assert_eq!(
            TunerRoute::parse("/auto/v5.1?duration=30"),
            Some(stream(TunerChoice::Auto, Some(30)))
        );
        assert_eq!(
            TunerRoute::parse("/tuner1/v5.1"),
            Some(stream(TunerChoice::Index(1), None))
        );
        assert_eq!(TunerRoute::parse("/auto/v5.1?duration=x"), None);
        assert_eq!(
            TunerRoute::parse("/auto/vx"),
            Some(TunerRoute::UnknownChannel)
        );
        for other in [
            "/",
            "/auto/5.1",
            "/tunerx/v5.1",
            "/tuner99/v5.1",
            "/auto/v5/1",
        ] {
            assert_eq!(
                TunerRoute::parse(other),
                Some(TunerRoute::NotFound),
                "{other}"
            );
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
            "silence",
            "silence:5",
            "silence:5:0",
            "silence:x:5",
            "silence:5:-1",
            "busy:1:2:3",
            "no-video:99999:1",
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
        let window = |at, length| Window {
            at: Duration::from_secs(at),
            length: Duration::from_secs(length),
        };
        assert_eq!(
            Fault::parse("silence:20:8"),
            Ok(Fault::Silence(window(20, 8)))
        );
        assert_eq!(Fault::parse("busy:0:3"), Ok(Fault::Busy(window(0, 3))));
        assert_eq!(
            Fault::parse("no-video:1.5:2.5"),
            Ok(Fault::NoVideo(Window {
                at: Duration::from_millis(1500),
                length: Duration::from_millis(2500),
            }))
        );
        for spec in ["silence:20:8", "busy:0:3", "no-video:1.5:2.5", "refuse"] {
            assert_eq!(Fault::parse(spec).unwrap().to_string(), spec);
        }
        let err = Fault::parse("silence:5").unwrap_err().to_string();
        assert!(err.contains("AT:FOR"), "{err}");
        let faults = [
            Fault::StallAfter(Duration::from_secs(2)),
            Fault::DropEvery(3),
            Fault::GarbageEvery(Duration::from_secs(1)),
        ];
        let faults = Faults(faults.to_vec());
        assert!(
            faults.sends_at(Duration::from_secs(1)) && !faults.sends_at(Duration::from_secs(2))
        );
        assert!(!faults.closes_at(Duration::from_secs(100)));
        let closing = Faults(vec![Fault::CloseAfter(Duration::from_secs(3))]);
        assert!(
            !closing.closes_at(Duration::from_millis(2999))
                && closing.closes_at(Duration::from_secs(3)),
            "the connection closes exactly at its time, not before"
        );
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
        assert_eq!(
            err(sim.tune(TunerChoice::Auto, "9.9", CLIENT, Duration::ZERO)),
            Some(801)
        );
        let first = sim
            .tune(TunerChoice::Auto, "5.1", CLIENT, Duration::ZERO)
            .unwrap();
        assert_eq!(first.resource(), "tuner0");
        assert_eq!(
            err(sim.tune(TunerChoice::Index(0), "5.1", CLIENT, Duration::ZERO)),
            Some(804)
        );
        assert_eq!(
            err(sim.tune(TunerChoice::Index(5), "5.1", CLIENT, Duration::ZERO)),
            Some(801)
        );
        let second = sim
            .tune(TunerChoice::Auto, "5.1", CLIENT, Duration::ZERO)
            .unwrap();
        assert_eq!(second.resource(), "tuner1");
        assert_eq!(
            err(sim.tune(TunerChoice::Auto, "5.1", CLIENT, Duration::ZERO)),
            Some(805)
        );
        let status: serde_json::Value = serde_json::from_str(&sim.status_json()).unwrap();
        assert_eq!(status[1]["VctNumber"], "5.1");
        drop(first);
        assert_eq!(
            sim.tune(TunerChoice::Auto, "5.1", CLIENT, Duration::ZERO)
                .unwrap()
                .resource(),
            "tuner0"
        );
    }

    #[test]
    fn faults_apply_to_the_first_connections_only() {
        let sim = sim(1, vec![Fault::Refuse], Some(2));
        let code = || {
            sim.tune(TunerChoice::Auto, "5.1", CLIENT, Duration::ZERO)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code(), Some(807));
        assert_eq!(code(), Some(807));
        assert_eq!(code(), None);
    }

    #[test]
    fn window_faults_follow_the_broadcast_clock_on_every_connection() {
        let s = |secs: f64| Duration::from_secs_f64(secs);
        let faults = vec![
            Fault::parse("silence:10:5").unwrap(),
            Fault::parse("no-video:10:5").unwrap(),
            Fault::parse("busy:20:1").unwrap(),
        ];
        let sim = sim(2, faults, Some(0));
        let code = |on_air| {
            sim.tune(TunerChoice::Auto, "5.1", CLIENT, on_air)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code(s(9.9)), None);
        assert_eq!(code(s(10.0)), Some(807));
        assert_eq!(code(s(14.9)), Some(807));
        assert_eq!(code(s(15.0)), None);
        assert_eq!(code(s(20.5)), Some(805));
        assert_eq!(code(s(21.0)), None);
        // `--fault-connections 0` leaves no connection fault, but the windows still apply.
        let tuned = sim.tune(TunerChoice::Auto, "5.1", CLIENT, s(0.0)).unwrap();
        let faults = tuned.faults();
        assert!(!faults.silent_at(s(9.9)) && faults.silent_at(s(10.0)));
        assert!(faults.silent_at(s(14.99)) && !faults.silent_at(s(15.0)));
        assert!(
            faults.sends_at(s(12.0)),
            "silence is not a connection fault"
        );
    }

    #[test]
    fn faults_can_be_limited_to_channels() {
        let channel = |guide: &str| Channel {
            guide: GuideNumber::parse(guide).unwrap(),
            name: guide.into(),
            broadcast: Broadcast::new(BUILTIN_TS).unwrap(),
        };
        let config = || SimConfig {
            channels: vec![channel("5.1"), channel("5.2")],
            tuners: 2,
            faults: vec![Fault::Refuse],
            fault_connections: None,
        };
        let five_one = vec![GuideNumber::parse("5.1").unwrap()];
        let sim = Simulator::new(config())
            .unwrap()
            .with_fault_channels(five_one)
            .unwrap();
        let code = |guide| {
            sim.tune(TunerChoice::Auto, guide, CLIENT, Duration::ZERO)
                .err()
                .map(|e| e.code)
        };
        assert_eq!(code("5.1"), Some(807));
        assert_eq!(code("5.2"), None);
        let unknown = Simulator::new(config())
            .unwrap()
            .with_fault_channels(vec![GuideNumber::parse("9.1").unwrap()]);
        assert!(unknown.is_err());
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
