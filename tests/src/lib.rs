//! Harness for end-to-end tests: a simulator and nodes in one process, each test with its
//! own ports (bound to 0), data directory and simulated world.

pub mod paddle;
pub mod processes;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_actors::{EventObserver, HandledEvent, RuntimeConfig};
use protonn_cluster::{
    ClusterClient, ClusterToken, CoordinatorOptions, CoordinatorStore, DiscordEndpoint, Node,
    NodeError, NodeOptions,
};
use protonn_shard::{BotToken, ShardPhase};
use protonn_sim::{GatewayEventKind, GuildInfo, SimConfig, SimHandle, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Long enough for a loaded 2-core CI machine; conditions usually hold within milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A small world that identifies all shards at once and sends no background traffic, so
/// that every dispatch in the ledger comes from the test.
pub fn small_world(shards: u32, guilds: u32) -> SimConfig {
    SimConfig {
        shards,
        max_concurrency: shards,
        guilds,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    }
}

/// The dashboard's credentials in tests' clusters: coordinators and nodes accept them, and
/// guild calls across a cluster need them (a node's token may not change guilds).
pub const WEB_TOKEN: &str = "tests-dashboard-token";

/// A client of the cluster with the dashboard's credentials, as `protonn web` calls it.
pub fn dashboard_client(coordinators: Vec<String>) -> ClusterClient {
    ClusterClient::new(coordinators, ClusterToken::new(WEB_TOKEN).unwrap())
}

/// A coordinator of `sim`'s bot on loopback with the tests' timings: heartbeats every 0.1 s,
/// a node lost after 3 s of silence, no formation grace, a 1 s leadership lease; it accepts
/// [`WEB_TOKEN`] as the dashboard's.
pub fn coordinator_options(
    sim: &SimHandle,
    store: CoordinatorStore,
    cluster_token: &str,
    operator_token: &str,
) -> CoordinatorOptions {
    CoordinatorOptions {
        heartbeat_interval: Duration::from_millis(100),
        failure_timeout: Duration::from_secs(3),
        formation_grace: Duration::ZERO,
        lease_ttl: Duration::from_secs(1),
        web_token: ClusterToken::new(WEB_TOKEN),
        ..CoordinatorOptions::loopback(
            DiscordEndpoint::Simulator(sim.rest_proxy()),
            BotToken::new(sim.config().token.clone()),
            ClusterToken::new(cluster_token).unwrap(),
            ClusterToken::new(operator_token).unwrap(),
            store,
        )
    }
}

pub async fn start_sim(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

/// Starts a node against `sim` with the simulator's token.
pub async fn start_node(sim: &SimHandle, data_dir: &Path, recorder: &Arc<Recorder>) -> Node {
    let token = sim.config().token.clone();
    try_start_node(sim, data_dir, recorder, &token)
        .await
        .unwrap()
}

pub async fn try_start_node(
    sim: &SimHandle,
    data_dir: &Path,
    recorder: &Arc<Recorder>,
    token: &str,
) -> Result<Node, NodeError> {
    let observer = Arc::clone(recorder) as Arc<dyn EventObserver>;
    start_node_with(sim, data_dir, observer, token, test_runtime()).await
}

/// The runtime the tests use: the defaults, without cooldowns (tests send commands back to
/// back from the same users).
pub fn test_runtime() -> RuntimeConfig {
    RuntimeConfig {
        user_cooldown: Duration::ZERO,
        guild_commands: u32::MAX,
        // Usage counts reach storage soon enough for a test to read them.
        usage_flush_every: Duration::from_millis(200),
        ..RuntimeConfig::default()
    }
}

pub async fn start_node_with(
    sim: &SimHandle,
    data_dir: &Path,
    observer: Arc<dyn EventObserver>,
    token: &str,
    runtime: RuntimeConfig,
) -> Result<Node, NodeError> {
    Node::start(NodeOptions {
        discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(token),
        rest_global_per_sec: 50.0,
        shards: None,
        shard_ids: None,
        data_dir: data_dir.to_owned(),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        runtime,
        observer: Some(observer),
        cluster: None,
    })
    .await
}

/// A simulator and one node on it, ready: what most tests start from.
pub struct Bot {
    pub sim: SimHandle,
    pub node: Node,
    pub recorder: Arc<Recorder>,
    _data: tempfile::TempDir,
}

impl Bot {
    /// `world` with a node on the tests' runtime, every shard ready and every guild cached.
    pub async fn start(world: SimConfig) -> Self {
        Self::with_runtime(world, test_runtime()).await
    }

    pub async fn with_runtime(world: SimConfig, runtime: RuntimeConfig) -> Self {
        let recorder = Arc::new(Recorder::default());
        let observer = Arc::clone(&recorder) as Arc<dyn EventObserver>;
        let mut bot = Self::with_observer(world, runtime, observer).await;
        bot.recorder = recorder;
        bot
    }

    /// With an observer of the test's own (then `recorder` stays empty).
    pub async fn with_observer(
        world: SimConfig,
        runtime: RuntimeConfig,
        observer: Arc<dyn EventObserver>,
    ) -> Self {
        Self::on_sim(start_sim(world).await, runtime, observer).await
    }

    /// A node on a simulator the test started (and may have changed) itself.
    pub async fn on_sim(
        sim: SimHandle,
        runtime: RuntimeConfig,
        observer: Arc<dyn EventObserver>,
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let token = sim.config().token.clone();
        let node = start_node_with(&sim, data.path(), observer, &token, runtime)
            .await
            .unwrap();
        wait_all_ready(&node).await;
        // Guild calls (the dashboard's, the tests') are only for guilds the bot is in.
        for guild in sim.guilds() {
            wait_until("every guild is in the node cache", || async {
                node.cached_guild(guild.id).is_some()
            })
            .await;
        }
        Self {
            sim,
            node,
            recorder: Arc::default(),
            _data: data,
        }
    }

    pub async fn stop(self) {
        self.node.shutdown().await;
        self.sim.shutdown().await;
    }
}

/// Waits for the answer to an interaction and returns every answer it got.
pub async fn answers_to(sim: &SimHandle, interaction_id: u64) -> Vec<String> {
    wait_until("the interaction is answered", || async {
        !interaction_replies(sim, interaction_id).is_empty()
    })
    .await;
    interaction_replies(sim, interaction_id)
}

/// Polls `condition` every 20 ms until it holds; panics naming `what` after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_all_ready(node: &Node) {
    wait_until("every shard is ready", || async {
        let statuses = node.shard_statuses().await;
        !statuses.is_empty() && statuses.iter().all(|s| s.phase == ShardPhase::Ready)
    })
    .await;
}

/// Records every event the guild actors handled, with how often.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<HashMap<(u64, HandledEvent), u32>>,
}

impl EventObserver for Recorder {
    fn handled(&self, guild_id: u64, _: u32, event: HandledEvent) {
        *self
            .seen
            .lock()
            .unwrap()
            .entry((guild_id, event))
            .or_default() += 1;
    }
}

impl Recorder {
    /// How often each event was handled, keyed by (guild, event).
    pub fn counts(&self) -> HashMap<(u64, HandledEvent), u32> {
        self.seen.lock().unwrap().clone()
    }

    pub fn guilds_created(&self) -> HashSet<u64> {
        self.counts()
            .keys()
            .filter(|(_, event)| *event == HandledEvent::GuildCreate)
            .map(|(guild, _)| *guild)
            .collect()
    }

    /// Message id → times handled.
    pub fn messages(&self) -> HashMap<u64, u32> {
        self.counts()
            .into_iter()
            .filter_map(|((_, event), count)| match event {
                HandledEvent::Message(id) => Some((id, count)),
                _ => None,
            })
            .collect()
    }
}

/// Times shard `shard` resumed a session, by the simulator's ledger.
pub fn resumes(sim: &SimHandle, shard: u32) -> usize {
    sim.ledger()
        .gateway
        .iter()
        .filter(|r| r.shard == Some(shard) && matches!(r.kind, GatewayEventKind::Resumed { .. }))
        .count()
}

/// Replies the simulator received for a channel: the `content` of each POST.
pub fn channel_replies(sim: &SimHandle, channel_id: u64) -> Vec<String> {
    let path = format!("/channels/{channel_id}/messages");
    sim.ledger()
        .rest
        .iter()
        .filter(|r| r.method == "POST" && r.path == path && r.status == 200)
        .filter_map(|r| r.body.as_ref()?.get("content")?.as_str().map(str::to_owned))
        .collect()
}

/// Interaction callbacks the simulator accepted for an interaction: the reply content of each.
pub fn interaction_replies(sim: &SimHandle, interaction_id: u64) -> Vec<String> {
    let prefix = format!("/interactions/{interaction_id}/");
    sim.ledger()
        .rest
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with(&prefix) && r.status == 204)
        .filter_map(|r| {
            let data = r.body.as_ref()?.get("data")?;
            data.get("content")?.as_str().map(str::to_owned)
        })
        .collect()
}

/// Waits for the reply to a command and returns it.
pub async fn reply_in(sim: &SimHandle, channel_id: u64, after: usize) -> String {
    wait_until("a reply arrives in the channel", || async {
        channel_replies(sim, channel_id).len() > after
    })
    .await;
    channel_replies(sim, channel_id).swap_remove(after)
}

/// Puts `guild_id` on premium for a day (a slot of `user_id`), as a paid subscription
/// would: for tests of what premium's limits allow.
pub async fn give_premium(store: &dyn protonn_storage::Store, guild_id: u64, user_id: u64) {
    let now = protonn_storage::Timestamp::now();
    let slot = protonn_storage::PremiumSlot {
        guild_id,
        user_id,
        assigned_at: now,
        plan: protonn_storage::Plan::Premium,
        until: now.saturating_add(Duration::from_secs(86_400)),
    };
    store.put_slot(&slot).await.expect("the slot is stored");
}

/// A guild of the simulated world with a channel to talk in.
pub fn some_guild(sim: &SimHandle, index: usize) -> GuildInfo {
    sim.guilds().swap_remove(index)
}

/// A plain HTTP/1.1 GET on loopback: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    status_and_body(&response)
}

/// The status and body of a whole HTTP/1.1 response.
pub fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
