//! `GuildActor`: one per guild, holding its live configuration and handling its events in
//! gateway order.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use metrics::{counter, histogram};
use protonn_shard::Receipt;
use protonn_storage::{Plan, StorageError, Timer, Timestamp, VersionedConfig};
use tokio::time::Instant;
use twilight_model::application::interaction::application_command::{
    CommandData, CommandOptionValue,
};
use twilight_model::application::interaction::modal::ModalInteractionComponent;
use twilight_model::application::interaction::{Interaction, InteractionData};
use twilight_model::channel::Message;
use twilight_model::gateway::event::Event;
use twilight_model::guild::Permissions;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, GuildMarker, RoleMarker, UserMarker};

use crate::commands::{self, Command, ConfigKey, Parsed};
use crate::feature::{Answer, Args, ComponentUse, Ctx, Invocation};
use crate::member_access::MANAGE;
use crate::metrics::{
    COMMANDS_HANDLED, EVENT_HANDLING, EVENT_PANICS, FENCED_EVENTS_REFUSED, GUILD_FAILURES,
};
use crate::usage::CommandRun;
use crate::{
    AUDIT_CONFIG_CHANGE, CallSource, ConfigChangeError, DeadLetter, Departures, GuildCall,
    GuildCallError, HandledEvent, Services,
};

mod effects;
mod mailbox;
mod requests;

pub(crate) use effects::{Io, claimant, direct_message, is_announceable};
use effects::{Replier, ReplyTo, carry_out};
use mailbox::Inbox;
pub(crate) use mailbox::Mailbox;
pub(crate) use requests::{CallReply, MAX_KEY_LEN};

/// Past this many users on cooldown, expired entries are pruned.
const COOLDOWN_PRUNE_AT: usize = 256;

/// The actor of one guild with work: its live configuration and features' state, its
/// events and calls handled one at a time in order. The router starts it ([`Self::start`])
/// and ends it by dropping its mailbox.
pub struct GuildActor;

pub(crate) struct GuildArgs {
    pub(crate) guild_id: Id<GuildMarker>,
    pub(crate) services: Arc<Services>,
}

pub enum GuildMsg {
    /// A gateway event of this guild, in gateway order. Boxed: events are large.
    /// Shared, so a feature may keep it without a copy (workflows' recent events). With its
    /// shard batch's receipt, kept until the event is handled (see `protonn_shard::Receipt`).
    Event(Arc<Event>, Option<Receipt>),
    /// Forget the loaded config and the features' state and load them again on next use: the
    /// guild's shard came back from another node, where either may have changed.
    Reload,
    /// A guild call, answered in order with the guild's events. Boxed: a config is large.
    Call(Box<GuildCall>, CallReply),
    /// A durable timer of this guild fell due (found by the router's poll); not yet claimed.
    Timer(Box<Timer>),
}

struct GuildState {
    guild_id: Id<GuildMarker>,
    services: Arc<Services>,
    /// Loaded from storage on first need, so that spawning for a READY burst costs no I/O.
    /// Shared with the tasks that act on it (a moderation action, automod's), so handing
    /// it to one is a reference count, not a copy of every rule and setting.
    config: Option<Arc<VersionedConfig>>,
    cooldowns: Cooldowns,
    /// Answers to state-changing calls by idempotency key, so a retry is applied once.
    answered: requests::Answered,
    /// Each feature's state in this guild, by its index in the registry, made on first use.
    feature_states: Vec<Option<Box<dyn Any + Send + Sync>>>,
    /// The guild's plan, read with its config.
    plan: Option<HeldPlan>,
}

/// The guild's plan as last read, and when to read it again: when its premium slot ends,
/// and at least every `RuntimeConfig::plan_recheck_every` (a slot given, moved or refunded
/// shows by then; a config change reads it afresh anyway).
#[derive(Clone, Copy, Debug)]
struct HeldPlan {
    plan: Plan,
    recheck_at: Instant,
}

/// After a failed read the plan held is kept (free if none) and read again this soon.
const PLAN_RETRY: Duration = Duration::from_secs(10);

/// Per-user and per-guild command rate limits.
struct Cooldowns {
    last_by_user: HashMap<Id<UserMarker>, Instant>,
    window_start: Instant,
    in_window: u32,
}

impl GuildActor {
    /// Starts the guild's actor on a task of the node's (so a shutdown waits for it) and
    /// returns its mailbox; dropping the mailbox ends the actor once it has handled what
    /// the mailbox holds. Not a ractor actor: ractor gives every actor four channels and a
    /// supervision cell (6.3 KB, B3) and selects over them for each message. A guild actor
    /// needs one mailbox: the router is its only sender and decides when it ends.
    pub(crate) fn start(args: GuildArgs) -> Mailbox {
        let (mailbox, inbox) = mailbox::mailbox();
        let services = Arc::clone(&args.services);
        services.spawn(GuildState::new(args).live(inbox));
        mailbox
    }
}

impl GuildState {
    fn new(args: GuildArgs) -> Self {
        Self {
            guild_id: args.guild_id,
            services: args.services,
            config: None,
            cooldowns: Cooldowns {
                last_by_user: HashMap::new(),
                window_start: Instant::now(),
                in_window: 0,
            },
            answered: Default::default(),
            feature_states: crate::features::all().iter().map(|_| None).collect(),
            plan: None,
        }
    }

    /// Handles the messages in order until the router drops the mailbox and it is empty.
    async fn live(mut self, mut inbox: Inbox) {
        while let Some(message) = inbox.recv().await {
            // Handlers catch their own panics; one outside them (a call's or a timer's
            // handling) reloads the guild's state, and the actor goes on.
            if let Err(panic) = AssertUnwindSafe(self.handle(message)).catch_unwind().await {
                tracing::error!(guild_id = %self.guild_id, panic = panic_message(panic.as_ref()), "guild actor failed; state reloaded");
                counter!(GUILD_FAILURES).increment(1);
                self.forget_loaded();
            }
            inbox.handled();
        }
    }

    /// Forgets the loaded config and the features' state; each loads again on next use.
    fn forget_loaded(&mut self) {
        self.config = None;
        self.plan = None;
        self.feature_states = crate::features::all().iter().map(|_| None).collect();
    }

    /// The task's future holds this one inline, so its size is what each resident guild
    /// pays: every handling is boxed (B3). The rare large ones (commands, interactions) are
    /// boxed again inside, so an event's box stays small.
    async fn handle(&mut self, message: GuildMsg) {
        // The receipt lives until this handling ends: only then may the checkpoint pass it.
        let (event, receipt) = match message {
            GuildMsg::Event(event, receipt) => (event, receipt),
            // Features' state may be as stale as the config (workflows changed elsewhere).
            GuildMsg::Reload => return self.forget_loaded(),
            GuildMsg::Call(call, reply) => return Box::pin(self.answer(*call, reply)).await,
            GuildMsg::Timer(timer) => return Box::pin(self.on_timer(*timer)).await,
        };
        // Judged now, not when queued: a node that froze with events in its mailboxes wakes
        // fenced, and another node may have handled them meanwhile. Refused, the event holds
        // the shard's checkpoint before it, so whoever resumes the shard next handles it.
        if let Some(receipt) = receipt.as_ref().filter(|receipt| !receipt.admit()) {
            tracing::debug!(
                shard_id = receipt.shard_id(),
                "fenced: queued event refused"
            );
            counter!(FENCED_EVENTS_REFUSED).increment(1);
            return;
        }
        let started = Instant::now();
        Box::pin(self.handle_with_retries(&event)).await;
        histogram!(EVENT_HANDLING).record(started.elapsed().as_secs_f64());
        if is_removal(&event) {
            tracing::info!(guild_id = %self.guild_id, "removed from guild");
            Box::pin(self.schedule_data_deletion()).await;
        }
    }
}

/// Whether `event` says the bot was removed from its guild: a GUILD_DELETE without
/// `unavailable` (an outage sets it). The guild's data is then scheduled for deletion, and
/// its actor is passivated once idle.
pub(crate) fn is_removal(event: &Event) -> bool {
    matches!(event, Event::GuildDelete(delete) if delete.unavailable != Some(true))
}

/// Whether `event` of guild `guild_id` is work for the guild's actor, worth starting one
/// for: what [`GuildState::handle_event`] or a feature acts on. The rest (a GUILD_CREATE, a
/// role or guild update) only updates the node cache, which the router did already.
pub(crate) fn is_work(event: &Event, guild_id: Id<GuildMarker>, departures: &Departures) -> bool {
    crate::features::any_activates(event)
        || match event {
            Event::MessageCreate(_) | Event::InteractionCreate(_) => true,
            // Removed from the guild: its data is scheduled for deletion.
            Event::GuildDelete(_) => is_removal(event),
            // Back within its grace period: the deletion is cancelled.
            Event::GuildCreate(_) => departures.is_pending(guild_id.get()),
            _ => false,
        }
}

impl GuildState {
    /// Handles an event; a panic reloads the guild's state and retries after a back-off,
    /// and an event that panics on every try is dead-lettered instead of looping.
    async fn handle_with_retries(&mut self, event: &Arc<Event>) {
        let runtime = &self.services.runtime;
        let (max_attempts, backoff) = (runtime.max_attempts.max(1), runtime.retry_backoff);
        for attempt in 1..=max_attempts {
            let panic = match AssertUnwindSafe(self.handle_event(event))
                .catch_unwind()
                .await
            {
                Ok(()) => return,
                Err(panic) => panic_message(panic.as_ref()),
            };
            counter!(EVENT_PANICS).increment(1);
            tracing::warn!(guild_id = %self.guild_id, attempt, %panic, "event handler panicked");
            // Whatever the handler left half-done is dropped: reload from storage.
            self.config = None;
            if attempt == max_attempts {
                self.services.dead_letters.record(DeadLetter {
                    guild_id: self.guild_id.get(),
                    event: event.kind().name().unwrap_or("unknown"),
                    entity_id: entity_id(event),
                    attempts: attempt,
                    panic,
                });
                return;
            }
            tokio::time::sleep(backoff.saturating_mul(1 << (attempt - 1).min(16))).await;
        }
    }

    async fn handle_event(&mut self, event: &Arc<Event>) {
        match &**event {
            Event::GuildCreate(_) => self.keep_data_if_returned().await,
            Event::MessageCreate(message) => {
                self.observe(HandledEvent::Message(message.id.get()));
                self.on_message(message).await;
            }
            Event::InteractionCreate(interaction) => {
                self.observe(HandledEvent::Interaction(interaction.id.get()));
                Box::pin(self.on_interaction(interaction)).await;
            }
            _ => {}
        }
        self.features_on_event(event).await;
    }

    pub(super) fn io(&self) -> Io {
        Io::new(Arc::clone(&self.services), self.guild_id)
    }

    /// Hands an event to the features that want it, in registry order.
    async fn features_on_event(&mut self, event: &Arc<Event>) {
        if !crate::features::any_handles(event) {
            return;
        }
        let io = self.io();
        let Some((config, plan, states)) = self.config_and_feature_states().await else {
            return;
        };
        for (index, feature) in crate::features::all().iter().enumerate() {
            if !crate::features::handles(*feature, event) {
                continue;
            }
            let mut ctx = Ctx::new(config, plan, io.clone(), &mut states[index]);
            let effects = feature.on_shared_event(&mut ctx, event);
            carry_out(&io, None, effects);
        }
    }

    /// A due timer goes to the feature that set it; one of a feature this build does not
    /// have stays stored (a newer node may know it).
    async fn on_timer(&mut self, timer: Timer) {
        let Some((index, feature)) = crate::features::by_name(&timer.feature) else {
            tracing::warn!(guild_id = %self.guild_id, feature = %timer.feature, "timer of an unknown feature");
            return;
        };
        let io = self.io();
        let Some((config, plan, states)) = self.config_and_feature_states().await else {
            return;
        };
        let mut ctx = Ctx::new(config, plan, io.clone(), &mut states[index]);
        let effects = feature.on_timer(&mut ctx, timer);
        carry_out(&io, None, effects);
    }

    /// The config and the features' states, borrowed apart (an event's hot path clones
    /// neither), or `None` (logged) when storage cannot give the config.
    async fn config_and_feature_states(
        &mut self,
    ) -> Option<(
        &Arc<VersionedConfig>,
        Plan,
        &mut [Option<Box<dyn Any + Send + Sync>>],
    )> {
        if let Err(err) = self.config().await {
            tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
            return None;
        }
        let plan = self.plan().await;
        let config = self.config.as_ref()?;
        Some((config, plan, &mut self.feature_states))
    }

    /// The guild's plan: one key read at activation, then again only when the premium slot
    /// read ends or `plan_recheck_every` has passed.
    async fn plan(&mut self) -> Plan {
        let now = Instant::now();
        let recheck = self.services.runtime.plan_recheck_every;
        if let Some(held) = self.plan
            && held.recheck_at > now
        {
            return held.plan;
        }
        let held = match self.services.store.guild_slot(self.guild_id.get()).await {
            Ok(slot) => {
                let at = Timestamp::now();
                let plan = protonn_storage::plan_at(slot.as_ref(), at);
                let ends_in = slot
                    .filter(|slot| slot.until > at)
                    .map_or(recheck, |slot| at.until(slot.until));
                HeldPlan {
                    plan,
                    recheck_at: now + ends_in.min(recheck),
                }
            }
            Err(err) => {
                tracing::warn!(guild_id = %self.guild_id, error = %err, "cannot read the guild's plan; keeping the one held");
                HeldPlan {
                    plan: self.plan.map_or(Plan::Free, |held| held.plan),
                    recheck_at: now + PLAN_RETRY,
                }
            }
        };
        let before = self.plan.map(|held| held.plan);
        self.plan = Some(held);
        if before != Some(held.plan) {
            self.features_on_plan_changed(before, held.plan).await;
        }
        held.plan
    }

    /// Tells the features that the plan changed from `before` (`None`: first read), and
    /// carries out what they ask. Without a config the plan is forgotten, so the next read
    /// tells them again.
    async fn features_on_plan_changed(&mut self, before: Option<Plan>, plan: Plan) {
        if let Err(err) = self.config().await {
            tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
            self.plan = None;
            return;
        }
        let io = self.io();
        let Some(config) = self.config.as_ref() else {
            return;
        };
        for (index, feature) in crate::features::all().iter().enumerate() {
            let mut ctx = Ctx::new(config, plan, io.clone(), &mut self.feature_states[index]);
            let effects = feature.on_plan_changed(&mut ctx, before);
            carry_out(&io, None, effects);
        }
    }

    /// Whether a feature answers text command `name` in this guild though none declared it.
    async fn feature_claims(&mut self, name: &str) -> bool {
        let io = self.io();
        let Some((config, plan, states)) = self.config_and_feature_states().await else {
            return false;
        };
        crate::features::all()
            .iter()
            .enumerate()
            .any(|(index, feature)| {
                feature.claims_command(
                    &mut Ctx::new(config, plan, io.clone(), &mut states[index]),
                    name,
                )
            })
    }

    /// Hands a command to the feature that answers it.
    async fn feature_command(
        &mut self,
        index: usize,
        feature: &'static dyn crate::feature::Feature,
        invocation: Invocation,
        reply: ReplyTo,
    ) {
        let label = feature
            .commands()
            .iter()
            .copied()
            .find(|name| *name == invocation.name)
            .unwrap_or("invalid");
        let replier = Replier::new(reply, label, feature.answers_privately());
        self.count_usage(label, invocation.author, invocation.channel_id);
        let io = self.io();
        let Some((config, plan, states)) = self.config_and_feature_states().await else {
            replier.send(&io, unavailable());
            return;
        };
        let mut ctx = Ctx::new(config, plan, io.clone(), &mut states[index]);
        let effects = feature.on_command(&mut ctx, invocation);
        carry_out(&io, Some(replier), effects);
    }

    /// The bot was removed: the guild's data goes after the grace period, unless it returns.
    async fn schedule_data_deletion(&self) {
        let services = &self.services;
        let grace = services.runtime.removed_guild_grace.as_millis() as u64;
        let at = Timestamp(Timestamp::now().0.saturating_add(grace));
        let guild_id = self.guild_id.get();
        match services.store.schedule_guild_deletion(guild_id, at).await {
            Ok(()) => services.departures.left(guild_id),
            Err(err) => {
                // The data stays: a later removal or an operator can schedule it again.
                tracing::error!(%guild_id, error = %err, "cannot schedule the removed guild's data for deletion");
            }
        }
    }

    /// A guild the bot had left is back: its scheduled deletion is cancelled.
    async fn keep_data_if_returned(&self) {
        let guild_id = self.guild_id.get();
        if !self.services.departures.returned(guild_id) {
            return;
        }
        if let Err(err) = self.services.store.cancel_guild_deletion(guild_id).await {
            // Put it back so that the next GUILD_CREATE tries again.
            self.services.departures.left(guild_id);
            tracing::error!(%guild_id, error = %err, "cannot cancel the returned guild's data deletion");
        }
    }

    /// How long `user` must still wait before their next command, or `None` to go ahead
    /// (and the command is counted).
    fn cooldown(&mut self, user: Id<UserMarker>) -> Option<Duration> {
        let runtime = &self.services.runtime;
        let now = Instant::now();
        let cooldowns = &mut self.cooldowns;
        if let Some(last) = cooldowns.last_by_user.get(&user) {
            let ready_at = *last + runtime.user_cooldown;
            if now < ready_at {
                return Some(ready_at - now);
            }
        }
        if now.duration_since(cooldowns.window_start) >= runtime.guild_window {
            cooldowns.window_start = now;
            cooldowns.in_window = 0;
        }
        if cooldowns.in_window >= runtime.guild_commands {
            return Some(cooldowns.window_start + runtime.guild_window - now);
        }
        cooldowns.in_window += 1;
        if cooldowns.last_by_user.len() >= COOLDOWN_PRUNE_AT {
            cooldowns
                .last_by_user
                .retain(|_, last| now.duration_since(*last) < runtime.user_cooldown);
        }
        cooldowns.last_by_user.insert(user, now);
        None
    }

    fn observe(&self, event: HandledEvent) {
        if let Some(observer) = &self.services.observer {
            let guild_id = self.guild_id.get();
            let shard_id = protonn_storage::shard_of(guild_id, self.services.shard_count.get());
            observer.handled(guild_id, shard_id, event);
        }
    }

    async fn config(&mut self) -> Result<&Arc<VersionedConfig>, StorageError> {
        if self.config.is_none() {
            let stored = self.services.store.load(self.guild_id.get()).await?;
            self.set_config(stored.unwrap_or_else(|| VersionedConfig {
                version: 0,
                config: Default::default(),
            }))
            .await;
        }
        Ok(self.config.as_ref().expect("loaded above"))
    }

    /// Makes `config` the guild's once the features compiled what they derive from it
    /// ([`Feature::compile`](crate::feature::Feature::compile)), on a blocking thread: the
    /// actor waits, so the next event or call already goes by it, and the runtime's
    /// threads are not held meanwhile.
    pub(super) async fn set_config(&mut self, config: VersionedConfig) {
        let config = Arc::new(config);
        let features = crate::features::all();
        if !features
            .iter()
            .any(|feature| feature.compiles(&config.config))
        {
            self.config = Some(config);
            return;
        }
        let input = Arc::clone(&config);
        let compiled = tokio::task::spawn_blocking(move || {
            features
                .iter()
                .map(|feature| {
                    feature
                        .compiles(&input.config)
                        .then(|| feature.compile(&input.config))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .await;
        match compiled {
            Ok(compiled) => {
                // Installing reads no plan; the one held (or free) stands in.
                let plan = self.plan.map_or(Plan::Free, |held| held.plan);
                let io = self.io();
                for (index, (feature, compiled)) in features.iter().zip(compiled).enumerate() {
                    if let Some(compiled) = compiled {
                        let mut ctx =
                            Ctx::new(&config, plan, io.clone(), &mut self.feature_states[index]);
                        feature.install(&mut ctx, compiled);
                    }
                }
            }
            // The features compile on first use instead, on the actor's thread.
            Err(err) => {
                tracing::error!(guild_id = %self.guild_id, error = %err, "compiling the guild's config failed");
            }
        }
        self.config = Some(config);
    }

    async fn on_message(&mut self, message: &Message) {
        if message.author.bot {
            return;
        }
        let prefix = match self.config().await {
            Ok(current) => current.config.prefix.clone(),
            Err(err) => {
                // Without the prefix we cannot tell a command from chat: skip, loudly.
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                return;
            }
        };
        if let Some((name, words)) = commands::split_text(&prefix, &message.content)
            && let Some((index, feature)) = crate::features::by_command(&name)
        {
            if self.cooldown(message.author.id).is_some() {
                return;
            }
            let invocation = Invocation {
                name,
                args: Args::Text(words),
                author: message.author.id,
                author_roles: message
                    .member
                    .as_ref()
                    .map(|member| member.roles.clone())
                    .unwrap_or_default(),
                author_permissions: None,
                bot_permissions: None,
                channel_id: message.channel_id,
                message_id: Some(message.id),
                prefix,
            };
            let reply = ReplyTo::Channel(message.channel_id);
            Box::pin(self.feature_command(index, feature, invocation, reply)).await;
            return;
        }
        if let Some((name, _)) = commands::split_text(&prefix, &message.content)
            && !commands::BUILT_IN.contains(&name.as_str())
            && self.feature_claims(&name).await
        {
            return;
        }
        let parsed = commands::parse_text(&prefix, &message.content);
        if parsed == Parsed::NotACommand {
            return;
        }
        if self.cooldown(message.author.id).is_some() {
            // Answering a flood would be a flood: text commands on cooldown get no reply.
            counter!(COMMANDS_HANDLED, "command" => label(&parsed), "outcome" => "cooldown")
                .increment(1);
            return;
        }
        // Only a config change needs the permission lookup.
        let may_manage = matches!(parsed, Parsed::Command(Command::ConfigSet { .. }))
            && self.member_may_manage(message);
        let by = (message.author.id, message.channel_id);
        let answer = Box::pin(self.run(parsed, may_manage, Some(by))).await;
        self.send(ReplyTo::Channel(message.channel_id), answer);
    }

    async fn on_interaction(&mut self, interaction: &Interaction) {
        match &interaction.data {
            Some(InteractionData::MessageComponent(data)) => {
                let (custom_id, values) = (data.custom_id.clone(), data.values.clone());
                return self
                    .component_interaction(interaction, custom_id, None, values)
                    .await;
            }
            Some(InteractionData::ModalSubmit(data)) => {
                let mut fields = Vec::new();
                modal_fields(&data.components, &mut fields);
                let custom_id = data.custom_id.clone();
                return self
                    .component_interaction(interaction, custom_id, Some(fields), Vec::new())
                    .await;
            }
            _ => {}
        }
        let Some(InteractionData::ApplicationCommand(data)) = &interaction.data else {
            return;
        };
        if let Some((index, feature)) = crate::features::by_command(&data.name) {
            return self
                .feature_interaction(index, feature, interaction, data)
                .await;
        }
        let options = string_options(data);
        let options: Vec<(&str, &str)> = options.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let parsed = commands::parse_slash(&data.name, &options);
        let user = interaction.author_id();
        let reply = reply_to(interaction);
        // Interactions must be answered, so one on cooldown is told how long to wait.
        if let Some(wait) = user.and_then(|user| self.cooldown(user)) {
            counter!(COMMANDS_HANDLED, "command" => label(&parsed), "outcome" => "cooldown")
                .increment(1);
            self.send(reply, slow_down(wait));
            return;
        }
        // Discord computes the member's permissions in the channel for us; staff roles are
        // ours, so the config must be loaded (a failed load leaves permissions alone).
        let _ = self.config().await;
        let member = interaction.member.as_ref();
        let may_manage = member
            .and_then(|member| member.permissions)
            .is_some_and(|permissions| permissions.intersects(MANAGE))
            || member.is_some_and(|member| self.has_staff_role(&member.roles));
        // Discord wants a first response within 3 s: work that outlasts `defer_after` is
        // acknowledged first ("thinking…") and its answer sent as an edit of that response.
        let defer_after = self.services.runtime.defer_after;
        let replies = self.services.replies.clone();
        let (answer, deferred) = {
            let channel = interaction.channel.as_ref().map(|channel| channel.id);
            let run = self.run(parsed, may_manage, user.zip(channel));
            tokio::pin!(run);
            let in_time = async {
                if defer_after.is_zero() {
                    None
                } else {
                    tokio::time::timeout(defer_after, &mut run).await.ok()
                }
            };
            match in_time.await {
                Some(answer) => (answer, None),
                None => {
                    let deferred = replies.defer(
                        interaction.application_id,
                        interaction.id,
                        interaction.token.clone(),
                        false,
                    );
                    (run.await, Some(deferred))
                }
            }
        };
        match deferred {
            Some(deferred) => deferred.finish(answer.text),
            None => self.send(reply, answer),
        }
    }

    /// A slash command of a feature: its options as text, and what Discord says the member
    /// and the bot may do in the channel.
    async fn feature_interaction(
        &mut self,
        index: usize,
        feature: &'static dyn crate::feature::Feature,
        interaction: &Interaction,
        data: &CommandData,
    ) {
        let reply = reply_to(interaction);
        let (Some(user), Some(channel_id)) = (
            interaction.author_id(),
            interaction.channel.as_ref().map(|c| c.id),
        ) else {
            return;
        };
        if let Some(wait) = self.cooldown(user) {
            let label = feature
                .commands()
                .iter()
                .copied()
                .find(|n| *n == data.name)
                .unwrap_or("invalid");
            Replier::new(reply, label, false).send(&self.io(), slow_down(wait));
            return;
        }
        let member = interaction.member.as_ref();
        let prefix = match self.config().await {
            Ok(current) => current.config.prefix.clone(),
            Err(_) => String::new(),
        };
        let invocation = Invocation {
            name: data.name.clone(),
            args: Args::Slash(option_texts(data)),
            author: user,
            author_roles: member.map(|m| m.roles.clone()).unwrap_or_default(),
            author_permissions: member.and_then(|m| m.permissions),
            bot_permissions: interaction.app_permissions,
            channel_id,
            message_id: None,
            prefix,
        };
        self.feature_command(index, feature, invocation, reply)
            .await;
    }

    /// Counts a command run for the guild's analytics.
    fn count_usage(
        &self,
        command: &'static str,
        author: Id<UserMarker>,
        channel: Id<ChannelMarker>,
    ) {
        self.services.usage.record(CommandRun {
            guild_id: self.guild_id.get(),
            command,
            channel_id: channel.get(),
            user_id: author.get(),
        });
    }

    /// A member used a feature's component or sent its modal: handed to the feature whose
    /// custom id prefix it carries, with the same cooldown as a command.
    async fn component_interaction(
        &mut self,
        interaction: &Interaction,
        custom_id: String,
        // A modal's fields; `None` for a component.
        fields: Option<Vec<(String, String)>>,
        values: Vec<String>,
    ) {
        let reply = reply_to(interaction);
        let (Some(user), Some(channel_id)) = (
            interaction.author_id(),
            interaction.channel.as_ref().map(|c| c.id),
        ) else {
            return;
        };
        let Some((index, feature)) = crate::features::by_component(&custom_id) else {
            // A component of an older build, or of another bot's message: say so once.
            let text = "This button no longer does anything.";
            self.send(reply, Answer::new("invalid", text));
            return;
        };
        let label = feature.commands().first().copied().unwrap_or("invalid");
        let replier = Replier::new(reply, label, feature.answers_privately());
        if let Some(wait) = self.cooldown(user) {
            replier.send(&self.io(), slow_down(wait));
            return;
        }
        let member = interaction.member.as_ref();
        let used = ComponentUse {
            custom_id,
            modal: fields.is_some(),
            fields: fields.unwrap_or_default(),
            values,
            author: user,
            author_name: interaction
                .author()
                .map(|author| author.name.clone())
                .unwrap_or_default(),
            author_roles: member.map(|m| m.roles.clone()).unwrap_or_default(),
            author_permissions: member.and_then(|m| m.permissions),
            channel_id,
            message_id: interaction.message.as_ref().map(|message| message.id),
        };
        let io = self.io();
        let Some((config, plan, states)) = self.config_and_feature_states().await else {
            replier.send(&io, unavailable());
            return;
        };
        let mut ctx = Ctx::new(config, plan, io.clone(), &mut states[index]);
        let effects = feature.on_component(&mut ctx, used);
        carry_out(&io, Some(replier), effects);
    }

    fn send(&self, to: ReplyTo, answer: Answer) {
        // The built-in commands count themselves in `run`.
        self.io().answer(to, answer);
    }

    /// Runs a parsed command from its author in a channel, and counts it.
    async fn run(
        &mut self,
        parsed: Parsed,
        may_manage: bool,
        by: Option<(Id<UserMarker>, Id<ChannelMarker>)>,
    ) -> Answer {
        let author = by.map(|(author, _)| author);
        if let (Parsed::Command(command), Some((author, channel))) = (&parsed, by) {
            self.count_usage(command.label(), author, channel);
        }
        let (label, answer) = match parsed {
            Parsed::NotACommand => unreachable!("callers answer only commands"),
            Parsed::Invalid(text) => (
                "invalid",
                Answer {
                    text,
                    outcome: "invalid",
                    private: false,
                },
            ),
            Parsed::Command(command) => (
                command.label(),
                self.execute(command, may_manage, author).await,
            ),
        };
        counter!(COMMANDS_HANDLED, "command" => label, "outcome" => answer.outcome).increment(1);
        answer
    }

    async fn execute(
        &mut self,
        command: Command,
        may_manage: bool,
        author: Option<Id<UserMarker>>,
    ) -> Answer {
        let current = match self.config().await {
            Ok(current) => current.clone(),
            Err(err) => {
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                return unavailable();
            }
        };
        match command {
            Command::Ping => Answer::ok("pong".to_owned()),
            Command::Help => Answer::ok(commands::help(&current.config.prefix)),
            Command::ConfigGet { key } => Answer::ok(format!(
                "`{}` is `{}`.",
                key.name(),
                key.show(&current.config)
            )),
            Command::ConfigSet { key, value } => {
                if !may_manage {
                    return Answer {
                        text: "Changing the configuration needs the Manage Server permission."
                            .to_owned(),
                        outcome: "denied",
                        private: false,
                    };
                }
                let changer = requests::Changer {
                    user_id: author.map(Id::get),
                    source: CallSource::Discord,
                    idempotency_key: None,
                };
                match self.change_config(key, &value, None, changer).await {
                    Ok(stored) => Answer::ok(format!(
                        "`{}` is now `{}`.",
                        key.name(),
                        key.show(&stored.config)
                    )),
                    Err(ConfigChangeError::Invalid(text)) => Answer {
                        text,
                        outcome: "invalid",
                        private: false,
                    },
                    Err(ConfigChangeError::Conflict { .. }) => Answer {
                        text: "The configuration was changed elsewhere at the same time; \
                               nothing was saved. Please try again."
                            .to_owned(),
                        outcome: "conflict",
                        private: false,
                    },
                    Err(ConfigChangeError::Unavailable(_)) => unavailable(),
                }
            }
        }
    }

    /// Validates and saves a change, then applies it: durable first, then live, so an
    /// acknowledged change is never lost. With `expected`, the change applies only to that
    /// version (an editor that saw an older one gets a conflict).
    async fn change_config(
        &mut self,
        key: ConfigKey,
        value: &str,
        expected: Option<u64>,
        changer: requests::Changer,
    ) -> Result<VersionedConfig, ConfigChangeError> {
        let current = match self.config().await {
            Ok(current) => current.clone(),
            Err(err) => {
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                return Err(ConfigChangeError::Unavailable(err.to_string()));
            }
        };
        let mut next = current.config.clone();
        // On a blocking thread: checking automod's rules compiles them.
        let value = value.to_owned();
        let next = tokio::task::spawn_blocking(move || key.apply(&mut next, &value).map(|()| next))
            .await
            .unwrap_or_else(|err| Err(format!("the change could not be checked: {err}")))
            .map_err(ConfigChangeError::Invalid)?;
        let expected = expected.unwrap_or(current.version);
        self.save_config(next, expected, changer, AUDIT_CONFIG_CHANGE)
            .await
            .map_err(|err| match err {
                GuildCallError::Conflict { current } => ConfigChangeError::Conflict { current },
                GuildCallError::Invalid { message } => ConfigChangeError::Invalid(message),
                other => ConfigChangeError::Unavailable(other.to_string()),
            })
    }

    /// Whether the author of a guild message may change the configuration: the owner, a
    /// member whose roles (with @everyone) grant Administrator or Manage Server, or a member
    /// of a staff role.
    fn member_may_manage(&self, message: &Message) -> bool {
        let cache = &self.services.cache;
        let Some(guild) = cache.guild(self.guild_id) else {
            return false;
        };
        if guild.owner_id() == message.author.id {
            return true;
        }
        let roles = message
            .member
            .as_ref()
            .map_or(&[][..], |member| &member.roles);
        let everyone = self.guild_id.cast();
        let permissions = std::iter::once(&everyone)
            .chain(roles)
            .filter_map(|&role| cache.role(role).map(|role| role.resource().permissions))
            .fold(Permissions::empty(), |all, permissions| all | permissions);
        permissions.intersects(MANAGE) || self.has_staff_role(roles)
    }

    fn has_staff_role(&self, roles: &[Id<RoleMarker>]) -> bool {
        let staff = self
            .config
            .as_ref()
            .map_or(&[][..], |c| &c.config.staff_roles);
        roles.iter().any(|role| staff.contains(&role.get()))
    }
}

/// The `command` label of a parsed message.
fn label(parsed: &Parsed) -> &'static str {
    match parsed {
        Parsed::Command(command) => command.label(),
        Parsed::Invalid(_) | Parsed::NotACommand => "invalid",
    }
}

fn entity_id(event: &Event) -> Option<u64> {
    match event {
        Event::MessageCreate(message) => Some(message.id.get()),
        Event::InteractionCreate(interaction) => Some(interaction.id.get()),
        _ => None,
    }
}

/// The text inputs of a sent modal, by custom id, whether in action rows or labels.
fn modal_fields(components: &[ModalInteractionComponent], out: &mut Vec<(String, String)>) {
    for component in components {
        match component {
            ModalInteractionComponent::ActionRow(row) => modal_fields(&row.components, out),
            ModalInteractionComponent::Label(label) => {
                modal_fields(std::slice::from_ref(&*label.component), out);
            }
            ModalInteractionComponent::TextInput(input) => {
                out.push((input.custom_id.clone(), input.value.clone()));
            }
            _ => {}
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Where an interaction's answer goes.
fn reply_to(interaction: &Interaction) -> ReplyTo {
    ReplyTo::Interaction {
        application_id: interaction.application_id,
        id: interaction.id,
        token: interaction.token.clone(),
    }
}

/// An interaction on cooldown is told how long to wait (it must be answered).
fn slow_down(wait: Duration) -> Answer {
    let text = format!(
        "Slow down: try again in {:.0} s.",
        wait.as_secs_f64().ceil()
    );
    Answer::new("cooldown", text)
}

fn unavailable() -> Answer {
    Answer {
        text: "The configuration store is unavailable right now; nothing was changed. Please try again shortly."
            .to_owned(),
        outcome: "error",
        private: false,
    }
}

/// Every option of a slash command as text: a user, channel or role is its id.
fn option_texts(data: &CommandData) -> Vec<(String, String)> {
    data.options
        .iter()
        .filter_map(|option| {
            let value = match &option.value {
                CommandOptionValue::String(value) => value.clone(),
                CommandOptionValue::Integer(value) => value.to_string(),
                CommandOptionValue::Number(value) => value.to_string(),
                CommandOptionValue::Boolean(value) => value.to_string(),
                CommandOptionValue::User(id) => id.to_string(),
                CommandOptionValue::Channel(id) => id.to_string(),
                CommandOptionValue::Role(id) => id.to_string(),
                CommandOptionValue::Mentionable(id) => id.to_string(),
                _ => return None,
            };
            Some((option.name.clone(), value))
        })
        .collect()
}

fn string_options(data: &CommandData) -> Vec<(&str, String)> {
    data.options
        .iter()
        .filter_map(|option| match &option.value {
            CommandOptionValue::String(value) => Some((option.name.as_str(), value.clone())),
            _ => None,
        })
        .collect()
}
