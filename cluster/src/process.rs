//! The standard `process_*` metrics (CPU, memory, file descriptors, start time), read from
//! `/proc/self` at each scrape, so that dashboards and alerts use the names every Prometheus
//! client library exports. Off Linux there is no `/proc`: the gauges stay at zero.

use std::sync::OnceLock;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

pub(crate) const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub(crate) const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
pub(crate) const VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
pub(crate) const OPEN_FDS: &str = "process_open_fds";
pub(crate) const MAX_FDS: &str = "process_max_fds";
pub(crate) const START_TIME: &str = "process_start_time_seconds";

/// Clock ticks per second of `/proc/self/stat`'s times. `sysconf(_SC_CLK_TCK)` would need
/// `unsafe` (forbidden here); Linux has reported 100 to user space on every architecture
/// since 2.6 (`USER_HZ`), whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

pub(crate) fn describe() {
    describe_counter!(
        CPU_SECONDS,
        Unit::Seconds,
        "Total user and system CPU time spent in seconds."
    );
    describe_gauge!(
        RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory size in bytes."
    );
    describe_gauge!(VIRTUAL_MEMORY, Unit::Bytes, "Virtual memory size in bytes.");
    describe_gauge!(OPEN_FDS, Unit::Count, "Number of open file descriptors.");
    describe_gauge!(
        MAX_FDS,
        Unit::Count,
        "Maximum number of open file descriptors."
    );
    describe_gauge!(
        START_TIME,
        Unit::Seconds,
        "Start time of the process since unix epoch in seconds."
    );
    update();
}

/// Reads `/proc/self` into the gauges; called before each render of `/metrics`.
pub(crate) fn update() {
    let Some(sample) = Sample::read() else {
        return;
    };
    counter!(CPU_SECONDS).absolute(sample.cpu_ticks / TICKS_PER_SECOND as u64);
    gauge!(RESIDENT_MEMORY).set(sample.resident_bytes as f64);
    gauge!(VIRTUAL_MEMORY).set(sample.virtual_bytes as f64);
    gauge!(OPEN_FDS).set(sample.open_fds as f64);
    if let Some(max) = sample.max_fds {
        gauge!(MAX_FDS).set(max as f64);
    }
    if let Some(start) = start_time() {
        gauge!(START_TIME).set(start);
    }
}

/// What one look at `/proc/self` gives.
#[derive(Debug, PartialEq)]
struct Sample {
    cpu_ticks: u64,
    start_ticks: u64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: usize,
    max_fds: Option<u64>,
}

impl Sample {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        Self::parse(&stat, &status, &limits, open_fds)
    }

    fn parse(stat: &str, status: &str, limits: &str, open_fds: usize) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces and ')': the
        // numbered fields start after the last ')'. Field 3 is index 0 of `fields`.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|kib| kib * 1024)
        };
        let max_fds = limits
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
        Some(Self {
            // utime (14) + stime (15).
            cpu_ticks: field(14)? + field(15)?,
            start_ticks: field(22)?,
            resident_bytes: kib("VmRSS:").unwrap_or(0),
            virtual_bytes: kib("VmSize:").unwrap_or(0),
            open_fds,
            max_fds,
        })
    }
}

/// Seconds since the epoch when the process started: its start in ticks after boot, plus
/// the boot time of `/proc/stat`. Computed once; it does not change.
fn start_time() -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let sample = Sample::parse(&stat, "", "", 0)?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let boot: u64 = boot
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(boot as f64 + sample.start_ticks as f64 / TICKS_PER_SECOND)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed_even_with_a_command_name_holding_parentheses() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 50 0 0 20 0 9 0 12345 987654321 3000 18446744073709551615";
        let status = "Name:\tprotonn\nVmSize:\t  964504 kB\nVmRSS:\t   12000 kB\nThreads:\t9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(
            Sample::parse(stat, status, limits, 17),
            Some(Sample {
                cpu_ticks: 300,
                start_ticks: 12345,
                resident_bytes: 12000 * 1024,
                virtual_bytes: 964504 * 1024,
                open_fds: 17,
                max_fds: Some(1048576),
            })
        );
        assert_eq!(Sample::parse("garbage", status, limits, 1), None);
    }

    #[test]
    fn this_process_is_measured() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let sample = Sample::read().expect("/proc/self is readable on Linux");
        assert!(sample.resident_bytes > 0 && sample.virtual_bytes >= sample.resident_bytes);
        assert!(sample.open_fds > 0);
        let start = start_time().expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start} vs {now}"
        );
    }
}
