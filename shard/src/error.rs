/// Errors of the shard layer.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("invalid gateway settings: {0}")]
    Settings(String),
    #[error("shard supervisor: {0}")]
    Actor(String),
    #[error("shard {0} is not run by this node")]
    UnknownShard(u32),
    #[error("shard {0} is already running on this node")]
    AlreadyRunning(u32),
    #[error("shard {0} has no session to export (it never got READY)")]
    NoSession(u32),
    #[error("shard busy: {0}")]
    Busy(&'static str),
}
