//! A client of the cluster for operators, tests and (later) the dashboard: status and drain.

use protonn_actors::ConfigChangeError;
use protonn_storage::VersionedConfig;

use crate::grpc::{self, ClusterTls, ClusterToken, pb};
use pb::guild_answer::Outcome;

pub use pb::{ClusterStatus, NodeStatus, ShardAssignment};

/// Talks to whichever of `coordinators` leads.
pub struct ClusterClient {
    coordinators: Vec<String>,
    token: ClusterToken,
    tls: Option<ClusterTls>,
}

impl ClusterClient {
    pub fn new(coordinators: Vec<String>, token: ClusterToken) -> Self {
        Self {
            coordinators,
            token,
            tls: None,
        }
    }

    /// Over mutual TLS (`https://` addresses).
    pub fn with_tls(mut self, tls: ClusterTls) -> Self {
        self.tls = Some(tls);
        self
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

    /// Changes one config key of a guild on the node running its shard: durable and live in
    /// the guild's actor when this answers, with the same errors as `Node::configure`
    /// (`Unavailable` also while the shard moves or no coordinator leads: retry).
    pub async fn configure(
        &self,
        guild_id: u64,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
    ) -> Result<VersionedConfig, ConfigChangeError> {
        let answer = self
            .ask(|mut client| async move {
                let request = pb::ConfigureRequest {
                    guild_id,
                    key: key.to_owned(),
                    value: value.to_owned(),
                    expected_version,
                };
                client
                    .configure(grpc::with_deadline(request, grpc::CALL_DEADLINE))
                    .await
                    .map(tonic::Response::into_inner)
            })
            .await
            .map_err(|status| ConfigChangeError::Unavailable(status.to_string()))?;
        match answer.outcome {
            Some(Outcome::Configured(reply)) => {
                let config = serde_json::from_str(&reply.config_json).map_err(|err| {
                    ConfigChangeError::Unavailable(format!("unreadable config: {err}"))
                })?;
                Ok(VersionedConfig {
                    version: reply.version,
                    config,
                })
            }
            Some(Outcome::Invalid(message)) => Err(ConfigChangeError::Invalid(message)),
            Some(Outcome::ConflictCurrent(current)) => Err(ConfigChangeError::Conflict { current }),
            Some(Outcome::Unavailable(message)) => Err(ConfigChangeError::Unavailable(message)),
            None => Err(ConfigChangeError::Unavailable("empty answer".to_owned())),
        }
    }

    /// Tries each coordinator in turn; a standby's `Unavailable` sends it to the next.
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
                Err(status) if status.code() == tonic::Code::Unavailable => last = status,
                answer => return answer,
            }
        }
        Err(last)
    }
}
