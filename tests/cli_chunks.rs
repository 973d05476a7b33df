//! `ec-node chunks` as a user runs it: a real process, real files and pipes, exit codes.

use ec_node_testkit::media;
use ec_node_testkit::process;

use process::{stderr, stdout};
use std::process::Output;

/// Runs `ec-node ARGS`, with `stdin` on its standard input if given.
fn run_with(args: &[&str], stdin: Option<&[u8]>) -> Output {
    match stdin {
        Some(input) => process::run_with_stdin(args, input),
        None => process::run(args),
    }
}

#[test]
fn builtin_clip_prints_one_line_per_chunk() {
    let out = run_with(&["chunks", "--clock", "1764072000"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<_> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(
        (3..=4).contains(&lines.len()),
        "the 12 s clip gives three or four 2 s chunks: {lines:?}"
    );
    for line in &lines {
        let fields: Vec<_> = line.split(' ').collect();
        assert_eq!(fields.len(), 6, "{line}");
        assert!(fields[0].parse::<u64>().is_ok() && fields[1].parse::<u64>().is_ok());
        assert_eq!(fields[2], "2000ms");
        assert_eq!(fields[4], "-");
        assert_eq!(fields[5].len(), 64);
        assert!(fields[5]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
    let summary = format!("chunks: {} from the built-in clip", lines.len());
    assert!(stderr(&out).contains(&summary), "{}", stderr(&out));
}

#[test]
fn json_from_a_file_equals_json_from_stdin() {
    let path = media::media_path("h264.ts", &media::H264_AAC.args());
    let path = path.to_str().unwrap();
    let file = run_with(
        &["chunks", "--input", path, "--json", "--clock=1764072000"],
        None,
    );
    assert!(file.status.success(), "{}", stderr(&file));
    let bytes = std::fs::read(path).unwrap();
    let piped = run_with(
        &["chunks", "--input", "-", "--json", "--clock", "1764072000"],
        Some(&bytes),
    );
    assert!(piped.status.success(), "{}", stderr(&piped));
    // The chunk lines, without the summary object that ends the output (it names the input).
    let chunk_lines = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let summary: serde_json::Value = serde_json::from_str(&lines.pop().unwrap()).unwrap();
        assert_eq!(summary["command"], "chunks", "{text}");
        lines
    };
    assert_eq!(chunk_lines(stdout(&file)), chunk_lines(stdout(&piped)));
    let mut count = 0;
    for line in chunk_lines(stdout(&file)) {
        let line = line.as_str();
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["index", "pts", "duration_ms", "size"] {
            assert!(v[key].is_u64(), "{key} in {line}");
        }
        for key in ["discontinuity", "damaged"] {
            assert_eq!(v[key], serde_json::Value::Bool(false), "{key} in {line}");
        }
        assert_eq!(v["blake3"].as_str().unwrap().len(), 64);
        count += 1;
    }
    assert!(count >= 7);
}

#[test]
fn damaged_input_is_read_to_its_end_and_reported() {
    let mut bytes = media::media("h264.ts", &media::H264_AAC.args());
    let middle = bytes.len() / 2;
    bytes.splice(middle..middle, std::iter::repeat_n(0x47, 3000));
    bytes.truncate(bytes.len() - 100);
    let out = run_with(
        &["chunks", "--input", "-", "--json", "--clock", "1764072000"],
        Some(&bytes),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let damaged = stdout(&out)
        .lines()
        .filter(|l| l.contains("\"damaged\":true"))
        .count();
    assert_eq!(damaged, 1, "{}", stdout(&out));
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert!(
        summary["chunker"]["skipped_bytes"].as_u64() > Some(0),
        "{summary}"
    );
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let missing = run_with(&["chunks", "--input", "/nonexistent/x.ts"], None);
    assert_eq!(missing.status.code(), Some(2));
    let err = stderr(&missing);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/x.ts"), "{err}");

    let bad = run_with(&["chunks", "--chunk-ms", "5"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--chunk-ms"));

    let unknown = run_with(&["chunks", "--bogus"], None);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn input_that_is_not_mpeg_ts_is_said_not_passed_as_empty() {
    // Bytes with no TS sync (a fixed pseudo-random pattern), from a file and from stdin.
    let mut state = 0x1234_5678u32;
    let junk: Vec<u8> = (0..200_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            // Never 0x47, so no sync can be found by chance.
            match (state >> 24) as u8 {
                0x47 => 0,
                b => b,
            }
        })
        .collect();
    let path = media::write_temp("not-ts.bin", &junk);
    for out in [
        run_with(&["chunks", "--input", path.to_str().unwrap()], None),
        run_with(&["chunks", "--input", "-"], Some(&junk)),
    ] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("no MPEG-TS found"),
            "{}",
            stderr(&out)
        );
    }
    let dir = process::out_dir("cli-chunks", "not-ts-record");
    let out = process::run(&[
        "record",
        "--input",
        path.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no MPEG-TS found"),
        "{}",
        stderr(&out)
    );
    // moq-publish says so too, once its input ended with nothing published; an HTML error
    // page, as a misconfigured URL gives, is the same.
    let page = media::write_temp(
        "error-page.html",
        b"<html><body>404 Not Found</body></html>\n",
    );
    for input in [&path, &page] {
        let out = process::run(&[
            "moq-publish",
            "--input",
            input.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--stream-id",
            "ec/stream/v1/test/not-ts",
            "--as-fast-as-possible",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("no MPEG-TS found"),
            "{}",
            stderr(&out)
        );
    }
    // A directory is named as one; moq-publish refuses it before its ready line.
    let folder = std::env::temp_dir();
    let out = run_with(&["chunks", "--input", folder.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    let out = process::run(&[
        "moq-publish",
        "--input",
        folder.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--stream-id",
        "ec/stream/v1/test/not-ts",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a ready line for a directory input");
}
