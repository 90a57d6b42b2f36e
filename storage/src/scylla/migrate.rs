//! Schema migrations on ScyllaDB: `schema/NNN_*.cql` applied in order, each recorded in
//! `schema_versions` with a checksum of its text, one migrator at a time.
//!
//! - A migration already applied whose file has changed since is refused: the database holds
//!   what the old text made, and silently skipping or re-running the new one would diverge.
//! - The lock is a row written by LWT with a TTL, so a migrator that dies frees it by itself;
//!   the holder re-takes it (LWT on its own holder id) before each file, and stops if it lost
//!   it, so two migrators never interleave statements.
//! - Processes call [`ScyllaStore::check_schema`] at start and refuse a schema older than the
//!   build, naming the missing migration.

use std::time::Duration;

use super::{ScyllaStore, db_id};
use crate::{Replication, StorageError, Timestamp};

/// The schema files, in the order they are applied. Appending a file is a migration; editing
/// one already released is refused by every database that applied it.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "001_tables.cql",
        include_str!("../../schema/001_tables.cql"),
    ),
    (
        2,
        "002_guild_departures.cql",
        include_str!("../../schema/002_guild_departures.cql"),
    ),
    (
        3,
        "003_one_decision_writes.cql",
        include_str!("../../schema/003_one_decision_writes.cql"),
    ),
    (
        4,
        "004_idempotent_usage.cql",
        include_str!("../../schema/004_idempotent_usage.cql"),
    ),
    (
        5,
        "005_web_sessions.cql",
        include_str!("../../schema/005_web_sessions.cql"),
    ),
    (
        6,
        "006_cluster_meta.cql",
        include_str!("../../schema/006_cluster_meta.cql"),
    ),
    (
        7,
        "007_leader_announcement.cql",
        include_str!("../../schema/007_leader_announcement.cql"),
    ),
    (
        8,
        "008_privacy.cql",
        include_str!("../../schema/008_privacy.cql"),
    ),
    (
        9,
        "009_moderation_timers.cql",
        include_str!("../../schema/009_moderation_timers.cql"),
    ),
    (
        10,
        "010_premium.cql",
        include_str!("../../schema/010_premium.cql"),
    ),
    (
        11,
        "011_hourly_usage.cql",
        include_str!("../../schema/011_hourly_usage.cql"),
    ),
    (
        12,
        "012_automod_hits.cql",
        include_str!("../../schema/012_automod_hits.cql"),
    ),
    (
        13,
        "013_tickets.cql",
        include_str!("../../schema/013_tickets.cql"),
    ),
    (
        14,
        "014_announcements.cql",
        include_str!("../../schema/014_announcements.cql"),
    ),
    (
        15,
        "015_workflow_data.cql",
        include_str!("../../schema/015_workflow_data.cql"),
    ),
    (
        16,
        "016_announce_schedules.cql",
        include_str!("../../schema/016_announce_schedules.cql"),
    ),
    (
        17,
        "017_privacy_flag_changes.cql",
        include_str!("../../schema/017_privacy_flag_changes.cql"),
    ),
    (
        18,
        "018_announce_dms.cql",
        include_str!("../../schema/018_announce_dms.cql"),
    ),
    (
        19,
        "019_reshardings.cql",
        include_str!("../../schema/019_reshardings.cql"),
    ),
    (
        20,
        "020_backfill_progress.cql",
        include_str!("../../schema/020_backfill_progress.cql"),
    ),
];

/// How long the migration lock lives without being re-taken. Long enough for the slowest
/// file (schema agreement on a large cluster takes seconds), short enough that a crashed
/// migrator does not block the next deploy for long.
const LOCK_TTL: Duration = Duration::from_secs(120);

/// FNV-1a (64 bit) of a migration's text, in hex: it detects edits, it is not a defence
/// against someone forging a file.
pub(crate) fn checksum(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Splits a schema file into statements: `--` comments dropped, `;` separated.
pub(crate) fn cql_statements(text: &str) -> Vec<String> {
    let without_comments: String = text
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The replication clause of CREATE KEYSPACE. Tablets are disabled explicitly on
/// NetworkTopologyStrategy keyspaces: the schema relies on LWT (config versions, shard
/// epochs, leases, promo codes, the migration lock), which ScyllaDB 6.x/2025.x before the
/// late-2025 releases do not support on tablet keyspaces (nor counters, which migration 001
/// creates), and such a keyspace cannot be switched later. SimpleStrategy
/// keyspaces never use tablets, and older servers do not know the option.
pub(crate) fn keyspace_options(replication: &Replication) -> Result<String, StorageError> {
    match replication {
        Replication::Simple(rf) if *rf > 0 => Ok(format!(
            "replication = {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
        )),
        Replication::Simple(_) => Err(StorageError::Invalid(
            "replication factor must be at least 1".into(),
        )),
        Replication::NetworkTopology(dcs) => {
            if dcs.is_empty() {
                return Err(StorageError::Invalid(
                    "replication names no data centre".into(),
                ));
            }
            let mut parts = Vec::with_capacity(dcs.len());
            for (dc, rf) in dcs {
                let valid = !dc.is_empty()
                    && dc
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !valid || *rf == 0 {
                    return Err(StorageError::Invalid(format!(
                        "replication {dc:?}: {rf} (a data centre name and a factor of at least 1)"
                    )));
                }
                parts.push(format!("'{dc}': {rf}"));
            }
            Ok(format!(
                "replication = {{'class': 'NetworkTopologyStrategy', {}}} \
                 AND tablets = {{'enabled': false}}",
                parts.join(", ")
            ))
        }
    }
}

/// A migration file and whether the database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStep {
    pub version: i32,
    pub name: &'static str,
    pub checksum: String,
    pub statements: Vec<String>,
}

/// What `migrate` found and did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations the database already had.
    pub already_applied: Vec<&'static str>,
    /// Migrations applied now, or that a dry run would apply, in order, with their statements.
    pub pending: Vec<MigrationStep>,
    pub dry_run: bool,
}

#[derive(scylla::DeserializeRow)]
struct AppliedRow {
    version: i32,
    name: String,
    checksum: String,
}

impl ScyllaStore {
    async fn applied_migrations(&self) -> Result<Vec<AppliedRow>, StorageError> {
        self.select(
            "SELECT version, name, checksum FROM {ks}.schema_versions",
            (),
        )
        .await
    }

    /// Compares the files with what the database recorded: the files still to apply, or an
    /// error if an applied one has changed.
    fn plan(applied: &[AppliedRow]) -> Result<MigrationReport, StorageError> {
        let mut report = MigrationReport::default();
        for (version, name, text) in MIGRATIONS {
            let sum = checksum(text);
            match applied.iter().find(|row| row.version == *version) {
                Some(row) if row.checksum == sum && row.name == *name => {
                    report.already_applied.push(name);
                }
                Some(row) => {
                    return Err(StorageError::MigrationChanged {
                        name: (*name).to_owned(),
                        applied: format!("{} {}", row.name, row.checksum),
                        file: sum,
                    });
                }
                None => report.pending.push(MigrationStep {
                    version: *version,
                    name,
                    checksum: sum,
                    statements: cql_statements(text),
                }),
            }
        }
        Ok(report)
    }

    /// Refuses a schema older than this build: call at start, before serving.
    pub async fn check_schema(&self) -> Result<(), StorageError> {
        let applied = match self.applied_migrations().await {
            Ok(applied) => applied,
            // No keyspace or no version table: nothing was ever migrated.
            Err(err) if !err.is_transient() => Vec::new(),
            Err(err) => return Err(err),
        };
        let report = Self::plan(&applied)?;
        if report.pending.is_empty() {
            Ok(())
        } else {
            Err(StorageError::SchemaBehind {
                missing: report.pending.iter().map(|m| m.name.to_owned()).collect(),
            })
        }
    }

    /// Creates the keyspace (with `replication`) and applies every migration the database does
    /// not have yet, in order, under the migration lock. With `dry_run` nothing is created,
    /// locked or applied: the report lists what would be.
    pub async fn migrate_with(
        &self,
        replication: &Replication,
        holder: &str,
        dry_run: bool,
    ) -> Result<MigrationReport, StorageError> {
        let options = keyspace_options(replication)?;
        if holder.is_empty() {
            return Err(StorageError::Invalid("empty migration lock holder".into()));
        }
        if dry_run {
            let applied = match self.applied_migrations().await {
                Ok(applied) => applied,
                Err(err) if !err.is_transient() => Vec::new(),
                Err(err) => return Err(err),
            };
            let mut report = Self::plan(&applied)?;
            report.dry_run = true;
            return Ok(report);
        }
        let ks = self.keyspace().to_owned();
        self.ddl(&format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH {options}"
        ))
        .await?;
        self.ddl(&format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_versions \
             (version int PRIMARY KEY, name text, checksum text, applied_at bigint)"
        ))
        .await?;
        self.ddl(&format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_lock \
             (name text PRIMARY KEY, holder text, taken_at bigint)"
        ))
        .await?;
        self.take_migration_lock(holder).await?;
        let outcome = self.apply_pending(holder).await;
        // The lock expires by itself if this fails; releasing it only lets the next deploy go
        // at once.
        if let Err(err) = self.release_migration_lock(holder).await {
            tracing::warn!(%err, "migration lock not released; it expires by itself");
        }
        outcome
    }

    async fn apply_pending(&self, holder: &str) -> Result<MigrationReport, StorageError> {
        let report = Self::plan(&self.applied_migrations().await?)?;
        let ks = self.keyspace().to_owned();
        for step in &report.pending {
            self.renew_migration_lock(holder).await?;
            for statement in &step.statements {
                self.ddl(&statement.replace("{ks}", &ks)).await?;
            }
            self.execute(
                "INSERT INTO {ks}.schema_versions (version, name, checksum, applied_at) \
                 VALUES (?, ?, ?, ?)",
                true,
                (
                    step.version,
                    step.name,
                    step.checksum.as_str(),
                    db_id(Timestamp::now().as_millis()),
                ),
            )
            .await?;
            tracing::info!(version = step.version, name = step.name, keyspace = %ks, "schema migration applied");
        }
        Ok(report)
    }

    async fn lock_holder(&self) -> Result<Option<String>, StorageError> {
        #[derive(scylla::DeserializeRow)]
        struct LockRow {
            holder: Option<String>,
        }
        Ok(self
            .serial_one::<LockRow>(
                "SELECT holder FROM {ks}.schema_lock WHERE name = 'migrate'",
                (),
            )
            .await?
            .and_then(|row| row.holder))
    }

    async fn take_migration_lock(&self, holder: &str) -> Result<(), StorageError> {
        let ttl = i32::try_from(LOCK_TTL.as_secs()).unwrap_or(i32::MAX);
        let taken = self
            .lwt_resolved(
                "INSERT INTO {ks}.schema_lock (name, holder, taken_at) VALUES ('migrate', ?, ?) \
                 IF NOT EXISTS USING TTL ?",
                (holder, db_id(Timestamp::now().as_millis()), ttl),
                || async { Ok(self.lock_holder().await?.as_deref() == Some(holder)) },
            )
            .await?;
        if taken.applied {
            return Ok(());
        }
        let current = match taken.text("holder") {
            Some(current) => current.to_owned(),
            None => self.lock_holder().await?.unwrap_or_default(),
        };
        Err(StorageError::MigrationLocked { holder: current })
    }

    async fn renew_migration_lock(&self, holder: &str) -> Result<(), StorageError> {
        let ttl = i32::try_from(LOCK_TTL.as_secs()).unwrap_or(i32::MAX);
        let renewed = self
            .lwt_resolved(
                "UPDATE {ks}.schema_lock USING TTL ? SET holder = ?, taken_at = ? \
                 WHERE name = 'migrate' IF holder = ?",
                (ttl, holder, db_id(Timestamp::now().as_millis()), holder),
                || async { Ok(self.lock_holder().await?.as_deref() == Some(holder)) },
            )
            .await?;
        if renewed.applied {
            Ok(())
        } else {
            Err(StorageError::MigrationLockLost {
                holder: holder.to_owned(),
            })
        }
    }

    async fn release_migration_lock(&self, holder: &str) -> Result<(), StorageError> {
        self.lwt_resolved(
            "DELETE FROM {ks}.schema_lock WHERE name = 'migrate' IF holder = ?",
            (holder,),
            || async { Ok(self.lock_holder().await?.as_deref() != Some(holder)) },
        )
        .await?;
        Ok(())
    }

    /// [`migrate_with`](Self::migrate_with) a single replica: for tests and development.
    pub async fn migrate(&self) -> Result<MigrationReport, StorageError> {
        self.migrate_with(&Replication::Simple(1), "test", false)
            .await
    }

    /// The migrations this build knows, applied or not: what `protonn migrate --dry-run`
    /// lists when the database cannot be read.
    pub fn migrations() -> Vec<(i32, &'static str)> {
        MIGRATIONS.iter().map(|(v, n, _)| (*v, *n)).collect()
    }
}
