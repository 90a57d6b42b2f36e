/// Errors of the shard layer.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("invalid gateway settings: {0}")]
    Settings(String),
    #[error("shard supervisor: {0}")]
    Actor(String),
}
