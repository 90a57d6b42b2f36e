//! B3: guild actor activation and rehydrate cost, and the bot's CPU to absorb one shard's
//! 2,500-guild READY burst.
//!
//! - activation: a `GuildRouter` (real `Services`: embedded store, empty cache) gets one
//!   batch of 2,500 MESSAGE_CREATEs for 2,500 guilds it has no actor for (work: each starts
//!   one); time of the batch ÷ 2,500, and live heap growth ÷ 2,500 once they are handled and
//!   idle. Beside it, in the same run: a batch of 2,500 ROLE_DELETEs (cache-only: no actor)
//!   and a bare ractor actor (unit state, no handler) spawned 2,500 times in a loop.
//! - rehydrate: a MESSAGE_CREATE to a guild whose actor was passivated: time from handing
//!   the event to the router until the new actor has handled it (config loaded from the
//!   embedded store, prefix checked). Beside it: the same to a resident actor.
//! - READY burst: a `protonn sim` process with one shard of 2,500 guilds of B1's shape (20
//!   channels, 15 roles, 10 emojis) and a node in this process; from the shard turning
//!   READY until the router has taken in the 2,500th GUILD_CREATE (cache updated, no actor
//!   started). The CPU time of this process over that span is the bot's alone: the
//!   simulator serialises and sends in its own process.
//!
//! `cargo bench -p protonn-benches --bench guild_spawn -- [runs]` (default 5); the burst
//! needs the `protonn` binary of the same profile (`cargo build --release -p
//! protonn-cluster`, which `bash benches/run` does).

#[path = "support/router.rs"]
mod router;
#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protonn_actors::{EventObserver, GuildRouter, HandledEvent, RouterMsg, RuntimeConfig};
use protonn_shard::ShardPhase;
use protonn_storage::{EmbeddedStore, GuildConfig, GuildConfigRepo};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::RoleDelete;
use twilight_model::id::Id;

use router::{GUILD_BASE, active, message, resident_router, route, router_services};
use support::{SimProcess, allocated, cpu_time, median, percentile};

const BURST: usize = 2_500;

struct Bare;

impl Actor for Bare {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// Sends each handled message id, with when it was handled.
struct Timestamps(mpsc::UnboundedSender<(u64, Instant)>);

impl EventObserver for Timestamps {
    fn handled(&self, _: u64, _: u32, event: HandledEvent) {
        if let HandledEvent::Message(id) = event {
            let _ = self.0.send((id, Instant::now()));
        }
    }
}

fn role_delete(guild: u64) -> Event {
    Event::RoleDelete(RoleDelete {
        guild_id: Id::new(guild),
        role_id: Id::new(guild + 1),
    })
}

/// (µs per spawn, bytes per live actor) of a bare ractor actor.
async fn bare_round() -> (f64, f64) {
    let before = allocated();
    let started = Instant::now();
    let mut actors = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        actors.push(Actor::spawn(None, Bare, ()).await.unwrap().0);
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The Vec of refs is the bench's, not the actors': 8 bytes each. Signed: what the rest
    // of the process frees meanwhile (the router's polls of storage) may outweigh a round.
    let refs = actors.capacity() * size_of::<ActorRef<()>>();
    let bytes = allocated() as f64 - before as f64 - refs as f64;
    for actor in &actors {
        actor.stop(None);
    }
    drop(actors);
    tokio::time::sleep(Duration::from_millis(200)).await;
    (
        elapsed.as_secs_f64() * 1e6 / BURST as f64,
        bytes / BURST as f64,
    )
}

/// (µs per activation, bytes per live guild actor once idle) through the router, and µs
/// per cache-only event (no actor).
async fn router_round(router: &ActorRef<RouterMsg>, round: u64) -> (f64, f64, f64) {
    let first = GUILD_BASE + round * 1_000_000;
    let cache_only: Vec<Event> = (0..BURST as u64)
        .map(|i| role_delete(first + i * 8))
        .collect();
    let resident = active(router).await;
    let started = Instant::now();
    route(router, cache_only).await;
    let skipped = started.elapsed();
    assert_eq!(
        active(router).await,
        resident,
        "a cache-only event started an actor"
    );

    // Counted from before the batch is made: the events an actor keeps count as its own,
    // and the ones handled and freed cancel out.
    let before = allocated();
    let work: Vec<Event> = (0..BURST as u64)
        .map(|i| message(first + i * 8, first + i))
        .collect();
    let started = Instant::now();
    route(router, work).await;
    let elapsed = started.elapsed();
    while active(router).await < resident + BURST {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = allocated() as f64 - before as f64;
    let per = |time: Duration| time.as_secs_f64() * 1e6 / BURST as f64;
    (per(elapsed), bytes / BURST as f64, per(skipped))
}

async fn spawn_costs(runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let router = resident_router(dir.path()).await;
    // Warm-up: the first spawns pay for lazily built statics (metrics, tokio internals).
    let _ = bare_round().await;
    let _ = router_round(&router, 0).await;
    let (mut bare_us, mut bare_bytes, mut guild_us, mut guild_bytes, mut skip_us) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let (us, bytes) = bare_round().await;
        bare_us.push(us);
        bare_bytes.push(bytes);
        let (us, bytes, skip) = router_round(&router, run as u64).await;
        guild_us.push(us);
        guild_bytes.push(bytes);
        skip_us.push(skip);
        println!(
            "run {run}: bare ractor {:.2} µs {:.0} B; guild actor activated via router {us:.2} µs {bytes:.0} B; cache-only event {skip:.3} µs",
            bare_us[run - 1],
            bare_bytes[run - 1]
        );
    }
    println!(
        "activation, median of {runs} rounds of {BURST}: guild actor {:.2} µs (ratio to 2 µs {:.2}), {:.0} B/actor with its config loaded; cache-only event {:.3} µs, no actor; bare ractor {:.2} µs, {:.0} B",
        median(&mut guild_us),
        median(&mut guild_us) / 2.0,
        median(&mut guild_bytes),
        median(&mut skip_us),
        median(&mut bare_us),
        median(&mut bare_bytes)
    );
    router.stop_children_and_wait(None, None).await;
    let _ = router.stop_and_wait(None, None).await;
}

async fn rehydrate_costs(guilds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let ids: Vec<u64> = (0..guilds as u64).map(|i| GUILD_BASE + i * 8).collect();
    for &guild in &ids {
        store.save(guild, 0, &GuildConfig::default()).await.unwrap();
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Passivated by the sweep every 50 ms: idle 50 ms, or at once, since their guilds are
    // not in the node cache (it starts empty). A sweep between a cold sample and its warm
    // one (microseconds apart) would make the warm one a rehydrate too: rare, not excluded.
    let runtime = RuntimeConfig {
        idle_after: Duration::from_millis(50),
        sweep_every: Duration::from_millis(50),
        ..RuntimeConfig::default()
    };
    let observer = Arc::new(Timestamps(tx)) as Arc<dyn EventObserver>;
    let router = GuildRouter::start(router_services(store, runtime, Some(observer)))
        .await
        .unwrap();
    let mut next_id = 1_000u64;
    // Spawn each once and let every one passivate.
    route(
        &router,
        ids.iter()
            .map(|&g| {
                next_id += 1;
                message(g, next_id)
            })
            .collect(),
    )
    .await;
    for _ in 0..guilds {
        rx.recv().await.unwrap();
    }
    while active(&router).await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for &guild in &ids {
        for sample in [&mut cold, &mut warm] {
            next_id += 1;
            let event = message(guild, next_id);
            let sent = Instant::now();
            route(&router, vec![event]).await;
            let handled = loop {
                let (id, at) = rx.recv().await.unwrap();
                if id == next_id {
                    break at;
                }
            };
            sample.push((handled - sent).as_secs_f64() * 1e6);
        }
    }
    println!(
        "rehydrate (event to a passivated guild until handled, config read from redb), {guilds} guilds: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        percentile(&mut cold, 0.5),
        percentile(&mut cold, 0.9),
        percentile(&mut cold, 0.99)
    );
    println!(
        "same event to the resident actor right after: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
        percentile(&mut warm, 0.5),
        percentile(&mut warm, 0.9),
        percentile(&mut warm, 0.99)
    );
    router.stop_children_and_wait(None, None).await;
    let _ = router.stop_and_wait(None, None).await;
}

/// Counts the GUILD_CREATEs the router took in and notes when the last expected one was.
struct Burst {
    handled: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

impl EventObserver for Burst {
    fn handled(&self, _: u64, _: u32, event: HandledEvent) {
        if event == HandledEvent::GuildCreate
            && self.handled.fetch_add(1, Ordering::AcqRel) + 1 == BURST
        {
            *self.last.lock().unwrap() = Some(Instant::now());
        }
    }
}

/// (seconds from READY until the 2,500th GUILD_CREATE taken in, CPU seconds of the bot).
async fn burst_run(binary: &Path) -> (f64, f64) {
    let scenario = support::scenario(1, BURST as u32, 0.0, 1);
    let sim = SimProcess::start(binary, &scenario).await;
    let data = tempfile::tempdir().unwrap();
    let burst = Arc::new(Burst {
        handled: AtomicUsize::new(0),
        last: Mutex::new(None),
    });
    let observer = Arc::clone(&burst) as Arc<dyn EventObserver>;
    let node =
        support::start_node(&sim, data.path(), RuntimeConfig::default(), Some(observer)).await;
    let (ready, cpu_ready) = loop {
        let statuses = node.shard_statuses().await;
        if !statuses.is_empty() && statuses.iter().all(|s| s.phase == ShardPhase::Ready) {
            break (Instant::now(), cpu_time());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let at_ready = burst.handled.load(Ordering::Acquire);
    let last = loop {
        if let Some(last) = *burst.last.lock().unwrap() {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let cpu = cpu_time() - cpu_ready;
    let stats = node.router_stats().await;
    assert_eq!(stats.cached_guilds, BURST, "{stats:?}");
    assert_eq!(stats.active_guilds, 0, "an actor for a guild without work");
    if at_ready > 0 {
        println!("  ({at_ready} GUILD_CREATEs were taken in before READY was seen)");
    }
    node.shutdown().await;
    drop(sim);
    (
        last.saturating_duration_since(ready).as_secs_f64(),
        cpu.as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runs = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(5);
    println!("B3 guild spawn / rehydrate / READY burst, {runs} runs");
    spawn_costs(runs).await;
    rehydrate_costs(1_000).await;
    let binary = protonn_tests::processes::protonn_binary();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let (w, c) = burst_run(&binary).await;
        println!(
            "burst run {run}: READY → {BURST} GUILD_CREATEs taken in (no actor) in {w:.3} s, bot CPU {c:.3} s"
        );
        wall.push(w);
        cpu.push(c);
    }
    println!(
        "READY burst, median of {runs}: {:.3} s wall, {:.3} CPU-s of the bot (ratio to 0.1 s {:.2}; the simulator is another process)",
        median(&mut wall),
        median(&mut cpu),
        median(&mut cpu) / 0.1
    );
}
