//! The generated Discord world: the bot, guilds, channels, roles and users.
//!
//! Deterministic from the seed, so two runs with one config see the same ids.
//! Guild ids are consecutive milliseconds, so `(id >> 22) % shards` spreads
//! guilds evenly over shards, as on a real bot.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::SimConfig;
use crate::snowflake::{snowflake, unix_ms_of};

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
const WORKER_EMOJI: u64 = 3;
/// Virtual members of large guilds use workers 4..=31 of the guild's
/// millisecond (28 × 4096 ids, `MAX_LARGE_MEMBERS` in config).
const WORKER_FIRST_VIRTUAL_MEMBER: u64 = 4;
const ROLE_NAMES: &[&str] = &[
    "Admin",
    "Member",
    "Regular",
    "Veteran",
    "Artist",
    "Gamer",
    "Musician",
    "Helper",
    "Event Host",
    "Streamer",
    "Booster",
    "Muted",
    "Red",
    "Blue",
    "Green",
    "Verified",
    "Bots",
    "Staff",
];
const EMOJI_NAMES: &[&str] = &[
    "pepe",
    "kekw",
    "pog",
    "sadge",
    "catjam",
    "blobwave",
    "thonk",
    "partyparrot",
    "yes",
    "no",
];

const ADJECTIVES: &[&str] = &[
    "amber", "brave", "calm", "dusty", "eager", "fuzzy", "gentle", "hidden", "icy", "jolly",
    "kind", "lucky", "misty", "noble", "odd", "proud", "quiet", "rapid", "sunny", "tiny",
];
const NOUNS: &[&str] = &[
    "otter", "falcon", "maple", "comet", "harbor", "lantern", "meadow", "pixel", "quartz", "raven",
    "summit", "tiger", "valley", "willow", "badger", "cactus", "delta", "ember",
];
const CHANNEL_NAMES: &[&str] = &[
    "general",
    "random",
    "help",
    "memes",
    "announcements",
    "off-topic",
    "gaming",
    "music",
    "art",
    "media",
    "bot-commands",
    "introductions",
    "suggestions",
    "events",
    "support",
    "dev",
    "lounge",
    "news",
    "rules",
    "welcome",
];

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

/// A text channel; made on demand from the guild's millisecond and its
/// position, so 100,000 guilds of 20 channels store no channels at all.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
}

/// A role or an emoji beyond the three fixed roles, made on demand.
#[derive(Clone, Debug)]
pub(crate) struct Named {
    pub(crate) id: u64,
    pub(crate) name: Cow<'static, str>,
}

fn numbered(names: &'static [&'static str], n: u64, prefix: &str) -> Cow<'static, str> {
    match usize::try_from(n).ok().and_then(|n| names.get(n)) {
        Some(name) => Cow::Borrowed(*name),
        None => Cow::Owned(format!("{prefix}-{n}")),
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Guild {
    pub(crate) id: u64,
    pub(crate) shard: u32,
    pub(crate) name: String,
    pub(crate) owner: User,
    pub(crate) members: Vec<User>,
    /// Text channels: ids `snowflake(created_ms, WORKER_CHANNEL, position)`.
    pub(crate) channel_count: u32,
    /// Roles besides @everyone, Moderator and the bot's.
    pub(crate) extra_roles: u32,
    pub(crate) emojis: u32,
    /// `member_count` of a large guild, whose members beyond the stored
    /// ones exist only as ids made on demand (GUILD_MEMBERS_CHUNK).
    pub(crate) large_members: Option<u32>,
    /// Position in the world's guild list.
    pub(crate) index: u32,
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

    /// A member's roles besides @everyone: the owner holds Moderator, the others none.
    pub(crate) fn roles_of(&self, user_id: u64) -> Vec<u64> {
        if user_id == self.owner.id {
            vec![self.moderator_role_id]
        } else {
            Vec::new()
        }
    }

    pub(crate) fn user(&self, id: u64) -> Option<&User> {
        std::iter::once(&self.owner)
            .chain(&self.members)
            .find(|u| u.id == id)
    }

    pub(crate) fn has_channel(&self, id: u64) -> bool {
        self.channel_position(id).is_some()
    }

    fn channel_position(&self, id: u64) -> Option<u64> {
        let position = id & 0xFFF;
        (unix_ms_of(id) == self.created_ms()
            && (id >> 17) & 0x1F == WORKER_CHANNEL
            && position < u64::from(self.channel_count)
            && id == snowflake(self.created_ms(), WORKER_CHANNEL, position))
        .then_some(position)
    }

    pub(crate) fn channel_id(&self, position: u32) -> u64 {
        snowflake(self.created_ms(), WORKER_CHANNEL, u64::from(position))
    }

    pub(crate) fn channel(&self, position: u32) -> Channel {
        let position = u64::from(position);
        Channel {
            id: snowflake(self.created_ms(), WORKER_CHANNEL, position),
            name: numbered(CHANNEL_NAMES, position, "channel"),
        }
    }

    pub(crate) fn channel_name(&self, id: u64) -> Option<Cow<'static, str>> {
        self.channel_position(id)
            .map(|p| numbered(CHANNEL_NAMES, p, "channel"))
    }

    pub(crate) fn channels(&self) -> impl Iterator<Item = Channel> + '_ {
        (0..self.channel_count).map(|p| self.channel(p))
    }

    /// Roles after the three fixed ones, in position order.
    pub(crate) fn extra_roles(&self) -> impl Iterator<Item = Named> + '_ {
        (0..u64::from(self.extra_roles)).map(|n| Named {
            id: snowflake(self.created_ms(), WORKER_ROLE, n + 2),
            name: numbered(ROLE_NAMES, n, "role"),
        })
    }

    pub(crate) fn emojis(&self) -> impl Iterator<Item = Named> + '_ {
        (0..u64::from(self.emojis)).map(|n| Named {
            id: snowflake(self.created_ms(), WORKER_EMOJI, n),
            name: numbered(EMOJI_NAMES, n, "emoji"),
        })
    }

    /// Members Discord counts: owner, stored members and the bot, or
    /// `large_members`.
    pub(crate) fn member_count(&self) -> u32 {
        self.large_members.unwrap_or(self.members.len() as u32 + 2)
    }

    /// The `n`th member of a large guild past the stored ones (owner and
    /// stored members are 0..=members.len()): made from `n` alone.
    pub(crate) fn virtual_member(&self, n: u32) -> User {
        let n = u64::from(n);
        User {
            id: snowflake(
                self.created_ms(),
                WORKER_FIRST_VIRTUAL_MEMBER + n / 4096,
                n % 4096,
            ),
            username: format!("member{}x{n}", self.index),
            joined_ms: self.created_ms() + n * 1000,
        }
    }

    /// A member by id (not the bot): stored, or virtual in a large guild.
    pub(crate) fn find_member(&self, id: u64) -> Option<User> {
        if let Some(user) = self.user(id) {
            return Some(user.clone());
        }
        let count = self.large_members?;
        let worker = (id >> 17) & 0x1F;
        if unix_ms_of(id) != self.created_ms() || worker < WORKER_FIRST_VIRTUAL_MEMBER {
            return None;
        }
        let n = u32::try_from((worker - WORKER_FIRST_VIRTUAL_MEMBER) * 4096 + (id & 0xFFF)).ok()?;
        let stored = self.members.len() as u32 + 1;
        let user = self.virtual_member(n);
        (n < count.saturating_sub(stored + 1) && user.id == id).then_some(user)
    }

    /// Every member of the guild besides the bot: owner, stored members,
    /// then (large guilds) virtual ones up to `member_count - 1`.
    pub(crate) fn all_members(&self) -> impl Iterator<Item = User> + '_ {
        let stored = std::iter::once(&self.owner).chain(&self.members).cloned();
        let stored_count = self.members.len() as u32 + 1;
        let virtual_count = self
            .large_members
            .map_or(0, |count| count.saturating_sub(stored_count + 1));
        stored.chain((0..virtual_count).map(|n| self.virtual_member(n)))
    }

    pub(crate) fn info(&self) -> GuildInfo {
        GuildInfo {
            id: self.id,
            shard: self.shard,
            name: self.name.clone(),
            owner_id: self.owner.id,
            channel_ids: (0..self.channel_count)
                .map(|p| self.channel_id(p))
                .collect(),
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
    /// Creation millisecond of guild 0; guild `i` was created at
    /// `guild_base + i`, so lookups by guild or channel id are arithmetic.
    guild_base: u64,
    by_shard: Vec<Vec<u32>>,
    /// Guilds the bot was removed from (GUILD_DELETE by the mix).
    removed: Vec<AtomicBool>,
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
        let shape = &config.shape;
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
                channel_count: config.channels_per_guild,
                extra_roles: shape.roles.saturating_sub(3),
                emojis: shape.emojis,
                large_members: None,
                index: index as u32,
                moderator_role_id: snowflake(created_ms, WORKER_ROLE, 0),
                bot_role_id: snowflake(created_ms, WORKER_ROLE, 1),
                bot_joined_ms: created_ms + rng.random_range(0..60 * 86_400_000),
            };
            // Drawn only when asked for, so worlds without large guilds
            // stay what they were.
            let mut guild = guild;
            if shape.large_share > 0.0 && rng.random_bool(shape.large_share) {
                guild.large_members = Some(shape.large_members);
            }
            by_shard[guild.shard as usize].push(index as u32);
            guilds.push(guild);
        }
        let removed = (0..guilds.len()).map(|_| AtomicBool::new(false)).collect();
        Self {
            bot,
            guilds,
            guild_base,
            by_shard,
            removed,
        }
    }

    /// Marks a guild removed: absent from later READYs and GUILD_CREATEs,
    /// no more mix events. False when it already was.
    pub(crate) fn remove(&self, guild: &Guild) -> bool {
        !self.removed[guild.index as usize].swap(true, Ordering::Relaxed)
    }

    /// The bot was added back: the guild is in READYs and the mix again. False when it
    /// was not removed.
    pub(crate) fn restore(&self, guild: &Guild) -> bool {
        self.removed[guild.index as usize].swap(false, Ordering::Relaxed)
    }

    pub(crate) fn is_removed(&self, guild: &Guild) -> bool {
        self.removed[guild.index as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn guilds(&self) -> &[Guild] {
        &self.guilds
    }

    /// The guild created in the same millisecond as `id`, if any.
    fn guild_at(&self, id: u64) -> Option<&Guild> {
        let index = unix_ms_of(id).checked_sub(self.guild_base)?;
        self.guilds.get(usize::try_from(index).ok()?)
    }

    pub(crate) fn guild(&self, id: u64) -> Option<&Guild> {
        self.guild_at(id).filter(|g| g.id == id)
    }

    pub(crate) fn guild_of_channel(&self, channel_id: u64) -> Option<&Guild> {
        self.guild_at(channel_id)
            .filter(|g| g.has_channel(channel_id))
    }

    /// The shard's guilds the bot is still in.
    pub(crate) fn guilds_of_shard(&self, shard: u32) -> impl Iterator<Item = &Guild> {
        self.by_shard
            .get(shard as usize)
            .into_iter()
            .flatten()
            .map(|&i| &self.guilds[i as usize])
            .filter(|g| !self.is_removed(g))
    }

    /// The guilds a session identified with `[shard, total]` gets, the bot
    /// still in them; any shard count, not only the world's.
    pub(crate) fn guilds_of_layout(&self, shard: u32, total: u32) -> Vec<&Guild> {
        if total as usize == self.by_shard.len() {
            return self.guilds_of_shard(shard).collect();
        }
        self.guilds
            .iter()
            .filter(|g| shard_of(g.id, total) == shard && !self.is_removed(g))
            .collect()
    }

    /// How many guilds `[shard, total]` would hold (removed ones included,
    /// as the 2,500 limit is judged on the bot's guilds at IDENTIFY).
    pub(crate) fn layout_guild_count(&self, shard: u32, total: u32) -> usize {
        if total as usize == self.by_shard.len() {
            return self.shard_guild_count(shard);
        }
        self.guilds
            .iter()
            .filter(|g| shard_of(g.id, total) == shard)
            .count()
    }

    pub(crate) fn shard_guild_count(&self, shard: u32) -> usize {
        self.by_shard.get(shard as usize).map_or(0, Vec::len)
    }

    /// The `n`th guild of a shard, for uniform random picks.
    pub(crate) fn shard_guild(&self, shard: u32, n: usize) -> Option<&Guild> {
        let index = *self.by_shard.get(shard as usize)?.get(n)?;
        Some(&self.guilds[index as usize])
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
            for channel in guild.channels() {
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
