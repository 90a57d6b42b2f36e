//! Guilds the bot left, whose data waits for deletion: kept in memory so that a GUILD_CREATE
//! (thousands per READY) costs no storage round trip unless the guild really is one of them.
//! Read at start, and again whenever a shard arrives from another node (which may have seen
//! its guilds leave).

use std::collections::HashSet;
use std::sync::Mutex;

use protonn_storage::{StorageError, Store};

#[derive(Default)]
pub struct Departures {
    pending: Mutex<HashSet<u64>>,
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

    /// Whether the guild was waiting for deletion (and no longer is, here).
    pub(crate) fn returned(&self, guild_id: u64) -> bool {
        self.pending
            .lock()
            .expect("departures lock")
            .remove(&guild_id)
    }
}
