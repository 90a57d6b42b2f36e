use std::path::PathBuf;

/// A configuration that cannot be used. Messages name the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("environment variable {0} is not set: the bot token is read only from the environment")]
    MissingToken(&'static str),
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("discord rejected the bot token (HTTP 401): check DISCORD_TOKEN")]
    BadToken,
    #[error("cannot ask discord for gateway settings (GET /gateway/bot): {0}")]
    GatewayInfo(String),
    #[error("storage: {0}")]
    Storage(#[from] protonn_storage::StorageError),
    #[error("shards: {0}")]
    Shard(#[from] protonn_shard::ShardError),
    #[error("guild actors: {0}")]
    Actors(#[from] protonn_actors::ActorsError),
    #[error("cluster: {0}")]
    Join(#[from] crate::agent::JoinError),
    #[error("the {0} stopped: the node can no longer handle events")]
    ActorStopped(&'static str),
    #[error("ops endpoint on {addr}: {source}")]
    OpsBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("guild calls endpoint on {addr}: {source}")]
    GuildBind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
