use std::sync::Arc;
use std::time::Instant;

use protonn_actors::{
    CallSource, Caller, GuildCall, GuildCallError, GuildCalls, GuildRequest, GuildResponse,
};
use protonn_storage::{AuditRepo, WebSessionRepo};

use crate::crypto::Sealer;
use crate::discord::Discord;
use crate::{WebConfig, WebError, metrics};

/// Everything a handler needs, shared by all requests.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<WebConfig>,
    /// Dashboard sessions: the web's own table (ScyllaDB, or a redb file of its own).
    pub(crate) sessions: Arc<dyn WebSessionRepo>,
    /// The guilds' audit log, read-only: written by the guild actors.
    pub(crate) audit: Arc<dyn AuditRepo>,
    pub(crate) guilds: Arc<dyn GuildCalls>,
    pub(crate) discord: Discord,
    pub(crate) sealer: Arc<Sealer>,
}

impl AppState {
    pub fn new(
        config: WebConfig,
        sessions: Arc<dyn WebSessionRepo>,
        audit: Arc<dyn AuditRepo>,
        guilds: Arc<dyn GuildCalls>,
    ) -> Result<Self, WebError> {
        config.validate()?;
        let sealer = Sealer::new(&config.token_key)?;
        Ok(Self {
            discord: Discord::new(&config),
            config: Arc::new(config),
            sessions,
            audit,
            guilds,
            sealer: Arc::new(sealer),
        })
    }

    /// A guild call on behalf of `user_id`, measured.
    pub(crate) async fn call(
        &self,
        user_id: u64,
        guild_id: u64,
        request: GuildRequest,
        idempotency_key: Option<String>,
    ) -> Result<GuildResponse, WebError> {
        let kind = kind(&request);
        let started = Instant::now();
        let result = self
            .guilds
            .call(GuildCall {
                guild_id,
                caller: Caller {
                    user_id: Some(user_id),
                    source: CallSource::Dashboard,
                },
                idempotency_key,
                deadline: self.config.guild_call_deadline,
                request,
            })
            .await;
        metrics::guild_call(
            kind,
            started.elapsed(),
            result.as_ref().err().map(error_kind),
        );
        result.map_err(WebError::from)
    }
}

fn kind(request: &GuildRequest) -> &'static str {
    match request {
        GuildRequest::ReadConfig => "read_config",
        GuildRequest::ChangeConfig { .. } => "change_config",
        GuildRequest::ConfigHistory => "config_history",
        GuildRequest::RollbackConfig { .. } => "rollback_config",
        GuildRequest::Summary => "summary",
        GuildRequest::MemberPermissions { .. } => "member_permissions",
    }
}

fn error_kind(error: &GuildCallError) -> &'static str {
    match error {
        GuildCallError::UnknownGuild => "unknown_guild",
        GuildCallError::BotNotInGuild => "bot_not_in_guild",
        GuildCallError::Moving => "moving",
        GuildCallError::TimedOut => "timed_out",
        GuildCallError::Conflict { .. } => "conflict",
        GuildCallError::Invalid { .. } => "invalid",
        GuildCallError::Forbidden { .. } => "forbidden",
        GuildCallError::Unavailable { .. } => "unavailable",
    }
}
