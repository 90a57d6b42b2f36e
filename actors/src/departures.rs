//! Guilds the bot left, whose data waits for deletion: kept in memory so that a GUILD_CREATE
//! (thousands per READY) costs no storage round trip unless the guild really is one of them.
//! Read at start, and again whenever a shard arrives from another node (which may have seen
//! its guilds leave).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use protonn_storage::{StorageError, Store, Timestamp};

/// How long one read of the stored guilds serves the READYs that follow: a cold start
/// READYs every shard of a node within minutes, and one read of the config table (a full
/// scan on ScyllaDB) then serves them all.
const STORED_GUILDS_FRESH_FOR: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Departures {
    pending: Mutex<HashSet<u64>>,
    /// Every guild with stored config, and when it was read. An async lock: READYs that
    /// arrive together wait for one read instead of each making its own.
    stored: tokio::sync::Mutex<Option<(Timestamp, Vec<u64>)>>,
}

impl Departures {
    /// The departures already scheduled in storage, read at node start.
    pub async fn load(store: &dyn Store) -> Result<Self, StorageError> {
        let departures = Self::default();
        departures.refresh(store).await?;
        Ok(departures)
    }

    /// Adds the departures scheduled in storage since: another node's, for a shard it
    /// hands to this one.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StorageError> {
        let scheduled = store.scheduled_guild_deletions().await?;
        let mut pending = self.pending.lock().expect("departures lock");
        pending.extend(scheduled.into_iter().map(|(guild, _)| guild));
        Ok(())
    }

    pub(crate) fn left(&self, guild_id: u64) {
        self.pending
            .lock()
            .expect("departures lock")
            .insert(guild_id);
    }

    /// Whether the guild waits for deletion.
    pub(crate) fn is_pending(&self, guild_id: u64) -> bool {
        self.pending
            .lock()
            .expect("departures lock")
            .contains(&guild_id)
    }

    /// Whether the guild was waiting for deletion (and no longer is, here).
    pub(crate) fn returned(&self, guild_id: u64) -> bool {
        self.pending
            .lock()
            .expect("departures lock")
            .remove(&guild_id)
    }

    /// At READY of shard `shard_id` (of `shard_count`): guilds whose config is stored but
    /// that READY does not list were removed while the bot was offline, so no GUILD_DELETE
    /// came; their grace period starts now. Guilds already pending keep their date.
    /// Returns how many were scheduled.
    pub async fn departed_while_offline(
        &self,
        store: &dyn Store,
        shard_id: u32,
        shard_count: u32,
        present: &HashSet<u64>,
        grace: Duration,
        now: Timestamp,
    ) -> Result<usize, StorageError> {
        let gone: Vec<u64> = {
            let stored = self.stored_on(store, shard_id, shard_count, now).await?;
            let pending = self.pending.lock().expect("departures lock");
            stored
                .into_iter()
                .filter(|guild| !present.contains(guild) && !pending.contains(guild))
                .collect()
        };
        for &guild in &gone {
            store
                .schedule_guild_deletion(guild, now.saturating_add(grace))
                .await?;
            self.left(guild);
        }
        Ok(gone.len())
    }
}

impl Departures {
    /// The stored guilds of one shard, from a read at most [`STORED_GUILDS_FRESH_FOR`] old.
    /// A guild configured after that read is in READY anyway (the bot is in it), so only
    /// one configured and removed within the window waits for a later READY.
    async fn stored_on(
        &self,
        store: &dyn Store,
        shard_id: u32,
        shard_count: u32,
        now: Timestamp,
    ) -> Result<Vec<u64>, StorageError> {
        let mut stored = self.stored.lock().await;
        let fresh = stored.as_ref().is_some_and(|(read_at, _)| {
            *read_at <= now && read_at.until(now) < STORED_GUILDS_FRESH_FOR
        });
        if !fresh {
            *stored = Some((now, store.stored_guilds(0, 1).await?));
        }
        Ok(stored
            .as_ref()
            .map(|(_, all)| {
                all.iter()
                    .copied()
                    .filter(|&guild| protonn_storage::on_shard(guild, shard_id, shard_count))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonn_storage::{DataRights, EmbeddedStore, GuildConfig, GuildConfigRepo};

    /// Guild ids on shard 0 of 1 and of 2.
    const STILL_THERE: u64 = 2 << 22;
    const REMOVED_OFFLINE: u64 = 4 << 22;
    const ALREADY_LEAVING: u64 = 6 << 22;

    #[tokio::test]
    async fn guilds_missing_from_ready_start_their_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for guild in [STILL_THERE, REMOVED_OFFLINE, ALREADY_LEAVING] {
            store.save(guild, 0, &GuildConfig::default()).await.unwrap();
        }
        let earlier = Timestamp::from_days(20_000);
        store
            .schedule_guild_deletion(ALREADY_LEAVING, earlier)
            .await
            .unwrap();
        let departures = Departures::load(&store).await.unwrap();
        let now = Timestamp::from_days(20_010);
        let grace = Duration::from_secs(30 * 86_400);
        let present = HashSet::from([STILL_THERE]);
        let scheduled = departures
            .departed_while_offline(&store, 0, 1, &present, grace, now)
            .await
            .unwrap();
        assert_eq!(scheduled, 1);
        let mut pending = store.scheduled_guild_deletions().await.unwrap();
        pending.sort();
        assert_eq!(
            pending,
            vec![
                (REMOVED_OFFLINE, now.saturating_add(grace)),
                (ALREADY_LEAVING, earlier),
            ]
        );
        // Back in a later READY (added again): its GUILD_CREATE cancels as usual.
        assert!(departures.returned(REMOVED_OFFLINE));
        // Another shard's READY leaves these guilds alone.
        let other = departures
            .departed_while_offline(&store, 1, 2, &HashSet::new(), grace, now)
            .await
            .unwrap();
        assert_eq!(other, 0);
    }
}
