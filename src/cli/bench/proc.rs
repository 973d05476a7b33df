//! Child processes for the benchmarks that run ec-node (or a third-party server) as a process:
//! spawning with a guard that kills on drop, reading a ready line, and the CPU time and memory
//! the kernel accounts to a process (`/proc`, Linux).

use crate::cli::Failure;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

/// A child killed on drop.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kid {
    /// Starts `cmd` with stdout piped (stderr as the command set it, else discarded).
    pub fn spawn(cmd: &mut Command) -> Result<Kid, Failure> {
        cmd.stdout(Stdio::piped())
            .spawn()
            .map(Kid)
            .map_err(|e| Failure::other(format!("start {cmd:?}: {e}")))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The first stdout line that satisfies `pred` (bounded by the child's own life); the rest
    /// of stdout is drained on a thread so the child never blocks on a full pipe.
    pub fn first_line(&mut self, pred: impl Fn(&str) -> bool) -> Result<String, Failure> {
        use std::io::BufRead;
        let out = self
            .0
            .stdout
            .take()
            .ok_or_else(|| Failure::other("no stdout"))?;
        let mut lines = std::io::BufReader::new(out).lines();
        let found = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|l| pred(l))
            .ok_or_else(|| Failure::other("a benchmark process exited before it was ready"))?;
        std::thread::spawn(move || lines.for_each(drop));
        Ok(found)
    }

    /// Sends SIGTERM (through `kill(1)`: no libc binding needed) and waits for the exit.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.0.wait().ok().and_then(|s| s.code())
    }
}

/// User + system CPU seconds of a process (from /proc; 0 where unavailable).
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// User + system CPU seconds of each thread of a process, by thread name (threads of one name
/// summed; empty where unavailable).
pub fn thread_cpu_seconds(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.filter_map(Result::ok) {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let seconds = stat_cpu_seconds(&dir.join("stat").to_string_lossy());
        *by_name.entry(name.trim().to_string()).or_insert(0.0) += seconds;
    }
    by_name
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // After the parenthesised command name: state, then numbered fields; utime and stime are
    // fields 14 and 15 of proc(5), i.e. the 12th and 13th tokens counting state as the 1st.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        tokens
            .get(i)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(11) + field(12);
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// Peak resident set size in KiB (VmHWM; 0 where unavailable).
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_number(pid, "VmHWM:")
}

/// Resident set size in KiB now (VmRSS; 0 where unavailable).
pub fn rss_kib(pid: u32) -> u64 {
    status_number(pid, "VmRSS:")
}

/// Threads of a process now (`Threads:` in /proc/PID/status; 0 where unavailable).
pub fn thread_count(pid: u32) -> u64 {
    status_number(pid, "Threads:")
}

/// Open file descriptors of a process now (entries of /proc/PID/fd; 0 where unavailable).
pub fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// The number after `field` in /proc/PID/status (a trailing `kB` dropped); 0 where unavailable.
fn status_number(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
