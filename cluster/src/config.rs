//! The `protonn` configuration: one TOML file, every field defaulted, unknown fields rejected.
//! Secrets never live here: the bot token comes from the `DISCORD_TOKEN` environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use protonn_sim::SimConfig;
use serde::Deserialize;

use crate::ConfigError;

/// Environment variable holding the bot token.
pub(crate) const TOKEN_ENV: &str = "DISCORD_TOKEN";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub discord: DiscordConfig,
    pub storage: StorageConfig,
    pub ops: OpsConfig,
    /// The embedded simulator of `protonn demo` and `protonn sim`.
    pub sim: SimConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            discord: DiscordConfig::default(),
            storage: StorageConfig::default(),
            ops: OpsConfig::default(),
            sim: demo_simulator(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscordConfig {
    /// Address (`host:port`) of a simulator to use instead of Discord, for `protonn run`.
    pub simulator: Option<String>,
    /// Total shard count; Discord's recommendation when unset.
    pub shards: Option<u32>,
    /// Shards this node runs; all of them when unset.
    pub shard_ids: Option<Vec<u32>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded database.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The demo's world: 4 shards of 500 guilds with steady chat and some commands. Four shards
/// identify in one 5 s window (max_concurrency 4), so the demo is ready within seconds.
fn demo_simulator() -> SimConfig {
    SimConfig {
        shards: 4,
        max_concurrency: 4,
        guilds: 2_000,
        messages_per_sec: 50.0,
        command_share: 0.1,
        ..SimConfig::default()
    }
}

impl Config {
    /// The embedded defaults, or the file at `path` over them.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|err| match err {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates a TOML document.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: err.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| ConfigError::Invalid {
            field,
            message: message.to_owned(),
        };
        let simulator = self.discord.simulator.as_deref();
        if simulator.is_some_and(|addr| addr.contains("://") || !addr.contains(':')) {
            return Err(invalid(
                "discord.simulator",
                "expected host:port, such as 127.0.0.1:7878",
            ));
        }
        if self.discord.shards == Some(0) {
            return Err(invalid("discord.shards", "must be at least 1"));
        }
        let total = self.discord.shards;
        let ids = self.discord.shard_ids.as_deref().unwrap_or_default();
        if total.is_some_and(|total| ids.iter().any(|&id| id >= total)) {
            return Err(invalid(
                "discord.shard_ids",
                "every shard id must be below discord.shards",
            ));
        }
        if self.discord.shard_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("discord.shard_ids", "must name at least one shard"));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        self.sim.validate().map_err(|err| ConfigError::Invalid {
            field: "sim",
            message: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_the_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.storage.data_dir, PathBuf::from("data"));
        assert_eq!(config.ops.listen.port(), 9464);
        assert_eq!(config.sim.guilds, 2_000, "demo world by default");
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let err = Config::parse("[discord]\nshard = 4\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard"), "{err}");
        let err = Config::parse("[storage]\ndatadir = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("datadir"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("[discord]\nshards = 0\n", "discord.shards"),
            (
                "[discord]\nshards = 2\nshard_ids = [2]\n",
                "discord.shard_ids",
            ),
            ("[discord]\nsimulator = \"ws://x\"\n", "discord.simulator"),
            ("[ops]\nlisten = \"nowhere\"\n", "listen"),
            ("[discord]\nshards = \"four\"\n", "shards"),
        ];
        for (text, field) in cases {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?} gave {err}");
        }
    }

    #[test]
    fn the_token_is_not_a_config_field() {
        let err = Config::parse("[discord]\ntoken = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
