//! The media playlist (RFC 8216) as data: segments in, text out. No files here.

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
