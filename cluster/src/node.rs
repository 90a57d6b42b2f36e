//! A node: shards, guild actors, storage and the ops endpoint, wired together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protonn_actors::rest::{
    GlobalLine, GuardLimits, InvalidRequestGuard, Rest, RestError, Transport,
};
use protonn_actors::{
    CallSource, Caller, CommandUsage, ConfigChangeError, DeadLetter, DeadLetters, Departures,
    EventIngress, EventObserver, GuildCalls, GuildRouter, LocalGuildCalls, OwnRoles, Replies,
    RouterMsg, RouterStats, RuntimeConfig, Services, TaskTracker, change_config_key,
};
use protonn_shard::{
    BotToken, EventSink, GatewaySettings, IdentifyConfig, IdentifyScheduler, LocalScheduler,
    ShardStatus, ShardSupervisor, SupervisorArgs, SupervisorMsg,
};
use protonn_storage::{DataRights, EmbeddedStore, Metered, Store, Timestamp, VersionedConfig};
use ractor::ActorRef;
use tokio::sync::{oneshot, watch};
use twilight_cache_inmemory::DefaultInMemoryCache;
use twilight_http::request::TryIntoRequest;
use twilight_model::gateway::connection_info::BotConnectionInfo;
use twilight_model::oauth::Application;

use crate::agent::{Agent, ClusterMembership, Link, RemoteIdentify};
use crate::fence::FencedSink;
use crate::guild_calls::{self, GuildsService};
use crate::remote_store::RemoteStore;
use crate::rest_budget;
use crate::{NodeError, ops, telemetry};

/// Bound on every in-process query to an actor; they answer in microseconds unless wedged.
const QUERY_TIMEOUT_MS: u64 = 5_000;
/// Time for shards to close cleanly before the node stops anyway.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired rows and departed guilds' data are erased.
const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Export and deletion requests the dashboard could not answer itself (its store refuses
/// them) are answered this often: well within a minute, far within the legal 30 days.
const PRIVACY_ANSWER_EVERY: Duration = Duration::from_secs(30);
/// Bound on a REST request to Discord.
const REST_TIMEOUT: Duration = Duration::from_secs(10);
/// Events each shard may buffer ahead of the guild router (about a second of a busy
/// shard's traffic) before it sheds typing and presence events.
const SHARD_BUFFER: usize = 4_096;
/// The node name guild summaries report for a node outside a cluster.
pub(crate) const STANDALONE_NODE: &str = "local";
/// Time a stopping node gives its guild actors to handle what their mailboxes hold, and
/// then again its REST client to send the replies they made.
const MAILBOX_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const REST_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Which Discord the node talks to.
#[derive(Clone, Debug)]
pub enum DiscordEndpoint {
    Discord,
    /// A simulator at `host:port`: plain `ws://` gateway and `http://` REST.
    Simulator(String),
}

pub struct NodeOptions {
    pub discord: DiscordEndpoint,
    pub token: BotToken,
    /// The bot's global REST limit (Discord's 50/s, or a raised one): a standalone node
    /// spends 90 % of it; in a cluster the leader grants the node a share instead.
    pub rest_global_per_sec: f64,
    /// Total shard count; Discord's recommendation when `None`.
    pub shards: Option<u32>,
    /// Shards this node runs; all when `None`.
    pub shard_ids: Option<Vec<u32>>,
    pub data_dir: PathBuf,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; port 0 picks a free one.
    pub ops_listen: SocketAddr,
    /// How guild actors live: mailbox bounds, passivation, retries, cooldowns.
    pub runtime: RuntimeConfig,
    /// Sees every event a guild actor handled (tests compare it with the simulator's ledger).
    pub observer: Option<Arc<dyn EventObserver>>,
    /// Join a cluster: the coordinator assigns the shards (`shards` and `shard_ids` are
    /// then ignored) and grants the IDENTIFYs.
    pub cluster: Option<ClusterMembership>,
}

/// A running node. Stop it with [`Node::shutdown`].
pub struct Node {
    supervisor: ActorRef<SupervisorMsg>,
    router: ActorRef<RouterMsg>,
    rest: Rest,
    /// Set by the watch on the top-level actors when one ended outside a shutdown.
    failure: watch::Receiver<Option<&'static str>>,
    /// Tells that watch the actors are being stopped on purpose.
    stopping: Arc<AtomicBool>,
    dead_letters: Arc<DeadLetters>,
    cache: Arc<DefaultInMemoryCache>,
    store: Arc<dyn Store>,
    ops_addr: SocketAddr,
    ops_stop: oneshot::Sender<()>,
    ops_task: tokio::task::JoinHandle<()>,
    /// The retention sweeper holds the store: stopped before the store must be released.
    /// A cluster node has none: the coordinator sweeps the store it serves.
    sweeper: Option<Sweeper>,
    /// Serves `protonn backup` while this node holds the embedded store (run mode).
    backup: Option<crate::backup::BackupServer>,
    usage_flusher: UsageFlusher,
    /// The command usage the guild actors count with, and the node's memory of privacy
    /// choices it holds.
    usage: Arc<CommandUsage>,
    cluster: Option<(Arc<Link>, tokio::task::JoinHandle<()>)>,
    /// A cluster node's `Guilds` service and its routed client (boxed: most nodes in tests
    /// and benches are standalone, and `Node` is moved around by value).
    guild_service: Option<Box<GuildService>>,
}

struct GuildService {
    stop: oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
    advertising: tokio::task::JoinHandle<()>,
    bound: SocketAddr,
}

impl Node {
    /// Asks Discord for the gateway settings, opens storage, starts the guild actors, then
    /// the shards. Fails fast on a rejected token, before any IDENTIFY is spent.
    pub async fn start(options: NodeOptions) -> Result<Self, NodeError> {
        Self::start_with_store(options, None).await
    }

    /// [`start`](Self::start) on a store the process opened itself (ScyllaDB): then neither
    /// the embedded store nor, in a cluster, the coordinator's is used.
    pub async fn start_with_store(
        options: NodeOptions,
        own_store: Option<Arc<dyn Store>>,
    ) -> Result<Self, NodeError> {
        telemetry::install_tls_provider();
        let prometheus = telemetry::prometheus();

        let transport = discord_transport(&options.discord, &options.token);
        let guard = Arc::new(InvalidRequestGuard::new(GuardLimits::default()));
        let startup = startup_rest(Arc::clone(&transport), Arc::clone(&guard));
        let info = gateway_info(&startup).await?;
        register_commands(&startup).await;
        let limit = info.session_start_limit;
        let identify = IdentifyConfig::discord(
            limit.max_concurrency,
            limit.remaining,
            limit.total,
            Duration::from_millis(limit.reset_after),
        );
        // Everything that can fail cheaply comes before anything that must be stopped.
        let (listener, ops_addr) =
            ops::bind(options.ops_listen)
                .await
                .map_err(|source| NodeError::OpsBind {
                    addr: options.ops_listen,
                    source,
                })?;
        let guild_listener = match &options.cluster {
            Some(membership) => {
                let addr = membership.guild_listen;
                let (listener, bound) = ops::bind(addr)
                    .await
                    .map_err(|source| NodeError::GuildBind { addr, source })?;
                Some((listener, bound))
            }
            None => None,
        };
        let (shard_count, shard_ids, scheduler, cluster) = match options.cluster {
            None => {
                let shard_count = options.shards.unwrap_or(info.shards).max(1);
                let shard_ids = options
                    .shard_ids
                    .unwrap_or_else(|| (0..shard_count).collect());
                let scheduler: Arc<dyn IdentifyScheduler> =
                    Arc::new(LocalScheduler::start(identify.clone()));
                (shard_count, shard_ids, scheduler, None)
            }
            Some(membership) => {
                let link = Link::new(membership);
                let joined = link.register(ops_addr).await?;
                tracing::info!(node_id = joined.node_id, "joined the cluster");
                let scheduler: Arc<dyn IdentifyScheduler> = Arc::new(RemoteIdentify {
                    link: Arc::clone(&link),
                });
                (
                    joined.shard_count.max(1),
                    Vec::new(),
                    scheduler,
                    Some((link, joined)),
                )
            }
        };
        let cached = options.runtime.cache_resources | protonn_actors::REQUIRED_RESOURCES;
        let settings = GatewaySettings {
            token: options.token,
            intents: protonn_actors::intents_for(&options.runtime),
            event_types: protonn_actors::event_types_for(cached),
            gateway_url: match options.discord {
                DiscordEndpoint::Discord => None,
                DiscordEndpoint::Simulator(_) => Some(info.url),
            },
            shard_ids,
            shard_count,
            identify_window: identify.window,
            buffer_capacity: SHARD_BUFFER,
            guild_lists: protonn_actors::guild_lists_for(cached),
        };

        // A cluster node uses the coordinator's store, so a moved guild's data follows it.
        let (store, sweeper, backup): (Arc<dyn Store>, _, _) = match (own_store, &cluster) {
            // Every process on a shared database sweeps; sweeps are idempotent and read one
            // small table.
            (Some(store), _) => {
                let sweeper = Sweeper::start(
                    Arc::clone(&store) as Arc<dyn Store>,
                    options.runtime.retention.exports,
                );
                (store, Some(sweeper), None)
            }
            (None, Some((link, _))) => (Arc::new(RemoteStore::new(Arc::clone(link))), None, None),
            (None, None) => {
                let embedded = Arc::new(EmbeddedStore::open_with(
                    &options.data_dir,
                    options.runtime.retention,
                )?);
                let backup =
                    crate::backup::BackupServer::start(Arc::clone(&embedded), &options.data_dir);
                let store = Arc::new(Metered::new(embedded));
                let sweeper = Sweeper::start(
                    Arc::clone(&store) as Arc<dyn Store>,
                    options.runtime.retention.exports,
                );
                (store, Some(sweeper), backup)
            }
        };
        let departures = Arc::new(Departures::load(store.as_ref()).await?);
        // Alone, the node may use the whole budget; in a cluster it starts with the least
        // share until the coordinator grants it one.
        let rest_line = Arc::new(GlobalLine::new(match cluster {
            None => rest_budget::cluster_budget(options.rest_global_per_sec),
            Some(_) => rest_budget::MIN_SHARE,
        }));
        let cache = Arc::new(
            DefaultInMemoryCache::builder()
                .resource_types(cached)
                .build(),
        );
        let dead_letters = Arc::new(DeadLetters::default());
        let own_roles = Arc::new(OwnRoles::new(cached));
        let rest = Rest::new(transport, Arc::clone(&rest_line), Arc::clone(&guard));
        let node_name = match &cluster {
            Some((link, _)) => link.node_name().to_owned(),
            None => STANDALONE_NODE.to_owned(),
        };
        let usage = CommandUsage::new(&store);
        let usage_flusher = UsageFlusher::start(&usage, options.runtime.usage_flush_every);
        // One count for the guild actors and the cluster agent, which changes it when a
        // resharding completes.
        let known_count = match &cluster {
            Some((_, joined)) => protonn_actors::ShardCount::of(crate::agent::shard_counts(
                shard_count,
                joined.earlier.clone(),
            )),
            None => protonn_actors::ShardCount::new(shard_count),
        };
        let router = GuildRouter::start(Services {
            store: Arc::clone(&store),
            departures: Arc::clone(&departures),
            replies: Replies::new(rest.clone()),
            cache: Arc::clone(&cache),
            own_roles,
            runtime: options.runtime,
            dead_letters: Arc::clone(&dead_letters),
            observer: options.observer,
            node_name,
            shard_count: known_count.clone(),
            usage: Arc::clone(&usage),
            tasks: TaskTracker::new(),
        })
        .await?;

        let ingress: Arc<dyn EventSink> = Arc::new(EventIngress::new(router.clone()));
        // A cluster node acts only while it holds its lease (fence before reassign).
        let sink: Arc<dyn EventSink> = match &cluster {
            Some((link, _)) => {
                let fence = Arc::clone(&link.fence);
                guard.set_gate(move || fence.holds_lease());
                Arc::new(FencedSink {
                    inner: ingress,
                    fence: Arc::clone(&link.fence),
                })
            }
            None => ingress,
        };
        let supervisor = ShardSupervisor::start(SupervisorArgs {
            settings,
            scheduler,
            sink,
        });
        let supervisor = match supervisor.await {
            Ok(supervisor) => supervisor,
            Err(err) => {
                router.stop(None);
                return Err(err.into());
            }
        };

        let stopping = Arc::new(AtomicBool::new(false));
        let failure = watch_vital_actors(&router, &supervisor, Arc::clone(&stopping));
        let (ops_stop, stopped) = oneshot::channel();
        // From here on the node is up: shutdown() stops what follows.
        let ops_state = ops::OpsState {
            prometheus,
            readiness: ops::Readiness::Shards(supervisor.clone(), failure.clone()),
        };
        let ops_task = tokio::spawn(ops::serve(listener, ops_state, async {
            let _ = stopped.await;
        }));
        let guild_service = match (&cluster, guild_listener) {
            (Some((link, _)), Some((listener, bound))) => {
                let membership = link.membership();
                let address = guild_calls::advertised(bound, membership.guild_advertise.as_deref());
                let (stop, stopped) = oneshot::channel::<()>();
                let serving = guild_calls::serve(
                    listener,
                    GuildsService {
                        calls: LocalGuildCalls::new(router.clone()),
                        supervisor: supervisor.clone(),
                    },
                    membership.web_token.as_ref(),
                    membership.tls.clone(),
                    async {
                        let _ = stopped.await;
                    },
                );
                let advertising = tokio::spawn(guild_calls::advertise(Arc::clone(link), address));
                tracing::info!(guild_addr = %bound, "serving guild calls");
                Some(Box::new(GuildService {
                    stop,
                    serving,
                    advertising,
                    bound,
                }))
            }
            _ => None,
        };
        let cluster = cluster.map(|(link, joined)| {
            let agent = Agent {
                link: Arc::clone(&link),
                supervisor: supervisor.clone(),
                cache: Arc::clone(&cache),
                router: router.clone(),
                rest_line: Arc::clone(&rest_line),
                rest_guard: guard,
                store: Arc::clone(&store),
                departures,
                ops_addr,
                shard_count: known_count,
                joined,
            };
            (link, tokio::spawn(agent.run()))
        });
        tracing::info!(%ops_addr, shards = shard_count, "node started");
        Ok(Self {
            supervisor,
            router,
            rest,
            failure,
            stopping,
            dead_letters,
            cache,
            store,
            ops_addr,
            ops_stop,
            ops_task,
            sweeper,
            backup,
            usage_flusher,
            usage,
            cluster,
            guild_service,
        })
    }

    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// The state of every shard of this node.
    pub async fn shard_statuses(&self) -> Vec<ShardStatus> {
        ractor::call_t!(self.supervisor, SupervisorMsg::Statuses, QUERY_TIMEOUT_MS)
            .unwrap_or_default()
    }

    /// Guilds whose data is scheduled for deletion (the bot was removed), and when.
    pub async fn scheduled_guild_deletions(&self) -> Vec<(u64, Timestamp)> {
        self.store
            .scheduled_guild_deletions()
            .await
            .unwrap_or_default()
    }

    /// This node's cached view of a guild (the guild and its roles, as JSON), to compare
    /// nodes; `None` when the guild is not cached here.
    pub fn cached_guild(&self, guild_id: u64) -> Option<serde_json::Value> {
        protonn_actors::cached_guild(&self.cache, guild_id)
    }

    /// The privacy choice this node remembers for the user, however old; `None` when it
    /// would read it at their next event.
    pub fn remembered_choice(&self, user_id: u64) -> Option<protonn_storage::PrivacyFlags> {
        self.usage.remembered_choice(user_id)
    }

    /// Events set aside after panicking on every try, most recent last.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters.latest()
    }

    /// Changes one config key of a guild (the dashboard's path); returns the stored
    /// version once it is durable and live in the guild's actor.
    pub async fn configure(
        &self,
        guild_id: u64,
        key: &str,
        value: &str,
        expected_version: Option<u64>,
    ) -> Result<VersionedConfig, ConfigChangeError> {
        let caller = Caller {
            user_id: None,
            source: CallSource::Node,
        };
        change_config_key(
            &LocalGuildCalls::new(self.router.clone()),
            caller,
            guild_id,
            (key, value),
            expected_version,
            Duration::from_millis(QUERY_TIMEOUT_MS),
        )
        .await
    }

    /// The node's guild router, for embedding the node and for tests.
    pub fn guild_router(&self) -> &ActorRef<RouterMsg> {
        &self.router
    }

    /// Resolves if the node can no longer work: its guild router or its shard supervisor
    /// stopped on its own. The process should then stop with this error, so that it is
    /// restarted, rather than run on as a node that takes events and answers none.
    pub async fn failed(&self) -> NodeError {
        let mut failure = self.failure.clone();
        match failure.wait_for(Option::is_some).await {
            Ok(failed) => NodeError::ActorStopped(failed.expect("waited for Some")),
            // The watch ended without a failure: only when the node is being shut down.
            Err(_) => std::future::pending().await,
        }
    }

    /// Guild calls to the guilds of this node's shards. Across a cluster, guilds are called
    /// with the dashboard's credentials (`ClusterClient`), which a node does not use: its
    /// own token may not change guilds.
    pub fn guild_calls(&self) -> Arc<dyn GuildCalls> {
        Arc::new(LocalGuildCalls::new(self.router.clone()))
    }

    /// Where a cluster node serves guild calls.
    pub fn guild_addr(&self) -> Option<SocketAddr> {
        self.guild_service.as_ref().map(|service| service.bound)
    }

    /// The guilds' audit log, for the dashboard to read (the guild actors write it).
    pub fn audit_log(&self) -> Arc<dyn protonn_storage::AuditRepo> {
        Arc::clone(&self.store) as Arc<dyn protonn_storage::AuditRepo>
    }

    /// The node's store (its own, or the coordinator's in a cluster): where the dashboard
    /// served next to it keeps its sessions, so that a user's export and erasure find them;
    /// operators' procedures (the children's-data erasure) and tests use it too.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The same store, for billing and premium (subscriptions, promo codes, slots): what
    /// operator tools and tests read and seed; guild state is never changed through it.
    pub fn billing_store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    pub async fn router_stats(&self) -> RouterStats {
        ractor::call_t!(self.router, RouterMsg::Stats, QUERY_TIMEOUT_MS).unwrap_or_default()
    }

    /// Closes the shards, lets the guild actors handle what their mailboxes hold and the REST
    /// client send the replies they made (each within a deadline), then stops the actors and
    /// releases storage. A cluster node first has the coordinator hand its shards to other
    /// nodes, so that they resume there.
    pub async fn shutdown(self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(service) = self.guild_service {
            // Callers find the shards on their next owners; calls in flight are answered.
            service.advertising.abort();
            let _ = service.stop.send(());
            let _ = service.serving.await;
        }
        if let Some((link, agent)) = self.cluster {
            let timeout = link.membership().drain_timeout;
            match tokio::time::timeout(timeout, link.drain()).await {
                Ok(Ok(moved)) => tracing::info!(moved, "shards handed to other nodes"),
                Ok(Err(err)) => tracing::warn!(error = %err, "drain failed; closing the shards"),
                Err(_) => tracing::warn!("drain timed out; closing the shards"),
            }
            agent.abort();
        }
        let closed = ractor::call_t!(
            self.supervisor,
            SupervisorMsg::Shutdown,
            SHUTDOWN_TIMEOUT.as_millis() as u64
        );
        if closed.is_err() {
            tracing::warn!("shards did not close in time; stopping anyway");
        }
        self.supervisor
            .stop_children_and_wait(None, Some(SHUTDOWN_TIMEOUT))
            .await;
        let _ = self
            .supervisor
            .stop_and_wait(None, Some(SHUTDOWN_TIMEOUT))
            .await;
        // The sweeper and the guild actors hold the store: all must be gone before it can be
        // reopened.
        if let Some(sweeper) = self.sweeper {
            sweeper.stop().await;
        }
        if let Some(backup) = self.backup {
            backup.stop().await;
        }
        // No event arrives any more: what the guild actors hold is all there is to do.
        GuildRouter::drain_and_stop(&self.router, MAILBOX_DRAIN_TIMEOUT).await;
        // The actors counted their last commands: those counts are written once more.
        self.usage_flusher.stop().await;
        if !self.rest.flush(REST_FLUSH_TIMEOUT).await {
            let (queued, interactions) = self.rest.queued();
            tracing::warn!(
                queued,
                interactions,
                "REST requests still waiting at shutdown; dropped"
            );
        }
        let _ = self.ops_stop.send(());
        let _ = self.ops_task.await;
    }
}

/// Watches the node's top-level actors: if one ends while the node is not stopping, nothing
/// restarts it (the ingress and the agent hold its address), so the node reports the
/// failure: `/readyz` answers 503 and [`Node::failed`] resolves.
fn watch_vital_actors(
    router: &ActorRef<RouterMsg>,
    supervisor: &ActorRef<SupervisorMsg>,
    stopping: Arc<AtomicBool>,
) -> watch::Receiver<Option<&'static str>> {
    let (failed, failure) = watch::channel(None);
    let (router, supervisor) = (router.get_cell(), supervisor.get_cell());
    tokio::spawn(async move {
        let stopped = tokio::select! {
            _ = router.wait(None) => "guild router",
            _ = supervisor.wait(None) => "shard supervisor",
        };
        if !stopping.load(Ordering::Acquire) {
            tracing::error!(
                actor = stopped,
                "a top-level actor stopped; the node cannot go on"
            );
            let _ = failed.send(Some(stopped));
        }
    });
    failure
}

/// The command usage's background: its counts written every period (and once more when
/// stopped), and the node's memory of privacy choices kept in step with changes made
/// elsewhere (`CommandUsage::spawn_choice_follower`).
struct UsageFlusher {
    stop: watch::Sender<bool>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl UsageFlusher {
    fn start(usage: &Arc<CommandUsage>, every: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let flusher = usage
            .aggregator()
            .spawn_flusher(every, until_stopped(stopped.clone()));
        let follower = usage.spawn_choice_follower(until_stopped(stopped));
        Self {
            stop,
            tasks: [flusher, follower],
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The retention sweeper over a store this process opened, and the privacy centre's
/// background half (exports prepared, erasures done) beside it.
pub(crate) struct Sweeper {
    stop: watch::Sender<bool>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Sweeper {
    /// A prepared export is downloadable for `export_for`.
    pub(crate) fn start(store: Arc<dyn Store>, export_for: Duration) -> Self {
        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let sweeper = protonn_storage::spawn_sweeper(
            Arc::clone(&store) as Arc<dyn DataRights>,
            RETENTION_SWEEP_EVERY,
            Timestamp::now,
            until_stopped(stopped.clone()),
        );
        let answerer = protonn_storage::privacy::spawn_request_answerer(
            store,
            PRIVACY_ANSWER_EVERY,
            export_for,
            until_stopped(stopped),
        );
        Self {
            stop,
            tasks: [sweeper, answerer],
        }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Replaces the bot's global slash commands with ours (a bulk overwrite is idempotent, so
/// every start may do it). A failure is logged, not fatal: text commands still work.
async fn register_commands(rest: &Rest) {
    let http = twilight_http::Client::builder().build();
    let registered = async {
        let application: Application = rest
            .send(
                "current_application",
                http.current_user_application().try_into_request()?,
            )
            .await?
            .model()?;
        let commands = protonn_actors::slash_commands();
        let overwrite = http
            .interaction(application.id)
            .set_global_commands(&commands)
            .try_into_request()?;
        rest.send("set_global_commands", overwrite).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(commands.len())
    };
    match registered.await {
        Ok(count) => tracing::info!(count, "slash commands registered"),
        Err(err) => tracing::warn!(error = %err, "slash commands not registered"),
    }
}

/// Where Discord's REST API is (the simulator when there is one), with the bot token.
pub(crate) fn discord_transport(discord: &DiscordEndpoint, token: &BotToken) -> Arc<Transport> {
    let simulator = match discord {
        DiscordEndpoint::Discord => None,
        DiscordEndpoint::Simulator(addr) => Some(addr.as_str()),
    };
    Arc::new(Transport::new(token, simulator, REST_TIMEOUT))
}

/// REST for a process's few start-up calls (gateway settings, slash commands): paced by a
/// line of their own within what the coordinator keeps spare of Discord's global limit.
pub(crate) fn startup_rest(transport: Arc<Transport>, guard: Arc<InvalidRequestGuard>) -> Rest {
    let spare = rest_budget::DISCORD_GLOBAL_LIMIT - rest_budget::CLUSTER_BUDGET;
    Rest::new(transport, Arc::new(GlobalLine::new(spare)), guard)
}

/// `GET /gateway/bot`: the shard count and identify limits; a 401 means a bad token.
pub(crate) async fn gateway_info(rest: &Rest) -> Result<BotConnectionInfo, NodeError> {
    let request = twilight_http::Client::builder()
        .build()
        .gateway()
        .authed()
        .try_into_request()
        .map_err(|err| NodeError::GatewayInfo(err.to_string()))?;
    match rest.send("gateway_bot", request).await {
        Ok(reply) => reply
            .model()
            .map_err(|err| NodeError::GatewayInfo(err.to_string())),
        Err(RestError::Status { status: 401, .. }) => Err(NodeError::BadToken),
        Err(err) => Err(NodeError::GatewayInfo(err.to_string())),
    }
}
