//! Shared by the shard layer's simulator tests: a recording sink, a simulator, a supervisor.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_shard::{
    BotToken, EventSink, EventTypeFlags, ExportedSession, GatewaySettings, GuildLists,
    IdentifyConfig, Intents, LocalScheduler, ShardPhase, ShardSupervisor, SupervisorArgs,
    SupervisorMsg,
};
use protonn_sim::{GatewayEventKind, SimConfig, SimHandle, Simulator};
use ractor::ActorRef;
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// Message ids the sink received, with how often.
#[derive(Default)]
pub(crate) struct Recorder {
    messages: Mutex<HashMap<u64, u32>>,
}

impl EventSink for Recorder {
    fn deliver(
        &self,
        _shard: ShardId,
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
    pub(crate) fn counts(&self) -> HashMap<u64, u32> {
        self.messages.lock().unwrap().clone()
    }
}

pub(crate) async fn start_sim(shards: u32) -> SimHandle {
    start_sim_with(SimConfig {
        shards,
        max_concurrency: shards,
        guilds: 10 * shards,
        ..SimConfig::default()
    })
    .await
}

pub(crate) async fn start_sim_with(config: SimConfig) -> SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

/// The identify window of a simulator (5 s at Discord, scaled in tests).
pub(crate) fn window(sim: &SimHandle) -> Duration {
    Duration::from_secs(5).mul_f64(sim.config().time_scale)
}

pub(crate) async fn start_supervisor<S: EventSink>(
    sim: &SimHandle,
    shard_ids: Vec<u32>,
    sink: Arc<S>,
) -> ActorRef<SupervisorMsg> {
    let config = sim.config();
    let shards = config.shards;
    let mut identify = IdentifyConfig::discord(
        config.max_concurrency as u16,
        1_000,
        1_000,
        Duration::from_secs(86_400),
    );
    identify.window = window(sim);
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
            guild_lists: GuildLists::ALL,
        },
        scheduler: Arc::new(LocalScheduler::start(identify)),
        sink,
    })
    .await
    .unwrap()
}

pub(crate) async fn wait_until<F: FnMut() -> Fut, Fut: Future<Output = bool>>(
    what: &str,
    mut condition: F,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) async fn phase(
    supervisor: &ActorRef<SupervisorMsg>,
    shard_id: u32,
) -> Option<ShardPhase> {
    let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
    statuses
        .into_iter()
        .find(|s| s.shard_id == shard_id)
        .map(|s| s.phase)
}

pub(crate) async fn checkpoint(
    supervisor: &ActorRef<SupervisorMsg>,
    shard_id: u32,
) -> Option<ExportedSession> {
    let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
    statuses
        .into_iter()
        .find(|s| s.shard_id == shard_id)
        .and_then(|s| s.checkpoint)
}

/// Sends `count` messages to the guilds of `shard`, returning their ids.
pub(crate) fn chat(sim: &SimHandle, shard: u32, count: usize) -> Vec<u64> {
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

pub(crate) fn gateway_count(
    sim: &SimHandle,
    shard: u32,
    kind: fn(&GatewayEventKind) -> bool,
) -> usize {
    sim.ledger()
        .gateway
        .iter()
        .filter(|r| r.shard == Some(shard) && kind(&r.kind))
        .count()
}

pub(crate) async fn all_ready(supervisor: &ActorRef<SupervisorMsg>) -> bool {
    let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
    statuses.iter().all(|s| s.phase == ShardPhase::Ready)
}
