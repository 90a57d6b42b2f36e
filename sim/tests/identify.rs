//! Identify rules against the real twilight 0.18 clients: buckets, the 5 s
//! window (scaled) and the session start budget.

mod common;

use common::*;

use std::collections::BTreeMap;
use std::time::Duration;

use protonn_sim::{GatewayEventKind, IdentifyOutcome, SessionLimitAction, SimConfig, SimHandle};
use tokio::time::{Instant, timeout_at};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};

fn shard_with_queue(sim: &SimHandle, id: u32, queue: InMemoryQueue) -> Shard {
    let config = ConfigBuilder::new(TOKEN.to_owned(), Intents::GUILDS)
        .proxy_url(sim.gateway_url())
        .queue(queue)
        .build();
    Shard::with_config(ShardId::new(id, sim.config().shards), config)
}

/// Polls the shard for good, reporting its id on every READY.
async fn drive(mut shard: Shard, ready_tx: tokio::sync::mpsc::UnboundedSender<u32>) {
    let id = shard.id().number();
    while let Some(event) = shard.next_event(EventTypeFlags::all()).await {
        if let Ok(Event::Ready(_)) = event {
            let _ = ready_tx.send(id);
        }
    }
}

/// The bucket rule and twilight's stock queue sized as Discord says: 64
/// shards with max_concurrency 16 all get ready, none is refused, and no
/// bucket identifies twice within 5 s.
///
/// Paused tokio time: the simulator's clock and twilight's queue share the
/// virtual clock, so the 5 s windows are exact and the test takes no real
/// time.
#[tokio::test(start_paused = true)]
async fn in_memory_queue_gets_64_shards_ready_without_a_rejection() {
    let windows = in_memory_queue_64_shards().await;
    assert_eq!(windows, 4, "ceil(64 / 16) windows of 5 s");
}

/// The same on the real clock (about 20 s, so not in the default run):
/// `cargo test -p protonn-sim --test identify -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "real time, about 20 s"]
async fn in_memory_queue_on_the_real_clock() {
    let windows = in_memory_queue_64_shards().await;
    assert!(windows <= 5);
}

/// Runs 64 shards through twilight's stock queue; the number of 5 s windows
/// their IDENTIFYs spanned.
async fn in_memory_queue_64_shards() -> u64 {
    const SHARDS: u32 = 64;
    let sim = start(SimConfig {
        shards: SHARDS,
        max_concurrency: 16,
        guilds: 128,
        ..SimConfig::default()
    })
    .await;
    let queue = InMemoryQueue::new(16, 1000, Duration::from_secs(86_400), 1000);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let tasks: Vec<_> = (0..SHARDS)
        .map(|id| {
            tokio::spawn(drive(
                shard_with_queue(&sim, id, queue.clone()),
                ready_tx.clone(),
            ))
        })
        .collect();
    let deadline = started + Duration::from_secs(60);
    let mut ready = std::collections::BTreeSet::new();
    while ready.len() < SHARDS as usize {
        let id = timeout_at(deadline, ready_rx.recv())
            .await
            .expect("all shards ready within 60 s (virtual)")
            .unwrap();
        ready.insert(id);
    }
    let ledger = sim.ledger();
    let mut last_accept: BTreeMap<u32, u64> = BTreeMap::new();
    for i in &ledger.identifies {
        if i.outcome == IdentifyOutcome::Accepted {
            last_accept.insert(i.bucket, i.at_ms);
        } else {
            eprintln!(
                "rejected shard {} bucket {} at {} ms: {} ms after the bucket's last identify",
                i.shard,
                i.bucket,
                i.at_ms,
                i.at_ms - last_accept[&i.bucket]
            );
        }
    }
    assert_eq!(ledger.identifies.len(), SHARDS as usize);
    assert!(
        ledger
            .identifies
            .iter()
            .all(|i| i.outcome == IdentifyOutcome::Accepted),
        "twilight's queue broke the rule: {:?}",
        ledger.identifies
    );
    assert_eq!(sim.stats().identifies_rejected, 0);
    // Per bucket: shards in bucket order, at least 5 s apart.
    let mut by_bucket: BTreeMap<u32, Vec<(u64, u32)>> = BTreeMap::new();
    for identify in &ledger.identifies {
        assert_eq!(identify.bucket, identify.shard % 16);
        by_bucket
            .entry(identify.bucket)
            .or_default()
            .push((identify.at_ms, identify.shard));
    }
    for (bucket, identifies) in &by_bucket {
        assert_eq!(identifies.len(), 4, "bucket {bucket}");
        for pair in identifies.windows(2) {
            // Arrival times, so within the simulator's identify grace.
            assert!(
                pair[1].0 + 250 >= pair[0].0 + 5_000,
                "bucket {bucket}: {identifies:?}"
            );
        }
    }
    // How many 5 s windows twilight's queue used: the identify times fall
    // into clusters one window apart.
    let first = ledger.identifies.iter().map(|i| i.at_ms).min().unwrap();
    let last = ledger.identifies.iter().map(|i| i.at_ms).max().unwrap();
    let windows = (last - first + 250) / 5_000 + 1;
    let mut per_window: BTreeMap<u64, usize> = BTreeMap::new();
    for identify in &ledger.identifies {
        *per_window
            .entry((identify.at_ms - first + 250) / 5_000)
            .or_default() += 1;
    }
    eprintln!(
        "twilight InMemoryQueue(16): 64 shards identified in {windows} windows: {per_window:?}"
    );
    assert!(windows >= 4, "the rule allows no fewer than four windows");
    for task in tasks {
        task.abort();
    }
    sim.shutdown().await;
    windows
}

/// A queue that grants at once: a client ignoring the identify rules.
fn no_queue() -> InMemoryQueue {
    InMemoryQueue::new(0, 1000, Duration::from_secs(86_400), 1000)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two shards of one bucket identifying back to back: the second gets op 9
/// `false` until the (scaled) window has passed, then gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ignoring_the_bucket_rule_gets_invalid_session() {
    let sim = start(SimConfig {
        shards: 2,
        max_concurrency: 1,
        guilds: 4,
        // 5 s × 0.04: a 200 ms window (20 ms grace).
        time_scale: 0.04,
        ..SimConfig::default()
    })
    .await;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = (0..2)
        .map(|id| {
            tokio::spawn(drive(
                shard_with_queue(&sim, id, no_queue()),
                ready_tx.clone(),
            ))
        })
        .collect();
    let mut ready = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready.len() < 2 {
        ready.insert(
            timeout_at(deadline, ready_rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let ledger = sim.ledger();
    let rejected: Vec<_> = ledger
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::RateLimited)
        .collect();
    assert!(!rejected.is_empty(), "{:?}", ledger.identifies);
    assert_eq!(sim.stats().identifies_rejected, rejected.len() as u64);
    let op9 = ledger
        .gateway
        .iter()
        .filter(|g| g.kind == GatewayEventKind::InvalidSession { resumable: false })
        .count();
    assert_eq!(op9, rejected.len(), "every rejection is an op 9 false");
    let accepted: Vec<u64> = ledger
        .identifies
        .iter()
        .filter(|i| i.outcome == IdentifyOutcome::Accepted)
        .map(|i| i.at_ms)
        .collect();
    assert_eq!(accepted.len(), 2);
    assert!(accepted[1] + 20 >= accepted[0] + 200, "{accepted:?}");
    for task in tasks {
        task.abort();
    }
    sim.shutdown().await;
}

/// Discord: "Upon hitting this limit, all active sessions for the app will
/// be terminated, the bot token will be reset". The live shard and the
/// over-budget one both stop on 4004; `/gateway/bot` then says 0 remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_session_budget_resets_the_token() {
    let sim = start(SimConfig {
        shards: 3,
        max_concurrency: 3,
        guilds: 6,
        session_start_total: 2,
        ..SimConfig::default()
    })
    .await;
    let http = twilight_http::Client::builder()
        .token(TOKEN.to_owned())
        .proxy(sim.rest_proxy(), true)
        .ratelimiter(None)
        .build();
    let limit = http
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(limit.session_start_limit.remaining, 2);
    assert_eq!(limit.session_start_limit.max_concurrency, 3);

    let mut shard0 = shard_with_queue(&sim, 0, no_queue());
    let mut shard1 = shard_with_queue(&sim, 1, no_queue());
    for shard in [&mut shard0, &mut shard1] {
        loop {
            let event = shard
                .next_event(EventTypeFlags::all())
                .await
                .unwrap()
                .unwrap();
            if matches!(event, Event::Ready(_)) {
                break;
            }
        }
    }
    let mut shard2 = shard_with_queue(&sim, 2, no_queue());
    for shard in [&mut shard2, &mut shard0] {
        let code = loop {
            match shard.next_event(EventTypeFlags::all()).await {
                Some(Ok(Event::GatewayClose(frame))) => break frame.map(|f| f.code),
                Some(_) => {}
                None => panic!("stream ended before the close"),
            }
        };
        assert_eq!(code, Some(4004));
        assert!(
            shard.next_event(EventTypeFlags::all()).await.is_none(),
            "fatal"
        );
    }
    let ledger = sim.ledger();
    let outcomes: Vec<_> = ledger.identifies.iter().map(|i| i.outcome).collect();
    assert_eq!(
        outcomes,
        [
            IdentifyOutcome::Accepted,
            IdentifyOutcome::Accepted,
            IdentifyOutcome::SessionLimit
        ]
    );
    // The old token is gone for REST too.
    assert!(http.current_user().await.is_err());
    sim.set_token(TOKEN);
    let fresh = twilight_http::Client::builder()
        .token(TOKEN.to_owned())
        .proxy(sim.rest_proxy(), true)
        .build();
    let limit = fresh
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(limit.session_start_limit.remaining, 0);
    drop(shard1);
    sim.shutdown().await;
}

/// The gentler setting: the over-budget IDENTIFY gets op 9 `false` and
/// nothing else happens to the live sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_can_answer_with_invalid_session() {
    let sim = start(SimConfig {
        shards: 2,
        max_concurrency: 2,
        guilds: 4,
        session_start_total: 1,
        session_limit_action: SessionLimitAction::InvalidSession,
        ..SimConfig::default()
    })
    .await;
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let first = tokio::spawn(drive(
        shard_with_queue(&sim, 0, no_queue()),
        ready_tx.clone(),
    ));
    assert_eq!(ready_rx.recv().await, Some(0));
    let second = tokio::spawn(drive(shard_with_queue(&sim, 1, no_queue()), ready_tx));
    wait_for("an op 9 for the over-budget identify", || {
        sim.ledger()
            .identifies
            .iter()
            .any(|i| i.outcome == IdentifyOutcome::SessionLimit)
            && sim.stats().invalid_sessions > 0
    })
    .await;
    second.abort();
    assert_eq!(sim.stats().ready_shards, 1, "shard 0 is untouched");
    first.abort();
    sim.shutdown().await;
}
