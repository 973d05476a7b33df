//! [`StreamRequest`]: the HDHomeRun stream request — `/auto/vCHANNEL` (the first free tuner) or
//! `/tunerN/vCHANNEL` (that tuner), with an optional `?duration=SECONDS` — read and written in
//! one place, for the tuner simulator (`hdhr::sim`), the node's LAN server
//! (`node::lan::site`) and the capture ([`super::auto_stream_url`]).
//!
//! Pure parsing, total on any text; no I/O. The rules:
//! - Only the path decides whether a target is a stream request; another path is another
//!   resource (`None`), and so is one that names something below a channel (`/auto/v5/1`).
//! - `tunerN` names a tuner when N is a number below [`MAX_TUNERS`]; otherwise there is no such
//!   tuner (HTTP 404).
//! - The channel is a guide number (`5.1`, `7`); anything else is a channel no device carries
//!   (HDHomeRun error 801, HTTP 404), like a guide number that is not in the lineup.
//! - `duration=` is a whole number of seconds; a longer one than [`MAX_DURATION_S`] is cut to it
//!   (real devices accept any). Not a number is a bad request (HTTP 400); the last one given
//!   counts. A parameter given without `=` is one with an empty value, as in an HTML form.
//! - Other parameters are ignored, as a device without a transcoder ignores `transcode=`; none
//!   is percent-decoded.

use super::GuideNumber;

/// The most tuners a device may have: `/tunerN/` with N at or above it names none. Real devices
/// have two to six; the simulator allows up to this many.
pub const MAX_TUNERS: u8 = 16;
/// The longest `duration=` honoured, in seconds (a day); a longer one is cut to it.
pub const MAX_DURATION_S: u64 = 86_400;

/// Which tuner a stream request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunerChoice {
    /// `/auto/`: the first free tuner.
    Auto,
    /// `/tunerN/`: that tuner.
    Index(u8),
}

/// A stream request; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// The tuner asked for.
    pub tuner: TunerChoice,
    /// The channel.
    pub channel: GuideNumber,
    /// Close the body after this many seconds (at most [`MAX_DURATION_S`]).
    pub duration_s: Option<u64>,
}

/// Why a stream request cannot be served, each with the answer a device gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamRequestError {
    /// `/tunerN/` names no tuner a device can have: HTTP 404.
    NoSuchTuner,
    /// The channel is not a guide number: HDHomeRun error 801, HTTP 404.
    UnknownChannel,
    /// `duration=` is not a whole number of seconds: HTTP 400.
    BadDuration,
}

impl std::fmt::Display for StreamRequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamRequestError::NoSuchTuner => write!(f, "no such tuner"),
            StreamRequestError::UnknownChannel => write!(f, "not a guide number"),
            StreamRequestError::BadDuration => write!(f, "duration is not a number of seconds"),
        }
    }
}

impl std::error::Error for StreamRequestError {}

impl StreamRequest {
    /// Reads a request target: `None` when its path is not a stream's, else the request or why
    /// it cannot be served.
    pub fn parse(target: &str) -> Option<Result<StreamRequest, StreamRequestError>> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (tuner, rest) = path.strip_prefix('/')?.split_once('/')?;
        let channel = rest.strip_prefix('v').filter(|c| !c.contains('/'))?;
        let tuner = match tuner {
            "auto" => TunerChoice::Auto,
            _ => match tuner.strip_prefix("tuner")?.parse::<u8>() {
                Ok(index) if index < MAX_TUNERS => TunerChoice::Index(index),
                _ => return Some(Err(StreamRequestError::NoSuchTuner)),
            },
        };
        let Some(channel) = GuideNumber::parse(channel) else {
            return Some(Err(StreamRequestError::UnknownChannel));
        };
        let mut duration_s = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if name == "duration" {
                let Ok(seconds) = value.parse::<u64>() else {
                    return Some(Err(StreamRequestError::BadDuration));
                };
                duration_s = Some(seconds.min(MAX_DURATION_S));
            }
        }
        Some(Ok(StreamRequest {
            tuner,
            channel,
            duration_s,
        }))
    }

    /// The request target: `/auto/v5.1?duration=30`.
    pub fn target(&self) -> String {
        let mut target = match self.tuner {
            TunerChoice::Auto => format!("/auto/v{}", self.channel),
            TunerChoice::Index(n) => format!("/tuner{n}/v{}", self.channel),
        };
        if let Some(seconds) = self.duration_s {
            target.push_str(&format!("?duration={seconds}"));
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tuner: TunerChoice, duration_s: Option<u64>) -> StreamRequest {
        StreamRequest {
            tuner,
            channel: GuideNumber::parse("5.1").unwrap(),
            duration_s,
        }
    }

    #[test]
    fn stream_requests_and_their_targets() {
        for (target, expected) in [
            ("/auto/v5.1", request(TunerChoice::Auto, None)),
            (
                "/auto/v5.1?duration=30",
                request(TunerChoice::Auto, Some(30)),
            ),
            ("/tuner1/v5.1", request(TunerChoice::Index(1), None)),
            (
                "/tuner15/v5.1?duration=0",
                request(TunerChoice::Index(15), Some(0)),
            ),
        ] {
            assert_eq!(StreamRequest::parse(target), Some(Ok(expected.clone())));
            assert_eq!(expected.target(), target);
        }
    }

    #[test]
    fn the_query_duration_is_cut_to_a_day_other_parameters_are_ignored() {
        let parse = |target: &str| StreamRequest::parse(target).unwrap().map(|r| r.duration_s);
        assert_eq!(
            parse("/auto/v5.1?duration=999999"),
            Ok(Some(MAX_DURATION_S))
        );
        assert_eq!(
            parse("/auto/v5.1?transcode=mobile&duration=30"),
            Ok(Some(30))
        );
        assert_eq!(parse("/auto/v5.1?duration=10&duration=20"), Ok(Some(20)));
        assert_eq!(parse("/auto/v5.1?transcode&&x=1"), Ok(None));
        assert_eq!(parse("/auto/v5.1?"), Ok(None));
        for bad in [
            "duration=soon",
            "duration=",
            "duration",
            "duration=-1",
            "duration=1.5",
        ] {
            assert_eq!(
                parse(&format!("/auto/v5.1?{bad}")),
                Err(StreamRequestError::BadDuration),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_tuners_and_channels_and_other_paths() {
        for no_tuner in [
            "/tuner16/v5.1",
            "/tunerx/v5.1",
            "/tuner/v5.1",
            "/tuner-1/v5.1",
        ] {
            assert_eq!(
                StreamRequest::parse(no_tuner),
                Some(Err(StreamRequestError::NoSuchTuner)),
                "{no_tuner}"
            );
        }
        for unknown in ["/auto/v", "/auto/vx", "/auto/v5.", "/tuner0/v5.1.2"] {
            assert_eq!(
                StreamRequest::parse(unknown),
                Some(Err(StreamRequestError::UnknownChannel)),
                "{unknown}"
            );
        }
        for other in [
            "",
            "/",
            "/auto",
            "/auto/",
            "/auto/5.1",
            "/auto/v5/1",
            "/lineup.json",
            "/hls/5.1/v",
            "auto/v5.1",
        ] {
            assert_eq!(StreamRequest::parse(other), None, "{other}");
        }
    }
}
