//! Cold start against the simulator's identify rules (B5's shape on a faster clock).
//! Its own test binary: cargo runs test binaries one at a time, so nothing else competes
//! for the two cores while the identify windows are measured.

mod common;

use std::sync::Arc;

use common::*;
use protonn_sim::{IdentifyOutcome, SimConfig};

/// Cold start of 64 shards against the simulator's identify rules on a clock faster than
/// Discord's by `1 / time_scale`. The simulator's grace for arrival jitter is a tenth of the
/// window, so the window must stay long enough for the jitter of an in-process simulator on
/// two loaded cores (the first round leaves in one burst with 64 handshakes): 1 s windows at
/// max_concurrency 16, 250 ms at max_concurrency 1 (one IDENTIFY at a time, 16 s in all).
async fn cold_start(max_concurrency: u32, time_scale: f64) {
    const SHARDS: u32 = 64;
    let sim = start_sim_with(SimConfig {
        shards: SHARDS,
        max_concurrency,
        guilds: 2 * SHARDS,
        time_scale,
        ..SimConfig::default()
    })
    .await;
    let started = tokio::time::Instant::now();
    let supervisor =
        start_supervisor(&sim, (0..SHARDS).collect(), Arc::new(Recorder::default())).await;
    wait_until("all 64 shards are ready", || all_ready(&supervisor)).await;
    let elapsed = started.elapsed();

    let identifies = sim.ledger().identifies;
    let accepted = identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted)
        .count();
    let rejected = identifies.len() - accepted;
    assert_eq!(rejected, 0, "no IDENTIFY broke Discord's rules");
    assert_eq!(accepted, SHARDS as usize, "exactly one IDENTIFY per shard");
    // Discord's floor: ceil(N / max_concurrency) windows (the last shard identifies at the
    // start of the last window). Polling adds at most 20 ms.
    let floor = window(&sim) * SHARDS.div_ceil(max_concurrency);
    let ratio = elapsed.as_secs_f64() / floor.as_secs_f64();
    println!(
        "cold start of {SHARDS} shards at max_concurrency {max_concurrency}: {elapsed:?}, {ratio:.3} of the floor"
    );
    assert!(
        ratio <= 1.02,
        "cold start took {ratio:.3} × ceil(N / max_concurrency) windows"
    );
    supervisor.stop(None);
    sim.shutdown().await;
}

/// One test, so that the two cold starts run one after the other and alone: the identify
/// rules leave little room for jitter, which parallel tests would add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_takes_ceil_n_over_max_concurrency_windows_and_n_identifies() {
    cold_start(16, 0.2).await;
    cold_start(1, 0.05).await;
}
