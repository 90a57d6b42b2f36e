//! Shared by the B2/B3 benches (and B6, for medians and `start_sim`): a counting global
//! allocator, RSS and CPU time of the process, medians, and the simulated world they run
//! against.
#![allow(dead_code, unreachable_pub)]

use std::alloc::System;
use std::time::Duration;

use cap::Cap;
use protonn_sim::{SimConfig, SimHandle, Simulator};

/// Every allocation of the process goes through this counter: `allocated()` is the exact
/// number of live heap bytes (requested sizes, without the allocator's own overhead).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Live heap bytes of the whole process now.
pub fn allocated() -> usize {
    ALLOCATOR.allocated()
}

/// Resident set size of the process in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// User + system CPU time of the whole process so far (`/proc/self/stat`, 10 ms ticks).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

/// Discord allows 2,500 guilds per shard; the simulator enforces it.
pub const GUILDS_PER_SHARD: u32 = 2_500;

/// The world of B2/B3: `guilds` guilds of 20 text channels and 5 members (plus owner and
/// bot; the simulator makes 3 roles and no emojis per guild), every shard identifying in
/// the same window, no background traffic, and the simulator's own bookkeeping (ledger,
/// replay buffers) kept to one record so that it hardly grows while it serves the node.
pub fn world(guilds: u32) -> SimConfig {
    let shards = guilds.div_ceil(GUILDS_PER_SHARD);
    SimConfig {
        shards,
        max_concurrency: shards,
        guilds,
        channels_per_guild: 20,
        members_per_guild: 5,
        messages_per_sec: 0.0,
        ledger_capacity: 1,
        replay_events: 1,
        // 50 ms identify windows: several nodes may identify one after another in a run.
        time_scale: 0.01,
        ..SimConfig::default()
    }
}

pub async fn start_sim(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

pub fn kib(bytes: f64) -> String {
    format!("{:.2} KiB", bytes / 1024.0)
}
