//! Metric names of the coordinator (see `docs/metrics.md`), described by [`describe`] in
//! every process and created by [`register`] only in a coordinator, so that a node never
//! exports them; and `protonn_build_info`, which every process exports.

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

/// Always 1, labelled with the `version` and `commit` this binary was built from; every
/// process exports it, so its absence means the process is gone.
pub(crate) const BUILD_INFO: &str = "protonn_build_info";
/// The git commit of the build (from `build.rs`), or `unknown` when built outside git.
/// `option_env!`, not `env!`: a build script output from an older `build.rs` (a shared
/// target directory) must not break the build, only leave the commit unknown.
const COMMIT: &str = match option_env!("PROTONN_COMMIT") {
    Some(commit) => commit,
    None => "unknown",
};

/// 1 on the leading coordinator (it holds the lease and answers nodes), 0 on a standby.
pub(crate) const LEADER: &str = "protonn_coordinator_leader";
/// The fencing epoch of the lease this coordinator holds; 0 on a standby.
pub(crate) const FENCING_EPOCH: &str = "protonn_coordinator_fencing_epoch";
/// Nodes attached to the leader, by `state` (one of [`NODE_STATES`]).
pub(crate) const NODES: &str = "protonn_coordinator_nodes";
pub(crate) const NODE_STATES: [&str; 3] = ["alive", "suspect", "draining"];
/// Shards by `state` (one of [`SHARD_STATES`]).
pub(crate) const SHARDS: &str = "protonn_coordinator_shards";
pub(crate) const SHARD_STATES: [&str; 3] = ["assigned", "moving", "unassigned"];
/// Shards placed or moved, by `trigger` (one of [`MOVE_TRIGGERS`]).
pub(crate) const MOVES: &str = "protonn_coordinator_rebalance_moves_total";
pub(crate) const MOVE_TRIGGERS: [&str; 4] = ["start", "loss", "drain", "balance"];
/// Time from ordering a shard's release to handing its session to the new owner.
pub(crate) const HANDOFF_SECONDS: &str = "protonn_cluster_handoff_duration_seconds";
pub(crate) const HANDOFF_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];
/// REST requests per second the nodes ask for under the global limit, as a share of it.
pub(crate) const REST_BUDGET_USED: &str = "protonn_rest_global_budget_used_ratio";
/// Handoffs by `outcome` (one of [`HANDOFF_OUTCOMES`]).
pub(crate) const HANDOFFS: &str = "protonn_cluster_handoffs_total";
pub(crate) const HANDOFF_OUTCOMES: [&str; 3] = ["handed_over", "refused", "timed_out"];
/// The shard count a running resharding goes to; 0 while none runs.
pub(crate) const RESHARD_TARGET: &str = "protonn_coordinator_reshard_target_shards";
/// Shards of the new set whose session is up with their guilds in; 0 while none runs.
pub(crate) const RESHARD_READY: &str = "protonn_coordinator_reshard_ready_shards";
/// Shards of the new set handling their guilds; 0 while none runs.
pub(crate) const RESHARD_SWITCHED: &str = "protonn_coordinator_reshard_switched_shards";

pub(crate) fn describe() {
    describe_gauge!(
        REST_BUDGET_USED,
        Unit::Count,
        "REST requests per second the nodes ask for under Discord's global limit, as a share of its 50 per second."
    );
    describe_gauge!(
        LEADER,
        Unit::Count,
        "1 on the leading coordinator (it holds the leadership lease), 0 on a standby."
    );
    describe_gauge!(
        FENCING_EPOCH,
        Unit::Count,
        "Fencing epoch of the leadership lease this coordinator holds; 0 on a standby."
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
    describe_gauge!(
        RESHARD_TARGET,
        Unit::Count,
        "The shard count a running resharding goes to; 0 while none runs."
    );
    describe_gauge!(
        RESHARD_READY,
        Unit::Count,
        "Shards of a running resharding's new set whose session is up with their guilds in."
    );
    describe_gauge!(
        RESHARD_SWITCHED,
        Unit::Count,
        "Shards of a running resharding's new set that handle their guilds."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1: the version and git commit this process was built from."
    );
}

/// Exported by every process (nodes too), unlike the coordinator metrics below.
pub(crate) fn register_build_info() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => COMMIT).set(1.0);
}

/// Creates every coordinator series at zero (a standby's too: its `LEADER` 0 is what tells
/// it from a missing coordinator), so that dashboards and alerts see them from the start.
pub(crate) fn register() {
    gauge!(LEADER).set(0.0);
    gauge!(REST_BUDGET_USED).set(0.0);
    gauge!(FENCING_EPOCH).set(0.0);
    for gauge in [RESHARD_TARGET, RESHARD_READY, RESHARD_SWITCHED] {
        gauge!(gauge).set(0.0);
    }
    for state in NODE_STATES {
        gauge!(NODES, "state" => state).set(0.0);
    }
    for state in SHARD_STATES {
        gauge!(SHARDS, "state" => state).set(0.0);
    }
    for trigger in MOVE_TRIGGERS {
        counter!(MOVES, "trigger" => trigger).absolute(0);
    }
    for outcome in HANDOFF_OUTCOMES {
        counter!(HANDOFFS, "outcome" => outcome).absolute(0);
    }
    // Registering the histogram exports its buckets, empty until the first handoff.
    let _ = histogram!(HANDOFF_SECONDS);
}
