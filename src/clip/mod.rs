//! The built-in clip: twelve seconds of H.264 + AAC in MPEG-TS (about 410 KiB), embedded in the
//! binary so the main job, the tuner simulator and the tests run with no hardware and no ffmpeg.
//!
//! Made once with ffmpeg 5.1 (Debian 12) by:
//!
//! ```sh
//! ffmpeg -f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
//!   -t 12 -c:v libx264 -preset veryfast -crf 32 -g 30 -keyint_min 30 -sc_threshold 0 \
//!   -pix_fmt yuv420p -c:a aac -b:a 48k -f mpegts src/clip/builtin.ts
//! ```
//!
//! One-second closed GOPs with B-frames, PAT/PMT every 100 ms, video PID 0x100, audio PID 0x101.

/// The clip's transport-stream bytes.
pub const BUILTIN_TS: &[u8] = include_bytes!("builtin.ts");
