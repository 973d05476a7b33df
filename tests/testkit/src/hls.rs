//! Checks HLS output as a player and RFC 8216 would: the playlist's rules, every listed segment
//! complete, ffmpeg decoding the whole playlist with nothing on stderr, keyframes first.

use crate::process;
use std::path::Path;
use std::process::{Child, Command};

/// A parsed media playlist.
#[derive(Debug, Default)]
pub struct MediaPlaylist {
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub event: bool,
    pub ended: bool,
    /// (file name, EXTINF seconds, discontinuity before it, has program date-time)
    pub segments: Vec<(String, f64, bool, bool)>,
}

/// Parses `DIR/index.m3u8` strictly enough to check the RFC 8216 rules that matter here.
pub fn read_playlist(dir: &Path) -> MediaPlaylist {
    let text = std::fs::read_to_string(dir.join("index.m3u8")).expect("playlist");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("#EXTM3U"),
        "playlist must start with #EXTM3U"
    );
    let mut p = MediaPlaylist::default();
    let (mut extinf, mut discontinuity, mut date) = (None, false, false);
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = v.parse().expect("integer target duration");
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            p.discontinuity_sequence = v.parse().unwrap();
        } else if line == "#EXT-X-PLAYLIST-TYPE:EVENT" {
            p.event = true;
        } else if line == "#EXT-X-ENDLIST" {
            p.ended = true;
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if line.starts_with("#EXT-X-PROGRAM-DATE-TIME:") {
            date = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = Some(
                v.trim_end_matches(',')
                    .parse::<f64>()
                    .expect("EXTINF seconds"),
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let seconds = extinf.take().expect("EXTINF before each URI");
            p.segments
                .push((line.to_string(), seconds, discontinuity, date));
            (discontinuity, date) = (false, false);
        }
    }
    assert!(p.target_duration >= 1);
    for (name, seconds, _, has_date) in &p.segments {
        assert!(
            seconds.round() as u64 <= p.target_duration,
            "{name}: EXTINF {seconds} over the target duration"
        );
        assert!(*has_date, "{name}: no EXT-X-PROGRAM-DATE-TIME");
        assert!(name.ends_with(".ts") && name.starts_with("segment_"));
        let bytes =
            std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("listed segment {name}: {e}"));
        assert!(
            !bytes.is_empty() && bytes.len().is_multiple_of(188),
            "{name} is not whole packets"
        );
    }
    p
}

/// Waits until `writer` (a subscriber or a recorder) has listed at least `n` segments in
/// `dir/index.m3u8`, at most [`process::STEP`]; the test fails sooner if the writer exits.
pub fn wait_for_segments(dir: &Path, n: usize, writer: &mut Child) {
    let what = format!("{n} segments in {}", dir.display());
    process::wait_until(&what, process::STEP, || {
        if let Some(status) = writer.try_wait().expect("wait") {
            panic!("the writer exited ({status}) before {what}");
        }
        dir.join("index.m3u8").exists() && read_playlist(dir).segments.len() >= n
    });
}

/// Decodes the playlist with ffmpeg; panics with its stderr unless it decoded cleanly. Where the
/// playlist marks EXT-X-DISCONTINUITY, each run of segments between the marks is decoded as its
/// own playlist, as a player does: timestamps may jump at a discontinuity (chunks nobody held),
/// which ffmpeg's null muxer reports when it reads across one.
pub fn assert_decodes_clean(dir: &Path) {
    let playlist = read_playlist(dir);
    let mut runs: Vec<Vec<&(String, f64, bool, bool)>> = Vec::new();
    for segment in &playlist.segments {
        match runs.last_mut() {
            Some(run) if !segment.2 => run.push(segment),
            _ => runs.push(vec![segment]),
        }
    }
    if runs.len() <= 1 {
        return decode_clean(&dir.join("index.m3u8"));
    }
    for (i, run) in runs.iter().enumerate() {
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n",
            playlist.target_duration
        );
        for (name, seconds, ..) in run {
            text.push_str(&format!("#EXTINF:{seconds:.3},\n{name}\n"));
        }
        text.push_str("#EXT-X-ENDLIST\n");
        let path = dir.join(format!(".run-{i}.m3u8"));
        std::fs::write(&path, text).unwrap();
        decode_clean(&path);
        let _ = std::fs::remove_file(&path);
    }
}

fn decode_clean(playlist: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(playlist)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg (install the Debian package ffmpeg)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg on {}: {stderr}",
        playlist.display()
    );
}
