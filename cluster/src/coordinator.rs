//! `protonn coordinator`: membership, shard assignment, lossless handoff and the
//! cluster-wide identify scheduler, served over gRPC.
//!
//! Leadership is the `coordinator` lease in the store, whose epoch grows with every new
//! leader; every instruction carries it, and nodes refuse instructions from an older one,
//! and the store refuses assignments from an older one (`claim_assignments`). On the
//! embedded store the file lock comes first: a standby process waits to open the data
//! directory, which the OS frees when the leader dies, and the leader serves the store to
//! the nodes. On a shared store (ScyllaDB) every process opens the store itself, and the
//! lease alone elects: a leader that freezes loses it after its TTL, and on waking can
//! neither renew it nor assign a shard.
//! Until it leads, a coordinator answers every call with `Unavailable` naming the leader
//! when it knows it (`leader.rs`: "not leader, try X"), so nodes go there at once. Leader or
//! standby, it is serving, and its `/readyz` says so; `/leader` says who leads.

mod balance;
mod control;
mod directory;
mod leader;
mod reshard;
mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metrics::gauge;
use protonn_actors::rest::{GuardLimits, InvalidRequestGuard};
use protonn_shard::{BotToken, IdentifyConfig, LocalScheduler};
use protonn_storage::{ClusterRepo, EmbeddedStore, Metered, StorageError, Store, Timestamp};
use tokio::sync::{Notify, OnceCell, mpsc, oneshot};

use control::{Control, ControlSettings};
pub(crate) use leader::{Known, LeaderInfo, LeaderView};
use service::{CoordinatorService, Leading, StorageService};

use crate::grpc::{ClusterTls, ClusterToken, MAX_MESSAGE, RequireToken, Scope, pb};
use crate::metrics::{FENCING_EPOCH, LEADER};
use crate::node::{DiscordEndpoint, Sweeper, discord_transport, gateway_info, startup_rest};
use crate::{NodeError, ops, telemetry};

/// Name of the leadership lease in the store.
const LEASE: &str = "coordinator";
/// How often a standby tries to open the data directory.
const STANDBY_POLL: Duration = Duration::from_millis(200);

pub struct CoordinatorOptions {
    pub discord: DiscordEndpoint,
    /// For `GET /gateway/bot`: the shard count and the identify limits the scheduler keeps.
    pub token: BotToken,
    /// Node credentials: what nodes join with.
    pub cluster_token: ClusterToken,
    /// Operator credentials (`protonn drain`, `protonn rest-resume`): may drain any node and
    /// resume REST, which node credentials may not. Must differ from `cluster_token`.
    pub operator_token: ClusterToken,
    /// The dashboard's credentials (`protonn web`): guild lookups and the store calls the
    /// dashboard makes. `None`: no dashboard may connect. Must differ from both others.
    pub web_token: Option<ClusterToken>,
    /// Mutual TLS: nodes must present a certificate of the cluster's CA.
    pub tls: Option<ClusterTls>,
    /// Where gRPC is served; port 0 picks a free one.
    pub listen: SocketAddr,
    /// This coordinator's name in `/leader` and in standbys' hints (the pod name).
    pub name: String,
    /// Where other processes reach this coordinator's gRPC (`http://host:port`, the pod's
    /// address): what a standby tells nodes to try. `listen` as bound when `None`, which
    /// suits only a specific, reachable listen address.
    pub advertise: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; port 0 picks a free one.
    pub ops_listen: SocketAddr,
    pub store: CoordinatorStore,
    /// Retention periods of the store it opens (the policy's: `Retention::POLICY`); a shared
    /// store was opened with its own.
    pub retention: protonn_storage::Retention,
    /// Total shard count when the cluster forms; Discord's recommendation when `None`.
    /// Once formed, the count stored then is the cluster's: a different one here is
    /// refused (resharding is another operation), `None` takes the stored one.
    pub shards: Option<u32>,
    pub heartbeat_interval: Duration,
    /// A node that misses heartbeats this long is lost.
    pub failure_timeout: Duration,
    /// A node whose newest acknowledged heartbeat is this old fences itself; two thirds of
    /// `failure_timeout` when `None`. The config checks it ends, with the time to stop
    /// every shard, before `failure_timeout`.
    pub fence: Option<Duration>,
    /// Nodes to wait for before placing shards on a cold cluster (or `formation_grace`).
    pub min_nodes: usize,
    pub formation_grace: Duration,
    /// Handoffs under way at once.
    pub max_moves: usize,
    /// Time-to-live of the leadership lease; renewed every third of it.
    pub lease_ttl: Duration,
    /// Discord's global REST limit for the bot, requests per second (50 unless raised).
    pub rest_global_per_sec: f64,
}

impl CoordinatorOptions {
    /// A coordinator named "coordinator" on loopback ports the OS picks, with the
    /// configuration's default timings and no TLS: what tests and benchmarks start from,
    /// setting only what they vary.
    pub fn loopback(
        discord: DiscordEndpoint,
        token: BotToken,
        cluster_token: ClusterToken,
        operator_token: ClusterToken,
        store: CoordinatorStore,
    ) -> Self {
        let defaults = crate::config::ClusterConfig::default();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            discord,
            token,
            cluster_token,
            operator_token,
            web_token: None,
            tls: None,
            listen: loopback,
            name: "coordinator".to_owned(),
            advertise: None,
            ops_listen: loopback,
            store,
            retention: protonn_storage::Retention::POLICY,
            shards: None,
            heartbeat_interval: Duration::from_millis(defaults.heartbeat_ms),
            failure_timeout: Duration::from_millis(defaults.failure_timeout_ms),
            fence: None,
            min_nodes: defaults.min_nodes,
            formation_grace: Duration::from_millis(defaults.formation_grace_ms),
            max_moves: defaults.max_moves,
            lease_ttl: Duration::from_millis(defaults.lease_ttl_ms),
            rest_global_per_sec: crate::config::DiscordConfig::default().rest_global_per_sec,
        }
    }
}

/// Where the cluster's state lives, which decides how coordinators elect.
pub enum CoordinatorStore {
    /// A redb data directory the coordinators share: its file lock lets one process in, which
    /// then takes the lease, serves the store to the nodes over gRPC and backs it up.
    Embedded(PathBuf),
    /// A store every process opens itself (ScyllaDB): the lease alone elects, and no store
    /// call goes through the coordinator.
    Shared(Arc<dyn Store>),
}

impl CoordinatorStore {
    /// The directory the coordinators share, where the leader announces itself.
    fn data_dir(&self) -> Option<&Path> {
        match self {
            Self::Embedded(dir) => Some(dir),
            Self::Shared(_) => None,
        }
    }
}

/// A running coordinator, leading or standing by.
pub struct Coordinator {
    addr: SocketAddr,
    ops_addr: SocketAddr,
    serving: tokio::task::JoinHandle<Result<(), CoordinatorError>>,
    /// Asks `lead` to stop: a leader releases its lease first.
    stop: Arc<Notify>,
    /// Dropped with the coordinator, which stops the ops server.
    _ops_stop: oneshot::Sender<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("gRPC listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ops listener on {addr}: {source}")]
    OpsBind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("discord: {0}")]
    Discord(#[from] NodeError),
    #[error("the node, operator and dashboard tokens must be three different secrets")]
    SameTokens,
    #[error("lost the leadership: {0}")]
    Superseded(String),
    #[error(
        "discord.shards is {configured} but this cluster was formed with {stored} shards (stored); \
         resharding is not supported: set discord.shards to {stored} or leave it unset"
    )]
    ShardCountChanged { configured: u32, stored: u32 },
}

impl Coordinator {
    /// Binds the gRPC and ops listeners and serves at once; leadership is taken in the
    /// background (see the module docs). Fails only if an address cannot be bound.
    pub async fn start(options: CoordinatorOptions) -> Result<Self, CoordinatorError> {
        let web_reused = options.web_token.as_ref().is_some_and(|web| {
            web.same_as(&options.cluster_token) || web.same_as(&options.operator_token)
        });
        if options.operator_token.same_as(&options.cluster_token) || web_reused {
            return Err(CoordinatorError::SameTokens);
        }
        telemetry::install_tls_provider();
        let prometheus = telemetry::prometheus();
        crate::metrics::register();
        let (listener, addr) =
            ops::bind(options.listen)
                .await
                .map_err(|source| CoordinatorError::Bind {
                    addr: options.listen,
                    source,
                })?;
        let (ops_listener, ops_addr) =
            ops::bind(options.ops_listen)
                .await
                .map_err(|source| CoordinatorError::OpsBind {
                    addr: options.ops_listen,
                    source,
                })?;
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let advertise = options
            .advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"));
        let view = Arc::new(LeaderView::new(
            options.name.clone(),
            advertise,
            options.store.data_dir(),
        ));
        let (ops_stop, ops_stopped) = oneshot::channel::<()>();
        let ops_state = ops::OpsState {
            prometheus,
            readiness: ops::Readiness::Coordinator(Arc::clone(&view)),
        };
        tokio::spawn(ops::serve(ops_listener, ops_state, async {
            let _ = ops_stopped.await;
        }));

        let leading = Arc::new(OnceCell::new());
        let credentials = RequireToken::default()
            .with(Scope::Node, Some(&options.cluster_token))
            .with(Scope::Web, options.web_token.as_ref())
            .with(Scope::Operator, Some(&options.operator_token));
        let service = pb::coordinator_server::CoordinatorServer::new(CoordinatorService::new(
            Arc::clone(&leading),
            Arc::clone(&view),
        ))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
        let service =
            tonic::service::interceptor::InterceptedService::new(service, credentials.clone());
        let storage = pb::storage_server::StorageServer::new(StorageService::new(
            Arc::clone(&leading),
            Arc::clone(&view),
        ))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
        let storage =
            tonic::service::interceptor::InterceptedService::new(storage, credentials.clone());
        let directory = tonic::service::interceptor::InterceptedService::new(
            pb::guild_directory_server::GuildDirectoryServer::new(
                directory::DirectoryService::new(Arc::clone(&leading), Arc::clone(&view)),
            ),
            credentials,
        );
        // Small messages (heartbeats, instructions) must not wait for Nagle's algorithm: it
        // added about 40 ms to half the handoffs (B6).
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let tls = options.tls.clone();
        let stop = Arc::new(Notify::new());
        let stopping = Arc::clone(&stop);
        let serving = tokio::spawn(async move {
            // The server pings too: a frozen node's attach stream ends within seconds, so its
            // instructions are not queued for nobody.
            let mut builder = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(crate::grpc::KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(crate::grpc::KEEPALIVE_TIMEOUT));
            if let Some(tls) = &tls {
                builder = builder.tls_config(tls.server())?;
            }
            let server = builder
                .add_service(service)
                .add_service(storage)
                .add_service(directory)
                .serve_with_incoming(incoming);
            // A superseded leader stops serving at once: it must not answer another call.
            tokio::select! {
                served = server => served.map_err(Into::into),
                led = lead(options, leading, view, stopping) => led,
            }
        });
        tracing::info!(%addr, %ops_addr, "coordinator listening");
        Ok(Self {
            addr,
            ops_addr,
            serving,
            stop,
            _ops_stop: ops_stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Resolves when the coordinator stops: only when it lost its leadership or its store.
    pub async fn wait(self) -> Result<(), CoordinatorError> {
        match self.serving.await {
            Ok(result) => result,
            Err(err) => Err(CoordinatorError::Superseded(err.to_string())),
        }
    }

    /// Runs until it stops by itself (as [`Coordinator::wait`]) or `signal` resolves; then a
    /// leader releases its lease, so that a standby leads at once instead of after the
    /// lease's TTL (a rolling update's SIGTERM).
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), CoordinatorError> {
        tokio::select! {
            served = &mut self.serving => {
                return served.unwrap_or_else(|err| Err(CoordinatorError::Superseded(err.to_string())));
            }
            () = signal => {}
        }
        self.stop.notify_one();
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.serving).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(CoordinatorError::Superseded(err.to_string())),
            Err(_) => {
                tracing::warn!("the lease was not released in time; the standby waits out its TTL");
                Ok(())
            }
        }
    }
}

/// Time a stopping leader has to release its lease.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits to lead, then leads until superseded.
async fn lead(
    options: CoordinatorOptions,
    leading: Arc<OnceCell<Leading>>,
    view: Arc<LeaderView>,
    stop: Arc<Notify>,
) -> Result<(), CoordinatorError> {
    let holder = rand::random::<u64>();
    let shared = matches!(options.store, CoordinatorStore::Shared(_));
    let standby = async {
        let (store, backup) = open_store(&options.store, options.retention).await?;
        view.taking();
        loop {
            match store
                .acquire_lease(LEASE, holder, Timestamp::now(), options.lease_ttl)
                .await
            {
                Ok(lease) => return Ok::<_, CoordinatorError>((store, backup, lease)),
                // The previous leader's lease runs out within its ttl (unless it released
                // it). On the embedded store it cannot renew it, as it no longer holds the
                // store; on a shared one it renews it while alive, and says there who it is.
                Err(StorageError::LeaseHeld { .. }) => {
                    if shared {
                        view.led_by(live_leader(store.as_ref(), options.lease_ttl).await);
                    }
                    tokio::time::sleep(STANDBY_POLL).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    };
    // The backup server is dropped (the socket unserved, the store let go) when this
    // leadership ends.
    let (store, _backup, lease) = tokio::select! {
        led = standby => led?,
        () = stop.notified() => return Ok(()),
    };
    // Behind nobody any more: until this one leads, no leader is known.
    view.taking();
    let epoch = lease.epoch;
    tracing::info!(epoch, "leading the cluster");
    gauge!(FENCING_EPOCH).set(epoch as f64);

    let guard = Arc::new(InvalidRequestGuard::new(GuardLimits::default()));
    let rest = startup_rest(discord_transport(&options.discord, &options.token), guard);
    let info = gateway_info(&rest).await?;
    let limit = info.session_start_limit;
    let scheduler = LocalScheduler::start(IdentifyConfig::discord(
        limit.max_concurrency,
        limit.remaining,
        limit.total,
        Duration::from_millis(limit.reset_after),
    ));
    let shard_count = fixed_shard_count(store.as_ref(), options.shards, info.shards).await?;
    let settings = ControlSettings {
        shard_count,
        heartbeat_interval: options.heartbeat_interval,
        failure_timeout: options.failure_timeout,
        fence: options
            .fence
            .unwrap_or(options.failure_timeout * 2 / 3)
            .min(options.failure_timeout),
        min_nodes: options.min_nodes,
        formation_grace: options.formation_grace,
        max_moves: options.max_moves.max(1),
        rest_global_per_sec: options.rest_global_per_sec,
    };
    let repo: Arc<dyn ClusterRepo> = store.clone();
    let control = Control::load(Arc::clone(&repo), settings, epoch).await?;
    let (inbox_tx, inbox) = mpsc::channel(1_024);
    let leadership = Leadership::begin(Arc::clone(&view), epoch);
    if shared {
        // Standbys on a shared store name the leader from here ("not leader, try X").
        if let Err(err) = store.announce_leader(&view.me(epoch)).await {
            tracing::warn!(error = %err, "leader not announced to standbys");
        }
    }
    let _ = leading.set(Leading {
        control: inbox_tx,
        scheduler: Arc::new(scheduler),
        // Served to the nodes only when they cannot open it themselves.
        store: matches!(options.store, CoordinatorStore::Embedded(_)).then(|| store.clone()),
    });
    // The leader sweeps the store it serves; nodes of the cluster do not.
    let sweeper = Sweeper::start(store.clone(), options.retention.exports);

    let renew_every = options.lease_ttl / 3;
    let renew = async {
        loop {
            tokio::time::sleep(renew_every).await;
            repo.renew_lease(LEASE, holder, epoch, Timestamp::now(), options.lease_ttl)
                .await?;
        }
    };
    let result = tokio::select! {
        ran = control.run(inbox) => ran,
        renewed = renew => renewed,
        () = stop.notified() => {
            sweeper.stop().await;
            // Says it no longer leads before the lease lets a standby lead: never two.
            drop(leadership);
            repo.release_lease(LEASE, holder, epoch).await?;
            tracing::info!(epoch, "stopping: leadership lease released");
            return Ok(());
        }
    };
    sweeper.stop().await;
    drop(leadership);
    Err(CoordinatorError::Superseded(match result {
        Ok(()) => "the control loop ended".to_owned(),
        Err(err) => err.to_string(),
    }))
}

/// The cluster's shard count: the one stored when it formed, never Discord's recommendation
/// of the day, so that an election changes nothing under the nodes. A cluster forming now
/// stores `configured`, else `recommended`; a configured count that differs from the stored
/// one is refused.
async fn fixed_shard_count(
    store: &dyn ClusterRepo,
    configured: Option<u32>,
    recommended: u32,
) -> Result<u32, CoordinatorError> {
    let stored = match store.shard_count().await? {
        Some(stored) => stored,
        None => {
            let count = configured.unwrap_or(recommended).max(1);
            let stored = store.fix_shard_count(count).await?;
            if stored == count {
                tracing::info!(shards = count, "cluster formed: shard count fixed");
            }
            stored
        }
    };
    match configured {
        Some(configured) if configured != stored => {
            Err(CoordinatorError::ShardCountChanged { configured, stored })
        }
        _ => Ok(stored),
    }
}

/// Says this coordinator leads (the gauge, `/leader`, the standbys' hints) from when it
/// answers nodes until it is dropped: when `lead` returns, or is cancelled because the gRPC
/// server stopped.
struct Leadership(Arc<LeaderView>);

impl Leadership {
    fn begin(view: Arc<LeaderView>, epoch: u64) -> Self {
        view.leading(epoch);
        gauge!(LEADER).set(1.0);
        Self(view)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.0.stepped_down();
        gauge!(LEADER).set(0.0);
    }
}

/// The leader a standby names on a shared store: the one announced with the lease's epoch
/// (an older announcement is a dead leader's), and only while it renews the lease on time
/// (every third of `ttl`): a leader that missed a renewal may be frozen, and nodes that
/// left it must not be sent back to it while its lease runs out.
async fn live_leader(store: &dyn Store, ttl: Duration) -> Option<LeaderInfo> {
    let read = async {
        let Some(lease) = store.lease(LEASE).await? else {
            return Ok(None);
        };
        let renewed_at = lease.expires_at.saturating_sub(ttl);
        if Timestamp::now() > renewed_at.saturating_add(ttl / 3 + 2 * STANDBY_POLL) {
            return Ok(None);
        }
        let announced = store.leader_announcement().await?;
        Ok::<_, StorageError>(announced.filter(|leader| leader.epoch == lease.epoch))
    };
    read.await.unwrap_or_else(|err| {
        tracing::debug!(error = %err, "the leader's lease or announcement is unreadable");
        None
    })
}

/// The store to lead with, metered, and the backup server of an embedded one. An embedded
/// store is waited for while another coordinator holds it (standing by).
async fn open_store(
    store: &CoordinatorStore,
    retention: protonn_storage::Retention,
) -> Result<(Arc<dyn Store>, Option<crate::backup::BackupServer>), StorageError> {
    match store {
        CoordinatorStore::Embedded(dir) => {
            let embedded = open_when_free(dir, retention).await?;
            let backup = crate::backup::BackupServer::start(Arc::clone(&embedded), dir);
            Ok((Arc::new(Metered::new(embedded)), backup))
        }
        CoordinatorStore::Shared(shared) => Ok((Arc::clone(shared), None)),
    }
}

/// Opens the store, waiting while another coordinator holds it (standing by).
async fn open_when_free(
    dir: &Path,
    retention: protonn_storage::Retention,
) -> Result<Arc<EmbeddedStore>, StorageError> {
    let mut logged = false;
    loop {
        match EmbeddedStore::open_with(dir, retention) {
            Ok(store) => return Ok(Arc::new(store)),
            Err(StorageError::Locked(_)) => {
                if !logged {
                    tracing::info!(dir = %dir.display(), "another coordinator leads; standing by");
                    logged = true;
                }
                tokio::time::sleep(STANDBY_POLL).await;
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_coordinator_refuses_a_token_reused_across_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let token = |secret: &str| ClusterToken::new(secret).unwrap();
        let options = |node: &str, operator: &str, web: &str| CoordinatorOptions {
            web_token: Some(token(web)),
            ..CoordinatorOptions::loopback(
                DiscordEndpoint::Simulator("127.0.0.1:9".to_owned()),
                BotToken::new("unused".to_owned()),
                token(node),
                token(operator),
                CoordinatorStore::Embedded(dir.path().to_owned()),
            )
        };
        for (node, operator, web) in [("a", "a", "w"), ("a", "o", "a"), ("a", "o", "o")] {
            let started = Coordinator::start(options(node, operator, web)).await;
            assert!(
                matches!(started, Err(CoordinatorError::SameTokens)),
                "{node} {operator} {web}"
            );
        }
    }
}
