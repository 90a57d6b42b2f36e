use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Resharding, StorageError, Timestamp};

/// A node of the cluster as the coordinator last heard of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: u64,
    /// Where its node agent listens (host:port).
    pub address: String,
    pub last_heartbeat: Timestamp,
    /// Set while the node hands its shards away before stopping.
    pub draining: bool,
}

/// Which node owns a shard. `epoch` grows by one with every change of owner; a node acts on
/// a shard only with the epoch it was given, so a stale owner is fenced out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAssignment {
    pub shard_id: u32,
    pub node_id: u64,
    pub epoch: u64,
}

/// Where a shard's gateway session stands, for RESUME after a handoff or a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCheckpoint {
    pub shard_id: u32,
    /// The ownership epoch of the writer.
    pub epoch: u64,
    pub session_id: String,
    pub sequence: u64,
    pub resume_url: String,
    pub at: Timestamp,
}

/// A named lease (coordinator leadership, say). `epoch` is the fencing token: it grows with
/// every new holder, and writes guarded by the lease carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    pub holder: u64,
    pub epoch: u64,
    pub expires_at: Timestamp,
}

/// The leading coordinator as it announces itself to standbys on a shared store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderAnnouncement {
    /// Its lease's epoch: the announcement is believed only while the lease has it.
    pub epoch: u64,
    /// The coordinator's name (its pod name).
    pub id: String,
    /// Where other processes reach its gRPC (`http://host:port`).
    pub address: String,
}

/// The cluster tables. Every compare-and-set here is an LWT on ScyllaDB and a write
/// transaction on the embedded store.
#[async_trait]
pub trait ClusterRepo: Send + Sync + 'static {
    /// Creates or replaces the node's record (registration and heartbeats).
    async fn put_node(&self, node: &NodeRecord) -> Result<(), StorageError>;

    /// All nodes ordered by id.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StorageError>;

    async fn remove_node(&self, node_id: u64) -> Result<(), StorageError>;

    /// Makes `leader_epoch` (the leadership lease's epoch) the only one assignments are
    /// written under from now on; claiming again with the same epoch is a no-op.
    /// [`StorageError::Fenced`] if a newer leader has claimed them.
    async fn claim_assignments(&self, leader_epoch: u64) -> Result<(), StorageError>;

    /// Gives `shard_id` to `node_id` if its epoch is still `expected_epoch` (0 for a shard never
    /// assigned) and `leader_epoch` is the one that claimed the assignments last. Returns the
    /// new assignment with epoch `expected_epoch + 1`; [`StorageError::Conflict`] if someone
    /// else moved it first, [`StorageError::Fenced`] if a newer leader claimed the assignments:
    /// a leader that froze past its lease cannot give a shard a second owner when it wakes.
    /// (The lease lives elsewhere; on ScyllaDB a check of it would not be atomic with this.)
    async fn assign_shard(
        &self,
        shard_id: u32,
        node_id: u64,
        expected_epoch: u64,
        leader_epoch: u64,
    ) -> Result<ShardAssignment, StorageError>;

    /// All assignments ordered by shard.
    async fn assignments(&self) -> Result<Vec<ShardAssignment>, StorageError>;

    /// Stores the checkpoint unless one with a newer epoch is stored
    /// ([`StorageError::Fenced`]): a superseded owner cannot overwrite its successor's.
    async fn save_checkpoint(&self, checkpoint: &SessionCheckpoint) -> Result<(), StorageError>;

    /// Stores many checkpoints at once (what a node sends per heartbeat), skipping each whose
    /// epoch is older than its shard's assignment epoch or than the checkpoint stored: its
    /// writer no longer owns the shard. Returns the shards skipped. Not all-or-nothing: an
    /// error may leave some stored, and a retry stores them again (writes are idempotent).
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
        let mut stale = Vec::new();
        for checkpoint in checkpoints {
            if current
                .get(&checkpoint.shard_id)
                .is_some_and(|&epoch| checkpoint.epoch < epoch)
            {
                stale.push(checkpoint.shard_id);
                continue;
            }
            match self.save_checkpoint(checkpoint).await {
                Ok(()) => {}
                Err(StorageError::Fenced { .. }) => stale.push(checkpoint.shard_id),
                Err(err) => return Err(err),
            }
        }
        Ok(stale)
    }

    /// The newest stored checkpoint of the shard.
    async fn checkpoint(&self, shard_id: u32) -> Result<Option<SessionCheckpoint>, StorageError>;

    /// Takes the lease for `holder` until `now + ttl` if it is free, lapsed, or already
    /// `holder`'s. A new holder gets the previous epoch + 1; the same holder keeps its epoch.
    /// [`StorageError::LeaseHeld`] while another holder's lease runs.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError>;

    /// Extends the lease if `holder` still holds it with `epoch` and it has not lapsed;
    /// [`StorageError::Fenced`] otherwise (the holder must stop acting as leader).
    async fn renew_lease(
        &self,
        name: &str,
        holder: u64,
        epoch: u64,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Lease, StorageError>;

    /// Lets the lease lapse at once if `holder` holds it with `epoch` (the epoch is kept, so
    /// the next holder still gets a larger one). Releasing a lease one no longer holds is a
    /// no-op.
    async fn release_lease(&self, name: &str, holder: u64, epoch: u64) -> Result<(), StorageError>;

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StorageError>;

    /// Replaces the leader's announcement. Written by a new leader once it holds the lease;
    /// a stale leader's late write is harmless, as readers compare its epoch with the lease.
    async fn announce_leader(&self, announcement: &LeaderAnnouncement) -> Result<(), StorageError>;

    /// The newest announcement, if any leader made one.
    async fn leader_announcement(&self) -> Result<Option<LeaderAnnouncement>, StorageError>;

    /// The cluster's shard count, fixed when it formed; `None` before.
    async fn shard_count(&self) -> Result<Option<u32>, StorageError>;

    /// Fixes the shard count at `count` unless one is fixed already (compare-and-set), and
    /// answers the count in force: `count`, or the one stored first. Only an explicit
    /// resharding may change it.
    async fn fix_shard_count(&self, count: u32) -> Result<u32, StorageError>;

    /// The running resharding, or the last one; `None` if the cluster never resharded.
    async fn resharding(&self) -> Result<Option<Resharding>, StorageError>;

    /// Replaces the resharding record with `next` (compare-and-set on
    /// [`Resharding::version`]: [`StorageError::Conflict`] if it was not made from the stored
    /// one) when it is a step a resharding can take ([`StorageError::Invalid`] otherwise:
    /// starting from another count than the stored one, a second one while one runs, a
    /// completion before every new shard is switched). A completion stores `to` as the
    /// shard count. Answers what was stored (with the version after the write). On ScyllaDB
    /// a completion writes the count first, then the record: a record still running whose
    /// `to` is the stored count is a completion that failed midway, and writing it again
    /// finishes it.
    async fn put_resharding(&self, next: &Resharding) -> Result<Resharding, StorageError>;
}

/// Name of the shard count's row in the cluster's fixed facts (`cluster_meta`).
pub(crate) const SHARD_COUNT: &str = "shard_count";

/// Name of the leader epoch that claimed the assignments, in the embedded store's
/// `cluster_meta`; ScyllaDB keeps it in the assignments' own partition.
pub(crate) const ASSIGNMENTS_CLAIM: &str = "assignments_leader_epoch";

/// Assignments are written only under the leader epoch that claimed them last (0: none did).
pub(crate) fn check_claim(claimed: u64, presented: u64) -> Result<(), StorageError> {
    if claimed != presented {
        return Err(StorageError::Fenced {
            presented,
            current: claimed,
        });
    }
    Ok(())
}
