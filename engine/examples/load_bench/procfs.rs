//! What `/proc` says about another process and the machine: CPU time, resident memory, a UDP
//! socket's kernel drops, softirq time, load average. Without `unsafe` there is no `getrusage`
//! or `sysconf`, hence text files.

use std::time::Duration;

/// `sysconf(_SC_CLK_TCK)`, fixed at 100 by the Linux ABI for `/proc`.
const CLOCK_TICKS_PER_S: u64 = 100;

/// CPU time (user + system, all threads, exited ones included) of process `pid`: fields 14 and
/// 15 of `/proc/<pid>/stat`, in 10 ms clock ticks. Loopback delivery runs in the *sender's*
/// softirq and, with `CONFIG_IRQ_TIME_ACCOUNTING`, is charged to no process: see
/// [`machine_softirq`].
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After the ')' the first field is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / CLOCK_TICKS_PER_S,
    ))
}

/// Resident set size of process `pid` in bytes (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Datagrams the kernel dropped at the IPv4 UDP socket bound to `port` (its receive buffer
/// was full): the last column of its line in `/proc/net/udp`.
pub(crate) fn udp_socket_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let wanted = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        if !local.ends_with(&wanted) {
            return None;
        }
        line.split_whitespace().last()?.parse().ok()
    })
}

/// Time of all CPUs since boot by kind, from the `cpu` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MachineCpu {
    /// `user` + `nice`: programs, other jobs on the machine included.
    pub(crate) user: Duration,
    /// `nice` alone: niced programs (other jobs' builds run niced here).
    pub(crate) nice: Duration,
    pub(crate) system: Duration,
    pub(crate) idle: Duration,
    /// `softirq`: with `CONFIG_IRQ_TIME_ACCOUNTING`, loopback delivery of every process's
    /// datagrams, charged to no process.
    pub(crate) softirq: Duration,
    /// Time the hypervisor gave to others.
    pub(crate) steal: Duration,
}

impl MachineCpu {
    /// Reads `/proc/stat` (zeros if it cannot).
    pub(crate) fn read() -> Self {
        let ticks: Vec<u64> = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().find(|l| l.starts_with("cpu "))?.to_owned();
                Some(
                    line.split_whitespace()
                        .skip(1)
                        .filter_map(|f| f.parse().ok())
                        .collect(),
                )
            })
            .unwrap_or_default();
        let at = |i: usize| {
            Duration::from_millis(ticks.get(i).copied().unwrap_or(0) * 1000 / CLOCK_TICKS_PER_S)
        };
        // cpu user nice system idle iowait irq softirq steal ...
        Self {
            user: at(0) + at(1),
            nice: at(1),
            system: at(2),
            idle: at(3) + at(4),
            softirq: at(6),
            steal: at(7),
        }
    }
}

/// The 1-minute load average.
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `"<nproc> x <model name>"`.
pub(crate) fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{nproc} x {model}")
}
