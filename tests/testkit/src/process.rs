//! Runs the real `ec-node` binary (and third-party tools) as a user would: one-shot runs, and
//! long-running children ([`Proc`]) that are killed when their guard drops and whose ready line
//! is read under a timeout; every wait here is bounded, so a hung child fails its test instead
//! of hanging the suite. Also where tests put their files ([`out_dir`], [`work_dir`]).
//!
//! The binary is the `ec-node` that cargo built next to the running test (or harness), in the
//! same profile folder; `EC_NODE_BIN` names another one.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any single step (a ready line, an expected output line, a stop) may take before
/// the test fails: generous, since it bounds only a wait, on a loaded machine.
pub const STEP: Duration = Duration::from_secs(60);

/// How long a one-shot run ([`run`], [`run_with_stdin`]) may take before it is taken for hung
/// and the test fails: only a bound on the wait (a soak runs minutes).
pub const RUN: Duration = Duration::from_secs(600);

/// The profile folder cargo builds into (`target/debug`): the running executable's folder, or
/// its parent for test executables, which cargo puts in `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable's path");
    let dir = exe.parent().expect("the executable's folder");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("the profile folder").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// The `ec-node` binary under test.
pub fn ec_node_path() -> PathBuf {
    if let Some(path) = std::env::var_os("EC_NODE_BIN") {
        return PathBuf::from(path);
    }
    let path = profile_dir().join(format!("ec-node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo test builds it for the tests; for a harness, \
         run `cargo build` or set EC_NODE_BIN)",
        path.display()
    );
    path
}

/// The folder for files tests make (cargo's `target/tmp`, kept after a run for a look).
pub fn tmp_root() -> PathBuf {
    let profile = profile_dir();
    profile.parent().expect("the target folder").join("tmp")
}

/// A fresh folder `GROUP/NAME` under [`tmp_root`]: whatever an earlier run left there is
/// removed; the folder itself is not created (the command under test makes it).
pub fn out_dir(group: &str, name: &str) -> PathBuf {
    let dir = tmp_root().join(group).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// As [`out_dir`], created and empty.
pub fn work_dir(group: &str, name: &str) -> PathBuf {
    let dir = out_dir(group, name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// `ec-node ARGS` with no stdin and piped stdout/stderr, ready to run or spawn.
pub fn ec_node(args: &[&str]) -> Command {
    let mut cmd = Command::new(ec_node_path());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `ec-node ARGS` to the end (at most [`RUN`]).
pub fn run(args: &[&str]) -> Output {
    run_bounded("ec-node", &mut ec_node(args), RUN)
}

/// Runs `ec-node ARGS` with `input` on its standard input (at most [`RUN`]).
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = ec_node(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start ec-node");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // Written from a thread, so a child that fills its output pipes first cannot deadlock us;
    // a command that stops reading early closes the pipe, which is its business.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    wait_limited(child, RUN)
}

/// Runs `cmd` (stdout and stderr piped) to the end, killing it past `limit`.
pub fn run_bounded(name: &str, cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    wait_limited(child, limit)
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The summary a command printed with `--json`: the last line of `text` (its standard
/// output), which must be a JSON object.
pub fn last_object(text: &str) -> serde_json::Value {
    let line = text.lines().last().unwrap_or_else(|| panic!("no output"));
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
    assert!(value.is_object(), "not an object: {line}");
    value
}

/// The `--json` summary of a run that has ended: the last line of its standard output.
pub fn summary_object(out: &Output) -> serde_json::Value {
    last_object(&stdout(out))
}

/// Waits for `child` to exit, at most `limit`: past that it is killed and the test fails with
/// its stderr. Its piped outputs are read meanwhile, so a chatty child never blocks on a full
/// pipe.
pub fn wait_limited(child: Child, limit: Duration) -> Output {
    wait_measured(child, limit).0
}

/// As [`wait_limited`], also returning the CPU seconds (user + system) the child used, read
/// from `/proc` while it ran (the last reading before it exited).
pub fn wait_measured(child: Child, limit: Duration) -> (Output, f64) {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let start = Instant::now();
    let mut cpu = 0.0;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(out) => return (out.expect("wait for the child"), cpu),
            Err(RecvTimeoutError::Timeout) => {
                cpu = crate::procfs::cpu_seconds(pid).unwrap_or(cpu);
                if start.elapsed() > limit {
                    // Not reaped until the waiting thread returns, so the pid is still this
                    // child's.
                    signal(pid, "KILL");
                    let out = rx.recv().expect("the waiting thread").expect("wait");
                    panic!("still running after {limit:?}: {}", stderr(&out));
                }
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the waiting thread panicked"),
        }
    }
}

/// Sends signal `name` (`TERM`, `KILL`) to `pid` with kill(1): no libc binding needed.
pub fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running child process, killed (and reaped) when the guard drops. One of its outputs (stdout
/// unless started with [`Proc::spawn_stderr`]) is read line by line on a thread, so reading it
/// can be bounded; the other goes where the command set it.
pub struct Proc {
    pub child: Child,
    pub name: String,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Whether the output read line by line is stderr (else stdout).
    reads_stderr: bool,
}

impl Proc {
    /// Starts `cmd`, reading its stdout.
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        Proc::start(name, cmd, false)
    }

    /// Starts `cmd`, reading its stderr (for tools that log their readiness there).
    pub fn spawn_stderr(name: &str, cmd: &mut Command) -> Proc {
        Proc::start(name, cmd, true)
    }

    /// `ec-node ARGS` (stderr piped), reading its stdout.
    pub fn ec_node(name: &str, args: &[&str]) -> Proc {
        Proc::spawn(name, &mut ec_node(args))
    }

    fn start(name: &str, cmd: &mut Command, stderr: bool) -> Proc {
        if stderr {
            cmd.stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pipe: Box<dyn Read + Send> = match stderr {
            true => Box::new(child.stderr.take().expect("piped stderr")),
            false => Box::new(child.stdout.take().expect("piped stdout")),
        };
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            name: name.to_string(),
            lines,
            reader: Some(reader),
            reads_stderr: stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// The next line that satisfies `pred`, within [`STEP`]; the test fails (with what the child
    /// said on a piped stderr) when none comes or the child exits first.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_within(STEP, pred)
    }

    /// As [`Proc::wait_line`], within `limit`.
    pub fn wait_line_within(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("none within {limit:?}"),
                        RecvTimeoutError::Disconnected => "it closed its output".to_string(),
                    };
                    let _ = self.child.kill();
                    let status = self.child.wait().ok();
                    let mut err = String::new();
                    if let Some(mut pipe) = self.child.stderr.take() {
                        let _ = pipe.read_to_string(&mut err);
                    }
                    panic!(
                        "{}: no expected output line ({why}; exit {status:?}): {err}",
                        self.name
                    );
                }
            }
        }
    }

    /// The JSON ready line a node prints on stdout once it serves (the first line that is a JSON
    /// object), within [`STEP`].
    pub fn ready(&mut self) -> serde_json::Value {
        let line = self.wait_line(|l| l.starts_with('{'));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: ready line {line:?}: {e}", self.name))
    }

    /// Sends SIGTERM and waits (at most [`STEP`]) for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), "TERM");
        self.wait_exit(STEP)
    }

    /// SIGTERM, then its output: the status, the lines of the read output not taken yet, and
    /// the other output if it was piped.
    pub fn stop(mut self) -> Output {
        signal(self.pid(), "TERM");
        self.finish(STEP)
    }

    /// Waits (at most `limit`, else the test fails) for it to exit by itself; then its output as
    /// [`Proc::stop`] gives it.
    pub fn finish(&mut self, limit: Duration) -> Output {
        // The other output is drained meanwhile, so the child never blocks on a full pipe.
        let other: Option<Box<dyn Read + Send>> =
            match (self.child.stdout.take(), self.child.stderr.take()) {
                (Some(out), _) => Some(Box::new(out)),
                (_, Some(err)) => Some(Box::new(err)),
                _ => None,
            };
        let drained = other.map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        });
        let status = self.wait_exit(limit);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut read = Vec::new();
        for line in self.lines.try_iter() {
            read.extend_from_slice(line.as_bytes());
            read.push(b'\n');
        }
        let other = drained.map_or_else(Vec::new, |t| t.join().unwrap_or_default());
        let (stdout, stderr) = match self.reads_stderr {
            true => (other, read),
            false => (read, other),
        };
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits for the exit, at most `limit`; past that it is killed and the test fails.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 50 ms until it holds, at most `limit`; past that the test fails saying
/// `what` did not happen.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).stdin(Stdio::null());
        cmd
    }

    #[test]
    fn the_ready_line_is_read_and_the_child_killed_on_drop() {
        let mut proc = Proc::spawn(
            "sh",
            &mut sh(r#"echo starting; echo '{"a": 1}'; sleep 600"#),
        );
        assert_eq!(proc.ready()["a"], 1);
        let pid = proc.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(proc);
        // Killed and reaped: the pid is gone (not a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    #[should_panic(expected = "no expected output line (none within")]
    fn a_child_that_never_says_it_is_ready_fails_within_the_limit() {
        let mut proc = Proc::spawn("silent", &mut sh("sleep 600"));
        proc.wait_line_within(Duration::from_millis(300), |_| true);
    }

    #[test]
    #[should_panic(expected = "it closed its output")]
    fn a_child_that_exits_before_its_ready_line_fails_at_once() {
        Proc::spawn("quitter", &mut sh("echo not json; exit 3")).ready();
    }

    #[test]
    fn a_stopped_child_gives_its_status_and_the_lines_not_taken() {
        let mut cmd = sh("echo one; echo two >&2; echo three; exec sleep 600");
        cmd.stderr(Stdio::piped());
        let mut proc = Proc::spawn("sh", &mut cmd);
        assert_eq!(proc.wait_line(|l| l == "one"), "one");
        proc.wait_line_within(STEP, |l| l == "three");
        let out = proc.stop();
        assert!(!out.status.success());
        assert_eq!(stderr(&out), "two\n");
        // A process that exits by itself.
        let mut quick = Proc::spawn("sh", &mut sh("echo a; echo b"));
        assert_eq!(quick.wait_line(|_| true), "a");
        assert_eq!(stdout(&quick.finish(STEP)), "b\n");
    }

    #[test]
    #[should_panic(expected = "still running after")]
    fn a_bounded_wait_kills_a_hung_child() {
        wait_limited(sh("sleep 600").spawn().unwrap(), Duration::from_millis(300));
    }

    #[test]
    fn work_folders_are_fresh() {
        let dir = work_dir("testkit", "fresh");
        std::fs::write(dir.join("old"), b"x").unwrap();
        let again = work_dir("testkit", "fresh");
        assert_eq!(dir, again);
        assert_eq!(std::fs::read_dir(&again).unwrap().count(), 0);
        assert!(!out_dir("testkit", "fresh").exists());
    }
}
