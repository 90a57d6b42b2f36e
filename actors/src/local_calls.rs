//! Guild calls in one process: straight to the node's router, bounded by the deadline.

use async_trait::async_trait;
use ractor::ActorRef;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::metrics::record_guild_call;
use crate::{GuildCall, GuildCallError, GuildCalls, GuildResponse, RouterMsg};

/// [`GuildCalls`] for guilds whose shards run in this process (`protonn demo`, `protonn
/// run`, and a cluster node answering the calls routed to it).
#[derive(Clone)]
pub struct LocalGuildCalls {
    router: ActorRef<RouterMsg>,
}

impl LocalGuildCalls {
    pub fn new(router: ActorRef<RouterMsg>) -> Self {
        Self { router }
    }

    /// The call without metrics: a cluster node serving a routed call counts it once, on the
    /// caller's side.
    pub async fn call_unrecorded(&self, call: GuildCall) -> Result<GuildResponse, GuildCallError> {
        let deadline = call.deadline;
        let (reply, answer) = oneshot::channel();
        if self
            .router
            .cast(RouterMsg::Call(Box::new(call), reply.into()))
            .is_err()
        {
            return Err(GuildCallError::Unavailable {
                message: "the node is stopping".to_owned(),
            });
        }
        match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            // The actor stopped with the call in its mailbox (the node is stopping).
            Ok(Err(_)) => Err(GuildCallError::Unavailable {
                message: "the guild's actor stopped before answering".to_owned(),
            }),
            Err(_) => Err(GuildCallError::TimedOut),
        }
    }
}

#[async_trait]
impl GuildCalls for LocalGuildCalls {
    async fn call(&self, call: GuildCall) -> Result<GuildResponse, GuildCallError> {
        let started = Instant::now();
        let request = call.request.label();
        let answer = self.call_unrecorded(call).await;
        record_guild_call(request, answer.as_ref().map(|_| ()), started.elapsed());
        answer
    }
}
