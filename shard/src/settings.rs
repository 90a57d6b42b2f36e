use std::fmt;
use std::time::Duration;

use twilight_gateway::{EventTypeFlags, Intents};

use crate::ShardError;

/// The bot token. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

impl BotToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the gateway and REST clients only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Discord's identify limits, as `GET /gateway/bot` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentifyLimits {
    /// Shards that may identify in the same 5 s window (one per bucket
    /// `shard_id % max_concurrency`).
    pub max_concurrency: u16,
    /// IDENTIFYs left in the current daily window.
    pub remaining: u32,
    /// Time until the daily window resets.
    pub reset_after: Duration,
    /// IDENTIFYs per daily window.
    pub total: u32,
}

/// Everything a node needs to run its shards.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    pub token: BotToken,
    pub intents: Intents,
    /// Only these event types are deserialised; the rest are skipped by twilight cheaply.
    pub event_types: EventTypeFlags,
    /// `ws://` or `wss://` URL to connect to instead of Discord's (the simulator); `None`
    /// means Discord itself.
    pub gateway_url: Option<String>,
    /// Total number of shards of the bot.
    pub shard_count: u32,
    /// The shards this node runs, each `< shard_count`.
    pub shard_ids: Vec<u32>,
    pub identify: IdentifyLimits,
}

impl GatewaySettings {
    pub(crate) fn validate(&self) -> Result<(), ShardError> {
        if self.shard_count == 0 {
            return Err(ShardError::Settings(
                "shard_count must be at least 1".into(),
            ));
        }
        if let Some(bad) = self.shard_ids.iter().find(|&&id| id >= self.shard_count) {
            return Err(ShardError::Settings(format!(
                "shard {bad} is out of range for {} shards",
                self.shard_count
            )));
        }
        if self.identify.max_concurrency == 0 {
            return Err(ShardError::Settings(
                "max_concurrency must be at least 1".into(),
            ));
        }
        if self.identify.remaining > self.identify.total {
            return Err(ShardError::Settings(
                "identify budget: remaining exceeds total".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let settings = GatewaySettings {
            token: BotToken::new("super-secret-token"),
            intents: Intents::GUILDS,
            event_types: EventTypeFlags::all(),
            gateway_url: None,
            shard_count: 1,
            shard_ids: vec![0],
            identify: IdentifyLimits {
                max_concurrency: 1,
                remaining: 1000,
                reset_after: Duration::ZERO,
                total: 1000,
            },
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("super-secret-token"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
