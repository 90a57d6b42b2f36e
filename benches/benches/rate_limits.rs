//! B8: rate-limit fidelity under twice the allowed load, against the simulator enforcing
//! Discord's limits on the real clock.
//!
//! - **REST**: a node answers `!ping`s arriving at twice Discord's global limit (100/s, each
//!   answered with a message) for `rest_secs`; from the simulator's ledger: the most
//!   messages in any 1 s, global and route 429s, and pings lost.
//! - **Gateway**: each shard is asked to send 4 commands a second (op 8, one guild each,
//!   twice Discord's 120 per 60 s; 240 by default) through `SupervisorMsg::Send`; the
//!   simulator answers each at once with a GUILD_MEMBERS_CHUNK, timed where it arrives (1 ms
//!   of loopback later): the most commands in any 60 s, 4008 closes from the ledger, and
//!   commands lost.
//!
//! `cargo bench -p protonn-benches --bench rate_limits -- [rest_secs] [runs] [commands]`
//! (defaults 20 1 240: `commands` per shard; a run takes about `rest_secs` + 150 s at the
//! defaults).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protonn_cluster::{DiscordEndpoint, Node, NodeOptions};
use protonn_shard::{
    BotToken, EventSink, EventTypeFlags, GatewaySettings, GuildLists, IdentifyConfig, Intents,
    LocalScheduler, ShardPhase, ShardSupervisor, SupervisorArgs, SupervisorMsg, encode_command,
};
use protonn_sim::{GatewayEventKind, SimConfig, SimHandle, Simulator};
use tokio::time::Instant;
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;
use twilight_model::gateway::payload::outgoing::RequestGuildMembers;
use twilight_model::id::Id;

/// Discord's limits the run is twice over.
const GLOBAL_PER_SEC: u32 = 50;
const GATEWAY_PER_MINUTE: usize = 120;

async fn start_sim(config: SimConfig) -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::start(config, listener).await.unwrap()
}

async fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The most of `times` (ms, sorted) within any `window_ms`.
fn most_in_window(times: &[u64], window_ms: u64) -> usize {
    let mut most = 0;
    let mut start = 0;
    for (end, &at) in times.iter().enumerate() {
        while times[start] + window_ms <= at {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

struct RestRun {
    pings: usize,
    most_per_sec: usize,
    global_429s: u64,
    route_429s: u64,
    lost: usize,
}

async fn rest_run(secs: u64) -> RestRun {
    let sim = start_sim(SimConfig {
        shards: 4,
        max_concurrency: 4,
        guilds: 400,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    })
    .await;
    let data = tempfile::tempdir().unwrap();
    let node = Node::start(NodeOptions {
        discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(sim.config().token.clone()),
        rest_global_per_sec: 50.0,
        shards: None,
        shard_ids: None,
        data_dir: data.path().to_owned(),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        runtime: Default::default(),
        observer: None,
        cluster: None,
    })
    .await
    .unwrap();
    let ready = || async {
        let statuses = node.shard_statuses().await;
        statuses.len() == 4 && statuses.iter().all(|s| s.phase == ShardPhase::Ready)
    };
    let until = Instant::now() + Duration::from_secs(60);
    while !ready().await {
        assert!(Instant::now() < until, "shards not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = sim.ledger().rest.len();

    // Round robin over every channel, a new author each time (no cooldown binds).
    let targets: Vec<(u64, u64)> = sim
        .guilds()
        .iter()
        .flat_map(|g| g.channel_ids.iter().map(move |&c| (g.id, c)))
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / (2 * GLOBAL_PER_SEC));
    let mut sent: HashMap<u64, usize> = HashMap::new();
    let stop = Instant::now() + Duration::from_secs(secs);
    for (author, (guild, channel)) in (1_000_000..).zip(targets.iter().cycle()) {
        tick.tick().await;
        if Instant::now() >= stop {
            break;
        }
        if sim
            .send_message(*guild, *channel, author, "!ping")
            .is_some()
        {
            *sent.entry(*channel).or_default() += 1;
        }
    }
    let pings: usize = sent.values().sum();
    let answers = |sim: &SimHandle| {
        let mut answered: HashMap<u64, usize> = HashMap::new();
        for record in &sim.ledger().rest[before..] {
            if record.method == "POST" && record.status == 200 {
                let channel = record
                    .path
                    .strip_prefix("/channels/")
                    .and_then(|rest| rest.strip_suffix("/messages"))
                    .and_then(|id| id.parse().ok());
                if let Some(channel) = channel {
                    *answered.entry(channel).or_default() += 1;
                }
            }
        }
        answered
    };
    // Answers trail at the node's share (45/s): wait for them, or for the line to stall.
    let mut last = 0;
    let mut quiet_since = Instant::now();
    loop {
        let answered: usize = answers(&sim).values().sum();
        if answered >= pings {
            break;
        }
        if answered != last {
            (last, quiet_since) = (answered, Instant::now());
        } else if quiet_since.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = answers(&sim);
    let lost = sent
        .iter()
        .map(|(channel, n)| n.saturating_sub(answered.get(channel).copied().unwrap_or(0)))
        .sum();
    let ledger = sim.ledger();
    let times: Vec<u64> = ledger.rest[before..]
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .map(|r| r.at_ms)
        .collect();
    let stats = sim.stats();
    node.shutdown().await;
    sim.shutdown().await;
    RestRun {
        pings,
        most_per_sec: most_in_window(&times, 1_000),
        global_429s: stats.rate_limited_global,
        route_429s: stats.rate_limited_route,
        lost,
    }
}

/// Times every GUILD_MEMBERS_CHUNK, by shard; drops everything else.
#[derive(Default)]
struct Chunks(Mutex<Vec<(u32, Instant)>>);

impl EventSink for Chunks {
    fn deliver(
        &self,
        shard: ShardId,
        events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let now = Instant::now();
        let mut chunks = self.0.lock().unwrap();
        for event in events {
            if matches!(event, Event::MemberChunk(_)) {
                chunks.push((shard.number(), now));
            }
        }
        Box::pin(std::future::ready(()))
    }
}

struct GatewayRun {
    asked: usize,
    /// Per shard: the most chunks in any 60 s, and chunks received.
    per_shard: Vec<(usize, usize)>,
    closes_4008: usize,
    spread_secs: f64,
}

async fn gateway_run(per_shard_asked: usize) -> GatewayRun {
    const SHARDS: u32 = 2;
    let sim = start_sim(SimConfig {
        shards: SHARDS,
        max_concurrency: SHARDS,
        guilds: 2 * per_shard_asked as u32,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    })
    .await;
    let chunks = Arc::new(Chunks::default());
    let supervisor = ShardSupervisor::start(SupervisorArgs {
        settings: GatewaySettings {
            token: BotToken::new(sim.config().token.clone()),
            intents: Intents::GUILDS,
            event_types: EventTypeFlags::MEMBER_CHUNK,
            gateway_url: Some(sim.gateway_url()),
            shard_count: SHARDS,
            shard_ids: (0..SHARDS).collect(),
            identify_window: Duration::from_secs(5),
            buffer_capacity: 4_096,
            guild_lists: GuildLists::ALL,
        },
        scheduler: Arc::new(LocalScheduler::start(IdentifyConfig::discord(
            SHARDS as u16,
            1_000,
            1_000,
            Duration::from_secs(86_400),
        ))),
        sink: Arc::clone(&chunks) as Arc<dyn EventSink>,
    })
    .await
    .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
        if statuses.iter().all(|s| s.phase == ShardPhase::Ready) {
            break;
        }
        assert!(Instant::now() < until, "shards not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Twice the limit: 4 commands a second per shard, one guild of that shard each.
    let mut per_shard: HashMap<u32, Vec<u64>> = HashMap::new();
    for guild in sim.guilds() {
        per_shard.entry(guild.shard).or_default().push(guild.id);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(60) / (2 * GATEWAY_PER_MINUTE as u32));
    let started = Instant::now();
    for n in 0..per_shard_asked {
        tick.tick().await;
        for shard_id in 0..SHARDS {
            let guild = per_shard[&shard_id][n % per_shard[&shard_id].len()];
            let request = RequestGuildMembers::builder(Id::new(guild)).query("u", Some(1));
            supervisor
                .cast(SupervisorMsg::Send {
                    shard: ShardId::new(shard_id, SHARDS),
                    payload: encode_command(&request),
                })
                .unwrap();
        }
    }
    // twilight paces them at its limit: the second half arrives over the next minute.
    wait_for("every command to arrive", Duration::from_secs(150), || {
        chunks.0.lock().unwrap().len() >= per_shard_asked * SHARDS as usize
    })
    .await;
    let received: Vec<(u32, u64)> = chunks
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|&(shard, at)| (shard, (at - started).as_millis() as u64))
        .collect();
    let ledger = sim.ledger();
    let closes_4008 = ledger
        .gateway
        .iter()
        .filter(|g| matches!(g.kind, GatewayEventKind::ClosedByServer { code: 4008 }))
        .count();
    let last_ms = received.iter().map(|c| c.1).max().unwrap_or(0);
    let per_shard = (0..SHARDS)
        .map(|shard| {
            let times: Vec<u64> = received
                .iter()
                .filter(|c| c.0 == shard)
                .map(|c| c.1)
                .collect();
            (most_in_window(&times, 60_000), times.len())
        })
        .collect();
    sim.shutdown().await;
    GatewayRun {
        asked: per_shard_asked,
        per_shard,
        closes_4008,
        spread_secs: last_ms as f64 / 1000.0,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let rest_secs = args.first().copied().unwrap_or(20);
    let runs = args.get(1).copied().unwrap_or(1);
    let commands = args
        .get(2)
        .copied()
        .unwrap_or(2 * GATEWAY_PER_MINUTE as u64) as usize;
    for run in 1..=runs {
        let rest = rest_run(rest_secs).await;
        println!(
            "B8 run {run} REST: {} pings in {rest_secs} s ({}/s, twice the global limit): \
             at most {} messages in any 1 s (limit {GLOBAL_PER_SEC}), {} global 429s, \
             {} route 429s, {} pings lost",
            rest.pings,
            2 * GLOBAL_PER_SEC,
            rest.most_per_sec,
            rest.global_429s,
            rest.route_429s,
            rest.lost
        );
        let gateway = gateway_run(commands).await;
        for (shard, (most, received)) in gateway.per_shard.iter().enumerate() {
            println!(
                "B8 run {run} gateway shard {shard}: {} commands asked at 4/s, {received} \
                 arrived over {:.1} s, at most {most} in any 60 s (limit {GATEWAY_PER_MINUTE}, \
                 heartbeats included there)",
                gateway.asked, gateway.spread_secs
            );
        }
        println!(
            "B8 run {run} gateway: {} closes with 4008",
            gateway.closes_4008
        );
    }
}
