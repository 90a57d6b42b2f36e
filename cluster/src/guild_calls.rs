//! Guild calls across a cluster: each node serves `Guilds` (gRPC) for the shards it runs;
//! callers route guild → shard → node from the shard map the leader publishes, cache it,
//! and ask again when a call finds the shard elsewhere or moving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use protonn_actors::metrics::record_guild_call;
use protonn_actors::{GuildCall, GuildCallError, GuildCalls, GuildResponse, LocalGuildCalls};
use protonn_shard::SupervisorMsg;
use protonn_storage::shard_of;
use ractor::ActorRef;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::agent::Link;
use crate::grpc::{self, ClusterTls, ClusterToken, RequireToken, Scope, WithToken, pb};

/// How often a node tells the leader where it serves guild calls: a new leader knows every
/// node's address within this.
pub(crate) const ADVERTISE_EVERY: Duration = Duration::from_secs(2);
/// First pause before asking again for a moving shard; doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_millis(25);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// Time to open a connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A routed call's JSON is small (a config, a summary of a few hundred channels).
const MAX_CALL_MESSAGE: usize = 4 * 1024 * 1024;

type Answer = Result<GuildResponse, GuildCallError>;

/// A node's `Guilds` service: calls for the shards it runs go to their actors; others are
/// answered `Moving`, so the caller asks the leader where the shard is now.
pub(crate) struct GuildsService {
    pub(crate) calls: LocalGuildCalls,
    pub(crate) supervisor: ActorRef<SupervisorMsg>,
}

impl GuildsService {
    /// Whether a shard running here has the guild, of whichever set (a resharding may have
    /// changed the count since this node started).
    async fn runs_shard_of(&self, guild_id: u64) -> bool {
        ractor::call_t!(self.supervisor, SupervisorMsg::Statuses, 5_000)
            .unwrap_or_default()
            .iter()
            .any(|status| {
                status.running && status.shard_id == shard_of(guild_id, status.shard_count)
            })
    }

    async fn answer(&self, call: GuildCall) -> Answer {
        let guild_id = call.guild_id;
        if guild_id != 0 && !self.runs_shard_of(guild_id).await {
            return Err(GuildCallError::Moving);
        }
        let answer = self.calls.call_unrecorded(call).await;
        // A shard drained meanwhile took its guilds out of the cache: that is a move, not a
        // guild the bot left.
        if answer == Err(GuildCallError::BotNotInGuild) && !self.runs_shard_of(guild_id).await {
            return Err(GuildCallError::Moving);
        }
        answer
    }
}

#[tonic::async_trait]
impl pb::guilds_server::Guilds for GuildsService {
    async fn call(
        &self,
        request: Request<pb::GuildCallRequest>,
    ) -> Result<Response<pb::GuildCallReply>, Status> {
        let call: GuildCall = serde_json::from_str(&request.into_inner().call_json)
            .map_err(|err| Status::invalid_argument(format!("not a guild call: {err}")))?;
        let answer = self.answer(call).await;
        let answer_json = serde_json::to_string(&answer).expect("answers serialise");
        Ok(Response::new(pb::GuildCallReply { answer_json }))
    }
}

/// Serves `Guilds` on `listener` until `shutdown`, to callers with the dashboard's token
/// (none when `web_token` is `None`: a node's own token may not change guilds), over mutual
/// TLS when configured.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    service: GuildsService,
    web_token: Option<&ClusterToken>,
    tls: Option<ClusterTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let service = pb::guilds_server::GuildsServer::new(service)
        .max_decoding_message_size(MAX_CALL_MESSAGE)
        .max_encoding_message_size(MAX_CALL_MESSAGE);
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        RequireToken::default().with(Scope::Web, web_token),
    );
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            builder = match builder.tls_config(tls.server()) {
                Ok(builder) => builder,
                Err(err) => {
                    tracing::error!(error = %err, "guild calls not served: bad TLS settings");
                    return;
                }
            };
        }
        let served = builder
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "guild call service failed");
        }
    })
}

/// Tells the leader, now and every [`ADVERTISE_EVERY`], where this node serves guild calls.
pub(crate) async fn advertise(link: Arc<Link>, address: String) {
    let mut tick = tokio::time::interval(ADVERTISE_EVERY);
    loop {
        tick.tick().await;
        let request = pb::AdvertiseRequest {
            node_name: link.node_name().to_owned(),
            guild_address: address.clone(),
            session_key: link.session_key(),
        };
        let advertised = match link.directory_client().await {
            Ok(mut client) => client.advertise(request).await.map(|_| ()),
            Err(err) => Err(Status::unavailable(err)),
        };
        if let Err(status) = advertised {
            tracing::debug!(error = %status, "guild address not advertised; trying again");
            link.next_coordinator(Some(&status));
        }
    }
}

/// The shard map as a caller caches it.
#[derive(Clone, Debug)]
struct ShardMap {
    shard_count: u32,
    /// By shard id: the node address, or `None` while the shard has no reachable owner.
    routes: Vec<Option<String>>,
}

impl ShardMap {
    fn from_reply(reply: pb::ShardMapReply) -> Self {
        let mut routes = vec![None; reply.shard_count as usize];
        for shard in reply.shards {
            if let Some(route) = routes.get_mut(shard.shard_id as usize)
                && !shard.moving
                && !shard.guild_address.is_empty()
            {
                *route = Some(shard.guild_address);
            }
        }
        Self {
            shard_count: reply.shard_count,
            routes,
        }
    }

    fn route(&self, guild_id: u64) -> Option<&str> {
        self.routes
            .get(shard_of(guild_id, self.shard_count) as usize)?
            .as_deref()
    }
}

/// [`GuildCalls`] for any process of a cluster (the dashboard, the CLI, other nodes): routes
/// each call to the node running the guild's shard, retrying across a shard move until the
/// call's deadline. The idempotency key travels with every try, so a call retried on the
/// shard's new node is applied once.
pub struct ClusterGuildCalls {
    coordinators: Vec<String>,
    token: ClusterToken,
    tls: Option<ClusterTls>,
    map: Mutex<Option<ShardMap>>,
    /// Coordinator index tried first (the one that answered last).
    preferred: Mutex<usize>,
    nodes: Mutex<HashMap<String, Channel>>,
}

impl ClusterGuildCalls {
    /// `coordinators` are `http://host:port` (or `https://` with `tls`).
    pub fn new(coordinators: Vec<String>, token: ClusterToken, tls: Option<ClusterTls>) -> Self {
        Self {
            coordinators,
            token,
            tls,
            map: Mutex::new(None),
            preferred: Mutex::new(0),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    fn cached_map(&self) -> Option<ShardMap> {
        self.map.lock().expect("map poisoned").clone()
    }

    /// Asks the leader for the shard map and caches it.
    async fn refresh_map(&self) -> Result<ShardMap, GuildCallError> {
        let skip = *self.preferred.lock().expect("preferred poisoned");
        let mut last = String::from("no coordinator address configured");
        for offset in 0..self.coordinators.len() {
            let (index, connection) = match grpc::connect(
                &self.coordinators,
                skip + offset,
                &self.token,
                self.tls.as_ref(),
            )
            .await
            {
                Ok(connected) => connected,
                Err(err) => {
                    last = err;
                    continue;
                }
            };
            let mut asked = connection
                .directory()
                .shard_map(pb::ShardMapRequest {})
                .await;
            // A standby names the leader: asked at once, not after the rest of the list.
            if let Some(leader) = asked.as_ref().err().and_then(grpc::leader_hint) {
                let tls = self.tls.as_ref();
                if let Ok((_, leading)) =
                    grpc::connect(std::slice::from_ref(&leader), 0, &self.token, tls).await
                {
                    asked = leading.directory().shard_map(pb::ShardMapRequest {}).await;
                }
            }
            match asked {
                Ok(reply) => {
                    *self.preferred.lock().expect("preferred poisoned") = index;
                    let map = ShardMap::from_reply(reply.into_inner());
                    *self.map.lock().expect("map poisoned") = Some(map.clone());
                    return Ok(map);
                }
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    return Err(GuildCallError::Unavailable {
                        message: "the coordinator refused these credentials".to_owned(),
                    });
                }
                Err(status) => last = status.message().to_owned(),
            }
        }
        Err(GuildCallError::Unavailable {
            message: format!("no coordinator answered: {last}"),
        })
    }

    fn channel(&self, address: &str) -> Result<Channel, GuildCallError> {
        let mut nodes = self.nodes.lock().expect("nodes poisoned");
        if let Some(channel) = nodes.get(address) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map(|endpoint| endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
            .and_then(|endpoint| match &self.tls {
                Some(tls) => endpoint.tls_config(tls.client()),
                None => Ok(endpoint),
            })
            .map_err(|err| GuildCallError::Unavailable {
                message: format!("node address {address}: {err}"),
            })?;
        let channel = endpoint.connect_lazy();
        nodes.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// One try on one node; `Err(status)` when the node could not be asked (gone, moved).
    async fn send(&self, address: &str, call: &GuildCall) -> Result<Answer, Status> {
        let channel = self
            .channel(address)
            .map_err(|err| Status::unavailable(err.to_string()))?;
        let header = WithToken::new(&self.token).map_err(Status::unauthenticated)?;
        let mut client = pb::guilds_client::GuildsClient::with_interceptor(channel, header)
            .max_decoding_message_size(MAX_CALL_MESSAGE)
            .max_encoding_message_size(MAX_CALL_MESSAGE);
        let call_json = serde_json::to_string(call).expect("calls serialise");
        let reply = client.call(pb::GuildCallRequest { call_json }).await?;
        serde_json::from_str(&reply.into_inner().answer_json)
            .map_err(|err| Status::internal(format!("unreadable answer: {err}")))
    }

    async fn route(&self, mut call: GuildCall) -> Answer {
        let until = Instant::now() + call.deadline;
        let mut pause = RETRY_START;
        let mut map = self.cached_map();
        // What the caller sees if the deadline runs out before an answer.
        let mut pending = GuildCallError::TimedOut;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(pending);
            }
            let current = match map.take() {
                Some(map) => map,
                None => match tokio::time::timeout(left, self.refresh_map()).await {
                    Ok(Ok(map)) => map,
                    Ok(Err(err)) => {
                        pending = err;
                        tokio::time::sleep(pause.min(left)).await;
                        pause = (pause * 2).min(RETRY_MAX);
                        continue;
                    }
                    Err(_) => return Err(pending),
                },
            };
            if call.guild_id == 0 {
                return Err(GuildCallError::UnknownGuild);
            }
            let Some(address) = current.route(call.guild_id).map(str::to_owned) else {
                // Unassigned, or between owners: ask the leader again shortly.
                pending = GuildCallError::Moving;
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(RETRY_MAX);
                continue;
            };
            call.deadline = left;
            match tokio::time::timeout(left, self.send(&address, &call)).await {
                Err(_) => return Err(GuildCallError::TimedOut),
                Ok(Ok(Err(GuildCallError::Moving))) => pending = GuildCallError::Moving,
                Ok(Ok(answer)) => {
                    // Keep the map that worked for the next call.
                    *self.map.lock().expect("map poisoned") = Some(current);
                    return answer;
                }
                Ok(Err(status)) => {
                    if status.code() == tonic::Code::Unauthenticated {
                        return Err(GuildCallError::Unavailable {
                            message: "the node refused these credentials: guild calls need \
                                      the dashboard's (PROTONN_WEB_TOKEN)"
                                .to_owned(),
                        });
                    }
                    // The node is gone or not serving: its shards are moving.
                    tracing::debug!(%address, error = %status, "guild call not delivered");
                    self.nodes.lock().expect("nodes poisoned").remove(&address);
                    pending = GuildCallError::Moving;
                }
            }
            tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
}

#[async_trait]
impl GuildCalls for ClusterGuildCalls {
    async fn call(&self, call: GuildCall) -> Answer {
        let started = Instant::now();
        let request = call.request.label();
        let answer = self.route(call).await;
        record_guild_call(request, answer.as_ref().map(|_| ()), started.elapsed());
        answer
    }
}

/// Where a node serves guild calls, as others reach it: `advertise` if given, else the
/// bound address (a wildcard address is useless to others, so it must be advertised).
pub(crate) fn advertised(bound: SocketAddr, advertise: Option<&str>) -> String {
    match advertise {
        Some(address) => address.to_owned(),
        None => bound.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guild_routes_to_its_shards_node_and_nowhere_while_moving() {
        let reply = pb::ShardMapReply {
            leader_epoch: 1,
            shard_count: 2,
            shards: vec![
                pb::ShardRoute {
                    shard_id: 0,
                    guild_address: "10.0.0.1:7000".to_owned(),
                    epoch: 3,
                    moving: false,
                },
                pb::ShardRoute {
                    shard_id: 1,
                    guild_address: "10.0.0.2:7000".to_owned(),
                    epoch: 4,
                    moving: true,
                },
            ],
        };
        let map = ShardMap::from_reply(reply);
        let on_shard = |shard: u64| (1_000 * 2 + shard) << 22;
        assert_eq!(map.route(on_shard(0)), Some("10.0.0.1:7000"));
        assert_eq!(map.route(on_shard(1)), None, "moving");
        assert_eq!(shard_of(on_shard(1), 2), 1);
    }
}
