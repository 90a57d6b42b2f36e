//! `protonn demo` and `protonn sim`: the embedded simulator, with or without a node (and
//! the dashboard).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use protonn_shard::{BotToken, ShardPhase};
use protonn_sim::{SimConfig, SimHandle, Simulator};

use protonn_web::Secret;

use crate::{Config, Dashboard, DiscordEndpoint, Node, NodeOptions};

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Everything in one process: a simulated Discord and a node talking to it.
pub(crate) async fn demo(config: Config) -> anyhow::Result<()> {
    let sim = start_sim(config.sim.clone(), SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let sim_config = sim.config();
    println!(
        "protonn demo: simulated Discord at {} ({} shards, {} guilds, {} messages/s)",
        sim.addr(),
        sim_config.shards,
        sim_config.guilds,
        sim_config.messages_per_sec
    );
    let node = Node::start(NodeOptions {
        discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(sim_config.token.clone()),
        rest_global_per_sec: 50.0,
        shards: None,
        shard_ids: None,
        data_dir: config.storage.data_dir.clone(),
        ops_listen: config.ops.listen,
        runtime: demo_runtime(&config, sim.skus()),
        observer: None,
        cluster: None,
    })
    .await
    .context("starting the node")?;
    let ops = node.ops_addr();
    println!("ops: http://{ops}/metrics  http://{ops}/healthz  http://{ops}/readyz");
    let dashboard = Dashboard::start(
        &config,
        &node,
        format!("http://{}", sim.addr()),
        sim.application_id(),
        Secret::new(protonn_sim::OAUTH_CLIENT_SECRET),
    )
    .await
    .context("starting the dashboard")?;
    println!(
        "dashboard: {}  (log in as any simulated user: the simulator plays Discord's login page)",
        dashboard.url()
    );
    println!("Ctrl-C stops the demo.");

    tokio::select! {
        () = report_progress(&node, &sim) => {}
        () = crate::cli::shutdown_signal() => {}
    }
    println!("stopping…");
    dashboard.shutdown().await;
    node.shutdown().await;
    sim.shutdown().await;
    Ok(())
}

/// The node's runtime; unless the config maps SKUs, the simulator's app subscriptions grant
/// premium, so buying one in the simulator shows on the dashboard.
fn demo_runtime(config: &Config, skus: [u64; 2]) -> protonn_actors::RuntimeConfig {
    let mut runtime = config.runtime();
    if runtime.premium_skus.is_empty() {
        runtime.premium_skus =
            std::sync::Arc::new(skus.map(|sku| (sku, protonn_storage::Plan::Premium)).into());
    }
    runtime
}

/// The simulator alone, for `protonn run` or another bot to connect to.
pub(crate) async fn sim_only(config: SimConfig, listen: SocketAddr) -> anyhow::Result<()> {
    let sim = start_sim(config, listen).await?;
    println!(
        "simulated Discord: gateway {}  REST proxy {}  ledger http://{}/sim/ledger",
        sim.gateway_url(),
        sim.rest_proxy(),
        sim.addr()
    );
    println!("Ctrl-C stops it.");
    crate::cli::shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

async fn start_sim(config: SimConfig, listen: SocketAddr) -> anyhow::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the simulator to {listen}"))?;
    Simulator::start(config, listener)
        .await
        .context("starting the simulator")
}

/// One line every few seconds: shards ready, guild actors, events per second, replies.
async fn report_progress(node: &Node, sim: &SimHandle) {
    let started = Instant::now();
    let mut all_ready_reported = false;
    let mut last_dispatches = 0;
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let shards = node.shard_statuses().await;
        let ready = shards
            .iter()
            .filter(|s| s.phase == ShardPhase::Ready)
            .count();
        let actors = node.router_stats().await.active_guilds;
        let stats = sim.stats();
        let rate = (stats.dispatches - last_dispatches) as f64 / PROGRESS_EVERY.as_secs_f64();
        last_dispatches = stats.dispatches;
        println!(
            "[{:>5.0}s] shards ready {ready}/{} · guild actors {actors} · events {} ({rate:.0}/s) · replies {}",
            started.elapsed().as_secs_f64(),
            shards.len(),
            stats.dispatches,
            stats.replies,
        );
        if !all_ready_reported && ready == shards.len() && !shards.is_empty() {
            all_ready_reported = true;
            println!(
                "all {} shards ready after {:.1}s",
                shards.len(),
                started.elapsed().as_secs_f64()
            );
        }
        for status in &shards {
            if let ShardPhase::Fatal { code, reason } = &status.phase {
                println!("shard {} stopped: close {code}: {reason}", status.shard_id);
            }
        }
    }
}
