//! What the simulated Discord looks like: world size, gateway timing, traffic.

use std::fmt;

use serde::{Deserialize, Serialize};
use twilight_model::gateway::Intents;

use crate::error::SimError;
use crate::faults::{Fault, RandomFaults};
use crate::ratelimit::{RandomRestFaults, RestLimits};

/// Simulator settings. Every field has a default, so a config file names only
/// what it changes; unknown fields are rejected so typos do not pass silently.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Bot token the simulator accepts; clients may send it with or without
    /// the `Bot ` prefix.
    pub token: String,
    /// Shard count recommended by `GET /gateway/bot` and required in IDENTIFY.
    pub shards: u32,
    /// `session_start_limit.max_concurrency` reported by `GET /gateway/bot`.
    pub max_concurrency: u32,
    /// Number of generated guilds.
    pub guilds: u32,
    /// Text channels per guild (at least one).
    pub channels_per_guild: u32,
    /// Member users per guild besides the owner; they author the traffic.
    pub members_per_guild: u32,
    /// HELLO's `heartbeat_interval`.
    pub heartbeat_interval_ms: u64,
    /// Background MESSAGE_CREATE rate across all guilds; 0 disables traffic.
    pub messages_per_sec: f64,
    /// Fraction of background messages that are bot commands.
    pub command_share: f64,
    /// Seed of the world generator and the traffic generator.
    pub seed: u64,
    /// Records kept per ledger list; counters stay exact past it.
    pub ledger_capacity: usize,
    /// `session_start_limit.total`: IDENTIFYs allowed per 24 h (scaled).
    pub session_start_total: u32,
    /// Multiplies every Discord time window (identify 5 s, session starts
    /// 24 h, gateway sends 60 s, session expiry): 0.01 makes the identify
    /// window 50 ms. 1.0 is real time. Heartbeat intervals are not scaled.
    pub time_scale: f64,
    /// Real (unscaled) milliseconds an IDENTIFY may arrive before its
    /// bucket's window ends and still pass, for the jitter between a
    /// client's queue and the simulator; capped at a tenth of the window.
    pub identify_grace_ms: u64,
    /// What an IDENTIFY gets once `session_start_total` is spent.
    pub session_limit_action: SessionLimitAction,
    /// A shard with more guilds than this is refused with 4011 (sharding
    /// required), as Discord does past 2,500.
    pub max_guilds_per_shard: u32,
    /// Privileged intents enabled for the application (`GUILD_MEMBERS`,
    /// `GUILD_PRESENCES`, `MESSAGE_CONTENT`); an IDENTIFY asking for another
    /// one is closed with 4014.
    pub privileged_intents: Vec<String>,
    /// How long (Discord time, scaled) a session stays resumable without a
    /// connection; Discord says "a few minutes".
    pub session_ttl_ms: u64,
    /// Replay buffer bound in events per session; the age bound is
    /// `session_ttl_ms`.
    pub replay_events: usize,
    /// Faults at random.
    pub random_faults: RandomFaults,
    /// REST rate limits and the invalid-request ban (windows scaled by
    /// `time_scale`); Discord's by default.
    pub rest_limits: RestLimits,
    /// REST faults (429s, 5xx) at random; off by default.
    pub random_rest_faults: RandomRestFaults,
    /// Roles, emojis and large guilds, beyond `channels_per_guild` and
    /// `members_per_guild`.
    pub shape: GuildShape,
    /// A weighted mix of gateway events at a set rate; off by default
    /// (`messages_per_sec` is the older, messages-only traffic).
    pub mix: EventMix,
}

/// What each guild holds besides its channels and stored members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuildShape {
    /// Roles per guild, @everyone, Moderator and the bot's role included
    /// (at least 3).
    pub roles: u32,
    /// Custom emojis per guild.
    pub emojis: u32,
    /// Share of guilds (0..=1, chosen from the seed) that are large: a
    /// `member_count` of `large_members`, above any session's IDENTIFY
    /// `large_threshold`, so GUILD_CREATE says `large: true` and carries
    /// only the online (stored) members; op 8 answers with every member in
    /// GUILD_MEMBERS_CHUNKs.
    pub large_share: f64,
    /// `member_count` of a large guild; above 250 (the largest
    /// `large_threshold` a session may ask for), at most 100,000 (member ids
    /// come from the guild's millisecond).
    pub large_members: u32,
}

/// The largest `large_threshold` IDENTIFY accepts: a large guild must be
/// large for every session.
const MAX_LARGE_THRESHOLD: u32 = 250;

impl Default for GuildShape {
    fn default() -> Self {
        Self {
            roles: 3,
            emojis: 0,
            large_share: 0.0,
            large_members: 5000,
        }
    }
}

/// Background events: `events_per_sec` in total plus `per_shard_per_sec`
/// for every configured shard, each event's kind drawn from `weights`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventMix {
    /// Events per second over all shards.
    pub events_per_sec: f64,
    /// Events per second per configured shard, added to `events_per_sec`.
    pub per_shard_per_sec: f64,
    /// Content length of a generated MESSAGE_CREATE/UPDATE in bytes
    /// (BENCHMARKS.md uses ~1 KB messages); 0 keeps short chat lines.
    pub content_bytes: u32,
    /// Fraction of generated MESSAGE_CREATEs that are bot commands.
    pub command_share: f64,
    /// Relative weight of each event kind.
    pub weights: EventWeights,
}

impl Default for EventMix {
    fn default() -> Self {
        Self {
            events_per_sec: 0.0,
            per_shard_per_sec: 0.0,
            content_bytes: 0,
            command_share: 0.05,
            weights: EventWeights::default(),
        }
    }
}

impl EventMix {
    /// Events per second in total for `shards` shards.
    pub(crate) fn rate(&self, shards: u32) -> f64 {
        self.events_per_sec + self.per_shard_per_sec * f64::from(shards)
    }
}

/// Relative weights of the mix's event kinds; messages only by default.
/// An event whose intent the shard's session lacks is not sent (Discord
/// would not send it either), so its share is skipped, not redistributed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventWeights {
    /// MESSAGE_CREATE (GUILD_MESSAGES), `mix.command_share` of them `!ping`.
    pub message_create: f64,
    /// MESSAGE_UPDATE, a whole edited message (GUILD_MESSAGES).
    pub message_update: f64,
    /// MESSAGE_DELETE (GUILD_MESSAGES).
    pub message_delete: f64,
    /// GUILD_MEMBER_ADD of a new user (GUILD_MEMBERS, privileged).
    pub guild_member_add: f64,
    /// GUILD_MEMBER_REMOVE of a stored member (GUILD_MEMBERS); the world's
    /// member lists stay as generated.
    pub guild_member_remove: f64,
    /// MESSAGE_REACTION_ADD, a guild emoji or a unicode one
    /// (GUILD_MESSAGE_REACTIONS).
    pub message_reaction_add: f64,
    /// TYPING_START (GUILD_MESSAGE_TYPING).
    pub typing_start: f64,
    /// PRESENCE_UPDATE (GUILD_PRESENCES, privileged).
    pub presence_update: f64,
    /// GUILD_UPDATE with the guild object (GUILDS).
    pub guild_update: f64,
    /// INTERACTION_CREATE of `/ping`, issued like
    /// [`SimHandle::send_command_interaction`](crate::SimHandle::send_command_interaction).
    pub interaction_create: f64,
    /// The bot removed from a guild: GUILD_DELETE, then nothing more from
    /// that guild (nor in later READYs).
    pub guild_delete: f64,
}

impl Default for EventWeights {
    fn default() -> Self {
        Self {
            message_create: 1.0,
            message_update: 0.0,
            message_delete: 0.0,
            guild_member_add: 0.0,
            guild_member_remove: 0.0,
            message_reaction_add: 0.0,
            typing_start: 0.0,
            presence_update: 0.0,
            guild_update: 0.0,
            interaction_create: 0.0,
            guild_delete: 0.0,
        }
    }
}

impl EventWeights {
    /// BENCHMARKS.md's B1 mix: 70 % MESSAGE_CREATE, 20 % small events
    /// (typing, reactions, deletes, presences), 10 % updates and the rest.
    pub fn benchmark() -> Self {
        Self {
            message_create: 70.0,
            message_update: 5.0,
            message_delete: 4.0,
            guild_member_add: 1.0,
            guild_member_remove: 1.0,
            message_reaction_add: 6.0,
            typing_start: 6.0,
            presence_update: 4.0,
            guild_update: 1.0,
            interaction_create: 2.0,
            guild_delete: 0.0,
        }
    }

    pub(crate) fn as_array(&self) -> [f64; 11] {
        [
            self.message_create,
            self.message_update,
            self.message_delete,
            self.guild_member_add,
            self.guild_member_remove,
            self.message_reaction_add,
            self.typing_start,
            self.presence_update,
            self.guild_update,
            self.interaction_create,
            self.guild_delete,
        ]
    }
}

/// What happens to an IDENTIFY once the daily session start budget is spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimitAction {
    /// What Discord documents: "all active sessions for the app will be
    /// terminated, the bot token will be reset". Every live connection is
    /// closed with 4004 and the token replaced, so every later IDENTIFY,
    /// RESUME and REST call fails until [`SimHandle::set_token`](crate::SimHandle::set_token).
    #[default]
    ResetToken,
    /// A gentler stand-in: op 9 `false` to the IDENTIFY, nothing else.
    InvalidSession,
}

/// The privileged intents by name.
pub(crate) fn privileged_intent(name: &str) -> Option<Intents> {
    match name {
        "GUILD_MEMBERS" => Some(Intents::GUILD_MEMBERS),
        "GUILD_PRESENCES" => Some(Intents::GUILD_PRESENCES),
        "MESSAGE_CONTENT" => Some(Intents::MESSAGE_CONTENT),
        _ => None,
    }
}

pub(crate) const PRIVILEGED_INTENTS: Intents = Intents::GUILD_MEMBERS
    .union(Intents::GUILD_PRESENCES)
    .union(Intents::MESSAGE_CONTENT);

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            token: "sim-token".to_owned(),
            shards: 4,
            max_concurrency: 1,
            guilds: 2000,
            channels_per_guild: 3,
            members_per_guild: 5,
            heartbeat_interval_ms: 41_250,
            messages_per_sec: 0.0,
            command_share: 0.05,
            seed: 42,
            ledger_capacity: 1_000_000,
            session_start_total: 1000,
            time_scale: 1.0,
            identify_grace_ms: 250,
            session_limit_action: SessionLimitAction::default(),
            max_guilds_per_shard: 2500,
            privileged_intents: vec!["MESSAGE_CONTENT".to_owned()],
            session_ttl_ms: 180_000,
            replay_events: 10_000,
            random_faults: RandomFaults::default(),
            rest_limits: RestLimits::default(),
            random_rest_faults: RandomRestFaults::default(),
            shape: GuildShape::default(),
            mix: EventMix::default(),
        }
    }
}

/// Discord allows at most 500 channels per guild; channel ids use the
/// snowflake increment, so the bound also keeps them unique.
const MAX_CHANNELS_PER_GUILD: u32 = 500;

/// GUILD_CREATE carries every member, and the world keeps every user: more
/// than this per guild is a memory problem, not a test.
const MAX_MEMBERS_PER_GUILD: u32 = 1000;

/// Discord's most for a guild at the highest boost level is 250 of each
/// kind; 4000 leaves room and keeps emoji ids unique (12-bit increment).
const MAX_EMOJIS: u32 = 4000;

/// Virtual members of a large guild take ids from 28 snowflake workers of
/// the guild's millisecond: 28 × 4096 ids.
const MAX_LARGE_MEMBERS: u32 = 100_000;

/// Guild ids are consecutive milliseconds; a year of them is far more than
/// any test needs and keeps ids inside realistic dates.
const MAX_GUILDS: u32 = 10_000_000;

impl SimConfig {
    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<(), SimError> {
        fn invalid(field: &'static str, reason: &str) -> Result<(), SimError> {
            Err(SimError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        }
        if self.token.is_empty() {
            return invalid("token", "must not be empty");
        }
        if self.shards == 0 {
            return invalid("shards", "must be at least 1");
        }
        // twilight reads max_concurrency as a u16.
        if self.max_concurrency == 0 || self.max_concurrency > u32::from(u16::MAX) {
            return invalid("max_concurrency", "must be between 1 and 65535");
        }
        if self.guilds == 0 || self.guilds > MAX_GUILDS {
            return invalid("guilds", "must be between 1 and 10000000");
        }
        if self.channels_per_guild == 0 || self.channels_per_guild > MAX_CHANNELS_PER_GUILD {
            return invalid("channels_per_guild", "must be between 1 and 500");
        }
        if self.members_per_guild > MAX_MEMBERS_PER_GUILD {
            return invalid("members_per_guild", "must be at most 1000");
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms", "must be at least 1");
        }
        if !self.messages_per_sec.is_finite() || self.messages_per_sec < 0.0 {
            return invalid("messages_per_sec", "must be a finite number >= 0");
        }
        if !(0.0..=1.0).contains(&self.command_share) {
            return invalid("command_share", "must be between 0 and 1");
        }
        if self.ledger_capacity == 0 {
            return invalid("ledger_capacity", "must be at least 1");
        }
        if !self.time_scale.is_finite() || self.time_scale <= 0.0 || self.time_scale > 1000.0 {
            return invalid("time_scale", "must be a number in (0, 1000]");
        }
        if self.max_guilds_per_shard == 0 {
            return invalid("max_guilds_per_shard", "must be at least 1");
        }
        if let Some(name) = self
            .privileged_intents
            .iter()
            .find(|name| privileged_intent(name).is_none())
        {
            return invalid(
                "privileged_intents",
                &format!("`{name}` is not one of GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT"),
            );
        }
        if self.session_ttl_ms == 0 {
            return invalid("session_ttl_ms", "must be at least 1");
        }
        if self.replay_events == 0 {
            return invalid("replay_events", "must be at least 1");
        }
        let faults = &self.random_faults;
        if !faults.per_minute.is_finite() || faults.per_minute < 0.0 {
            return invalid("random_faults.per_minute", "must be a finite number >= 0");
        }
        if faults
            .faults
            .iter()
            .any(|f| matches!(f, Fault::Close { code } if !(1000..=4999).contains(code)))
        {
            return invalid("random_faults.faults", "close codes must be in 1000..=4999");
        }
        let shape = &self.shape;
        if !(3..=250).contains(&shape.roles) {
            return invalid("shape.roles", "must be between 3 and 250");
        }
        if shape.emojis > MAX_EMOJIS {
            return invalid("shape.emojis", "must be at most 4000");
        }
        if !(0.0..=1.0).contains(&shape.large_share) {
            return invalid("shape.large_share", "must be between 0 and 1");
        }
        if shape.large_members <= MAX_LARGE_THRESHOLD || shape.large_members > MAX_LARGE_MEMBERS {
            return invalid(
                "shape.large_members",
                "must be above 250 (the largest large_threshold) and at most 100000",
            );
        }
        let mix = &self.mix;
        if !mix.events_per_sec.is_finite() || mix.events_per_sec < 0.0 {
            return invalid("mix.events_per_sec", "must be a finite number >= 0");
        }
        if !mix.per_shard_per_sec.is_finite() || mix.per_shard_per_sec < 0.0 {
            return invalid("mix.per_shard_per_sec", "must be a finite number >= 0");
        }
        if mix.content_bytes > 2000 {
            return invalid("mix.content_bytes", "must be at most 2000");
        }
        if !(0.0..=1.0).contains(&mix.command_share) {
            return invalid("mix.command_share", "must be between 0 and 1");
        }
        let weights = mix.weights.as_array();
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0)
            || (mix.rate(self.shards) > 0.0 && weights.iter().sum::<f64>() <= 0.0)
        {
            return invalid("mix.weights", "must be finite, >= 0, and not all 0");
        }
        if let Some((field, reason)) = self.rest_limits.invalid() {
            return invalid(field, reason);
        }
        if let Some((field, reason)) = self.random_rest_faults.invalid() {
            return invalid(field, &reason);
        }
        Ok(())
    }

    /// The privileged intents the application may use.
    pub(crate) fn enabled_privileged(&self) -> Intents {
        self.privileged_intents
            .iter()
            .filter_map(|name| privileged_intent(name))
            .fold(Intents::empty(), |all, one| all | one)
    }
}

impl fmt::Debug for SimConfig {
    // By hand, so the token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("token", &"<redacted>")
            .field("shards", &self.shards)
            .field("max_concurrency", &self.max_concurrency)
            .field("guilds", &self.guilds)
            .field("channels_per_guild", &self.channels_per_guild)
            .field("members_per_guild", &self.members_per_guild)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("messages_per_sec", &self.messages_per_sec)
            .field("command_share", &self.command_share)
            .field("seed", &self.seed)
            .field("ledger_capacity", &self.ledger_capacity)
            .field("session_start_total", &self.session_start_total)
            .field("time_scale", &self.time_scale)
            .field("identify_grace_ms", &self.identify_grace_ms)
            .field("session_limit_action", &self.session_limit_action)
            .field("max_guilds_per_shard", &self.max_guilds_per_shard)
            .field("privileged_intents", &self.privileged_intents)
            .field("session_ttl_ms", &self.session_ttl_ms)
            .field("replay_events", &self.replay_events)
            .field("random_faults", &self.random_faults)
            .field("rest_limits", &self.rest_limits)
            .field("random_rest_faults", &self.random_rest_faults)
            .field("shape", &self.shape)
            .field("mix", &self.mix)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &SimConfig) -> &'static str {
        match config.validate() {
            Err(SimError::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        SimConfig::default().validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let base = SimConfig::default();
        let cases: Vec<(SimConfig, &str)> = vec![
            (
                SimConfig {
                    shards: 0,
                    ..base.clone()
                },
                "shards",
            ),
            (
                SimConfig {
                    max_concurrency: 0,
                    ..base.clone()
                },
                "max_concurrency",
            ),
            (
                SimConfig {
                    guilds: 0,
                    ..base.clone()
                },
                "guilds",
            ),
            (
                SimConfig {
                    channels_per_guild: 0,
                    ..base.clone()
                },
                "channels_per_guild",
            ),
            (
                SimConfig {
                    messages_per_sec: f64::NAN,
                    ..base.clone()
                },
                "messages_per_sec",
            ),
            (
                SimConfig {
                    messages_per_sec: -1.0,
                    ..base.clone()
                },
                "messages_per_sec",
            ),
            (
                SimConfig {
                    command_share: 1.5,
                    ..base.clone()
                },
                "command_share",
            ),
            (
                SimConfig {
                    command_share: -0.1,
                    ..base.clone()
                },
                "command_share",
            ),
            (
                SimConfig {
                    time_scale: 0.0,
                    ..base.clone()
                },
                "time_scale",
            ),
            (
                SimConfig {
                    privileged_intents: vec!["GUILDS".into()],
                    ..base.clone()
                },
                "privileged_intents",
            ),
            (
                SimConfig {
                    random_faults: RandomFaults {
                        per_minute: -1.0,
                        ..RandomFaults::default()
                    },
                    ..base.clone()
                },
                "random_faults.per_minute",
            ),
            (
                SimConfig {
                    rest_limits: RestLimits {
                        ban_ms: 0,
                        ..RestLimits::default()
                    },
                    ..base.clone()
                },
                "rest_limits.ban_ms",
            ),
            (
                SimConfig {
                    random_rest_faults: RandomRestFaults {
                        share: f64::NAN,
                        ..RandomRestFaults::default()
                    },
                    ..base.clone()
                },
                "random_rest_faults.share",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(&config), field);
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn debug_redacts_the_token() {
        let config = SimConfig {
            token: "very-secret".into(),
            ..SimConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret"));
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn deserializes_with_defaults_and_rejects_unknown_fields() {
        let config: SimConfig = serde_json::from_str(r#"{"shards": 2}"#).unwrap();
        assert_eq!(config.shards, 2);
        assert_eq!(config.guilds, 2000);
        assert!(serde_json::from_str::<SimConfig>(r#"{"shardz": 2}"#).is_err());
        let config: SimConfig = serde_json::from_str(
            r#"{"time_scale": 0.01, "session_limit_action": "invalid_session",
                "random_faults": {"per_minute": 6, "faults": [{"kind": "reconnect"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            config.session_limit_action,
            SessionLimitAction::InvalidSession
        );
        assert_eq!(config.random_faults.faults, [Fault::Reconnect]);
        assert_eq!(config.enabled_privileged(), Intents::MESSAGE_CONTENT);
        assert_eq!(config.shape, GuildShape::default());
        assert_eq!(config.mix, EventMix::default());
        let config: SimConfig = serde_json::from_str(
            r#"{"shape": {"roles": 15, "emojis": 10, "large_share": 0.1},
                "mix": {"per_shard_per_sec": 5, "content_bytes": 1024,
                        "weights": {"typing_start": 2}}}"#,
        )
        .unwrap();
        assert_eq!((config.shape.roles, config.shape.emojis), (15, 10));
        assert_eq!(config.mix.weights.message_create, 1.0);
        assert_eq!(config.mix.rate(4), 20.0);
        config.validate().unwrap();
        assert!(serde_json::from_str::<SimConfig>(r#"{"shape": {"rolez": 2}}"#).is_err());
        let bad = SimConfig {
            shape: GuildShape {
                roles: 2,
                ..GuildShape::default()
            },
            ..SimConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("shape.roles")
        );
    }
}
