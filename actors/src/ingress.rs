use std::future::Future;
use std::pin::Pin;

use protonn_shard::{EventSink, Receipt};
use ractor::ActorRef;
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

use crate::{Delivery, RouterMsg};

/// The shards' way in: hands each batch to the router, which updates the node cache and
/// the guild actors from the set that handles each guild (two sets run during a
/// resharding).
///
/// Called by each shard's forwarder task, never by the task reading the socket: waiting
/// here for the router is what lets a shard's bounded buffer fill (and shed) when routing
/// falls behind.
pub struct EventIngress {
    router: ActorRef<RouterMsg>,
}

impl EventIngress {
    pub fn new(router: ActorRef<RouterMsg>) -> Self {
        Self { router }
    }

    async fn route(
        &self,
        shard: ShardId,
        replayed: bool,
        events: Vec<Event>,
        receipt: Option<Receipt>,
    ) {
        let count = events.len();
        let delivery = Delivery {
            shard_count: shard.total(),
            replayed,
            events,
            receipt,
        };
        if let Err(err) = ractor::call!(self.router, RouterMsg::Route, delivery) {
            // The router stops only after the shards, so this is a router that died: the
            // process watching it turns unready and stops (see `cluster`'s node).
            tracing::error!(count, error = %err, "guild router unreachable; events dropped");
        }
    }
}

impl EventSink for EventIngress {
    fn deliver(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.route(shard, false, events, None))
    }

    /// Replays of events a crashed node may have handled: the cache takes them all (state
    /// is idempotent), but messages and interactions, whose commands answer and change
    /// things, are counted and not handled a second time (in the router).
    fn deliver_replayed(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.route(shard, true, events, None))
    }

    /// Each event queued for a guild actor carries the receipt until it is handled.
    fn deliver_tracked(
        &self,
        shard: ShardId,
        events: Vec<Event>,
        replayed: bool,
        receipt: Receipt,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.route(shard, replayed, events, Some(receipt)))
    }
}
