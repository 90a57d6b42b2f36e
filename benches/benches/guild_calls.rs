//! B10: a config change from a caller outside the cluster (as the dashboard is) to the guild
//! actor on the node running the guild's shard, applied (saved durably in the coordinator's
//! store, live, audited) and acknowledged, on a 3-node cluster; and the dashboard's page time
//! with 1,000 sessions.
//!
//! One coordinator and three nodes in this process, on loopback, against the simulator
//! (6 shards, 2 per node, 60 guilds, no traffic). `ClusterGuildCalls` routes each call by the
//! leader's shard map; calls go one after another, round robin over the guilds (so over the
//! three nodes), each a `ChangeConfig` on the version the previous one saved. Latency is the
//! caller's: from the call to its answer.
//!
//! Pages: a `protonn web` process of the same build (sessions in the leader's store, guild
//! calls routed like the above) after `sessions` logins through the simulator's OAuth2
//! provider (each the owner of one of the 60 guilds, round robin). Then `pages` requests one
//! after another, round robin over the sessions and over three pages: the guild's overview
//! (its live summary), its settings (permissions, summary, config) and the guild picker
//! (Discord's `/users/@me/guilds`, answered by the simulator). Each page's time is from
//! writing the request to having read the whole answer on a fresh loopback connection: server
//! time plus a loopback round trip, so an upper bound of the server time.
//!
//! ```sh
//! cargo build --release -p protonn-cluster   # the protonn binary the page half starts
//! cargo bench -p protonn-benches --bench guild_calls -- [calls] [runs] [sessions] [pages]
//! ```
//!
//! Defaults: 2,000 calls (after 100 warm-up calls), 3 runs, 1,000 sessions, 20,000 pages
//! (after 300 warm-up pages; p95 then has 1,000 samples beyond it). `pages` 0 skips the page
//! half.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonn_actors::{CallSource, Caller, GuildCall, GuildCalls, GuildRequest, GuildResponse};
use protonn_cluster::{
    ClusterClient, ClusterGuildCalls, ClusterMembership, ClusterToken, Coordinator,
    CoordinatorOptions, CoordinatorStore, DiscordEndpoint, Node, NodeOptions,
};
use protonn_shard::{BotToken, ShardPhase};
use protonn_sim::{RateLimit, RestLimits, SimConfig, SimHandle};
use protonn_storage::GuildConfig;

use support::{http, load_average, machine, median, percentile, start_sim};

const TOKEN: &str = "bench-cluster";
/// Operator credentials, apart from the nodes' token.
const OPERATOR_TOKEN: &str = "operator-token";
/// The dashboard's credentials: the only ones nodes accept guild calls with.
const WEB_TOKEN: &str = "bench-dashboard";
const SHARDS: u32 = 6;
const GUILDS: u32 = 60;
const WARM_UP: usize = 100;
const PAGE_WARM_UP: usize = 300;
const WEB_SECRET: &str = protonn_sim::OAUTH_CLIENT_SECRET;
/// 32 bytes of 0x2a, base64.
const WEB_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// A `protonn web` process, killed when dropped, and where it serves.
struct Web {
    _child: tokio::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

async fn start_web(sim: &SimHandle, coordinator: &Coordinator) -> Web {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.toml");
    std::fs::write(
        &config,
        format!(
            "[discord]\nsimulator = \"{}\"\n[ops]\nlisten = \"127.0.0.1:0\"\n\
             [web]\nlisten = \"127.0.0.1:0\"\nclient_id = {}\n\
             [cluster]\ncoordinators = [\"http://{}\"]\n",
            sim.rest_proxy(),
            sim.application_id(),
            coordinator.addr()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(protonn_tests::processes::protonn_binary())
        .arg("--config")
        .arg(&config)
        .arg("web")
        .env("PROTONN_WEB_TOKEN", WEB_TOKEN)
        .env("PROTONN_WEB_CLIENT_SECRET", WEB_SECRET)
        .env("PROTONN_WEB_SESSION_KEY", WEB_KEY)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("protonn web starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .expect("protonn web announces itself");
    let addr = first
        .strip_prefix("web http://")
        .unwrap_or_else(|| panic!("unexpected line {first:?}"))
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Web {
        _child: child,
        addr,
        _dir: dir,
    }
}

/// The `name=value` of the session cookie a reply sets, if any.
fn session_cookie(reply: &support::HttpReply) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(name, _)| name == "set-cookie")
        .filter_map(|(_, value)| value.split(';').next())
        .find(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .map(str::to_owned)
}

/// Logs `user_id` in through the simulator's consent page; the session's cookie.
async fn login(web: &str, sim: &SimHandle, user_id: u64) -> String {
    let start = http(web, "GET", "/auth/login?next=%2Fguilds", &[], None).await;
    assert_eq!(start.status, 303, "{}", start.body);
    let pending = session_cookie(&start).expect("a pending session");
    let authorize = start.header("location").expect("to Discord").to_owned();
    let query = authorize.split_once('?').unwrap().1;
    let form = format!("{query}&user_id={user_id}");
    let granted = http(
        &sim.rest_proxy(),
        "POST",
        "/oauth2/authorize",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&form),
    )
    .await;
    assert_eq!(granted.status, 302, "{}", granted.body);
    let callback = granted.header("location").unwrap();
    let path = &callback[callback.find("/auth/callback").unwrap()..];
    let done = http(web, "GET", path, &[("cookie", &pending)], None).await;
    assert_eq!(done.status, 303, "{}", done.body);
    session_cookie(&done).expect("the logged-in session")
}

/// Page times in ms, after [`PAGE_WARM_UP`], by page: overview, settings, picker.
async fn page_times(
    sim: &SimHandle,
    coordinator: &Coordinator,
    sessions: usize,
    pages: usize,
) -> [Vec<f64>; 3] {
    let web = start_web(sim, coordinator).await;
    let guilds = sim.guilds();
    let mut logged_in = Vec::with_capacity(sessions);
    for n in 0..sessions {
        let guild = &guilds[n % guilds.len()];
        logged_in.push((login(&web.addr, sim, guild.owner_id).await, guild.id));
    }
    let mut times: [Vec<f64>; 3] = Default::default();
    for n in 0..PAGE_WARM_UP + pages {
        let (cookie, guild) = &logged_in[n % sessions];
        let kind = n % 3;
        let path = match kind {
            0 => format!("/guilds/{guild}"),
            1 => format!("/guilds/{guild}/settings"),
            _ => "/guilds".to_owned(),
        };
        let reply = http(&web.addr, "GET", &path, &[("cookie", cookie)], None).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        if n >= PAGE_WARM_UP {
            let took = reply.answered.duration_since(reply.sent);
            times[kind].push(took.as_secs_f64() * 1e3);
        }
    }
    times
}

async fn start_cluster(sim: &SimHandle, dir: &std::path::Path) -> (Coordinator, Vec<Node>) {
    let coordinator = Coordinator::start(CoordinatorOptions {
        name: "coordinator-0".to_owned(),
        heartbeat_interval: Duration::from_millis(200),
        failure_timeout: Duration::from_secs(3),
        min_nodes: 3,
        formation_grace: Duration::from_secs(5),
        lease_ttl: Duration::from_secs(1),
        web_token: ClusterToken::new(WEB_TOKEN),
        ..CoordinatorOptions::loopback(
            DiscordEndpoint::Simulator(sim.rest_proxy()),
            BotToken::new(sim.config().token.clone()),
            ClusterToken::new(TOKEN).unwrap(),
            ClusterToken::new(OPERATOR_TOKEN).unwrap(),
            CoordinatorStore::Embedded(dir.join("coordinator")),
        )
    })
    .await
    .expect("the coordinator starts");
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let node = Node::start(NodeOptions {
            discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
            token: BotToken::new(sim.config().token.clone()),
            rest_global_per_sec: 50.0,
            shards: None,
            shard_ids: None,
            data_dir: dir.join(name),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            runtime: Default::default(),
            observer: None,
            cluster: Some(ClusterMembership {
                coordinators: vec![format!("http://{}", coordinator.addr())],
                token: ClusterToken::new(TOKEN).unwrap(),
                web_token: ClusterToken::new(WEB_TOKEN),
                tls: None,
                name: name.to_owned(),
                guild_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                guild_advertise: None,
                drain_timeout: Duration::from_secs(60),
            }),
        })
        .await
        .expect("the node starts");
        nodes.push(node);
    }
    (coordinator, nodes)
}

/// Until every shard is READY on some node, two per node, and placed for good.
async fn wait_settled(client: &ClusterClient, nodes: &[Node]) {
    let started = Instant::now();
    loop {
        let placed = client.status().await.is_ok_and(|s| {
            s.shards.len() == SHARDS as usize
                && s.shards
                    .iter()
                    .all(|shard| shard.node_id != 0 && !shard.moving)
        });
        let mut ready = Vec::new();
        for node in nodes {
            let statuses = node.shard_statuses().await;
            ready.push(
                statuses
                    .iter()
                    .filter(|s| s.running && s.phase == ShardPhase::Ready)
                    .count(),
            );
        }
        if placed && ready.iter().all(|&n| n == 2) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the cluster never settled: {ready:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn change(guild_id: u64, version: u64, n: usize) -> GuildCall {
    GuildCall {
        guild_id,
        caller: Caller {
            user_id: Some(1),
            source: CallSource::Dashboard,
        },
        idempotency_key: Some(format!("bench-{guild_id}-{n}")),
        deadline: Duration::from_secs(10),
        request: GuildRequest::ChangeConfig {
            config: GuildConfig {
                prefix: ["!", "?", "$", "%"][n % 4].to_owned(),
                ..GuildConfig::default()
            },
            expected_version: version,
        },
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let calls: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let sessions: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let pages: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    println!("B10 routed config change: {calls} calls per run, {runs} runs");
    if pages > 0 {
        println!("B10 pages: {sessions} sessions, {pages} pages per run");
    }
    println!("machine: {}; load {}", machine(), load_average());

    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut page_p95s = Vec::new();
    for run in 1..=runs {
        let sim = start_sim(SimConfig {
            shards: SHARDS,
            max_concurrency: SHARDS,
            guilds: GUILDS,
            messages_per_sec: 0.0,
            ledger_capacity: 1,
            // Every login and guild picker asks the simulator as a user, from one loopback
            // IP: Discord's per-IP limit (50/s) would time the limiter, not the pages.
            rest_limits: RestLimits {
                global: RateLimit {
                    limit: 65_535,
                    per_ms: 1,
                },
                other_routes: RateLimit {
                    limit: 65_535,
                    per_ms: 1,
                },
                ..RestLimits::default()
            },
            ..SimConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (coordinator, nodes) = start_cluster(&sim, dir.path()).await;
        let client = ClusterClient::new(
            vec![format!("http://{}", coordinator.addr())],
            ClusterToken::new(TOKEN).unwrap(),
        );
        wait_settled(&client, &nodes).await;
        let routed = Arc::new(ClusterGuildCalls::new(
            vec![format!("http://{}", coordinator.addr())],
            ClusterToken::new(WEB_TOKEN).unwrap(),
            None,
        ));
        let guilds: Vec<u64> = sim.guilds().iter().map(|g| g.id).collect();
        let mut versions: HashMap<u64, u64> = HashMap::new();
        let mut latencies = Vec::with_capacity(calls);
        let started = Instant::now();
        for n in 0..WARM_UP + calls {
            let guild = guilds[n % guilds.len()];
            let version = versions.get(&guild).copied().unwrap_or(0);
            let sent = Instant::now();
            let answer = routed.call(change(guild, version, n)).await;
            let took = sent.elapsed();
            match answer {
                Ok(GuildResponse::Config(saved)) => {
                    versions.insert(guild, saved.version);
                }
                other => panic!("call {n} to guild {guild} failed: {other:?}"),
            }
            if n >= WARM_UP {
                latencies.push(took.as_secs_f64() * 1e3);
            }
        }
        let elapsed = started.elapsed();
        let p50 = percentile(&mut latencies, 0.5);
        let p99 = percentile(&mut latencies, 0.99);
        let max = latencies.iter().copied().fold(0.0, f64::max);
        println!(
            "run {run}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms, {:.0} calls/s one at a time",
            (WARM_UP + calls) as f64 / elapsed.as_secs_f64()
        );
        p50s.push(p50);
        p99s.push(p99);
        if pages > 0 {
            let started = Instant::now();
            let [mut overview, mut settings, mut picker] =
                page_times(&sim, &coordinator, sessions, pages).await;
            let mut all: Vec<f64> = [&overview, &settings, &picker]
                .into_iter()
                .flatten()
                .copied()
                .collect();
            let p95 = percentile(&mut all, 0.95);
            println!(
                "run {run} pages ({sessions} sessions, {:.0} s with the logins): p50 {:.2} ms, p95 {p95:.2} ms, p99 {:.2} ms; p95 overview {:.2} ms, settings {:.2} ms, picker {:.2} ms",
                started.elapsed().as_secs_f64(),
                percentile(&mut all, 0.5),
                percentile(&mut all, 0.99),
                percentile(&mut overview, 0.95),
                percentile(&mut settings, 0.95),
                percentile(&mut picker, 0.95),
            );
            page_p95s.push(p95);
        }
        for node in nodes {
            node.shutdown().await;
        }
        drop(coordinator);
        sim.shutdown().await;
    }
    println!(
        "B10 routed config change, median of {runs} runs: p50 {:.2} ms, p99 {:.2} ms (target p99 ≤ 20 ms)",
        median(&mut p50s),
        median(&mut p99s)
    );
    if !page_p95s.is_empty() {
        println!(
            "B10 page time with {sessions} sessions, median of {runs} runs: p95 {:.2} ms (target ≤ 50 ms server time)",
            median(&mut page_p95s)
        );
    }
}
