//! What the scenario benches share: RSS and CPU time of the process, medians, an in-process
//! simulator, and for B1–B4 a `protonn sim` process, a plain HTTP/1.1 client for its control
//! API and the node's `/metrics`, and a node started against it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonn_actors::{EventObserver, RuntimeConfig};
use protonn_cluster::{DiscordEndpoint, Node, NodeOptions};
use protonn_shard::{BotToken, ShardPhase};
use protonn_sim::{SimConfig, SimHandle, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Resident set size of the process in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss() -> usize {
    rss_of("self")
}

/// Resident memory of process `pid` (`self` for this one), bytes.
pub fn rss_of(pid: &str) -> usize {
    status_bytes(pid, "VmRSS:")
}

/// The largest resident set size of the process so far, in bytes (`VmHWM`).
pub fn peak_rss() -> usize {
    status_bytes("self", "VmHWM:")
}

/// A size in kB of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: &str, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// User + system CPU time of the whole process so far (`/proc/self/stat`, 10 ms ticks).
pub fn cpu_time() -> Duration {
    stat_cpu_time(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

/// Discord allows 2,500 guilds per shard; the simulator enforces it.
pub const GUILDS_PER_SHARD: u32 = 2_500;

pub async fn start_sim(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

pub fn kib(bytes: f64) -> String {
    format!("{:.2} KiB", bytes / 1024.0)
}

/// The simulator's default token, which the B1/B4 scenarios keep.
pub const SIM_TOKEN: &str = "sim-token";

/// `model name` of `/proc/cpuinfo`, the online CPU count and the load averages, for the
/// report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{model}, {cpus} CPUs, load average {}", load_average())
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// User + system CPU time of process `pid` so far (`/proc/<pid>/stat`, 10 ms ticks).
pub fn process_cpu_time(pid: u32) -> Duration {
    stat_cpu_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// Time the threads of process `pid` (`self` for this one) spent runnable but waiting for a
/// CPU, so far: the sum of `/proc/<pid>/task/*/schedstat`'s second field. On a shared
/// machine this is how much of a latency is other processes' doing.
pub fn run_queue_wait(pid: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn stat_cpu_time(stat: &str) -> Duration {
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// An HTTP answer, with when the request was written (after connecting) and when the
/// answer had been read.
pub struct HttpReply {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub sent: Instant,
    pub answered: Instant,
}

impl HttpReply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh loopback connection (`connection: close`): enough for
/// the simulator's control API and a node's `/metrics`, without an HTTP client crate.
pub async fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpReply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("connecting to {addr}: {err}"));
    stream.set_nodelay(true).unwrap();
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    let typed = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        request.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let sent = Instant::now();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let answered = Instant::now();
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpReply {
        status,
        headers,
        body,
        sent,
        answered,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of every series of `name` in a Prometheus text exposition; 0 when absent.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    metric_series(text, name).map(|(_, value)| value).sum()
}

/// Every series of `name`: its labels (`{...}`, or empty) and value.
pub fn metric_series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(move |line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            (labels.is_empty() || labels.starts_with('{'))
                .then(|| Some((labels, value.parse::<f64>().ok()?)))
                .flatten()
        })
}

/// A node's `/metrics`.
pub async fn scrape(node: &Node) -> String {
    let reply = http(&node.ops_addr().to_string(), "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 200, "/metrics: {}", reply.body);
    reply.body
}

/// The control API of a simulator at `addr` (`host:port`).
#[derive(Clone, Debug)]
pub struct SimClient {
    pub addr: String,
}

impl SimClient {
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let reply = http(&self.addr, "GET", path, &[], None).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> HttpReply {
        http(&self.addr, "POST", path, &[], Some(&body.to_string())).await
    }

    /// `SimStats` as JSON.
    pub async fn stats(&self) -> serde_json::Value {
        self.get("/sim/stats").await
    }

    /// A counter of `SimStats`.
    pub async fn stat(&self, name: &str) -> u64 {
        self.stats().await[name].as_u64().unwrap_or(0)
    }
}

/// A `protonn sim --scenario` process on a port of its own, killed when dropped; its
/// control API through `Deref`.
pub struct SimProcess {
    child: Child,
    api: SimClient,
    /// The gateway URL it announces (`ws://…`).
    pub gateway_url: String,
    /// Holds the scenario file and the simulator's log (`sim.log`).
    dir: tempfile::TempDir,
}

impl std::ops::Deref for SimProcess {
    type Target = SimClient;

    fn deref(&self) -> &SimClient {
        &self.api
    }
}

impl SimProcess {
    /// Starts `binary sim` on `scenario` (a `SimConfig` as TOML, at its top level) and
    /// waits for the line announcing its addresses.
    pub async fn start(binary: &Path, scenario: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.toml");
        std::fs::write(&path, scenario).unwrap();
        let mut command = Command::new(binary);
        command
            .args(["sim", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(&path)
            .env("RUST_LOG", "warn");
        let (child, line) = spawn_announced(command, &dir.path().join("sim.log")).await;
        // "simulated Discord: gateway ws://HOST:PORT  REST proxy HOST:PORT  ledger http://…"
        let word_after = |label: &str| {
            line.split_once(label)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
                .to_owned()
        };
        let gateway_url = word_after("gateway ");
        let addr = word_after("REST proxy ");
        Self {
            child,
            api: SimClient { addr },
            gateway_url,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the simulator runs")
    }

    /// CPU time the simulator process has used so far.
    pub fn cpu_time(&self) -> Duration {
        process_cpu_time(self.pid())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
    }
}

/// Bare twilight shards for the peers: the bot's intents, every shard identifying at once (as
/// the simulator's max_concurrency allows).
pub fn twilight_shards(gateway_url: &str, shards: u32) -> Vec<twilight_gateway::Shard> {
    use twilight_gateway::queue::InMemoryQueue;
    let queue = InMemoryQueue::new(shards as u16, 1_000, Duration::from_secs(86_400), 1_000);
    let config =
        twilight_gateway::ConfigBuilder::new(SIM_TOKEN.to_owned(), protonn_actors::intents())
            .proxy_url(gateway_url.to_owned())
            .queue(queue)
            .build();
    (0..shards)
        .map(|id| {
            let id = twilight_gateway::ShardId::new(id, shards);
            twilight_gateway::Shard::with_config(id, config.clone())
        })
        .collect()
}

/// BENCHMARKS.md's world and B1 traffic as a `protonn sim` scenario: guilds of 20 text
/// channels, 15 roles and 10 emojis (5 members), every shard identifying in the first
/// window, on Discord's real clock, and a mix at `events_per_sec` of 1 KB messages, none
/// of them commands. `ledger_capacity` bounds each ledger list.
///
/// The mix is 70 % MESSAGE_CREATE, 20 % small events, 10 % updates, of the events Discord
/// sends a bot with our intents (GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT): the simulator
/// does not send typing, reactions or presences without their intents, so the small events
/// are MESSAGE_DELETEs and the updates MESSAGE_UPDATEs (9 %, 1 KB) and GUILD_UPDATEs (1 %).
pub fn scenario(shards: u32, guilds: u32, events_per_sec: f64, ledger_capacity: usize) -> String {
    format!(
        "shards = {shards}\nmax_concurrency = {shards}\nguilds = {guilds}\n\
         channels_per_guild = 20\nmembers_per_guild = 5\n\
         ledger_capacity = {ledger_capacity}\nreplay_events = 1000\n\n\
         [shape]\nroles = 15\nemojis = 10\n\n\
         [mix]\nevents_per_sec = {events_per_sec}\ncontent_bytes = 1024\ncommand_share = 0.0\n\n\
         [mix.weights]\nmessage_create = 70.0\nmessage_delete = 20.0\nmessage_update = 9.0\n\
         guild_update = 1.0\n"
    )
}

/// A node against the simulator process, as `protonn run` would start one.
pub async fn start_node(
    sim: &SimProcess,
    data_dir: &Path,
    runtime: RuntimeConfig,
    observer: Option<Arc<dyn EventObserver>>,
) -> Node {
    Node::start(NodeOptions {
        discord: DiscordEndpoint::Simulator(sim.addr.clone()),
        token: BotToken::new(SIM_TOKEN),
        rest_global_per_sec: 50.0,
        shards: None,
        shard_ids: None,
        data_dir: data_dir.to_owned(),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        runtime,
        observer,
        cluster: None,
    })
    .await
    .expect("the node starts")
}

/// Waits until every shard of `node` is READY and `guilds` guilds are in its cache (each
/// guild's GUILD_CREATE taken in; it starts no actor).
pub async fn wait_absorbed(node: &Node, guilds: usize) {
    let started = Instant::now();
    loop {
        let shards = node.shard_statuses().await;
        let ready = !shards.is_empty() && shards.iter().all(|s| s.phase == ShardPhase::Ready);
        let stats = node.router_stats().await;
        if ready && stats.cached_guilds >= guilds {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the node never absorbed its guilds: {stats:?}, {shards:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns `command` (stderr to `log`, killed when dropped) and returns it with the first
/// line it prints on stdout, within a minute; the rest of stdout is drained, so the process
/// never blocks on a full pipe.
async fn spawn_announced(mut command: Command, log: &Path) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let see = log.display();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("nothing printed within a minute; see {see}"))
        .unwrap()
        .unwrap_or_else(|| panic!("exited before announcing itself; see {see}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line)
}

/// The allocator under test (B1 and B2 compare them, and print its name): the `protonn`
/// binary's jemalloc (with its tuning from .cargo/config.toml), or the system's or mimalloc
/// with the bench crate's feature of that name (`--features system-allocator`).
#[cfg(not(any(feature = "system-allocator", feature = "mimalloc")))]
pub type Allocator = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "system-allocator", not(feature = "mimalloc")))]
pub type Allocator = std::alloc::System;
#[cfg(feature = "mimalloc")]
pub type Allocator = mimalloc::MiMalloc;
