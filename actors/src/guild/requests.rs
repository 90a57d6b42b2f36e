//! Guild calls answered by the guild's actor: config reads and changes (durable, then live,
//! then audited), history and rollback, the cached summary and a member's permissions.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use protonn_storage::{
    AuditEntry, GuildConfig, Plan, StorageError, Timestamp, VersionedConfig, guild_plan,
};
use ractor::RpcReplyPort;
use twilight_cache_inmemory::ResourceType;
use twilight_http::request::TryIntoRequest;
use twilight_model::channel::Channel;
use twilight_model::guild::Member;
use twilight_model::id::Id;

use super::GuildState;
use crate::feature::{CallTask, Ctx, premium_allows};
use crate::member_access::{member_access, no_access};
use crate::metrics::AUDIT_FAILURES;
use crate::rest::RestError;
use crate::{
    AUDIT_CONFIG_CHANGE, AUDIT_CONFIG_ROLLBACK, CallSource, ChannelSummary, ConfigAuditDetails,
    GuildCall, GuildCallError, GuildRequest, GuildResponse, GuildSummary, MemberAccess,
    RoleSummary, Services,
};

/// Answers remembered per guild under their idempotency keys. A retry comes within seconds;
/// beyond this many newer keys it is found in the audit log instead (config changes only).
const IDEMPOTENCY_KEYS: usize = 64;
/// Longest idempotency key accepted: a UUID or a hash fits many times over.
pub(crate) const MAX_KEY_LEN: usize = 128;
/// How far back the audit log is searched for a change already applied under a key: a
/// retry after a shard move comes within a call's deadline, seconds later.
const KEY_LOOKBACK: Duration = Duration::from_secs(15 * 60);
/// Audit entries read at most when looking for a key.
const KEY_LOOKBACK_ENTRIES: usize = 1_000;
/// Discord's JSON error code for a user who is not a member of the guild.
const UNKNOWN_MEMBER: u64 = 10007;

pub(crate) type CallReply = RpcReplyPort<Result<GuildResponse, GuildCallError>>;

/// Who changes a config, for the audit entry.
pub(super) struct Changer {
    pub(super) user_id: Option<u64>,
    pub(super) source: CallSource,
    pub(super) idempotency_key: Option<String>,
}

/// The last answers to state-changing calls, by idempotency key, oldest first out.
#[derive(Default)]
pub(super) struct Answered {
    order: VecDeque<String>,
    answers: HashMap<String, Result<GuildResponse, GuildCallError>>,
}

impl Answered {
    fn get(&self, key: &str) -> Option<&Result<GuildResponse, GuildCallError>> {
        self.answers.get(key)
    }

    fn remember(&mut self, key: String, answer: Result<GuildResponse, GuildCallError>) {
        if self.answers.insert(key.clone(), answer).is_some() {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > IDEMPOTENCY_KEYS
            && let Some(oldest) = self.order.pop_front()
        {
            self.answers.remove(&oldest);
        }
    }
}

impl GuildState {
    /// Answers a call: at once for what the actor holds, or from a task for what needs
    /// Discord's REST API, so a slow round trip never holds up the guild's events.
    pub(super) async fn answer(&mut self, call: GuildCall, reply: CallReply) {
        let key = call
            .idempotency_key
            .clone()
            .filter(|_| call.request.changes());
        if let Some(key) = &key
            && let Some(first) = self.answered.get(key)
        {
            let _ = reply.send(first.clone());
            return;
        }
        if let Some(task) = self.feature_call(&call).await {
            self.services.spawn(async move {
                let _ = reply.send(task.await);
            });
            return;
        }
        let changer = Changer {
            user_id: call.caller.user_id,
            source: call.caller.source,
            idempotency_key: key.clone(),
        };
        let answer = match call.request {
            GuildRequest::ReadConfig => self.read_config().await.map(GuildResponse::Config),
            GuildRequest::ChangeConfig {
                config,
                expected_version,
            } => match validate_off_thread(config).await {
                Ok(config) => self
                    .save_config(config, expected_version, changer, AUDIT_CONFIG_CHANGE)
                    .await
                    .map(GuildResponse::Config),
                Err(message) => Err(GuildCallError::Invalid { message }),
            },
            GuildRequest::ConfigHistory => self.history().await,
            GuildRequest::RollbackConfig {
                to_version,
                expected_version,
            } => self
                .rollback(to_version, expected_version, changer)
                .await
                .map(GuildResponse::Config),
            GuildRequest::Summary => {
                let services = Arc::clone(&self.services);
                let guild_id = self.guild_id.get();
                self.services.spawn(async move {
                    let _ = reply.send(summary(&services, guild_id).await);
                });
                return;
            }
            GuildRequest::MemberPermissions { user_id } => {
                // Staff roles are config: a failed load must not grant or deny on a guess.
                let staff = match self.read_config().await {
                    Ok(current) => current.config.staff_roles,
                    Err(err) => {
                        let _ = reply.send(Err(err));
                        return;
                    }
                };
                let services = Arc::clone(&self.services);
                let guild_id = self.guild_id.get();
                self.services.spawn(async move {
                    let access = permissions(&services, guild_id, user_id, &staff).await;
                    let _ = reply.send(access.map(GuildResponse::Permissions));
                });
                return;
            }
            // A feature's call, answered above unless the config could not be loaded.
            GuildRequest::Cases { .. }
            | GuildRequest::ListWorkflows
            | GuildRequest::SaveWorkflow { .. }
            | GuildRequest::SetWorkflowEnabled { .. }
            | GuildRequest::DeleteWorkflow { .. }
            | GuildRequest::DryRunWorkflow { .. }
            | GuildRequest::WorkflowRuns { .. }
            | GuildRequest::RecentWorkflowEvents
            | GuildRequest::AutomodHits { .. }
            | GuildRequest::AutomodTest { .. }
            | GuildRequest::AutomodNative
            | GuildRequest::ListAnnounceSchedules
            | GuildRequest::SaveAnnounceSchedule { .. }
            | GuildRequest::SetAnnounceSchedulePaused { .. }
            | GuildRequest::DeleteAnnounceSchedule { .. } => Err(GuildCallError::Unavailable {
                message: "the guild's configuration could not be loaded".to_owned(),
            }),
        };
        if let Some(key) = key
            && !answer.as_ref().is_err_and(GuildCallError::is_transient)
        {
            self.answered.remember(key, answer.clone());
        }
        let _ = reply.send(answer);
    }

    /// The answer of the feature that handles the call, if one does.
    async fn feature_call(&mut self, call: &GuildCall) -> Option<CallTask> {
        let config = match self.config().await {
            Ok(config) => Arc::clone(config),
            Err(err) => {
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                return None;
            }
        };
        let plan = self.plan().await;
        let io = self.io();
        for (index, feature) in crate::features::all().iter().enumerate() {
            let mut ctx = Ctx::new(&config, plan, io.clone(), &mut self.feature_states[index]);
            if let Some(task) = feature.on_call(&mut ctx, call) {
                return Some(task);
            }
        }
        None
    }

    async fn read_config(&mut self) -> Result<VersionedConfig, GuildCallError> {
        match self.config().await {
            Ok(current) => Ok(VersionedConfig::clone(current)),
            Err(err) => {
                tracing::error!(guild_id = %self.guild_id, error = %err, "cannot load guild config");
                Err(unavailable(&err))
            }
        }
    }

    async fn history(&self) -> Result<GuildResponse, GuildCallError> {
        let versions = self
            .services
            .store
            .history(self.guild_id.get())
            .await
            .map_err(|err| unavailable(&err))?;
        Ok(GuildResponse::History { versions })
    }

    async fn rollback(
        &mut self,
        to_version: u64,
        expected: u64,
        changer: Changer,
    ) -> Result<VersionedConfig, GuildCallError> {
        let versions = self
            .services
            .store
            .history(self.guild_id.get())
            .await
            .map_err(|err| unavailable(&err))?;
        let Some(target) = versions.into_iter().find(|v| v.version == to_version) else {
            return Err(GuildCallError::Invalid {
                message: format!("version {to_version} is not in this server's history"),
            });
        };
        self.save_config(target.config, expected, changer, AUDIT_CONFIG_ROLLBACK)
            .await
    }

    /// Saves `next` as the version after `expected` (durable), makes it live, then audits
    /// it. A change whose idempotency key is already in the audit log is answered with what
    /// it saved then, and not applied again (a retry after a shard move lands on a fresh
    /// actor that never saw the first try).
    /// Refuses a change that brings the config past what the guild's plan allows (one key
    /// read, on a config change only). A config already past it (after a downgrade) is kept,
    /// and a change that does not grow it is allowed.
    async fn check_plan(
        &self,
        before: &GuildConfig,
        next: &GuildConfig,
    ) -> Result<(), GuildCallError> {
        let rules = next.automod.rules.len();
        let categories = next.tickets.categories.len();
        let more_rules = rules > before.automod.rules.len();
        let more_categories = categories > before.tickets.categories.len();
        if !more_rules && !more_categories {
            return Ok(());
        }
        let plan = guild_plan(
            self.services.store.as_ref(),
            self.guild_id.get(),
            Timestamp::now(),
        )
        .await
        .map_err(|err| unavailable(&err))?;
        let (limits, premium) = (plan.limits(), Plan::Premium.limits());
        let over = |what: &str, given: usize, allowed: u32, premium: u32| {
            (given > allowed as usize).then(|| GuildCallError::Invalid {
                message: format!(
                    "The {} plan allows {allowed} {what} ({given} given){}.",
                    plan.name(),
                    premium_allows(plan, premium)
                ),
            })
        };
        if more_rules
            && let Some(refused) = over(
                "automod rules",
                rules,
                limits.automod_rules,
                premium.automod_rules,
            )
        {
            return Err(refused);
        }
        if more_categories
            && let Some(refused) = over(
                "ticket categories",
                categories,
                limits.ticket_categories,
                premium.ticket_categories,
            )
        {
            return Err(refused);
        }
        Ok(())
    }

    /// Refuses an announcement channel that the node cache shows is not a text or
    /// announcement channel of this guild. Without channels cached the choice is taken, and
    /// a channel Discord does not know is reported when an announcement is delivered.
    fn check_announce_channel(&self, channel: Option<u64>) -> Result<(), GuildCallError> {
        let Some(channel) = channel.and_then(Id::new_checked) else {
            return Ok(());
        };
        let usable = self.io().may_announce_in(channel);
        if usable {
            Ok(())
        } else {
            Err(GuildCallError::Invalid {
                message: "The announcement channel must be a text or announcement channel of this server."
                    .to_owned(),
            })
        }
    }

    async fn index_opt_in(&self, channel: Option<u64>) -> Result<(), GuildCallError> {
        let guild_id = self.guild_id.get();
        let counts = self.services.shard_count.counts();
        crate::announcements::index_opt_in(self.services.store.as_ref(), guild_id, &counts, channel)
            .await
            .map_err(|err| {
                tracing::error!(%guild_id, error = %err, "cannot index the announcement opt-in");
                unavailable(&err)
            })
    }

    pub(super) async fn save_config(
        &mut self,
        next: GuildConfig,
        expected: u64,
        changer: Changer,
        action: &'static str,
    ) -> Result<VersionedConfig, GuildCallError> {
        let before = self.read_config().await?;
        if expected != before.version {
            if let Some(key) = &changer.idempotency_key
                && let Some(applied) = self.applied_under(key).await
            {
                return Ok(applied);
            }
            return Err(GuildCallError::Conflict {
                current: before.version,
            });
        }
        let guild_id = self.guild_id.get();
        self.check_plan(&before.config, &next).await?;
        let opt_in_changed = next.announce_channel != before.config.announce_channel;
        if opt_in_changed {
            self.check_announce_channel(next.announce_channel)?;
        }
        // The per-shard index of opt-ins is written before a config that opts in and after
        // one that opts out, so it always holds every guild that opted in; a stale entry is
        // skipped at delivery, where the config is read again.
        if opt_in_changed && next.announce_channel.is_some() {
            self.index_opt_in(next.announce_channel).await?;
        }
        let version = match self
            .services
            .store
            .save(guild_id, before.version, &next)
            .await
        {
            Ok(version) => version,
            Err(StorageError::Conflict { current, .. }) => {
                // Saved elsewhere meanwhile (another node): reload next time.
                self.config = None;
                return Err(GuildCallError::Conflict { current });
            }
            Err(err) => {
                tracing::error!(%guild_id, error = %err, "cannot save guild config");
                return Err(unavailable(&err));
            }
        };
        if opt_in_changed && next.announce_channel.is_none() {
            // The change is saved; a stale index entry only costs a skipped delivery.
            let _ = self.index_opt_in(None).await;
        }
        let after = VersionedConfig {
            version,
            config: next,
        };
        self.set_config(after.clone()).await;
        self.features_on_config_saved(&before.config).await;
        let details = ConfigAuditDetails {
            source: changer.source,
            idempotency_key: changer.idempotency_key,
            before,
            after: after.clone(),
        };
        let entry = AuditEntry {
            guild_id,
            at: Timestamp::now(),
            // One entry per version: a re-append of the same change overwrites itself.
            id: version,
            actor_id: changer.user_id.unwrap_or(0),
            target_id: None,
            action: action.to_owned(),
            details: serde_json::to_string(&details).expect("audit details serialise"),
        };
        if let Err(err) = self.services.store.append_audit(&[entry]).await {
            // The change is durable and live; only its record is missing, loudly.
            counter!(AUDIT_FAILURES).increment(1);
            tracing::error!(%guild_id, version, error = %err, "config change not audited");
        }
        Ok(after)
    }

    /// Tells the features that a new config is live, and carries out what they ask.
    async fn features_on_config_saved(&mut self, before: &GuildConfig) {
        let plan = self.plan().await;
        let io = self.io();
        let Some(config) = self.config.as_ref() else {
            return;
        };
        for (index, feature) in crate::features::all().iter().enumerate() {
            let mut ctx = Ctx::new(config, plan, io.clone(), &mut self.feature_states[index]);
            let effects = feature.on_config_saved(&mut ctx, before);
            super::effects::carry_out(&io, None, effects);
        }
    }

    /// The config a change with idempotency key `key` saved, if the audit log has it.
    async fn applied_under(&self, key: &str) -> Option<VersionedConfig> {
        let now = Timestamp::now();
        let from = Timestamp(now.0.saturating_sub(KEY_LOOKBACK.as_millis() as u64));
        let entries = self
            .services
            .store
            .list_audit(
                self.guild_id.get(),
                from,
                Timestamp(now.0 + 1),
                KEY_LOOKBACK_ENTRIES,
            )
            .await
            .ok()?;
        entries
            .iter()
            .rev()
            .filter(|entry| {
                entry.action == AUDIT_CONFIG_CHANGE || entry.action == AUDIT_CONFIG_ROLLBACK
            })
            .filter_map(|entry| serde_json::from_str::<ConfigAuditDetails>(&entry.details).ok())
            .find(|details| details.idempotency_key.as_deref() == Some(key))
            .map(|details| details.after)
    }
}

/// A config from outside Discord, checked ([`crate::commands::validate`]) on a blocking
/// thread: checking automod's rules compiles them, too costly for the actor's thread.
async fn validate_off_thread(config: GuildConfig) -> Result<GuildConfig, String> {
    tokio::task::spawn_blocking(move || crate::commands::validate(&config))
        .await
        .unwrap_or_else(|err| Err(format!("the config could not be checked: {err}")))
}

fn unavailable(err: &StorageError) -> GuildCallError {
    GuildCallError::Unavailable {
        message: err.to_string(),
    }
}

fn rest_unavailable(err: &RestError) -> GuildCallError {
    GuildCallError::Unavailable {
        message: format!("discord: {err}"),
    }
}

/// The guild as this node's cache has it; channels from Discord when the node does not
/// cache them.
async fn summary(services: &Services, guild_id: u64) -> Result<GuildResponse, GuildCallError> {
    let id = Id::new(guild_id);
    let cache = &services.cache;
    let (name, icon, owner_id, member_count) = {
        let Some(guild) = cache.guild(id) else {
            return Err(GuildCallError::BotNotInGuild);
        };
        (
            guild.name().to_owned(),
            guild.icon().map(ToString::to_string),
            guild.owner_id().get(),
            guild.member_count(),
        )
    };
    let mut roles: Vec<RoleSummary> = cache
        .guild_roles(id)
        .map(|ids| {
            ids.iter()
                .filter_map(|&role| cache.role(role))
                .map(|role| RoleSummary {
                    id: role.id.get(),
                    name: role.name.clone(),
                    color: role.colors.primary_color,
                    position: role.position,
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort_by(|a, b| b.position.cmp(&a.position).then(a.id.cmp(&b.id)));
    let channels: Vec<Channel> = if services
        .runtime
        .cache_resources
        .contains(ResourceType::CHANNEL)
    {
        cache
            .guild_channels(id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|&channel| cache.channel(channel).map(|c| c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        let http = services.replies.http();
        let request = http
            .guild_channels(id)
            .try_into_request()
            .expect("a guild channels request is valid");
        let reply = services
            .replies
            .rest()
            .send("guild_channels", request)
            .await
            .map_err(|err| rest_unavailable(&err))?;
        reply.model().map_err(|err| rest_unavailable(&err))?
    };
    let mut channels: Vec<ChannelSummary> = channels
        .into_iter()
        .map(|channel| ChannelSummary {
            id: channel.id.get(),
            name: channel.name.unwrap_or_default(),
            kind: channel.kind.into(),
            position: channel.position.unwrap_or(0),
            parent_id: channel.parent_id.map(Id::get),
        })
        .collect();
    channels.sort_by_key(|channel| (channel.position, channel.id));
    Ok(GuildResponse::Summary(GuildSummary {
        guild_id,
        name,
        icon,
        owner_id,
        member_count,
        channels,
        roles,
        shard_id: protonn_storage::shard_of(guild_id, services.shard_count.get()),
        node: services.node_name.clone(),
    }))
}

/// The member's permissions from the cache, their roles fetched from Discord when the
/// cache does not keep members.
async fn permissions(
    services: &Services,
    guild_id: u64,
    user_id: u64,
    staff_roles: &[u64],
) -> Result<MemberAccess, GuildCallError> {
    let Some(user) = Id::new_checked(user_id) else {
        return Err(GuildCallError::Invalid {
            message: "user id 0".to_owned(),
        });
    };
    let id = Id::new(guild_id);
    let cache = &services.cache;
    let owner_id = match cache.guild(id) {
        Some(guild) => guild.owner_id().get(),
        None => return Err(GuildCallError::BotNotInGuild),
    };
    let cached_roles = (owner_id != user_id)
        .then(|| cache.member(id, user).map(|member| member.roles().to_vec()))
        .flatten();
    let roles: Vec<u64> = match cached_roles {
        Some(roles) => roles.into_iter().map(Id::get).collect(),
        // The owner needs no roles: they have every permission.
        None if owner_id == user_id => Vec::new(),
        None => {
            let request = services
                .replies
                .http()
                .guild_member(id, user)
                .try_into_request()
                .expect("a guild member request is valid");
            match services.replies.rest().send("guild_member", request).await {
                Ok(reply) => {
                    let member: Member = reply.model().map_err(|err| rest_unavailable(&err))?;
                    member.roles.into_iter().map(Id::get).collect()
                }
                Err(RestError::Status { status: 404, body })
                    if discord_code(&body) == Some(UNKNOWN_MEMBER) =>
                {
                    return Ok(no_access());
                }
                Err(err) => return Err(rest_unavailable(&err)),
            }
        }
    };
    Ok(member_access(
        guild_id,
        owner_id,
        user_id,
        &roles,
        |role| {
            cache
                .role(Id::new_checked(role)?)
                .map(|role| role.permissions)
        },
        staff_roles,
    ))
}

/// The `code` of a Discord JSON error body.
fn discord_code(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("code")?
        .as_u64()
}
