/// Errors of the actor runtime.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    #[error("guild router: {0}")]
    Spawn(String),
}
