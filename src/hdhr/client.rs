//! Asks a device what it is and what it carries: `discover.json` and `lineup.json` over HTTP.
//! An I/O edge (plain HTTP with ureq, short timeouts); the documents are parsed leniently —
//! unknown fields are ignored, missing optional ones are empty — but a non-JSON answer is an error.

use serde_json::Value;
use std::time::Duration;

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

/// Fetches `http://AUTHORITY/discover.json` and `http://AUTHORITY/lineup.json`.
pub fn fetch(authority: &str) -> Result<(Device, Vec<Channel>), ClientError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let get = |path: &str| -> Result<Value, ClientError> {
        let url = format!("http://{authority}/{path}");
        let response = agent
            .get(&url)
            .call()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        // Documents are small; refuse anything huge rather than buffer it.
        let mut body = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(response.into_reader(), 1 << 20),
            &mut body,
        )
        .map_err(|e| ClientError::Unreachable(format!("{url}: {e}")))?;
        serde_json::from_str(&body).map_err(|e| ClientError::Malformed(url, e.to_string()))
    };
    let discover = get("discover.json")?;
    let lineup = get("lineup.json")?;
    let text = |v: &Value, key: &str| match &v[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let device = Device {
        id: text(&discover, "DeviceID"),
        name: text(&discover, "FriendlyName"),
        model: text(&discover, "ModelNumber"),
        firmware: text(&discover, "FirmwareVersion"),
        tuners: discover["TunerCount"].as_u64().unwrap_or(0),
    };
    let entries = lineup.as_array().ok_or_else(|| {
        ClientError::Malformed(
            format!("http://{authority}/lineup.json"),
            "not an array".into(),
        )
    })?;
    let channels = entries
        .iter()
        .map(|e| Channel {
            guide_number: text(e, "GuideNumber"),
            guide_name: text(e, "GuideName"),
            video_codec: text(e, "VideoCodec"),
            audio_codec: text(e, "AudioCodec"),
            url: text(e, "URL"),
        })
        .collect();
    Ok((device, channels))
}
