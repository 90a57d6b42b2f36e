//! The cluster as separate processes, as in production: `protonn coordinator`s and
//! `protonn node`s on loopback against a simulator in this process, each with its own data
//! directory, config and log file, ports bound to 0. One harness for the multi-process tests
//! (`tests/tests/processes.rs`) and the cluster benchmarks (B6).
//!
//! The processes run the `protonn` binary of this build, found beside the test's own
//! executable (`cargo test --workspace` builds it) or named by `PROTONN_BIN`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use protonn_cluster::{ClusterClient, ClusterStatus, ClusterToken, HandledLine, read_journal};
use protonn_sim::{SimConfig, SimHandle, Simulator};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{WEB_TOKEN, http_get};

/// Node credentials of the harness's clusters.
pub const CLUSTER_TOKEN: &str = "cluster-test-token";
/// Operator credentials: given to the coordinators and the operator's client, never to nodes.
pub const OPERATOR_TOKEN: &str = "cluster-test-operator";
/// Generous for a loaded 2-core machine; conditions usually hold within a second or two.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The `protonn` binary of this build: `PROTONN_BIN`, else `protonn` in the profile
/// directory above the running executable (`target/<profile>/deps/…`). A copy named by
/// `PROTONN_BIN` keeps a run apart from a target directory another checkout rebuilds.
pub fn protonn_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("PROTONN_BIN") {
        return binary.into();
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("protonn"));
    match beside {
        Some(binary) if binary.is_file() => binary,
        _ => panic!(
            "the protonn binary of this build is missing beside {}: build it with the same \
             profile and CARGO_TARGET_DIR (`cargo build [--release] -p protonn-cluster`; the \
             whole workspace's tests build it)",
            exe.display()
        ),
    }
}

/// The cluster's timings, in its processes' config.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub heartbeat_ms: u64,
    pub failure_timeout_ms: u64,
    pub lease_ttl_ms: u64,
    /// Moves the leader may have under way at once.
    pub max_moves: usize,
}

impl Pace {
    /// The tests' pace: heartbeats every 200 ms, a node lost after 3 s of silence.
    pub const TESTS: Pace = Pace {
        heartbeat_ms: 200,
        failure_timeout_ms: 3_000,
        lease_ttl_ms: 1_000,
        max_moves: 4,
    };
}

/// A `protonn` process, killed when dropped.
pub struct Process {
    child: Child,
}

impl Process {
    /// Starts `protonn <args>` with `config` and `env` (besides `DISCORD_TOKEN`) and returns
    /// it with the addresses it prints on its first lines of stdout, one after each prefix of
    /// `announce`.
    pub async fn start(
        dir: &Path,
        name: &str,
        config: &str,
        args: &[&str],
        announce: &[&str],
        sim: &SimHandle,
        env: &[(&str, &str)],
    ) -> (Self, Vec<String>) {
        let config_path = dir.join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(protonn_binary());
        command
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .env("DISCORD_TOKEN", &sim.config().token)
            .env_remove("PROTONN_CLUSTER_TOKEN")
            .env_remove("PROTONN_OPERATOR_TOKEN")
            .env_remove("PROTONN_WEB_TOKEN")
            .env("RUST_LOG", "info,twilight_gateway=warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        command.envs(env.iter().copied());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addresses = Vec::new();
        for prefix in announce {
            let line = tokio::time::timeout(DEADLINE, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("{name} printed nothing in time; see {name}.log"))
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("{name} exited before announcing itself; see {name}.log")
                });
            let addr = line
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{name}: unexpected line {line:?}"))
                .trim()
                .to_owned();
            addresses.push(addr);
        }
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        (Self { child }, addresses)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process runs")
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`, …) with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL, at once.
    pub fn kill(&mut self) {
        self.child.start_kill().unwrap();
    }

    /// Its exit, within [`DEADLINE`].
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the process exits in time")
            .unwrap()
    }
}

/// A simulator, coordinators and nodes as processes; the processes are killed when it drops.
pub struct Cluster {
    pub sim: SimHandle,
    /// Taken just before the simulator started: its ledger clock (`at_ms`) started within
    /// `clock_skew` after this.
    pub sim_start: Instant,
    pub clock_skew: Duration,
    pub pace: Pace,
    pub dir: tempfile::TempDir,
    pub coordinators: Vec<Process>,
    /// gRPC address (`http://…`) of each coordinator, in the order of `coordinators`.
    pub addresses: Vec<String>,
    /// Ops address of each coordinator, in the order of `coordinators`.
    pub coordinator_ops: Vec<SocketAddr>,
    pub nodes: BTreeMap<String, Process>,
    pub node_ops: BTreeMap<String, SocketAddr>,
    /// With node credentials: what any member may ask (status).
    pub client: ClusterClient,
    /// With operator credentials: drains, REST resumes.
    pub operator: ClusterClient,
    /// Nodes started from now on journal every event they handle to
    /// [`Cluster::journal_of`] (`[diagnostics] handled_events`).
    pub journal_events: bool,
}

impl Cluster {
    /// `world` in a simulator of this process, and `coordinators` coordinators at the
    /// tests' pace, waiting for `min_nodes` nodes before they assign shards.
    pub async fn start(world: SimConfig, coordinators: usize, min_nodes: usize) -> Self {
        Self::start_paced(world, Pace::TESTS, coordinators, min_nodes).await
    }

    pub async fn start_paced(
        world: SimConfig,
        pace: Pace,
        coordinators: usize,
        min_nodes: usize,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim_start = Instant::now();
        let sim = Simulator::start(world, listener).await.unwrap();
        let clock_skew = sim_start.elapsed();
        // PROTONN_KEEP_TEST_DIR=1 keeps every process's config and log for a post-mortem.
        let keep = std::env::var_os("PROTONN_KEEP_TEST_DIR").is_some();
        let dir = tempfile::Builder::new()
            .disable_cleanup(keep)
            .tempdir()
            .unwrap();
        if keep {
            println!("test directory: {}", dir.path().display());
        }
        let mut processes = Vec::new();
        let mut addresses = Vec::new();
        let mut coordinator_ops = Vec::new();
        for index in 0..coordinators {
            let (process, grpc, ops) =
                Self::spawn_coordinator(&sim, pace, dir.path(), index, min_nodes).await;
            processes.push(process);
            addresses.push(grpc);
            coordinator_ops.push(ops);
        }
        let client =
            ClusterClient::new(addresses.clone(), ClusterToken::new(CLUSTER_TOKEN).unwrap());
        let operator = ClusterClient::new(
            addresses.clone(),
            ClusterToken::new(OPERATOR_TOKEN).unwrap(),
        );
        Self {
            sim,
            sim_start,
            clock_skew,
            pace,
            dir,
            coordinators: processes,
            addresses,
            coordinator_ops,
            nodes: BTreeMap::new(),
            node_ops: BTreeMap::new(),
            client,
            operator,
            journal_events: false,
        }
    }

    /// Starts `coordinator-{index}` on the coordinators' shared data directory; answers it
    /// with its gRPC address (`http://…`) and its ops address.
    async fn spawn_coordinator(
        sim: &SimHandle,
        pace: Pace,
        dir: &Path,
        index: usize,
        min_nodes: usize,
    ) -> (Process, String, SocketAddr) {
        let name = format!("coordinator-{index}");
        let data_dir = dir.join("coordinator");
        let config = Self::config_at(sim, pace, &data_dir, &[], Some(&name), min_nodes);
        let (process, announced) = Process::start(
            dir,
            &name,
            &config,
            &["coordinator", "--listen", "127.0.0.1:0"],
            &["coordinator grpc ", "coordinator ops "],
            sim,
            &[
                ("PROTONN_CLUSTER_TOKEN", CLUSTER_TOKEN),
                ("PROTONN_OPERATOR_TOKEN", OPERATOR_TOKEN),
                ("PROTONN_WEB_TOKEN", WEB_TOKEN),
            ],
        )
        .await;
        (
            process,
            format!("http://{}", announced[0]),
            announced[1].parse().expect("an ops address"),
        )
    }

    /// Starts one more coordinator (as a rollout does) and answers its index.
    pub async fn add_coordinator(&mut self) -> usize {
        let index = self.coordinators.len();
        let (process, grpc, ops) =
            Self::spawn_coordinator(&self.sim, self.pace, self.dir.path(), index, 1).await;
        self.coordinators.push(process);
        self.addresses.push(grpc);
        self.coordinator_ops.push(ops);
        index
    }

    /// A config of this cluster: `data_dir`, the coordinators at `coordinators` (none for a
    /// coordinator itself), `name` (`cluster.name`) and `min_nodes`.
    pub fn config(
        &self,
        data_dir: &Path,
        coordinators: &[String],
        name: Option<&str>,
        min_nodes: usize,
    ) -> String {
        Self::config_at(
            &self.sim,
            self.pace,
            data_dir,
            coordinators,
            name,
            min_nodes,
        )
    }

    fn config_at(
        sim: &SimHandle,
        pace: Pace,
        data_dir: &Path,
        coordinators: &[String],
        name: Option<&str>,
        min_nodes: usize,
    ) -> String {
        let coordinators: Vec<String> = coordinators.iter().map(|a| format!("{a:?}")).collect();
        let name = name.map(|n| format!("name = {n:?}\n")).unwrap_or_default();
        format!(
            "[discord]\nsimulator = \"{}\"\n\n[storage]\ndata_dir = {data_dir:?}\n\n\
             [ops]\nlisten = \"127.0.0.1:0\"\n\n\
             [cluster]\n{name}coordinators = [{}]\nheartbeat_ms = {}\nfailure_timeout_ms = {}\n\
             min_nodes = {min_nodes}\nformation_grace_ms = 10000\nmax_moves = {}\nlease_ttl_ms = {}\n",
            sim.rest_proxy(),
            coordinators.join(", "),
            pace.heartbeat_ms,
            pace.failure_timeout_ms,
            pace.max_moves,
            pace.lease_ttl_ms,
        )
    }

    /// Starts node `name` with the node token `token` (none: no token at all).
    pub async fn start_node(&mut self, name: &str, token: Option<&str>) {
        let addresses = self.addresses.clone();
        self.start_node_at(name, token, &addresses).await;
    }

    /// A node that knows only the coordinators at `addresses`.
    pub async fn start_node_at(&mut self, name: &str, token: Option<&str>, addresses: &[String]) {
        let data_dir: PathBuf = self.dir.path().join(name);
        let mut config = self.config(&data_dir, addresses, Some(name), 1);
        if self.journal_events {
            let journal = self.journal_of(name);
            config.push_str(&format!("\n[diagnostics]\nhandled_events = {journal:?}\n"));
        }
        let (process, announced) = Process::start(
            self.dir.path(),
            name,
            &config,
            &["node"],
            &["node ops "],
            &self.sim,
            &token
                .map(|token| ("PROTONN_CLUSTER_TOKEN", token))
                .into_iter()
                .chain([("PROTONN_WEB_TOKEN", WEB_TOKEN)])
                .collect::<Vec<_>>(),
        )
        .await;
        self.nodes.insert(name.to_owned(), process);
        let ops = announced[0].parse().expect("an ops address");
        self.node_ops.insert(name.to_owned(), ops);
    }

    /// What coordinator `index` answers at `/leader`: the leader's id and whether it is
    /// itself, or `None` (503) when it knows of no leader.
    pub async fn leader_of(&self, index: usize) -> Option<(String, bool)> {
        let (status, body) = http_get(self.coordinator_ops[index], "/leader").await;
        if status == 503 {
            return None;
        }
        assert_eq!(status, 200, "coordinator-{index} /leader: {body}");
        let leader: serde_json::Value = serde_json::from_str(&body).unwrap();
        Some((
            leader["id"].as_str().unwrap().to_owned(),
            leader["this"].as_bool().unwrap(),
        ))
    }

    /// Waits until every one of `alive` names coordinator `leader` at `/leader`.
    pub async fn wait_leader(&self, leader: usize, alive: &[usize]) {
        let expected = format!("coordinator-{leader}");
        let deadline = Instant::now() + DEADLINE;
        'poll: loop {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {alive:?} name {expected} as leader"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            for &index in alive {
                match self.leader_of(index).await {
                    Some((id, this)) if id == expected && this == (index == leader) => {}
                    _ => continue 'poll,
                }
            }
            return;
        }
    }

    /// Coordinator `leader` leads, says so at `/leader` and exports
    /// `protonn_coordinator_leader 1`; every other one of `alive` is a standby that names it
    /// and exports 0. All are live and ready (serving).
    pub async fn assert_leader(&self, leader: usize, alive: &[usize]) {
        self.wait_leader(leader, alive).await;
        for &index in alive {
            let ops = self.coordinator_ops[index];
            assert_eq!(
                http_get(ops, "/healthz").await.0,
                200,
                "coordinator-{index}"
            );
            let (status, body) = http_get(ops, "/readyz").await;
            let (_, metrics) = http_get(ops, "/metrics").await;
            assert_eq!(status, 200, "coordinator-{index} serves: {body}");
            let flag = if index == leader {
                assert!(body.contains("leading"), "{body}");
                1
            } else {
                assert!(body.contains("standby"), "{body}");
                assert!(body.contains(&format!("coordinator-{leader}")), "{body}");
                0
            };
            assert!(
                metrics.contains(&format!("\nprotonn_coordinator_leader {flag}\n")),
                "coordinator-{index}:\n{metrics}"
            );
        }
    }

    pub async fn status(&self) -> Option<ClusterStatus> {
        self.client.status().await.ok()
    }

    /// Messages each node has sent (its `protonn_rest_requests_total` for `create_message`,
    /// outcome `ok`), in node name order.
    pub async fn messages_sent_per_node(&self) -> Vec<u64> {
        let mut sent = Vec::new();
        for ops in self.node_ops.values() {
            let (_, metrics) = http_get(*ops, "/metrics").await;
            let ok = metrics
                .lines()
                .find_map(|line| {
                    line.strip_prefix(
                        "protonn_rest_requests_total{route=\"create_message\",outcome=\"ok\"} ",
                    )
                })
                .and_then(|n| n.parse().ok());
            sent.push(ok.expect("the node exports its sent messages"));
        }
        sent
    }

    /// The leader's status once it satisfies `wanted`; panics naming `what` after [`DEADLINE`].
    pub async fn leader_status(
        &self,
        what: &str,
        wanted: impl Fn(&ClusterStatus) -> bool,
    ) -> ClusterStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.status().await
                && wanted(&status)
            {
                return status;
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every shard is owned by a live node, none is moving, the simulator sees
    /// every shard connected, and `shape` holds for the shards per node.
    pub async fn settled(
        &self,
        what: &str,
        shape: impl Fn(&BTreeMap<String, u32>) -> bool,
    ) -> ClusterStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.status().await {
                let per_node: BTreeMap<String, u32> = status
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), n.shards))
                    .collect();
                let placed = status.shards.iter().all(|s| s.node_id != 0 && !s.moving);
                let ready = self.sim.stats().ready_shards == self.sim.config().shards;
                if placed && ready && shape(&per_node) {
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting until {what}: {per_node:?}, ready {}",
                    self.sim.stats().ready_shards
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting until {what}: no leader answers"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Milliseconds on the simulator's ledger clock at `at` (at most this late: counted
    /// from the latest moment its clock may have started).
    pub fn sim_ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.sim_start + self.clock_skew)
            .as_millis() as u64
    }

    /// Where node `name` journals the events it handles, with [`Cluster::journal_events`].
    pub fn journal_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.handled"))
    }

    /// The journals of nodes `names` once they stop growing (the events in flight handled
    /// and written: a journal flushes whenever its writer has nothing more to write).
    pub async fn journals(&self, names: &[&str]) -> Vec<HandledLine> {
        let size = || -> u64 {
            names
                .iter()
                .filter_map(|name| std::fs::metadata(self.journal_of(name)).ok())
                .map(|m| m.len())
                .sum()
        };
        let deadline = Instant::now() + DEADLINE;
        let mut last = size();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = size();
            if now == last || Instant::now() >= deadline {
                break;
            }
            last = now;
        }
        names
            .iter()
            .flat_map(|name| {
                read_journal(&self.journal_of(name))
                    .unwrap_or_else(|err| panic!("{name}'s journal: {err}"))
            })
            .collect()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// Microseconds since the Unix epoch: the journals' clock.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_micros() as u64
}

/// Steady `!ping` traffic, round robin over every channel of the world, counted per channel.
/// Each ping comes from a new user, so that no per-user cooldown swallows it.
pub struct Traffic {
    /// Answers per channel before this traffic began.
    before: HashMap<u64, u32>,
    sent: Arc<Mutex<HashMap<u64, u32>>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

static NEXT_AUTHOR: AtomicU64 = AtomicU64::new(1_000_000);

/// Every (guild, channel) of the simulated world.
pub fn all_channels(sim: &SimHandle) -> Vec<(u64, u64)> {
    sim.guilds()
        .iter()
        .flat_map(|g| g.channel_ids.iter().map(move |&c| (g.id, c)))
        .collect()
}

impl Traffic {
    /// Pings round robin over every channel.
    pub fn start(sim: &SimHandle, per_sec: u32) -> Self {
        Self::on(sim, per_sec, all_channels(sim))
    }

    /// Pings round robin over `targets` (guild, channel), each from a new author.
    pub fn on(sim: &SimHandle, per_sec: u32, targets: Vec<(u64, u64)>) -> Self {
        let before = answers_per_channel(sim);
        let sent = Arc::new(Mutex::new(HashMap::new()));
        let running = Arc::new(AtomicBool::new(true));
        let task = {
            let (sim, sent, running) = (sim.clone(), Arc::clone(&sent), Arc::clone(&running));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) / per_sec);
                for (guild, channel) in targets.iter().cycle() {
                    // A new author every time, across every traffic: no user cooldown.
                    let author = NEXT_AUTHOR.fetch_add(1, Ordering::Relaxed);
                    tick.tick().await;
                    if !running.load(Ordering::Relaxed) {
                        break;
                    }
                    if sim
                        .send_message(*guild, *channel, author, "!ping")
                        .is_some()
                    {
                        *sent.lock().await.entry(*channel).or_default() += 1;
                    }
                }
            })
        };
        Self {
            before,
            sent,
            running,
            task,
        }
    }

    /// Pings sent so far.
    pub async fn sent(&self) -> u32 {
        self.sent.lock().await.values().sum()
    }

    /// Stops sending once at least `at_least` went out.
    pub async fn stop_after(&mut self, at_least: u32) {
        let deadline = Instant::now() + DEADLINE;
        while self.sent().await < at_least {
            assert!(Instant::now() < deadline, "the traffic does not run");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.running.store(false, Ordering::Relaxed);
        let _ = (&mut self.task).await;
    }

    /// Stops sending (once at least `at_least` went out), waits until every ping is
    /// answered, and returns the duplicates (answers beyond one per ping). Panics naming
    /// the channels that lost a ping.
    pub async fn stop_and_count(mut self, sim: &SimHandle, at_least: u32) -> u32 {
        self.stop_after(at_least).await;
        self.count(sim).await
    }

    /// Waits until every ping sent is answered and returns the duplicates (as
    /// [`Traffic::stop_and_count`]).
    pub async fn count(&self, sim: &SimHandle) -> u32 {
        let deadline = Instant::now() + DEADLINE;
        let sent = self.sent.lock().await.clone();
        let total: u32 = sent.values().sum();
        loop {
            let mut answered = answers_per_channel(sim);
            for (channel, earlier) in &self.before {
                *answered.get_mut(channel).expect("answers only grow") -= earlier;
            }
            let missing: Vec<(u64, u32, u32)> = sent
                .iter()
                .filter(|(channel, n)| answered.get(channel).copied().unwrap_or(0) < **n)
                .map(|(&channel, &n)| (channel, n, answered.get(&channel).copied().unwrap_or(0)))
                .collect();
            if missing.is_empty() {
                return sent.iter().map(|(channel, n)| answered[channel] - n).sum();
            }
            if Instant::now() >= deadline {
                let ledger = sim.ledger();
                for (channel, _, _) in &missing {
                    let guild = sim
                        .guilds()
                        .into_iter()
                        .find(|g| g.channel_ids.contains(channel))
                        .unwrap();
                    let dispatches: Vec<String> = ledger
                        .dispatches
                        .iter()
                        .filter(|d| d.guild_id == Some(guild.id) && d.event == "MESSAGE_CREATE")
                        .map(|d| {
                            format!(
                                "{}#{}{}",
                                &d.session[..6],
                                d.seq,
                                if d.replayed { "r" } else { "" }
                            )
                        })
                        .collect();
                    let path = format!("/channels/{channel}/messages");
                    let requests: Vec<(u16, u64)> = ledger
                        .rest
                        .iter()
                        .filter(|r| r.path == path)
                        .map(|r| (r.status, r.at_ms))
                        .collect();
                    println!(
                        "lost: channel {channel} shard {} dispatched as {dispatches:?}, \
                         requests (status, at ms) {requests:?}",
                        guild.shard
                    );
                }
                panic!(
                    "{} pings of {total} lost (channel, sent, answered): {:?}",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Successful `POST /channels/{id}/messages` per channel.
pub fn answers_per_channel(sim: &SimHandle) -> HashMap<u64, u32> {
    let mut answered = HashMap::new();
    for record in sim.ledger().rest {
        let channel = record
            .path
            .strip_prefix("/channels/")
            .and_then(|rest| rest.strip_suffix("/messages"));
        if let Some(channel) = channel
            && record.method == "POST"
            && record.status == 200
        {
            *answered.entry(channel.parse().unwrap()).or_default() += 1;
        }
    }
    answered
}
