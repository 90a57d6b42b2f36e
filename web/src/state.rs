use std::sync::Arc;

use protonn_actors::{CallSource, Caller, GuildCall, GuildCalls, GuildRequest, GuildResponse};
use protonn_storage::{AuditRepo, WebSessionRepo};

use crate::crypto::Sealer;
use crate::discord::Discord;
use crate::{WebConfig, WebError};

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

    /// A guild call on behalf of `user_id` (counted by the `GuildCalls` implementation).
    pub(crate) async fn call(
        &self,
        user_id: u64,
        guild_id: u64,
        request: GuildRequest,
        idempotency_key: Option<String>,
    ) -> Result<GuildResponse, WebError> {
        self.guilds
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
            .await
            .map_err(WebError::from)
    }
}
