//! `GuildRouter`: guild id → `GuildActor`. Spawns on first event, bounds each mailbox by
//! accounting, passivates idle actors and evicts past the resident cap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use metrics::{counter, gauge};
use protonn_storage::{Store, VersionedConfig};
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorRuntime, MessagingErr, RpcReplyPort,
    SupervisionEvent,
};
use tokio::time::Instant;
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::application::interaction::Interaction;
use twilight_model::gateway::event::Event;
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;

use crate::guild::{CallReply, GuildArgs, MAX_KEY_LEN};
use crate::metrics::{
    EVENTS_SHED, GUILD_FAILURES, GUILD_SPAWNS, GUILDS_ACTIVE, MAILBOX_OVERFLOW, PASSIVATIONS,
};
use crate::runtime::{Admission, admit};
use crate::{
    ActorsError, ConfigChangeError, DeadLetters, Departures, EventObserver, GuildActor, GuildCall,
    GuildCallError, GuildMsg, Replies, RuntimeConfig,
};

/// What every guild actor of a node shares.
pub struct Services {
    pub store: Arc<dyn Store>,
    /// Guilds the bot left whose data is scheduled for deletion.
    pub departures: Arc<Departures>,
    pub replies: Replies,
    /// The node cache, updated by the ingress before events reach the actors.
    pub cache: Arc<DefaultInMemoryCache>,
    pub runtime: RuntimeConfig,
    pub dead_letters: Arc<DeadLetters>,
    pub observer: Option<Arc<dyn EventObserver>>,
    /// This node's name, as guild summaries report it.
    pub node_name: String,
    /// The bot's shard count, to name a guild's shard in its summary.
    pub shard_count: u32,
}

pub struct GuildRouter;

pub enum RouterMsg {
    /// A batch of one shard's events in gateway order; answered once every event is in its
    /// guild actor's mailbox, which is what paces the shard's forwarder. Events without a
    /// guild (READY, DMs) are not routed.
    Route(Vec<Event>, RpcReplyPort<()>),
    /// Change one config key of a guild from outside Discord; answered once it is durable
    /// and live, or refused.
    Configure {
        guild_id: u64,
        key: String,
        value: String,
        expected_version: Option<u64>,
        reply: RpcReplyPort<Result<VersionedConfig, ConfigChangeError>>,
    },
    /// A guild call, answered by the guild's actor: refused at once for an id that is not a
    /// guild's or a guild the bot is not in (no actor is spawned for those).
    Call(Box<GuildCall>, CallReply),
    /// Passivate idle actors and evict past the resident cap (on a timer).
    Sweep,
    Stats(RpcReplyPort<RouterStats>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Guild actors resident now.
    pub active_guilds: usize,
    /// Guild actors that failed since start.
    pub failures: u64,
    /// Guild actors stopped for being idle or evicted, since start.
    pub passivated: u64,
}

pub struct RouterState {
    services: Arc<Services>,
    guilds: HashMap<Id<GuildMarker>, Resident>,
    by_actor: HashMap<ActorId, Id<GuildMarker>>,
    failures: u64,
    passivated: u64,
}

/// A guild actor the router knows, with its mailbox accounting.
struct Resident {
    actor: ActorRef<GuildMsg>,
    /// Events cast and not yet handled: the router adds, the actor subtracts.
    pending: Arc<AtomicU32>,
    last_active: Instant,
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
    fn spawn_guild(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        guild_id: Id<GuildMarker>,
    ) -> Result<&mut Resident, ActorProcessingErr> {
        let pending = Arc::new(AtomicU32::new(0));
        let args = GuildArgs {
            guild_id,
            services: Arc::clone(&self.services),
            pending: Arc::clone(&pending),
        };
        // Not waiting for the actor's start: its `pre_start` cannot fail, and it is linked to
        // the router before it handles anything, so events may be queued to it at once.
        let (actor, _) =
            ActorRuntime::spawn_linked_instant(None, GuildActor, args, myself.get_cell())?;
        counter!(GUILD_SPAWNS).increment(1);
        self.by_actor.insert(actor.get_id(), guild_id);
        let resident = Resident {
            actor,
            pending,
            last_active: Instant::now(),
        };
        self.guilds.insert(guild_id, resident);
        gauge!(GUILDS_ACTIVE).set(self.guilds.len() as f64);
        Ok(self.guilds.get_mut(&guild_id).expect("inserted above"))
    }

    async fn route(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        event: Event,
    ) -> Result<(), ActorProcessingErr> {
        let Some(guild_id) = event.guild_id() else {
            return Ok(());
        };
        let limit = self.services.runtime.mailbox_limit;
        let resident = match self.guilds.get_mut(&guild_id) {
            Some(resident) => resident,
            None => self.spawn_guild(myself, guild_id)?,
        };
        let pending = resident.pending.load(Ordering::Acquire);
        let name = event.kind().name().unwrap_or("unknown");
        match admit(&event, pending, limit) {
            Admission::Deliver if pending >= limit => {
                counter!(MAILBOX_OVERFLOW, "event" => name).increment(1);
            }
            Admission::Deliver => {}
            Admission::Shed => {
                counter!(EVENTS_SHED, "event" => name, "action" => "shed").increment(1);
                return Ok(());
            }
            Admission::Busy => {
                counter!(EVENTS_SHED, "event" => name, "action" => "busy").increment(1);
                if let Event::InteractionCreate(interaction) = &event {
                    self.reply_busy(interaction);
                }
                return Ok(());
            }
        }
        resident.last_active = Instant::now();
        resident.pending.fetch_add(1, Ordering::AcqRel);
        let actor = resident.actor.clone();
        // An actor that stopped on its own (removed from the guild) may not have been
        // forgotten yet: give the event to a fresh one rather than lose it.
        if let Err(MessagingErr::SendErr(message)) = actor.cast(GuildMsg::Event(Box::new(event))) {
            self.forget(&actor.get_id());
            let fresh = self.spawn_guild(myself, guild_id)?;
            fresh.pending.fetch_add(1, Ordering::AcqRel);
            fresh.actor.cast(message)?;
        }
        Ok(())
    }

    fn reply_busy(&self, interaction: &Interaction) {
        self.services.replies.interaction(
            interaction.application_id,
            interaction.id,
            interaction.token.clone(),
            "I am busy with this server's earlier requests; please try again in a moment."
                .to_owned(),
            true,
        );
    }

    /// Stops idle actors, then the least recently active idle ones past the resident cap.
    /// An actor with queued events is never stopped: its mailbox would be lost.
    fn sweep(&mut self) {
        let runtime = &self.services.runtime;
        let now = Instant::now();
        let mut idle: Vec<(Instant, Id<GuildMarker>)> = self
            .guilds
            .iter()
            .filter(|(_, resident)| resident.pending.load(Ordering::Acquire) == 0)
            .map(|(&guild_id, resident)| (resident.last_active, guild_id))
            .collect();
        idle.sort_unstable();
        let expired = idle
            .iter()
            .take_while(|(last_active, _)| now.duration_since(*last_active) >= runtime.idle_after)
            .count();
        let over_cap = self.guilds.len().saturating_sub(runtime.max_resident);
        let evicted = over_cap.saturating_sub(expired).min(idle.len() - expired);
        for (index, (_, guild_id)) in idle.iter().take(expired + evicted).enumerate() {
            let reason = if index < expired { "idle" } else { "evicted" };
            self.passivate(*guild_id, reason);
        }
    }

    /// Forgets the actor before stopping it, so the guild's next event spawns a fresh one
    /// instead of landing in a mailbox that is about to be dropped.
    fn passivate(&mut self, guild_id: Id<GuildMarker>, reason: &'static str) {
        if let Some(resident) = self.guilds.remove(&guild_id) {
            self.by_actor.remove(&resident.actor.get_id());
            resident.actor.stop(Some(format!("passivated: {reason}")));
            counter!(PASSIVATIONS, "reason" => reason).increment(1);
            self.passivated += 1;
            gauge!(GUILDS_ACTIVE).set(self.guilds.len() as f64);
        }
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
        myself: ActorRef<RouterMsg>,
        services: Arc<Services>,
    ) -> Result<RouterState, ActorProcessingErr> {
        myself.send_interval(services.runtime.sweep_every, || RouterMsg::Sweep);
        Ok(RouterState {
            services,
            guilds: HashMap::new(),
            by_actor: HashMap::new(),
            failures: 0,
            passivated: 0,
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
            RouterMsg::Configure {
                guild_id,
                key,
                value,
                expected_version,
                reply,
            } => {
                let Some(guild_id) = Id::new_checked(guild_id) else {
                    let _ = reply.send(Err(ConfigChangeError::Invalid("guild id 0".into())));
                    return Ok(());
                };
                let resident = match state.guilds.get_mut(&guild_id) {
                    Some(resident) => resident,
                    None => state.spawn_guild(&myself, guild_id)?,
                };
                resident.last_active = Instant::now();
                resident.pending.fetch_add(1, Ordering::AcqRel);
                resident.actor.cast(GuildMsg::Configure {
                    key,
                    value,
                    expected_version,
                    reply,
                })?;
            }
            RouterMsg::Call(call, reply) => {
                let refused = match Id::<GuildMarker>::new_checked(call.guild_id) {
                    None => Some(GuildCallError::UnknownGuild),
                    Some(guild_id) if state.services.cache.guild(guild_id).is_none() => {
                        Some(GuildCallError::BotNotInGuild)
                    }
                    Some(_)
                        if call
                            .idempotency_key
                            .as_ref()
                            .is_some_and(|key| key.is_empty() || key.len() > MAX_KEY_LEN) =>
                    {
                        Some(GuildCallError::Invalid {
                            message: format!("an idempotency key has 1 to {MAX_KEY_LEN} bytes"),
                        })
                    }
                    Some(_) => None,
                };
                if let Some(refused) = refused {
                    let _ = reply.send(Err(refused));
                    return Ok(());
                }
                let guild_id = Id::new(call.guild_id);
                let resident = match state.guilds.get_mut(&guild_id) {
                    Some(resident) => resident,
                    None => state.spawn_guild(&myself, guild_id)?,
                };
                resident.last_active = Instant::now();
                resident.pending.fetch_add(1, Ordering::AcqRel);
                let actor = resident.actor.clone();
                // An actor that stopped on its own may not have been forgotten yet: the call
                // goes to a fresh one, as an event would.
                if let Err(MessagingErr::SendErr(message)) = actor.cast(GuildMsg::Call(call, reply))
                {
                    state.forget(&actor.get_id());
                    let fresh = state.spawn_guild(&myself, guild_id)?;
                    fresh.pending.fetch_add(1, Ordering::AcqRel);
                    fresh.actor.cast(message)?;
                }
            }
            RouterMsg::Sweep => state.sweep(),
            RouterMsg::Stats(reply) => {
                let _ = reply.send(RouterStats {
                    active_guilds: state.guilds.len(),
                    failures: state.failures,
                    passivated: state.passivated,
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
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if reason.as_deref() == Some(crate::guild::REMOVED) {
                    counter!(PASSIVATIONS, "reason" => "removed").increment(1);
                }
                state.forget(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                // Handlers catch their own panics; this is a failure outside them (start-up).
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
