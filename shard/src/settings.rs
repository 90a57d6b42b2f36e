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
    /// The shards this node starts with, each `< shard_count`.
    pub shard_ids: Vec<u32>,
    /// Discord's identify window (5 s); scales the 1–5 s pause after an invalid session.
    pub identify_window: Duration,
    /// Events a shard may hold for its forwarder. Past it, typing and presence events are
    /// shed and anything else pauses the shard's reading until there is room.
    pub buffer_capacity: usize,
    /// The lists of a GUILD_CREATE that are read; the others are skipped unread.
    pub guild_lists: GuildLists,
}

/// The lists of a GUILD_CREATE a shard reads. One it does not is skipped unread and left
/// empty in the event: in a READY burst, reading lists nothing keeps (channels, emojis) was a
/// third of the bot's parse (B3's profile). The guild's roles are always read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuildLists {
    /// The channels and the active threads.
    pub channels: bool,
    pub emojis: bool,
    pub members: bool,
    pub presences: bool,
    pub stickers: bool,
    pub voice_states: bool,
    pub stage_instances: bool,
    pub scheduled_events: bool,
}

impl GuildLists {
    /// Every list, as twilight reads a GUILD_CREATE.
    pub const ALL: Self = Self {
        channels: true,
        emojis: true,
        members: true,
        presences: true,
        stickers: true,
        voice_states: true,
        stage_instances: true,
        scheduled_events: true,
    };

    /// Whether the guild's key `key` is read (any key that is not a list is).
    pub(crate) fn reads(&self, key: &str) -> bool {
        match key {
            "channels" | "threads" => self.channels,
            "emojis" => self.emojis,
            "members" => self.members,
            "presences" => self.presences,
            "stickers" => self.stickers,
            "voice_states" => self.voice_states,
            "stage_instances" => self.stage_instances,
            "guild_scheduled_events" => self.scheduled_events,
            _ => true,
        }
    }
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
        if self.buffer_capacity == 0 {
            return Err(ShardError::Settings(
                "buffer_capacity must be at least 1".into(),
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
            identify_window: Duration::from_secs(5),
            buffer_capacity: 1,
            guild_lists: GuildLists::ALL,
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("super-secret-token"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
