//! The benchmarks' shared input, made with ffmpeg.

use crate::cli::Failure;
use std::path::PathBuf;
use std::process::Command;

/// The input a benchmark was given, else the generated broadcast.
pub fn input_or_generated(input: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match input {
        Some(path) => Ok(path),
        None => generate_broadcast(),
    }
}

/// The benchmarks' broadcast-like input (20 s, MPEG-2 720p + AC-3, CBR 19.39 Mb/s), generated
/// with ffmpeg into the system temp folder on first use.
fn generate_broadcast() -> Result<PathBuf, Failure> {
    let path = std::env::temp_dir().join("ec-node-bench-atsc-20s.ts");
    if path.exists() {
        return Ok(path);
    }
    eprintln!("generating {} with ffmpeg...", path.display());
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30000/1001",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "20",
        ])
        .args([
            "-c:v",
            "mpeg2video",
            "-b:v",
            "15M",
            "-maxrate",
            "15M",
            "-bufsize",
            "7M",
        ])
        .args(["-g", "15", "-bf", "2", "-c:a", "ac3", "-b:a", "384k"])
        .args(["-mpegts_pmt_start_pid", "0x30", "-mpegts_start_pid", "0x31"])
        .args(["-muxrate", "19392658", "-f", "mpegts"])
        .arg(&path)
        .status()
        .map_err(|e| {
            Failure::other(format!(
                "cannot run ffmpeg (install the Debian package ffmpeg): {e}"
            ))
        })?;
    if !status.success() {
        return Err(Failure::other(
            "ffmpeg failed to generate the benchmark input",
        ));
    }
    Ok(path)
}
