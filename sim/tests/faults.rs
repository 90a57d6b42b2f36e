//! Faults against the real twilight 0.18 shard: what Discord can do to a
//! connection, and that twilight recovers as it should (resume without
//! loss, re-identify, or stop for good).

mod common;

use common::*;

use std::time::Duration;

use protonn_sim::{Fault, GatewayEventKind, GuildInfo, SimConfig, SimHandle};
use tokio::time::{Instant, timeout_at};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};

/// One shard, a fast clock (identify window 50 ms) so re-identifying costs
/// no real wait, and a short heartbeat so a silent connection is noticed
/// quickly.
fn config() -> SimConfig {
    SimConfig {
        shards: 1,
        guilds: 3,
        time_scale: 0.01,
        heartbeat_interval_ms: 300,
        ..SimConfig::default()
    }
}

fn shard(sim: &SimHandle, intents: Intents) -> Shard {
    let config = ConfigBuilder::new(TOKEN.to_owned(), intents)
        .proxy_url(sim.gateway_url())
        // Grants at once: the simulator's scaled window is the only limit.
        .queue(InMemoryQueue::new(
            0,
            1000,
            Duration::from_secs(86_400),
            1000,
        ))
        .build();
    Shard::with_config(ShardId::new(0, sim.config().shards), config)
}

fn messages_shard(sim: &SimHandle) -> Shard {
    shard(
        sim,
        Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT,
    )
}

async fn next(shard: &mut Shard, deadline: Instant) -> Option<Event> {
    match timeout_at(deadline, shard.next_event(EventTypeFlags::all())).await {
        Ok(Some(Ok(event))) => Some(event),
        Ok(Some(Err(e))) => panic!("gateway error: {e}"),
        Ok(None) => None,
        Err(_) => panic!("no event before the deadline"),
    }
}

async fn ready(shard: &mut Shard) {
    until(shard, |e| matches!(e, Event::Ready(_)).then_some(())).await;
}

fn guild(sim: &SimHandle) -> GuildInfo {
    sim.guilds().swap_remove(0)
}

fn send(sim: &SimHandle, guild: &GuildInfo, text: &str) -> u64 {
    sim.send_message(guild.id, guild.channel_ids[0], guild.owner_id, text)
        .expect("the shard has a session")
}

/// Reads messages until `expected` were all seen; every one exactly once
/// and in order, and what else was seen (Ready, Resumed) on the way.
async fn receive_all(shard: &mut Shard, expected: &[u64]) -> (bool, bool) {
    let mut received = Vec::new();
    let (mut readied, mut resumed) = (false, false);
    until(shard, |e| {
        match e {
            Event::MessageCreate(m) => received.push(m.id.get()),
            Event::Ready(_) => readied = true,
            Event::Resumed => resumed = true,
            _ => {}
        }
        (received.len() >= expected.len()).then_some(())
    })
    .await;
    assert_eq!(received, expected, "lost, duplicated or reordered");
    (readied, resumed)
}

fn count(sim: &SimHandle, kind: &GatewayEventKind) -> usize {
    sim.ledger()
        .gateway
        .iter()
        .filter(|g| &g.kind == kind)
        .count()
}

/// Sends a message before the fault and some after it (while the client
/// reconnects); the client must get all of them once, by resuming.
async fn resumes_without_loss(fault: Fault) {
    let sim = start(config()).await;
    let mut shard = messages_shard(&sim);
    ready(&mut shard).await;
    let guild = guild(&sim);
    let mut expected = vec![send(&sim, &guild, "before")];
    assert!(sim.inject(0, fault.clone()), "{fault:?}");
    expected.extend((0..5).map(|i| send(&sim, &guild, &format!("after {i}"))));
    let (readied, resumed) = receive_all(&mut shard, &expected).await;
    // RESUMED follows the replay; messages after it arrive too.
    let later = send(&sim, &guild, "later");
    let (readied_later, resumed_later) = receive_all(&mut shard, &[later]).await;
    assert!(
        (resumed || resumed_later) && !(readied || readied_later),
        "{fault:?}: resumed, not re-identified: {:?}",
        sim.ledger().gateway
    );
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes), (1, 1), "{fault:?}");
    assert_eq!(stats.faults, 1);
    assert_eq!(count(&sim, &GatewayEventKind::FaultInjected { fault }), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn resume_without_loss_after_close_4000() {
    resumes_without_loss(Fault::Close { code: 4000 }).await;
}

#[tokio::test]
async fn resume_without_loss_after_op_7_reconnect() {
    resumes_without_loss(Fault::Reconnect).await;
}

#[tokio::test]
async fn resume_after_op_9_true() {
    resumes_without_loss(Fault::InvalidSession { resumable: true }).await;
}

#[tokio::test]
async fn resume_after_a_tcp_drop_without_close_frame() {
    resumes_without_loss(Fault::Drop).await;
}

/// A half-open connection answers nothing, not even heartbeats; twilight
/// notices a heartbeat interval without any message, reconnects and
/// resumes, and the events sent into the silence are replayed.
#[tokio::test]
async fn twilight_resumes_after_a_half_open_connection() {
    resumes_without_loss(Fault::HalfOpen).await;
}

/// Op 9 `false` ends the session: twilight identifies again and messages
/// from then on arrive in the new session.
#[tokio::test]
async fn reidentify_after_op_9_false() {
    let sim = start(config()).await;
    let mut shard = messages_shard(&sim);
    ready(&mut shard).await;
    assert!(sim.inject(0, Fault::InvalidSession { resumable: false }));
    ready(&mut shard).await;
    let guild = guild(&sim);
    let id = send(&sim, &guild, "new session");
    receive_all(&mut shard, &[id]).await;
    let stats = sim.stats();
    assert_eq!((stats.identifies, stats.resumes), (2, 0));
    // twilight re-identifies at once (its queue here grants at once), so
    // IDENTIFYs inside the 50 ms window are refused with op 9 too.
    assert_eq!(
        count(&sim, &GatewayEventKind::InvalidSession { resumable: false }) as u64,
        1 + stats.identifies_rejected
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn close_4004_is_fatal() {
    let sim = start(config()).await;
    let mut shard = messages_shard(&sim);
    ready(&mut shard).await;
    assert!(sim.inject(0, Fault::Close { code: 4004 }));
    let code = until(&mut shard, |e| match e {
        Event::GatewayClose(frame) => Some(frame.as_ref().map(|f| f.code)),
        _ => None,
    })
    .await;
    assert_eq!(code, Some(4004));
    assert!(
        next(&mut shard, Instant::now() + WAIT).await.is_none(),
        "stopped"
    );
    assert!(!sim.inject(0, Fault::Reconnect), "nothing left to fault");
    assert_eq!(sim.stats().identifies, 1);
    sim.shutdown().await;
}

/// Added latency holds every frame back; messages still arrive, in order,
/// and none sooner than the latency.
#[tokio::test]
async fn added_latency_delays_but_keeps_order() {
    let sim = start(SimConfig {
        heartbeat_interval_ms: 41_250,
        ..config()
    })
    .await;
    let mut shard = messages_shard(&sim);
    ready(&mut shard).await;
    assert!(sim.inject(0, Fault::Latency { ms: 150 }));
    let guild = guild(&sim);
    let sent = Instant::now();
    let ids: Vec<u64> = (0..3)
        .map(|i| send(&sim, &guild, &format!("m{i}")))
        .collect();
    receive_all(&mut shard, &ids).await;
    assert!(sent.elapsed() >= Duration::from_millis(150));
    assert!(sim.inject(0, Fault::Latency { ms: 0 }));
    sim.shutdown().await;
}

/// Random faults from the seed, all of the resumable kinds, while messages
/// flow: twilight gets every message exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_lose_nothing() {
    let sim = start(SimConfig {
        random_faults: protonn_sim::RandomFaults {
            per_minute: 300.0,
            ..protonn_sim::RandomFaults::default()
        },
        ..config()
    })
    .await;
    let mut shard = messages_shard(&sim);
    ready(&mut shard).await;
    let guild = guild(&sim);
    let sender = {
        let sim = sim.clone();
        let guild = guild.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..60 {
                ids.push(send(&sim, &guild, &format!("m{i}")));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ids
        })
    };
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < 60 {
        if let Some(Event::MessageCreate(m)) = next(&mut shard, deadline).await {
            received.push(m.id.get());
        }
    }
    let sent = sender.await.unwrap();
    assert_eq!(received, sent, "lost, duplicated or reordered");
    let stats = sim.stats();
    assert!(stats.faults > 0, "some faults happened");
    assert_eq!(stats.identifies, 1, "every fault was survived by resuming");
    sim.shutdown().await;
}
