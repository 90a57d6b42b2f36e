/// Errors of the actor runtime.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    #[error("guild router: {0}")]
    Spawn(String),
}

/// Why a configuration change was refused; nothing was saved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigChangeError {
    /// Unknown key or bad value; the text tells a user what is allowed.
    #[error("{0}")]
    Invalid(String),
    /// Someone saved another version first.
    #[error("the configuration was changed meanwhile; version {current} is current")]
    Conflict { current: u64 },
    #[error("the configuration store is unavailable: {0}")]
    Unavailable(String),
}

/// Why a list of cache resource types was refused (see [`crate::cache_resources`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CacheResourcesError {
    #[error("unknown cache resource `{name}`; known: {known}")]
    Unknown { name: String, known: String },
    #[error("`{0}` must be cached: the permission checks read the guild's owner and roles")]
    Required(&'static str),
    #[error(
        "`{name}` cannot be cached: its updates need the {intents} intent, which the bot does not request, so it would go stale"
    )]
    NeedsIntent { name: &'static str, intents: String },
}
