//! B5: cold start. Time until all N shards are READY, divided by the true floor, against the
//! simulator enforcing the identify rules on the real clock (5 s windows). The floor is
//! (ceil(N / max_concurrency) − 1) windows, the last window's IDENTIFYs going out at its start,
//! plus one IDENTIFY→READY: the median cold start of a single shard, measured first by the same
//! code. Also: op 9 rejections and identifies used.
//!
//! `cargo bench -p protonn-benches --bench cold_start -- [shards] [max_concurrency] [runs]`
//! (defaults 64 16 3). Prints one line per run and the median.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonn_shard::{
    BotToken, EventSink, EventTypeFlags, GatewaySettings, GuildLists, IdentifyConfig, Intents,
    LocalScheduler, ShardPhase, ShardSupervisor, SupervisorArgs, SupervisorMsg,
};
use protonn_sim::{IdentifyOutcome, SimConfig, Simulator};
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

const WINDOW: Duration = Duration::from_secs(5);

/// Takes events and drops them: B5 measures the gateway side only.
struct Discard;

impl EventSink for Discard {
    fn deliver(&self, _: ShardId, _: Vec<Event>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

struct Run {
    elapsed: Duration,
    identifies: usize,
    rejected: usize,
}

async fn run(shards: u32, max_concurrency: u32) -> Run {
    let config = SimConfig {
        shards,
        max_concurrency,
        guilds: shards * 20,
        ..SimConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(config, listener).await.unwrap();
    let identify = IdentifyConfig::discord(
        max_concurrency as u16,
        1_000,
        1_000,
        Duration::from_secs(86_400),
    );
    let started = Instant::now();
    let supervisor = ShardSupervisor::start(SupervisorArgs {
        settings: GatewaySettings {
            token: BotToken::new(sim.config().token.clone()),
            intents: Intents::GUILDS | Intents::GUILD_MESSAGES,
            event_types: EventTypeFlags::GUILD_CREATE,
            gateway_url: Some(sim.gateway_url()),
            shard_count: shards,
            shard_ids: (0..shards).collect(),
            identify_window: identify.window,
            buffer_capacity: 4_096,
            guild_lists: GuildLists::ALL,
        },
        scheduler: Arc::new(LocalScheduler::start(identify)),
        sink: Arc::new(Discard),
    })
    .await
    .unwrap();
    loop {
        let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
        if statuses.iter().all(|s| s.phase == ShardPhase::Ready) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let identifies = sim.ledger().identifies;
    let rejected = identifies
        .iter()
        .filter(|i| i.outcome != IdentifyOutcome::Accepted)
        .count();
    supervisor.stop(None);
    sim.shutdown().await;
    Run {
        elapsed,
        identifies: identifies.len() - rejected,
        rejected,
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // cargo bench passes `--bench`; the numbers are ours.
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let shards = args.first().copied().unwrap_or(64);
    let max_concurrency = args.get(1).copied().unwrap_or(16);
    let runs = args.get(2).copied().unwrap_or(3);
    let mut alone = Vec::new();
    for _ in 0..runs {
        alone.push(run(1, max_concurrency).await.elapsed);
    }
    alone.sort();
    let one_shard = alone[alone.len() / 2];
    let floor = WINDOW * (shards.div_ceil(max_concurrency) - 1) + one_shard;
    println!(
        "B5 cold start: {shards} shards, max_concurrency {max_concurrency}, floor {floor:?} \
         (one shard alone: {one_shard:?})"
    );
    let mut ratios = Vec::new();
    for index in 1..=runs {
        let run = run(shards, max_concurrency).await;
        let ratio = run.elapsed.as_secs_f64() / floor.as_secs_f64();
        println!(
            "run {index}: {:.3} s, ratio {ratio:.4}, identifies {}, op 9 rejections {}",
            run.elapsed.as_secs_f64(),
            run.identifies,
            run.rejected
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio {:.4} (target <= 1.02)",
        ratios[ratios.len() / 2]
    );
}
