use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{AutomodConfig, ModerationConfig, StorageError, TicketsConfig};

/// The live configuration of one guild, as stored.
///
/// Every field has a default so that documents written by an older version still load, and
/// a guild that never configured anything needs no row at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuildConfig {
    /// Prefix of text commands (`!ping`).
    pub prefix: String,
    /// Locale of the bot's replies, a BCP 47 tag such as `en-US`.
    pub locale: String,
    /// Channel that receives moderation and audit notices, if any.
    pub log_channel: Option<u64>,
    /// Roles whose members may change the configuration, besides owners and members with
    /// Administrator or Manage Server.
    pub staff_roles: Vec<u64>,
    /// Moderation settings (DMs, the escalation ladder); the mod-log is `log_channel`.
    pub moderation: ModerationConfig,
    /// Automod's rules, checked by the actors when set (limits, patterns that compile).
    pub automod: AutomodConfig,
    /// Support tickets: their staff roles, the panel's categories, limits.
    pub tickets: TicketsConfig,
    /// Channel that receives the operators' service announcements; `None` (the default) is
    /// the guild's opt-out.
    pub announce_channel: Option<u64>,
}

impl Default for GuildConfig {
    fn default() -> Self {
        Self {
            prefix: "!".to_owned(),
            locale: "en-US".to_owned(),
            log_channel: None,
            staff_roles: Vec::new(),
            moderation: ModerationConfig::default(),
            automod: AutomodConfig::default(),
            tickets: TicketsConfig::default(),
            announce_channel: None,
        }
    }
}

/// A configuration together with the version it was saved as (1 for the first save).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedConfig {
    pub version: u64,
    pub config: GuildConfig,
}

/// How many past versions of a guild's config are kept for rollback. Older ones are pruned
/// on save, so a guild that edits its config all day keeps a bounded history.
pub const CONFIG_HISTORY_LEN: u64 = 50;

/// Guild configuration, one versioned document per guild plus its recent history.
#[async_trait]
pub trait GuildConfigRepo: Send + Sync + 'static {
    /// The guild's stored configuration, or `None` if it never saved one.
    async fn load(&self, guild_id: u64) -> Result<Option<VersionedConfig>, StorageError>;

    /// Saves `config` as version `expected + 1` if the stored version is still `expected`
    /// (0 when nothing is stored). Returns the new version once the write is durable; a lost
    /// race is [`StorageError::Conflict`] and changes nothing. The saved version also enters
    /// the history.
    async fn save(
        &self,
        guild_id: u64,
        expected: u64,
        config: &GuildConfig,
    ) -> Result<u64, StorageError>;

    /// Up to [`CONFIG_HISTORY_LEN`] past versions, newest first (the current one included).
    async fn history(&self, guild_id: u64) -> Result<Vec<VersionedConfig>, StorageError>;

    /// Restores the config saved as `to_version` by saving it again as `expected + 1`
    /// (compare-and-set like [`save`](Self::save)); history is never rewritten.
    /// [`StorageError::NotFound`] when that version is no longer in the history.
    async fn rollback(
        &self,
        guild_id: u64,
        expected: u64,
        to_version: u64,
    ) -> Result<u64, StorageError> {
        let target = self
            .history(guild_id)
            .await?
            .into_iter()
            .find(|entry| entry.version == to_version)
            .ok_or_else(|| {
                StorageError::NotFound(format!("version {to_version} of guild {guild_id} config"))
            })?;
        self.save(guild_id, expected, &target.config).await
    }
}
