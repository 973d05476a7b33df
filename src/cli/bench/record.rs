//! `bench record`: `ec-node record` of a file to HLS as a process, next to `cp` of the same file
//! and `ffmpeg -c copy -f hls`, alternated.

use super::broadcast::input_or_generated;
use crate::cli::Failure;
use argh::FromArgs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `ec-node record` to HLS against `cp` and `ffmpeg -c copy -f hls`, as processes.
#[derive(FromArgs)]
#[argh(subcommand, name = "record")]
pub struct Args {
    /// transport stream to record (default: the generated broadcast-like file)
    #[argh(option)]
    input: Option<PathBuf>,
    /// alternated rounds; the median of each is reported (default 5)
    #[argh(option, default = "5")]
    rounds: u32,
}

/// Runs `bench record`.
pub fn run(args: Args) -> Result<(), Failure> {
    let input = input_or_generated(args.input)?;
    let size = std::fs::metadata(&input)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", input.display())))?
        .len();
    let exe = std::env::current_exe()
        .map_err(|e| Failure::other(format!("cannot find ec-node itself: {e}")))?;
    let work = std::env::temp_dir().join(format!("ec-node-bench-record-{}", std::process::id()));
    let input_arg = input.to_string_lossy().into_owned();
    let out = work.join("out");
    let out_arg = out.to_string_lossy().into_owned();
    let playlist = out.join("index.m3u8").to_string_lossy().into_owned();
    let copy_target = out.join("copy.ts").to_string_lossy().into_owned();
    let contenders: [(&str, Vec<String>); 3] = [
        ("cp", vec!["cp".into(), input_arg.clone(), copy_target]),
        (
            "ec-node record",
            vec![
                exe.to_string_lossy().into_owned(),
                "record".into(),
                "--input".into(),
                input_arg.clone(),
                "--out".into(),
                out_arg,
            ],
        ),
        (
            "ffmpeg -c copy -f hls",
            [
                "ffmpeg",
                "-v",
                "error",
                "-i",
                &input_arg,
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_list_size",
                "0",
                &playlist,
            ]
            .map(String::from)
            .to_vec(),
        ),
    ];
    println!(
        "input: {} ({:.1} MB), {} alternated rounds, median wall time",
        input.display(),
        size as f64 / 1e6,
        args.rounds.max(1)
    );
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); contenders.len()];
    for _ in 0..args.rounds.max(1) {
        for (i, (name, command)) in contenders.iter().enumerate() {
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)
                .map_err(|e| Failure::other(format!("cannot create {}: {e}", out.display())))?;
            // The previous contender's dirty pages are flushed first, so that no contender pays
            // for another's writeback.
            flush_page_cache();
            let start = Instant::now();
            let status = Command::new(&command[0])
                .args(&command[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .env("RUST_LOG", "warn")
                .status()
                .map_err(|e| Failure::other(format!("cannot run {name}: {e}")))?;
            times[i].push(start.elapsed());
            if !status.success() {
                return Err(Failure::other(format!("{name} failed ({status})")));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    for ((name, _), median) in contenders.iter().zip(&medians) {
        println!(
            "{name:<24} {:8.1} ms  {:6.0} MB/s  {:5.2}x cp",
            median.as_secs_f64() * 1e3,
            size as f64 / 1e6 / median.as_secs_f64(),
            median.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    println!("target: ec-node record within 1.5x cp");
    Ok(())
}

/// `sync(2)`: starts writeback of every dirty page and waits for it.
fn flush_page_cache() {
    // SAFETY: sync takes no arguments and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::sync()
    };
}
