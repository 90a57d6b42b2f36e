//! Resharding as the leader plans, records and reports it (`protonn reshard`): the plan is
//! checked against the identify budget before anything is written, and every change is a
//! compare-and-set of the store's resharding record, so a leader failover midway finds it
//! as the last leader left it.

use metrics::gauge;
use protonn_storage::{ClusterRepo, MAX_SHARDS, ReshardPhase, Resharding, StorageError, Timestamp};
use tonic::Status;

use crate::grpc::pb;
use crate::metrics::{RESHARD_READY, RESHARD_SWITCHED, RESHARD_TARGET};

/// Starts a resharding of the cluster's `count` shards to `to`, if the day's identify budget
/// above the reserve (`startups_left`) can start the whole new set: refused otherwise, with
/// nothing written, since a new set stuck halfway would hold both sets' connections.
pub(crate) async fn start(
    store: &dyn ClusterRepo,
    count: u32,
    to: u32,
    startups_left: u32,
) -> Result<pb::ReshardStatus, Status> {
    if to == 0 || to > MAX_SHARDS {
        return Err(Status::invalid_argument(format!(
            "a shard count is 1 to {MAX_SHARDS}, not {to}"
        )));
    }
    if to == count {
        return Err(Status::invalid_argument(format!(
            "the cluster already runs {count} shards"
        )));
    }
    // Each new shard's guilds then come from one old shard, on one node, whose router
    // sees both sets' events of each guild it switches.
    if !to.is_multiple_of(count) {
        return Err(Status::invalid_argument(format!(
            "a resharding grows the count by a multiple: {to} is not a multiple of {count}"
        )));
    }
    let last = store.resharding().await.map_err(refused)?;
    if let Some(running) = last.as_ref().filter(|r| !r.phase.is_over()) {
        return Err(Status::failed_precondition(format!(
            "a resharding from {} to {} shards is running: abort it first",
            running.from, running.to
        )));
    }
    if startups_left < to {
        return Err(Status::failed_precondition(format!(
            "the new set needs {to} IDENTIFYs and only {startups_left} are left today above \
             the reserve kept for recoveries: reshard after Discord's daily reset"
        )));
    }
    let started = store
        .put_resharding(&Resharding::start(
            count,
            to,
            last.as_ref(),
            Timestamp::now(),
        ))
        .await
        .map_err(refused)?;
    tracing::info!(from = count, to, "resharding started");
    Ok(report(Some(started), count))
}

/// The running or last resharding.
pub(crate) async fn progress(
    store: &dyn ClusterRepo,
    count: u32,
) -> Result<pb::ReshardStatus, Status> {
    let record = store.resharding().await.map_err(refused)?;
    Ok(report(record, count))
}

/// Gives up the running resharding; the old set keeps the guilds.
pub(crate) async fn abort(
    store: &dyn ClusterRepo,
    count: u32,
) -> Result<pb::ReshardStatus, Status> {
    let running = store
        .resharding()
        .await
        .map_err(refused)?
        .filter(|r| !r.phase.is_over())
        .ok_or_else(|| Status::failed_precondition("no resharding is running"))?;
    let aborted = store
        .put_resharding(&Resharding {
            phase: ReshardPhase::Aborted,
            updated_at: Timestamp::now(),
            ..running
        })
        .await
        .map_err(refused)?;
    tracing::warn!(
        from = aborted.from,
        to = aborted.to,
        "resharding aborted by an operator"
    );
    Ok(report(Some(aborted), count))
}

/// The record as the API shows it, and the progress gauges set from it (zero unless one
/// runs).
pub(crate) fn report(record: Option<Resharding>, count: u32) -> pb::ReshardStatus {
    let running = record.as_ref().filter(|r| !r.phase.is_over());
    gauge!(RESHARD_TARGET).set(running.map_or(0.0, |r| f64::from(r.to)));
    gauge!(RESHARD_READY).set(running.map_or(0.0, |r| r.ready.len() as f64));
    gauge!(RESHARD_SWITCHED).set(running.map_or(0.0, |r| r.switched.len() as f64));
    let Some(record) = record else {
        return pb::ReshardStatus {
            shard_count: count,
            ..pb::ReshardStatus::default()
        };
    };
    pb::ReshardStatus {
        known: true,
        from: record.from,
        to: record.to,
        phase: match record.phase {
            ReshardPhase::Running => "running",
            ReshardPhase::Completed => "completed",
            ReshardPhase::Aborted => "aborted",
        }
        .to_owned(),
        shards_ready: record.ready.len() as u32,
        shards_switched: record.switched.len() as u32,
        started_at_ms: record.started_at.as_millis(),
        updated_at_ms: record.updated_at.as_millis(),
        identify_floor_ms: 0,
        shard_count: count,
    }
}

/// A store refusal as the operator sees it: a lost race or a refused step is theirs to
/// retry or reconsider; anything else is the store's.
fn refused(err: StorageError) -> Status {
    match err {
        StorageError::Invalid(why) => Status::failed_precondition(why),
        StorageError::Conflict { .. } => {
            Status::aborted("the resharding changed meanwhile: look at its status and try again")
        }
        err if err.is_transient() => Status::unavailable(err.to_string()),
        err => Status::internal(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protonn_storage::EmbeddedStore;
    use tonic::Code;

    #[tokio::test]
    async fn a_plan_beyond_the_identify_budget_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.fix_shard_count(8).await.unwrap();
        let refused = start(&store, 8, 16, 15).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(
            refused.message().contains("16 IDENTIFYs"),
            "{}",
            refused.message()
        );
        assert_eq!(store.resharding().await.unwrap(), None);
        for bad in [0, 8, 12, 4, MAX_SHARDS + 1] {
            assert_eq!(
                start(&store, 8, bad, 1_000).await.unwrap_err().code(),
                Code::InvalidArgument
            );
        }
        assert_eq!(store.resharding().await.unwrap(), None);

        let started = start(&store, 8, 16, 16).await.unwrap();
        assert_eq!(
            (
                started.known,
                started.from,
                started.to,
                started.phase.as_str()
            ),
            (true, 8, 16, "running")
        );
        let second = start(&store, 8, 32, 1_000).await.unwrap_err();
        assert_eq!(second.code(), Code::FailedPrecondition);
        assert!(second.message().contains("abort it first"));

        let aborted = abort(&store, 8).await.unwrap();
        assert_eq!(aborted.phase, "aborted");
        assert_eq!(store.shard_count().await.unwrap(), Some(8));
        assert_eq!(
            abort(&store, 8).await.unwrap_err().code(),
            Code::FailedPrecondition
        );
        // Over, so the next may start.
        assert_eq!(start(&store, 8, 32, 1_000).await.unwrap().to, 32);
        assert_eq!(progress(&store, 8).await.unwrap().to, 32);
    }
}
