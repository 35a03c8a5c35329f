//! CPU time and memory of a process, read from Linux's `/proc` (no libc calls).

use std::path::PathBuf;

/// Clock ticks per second of `/proc/<pid>/stat` times. `USER_HZ` is 100 on every Linux
/// architecture the emulator targets (the kernel fixes it for user space).
const USER_HZ: f64 = 100.0;

/// A point-in-time reading of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` when the process is gone or
/// this is not Linux.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(proc_dir(pid).join("stat")).ok()?;
    let status = std::fs::read_to_string(proc_dir(pid).join("status")).ok()?;
    Some(Sample {
        cpu_seconds: cpu_seconds_from_stat(&stat)?,
        rss_kib: status_kib(&status, "VmRSS:")?,
        hwm_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

/// utime + stime (fields 14 and 15) in seconds. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
pub fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ")" come field 3 (state) onwards: utime is field 14, i.e. the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_skip_odd_command_names() {
        let stat = "4242 (node (v20) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 11 0";
        assert_eq!(cpu_seconds_from_stat(stat), Some(3.0));
        assert_eq!(cpu_seconds_from_stat("garbage"), None);
    }

    #[test]
    fn status_lines_in_kib() {
        let status = "Name:\tm365-emulator\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id()).expect("/proc of this process");
        assert!(s.rss_kib > 0);
        assert!(s.hwm_kib >= s.rss_kib);
    }
}
