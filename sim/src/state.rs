//! State shared by the listener's handlers, the connections and the traffic
//! generator of one running simulator.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use twilight_model::gateway::Intents;
use twilight_model::guild::Permissions;

use crate::ban::InvalidRequests;
use crate::clock::Clock;
use crate::config::SimConfig;
use crate::faults::Fault;
use crate::gateway::{MemberRequest, OneOrMany};
use crate::identify::IdentifyLimits;
use crate::interactions::{InteractionKind, Interactions, Issue};
use crate::ledger::{
    GatewayEventKind, GatewayRecord, Ledger, LedgerPage, LedgerSnapshot, SimStats,
};
use crate::payloads::{self, Author, MessageSpec};
use crate::ratelimit::{RandomRestFaultSource, RateLimiter, RestFaults};
use crate::session::{Event, Layout, SessionRules, Sessions, Wants};
use crate::snowflake::{IdGenerator, snowflake};
use crate::world::World;

/// Snowflake workers for ids made at run time (world ids use 0..=2).
const WORKER_MESSAGE: u64 = 8;
const WORKER_INTERACTION: u64 = 9;

/// Discord's size of a GUILD_MEMBERS_CHUNK.
const MEMBERS_PER_CHUNK: usize = 1000;
/// Op 8 limits: `user_ids` up to 100, a `query` answers up to 100.
const MAX_REQUESTED_USER_IDS: usize = 100;
const MAX_QUERY_LIMIT: usize = 100;

// No `Debug`: it would print the token.
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    pub(crate) world: World,
    pub(crate) addr: SocketAddr,
    pub(crate) sessions: Sessions,
    pub(crate) ledger: Ledger,
    pub(crate) interactions: Interactions,
    pub(crate) clock: Clock,
    pub(crate) identify_limits: IdentifyLimits,
    pub(crate) rate_limiter: RateLimiter,
    pub(crate) rest_faults: RestFaults,
    pub(crate) random_rest_faults: RandomRestFaultSource,
    /// The invalid-request count and the ban it earns.
    pub(crate) invalid_requests: InvalidRequests,
    /// Op 8's rate limit, per guild.
    member_requests: MemberRequests,
    /// Grants of the OAuth2 provider.
    pub(crate) oauth: crate::oauth::OAuth,
    /// What moderation changed: bans, timeouts, slowmode, overwrites, recent messages.
    pub(crate) moderation: crate::moderation::ModerationState,
    /// Guild channels made at run time, and names given to generated ones.
    pub(crate) channels: crate::channels::ChannelState,
    /// Threads made at run time, with their members.
    pub(crate) threads: crate::threads::ThreadState,
    /// The application's entitlements (app subscriptions).
    pub(crate) entitlements: crate::entitlements::EntitlementState,
    /// The guilds' native AutoMod rules.
    pub(crate) automod: crate::automod::AutomodState,
    /// The accepted token; replaceable at run time (an operator resetting it).
    token: RwLock<String>,
    message_ids: IdGenerator,
    interaction_ids: IdGenerator,
    /// Session ids and interaction tokens; seeded, so runs are repeatable.
    rng: Mutex<SmallRng>,
    next_conn_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    /// Every live connection holds a clone; shutdown drops this one and
    /// waits until the receiver sees all of them gone.
    conn_guard: Mutex<Option<mpsc::Sender<()>>>,
}

/// Held by a connection task for its lifetime.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    _tx: mpsc::Sender<()>,
}

impl Shared {
    pub(crate) fn new(
        config: SimConfig,
        addr: SocketAddr,
        shutdown: watch::Receiver<bool>,
        conn_guard: mpsc::Sender<()>,
    ) -> Self {
        let world = World::generate(&config);
        let clock = Clock::new(config.time_scale);
        let ttl = clock.scaled(Duration::from_millis(config.session_ttl_ms));
        let rules = SessionRules {
            replay_events: config.replay_events,
            replay_age: ttl,
            ttl,
        };
        Self {
            sessions: Sessions::new(config.shards, clock, rules),
            identify_limits: IdentifyLimits::new(
                clock,
                config.max_concurrency,
                config.session_start_total,
                Duration::from_millis(config.identify_grace_ms),
            ),
            rate_limiter: RateLimiter::new(clock, config.rest_limits),
            rest_faults: RestFaults::default(),
            random_rest_faults: RandomRestFaultSource::new(
                config.random_rest_faults.clone(),
                config.seed,
            ),
            invalid_requests: InvalidRequests::new(clock, &config.rest_limits),
            member_requests: MemberRequests::new(clock.scaled(MEMBER_REQUEST_WINDOW)),
            oauth: crate::oauth::OAuth::default(),
            moderation: Default::default(),
            channels: Default::default(),
            threads: Default::default(),
            entitlements: Default::default(),
            automod: Default::default(),
            interactions: Interactions::new(clock, config.ledger_capacity),
            clock,
            ledger: Ledger::new(config.ledger_capacity),
            token: RwLock::new(config.token.clone()),
            message_ids: IdGenerator::new(WORKER_MESSAGE),
            interaction_ids: IdGenerator::new(WORKER_INTERACTION),
            rng: Mutex::new(SmallRng::seed_from_u64(config.seed ^ 0x5eed_5e55_1015)),
            next_conn_id: AtomicU64::new(1),
            shutdown,
            conn_guard: Mutex::new(Some(conn_guard)),
            world,
            addr,
            config,
        }
    }

    pub(crate) fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Whether `presented` is the current token, with or without `Bot `.
    pub(crate) fn token_matches(&self, presented: &str) -> bool {
        let presented = presented.strip_prefix("Bot ").unwrap_or(presented);
        *self.token.read().unwrap_or_else(PoisonError::into_inner) == presented
    }

    pub(crate) fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(PoisonError::into_inner) = token.to_owned();
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// `None` once shutdown began: no new connection may start.
    pub(crate) fn conn_guard(&self) -> Option<ConnGuard> {
        let guard = self
            .conn_guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(|tx| ConnGuard { _tx: tx.clone() })
    }

    pub(crate) fn drop_conn_guard(&self) {
        self.conn_guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Random lowercase hex, like Discord's session ids (32 chars) and a
    /// stand-in for interaction tokens.
    pub(crate) fn random_hex(&self, bytes: usize) -> String {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        (0..bytes)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect()
    }

    pub(crate) fn stats(&self) -> SimStats {
        let interactions = self.interactions.counts();
        SimStats {
            ready_shards: self.sessions.ready_shards(),
            rest_banned: self.invalid_requests.banned(self.clock.now()).is_some(),
            interactions: interactions.issued,
            interactions_in_time: interactions.in_time,
            interactions_late: interactions.late,
            interactions_unanswered: interactions.never,
            ..self.ledger.stats()
        }
    }

    /// The ledger's lists from `after` on, interactions included.
    pub(crate) fn ledger_snapshot(&self, after: &LedgerPage) -> LedgerSnapshot {
        let mut snapshot = self.ledger.snapshot(after);
        let (interactions, truncated) = self.interactions.records(after.interaction);
        snapshot.interactions = interactions;
        snapshot.truncated |= truncated;
        snapshot
    }

    /// `session_start_limit.remaining`: what is left of the daily budget.
    pub(crate) fn session_starts_remaining(&self) -> u32 {
        self.identify_limits.remaining(self.clock.now())
    }

    /// Milliseconds until the current (scaled) 24 h session start window
    /// ends.
    pub(crate) fn session_window_reset_after(&self) -> u64 {
        crate::clock::millis(self.identify_limits.reset_after(self.clock.now()))
    }

    /// See [`SimHandle::inject`](crate::SimHandle::inject).
    pub(crate) fn inject(&self, shard: u32, fault: Fault) -> bool {
        if !self.sessions.inject(shard, &fault) {
            return false;
        }
        self.ledger.record_gateway(GatewayRecord {
            shard: Some(shard),
            shards: Some(self.sessions.shards()),
            session: None,
            compress: None,
            kind: GatewayEventKind::FaultInjected { fault },
            at_ms: self.clock.now_ms(),
        });
        true
    }

    /// Discord's answer to a spent session start budget: every session
    /// ends and the token is replaced with one nobody knows.
    pub(crate) fn reset_token(&self) {
        let fresh = self.random_hex(24);
        self.set_token(&fresh);
        self.sessions
            .close_all(crate::gateway::close_code::AUTHENTICATION_FAILED);
    }

    /// See [`SimHandle::send_message`](crate::SimHandle::send_message).
    pub(crate) fn send_message(
        &self,
        guild_id: u64,
        channel_id: u64,
        author_id: u64,
        content: &str,
        attachments: &[&str],
    ) -> Option<u64> {
        let guild = self.world.guild(guild_id)?;
        if !self.has_channel(guild, channel_id) {
            return None;
        }
        if let Some(thread) = self.threads.get(channel_id)
            && thread.archived
            && thread.locked
        {
            return None;
        }
        if author_id != self.world.bot.user_id
            && !self.member_may_post(guild, channel_id, author_id)
        {
            return None;
        }
        // Discord sends guild messages only with GUILD_MESSAGES, and blanks
        // their content without MESSAGE_CONTENT; a bot that forgot an intent
        // must see that here, not first in production.
        let fallback_name = format!("user{author_id}");
        let author = Author::in_guild(guild, author_id, &fallback_name);
        let roles = guild.roles_of(author_id);
        let message_id = self.message_ids.next();
        // Discord's AutoMod screens a member's message before anyone sees it.
        if !author.bot
            && crate::automod::screen(self, guild, channel_id, author.id, message_id, content)
        {
            return None;
        }
        let attachments: Vec<serde_json::Value> = attachments
            .iter()
            .map(|name| payloads::attachment(self.message_ids.next(), channel_id, name))
            .collect();
        self.moderation.keep(
            channel_id,
            crate::moderation::Stored {
                id: message_id,
                author_id: author.id,
                username: author.username.to_owned(),
                bot: author.bot,
                content: content.to_owned(),
                components: serde_json::Value::Null,
                attachments: attachments.clone(),
                edited_ms: None,
            },
        );
        // Each session gets it only with GUILD_MESSAGES, and its content
        // (and attachments) only with MESSAGE_CONTENT.
        self.sessions
            .dispatch_with(guild.shard, Some(guild_id), |wants| {
                if !wants.intents.contains(Intents::GUILD_MESSAGES) {
                    return None;
                }
                let content = if wants.intents.contains(Intents::MESSAGE_CONTENT) {
                    content
                } else {
                    ""
                };
                let mut d = payloads::message(&MessageSpec {
                    message_id,
                    channel_id,
                    guild_id: Some(guild_id),
                    author,
                    member_roles: Some(&roles),
                    content,
                    embeds: serde_json::Value::Array(Vec::new()),
                    webhook_id: None,
                    application_id: None,
                });
                if wants.intents.contains(Intents::MESSAGE_CONTENT) {
                    d["attachments"] = serde_json::Value::Array(attachments.clone());
                }
                Some(Event {
                    name: "MESSAGE_CREATE",
                    guild_id: Some(guild_id),
                    entity_id: Some(message_id),
                    d: d.to_string(),
                })
            })?;
        if self.threads.contains(channel_id) {
            crate::threads::after_post(self, guild, channel_id);
        }
        Some(message_id)
    }

    /// See [`SimHandle::edit_message`](crate::SimHandle::edit_message).
    pub(crate) fn edit_message(
        &self,
        guild_id: u64,
        channel_id: u64,
        message_id: u64,
        content: &str,
    ) -> bool {
        let Some(guild) = self.world.guild(guild_id) else {
            return false;
        };
        let edited_ms = crate::snowflake::now_unix_ms();
        let bot = self.world.bot.user_id;
        let mut edited = None;
        let found = self.moderation.edit(channel_id, message_id, |kept| {
            if kept.author_id != bot {
                kept.content = content.to_owned();
                kept.edited_ms = Some(edited_ms);
                edited = Some(kept.clone());
            }
        });
        let Some(kept) = edited.filter(|_| found && self.has_channel(guild, channel_id)) else {
            return false;
        };
        let d = crate::moderation::message_json(guild, channel_id, &kept);
        let fallback_name = format!("user{}", kept.author_id);
        let joined_ms = Author::in_guild(guild, kept.author_id, &fallback_name).joined_ms;
        let mut d =
            payloads::message_update_of(d, guild_id, &guild.roles_of(kept.author_id), joined_ms);
        self.sessions
            .dispatch_with(guild.shard, Some(guild_id), |wants| {
                if !wants.intents.contains(Intents::GUILD_MESSAGES) {
                    return None;
                }
                if !wants.intents.contains(Intents::MESSAGE_CONTENT) {
                    d["content"] = serde_json::Value::String(String::new());
                }
                Some(Event {
                    name: "MESSAGE_UPDATE",
                    guild_id: Some(guild_id),
                    entity_id: Some(message_id),
                    d: d.to_string(),
                })
            });
        true
    }

    /// See [`SimHandle::delete_message`](crate::SimHandle::delete_message).
    pub(crate) fn delete_message(&self, guild_id: u64, channel_id: u64, message_id: u64) -> bool {
        let Some(guild) = self.world.guild(guild_id) else {
            return false;
        };
        if !self.has_channel(guild, channel_id) || !self.moderation.forget(channel_id, message_id) {
            return false;
        }
        let d = payloads::message_delete(message_id, channel_id, guild_id);
        crate::moderation::emit(
            self,
            guild,
            "MESSAGE_DELETE",
            Intents::GUILD_MESSAGES,
            Some(message_id),
            &d,
        );
        true
    }

    /// The guild of a channel, or of a channel or thread made at run time.
    pub(crate) fn guild_of_channel(&self, channel_id: u64) -> Option<&crate::world::Guild> {
        self.world.guild_of_channel(channel_id).or_else(|| {
            self.threads
                .guild_of(channel_id)
                .or_else(|| self.channels.guild_of(channel_id))
                .and_then(|guild_id| self.world.guild(guild_id))
        })
    }

    /// Whether the channel, or thread, is the guild's.
    pub(crate) fn has_channel(&self, guild: &crate::world::Guild, channel_id: u64) -> bool {
        guild.has_channel(channel_id)
            || self.threads.guild_of(channel_id) == Some(guild.id)
            || self.channels.guild_of(channel_id) == Some(guild.id)
    }

    /// Whether a member may post in a channel: they see it and may send there (in a thread:
    /// they see the thread and may send in threads), as its overwrites say; not in a category.
    fn member_may_post(&self, guild: &crate::world::Guild, channel_id: u64, user: u64) -> bool {
        if self
            .channels
            .get(channel_id)
            .is_some_and(|c| c.kind == crate::channels::GUILD_CATEGORY)
        {
            return false;
        }
        let send = match self.threads.get(channel_id) {
            Some(thread) if !thread.visible_to(guild, user) => return false,
            Some(_) => Permissions::SEND_MESSAGES_IN_THREADS,
            None => Permissions::SEND_MESSAGES,
        };
        crate::moderation::member_permissions(self, guild, user, Some(channel_id))
            .contains(Permissions::VIEW_CHANNEL | send)
    }

    /// Issues an interaction of `kind` with `data` from a member in a channel (or thread),
    /// and dispatches its INTERACTION_CREATE; `None` if no session gets the guild.
    fn issue_interaction(
        &self,
        guild: &crate::world::Guild,
        issue: Issue,
        data: serde_json::Value,
        message: Option<serde_json::Value>,
    ) -> Option<u64> {
        if !self.sessions.has_session_for(guild.shard, guild.id) {
            return None;
        }
        let fallback_name = format!("user{}", issue.user_id);
        let user = Author::in_guild(guild, issue.user_id, &fallback_name);
        let interaction_id = self.interaction_ids.next();
        // Real tokens are long opaque strings; 64 hex chars is plenty unique.
        let token = format!("aW50ZXJhY3Rpb24{}", self.random_hex(32));
        let thread = self.threads.get(issue.channel_id);
        let d = payloads::interaction_object(
            &payloads::InteractionBase {
                interaction_id,
                token: &token,
                application_id: self.world.bot.application_id,
                guild,
                channel_id: issue.channel_id,
                thread: thread.as_ref().map(|t| payloads::ThreadRef {
                    parent_id: t.parent_id,
                    name: &t.name,
                    private: t.private,
                }),
                user,
            },
            issue.kind.type_number(),
            data,
            message,
        );
        // Issued before it can be delivered, so a fast bot's callback finds it.
        self.interactions.issue(interaction_id, &token, issue);
        let event = Event {
            name: "INTERACTION_CREATE",
            guild_id: Some(guild.id),
            entity_id: Some(interaction_id),
            d: d.to_string(),
        };
        self.sessions.dispatch(guild.shard, event)?;
        Some(interaction_id)
    }

    /// See [`SimHandle::use_component`](crate::SimHandle::use_component).
    pub(crate) fn use_component(
        &self,
        target: &ComponentUse<'_>,
    ) -> Result<u64, (StatusCode, String)> {
        let not_found = |what: String| (StatusCode::NOT_FOUND, what);
        let guild = self
            .world
            .guild(target.guild_id)
            .ok_or_else(|| not_found(format!("unknown guild {}", target.guild_id)))?;
        if !self.has_channel(guild, target.channel_id) {
            return Err(not_found(format!(
                "unknown channel {} in guild {}",
                target.channel_id, guild.id
            )));
        }
        self.check_member_sees(guild, target.channel_id, target.user_id)?;
        let message = self
            .moderation
            .message(target.channel_id, target.message_id)
            .ok_or_else(|| not_found(format!("unknown message {}", target.message_id)))?;
        let data =
            crate::components::use_component(&message.components, target.custom_id, target.values)
                .map_err(|refusal| (StatusCode::BAD_REQUEST, refusal))?;
        let issue = Issue {
            kind: InteractionKind::Component,
            guild_id: guild.id,
            channel_id: target.channel_id,
            user_id: target.user_id,
            message_id: Some(message.id),
        };
        let message = crate::moderation::message_json(guild, target.channel_id, &message);
        self.issue_interaction(guild, issue, data, Some(message))
            .ok_or_else(|| not_found(format!("shard {} has no session", guild.shard)))
    }

    /// See [`SimHandle::submit_modal`](crate::SimHandle::submit_modal).
    pub(crate) fn submit_modal(
        &self,
        interaction_id: u64,
        answers: &[(String, String)],
    ) -> Result<u64, (StatusCode, String)> {
        let missing = || {
            (
                StatusCode::NOT_FOUND,
                format!("interaction {interaction_id} shows no modal (none, or it was sent)"),
            )
        };
        let open = self
            .interactions
            .modal_of(interaction_id)
            .ok_or_else(missing)?;
        let data = crate::components::submit_modal(&open.modal, answers)
            .map_err(|refusal| (StatusCode::BAD_REQUEST, refusal))?;
        let guild = self.world.guild(open.origin.guild_id).ok_or_else(missing)?;
        self.interactions
            .take_modal(interaction_id)
            .ok_or_else(missing)?;
        let issue = Issue {
            kind: InteractionKind::ModalSubmit,
            ..open.origin
        };
        let message = issue
            .message_id
            .and_then(|id| self.moderation.message(issue.channel_id, id))
            .map(|m| crate::moderation::message_json(guild, issue.channel_id, &m));
        self.issue_interaction(guild, issue, data, message)
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("shard {} has no session", guild.shard),
                )
            })
    }

    /// A member may act in a channel they see: one whose overwrites let them view it, a
    /// public thread, or a private thread they are in (the owner sees everything).
    pub(crate) fn check_member_sees(
        &self,
        guild: &crate::world::Guild,
        channel_id: u64,
        user_id: u64,
    ) -> Result<(), (StatusCode, String)> {
        if guild.find_member(user_id).is_none() || self.moderation.departed(guild.id, user_id) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("user {user_id} is not a member of guild {}", guild.id),
            ));
        }
        match self.threads.get(channel_id) {
            Some(thread) if !thread.visible_to(guild, user_id) => Err((
                StatusCode::FORBIDDEN,
                format!("user {user_id} cannot see private thread {channel_id}"),
            )),
            _ if !crate::moderation::member_permissions(self, guild, user_id, Some(channel_id))
                .contains(Permissions::VIEW_CHANNEL) =>
            {
                Err((
                    StatusCode::FORBIDDEN,
                    format!("user {user_id} cannot see channel {channel_id}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// See [`SimHandle::send_command_interaction`](crate::SimHandle::send_command_interaction).
    pub(crate) fn send_command_interaction(
        &self,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        command: &str,
        options: &[(&str, &str)],
    ) -> Option<u64> {
        let guild = self.world.guild(guild_id)?;
        if !self.has_channel(guild, channel_id) {
            return None;
        }
        let data = payloads::command_data(
            command_id(self.world.bot.application_id, command),
            command,
            options,
            guild_id,
        );
        let issue = Issue {
            kind: InteractionKind::Command,
            guild_id,
            channel_id,
            user_id,
            message_id: None,
        };
        self.issue_interaction(guild, issue, data, None)
    }

    /// Op 8 from `session`: GUILD_MEMBERS_CHUNKs of at most 1,000 members
    /// for the requested guild if `layout` gets it, `nonce` echoed, sent to
    /// that session only. The whole list (`query` empty, `limit` 0) and
    /// `user_ids` need GUILD_MEMBERS; without it nothing is sent. Over the
    /// op 8 rate limit the session gets a RATE_LIMITED dispatch instead.
    /// Returns the chunks sent.
    pub(crate) fn request_guild_members(
        &self,
        layout: Layout,
        session: &str,
        wants: Wants,
        request: &MemberRequest,
    ) -> usize {
        let has_members = wants.intents.contains(Intents::GUILD_MEMBERS);
        let query = request.query.as_deref().unwrap_or("");
        let user_ids = request.user_ids.as_ref().map(OneOrMany::ids);
        if !has_members && (user_ids.is_some() || query.is_empty()) {
            return 0;
        }
        // Discord ignores a nonce over 32 bytes.
        let nonce = request.nonce.as_deref().filter(|n| n.len() <= 32);
        let mut sent = 0;
        let guild_id = request.guild_id.0;
        let Some(guild) = self.world.guild(guild_id) else {
            return 0;
        };
        if !layout.covers(Some(guild_id)) || self.world.is_removed(guild) {
            return 0;
        }
        if let Err(retry_after) = self.member_requests.check(guild_id, self.clock.now()) {
            let d = payloads::rate_limited(retry_after.as_secs_f64(), guild_id, nonce);
            let event = Event {
                name: "RATE_LIMITED",
                guild_id: Some(guild_id),
                entity_id: Some(guild_id),
                d: d.to_string(),
            };
            self.sessions.dispatch_to(layout, session, event);
            return 0;
        }
        let bot = &self.world.bot;
        let roles_of = |user_id: u64| {
            if user_id == guild.owner.id {
                vec![guild.moderator_role_id]
            } else {
                Vec::new()
            }
        };
        let bot_member = crate::world::User {
            id: bot.user_id,
            username: bot.username.clone(),
            joined_ms: guild.bot_joined_ms,
        };
        let mut not_found = Vec::new();
        let members: Vec<(crate::world::User, Vec<u64>, bool)> = match &user_ids {
            Some(ids) => ids
                .iter()
                .take(MAX_REQUESTED_USER_IDS)
                .filter_map(|&id| {
                    if id == bot.user_id {
                        return Some((bot_member.clone(), vec![guild.bot_role_id], true));
                    }
                    let found = guild.find_member(id);
                    if found.is_none() {
                        not_found.push(id);
                    }
                    found.map(|u| (u, roles_of(id), false))
                })
                .collect(),
            None => {
                let limit = match request.limit {
                    0 if query.is_empty() => usize::MAX,
                    0 => MAX_QUERY_LIMIT,
                    n => (n as usize).min(if query.is_empty() {
                        usize::MAX
                    } else {
                        MAX_QUERY_LIMIT
                    }),
                };
                let query = query.to_lowercase();
                guild
                    .all_members()
                    .map(|u| {
                        let roles = roles_of(u.id);
                        (u, roles, false)
                    })
                    .chain(std::iter::once((
                        bot_member.clone(),
                        vec![guild.bot_role_id],
                        true,
                    )))
                    .filter(|(u, _, _)| u.username.to_lowercase().starts_with(&query))
                    .take(limit)
                    .collect()
            }
        };
        let chunks: Vec<_> = members.chunks(MEMBERS_PER_CHUNK).collect();
        let chunk_count = chunks.len().max(1) as u32;
        for index in 0..chunk_count {
            let d = payloads::guild_members_chunk(&payloads::ChunkSpec {
                guild_id,
                members: chunks.get(index as usize).copied().unwrap_or(&[]),
                chunk_index: index,
                chunk_count,
                not_found: if index == 0 { &not_found } else { &[] },
                nonce,
            });
            let event = Event {
                name: "GUILD_MEMBERS_CHUNK",
                guild_id: Some(guild_id),
                entity_id: Some(guild_id),
                d: d.to_string(),
            };
            if self.sessions.dispatch_to(layout, session, event).is_some() {
                sent += 1;
            }
        }
        sent
    }

    pub(crate) fn new_message_id(&self) -> u64 {
        self.message_ids.next()
    }
}

/// Op 8's rate limit: one REQUEST_GUILD_MEMBERS per guild per this window
/// (scaled), as Discord's gateway documentation gives it since 2025; more
/// get a RATE_LIMITED dispatch with the `retry_after`.
const MEMBER_REQUEST_WINDOW: Duration = Duration::from_secs(30);

/// When each guild's op 8 window ends.
#[derive(Debug)]
struct MemberRequests {
    window: Duration,
    until: Mutex<std::collections::HashMap<u64, tokio::time::Instant>>,
}

impl MemberRequests {
    fn new(window: Duration) -> Self {
        Self {
            window,
            until: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes the guild's one request of the window, or says how long until
    /// the next one is allowed.
    fn check(&self, guild_id: u64, now: tokio::time::Instant) -> Result<(), Duration> {
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded by the guilds asked about in the last window.
        if until.len() > 4096 {
            until.retain(|_, end| *end > now);
        }
        match until.get(&guild_id) {
            Some(end) if *end > now => Err(*end - now),
            _ => {
                until.insert(guild_id, now + self.window);
                Ok(())
            }
        }
    }
}

/// A stable id per command name, as if each were registered once, created
/// a day after the application.
pub(crate) fn command_id(application_id: u64, name: &str) -> u64 {
    // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let created = crate::snowflake::unix_ms_of(application_id) + 86_400_000;
    snowflake(created, 3, hash & 0xFFF)
}

/// A member using a component of a message (see `SimHandle::use_component`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ComponentUse<'a> {
    pub(crate) guild_id: u64,
    pub(crate) channel_id: u64,
    pub(crate) message_id: u64,
    pub(crate) user_id: u64,
    pub(crate) custom_id: &'a str,
    /// The values chosen in a select; `None` for a button.
    pub(crate) values: Option<&'a [String]>,
}

/// Shared state as handlers receive it.
pub(crate) type AppState = Arc<Shared>;
