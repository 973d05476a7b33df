//! Runs the real `ec-node` binary as a user would, and gives each test a fresh output folder.

#![allow(dead_code)] // each test binary uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `ec-node ARGS` with piped stdout/stderr and no stdin, ready to spawn.
pub fn ec_node(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ec-node"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `ec-node ARGS` to the end.
pub fn run(args: &[&str]) -> Output {
    ec_node(args).output().expect("run ec-node")
}

/// Runs `ec-node ARGS` with `input` on its standard input.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = ec_node(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start ec-node");
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A command that stops reading early closes the pipe; that is its business.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait for ec-node")
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh (removed, not yet created) folder `GROUP/NAME` in the test's temporary space.
pub fn out_dir(group: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits for `child` to exit, at most `limit`: past that it is killed and the test fails with
/// its stderr.
pub fn wait_limited(child: Child, limit: Duration) -> Output {
    wait_measured(child, limit).0
}

/// As [`wait_limited`], also returning the CPU seconds (user + system) the child used, read
/// from `/proc` while it ran (the last reading before it exited).
pub fn wait_measured(mut child: Child, limit: Duration) -> (Output, f64) {
    let start = Instant::now();
    let mut cpu = 0.0;
    while child.try_wait().expect("wait").is_none() {
        cpu = cpu_seconds(child.id()).unwrap_or(cpu);
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), cpu)
}

/// User + system CPU seconds of a running process, from `/proc/PID/stat` (Linux's clock tick
/// of 100 Hz).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |at: usize| fields.get(at)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// The JSON ready line a node prints on stdout once it serves (read from the child's stdout,
/// which is taken).
pub fn ready_line(child: &mut Child) -> serde_json::Value {
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("ready line, got {line:?}"))
}
