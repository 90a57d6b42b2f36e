//! Background traffic: MESSAGE_CREATE at `messages_per_sec` (a
//! `command_share` of it bot commands), and the weighted event mix of
//! `mix` at `mix.events_per_sec` + `mix.per_shard_per_sec` per shard.
//!
//! A generator tracks how many events *should* have been sent since it
//! started and sends the difference on every tick, so the rate stays exact
//! whatever the tick granularity or scheduler jitter; above ~1000/s a tick
//! carries a batch. Every event goes through the shard's session, so the
//! ledger and the replay buffer see it like any other dispatch.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};
use twilight_model::gateway::Intents;

use crate::payloads::{self, Author, MessageSpec, ReactionSpec};
use crate::session::Event;
use crate::snowflake::now_unix_ms;
use crate::state::Shared;
use crate::world::Guild;
/// Events sent before the generator yields to the connections.
const YIELD_EVERY: u64 = 256;
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
    let messages = {
        let shared = Arc::clone(&shared);
        let mut rng = SmallRng::seed_from_u64(shared.config.seed.wrapping_add(1));
        let rate = shared.config.messages_per_sec;
        async move {
            paced(&shared, rate, |shared, shards| {
                send_one(shared, shards, &mut rng);
            })
            .await;
        }
    };
    let mix = async {
        let mut mix = Mix::new(&shared);
        let rate = shared.config.mix.rate(shared.config.shards);
        paced(&shared, rate, |shared, shards| {
            mix.send(shared, shards);
        })
        .await;
    };
    tokio::join!(messages, mix);
}

/// Calls `send` `rate` times a second with the shards that have a session.
async fn paced(shared: &Shared, rate: f64, mut send: impl FnMut(&Shared, &[u32])) {
    if rate <= 0.0 {
        return;
    }
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
        for i in 0..batch {
            send(shared, &shards);
            // Let the connections write between slices of a large batch:
            // on a small machine they share the generator's threads.
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
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
    let channel = guild.channel(rng.random_range(0..guild.channel_count));
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
    shared.send_message(guild.id, channel.id, author.id, content, &[]);
}

/// The mix's event kinds, in [`EventWeights::as_array`](crate::config::EventWeights) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum MixKind {
    MessageCreate,
    MessageUpdate,
    MessageDelete,
    GuildMemberAdd,
    GuildMemberRemove,
    MessageReactionAdd,
    TypingStart,
    PresenceUpdate,
    GuildUpdate,
    InteractionCreate,
    GuildDelete,
}

impl MixKind {
    pub(crate) const ALL: [Self; 11] = [
        Self::MessageCreate,
        Self::MessageUpdate,
        Self::MessageDelete,
        Self::GuildMemberAdd,
        Self::GuildMemberRemove,
        Self::MessageReactionAdd,
        Self::TypingStart,
        Self::PresenceUpdate,
        Self::GuildUpdate,
        Self::InteractionCreate,
        Self::GuildDelete,
    ];

    /// The intent without which Discord does not send the event.
    pub(crate) fn intent(self) -> Intents {
        match self {
            Self::MessageCreate | Self::MessageUpdate | Self::MessageDelete => {
                Intents::GUILD_MESSAGES
            }
            Self::GuildMemberAdd | Self::GuildMemberRemove => Intents::GUILD_MEMBERS,
            Self::MessageReactionAdd => Intents::GUILD_MESSAGE_REACTIONS,
            Self::TypingStart => Intents::GUILD_MESSAGE_TYPING,
            Self::PresenceUpdate => Intents::GUILD_PRESENCES,
            Self::GuildUpdate | Self::GuildDelete => Intents::GUILDS,
            Self::InteractionCreate => Intents::empty(),
        }
    }
}

/// Draws kinds by weight from a seeded generator.
pub(crate) struct KindPicker {
    cumulative: [f64; 11],
}

impl KindPicker {
    pub(crate) fn new(weights: [f64; 11]) -> Self {
        let mut cumulative = weights;
        for i in 1..cumulative.len() {
            cumulative[i] += cumulative[i - 1];
        }
        Self { cumulative }
    }

    pub(crate) fn pick(&self, rng: &mut SmallRng) -> MixKind {
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = rng.random::<f64>() * total;
        let i = self
            .cumulative
            .iter()
            .position(|&c| x < c)
            .unwrap_or(self.cumulative.len() - 1);
        MixKind::ALL[i]
    }
}

const STATUSES: &[&str] = &["online", "idle", "dnd", "offline"];

/// Tries at picking a guild the bot is still in before giving up a tick.
const PICK_TRIES: usize = 8;

struct Mix {
    rng: SmallRng,
    picker: KindPicker,
    /// MESSAGE_CREATE/UPDATE content when `content_bytes` is set.
    long_content: Option<String>,
}

impl Mix {
    fn new(shared: &Shared) -> Self {
        let mix = &shared.config.mix;
        let long_content = (mix.content_bytes > 0).then(|| {
            let mut text = String::new();
            let mut i = 0;
            while text.len() < mix.content_bytes as usize {
                text.push_str(CHAT[i % CHAT.len()]);
                text.push(' ');
                i += 1;
            }
            text.truncate(mix.content_bytes as usize);
            text
        });
        Self {
            rng: SmallRng::seed_from_u64(shared.config.seed.wrapping_add(2)),
            picker: KindPicker::new(mix.weights.as_array()),
            long_content,
        }
    }

    fn send(&mut self, shared: &Shared, shards: &[u32]) {
        let kind = self.picker.pick(&mut self.rng);
        let shard = shards[self.rng.random_range(0..shards.len())];
        if !shared.sessions.anyone_wants(shard, kind.intent()) {
            return;
        }
        let count = shared.world.shard_guild_count(shard);
        if count == 0 {
            return;
        }
        let Some(guild) = (0..PICK_TRIES)
            .filter_map(|_| {
                shared
                    .world
                    .shard_guild(shard, self.rng.random_range(0..count))
            })
            .find(|g| !shared.world.is_removed(g))
        else {
            return;
        };
        self.send_kind(shared, kind, guild);
    }

    fn send_kind(&mut self, shared: &Shared, kind: MixKind, guild: &Guild) {
        let rng = &mut self.rng;
        let channel_id = guild.channel_id(rng.random_range(0..guild.channel_count));
        let author = if guild.members.is_empty() {
            &guild.owner
        } else {
            &guild.members[rng.random_range(0..guild.members.len())]
        };
        let author = Author {
            id: author.id,
            username: &author.username,
            joined_ms: author.joined_ms,
            bot: false,
        };
        let content = || -> &str {
            match &self.long_content {
                Some(text) => text,
                None => CHAT[0],
            }
        };
        match kind {
            MixKind::MessageCreate => {
                let command = rng.random_bool(shared.config.mix.command_share);
                let text = if command {
                    PING
                } else if let Some(text) = &self.long_content {
                    text
                } else {
                    CHAT[rng.random_range(0..CHAT.len())]
                };
                shared.send_message(guild.id, channel_id, author.id, text, &[]);
            }
            MixKind::MessageUpdate => {
                let message_id = shared.new_message_id();
                let edited_ms = now_unix_ms();
                let content = content();
                shared
                    .sessions
                    .dispatch_with(guild.shard, Some(guild.id), |wants| {
                        if !wants.intents.contains(Intents::GUILD_MESSAGES) {
                            return None;
                        }
                        let text = if wants.intents.contains(Intents::MESSAGE_CONTENT) {
                            content
                        } else {
                            ""
                        };
                        let d = payloads::message_update(
                            &MessageSpec {
                                message_id,
                                channel_id,
                                guild_id: Some(guild.id),
                                author,
                                member_roles: Some(&[]),
                                content: text,
                                embeds: Value::Array(Vec::new()),
                                webhook_id: None,
                                application_id: None,
                            },
                            edited_ms,
                        );
                        Some(Event {
                            name: "MESSAGE_UPDATE",
                            guild_id: Some(guild.id),
                            entity_id: Some(message_id),
                            d: d.to_string(),
                        })
                    });
            }
            MixKind::MessageDelete => {
                let message_id = shared.new_message_id();
                let d = payloads::message_delete(message_id, channel_id, guild.id);
                dispatch(
                    shared,
                    guild,
                    kind.intent(),
                    "MESSAGE_DELETE",
                    message_id,
                    &d,
                );
            }
            MixKind::GuildMemberAdd => {
                member_joins(shared, guild);
            }
            MixKind::GuildMemberRemove => {
                let d = payloads::guild_member_remove(guild.id, author.id, author.username);
                dispatch(
                    shared,
                    guild,
                    kind.intent(),
                    "GUILD_MEMBER_REMOVE",
                    author.id,
                    &d,
                );
            }
            MixKind::MessageReactionAdd => {
                let emoji = (guild.emojis > 0 && rng.random_bool(0.5))
                    .then(|| {
                        guild
                            .emojis()
                            .nth(rng.random_range(0..guild.emojis as usize))
                    })
                    .flatten();
                let message_id = shared.new_message_id();
                let d = payloads::message_reaction_add(&ReactionSpec {
                    guild_id: guild.id,
                    channel_id,
                    message_id,
                    user: author,
                    emoji: emoji.as_ref().map(|e| (e.id, &*e.name)),
                });
                dispatch(
                    shared,
                    guild,
                    kind.intent(),
                    "MESSAGE_REACTION_ADD",
                    message_id,
                    &d,
                );
            }
            MixKind::TypingStart => {
                let d = payloads::typing_start(guild.id, channel_id, author, now_unix_ms() / 1000);
                dispatch(shared, guild, kind.intent(), "TYPING_START", author.id, &d);
            }
            MixKind::PresenceUpdate => {
                let status = STATUSES[rng.random_range(0..STATUSES.len())];
                let d = payloads::presence_update(guild.id, author.id, status);
                dispatch(
                    shared,
                    guild,
                    kind.intent(),
                    "PRESENCE_UPDATE",
                    author.id,
                    &d,
                );
            }
            MixKind::GuildUpdate => {
                let d = payloads::guild_object(&shared.world, guild);
                dispatch(shared, guild, kind.intent(), "GUILD_UPDATE", guild.id, &d);
            }
            MixKind::InteractionCreate => {
                shared.send_command_interaction(guild.id, channel_id, author.id, "ping", &[]);
            }
            MixKind::GuildDelete => {
                remove_guild(shared, guild);
            }
        }
    }
}

/// The bot is removed from `guild`: GUILD_DELETE without `unavailable`, then nothing more
/// from it. False when it already was.
/// A new user joins `guild`: a GUILD_MEMBER_ADD for the sessions with the privileged
/// GUILD_MEMBERS intent only, as Discord sends it; the user's id.
pub(crate) fn member_joins(shared: &Shared, guild: &Guild) -> u64 {
    let user_id = shared.new_message_id();
    let name = format!("newcomer{}", user_id % 100_000);
    let d = payloads::guild_member_add(guild.id, user_id, &name, now_unix_ms());
    let intent = MixKind::GuildMemberAdd.intent();
    dispatch(shared, guild, intent, "GUILD_MEMBER_ADD", user_id, &d);
    user_id
}

pub(crate) fn remove_guild(shared: &Shared, guild: &Guild) -> bool {
    if !shared.world.remove(guild) {
        return false;
    }
    let d = payloads::guild_delete(guild.id);
    dispatch(shared, guild, Intents::GUILDS, "GUILD_DELETE", guild.id, &d);
    true
}

/// The bot is added back to `guild`: a GUILD_CREATE, and the guild is live again.
pub(crate) fn restore_guild(shared: &Shared, guild: &Guild) -> bool {
    if !shared.world.restore(guild) {
        return false;
    }
    shared
        .sessions
        .dispatch_with(guild.shard, Some(guild.id), |wants| {
            Some(Event {
                name: "GUILD_CREATE",
                guild_id: Some(guild.id),
                entity_id: Some(guild.id),
                d: crate::channels::guild_create(shared, guild, wants).to_string(),
            })
        });
    true
}

/// Sends the event to every session of the guild's shard that has the
/// intent it `needs`.
fn dispatch(
    shared: &Shared,
    guild: &Guild,
    needs: Intents,
    name: &'static str,
    entity_id: u64,
    d: &Value,
) {
    let d = d.to_string();
    shared
        .sessions
        .dispatch_with(guild.shard, Some(guild.id), |wants| {
            wants.intents.contains(needs).then(|| Event {
                name,
                guild_id: Some(guild.id),
                entity_id: Some(entity_id),
                d: d.clone(),
            })
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventWeights;

    #[test]
    fn mix_proportions_follow_the_weights_from_the_seed() {
        let weights = EventWeights::benchmark().as_array();
        let total: f64 = weights.iter().sum();
        let picker = KindPicker::new(weights);
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut counts = [0_u32; 11];
            for _ in 0..200_000 {
                let kind = picker.pick(&mut rng);
                counts[MixKind::ALL.iter().position(|k| *k == kind).unwrap()] += 1;
            }
            counts
        };
        let counts = draw(42);
        assert_eq!(counts, draw(42), "same seed, same sequence");
        assert_ne!(counts, draw(43));
        for (count, weight) in counts.iter().zip(weights) {
            let share = f64::from(*count) / 200_000.0;
            assert!((share - weight / total).abs() < 0.005, "{counts:?}");
        }
        // The default mix is messages only.
        let only = KindPicker::new(EventWeights::default().as_array());
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..1000).all(|_| only.pick(&mut rng) == MixKind::MessageCreate));
    }
}
