//! Asks a device what it is and what it carries: `discover.json` and `lineup.json` over HTTP.
//! [`fetch`] is the I/O edge (plain HTTP with ureq, short timeouts); [`parse_discover`] and
//! [`parse_lineup`] decode the documents without I/O (fuzzed: target `hdhr_documents`). They are
//! lenient — unknown fields are ignored, missing optional ones are empty — but a non-JSON answer
//! is an error.

use serde_json::Value;
use std::time::Duration;

/// The largest document read from a device.
const MAX_DOCUMENT: u64 = 1 << 20;

/// What `discover.json` says about a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// `DeviceID`.
    pub id: String,
    /// `FriendlyName`.
    pub name: String,
    /// `ModelNumber`.
    pub model: String,
    /// `FirmwareVersion`.
    pub firmware: String,
    /// `TunerCount`.
    pub tuners: u64,
}

/// One `lineup.json` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// `GuideNumber`, e.g. `5.1`.
    pub guide_number: String,
    /// `GuideName`, e.g. `KXYZ-HD`.
    pub guide_name: String,
    /// `VideoCodec` (may be empty).
    pub video_codec: String,
    /// `AudioCodec` (may be empty).
    pub audio_codec: String,
    /// `URL` of the stream.
    pub url: String,
}

/// Why a device could not be asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// No connection, or an error status (the text names the URL).
    Unreachable(String),
    /// The answer was not the expected JSON document.
    Malformed(String, String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(why) => write!(f, "cannot fetch {why}"),
            ClientError::Malformed(url, why) => write!(f, "malformed document from {url}: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Fetches and parses both documents of the device at `authority` (`HOST[:PORT]`).
pub fn fetch(authority: &str) -> Result<(Device, Vec<Channel>), ClientError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let get = |path: &str| -> Result<(String, Vec<u8>), ClientError> {
        let url = format!("http://{authority}/{path}");
        let response = agent
            .get(&url)
            .call()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        // Documents are small; refuse anything huge rather than buffer it.
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(response.into_reader(), MAX_DOCUMENT),
            &mut body,
        )
        .map_err(|e| ClientError::Unreachable(format!("{url}: {e}")))?;
        Ok((url, body))
    };
    let (url, discover) = get("discover.json")?;
    let device = parse_discover(&discover).map_err(|why| ClientError::Malformed(url, why))?;
    let (url, lineup) = get("lineup.json")?;
    let channels = parse_lineup(&lineup).map_err(|why| ClientError::Malformed(url, why))?;
    Ok((device, channels))
}

/// Parses `discover.json`. Total on any bytes: an error names what is wrong.
pub fn parse_discover(bytes: &[u8]) -> Result<Device, String> {
    let discover: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !discover.is_object() {
        return Err("not an object".into());
    }
    Ok(Device {
        id: text(&discover, "DeviceID"),
        name: text(&discover, "FriendlyName"),
        model: text(&discover, "ModelNumber"),
        firmware: text(&discover, "FirmwareVersion"),
        tuners: discover["TunerCount"].as_u64().unwrap_or(0),
    })
}

/// Parses `lineup.json`: one [`Channel`] per entry of its array. Total on any bytes.
pub fn parse_lineup(bytes: &[u8]) -> Result<Vec<Channel>, String> {
    let lineup: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let entries = lineup.as_array().ok_or("not an array")?;
    Ok(entries
        .iter()
        .map(|e| Channel {
            guide_number: text(e, "GuideNumber"),
            guide_name: text(e, "GuideName"),
            video_codec: text(e, "VideoCodec"),
            audio_codec: text(e, "AudioCodec"),
            url: text(e, "URL"),
        })
        .collect())
}

/// A field as text (numbers too; anything else is empty), with control characters replaced:
/// these strings go to a terminal, and a device must not be able to send it escape sequences.
fn text(v: &Value, key: &str) -> String {
    let raw = match &v[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    raw.chars()
        .map(|c| {
            if c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_parse_leniently() {
        let discover = br#"{"DeviceID":"1234ABCD","FriendlyName":"HDHomeRun FLEX 4K",
            "ModelNumber":"HDFX-4K","FirmwareVersion":20250815,"TunerCount":4,"Extra":[1]}"#;
        let device = parse_discover(discover).unwrap();
        assert_eq!(device.id, "1234ABCD");
        assert_eq!(device.firmware, "20250815");
        assert_eq!(device.tuners, 4);
        let lineup = br#"[{"GuideNumber":"5.1","GuideName":"KXYZ","URL":"http://h:5004/auto/v5.1"},
            {"GuideNumber":7}]"#;
        let channels = parse_lineup(lineup).unwrap();
        assert_eq!(channels.len(), 2);
        assert_eq!(channels[0].guide_name, "KXYZ");
        assert_eq!(channels[1].guide_number, "7");
        assert_eq!(channels[1].url, "");
    }

    #[test]
    fn wrong_documents_are_errors_and_control_characters_never_pass() {
        assert!(parse_discover(b"<html>").is_err());
        assert!(parse_discover(b"[]").is_err());
        assert!(parse_lineup(b"{}").is_err());
        assert!(parse_lineup(b"").is_err());
        let hostile = br#"{"FriendlyName":"evil\u001b]0;owned\u0007 tuner\r\n"}"#;
        let name = parse_discover(hostile).unwrap().name;
        assert_eq!(name, "evil\u{fffd}]0;owned\u{fffd} tuner\u{fffd}\u{fffd}");
    }
}
