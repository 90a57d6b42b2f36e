//! `GuildRouter`: guild id → `GuildActor`. Spawns on first event, bounds each mailbox by
//! accounting, passivates idle actors and evicts past the resident cap.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{counter, gauge};
use protonn_shard::Receipt;
use protonn_storage::{Store, Timer, Timestamp};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_model::application::interaction::Interaction;
use twilight_model::gateway::event::Event;
use twilight_model::id::Id;
use twilight_model::id::marker::GuildMarker;

mod overlap;

use crate::guild::{CallReply, GuildArgs, MAX_KEY_LEN, Mailbox};
use crate::metrics::{
    EVENTS_SHED, GUILD_FAILURES, GUILD_SPAWNS, GUILDS_ACTIVE, MAILBOX_DEEPEST, MAILBOX_OVERFLOW,
    MAILBOX_QUEUED, PASSIVATIONS, REPLAYED_COMMANDS_SKIPPED,
};
use crate::runtime::{Admission, admit};
use crate::{
    ActorsError, CommandUsage, DeadLetters, Departures, EventObserver, GuildActor, GuildCall,
    GuildCallError, GuildMsg, HandledEvent, OwnRoles, Replies, RuntimeConfig,
};
use overlap::GuildSwitch;

/// What every guild actor of a node shares.
pub struct Services {
    pub store: Arc<dyn Store>,
    /// Guilds the bot left whose data is scheduled for deletion.
    pub departures: Arc<Departures>,
    pub replies: Replies,
    /// The node cache, updated by the ingress before events reach the actors.
    pub cache: Arc<DefaultInMemoryCache>,
    /// The bot's own roles in each guild, also kept by the ingress, for permission checks.
    pub own_roles: Arc<OwnRoles>,
    pub runtime: RuntimeConfig,
    pub dead_letters: Arc<DeadLetters>,
    pub observer: Option<Arc<dyn EventObserver>>,
    /// This node's name, as guild summaries report it.
    pub node_name: String,
    /// The cluster's shard count: a guild's shard in its summary, and the partition its
    /// timers and announcement records are written to.
    pub shard_count: ShardCount,
    /// Command usage analytics.
    pub usage: Arc<CommandUsage>,
    /// The guild actors, and the work they and the router started on tasks (writes, REST
    /// calls, delivery rounds): [`GuildRouter::drain_and_stop`] waits for it, so nothing
    /// holds the store or loses a write once a node has stopped.
    pub tasks: TaskTracker,
}

impl Services {
    /// Runs `task` on a task of its own that the node waits for when it stops.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }
}

/// The shard count as this node knows it: the stored count at the node's start, changed
/// when a resharding completes (the cluster agent sets it as it settles the router), so
/// the guild actors partition what they write by the count of the time; with the counts
/// the cluster had before, whose partitions still hold rows written under them.
#[derive(Clone, Debug)]
pub struct ShardCount(Arc<RwLock<ShardCounts>>);

/// The count in force and those before it ([`protonn_storage::earlier_counts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardCounts {
    pub now: u32,
    /// `None` when not known: then any divisor of `now` may have been one.
    pub earlier: Option<Vec<u32>>,
}

impl ShardCounts {
    /// Every partition rows of shard `shard_id` may be stored in
    /// ([`protonn_storage::partitions_of`]).
    pub fn partitions(&self, shard_id: u32) -> Vec<u32> {
        protonn_storage::partitions_of(shard_id, self.now, self.earlier.as_deref())
    }
}

impl ShardCount {
    /// A count the cluster has had since it formed.
    pub fn new(count: u32) -> Self {
        Self::of(ShardCounts {
            now: count,
            earlier: Some(Vec::new()),
        })
    }

    pub fn of(counts: ShardCounts) -> Self {
        Self(Arc::new(RwLock::new(counts)))
    }

    pub fn get(&self) -> u32 {
        self.counts().now
    }

    pub fn counts(&self) -> ShardCounts {
        self.0.read().expect("shard count poisoned").clone()
    }

    /// Sets the counts; the count they replace.
    pub fn replace(&self, counts: ShardCounts) -> u32 {
        std::mem::replace(&mut *self.0.write().expect("shard count poisoned"), counts).now
    }
}

pub struct GuildRouter;

/// Due timers one poll reads per shard at most; the rest come at the next poll.
const TIMERS_PER_POLL: usize = 500;

/// How often the router looks for guilds of a resharding that were quiet long enough to
/// switch (see `overlap.rs`).
const ALIGN_EVERY: Duration = Duration::from_millis(250);

/// One shard's batch of events, in gateway order.
pub struct Delivery {
    /// The shard count of the set the shard belongs to: two sets run during a resharding.
    pub shard_count: u32,
    /// Replayed after a crash: the previous owner may have handled them (see
    /// `protonn_shard::EventSink::deliver_replayed`).
    pub replayed: bool,
    pub events: Vec<Event>,
    /// Travels with each event queued for a guild actor until it is handled, so the shard's
    /// checkpoint passes only handled events. During a resharding's overlap the switch may
    /// hold events back, and a batch counts as handled once routed.
    pub receipt: Option<Receipt>,
}

/// How a node's shards of the new set stand in a resharding, as its router sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewShardProgress {
    pub shard_id: u32,
    /// Guilds its READY named.
    pub guilds: usize,
    /// Of those, the ones whose GUILD_CREATE came on the new set.
    pub joined: usize,
    /// Of those, the ones the new set handles.
    pub switched: usize,
}

impl NewShardProgress {
    /// READY came and every guild it named has joined.
    pub fn ready(&self) -> bool {
        self.joined == self.guilds
    }

    pub fn switched(&self) -> bool {
        self.switched == self.guilds
    }
}

pub enum RouterMsg {
    /// A batch of one shard's events; answered once every event is in its guild actor's
    /// mailbox, which is what paces the shard's forwarder. The batch updates the node cache
    /// first (from the set that handles each guild). Events without a guild (READY, DMs)
    /// are not routed, nor those no actor acts on (a GUILD_CREATE, a role update: the
    /// cache's alone), for which no actor is started.
    Route(Delivery, RpcReplyPort<()>),
    /// A resharding from `from` to `to` shards starts on this node: both sets' events come,
    /// and each guild is handled by one set, switching as `overlap.rs` says. Sent before
    /// the node's first shard of the new set starts.
    Overlap {
        from: u32,
        to: u32,
    },
    /// The resharding is over and `shard_count` is the set that stays (`to` when it
    /// completed, `from` when it was aborted): the other set's events are dropped.
    Settle {
        shard_count: u32,
    },
    /// The node's shards of the new set, while a resharding runs (empty otherwise).
    OverlapProgress(RpcReplyPort<Vec<NewShardProgress>>),
    /// Switch the guilds both sets were quiet for (on a timer).
    AlignQuiet,
    /// This node took shard `shard_id` (of `shard_count`) over from another: its guilds'
    /// configs may have changed there, so each resident actor of those guilds reloads its
    /// config before it next uses it.
    ShardAdopted {
        shard_id: u32,
        shard_count: u32,
    },
    /// A guild call, answered by the guild's actor: refused at once for an id that is not a
    /// guild's or a guild the bot is not in (no actor is spawned for those).
    Call(Box<GuildCall>, CallReply),
    /// Passivate idle actors and evict past the resident cap (on a timer).
    Sweep,
    /// Look for durable timers fallen due in the shards whose guilds this node holds (on a
    /// timer; the reading happens on a task of its own).
    PollTimers,
    /// Catch up with Discord's entitlements, if this node holds shard 0 (on a timer).
    ReconcileEntitlements,
    /// A durable timer fell due: to its guild's actor, if this node holds the guild.
    Timer(Box<Timer>),
    /// Deliver the active announcement campaigns to the opted-in guilds of the shards this
    /// node runs (on a timer; the round runs on a task of its own, one at a time).
    PollAnnouncements,
    Stats(RpcReplyPort<RouterStats>),
    /// [`Services::tasks`], for [`GuildRouter::drain_and_stop`] to wait on.
    Tasks(RpcReplyPort<TaskTracker>),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Guild actors resident now: guilds with work (activated on demand).
    pub active_guilds: usize,
    /// Guilds in the node cache: every guild of the shards this node runs.
    pub cached_guilds: usize,
    /// Guild actors that failed since start.
    pub failures: u64,
    /// Guild actors stopped for being idle or evicted, since start.
    pub passivated: u64,
    /// Events and config changes queued in guild mailboxes now, not yet handled.
    pub queued: u64,
}

pub struct RouterState {
    services: Arc<Services>,
    /// Set while a timer poll runs, so polls never pile up behind a slow store.
    polling: Arc<AtomicBool>,
    /// The application whose entitlements this node reconciles, once shard 0 was READY here.
    entitlements_of: Option<Id<twilight_model::id::marker::ApplicationMarker>>,
    /// Set while a reconciliation runs.
    reconciling: Arc<AtomicBool>,
    /// Set while an announcement round runs.
    announcing: Arc<AtomicBool>,
    guilds: HashMap<Id<GuildMarker>, Resident>,
    failures: u64,
    passivated: u64,
    sets: Sets,
}

/// The shard sets whose events this router takes.
enum Sets {
    One(u32),
    /// A resharding from `from` to `to` shards: each guild's switch, and the guilds each
    /// new shard's READY named.
    Both {
        from: u32,
        to: u32,
        guilds: HashMap<Id<GuildMarker>, GuildSwitch<Event>>,
        expected: HashMap<u32, Vec<Id<GuildMarker>>>,
    },
}

/// A guild actor the router knows, with its mailbox accounting.
struct Resident {
    mailbox: Mailbox,
    last_active: Instant,
}

impl Resident {
    fn start(guild_id: Id<GuildMarker>, services: &Arc<Services>) -> Self {
        let mailbox = GuildActor::start(GuildArgs {
            guild_id,
            services: Arc::clone(services),
        });
        counter!(GUILD_SPAWNS).increment(1);
        Self {
            mailbox,
            last_active: Instant::now(),
        }
    }

    /// Sends `message`, counted as pending; gives it back if the actor has ended.
    fn send(&mut self, message: GuildMsg) -> Result<(), GuildMsg> {
        self.last_active = Instant::now();
        self.mailbox.send(message)
    }
}

impl GuildRouter {
    pub async fn start(services: Services) -> Result<ActorRef<RouterMsg>, ActorsError> {
        let (router, _) = Actor::spawn(None, GuildRouter, Arc::new(services))
            .await
            .map_err(|err| ActorsError::Spawn(err.to_string()))?;
        Ok(router)
    }

    /// Stops the router once it has handled what its mailbox holds, which drops the guild
    /// actors' mailboxes, and waits for its tasks ([`Services::tasks`], the guild actors
    /// among them) to finish what they hold; whether the router and every task finished,
    /// each within `within` (what did not is left). Call it once no events arrive any more
    /// (the shards are closed): a draining router refuses new ones.
    pub async fn drain_and_stop(router: &ActorRef<RouterMsg>, within: Duration) -> bool {
        let Ok(tasks) = ractor::call!(router, RouterMsg::Tasks) else {
            tracing::warn!("the router stopped before its drain");
            return false;
        };
        let drained = router.drain_and_wait(Some(within)).await.is_ok();
        if !drained {
            tracing::warn!(
                ?within,
                "router mailbox not drained in time; stopping anyway"
            );
            router.stop(None);
        }
        // Nothing starts more work now: what runs is the last of it.
        tasks.close();
        let finished = tokio::time::timeout(within, tasks.wait()).await.is_ok();
        if !finished {
            tracing::warn!(
                ?within,
                running = tasks.len(),
                "guild actors and tasks not finished in time; stopping anyway"
            );
        }
        drained && finished
    }
}

impl RouterState {
    /// The resident actor of `guild_id`, started if there is none.
    fn resident(&mut self, guild_id: Id<GuildMarker>) -> &mut Resident {
        let resident = self.guilds.len();
        self.guilds.entry(guild_id).or_insert_with(|| {
            gauge!(GUILDS_ACTIVE).set((resident + 1) as f64);
            Resident::start(guild_id, &self.services)
        })
    }

    /// Hands `message` to the guild's actor, counted as pending, starting one if there is
    /// none; gives it back if no actor could take it. Never an error for the router: a
    /// failure here must not stop it, or every guild of the node would go silent.
    fn deliver(&mut self, guild_id: Id<GuildMarker>, message: GuildMsg) -> Result<(), GuildMsg> {
        self.resident(guild_id)
            .send(message)
            .or_else(|message| self.restart(guild_id, message))
    }

    /// The guild's actor has ended while resident, which only the runtime's shutdown or a
    /// panic its loop does not catch does (it catches its handlings'): a fresh actor, which
    /// loads the guild's state afresh, takes `message`.
    fn restart(&mut self, guild_id: Id<GuildMarker>, message: GuildMsg) -> Result<(), GuildMsg> {
        tracing::error!(%guild_id, "guild actor ended unexpectedly; starting a fresh one");
        self.failures += 1;
        counter!(GUILD_FAILURES).increment(1);
        let mut fresh = Resident::start(guild_id, &self.services);
        let sent = fresh.send(message);
        self.guilds.insert(guild_id, fresh);
        // Refused by a fresh actor too: the runtime is shutting down, and the message is lost
        // (counted with the failure above).
        sent.inspect_err(|_| tracing::error!(%guild_id, "guild actor unreachable; message dropped"))
    }

    /// A shard's batch: each event goes through the set that handles its guild, then into
    /// the cache and to the guild's actor.
    fn take(&mut self, delivery: Delivery) {
        let Delivery {
            shard_count,
            replayed,
            events,
            receipt,
        } = delivery;
        let now = Instant::now();
        for event in events {
            if let Sets::One(count) = self.sets {
                // Another count is a set that just stopped handling (its shards close).
                if count == shard_count {
                    self.handle(event, replayed, receipt.as_ref());
                }
                continue;
            }
            for event in self.switch(shard_count, event, now) {
                self.handle(event, replayed, None);
            }
        }
    }

    /// During a resharding: what the set of `shard_count` delivering `event` makes the
    /// router handle now.
    fn switch(&mut self, shard_count: u32, event: Event, now: Instant) -> Vec<Event> {
        let Sets::Both {
            from,
            to,
            guilds,
            expected,
        } = &mut self.sets
        else {
            return vec![event];
        };
        let old = shard_count == *from;
        if !old && shard_count != *to {
            return Vec::new();
        }
        if let Event::GuildDelete(deleted) = &event {
            // A guild the bot left need not join the new set.
            for listed in expected.values_mut() {
                listed.retain(|guild| *guild != deleted.id);
            }
        }
        let Some(guild_id) = event.guild_id() else {
            // DMs and entitlements come to shard 0 of both sets: the old set's are handled.
            // The new set's READY says which guilds its shard must have.
            if let Event::Ready(ready) = &event
                && !old
                && let Some(shard) = ready.shard
            {
                expected.insert(shard.number(), ready.guilds.iter().map(|g| g.id).collect());
            }
            return if old { vec![event] } else { Vec::new() };
        };
        let switch = guilds.entry(guild_id).or_default();
        if old {
            switch.old_event(event, now)
        } else {
            switch.new_event(event, now)
        }
    }

    /// An event of the set that handles its guild: into the cache, then to the guild.
    fn handle(&mut self, mut event: Event, replayed: bool, receipt: Option<&Receipt>) {
        crate::cache::update_cache(&self.services.cache, &mut event);
        self.services.own_roles.update(&event);
        // A replay's state is applied again; its commands were answered by the crashed
        // owner, and answering them twice would be seen.
        if replayed && matches!(event, Event::MessageCreate(_) | Event::InteractionCreate(_)) {
            counter!(REPLAYED_COMMANDS_SKIPPED).increment(1);
            return;
        }
        self.route(event, receipt);
    }

    fn overlap(&mut self, from: u32, to: u32) {
        match self.sets {
            Sets::One(count) if count == from => {
                tracing::info!(from, to, "resharding: both shard sets deliver");
                self.sets = Sets::Both {
                    from,
                    to,
                    guilds: HashMap::new(),
                    expected: HashMap::new(),
                };
            }
            Sets::Both {
                from: running_from,
                to: running_to,
                ..
            } if (running_from, running_to) == (from, to) => {}
            _ => tracing::warn!(
                from,
                to,
                "resharding refused: this node runs another shard count"
            ),
        }
    }

    /// The resharding is over: `shard_count` stays. The coordinator completes it only once
    /// every guild switched, and aborts it with every guild's events still handled by the old
    /// set, so what the leaving set holds is dropped.
    fn settle(&mut self, shard_count: u32) {
        if let Sets::Both { from, to, .. } =
            std::mem::replace(&mut self.sets, Sets::One(shard_count))
        {
            tracing::info!(
                from,
                to,
                shard_count,
                "resharding over: one shard set delivers"
            );
        }
    }

    fn overlap_progress(&self) -> Vec<NewShardProgress> {
        let Sets::Both {
            guilds, expected, ..
        } = &self.sets
        else {
            return Vec::new();
        };
        let mut progress: Vec<NewShardProgress> = expected
            .iter()
            .map(|(&shard_id, listed)| {
                let of = |test: fn(&GuildSwitch<Event>) -> bool| {
                    listed
                        .iter()
                        .filter(|guild| guilds.get(guild).is_some_and(test))
                        .count()
                };
                NewShardProgress {
                    shard_id,
                    guilds: listed.len(),
                    joined: of(GuildSwitch::joined),
                    switched: of(GuildSwitch::switched),
                }
            })
            .collect();
        progress.sort_unstable_by_key(|shard| shard.shard_id);
        progress
    }

    fn align_quiet(&mut self) {
        if let Sets::Both { guilds, .. } = &mut self.sets {
            let now = Instant::now();
            for switch in guilds.values_mut() {
                switch.tick(now);
            }
        }
    }

    fn route(&mut self, event: Event, receipt: Option<&Receipt>) {
        let Some(guild_id) = event.guild_id() else {
            match event {
                Event::Ready(ready) => self.ready(&ready),
                Event::EntitlementCreate(e) => self.entitlement(e.0),
                _ => {}
            }
            return;
        };
        if matches!(event, Event::GuildCreate(_))
            && let Some(observer) = &self.services.observer
        {
            let shard_id =
                protonn_storage::shard_of(guild_id.get(), self.services.shard_count.get());
            observer.handled(guild_id.get(), shard_id, HandledEvent::GuildCreate);
        }
        // Activation on demand: what no actor acts on is in the cache already and goes no
        // further, so a guild without work has no actor (a READY burst spawns none). A
        // running actor also takes what its features handle only while it runs.
        let work = crate::guild::is_work(&event, guild_id, &self.services.departures);
        let for_resident =
            self.guilds.contains_key(&guild_id) && crate::features::any_handles(&event);
        if !(work || for_resident) {
            return;
        }
        let limit = self.services.runtime.mailbox_limit;
        let resident = self.resident(guild_id);
        let pending = resident.mailbox.pending();
        let name = event.kind().name().unwrap_or("unknown");
        match admit(&event, pending, limit) {
            Admission::Deliver if pending >= limit => {
                counter!(MAILBOX_OVERFLOW, "event" => name).increment(1);
            }
            Admission::Deliver => {}
            Admission::Shed => {
                counter!(EVENTS_SHED, "event" => name, "action" => "shed").increment(1);
                return;
            }
            Admission::Busy => {
                counter!(EVENTS_SHED, "event" => name, "action" => "busy").increment(1);
                if let Event::InteractionCreate(interaction) = &event {
                    self.reply_busy(interaction);
                }
                return;
            }
        }
        let message = GuildMsg::Event(Arc::new(event), receipt.cloned());
        let _ = resident
            .send(message)
            .or_else(|message| self.restart(guild_id, message));
    }

    /// An app subscription bought (ENTITLEMENT_CREATE): stored off the router's task.
    fn entitlement(&self, entitlement: twilight_model::application::monetization::Entitlement) {
        crate::entitlements::spawn_apply(&self.services, entitlement);
    }

    /// Guilds removed while the bot was offline start their grace period: done off the
    /// router's task, since the router never waits on storage. Shard 0's READY also catches
    /// up the entitlement events no node was there to get.
    fn ready(&mut self, ready: &twilight_model::gateway::payload::incoming::Ready) {
        let Some(shard) = ready.shard else { return };
        if shard.number() == 0 {
            self.entitlements_of = Some(ready.application.id);
            self.reconcile_entitlements();
        }
        let present = ready.guilds.iter().map(|g| g.id.get()).collect();
        let services = Arc::clone(&self.services);
        self.services.spawn(async move {
            let (shard_id, shard_count) = (shard.number(), shard.total());
            let grace = services.runtime.removed_guild_grace;
            match services
                .departures
                .departed_while_offline(
                    services.store.as_ref(),
                    shard_id,
                    shard_count,
                    &present,
                    grace,
                    protonn_storage::Timestamp::now(),
                )
                .await
            {
                Ok(0) => {}
                Ok(gone) => tracing::info!(
                    shard_id,
                    gone,
                    "guilds removed while offline: data scheduled for deletion"
                ),
                Err(err) => {
                    tracing::warn!(shard_id, error = %err, "cannot check READY for guilds removed while offline")
                }
            }
        });
    }

    /// Reads the due timers of every shard with a guild in the node cache (the shards this
    /// node runs), on a task, and sends each back as [`RouterMsg::Timer`].
    fn poll_timers(&self, myself: &ActorRef<RouterMsg>) {
        if self.polling.swap(true, Ordering::AcqRel) {
            return;
        }
        let services = Arc::clone(&self.services);
        let polling = Arc::clone(&self.polling);
        let router = myself.clone();
        self.services.spawn(async move {
            let held = crate::announcements::HeldShards::of(&services);
            let now = Timestamp::now();
            // A timer stays in the partition of the count it was set under: one set before
            // a resharding is found in an earlier count's partition of its new shard.
            for partition in held.partitions() {
                match services
                    .store
                    .due_timers(partition, now, TIMERS_PER_POLL)
                    .await
                {
                    Ok(due) => {
                        for timer in due.into_iter().filter(|t| held.holds(t.guild_id)) {
                            let _ = router.cast(RouterMsg::Timer(Box::new(timer)));
                        }
                    }
                    Err(err) => {
                        tracing::warn!(partition, error = %err, "cannot read due timers");
                    }
                }
            }
            polling.store(false, Ordering::Release);
        });
    }

    /// Reads the application's entitlements and applies them, on a task, while this node
    /// holds shard 0 (where entitlement events arrive): at its READY, and then every
    /// `entitlement_reconcile_every`, which is how renewals and refunds arrive (twilight
    /// 0.18 parses ENTITLEMENT_CREATE only; UPDATE and DELETE never reach us as events).
    fn reconcile_entitlements(&self) {
        let services = &self.services;
        let Some(application_id) = self.entitlements_of else {
            return;
        };
        let holds_shard_0 = services.cache.iter().guilds().any(|guild| {
            protonn_storage::on_shard(guild.id().get(), 0, services.shard_count.get())
        });
        if services.runtime.premium_skus.is_empty()
            || !holds_shard_0
            || self.reconciling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let services = Arc::clone(services);
        let reconciling = Arc::clone(&self.reconciling);
        self.services.spawn(async move {
            match crate::entitlements::reconcile(
                services.store.as_ref(),
                &services.replies,
                application_id,
                &services.runtime.premium_skus,
            )
            .await
            {
                Ok(applied) => tracing::debug!(applied, "entitlements reconciled"),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot reconcile entitlements; the next try catches up")
                }
            }
            reconciling.store(false, Ordering::Release);
        });
    }

    /// Starts a round of announcement deliveries on a task, unless one still runs.
    fn poll_announcements(&self) {
        if self.announcing.swap(true, Ordering::AcqRel) {
            return;
        }
        let services = Arc::clone(&self.services);
        let announcing = Arc::clone(&self.announcing);
        self.services.spawn(async move {
            crate::announcements::deliver_round(services).await;
            announcing.store(false, Ordering::Release);
        });
    }

    /// Resident actors of the guilds of one shard reload their configs before next use.
    fn shard_adopted(&self, shard_id: u32, shard_count: u32) {
        for (guild_id, resident) in &self.guilds {
            if protonn_storage::on_shard(guild_id.get(), shard_id, shard_count) {
                // Queued behind the events it already holds (from before the move), which
                // were this node's to handle with the config it had. A stopped actor needs
                // nothing: its successor loads afresh.
                let _ = resident.mailbox.send(GuildMsg::Reload);
            }
        }
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

    /// Passivates the actors of guilds the node cache no longer holds (the bot was removed
    /// from the guild, or its shard moved to another node) and idle actors, then the least
    /// recently active idle ones past the resident cap. An actor with queued events is
    /// never passivated: a fresh one could start beside it while it drains, and the guild's
    /// events would no longer be handled in order.
    fn sweep(&mut self) {
        let (queued, deepest) = self
            .guilds
            .values()
            .map(|resident| resident.mailbox.pending())
            .fold((0u64, 0u32), |(sum, max), n| {
                (sum + u64::from(n), max.max(n))
            });
        gauge!(MAILBOX_QUEUED).set(queued as f64);
        gauge!(MAILBOX_DEEPEST).set(f64::from(deepest));
        let RuntimeConfig {
            idle_after,
            max_resident,
            ..
        } = self.services.runtime;
        let now = Instant::now();
        let mut idle: Vec<(Instant, Id<GuildMarker>)> = Vec::new();
        let mut gone = Vec::new();
        for (&guild_id, resident) in &self.guilds {
            if resident.mailbox.pending() > 0 {
                continue;
            }
            if self.services.cache.guild(guild_id).is_none() {
                gone.push(guild_id);
            } else {
                idle.push((resident.last_active, guild_id));
            }
        }
        for guild_id in gone {
            self.passivate(guild_id, "removed");
        }
        idle.sort_unstable();
        let expired = idle
            .iter()
            .take_while(|(last_active, _)| now.duration_since(*last_active) >= idle_after)
            .count();
        let over_cap = self.guilds.len().saturating_sub(max_resident);
        let evicted = over_cap.saturating_sub(expired).min(idle.len() - expired);
        for (index, (_, guild_id)) in idle.iter().take(expired + evicted).enumerate() {
            let reason = if index < expired { "idle" } else { "evicted" };
            self.passivate(*guild_id, reason);
        }
    }

    /// Forgets an idle actor, which ends it: dropping its mailbox ends its task, and the
    /// guild's next event starts a fresh one.
    fn passivate(&mut self, guild_id: Id<GuildMarker>, reason: &'static str) {
        if self.guilds.remove(&guild_id).is_some() {
            counter!(PASSIVATIONS, "reason" => reason).increment(1);
            self.passivated += 1;
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
        myself.send_interval(ALIGN_EVERY, || RouterMsg::AlignQuiet);
        myself.send_interval(services.runtime.timer_poll_every, || RouterMsg::PollTimers);
        myself.send_interval(services.runtime.entitlement_reconcile_every, || {
            RouterMsg::ReconcileEntitlements
        });
        myself.send_interval(services.runtime.announce_poll_every, || {
            RouterMsg::PollAnnouncements
        });
        Ok(RouterState {
            sets: Sets::One(services.shard_count.get()),
            services,
            polling: Arc::default(),
            entitlements_of: None,
            reconciling: Arc::default(),
            announcing: Arc::default(),
            guilds: HashMap::new(),
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
            RouterMsg::Route(delivery, done) => {
                state.take(delivery);
                let _ = done.send(());
            }
            RouterMsg::Overlap { from, to } => state.overlap(from, to),
            RouterMsg::Settle { shard_count } => state.settle(shard_count),
            RouterMsg::OverlapProgress(reply) => {
                let _ = reply.send(state.overlap_progress());
            }
            RouterMsg::AlignQuiet => state.align_quiet(),
            RouterMsg::ShardAdopted {
                shard_id,
                shard_count,
            } => state.shard_adopted(shard_id, shard_count),
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
                if let Err(GuildMsg::Call(_, reply)) =
                    state.deliver(guild_id, GuildMsg::Call(call, reply))
                {
                    let _ = reply.send(Err(GuildCallError::Unavailable {
                        message: "guild actor unavailable".into(),
                    }));
                }
            }
            RouterMsg::Sweep => state.sweep(),
            RouterMsg::PollTimers => state.poll_timers(&myself),
            RouterMsg::ReconcileEntitlements => state.reconcile_entitlements(),
            RouterMsg::PollAnnouncements => state.poll_announcements(),
            RouterMsg::Timer(timer) => {
                // Only a guild this node holds: its shard may have moved since the poll.
                match Id::<GuildMarker>::new_checked(timer.guild_id) {
                    Some(guild_id) if state.services.cache.guild(guild_id).is_some() => {
                        let _ = state.deliver(guild_id, GuildMsg::Timer(timer));
                    }
                    _ => {}
                }
            }
            RouterMsg::Tasks(reply) => {
                let _ = reply.send(state.services.tasks.clone());
            }
            RouterMsg::Stats(reply) => {
                let _ = reply.send(RouterStats {
                    active_guilds: state.guilds.len(),
                    cached_guilds: state.services.cache.stats().guilds(),
                    failures: state.failures,
                    passivated: state.passivated,
                    queued: state
                        .guilds
                        .values()
                        .map(|resident| u64::from(resident.mailbox.pending()))
                        .sum(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protonn_shard::{BotToken, EventTypeFlags};
    use protonn_storage::{
        DataRights, EmbeddedStore, GuildConfig, GuildConfigRepo, VersionedConfig,
    };
    use twilight_model::gateway::payload::incoming::GuildCreate;

    use super::*;
    use crate::rest::{GlobalLine, GuardLimits, InvalidRequestGuard, Rest, Transport};
    use crate::{CallSource, Caller, ConfigChangeError, GuildRequest, GuildResponse};

    /// A router over a store of its own, in `guilds`; its REST goes nowhere (these tests
    /// send none).
    async fn router(
        data: &std::path::Path,
        guilds: &[u64],
    ) -> (ActorRef<RouterMsg>, Arc<EmbeddedStore>) {
        observed_router(data, guilds, None).await
    }

    async fn observed_router(
        data: &std::path::Path,
        guilds: &[u64],
        observer: Option<Arc<dyn EventObserver>>,
    ) -> (ActorRef<RouterMsg>, Arc<EmbeddedStore>) {
        router_with(data, guilds, observer, Arc::default(), TaskTracker::new()).await
    }

    async fn router_with(
        data: &std::path::Path,
        guilds: &[u64],
        observer: Option<Arc<dyn EventObserver>>,
        departures: Arc<Departures>,
        tasks: TaskTracker,
    ) -> (ActorRef<RouterMsg>, Arc<EmbeddedStore>) {
        let cache = Arc::new(DefaultInMemoryCache::new());
        for &guild_id in guilds {
            join(&cache, guild_id);
        }
        let store = Arc::new(EmbeddedStore::open(data).unwrap());
        let transport = Transport::new(
            &BotToken::new("test"),
            Some("127.0.0.1:9"),
            Duration::from_secs(1),
        );
        let rest = Rest::new(
            Arc::new(transport),
            Arc::new(GlobalLine::unlimited()),
            Arc::new(InvalidRequestGuard::new(GuardLimits::default())),
        );
        let usage = CommandUsage::new(&(Arc::clone(&store) as Arc<dyn Store>));
        let router = GuildRouter::start(Services {
            store: Arc::clone(&store) as Arc<dyn Store>,
            departures,
            replies: Replies::new(rest),
            cache,
            own_roles: Arc::default(),
            runtime: RuntimeConfig::default(),
            dead_letters: Arc::default(),
            observer,
            node_name: "test".to_owned(),
            shard_count: ShardCount::new(1),
            usage,
            tasks,
        })
        .await
        .unwrap();
        (router, store)
    }

    /// Puts guild `guild_id` in the router's cache: guild calls are only for guilds the bot
    /// is in.
    fn join(cache: &DefaultInMemoryCache, guild_id: u64) {
        cache.update(&guild_create(guild_id));
    }

    /// Routes `events` and returns the router's stats once they are in their mailboxes.
    async fn route(router: &ActorRef<RouterMsg>, events: Vec<Event>) -> RouterStats {
        deliver(router, 1, events).await;
        ractor::call_t!(router, RouterMsg::Stats, 5_000).unwrap()
    }

    fn user(id: u64, bot: bool) -> serde_json::Value {
        serde_json::json!({"id": id.to_string(), "username": "u", "discriminator": "0", "avatar": null, "bot": bot})
    }

    fn message_json(guild_id: u64, bot: bool) -> serde_json::Value {
        serde_json::json!({
            "id": "10", "channel_id": "20", "guild_id": guild_id.to_string(), "author": user(5, bot),
            "content": "hello", "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        })
    }

    fn message_create(guild_id: u64, bot: bool) -> Event {
        Event::MessageCreate(Box::new(
            twilight_model::gateway::payload::incoming::MessageCreate {
                channel_type: None,
                message: serde_json::from_value(message_json(guild_id, bot)).unwrap(),
            },
        ))
    }

    /// An event of every type the shards deserialise (`crate::event_types`) that concerns a
    /// guild, and of some the actors have no use for, with their variants that matter
    /// (a bot's message, an outage's GUILD_DELETE).
    fn samples(guild_id: u64) -> Vec<Event> {
        use serde_json::{from_value, json};
        use twilight_model::gateway::payload::incoming::*;
        let guild = guild_id.to_string();
        let member = json!({
            "guild_id": guild, "roles": [], "user": user(5, false), "joined_at": null,
            "pending": false, "premium_since": null, "nick": null, "avatar": null,
            "communication_disabled_until": null, "deaf": false, "mute": false, "flags": 0,
        });
        let reaction = json!({
            "channel_id": "20", "message_id": "10", "user_id": "5", "guild_id": guild,
            "emoji": {"id": null, "name": "⭐"}, "burst": false,
        });
        let role = json!({
            "guild_id": guild, "role": {"id": "30", "name": "r", "color": 0, "hoist": false,
            "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
            "managed": false, "mentionable": false, "permissions": "0", "position": 1, "flags": 0},
        });
        let execution = |action: u8| {
            Event::AutoModerationActionExecution(
                from_value(json!({
                    "action": {"type": action}, "content": "x", "guild_id": guild,
                    "matched_content": null, "matched_keyword": null, "rule_id": "40",
                    "rule_trigger_type": 1, "user_id": "5",
                }))
                .unwrap(),
            )
        };
        let guild_delete = |unavailable| {
            Event::GuildDelete(GuildDelete {
                id: Id::new(guild_id),
                unavailable,
            })
        };
        vec![
            message_create(guild_id, false),
            message_create(guild_id, true),
            Event::MessageUpdate(Box::new(MessageUpdate(
                from_value(message_json(guild_id, false)).unwrap(),
            ))),
            Event::MessageDelete(MessageDelete {
                channel_id: Id::new(20),
                guild_id: Some(Id::new(guild_id)),
                id: Id::new(10),
            }),
            Event::MemberAdd(Box::new(from_value(member.clone()).unwrap())),
            Event::MemberUpdate(Box::new(from_value(member).unwrap())),
            Event::MemberRemove(MemberRemove {
                guild_id: Id::new(guild_id),
                user: from_value(user(5, false)).unwrap(),
            }),
            Event::ReactionAdd(Box::new(ReactionAdd(from_value(reaction.clone()).unwrap()))),
            Event::ReactionRemove(Box::new(ReactionRemove(from_value(reaction).unwrap()))),
            execution(1),
            execution(2),
            Event::RoleCreate(from_value(role.clone()).unwrap()),
            Event::RoleUpdate(from_value(role).unwrap()),
            Event::RoleDelete(RoleDelete {
                guild_id: Id::new(guild_id),
                role_id: Id::new(30),
            }),
            guild_delete(Some(true)),
            guild_delete(None),
        ]
    }

    /// Through the router, not `is_work` (which is built from the same test): each event a
    /// feature wants enough to start an actor starts one for a guild that has none.
    #[tokio::test]
    async fn every_event_a_feature_handles_starts_its_guild_s_actor() {
        let guild_id = 5 << 22;
        let samples = samples(guild_id);
        for feature in crate::features::all() {
            // Each type a feature declares is sampled (or this test would prove nothing).
            for (name, flag) in feature.event_types().iter_names() {
                assert!(
                    samples
                        .iter()
                        .any(|event| EventTypeFlags::from(event.kind()) == flag),
                    "no sample of {name}, which {} handles",
                    feature.name()
                );
            }
        }
        for event in samples {
            let Some(feature) = crate::features::all()
                .iter()
                .find(|feature| crate::features::activates(**feature, &event))
            else {
                continue;
            };
            let data = tempfile::tempdir().unwrap();
            let (router, _store) = router(data.path(), &[guild_id]).await;
            let kind = event.kind();
            let stats = route(&router, vec![event]).await;
            assert_eq!(
                stats.active_guilds,
                1,
                "{} handles a {kind:?} the router starts no actor for",
                feature.name()
            );
            GuildRouter::drain_and_stop(&router, Duration::from_secs(5)).await;
        }
    }

    #[tokio::test]
    async fn only_a_guild_with_work_gets_an_actor() {
        let data = tempfile::tempdir().unwrap();
        let (quiet, speaking, removed, returning) = (5 << 22, 6 << 22, 7 << 22, 8 << 22);
        let departures = Arc::new(Departures::default());
        let (router, store) = router_with(
            data.path(),
            &[quiet, speaking, removed, returning],
            None,
            Arc::clone(&departures),
            TaskTracker::new(),
        )
        .await;

        // A READY burst, role changes, an outage: the cache's alone.
        let mut events: Vec<Event> = [quiet, speaking, removed]
            .into_iter()
            .map(guild_create)
            .collect();
        events.extend(samples(quiet).into_iter().filter(|event| {
            matches!(
                event,
                Event::RoleCreate(_) | Event::RoleUpdate(_) | Event::RoleDelete(_)
            ) || matches!(event, Event::GuildDelete(d) if d.unavailable == Some(true))
        }));
        assert_eq!(events.len(), 7);
        // The router keeps the cache: the guild in an outage counts as unavailable.
        let stats = route(&router, events).await;
        assert_eq!(
            (stats.active_guilds, stats.cached_guilds),
            (0, 3),
            "{stats:?}"
        );

        // A message is work, and so are a removal and a return within the grace period.
        let message = message_create(speaking, false);
        assert_eq!(route(&router, vec![message]).await.active_guilds, 1);
        let far = Timestamp(Timestamp::now().0 + 3_600_000);
        store.schedule_guild_deletion(returning, far).await.unwrap();
        departures.left(returning);
        let removal = Event::GuildDelete(twilight_model::gateway::payload::incoming::GuildDelete {
            id: Id::new(removed),
            unavailable: None,
        });
        route(&router, vec![removal, guild_create(returning)]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let scheduled: Vec<u64> = store
                .scheduled_guild_deletions()
                .await
                .unwrap()
                .into_iter()
                .map(|(guild, _)| guild)
                .collect();
            if scheduled == [removed] {
                break;
            }
            assert!(Instant::now() < deadline, "scheduled: {scheduled:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!departures.is_pending(returning) && departures.is_pending(removed));
        GuildRouter::drain_and_stop(&router, Duration::from_secs(5)).await;
    }

    /// Router stats once every queued message is handled.
    async fn settled(router: &ActorRef<RouterMsg>) -> RouterStats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = ractor::call_t!(router, RouterMsg::Stats, 5_000).unwrap();
            if stats.queued == 0 {
                return stats;
            }
            assert!(Instant::now() < deadline, "still queued: {stats:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_removed_guild_s_actor_is_passivated_at_the_next_sweep_unless_it_came_back() {
        let data = tempfile::tempdir().unwrap();
        let (removed, returned) = (5 << 22, 6 << 22);
        let (router, _store) = router(data.path(), &[removed, returned]).await;
        let removal = |guild_id: u64| {
            Event::GuildDelete(twilight_model::gateway::payload::incoming::GuildDelete {
                id: Id::new(guild_id),
                unavailable: None,
            })
        };
        // The other guild is back before the sweep (the bot was added again).
        route(
            &router,
            vec![removal(removed), removal(returned), guild_create(returned)],
        )
        .await;
        assert_eq!(settled(&router).await.active_guilds, 2);
        router.cast(RouterMsg::Sweep).unwrap();
        let stats = settled(&router).await;
        assert_eq!((stats.active_guilds, stats.passivated), (1, 1), "{stats:?}");
        GuildRouter::drain_and_stop(&router, Duration::from_secs(5)).await;
    }

    async fn set_prefix(
        router: &ActorRef<RouterMsg>,
        guild_id: u64,
        expected_version: Option<u64>,
    ) -> Result<VersionedConfig, ConfigChangeError> {
        let caller = Caller {
            user_id: None,
            source: CallSource::Node,
        };
        crate::change_config_key(
            &crate::LocalGuildCalls::new(router.clone()),
            caller,
            guild_id,
            ("prefix", "?"),
            expected_version,
            Duration::from_secs(5),
        )
        .await
    }

    #[tokio::test]
    async fn an_adopted_shard_reloads_its_guilds_configs_before_their_next_use() {
        let data = tempfile::tempdir().unwrap();
        // Shard 1 of 2.
        let guild_id = (3 << 22) | 7;
        let (router, store) = router(data.path(), &[guild_id]).await;
        assert_eq!(
            set_prefix(&router, guild_id, None).await.unwrap().version,
            1
        );

        // Meanwhile the shard ran on another node, which changed the config there.
        let mut elsewhere = store.load(guild_id).await.unwrap().unwrap().config;
        elsewhere.prefix = "%".to_owned();
        assert_eq!(store.save(guild_id, 1, &elsewhere).await.unwrap(), 2);

        // Without a reload the resident actor still holds version 1, and would act on it.
        let stale = set_prefix(&router, guild_id, Some(2)).await;
        assert_eq!(stale, Err(ConfigChangeError::Conflict { current: 1 }));
        // Another shard coming back changes nothing for this guild.
        router
            .cast(RouterMsg::ShardAdopted {
                shard_id: 0,
                shard_count: 2,
            })
            .unwrap();
        let stale = set_prefix(&router, guild_id, Some(2)).await;
        assert_eq!(stale, Err(ConfigChangeError::Conflict { current: 1 }));

        // Its own shard coming back makes it reload: version 2 is what it now builds on.
        router
            .cast(RouterMsg::ShardAdopted {
                shard_id: 1,
                shard_count: 2,
            })
            .unwrap();
        let saved = set_prefix(&router, guild_id, Some(2)).await.unwrap();
        assert_eq!(saved.version, 3);
        assert_eq!(saved.config.prefix, "?");
        GuildRouter::drain_and_stop(&router, Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn draining_handles_every_queued_message_before_the_actors_stop() {
        let data = tempfile::tempdir().unwrap();
        let guild_id = 5 << 22;
        let tasks = TaskTracker::new();
        let (router, _store) = router_with(
            data.path(),
            &[guild_id],
            None,
            Arc::default(),
            tasks.clone(),
        )
        .await;
        // Config changes queue behind one another in the guild's mailbox; each is answered
        // only once handled, so an answer for every one proves none was dropped by the stop.
        let answers: Vec<_> = (0..50)
            .map(|expected_version| {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let change = GuildCall {
                    guild_id,
                    caller: Caller {
                        user_id: None,
                        source: CallSource::Node,
                    },
                    idempotency_key: None,
                    deadline: Duration::from_secs(10),
                    request: GuildRequest::ChangeConfig {
                        config: GuildConfig::default(),
                        expected_version,
                    },
                };
                router
                    .cast(RouterMsg::Call(Box::new(change), reply.into()))
                    .unwrap();
                answer
            })
            .collect();
        // Stats queue behind the casts: every change is in the guild's mailbox by then.
        let stats = ractor::call_t!(router, RouterMsg::Stats, 5_000).unwrap();
        assert!(stats.queued > 0, "{stats:?}");
        assert!(GuildRouter::drain_and_stop(&router, Duration::from_secs(10)).await);
        let mut versions = Vec::new();
        for mut answer in answers {
            match answer
                .try_recv()
                .expect("answered before the stop returned")
            {
                Ok(GuildResponse::Config(saved)) => versions.push(saved.version),
                other => panic!("a change failed: {other:?}"),
            }
        }
        assert_eq!(versions, (1..=50).collect::<Vec<u64>>());
    }

    /// Message ids the guild actors handled, in order.
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<u64>>);

    impl EventObserver for Seen {
        fn handled(&self, _guild_id: u64, _shard_id: u32, event: crate::HandledEvent) {
            if let crate::HandledEvent::Message(id) = event {
                self.0.lock().unwrap().push(id);
            }
        }
    }

    fn message(guild_id: u64, id: u64) -> Event {
        let message = serde_json::json!({
            "id": id.to_string(), "channel_id": "20", "guild_id": guild_id.to_string(),
            "author": {"id": "9", "username": "u", "discriminator": "0", "avatar": null},
            "content": "hello", "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": null, "tts": false, "mention_everyone": false, "mentions": [],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
        });
        Event::MessageCreate(Box::new(
            twilight_model::gateway::payload::incoming::MessageCreate {
                channel_type: None,
                message: serde_json::from_value(message).unwrap(),
            },
        ))
    }

    fn ready(shard: [u32; 2], guilds: &[u64]) -> Event {
        let guilds: Vec<_> = guilds
            .iter()
            .map(|id| serde_json::json!({"id": id.to_string(), "unavailable": true}))
            .collect();
        let ready = serde_json::json!({
            "v": 10, "session_id": "s", "resume_gateway_url": "ws://127.0.0.1:9",
            "user": {"id": "9", "username": "bot", "discriminator": "0", "avatar": null, "bot": true,
                "mfa_enabled": false, "verified": true},
            "guilds": guilds, "shard": shard, "application": {"id": "1", "flags": 0},
        });
        Event::Ready(serde_json::from_value(ready).unwrap())
    }

    fn guild_create(guild_id: u64) -> Event {
        let guild = serde_json::json!({
            "id": guild_id.to_string(), "name": "g", "icon": null, "owner_id": "1",
            "afk_timeout": 60, "default_message_notifications": 0, "explicit_content_filter": 0,
            "features": [], "mfa_level": 0, "nsfw_level": 0, "preferred_locale": "en-US",
            "premium_progress_bar_enabled": false, "premium_tier": 0, "system_channel_flags": 0,
            "verification_level": 0, "emojis": [], "stickers": [], "roles": [], "members": [],
            "channels": [],
        });
        Event::GuildCreate(Box::new(GuildCreate::Available(
            serde_json::from_value(guild).unwrap(),
        )))
    }

    async fn deliver(router: &ActorRef<RouterMsg>, shard_count: u32, events: Vec<Event>) {
        let delivery = Delivery {
            shard_count,
            replayed: false,
            events,
            receipt: None,
        };
        ractor::call_t!(router, |reply| RouterMsg::Route(delivery, reply), 5_000).unwrap();
    }

    #[tokio::test]
    async fn during_a_resharding_a_guild_handles_each_message_once_from_one_set() {
        let data = tempfile::tempdir().unwrap();
        // Shard 1 of 2 in the new set.
        let guild_id = (3 << 22) | 7;
        let seen = Arc::new(Seen::default());
        let (router, _store) = observed_router(
            data.path(),
            &[guild_id],
            Some(seen.clone() as Arc<dyn EventObserver>),
        )
        .await;
        router.cast(RouterMsg::Overlap { from: 1, to: 2 }).unwrap();
        deliver(
            &router,
            1,
            vec![message(guild_id, 101), message(guild_id, 102)],
        )
        .await;
        // The new set's shard comes up; its stream of the guild starts one message back.
        deliver(
            &router,
            2,
            vec![ready([1, 2], &[guild_id]), guild_create(guild_id)],
        )
        .await;
        let progress = ractor::call_t!(router, RouterMsg::OverlapProgress, 5_000).unwrap();
        let shard = NewShardProgress {
            shard_id: 1,
            guilds: 1,
            joined: 1,
            switched: 0,
        };
        assert_eq!(progress, vec![shard.clone()]);
        assert!(shard.ready() && !shard.switched());
        // 102 is in both streams: from there on the new set handles the guild.
        deliver(
            &router,
            2,
            vec![message(guild_id, 102), message(guild_id, 103)],
        )
        .await;
        deliver(
            &router,
            1,
            vec![message(guild_id, 103), message(guild_id, 104)],
        )
        .await;
        let progress = ractor::call_t!(router, RouterMsg::OverlapProgress, 5_000).unwrap();
        assert!(progress[0].switched(), "{progress:?}");
        deliver(&router, 2, vec![message(guild_id, 104)]).await;
        // Events of a set the router does not know (nor another count) are nobody's.
        deliver(&router, 3, vec![message(guild_id, 999)]).await;
        router.cast(RouterMsg::Settle { shard_count: 2 }).unwrap();
        deliver(&router, 1, vec![message(guild_id, 105)]).await;
        deliver(&router, 2, vec![message(guild_id, 105)]).await;
        assert!(
            ractor::call_t!(router, RouterMsg::OverlapProgress, 5_000)
                .unwrap()
                .is_empty()
        );
        assert!(GuildRouter::drain_and_stop(&router, Duration::from_secs(5)).await);
        assert_eq!(*seen.0.lock().unwrap(), vec![101, 102, 103, 104, 105]);
    }
}
