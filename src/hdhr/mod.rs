//! The HDHomeRun HTTP API as both sides see it: stream URLs and requests ([`request`]), the
//! `X-HDHomeRun-Error` codes, and the `discover.json` / `lineup.json` documents.
//!
//! Shared by the capture client (`capture`) and the tuner simulator ([`sim`]), so both speak
//! from one table. This file is pure data and parsing; the I/O edges are [`client`] (fetches a
//! device's documents) and [`sim::server`].

pub mod client;
pub mod device;
pub mod protocol;
pub mod request;
pub mod sim;

/// The port a tuner streams on (`http://HOST:5004/auto/vGUIDE`).
pub const STREAM_PORT: u16 = 5004;

/// An `X-HDHomeRun-Error` code with its text, as devices send it (`805 All Tuners In Use`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError {
    /// The numeric code.
    pub code: u16,
    /// The device's text for it.
    pub text: &'static str,
}

impl DeviceError {
    /// 801: no such virtual channel (with HTTP 404).
    pub const UNKNOWN_CHANNEL: DeviceError = DeviceError {
        code: 801,
        text: "Unknown Channel",
    };
    /// 803: the device is busy, e.g. scanning (HTTP 503).
    pub const SYSTEM_BUSY: DeviceError = DeviceError {
        code: 803,
        text: "System Busy",
    };
    /// 804: the requested tuner is in use (HTTP 503).
    pub const TUNER_IN_USE: DeviceError = DeviceError {
        code: 804,
        text: "Tuner In Use",
    };
    /// 805: every tuner is in use (HTTP 503).
    pub const ALL_TUNERS_IN_USE: DeviceError = DeviceError {
        code: 805,
        text: "All Tuners In Use",
    };
    /// 806: tuning failed (HTTP 503).
    pub const TUNE_FAILED: DeviceError = DeviceError {
        code: 806,
        text: "Tune Failed",
    };
    /// 807: the tuner has no video data (no signal) (HTTP 503).
    pub const NO_VIDEO_DATA: DeviceError = DeviceError {
        code: 807,
        text: "No Video Data",
    };
    /// 809: too many playback connections (HTTP 503).
    pub const PLAYBACK_CONNECTION_LIMIT: DeviceError = DeviceError {
        code: 809,
        text: "Playback Connection Limit",
    };

    const ALL: [DeviceError; 7] = [
        DeviceError::UNKNOWN_CHANNEL,
        DeviceError::SYSTEM_BUSY,
        DeviceError::TUNER_IN_USE,
        DeviceError::ALL_TUNERS_IN_USE,
        DeviceError::TUNE_FAILED,
        DeviceError::NO_VIDEO_DATA,
        DeviceError::PLAYBACK_CONNECTION_LIMIT,
    ];

    /// Answers an HTTP request with this error, as a device does: its status, the
    /// `X-HDHomeRun-Error` header and the same text as the body.
    pub fn respond(self, conn: std::net::TcpStream) {
        let value = self.header_value();
        crate::http::respond(
            conn,
            self.http_status(),
            &[("X-HDHomeRun-Error", &value)],
            format!("{value}\n").as_bytes(),
        );
    }

    /// The header value a device sends: `"805 All Tuners In Use"`.
    pub fn header_value(&self) -> String {
        format!("{} {}", self.code, self.text)
    }

    /// The HTTP status a device answers with: 404 for an unknown channel, 503 otherwise.
    pub fn http_status(&self) -> u16 {
        if *self == DeviceError::UNKNOWN_CHANNEL {
            404
        } else {
            503
        }
    }

    /// Reads an `X-HDHomeRun-Error` value: `"805"` or `"805 All Tuners In Use"` (devices and
    /// emulators send both). Returns the code and the text (the known text when only a code came).
    pub fn parse_header(value: &str) -> Option<(u16, String)> {
        let value = value.trim();
        let (code, text) = value.split_once(' ').unwrap_or((value, ""));
        let code: u16 = code.parse().ok()?;
        let text = match text.trim() {
            "" => DeviceError::ALL
                .iter()
                .find(|e| e.code == code)
                .map_or_else(|| "unknown error".to_string(), |e| e.text.to_string()),
            given => given.to_string(),
        };
        Some((code, text))
    }
}

/// A guide number as in `lineup.json` (`"5.1"` for ATSC, `"7"` elsewhere): digits and at most one dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GuideNumber(String);

impl GuideNumber {
    /// Validates a guide number.
    pub fn parse(text: &str) -> Option<GuideNumber> {
        let valid = !text.is_empty()
            && text.len() <= 16
            && text.split('.').count() <= 2
            && text
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        valid.then(|| GuideNumber(text.to_string()))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GuideNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The broadcast-scoped default stream id of an HDHomeRun channel, built only from what every
/// tuner in the market sees the same way (the virtual channel and the station's call sign), so
/// independent nodes capturing one broadcast derive one stream key without talking:
/// `ec/stream/v1/broadcast/atsc/channel-5.1/callsign-kxyz-hd/profile-source/variant-ts`. The call
/// sign is lowercased and kept to `[a-z0-9-]`; an empty one is left out.
pub fn broadcast_stream_id(guide: &GuideNumber, guide_name: &str) -> String {
    let callsign: String = guide_name
        .chars()
        .filter_map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => Some(c),
            _ => None,
        })
        .take(32)
        .collect();
    let callsign = if callsign.is_empty() {
        String::new()
    } else {
        format!("/callsign-{callsign}")
    };
    format!("ec/stream/v1/broadcast/atsc/channel-{guide}{callsign}/profile-source/variant-ts")
}

/// The URL of a channel's stream on the first free tuner, with an optional `duration=` query.
pub fn auto_stream_url(
    host: &str,
    port: u16,
    guide: &GuideNumber,
    duration_s: Option<u64>,
) -> String {
    let request = request::StreamRequest {
        tuner: request::TunerChoice::Auto,
        channel: guide.clone(),
        duration_s,
    };
    format!("http://{host}:{port}{}", request.target())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_headers_with_and_without_text() {
        assert_eq!(
            DeviceError::parse_header("805"),
            Some((805, "All Tuners In Use".into()))
        );
        assert_eq!(
            DeviceError::parse_header(" 801 Unknown Channel "),
            Some((801, "Unknown Channel".into()))
        );
        assert_eq!(
            DeviceError::parse_header("899"),
            Some((899, "unknown error".into()))
        );
        assert_eq!(DeviceError::parse_header("abc"), None);
        assert_eq!(
            DeviceError::ALL_TUNERS_IN_USE.header_value(),
            "805 All Tuners In Use"
        );
        assert_eq!(DeviceError::UNKNOWN_CHANNEL.http_status(), 404);
        assert_eq!(DeviceError::NO_VIDEO_DATA.http_status(), 503);
    }

    #[test]
    fn broadcast_stream_ids_depend_on_channel_and_call_sign_only() {
        let g = GuideNumber::parse("5.1").unwrap();
        assert_eq!(
            broadcast_stream_id(&g, "KXYZ-HD"),
            "ec/stream/v1/broadcast/atsc/channel-5.1/callsign-kxyz-hd/profile-source/variant-ts"
        );
        assert_eq!(
            broadcast_stream_id(&g, "Ünïcode & co"),
            broadcast_stream_id(&g, "ncodeco")
        );
        assert_eq!(
            broadcast_stream_id(&g, "  "),
            "ec/stream/v1/broadcast/atsc/channel-5.1/profile-source/variant-ts"
        );
    }

    #[test]
    fn guide_numbers_and_urls() {
        let g = GuideNumber::parse("5.1").unwrap();
        assert_eq!(
            auto_stream_url("10.0.0.2", STREAM_PORT, &g, Some(30)),
            "http://10.0.0.2:5004/auto/v5.1?duration=30"
        );
        for bad in ["", "5.", ".1", "5.1.2", "a", "5/1"] {
            assert!(GuideNumber::parse(bad).is_none(), "{bad}");
        }
    }
}
