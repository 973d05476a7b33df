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
pub fn wait_limited(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
