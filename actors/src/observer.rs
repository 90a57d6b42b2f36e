/// What a guild actor has just handled, reported to an [`EventObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandledEvent {
    GuildCreate,
    /// A MESSAGE_CREATE, by message id.
    Message(u64),
    /// An INTERACTION_CREATE, by interaction id.
    Interaction(u64),
}

/// Sees every event a guild actor handled, once per handling.
///
/// This is how end-to-end tests compare what the actors saw with what the simulator
/// delivered, and what a node's handled-events journal records (`[diagnostics]`); it costs
/// nothing when no observer is installed. Implementations must be cheap
/// and must not block: they run inside the guild actor.
pub trait EventObserver: Send + Sync + 'static {
    /// `shard_id`: the guild's shard by the node's shard count (Discord's formula).
    fn handled(&self, guild_id: u64, shard_id: u32, event: HandledEvent);
}
