use std::sync::Arc;

use protonn_actors::{CallSource, Caller, GuildCall, GuildCalls, GuildRequest, GuildResponse};
use protonn_storage::{AuditRepo, Store, WebSessionRepo};

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
    /// The privacy centre's requests, flags and exports, and (where the store allows it:
    /// not a cluster node's credentials) export and erasure themselves.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) guilds: Arc<dyn GuildCalls>,
    pub(crate) discord: Discord,
    pub(crate) sealer: Arc<Sealer>,
}

impl AppState {
    /// `store` holds the dashboard's sessions (ScyllaDB, the leader's store, or the node's
    /// own); the audit log is read from it.
    pub fn new(
        config: WebConfig,
        store: Arc<dyn Store>,
        guilds: Arc<dyn GuildCalls>,
    ) -> Result<Self, WebError> {
        config.validate()?;
        let sealer = Sealer::new(&config.token_key)?;
        Ok(Self {
            discord: Discord::new(&config),
            config: Arc::new(config),
            sessions: Arc::clone(&store) as Arc<dyn WebSessionRepo>,
            audit: Arc::clone(&store) as Arc<dyn AuditRepo>,
            store,
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
