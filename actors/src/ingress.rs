use std::sync::Arc;

use protonn_shard::{EventSink, ShardEvent};
use ractor::ActorRef;
use twilight_cache_inmemory::DefaultInMemoryCache;

use crate::RouterMsg;

/// The shards' way in: updates the node cache, then enqueues for the router.
///
/// Runs on the shard's task, so it never waits: the cache update is a few map writes and
/// the router's mailbox accepts without blocking.
pub struct EventIngress {
    cache: Arc<DefaultInMemoryCache>,
    router: ActorRef<RouterMsg>,
}

impl EventIngress {
    pub fn new(cache: Arc<DefaultInMemoryCache>, router: ActorRef<RouterMsg>) -> Self {
        Self { cache, router }
    }
}

impl EventSink for EventIngress {
    fn deliver(&self, event: ShardEvent) {
        self.cache.update(&event.event);
        if self
            .router
            .cast(RouterMsg::Event(Box::new(event.event)))
            .is_err()
        {
            // Only during shutdown: the router stops after the shards.
            tracing::debug!("guild router stopped; event dropped");
        }
    }
}
