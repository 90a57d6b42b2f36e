/// What a guild actor (or, for a GUILD_CREATE, the router) has just handled, reported to an
/// [`EventObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandledEvent {
    /// A GUILD_CREATE the node took in (its cache updated), reported by the router: it
    /// starts no actor unless the guild returns within its grace period.
    GuildCreate,
    /// A MESSAGE_CREATE, by message id.
    Message(u64),
    /// An INTERACTION_CREATE, by interaction id.
    Interaction(u64),
}

/// Sees every event a guild actor handled, once per handling, and every GUILD_CREATE routed.
///
/// This is how end-to-end tests compare what the actors saw with what the simulator
/// delivered, and what a node's handled-events journal records (`[diagnostics]`); it costs
/// nothing when no observer is installed. Implementations must be cheap and must not block:
/// they run inside the guild actor and the router.
pub trait EventObserver: Send + Sync + 'static {
    /// `shard_id`: the guild's shard by the node's shard count (Discord's formula).
    fn handled(&self, guild_id: u64, shard_id: u32, event: HandledEvent);
}
