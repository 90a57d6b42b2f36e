use std::future::Future;
use std::pin::Pin;

use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

use crate::Receipt;

/// Where a shard's events go: the rest of the bot, as the process assembles it.
///
/// Each shard has a forwarder task that takes batches from the shard's bounded buffer and
/// calls `deliver`; the shard's own polling task never calls it. `deliver` resolves when the
/// consumer has taken the batch: while it has not, the buffer fills, droppable events are
/// shed, and at last the shard pauses reading (see [`crate::GatewaySettings::buffer_capacity`]).
pub trait EventSink: Send + Sync + 'static {
    /// `events` are one shard's, in gateway order; `shard` names it with its set's count
    /// (two sets run during a resharding).
    fn deliver(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Events replayed after a crash that the shard's previous owner had already handed to
    /// its sink: state may be applied again, actions must not be repeated. They come before
    /// the events that follow them. By default, delivered like any others.
    fn deliver_replayed(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.deliver(shard, events)
    }

    /// What the forwarder calls: `deliver` (or `deliver_replayed`) with the batch's
    /// [`Receipt`]. A consumer that queues events to handle them later keeps a clone with
    /// each until it is handled, so the shard's checkpoint only passes handled events; by
    /// default the batch counts as handled once the sink has taken it.
    fn deliver_tracked(
        &self,
        shard: ShardId,
        events: Vec<Event>,
        replayed: bool,
        receipt: Receipt,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if replayed {
                self.deliver_replayed(shard, events).await;
            } else {
                self.deliver(shard, events).await;
            }
            drop(receipt);
        })
    }

    /// Whether the shard may connect again after its connection closed. A cluster node
    /// that lost its lease says no, so a node waking from a freeze never resumes a session
    /// another node now runs (which would take it over, and then be taken back). Read at
    /// every close, before twilight reconnects; by default, always.
    fn may_run(&self, shard_id: u32) -> bool {
        let _ = shard_id;
        true
    }
}
