//! The embedded backend: one redb file under the data directory, the default for one machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{GuildConfig, GuildConfigRepo, StorageError, VersionedConfig};

/// guild id → JSON of [`VersionedConfig`]. JSON keeps the document readable and lets fields
/// be added without a migration.
const GUILD_CONFIG: TableDefinition<u64, &[u8]> = TableDefinition::new("guild_config");

const FILE_NAME: &str = "protonn.redb";

/// A handle on the embedded store; clones share one database.
///
/// redb calls block on disk I/O and fsync, so every call runs on tokio's blocking pool and
/// never on an actor's or a shard's task.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`. Fails with
    /// [`StorageError::Locked`] while another process has it open.
    pub fn open(data_dir: &Path) -> Result<Self, StorageError> {
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
        txn.open_table(GUILD_CONFIG)
            .map_err(StorageError::embedded)?;
        txn.commit().map_err(StorageError::embedded)?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|err| StorageError::Worker(err.to_string()))?
    }
}

fn decode(guild_id: u64, bytes: &[u8]) -> Result<VersionedConfig, StorageError> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt {
        key: guild_id,
        source,
    })
}

#[async_trait]
impl GuildConfigRepo for EmbeddedStore {
    async fn load(&self, guild_id: u64) -> Result<Option<VersionedConfig>, StorageError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(StorageError::embedded)?;
            let table = txn
                .open_table(GUILD_CONFIG)
                .map_err(StorageError::embedded)?;
            let row = table.get(guild_id).map_err(StorageError::embedded)?;
            row.map(|bytes| decode(guild_id, bytes.value())).transpose()
        })
        .await
    }

    async fn save(
        &self,
        guild_id: u64,
        expected: u64,
        config: &GuildConfig,
    ) -> Result<u64, StorageError> {
        let config = config.clone();
        self.blocking(move |db| {
            // redb serialises write transactions, so the read-compare-write below is atomic.
            let txn = db.begin_write().map_err(StorageError::embedded)?;
            let version = {
                let mut table = txn
                    .open_table(GUILD_CONFIG)
                    .map_err(StorageError::embedded)?;
                let current = match table.get(guild_id).map_err(StorageError::embedded)? {
                    Some(bytes) => decode(guild_id, bytes.value())?.version,
                    None => 0,
                };
                if current != expected {
                    return Err(StorageError::Conflict { expected, current });
                }
                let stored = VersionedConfig {
                    version: current + 1,
                    config,
                };
                let bytes = serde_json::to_vec(&stored).expect("config serialises to JSON");
                table
                    .insert(guild_id, bytes.as_slice())
                    .map_err(StorageError::embedded)?;
                stored.version
            };
            txn.commit().map_err(StorageError::embedded)?;
            Ok(version)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(prefix: &str) -> GuildConfig {
        GuildConfig {
            prefix: prefix.to_owned(),
            ..GuildConfig::default()
        }
    }

    #[tokio::test]
    async fn save_then_load_round_trips_and_bumps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(store.load(7).await.unwrap(), None);

        assert_eq!(store.save(7, 0, &custom("?")).await.unwrap(), 1);
        assert_eq!(store.save(7, 1, &custom("$")).await.unwrap(), 2);
        let loaded = store.load(7).await.unwrap().unwrap();
        assert_eq!(loaded.version, 2);
        assert_eq!(loaded.config.prefix, "$");
        assert_eq!(
            store.load(8).await.unwrap(),
            None,
            "guilds do not share rows"
        );
    }

    #[tokio::test]
    async fn a_stale_version_conflicts_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.save(1, 0, &custom("?")).await.unwrap();

        let err = store.save(1, 0, &custom("$")).await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Conflict {
                    expected: 0,
                    current: 1
                }
            ),
            "{err}"
        );
        assert_eq!(store.load(1).await.unwrap().unwrap().config.prefix, "?");
    }

    #[tokio::test]
    async fn writes_survive_reopening_and_the_file_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.save(3, 0, &custom("%")).await.unwrap();

        let second = EmbeddedStore::open(dir.path()).unwrap_err();
        assert!(matches!(second, StorageError::Locked(_)), "{second}");

        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(reopened.load(3).await.unwrap().unwrap().config.prefix, "%");
    }

    #[test]
    fn documents_missing_new_fields_still_load() {
        let old = br#"{"version":4,"config":{"prefix":"?"}}"#;
        let loaded = decode(9, old).unwrap();
        assert_eq!(loaded.version, 4);
        assert_eq!(loaded.config.prefix, "?");
        assert_eq!(loaded.config.locale, "en-US");
    }
}
