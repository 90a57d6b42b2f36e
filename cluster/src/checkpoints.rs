//! A node's resume points, written by the node itself.
//!
//! The leader learns every checkpoint from heartbeats and keeps them in memory; storing them
//! is the owners' work, so the leader's control loop does no storage I/O per heartbeat. Each
//! heartbeat the node marks the resume points that moved; one writer task saves them in one
//! batch, through the leader's store service into the store the leader reads (one commit),
//! coalescing while the store is slow. A point is
//! stamped with the epoch the node runs the shard under: the store ignores it once the shard
//! has a newer owner.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use protonn_shard::ExportedSession;
use protonn_storage::{ClusterRepo, SessionCheckpoint, Timestamp};
use tokio::sync::Notify;

/// Resume points waiting to be written, newest per shard.
#[derive(Default)]
pub(crate) struct PendingCheckpoints {
    points: Mutex<BTreeMap<u32, SessionCheckpoint>>,
    changed: Notify,
}

impl PendingCheckpoints {
    fn add(&self, points: impl IntoIterator<Item = SessionCheckpoint>) {
        let mut pending = self.points.lock().expect("checkpoint map poisoned");
        for point in points {
            pending.insert(point.shard_id, point);
        }
    }

    fn take(&self) -> Vec<SessionCheckpoint> {
        std::mem::take(&mut *self.points.lock().expect("checkpoint map poisoned"))
            .into_values()
            .collect()
    }

    /// Puts back a batch that failed, unless a newer point of the same shard came meanwhile.
    fn restore(&self, batch: Vec<SessionCheckpoint>) {
        let mut pending = self.points.lock().expect("checkpoint map poisoned");
        for point in batch {
            pending.entry(point.shard_id).or_insert(point);
        }
    }

    /// Writes what is pending whenever something is, until the task is dropped.
    pub(crate) async fn write_to(&self, store: &dyn ClusterRepo) {
        loop {
            self.changed.notified().await;
            let batch = self.take();
            if batch.is_empty() {
                continue;
            }
            match store.save_checkpoints(&batch).await {
                Ok(stale) if !stale.is_empty() => {
                    tracing::debug!(?stale, "checkpoints of shards now owned elsewhere ignored");
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, shards = batch.len(), "saving checkpoints failed; retrying with the next heartbeat");
                    self.restore(batch);
                }
            }
        }
    }
}

/// The heartbeat's side: which resume point each running shard has, and which moved.
pub(crate) struct ResumePoints {
    /// The newest checkpoint each shard reported.
    newest: HashMap<u32, ExportedSession>,
    /// The point last handed to the writer, with its epoch.
    marked: HashMap<u32, (String, u64, u64)>,
    pending: Arc<PendingCheckpoints>,
}

impl ResumePoints {
    pub(crate) fn new(pending: Arc<PendingCheckpoints>) -> Self {
        Self {
            newest: HashMap::new(),
            marked: HashMap::new(),
            pending,
        }
    }

    /// Takes this heartbeat's checkpoints, `(shard, epoch, checkpoint)` of the shards the
    /// node may run, and queues the resume points that moved. A shard's resume point is
    /// the previous checkpoint of the same session, at least one heartbeat old, so the
    /// events up to it have left the guild mailboxes (the same rule the leader applies).
    pub(crate) fn observe(&mut self, shards: Vec<(u32, u64, ExportedSession)>) {
        let running: std::collections::HashSet<u32> =
            shards.iter().map(|(shard, _, _)| *shard).collect();
        self.newest.retain(|shard, _| running.contains(shard));
        self.marked.retain(|shard, _| running.contains(shard));
        let mut moved = Vec::new();
        for (shard_id, epoch, checkpoint) in shards {
            let previous = self.newest.insert(shard_id, checkpoint.clone());
            let point = previous
                .filter(|p| p.session_id == checkpoint.session_id)
                .unwrap_or(checkpoint);
            let key = (point.session_id.clone(), point.sequence, epoch);
            if self.marked.get(&shard_id) == Some(&key) {
                continue;
            }
            self.marked.insert(shard_id, key);
            moved.push(SessionCheckpoint {
                shard_id,
                epoch,
                session_id: point.session_id,
                sequence: point.sequence,
                resume_url: point.resume_url.unwrap_or_default(),
                at: Timestamp::now(),
            });
        }
        if !moved.is_empty() {
            self.pending.add(moved);
            self.pending.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use protonn_storage::EmbeddedStore;

    use super::*;

    fn session(id: &str, sequence: u64) -> ExportedSession {
        ExportedSession {
            shard_id: 0,
            session_id: id.to_owned(),
            sequence,
            resume_url: Some("wss://resume".to_owned()),
        }
    }

    fn queued(pending: &PendingCheckpoints) -> Vec<(u32, String, u64, u64)> {
        pending
            .take()
            .into_iter()
            .map(|p| (p.shard_id, p.session_id, p.sequence, p.epoch))
            .collect()
    }

    #[test]
    fn the_resume_point_lags_one_heartbeat_and_only_moves_are_queued() {
        let pending = Arc::new(PendingCheckpoints::default());
        let mut points = ResumePoints::new(Arc::clone(&pending));

        points.observe(vec![(0, 3, session("a", 10)), (1, 3, session("b", 5))]);
        // A shard's first checkpoint is its own resume point.
        assert_eq!(
            queued(&pending),
            [(0, "a".into(), 10, 3), (1, "b".into(), 5, 3)]
        );

        // Shard 0 moved on, but resumes from its previous checkpoint, already queued.
        points.observe(vec![(0, 3, session("a", 20)), (1, 3, session("b", 5))]);
        assert_eq!(queued(&pending), []);
        // One heartbeat later 20 is the resume point.
        points.observe(vec![(0, 3, session("a", 20)), (1, 3, session("b", 5))]);
        assert_eq!(queued(&pending), [(0, "a".into(), 20, 3)]);
        points.observe(vec![(0, 3, session("a", 20)), (1, 3, session("b", 5))]);
        assert_eq!(queued(&pending), []);

        // A new session starts from its own first checkpoint, never the old session's.
        points.observe(vec![(0, 3, session("c", 2))]);
        assert_eq!(queued(&pending), [(0, "c".into(), 2, 3)]);
        // Shard 1 left this node; when it comes back under a new epoch it is queued again.
        points.observe(vec![(0, 3, session("c", 2)), (1, 4, session("b", 5))]);
        assert_eq!(queued(&pending), [(1, "b".into(), 5, 4)]);
    }

    #[tokio::test]
    async fn the_writer_saves_batches_and_the_store_ignores_a_superseded_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        store.claim_assignments(1).await.unwrap();
        let first = store.assign_shard(0, 1, 0, 1).await.unwrap();
        let second = store.assign_shard(0, 2, first.epoch, 1).await.unwrap();
        store.assign_shard(1, 1, 0, 1).await.unwrap();

        let pending = Arc::new(PendingCheckpoints::default());
        let writer = tokio::spawn({
            let pending = Arc::clone(&pending);
            let store = Arc::clone(&store);
            async move { pending.write_to(store.as_ref()).await }
        });
        let mut points = ResumePoints::new(Arc::clone(&pending));
        // Node 1 still believes it owns shard 0 under the old epoch.
        points.observe(vec![
            (0, first.epoch, session("old", 7)),
            (1, 1, session("b", 9)),
        ]);

        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.checkpoint(1).await.unwrap().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "shard 1 was saved");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(store.checkpoint(1).await.unwrap().unwrap().sequence, 9);
        assert_eq!(
            store.checkpoint(0).await.unwrap(),
            None,
            "epoch {} is superseded by {}",
            first.epoch,
            second.epoch
        );
        writer.abort();
    }
}
