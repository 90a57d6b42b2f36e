//! A `GuildRouter` with real services and nothing to reach (B3 and the hot-path benches):
//! synthetic guild events and a way to route them and wait.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protonn_actors::rest::{GlobalLine, GuardLimits, InvalidRequestGuard, Rest, Transport};
use protonn_actors::{
    CommandUsage, DeadLetters, Delivery, EventObserver, GuildRouter, Replies, RouterMsg,
    RuntimeConfig, Services, ShardCount,
};
use protonn_shard::BotToken;
use protonn_storage::EmbeddedStore;
use ractor::ActorRef;
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::channel::Message;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::incoming::MessageCreate;

/// First guild id of the synthetic guilds (a 2020 snowflake).
pub const GUILD_BASE: u64 = 661_000_000_000_000_000;

/// Services for a router: an empty cache keeping what a node's does (by default the guilds
/// and their roles: a message is not cached) and a REST client that is never used (the
/// synthetic messages are not commands).
pub fn router_services(
    store: Arc<EmbeddedStore>,
    runtime: RuntimeConfig,
    observer: Option<Arc<dyn EventObserver>>,
) -> Services {
    let usage = CommandUsage::new(&(Arc::clone(&store) as _));
    Services {
        store,
        departures: Default::default(),
        replies: Replies::new(Rest::new(
            Arc::new(Transport::new(
                &BotToken::new(""),
                None,
                Duration::from_secs(10),
            )),
            Arc::new(GlobalLine::unlimited()),
            Arc::new(InvalidRequestGuard::new(GuardLimits::default())),
        )),
        cache: Arc::new(
            DefaultInMemoryCache::builder()
                .resource_types(protonn_actors::cached_resources())
                .build(),
        ),
        own_roles: Default::default(),
        runtime,
        dead_letters: Arc::new(DeadLetters::default()),
        observer,
        node_name: "bench".to_owned(),
        shard_count: ShardCount::new(1),
        usage,
        tasks: Default::default(),
    }
}

/// A guild MESSAGE_CREATE's `d` as Discord sends it.
pub fn message_json(guild: u64, id: u64, content: &str) -> String {
    format!(
        r#"{{"id":"{id}","channel_id":"{channel}","guild_id":"{guild}",
        "author":{{"id":"{author}","username":"user","discriminator":"0","avatar":null,
        "global_name":null,"bot":false}},
        "content":"{content}","timestamp":"2024-01-01T00:00:00.000000+00:00",
        "edited_timestamp":null,"tts":false,"mention_everyone":false,"mentions":[],
        "mention_roles":[],"attachments":[],"embeds":[],"pinned":false,"type":0}}"#,
        channel = guild + 2,
        author = guild + 3,
    )
}

/// A MESSAGE_CREATE that is not a command.
pub fn message(guild: u64, id: u64) -> Event {
    let json = message_json(guild, id, "hello there, nothing to see");
    let message: Message = serde_json::from_str(&json).expect("a valid MESSAGE_CREATE");
    Event::MessageCreate(Box::new(MessageCreate {
        channel_type: None,
        message,
    }))
}

/// Hands `events` to the router as a shard's forwarder does; returns once they are routed
/// (queued with their guild actors, not handled).
pub async fn route(router: &ActorRef<RouterMsg>, events: Vec<Event>) {
    ractor::call_t!(
        router,
        |reply| RouterMsg::Route(
            Delivery {
                shard_count: 1,
                replayed: false,
                events,
                receipt: None,
            },
            reply,
        ),
        120_000
    )
    .unwrap();
}

/// Hears once per message a guild actor handled.
struct Handled(tokio::sync::mpsc::UnboundedSender<()>);

impl EventObserver for Handled {
    fn handled(&self, _: u64, _: u32, event: protonn_actors::HandledEvent) {
        if let protonn_actors::HandledEvent::Message(_) = event {
            let _ = self.0.send(());
        }
    }
}

/// A router over `store` whose actors stay resident through a run ([`resident_runtime`]),
/// and what hears each message they handled (for [`route_and_wait`]).
pub fn start_observed(
    runtime: &tokio::runtime::Runtime,
    store: Arc<EmbeddedStore>,
) -> (
    ActorRef<RouterMsg>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (tx, handled) = tokio::sync::mpsc::unbounded_channel();
    let runtime_config = resident_runtime();
    let observer = Arc::new(Handled(tx)) as Arc<dyn EventObserver>;
    // The services' REST client needs the runtime: built inside it.
    let router = runtime
        .block_on(async {
            let services = router_services(store, runtime_config, Some(observer));
            protonn_actors::GuildRouter::start(services).await
        })
        .unwrap();
    (router, handled)
}

/// Routes `events` and waits until every one was handled: `handled` hears once per event
/// (from the router's observer).
pub fn route_and_wait(
    runtime: &tokio::runtime::Runtime,
    router: &ActorRef<RouterMsg>,
    handled: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    events: Vec<Event>,
) {
    let count = events.len();
    runtime.block_on(async {
        route(router, events).await;
        for _ in 0..count {
            handled.recv().await.expect("the router is running");
        }
    });
}

pub async fn active(router: &ActorRef<RouterMsg>) -> usize {
    ractor::call_t!(router, RouterMsg::Stats, 5_000)
        .unwrap()
        .active_guilds
}

/// The runtime of a router whose actors stay resident through a run: no sweep within an
/// hour. The benches' guilds are not in the node cache (it starts empty), and a sweep
/// passivates the actors of guilds the cache does not hold.
fn resident_runtime() -> RuntimeConfig {
    let hour = Duration::from_secs(3_600);
    RuntimeConfig {
        idle_after: hour,
        sweep_every: hour,
        ..RuntimeConfig::default()
    }
}

/// A router with real services on an embedded store in `dir`, whose actors are never
/// passivated: what the benches of activation count stays resident.
pub async fn resident_router(dir: &Path) -> ActorRef<RouterMsg> {
    let store = Arc::new(EmbeddedStore::open(dir).unwrap());
    GuildRouter::start(router_services(store, resident_runtime(), None))
        .await
        .unwrap()
}

/// Waits until the router has `actors` guild actors and none has an event left to handle.
pub async fn all_handled(router: &ActorRef<RouterMsg>, actors: usize) {
    loop {
        let stats = ractor::call_t!(router, RouterMsg::Stats, 5_000).unwrap();
        if stats.active_guilds >= actors && stats.queued == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
