//! Background MESSAGE_CREATE traffic at `messages_per_sec`, a
//! `command_share` of it bot commands.
//!
//! The generator tracks how many messages *should* have been sent since it
//! started and sends the difference on every tick, so the rate stays exact
//! whatever the tick granularity or scheduler jitter; above ~1000/s a tick
//! carries a batch.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, MissedTickBehavior};

use crate::state::Shared;

/// Finest tick; faster rates batch within it.
const MIN_TICK: Duration = Duration::from_millis(1);
/// Coarsest tick, so a very slow rate still notices shutdown promptly
/// (shutdown is also selected on, this only bounds the arithmetic).
const MAX_TICK: Duration = Duration::from_secs(3600);
/// Catch-up bound after a stall (e.g. a paused process): at most this much
/// time's worth of messages in one burst; the rest is forgiven.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

const CHAT: &[&str] = &[
    "hello everyone",
    "anyone around?",
    "lol",
    "that was a great game last night",
    "has anyone tried the new update",
    "good morning",
    "brb",
    "check the pinned messages",
    "thanks for the help!",
    "what time is the event",
];

/// Commands the traffic uses; "!ping" most of the time.
const PING: &str = "!ping";
const CONFIG_GET_PREFIX: &str = "!config get prefix";
const PING_SHARE: f64 = 0.8;

pub(crate) async fn run(shared: Arc<Shared>) {
    let rate = shared.config.messages_per_sec;
    if rate <= 0.0 {
        return;
    }
    let mut rng = SmallRng::seed_from_u64(shared.config.seed.wrapping_add(1));
    let mut shutdown = shared.shutdown_signal();
    let tick = Duration::try_from_secs_f64(1.0 / rate)
        .unwrap_or(MAX_TICK)
        .clamp(MIN_TICK, MAX_TICK);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let start = Instant::now();
    let max_burst = ((rate * MAX_CATCH_UP.as_secs_f64()).ceil() as u64).max(1);
    // Messages accounted for so far (sent, or forgiven after a stall).
    let mut done: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        done = done.max(due.saturating_sub(max_burst));
        let batch = due.saturating_sub(done);
        if batch == 0 {
            continue;
        }
        done = due;
        let shards = shared.sessions.shards_with_session();
        if shards.is_empty() {
            continue;
        }
        for _ in 0..batch {
            send_one(&shared, &shards, &mut rng);
        }
    }
}

fn send_one(shared: &Shared, shards: &[u32], rng: &mut SmallRng) {
    let shard = shards[rng.random_range(0..shards.len())];
    let count = shared.world.shard_guild_count(shard);
    if count == 0 {
        return;
    }
    let Some(guild) = shared.world.shard_guild(shard, rng.random_range(0..count)) else {
        return;
    };
    let channel = &guild.channels[rng.random_range(0..guild.channels.len())];
    let author = if guild.members.is_empty() {
        &guild.owner
    } else {
        &guild.members[rng.random_range(0..guild.members.len())]
    };
    let content = if rng.random_bool(shared.config.command_share) {
        if rng.random_bool(PING_SHARE) {
            PING
        } else {
            CONFIG_GET_PREFIX
        }
    } else {
        CHAT[rng.random_range(0..CHAT.len())]
    };
    shared.send_message(guild.id, channel.id, author.id, content);
}
