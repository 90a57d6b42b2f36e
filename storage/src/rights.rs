use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    Account, AuditEntry, AutomodHit, BackfillProgress, BackfillTable, Case, DmDelivery, InboxEvent,
    PremiumSlot, PrivacyFlags, PrivacyRequest, Redemption, StorageError, Subscription, Ticket,
    TimerExport, Timestamp, TranscriptMessage, WebSessionExport, Workflow, WorkflowRun,
    WorkflowVariable,
};

/// Everything stored about one user, for the privacy centre's access and export requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserExport {
    pub user_id: u64,
    pub account: Option<Account>,
    /// Entries where the user acted or was acted upon.
    pub audit: Vec<AuditEntry>,
    /// Tickets the user opened.
    pub tickets: Vec<Ticket>,
    /// Transcript messages the user wrote, in any ticket.
    pub transcript_messages: Vec<TranscriptMessage>,
    /// Workflows the user authored.
    pub workflows: Vec<Workflow>,
    pub subscriptions: Vec<Subscription>,
    pub redemptions: Vec<Redemption>,
    /// Dashboard sessions still stored, oldest first, without their secrets.
    #[serde(default)]
    pub web_sessions: Vec<WebSessionExport>,
    /// The user's data-subject requests (privacy centre), oldest first.
    #[serde(default)]
    pub privacy_requests: Vec<PrivacyRequest>,
    /// The user's restriction, objection and consent choices, if they made any.
    #[serde(default)]
    pub privacy_flags: Option<PrivacyFlags>,
    /// When the user changed those choices within the last hour (what nodes learn them by).
    #[serde(default)]
    pub privacy_flag_changes: Vec<Timestamp>,
    /// The premium slots the user assigned to guilds, oldest first.
    #[serde(default)]
    pub premium_slots: Vec<PremiumSlot>,
    /// Moderation cases where the user was the moderator or the member acted on.
    #[serde(default)]
    pub cases: Vec<Case>,
    /// What automod rules in shadow mode would have done to the user's messages.
    #[serde(default)]
    pub automod_hits: Vec<AutomodHit>,
    /// Durable timers that name the user (a temporary ban's unban, a parked workflow run).
    #[serde(default)]
    pub timers: Vec<TimerExport>,
    /// Payment-provider webhook events about the user (a pending one with its body).
    #[serde(default)]
    pub billing_events: Vec<InboxEvent>,
    /// Variables workflows keep about the user in a server (a score, a counter).
    #[serde(default)]
    pub workflow_variables: Vec<WorkflowVariable>,
    /// Traces of workflow runs the user's events started.
    #[serde(default)]
    pub workflow_runs: Vec<WorkflowRun>,
    /// Service announcements sent (or tried) to the user by DM, with their consent.
    #[serde(default)]
    pub announcement_dms: Vec<DmDelivery>,
}

/// One stored row rendered as text, with its table: what the data-rights tests scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub table: String,
    pub text: String,
}

/// The shard of `guild_id` among `shard_count` (Discord's sharding formula): what keys a
/// guild's timers, and what a node asks of its cache.
pub fn shard_of(guild_id: u64, shard_count: u32) -> u32 {
    ((guild_id >> 22) % u64::from(shard_count.max(1))) as u32
}

/// Whether `guild_id` is on shard `shard_id` of `shard_count`.
pub fn on_shard(guild_id: u64, shard_id: u32, shard_count: u32) -> bool {
    shard_of(guild_id, shard_count) == shard_id
}

/// The partitions where rows keyed by the shard of a guild (or user) of shard `shard_id` of
/// `shard_count` may be stored: a row keeps the partition of the count it was written
/// under, and every count the cluster had divides the current one (a resharding only
/// multiplies it), so a row written under count `d` is in partition `shard_id % d`.
/// `earlier` are the counts the cluster had before ([`crate::earlier_counts`]); when they
/// are not known, every divisor of `shard_count` may have been one. Rows of other shards
/// share these partitions: readers keep those [`on_shard`]. Ascending.
pub fn partitions_of(shard_id: u32, shard_count: u32, earlier: Option<&[u32]>) -> Vec<u32> {
    let count = shard_count.max(1);
    let mut partitions: Vec<u32> = match earlier {
        Some(counts) => counts
            .iter()
            .map(|&d| shard_id % d.max(1))
            .chain([shard_id])
            .collect(),
        None => (1..=count)
            .take_while(|d| d * d <= count)
            .filter(|&d| count.is_multiple_of(d))
            .flat_map(|d| [shard_id % d, shard_id % (count / d)])
            .collect(),
    };
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

/// Data-subject rights and retention, over every table.
#[async_trait]
pub trait DataRights: Send + Sync + 'static {
    /// Everything stored about `user_id`.
    async fn export_user(&self, user_id: u64) -> Result<UserExport, StorageError>;

    /// Erases `user_id` everywhere: the account, tickets they opened (with transcripts),
    /// messages they wrote, redemptions, dashboard sessions (which logs them out of the
    /// dashboard), privacy flags, a prepared export and the timers that name them, except
    /// those that must still run for them ([`Timer::outlives_erasure`](crate::Timer)). What others or the law need stays
    /// without them: workflows they wrote keep their guild's automation with the author
    /// cleared; audit entries (security) and subscriptions (billing) are kept with the user
    /// replaced by [`ERASED_USER`](crate::privacy::ERASED_USER) (0), as are their
    /// data-subject requests. Refuses user 0. Returns the rows touched.
    async fn delete_user(&self, user_id: u64) -> Result<u64, StorageError>;

    /// Erases everything kept for `guild_id` (the bot left it): config and history, audit,
    /// usage, tickets, transcripts, workflows, and subscriptions applying to it.
    async fn delete_guild(&self, guild_id: u64) -> Result<u64, StorageError>;

    /// The bot left `guild_id`: erase its data at `at` (in `sweep_expired`) unless
    /// [`cancel_guild_deletion`](Self::cancel_guild_deletion) comes first. Scheduling again
    /// moves the date.
    async fn schedule_guild_deletion(
        &self,
        guild_id: u64,
        at: Timestamp,
    ) -> Result<(), StorageError>;

    /// The bot is back in `guild_id`: keep its data. Returns whether a deletion was pending.
    async fn cancel_guild_deletion(&self, guild_id: u64) -> Result<bool, StorageError>;

    /// Guilds of shard `shard_id` (of `shard_count`) whose configuration is stored: at
    /// READY, those the bot no longer sees were removed while it was offline. Reads the
    /// whole config table: a node reads it once for the READYs of several minutes
    /// (`Departures` in actors).
    async fn stored_guilds(
        &self,
        shard_id: u32,
        shard_count: u32,
    ) -> Result<Vec<u64>, StorageError>;

    /// Guilds whose data is scheduled for deletion, and when.
    async fn scheduled_guild_deletions(&self) -> Result<Vec<(u64, Timestamp)>, StorageError>;

    /// Removes everything past retention at `now`, and the data of guilds whose scheduled
    /// deletion is due; returns the rows removed. On ScyllaDB the
    /// database expires rows by TTL and this removes nothing.
    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StorageError>;

    /// Walks the next page of at most `page` rows of `table` from its stored cursor (see
    /// [`backfill`](crate::BackfillTable) in the crate: rows written before their index or
    /// retention existed get them, those past retention at `now` are deleted) and stores the
    /// progress with the new cursor. A finished table is not walked again: its stored
    /// progress is returned as it is. Refuses a page of 0 or above
    /// [`BACKFILL_PAGE_MAX`](crate::BACKFILL_PAGE_MAX).
    async fn backfill(
        &self,
        table: BackfillTable,
        page: usize,
        now: Timestamp,
    ) -> Result<BackfillProgress, StorageError>;

    /// Every row of every table, rendered as text. For tests and audits of the store; it reads
    /// everything, so never on a hot path.
    async fn dump_rows(&self) -> Result<Vec<StoredRow>, StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_written_under_any_earlier_count_is_in_a_partition_of_its_shard() {
        // 3 → 6 → 24: every count divides the later ones.
        for guild in (0..500u64).map(|n| (n * 7919 + 13) << 22) {
            let shard = shard_of(guild, 24);
            for earlier in [None, Some(&[3, 6][..])] {
                let partitions = partitions_of(shard, 24, earlier);
                for had in [3, 6, 24] {
                    assert!(
                        partitions.contains(&shard_of(guild, had)),
                        "guild {guild} written under {had} shards, earlier {earlier:?}"
                    );
                }
            }
        }
        // Unknown earlier counts: every divisor.
        assert_eq!(partitions_of(13, 16, None), [0, 1, 5, 13]);
        assert_eq!(partitions_of(0, 1, None), [0]);
        assert_eq!(partitions_of(6, 7, None), [0, 6]);
        // Known ones: only theirs; a cluster that never resharded reads its own.
        assert_eq!(partitions_of(13, 16, Some(&[8])), [5, 13]);
        assert_eq!(partitions_of(13, 16, Some(&[])), [13]);
    }
}
