use std::path::PathBuf;

/// Everything a repository call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Another process holds the embedded database file (its lock is exclusive).
    #[error("data directory {0} is in use by another process")]
    Locked(PathBuf),
    /// A versioned write lost a race: someone else saved `current` first.
    #[error("version conflict: expected version {expected}, current is {current}")]
    Conflict { expected: u64, current: u64 },
    /// The record a call refers to does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A lease is held by another holder until it lapses.
    #[error("lease {name} is held by {holder} (epoch {epoch})")]
    LeaseHeld {
        name: String,
        holder: u64,
        epoch: u64,
    },
    /// A write carried a fencing epoch older than the stored one: its writer was superseded.
    #[error("fenced: epoch {presented} is older than the current epoch {current}")]
    Fenced { presented: u64, current: u64 },
    /// A promo code cannot be redeemed (exhausted, expired, or already used by this user).
    #[error("promo code {code} cannot be redeemed: {reason}")]
    PromoRejected { code: String, reason: &'static str },
    /// The caller passed a value the store refuses (empty name, oversized document, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A stored document could not be decoded: a bug or a corrupt file, never bad user input.
    #[error("stored document {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("embedded database: {0}")]
    Embedded(#[from] redb::Error),
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blocking worker running the call died (a panic in the driver).
    #[error("storage worker failed: {0}")]
    Worker(String),
    /// A write-behind queue is full; the caller sheds the write and counts it.
    #[error("storage write queue is full")]
    QueueFull,
    /// A background writer (audit batcher, usage flusher) has stopped.
    #[error("storage writer has shut down")]
    WriterClosed,
    /// The database cluster is overloaded, unavailable or timed out; retrying later may work.
    /// `attempts` counts the tries made before giving up.
    #[error("database temporarily unavailable ({kind}) after {attempts} attempt(s): {message}")]
    Unavailable {
        kind: &'static str,
        attempts: u32,
        message: String,
    },
    /// Any other database failure (bad query, schema mismatch, protocol error).
    #[error("database error: {0}")]
    Database(String),
    /// A compare-and-set write timed out and the read that should have told whether it applied
    /// failed too: it may or may not have applied. Not transient: a blind retry could apply it
    /// twice or report its own success as a conflict.
    #[error("outcome of a conditional write unknown: {write}; resolving read failed: {read}")]
    OutcomeUnknown { write: String, read: String },
    /// The database lacks migrations this build needs (`protonn migrate` applies them).
    #[error("database schema is older than this build: missing migration(s) {}; run `protonn migrate`", missing.join(", "))]
    SchemaBehind { missing: Vec<String> },
    /// A migration already applied has a different text now: the schema cannot be trusted.
    #[error(
        "migration {name} changed after it was applied (applied: {applied}, file checksum: {file})"
    )]
    MigrationChanged {
        name: String,
        applied: String,
        file: String,
    },
    /// Another migrator holds the migration lock.
    #[error("another migration is running (lock held by {holder:?}); retry when it is done")]
    MigrationLocked { holder: String },
    /// The migration lock expired or was taken by another migrator mid-way: this migrator
    /// stopped before its next file.
    #[error("migration lock of {holder:?} was lost; stopped before the next migration")]
    MigrationLockLost { holder: String },
    /// Connecting or configuring the database client failed.
    #[error("database connection: {0}")]
    Connection(String),
}

impl StorageError {
    pub(crate) fn embedded(err: impl Into<redb::Error>) -> Self {
        Self::Embedded(err.into())
    }

    pub(crate) fn corrupt(key: impl std::fmt::Display, source: serde_json::Error) -> Self {
        Self::Corrupt {
            key: key.to_string(),
            source,
        }
    }

    /// What failed, as the `kind` of the errors metric ([`crate::metrics::ERROR_KINDS`]);
    /// `None` for answers rather than failures: a lost compare-and-set, a held lease, a
    /// missing record, input the store refuses.
    pub fn fault_kind(&self) -> Option<&'static str> {
        match self {
            Self::Conflict { .. }
            | Self::NotFound(_)
            | Self::LeaseHeld { .. }
            | Self::Fenced { .. }
            | Self::PromoRejected { .. }
            | Self::Invalid(_) => None,
            Self::Unavailable { kind, .. } => Some(kind),
            Self::Connection(_) => Some("unavailable"),
            Self::OutcomeUnknown { .. } => Some("outcome_unknown"),
            Self::Database(_)
            | Self::Embedded(_)
            | Self::SchemaBehind { .. }
            | Self::MigrationChanged { .. }
            | Self::MigrationLocked { .. }
            | Self::MigrationLockLost { .. } => Some("database"),
            Self::Io { .. } | Self::Locked(_) => Some("io"),
            Self::Corrupt { .. } => Some("corrupt"),
            Self::Worker(_) | Self::QueueFull | Self::WriterClosed => Some("internal"),
        }
    }

    /// True for errors worth retrying later (a busy or partitioned cluster).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
