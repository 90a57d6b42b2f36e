//! B10 (routed part): a config change from a caller outside the cluster (as the dashboard
//! is) to the guild actor on the node running the guild's shard, applied (saved durably in
//! the coordinator's store, live, audited) and acknowledged, on a 3-node cluster.
//!
//! One coordinator and three nodes in this process, on loopback, against the simulator
//! (6 shards, 2 per node, 60 guilds, no traffic). `ClusterGuildCalls` routes each call by the
//! leader's shard map; calls go one after another, round robin over the guilds (so over the
//! three nodes), each a `ChangeConfig` on the version the previous one saved. Latency is the
//! caller's: from the call to its answer.
//!
//! ```sh
//! cargo bench -p protonn-benches --bench guild_calls -- [calls] [runs]
//! ```
//!
//! Defaults: 2,000 calls (after 100 warm-up calls), 3 runs.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonn_actors::{CallSource, Caller, GuildCall, GuildCalls, GuildRequest, GuildResponse};
use protonn_cluster::{
    ClusterClient, ClusterGuildCalls, ClusterMembership, ClusterToken, Coordinator,
    CoordinatorOptions, DiscordEndpoint, Node, NodeOptions,
};
use protonn_shard::{BotToken, ShardPhase};
use protonn_sim::{SimConfig, SimHandle};
use protonn_storage::GuildConfig;

use support::{load_average, machine, median, percentile, start_sim};

const TOKEN: &str = "bench-cluster";
/// Operator credentials, apart from the nodes' token.
const OPERATOR_TOKEN: &str = "operator-token";
const SHARDS: u32 = 6;
const GUILDS: u32 = 60;
const WARM_UP: usize = 100;

async fn start_cluster(sim: &SimHandle, dir: &std::path::Path) -> (Coordinator, Vec<Node>) {
    let coordinator = Coordinator::start(CoordinatorOptions {
        discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(sim.config().token.clone()),
        cluster_token: ClusterToken::new(TOKEN).unwrap(),
        operator_token: ClusterToken::new(OPERATOR_TOKEN).unwrap(),
        tls: None,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        name: "coordinator-0".to_owned(),
        advertise: None,
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.join("coordinator"),
        shards: None,
        heartbeat_interval: Duration::from_millis(200),
        failure_timeout: Duration::from_secs(3),
        min_nodes: 3,
        formation_grace: Duration::from_secs(5),
        max_moves: 4,
        lease_ttl: Duration::from_secs(1),
        fence: None,
        rest_global_per_sec: 50.0,
    })
    .await
    .expect("the coordinator starts");
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let node = Node::start(NodeOptions {
            discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
            token: BotToken::new(sim.config().token.clone()),
            shards: None,
            shard_ids: None,
            data_dir: dir.join(name),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            runtime: Default::default(),
            observer: None,
            cluster: Some(ClusterMembership {
                coordinators: vec![format!("http://{}", coordinator.addr())],
                token: ClusterToken::new(TOKEN).unwrap(),
                tls: None,
                name: name.to_owned(),
                guild_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                guild_advertise: None,
                drain_timeout: Duration::from_secs(60),
            }),
        })
        .await
        .expect("the node starts");
        nodes.push(node);
    }
    (coordinator, nodes)
}

/// Until every shard is READY on some node, two per node, and placed for good.
async fn wait_settled(client: &ClusterClient, nodes: &[Node]) {
    let started = Instant::now();
    loop {
        let placed = client.status().await.is_ok_and(|s| {
            s.shards.len() == SHARDS as usize
                && s.shards
                    .iter()
                    .all(|shard| shard.node_id != 0 && !shard.moving)
        });
        let mut ready = Vec::new();
        for node in nodes {
            let statuses = node.shard_statuses().await;
            ready.push(
                statuses
                    .iter()
                    .filter(|s| s.running && s.phase == ShardPhase::Ready)
                    .count(),
            );
        }
        if placed && ready.iter().all(|&n| n == 2) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the cluster never settled: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn change(guild_id: u64, version: u64, n: usize) -> GuildCall {
    GuildCall {
        guild_id,
        caller: Caller {
            user_id: Some(1),
            source: CallSource::Dashboard,
        },
        idempotency_key: Some(format!("bench-{guild_id}-{n}")),
        deadline: Duration::from_secs(10),
        request: GuildRequest::ChangeConfig {
            config: GuildConfig {
                prefix: ["!", "?", "$", "%"][n % 4].to_owned(),
                ..GuildConfig::default()
            },
            expected_version: version,
        },
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let calls: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    println!("B10 routed config change: {calls} calls per run, {runs} runs");
    println!("machine: {}; load {}", machine(), load_average());

    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 1..=runs {
        let sim = start_sim(SimConfig {
            shards: SHARDS,
            max_concurrency: SHARDS,
            guilds: GUILDS,
            messages_per_sec: 0.0,
            ledger_capacity: 1,
            ..SimConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, nodes) = start_cluster(&sim, dir.path()).await;
        let client = ClusterClient::new(
            vec![format!("http://{}", coordinator.addr())],
            ClusterToken::new(TOKEN).unwrap(),
        );
        wait_settled(&client, &nodes).await;
        let routed = Arc::new(ClusterGuildCalls::new(
            vec![format!("http://{}", coordinator.addr())],
            ClusterToken::new(TOKEN).unwrap(),
            None,
        ));
        let guilds: Vec<u64> = sim.guilds().iter().map(|g| g.id).collect();
        let mut versions: HashMap<u64, u64> = HashMap::new();
        let mut latencies = Vec::with_capacity(calls);
        let started = Instant::now();
        for n in 0..WARM_UP + calls {
            let guild = guilds[n % guilds.len()];
            let version = versions.get(&guild).copied().unwrap_or(0);
            let sent = Instant::now();
            let answer = routed.call(change(guild, version, n)).await;
            let took = sent.elapsed();
            match answer {
                Ok(GuildResponse::Config(saved)) => {
                    versions.insert(guild, saved.version);
                }
                other => panic!("call {n} to guild {guild} failed: {other:?}"),
            }
            if n >= WARM_UP {
                latencies.push(took.as_secs_f64() * 1e3);
            }
        }
        let elapsed = started.elapsed();
        let p50 = percentile(&mut latencies, 0.5);
        let p99 = percentile(&mut latencies, 0.99);
        let max = latencies.iter().copied().fold(0.0, f64::max);
        println!(
            "run {run}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, {:.0} calls/s one at a time",
            (WARM_UP + calls) as f64 / elapsed.as_secs_f64()
        );
        p50s.push(p50);
        p99s.push(p99);
        for node in nodes {
            node.shutdown().await;
        }
        drop(coordinator);
        sim.shutdown().await;
    }
    println!(
        "B10 routed config change, median of {runs} runs: p50 {:.2} ms, p99 {:.2} ms (target p99 ≤ 20 ms)",
        median(&mut p50s),
        median(&mut p99s)
    );
}
