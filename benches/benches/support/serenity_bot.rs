//! A bot written with serenity, the peer B1 and B4 run beside ours: serenity's default
//! features (its cache on), our bot's intents, and its REST to the simulator through
//! serenity's proxy setting. It counts what it receives and answers `!ping` with a message,
//! as our bot does.

#![allow(unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serenity::client::ClientBuilder;
use serenity::http::HttpBuilder;
use serenity::model::channel::Message;
use serenity::model::gateway::GatewayIntents;
use serenity::model::guild::Guild;
use serenity::prelude::{Context, EventHandler};
use tokio::task::JoinHandle;

/// What a peer counts as it goes (B1's bare twilight loops count the same).
#[derive(Default)]
pub struct Counts {
    pub guild_creates: AtomicU64,
    /// Events past the GUILD_CREATEs: for serenity, the messages handed to its handler.
    pub events: AtomicU64,
    /// For the twilight loops, events that failed to parse; for serenity, replies that
    /// failed.
    pub errors: AtomicU64,
}

struct Handler(Arc<Counts>);

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn guild_create(&self, _: Context, _: Guild, _: Option<bool>) {
        self.0.guild_creates.fetch_add(1, Ordering::Relaxed);
    }

    async fn message(&self, ctx: Context, message: Message) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
        if message.content == "!ping" && message.channel_id.say(&ctx.http, "pong").await.is_err() {
            self.0.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the bot on `shards` shards against the simulator at `sim_addr` (`host:port`);
/// aborting the task stops it.
pub fn start(sim_addr: &str, token: &str, shards: u32, counts: Arc<Counts>) -> JoinHandle<()> {
    // Serenity sends to its proxy only with its own limiter off (the proxy is expected to
    // limit); the simulator enforces Discord's limits, as a proxy would.
    let http = HttpBuilder::new(token)
        .proxy(format!("http://{sim_addr}"))
        .ratelimiter_disabled(true)
        .build();
    let intents = GatewayIntents::from_bits_truncate(protonn_actors::intents().bits());
    tokio::spawn(async move {
        let mut client = ClientBuilder::new_with_http(http, intents)
            .event_handler(Handler(counts))
            .await
            .expect("a serenity client");
        if let Err(err) = client.start_shards(shards).await {
            println!("serenity stopped: {err}");
        }
    })
}
