//! Carrying out the effects features ask for: every one is started here and finished on a
//! task of its own, so the guild actor goes on with its next event at once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::counter;
use protonn_storage::{Store, Timer, Timestamp};
use twilight_cache_inmemory::{DefaultInMemoryCache, ResourceType};
use twilight_http::request::TryIntoRequest;
use twilight_model::channel::{Channel, ChannelType};
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseType};
use twilight_model::id::Id;
use twilight_model::id::marker::{
    ApplicationMarker, ChannelMarker, GuildMarker, InteractionMarker, RoleMarker, UserMarker,
};
use twilight_model::user::CurrentUser;

use crate::choices::PrivacyChoices;
use crate::feature::{Answer, Effect, Task};
use crate::metrics::{AUDIT_FAILURES, COMMANDS_HANDLED, SENDS_SKIPPED, TIMERS_DUE};
use crate::permissions::{self, MaySend};
use crate::rest::{Reply, RestError};
use crate::{Deferred, Services};

/// What a feature's tasks may use: the node's store, Discord REST and cache, for one guild.
#[derive(Clone)]
pub(crate) struct Io {
    services: Arc<Services>,
    guild_id: Id<GuildMarker>,
}

impl Io {
    pub(crate) fn new(services: Arc<Services>, guild_id: Id<GuildMarker>) -> Self {
        Self { services, guild_id }
    }

    pub(crate) fn guild_id(&self) -> Id<GuildMarker> {
        self.guild_id
    }

    /// Runs what `task` makes of a copy of this `Io` on a task of its own, which the node
    /// waits for when it stops.
    pub(crate) fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(Io) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.services.spawn(task(self.clone()));
    }

    /// How long the store keeps each kind of record (exports, for one).
    pub(crate) fn retention(&self) -> &protonn_storage::Retention {
        &self.services.runtime.retention
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.services.store
    }

    pub(crate) fn cache(&self) -> &DefaultInMemoryCache {
        &self.services.cache
    }

    /// The node's memory of users' privacy choices.
    pub(crate) fn privacy_choices(&self) -> &PrivacyChoices {
        self.services.usage.choices()
    }

    /// Builds requests (twilight-http validates them); [`send`](Self::send) sends them.
    pub(crate) fn http(&self) -> &twilight_http::Client {
        self.services.replies.http()
    }

    /// Sends a request and waits for Discord's answer; `route` names it in the metrics.
    pub(crate) async fn send(
        &self,
        route: &'static str,
        builder: impl TryIntoRequest,
    ) -> Result<Reply, RestError> {
        let request = builder
            .try_into_request()
            .map_err(|err| RestError::Transport(format!("invalid request: {err}")))?;
        self.send_request(route, request).await
    }

    /// [`send`](Self::send) for a request built by hand (a body twilight's builder cannot
    /// make: it sends some requests itself instead of handing them over).
    pub(crate) async fn send_request(
        &self,
        route: &'static str,
        request: twilight_http::request::Request,
    ) -> Result<Reply, RestError> {
        self.services.replies.rest().send(route, request).await
    }

    /// The bot's user id: from READY, or asked of Discord once (a node whose shards all
    /// came by handoff resumed them and saw no READY).
    pub(crate) async fn bot_id(&self) -> Option<Id<UserMarker>> {
        if let Some(bot) = self.services.own_roles.bot() {
            return Some(bot);
        }
        let user: CurrentUser = match self
            .send("current_user", self.http().current_user())
            .await
            .and_then(|reply| reply.model())
        {
            Ok(user) => user,
            Err(err) => {
                tracing::warn!(error = %err, "cannot learn the bot's own id");
                return None;
            }
        };
        self.services.own_roles.set_bot(user.id);
        Some(user.id)
    }

    /// The bot's user id if the node knows it already (from READY or an earlier ask).
    pub(crate) fn known_bot_id(&self) -> Option<Id<UserMarker>> {
        self.services.own_roles.bot()
    }

    /// The bot's roles in this guild, if the node keeps them.
    pub(crate) fn bot_roles(&self) -> Option<Vec<Id<RoleMarker>>> {
        self.services.own_roles.roles(self.guild_id)
    }

    /// The guild's shard: the partition of its timers.
    pub(crate) fn shard_id(&self) -> u32 {
        protonn_storage::shard_of(self.guild_id.get(), self.services.shard_count.get())
    }

    /// Who claims timers on behalf of this process ([`claimant`]).
    pub(crate) fn claimant(&self) -> String {
        claimant(&self.services.node_name)
    }

    /// Claims a due timer for this process for the runtime's timer lease; whether it got it.
    /// A store error counts as not got: the timer stays and is tried at the next poll.
    pub(crate) async fn claim_timer(&self, timer: &Timer) -> bool {
        let now = Timestamp::now();
        let until = now.saturating_add(self.services.runtime.timer_lease);
        match self
            .store()
            .claim_timer(timer, &self.claimant(), now, until)
            .await
        {
            Ok(claimed) => {
                let outcome = if claimed { "claimed" } else { "taken" };
                counter!(TIMERS_DUE, "outcome" => outcome).increment(1);
                claimed
            }
            Err(err) => {
                counter!(TIMERS_DUE, "outcome" => "error").increment(1);
                tracing::warn!(guild_id = %self.guild_id, timer = %timer.id, error = %err, "cannot claim a due timer");
                false
            }
        }
    }

    /// Sends `answer` where it is due: to the channel, unless the bot may not send there, or
    /// to the interaction, where refusals and errors are shown only to the user who asked.
    pub(crate) fn answer(&self, to: ReplyTo, answer: Answer) {
        let replies = &self.services.replies;
        match to {
            ReplyTo::Channel(channel_id) => {
                if !self.may_not_send(channel_id) {
                    replies.message(channel_id, answer.text);
                }
            }
            ReplyTo::Interaction {
                application_id,
                id,
                token,
            } => {
                let private = answer.private || answer.outcome != "ok";
                replies.interaction(application_id, id, token, answer.text, private);
            }
        }
    }

    /// Whether the node cache shows the bot cannot post in the channel (a 403 to be, which
    /// would count towards Discord's invalid-request ban); checked only when the cache keeps
    /// what it takes, so it costs nothing otherwise.
    pub(crate) fn may_not_send(&self, channel_id: Id<ChannelMarker>) -> bool {
        let services = &self.services;
        if !services
            .runtime
            .cache_resources
            .contains(permissions::NEEDED)
        {
            return false;
        }
        let may = permissions::may_send(
            &services.cache,
            &services.own_roles,
            self.guild_id,
            channel_id,
            permissions::SEND_TEXT,
        );
        let MaySend::No(missing) = may else {
            return false;
        };
        counter!(SENDS_SKIPPED).increment(1);
        tracing::debug!(guild_id = %self.guild_id, %channel_id, ?missing, "message not sent: missing permissions");
        true
    }

    /// Sends a request in the background lane ([`Rest::send_background`](crate::Rest)): behind
    /// every reply, given up if not sent within half the timer lease, so a timer's claim
    /// always outlives the send it made.
    pub(crate) async fn send_background(
        &self,
        route: &'static str,
        builder: impl TryIntoRequest,
    ) -> Result<Reply, RestError> {
        let request = builder
            .try_into_request()
            .map_err(|err| RestError::Transport(format!("invalid request: {err}")))?;
        let give_up_at = tokio::time::Instant::now() + self.services.runtime.timer_lease / 2;
        self.services
            .replies
            .rest()
            .send_background(route, request, give_up_at)
            .await
    }

    /// Whether the node cache keeps the guild's channels (`[cache] resources`).
    pub(crate) fn keeps_channels(&self) -> bool {
        self.services
            .runtime
            .cache_resources
            .contains(ResourceType::CHANNEL)
    }

    /// Whether the bot may post announcements in `channel`: a text or announcement channel
    /// of this guild. Judged from the node cache when it keeps channels; without them the
    /// channel is taken, and one Discord does not know is reported when a message is sent.
    pub(crate) fn may_announce_in(&self, channel: Id<ChannelMarker>) -> bool {
        if !self.keeps_channels() {
            return true;
        }
        self.services
            .cache
            .channel(channel)
            .is_some_and(|c| c.guild_id == Some(self.guild_id) && is_announceable(c.kind))
    }

    /// Workflow runs the guild may have parked in durable waits at once.
    pub(crate) fn workflow_waits_per_guild(&self) -> usize {
        self.services.runtime.workflow_waits_per_guild
    }

    /// Whether the bot gets members' joins, leaves and role changes (GUILD_MEMBERS).
    pub(crate) fn member_events(&self) -> bool {
        self.services.runtime.member_events
    }

    /// How long a ticket may stay silent before the bot closes it.
    pub(crate) fn ticket_idle_close(&self) -> Duration {
        self.services.runtime.ticket_idle_close
    }

    fn defer_after(&self) -> Duration {
        self.services.runtime.defer_after
    }
}

/// Who claims timers and announcement deliveries on behalf of this process: the node's
/// name and a number drawn at start, so a restarted node does not take its previous life's
/// claims for its own.
pub(crate) fn claimant(node_name: &str) -> String {
    static LIFE: OnceLock<u64> = OnceLock::new();
    let life = LIFE.get_or_init(|| rand::random::<u64>() | 1);
    format!("{node_name}#{life:016x}")
}

/// Where the answer to a command goes.
pub(crate) enum ReplyTo {
    Channel(Id<ChannelMarker>),
    Interaction {
        application_id: Id<ApplicationMarker>,
        id: Id<InteractionMarker>,
        token: String,
    },
}

/// Answers one command, once, and counts it under its `command` label.
pub(crate) struct Replier {
    to: ReplyTo,
    command: &'static str,
    /// Every answer is for the asker's eyes only.
    private: bool,
    deferred: Option<Deferred>,
}

impl Replier {
    pub(crate) fn new(to: ReplyTo, command: &'static str, private: bool) -> Self {
        Self {
            to,
            command,
            private,
            deferred: None,
        }
    }

    /// The answer will come late: an interaction is acknowledged now ("thinking…").
    pub(crate) fn defer(&mut self, io: &Io) {
        if let ReplyTo::Interaction {
            application_id,
            id,
            token,
        } = &self.to
            && self.deferred.is_none()
        {
            self.deferred = Some(io.services.replies.defer(
                *application_id,
                *id,
                token.clone(),
                self.private,
            ));
        }
    }

    fn is_interaction(&self) -> bool {
        matches!(self.to, ReplyTo::Interaction { .. })
    }

    /// Answers with a response the feature built; a command (not an interaction) gets none.
    /// An interaction deferred meanwhile has had its one response: its "thinking…" becomes
    /// a note instead (a modal, say, can only be a first response).
    pub(crate) fn respond(self, io: &Io, response: &InteractionResponse) {
        counter!(COMMANDS_HANDLED, "command" => self.command, "outcome" => "ok").increment(1);
        if let Some(deferred) = self.deferred {
            let note = if response.kind == InteractionResponseType::Modal {
                "That took too long to open; please press again."
            } else {
                "Done."
            };
            deferred.finish(note.to_owned());
            return;
        }
        if let ReplyTo::Interaction {
            application_id,
            id,
            token,
        } = self.to
        {
            io.services
                .replies
                .respond(application_id, id, token, response);
        }
    }

    pub(crate) fn send(self, io: &Io, mut answer: Answer) {
        answer.private |= self.private;
        counter!(COMMANDS_HANDLED, "command" => self.command, "outcome" => answer.outcome)
            .increment(1);
        if let Some(deferred) = self.deferred {
            deferred.finish(answer.text);
            return;
        }
        io.answer(self.to, answer);
    }
}

/// Starts every effect; `reply` answers the command they came from, if any.
pub(crate) fn carry_out(io: &Io, mut reply: Option<Replier>, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Reply(answer) => {
                if let Some(replier) = reply.take() {
                    replier.send(io, answer);
                }
            }
            Effect::Respond(response) => {
                if let Some(replier) = reply.take() {
                    replier.respond(io, &response);
                }
            }
            Effect::Message {
                channel_id,
                content,
                embed,
            } => {
                if !io.may_not_send(channel_id) {
                    io.services
                        .replies
                        .message_with(channel_id, content, embed.map(|e| *e));
                }
            }
            Effect::DirectMessage { user_id, content } => {
                io.spawn(|io| async move { direct_message(&io, user_id, content).await });
            }
            Effect::Audit(entry) => {
                io.spawn(|io| async move {
                    if let Err(err) = io.store().append_audit(&[entry]).await {
                        counter!(AUDIT_FAILURES).increment(1);
                        tracing::error!(guild_id = %io.guild_id, error = %err, "action not audited");
                    }
                });
            }
            Effect::Timer(timer) => {
                io.spawn(|io| async move {
                    if let Err(err) = io.store().put_timer(&timer).await {
                        tracing::error!(guild_id = %io.guild_id, timer = %timer.id, error = %err, "timer not stored");
                    }
                });
            }
            Effect::CancelTimer { id } => {
                io.spawn(|io| async move {
                    if let Err(err) = io.store().cancel_timer(io.guild_id.get(), &id).await {
                        tracing::error!(guild_id = %io.guild_id, timer = %id, error = %err, "timer not cancelled");
                    }
                });
            }
            Effect::Task(task) => {
                let reply = reply.take();
                io.spawn(|io| run_task(io, reply, task));
            }
        }
    }
}

/// Runs a task, acknowledging an interaction first when it takes longer than Discord's
/// first-response deadline allows, then carries out what it asks for.
async fn run_task(io: Io, mut reply: Option<Replier>, mut task: Task) {
    let defer_after = io.defer_after();
    let effects = match reply.as_mut() {
        Some(replier) if replier.is_interaction() => {
            let in_time = if defer_after.is_zero() {
                None
            } else {
                tokio::time::timeout(defer_after, &mut task).await.ok()
            };
            match in_time {
                Some(effects) => effects,
                None => {
                    replier.defer(&io);
                    task.await
                }
            }
        }
        _ => task.await,
    };
    carry_out(&io, reply, effects);
}

/// Opens (or finds) the DM channel with `user_id` and posts `content` there. A user who
/// does not accept DMs answers 403; that is their choice, not a fault.
pub(crate) async fn direct_message(io: &Io, user_id: Id<UserMarker>, content: String) {
    let channel = match io
        .send("create_dm", io.http().create_private_channel(user_id))
        .await
        .and_then(|reply| reply.model::<Channel>())
    {
        Ok(channel) => channel,
        Err(err) => {
            tracing::debug!(%user_id, error = %err, "cannot open a DM channel");
            return;
        }
    };
    io.services.replies.message_with(channel.id, content, None);
}

/// Channel types the bot posts announcements in: text and announcement channels.
pub(crate) fn is_announceable(kind: ChannelType) -> bool {
    matches!(
        kind,
        ChannelType::GuildText | ChannelType::GuildAnnouncement
    )
}
