//! B9: the control plane. A `protonn coordinator` process leads a cluster of synthetic node
//! agents in this process (`protonn_cluster::loadgen`): they register, attach and heartbeat
//! every shard they hold at the production pace (500 ms), each shard's checkpoint moving
//! on, as real nodes do, but run no gateway connection. So the leader is loaded as by
//! 2,500 shards on 20 nodes while the machine stays free to measure it.
//!
//! Phases, on one cluster:
//! 1. formation: `nodes` agents join and the leader places every shard;
//! 2. steady: `window` seconds in which nothing changes; the leader's CPU (its process's
//!    user + system time, `/proc/<pid>/stat`) over the window, and heartbeat →
//!    acknowledgement (the control loop answers a heartbeat when it takes it from its
//!    inbox, so this is the loop's queueing delay);
//! 3. join: one more agent joins and the balancer moves shards to it, `max_moves` at a time;
//!    each move's decision time is the old owner's `Released` → the new owner's `Start` (the
//!    leader decides on that report), and the leader's CPU while it rebalances.
//!
//! Leader failover (0 shards disconnected, a new leader within the lease TTL + 1 s) is
//! measured by the multi-process cluster tests (`tests/tests/processes.rs`), not here.
//!
//! ```sh
//! cargo build --release -p protonn-cluster
//! cargo bench -p protonn-benches --bench control_plane -- [shards] [nodes] [window_secs]
//! ```
//!
//! Defaults: 2,500 shards, 20 nodes, a 30 s window.

#[path = "support/common.rs"]
mod support;

use std::time::{Duration, Instant};

use protonn_cluster::ClusterToken;
use protonn_cluster::loadgen::SyntheticNodes;
use protonn_sim::SimConfig;

use protonn_tests::processes::{CLUSTER_TOKEN, OPERATOR_TOKEN, Process, protonn_binary};
use support::{load_average, machine, percentile, process_cpu_time, start_sim};

const DEADLINE: Duration = Duration::from_secs(180);

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .map(|arg| arg.parse::<u64>().expect("arguments are numbers"));
    let shards = args.next().unwrap_or(2_500) as u32;
    let nodes = args.next().unwrap_or(20) as usize;
    let window = Duration::from_secs(args.next().unwrap_or(30));
    // Early, with a clear message when it is missing.
    protonn_binary();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(shards, nodes, window));
}

async fn run(shards: u32, nodes: usize, window: Duration) {
    println!(
        "B9 control plane: {shards} shards, {nodes} synthetic nodes; {}",
        machine()
    );
    let sim = start_sim(SimConfig {
        guilds: 10,
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[discord]\nsimulator = \"{}\"\nshards = {shards}\n\n[storage]\ndata_dir = {:?}\n\n\
         [ops]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\ncoordinators = []\nmin_nodes = {nodes}\n\
         formation_grace_ms = 60000\n",
        sim.rest_proxy(),
        dir.path().join("coordinator"),
    );
    let (leader, announced) = Process::start(
        dir.path(),
        "coordinator",
        &config,
        &["coordinator", "--listen", "127.0.0.1:0"],
        &["coordinator grpc "],
        &sim,
        &[
            ("PROTONN_CLUSTER_TOKEN", CLUSTER_TOKEN),
            ("PROTONN_OPERATOR_TOKEN", OPERATOR_TOKEN),
        ],
    )
    .await;
    let address = format!("http://{}", announced[0]);
    let mut agents = SyntheticNodes::new(address, ClusterToken::new(CLUSTER_TOKEN).unwrap());
    let stats = agents.stats().clone();

    // 1. Formation.
    let started = Instant::now();
    for i in 0..nodes {
        agents.add(format!("synthetic-{i:02}"));
    }
    wait_until("every shard runs", || {
        stats.running().values().sum::<usize>() == shards as usize
    })
    .await;
    println!(
        "formation: {shards} shards placed and running on {nodes} nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. Steady state, after a few heartbeats to let the first rates settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stats.take_acks();
    let cpu_before = process_cpu_time(leader.pid());
    let window_start = Instant::now();
    tokio::time::sleep(window).await;
    let cpu = process_cpu_time(leader.pid()) - cpu_before;
    let wall = window_start.elapsed();
    let mut acks = millis(stats.take_acks());
    assert!(!acks.is_empty(), "heartbeats were acknowledged");
    println!(
        "steady: leader CPU {:.2} % of a core over {:.0} s ({} heartbeats of {} nodes, {} shard \
         reports/s); heartbeat → ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        wall.as_secs_f64(),
        acks.len(),
        nodes,
        shards * 2,
        percentile(&mut acks, 0.5),
        percentile(&mut acks, 0.99),
        percentile(&mut acks, 1.0),
    );

    // 3. A node joins; the balancer moves shards to it.
    stats.take_handoffs();
    let cpu_before = process_cpu_time(leader.pid());
    let join_start = Instant::now();
    agents.add("synthetic-new".to_owned());
    let fair = shards as usize / (nodes + 1);
    // The balancer stops within a few shards of even, as its moves are weighed by load.
    let target = fair.saturating_sub(fair / 10).max(1);
    wait_until("the new node holds its share", || {
        stats
            .running()
            .get("synthetic-new")
            .is_some_and(|&held| held >= target)
    })
    .await;
    let took = join_start.elapsed();
    let cpu = process_cpu_time(leader.pid()) - cpu_before;
    let mut decisions = millis(stats.take_handoffs());
    let mut acks = millis(stats.take_acks());
    assert!(
        !decisions.is_empty() && !acks.is_empty(),
        "the join was measured"
    );
    println!(
        "join: {} shards moved to the new node in {:.1} s; leader CPU {:.2} % of a core; \
         released → started p50 {:.2} ms, p99 {:.2} ms ({} moves); heartbeat → ack p99 {:.2} ms",
        stats.running().get("synthetic-new").copied().unwrap_or(0),
        took.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / took.as_secs_f64(),
        percentile(&mut decisions, 0.5),
        percentile(&mut decisions, 0.99),
        decisions.len(),
        percentile(&mut acks, 0.99),
    );
    println!("load average after: {}", load_average());
    drop(agents);
    drop(leader);
}

fn millis(durations: Vec<Duration>) -> Vec<f64> {
    durations
        .into_iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
