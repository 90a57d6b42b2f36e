//! The repository traits on ScyllaDB.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use scylla::value::CqlValue;
use serde::{Serialize, de::DeserializeOwned};

use super::{ScyllaStore, Writes, db_id, db_int, rust_id, ttl};
use crate::cluster::{SHARD_COUNT, check_claim};
use crate::resharding::check_next;

/// The assignments' partition keeps, in this row, the leader epoch that claimed them
/// (`epoch`), so that every assignment can be conditioned on it in one batch.
const CLAIM_ROW: i32 = -1;
/// The batch statement that applies only under the claiming leader (and writes nothing new).
const CLAIM_GUARD: &str = "UPDATE {ks}.shard_assignments SET epoch = ? \
                           WHERE part = 0 AND shard_id = ? IF epoch = ?";
use crate::row_ref::RowRef;
use crate::{
    Account, AccountRepo, AuditEntry, AuditRepo, BillingRepo, CONFIG_HISTORY_LEN, ClusterRepo,
    GuildConfig, GuildConfigRepo, LeaderAnnouncement, Lease, NodeRecord, PromoCode, Redemption,
    ReshardPhase, Resharding, SessionCheckpoint, ShardAssignment, StorageError, Subscription,
    Ticket, TicketQuery, TicketRepo, Timestamp, TranscriptMessage, UsageCount, UsageRepo,
    VersionedConfig, Workflow, WorkflowRepo, WorkflowRun, WorkflowVariable, lease,
};

/// Concurrent requests one call keeps in flight (batches of audit rows, usage deltas).
const IN_FLIGHT: usize = 64;
/// Audit partitions are (guild, 30-day bucket).
pub(super) const AUDIT_BUCKET_MS: u64 = 30 * 86_400_000;
/// Compare-and-set loops give up after this many lost races.
const CAS_TRIES: usize = 16;

pub(super) fn doc<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored types serialise to JSON")
}

pub(super) fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StorageError> {
    serde_json::from_str(text).map_err(|err| StorageError::corrupt(what, err))
}

pub(super) fn ref_text(row: &RowRef) -> String {
    row.json()
}

fn bucket(at: Timestamp) -> i32 {
    i32::try_from(at.as_millis() / AUDIT_BUCKET_MS).unwrap_or(i32::MAX)
}

/// The audit partitions a `[from, to)` listing reads: only those inside the retention window
/// around `now` (entries are dated at most a retention ahead: their TTL could not be longer),
/// so any `to`, even `u64::MAX`, reads a bounded number of partitions. Empty when `first >
/// last`.
pub(super) fn audit_buckets(
    now: Timestamp,
    retention: Duration,
    from: Timestamp,
    to: Timestamp,
) -> (i32, i32) {
    let from = from.max(now.saturating_sub(retention));
    let to = to.min(now.saturating_add(retention));
    if from >= to {
        return (1, 0);
    }
    (bucket(from), bucket(Timestamp(to.0 - 1)))
}

pub(super) fn audit_users(entry: &AuditEntry) -> Vec<u64> {
    let mut users = vec![entry.actor_id];
    users.extend(entry.target_id.filter(|&t| t != entry.actor_id));
    users
}

/// Splits a batch of checkpoints into those to write and the shards whose checkpoint is
/// older than the shard's assignment epoch (its writer no longer owns it).
pub(crate) fn split_stale<'a>(
    checkpoints: &'a [SessionCheckpoint],
    current: &HashMap<u32, u64>,
) -> (Vec<&'a SessionCheckpoint>, Vec<u32>) {
    let mut fresh = Vec::with_capacity(checkpoints.len());
    let mut stale = Vec::new();
    for checkpoint in checkpoints {
        match current.get(&checkpoint.shard_id) {
            Some(&epoch) if checkpoint.epoch < epoch => stale.push(checkpoint.shard_id),
            _ => fresh.push(checkpoint),
        }
    }
    (fresh, stale)
}

impl ScyllaStore {
    /// Writes a checkpoint under its epoch and drops those of older epochs: plain idempotent
    /// writes, no LWT, so a node can send thousands per heartbeat.
    async fn write_checkpoint(&self, checkpoint: &SessionCheckpoint) -> Result<(), StorageError> {
        let shard = i32::try_from(checkpoint.shard_id)
            .map_err(|_| StorageError::Invalid(format!("shard id {}", checkpoint.shard_id)))?;
        self.execute(
            "INSERT INTO {ks}.shard_checkpoints (shard_id, epoch, doc) VALUES (?, ?, ?)",
            true,
            (shard, db_id(checkpoint.epoch), doc(checkpoint)),
        )
        .await?;
        self.execute(
            "DELETE FROM {ks}.shard_checkpoints WHERE shard_id = ? AND epoch < ?",
            true,
            (shard, db_id(checkpoint.epoch)),
        )
        .await?;
        Ok(())
    }

    async fn assignment_serial(&self, shard: i32) -> Result<Option<AssignmentRow>, StorageError> {
        self.serial_one(
            "SELECT shard_id, node_id, epoch FROM {ks}.shard_assignments \
             WHERE part = 0 AND shard_id = ?",
            (shard,),
        )
        .await
    }

    /// Adds the index entry of `row` to a batch; it carries the row's TTL so both expire
    /// together.
    pub(super) fn push_ref(
        &self,
        writes: &mut Writes,
        user: u64,
        row: &RowRef,
        ttl_secs: Option<i32>,
    ) {
        let key = vec![CqlValue::BigInt(db_id(user)), CqlValue::Text(ref_text(row))];
        match ttl_secs {
            Some(secs) => writes.push(
                self,
                "INSERT INTO {ks}.user_refs (user_id, ref) VALUES (?, ?) USING TTL ?",
                [key, vec![CqlValue::Int(secs)]].concat(),
            ),
            None => writes.push(
                self,
                "INSERT INTO {ks}.user_refs (user_id, ref) VALUES (?, ?)",
                key,
            ),
        }
    }

    pub(super) fn push_drop_ref(&self, writes: &mut Writes, user: u64, row: &RowRef) {
        writes.push(
            self,
            "DELETE FROM {ks}.user_refs WHERE user_id = ? AND ref = ?",
            vec![CqlValue::BigInt(db_id(user)), CqlValue::Text(ref_text(row))],
        );
    }

    /// Adds an index entry on its own: for rows written by LWT, which cannot share a batch
    /// with another partition, the entry is written first (a dangling entry is skipped by
    /// export and removed by erasure; a missing one would hide a row from both).
    pub(super) async fn add_ref(
        &self,
        user: u64,
        row: &RowRef,
        ttl_secs: Option<i32>,
    ) -> Result<(), StorageError> {
        let mut writes = Writes::new();
        self.push_ref(&mut writes, user, row, ttl_secs);
        self.apply(writes).await
    }

    pub(super) async fn drop_ref(&self, user: u64, row: &RowRef) -> Result<(), StorageError> {
        let mut writes = Writes::new();
        self.push_drop_ref(&mut writes, user, row);
        self.apply(writes).await
    }

    pub(super) async fn refs_of(&self, user: u64) -> Result<Vec<RowRef>, StorageError> {
        self.rows::<(String,), _>(
            "SELECT ref FROM {ks}.user_refs WHERE user_id = ?",
            (db_id(user),),
            false,
        )
        .await?
        .and_then(|(text,)| async move { RowRef::parse_json(&text) })
        .try_collect()
        .await
    }

    pub(super) async fn one_doc<T: DeserializeOwned>(
        &self,
        template: &'static str,
        what: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Option<T>, StorageError> {
        let rows: Vec<(String,)> = self.select_limit(template, values, 1).await?;
        rows.first().map(|(text,)| parse(what, text)).transpose()
    }

    /// Parses each row as it arrives, page by page.
    pub(super) async fn docs_limit<T: DeserializeOwned>(
        &self,
        template: &'static str,
        what: &str,
        values: impl scylla::serialize::row::SerializeRow,
        limit: usize,
    ) -> Result<Vec<T>, StorageError> {
        self.rows::<(String,), _>(template, values, false)
            .await?
            .take(limit)
            .and_then(|(text,)| std::future::ready(parse(what, &text)))
            .try_collect()
            .await
    }

    pub(super) async fn docs<T: DeserializeOwned>(
        &self,
        template: &'static str,
        what: &str,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<T>, StorageError> {
        self.docs_limit(template, what, values, usize::MAX).await
    }

    pub(super) async fn get_ticket(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Option<Ticket>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.tickets WHERE guild_id = ? AND ticket_id = ?",
            "tickets",
            (db_id(guild_id), db_id(ticket_id)),
        )
        .await
    }

    pub(super) async fn get_workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.workflows WHERE guild_id = ? AND workflow_id = ?",
            "workflows",
            (db_id(guild_id), db_id(workflow_id)),
        )
        .await
    }

    pub(super) async fn write_workflow(&self, workflow: &Workflow) -> Result<(), StorageError> {
        let row = RowRef::Workflow {
            guild: workflow.guild_id,
            workflow: workflow.workflow_id,
        };
        let mut writes = Writes::new();
        if let Some(old) = self
            .get_workflow(workflow.guild_id, workflow.workflow_id)
            .await?
            && let Some(author) = old.created_by
            && old.created_by != workflow.created_by
        {
            self.push_drop_ref(&mut writes, author, &row);
        }
        writes.push(
            self,
            "INSERT INTO {ks}.workflows (guild_id, workflow_id, doc) VALUES (?, ?, ?)",
            vec![
                CqlValue::BigInt(db_id(workflow.guild_id)),
                CqlValue::BigInt(db_id(workflow.workflow_id)),
                CqlValue::Text(doc(workflow)),
            ],
        );
        if let Some(author) = workflow.created_by {
            self.push_ref(&mut writes, author, &row, None);
        }
        self.apply(writes).await
    }

    /// The lease as the last completed LWT left it (a SERIAL read).
    async fn read_lease(&self, name: &str) -> Result<Option<Lease>, StorageError> {
        let row: Option<LeaseRow> = self
            .serial_one(
                "SELECT holder, epoch, expires_at FROM {ks}.leases WHERE name = ?",
                (name,),
            )
            .await?;
        Ok(row.map(|row| row.lease(name)))
    }

    /// Replaces the lease `current` with `next` if nobody changed it in between. On a lost
    /// race, returns the lease that won when the database sent it back.
    async fn swap_lease(
        &self,
        current: Option<&Lease>,
        next: &Lease,
    ) -> Result<(bool, Option<Lease>), StorageError> {
        let resolve = || async { Ok(self.read_lease(&next.name).await?.as_ref() == Some(next)) };
        let outcome = match current {
            None => {
                self.lwt_resolved(
                    "INSERT INTO {ks}.leases (name, holder, epoch, expires_at) \
                     VALUES (?, ?, ?, ?) IF NOT EXISTS",
                    (
                        next.name.as_str(),
                        db_id(next.holder),
                        db_id(next.epoch),
                        db_id(next.expires_at.0),
                    ),
                    resolve,
                )
                .await?
            }
            Some(current) => {
                self.lwt_resolved(
                    "UPDATE {ks}.leases SET holder = ?, epoch = ?, expires_at = ? WHERE name = ? \
                     IF holder = ? AND epoch = ? AND expires_at = ?",
                    (
                        db_id(next.holder),
                        db_id(next.epoch),
                        db_id(next.expires_at.0),
                        next.name.as_str(),
                        db_id(current.holder),
                        db_id(current.epoch),
                        db_id(current.expires_at.0),
                    ),
                    resolve,
                )
                .await?
            }
        };
        let returned = match (
            outcome.bigint("holder"),
            outcome.bigint("epoch"),
            outcome.bigint("expires_at"),
        ) {
            (Some(holder), Some(epoch), Some(expires_at)) => Some(
                LeaseRow {
                    holder,
                    epoch,
                    expires_at,
                }
                .lease(&next.name),
            ),
            _ => None,
        };
        Ok((outcome.applied, returned))
    }

    /// Compare-and-set on a lease: reads at SERIAL, then after each lost race decides again
    /// on the row the LWT returned (ScyllaDB returns it; otherwise another SERIAL read).
    async fn cas_lease(
        &self,
        name: &str,
        decide: impl Fn(Option<&Lease>) -> Result<Option<Lease>, StorageError>,
    ) -> Result<Option<Lease>, StorageError> {
        let mut current = self.read_lease(name).await?;
        for _ in 0..CAS_TRIES {
            let Some(next) = decide(current.as_ref())? else {
                return Ok(None);
            };
            let (applied, returned) = self.swap_lease(current.as_ref(), &next).await?;
            if applied {
                return Ok(Some(next));
            }
            current = match returned {
                Some(lease) => Some(lease),
                None => self.read_lease(name).await?,
            };
        }
        Err(StorageError::Database(format!(
            "lease {name}: too much contention"
        )))
    }

    /// A SERIAL read of a guild's config version and document.
    async fn config_serial(&self, guild_id: u64) -> Result<Option<ConfigRow>, StorageError> {
        self.serial_one(
            "SELECT version, doc FROM {ks}.guild_config WHERE guild_id = ?",
            (db_id(guild_id),),
        )
        .await
    }

    /// The promo partition's static row and whether `user_id` has redeemed, at SERIAL.
    async fn promo_state(
        &self,
        code: &str,
        user_id: u64,
    ) -> Result<Option<(PromoCode, u32, bool)>, StorageError> {
        let Some(row): Option<PromoRow> = self
            .serial_one(
                "SELECT promo, redeemed FROM {ks}.promos WHERE code = ? LIMIT 1",
                (code,),
            )
            .await?
        else {
            return Ok(None);
        };
        let Some(text) = row.promo else {
            return Ok(None);
        };
        let claimed: Option<(i64,)> = self
            .serial_one(
                "SELECT user_id FROM {ks}.promos WHERE code = ? AND user_id = ?",
                (code, db_id(user_id)),
            )
            .await?;
        Ok(Some((
            parse("promos", &text)?,
            u32::try_from(row.redeemed.unwrap_or(0)).unwrap_or(0),
            claimed.is_some(),
        )))
    }
}

#[derive(scylla::DeserializeRow)]
struct LeaseRow {
    holder: i64,
    epoch: i64,
    expires_at: i64,
}

impl LeaseRow {
    fn lease(self, name: &str) -> Lease {
        Lease {
            name: name.to_owned(),
            holder: rust_id(self.holder),
            epoch: rust_id(self.epoch),
            expires_at: Timestamp(rust_id(self.expires_at)),
        }
    }
}

#[derive(scylla::DeserializeRow)]
struct ConfigRow {
    version: i64,
    doc: String,
}

#[derive(scylla::DeserializeRow)]
struct PromoRow {
    promo: Option<String>,
    redeemed: Option<i32>,
}

/// A code's partition as the operators' list reads it.
#[derive(scylla::DeserializeRow)]
struct PromoListRow {
    #[allow(dead_code)] // DISTINCT must select the partition key.
    code: String,
    promo: Option<String>,
    redeemed: Option<i32>,
}

#[derive(scylla::DeserializeRow)]
struct AssignmentRow {
    shard_id: i32,
    node_id: i64,
    epoch: i64,
}

#[derive(scylla::DeserializeRow)]
struct UsageRow {
    hour: i32,
    command: String,
    channel_id: i64,
    count: i64,
}

#[async_trait]
impl GuildConfigRepo for ScyllaStore {
    async fn load(&self, guild_id: u64) -> Result<Option<VersionedConfig>, StorageError> {
        let rows: Vec<ConfigRow> = self
            .select_limit(
                "SELECT version, doc FROM {ks}.guild_config WHERE guild_id = ?",
                (db_id(guild_id),),
                1,
            )
            .await?;
        rows.first()
            .map(|row| {
                Ok(VersionedConfig {
                    version: rust_id(row.version),
                    config: parse("guild_config", &row.doc)?,
                })
            })
            .transpose()
    }

    async fn save(
        &self,
        guild_id: u64,
        expected: u64,
        config: &GuildConfig,
    ) -> Result<u64, StorageError> {
        let version = expected + 1;
        let text = doc(config);
        // Our write is in place if the row holds our version with our document.
        let resolve = || async {
            Ok(self
                .config_serial(guild_id)
                .await?
                .is_some_and(|row| rust_id(row.version) == version && row.doc == text))
        };
        let outcome = if expected == 0 {
            self.lwt_resolved(
                "INSERT INTO {ks}.guild_config (guild_id, version, doc) VALUES (?, ?, ?) \
                 IF NOT EXISTS",
                (db_id(guild_id), db_id(version), text.as_str()),
                resolve,
            )
            .await?
        } else {
            self.lwt_resolved(
                "UPDATE {ks}.guild_config SET version = ?, doc = ? WHERE guild_id = ? \
                 IF version = ?",
                (
                    db_id(version),
                    text.as_str(),
                    db_id(guild_id),
                    db_id(expected),
                ),
                resolve,
            )
            .await?
        };
        if !outcome.applied {
            let current = match outcome.bigint("version") {
                Some(v) => rust_id(v),
                None => self
                    .config_serial(guild_id)
                    .await?
                    .map_or(0, |row| rust_id(row.version)),
            };
            return Err(StorageError::Conflict { expected, current });
        }
        // Only the winner of the LWT writes history, so history never holds a losing
        // config. A crash right here loses this version's history row but not the version:
        // `history` always includes the current document.
        self.execute(
            "INSERT INTO {ks}.guild_config_history (guild_id, version, doc) VALUES (?, ?, ?)",
            true,
            (db_id(guild_id), db_id(version), text.as_str()),
        )
        .await?;
        if let Some(oldest_kept) = version.checked_sub(CONFIG_HISTORY_LEN - 1) {
            self.execute(
                "DELETE FROM {ks}.guild_config_history WHERE guild_id = ? AND version < ?",
                true,
                (db_id(guild_id), db_id(oldest_kept)),
            )
            .await?;
        }
        Ok(version)
    }

    async fn history(&self, guild_id: u64) -> Result<Vec<VersionedConfig>, StorageError> {
        let Some(current) = self.load(guild_id).await? else {
            return Ok(Vec::new());
        };
        let rows: Vec<ConfigRow> = self
            .select_limit(
                "SELECT version, doc FROM {ks}.guild_config_history WHERE guild_id = ? \
                 AND version < ?",
                (db_id(guild_id), db_id(current.version)),
                usize::try_from(CONFIG_HISTORY_LEN - 1).unwrap_or(usize::MAX),
            )
            .await?;
        let mut out = vec![current];
        for row in &rows {
            out.push(VersionedConfig {
                version: rust_id(row.version),
                config: parse("guild_config_history", &row.doc)?,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl AuditRepo for ScyllaStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StorageError> {
        let retention = *self.retention();
        stream::iter(entries.iter().cloned())
            .map(|entry| async move {
                let Some(secs) = ttl(entry.at.saturating_add(retention.audit)) else {
                    return Ok(());
                };
                let mut writes = Writes::new();
                writes.push(
                    self,
                    "INSERT INTO {ks}.audit_log (guild_id, bucket, at, id, doc) \
                     VALUES (?, ?, ?, ?, ?) USING TTL ?",
                    vec![
                        CqlValue::BigInt(db_id(entry.guild_id)),
                        CqlValue::Int(bucket(entry.at)),
                        CqlValue::BigInt(db_id(entry.at.0)),
                        CqlValue::BigInt(db_id(entry.id)),
                        CqlValue::Text(doc(&entry)),
                        CqlValue::Int(secs),
                    ],
                );
                let row = RowRef::Audit {
                    guild: entry.guild_id,
                    at: entry.at.0,
                    id: entry.id,
                };
                for user in audit_users(&entry) {
                    self.push_ref(&mut writes, user, &row, Some(secs));
                }
                self.apply(writes).await
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn list_audit(
        &self,
        guild_id: u64,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let mut out = Vec::new();
        let (first, last) = audit_buckets(Timestamp::now(), self.retention().audit, from, to);
        for b in first..=last {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            out.extend(
                self.docs_limit::<AuditEntry>(
                    "SELECT doc FROM {ks}.audit_log WHERE guild_id = ? AND bucket = ? \
                     AND at >= ? AND at < ?",
                    "audit_log",
                    (db_id(guild_id), b, db_id(from.0), db_id(to.0)),
                    left,
                )
                .await?,
            );
        }
        Ok(out)
    }
}

#[async_trait]
impl UsageRepo for ScyllaStore {
    /// A write without an id of its own: a fresh flush id, so it adds to what is there.
    async fn add_usage(&self, deltas: &[UsageCount]) -> Result<(), StorageError> {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(Timestamp::now().as_millis());
        self.add_usage_flush(hasher.finish(), deltas).await
    }

    /// Plain rows keyed by the flush id: a retried flush overwrites itself. The day goes
    /// into `usage_days` first, so a listed day may be empty but a row is never unlisted.
    /// Both expire the usage retention after their day ends.
    async fn add_usage_flush(
        &self,
        flush_id: u64,
        deltas: &[UsageCount],
    ) -> Result<(), StorageError> {
        let retention = self.retention().usage;
        let expiry =
            |day: u32| ttl(Timestamp::from_days(day.saturating_add(1)).saturating_add(retention));
        // Days already past the retention are not written.
        let mut days: Vec<(u64, u32, i32)> = deltas
            .iter()
            .filter_map(|d| Some((d.guild_id, d.day(), expiry(d.day())?)))
            .collect();
        days.sort_unstable();
        days.dedup();
        let rows: Vec<(UsageCount, i32)> = deltas
            .iter()
            .filter_map(|d| Some((d.clone(), expiry(d.day())?)))
            .collect();
        stream::iter(days)
            .map(|(guild_id, day, secs)| async move {
                self.execute(
                    "INSERT INTO {ks}.usage_days (guild_id, day) VALUES (?, ?) USING TTL ?",
                    true,
                    (db_id(guild_id), db_int(day), secs),
                )
                .await
                .map(drop)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        stream::iter(rows)
            .map(|(delta, secs)| async move {
                self.execute(
                    "INSERT INTO {ks}.usage_hourly \
                     (guild_id, day, hour, command, channel_id, flush_id, count) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
                    true,
                    (
                        db_id(delta.guild_id),
                        db_int(delta.day()),
                        db_int(delta.hour),
                        delta.command.as_str(),
                        db_id(delta.channel_id),
                        db_id(flush_id),
                        i64::try_from(delta.count).unwrap_or(i64::MAX),
                        secs,
                    ),
                )
                .await
                .map(drop)
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn usage(
        &self,
        guild_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<UsageCount>, StorageError> {
        let days: Vec<(i32,)> = self
            .select(
                "SELECT day FROM {ks}.usage_days WHERE guild_id = ? AND day >= ? AND day <= ?",
                (db_id(guild_id), db_int(from_day), db_int(to_day)),
            )
            .await?;
        let mut out = Vec::new();
        for (day,) in days {
            // Rows come ordered by hour, command and channel; the flushes of one are summed.
            let rows = self
                .rows::<UsageRow, _>(
                    "SELECT hour, command, channel_id, count FROM {ks}.usage_hourly \
                     WHERE guild_id = ? AND day = ?",
                    (db_id(guild_id), day),
                    false,
                )
                .await?;
            futures_util::pin_mut!(rows);
            while let Some(row) = rows.next().await {
                let row = row?;
                let hour = u32::try_from(row.hour).unwrap_or(0);
                let channel_id = rust_id(row.channel_id);
                let count = u64::try_from(row.count).unwrap_or(0);
                match out.last_mut() {
                    Some(UsageCount {
                        hour: h,
                        command: c,
                        channel_id: ch,
                        count: total,
                        ..
                    }) if *h == hour && *c == row.command && *ch == channel_id => *total += count,
                    _ => out.push(UsageCount {
                        guild_id,
                        hour,
                        command: row.command,
                        channel_id,
                        count,
                    }),
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl AccountRepo for ScyllaStore {
    async fn put_account(&self, account: &Account) -> Result<(), StorageError> {
        let expires = account
            .last_active
            .saturating_add(self.retention().inactive_accounts);
        match ttl(expires) {
            Some(secs) => {
                self.execute(
                    "INSERT INTO {ks}.accounts (user_id, last_active, doc) VALUES (?, ?, ?) \
                     USING TTL ?",
                    true,
                    (
                        db_id(account.user_id),
                        db_id(account.last_active.0),
                        doc(account),
                        secs,
                    ),
                )
                .await?;
            }
            None => {
                self.execute(
                    "DELETE FROM {ks}.accounts WHERE user_id = ?",
                    true,
                    (db_id(account.user_id),),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn account(&self, user_id: u64) -> Result<Option<Account>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.accounts WHERE user_id = ?",
            "accounts",
            (db_id(user_id),),
        )
        .await
    }

    async fn touch_account(&self, user_id: u64, at: Timestamp) -> Result<(), StorageError> {
        // Read-modify-write without LWT: two racing touches may both write, and the later
        // timestamp can lose by milliseconds; activity tracking tolerates that.
        let account = match self.account(user_id).await? {
            Some(account) if account.last_active >= at => return Ok(()),
            Some(account) => Account {
                last_active: at,
                ..account
            },
            None => Account {
                user_id,
                created_at: at,
                last_active: at,
                locale: None,
                announcements_consent: false,
            },
        };
        self.put_account(&account).await
    }
}

#[async_trait]
impl TicketRepo for ScyllaStore {
    async fn put_ticket(&self, ticket: &Ticket) -> Result<(), StorageError> {
        let row = RowRef::Ticket {
            guild: ticket.guild_id,
            ticket: ticket.ticket_id,
        };
        let Some(secs) = ttl(ticket.opened_at.saturating_add(self.retention().tickets)) else {
            return Ok(());
        };
        let mut writes = Writes::new();
        if let Some(old) = self.get_ticket(ticket.guild_id, ticket.ticket_id).await?
            && old.opener_id != ticket.opener_id
        {
            self.push_drop_ref(&mut writes, old.opener_id, &row);
        }
        writes.push(
            self,
            "INSERT INTO {ks}.tickets (guild_id, ticket_id, opened_at, doc) VALUES (?, ?, ?, ?) \
             USING TTL ?",
            vec![
                CqlValue::BigInt(db_id(ticket.guild_id)),
                CqlValue::BigInt(db_id(ticket.ticket_id)),
                CqlValue::BigInt(db_id(ticket.opened_at.0)),
                CqlValue::Text(doc(ticket)),
                CqlValue::Int(secs),
            ],
        );
        self.push_ref(&mut writes, ticket.opener_id, &row, Some(secs));
        self.apply(writes).await
    }

    async fn open_ticket(
        &self,
        ticket: &Ticket,
        max_open: u32,
    ) -> Result<Option<u64>, StorageError> {
        // The count is read, not locked: two opens by one member at the same instant on two
        // nodes (a shard move) could both pass it. The number is a compare-and-set.
        let open_now = self
            .tickets(ticket.guild_id)
            .await?
            .iter()
            .filter(|t| t.opener_id == ticket.opener_id && t.is_open())
            .count();
        if open_now >= max_open as usize {
            return Ok(None);
        }
        let mut ticket = ticket.clone();
        ticket.ticket_id = self
            .next_number(&super::moderation::TICKET_COUNTER, ticket.guild_id)
            .await?;
        self.put_ticket(&ticket).await?;
        Ok(Some(ticket.ticket_id))
    }

    async fn ticket(&self, guild_id: u64, ticket_id: u64) -> Result<Option<Ticket>, StorageError> {
        self.get_ticket(guild_id, ticket_id).await
    }

    async fn tickets(&self, guild_id: u64) -> Result<Vec<Ticket>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.tickets WHERE guild_id = ?",
            "tickets",
            (db_id(guild_id),),
        )
        .await
    }

    async fn list_tickets(
        &self,
        guild_id: u64,
        query: &TicketQuery,
    ) -> Result<Vec<Ticket>, StorageError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let below = query.before.map_or(i64::MAX, db_id);
        // Read page by page, newest first, until enough match.
        self.rows::<(String,), _>(
            "SELECT doc FROM {ks}.tickets WHERE guild_id = ? AND ticket_id < ? \
             ORDER BY ticket_id DESC",
            (db_id(guild_id), below),
            false,
        )
        .await?
        .and_then(|(text,)| std::future::ready(parse::<Ticket>("tickets", &text)))
        .try_filter(|ticket| std::future::ready(query.matches(ticket)))
        .take(query.limit)
        .try_collect()
        .await
    }

    async fn append_transcript(&self, messages: &[TranscriptMessage]) -> Result<(), StorageError> {
        for message in messages {
            let Some(ticket) = self.get_ticket(message.guild_id, message.ticket_id).await? else {
                return Err(StorageError::NotFound(format!(
                    "ticket {} of guild {}",
                    message.ticket_id, message.guild_id
                )));
            };
            let Some(secs) = ttl(ticket.opened_at.saturating_add(self.retention().tickets)) else {
                continue;
            };
            let mut writes = Writes::new();
            writes.push(
                self,
                "INSERT INTO {ks}.transcripts (guild_id, ticket_id, message_id, doc) \
                 VALUES (?, ?, ?, ?) USING TTL ?",
                vec![
                    CqlValue::BigInt(db_id(message.guild_id)),
                    CqlValue::BigInt(db_id(message.ticket_id)),
                    CqlValue::BigInt(db_id(message.message_id)),
                    CqlValue::Text(doc(message)),
                    CqlValue::Int(secs),
                ],
            );
            let row = RowRef::Transcript {
                guild: message.guild_id,
                ticket: message.ticket_id,
                message: message.message_id,
            };
            for user in message.users() {
                self.push_ref(&mut writes, user, &row, Some(secs));
            }
            self.apply(writes).await?;
        }
        Ok(())
    }

    async fn transcript(
        &self,
        guild_id: u64,
        ticket_id: u64,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ?",
            "transcripts",
            (db_id(guild_id), db_id(ticket_id)),
        )
        .await
    }

    async fn transcript_page(
        &self,
        guild_id: u64,
        ticket_id: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<TranscriptMessage>, StorageError> {
        self.docs_limit(
            "SELECT doc FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ? \
             AND message_id > ?",
            "transcripts",
            (db_id(guild_id), db_id(ticket_id), db_id(after)),
            limit,
        )
        .await
    }
}

#[async_trait]
impl WorkflowRepo for ScyllaStore {
    async fn put_workflow(&self, workflow: &Workflow) -> Result<(), StorageError> {
        self.write_workflow(workflow).await
    }

    async fn workflow(
        &self,
        guild_id: u64,
        workflow_id: u64,
    ) -> Result<Option<Workflow>, StorageError> {
        self.get_workflow(guild_id, workflow_id).await
    }

    async fn workflows(&self, guild_id: u64) -> Result<Vec<Workflow>, StorageError> {
        self.docs(
            "SELECT doc FROM {ks}.workflows WHERE guild_id = ?",
            "workflows",
            (db_id(guild_id),),
        )
        .await
    }

    async fn delete_workflow(&self, guild_id: u64, workflow_id: u64) -> Result<bool, StorageError> {
        self.delete_workflow_runs(guild_id, workflow_id).await?;
        let Some(old) = self.get_workflow(guild_id, workflow_id).await? else {
            return Ok(false);
        };
        self.execute(
            "DELETE FROM {ks}.workflows WHERE guild_id = ? AND workflow_id = ?",
            true,
            (db_id(guild_id), db_id(workflow_id)),
        )
        .await?;
        if let Some(author) = old.created_by {
            let row = RowRef::Workflow {
                guild: guild_id,
                workflow: workflow_id,
            };
            self.drop_ref(author, &row).await?;
        }
        Ok(true)
    }

    async fn put_workflow_variables(
        &self,
        variables: &[WorkflowVariable],
    ) -> Result<(), StorageError> {
        self.write_workflow_variables(variables).await
    }

    async fn workflow_variables(
        &self,
        guild_id: u64,
    ) -> Result<Vec<WorkflowVariable>, StorageError> {
        self.read_workflow_variables(guild_id).await
    }

    async fn put_workflow_run(&self, run: &WorkflowRun) -> Result<(), StorageError> {
        self.write_workflow_run(run).await
    }

    async fn workflow_runs(&self, guild_id: u64) -> Result<Vec<WorkflowRun>, StorageError> {
        self.read_workflow_runs(guild_id).await
    }
}

#[async_trait]
impl BillingRepo for ScyllaStore {
    async fn put_subscription(&self, subscription: &Subscription) -> Result<(), StorageError> {
        let row = RowRef::Subscription {
            id: subscription.subscription_id,
        };
        let id = CqlValue::BigInt(db_id(subscription.subscription_id));
        let mut writes = Writes::new();
        if let Some(old) = self.subscription(subscription.subscription_id).await? {
            if old.user_id != subscription.user_id {
                self.push_drop_ref(&mut writes, old.user_id, &row);
            }
            if let Some(guild) = old.guild_id
                && old.guild_id != subscription.guild_id
            {
                writes.push(
                    self,
                    "DELETE FROM {ks}.subscriptions_by_guild \
                     WHERE guild_id = ? AND subscription_id = ?",
                    vec![CqlValue::BigInt(db_id(guild)), id.clone()],
                );
            }
        }
        writes.push(
            self,
            "INSERT INTO {ks}.subscriptions (subscription_id, doc) VALUES (?, ?)",
            vec![id.clone(), CqlValue::Text(doc(subscription))],
        );
        if let Some(guild) = subscription.guild_id {
            writes.push(
                self,
                "INSERT INTO {ks}.subscriptions_by_guild (guild_id, subscription_id) VALUES (?, ?)",
                vec![CqlValue::BigInt(db_id(guild)), id],
            );
        }
        self.push_ref(&mut writes, subscription.user_id, &row, None);
        self.apply(writes).await
    }

    async fn subscription(
        &self,
        subscription_id: u64,
    ) -> Result<Option<Subscription>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.subscriptions WHERE subscription_id = ?",
            "subscriptions",
            (db_id(subscription_id),),
        )
        .await
    }

    async fn subscriptions_of_user(&self, user_id: u64) -> Result<Vec<Subscription>, StorageError> {
        let mut out = Vec::new();
        for row in self.refs_of(user_id).await? {
            if let RowRef::Subscription { id } = row {
                out.extend(self.subscription(id).await?);
            }
        }
        out.sort_by_key(|s| s.subscription_id);
        Ok(out)
    }

    async fn create_promo(&self, promo: &PromoCode) -> Result<(), StorageError> {
        if promo.code.is_empty() {
            return Err(StorageError::Invalid("empty promo code".into()));
        }
        let text = doc(promo);
        let outcome = self
            .lwt_resolved(
                "INSERT INTO {ks}.promos (code, promo, redeemed) VALUES (?, ?, 0) IF NOT EXISTS",
                (promo.code.as_str(), text.as_str()),
                || async {
                    Ok(self
                        .promo_state(&promo.code, 0)
                        .await?
                        .is_some_and(|(stored, _, _)| &stored == promo))
                },
            )
            .await?;
        if !outcome.applied {
            return Err(StorageError::Invalid(format!(
                "promo code {} already exists",
                promo.code
            )));
        }
        Ok(())
    }

    async fn promo(&self, code: &str) -> Result<Option<(PromoCode, u32)>, StorageError> {
        let rows: Vec<PromoRow> = self
            .select_limit(
                "SELECT promo, redeemed FROM {ks}.promos WHERE code = ? LIMIT 1",
                (code,),
                1,
            )
            .await?;
        let Some(PromoRow {
            promo: Some(text),
            redeemed,
        }) = rows.into_iter().next()
        else {
            return Ok(None);
        };
        Ok(Some((
            parse("promos", &text)?,
            u32::try_from(redeemed.unwrap_or(0)).unwrap_or(0),
        )))
    }

    async fn promos(&self, limit: usize) -> Result<Vec<(PromoCode, u32)>, StorageError> {
        // A partition per code: DISTINCT reads each one's static columns once.
        let rows: Vec<PromoListRow> = self
            .select_limit(
                "SELECT DISTINCT code, promo, redeemed FROM {ks}.promos",
                (),
                limit,
            )
            .await?;
        let mut out: Vec<(PromoCode, u32)> = Vec::new();
        for row in rows {
            if let Some(text) = row.promo {
                out.push((
                    parse("promos", &text)?,
                    u32::try_from(row.redeemed.unwrap_or(0)).unwrap_or(0),
                ));
            }
        }
        out.sort_by(|a, b| a.0.code.cmp(&b.0.code));
        Ok(out)
    }

    /// One conditional batch on the code's partition decides: it moves the count from `n` to
    /// `n + 1` and records the user's redemption, both or neither. A lost race means another
    /// redemption was counted, so the loop ends within `max_redemptions + 1` rounds; an outcome
    /// lost to a timeout is read back at SERIAL (the user's row is there or not).
    async fn redeem_promo(
        &self,
        code: &str,
        user_id: u64,
        at: Timestamp,
    ) -> Result<u32, StorageError> {
        let reject = |reason| StorageError::PromoRejected {
            code: code.to_owned(),
            reason,
        };
        let redemption = Redemption {
            code: code.to_owned(),
            user_id,
            at,
        };
        let row = RowRef::Redemption {
            code: code.to_owned(),
            user: user_id,
        };
        let mut indexed = false;
        let mut rounds = 0_u64;
        let outcome = loop {
            let Some((promo, redeemed, claimed)) = self.promo_state(code, user_id).await? else {
                break Err(reject("unknown code"));
            };
            if claimed {
                break Err(reject("already redeemed by this user"));
            }
            if promo.expires_at <= at {
                break Err(reject("expired"));
            }
            if redeemed >= promo.max_redemptions {
                break Err(reject("exhausted"));
            }
            rounds += 1;
            if rounds > u64::from(promo.max_redemptions) + 2 {
                break Err(StorageError::Database(format!(
                    "promo {code}: the count moved without redemptions being recorded"
                )));
            }
            if !indexed {
                self.add_ref(user_id, &row, None).await?;
                indexed = true;
            }
            let next = redeemed + 1;
            let as_int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
            let decided = self
                .lwt_batch(
                    &[
                        "UPDATE {ks}.promos SET redeemed = ? WHERE code = ? IF redeemed = ?",
                        "INSERT INTO {ks}.promos (code, user_id, doc) VALUES (?, ?, ?) \
                         IF NOT EXISTS",
                    ],
                    (
                        (as_int(next), code, as_int(redeemed)),
                        (code, db_id(user_id), doc(&redemption)),
                    ),
                    || async {
                        Ok(self
                            .promo_state(code, user_id)
                            .await?
                            .is_some_and(|(_, _, claimed)| claimed))
                    },
                )
                .await?;
            if decided.applied {
                break Ok(next);
            }
        };
        if outcome.is_err() && indexed {
            // The entry written ahead of a redemption that did not happen.
            self.drop_ref(user_id, &row).await?;
        }
        outcome
    }

    async fn redemptions_of_user(&self, user_id: u64) -> Result<Vec<Redemption>, StorageError> {
        let mut out = Vec::new();
        for row in self.refs_of(user_id).await? {
            if let RowRef::Redemption { code, user } = row {
                out.extend(self.redemption(&code, user).await?);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ClusterRepo for ScyllaStore {
    async fn put_node(&self, node: &NodeRecord) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO {ks}.nodes (part, node_id, doc) VALUES (0, ?, ?)",
            true,
            (db_id(node.node_id), doc(node)),
        )
        .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StorageError> {
        self.docs("SELECT doc FROM {ks}.nodes WHERE part = 0", "nodes", ())
            .await
    }

    async fn remove_node(&self, node_id: u64) -> Result<(), StorageError> {
        self.execute(
            "DELETE FROM {ks}.nodes WHERE part = 0 AND node_id = ?",
            true,
            (db_id(node_id),),
        )
        .await?;
        Ok(())
    }

    async fn claim_assignments(&self, leader_epoch: u64) -> Result<(), StorageError> {
        let claim_is = |epoch: u64| async move {
            Ok(self
                .assignment_serial(CLAIM_ROW)
                .await?
                .is_some_and(|row| rust_id(row.epoch) == epoch))
        };
        loop {
            let claimed = self
                .assignment_serial(CLAIM_ROW)
                .await?
                .map(|row| rust_id(row.epoch));
            let outcome = match claimed {
                Some(claimed) if claimed > leader_epoch => {
                    return Err(StorageError::Fenced {
                        presented: leader_epoch,
                        current: claimed,
                    });
                }
                Some(claimed) if claimed == leader_epoch => return Ok(()),
                None => {
                    self.lwt_resolved(
                        "INSERT INTO {ks}.shard_assignments (part, shard_id, node_id, epoch) \
                         VALUES (0, ?, 0, ?) IF NOT EXISTS",
                        (CLAIM_ROW, db_id(leader_epoch)),
                        || claim_is(leader_epoch),
                    )
                    .await?
                }
                Some(claimed) => {
                    self.lwt_resolved(
                        "UPDATE {ks}.shard_assignments SET epoch = ? \
                         WHERE part = 0 AND shard_id = ? IF epoch = ?",
                        (db_id(leader_epoch), CLAIM_ROW, db_id(claimed)),
                        || claim_is(leader_epoch),
                    )
                    .await?
                }
            };
            if outcome.applied {
                return Ok(());
            }
            // Another leader claimed in between: read who, and yield or take over.
        }
    }

    async fn assign_shard(
        &self,
        shard_id: u32,
        node_id: u64,
        expected_epoch: u64,
        leader_epoch: u64,
    ) -> Result<ShardAssignment, StorageError> {
        let shard = i32::try_from(shard_id)
            .map_err(|_| StorageError::Invalid(format!("shard id {shard_id}")))?;
        let epoch = expected_epoch + 1;
        let resolve = || async {
            Ok(self
                .assignment_serial(shard)
                .await?
                .is_some_and(|row| rust_id(row.epoch) == epoch && rust_id(row.node_id) == node_id))
        };
        // The claim row is in the same partition, so one conditional batch checks the
        // leader and the shard's epoch together: a superseded leader changes nothing.
        let claim = (db_id(leader_epoch), CLAIM_ROW, db_id(leader_epoch));
        let outcome = if expected_epoch == 0 {
            self.lwt_batch(
                &[
                    CLAIM_GUARD,
                    "INSERT INTO {ks}.shard_assignments (part, shard_id, node_id, epoch) \
                     VALUES (0, ?, ?, ?) IF NOT EXISTS",
                ],
                (claim, (shard, db_id(node_id), db_id(epoch))),
                resolve,
            )
            .await?
        } else {
            self.lwt_batch(
                &[
                    CLAIM_GUARD,
                    "UPDATE {ks}.shard_assignments SET node_id = ?, epoch = ? \
                     WHERE part = 0 AND shard_id = ? IF epoch = ?",
                ],
                (
                    claim,
                    (db_id(node_id), db_id(epoch), shard, db_id(expected_epoch)),
                ),
                resolve,
            )
            .await?
        };
        if !outcome.applied {
            let claimed = self
                .assignment_serial(CLAIM_ROW)
                .await?
                .map_or(0, |row| rust_id(row.epoch));
            check_claim(claimed, leader_epoch)?;
            let current = self
                .assignment_serial(shard)
                .await?
                .map_or(0, |row| rust_id(row.epoch));
            return Err(StorageError::Conflict {
                expected: expected_epoch,
                current,
            });
        }
        Ok(ShardAssignment {
            shard_id,
            node_id,
            epoch,
        })
    }

    async fn assignments(&self) -> Result<Vec<ShardAssignment>, StorageError> {
        let rows: Vec<AssignmentRow> = self
            .select(
                "SELECT shard_id, node_id, epoch FROM {ks}.shard_assignments \
                 WHERE part = 0 AND shard_id >= 0",
                (),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ShardAssignment {
                shard_id: u32::try_from(row.shard_id).unwrap_or(0),
                node_id: rust_id(row.node_id),
                epoch: rust_id(row.epoch),
            })
            .collect())
    }

    async fn save_checkpoint(&self, checkpoint: &SessionCheckpoint) -> Result<(), StorageError> {
        if let Some(current) = self.checkpoint(checkpoint.shard_id).await?
            && current.epoch > checkpoint.epoch
        {
            return Err(StorageError::Fenced {
                presented: checkpoint.epoch,
                current: current.epoch,
            });
        }
        // A race with a newer owner is harmless: rows are keyed by epoch, and readers take
        // the newest.
        self.write_checkpoint(checkpoint).await
    }

    async fn save_checkpoints(
        &self,
        checkpoints: &[SessionCheckpoint],
    ) -> Result<Vec<u32>, StorageError> {
        let current: HashMap<u32, u64> = self
            .assignments()
            .await?
            .into_iter()
            .map(|a| (a.shard_id, a.epoch))
            .collect();
        let (fresh, stale) = split_stale(checkpoints, &current);
        stream::iter(fresh.into_iter().cloned())
            .map(|checkpoint| async move { self.write_checkpoint(&checkpoint).await })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        Ok(stale)
    }

    async fn checkpoint(&self, shard_id: u32) -> Result<Option<SessionCheckpoint>, StorageError> {
        let shard = i32::try_from(shard_id)
            .map_err(|_| StorageError::Invalid(format!("shard id {shard_id}")))?;
        self.one_doc(
            "SELECT doc FROM {ks}.shard_checkpoints WHERE shard_id = ? LIMIT 1",
            "shard_checkpoints",
            (shard,),
        )
        .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let lease = self
            .cas_lease(name, |current| {
                lease::acquire(current, name, holder, now, ttl).map(Some)
            })
            .await?;
        Ok(lease.expect("acquire always proposes a lease"))
    }

    async fn renew_lease(
        &self,
        name: &str,
        holder: u64,
        epoch: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let lease = self
            .cas_lease(name, |current| {
                lease::renew(current, name, holder, epoch, now, ttl).map(Some)
            })
            .await?;
        Ok(lease.expect("renew always proposes a lease"))
    }

    async fn release_lease(&self, name: &str, holder: u64, epoch: u64) -> Result<(), StorageError> {
        self.cas_lease(name, |current| Ok(lease::release(current, holder, epoch)))
            .await?;
        Ok(())
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StorageError> {
        self.read_lease(name).await
    }

    async fn announce_leader(&self, announcement: &LeaderAnnouncement) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO {ks}.leader_announcement (part, epoch, id, address) VALUES (0, ?, ?, ?)",
            true,
            (
                db_id(announcement.epoch),
                announcement.id.as_str(),
                announcement.address.as_str(),
            ),
        )
        .await?;
        Ok(())
    }

    async fn leader_announcement(&self) -> Result<Option<LeaderAnnouncement>, StorageError> {
        let rows: Vec<(i64, String, String)> = self
            .select_limit(
                "SELECT epoch, id, address FROM {ks}.leader_announcement WHERE part = 0",
                (),
                1,
            )
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(epoch, id, address)| LeaderAnnouncement {
                epoch: rust_id(epoch),
                id,
                address,
            }))
    }

    async fn shard_count(&self) -> Result<Option<u32>, StorageError> {
        let row: Option<(i64,)> = self
            .serial_one(
                "SELECT value FROM {ks}.cluster_meta WHERE name = ?",
                (SHARD_COUNT,),
            )
            .await?;
        Ok(row.map(|(count,)| u32::try_from(count).unwrap_or(0)))
    }

    async fn fix_shard_count(&self, count: u32) -> Result<u32, StorageError> {
        let resolve = || async { Ok(self.shard_count().await? == Some(count)) };
        let outcome = self
            .lwt_resolved(
                "INSERT INTO {ks}.cluster_meta (name, value) VALUES (?, ?) IF NOT EXISTS",
                (SHARD_COUNT, i64::from(count)),
                resolve,
            )
            .await?;
        if outcome.applied {
            return Ok(count);
        }
        match outcome.bigint("value") {
            Some(stored) => Ok(u32::try_from(stored).unwrap_or(0)),
            None => self.shard_count().await?.ok_or_else(|| {
                StorageError::Database(
                    "cluster_meta: the shard count was neither written nor found".to_owned(),
                )
            }),
        }
    }

    async fn resharding(&self) -> Result<Option<Resharding>, StorageError> {
        let row: Option<(String,)> = self
            .serial_one("SELECT record FROM {ks}.reshardings WHERE part = 0", ())
            .await?;
        row.map(|(record,)| parse("reshardings", &record))
            .transpose()
    }

    async fn put_resharding(&self, next: &Resharding) -> Result<Resharding, StorageError> {
        let stored = self.resharding().await?;
        let count = self.shard_count().await?;
        check_next(stored.as_ref(), count, next)?;
        if next.phase == ReshardPhase::Completed && count != Some(next.to) {
            // The count first: if the record's write then fails, the record still runs and
            // writing the completion again finds the count already changed.
            let resolve = || async { Ok(self.shard_count().await? == Some(next.to)) };
            let outcome = self
                .lwt_resolved(
                    "UPDATE {ks}.cluster_meta SET value = ? WHERE name = ? IF value = ?",
                    (i64::from(next.to), SHARD_COUNT, i64::from(next.from)),
                    resolve,
                )
                .await?;
            if !outcome.applied {
                return Err(StorageError::Conflict {
                    expected: u64::from(next.from),
                    current: outcome.bigint("value").map_or(0, rust_id),
                });
            }
        }
        let written = Resharding {
            version: next.version + 1,
            ..next.clone()
        };
        let record = doc(&written);
        let resolve = || async { Ok(self.resharding().await?.as_ref() == Some(&written)) };
        let outcome = if next.version == 0 {
            self.lwt_resolved(
                "INSERT INTO {ks}.reshardings (part, version, record) VALUES (0, ?, ?) \
                 IF NOT EXISTS",
                (db_id(written.version), record.as_str()),
                resolve,
            )
            .await?
        } else {
            self.lwt_resolved(
                "UPDATE {ks}.reshardings SET version = ?, record = ? WHERE part = 0 \
                 IF version = ?",
                (db_id(written.version), record.as_str(), db_id(next.version)),
                resolve,
            )
            .await?
        };
        if !outcome.applied {
            return Err(StorageError::Conflict {
                expected: next.version,
                current: outcome.bigint("version").map_or(0, rust_id),
            });
        }
        Ok(written)
    }
}
