//! `GuildRouter`: guild id → `GuildActor`, spawning on first event, supervising the actors.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{counter, gauge};
use protonn_storage::GuildConfigRepo;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, SupervisionEvent,
};
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::gateway::event::Event;
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;

use crate::guild::GuildArgs;
use crate::metrics::{GUILD_FAILURES, GUILDS_ACTIVE};
use crate::{ActorsError, EventObserver, GuildActor, GuildMsg, Replies};

/// What every guild actor of a node shares.
pub struct Services {
    pub store: Arc<dyn GuildConfigRepo>,
    pub replies: Replies,
    /// The node cache, updated by the ingress before events reach the actors.
    pub cache: Arc<DefaultInMemoryCache>,
    pub observer: Option<Arc<dyn EventObserver>>,
}

pub struct GuildRouter;

pub enum RouterMsg {
    /// A batch of one shard's events in gateway order; answered once every event is in its
    /// guild actor's mailbox, which is what paces the shard's forwarder. Events without a
    /// guild (READY, DMs) are not routed.
    Route(Vec<Event>, RpcReplyPort<()>),
    Stats(RpcReplyPort<RouterStats>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Guild actors resident now.
    pub active_guilds: usize,
    /// Guild actors that failed since start.
    pub failures: u64,
}

pub struct RouterState {
    services: Arc<Services>,
    guilds: HashMap<Id<GuildMarker>, ActorRef<GuildMsg>>,
    by_actor: HashMap<ActorId, Id<GuildMarker>>,
    failures: u64,
}

impl GuildRouter {
    pub async fn start(services: Services) -> Result<ActorRef<RouterMsg>, ActorsError> {
        let (router, _) = Actor::spawn(None, GuildRouter, Arc::new(services))
            .await
            .map_err(|err| ActorsError::Spawn(err.to_string()))?;
        Ok(router)
    }
}

impl RouterState {
    async fn spawn_guild(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        guild_id: Id<GuildMarker>,
    ) -> Result<ActorRef<GuildMsg>, ActorProcessingErr> {
        let args = GuildArgs {
            guild_id,
            services: Arc::clone(&self.services),
        };
        let (actor, _) = Actor::spawn_linked(None, GuildActor, args, myself.get_cell()).await?;
        self.guilds.insert(guild_id, actor.clone());
        self.by_actor.insert(actor.get_id(), guild_id);
        gauge!(GUILDS_ACTIVE).set(self.guilds.len() as f64);
        Ok(actor)
    }

    async fn route(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        event: Event,
    ) -> Result<(), ActorProcessingErr> {
        let Some(guild_id) = event.guild_id() else {
            return Ok(());
        };
        let actor = match self.guilds.get(&guild_id) {
            Some(actor) => actor.clone(),
            None => self.spawn_guild(myself, guild_id).await?,
        };
        // An actor that stopped on its own (removed from the guild) may not have been
        // forgotten yet: give the event to a fresh one rather than lose it.
        if let Err(MessagingErr::SendErr(message)) = actor.cast(GuildMsg::Event(Box::new(event))) {
            self.forget(&actor.get_id());
            let fresh = self.spawn_guild(myself, guild_id).await?;
            fresh.cast(message)?;
        }
        Ok(())
    }

    fn forget(&mut self, actor: &ActorId) {
        if let Some(guild_id) = self.by_actor.remove(actor) {
            self.guilds.remove(&guild_id);
            gauge!(GUILDS_ACTIVE).set(self.guilds.len() as f64);
        }
    }
}

impl Actor for GuildRouter {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = Arc<Services>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RouterMsg>,
        services: Arc<Services>,
    ) -> Result<RouterState, ActorProcessingErr> {
        Ok(RouterState {
            services,
            guilds: HashMap::new(),
            by_actor: HashMap::new(),
            failures: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RouterMsg>,
        message: RouterMsg,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Route(events, done) => {
                for event in events {
                    state.route(&myself, event).await?;
                }
                let _ = done.send(());
            }
            RouterMsg::Stats(reply) => {
                let _ = reply.send(RouterStats {
                    active_guilds: state.guilds.len(),
                    failures: state.failures,
                });
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RouterMsg>,
        event: SupervisionEvent,
        state: &mut RouterState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => state.forget(&cell.get_id()),
            SupervisionEvent::ActorFailed(cell, err) => {
                // The next event of the guild spawns a fresh actor that reloads from storage.
                tracing::error!(error = %err, "guild actor failed");
                state.failures += 1;
                counter!(GUILD_FAILURES).increment(1);
                state.forget(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
