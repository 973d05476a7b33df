//! The HDHomeRun device a node presents: its identity (a device id carrying the check digit
//! real devices carry) and the documents media servers and players read — `discover.json`,
//! `lineup.json`, `lineup_status.json` and the IPTV playlist `lineup.m3u` — rendered from data.
//!
//! Pure functions and values: no sockets, no clock. The tuner simulator and `serve` render their
//! documents here, so both look like one kind of device to a client.

use super::GuideNumber;
use std::fmt;

/// libhdhomerun's check-digit table: nibbles 7, 5, 3 and 1 (counting from the top, 0-based
/// even positions) go through it, the others are taken as they are, and a valid id's eight
/// nibbles XOR to zero.
const CHECK_TABLE: [u32; 16] = [
    0xa, 0x5, 0xf, 0x6, 0x7, 0xc, 0x1, 0xb, 0x9, 0x2, 0x8, 0xd, 0x4, 0x3, 0xe, 0x0,
];

/// An HDHomeRun device id: 8 hex digits whose last one is a check digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId(u32);

/// Why a device id was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceIdError {
    /// Not 8 hex digits.
    Format(String),
    /// The check digit does not match (what it should be).
    CheckDigit(String, char),
}

impl fmt::Display for DeviceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceIdError::Format(text) => write!(f, "{text:?} is not 8 hex digits"),
            DeviceIdError::CheckDigit(text, want) => write!(
                f,
                "{text:?} has no valid HDHomeRun check digit (the last digit would be {want})"
            ),
        }
    }
}

impl std::error::Error for DeviceIdError {}

/// The XOR of the id's nibbles, the even ones through the table: zero for a valid id.
fn check(id: u32) -> u32 {
    (0..8).fold(0, |acc, i| {
        let nibble = (id >> (28 - 4 * i)) & 0xf;
        acc ^ if i % 2 == 0 {
            CHECK_TABLE[nibble as usize]
        } else {
            nibble
        }
    })
}

impl DeviceId {
    /// Parses 8 hex digits with a valid check digit.
    pub fn parse(text: &str) -> Result<DeviceId, DeviceIdError> {
        let format = || DeviceIdError::Format(text.to_string());
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format());
        }
        let id = u32::from_str_radix(text, 16).map_err(|_| format())?;
        if check(id) != 0 {
            let want = DeviceId::with_check_digit(id >> 4).0 & 0xf;
            let digit = char::from_digit(want, 16)
                .unwrap_or('0')
                .to_ascii_uppercase();
            return Err(DeviceIdError::CheckDigit(text.to_string(), digit));
        }
        Ok(DeviceId(id))
    }

    /// The valid id whose first seven digits are the low 28 bits of `prefix`.
    pub fn with_check_digit(prefix: u32) -> DeviceId {
        let high = (prefix & 0x0fff_ffff) << 4;
        // The last nibble (position 7, odd) is taken as it is: it must equal the rest's XOR.
        DeviceId(high | check(high))
    }

    /// A stable id derived from `seed` (a node key's public bytes, say).
    pub fn derive(seed: &[u8]) -> DeviceId {
        let hash = blake3::hash(seed);
        let bytes = hash.as_bytes();
        DeviceId::with_check_digit(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// The id as a number (as the discovery protocol carries it).
    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

/// Who the device says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `DeviceID`.
    pub id: DeviceId,
    /// `FriendlyName`.
    pub friendly_name: String,
    /// `ModelNumber`.
    pub model: String,
    /// `FirmwareName`.
    pub firmware_name: String,
    /// `FirmwareVersion`.
    pub firmware_version: String,
    /// `DeviceAuth`.
    pub auth: String,
    /// `TunerCount`.
    pub tuners: u32,
}

/// One channel of a lineup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineupEntry {
    /// `GuideNumber`.
    pub guide: GuideNumber,
    /// `GuideName`.
    pub name: String,
    /// `VideoCodec`, if known (`MPEG2`, `H264`, `HEVC`).
    pub video_codec: Option<String>,
    /// `AudioCodec`, if known (`AC3`, `AAC`, `EAC3`).
    pub audio_codec: Option<String>,
}

/// The stream URL of `guide` on the device at `base_url` (`http://HOST:PORT`).
pub fn stream_url(base_url: &str, guide: &GuideNumber) -> String {
    format!("{base_url}/auto/v{guide}")
}

/// `discover.json` of the device reachable at `base_url`.
pub fn discover_json(identity: &Identity, base_url: &str) -> String {
    serde_json::json!({
        "FriendlyName": identity.friendly_name,
        "ModelNumber": identity.model,
        "FirmwareName": identity.firmware_name,
        "FirmwareVersion": identity.firmware_version,
        "DeviceID": identity.id.to_string(),
        "DeviceAuth": identity.auth,
        "BaseURL": base_url,
        "LineupURL": format!("{base_url}/lineup.json"),
        "TunerCount": identity.tuners,
    })
    .to_string()
}

/// `lineup.json`: one entry per channel, each with its stream URL.
pub fn lineup_json(entries: &[LineupEntry], base_url: &str) -> String {
    let entries: Vec<_> = entries
        .iter()
        .map(|e| {
            let mut entry = serde_json::json!({
                "GuideNumber": e.guide.as_str(),
                "GuideName": e.name,
                "URL": stream_url(base_url, &e.guide),
            });
            if let Some(codec) = &e.video_codec {
                entry["VideoCodec"] = codec.as_str().into();
            }
            if let Some(codec) = &e.audio_codec {
                entry["AudioCodec"] = codec.as_str().into();
            }
            entry
        })
        .collect();
    serde_json::Value::from(entries).to_string()
}

/// `lineup_status.json` of a device whose lineup is fixed: no scan running, none possible.
pub fn lineup_status_json() -> String {
    serde_json::json!({
        "ScanInProgress": 0,
        "ScanPossible": 0,
        "Source": "Antenna",
        "SourceList": ["Antenna"],
    })
    .to_string()
}

/// `lineup.m3u`, the IPTV convention: `#EXTINF` with `tvg-chno` and `tvg-name` per channel,
/// then its stream URL. Quotes and line breaks in names are replaced, so a name cannot break
/// the playlist.
pub fn lineup_m3u(entries: &[LineupEntry], base_url: &str) -> String {
    let mut out = String::from("#EXTM3U\n");
    for e in entries {
        let name: String = e
            .name
            .chars()
            .map(|c| if c == '"' || c.is_control() { ' ' } else { c })
            .collect();
        out.push_str(&format!(
            "#EXTINF:-1 channel-id=\"{guide}\" tvg-chno=\"{guide}\" tvg-name=\"{name}\",{guide} {name}\n{}\n",
            stream_url(base_url, &e.guide),
            guide = e.guide,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_carry_the_check_digit() {
        assert!(DeviceId::parse("1EC0DE08").is_ok());
        assert!(matches!(
            DeviceId::parse("1EC0DE09"),
            Err(DeviceIdError::CheckDigit(_, '8'))
        ));
        assert!(matches!(
            DeviceId::parse("1EC0DE0"),
            Err(DeviceIdError::Format(_))
        ));
        assert!(matches!(
            DeviceId::parse("1EC0DE0G"),
            Err(DeviceIdError::Format(_))
        ));
        for seed in [&b"a"[..], b"node key", &[0u8; 32]] {
            let id = DeviceId::derive(seed);
            assert_eq!(DeviceId::parse(&id.to_string()), Ok(id));
        }
    }

    #[test]
    fn documents_name_every_field_and_channel() {
        let identity = Identity {
            id: DeviceId::parse("1EC0DE08").unwrap(),
            friendly_name: "ec-node".into(),
            model: "HDHR5-4US".into(),
            firmware_name: "hdhomerun5_atsc".into(),
            firmware_version: "20250815".into(),
            auth: "x".into(),
            tuners: 2,
        };
        let base = "http://192.0.2.1:5004";
        let d: serde_json::Value = serde_json::from_str(&discover_json(&identity, base)).unwrap();
        assert_eq!(d["DeviceID"], "1EC0DE08");
        assert_eq!(d["LineupURL"], "http://192.0.2.1:5004/lineup.json");
        assert_eq!(d["TunerCount"], 2);
        let entries = [LineupEntry {
            guide: GuideNumber::parse("5.1").unwrap(),
            name: "KX\"YZ\nHD".into(),
            video_codec: Some("MPEG2".into()),
            audio_codec: None,
        }];
        let l: serde_json::Value = serde_json::from_str(&lineup_json(&entries, base)).unwrap();
        assert_eq!(l[0]["URL"], "http://192.0.2.1:5004/auto/v5.1");
        assert_eq!(l[0]["VideoCodec"], "MPEG2");
        assert!(l[0].get("AudioCodec").is_none());
        let m3u = lineup_m3u(&entries, base);
        assert_eq!(
            m3u,
            "#EXTM3U\n#EXTINF:-1 channel-id=\"5.1\" tvg-chno=\"5.1\" tvg-name=\"KX YZ HD\",5.1 KX YZ HD\nhttp://192.0.2.1:5004/auto/v5.1\n"
        );
    }
}
