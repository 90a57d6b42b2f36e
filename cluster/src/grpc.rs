//! The cluster's gRPC plumbing: generated types, the shared cluster token, and the client
//! that finds the leading coordinator.

use std::fmt;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

#[allow(unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("protonn.cluster.v1");
}

pub(crate) use pb::coordinator_client::CoordinatorClient;
pub(crate) use pb::guild_directory_client::GuildDirectoryClient;
pub(crate) use pb::storage_client::StorageClient;

/// Largest message either side accepts: a shard's cached guilds travel in one (about a
/// kilobyte per guild, 2,500 guilds per shard at Discord's usual sharding).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Time to open a connection to a coordinator; a standby that is not leading does not
/// listen, so a refusal comes at once and the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on every coordinator connection, idle or not, and how long an unanswered
/// one may take before the connection is dropped: a peer frozen or cut off silently is
/// noticed within 3 s, not after the kernel's TCP timeouts (minutes).
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Deadline of a unary call (registration, a drain asked by a node, a store call): a
/// coordinator that does not answer in this long is treated as gone.
pub(crate) const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Deadline of an identify permit: the coordinator holds the call until the shard's bucket
/// has a window, which at 2,500 shards and max_concurrency 16 is up to 157 windows of 5 s.
/// Deadline of a drain: it answers once every shard of the node has been handed over.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(10 * 60);
pub(crate) const IDENTIFY_DEADLINE: Duration = Duration::from_secs(20 * 60);

/// Metadata key of a standby's `Unavailable`: the gRPC address of the coordinator that
/// leads, for the caller to go to at once.
pub(crate) const LEADER_HINT: &str = "protonn-leader";
/// Metadata of every standby's answer: a coordinator is serving and a failover may be under
/// way, so the caller retries soon rather than backing off as from an unreachable one.
pub(crate) const STANDBY: &str = "protonn-standby";

/// Whether a coordinator answered as a standby.
pub(crate) fn from_standby(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.metadata().contains_key(STANDBY)
}

/// The leader a standby's answer names, if it names one.
pub(crate) fn leader_hint(status: &Status) -> Option<String> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    let address = status.metadata().get(LEADER_HINT)?.to_str().ok()?;
    (address.starts_with("http://") || address.starts_with("https://")).then(|| address.to_owned())
}

/// A request with a deadline: the client gives up after it, and the server is told.
pub(crate) fn with_deadline<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}

/// The shared secret every gRPC call carries. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct ClusterToken(String);

impl ClusterToken {
    /// An empty token is refused: it would let anyone in.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into();
        (!token.trim().is_empty()).then_some(Self(token))
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether both are the same secret (node and operator tokens must not be).
    pub fn same_as(&self, other: &ClusterToken) -> bool {
        constant_time_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(<redacted>)")
    }
}

/// Mutual TLS for the cluster's gRPC: every coordinator and node presents a certificate
/// signed by the cluster's CA and accepts only peers that do. PEM; the key never shows in
/// `Debug`.
#[derive(Clone)]
pub struct ClusterTls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterTls { key: <redacted>, .. }")
    }
}

impl ClusterTls {
    fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert, &self.key)
    }

    fn ca(&self) -> tonic::transport::Certificate {
        tonic::transport::Certificate::from_pem(&self.ca)
    }

    /// A coordinator's side: its identity, and client certificates required.
    pub(crate) fn server(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(self.ca())
    }

    /// A node's (or client's) side: the cluster's CA, and its own identity.
    pub(crate) fn client(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(self.ca())
            .identity(self.identity())
    }
}

/// Whose credentials a call carries, each a different secret:
/// - a node's (`PROTONN_CLUSTER_TOKEN`): join, heartbeat, identify, the store the bot uses,
///   drain itself;
/// - the dashboard's (`PROTONN_WEB_TOKEN`): guild calls (the only way to change a guild), the
///   directory, the store the dashboard uses, operators' campaigns from the admin page;
/// - an operator's (`PROTONN_OPERATOR_TOKEN`): anything at a coordinator, including draining
///   any node, resuming REST and the store calls only the leader makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Node,
    Web,
    Operator,
}

impl Scope {
    /// The scope the interceptor recorded; node (the least) when none was.
    pub(crate) fn of<T>(request: &Request<T>) -> Self {
        request
            .extensions()
            .get::<Scope>()
            .copied()
            .unwrap_or(Scope::Node)
    }

    /// Refuses `what` to anything but operator credentials, as `PermissionDenied`.
    pub(crate) fn require_operator(self, what: &str) -> Result<(), Status> {
        self.require(&[Scope::Operator], what)
    }

    /// Refuses `what` (a node's own business) to the dashboard's credentials.
    pub(crate) fn require_node(self, what: &str) -> Result<(), Status> {
        self.require(&[Scope::Node, Scope::Operator], what)
    }

    /// Refuses `what` (changing guilds, operators' actions on the admin page) to a node's
    /// credentials.
    pub(crate) fn require_dashboard(self, what: &str) -> Result<(), Status> {
        self.require(&[Scope::Web, Scope::Operator], what)
    }

    fn require(self, allowed: &[Scope], what: &str) -> Result<(), Status> {
        if allowed.contains(&self) {
            return Ok(());
        }
        let needed: Vec<&str> = allowed.iter().map(|scope| scope.credentials()).collect();
        Err(Status::permission_denied(format!(
            "{what} needs {}, not {}",
            needed.join(" or "),
            self.credentials()
        )))
    }

    fn credentials(self) -> &'static str {
        match self {
            Scope::Node => "node credentials (PROTONN_CLUSTER_TOKEN)",
            Scope::Web => "the dashboard's credentials (PROTONN_WEB_TOKEN)",
            Scope::Operator => "operator credentials (PROTONN_OPERATOR_TOKEN)",
        }
    }
}

/// Server side: rejects a call without a token, or with one it does not know, as
/// `Unauthenticated`, and records in the request's extensions which [`Scope`] the token it
/// carries has.
#[derive(Clone, Default)]
pub(crate) struct RequireToken {
    accepted: Vec<(Vec<u8>, Scope)>,
}

impl RequireToken {
    /// Accepts `token` (when there is one) as `scope`.
    pub(crate) fn with(mut self, scope: Scope, token: Option<&ClusterToken>) -> Self {
        if let Some(token) = token {
            self.accepted.push((token.bearer().into_bytes(), scope));
        }
        self
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes().to_vec())
            .unwrap_or_default();
        // Every token is compared, so the time taken does not tell which one matched.
        let scope = self
            .accepted
            .iter()
            .fold(None, |found, (token, scope)| {
                if constant_time_eq(&presented, token) {
                    Some(*scope)
                } else {
                    found
                }
            })
            .ok_or_else(|| Status::unauthenticated("missing or wrong cluster token"))?;
        request.extensions_mut().insert(scope);
        Ok(request)
    }
}

/// Compares without leaking, through timing, how much of the token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Client side: adds the token to every call.
#[derive(Clone)]
pub(crate) struct WithToken {
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl WithToken {
    pub(crate) fn new(token: &ClusterToken) -> Result<Self, String> {
        let header = token
            .bearer()
            .parse()
            .map_err(|_| "the cluster token must be printable ASCII".to_owned())?;
        Ok(Self { header })
    }
}

impl Interceptor for WithToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, WithToken>;
pub(crate) type Client = CoordinatorClient<Authed>;
pub(crate) type Storage = StorageClient<Authed>;
pub(crate) type Directory = GuildDirectoryClient<Authed>;

/// A coordinator connection whose calls carry the token.
#[derive(Clone)]
pub(crate) struct Connection {
    channel: Channel,
    token: WithToken,
}

impl Connection {
    pub(crate) fn coordinator(&self) -> Client {
        CoordinatorClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub(crate) fn directory(&self) -> Directory {
        GuildDirectoryClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub(crate) fn storage(&self) -> Storage {
        StorageClient::with_interceptor(self.channel.clone(), self.token.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

/// Connects to the first coordinator of `addresses` (`http://host:port`) that accepts a
/// connection, starting after `skip` of them (so that retries go round the list).
pub(crate) async fn connect(
    addresses: &[String],
    skip: usize,
    token: &ClusterToken,
    tls: Option<&ClusterTls>,
) -> Result<(usize, Connection), String> {
    let header: MetadataValue<tonic::metadata::Ascii> = token
        .bearer()
        .parse()
        .map_err(|_| "the cluster token must be printable ASCII".to_owned())?;
    let mut last_error = String::from("no coordinator address configured");
    for offset in 0..addresses.len() {
        let index = (skip + offset) % addresses.len();
        let endpoint = Endpoint::from_shared(addresses[index].clone()).and_then(|endpoint| {
            let endpoint = endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true);
            match tls {
                Some(tls) => endpoint.tls_config(tls.client()),
                None => Ok(endpoint),
            }
        });
        let endpoint = match endpoint {
            Ok(endpoint) => endpoint,
            Err(err) => {
                last_error = format!("{}: {err}", addresses[index]);
                continue;
            }
        };
        match endpoint.connect().await {
            Ok(channel) => {
                let token = WithToken {
                    header: header.clone(),
                };
                return Ok((index, Connection { channel, token }));
            }
            Err(err) => last_error = format!("{}: {err}", addresses[index]),
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_presented_sets_the_scope() {
        let node = ClusterToken::new("node-secret").unwrap();
        let operator = ClusterToken::new("operator-secret").unwrap();
        assert!(!node.same_as(&operator) && node.same_as(&node.clone()));
        let with = |value: &str| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
            request
        };
        let web = ClusterToken::new("web-secret").unwrap();
        let mut coordinator = RequireToken::default()
            .with(Scope::Node, Some(&node))
            .with(Scope::Web, Some(&web))
            .with(Scope::Operator, Some(&operator));
        let scope = |request: Result<Request<()>, Status>| Scope::of(&request.unwrap());
        assert_eq!(
            scope(coordinator.call(with("Bearer node-secret"))),
            Scope::Node
        );
        assert_eq!(
            scope(coordinator.call(with("Bearer web-secret"))),
            Scope::Web
        );
        assert_eq!(
            scope(coordinator.call(with("Bearer operator-secret"))),
            Scope::Operator
        );
        // A node's guild service knows the dashboard's token only.
        let mut guilds = RequireToken::default().with(Scope::Web, Some(&web));
        for other in ["Bearer node-secret", "Bearer operator-secret", "Bearer "] {
            let refused = guilds.call(with(other)).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        // Without a token configured, nothing is accepted.
        let mut closed = RequireToken::default().with(Scope::Web, None);
        assert!(closed.call(with("Bearer web-secret")).is_err());
        assert!(Scope::Operator.require_operator("x").is_ok());
        let denied = Scope::Node.require_operator("resuming REST").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(Scope::Web.require_operator("x").is_err());
        assert!(Scope::Web.require_node("identifying").is_err());
        assert!(Scope::Node.require_node("identifying").is_ok());
        let node_configures = Scope::Node.require_dashboard("a guild call").unwrap_err();
        assert!(
            node_configures.message().contains("PROTONN_WEB_TOKEN"),
            "{node_configures:?}"
        );
        assert!(Scope::Web.require_dashboard("a guild call").is_ok());
        // Without a recorded scope, the lesser one.
        assert_eq!(Scope::of(&Request::new(())), Scope::Node);
    }

    #[test]
    fn the_token_never_shows() {
        let token = ClusterToken::new("s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(ClusterToken::new("  ").is_none());
    }

    #[test]
    fn only_the_exact_token_passes() {
        let token = ClusterToken::new("s3cret").unwrap();
        let mut check = RequireToken::default().with(Scope::Node, Some(&token));
        let with = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(value) = value {
                request
                    .metadata_mut()
                    .insert("authorization", value.parse().unwrap());
            }
            request
        };
        assert!(check.call(with(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cretx"),
            Some("s3cret"),
        ] {
            let status = check.call(with(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
