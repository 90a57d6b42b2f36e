//! The embedded backend: one redb file under the data directory, the default for one machine.
//!
//! Layout: one table per logical table, JSON values (every field defaulted or required, see
//! each type), tuple keys ordered for the range reads the repositories need. Two index tables
//! make data rights and retention cheap without scans:
//! - `user_refs` (user id, row ref) → () names every row that mentions a user;
//! - `expiry` (expires at, row ref) → () lists rows by the instant retention removes them,
//!   which the sweeper walks from the start (redb has no TTL).
//!
//! Both indexes change in the same write transaction as their rows, so a crash never leaves
//! one without the other.

mod announcements;
mod automod;
mod backfill;
mod backup;
mod moderation;
mod premium;
mod privacy;
mod records;
mod rights;
mod timers;
mod web_sessions;
mod workflow_data;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Serialize, de::DeserializeOwned};

use crate::row_ref::RowRef;
use crate::{
    AuditEntry, AuditRepo, CONFIG_HISTORY_LEN, GuildConfig, GuildConfigRepo, Retention,
    StorageError, Timestamp, UsageCount, UsageRepo, VersionedConfig,
};

/// guild id → [`VersionedConfig`].
const GUILD_CONFIG: TableDefinition<u64, &[u8]> = TableDefinition::new("guild_config");
/// (guild id, version) → [`GuildConfig`], the last [`CONFIG_HISTORY_LEN`] versions.
const CONFIG_HISTORY: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("guild_config_history");
/// (guild id, at ms, entry id) → [`AuditEntry`].
const AUDIT: TableDefinition<(u64, u64, u64), &[u8]> = TableDefinition::new("audit_log");
/// (guild id, hour, command, channel id) → count; each day of a guild's counters has an
/// expiry entry ([`RowRef::UsageDay`]).
const USAGE: TableDefinition<(u64, u32, &str, u64), u64> =
    TableDefinition::new("command_usage_hourly");
/// The daily counters that came before hours and channels; never written by a release.
const DAILY_USAGE: TableDefinition<(u64, u32, &str), u64> = TableDefinition::new("command_usage");
/// usage flush id → when it was applied (ms): a flush written again is not counted again.
const USAGE_FLUSHES: TableDefinition<u64, u64> = TableDefinition::new("usage_flushes");
/// Flush ids are kept this long (a retry comes within minutes) once there are many of them.
const USAGE_FLUSH_MEMORY_MS: u64 = 86_400_000;
const USAGE_FLUSHES_KEPT: u64 = 100_000;
/// user id → [`Account`](crate::Account).
const ACCOUNTS: TableDefinition<u64, &[u8]> = TableDefinition::new("accounts");
/// (guild id, ticket id) → [`Ticket`](crate::Ticket).
const TICKETS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("tickets");
/// guild id → the last ticket number given (kept when the guild's tickets go, so a number
/// is never reused).
const TICKET_COUNTERS: TableDefinition<u64, u64> = TableDefinition::new("ticket_counters");
/// (guild id, ticket id, message id) → [`TranscriptMessage`](crate::TranscriptMessage).
const TRANSCRIPTS: TableDefinition<(u64, u64, u64), &[u8]> = TableDefinition::new("transcripts");
/// (guild id, workflow id) → [`Workflow`](crate::Workflow).
const WORKFLOWS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("workflows");
/// subscription id → [`Subscription`](crate::Subscription).
const SUBSCRIPTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("subscriptions");
/// code → `StoredPromo`.
const PROMOS: TableDefinition<&str, &[u8]> = TableDefinition::new("promo_codes");
/// (code, user id) → [`Redemption`](crate::Redemption).
const REDEMPTIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("promo_redemptions");
/// node id → [`NodeRecord`](crate::NodeRecord).
const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
/// shard id → [`ShardAssignment`](crate::ShardAssignment).
const ASSIGNMENTS: TableDefinition<u32, &[u8]> = TableDefinition::new("shard_assignments");
/// shard id → [`SessionCheckpoint`](crate::SessionCheckpoint).
const CHECKPOINTS: TableDefinition<u32, &[u8]> = TableDefinition::new("session_checkpoints");
/// lease name → [`Lease`](crate::Lease).
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// "leader" → [`LeaderAnnouncement`](crate::LeaderAnnouncement).
const LEADER_ANNOUNCEMENT: TableDefinition<&str, &[u8]> =
    TableDefinition::new("leader_announcement");
/// fact name → value: what is fixed when the cluster forms (the shard count).
const CLUSTER_META: TableDefinition<&str, u64> = TableDefinition::new("cluster_meta");
/// "current" → the running or last [`Resharding`](crate::Resharding).
const RESHARDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("reshardings");
/// guild id → when its data is to be erased (ms), for guilds the bot left.
const GUILD_DEPARTURES: TableDefinition<u64, u64> = TableDefinition::new("guild_departures");
/// (user id, JSON of [`RowRef`]) → ().
const USER_REFS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("user_refs");
/// (expires at ms, JSON of [`RowRef`]) → ().
const EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("expiry");

const FILE_NAME: &str = "protonn.redb";

/// A handle on the embedded store; clones share one database.
///
/// redb calls block on disk I/O and fsync, so every call runs on tokio's blocking pool and
/// never on an actor's or a shard's task. Every write is one transaction committed with an
/// fsync: batch writes of the high-volume tables (see [`AuditWriter`](crate::AuditWriter)).
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    retention: Retention,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir` with the policy's retention. Fails
    /// with [`StorageError::Locked`] while another process has it open. After a crash redb
    /// repairs the file here, and every committed transaction is present.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(data_dir, Retention::POLICY)
    }

    pub fn open_with(data_dir: &Path, retention: Retention) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StorageError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StorageError::Locked(data_dir.to_owned()));
            }
            Err(err) => return Err(StorageError::embedded(err)),
        };
        // Create the tables up front so that readers never meet a missing table.
        let txn = db.begin_write().map_err(StorageError::embedded)?;
        {
            open(&txn, GUILD_CONFIG)?;
            open(&txn, CONFIG_HISTORY)?;
            open(&txn, AUDIT)?;
            open(&txn, USAGE)?;
            txn.delete_table(DAILY_USAGE)
                .map_err(StorageError::embedded)?;
            open(&txn, USAGE_FLUSHES)?;
            open(&txn, ACCOUNTS)?;
            open(&txn, TICKETS)?;
            open(&txn, TICKET_COUNTERS)?;
            open(&txn, TRANSCRIPTS)?;
            open(&txn, WORKFLOWS)?;
            open(&txn, SUBSCRIPTIONS)?;
            open(&txn, PROMOS)?;
            open(&txn, REDEMPTIONS)?;
            open(&txn, NODES)?;
            open(&txn, ASSIGNMENTS)?;
            open(&txn, CHECKPOINTS)?;
            open(&txn, LEASES)?;
            open(&txn, LEADER_ANNOUNCEMENT)?;
            open(&txn, CLUSTER_META)?;
            open(&txn, RESHARDINGS)?;
            open(&txn, GUILD_DEPARTURES)?;
            open(&txn, USER_REFS)?;
            open(&txn, EXPIRY)?;
            open(&txn, web_sessions::WEB_SESSIONS)?;
            open(&txn, web_sessions::WEB_SESSIONS_BY_USER)?;
            premium::create_tables(&txn)?;
            privacy::create_tables(&txn)?;
            open(&txn, moderation::CASES)?;
            open(&txn, moderation::CASE_COUNTERS)?;
            open(&txn, moderation::CASES_BY_TARGET)?;
            open(&txn, timers::TIMERS)?;
            open(&txn, timers::TIMERS_BY_GUILD)?;
            open(&txn, automod::AUTOMOD_HITS)?;
            open(&txn, announcements::ANNOUNCE_OPT_INS)?;
            open(&txn, announcements::CAMPAIGNS)?;
            open(&txn, announcements::DELIVERIES)?;
            open(&txn, announcements::DM_DELIVERIES)?;
            workflow_data::create_tables(&txn)?;
            open(&txn, announcements::SCHEDULES)?;
            open(&txn, backfill::BACKFILL)?;
        }
        txn.commit().map_err(StorageError::embedded)?;
        Ok(Self {
            db: Arc::new(db),
            path,
            retention,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database, &Retention) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = Arc::clone(&self.db);
        let retention = self.retention;
        tokio::task::spawn_blocking(move || work(&db, &retention))
            .await
            .map_err(|err| StorageError::Worker(err.to_string()))?
    }

    /// Runs `work` in one write transaction and commits it (durably) if it returns `Ok`.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WriteTransaction, &Retention) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.blocking(move |db, retention| {
            let txn = db.begin_write().map_err(StorageError::embedded)?;
            let out = work(&txn, retention)?;
            txn.commit().map_err(StorageError::embedded)?;
            Ok(out)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::ReadTransaction, &Retention) -> Result<T, StorageError>
        + Send
        + 'static,
    ) -> Result<T, StorageError> {
        self.blocking(move |db, retention| {
            let txn = db.begin_read().map_err(StorageError::embedded)?;
            work(&txn, retention)
        })
        .await
    }
}

fn open<'t, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'t WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<redb::Table<'t, K, V>, StorageError> {
    txn.open_table(table).map_err(StorageError::embedded)
}

fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<redb::ReadOnlyTable<K, V>, StorageError> {
    txn.open_table(table).map_err(StorageError::embedded)
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stored types serialise to JSON")
}

fn from_json<T: DeserializeOwned>(
    key: impl std::fmt::Display,
    bytes: &[u8],
) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|err| StorageError::corrupt(key, err))
}

fn e(err: impl Into<redb::Error>) -> StorageError {
    StorageError::embedded(err)
}

/// The two index tables, opened once per transaction for writers that touch many rows.
struct Indexes<'t> {
    refs: redb::Table<'t, (u64, &'static [u8]), ()>,
    expiry: redb::Table<'t, (u64, &'static [u8]), ()>,
}

impl<'t> Indexes<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StorageError> {
        Ok(Self {
            refs: open(txn, USER_REFS)?,
            expiry: open(txn, EXPIRY)?,
        })
    }

    /// Adds the index entries of a row: one per user it mentions, one for its expiry.
    /// Whether one was missing (what the backfill counts).
    fn add(
        &mut self,
        row: &RowRef,
        users: &[u64],
        expires: Option<Timestamp>,
    ) -> Result<bool, StorageError> {
        let bytes = row.bytes();
        let mut added = false;
        for &user in users {
            let old = self.refs.insert((user, bytes.as_slice()), ()).map_err(e)?;
            added |= old.is_none();
        }
        if let Some(at) = expires {
            let old = self
                .expiry
                .insert((at.0, bytes.as_slice()), ())
                .map_err(e)?;
            added |= old.is_none();
        }
        Ok(added)
    }

    /// Removes what [`add`](Self::add) added.
    fn remove(
        &mut self,
        row: &RowRef,
        users: &[u64],
        expires: Option<Timestamp>,
    ) -> Result<(), StorageError> {
        let bytes = row.bytes();
        for &user in users {
            self.refs.remove((user, bytes.as_slice())).map_err(e)?;
        }
        if let Some(at) = expires {
            self.expiry.remove((at.0, bytes.as_slice())).map_err(e)?;
        }
        Ok(())
    }
}

/// Adds the index entries of one row.
fn index(
    txn: &WriteTransaction,
    row: &RowRef,
    users: &[u64],
    expires: Option<Timestamp>,
) -> Result<(), StorageError> {
    Indexes::open(txn)?.add(row, users, expires).map(drop)
}

/// Removes the index entries of one row.
fn unindex(
    txn: &WriteTransaction,
    row: &RowRef,
    users: &[u64],
    expires: Option<Timestamp>,
) -> Result<(), StorageError> {
    Indexes::open(txn)?.remove(row, users, expires)
}

fn audit_users(entry: &AuditEntry) -> Vec<u64> {
    let mut users = vec![entry.actor_id];
    users.extend(entry.target_id.filter(|&t| t != entry.actor_id));
    users
}

fn audit_ref(entry: &AuditEntry) -> RowRef {
    RowRef::Audit {
        guild: entry.guild_id,
        at: entry.at.0,
        id: entry.id,
    }
}

fn load_config(
    table: &impl ReadableTable<u64, &'static [u8]>,
    guild_id: u64,
) -> Result<Option<VersionedConfig>, StorageError> {
    let row = table.get(guild_id).map_err(e)?;
    row.map(|bytes| decode_config(guild_id, bytes.value()))
        .transpose()
}

fn decode_config(guild_id: u64, bytes: &[u8]) -> Result<VersionedConfig, StorageError> {
    from_json(format_args!("guild_config/{guild_id}"), bytes)
}

#[async_trait]
impl GuildConfigRepo for EmbeddedStore {
    async fn load(&self, guild_id: u64) -> Result<Option<VersionedConfig>, StorageError> {
        self.read(move |txn, _| load_config(&open_read(txn, GUILD_CONFIG)?, guild_id))
            .await
    }

    async fn save(
        &self,
        guild_id: u64,
        expected: u64,
        config: &GuildConfig,
    ) -> Result<u64, StorageError> {
        let config = config.clone();
        // redb serialises write transactions, so the read-compare-write below is atomic.
        self.write(move |txn, _| {
            let mut table = open(txn, GUILD_CONFIG)?;
            let current = load_config(&table, guild_id)?.map_or(0, |stored| stored.version);
            if current != expected {
                return Err(StorageError::Conflict { expected, current });
            }
            let stored = VersionedConfig {
                version: current + 1,
                config,
            };
            table
                .insert(guild_id, to_json(&stored).as_slice())
                .map_err(e)?;
            let mut history = open(txn, CONFIG_HISTORY)?;
            history
                .insert(
                    (guild_id, stored.version),
                    to_json(&stored.config).as_slice(),
                )
                .map_err(e)?;
            if let Some(oldest_kept) = stored.version.checked_sub(CONFIG_HISTORY_LEN - 1) {
                history
                    .retain_in((guild_id, 0)..(guild_id, oldest_kept), |_, _| false)
                    .map_err(e)?;
            }
            Ok(stored.version)
        })
        .await
    }

    async fn history(&self, guild_id: u64) -> Result<Vec<VersionedConfig>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, CONFIG_HISTORY)?;
            let mut out = Vec::new();
            for row in table
                .range((guild_id, 0)..=(guild_id, u64::MAX))
                .map_err(e)?
                .rev()
            {
                let (key, value) = row.map_err(e)?;
                let (_, version) = key.value();
                out.push(VersionedConfig {
                    version,
                    config: from_json(
                        format_args!("guild_config_history/{guild_id}/{version}"),
                        value.value(),
                    )?,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl AuditRepo for EmbeddedStore {
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StorageError> {
        let mut entries = entries.to_vec();
        let now = Timestamp::now();
        self.write(move |txn, retention| {
            // Inserting in key order keeps each B-tree page hot while it is filled: batches
            // span many guilds, and random order halves the rows/s once the table is large.
            entries.sort_by_key(|entry| (entry.guild_id, entry.at, entry.id));
            let mut refs_added = Vec::with_capacity(entries.len() * 2);
            let mut expiry_added = Vec::with_capacity(entries.len());
            {
                let mut table = open(txn, AUDIT)?;
                let mut indexes = Indexes::open(txn)?;
                for entry in &entries {
                    let expires = entry.at.saturating_add(retention.audit);
                    if expires <= now {
                        continue;
                    }
                    let key = (entry.guild_id, entry.at.0, entry.id);
                    let previous = table
                        .insert(key, to_json(entry).as_slice())
                        .map_err(e)?
                        .map(|old| old.value().to_vec());
                    let row = audit_ref(entry);
                    if let Some(old) = previous {
                        let old: AuditEntry = from_json("audit_log", &old)?;
                        indexes.remove(&row, &audit_users(&old), Some(expires))?;
                    }
                    let bytes = row.bytes();
                    for user in audit_users(entry) {
                        refs_added.push((user, bytes.clone()));
                    }
                    expiry_added.push((expires.0, bytes));
                }
            }
            refs_added.sort_unstable();
            expiry_added.sort_unstable();
            let mut indexes = Indexes::open(txn)?;
            for (user, row) in &refs_added {
                indexes
                    .refs
                    .insert((*user, row.as_slice()), ())
                    .map_err(e)?;
            }
            for (at, row) in &expiry_added {
                indexes
                    .expiry
                    .insert((*at, row.as_slice()), ())
                    .map_err(e)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_audit(
        &self,
        guild_id: u64,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, AUDIT)?;
            let mut out = Vec::new();
            if from >= to {
                return Ok(out);
            }
            for row in table
                .range((guild_id, from.0, 0)..(guild_id, to.0, 0))
                .map_err(e)?
                .take(limit)
            {
                let (_, value) = row.map_err(e)?;
                out.push(from_json("audit_log", value.value())?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl UsageRepo for EmbeddedStore {
    async fn add_usage(&self, deltas: &[UsageCount]) -> Result<(), StorageError> {
        let deltas = deltas.to_vec();
        self.write(move |txn, retention| add_deltas(txn, &deltas, retention))
            .await
    }

    async fn add_usage_flush(
        &self,
        flush_id: u64,
        deltas: &[UsageCount],
    ) -> Result<(), StorageError> {
        let deltas = deltas.to_vec();
        let now = Timestamp::now().as_millis();
        self.write(move |txn, retention| {
            let mut flushes = open(txn, USAGE_FLUSHES)?;
            if flushes.get(flush_id).map_err(e)?.is_some() {
                return Ok(());
            }
            add_deltas(txn, &deltas, retention)?;
            flushes.insert(flush_id, now).map_err(e)?;
            if redb::ReadableTableMetadata::len(&flushes).map_err(e)? > USAGE_FLUSHES_KEPT {
                let cutoff = now.saturating_sub(USAGE_FLUSH_MEMORY_MS);
                flushes.retain(|_, applied| applied >= cutoff).map_err(e)?;
            }
            Ok(())
        })
        .await
    }

    async fn usage(
        &self,
        guild_id: u64,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<UsageCount>, StorageError> {
        self.read(move |txn, _| {
            let table = open_read(txn, USAGE)?;
            let (first, last) = usage_hours(from_day, to_day);
            let mut out = Vec::new();
            for row in table
                .range((guild_id, first, "", 0)..(guild_id, last, "", 0))
                .map_err(e)?
            {
                let (key, value) = row.map_err(e)?;
                let (_, hour, command, channel_id) = key.value();
                out.push(UsageCount {
                    guild_id,
                    hour,
                    command: command.to_owned(),
                    channel_id,
                    count: value.value(),
                });
            }
            Ok(out)
        })
        .await
    }
}

fn add_deltas(
    txn: &WriteTransaction,
    deltas: &[UsageCount],
    retention: &Retention,
) -> Result<(), StorageError> {
    let mut table = open(txn, USAGE)?;
    let mut indexes = Indexes::open(txn)?;
    for delta in deltas {
        let key = (
            delta.guild_id,
            delta.hour,
            delta.command.as_str(),
            delta.channel_id,
        );
        let current = table.get(key).map_err(e)?.map_or(0, |v| v.value());
        table
            .insert(key, current.saturating_add(delta.count))
            .map_err(e)?;
        let day = delta.day();
        let row = RowRef::UsageDay {
            guild: delta.guild_id,
            day,
        };
        indexes.add(&row, &[], Some(usage_expiry(day, retention)))?;
    }
    Ok(())
}

/// The hours `[first, last)` of days `from_day..=to_day`.
fn usage_hours(from_day: u32, to_day: u32) -> (u32, u32) {
    (
        from_day.saturating_mul(24),
        to_day.saturating_add(1).saturating_mul(24),
    )
}

/// When a day of usage counters expires: the usage retention after the day ends.
fn usage_expiry(day: u32, retention: &Retention) -> Timestamp {
    Timestamp::from_days(day.saturating_add(1)).saturating_add(retention.usage)
}

/// The days that have usage counters of `guild`, in order; one lookup a day.
fn usage_days(
    table: &impl redb::ReadableTable<(u64, u32, &'static str, u64), u64>,
    guild: u64,
) -> Result<Vec<u32>, StorageError> {
    let mut days = Vec::new();
    let mut from = 0;
    loop {
        let next = table
            .range((guild, from, "", 0)..(guild + 1, 0, "", 0))
            .map_err(e)?
            .next();
        let Some(row) = next else {
            return Ok(days);
        };
        let day = row.map_err(e)?.0.value().1 / 24;
        days.push(day);
        from = (day + 1).saturating_mul(24);
        if from == u32::MAX {
            return Ok(days);
        }
    }
}

/// Removes a guild's counters of one day; how many there were.
fn remove_usage_day(txn: &WriteTransaction, guild: u64, day: u32) -> Result<u64, StorageError> {
    let (first, last) = usage_hours(day, day);
    let mut count = 0;
    open(txn, USAGE)?
        .retain_in((guild, first, "", 0)..(guild, last, "", 0), |_, _| {
            count += 1;
            false
        })
        .map_err(e)?;
    Ok(count)
}

#[cfg(test)]
mod tests;
