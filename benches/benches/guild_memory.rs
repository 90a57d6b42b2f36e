//! B2: resident bytes per idle guild (the node cache, and the node's share around it: an
//! idle guild has no actor) at N guilds, counted exactly by a counting global allocator.
//!
//! The simulator is a `protonn sim` process of the same build (B1's guilds: 20 channels, 15
//! roles, 10 emojis), so this process's RSS is the node's alone; the figure is the growth of
//! live heap bytes across starting a node and absorbing every GUILD_CREATE (every guild in
//! the node cache, and no guild actor), after the process settles. Then, as the breakdown
//! and the peer, a bare shard supervisor whose sink feeds two twilight caches: ours (GUILD |
//! ROLE) and twilight's default (every resource), each measured by the bytes freed when it
//! is dropped. (A guild with work has an actor besides: B3 measures its bytes.)
//!
//! The allocator is the `protonn` binary's (jemalloc), or the system's or mimalloc with the
//! bench crate's feature (`--features system-allocator`): the live bytes are the same, the
//! RSS is not.
//!
//! `cargo bench -p protonn-benches --bench guild_memory -- [guilds]` (default 10000); needs
//! the `protonn` binary of the same profile (`cargo build --release -p protonn-cluster`).

#[path = "support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use protonn_actors::RuntimeConfig;
use protonn_shard::{
    BotToken, EventSink, GatewaySettings, IdentifyConfig, LocalScheduler, ShardPhase,
    ShardSupervisor, SupervisorArgs, SupervisorMsg,
};
use twilight_cache_inmemory::{DefaultInMemoryCache, ResourceType};
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

use support::{SimProcess, allocated, kib, peak_rss, rss};

const SETTLE: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(600);

struct Measured {
    bytes: isize,
    rss: isize,
    absorbed_in: Duration,
}

async fn run_node(sim: &SimProcess, guilds: usize) -> Measured {
    let data = tempfile::tempdir().unwrap();
    let (before, rss_before) = (allocated(), rss());
    let started = Instant::now();
    let node = support::start_node(sim, data.path(), RuntimeConfig::default(), None).await;
    loop {
        let stats = node.router_stats().await;
        if stats.cached_guilds >= guilds {
            assert_eq!(stats.active_guilds, 0, "an actor for a guild without work");
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "node never absorbed: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let absorbed_in = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let stats = node.router_stats().await;
    let measured = Measured {
        bytes: allocated() as isize - before as isize,
        rss: rss() as isize - rss_before as isize,
        absorbed_in,
    };
    println!(
        "  router {stats:?}; node heap {} B, RSS growth {} B (peak RSS of the process {} B), absorbed in {:.2} s",
        measured.bytes,
        measured.rss,
        peak_rss(),
        absorbed_in.as_secs_f64()
    );
    node.shutdown().await;
    drop(data);
    tokio::time::sleep(Duration::from_millis(300)).await;
    measured
}

/// Feeds every event into our cache and twilight's default one, counting GUILD_CREATEs.
struct CacheSink {
    ours: Arc<DefaultInMemoryCache>,
    full: Arc<DefaultInMemoryCache>,
    guilds: AtomicUsize,
}

impl EventSink for CacheSink {
    fn deliver(
        &self,
        _: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        for event in &events {
            self.ours.update(event);
            self.full.update(event);
            if matches!(event, Event::GuildCreate(_)) {
                self.guilds.fetch_add(1, Ordering::Relaxed);
            }
        }
        Box::pin(std::future::ready(()))
    }
}

struct Caches {
    ours: isize,
    full: isize,
    leftover: isize,
}

async fn run_caches(sim: &SimProcess, shards: u32, guilds: usize) -> Caches {
    let before = allocated();
    let sink = Arc::new(CacheSink {
        ours: Arc::new(
            DefaultInMemoryCache::builder()
                .resource_types(protonn_actors::cached_resources())
                .build(),
        ),
        full: Arc::new(
            DefaultInMemoryCache::builder()
                .resource_types(ResourceType::all())
                .build(),
        ),
        guilds: AtomicUsize::new(0),
    });
    let identify =
        IdentifyConfig::discord(shards as u16, 1_000, 1_000, Duration::from_secs(86_400));
    let supervisor = ShardSupervisor::start(SupervisorArgs {
        settings: GatewaySettings {
            token: BotToken::new(support::SIM_TOKEN),
            intents: protonn_actors::intents(),
            event_types: protonn_actors::event_types(),
            gateway_url: Some(sim.gateway_url.clone()),
            shard_count: shards,
            shard_ids: (0..shards).collect(),
            identify_window: Duration::from_millis(50),
            buffer_capacity: 4_096,
            // As a node reads them for its cache.
            guild_lists: protonn_actors::guild_lists_for(protonn_actors::cached_resources()),
        },
        scheduler: Arc::new(LocalScheduler::start(IdentifyConfig {
            window: Duration::from_millis(50),
            ..identify
        })),
        sink: Arc::clone(&sink) as Arc<dyn EventSink>,
    })
    .await
    .unwrap();
    let started = Instant::now();
    while sink.guilds.load(Ordering::Relaxed) < guilds {
        assert!(started.elapsed() < DEADLINE, "caches never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
    assert!(statuses.iter().all(|s| s.phase == ShardPhase::Ready));
    let stats = sink.ours.stats();
    println!(
        "  our cache: {} guilds, {} roles, {} channels",
        stats.guilds(),
        stats.roles(),
        stats.channels()
    );
    let stats = sink.full.stats();
    println!(
        "  twilight default cache: {} guilds, {} roles, {} channels, {} members, {} users",
        stats.guilds(),
        stats.roles(),
        stats.channels(),
        stats.members(),
        stats.users()
    );
    // The supervisor's shards hold the sink: stop them before dropping the caches.
    supervisor
        .stop_children_and_wait(None, Some(Duration::from_secs(10)))
        .await;
    let _ = supervisor
        .stop_and_wait(None, Some(Duration::from_secs(10)))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let full = Arc::clone(&sink.full);
    let ours = Arc::clone(&sink.ours);
    drop(sink);
    let at = allocated();
    drop(full);
    let without_full = allocated();
    drop(ours);
    let without_caches = allocated();
    Caches {
        full: at as isize - without_full as isize,
        ours: without_full as isize - without_caches as isize,
        leftover: without_caches as isize - before as isize,
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let guilds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<u32>().ok())
        .unwrap_or(10_000);
    let n = guilds as f64;
    let shards = guilds.div_ceil(support::GUILDS_PER_SHARD);
    println!("B2 guild memory: {guilds} guilds on {shards} shards, B1's guilds");
    println!("allocator: {}", std::any::type_name::<support::Allocator>());
    let binary = protonn_tests::processes::protonn_binary();
    let sim = SimProcess::start(&binary, &support::scenario(shards, guilds, 0.0, 1)).await;

    println!("node (no guild has work, so none has an actor):");
    let idle = run_node(&sim, guilds as usize).await;
    println!("bare shards feeding our cache and twilight's default cache:");
    let caches = run_caches(&sim, shards, guilds as usize).await;
    drop(sim);

    let per = |bytes: isize| bytes as f64 / n;
    println!("--- B2 at {guilds} guilds (bytes per guild; target <= 16 KiB) ---");
    println!(
        "idle guilds (no actor):  node heap {}/guild (ratio to 16 KiB {:.3}), RSS growth {}/guild (ratio {:.3})",
        kib(per(idle.bytes)),
        per(idle.bytes) / 16_384.0,
        kib(per(idle.rss)),
        per(idle.rss) / 16_384.0
    );
    println!("our cache (GUILD | ROLE):  {}", kib(per(caches.ours)));
    println!(
        "rest of the node (per-guild share of shards, router, storage, ...): {}",
        kib(per(idle.bytes - caches.ours))
    );
    println!(
        "peer: twilight default cache (all resources): {}",
        kib(per(caches.full))
    );
    println!(
        "left in this process after the bare shards stopped: {}",
        kib(per(caches.leftover))
    );
    println!("absorbed in {:.2} s", idle.absorbed_in.as_secs_f64());
}
