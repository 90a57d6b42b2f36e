//! Metric names of the storage layer, described by [`describe`] (the process that installs
//! the recorder calls it).

use metrics::{Unit, counter, describe_counter, describe_histogram};

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
}
