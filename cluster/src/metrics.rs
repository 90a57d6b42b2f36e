//! Metric names of the coordinator (see `docs/metrics.md`), described by [`describe`].

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// 1 on the coordinator holding the leadership lease, 0 on a standby.
pub(crate) const LEADER: &str = "protonn_coordinator_leader";
/// The fencing epoch of the lease this coordinator holds.
pub(crate) const FENCING_EPOCH: &str = "protonn_coordinator_fencing_epoch";
/// Nodes attached to the leader, by `state` (`alive`, `suspect`, `draining`).
pub(crate) const NODES: &str = "protonn_coordinator_nodes";
/// Shards by `state` (`assigned`, `moving`, `unassigned`).
pub(crate) const SHARDS: &str = "protonn_coordinator_shards";
/// Shards placed or moved, by `trigger` (`start`, `loss`, `drain`, `balance`).
pub(crate) const MOVES: &str = "protonn_coordinator_rebalance_moves_total";
/// Time from ordering a shard's release to handing its session to the new owner.
pub(crate) const HANDOFF_SECONDS: &str = "protonn_cluster_handoff_duration_seconds";
pub(crate) const HANDOFF_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
/// Handoffs by `outcome` (`handed_over`, `refused`).
pub(crate) const HANDOFFS: &str = "protonn_cluster_handoffs_total";

pub(crate) fn describe() {
    describe_gauge!(
        LEADER,
        Unit::Count,
        "1 on the coordinator holding the leadership lease, 0 on a standby."
    );
    describe_gauge!(
        FENCING_EPOCH,
        Unit::Count,
        "Fencing epoch of the leadership lease this coordinator holds."
    );
    describe_gauge!(NODES, Unit::Count, "Nodes known to the leader, by state.");
    describe_gauge!(
        SHARDS,
        Unit::Count,
        "Shards in the assignment table, by state."
    );
    describe_counter!(
        MOVES,
        Unit::Count,
        "Shards placed or moved by the leader, by trigger."
    );
    describe_histogram!(
        HANDOFF_SECONDS,
        Unit::Seconds,
        "Time from ordering a shard's release to handing its session to the new owner."
    );
    describe_counter!(HANDOFFS, Unit::Count, "Shard handoffs, by outcome.");
}
