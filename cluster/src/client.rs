//! A client of the cluster for operators, tests and the dashboard: status, drain and guild
//! calls.

use std::sync::Arc;
use std::time::Duration;

use protonn_actors::{CallSource, Caller, ConfigChangeError, GuildCalls, change_config_key};
use protonn_storage::VersionedConfig;

use crate::grpc::{self, ClusterTls, ClusterToken, pb};
use crate::guild_calls::ClusterGuildCalls;

/// Budget of one [`ClusterClient::configure`], retries across a shard move included.
const CONFIGURE_DEADLINE: Duration = Duration::from_secs(10);

pub use pb::{ClusterStatus, NodeStatus, ReshardStatus, ShardAssignment};

/// Talks to whichever of `coordinators` leads.
pub struct ClusterClient {
    coordinators: Vec<String>,
    token: ClusterToken,
    tls: Option<ClusterTls>,
    /// Routed guild calls, keeping their shard map between calls.
    guilds: Arc<ClusterGuildCalls>,
}

impl ClusterClient {
    pub fn new(coordinators: Vec<String>, token: ClusterToken) -> Self {
        let guilds = Arc::new(ClusterGuildCalls::new(
            coordinators.clone(),
            token.clone(),
            None,
        ));
        Self {
            coordinators,
            token,
            tls: None,
            guilds,
        }
    }

    /// Over mutual TLS (`https://` addresses).
    pub fn with_tls(mut self, tls: ClusterTls) -> Self {
        self.guilds = Arc::new(ClusterGuildCalls::new(
            self.coordinators.clone(),
            self.token.clone(),
            Some(tls.clone()),
        ));
        self.tls = Some(tls);
        self
    }

    /// Guild calls to any guild of the cluster, routed to the node running its shard.
    pub fn guild_calls(&self) -> Arc<dyn GuildCalls> {
        Arc::clone(&self.guilds) as Arc<dyn GuildCalls>
    }

    /// Nodes and shard owners as the leader sees them.
    pub async fn status(&self) -> Result<ClusterStatus, tonic::Status> {
        self.ask(|mut client| async move {
            client
                .status(grpc::with_deadline(
                    pb::StatusRequest {},
                    grpc::CALL_DEADLINE,
                ))
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Moves every shard off the node `name`; answers with how many moved.
    pub async fn drain(&self, name: &str) -> Result<u32, tonic::Status> {
        self.ask(|mut client| async move {
            let request = pb::DrainRequest {
                name: name.to_owned(),
                session_key: String::new(),
            };
            client
                .drain_node(grpc::with_deadline(request, grpc::DRAIN_DEADLINE))
                .await
                .map(|reply| reply.into_inner().shards_moved)
        })
        .await
    }

    /// Lifts the REST halt that a 401 from Discord put on every node (after the token was
    /// fixed); answers with the bot's REST standing.
    pub async fn resume_rest(&self) -> Result<pb::RestStatus, tonic::Status> {
        self.ask(|mut client| async move {
            client
                .resume_rest(grpc::with_deadline(
                    pb::ResumeRestRequest {},
                    grpc::CALL_DEADLINE,
                ))
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Starts a resharding of the cluster to `shards` shards (operator credentials).
    pub async fn reshard(&self, shards: u32) -> Result<pb::ReshardStatus, tonic::Status> {
        self.ask(|mut client| async move {
            client
                .reshard(grpc::with_deadline(
                    pb::ReshardRequest { shards },
                    grpc::CALL_DEADLINE,
                ))
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// The running or last resharding (operator credentials).
    pub async fn reshard_progress(&self) -> Result<pb::ReshardStatus, tonic::Status> {
        self.ask(|mut client| async move {
            client
                .reshard_progress(grpc::with_deadline(
                    pb::ReshardProgressRequest {},
                    grpc::CALL_DEADLINE,
                ))
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Gives up the running resharding; the old set keeps running (operator credentials).
    pub async fn abort_reshard(&self) -> Result<pb::ReshardStatus, tonic::Status> {
        self.ask(|mut client| async move {
            client
                .abort_reshard(grpc::with_deadline(
                    pb::AbortReshardRequest {},
                    grpc::CALL_DEADLINE,
                ))
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Changes one config key of a guild (the operator's CLI): a guild call routed to the
    /// node running its shard, durable and live in the guild's actor when this answers,
    /// with the same errors as `Node::configure`. Without `expected_version` the change
    /// applies to the version current when it is read.
    pub async fn configure(
        &self,
        guild_id: u64,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
    ) -> Result<VersionedConfig, ConfigChangeError> {
        let caller = Caller {
            user_id: None,
            source: CallSource::Cli,
        };
        let change = (key, value);
        change_config_key(
            self.guilds.as_ref(),
            caller,
            guild_id,
            change,
            expected_version,
            CONFIGURE_DEADLINE,
        )
        .await
    }

    /// Tries each coordinator in turn; a standby's `Unavailable` sends it to the leader the
    /// standby names, if it names one, else to the next address.
    async fn ask<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: Fn(grpc::Client) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut last = tonic::Status::unavailable("no coordinator address configured");
        for skip in 0..self.coordinators.len() {
            let connected = grpc::connect(&self.coordinators, skip, &self.token, self.tls.as_ref());
            let client = match connected.await {
                Ok((_, connection)) => connection.coordinator(),
                Err(err) => {
                    last = tonic::Status::unavailable(err);
                    continue;
                }
            };
            match call(client).await {
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    let Some(leader) = grpc::leader_hint(&status) else {
                        last = status;
                        continue;
                    };
                    let tls = self.tls.as_ref();
                    match grpc::connect(std::slice::from_ref(&leader), 0, &self.token, tls).await {
                        Ok((_, connection)) => match call(connection.coordinator()).await {
                            Err(status) if status.code() == tonic::Code::Unavailable => {
                                last = status;
                            }
                            answer => return answer,
                        },
                        Err(err) => last = tonic::Status::unavailable(err),
                    }
                }
                answer => return answer,
            }
        }
        Err(last)
    }
}
