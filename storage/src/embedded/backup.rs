//! Backups of the embedded store: a consistent copy taken while the store is in use, and a
//! restore into a data directory that no process has open.

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::{
    ACCOUNTS, ASSIGNMENTS, AUDIT, CHECKPOINTS, CLUSTER_META, CONFIG_HISTORY, EXPIRY, EmbeddedStore,
    FILE_NAME, GUILD_CONFIG, GUILD_DEPARTURES, LEADER_ANNOUNCEMENT, LEASES, NODES, PROMOS,
    REDEMPTIONS, RESHARDINGS, SUBSCRIPTIONS, TICKETS, TRANSCRIPTS, USAGE, USER_REFS, WORKFLOWS, e,
};
use crate::StorageError;

impl EmbeddedStore {
    /// Writes every table, as one read transaction sees them, to a new redb file at `dest`,
    /// and answers how many rows it holds. The copy is consistent (each commit made meanwhile
    /// is wholly in it or wholly not) and taken without stopping anyone: redb readers never
    /// block writers. `dest` must not exist; nothing is left at `dest` when the copy fails.
    pub async fn backup(&self, dest: &Path) -> Result<u64, StorageError> {
        let dest = dest.to_owned();
        self.blocking(move |db, _| {
            let read = db.begin_read().map_err(e)?;
            write_backup(&read, &dest)
        })
        .await
    }

    /// Replaces the store in `data_dir` with the backup at `backup` and answers how many rows
    /// it holds. The backup is checked first (it opens, and holds every table); the data
    /// directory must not be in use ([`StorageError::Locked`] otherwise, and nothing
    /// changes). The old file is replaced in one rename, so a crash leaves one or the other.
    pub fn restore(backup: &Path, data_dir: &Path) -> Result<u64, StorageError> {
        let rows = {
            let db = Database::open(backup).map_err(|err| match err {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StorageError::Invalid(format!("backup {} is in use", backup.display()))
                }
                other => StorageError::Invalid(format!(
                    "{} is not a readable backup: {other}",
                    backup.display()
                )),
            })?;
            let read = db.begin_read().map_err(e)?;
            count_rows(&read).map_err(|err| {
                StorageError::Invalid(format!(
                    "{} is not a complete backup: {err}",
                    backup.display()
                ))
            })?
        };
        // Holding the current store keeps any process from opening it until the new file is
        // in place, and fails at once if one has it open.
        let current = EmbeddedStore::open(data_dir)?;
        let target = current.path().to_owned();
        let staged = data_dir.join(format!("{FILE_NAME}.restoring"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StorageError::Io { path, source }
        };
        std::fs::copy(backup, &staged).map_err(io(&staged))?;
        std::fs::File::open(&staged)
            .and_then(|file| file.sync_all())
            .map_err(io(&staged))?;
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        std::fs::File::open(data_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(data_dir))?;
        drop(current);
        Ok(rows)
    }
}

/// Copies every table of `read` into a new database at `dest`, built under a temporary name
/// and renamed once committed.
fn write_backup(read: &ReadTransaction, dest: &Path) -> Result<u64, StorageError> {
    if dest.exists() {
        return Err(StorageError::Invalid(format!(
            "backup file {} already exists",
            dest.display()
        )));
    }
    let partial = PathBuf::from(format!("{}.partial", dest.display()));
    let result = (|| {
        let _ = std::fs::remove_file(&partial);
        let db = Database::create(&partial).map_err(e)?;
        let write = db.begin_write().map_err(e)?;
        let rows = copy_tables(read, &write)?;
        write.commit().map_err(e)?;
        drop(db);
        std::fs::rename(&partial, dest).map_err(|source| StorageError::Io {
            path: dest.to_owned(),
            source,
        })?;
        Ok(rows)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `$f(args.., table)` for every table of the store (a macro: each table has its own key and
/// value types), summed.
macro_rules! each_table {
    ($f:ident($($arg:expr),*)) => {{
        let mut rows = 0u64;
        rows += $f($($arg,)* GUILD_CONFIG)?;
        rows += $f($($arg,)* CONFIG_HISTORY)?;
        rows += $f($($arg,)* AUDIT)?;
        rows += $f($($arg,)* USAGE)?;
        rows += $f($($arg,)* ACCOUNTS)?;
        rows += $f($($arg,)* TICKETS)?;
        rows += $f($($arg,)* TRANSCRIPTS)?;
        rows += $f($($arg,)* WORKFLOWS)?;
        rows += $f($($arg,)* SUBSCRIPTIONS)?;
        rows += $f($($arg,)* PROMOS)?;
        rows += $f($($arg,)* REDEMPTIONS)?;
        rows += $f($($arg,)* NODES)?;
        rows += $f($($arg,)* ASSIGNMENTS)?;
        rows += $f($($arg,)* CHECKPOINTS)?;
        rows += $f($($arg,)* LEASES)?;
        rows += $f($($arg,)* LEADER_ANNOUNCEMENT)?;
        rows += $f($($arg,)* CLUSTER_META)?;
        rows += $f($($arg,)* RESHARDINGS)?;
        rows += $f($($arg,)* GUILD_DEPARTURES)?;
        rows += $f($($arg,)* USER_REFS)?;
        rows += $f($($arg,)* EXPIRY)?;
        Ok::<u64, StorageError>(rows)
    }};
}

fn copy_tables(
    read: &ReadTransaction,
    write: &redb::WriteTransaction,
) -> Result<u64, StorageError> {
    each_table!(copy_table(read, write))
}

fn count_rows(read: &ReadTransaction) -> Result<u64, StorageError> {
    each_table!(count_table(read))
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &ReadTransaction,
    write: &redb::WriteTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64, StorageError> {
    let from = read.open_table(table).map_err(e)?;
    let mut to = write.open_table(table).map_err(e)?;
    let mut rows = 0;
    for row in from.iter().map_err(e)? {
        let (key, value) = row.map_err(e)?;
        to.insert(key.value(), value.value()).map_err(e)?;
        rows += 1;
    }
    Ok(rows)
}

fn count_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<u64, StorageError> {
    read.open_table(table).map_err(e)?.len().map_err(e)
}
