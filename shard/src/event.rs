use twilight_model::gateway::event::Event;

/// One gateway event and the shard it arrived on.
#[derive(Debug)]
pub struct ShardEvent {
    pub shard_id: u32,
    pub event: Event,
}

/// Where a shard runner hands every event it receives.
///
/// `deliver` is called on the shard's own task, in gateway order, and must return without
/// waiting on anything downstream (enqueue and return): a sink that blocks stalls every guild
/// of the shard.
pub trait EventSink: Send + Sync + 'static {
    fn deliver(&self, event: ShardEvent);
}
