//! The media playlist (RFC 8216) as data: segments in, text out, and back from the text this
//! module wrote (to resume a folder). No files here.

use crate::chunk::{Chunk, ChunkIndex};
use crate::time::UnixMillis;
use crate::ts::clock::TICKS_PER_SECOND;
use std::collections::VecDeque;
use std::fmt::Write;

/// One segment line group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// The chunk index (names the file).
    pub index: ChunkIndex,
    /// Duration in 90 kHz ticks.
    pub duration: u64,
    /// `EXT-X-DISCONTINUITY` before this segment.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample (`EXT-X-PROGRAM-DATE-TIME`).
    pub date_time: UnixMillis,
}

impl SegmentEntry {
    /// The entry for a chunk whose first sample was shown at `date_time`.
    pub fn for_chunk<B>(chunk: &Chunk<B>, date_time: UnixMillis) -> SegmentEntry {
        SegmentEntry {
            index: chunk.index,
            duration: chunk.duration,
            discontinuity: chunk.flags.discontinuity(),
            date_time,
        }
    }

    /// The segment's file name: `segment_%06d.ts` of its chunk index.
    pub fn file_name(&self) -> String {
        format!("segment_{:06}.ts", self.index.0)
    }
}

/// Whether segments are kept (EVENT) or slide out of a window of live segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistKind {
    /// Append-only (`EXT-X-PLAYLIST-TYPE:EVENT`).
    Event,
    /// Live, keeping the newest N segments.
    Window(usize),
}

/// A media playlist being built.
#[derive(Clone, Debug)]
pub struct Playlist {
    kind: PlaylistKind,
    target_duration: u64,
    segments: VecDeque<SegmentEntry>,
    media_sequence: u64,
    discontinuity_sequence: u64,
    ended: bool,
}

impl Playlist {
    /// An empty playlist whose `EXT-X-TARGETDURATION` is `target_duration` seconds for its life.
    pub fn new(kind: PlaylistKind, target_duration: u64) -> Playlist {
        Playlist {
            kind,
            target_duration: target_duration.max(1),
            segments: VecDeque::new(),
            media_sequence: 0,
            discontinuity_sequence: 0,
            ended: false,
        }
    }

    /// Appends a segment; returns the segments that slid out of a live window.
    pub fn push(&mut self, entry: SegmentEntry) -> Vec<SegmentEntry> {
        self.segments.push_back(entry);
        let PlaylistKind::Window(window) = self.kind else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        while self.segments.len() > window.max(1) {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            self.media_sequence += 1;
            // The next segment's discontinuity counts once the segment before it is gone.
            if self.segments.front().is_some_and(|next| next.discontinuity) {
                self.discontinuity_sequence += 1;
            }
            removed.push(old);
        }
        removed
    }

    /// Marks the playlist complete (`EXT-X-ENDLIST`).
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The segments listed now.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentEntry> {
        self.segments.iter()
    }

    /// The playlist text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128 + 96 * self.segments.len());
        out.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        match self.kind {
            PlaylistKind::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            PlaylistKind::Window(_) if self.discontinuity_sequence > 0 => {
                let _ = writeln!(
                    out,
                    "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                    self.discontinuity_sequence
                );
            }
            PlaylistKind::Window(_) => {}
        }
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.discontinuity && i > 0 {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                iso8601(segment.date_time)
            );
            let seconds = segment.duration as f64 / TICKS_PER_SECOND as f64;
            let _ = writeln!(out, "#EXTINF:{seconds:.3},\n{}", segment.file_name());
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

/// Why a playlist's text could not be read back: the line (1-based) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaylistError {
    /// The line it stopped at.
    pub line: usize,
    /// What is wrong there.
    pub why: &'static str,
}

impl std::fmt::Display for PlaylistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl std::error::Error for PlaylistError {}

impl Playlist {
    /// Reads back an EVENT playlist as [`Playlist::render`] writes it (any other text is
    /// refused, naming the line): its segments, target duration and media sequence, not ended
    /// (an `EXT-X-ENDLIST` is dropped, so more segments can follow).
    pub fn parse(text: &str) -> Result<Playlist, PlaylistError> {
        let mut playlist = Playlist::new(PlaylistKind::Event, 1);
        let mut pending = Pending::default();
        let mut lines = text.lines().map(str::trim_end);
        if lines.next() != Some("#EXTM3U") {
            return Err(PlaylistError {
                line: 1,
                why: "not a playlist (no #EXTM3U)",
            });
        }
        for (at, line) in lines.enumerate() {
            let bad = |why| PlaylistError { line: at + 2, why };
            if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                let seconds = value.parse().map_err(|_| bad("bad target duration"))?;
                playlist.target_duration = u64::max(seconds, 1);
            } else if let Some(value) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                playlist.media_sequence = value.parse().map_err(|_| bad("bad media sequence"))?;
            } else if let Some(value) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pending.date_time = Some(parse_iso8601(value).ok_or(bad("bad date and time"))?);
            } else if let Some(value) = line.strip_prefix("#EXTINF:") {
                let seconds: f64 = value
                    .trim_end_matches(',')
                    .parse()
                    .map_err(|_| bad("bad segment duration"))?;
                if !(0.0..=86_400.0).contains(&seconds) {
                    return Err(bad("segment duration out of range"));
                }
                pending.duration = Some((seconds * TICKS_PER_SECOND as f64).round() as u64);
            } else if line == "#EXT-X-DISCONTINUITY" {
                pending.discontinuity = true;
            } else if matches!(
                line,
                "#EXT-X-VERSION:3" | "#EXT-X-PLAYLIST-TYPE:EVENT" | "#EXT-X-ENDLIST" | ""
            ) {
            } else if let Some(digits) = line
                .strip_prefix("segment_")
                .and_then(|rest| rest.strip_suffix(".ts"))
            {
                let index = digits.parse().map_err(|_| bad("bad segment name"))?;
                let entry = pending
                    .take(ChunkIndex(index))
                    .ok_or(bad("segment without #EXTINF and date"))?;
                if playlist
                    .segments
                    .back()
                    .is_some_and(|last| last.index >= entry.index)
                {
                    return Err(bad("segments out of order"));
                }
                playlist.segments.push_back(entry);
            } else {
                return Err(bad("a line this node does not write"));
            }
        }
        Ok(playlist)
    }

    /// The newest segment listed.
    pub fn last(&self) -> Option<&SegmentEntry> {
        self.segments.back()
    }
}

/// A segment's tags read before its file name.
#[derive(Default)]
struct Pending {
    duration: Option<u64>,
    date_time: Option<UnixMillis>,
    discontinuity: bool,
}

impl Pending {
    /// The entry for segment `index`, if its duration and date came.
    fn take(&mut self, index: ChunkIndex) -> Option<SegmentEntry> {
        let taken = std::mem::take(self);
        Some(SegmentEntry {
            index,
            duration: taken.duration?,
            discontinuity: taken.discontinuity,
            date_time: taken.date_time?,
        })
    }
}

/// Reads `YYYY-MM-DDTHH:MM:SS.mmmZ` as [`iso8601`] writes it (from 1970 on).
fn parse_iso8601(text: &str) -> Option<UnixMillis> {
    let b = text.as_bytes();
    let shape = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    if !shape {
        return None;
    }
    let field = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    let (hour, minute, second, millis) = (
        field(11, 13)?,
        field(14, 16)?,
        field(17, 19)?,
        field(20, 23)?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Howard Hinnant's days_from_civil, the inverse of the civil_from_days in `iso8601`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds * 1000 + millis).ok().map(UnixMillis)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time (proleptic Gregorian, days from civil).
pub fn iso8601(time: UnixMillis) -> String {
    let millis = time.0 % 1000;
    let secs = time.0 / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, discontinuity: bool) -> SegmentEntry {
        SegmentEntry {
            index: ChunkIndex(index),
            duration: 180_180,
            discontinuity,
            date_time: UnixMillis(1_764_072_000_000 + index * 2002),
        }
    }

    #[test]
    fn a_rendered_event_playlist_reads_back_not_ended() {
        let mut p = Playlist::new(PlaylistKind::Event, 6);
        p.push(entry(7, false));
        p.push(entry(9, true));
        p.end();
        let back = Playlist::parse(&p.render()).unwrap();
        assert_eq!(
            back.segments().cloned().collect::<Vec<_>>(),
            [entry(7, false), entry(9, true)]
        );
        assert_eq!(back.target_duration, 6);
        assert!(!back.ended);
        assert_eq!(back.last().map(|e| e.index), Some(ChunkIndex(9)));
        for millis in [0, 951_782_400_123, 1_764_072_000_000, 4_102_444_799_999] {
            assert_eq!(
                parse_iso8601(&iso8601(UnixMillis(millis))),
                Some(UnixMillis(millis))
            );
        }
    }

    #[test]
    fn text_this_node_did_not_write_is_refused_with_its_line() {
        for (text, line) in [
            ("", 1),
            ("#EXTM3U\n#EXT-X-KEY:METHOD=AES-128\n", 2),
            ("#EXTM3U\n#EXTINF:2.0,\nsegment_000001.ts\n", 3),
            ("#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2025-13-01T00:00:00.000Z\n", 2),
            ("#EXTM3U\n#EXTINF:-1,\n", 2),
            ("#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2025-11-25T12:00:00.000Z\n#EXTINF:1,\nsegment_x.ts\n", 4),
        ] {
            match Playlist::parse(text) {
                Err(e) => assert_eq!(e.line, line, "{text:?}: {e}"),
                Ok(p) => panic!("{text:?} read as {p:?}"),
            }
        }
    }

    #[test]
    fn dates_render_in_utc() {
        assert_eq!(iso8601(UnixMillis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(UnixMillis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            iso8601(UnixMillis(1_764_072_000_000)),
            "2025-11-25T12:00:00.000Z"
        );
    }

    #[test]
    fn event_playlist() {
        let mut p = Playlist::new(PlaylistKind::Event, 6);
        assert!(p.push(entry(7, false)).is_empty());
        p.push(entry(9, true));
        p.end();
        let text = p.render();
        let expected =
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
            #EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-PROGRAM-DATE-TIME:2025-11-25T12:00:14.014Z\n\
            #EXTINF:2.002,\nsegment_000007.ts\n#EXT-X-DISCONTINUITY\n\
            #EXT-X-PROGRAM-DATE-TIME:2025-11-25T12:00:18.018Z\n#EXTINF:2.002,\nsegment_000009.ts\n\
            #EXT-X-ENDLIST\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn window_slides_and_counts_discontinuities() {
        let mut p = Playlist::new(PlaylistKind::Window(2), 6);
        p.push(entry(1, false));
        p.push(entry(2, true));
        p.push(entry(3, false));
        let removed = p.push(entry(4, false));
        assert_eq!(
            removed.iter().map(|e| e.index.0).collect::<Vec<_>>(),
            vec![2]
        );
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
        assert!(!text.contains("PLAYLIST-TYPE"));
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    }
}
