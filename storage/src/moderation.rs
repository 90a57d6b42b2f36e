//! Moderation cases: one row per action a moderator (or the bot for them) took, numbered per
//! guild by a compare-and-set counter so that a number is never given twice, also when two
//! nodes act for the guild around a shard move.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// Longest reason a case keeps, in characters (Discord's audit-log reason limit).
pub const CASE_REASON_MAX_CHARS: usize = 512;

/// A guild's moderation settings, part of its [`GuildConfig`](crate::GuildConfig).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModerationConfig {
    /// Whether the member acted on gets a DM saying what was done and why.
    pub dm_members: bool,
    /// The escalation ladder: after a warning, the step whose `warns` equals the member's
    /// warnings within its window is taken, by the bot.
    pub escalation: Vec<EscalationStep>,
}

/// One rung of the escalation ladder ("3 warnings in 7 days: a 1 hour timeout").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationStep {
    pub warns: u32,
    pub within_days: u32,
    /// `timeout`, `kick` or `ban`.
    pub action: String,
    /// The timeout's length, or a temporary ban's; `None` for a kick or a permanent ban.
    #[serde(default)]
    pub duration_secs: Option<u64>,
}

/// One moderation action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub guild_id: u64,
    /// Per guild, from 1; given by the store in [`ModerationRepo::create_case`].
    pub number: u64,
    /// What was done: `warn`, `timeout`, `kick`, `ban`, `unban`, `purge`, …
    pub action: String,
    pub moderator_id: u64,
    /// The member acted on; `None` for channel actions (slowmode, lock).
    pub target_id: Option<u64>,
    /// The channel acted on, for channel actions and purges.
    #[serde(default)]
    pub channel_id: Option<u64>,
    /// At most [`CASE_REASON_MAX_CHARS`] characters; may be empty.
    pub reason: String,
    /// For temporary actions: how long (the timeout, the temporary ban).
    #[serde(default)]
    pub duration_ms: Option<u64>,
    pub at: Timestamp,
}

/// Moderation cases of every guild.
#[async_trait]
pub trait ModerationRepo: Send + Sync + 'static {
    /// Stores `case` under its guild's next number and returns the number (`case.number` is
    /// ignored). Two callers never get the same number, whichever node they run on.
    async fn create_case(&self, case: &Case) -> Result<u64, StorageError>;

    async fn case(&self, guild_id: u64, number: u64) -> Result<Option<Case>, StorageError>;

    /// The guild's cases about `target_id`, newest first, at most `limit`.
    async fn cases_about(
        &self,
        guild_id: u64,
        target_id: u64,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError>;

    /// The guild's cases numbered below `before` (all if `None`), newest first, at most
    /// `limit`: pages of the case list.
    async fn cases(
        &self,
        guild_id: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Case>, StorageError>;

    /// Replaces a case's reason; `false` if there is no such case. The caller checks the
    /// length.
    async fn set_case_reason(
        &self,
        guild_id: u64,
        number: u64,
        reason: &str,
    ) -> Result<bool, StorageError>;
}

/// The users a case names (its refs in `user_refs`).
pub(crate) fn case_users(case: &Case) -> Vec<u64> {
    let mut users = vec![case.moderator_id];
    users.extend(case.target_id.filter(|&target| target != case.moderator_id));
    users
}

/// The index entry of a case.
pub(crate) fn case_ref(case: &Case) -> crate::row_ref::RowRef {
    crate::row_ref::RowRef::Case {
        guild: case.guild_id,
        number: case.number,
    }
}

/// Until when a case is kept ([`Retention::cases`](crate::Retention) from its action).
pub(crate) fn case_expiry(case: &Case, retention: &crate::Retention) -> Timestamp {
    case.at.saturating_add(retention.cases)
}

/// Refuses a case the store must not keep.
pub(crate) fn check_case(case: &Case) -> Result<(), StorageError> {
    check_reason(&case.reason)?;
    if case.action.is_empty() || case.action.len() > 32 {
        return Err(StorageError::Invalid(
            "a case's action has 1 to 32 bytes".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_reason(reason: &str) -> Result<(), StorageError> {
    if reason.chars().count() > CASE_REASON_MAX_CHARS {
        return Err(StorageError::Invalid(format!(
            "a case's reason has at most {CASE_REASON_MAX_CHARS} characters"
        )));
    }
    Ok(())
}
