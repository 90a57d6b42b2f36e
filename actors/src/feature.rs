//! The shape every product feature of the guild actor has (moderation, and later automod,
//! workflows, tickets): the commands and events it handles, the per-guild state it keeps,
//! and the [`Effect`]s it asks for. The actor hands it what it declared interest in, in
//! gateway order, and carries out the effects (`guild/effects.rs`) without waiting on them,
//! so a feature never blocks its guild on I/O and never reaches another feature's state.
//!
//! Features are listed once, in `features.rs`; `guild.rs` knows none of them by name.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use protonn_shard::EventTypeFlags;
use protonn_storage::{AuditEntry, GuildConfig, Plan, Timer, VersionedConfig};
use twilight_model::application::command::Command as SlashCommand;
use twilight_model::channel::message::Embed;
use twilight_model::gateway::event::Event;
use twilight_model::guild::Permissions;
use twilight_model::http::interaction::InteractionResponse;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker, RoleMarker, UserMarker};

use crate::guild::Io;
use crate::{GuildCall, GuildCallError, GuildResponse};

/// A product feature inside the guild actor.
pub(crate) trait Feature: Send + Sync + 'static {
    /// Its name: the `feature` of its timers, and its metric label.
    fn name(&self) -> &'static str;

    /// Text and slash command names it answers (lowercase); also the `command` label values
    /// of `protonn_actors_commands_handled_total`.
    fn commands(&self) -> &'static [&'static str] {
        &[]
    }

    /// The slash commands it registers with Discord.
    fn slash_commands(&self) -> Vec<SlashCommand> {
        Vec::new()
    }

    /// Whether its answers concern the asker alone: then an interaction's answer (also a
    /// deferred one) is shown only to them.
    fn answers_privately(&self) -> bool {
        false
    }

    /// Handles one of its commands.
    fn on_command(&self, _ctx: &mut Ctx<'_>, _invocation: Invocation) -> Vec<Effect> {
        Vec::new()
    }

    /// Whether text command `name`, which no feature declared, is one this feature answers
    /// in this guild (a workflow's command): the built-in parser then does not answer it as
    /// unknown. Asked only for names that are not built-in.
    fn claims_command(&self, _ctx: &mut Ctx<'_>, _name: &str) -> bool {
        false
    }

    /// The `custom_id` prefix of the buttons, selects and modals it made (`ticket:`), so the
    /// actor hands it their interactions; `None` if it makes none.
    fn component_prefix(&self) -> Option<&'static str> {
        None
    }

    /// A member used one of its components or sent one of its modals. Answered like a
    /// command: a [`Effect::Reply`], or a [`Effect::Respond`] (a modal, say).
    fn on_component(&self, _ctx: &mut Ctx<'_>, _used: ComponentUse) -> Vec<Effect> {
        Vec::new()
    }

    /// The gateway event types it handles (besides its commands). A guild's actor is started
    /// for an event only if some feature (or the actor itself) handles its type, and a
    /// feature is handed only events of the types it lists here (see
    /// [`features::handles`](crate::features::handles)).
    fn event_types(&self) -> EventTypeFlags {
        EventTypeFlags::empty()
    }

    /// Event types it takes only while its guild's actor runs: they start none (a role
    /// update matters to automod only while it holds a push the bot's permissions stopped,
    /// which lives in a running actor).
    fn resident_event_types(&self) -> EventTypeFlags {
        EventTypeFlags::empty()
    }

    /// Whether it wants this event of one of its [`event_types`](Self::event_types) or
    /// [`resident_event_types`](Self::resident_event_types): a finer choice (a bot's
    /// message, say), made before an actor is started for it.
    fn wants(&self, _event: &Event) -> bool {
        true
    }

    fn on_event(&self, _ctx: &mut Ctx<'_>, _event: &Event) -> Vec<Effect> {
        Vec::new()
    }

    /// What the actor calls: [`on_event`](Self::on_event), for a feature that keeps some
    /// events as they came (a clone of the `Arc`, no copy of the event).
    fn on_shared_event(&self, ctx: &mut Ctx<'_>, event: &Arc<Event>) -> Vec<Effect> {
        self.on_event(ctx, event)
    }

    /// Answers a guild call it handles (on a task: it may read storage or Discord); `None`
    /// for calls that are not its. The call's caller is who a change is audited under.
    fn on_call(&self, _ctx: &mut Ctx<'_>, _call: &GuildCall) -> Option<CallTask> {
        None
    }

    /// What the feature derives from a config once per version and is too costly to make
    /// on the actor's thread (automod's compiled rules). The actor runs it on a blocking
    /// thread when it loads or saves a config, and waits for it (the guild's events and
    /// calls wait in order) before it hands the result to [`install`](Self::install) and
    /// uses the config: nothing is handled with a config whose compiled form is missing,
    /// and no other guild waits meanwhile.
    fn compile(&self, _config: &GuildConfig) -> Option<Compiled> {
        None
    }

    /// Whether [`compile`](Self::compile) has work for `config`: a config no feature
    /// compiles (most guilds' at activation) costs no hop to a blocking thread.
    fn compiles(&self, _config: &GuildConfig) -> bool {
        false
    }

    /// Takes what [`compile`](Self::compile) made of `ctx.config` (`ctx.config_version`).
    fn install(&self, _ctx: &mut Ctx<'_>, _compiled: Compiled) {}

    /// A new config is live (saved; `ctx.config`), replacing `before`: what the feature
    /// keeps outside the bot (Discord's own AutoMod rules) follows it.
    fn on_config_saved(&self, _ctx: &mut Ctx<'_>, _before: &GuildConfig) -> Vec<Effect> {
        Vec::new()
    }

    /// The guild's plan changed from `before` (`None`: the actor's first read of it, when
    /// what the plan was before is not known): what the feature keeps outside the bot
    /// within the plan (Discord's own AutoMod rules) follows it.
    fn on_plan_changed(&self, _ctx: &mut Ctx<'_>, _before: Option<Plan>) -> Vec<Effect> {
        Vec::new()
    }

    /// One of its durable timers fell due on the node that owns the guild. The timer is not
    /// claimed yet: the effects claim it ([`Io::claim_timer`]) before acting.
    fn on_timer(&self, _ctx: &mut Ctx<'_>, _timer: Timer) -> Vec<Effect> {
        Vec::new()
    }
}

/// What a feature compiled from a config ([`Feature::compile`]), for its [`Feature::install`].
pub(crate) type Compiled = Box<dyn Any + Send>;

/// What a feature sees of its guild while it handles something.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a GuildConfig,
    /// The same config, for a task that outlives the handler ([`Ctx::shared_config`]).
    shared_config: &'a Arc<VersionedConfig>,
    /// The config's version: what a feature compiles from it is stale when this changes.
    pub(crate) config_version: u64,
    /// The guild's plan: what is over its limits stays stored but does not run.
    pub(crate) plan: Plan,
    /// For [`Effect::Task`]s: the node's store, REST and cache, bound to this guild.
    pub(crate) io: Io,
    state: &'a mut Option<Box<dyn Any + Send + Sync>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        config: &'a Arc<VersionedConfig>,
        plan: Plan,
        io: Io,
        state: &'a mut Option<Box<dyn Any + Send + Sync>>,
    ) -> Self {
        Self {
            config: &config.config,
            shared_config: config,
            config_version: config.version,
            plan,
            io,
            state,
        }
    }

    /// The config, for a task to keep (`Arc::clone`): shared, not copied.
    pub(crate) fn shared_config(&self) -> &'a Arc<VersionedConfig> {
        self.shared_config
    }

    /// The feature's state in this guild, made on first use; it lives as long as the guild's
    /// actor (passivation drops it: keep in storage what must survive).
    pub(crate) fn state<T: Default + Send + Sync + 'static>(&mut self) -> &mut T {
        let slot = self.state.get_or_insert_with(|| Box::new(T::default()));
        if !slot.is::<T>() {
            *slot = Box::new(T::default());
        }
        slot.downcast_mut::<T>()
            .expect("replaced above if of another type")
    }
}

/// A command addressed to a feature, from a text message or a slash command.
#[derive(Clone, Debug)]
pub(crate) struct Invocation {
    /// The command's name, lowercase.
    pub(crate) name: String,
    pub(crate) args: Args,
    pub(crate) author: Id<UserMarker>,
    /// The author's roles (without @everyone).
    pub(crate) author_roles: Vec<Id<RoleMarker>>,
    /// The author's permissions in the channel as Discord computed them (interactions only).
    pub(crate) author_permissions: Option<Permissions>,
    /// The bot's permissions in the channel as Discord computed them (interactions only).
    pub(crate) bot_permissions: Option<Permissions>,
    pub(crate) channel_id: Id<ChannelMarker>,
    /// The message of a text command.
    pub(crate) message_id: Option<Id<MessageMarker>>,
    /// The guild's text prefix, for usage hints.
    pub(crate) prefix: String,
}

/// A member's use of a feature's component (a button, a select) or modal.
#[derive(Clone, Debug)]
pub(crate) struct ComponentUse {
    pub(crate) custom_id: String,
    /// A modal sent, rather than a component used.
    pub(crate) modal: bool,
    /// A modal's text inputs by custom id; empty for a component.
    pub(crate) fields: Vec<(String, String)>,
    /// The values chosen in a select; empty otherwise.
    pub(crate) values: Vec<String>,
    pub(crate) author: Id<UserMarker>,
    pub(crate) author_name: String,
    pub(crate) author_roles: Vec<Id<RoleMarker>>,
    /// The member's permissions in the channel, as Discord computed them.
    pub(crate) author_permissions: Option<Permissions>,
    pub(crate) channel_id: Id<ChannelMarker>,
    /// The message the component is on (for a modal, the one whose button opened it).
    pub(crate) message_id: Option<Id<MessageMarker>>,
}

impl ComponentUse {
    /// A modal's field, if sent.
    pub(crate) fn field(&self, custom_id: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(id, _)| id == custom_id)
            .map(|(_, value)| value.as_str())
    }
}

/// A command's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Args {
    /// The words after the command's name.
    Text(Vec<String>),
    /// Slash command options by name, values as text (a user or channel option is its id).
    Slash(Vec<(String, String)>),
}

/// A command's answer, and how it went (the metric's `outcome`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) text: String,
    pub(crate) outcome: &'static str,
    /// Shown only to the user who asked (an interaction's ephemeral reply); answers that
    /// are not `ok` always are.
    pub(crate) private: bool,
}

impl Answer {
    pub(crate) fn ok(text: impl Into<String>) -> Self {
        Self::new("ok", text)
    }

    pub(crate) fn new(outcome: &'static str, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            outcome,
            private: false,
        }
    }
}

/// The answer to a guild call, worked out on a task of its own.
pub(crate) type CallTask =
    Pin<Box<dyn Future<Output = Result<GuildResponse, GuildCallError>> + Send + 'static>>;

/// Work that needs I/O before it knows its effects; it runs on its own task.
pub(crate) type Task = Pin<Box<dyn Future<Output = Vec<Effect>> + Send + 'static>>;

/// What a feature asks the actor to do. The actor never waits for any of them. A Discord
/// request whose answer decides what comes next runs in a [`Task`] through [`Io::send`].
pub(crate) enum Effect {
    /// Answers the command being handled (counted in the command metrics).
    Reply(Answer),
    /// Answers the interaction being handled with a response of its own (a modal), counted
    /// as an `ok` answer.
    Respond(Box<InteractionResponse>),
    /// A message (text, an embed, or both) to a channel, pinging nobody.
    Message {
        channel_id: Id<ChannelMarker>,
        content: String,
        embed: Option<Box<Embed>>,
    },
    /// A direct message to a user (a DM channel is opened first).
    DirectMessage {
        user_id: Id<UserMarker>,
        content: String,
    },
    Audit(AuditEntry),
    /// Stores a durable timer (replacing one of the same id).
    Timer(Timer),
    CancelTimer {
        id: String,
    },
    Task(Task),
}

impl Effect {
    pub(crate) fn task(work: impl Future<Output = Vec<Effect>> + Send + 'static) -> Self {
        Self::Task(Box::pin(work))
    }
}

/// What an admin is told past a limit of their plan below premium: "; premium allows 50"
/// (nothing on premium).
pub(crate) fn premium_allows(plan: Plan, premium: u32) -> String {
    if plan == Plan::Premium {
        String::new()
    } else {
        format!("; premium allows {premium}")
    }
}
