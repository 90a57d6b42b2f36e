//! What the simulated Discord looks like: world size, gateway timing, traffic.

use std::fmt;

use serde::{Deserialize, Serialize};
use twilight_model::gateway::Intents;

use crate::error::SimError;
use crate::faults::{Fault, RandomFaults};
use crate::ratelimit::RestLimits;

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
    /// REST rate limits (windows scaled by `time_scale`); Discord's by
    /// default.
    pub rest_limits: RestLimits,
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
        }
    }
}

/// Discord allows at most 500 channels per guild; channel ids use the
/// snowflake increment, so the bound also keeps them unique.
const MAX_CHANNELS_PER_GUILD: u32 = 500;

/// GUILD_CREATE carries every member, and the world keeps every user: more
/// than this per guild is a memory problem, not a test.
const MAX_MEMBERS_PER_GUILD: u32 = 1000;

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
        if let Some(field) = self.rest_limits.invalid() {
            return invalid(field, "limit must be in 1..=65535 and per_ms at least 1");
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
    }
}
