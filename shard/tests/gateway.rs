//! The shard layer against the simulator: real twilight shards, a recording sink.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_shard::{
    BotToken, EventSink, EventTypeFlags, GatewaySettings, IdentifyConfig, Intents, LocalScheduler,
    ShardPhase, ShardSupervisor, SupervisorArgs, SupervisorMsg,
};
use protonn_sim::{GatewayEventKind, SimConfig, SimHandle, Simulator};
use ractor::ActorRef;
use twilight_model::gateway::event::Event;

const DEADLINE: Duration = Duration::from_secs(30);

/// Message ids the sink received, with how often.
#[derive(Default)]
struct Recorder {
    messages: Mutex<HashMap<u64, u32>>,
}

impl EventSink for Recorder {
    fn deliver(
        &self,
        _shard: u32,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut messages = self.messages.lock().unwrap();
        for event in events {
            if let Event::MessageCreate(message) = event {
                *messages.entry(message.id.get()).or_default() += 1;
            }
        }
        Box::pin(std::future::ready(()))
    }
}

impl Recorder {
    fn counts(&self) -> HashMap<u64, u32> {
        self.messages.lock().unwrap().clone()
    }
}

async fn start_sim(shards: u32) -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = SimConfig {
        shards,
        max_concurrency: shards,
        guilds: 10 * shards,
        ..SimConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

async fn start_supervisor(
    sim: &SimHandle,
    shard_ids: Vec<u32>,
    sink: Arc<Recorder>,
) -> ActorRef<SupervisorMsg> {
    let shards = sim.config().shards;
    let identify =
        IdentifyConfig::discord(shards as u16, 1_000, 1_000, Duration::from_secs(86_400));
    ShardSupervisor::start(SupervisorArgs {
        settings: GatewaySettings {
            token: BotToken::new(sim.config().token.clone()),
            intents: Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT,
            event_types: EventTypeFlags::MESSAGE_CREATE,
            gateway_url: Some(sim.gateway_url()),
            shard_count: shards,
            shard_ids,
            identify_window: identify.window,
            buffer_capacity: 64,
        },
        scheduler: Arc::new(LocalScheduler::start(identify)),
        sink,
    })
    .await
    .unwrap()
}

async fn wait_until<F: FnMut() -> Fut, Fut: Future<Output = bool>>(what: &str, mut condition: F) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn phase(supervisor: &ActorRef<SupervisorMsg>, shard_id: u32) -> Option<ShardPhase> {
    let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
    statuses
        .into_iter()
        .find(|s| s.shard_id == shard_id)
        .map(|s| s.phase)
}

/// Sends `count` messages to the guilds of `shard`, returning their ids.
fn chat(sim: &SimHandle, shard: u32, count: usize) -> Vec<u64> {
    let guilds: Vec<_> = sim
        .guilds()
        .into_iter()
        .filter(|g| g.shard == shard)
        .collect();
    (0..count)
        .filter_map(|i| {
            let guild = &guilds[i % guilds.len()];
            sim.send_message(guild.id, guild.channel_ids[0], guild.member_ids[0], "hello")
        })
        .collect()
}

fn gateway_count(sim: &SimHandle, shard: u32, kind: fn(&GatewayEventKind) -> bool) -> usize {
    sim.ledger()
        .gateway
        .iter()
        .filter(|r| r.shard == Some(shard) && kind(&r.kind))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_session_resumed_elsewhere_loses_and_identifies_nothing() {
    let sim = start_sim(2).await;
    let old_sink = Arc::new(Recorder::default());
    let new_sink = Arc::new(Recorder::default());
    let old = start_supervisor(&sim, vec![0, 1], Arc::clone(&old_sink)).await;
    let new = start_supervisor(&sim, vec![], Arc::clone(&new_sink)).await;
    wait_until("shard 0 is ready on the old owner", || async {
        phase(&old, 0).await == Some(ShardPhase::Ready)
    })
    .await;

    let mut sent = chat(&sim, 0, 50);
    let session = ractor::call_t!(
        old,
        |reply| SupervisorMsg::Drain { shard_id: 0, reply },
        10_000
    )
    .unwrap()
    .expect("a ready shard exports its session");
    assert_eq!(session.shard_id, 0);
    assert_eq!(
        phase(&old, 0).await,
        None,
        "the old owner let go of the shard"
    );
    // Nobody owns shard 0 now: Discord keeps these for the resume.
    sent.extend(chat(&sim, 0, 50));

    ractor::call_t!(
        new,
        |reply| SupervisorMsg::Adopt {
            shard_id: 0,
            session: Some(session),
            reply
        },
        10_000
    )
    .unwrap()
    .unwrap();
    wait_until("shard 0 is ready on the new owner", || async {
        phase(&new, 0).await == Some(ShardPhase::Ready)
    })
    .await;
    sent.extend(chat(&sim, 0, 50));
    assert_eq!(sent.len(), 150);

    wait_until("every message reached one of the owners", || async {
        let (old, new) = (old_sink.counts(), new_sink.counts());
        sent.iter()
            .all(|id| old.contains_key(id) || new.contains_key(id))
    })
    .await;
    let (old_seen, new_seen) = (old_sink.counts(), new_sink.counts());
    for id in &sent {
        let times = old_seen.get(id).unwrap_or(&0) + new_seen.get(id).unwrap_or(&0);
        assert_eq!(
            times, 1,
            "message {id} handled {times} times across the handoff"
        );
    }
    assert!(!new_seen.is_empty(), "the new owner took over");
    let identifies = gateway_count(&sim, 0, |k| *k == GatewayEventKind::Identified);
    assert_eq!(identifies, 1, "the handoff spent no IDENTIFY");
    let resumes = gateway_count(&sim, 0, |k| matches!(k, GatewayEventKind::Resumed { .. }));
    assert_eq!(resumes, 1);

    // Shard 1 never noticed.
    assert_eq!(phase(&old, 1).await, Some(ShardPhase::Ready));
    old.stop(None);
    new.stop(None);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_a_shard_twice_or_draining_an_unknown_one_is_refused() {
    let sim = start_sim(2).await;
    let supervisor = start_supervisor(&sim, vec![0], Arc::new(Recorder::default())).await;

    let twice = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Adopt {
            shard_id: 0,
            session: None,
            reply
        },
        5_000
    )
    .unwrap();
    assert!(twice.unwrap_err().to_string().contains("already running"));
    let outside = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Adopt {
            shard_id: 7,
            session: None,
            reply
        },
        5_000
    )
    .unwrap();
    assert!(outside.is_err(), "shard 7 does not exist with 2 shards");
    let unknown = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Drain { shard_id: 1, reply },
        5_000
    )
    .unwrap();
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("not run by this node")
    );

    supervisor.stop(None);
    sim.shutdown().await;
}
