//! B12: resharding a running cluster (issue #25), `from` → `to` shards.
//!
//! Separate processes, as in production: one `protonn coordinator` and `nodes` `protonn
//! node`s on loopback (the harness of `protonn_tests::processes`), against the simulator in
//! this process at `max_concurrency`. Once the old set runs, `protonn reshard --shards to`
//! (`ClusterClient::reshard`); the run ends when the record completes and the old sessions
//! closed. Figures:
//! - time to reshard: the call → the record completed, and its ratio to the least time the
//!   new set's IDENTIFYs take (`identify_floor_ms`: ceil(to / max_concurrency) windows of 5 s);
//! - the longest time any guild went without a handling shard: per old shard, its session's
//!   close → the later IDENTIFY of the two new shards taking its guilds (0 when both came
//!   first), from the simulator's ledger (target 0);
//! - IDENTIFYs of the new set (target `to`) and of the old set after the start (target 0).
//!
//! Needs the `protonn` binary of the same build next to the bench's own directory:
//!
//! ```sh
//! cargo build --release -p protonn-cluster
//! cargo bench -p protonn-benches --bench reshard -- [from] [to] [max_concurrency] [nodes]
//! ```
//!
//! Defaults: 64 → 128 shards at max_concurrency 16 on 4 nodes, 10 guilds a shard.

use std::time::Duration;

use protonn_sim::{GatewayEventKind, IdentifyOutcome, LedgerSnapshot, SimConfig};
use protonn_tests::processes::{CLUSTER_TOKEN, Cluster, DEADLINE};
use tokio::time::Instant;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let arg = |i: usize, default: u32| args.get(i).copied().unwrap_or(default);
    let (from, to, max_concurrency, nodes) = (arg(0, 64), arg(1, 128), arg(2, 16), arg(3, 4));
    assert!(
        to > from && to.is_multiple_of(from),
        "the new count is a multiple of the old"
    );
    let world = SimConfig {
        shards: from,
        max_concurrency,
        guilds: from * 10,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    };
    let mut cluster = Cluster::start(world, 1, nodes as usize).await;
    for node in 0..nodes {
        cluster
            .start_node(&format!("node-{node}"), Some(CLUSTER_TOKEN))
            .await;
    }
    cluster
        .settled("the old set runs on every node", |per_node| {
            per_node.len() == nodes as usize
        })
        .await;

    let asked = Instant::now();
    let started = cluster
        .operator
        .reshard(to)
        .await
        .expect("resharding refused");
    let deadline = asked + DEADLINE * 10;
    let done = loop {
        if let Ok(progress) = cluster.operator.reshard_progress().await
            && progress.phase != "running"
        {
            break progress;
        }
        assert!(Instant::now() < deadline, "the resharding did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = asked.elapsed();
    assert_eq!(done.phase, "completed", "{done:?}");

    // The old sessions close after the completion.
    let closed_at = |ledger: &LedgerSnapshot, shard: u32| {
        let mut last = None;
        for record in &ledger.gateway {
            if record.shards == Some(from) && record.shard == Some(shard) {
                last = Some((record.kind.clone(), record.at_ms));
            }
        }
        last.and_then(|(kind, at)| matches!(kind, GatewayEventKind::Disconnected).then_some(at))
    };
    let ledger = loop {
        let ledger = cluster.sim.ledger();
        if (0..from).all(|shard| closed_at(&ledger, shard).is_some()) {
            break ledger;
        }
        assert!(Instant::now() < deadline, "old sessions still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let accepted = |shards: u32| {
        ledger
            .identifies
            .iter()
            .filter(move |i| i.shards == shards && i.outcome == IdentifyOutcome::Accepted)
    };
    let asked_ms = cluster.sim_ms(asked);
    let mut longest_gap_ms = 0;
    for old in 0..from {
        let closed = closed_at(&ledger, old).expect("closed");
        for new in (old..to).step_by(from as usize) {
            let identified = accepted(to)
                .find(|i| i.shard == new)
                .map(|i| i.at_ms)
                .expect("every new shard identified");
            longest_gap_ms = longest_gap_ms.max(identified.saturating_sub(closed));
        }
    }
    let old_reidentified = accepted(from).filter(|i| i.at_ms >= asked_ms).count();

    println!(
        "B12 reshard {from} -> {to} shards at max_concurrency {max_concurrency} on {nodes} nodes: \
         {:.1} s, {:.3} x the identify floor ({:.1} s); longest time a guild had no handling \
         shard {longest_gap_ms} ms (target 0); {} IDENTIFYs of the new set (target {to}), {} of \
         the old set after the start (target 0); started from {} shards",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / done.identify_floor_ms.max(1) as f64,
        done.identify_floor_ms as f64 / 1000.0,
        accepted(to).count(),
        old_reidentified,
        started.from,
    );
}
