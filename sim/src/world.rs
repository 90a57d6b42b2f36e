//! The generated Discord world: the bot, guilds, channels, roles and users.
//!
//! Deterministic from the seed, so two runs with one config see the same ids.
//! Guild ids are consecutive milliseconds, so `(id >> 22) % shards` spreads
//! guilds evenly over shards, as on a real bot.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::SimConfig;
use crate::snowflake::snowflake;

/// 2020-01-01T00:00:00Z: guilds are created from here on.
const GUILD_EPOCH_MS: u64 = 1_577_836_800_000;
/// 2016-06-01T00:00:00Z: users are older than their guilds.
const USER_EPOCH_MS: u64 = 1_464_739_200_000;
/// 2018-01-01T00:00:00Z: the application owner's account.
const APP_OWNER_MS: u64 = 1_514_764_800_000;
/// 2021-03-01T00:00:00Z: the bot's account (and so its application id).
const BOT_MS: u64 = 1_614_556_800_000;

/// Snowflake worker ids keep entities made in the same millisecond apart.
const WORKER_GUILD: u64 = 0;
const WORKER_CHANNEL: u64 = 1;
const WORKER_ROLE: u64 = 2;

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden", "icy", "jolly",
    "kind", "lucky", "misty", "noble", "odd", "proud", "quiet", "rapid", "sunny", "tiny",
];
const NOUNS: &[&str] = &[
    "otter", "falcon", "maple", "comet", "harbor", "lantern", "meadow", "pixel", "quartz", "raven",
    "summit", "tiger", "valley", "willow", "badger", "cactus", "delta", "ember",
];
const CHANNEL_NAMES: &[&str] = &["general", "random", "help", "memes", "announcements"];

/// A generated guild, as the control API and tests see it.
#[derive(Clone, Debug, Serialize)]
pub struct GuildInfo {
    /// Guild id (a real snowflake).
    pub id: u64,
    /// Shard that receives this guild's events: `(id >> 22) % shards`.
    pub shard: u32,
    /// Display name.
    pub name: String,
    /// Owner's user id; the owner has every permission.
    pub owner_id: u64,
    /// Text channels, in position order.
    pub channel_ids: Vec<u64>,
    /// Members besides the owner (and the bot).
    pub member_ids: Vec<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) username: String,
    /// When the user joined the guild they belong to.
    pub(crate) joined_ms: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) id: u64,
    pub(crate) name: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Guild {
    pub(crate) id: u64,
    pub(crate) shard: u32,
    pub(crate) name: String,
    pub(crate) owner: User,
    pub(crate) members: Vec<User>,
    pub(crate) channels: Vec<Channel>,
    /// Held by the owner; moderation permissions.
    pub(crate) moderator_role_id: u64,
    /// The bot's managed role, as Discord creates on install.
    pub(crate) bot_role_id: u64,
    /// When the bot joined.
    pub(crate) bot_joined_ms: u64,
}

impl Guild {
    pub(crate) fn created_ms(&self) -> u64 {
        crate::snowflake::unix_ms_of(self.id)
    }

    pub(crate) fn user(&self, id: u64) -> Option<&User> {
        std::iter::once(&self.owner)
            .chain(&self.members)
            .find(|u| u.id == id)
    }

    pub(crate) fn has_channel(&self, id: u64) -> bool {
        self.channels.iter().any(|c| c.id == id)
    }

    pub(crate) fn info(&self) -> GuildInfo {
        GuildInfo {
            id: self.id,
            shard: self.shard,
            name: self.name.clone(),
            owner_id: self.owner.id,
            channel_ids: self.channels.iter().map(|c| c.id).collect(),
            member_ids: self.members.iter().map(|u| u.id).collect(),
        }
    }
}

/// The bot account and its application.
#[derive(Clone, Debug)]
pub(crate) struct Bot {
    pub(crate) user_id: u64,
    pub(crate) username: String,
    /// Equal to the bot's user id, as for every application created since 2020.
    pub(crate) application_id: u64,
    pub(crate) owner_id: u64,
    pub(crate) owner_username: String,
}

#[derive(Debug)]
pub(crate) struct World {
    pub(crate) bot: Bot,
    guilds: Vec<Guild>,
    by_id: HashMap<u64, usize>,
    by_channel: HashMap<u64, usize>,
    by_shard: Vec<Vec<usize>>,
}

pub(crate) fn shard_of(guild_id: u64, shards: u32) -> u32 {
    // Lossless: the remainder is below `shards`.
    ((guild_id >> 22) % u64::from(shards)) as u32
}

impl World {
    pub(crate) fn generate(config: &SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let bot_user_id = snowflake(BOT_MS + rng.random_range(0..86_400_000), 0, 0);
        let bot = Bot {
            user_id: bot_user_id,
            username: "protonn".to_owned(),
            application_id: bot_user_id,
            owner_id: snowflake(APP_OWNER_MS + rng.random_range(0..86_400_000), 0, 0),
            owner_username: "protonn-dev".to_owned(),
        };

        // Up to half a year of offset, so the seed moves every id.
        let guild_base = GUILD_EPOCH_MS + rng.random_range(0..180 * 86_400_000);
        let user_base = USER_EPOCH_MS + rng.random_range(0..30 * 86_400_000);
        let users_per_guild = u64::from(config.members_per_guild) + 1;

        let mut guilds = Vec::with_capacity(config.guilds as usize);
        let mut by_id = HashMap::with_capacity(config.guilds as usize);
        let mut by_channel = HashMap::new();
        let mut by_shard = vec![Vec::new(); config.shards as usize];
        for index in 0..u64::from(config.guilds) {
            let created_ms = guild_base + index;
            let id = snowflake(created_ms, WORKER_GUILD, 0);
            let first_user = index * users_per_guild;
            let user = |k: u64, rng: &mut StdRng| {
                let n = first_user + k;
                User {
                    id: snowflake(user_base + n, 0, 0),
                    username: format!(
                        "{}{}{n}",
                        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
                        NOUNS[rng.random_range(0..NOUNS.len())]
                    ),
                    joined_ms: created_ms + rng.random_range(0..30 * 86_400_000),
                }
            };
            let mut owner = user(0, &mut rng);
            owner.joined_ms = created_ms;
            let members = (1..users_per_guild).map(|k| user(k, &mut rng)).collect();
            let channels = (0..u64::from(config.channels_per_guild))
                .map(|c| Channel {
                    id: snowflake(created_ms, WORKER_CHANNEL, c),
                    name: match CHANNEL_NAMES.get(c as usize) {
                        Some(name) => (*name).to_owned(),
                        None => format!("channel-{c}"),
                    },
                })
                .collect();
            let name = format!(
                "{} {}s {index}",
                capitalize(ADJECTIVES[rng.random_range(0..ADJECTIVES.len())]),
                capitalize(NOUNS[rng.random_range(0..NOUNS.len())])
            );
            let guild = Guild {
                id,
                shard: shard_of(id, config.shards),
                name,
                owner,
                members,
                channels,
                moderator_role_id: snowflake(created_ms, WORKER_ROLE, 0),
                bot_role_id: snowflake(created_ms, WORKER_ROLE, 1),
                bot_joined_ms: created_ms + rng.random_range(0..60 * 86_400_000),
            };
            let position = guilds.len();
            by_id.insert(id, position);
            for channel in &guild.channels {
                by_channel.insert(channel.id, position);
            }
            by_shard[guild.shard as usize].push(position);
            guilds.push(guild);
        }
        Self {
            bot,
            guilds,
            by_id,
            by_channel,
            by_shard,
        }
    }

    pub(crate) fn guilds(&self) -> &[Guild] {
        &self.guilds
    }

    pub(crate) fn guild(&self, id: u64) -> Option<&Guild> {
        self.by_id.get(&id).map(|&i| &self.guilds[i])
    }

    pub(crate) fn guild_of_channel(&self, channel_id: u64) -> Option<&Guild> {
        self.by_channel.get(&channel_id).map(|&i| &self.guilds[i])
    }

    pub(crate) fn guilds_of_shard(&self, shard: u32) -> impl Iterator<Item = &Guild> {
        self.by_shard
            .get(shard as usize)
            .into_iter()
            .flatten()
            .map(|&i| &self.guilds[i])
    }

    pub(crate) fn shard_guild_count(&self, shard: u32) -> usize {
        self.by_shard.get(shard as usize).map_or(0, Vec::len)
    }

    /// The `n`th guild of a shard, for uniform random picks.
    pub(crate) fn shard_guild(&self, shard: u32, n: usize) -> Option<&Guild> {
        let index = *self.by_shard.get(shard as usize)?.get(n)?;
        Some(&self.guilds[index])
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guilds_spread_evenly_over_shards() {
        let config = SimConfig {
            guilds: 1000,
            shards: 7,
            ..SimConfig::default()
        };
        let world = World::generate(&config);
        let counts: Vec<usize> = (0..7).map(|s| world.shard_guild_count(s)).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "uneven spread {counts:?}");
        for guild in world.guilds() {
            assert_eq!(u64::from(guild.shard), (guild.id >> 22) % 7);
        }
    }

    #[test]
    fn generation_is_deterministic_and_seeded() {
        let config = SimConfig {
            guilds: 50,
            ..SimConfig::default()
        };
        let a = World::generate(&config);
        let b = World::generate(&config);
        let c = World::generate(&SimConfig { seed: 7, ..config });
        let ids = |w: &World| w.guilds().iter().map(|g| g.id).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&c));
        assert_eq!(
            a.guilds()[3].members[2].username,
            b.guilds()[3].members[2].username
        );
    }

    #[test]
    fn ids_are_unique_across_entities() {
        let world = World::generate(&SimConfig {
            guilds: 300,
            ..SimConfig::default()
        });
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(world.bot.user_id));
        assert!(seen.insert(world.bot.owner_id));
        for guild in world.guilds() {
            assert!(seen.insert(guild.id));
            assert!(seen.insert(guild.moderator_role_id));
            assert!(seen.insert(guild.bot_role_id));
            assert!(seen.insert(guild.owner.id));
            for channel in &guild.channels {
                assert!(seen.insert(channel.id));
                assert_eq!(world.guild_of_channel(channel.id).unwrap().id, guild.id);
            }
            for member in &guild.members {
                assert!(seen.insert(member.id));
                assert!(member.username.len() <= 32);
            }
        }
    }
}
