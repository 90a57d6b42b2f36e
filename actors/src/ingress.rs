use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use metrics::counter;
use protonn_shard::EventSink;
use ractor::ActorRef;
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::gateway::event::Event;

use crate::metrics::REPLAYED_COMMANDS_SKIPPED;
use crate::{OwnRoles, RouterMsg};

/// The shards' way in: updates the node cache, then hands the batch to the router.
///
/// Called by each shard's forwarder task, never by the task reading the socket: waiting
/// here for the router is what lets a shard's bounded buffer fill (and shed) when routing
/// falls behind.
pub struct EventIngress {
    cache: Arc<DefaultInMemoryCache>,
    own_roles: Arc<OwnRoles>,
    router: ActorRef<RouterMsg>,
}

impl EventIngress {
    pub fn new(
        cache: Arc<DefaultInMemoryCache>,
        own_roles: Arc<OwnRoles>,
        router: ActorRef<RouterMsg>,
    ) -> Self {
        Self {
            cache,
            own_roles,
            router,
        }
    }

    fn update(&self, events: &[Event]) {
        for event in events {
            self.cache.update(event);
            self.own_roles.update(event);
        }
    }
}

impl EventSink for EventIngress {
    fn deliver(
        &self,
        _shard_id: u32,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.update(&events);
            self.route(events).await;
        })
    }

    /// Replays of events a crashed node may have handled: the cache takes them all (state
    /// is idempotent), but messages and interactions, whose commands answer and change
    /// things, are counted and not handled a second time.
    fn deliver_replayed(
        &self,
        _shard_id: u32,
        mut events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.update(&events);
            let before = events.len();
            events.retain(|event| {
                !matches!(event, Event::MessageCreate(_) | Event::InteractionCreate(_))
            });
            counter!(REPLAYED_COMMANDS_SKIPPED).increment((before - events.len()) as u64);
            if !events.is_empty() {
                self.route(events).await;
            }
        })
    }
}

impl EventIngress {
    async fn route(&self, events: Vec<Event>) {
        let count = events.len();
        if let Err(err) = ractor::call!(self.router, RouterMsg::Route, events) {
            // The router stops only after the shards, so this is a router that died: the
            // process watching it turns unready and stops (see `cluster`'s node).
            tracing::error!(count, error = %err, "guild router unreachable; events dropped");
        }
    }
}
