//! Metric names of the storage layer, described by [`describe`] (the process that installs
//! the recorder calls it).

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

/// Repository calls, by `backend`, `repo`, `op` and `outcome` (`ok`; `refused`, an answer
/// such as a version conflict or a held lease; `failed`).
pub const OPERATIONS: &str = "protonn_storage_operations_total";
/// Repository calls that failed, by `backend` and `kind` (one of [`ERROR_KINDS`]).
pub const ERRORS: &str = "protonn_storage_errors_total";
/// Time a repository call took, retries inside the backend included, by `backend`, `repo`
/// and `op`.
pub const OPERATION_DURATION: &str = "protonn_storage_operation_duration_seconds";
/// Buckets of [`OPERATION_DURATION`]: a redb commit takes ~3 ms, a ScyllaDB timeout 2 s.
pub const OPERATION_DURATION_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Rows the retention sweeper removed.
pub const EXPIRED_DELETED: &str = "protonn_storage_expired_deleted_total";

/// Rows the privacy backfill walked, by `table` ([`BackfillTable::as_str`](crate::BackfillTable))
/// and `outcome` (`unchanged`, `indexed`: given index entries or an expiry it lacked,
/// `deleted`: past its retention).
pub const BACKFILL_ROWS: &str = "protonn_storage_backfill_rows_total";

/// Counts the rows a stored page walked: what `after` has more than `before`.
pub(crate) fn count_backfilled(before: &crate::BackfillProgress, after: &crate::BackfillProgress) {
    use crate::backfill::RowOutcome;
    let indexed = after.indexed.saturating_sub(before.indexed);
    let deleted = after.deleted.saturating_sub(before.deleted);
    let walked = after.rows.saturating_sub(before.rows);
    for (outcome, rows) in [
        (
            RowOutcome::Unchanged,
            walked.saturating_sub(indexed + deleted),
        ),
        (RowOutcome::Indexed, indexed),
        (RowOutcome::Deleted, deleted),
    ] {
        counter!(BACKFILL_ROWS, "table" => after.table.as_str(), "outcome" => outcome_label(outcome))
            .increment(rows);
    }
}

fn outcome_label(outcome: crate::backfill::RowOutcome) -> &'static str {
    match outcome {
        crate::backfill::RowOutcome::Unchanged => "unchanged",
        crate::backfill::RowOutcome::Indexed => "indexed",
        crate::backfill::RowOutcome::Deleted => "deleted",
    }
}

/// Privacy requests not answered [`RESPONSE_AIM`](crate::privacy::RESPONSE_AIM) (48 h)
/// after they were made, by `kind` ([`RequestKind::as_str`](crate::RequestKind::as_str)),
/// as the process answering requests in the background counted them last (0 elsewhere).
pub const UNANSWERED_PAST_AIM: &str = "protonn_privacy_requests_unanswered_past_aim";

pub(crate) fn set_unanswered_past_aim(kind: crate::RequestKind, count: usize) {
    gauge!(UNANSWERED_PAST_AIM, "kind" => kind.as_str()).set(count as f64);
}

/// The ScyllaDB driver's own counts, copied from its metrics every [`DRIVER_EVERY`]: requests
/// (paged ones once per page), failed requests, retries, request and connection timeouts,
/// open connections, and its latency quantiles. 0 in a process without ScyllaDB.
pub const DRIVER_REQUESTS: &str = "protonn_storage_driver_requests_total";
pub const DRIVER_ERRORS: &str = "protonn_storage_driver_errors_total";
pub const DRIVER_RETRIES: &str = "protonn_storage_driver_retries_total";
pub const DRIVER_REQUEST_TIMEOUTS: &str = "protonn_storage_driver_request_timeouts_total";
pub const DRIVER_CONNECTION_TIMEOUTS: &str = "protonn_storage_driver_connection_timeouts_total";
pub const DRIVER_CONNECTIONS: &str = "protonn_storage_driver_connections";
pub const DRIVER_LATENCY_P50: &str = "protonn_storage_driver_latency_p50_seconds";
pub const DRIVER_LATENCY_P99: &str = "protonn_storage_driver_latency_p99_seconds";
/// How often the driver's metrics are copied.
const DRIVER_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Values of the `kind` label of [`ERRORS`]; see [`StorageError::fault_kind`](crate::StorageError::fault_kind).
pub const ERROR_KINDS: [&str; 8] = [
    "timeout",
    "overloaded",
    "unavailable",
    "outcome_unknown",
    "database",
    "io",
    "corrupt",
    "internal",
];

pub fn describe() {
    describe_counter!(
        OPERATIONS,
        Unit::Count,
        "Repository calls, by backend, repository, method and outcome (ok, refused, failed)."
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Repository calls that failed, by backend and kind."
    );
    describe_histogram!(
        OPERATION_DURATION,
        Unit::Seconds,
        "Time a repository call took, retries inside the backend included."
    );
    describe_counter!(
        EXPIRED_DELETED,
        Unit::Count,
        "Rows the retention sweeper removed."
    );
    counter!(EXPIRED_DELETED).increment(0);
    describe_counter!(
        BACKFILL_ROWS,
        Unit::Count,
        "Rows the privacy backfill walked, by table and outcome (unchanged, indexed, deleted)."
    );
    for table in crate::BackfillTable::ALL {
        for outcome in crate::backfill::RowOutcome::ALL {
            counter!(BACKFILL_ROWS, "table" => table.as_str(), "outcome" => outcome_label(outcome))
                .increment(0);
        }
    }
    for (name, help) in [
        (
            DRIVER_REQUESTS,
            "Requests the ScyllaDB driver sent (a paged read once per page).",
        ),
        (
            DRIVER_ERRORS,
            "Requests the ScyllaDB driver saw fail, after its retries.",
        ),
        (DRIVER_RETRIES, "Retries the ScyllaDB driver made."),
        (
            DRIVER_REQUEST_TIMEOUTS,
            "ScyllaDB requests that timed out in the driver.",
        ),
        (
            DRIVER_CONNECTION_TIMEOUTS,
            "ScyllaDB connections that timed out being opened.",
        ),
    ] {
        describe_counter!(name, Unit::Count, help);
        counter!(name).increment(0);
    }
    describe_gauge!(
        DRIVER_CONNECTIONS,
        Unit::Count,
        "Connections the ScyllaDB driver holds open."
    );
    describe_gauge!(
        DRIVER_LATENCY_P50,
        Unit::Seconds,
        "Median ScyllaDB request latency, as the driver measures it."
    );
    describe_gauge!(
        DRIVER_LATENCY_P99,
        Unit::Seconds,
        "99th percentile of ScyllaDB request latency, as the driver measures it."
    );
    describe_gauge!(
        UNANSWERED_PAST_AIM,
        Unit::Count,
        "Privacy requests not answered 48 hours after they were made, by kind."
    );
    for kind in crate::RequestKind::ALL {
        set_unanswered_past_aim(kind, 0);
    }
    for name in [DRIVER_CONNECTIONS, DRIVER_LATENCY_P50, DRIVER_LATENCY_P99] {
        gauge!(name).set(0.0);
    }
}

/// Copies the driver's metrics of `session` into ours until the session is dropped. Its
/// counts are cumulative, so the counters are set, not added to (one ScyllaDB session per
/// process).
pub(crate) async fn publish_driver_metrics(
    session: std::sync::Weak<scylla::client::caching_session::CachingSession>,
) {
    let mut every = tokio::time::interval(DRIVER_EVERY);
    loop {
        every.tick().await;
        let Some(session) = session.upgrade() else {
            return;
        };
        let driver = session.get_session().get_metrics();
        counter!(DRIVER_REQUESTS).absolute(
            driver.get_requests_unpaged_num()
                + driver.get_requests_manually_paged_num()
                + driver.get_requests_automatically_paged_num(),
        );
        counter!(DRIVER_ERRORS).absolute(
            driver.get_errors_unpaged_num()
                + driver.get_errors_manually_paged_num()
                + driver.get_errors_automatically_paged_num(),
        );
        counter!(DRIVER_RETRIES).absolute(driver.get_retries_num());
        counter!(DRIVER_REQUEST_TIMEOUTS).absolute(driver.get_request_timeouts());
        counter!(DRIVER_CONNECTION_TIMEOUTS).absolute(driver.get_connection_timeouts());
        gauge!(DRIVER_CONNECTIONS).set(driver.get_total_connections() as f64);
        // Empty until the first request: the gauges keep their last value.
        if let Ok(ms) = driver.get_latency_percentile_ms(50.0) {
            gauge!(DRIVER_LATENCY_P50).set(ms as f64 / 1e3);
        }
        if let Ok(ms) = driver.get_latency_percentile_ms(99.0) {
            gauge!(DRIVER_LATENCY_P99).set(ms as f64 / 1e3);
        }
    }
}
