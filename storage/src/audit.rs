use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StorageError, Timestamp};

/// One admin action in a guild: who did what to whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub guild_id: u64,
    /// When the action happened; retention counts from here.
    pub at: Timestamp,
    /// Unique within the guild and millisecond (a snowflake of the interaction, say); makes
    /// re-appending the same entry idempotent.
    pub id: u64,
    /// The user who acted.
    pub actor_id: u64,
    /// The user acted upon, if any.
    pub target_id: Option<u64>,
    /// A short machine name such as `config.set` or `member.ban`.
    pub action: String,
    /// Free text or JSON with the details.
    pub details: String,
}

/// The audit log: append-only, listed per guild by time, kept for [`Retention::audit`].
///
/// [`Retention::audit`]: crate::Retention::audit
#[async_trait]
pub trait AuditRepo: Send + Sync + 'static {
    /// Appends all `entries` durably (one commit / one batch per call where the backend
    /// allows). Entries already past retention are dropped. Re-appending an entry with the
    /// same `(guild_id, at, id)` overwrites it, so retries are safe.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StorageError>;

    /// Entries of `guild_id` with `from <= at < to`, oldest first, at most `limit`.
    async fn list_audit(
        &self,
        guild_id: u64,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError>;
}
