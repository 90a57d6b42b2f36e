//! Guilds the bot left, whose data waits for deletion: kept in memory so that a GUILD_CREATE
//! (thousands per READY) costs no storage round trip unless the guild really is one of them.

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
        let pending = store
            .scheduled_guild_deletions()
            .await?
            .into_iter()
            .map(|(guild, _)| guild)
            .collect();
        Ok(Self {
            pending: Mutex::new(pending),
        })
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
