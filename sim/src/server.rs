//! Starting and stopping a simulator, and the handle tests drive it with.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::{self, Fault};
use crate::ledger::{LedgerPage, LedgerSnapshot, SimStats};
use crate::ratelimit::RestFault;
use crate::state::Shared;
use crate::world::{self, GuildInfo};
use crate::{control, gateway, oauth, rest, traffic};

/// Bound on waiting for connections and tasks to end at shutdown; a client
/// that never answers our close frame must not hang a test.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Entry point: `Simulator::start(config, listener)`.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Serves the gateway, REST and `/sim` on `listener` until
    /// [`SimHandle::shutdown`] is called or the last handle is dropped.
    pub async fn start(config: SimConfig, listener: TcpListener) -> Result<SimHandle, SimError> {
        config.validate()?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared::new(config, addr, shutdown_rx, conn_tx));

        let app = Router::new()
            .merge(control::router())
            .merge(oauth::router())
            .route(rest::PREFIX, any(rest::handle))
            .route(&format!("{}/{{*rest}}", rest::PREFIX), any(rest::handle))
            .fallback(gateway::upgrade)
            .with_state(Arc::clone(&shared));
        let mut signal = shared.shutdown_signal();
        let server = tokio::spawn(async move {
            // Discord's gateway writes each frame as it comes: without TCP_NODELAY a small
            // frame waits for the ACK of the previous one (up to 40 ms of delayed ACK).
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %err, "TCP_NODELAY not set");
                }
            });
            // The peer address keys the per-IP limit of unauthenticated REST requests.
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either a `true` or a dropped sender means stop.
                    let _ = signal.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "simulator listener failed");
            }
        });
        let traffic = tokio::spawn(traffic::run(Arc::clone(&shared)));
        let faults = tokio::spawn(faults::run_random(Arc::clone(&shared)));
        tracing::info!(%addr, config = ?shared.config, "simulator started");
        Ok(SimHandle {
            shared,
            inner: Arc::new(HandleInner {
                shutdown: shutdown_tx,
                tasks: Mutex::new(Some(Tasks {
                    server,
                    traffic,
                    faults,
                    connections_done: conn_rx,
                })),
            }),
        })
    }
}

struct Tasks {
    server: JoinHandle<()>,
    traffic: JoinHandle<()>,
    faults: JoinHandle<()>,
    /// Yields `None` once every connection task has ended.
    connections_done: mpsc::Receiver<()>,
}

struct HandleInner {
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Option<Tasks>>,
}

impl Drop for HandleInner {
    // The last handle gone: stop serving, without waiting.
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// A running simulator. Clones share it; it stops at [`shutdown`] or when
/// the last clone is dropped.
///
/// [`shutdown`]: SimHandle::shutdown
#[derive(Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The bot's application id: the OAuth2 `client_id` of the simulated Discord (with
    /// [`OAUTH_CLIENT_SECRET`](crate::OAUTH_CLIENT_SECRET)).
    pub fn application_id(&self) -> u64 {
        self.shared.world.bot.application_id
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `ws://IP:PORT`, for twilight's `proxy_url`.
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url()
    }

    /// `IP:PORT`, for twilight-http's `proxy(.., true)`.
    pub fn rest_proxy(&self) -> String {
        self.shared.addr.to_string()
    }

    /// The config it started with (a later [`set_token`](Self::set_token)
    /// is not reflected here).
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Every generated guild, in id order.
    pub fn guilds(&self) -> Vec<GuildInfo> {
        self.shared
            .world
            .guilds()
            .iter()
            .map(|g| g.info())
            .collect()
    }

    pub fn guild(&self, id: u64) -> Option<GuildInfo> {
        self.shared.world.guild(id).map(|g| g.info())
    }

    /// `(guild_id >> 22) % shards`, Discord's formula.
    pub fn shard_of(&self, guild_id: u64) -> u32 {
        world::shard_of(guild_id, self.shared.config.shards)
    }

    /// Dispatches a MESSAGE_CREATE in that guild from that user to every
    /// session that gets the guild; the message id, or `None` if the guild
    /// or channel is unknown or no session with the GUILD_MESSAGES intent
    /// gets the guild (without MESSAGE_CONTENT the content arrives empty). A session that is
    /// disconnected but resumable gets the event sequenced and buffered for
    /// replay, as Discord does. Authors the world does not know get a
    /// made-up username.
    pub fn send_message(
        &self,
        guild_id: u64,
        channel_id: u64,
        author_id: u64,
        content: &str,
    ) -> Option<u64> {
        self.shared
            .send_message(guild_id, channel_id, author_id, content, &[])
    }

    /// [`send_message`](Self::send_message) with files attached (by name; each gets a CDN
    /// URL, in the message only with MESSAGE_CONTENT, as Discord blanks them too).
    pub fn send_message_with_attachments(
        &self,
        guild_id: u64,
        channel_id: u64,
        author_id: u64,
        content: &str,
        attachments: &[&str],
    ) -> Option<u64> {
        self.shared
            .send_message(guild_id, channel_id, author_id, content, attachments)
    }

    /// A member edits their message (MESSAGE_UPDATE); `false` for an unknown message or one
    /// the bot wrote.
    pub fn edit_message(
        &self,
        guild_id: u64,
        channel_id: u64,
        message_id: u64,
        content: &str,
    ) -> bool {
        self.shared
            .edit_message(guild_id, channel_id, message_id, content)
    }

    /// A member (or a moderator in the client) deletes a message (MESSAGE_DELETE); `false`
    /// for an unknown one.
    pub fn delete_message(&self, guild_id: u64, channel_id: u64, message_id: u64) -> bool {
        self.shared.delete_message(guild_id, channel_id, message_id)
    }

    /// A new user joins the guild: GUILD_MEMBER_ADD, sent only to sessions with the
    /// privileged GUILD_MEMBERS intent (as Discord does); the user's id, `None` for an unknown
    /// guild.
    pub fn member_joins(&self, guild_id: u64) -> Option<u64> {
        let shared = &self.shared;
        let guild = shared.world.guild(guild_id)?;
        Some(crate::traffic::member_joins(shared, guild))
    }

    /// Removes the bot from a guild (GUILD_DELETE without `unavailable`); false for an
    /// unknown guild or one already removed.
    pub fn remove_guild(&self, guild_id: u64) -> bool {
        let shared = &self.shared;
        shared
            .world
            .guild(guild_id)
            .is_some_and(|guild| crate::traffic::remove_guild(shared, guild))
    }

    /// Adds the bot back to a removed guild (a GUILD_CREATE); false for an unknown guild or
    /// one not removed.
    pub fn restore_guild(&self, guild_id: u64) -> bool {
        let shared = &self.shared;
        shared
            .world
            .guild(guild_id)
            .is_some_and(|guild| crate::traffic::restore_guild(shared, guild))
    }

    /// Dispatches an INTERACTION_CREATE for a slash command with string
    /// options; the interaction id (its token is kept so the callback can be
    /// checked), or `None` as for [`send_message`](Self::send_message).
    pub fn send_command_interaction(
        &self,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        command: &str,
        options: &[(&str, &str)],
    ) -> Option<u64> {
        self.shared
            .send_command_interaction(guild_id, channel_id, user_id, command, options)
    }

    /// A member presses button `custom_id` (`values: None`) or chooses `values` in select
    /// `custom_id` of a message the bot posted: a MESSAGE_COMPONENT interaction with the
    /// message, dispatched like a command's; its id. Refused as Discord's client would not
    /// let it happen: a component the message lacks, a disabled one, values a select does
    /// not offer or in a count it does not take, a member who cannot see the channel (a
    /// private thread they are not in). Also `POST /sim/components`.
    pub fn use_component(
        &self,
        guild_id: u64,
        channel_id: u64,
        message_id: u64,
        user_id: u64,
        custom_id: &str,
        values: Option<&[String]>,
    ) -> Result<u64, SimError> {
        self.shared
            .use_component(&crate::state::ComponentUse {
                guild_id,
                channel_id,
                message_id,
                user_id,
                custom_id,
                values,
            })
            .map_err(|(_, reason)| SimError::Refused(reason))
    }

    /// The member sends the modal interaction `interaction_id` was answered with, its text
    /// inputs filled with `answers` (custom id, value): a MODAL_SUBMIT interaction; its id.
    /// Refused when no modal is open (never shown, or sent already), for an unknown field, a
    /// required one left empty, or a value outside its length bounds. Also `POST /sim/modals`.
    pub fn submit_modal(
        &self,
        interaction_id: u64,
        answers: &[(&str, &str)],
    ) -> Result<u64, SimError> {
        let answers: Vec<(String, String)> = answers
            .iter()
            .map(|(id, value)| ((*id).to_owned(), (*value).to_owned()))
            .collect();
        self.shared
            .submit_modal(interaction_id, &answers)
            .map_err(|(_, reason)| SimError::Refused(reason))
    }

    /// The messages kept in a channel or thread, oldest first, as `GET /channels/{id}/messages`
    /// shows each (components included).
    pub fn messages(&self, channel_id: u64) -> Vec<serde_json::Value> {
        let Some(guild) = self.shared.guild_of_channel(channel_id) else {
            return Vec::new();
        };
        self.shared
            .moderation
            .messages_of(channel_id)
            .iter()
            .map(|m| crate::moderation::message_json(guild, channel_id, m))
            .collect()
    }

    /// Threads made in the guild, oldest first, as Discord's channel objects.
    pub fn threads(&self, guild_id: u64) -> Vec<serde_json::Value> {
        self.shared
            .threads
            .of_guild(guild_id)
            .iter()
            .map(crate::threads::Thread::json)
            .collect()
    }

    /// Channels made in the guild at run time (text channels and categories), oldest first,
    /// as Discord's channel objects.
    pub fn channels(&self, guild_id: u64) -> Vec<serde_json::Value> {
        let Some(guild) = self.shared.world.guild(guild_id) else {
            return Vec::new();
        };
        self.shared
            .channels
            .of_guild(guild_id)
            .iter()
            .map(|c| crate::channels::channel_object(&self.shared, guild, c.id))
            .collect()
    }

    /// A guild admin makes a category in the Discord client (CHANNEL_CREATE follows); its id,
    /// `None` for an unknown guild or one with 500 channels.
    pub fn create_category(&self, guild_id: u64, name: &str) -> Option<u64> {
        let guild = self.shared.world.guild(guild_id)?;
        crate::channels::admin_makes_category(&self.shared, guild, name)
    }

    /// A member's permissions in a channel (or thread's parent) as its overwrites make them;
    /// empty when they do not see it.
    pub fn member_permissions(
        &self,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
    ) -> twilight_model::guild::Permissions {
        match self.shared.world.guild(guild_id) {
            Some(guild) if self.shared.has_channel(guild, channel_id) => {
                crate::moderation::member_permissions(
                    &self.shared,
                    guild,
                    user_id,
                    Some(channel_id),
                )
            }
            _ => twilight_model::guild::Permissions::empty(),
        }
    }

    /// The members of a thread, by user id (empty for no thread).
    pub fn thread_members(&self, thread_id: u64) -> Vec<u64> {
        self.shared
            .threads
            .get(thread_id)
            .map(|t| t.members.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Closes the shard's live connection with `code`. The session stays
    /// resumable (events meanwhile are buffered for the replay) unless the
    /// code ends it as on Discord: 4004, 4007, 4009, 4010..=4014. `false` if
    /// the shard has no live connection.
    pub fn close_shard(&self, shard: u32, code: u16) -> bool {
        self.shared.inject(shard, Fault::Close { code })
    }

    /// Commits `fault` on the shard's live connection (recorded in the
    /// ledger as [`GatewayEventKind::FaultInjected`](crate::GatewayEventKind));
    /// `false` if it needs a live connection and the shard has none.
    /// [`Fault::Latency`] needs none: it applies to the shard from now on.
    pub fn inject(&self, shard: u32, fault: Fault) -> bool {
        self.shared.inject(shard, fault)
    }

    /// Scripts REST failures: the next `fault.count` requests (to
    /// `fault.route`, or to any known route) get a 429 with Discord's
    /// headers and body, or a 5xx. Recorded with `injected` in the ledger.
    /// Also `POST /sim/rest/faults`.
    pub fn inject_rest(&self, fault: RestFault) -> Result<(), SimError> {
        if let Some(reason) = fault.invalid() {
            return Err(SimError::InvalidRestFault(reason));
        }
        self.shared.rest_faults.push(fault);
        Ok(())
    }

    /// Replaces the accepted token: later IDENTIFY/RESUME with the old one
    /// are closed with 4004, REST calls get 401. Live sessions go on.
    pub fn set_token(&self, token: &str) {
        self.shared.set_token(token);
    }

    /// The application's SKUs: `[guild subscription, user subscription]`.
    pub fn skus(&self) -> [u64; 2] {
        crate::entitlements::skus(self.shared.world.bot.application_id)
    }

    /// A user buys an app subscription to `sku_id` for `days` (for a guild if `guild_id`):
    /// ENTITLEMENT_CREATE goes to shard 0. The entitlement's id, or why it was refused.
    pub fn subscribe(
        &self,
        user_id: u64,
        guild_id: Option<u64>,
        sku_id: u64,
        days: u64,
    ) -> Result<u64, String> {
        self.shared.subscribe(user_id, guild_id, sku_id, days)
    }

    /// The subscription's period now ends at `ends_at_ms` (Unix ms): renewed, or cancelled
    /// at its end (ENTITLEMENT_UPDATE). `false` for an unknown or refunded entitlement.
    pub fn set_entitlement_end(&self, entitlement_id: u64, ends_at_ms: u64) -> bool {
        self.shared.change_entitlement(
            entitlement_id,
            crate::entitlements::StoreChange::EndsAt(ends_at_ms),
        )
    }

    /// Discord refunds the entitlement: deleted (ENTITLEMENT_DELETE). `false` for an
    /// unknown or already refunded one.
    pub fn refund_entitlement(&self, entitlement_id: u64) -> bool {
        self.shared
            .change_entitlement(entitlement_id, crate::entitlements::StoreChange::Refund)
    }

    /// Users banned from the guild now, by id.
    pub fn bans(&self, guild_id: u64) -> Vec<u64> {
        self.shared.moderation.banned(guild_id)
    }

    /// A guild's native AutoMod rules, as `GET /guilds/{id}/auto-moderation/rules` shows them.
    pub fn automod_rules(&self, guild_id: u64) -> Vec<serde_json::Value> {
        self.shared.automod.rules_of(guild_id)
    }

    /// Takes permissions from the bot in a guild (an admin editing its role): its REST calls
    /// there are refused with 50013 as Discord refuses them.
    pub fn revoke_bot_permissions(
        &self,
        guild_id: u64,
        permissions: twilight_model::guild::Permissions,
    ) {
        self.shared
            .moderation
            .revoke_bot_permissions(guild_id, permissions);
    }

    /// An admin edits the bot's role in a guild to grant only `permissions` of those it was
    /// invited with (@everyone's stay): GUILD_ROLE_UPDATE, and the bot's REST calls there
    /// are refused with 50013 past it. `false` for an unknown guild.
    pub fn edit_bot_role(
        &self,
        guild_id: u64,
        permissions: twilight_model::guild::Permissions,
    ) -> bool {
        let shared = &self.shared;
        let Some(guild) = shared.world.guild(guild_id) else {
            return false;
        };
        crate::moderation::edit_bot_role(shared, guild, permissions);
        true
    }

    /// A member's `communication_disabled_until`, if timed out.
    pub fn timeout_of(&self, guild_id: u64, user_id: u64) -> Option<String> {
        self.shared.moderation.timeout_of(guild_id, user_id)
    }

    /// Whether the user left the guild by a kick or a ban.
    pub fn departed(&self, guild_id: u64, user_id: u64) -> bool {
        self.shared.moderation.departed(guild_id, user_id)
    }

    /// A channel's slowmode (`rate_limit_per_user`, seconds).
    pub fn slowmode_of(&self, channel_id: u64) -> u64 {
        self.shared.moderation.slowmode_of(channel_id)
    }

    /// A channel's permission overwrites set at run time, as Discord's JSON.
    pub fn overwrites_of(&self, channel_id: u64) -> Vec<serde_json::Value> {
        self.shared.moderation.overwrites_of(channel_id)
    }

    /// Whether a message is still in its channel (not deleted).
    pub fn message_exists(&self, channel_id: u64, message_id: u64) -> bool {
        self.shared
            .moderation
            .message_exists(channel_id, message_id)
    }

    /// The DM channel the bot opened with `user_id` (`POST /users/@me/channels`), if it did.
    pub fn dm_channel_of(&self, user_id: u64) -> Option<u64> {
        self.shared.moderation.dm_channel_of(user_id)
    }

    /// A DM from the bot to `user_id` that the ledger never saw: what a node that crashed
    /// after sending it left behind, in a test's story. Opens the DM channel if needed and
    /// keeps the message there (`GET /channels/{dm}/messages` lists it); the channel's id.
    pub fn bot_dm_sent_before(&self, user_id: u64, content: &str) -> u64 {
        let channel_id = self
            .shared
            .moderation
            .open_dm(user_id, self.shared.new_message_id());
        let bot = &self.shared.world.bot;
        self.shared.moderation.keep(
            channel_id,
            crate::moderation::Stored {
                id: self.shared.new_message_id(),
                author_id: bot.user_id,
                username: bot.username.clone(),
                bot: true,
                content: content.to_owned(),
                components: serde_json::Value::Null,
                attachments: Vec::new(),
                edited_ms: None,
            },
        );
        channel_id
    }

    /// Everything recorded so far.
    pub fn ledger(&self) -> LedgerSnapshot {
        self.shared.ledger_snapshot(&LedgerPage::default())
    }

    /// Whether the invalid-request ban is on: every REST request gets a 429
    /// until it ends (also `rest_banned` in [`SimStats`]).
    pub fn rest_banned(&self) -> bool {
        self.shared
            .invalid_requests
            .banned(self.shared.clock.now())
            .is_some()
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// Stops accepting, closes every connection (1001) and waits for the
    /// listener, the traffic generator and the connections to end.
    pub async fn shutdown(self) {
        self.inner.shutdown.send_replace(true);
        self.shared.drop_conn_guard();
        let tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut tasks) = tasks else {
            return;
        };
        let wait = async {
            let _ = (&mut tasks.traffic).await;
            let _ = (&mut tasks.faults).await;
            // `None` once the last connection dropped its guard.
            while tasks.connections_done.recv().await.is_some() {}
            let _ = (&mut tasks.server).await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, wait).await.is_err() {
            tracing::warn!("simulator shutdown timed out; aborting its tasks");
            tasks.traffic.abort();
            tasks.faults.abort();
            tasks.server.abort();
        }
    }
}
