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
    /// A stored document could not be decoded: a bug or a corrupt file, never bad user input.
    #[error("stored document for key {key} is unreadable: {source}")]
    Corrupt {
        key: u64,
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
}

impl StorageError {
    pub(crate) fn embedded(err: impl Into<redb::Error>) -> Self {
        Self::Embedded(err.into())
    }
}
