//! What the kernel accounts to a process, from `/proc` (Linux): CPU time (whole and per
//! thread), resident memory, threads and open file descriptors. Each reading is `None` where
//! the process is gone or the file is unreadable; callers decide whether that fails.

use std::collections::BTreeMap;
use std::path::Path;

/// USER_HZ, the unit of the CPU times in `/proc/PID/stat`: 100 on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat")))
}

/// User + system CPU seconds of each thread of a process, by thread name (threads of one name
/// summed; empty when the process is gone).
pub fn thread_cpu_seconds(pid: u32) -> BTreeMap<String, f64> {
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.filter_map(Result::ok) {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let seconds = stat_cpu_seconds(&dir.join("stat")).unwrap_or(0.0);
        *by_name.entry(name.trim().to_string()).or_insert(0.0) += seconds;
    }
    by_name
}

fn stat_cpu_seconds(path: &Path) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // After the parenthesised command name (which may hold spaces): state, then numbered
    // fields; utime and stime are fields 14 and 15 of proc(5), the 12th and 13th tokens here.
    let tokens: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| tokens.get(i)?.parse::<u64>().ok();
    Some((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

/// Resident set size now, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_number(pid, "VmRSS:")
}

/// Peak resident set size, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_number(pid, "VmHWM:")
}

/// Threads of a process now (`Threads:`).
pub fn thread_count(pid: u32) -> Option<u64> {
    status_number(pid, "Threads:")
}

/// Open file descriptors of a process now (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// The number after `field` in `/proc/PID/status` (a trailing `kB` dropped).
fn status_number(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(peak_rss_kib(pid).unwrap() >= rss_kib(pid).unwrap());
        assert!(thread_count(pid).unwrap() >= 1);
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(!thread_cpu_seconds(pid).is_empty());
    }

    #[test]
    fn a_process_that_is_gone_reads_as_none() {
        // Pid 0 is the kernel's idle task: never a directory under /proc.
        assert_eq!(
            (cpu_seconds(0), rss_kib(0), open_fds(0)),
            (None, None, None)
        );
        assert!(thread_cpu_seconds(0).is_empty());
    }
}
