//! Test media made at test time with ffmpeg's lavfi sources, cached per test run, plus helpers to
//! chunk bytes through the library and to damage or splice streams.
//!
//! A missing ffmpeg fails the test with a message naming the package, never a silent skip.

use ec_node::chunk::{Chunk, Chunker, ChunkerConfig};
use ec_node::time::UnixMillis;
use ec_node::ts::packet::{write_header, Packet, Pid, PACKET_SIZE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fixed reference clock so chunk indices are the same on every run.
pub const NOW: UnixMillis = UnixMillis(1_764_072_000_000);

/// An H.264 + AAC clip from lavfi's test pattern and a sine tone.
pub struct H264Clip {
    /// `WIDTHxHEIGHT`.
    pub size: &'static str,
    /// Frame rate, e.g. `30` or `30000/1001`.
    pub rate: &'static str,
    /// Length in seconds.
    pub seconds: u32,
    /// Frames per GOP (a keyframe every `gop` frames, no scene-cut keyframes).
    pub gop: u32,
    /// `-output_ts_offset` in seconds: where the timestamps start.
    pub ts_offset: Option<u32>,
}

impl H264Clip {
    /// The ffmpeg arguments that make it (before the output path).
    pub fn args(&self) -> Vec<String> {
        let (video, gop) = (
            format!("testsrc2=size={}:rate={}", self.size, self.rate),
            self.gop.to_string(),
        );
        let mut args: Vec<String> = ["-f", "lavfi", "-i", &video, "-f", "lavfi", "-i"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.push("sine=frequency=1000:sample_rate=48000".into());
        args.extend(["-t".into(), self.seconds.to_string()]);
        for a in [
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
        ] {
            args.push(a.to_string());
        }
        for a in [
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
        ] {
            args.push(a.to_string());
        }
        if let Some(offset) = self.ts_offset {
            args.extend(["-output_ts_offset".into(), offset.to_string()]);
        }
        args.extend(["-f".into(), "mpegts".into()]);
        args
    }
}

/// H.264 + AAC, 30000/1001 fps, a keyframe every 2 s, 20 s.
pub const H264_AAC: H264Clip = H264Clip {
    size: "640x360",
    rate: "30000/1001",
    seconds: 20,
    gop: 60,
    ts_offset: None,
};

/// H.264 + AAC whose timestamps cross 2^33 ticks about 13.7 s in (95443.7 s is the wrap).
pub const H264_ACROSS_WRAP: H264Clip = H264Clip {
    size: "320x180",
    rate: "30",
    seconds: 30,
    gop: 30,
    ts_offset: Some(95_430),
};

/// A short H.264 + AAC clip starting at 600 s, to splice in front of one starting near zero.
pub const H264_AT_600S: H264Clip = H264Clip {
    size: "320x180",
    rate: "30",
    seconds: 10,
    gop: 30,
    ts_offset: Some(600),
};

/// H.264 + AAC with a keyframe only every 10 s (longer than 3·D at the default D), 50 s.
pub const H264_LONG_GOP: H264Clip = H264Clip {
    size: "320x180",
    rate: "30",
    seconds: 50,
    gop: 300,
    ts_offset: None,
};

/// ATSC-like: MPEG-2 video with open GOPs and B-frames, AC-3, CBR 19.39 Mb/s with null
/// packets, non-default PIDs and service id, `seconds` long.
pub fn atsc_mpeg2_ac3(seconds: u32) -> Vec<String> {
    let args = format!(
        "-f lavfi -i testsrc2=size=704x480:rate=30000/1001 -f lavfi -i sine=frequency=440:sample_rate=48000 \
        -t {seconds} -c:v mpeg2video -b:v 6M -maxrate 6M -bufsize 3M -g 15 -bf 2 -c:a ac3 -b:a 384k \
        -mpegts_service_id 3 -mpegts_pmt_start_pid 0x30 -mpegts_start_pid 0x31 -muxrate 19392658 -f mpegts"
    );
    args.split_whitespace().map(str::to_string).collect()
}

/// Fails the test with a clear message when a tool is missing.
pub fn require_tool(tool: &str) {
    let found = Command::new(tool).arg("-version").output().is_ok();
    assert!(
        found,
        "{tool} is required by this test: bash .ci/setup installs it (Debian packages ffmpeg, hdhomerun-config)"
    );
}

/// Generates (once per test run) `name` from ffmpeg `args` and returns its bytes.
pub fn media(name: &str, args: &[String]) -> Vec<u8> {
    std::fs::read(media_path(name, args)).expect("read generated media")
}

/// Generates (once per test run) `name` from ffmpeg `args` and returns its path.
pub fn media_path(name: &str, args: &[String]) -> PathBuf {
    require_tool("ffmpeg");
    let dir = crate::process::tmp_root().join("media");
    std::fs::create_dir_all(&dir).unwrap();
    // The recipe names the folder, so a changed recipe never reuses stale media.
    let recipe = blake3::hash(args.join(" ").as_bytes()).to_hex();
    let dir = dir.join(&recipe[..12]);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if !path.exists() {
        // Several test binaries may race here: write privately, then rename into place.
        static UNIQUE: AtomicUsize = AtomicUsize::new(0);
        let unique = UNIQUE.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{name}.{}.{unique}.tmp", std::process::id()));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y"])
            .args(args)
            .arg(&tmp)
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "ffmpeg failed to make {name}");
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// Chunks `bytes` in reads of `read_size`, all taken at `now`.
pub fn chunk_with(bytes: &[u8], read_size: usize, now: UnixMillis) -> Vec<Chunk> {
    let mut chunker = Chunker::new(ChunkerConfig::default());
    let mut out = Vec::new();
    for part in bytes.chunks(read_size.max(1)) {
        chunker.push(part, now);
        out.extend(std::iter::from_fn(|| chunker.poll_chunk()));
    }
    chunker.finish(now);
    out.extend(std::iter::from_fn(|| chunker.poll_chunk()));
    out
}

/// Chunks `bytes` in 64 KiB reads at the fixed clock.
pub fn chunk_all(bytes: &[u8]) -> Vec<Chunk> {
    chunk_with(bytes, 64 * 1024, NOW)
}

/// Chunks by index.
pub fn by_index(chunks: &[Chunk]) -> BTreeMap<u64, &Chunk> {
    chunks.iter().map(|c| (c.index.0, c)).collect()
}

/// Asserts that two runs agree byte for byte on every index both have; returns how many.
pub fn assert_agree(a: &[Chunk], b: &[Chunk]) -> usize {
    let (a, b) = (by_index(a), by_index(b));
    let mut shared = 0;
    for (index, chunk) in &a {
        if let Some(other) = b.get(index) {
            assert_eq!(
                chunk.bytes.len(),
                other.bytes.len(),
                "chunk {index} size differs"
            );
            assert!(chunk.bytes == other.bytes, "chunk {index} bytes differ");
            assert_eq!(chunk.pts, other.pts, "chunk {index} pts differs");
            assert_eq!(
                chunk.duration, other.duration,
                "chunk {index} duration differs"
            );
            shared += 1;
        }
    }
    shared
}

/// Offset of the first packet whose PCR is at least `seconds` after the first PCR.
pub fn offset_at_seconds(ts: &[u8], seconds: f64) -> usize {
    let mut first = None;
    for (i, raw) in ts.chunks_exact(PACKET_SIZE).enumerate() {
        let Ok(p) = Packet::parse(raw.try_into().unwrap()) else {
            continue;
        };
        if let Some(pcr) = p.adaptation().pcr {
            let t = pcr.base().ticks() as f64 / 90_000.0;
            let start = *first.get_or_insert(t);
            let elapsed = if t >= start {
                t - start
            } else {
                t + 95_443.717_688 - start
            };
            if elapsed >= seconds {
                return i * PACKET_SIZE;
            }
        }
    }
    panic!("stream shorter than {seconds} s");
}

/// Inserts an ATSC system time table packet each time the PCR passes a whole second, telling
/// the time as `base_unix` plus the seconds elapsed since the first PCR.
pub fn with_stt(ts: &[u8], base_unix: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(ts.len() + ts.len() / 100);
    let mut first = None;
    let mut next_second = 0u64;
    let mut cc = 0u8;
    for raw in ts.chunks_exact(PACKET_SIZE) {
        out.extend_from_slice(raw);
        let Ok(p) = Packet::parse(raw.try_into().unwrap()) else {
            continue;
        };
        let Some(pcr) = p.adaptation().pcr else {
            continue;
        };
        let start = *first.get_or_insert(pcr.base());
        let elapsed = pcr.base().wrapping_delta(start).max(0) as u64 / 90_000;
        if elapsed >= next_second {
            let section = ec_node::ts::si::encode_atsc_stt(base_unix + elapsed, 18);
            let mut packet = [0xffu8; PACKET_SIZE];
            write_header(&mut packet, true, Pid::ATSC_PSIP, cc);
            packet[4] = 0;
            packet[5..5 + section.len()].copy_from_slice(&section);
            out.extend_from_slice(&packet);
            cc = (cc + 1) & 0x0f;
            next_second = elapsed + 1;
        }
    }
    out
}

/// The PID of every packet in `chunk`, in order.
pub fn pids(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(PACKET_SIZE)
        .map(|raw| {
            Packet::parse(raw.try_into().unwrap())
                .unwrap()
                .pid()
                .value()
        })
        .collect()
}

/// Writes `bytes` to a file in the test's temp dir and returns its path.
pub fn write_temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = crate::process::tmp_root().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs ffprobe on a file and returns whether its first video frame is a keyframe.
pub fn first_video_frame_is_key(path: &Path) -> bool {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame",
        ])
        .args(["-read_intervals", "%+#1", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().next().and_then(|l| l.split(',').next()) == Some("1")
}

/// Decodes a file with ffmpeg and returns what it printed on stderr at level error.
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not decode {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
