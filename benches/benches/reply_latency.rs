//! B4: latency from a command's MESSAGE_CREATE to its REST reply leaving the bot, at 40
//! replies a second over a background of 10,000 events a second.
//!
//! - The simulator is a `protonn sim` process of the same build (`support::scenario`: 4
//!   shards, 2,000 guilds of 20 channels / 15 roles / 10 emojis, Discord's REST limits on
//!   the real clock) sending the B1 mix (1 KB messages, no commands) as the background. The
//!   bot is a node in this process with the default runtime (2 s user cooldown, 30 commands
//!   per guild per 10 s) and, alone, the node's whole REST share: 45 requests/s.
//! - After the GUILD_CREATEs and a warm-up, this bench posts `!ping` through the
//!   simulator's control API (`POST /sim/messages`, which writes the MESSAGE_CREATE to the
//!   shard before it answers) every 25 ms. Pings go round robin over the guilds and then
//!   their channels and members, so a channel gets one ping per 1,000 s and a guild one per
//!   50 s: neither the per-channel REST bucket (5 per 5 s) nor a cooldown can bind.
//! - From the simulator's REST ledger: each ping's answer is the `POST
//!   /channels/{id}/messages` to its channel (one ping per channel in a run). Latency = the
//!   answer's arrival (`at_ms`, the simulator's clock) − the moment this bench wrote the ping
//!   request (its clock). The clocks are aligned to a fraction of a millisecond by
//!   timing `GET /gateway/bot` requests against their `at_ms` (before and after the run);
//!   `at_ms` is whole milliseconds, so each latency is read as `at_ms` + 0.5 ms (± 0.5 ms).
//!   Timing from the write of the request (not its answer) counts the simulator's handling
//!   of the control call against the bot: the figure is an upper bound by that much (the
//!   control call's round trip is printed).
//! - In each run, right after the bot, each on a simulator of its own and measured the same
//!   way: the floor, a bare twilight echo loop in this process (twilight shards with
//!   `next_event`, each `!ping` answered by twilight's HTTP client, nothing else), and a bot
//!   written with serenity (`support/serenity_bot.rs`) in this process.
//! - A channel is pinged again after every 1,000 s (the guilds' 40,000 channels at 40 pings/s),
//!   so answers are matched to pings per channel in order. A percentile is printed as valid
//!   only with at least 1,000 samples beyond it; p99.9 needs 1,000,000 samples, so with fewer
//!   the summary reports the max of N in its place (`../shared/BENCHMARKS.md`). A valid p99
//!   takes 100,000 pings: one run of 2,500 s per subject (`-- 1 2500`).
//!
//! ```sh
//! cargo build --release -p protonn-cluster
//! cargo bench -p protonn-benches --bench reply_latency -- [runs] [seconds] [background_per_sec]
//! ```
//!
//! Defaults: 3 runs (bot, floor and serenity each) of 90 s of pings at a 10,000 events/s
//! background: quick, but too few samples for a valid p99 (the summary says so).

#[path = "support/serenity_bot.rs"]
mod serenity_bot;
#[path = "support/common.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protonn_actors::{EventObserver, HandledEvent, RuntimeConfig};
use protonn_cluster::Node;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use twilight_gateway::{CloseFrame, Event, EventTypeFlags, MessageSender, StreamExt};

use serenity_bot::Counts;

use support::{
    SimProcess, cpu_time, http, median, metric_series, percentile, run_queue_wait, scrape,
};

const SHARDS: u32 = 4;
const GUILDS: u32 = 2_000;
const PINGS_PER_SEC: u32 = 40;
/// Background traffic before the pings start (and the first config reads).
const WARM_UP: Duration = Duration::from_secs(5);
/// Time for the last pings' answers to arrive.
const SETTLE: Duration = Duration::from_secs(2);
/// Requests timed to align the clocks.
const CALIBRATION_REQUESTS: u32 = 40;
/// Ledger records kept per list beyond a run's pings: the dispatch list stops growing within
/// seconds, the REST list holds every request of a run.
const LEDGER_SPARE: usize = 20_000;
/// Samples a percentile needs beyond it to be reported (`../shared/BENCHMARKS.md`).
const SAMPLES_BEYOND: f64 = 1_000.0;

/// The simulator's clock minus this bench's (ms), as an interval.
#[derive(Clone, Copy, Debug)]
struct Offset {
    low: f64,
    high: f64,
}

impl Offset {
    fn mid(&self) -> f64 {
        (self.low + self.high) / 2.0
    }
}

/// Milliseconds since `epoch` on this bench's clock.
fn ms(epoch: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(epoch).as_secs_f64() * 1_000.0
}

/// The REST ledger's records from index `after` on.
async fn rest_records(sim: &SimProcess, after: usize) -> Vec<Value> {
    let far = usize::MAX;
    let ledger = sim
        .get(&format!(
            "/sim/ledger?after_rest={after}&after_dispatch={far}&after_gateway={far}\
             &after_identify={far}&after_interaction={far}"
        ))
        .await;
    ledger["rest"].as_array().cloned().unwrap_or_default()
}

/// Times `GET /gateway/bot` requests and reads their arrival in the ledger: each one
/// arrived after it was written and before its answer was read, within the millisecond
/// `at_ms` of the simulator's clock, which bounds the offset; the bounds of all of them
/// intersect.
async fn calibrate(sim: &SimProcess, epoch: Instant) -> Offset {
    let mark = rest_records(sim, 0).await.len();
    let mut spans = Vec::new();
    for k in 0..CALIBRATION_REQUESTS {
        let reply = http(
            &sim.addr,
            "GET",
            "/api/v10/gateway/bot",
            &[("authorization", &format!("Bot {}", support::SIM_TOKEN))],
            None,
        )
        .await;
        assert_eq!(reply.status, 200, "GET /gateway/bot: {}", reply.body);
        spans.push((ms(epoch, reply.sent), ms(epoch, reply.answered)));
        // Irregular spacing, so that the requests fall at different points of a millisecond
        // (and well under the global limit).
        tokio::time::sleep(Duration::from_micros(20_000 + 370 * u64::from(k % 7))).await;
    }
    let arrivals: Vec<f64> = rest_records(sim, mark)
        .await
        .iter()
        .filter(|r| r["path"] == "/gateway/bot")
        .filter_map(|r| r["at_ms"].as_f64())
        .collect();
    assert_eq!(
        arrivals.len(),
        spans.len(),
        "every timing request in the ledger"
    );
    let mut offset = Offset {
        low: f64::MIN,
        high: f64::MAX,
    };
    for ((sent, answered), at) in spans.iter().zip(arrivals) {
        offset.low = offset.low.max(at - answered);
        offset.high = offset.high.min(at + 1.0 - sent);
    }
    assert!(offset.low <= offset.high, "inconsistent clocks: {offset:?}");
    offset
}

/// When guild actors began handling each message (this bench's clock): splits a ping's
/// latency into the way in (gateway, parse, routing) and the way out (reply, REST).
#[derive(Default)]
struct Handled {
    messages: Mutex<Vec<(u64, Instant)>>,
}

impl EventObserver for Handled {
    fn handled(&self, _guild_id: u64, _: u32, event: HandledEvent) {
        if let HandledEvent::Message(id) = event {
            let at = Instant::now();
            self.messages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((id, at));
        }
    }
}

/// Who answers the pings: our node, the floor (a bare twilight echo loop) or a bot written
/// with serenity (the peer).
#[derive(Clone, Copy, PartialEq)]
enum Subject {
    Bot,
    Floor,
    Serenity,
}

impl Subject {
    const ALL: [Self; 3] = [Self::Bot, Self::Floor, Self::Serenity];

    fn name(self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::Floor => "floor (twilight echo loop)",
            Self::Serenity => "serenity",
        }
    }
}

/// The floor: twilight shards with `next_event` in a loop, each `!ping` answered by twilight's
/// HTTP client on a task of its own (so a reply never holds up the shard), nothing else: no
/// cache, no routing, no actors. Returns what closes the shards.
fn start_echo_loop(sim: &SimProcess, counts: &Arc<Counts>) -> Vec<MessageSender> {
    // The simulator enforces Discord's REST limits, so twilight's limiter is off (as
    // serenity's is).
    let http = Arc::new(
        twilight_http::Client::builder()
            .token(support::SIM_TOKEN.to_owned())
            .proxy(sim.addr.clone(), true)
            .ratelimiter(None)
            .build(),
    );
    let types = EventTypeFlags::GUILD_CREATE | EventTypeFlags::MESSAGE_CREATE;
    let mut senders = Vec::new();
    for mut shard in support::twilight_shards(&sim.gateway_url, SHARDS) {
        senders.push(shard.sender());
        let (counts, http) = (Arc::clone(counts), Arc::clone(&http));
        tokio::spawn(async move {
            while let Some(item) = shard.next_event(types).await {
                match item {
                    Ok(Event::GatewayClose(_)) => break,
                    Ok(Event::GuildCreate(_)) => {
                        counts.guild_creates.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::MessageCreate(message)) if message.content == "!ping" => {
                        counts.events.fetch_add(1, Ordering::Relaxed);
                        let (counts, http) = (Arc::clone(&counts), Arc::clone(&http));
                        tokio::spawn(async move {
                            if http
                                .create_message(message.channel_id)
                                .content("pong")
                                .await
                                .is_err()
                            {
                                counts.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                    Ok(_) => {}
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    senders
}

/// A subject connected to the simulator, every GUILD_CREATE absorbed.
enum Running {
    Bot {
        node: Box<Node>,
        handled: Arc<Handled>,
        _data: tempfile::TempDir,
    },
    Floor {
        shards: Vec<MessageSender>,
        counts: Arc<Counts>,
    },
    Serenity {
        bot: JoinHandle<()>,
        counts: Arc<Counts>,
    },
}

/// Waits until a peer has seen every GUILD_CREATE.
async fn wait_guilds(name: &str, counts: &Counts, started: Instant) {
    while counts.guild_creates.load(Ordering::Relaxed) < u64::from(GUILDS) {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{name}: GUILD_CREATEs never all arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Running {
    /// Starts `subject` on `sim` and waits until it has every guild; returns how long that
    /// took too.
    async fn start(subject: Subject, sim: &SimProcess) -> (Self, Duration) {
        let started = Instant::now();
        let running = match subject {
            Subject::Bot => {
                let data = tempfile::tempdir().unwrap();
                let handled = Arc::new(Handled::default());
                let node = support::start_node(
                    sim,
                    data.path(),
                    RuntimeConfig::default(),
                    Some(Arc::clone(&handled) as Arc<dyn EventObserver>),
                )
                .await;
                support::wait_absorbed(&node, GUILDS as usize).await;
                Self::Bot {
                    node: Box::new(node),
                    handled,
                    _data: data,
                }
            }
            Subject::Floor => {
                let counts = Arc::new(Counts::default());
                let shards = start_echo_loop(sim, &counts);
                wait_guilds("the echo loop", &counts, started).await;
                Self::Floor { shards, counts }
            }
            Subject::Serenity => {
                let counts = Arc::new(Counts::default());
                let bot =
                    serenity_bot::start(&sim.addr, support::SIM_TOKEN, SHARDS, Arc::clone(&counts));
                wait_guilds("serenity", &counts, started).await;
                Self::Serenity { bot, counts }
            }
        };
        (running, started.elapsed())
    }

    /// The node's metrics (the peers have none).
    async fn metrics(&self) -> Option<String> {
        match self {
            Self::Bot { node, .. } => Some(scrape(node).await),
            Self::Floor { .. } | Self::Serenity { .. } => None,
        }
    }

    /// Stops it; returns when its guild actors began handling each message (the node only).
    async fn stop(self) -> HashMap<u64, Instant> {
        match self {
            Self::Bot { node, handled, .. } => {
                node.shutdown().await;
                let handled = handled.messages.lock().unwrap_or_else(|e| e.into_inner());
                handled.iter().copied().collect()
            }
            Self::Floor { shards, counts } => {
                for shard in &shards {
                    let _ = shard.close(CloseFrame::NORMAL);
                }
                println!(
                    "  echo loop: {} pings seen, {} replies failed",
                    counts.events.load(Ordering::Relaxed),
                    counts.errors.load(Ordering::Relaxed)
                );
                HashMap::new()
            }
            Self::Serenity { bot, counts } => {
                bot.abort();
                println!(
                    "  serenity: {} messages handed to its handler, {} replies failed",
                    counts.events.load(Ordering::Relaxed),
                    counts.errors.load(Ordering::Relaxed)
                );
                HashMap::new()
            }
        }
    }
}

/// A guild as the pings use it.
struct Target {
    guild: u64,
    channels: Vec<u64>,
    authors: Vec<u64>,
}

async fn targets(sim: &SimProcess) -> Vec<Target> {
    let ids = |value: &Value| -> Vec<u64> {
        value
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    sim.get("/sim/guilds")
        .await
        .as_array()
        .expect("a list of guilds")
        .iter()
        .map(|g| Target {
            guild: g["id"].as_u64().expect("guild id"),
            channels: ids(&g["channel_ids"]),
            authors: ids(&g["member_ids"]),
        })
        .collect()
}

/// A `!ping` as written.
struct Ping {
    channel: u64,
    message: u64,
    /// When the control request was written, and its answer read (this bench's clock, ms).
    sent_ms: f64,
    answered_ms: f64,
}

struct RunResult {
    /// Latency of each answered ping, ms.
    latencies: Vec<f64>,
    /// Of each, from the write to its guild actor starting to handle it, ms.
    way_in: Vec<f64>,
    pings: usize,
    unanswered: usize,
    answered_twice: usize,
    /// Round trips of the control requests that wrote the pings, ms.
    control: Vec<f64>,
    background: f64,
    cpu_share: f64,
    sim_cpu_share: f64,
    /// Time this process's and the simulator's threads waited for a CPU, per second of the
    /// run.
    run_queue: Duration,
    sim_run_queue: Duration,
    offset_width: f64,
    offset_drift: f64,
    rate_limited: u64,
    /// Replies that waited for a permit of the node's global share longer than 1 ms, and
    /// all replies (the node only).
    permit_waits: Option<(f64, f64)>,
}

/// The `protonn_rest_permit_wait_seconds` buckets, cumulative: `le` → requests.
fn permit_histogram(metrics: &str) -> Vec<(String, f64)> {
    metric_series(metrics, "protonn_rest_permit_wait_seconds_bucket")
        .filter_map(|(labels, value)| {
            let le = labels.split("le=\"").nth(1)?.split('"').next()?;
            Some((le.to_owned(), value))
        })
        .collect()
}

/// Requests of the `protonn_rest_permit_wait_seconds` histogram: (over 1 ms, all).
fn permit_waits(metrics: &str) -> (f64, f64) {
    let bucket = |le: &str| {
        metric_series(metrics, "protonn_rest_permit_wait_seconds_bucket")
            .filter(|(labels, _)| labels.contains(&format!("le=\"{le}\"")))
            .map(|(_, value)| value)
            .sum::<f64>()
    };
    let all = bucket("+Inf");
    (all - bucket("0.001"), all)
}

async fn one_run(
    binary: &Path,
    subject: Subject,
    seconds: u64,
    background: f64,
    epoch: Instant,
) -> RunResult {
    let count = (seconds * u64::from(PINGS_PER_SEC)) as usize;
    let scenario = support::scenario(SHARDS, GUILDS, background, count + LEDGER_SPARE);
    let sim = SimProcess::start(binary, &scenario).await;
    let offset = calibrate(&sim, epoch).await;
    let targets = targets(&sim).await;

    let (running, absorbed_in) = Running::start(subject, &sim).await;
    tokio::time::sleep(WARM_UP).await;
    let waits_before = running.metrics().await.map(|m| permit_waits(&m));

    let mark = rest_records(&sim, 0).await.len();
    let limited = |stats: &Value| {
        stats["rate_limited_global"].as_u64().unwrap_or(0)
            + stats["rate_limited_route"].as_u64().unwrap_or(0)
    };
    let (stats_before, sim_cpu_before) = (sim.stats().await, sim.cpu_time());
    let sim_pid = sim.pid().to_string();
    let waits = || (run_queue_wait("self"), run_queue_wait(&sim_pid));
    let waited_before = waits();
    let (cpu_before, at_before) = (cpu_time(), Instant::now());
    let mut pings = Vec::with_capacity(count);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / PINGS_PER_SEC);
    // After a stall the pings resume at their pace, without a burst.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for i in 0..count {
        tick.tick().await;
        let target = &targets[i % targets.len()];
        let round = i / targets.len();
        let channel = target.channels[round % target.channels.len()];
        let author = target.authors[round % target.authors.len()];
        let reply = sim
            .post(
                "/sim/messages",
                &json!({
                    "guild_id": target.guild.to_string(),
                    "channel_id": channel.to_string(),
                    "author_id": author.to_string(),
                    "content": "!ping",
                }),
            )
            .await;
        assert_eq!(reply.status, 200, "POST /sim/messages: {}", reply.body);
        let message = reply.json()["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .or_else(|| reply.json()["id"].as_u64())
            .expect("the message id");
        pings.push(Ping {
            channel,
            message,
            sent_ms: ms(epoch, reply.sent),
            answered_ms: ms(epoch, reply.answered),
        });
    }
    let (cpu_after, at_after) = (cpu_time(), Instant::now());
    let waited_after = waits();
    let (stats_after, sim_cpu_after) = (sim.stats().await, sim.cpu_time());
    tokio::time::sleep(SETTLE).await;
    let records = rest_records(&sim, mark).await;
    let metrics = running.metrics().await;
    if let Some(metrics) = &metrics {
        println!(
            "  permit waits since the node started (cumulative, le seconds: requests): {}",
            permit_histogram(metrics)
                .iter()
                .map(|(le, n)| format!("{le}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let permit_waits = waits_before
        .zip(metrics.map(|m| permit_waits(&m)))
        .map(|(before, after)| (after.0 - before.0, after.1 - before.1));
    let handled_at = running.stop().await;
    let offset_after = calibrate(&sim, epoch).await;

    // A channel's answers in the order they arrived, matched to its pings in the order written
    // (a channel is pinged again only 1,000 s later).
    let mut answers: HashMap<u64, Vec<f64>> = HashMap::new();
    for record in &records {
        let channel = record["path"]
            .as_str()
            .and_then(|p| p.strip_prefix("/channels/"))
            .and_then(|p| p.strip_suffix("/messages"))
            .and_then(|id| id.parse::<u64>().ok());
        if let (Some(channel), "POST", Some(200)) = (
            channel,
            record["method"].as_str().unwrap_or(""),
            record["status"].as_u64(),
        ) {
            let at = record["at_ms"].as_f64().expect("at_ms");
            answers.entry(channel).or_default().push(at);
        }
    }
    let way_in: Vec<f64> = pings
        .iter()
        .filter_map(|p| Some(ms(epoch, *handled_at.get(&p.message)?) - p.sent_ms))
        .collect();
    let mid = offset.mid();
    let mut latencies = Vec::new();
    let mut unanswered = 0;
    let mut pinged: HashMap<u64, usize> = HashMap::new();
    for ping in &pings {
        let nth = pinged.entry(ping.channel).or_default();
        match answers.get(&ping.channel).and_then(|a| a.get(*nth)) {
            None => unanswered += 1,
            Some(at) => latencies.push(at + 0.5 - mid - ping.sent_ms),
        }
        *nth += 1;
    }
    let answered_twice = answers
        .iter()
        .map(|(channel, at)| {
            at.len()
                .saturating_sub(pinged.get(channel).copied().unwrap_or(0))
        })
        .sum();
    let wall = (at_after - at_before).as_secs_f64();
    let dispatches = |stats: &Value| stats["dispatches"].as_u64().unwrap_or(0);
    println!(
        "  GUILD_CREATEs absorbed in {:.2} s; clock offset {:.3} ms ± {:.3} (after the run {:.3} ± {:.3})",
        absorbed_in.as_secs_f64(),
        mid,
        (offset.high - offset.low) / 2.0,
        offset_after.mid(),
        (offset_after.high - offset_after.low) / 2.0
    );
    RunResult {
        way_in,
        pings: pings.len(),
        unanswered,
        answered_twice,
        control: pings.iter().map(|p| p.answered_ms - p.sent_ms).collect(),
        background: (dispatches(&stats_after) - dispatches(&stats_before)) as f64 / wall,
        cpu_share: (cpu_after - cpu_before).as_secs_f64() / wall,
        sim_cpu_share: (sim_cpu_after - sim_cpu_before).as_secs_f64() / wall,
        run_queue: (waited_after.0 - waited_before.0).div_f64(wall),
        sim_run_queue: (waited_after.1 - waited_before.1).div_f64(wall),
        offset_width: offset.high - offset.low,
        offset_drift: offset_after.mid() - mid,
        rate_limited: limited(&stats_after) - limited(&stats_before),
        permit_waits,
        latencies,
    }
}

/// Whether `n` samples put at least 1,000 beyond percentile `p`.
fn enough_beyond(n: usize, p: f64) -> bool {
    n as f64 * (1.0 - p) >= SAMPLES_BEYOND
}

/// Percentiles with too few samples beyond them are marked `*`.
fn summary(values: &[f64]) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    let mut values = values.to_vec();
    let n = values.len();
    let mut shown = Vec::new();
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        let mark = if enough_beyond(n, p) { "" } else { "*" };
        shown.push(format!("{name}{mark} {:.2}", percentile(&mut values, p)));
    }
    format!(
        "{} / max {:.2} ms (n {n}; * fewer than 1,000 samples beyond)",
        shown.join(" / "),
        percentile(&mut values, 1.0)
    )
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok());
    let runs = numbers.next().map_or(3, |n| n as usize).max(1);
    let seconds = numbers.next().map_or(90, |n| n as u64).max(1);
    let background = numbers.next().unwrap_or(10_000.0);
    let binary = protonn_tests::processes::protonn_binary();
    let epoch = Instant::now();
    println!(
        "B4 reply latency: {runs} runs of {seconds} s, {PINGS_PER_SEC} pings/s over {background:.0} events/s, \
         {SHARDS} shards, {GUILDS} guilds"
    );
    println!("machine: {}", support::machine());
    let mut results: Vec<(Subject, RunResult)> = Vec::new();
    for run in 1..=runs {
        for subject in Subject::ALL {
            println!(
                "run {run}, {} (load average {}):",
                subject.name(),
                support::load_average()
            );
            let result = one_run(&binary, subject, seconds, background, epoch).await;
            report(&result);
            results.push((subject, result));
        }
    }
    println!("--- B4 (target p99 <= 5 ms and <= 1.5x the floor's, p99.9 <= 20 ms) ---");
    let mut p99 = Vec::new();
    for subject in Subject::ALL {
        let of_subject: Vec<&RunResult> = results
            .iter()
            .filter(|(s, _)| *s == subject)
            .map(|(_, r)| r)
            .collect();
        println!("{}:", subject.name());
        let per_run = |p: f64| -> (Vec<f64>, f64) {
            let mut values: Vec<f64> = of_subject
                .iter()
                .map(|r| percentile(&mut r.latencies.clone(), p))
                .collect();
            let listed = values.clone();
            (listed, median(&mut values))
        };
        for (name, p) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)] {
            let (values, median) = per_run(p);
            println!(
                "  {name:>5} per run: {} ms -> median {median:.2} ms",
                values
                    .iter()
                    .map(|v| format!("{v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        p99.push(per_run(0.99).1);
        let pooled: Vec<f64> = of_subject
            .iter()
            .flat_map(|r| r.latencies.clone())
            .collect();
        println!("  pooled: {}", summary(&pooled));
        for (name, p) in [("p99", 0.99), ("p99.9", 0.999)] {
            if !enough_beyond(pooled.len(), p) {
                println!(
                    "  {name} is not valid: {} samples pooled, fewer than 1,000 beyond it{}",
                    pooled.len(),
                    if p > 0.99 {
                        "; report the max of N instead"
                    } else {
                        ""
                    }
                );
            }
        }
        let unanswered: usize = of_subject.iter().map(|r| r.unanswered).sum();
        let twice: usize = of_subject.iter().map(|r| r.answered_twice).sum();
        println!("  unanswered {unanswered}, answered twice {twice}");
    }
    let [bot, floor, serenity] = p99[..] else {
        unreachable!("one p99 per subject")
    };
    println!(
        "median p99, bot / floor: {:.2} (target <= 1.5); serenity / bot: {:.2}",
        bot / floor,
        serenity / bot
    );
}

/// Prints one run's figures.
fn report(result: &RunResult) {
    println!("  latency: {}", summary(&result.latencies));
    if !result.way_in.is_empty() {
        println!(
            "  of which write -> its guild actor handles it: {}",
            summary(&result.way_in)
        );
    }
    if let Some((waited, all)) = result.permit_waits {
        println!("  replies that waited > 1 ms for a global permit: {waited} of {all}");
    }
    println!(
        "  pings {}, unanswered {}, answered twice {}; 429s {}",
        result.pings, result.unanswered, result.answered_twice, result.rate_limited,
    );
    println!(
        "  background {:.0} events/s; this process {:.0} % of a core, simulator {:.0} %; \
         waiting for a CPU: this process's threads {:.0} ms/s, simulator {:.0} ms/s; \
         control call round trip {}; clock offset ± {:.3} ms, drift {:.3} ms",
        result.background,
        100.0 * result.cpu_share,
        100.0 * result.sim_cpu_share,
        result.run_queue.as_secs_f64() * 1_000.0,
        result.sim_run_queue.as_secs_f64() * 1_000.0,
        summary(&result.control),
        result.offset_width / 2.0,
        result.offset_drift
    );
}
