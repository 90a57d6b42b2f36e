//! What the simulated Discord looks like: world size, gateway timing, traffic.

use std::fmt;

use serde::Deserialize;

use crate::error::SimError;

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
    /// `session_start_limit.total` reported by `GET /gateway/bot`.
    pub session_start_total: u32,
}

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
        Ok(())
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
    }
}
