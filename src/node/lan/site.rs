//! [`Site`]: what the node answers over HTTP on the LAN — an HDHomeRun's documents and streams,
//! an IPTV playlist, HLS, a status document and a small index page — over the shared HTTP edge
//! ([`crate::http`]), from the [`Hub`].
//!
//! [`SiteRoute::parse`] maps a request target to what is asked, without I/O (total on any text); no
//! target ever names a file. Streams are whole chunks from a viewer's queue, written with a
//! stall limit; an HTTP/1.1 `Connection: close` body that ends when the viewer goes.

use super::audience::{Next, Refusal};
use super::bell::Woken;
use super::hub::{ChannelStatus, Hub};
use crate::chunk::ChunkIndex;
use crate::hdhr::device::{self, Identity};
use crate::hdhr::request::{StreamRequest, StreamRequestError, TunerChoice};
use crate::hdhr::{DeviceError, GuideNumber};
use crate::hls::playlist::iso8601;
use crate::http::{self, SendError};
use crate::stop::StopFlag;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A viewer that reads nothing for this long is closed.
const STALL: Duration = Duration::from_secs(10);
/// How long the first playlist request of a closed channel waits for its first segment.
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(15);

/// What a request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteRoute {
    /// `/`: the index page.
    Index,
    /// `/discover.json`.
    Discover,
    /// `/lineup.json`.
    Lineup,
    /// `/lineup_status.json`.
    LineupStatus,
    /// `/lineup.m3u`.
    LineupM3u,
    /// `/status.json`.
    Status,
    /// `/auto/vGUIDE[?duration=S]`: the channel as one continuous MPEG-TS stream.
    Stream {
        /// The channel.
        guide: GuideNumber,
        /// Close after this many seconds.
        duration_s: Option<u64>,
    },
    /// A stream request for something that is not a guide number: 801, as for a channel not in
    /// the lineup.
    UnknownChannel,
    /// `/hls/GUIDE/index.m3u8`.
    Playlist(GuideNumber),
    /// `/hls/GUIDE/segment_NNNNNN.ts`.
    Segment(GuideNumber, ChunkIndex),
    /// Anything else.
    NotFound,
}

impl SiteRoute {
    /// What `target` asks for; `None` for a malformed query.
    pub fn parse(target: &str) -> Option<SiteRoute> {
        let path = target.split('?').next().unwrap_or_default();
        let route = match path {
            "/" | "/index.html" => SiteRoute::Index,
            "/discover.json" => SiteRoute::Discover,
            "/lineup.json" => SiteRoute::Lineup,
            "/lineup_status.json" => SiteRoute::LineupStatus,
            "/lineup.m3u" => SiteRoute::LineupM3u,
            "/status.json" => SiteRoute::Status,
            _ => {
                match StreamRequest::parse(target) {
                    Some(Ok(StreamRequest {
                        tuner: TunerChoice::Auto,
                        channel,
                        duration_s,
                    })) => {
                        return Some(SiteRoute::Stream {
                            guide: channel,
                            duration_s,
                        })
                    }
                    Some(Err(StreamRequestError::UnknownChannel)) => {
                        return Some(SiteRoute::UnknownChannel)
                    }
                    Some(Err(StreamRequestError::BadDuration)) => return None,
                    // Viewers share a channel's stream: no tuner is addressed by number here.
                    Some(_) => return Some(SiteRoute::NotFound),
                    None => {}
                }
                let Some(rest) = path.strip_prefix("/hls/") else {
                    return Some(SiteRoute::NotFound);
                };
                let Some((guide, file)) = rest.split_once('/') else {
                    return Some(SiteRoute::NotFound);
                };
                let Some(guide) = GuideNumber::parse(guide) else {
                    return Some(SiteRoute::NotFound);
                };
                if file == "index.m3u8" {
                    return Some(SiteRoute::Playlist(guide));
                }
                let index = file
                    .strip_prefix("segment_")
                    .and_then(|f| f.strip_suffix(".ts"))
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse().ok());
                match index {
                    Some(i) => SiteRoute::Segment(guide, ChunkIndex(i)),
                    None => SiteRoute::NotFound,
                }
            }
        };
        Some(route)
    }
}

/// The node's HTTP answers.
pub struct Site {
    hub: Arc<Hub>,
    identity: Identity,
    stop: StopFlag,
}

impl Site {
    /// A site over `hub`, presenting `identity`.
    pub fn new(hub: Arc<Hub>, identity: Identity, stop: &StopFlag) -> Site {
        Site {
            hub,
            identity,
            stop: stop.clone(),
        }
    }

    /// Serves one connection (one request).
    pub fn serve(&self, conn: TcpStream, peer: SocketAddr) {
        let Some((conn, target)) = http::read_request(conn, &self.stop) else {
            return;
        };
        log::debug!("{peer}: GET {target}");
        // Documents name the address the client reached (the listen address may be 0.0.0.0).
        let base = match conn.local_addr() {
            Ok(local) => format!("http://{local}"),
            Err(_) => return,
        };
        let json = [("Content-Type", "application/json")];
        match SiteRoute::parse(&target) {
            None => http::respond(conn, 400, &[], b"Bad Request\n"),
            Some(SiteRoute::NotFound) => http::respond(conn, 404, &[], b"Not Found\n"),
            Some(SiteRoute::Index) => {
                let page = index_html(&self.identity, &self.hub.status());
                http::respond(
                    conn,
                    200,
                    &[("Content-Type", "text/html; charset=utf-8")],
                    page.as_bytes(),
                )
            }
            Some(SiteRoute::Discover) => {
                let identity = Identity {
                    tuners: self.hub.tuner_count(),
                    ..self.identity.clone()
                };
                let body = device::discover_json(&identity, &base);
                http::respond(conn, 200, &json, body.as_bytes())
            }
            Some(SiteRoute::Lineup) => {
                let body = device::lineup_json(&self.hub.lineup(), &base);
                http::respond(conn, 200, &json, body.as_bytes())
            }
            Some(SiteRoute::LineupStatus) => {
                http::respond(conn, 200, &json, device::lineup_status_json().as_bytes())
            }
            Some(SiteRoute::LineupM3u) => {
                let body = device::lineup_m3u(&self.hub.lineup(), &base);
                http::respond(
                    conn,
                    200,
                    &[("Content-Type", "audio/x-mpegurl")],
                    body.as_bytes(),
                )
            }
            Some(SiteRoute::Status) => {
                http::respond(conn, 200, &json, status_json(&self.hub.status()).as_bytes())
            }
            Some(SiteRoute::Stream { guide, duration_s }) => {
                self.stream(conn, peer, &guide, duration_s.map(Duration::from_secs))
            }
            Some(SiteRoute::UnknownChannel) => refuse(conn, peer, &target, &Refusal::Unknown),
            Some(SiteRoute::Playlist(guide)) => {
                match self.hub.playlist(&guide, peer.ip(), FIRST_SEGMENT_WAIT) {
                    Ok(text) => http::respond(
                        conn,
                        200,
                        &[
                            ("Content-Type", "application/vnd.apple.mpegurl"),
                            ("Cache-Control", "no-cache"),
                        ],
                        text.as_bytes(),
                    ),
                    Err(refusal) => refuse(conn, peer, &target, &refusal),
                }
            }
            Some(SiteRoute::Segment(guide, index)) => {
                match self.hub.segment(&guide, index, peer.ip()) {
                    Some(bytes) => {
                        http::respond(conn, 200, &[("Content-Type", "video/mp2t")], &bytes)
                    }
                    None => http::respond(conn, 404, &[], b"Not Found\n"),
                }
            }
        }
    }

    /// A continuous MPEG-TS stream of `guide`: whole chunks from the viewer's queue until the
    /// client leaves, the duration passes, the channel closes or the node stops.
    fn stream(
        &self,
        mut conn: TcpStream,
        peer: SocketAddr,
        guide: &GuideNumber,
        limit: Option<Duration>,
    ) {
        let viewer = match self.hub.watch(guide) {
            Ok(viewer) => viewer,
            Err(refusal) => return refuse(conn, peer, &format!("/auto/v{guide}"), &refusal),
        };
        if !http::start_stream(&mut conn, &[("Content-Type", "video/mpeg")]) {
            return;
        }
        log::info!("{peer}: watching {guide}");
        let started = Instant::now();
        let why = loop {
            if self.stop.is_set() {
                break "stopping";
            }
            let left = limit.map(|l| l.saturating_sub(started.elapsed()));
            if left == Some(Duration::ZERO) {
                break "duration";
            }
            match viewer.next() {
                Next::Chunk(chunk) => match http::send(&mut conn, &chunk, &self.stop, STALL) {
                    Ok(()) => viewer.sent(chunk.len()),
                    Err(SendError::ClientLeft) => break "client left",
                    Err(SendError::SlowClient) => break "client stalled",
                    Err(SendError::Stopped) => break "stopping",
                },
                // Asleep until a chunk is queued, the stream ends, the node stops or the client
                // sends or hangs up: no timer wakes an idle viewer.
                Next::Nothing => match viewer.wait(&conn, left) {
                    Ok(Woken::Client) if http::client_left(&mut conn) => break "client left",
                    Ok(_) => {}
                    Err(e) => {
                        log::warn!("{peer}: cannot wait for the next chunk: {e}");
                        break "cannot wait";
                    }
                },
                Next::Closed => break "dropped or channel closed",
            }
        };
        log::info!("{peer}: stopped watching {guide} ({why})");
        drop(viewer);
        http::close(conn);
    }
}

/// Answers a refused viewer with the device error, as an HDHomeRun does.
fn refuse(conn: TcpStream, peer: SocketAddr, target: &str, refusal: &Refusal) {
    let error: DeviceError = refusal.device_error();
    log::info!("{peer}: {target}: {} ({refusal:?})", error.header_value());
    error.respond(conn);
}

/// `/status.json`: per channel, where it comes from, whether it is open and since when, its
/// viewers and bytes.
pub fn status_json(channels: &[ChannelStatus]) -> String {
    let rows: Vec<_> = channels
        .iter()
        .map(|c| {
            serde_json::json!({
                "GuideNumber": c.entry.guide.as_str(),
                "GuideName": c.entry.name,
                "Upstream": c.carrier,
                "Open": c.open,
                "Since": c.since.map(iso8601),
                "Viewers": c.viewers,
                "HlsClients": c.hls_clients,
                "BytesIn": c.bytes_in,
                "BytesOut": c.bytes_out,
                "Chunks": c.chunks,
                "SkippedChunks": c.skipped,
                "DroppedViewers": c.dropped_viewers,
                "LastError": c.failure,
            })
        })
        .collect();
    serde_json::Value::from(rows).to_string()
}

/// The index page: every channel with its links and status.
pub fn index_html(identity: &Identity, channels: &[ChannelStatus]) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    for c in channels {
        let guide = c.entry.guide.as_str();
        let state = if c.open {
            format!("open, {} viewers, {} HLS clients", c.viewers, c.hls_clients)
        } else {
            "idle".to_string()
        };
        rows.push_str(&format!(
            "<tr><td>{guide}</td><td>{name}</td><td><a href=\"/auto/v{guide}\">stream</a> \
             <a href=\"/hls/{guide}/index.m3u8\">HLS</a></td><td>{state}</td><td>{up}</td></tr>\n",
            name = escape(&c.entry.name),
            up = escape(&c.carrier),
        ));
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{name}</title></head><body>\n\
         <h1>{name}</h1>\n<p>HDHomeRun device {id}: <a href=\"/discover.json\">discover.json</a>, \
         <a href=\"/lineup.json\">lineup.json</a>, <a href=\"/lineup.m3u\">lineup.m3u</a>, \
         <a href=\"/status.json\">status.json</a></p>\n<table>\n\
         <tr><th>channel</th><th>name</th><th>watch</th><th>state</th><th>carrier</th></tr>\n\
         {rows}</table>\n</body></html>\n",
        name = escape(&identity.friendly_name),
        id = identity.id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = |s| GuideNumber::parse(s).unwrap();
        assert_eq!(SiteRoute::parse("/"), Some(SiteRoute::Index));
        assert_eq!(
            SiteRoute::parse("/discover.json"),
            Some(SiteRoute::Discover)
        );
        assert_eq!(SiteRoute::parse("/lineup.m3u"), Some(SiteRoute::LineupM3u));
        assert_eq!(
            SiteRoute::parse("/auto/v5.1?duration=30"),
            Some(SiteRoute::Stream {
                guide: g("5.1"),
                duration_s: Some(30)
            })
        );
        assert_eq!(SiteRoute::parse("/auto/v5.1?duration=x"), None);
        assert_eq!(
            SiteRoute::parse("/auto/vx"),
            Some(SiteRoute::UnknownChannel)
        );
        assert_eq!(SiteRoute::parse("/tuner0/v5.1"), Some(SiteRoute::NotFound));
        assert_eq!(
            SiteRoute::parse("/hls/5.1/index.m3u8"),
            Some(SiteRoute::Playlist(g("5.1")))
        );
        assert_eq!(
            SiteRoute::parse("/hls/5.1/segment_000042.ts"),
            Some(SiteRoute::Segment(g("5.1"), ChunkIndex(42)))
        );
        for not_found in [
            "/hls/5.1/../../etc/passwd",
            "/hls/5.1/segment_.ts",
            "/hls/5.1/segment_-1.ts",
            "/hls/5.1",
            "/etc/passwd",
            "/hls/x/index.m3u8",
        ] {
            assert_eq!(
                SiteRoute::parse(not_found),
                Some(SiteRoute::NotFound),
                "{not_found}"
            );
        }
    }
}
