//! B1: dispatched events per CPU-second of the bot process, socket → twilight → route →
//! guild actor, against the bare twilight parse loop on the same simulator in the same run.
//!
//! The simulator cannot saturate the bot on this machine (it writes ~30k dispatches/s at
//! most), so the figure is not a maximum rate: it is the bot's CPU cost per event, measured
//! from the OS while the simulator sends a steady rate it can hold.
//!
//! - The simulator is a `protonn sim` process of the same build (`support::scenario`: 8
//!   shards, 10,000 guilds of 20 channels / 15 roles / 10 emojis, the mix at the rate asked:
//!   70 % MESSAGE_CREATE of 1 KB, 20 % MESSAGE_DELETE, 9 % MESSAGE_UPDATE, 1 % GUILD_UPDATE,
//!   no commands), so the bot's CPU is its own.
//! - The bot is a node in this process (`Node::start`, as `protonn run` does, default
//!   runtime). Once every guild's GUILD_CREATE was handled and a warm-up passed (each guild's
//!   config read once), the window: events per CPU-second = dispatches the simulator wrote
//!   to the node in the window ÷ user + system CPU time of this process in the window
//!   (`/proc/self/stat`). The bench itself sleeps meanwhile.
//! - No drops: every MESSAGE_CREATE the simulator wrote by the end of the window must be
//!   handled by its guild actor (the `EventObserver`) within a few seconds, and the shed and
//!   overflow counters of the node's `/metrics` must not move.
//! - Peers, the same simulator right after: this bench's own executable, started again as a
//!   child process (`PROTONN_B1_PEER`), runs one twilight `Shard` per shard with the bot's
//!   intents (so it is sent the same events) and loops on `next_event`, counting, nothing
//!   else; its events per CPU-second are measured the same way, over its own process. Three
//!   peers: every event type deserialised (the parse ceiling B1 names), only the types the
//!   bot deserialises (like for like: twilight skips the rest unparsed), and a bot written
//!   with serenity (another library doing the same job, its cache on, REST through its
//!   proxy setting), whose resident memory per guild is reported too (B2's peer).
//! - A fourth peer, for B2: a bot written with discord.js 14 on its defaults
//!   (`benches/peers/discordjs`, installed by `npm ci` from its lockfile into
//!   `target/discordjs` on first use; Node.js and npm must be installed), measured from the
//!   outside through `/proc/<pid>` the same way.
//!
//! - Transport compression: the bot and the twilight peers connect with the one compiled in
//!   (twilight-gateway's `zstd` feature: zstd-stream). Each window also reports the gateway
//!   bytes the simulator wrote per dispatch (`SimStats::gateway_bytes`: frame payloads as
//!   sent, after compression) and the bot's CPU per dispatch. `bot-only` skips the peers.
//! - Allocator: the `protonn` binary's (jemalloc), under the bot and the peers alike;
//!   `--features system-allocator` or `--features mimalloc` puts that one there instead
//!   (`support::Allocator`).
//!
//! ```sh
//! cargo build --release -p protonn-cluster
//! cargo bench -p protonn-benches --bench throughput -- [runs] [events_per_sec] [guilds] \
//!     [bot-only]
//! ```
//!
//! Defaults: 3 runs at 20,000 events/s, 10,000 guilds, peers on.
//! The lines `window opens` and `window closed` mark the bot's window, for a profiler
//! driven from outside (`callgrind_control --zero` / `--dump`).

#[path = "support/serenity_bot.rs"]
mod serenity_bot;
#[path = "support/common.rs"]
mod support;

/// The bot and its peers (this executable again) allocate with the allocator under test.
#[global_allocator]
static ALLOCATOR: support::Allocator = support::Allocator {};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protonn_actors::{EventObserver, HandledEvent, RuntimeConfig};
use protonn_cluster::Node;
use protonn_shard::EventTypeFlags;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use twilight_gateway::{CloseFrame, Event, StreamExt};

use serenity_bot::Counts;
use support::{SimProcess, cpu_time, median, metric_series, metric_sum, run_queue_wait, scrape};

const SHARDS: u32 = 8;
/// Guilds by default; the third argument changes it.
const GUILDS: u32 = 10_000;
/// After the GUILD_CREATEs: every guild's first message reads its config from storage.
const WARM_UP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(20);
/// Time for the last events of the window to reach their guild actors.
const CATCH_UP: Duration = Duration::from_secs(10);
/// Set in a peer child process: what it runs (see [`PeerSpec`]).
const PEER_ENV: &str = "PROTONN_B1_PEER";

/// Counts what the guild actors handled.
#[derive(Default)]
struct Handled {
    messages: AtomicU64,
    guild_creates: AtomicU64,
}

impl EventObserver for Handled {
    fn handled(&self, _guild_id: u64, _: u32, event: HandledEvent) {
        let counter = match event {
            HandledEvent::Message(_) => &self.messages,
            HandledEvent::GuildCreate => &self.guild_creates,
            HandledEvent::Interaction(_) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One process's figures over its window.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// Dispatches the simulator wrote to the process.
    dispatches: u64,
    /// Gateway bytes the simulator wrote meanwhile (frame payloads, after compression).
    bytes: u64,
    cpu: Duration,
    wall: Duration,
    /// CPU time of the simulator process over the same window.
    sim_cpu: Duration,
    /// Time the process's threads waited for a CPU (other processes' doing).
    run_queue: Duration,
}

impl Window {
    fn per_cpu_second(&self) -> f64 {
        self.dispatches as f64 / self.cpu.as_secs_f64()
    }

    fn bytes_per_dispatch(&self) -> f64 {
        self.bytes as f64 / self.dispatches as f64
    }

    /// CPU time of the process per dispatch, in microseconds.
    fn cpu_per_dispatch_us(&self) -> f64 {
        1e6 * self.cpu.as_secs_f64() / self.dispatches as f64
    }

    fn rate(&self) -> f64 {
        self.dispatches as f64 / self.wall.as_secs_f64()
    }

    fn describe(&self) -> String {
        format!(
            "{} dispatches in {:.2} s ({:.0}/s), {:.2} CPU-s ({:.0} % of a core, waited for \
             a CPU {:.0} ms/s), simulator {:.0} % of a core, {:.0} B on the wire per \
             dispatch: {:.0} events per CPU-second",
            self.dispatches,
            self.wall.as_secs_f64(),
            self.rate(),
            self.cpu.as_secs_f64(),
            100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64(),
            1_000.0 * self.run_queue.as_secs_f64() / self.wall.as_secs_f64(),
            100.0 * self.sim_cpu.as_secs_f64() / self.wall.as_secs_f64(),
            self.bytes_per_dispatch(),
            self.per_cpu_second(),
        )
    }
}

/// The node's counters that must not move (drops, sheds) and the ones that say what it
/// routed.
#[derive(Clone, Copy, Debug, Default)]
struct NodeCounters {
    shard_shed: f64,
    actor_shed: f64,
    mailbox_overflow: f64,
    buffer_stalls: f64,
    reconnects: f64,
    /// Dispatches twilight deserialised and the shard handed on, every type.
    received: f64,
    received_messages: f64,
    received_guild_updates: f64,
}

impl NodeCounters {
    async fn of(node: &Node) -> Self {
        let text = scrape(node).await;
        let received_of = |event: &str| {
            metric_series(&text, "protonn_shard_events_received_total")
                .filter(|(labels, _)| labels.contains(&format!("event=\"{event}\"")))
                .map(|(_, value)| value)
                .sum()
        };
        Self {
            shard_shed: metric_sum(&text, "protonn_shard_events_shed_total"),
            actor_shed: metric_sum(&text, "protonn_actors_events_shed_total"),
            mailbox_overflow: metric_sum(&text, "protonn_actors_mailbox_overflow_total"),
            buffer_stalls: metric_sum(&text, "protonn_shard_buffer_stalls_total"),
            reconnects: metric_sum(&text, "protonn_shard_reconnects_total"),
            received: metric_sum(&text, "protonn_shard_events_received_total"),
            received_messages: received_of("MESSAGE_CREATE"),
            received_guild_updates: received_of("GUILD_UPDATE"),
        }
    }

    fn minus(self, earlier: Self) -> Self {
        Self {
            shard_shed: self.shard_shed - earlier.shard_shed,
            actor_shed: self.actor_shed - earlier.actor_shed,
            mailbox_overflow: self.mailbox_overflow - earlier.mailbox_overflow,
            buffer_stalls: self.buffer_stalls - earlier.buffer_stalls,
            reconnects: self.reconnects - earlier.reconnects,
            received: self.received - earlier.received,
            received_messages: self.received_messages - earlier.received_messages,
            received_guild_updates: self.received_guild_updates - earlier.received_guild_updates,
        }
    }

    fn drops(&self) -> f64 {
        self.shard_shed + self.actor_shed
    }
}

struct BotRun {
    window: Window,
    /// Of the window's dispatches, those routed to guild actors (MESSAGE_CREATE,
    /// GUILD_UPDATE); twilight skips MESSAGE_UPDATE/DELETE unparsed (not in the bot's types).
    routed: f64,
    /// Over the whole phase, GUILD_CREATE burst included.
    counters: NodeCounters,
    /// Over the window only.
    in_window: NodeCounters,
    /// MESSAGE_CREATEs written by the end of the window, not handled by the end of the
    /// catch-up.
    missing_messages: u64,
    absorbed_in: Duration,
    /// RSS growth of this process from before the node started to after the warm-up, per
    /// guild: the node's own in the first run only (later runs reuse memory freed by earlier
    /// ones).
    rss_per_guild: f64,
}

async fn measure_bot(sim: &SimProcess, guilds: u32, before_phase: &mut NodeCounters) -> BotRun {
    let data = tempfile::tempdir().unwrap();
    let handled = Arc::new(Handled::default());
    let rss_before = support::rss();
    let started = Instant::now();
    let node = support::start_node(
        sim,
        data.path(),
        RuntimeConfig::default(),
        Some(Arc::clone(&handled) as Arc<dyn EventObserver>),
    )
    .await;
    support::wait_absorbed(&node, guilds as usize).await;
    let absorbed_in = started.elapsed();
    tokio::time::sleep(WARM_UP).await;
    let rss_growth = support::rss().saturating_sub(rss_before);

    let counters_before = NodeCounters::of(&node).await;
    println!("        window opens");
    let window = Window::measure(sim, sim.pid(), None).await;
    println!("        window closed");
    let counters_after = NodeCounters::of(&node).await;

    let messages_written = sim.stat("messages").await;
    let deadline = Instant::now() + CATCH_UP;
    while handled.messages.load(Ordering::Relaxed) < messages_written && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Messages keep coming meanwhile: more handled than written by then is none missing.
    let missing_messages =
        messages_written.saturating_sub(handled.messages.load(Ordering::Relaxed));
    let at_end = NodeCounters::of(&node).await;
    node.shutdown().await;

    let in_window = counters_after.minus(counters_before);
    let counters = at_end.minus(*before_phase);
    *before_phase = at_end;
    BotRun {
        window,
        routed: in_window.received_messages + in_window.received_guild_updates,
        counters,
        in_window,
        missing_messages,
        absorbed_in,
        rss_per_guild: rss_growth as f64 / f64::from(guilds),
    }
}

/// What a peer child runs.
#[derive(Clone, Copy, PartialEq)]
enum PeerKind {
    /// Bare twilight shards deserialising every event type: the parse ceiling.
    TwilightAll,
    /// Bare twilight shards deserialising the bot's types only: like for like.
    TwilightBot,
    /// A bot written with serenity (default features, its cache included), pointed at the
    /// simulator through its HTTP proxy setting: another library doing the same job.
    Serenity,
    /// A bot written with discord.js on its defaults: a Node.js process, not this bench's
    /// executable (see `measure_discordjs`).
    DiscordJs,
}

impl PeerKind {
    const ALL: [(Self, &'static str); 4] = [
        (Self::TwilightAll, "all"),
        (Self::TwilightBot, "bot"),
        (Self::Serenity, "serenity"),
        (Self::DiscordJs, "discordjs"),
    ];

    fn word(self) -> &'static str {
        Self::ALL.iter().find(|(kind, _)| *kind == self).unwrap().1
    }

    fn from_word(word: &str) -> Self {
        Self::ALL
            .iter()
            .find(|(_, w)| *w == word)
            .expect("a peer kind")
            .0
    }
}

/// What a peer child runs, passed as `PROTONN_B1_PEER`:
/// `<gateway_url> <sim_addr> <sim_pid> <guilds> <all|bot|serenity>`.
struct PeerSpec {
    gateway_url: String,
    sim_addr: String,
    sim_pid: u32,
    guilds: u32,
    kind: PeerKind,
}

impl PeerSpec {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.gateway_url,
            self.sim_addr,
            self.sim_pid,
            self.guilds,
            self.kind.word()
        )
    }

    fn decode(text: &str) -> Self {
        let mut words = text.split_whitespace();
        let mut next = || {
            words
                .next()
                .expect("PROTONN_B1_PEER has five words")
                .to_owned()
        };
        let (gateway_url, sim_addr, sim_pid, guilds, kind) =
            (next(), next(), next(), next(), next());
        Self {
            gateway_url,
            sim_addr,
            sim_pid: sim_pid.parse().expect("a process id"),
            guilds: guilds.parse().expect("a guild count"),
            kind: PeerKind::from_word(&kind),
        }
    }
}

impl Window {
    /// Measures `WINDOW` of process `pid` (this one when `None`) while the simulator sends.
    async fn measure(sim: &support::SimClient, sim_pid: u32, pid: Option<u32>) -> Self {
        let cpu = || pid.map_or_else(cpu_time, support::process_cpu_time);
        let task = pid.map_or_else(|| "self".to_owned(), |pid| pid.to_string());
        let sim_cpu = || support::process_cpu_time(sim_pid);
        let (sim_before, sim_cpu_before) = (sim.stats().await, sim_cpu());
        let (cpu_before, waited_before, at_before) = (cpu(), run_queue_wait(&task), Instant::now());
        tokio::time::sleep(WINDOW).await;
        let (cpu_after, waited_after, at_after) = (cpu(), run_queue_wait(&task), Instant::now());
        let (sim_after, sim_cpu_after) = (sim.stats().await, sim_cpu());
        let written = |name: &str| {
            sim_after[name].as_u64().unwrap_or(0) - sim_before[name].as_u64().unwrap_or(0)
        };
        Self {
            dispatches: written("dispatches"),
            bytes: written("gateway_bytes"),
            cpu: cpu_after - cpu_before,
            wall: at_after - at_before,
            sim_cpu: sim_cpu_after - sim_cpu_before,
            // Summed over the threads alive at each read: one that ended meanwhile takes its
            // wait with it.
            run_queue: waited_after.saturating_sub(waited_before),
        }
    }
}

/// A peer's window, and its resident memory once the GUILD_CREATEs were absorbed.
#[derive(Clone, Copy)]
struct PeerRun {
    window: Window,
    /// RSS growth from before connecting to after the warm-up, per guild.
    rss_per_guild: f64,
}

/// Runs a peer child process on `sim` and returns its window.
async fn measure_peer(sim: &SimProcess, guilds: u32, kind: PeerKind) -> PeerRun {
    if kind == PeerKind::DiscordJs {
        return measure_discordjs(sim, guilds).await;
    }
    let spec = PeerSpec {
        gateway_url: sim.gateway_url.clone(),
        sim_addr: sim.addr.clone(),
        sim_pid: sim.pid(),
        guilds,
        kind,
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(PEER_ENV, spec.encode())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let result = loop {
        let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .expect("the peer reports within 5 minutes")
            .unwrap()
            .expect("the peer exited without reporting");
        if let Some(json) = line.strip_prefix("PEER ") {
            break serde_json::from_str::<Value>(json).unwrap();
        }
        println!("    peer: {line}");
    };
    let _ = child.wait().await;
    let field = |name: &str| result[name].as_u64().unwrap_or(0);
    PeerRun {
        window: Window {
            dispatches: field("dispatches"),
            bytes: field("bytes"),
            cpu: Duration::from_millis(field("cpu_ms")),
            wall: Duration::from_micros(field("wall_us")),
            sim_cpu: Duration::from_millis(field("sim_cpu_ms")),
            run_queue: Duration::from_millis(field("run_queue_ms")),
        },
        rss_per_guild: field("rss_growth") as f64 / f64::from(guilds),
    }
}

/// The discord.js peer's directory, `target/discordjs`, installed from the lockfile of
/// `benches/peers/discordjs` (`npm ci` checks every package's integrity hash) unless that
/// lockfile is installed already.
fn install_discordjs() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/discordjs");
    // This executable is target/<profile>/deps/<name>.
    let exe = std::env::current_exe().unwrap();
    let dir = exe
        .ancestors()
        .nth(3)
        .expect("a target directory")
        .join("discordjs");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    for file in ["package.json", "package-lock.json", "peer.js"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    if installed.as_deref() != Some(&lock[..]) || !dir.join("node_modules").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .expect("npm installs the discord.js peer (install Node.js and npm)");
        assert!(status.success(), "npm ci of the discord.js peer failed");
    }
    dir
}

/// Runs the discord.js peer on `sim`. The script only connects and says when every guild
/// is in; this bench measures its process from the outside, as the other peers measure
/// themselves.
async fn measure_discordjs(sim: &SimProcess, guilds: u32) -> PeerRun {
    let dir = install_discordjs();
    let mut child = Command::new("node")
        .arg("peer.js")
        .arg(format!("http://{}/api", sim.addr))
        .arg(support::SIM_TOKEN)
        .arg(SHARDS.to_string())
        .arg(guilds.to_string())
        .arg(protonn_actors::intents().bits().to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the discord.js peer (install Node.js)");
    let pid = child.id().expect("a running peer");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(240), lines.next_line())
            .await
            .expect("the discord.js peer absorbs every guild within 4 minutes")
            .unwrap()
            .expect("the discord.js peer exited early")
    };
    let started = Instant::now();
    let rss_before: usize = next_line()
        .await
        .strip_prefix("RSS ")
        .and_then(|rss| rss.parse().ok())
        .expect("the peer's RSS before it connects");
    while next_line().await != "ABSORBED" {}
    println!(
        "    peer: absorbed {guilds} GUILD_CREATEs in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(WARM_UP).await;
    let rss_growth = support::rss_of(&pid.to_string()).saturating_sub(rss_before);
    let window = Window::measure(sim, sim.pid(), Some(pid)).await;
    let _ = child.kill().await;
    PeerRun {
        window,
        rss_per_guild: rss_growth as f64 / f64::from(guilds),
    }
}

/// The peer child: connects its shards, waits for every GUILD_CREATE and a warm-up, then
/// measures its window like the bot's and prints it as a `PEER` line.
async fn peer(spec: PeerSpec) {
    let sim = support::SimClient {
        addr: spec.sim_addr.clone(),
    };
    let counts = Arc::new(Counts::default());
    let rss_before = support::rss();
    let stop: Box<dyn FnOnce()> = match spec.kind {
        PeerKind::TwilightAll => start_twilight_peer(&spec, EventTypeFlags::all(), &counts),
        PeerKind::TwilightBot => {
            // What the bot's shard runner asks twilight for.
            let types = protonn_actors::event_types()
                | EventTypeFlags::READY
                | EventTypeFlags::RESUMED
                | EventTypeFlags::GATEWAY_INVALIDATE_SESSION
                | EventTypeFlags::GATEWAY_RECONNECT
                | EventTypeFlags::GATEWAY_HEARTBEAT_ACK;
            start_twilight_peer(&spec, types, &counts)
        }
        PeerKind::Serenity => {
            let bot = serenity_bot::start(
                &spec.sim_addr,
                support::SIM_TOKEN,
                SHARDS,
                Arc::clone(&counts),
            );
            Box::new(move || bot.abort())
        }
        PeerKind::DiscordJs => unreachable!("discord.js runs in Node.js, not in this executable"),
    };
    let started = Instant::now();
    while counts.guild_creates.load(Ordering::Relaxed) < u64::from(spec.guilds) {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "peer: GUILD_CREATEs never all arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "absorbed {} GUILD_CREATEs in {:.2} s",
        spec.guilds,
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(WARM_UP).await;
    let rss_growth = support::rss().saturating_sub(rss_before);
    let events_before = counts.events.load(Ordering::Relaxed);
    let window = Window::measure(&sim, spec.sim_pid, None).await;
    let events_after = counts.events.load(Ordering::Relaxed);
    stop();
    let report = json!({
        "dispatches": window.dispatches,
        "bytes": window.bytes,
        "events_seen": events_after - events_before,
        "errors": counts.errors.load(Ordering::Relaxed),
        "cpu_ms": window.cpu.as_millis() as u64,
        "wall_us": window.wall.as_micros() as u64,
        "sim_cpu_ms": window.sim_cpu.as_millis() as u64,
        "run_queue_ms": window.run_queue.as_millis() as u64,
        "rss_growth": rss_growth,
    });
    println!(
        "seen {} events in the window, {} errors (parse errors, failed replies)",
        report["events_seen"], report["errors"]
    );
    println!("PEER {report}");
}

/// Twilight shards with `next_event` in a loop, counting, nothing else. Returns what closes
/// them.
fn start_twilight_peer(
    spec: &PeerSpec,
    types: EventTypeFlags,
    counts: &Arc<Counts>,
) -> Box<dyn FnOnce()> {
    let mut senders = Vec::new();
    for mut shard in support::twilight_shards(&spec.gateway_url, SHARDS) {
        senders.push(shard.sender());
        let counts = Arc::clone(counts);
        tokio::spawn(async move {
            while let Some(item) = shard.next_event(types).await {
                match item {
                    Ok(Event::GatewayClose(_)) => break,
                    Ok(Event::GuildCreate(_)) => {
                        counts.guild_creates.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(event) => drop(std::hint::black_box(event)),
                    Err(_) => {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                counts.events.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Box::new(move || {
        for sender in &senders {
            let _ = sender.close(CloseFrame::NORMAL);
        }
    })
}

struct Run {
    bot: BotRun,
    /// `None` with `bot-only`.
    peers: Option<Peers>,
}

impl Run {
    /// The peers of a run with peers.
    fn peers(&self) -> &Peers {
        self.peers.as_ref().expect("a run with peers")
    }
}

struct Peers {
    all_types: PeerRun,
    bot_types: PeerRun,
    serenity: PeerRun,
    discordjs: PeerRun,
}

async fn one_run(
    binary: &Path,
    rate: f64,
    guilds: u32,
    with_peers: bool,
    counters: &mut NodeCounters,
) -> Run {
    let sim = SimProcess::start(binary, &support::scenario(SHARDS, guilds, rate, 1_000)).await;
    let bot = measure_bot(&sim, guilds, counters).await;
    println!("  bot:  {}", bot.window.describe());
    println!(
        "        routed to guild actors {:.0} ({:.0} per CPU-second); GUILD_CREATEs absorbed in {:.2} s; \
         RSS growth {} per guild",
        bot.routed,
        bot.routed / bot.window.cpu.as_secs_f64(),
        bot.absorbed_in.as_secs_f64(),
        support::kib(bot.rss_per_guild)
    );
    println!(
        "        whole phase: shard shed {}, actor shed {}, mailbox overflow {}; buffer stalls {} \
         ({} in the window), reconnects {}; MESSAGE_CREATEs written by the window's end \
         and still unhandled {} s later: {}",
        bot.counters.shard_shed,
        bot.counters.actor_shed,
        bot.counters.mailbox_overflow,
        bot.counters.buffer_stalls,
        bot.in_window.buffer_stalls,
        bot.counters.reconnects,
        CATCH_UP.as_secs(),
        bot.missing_messages
    );
    // Let the simulator notice the node's sessions ended before the peer identifies.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peers = if with_peers {
        Some(measure_peers(&sim, guilds).await)
    } else {
        None
    };
    let resumes = sim.stat("resumes").await;
    if resumes > 0 {
        println!("  note: the simulator saw {resumes} RESUMEs (replays count as dispatches)");
    }
    drop(sim);
    Run { bot, peers }
}

async fn measure_peers(sim: &SimProcess, guilds: u32) -> Peers {
    let all_types = measure_peer(sim, guilds, PeerKind::TwilightAll).await;
    println!(
        "  peer, every type deserialised: {}",
        all_types.window.describe()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bot_types = measure_peer(sim, guilds, PeerKind::TwilightBot).await;
    println!(
        "  peer, the bot's types only:    {}",
        bot_types.window.describe()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let serenity = measure_peer(sim, guilds, PeerKind::Serenity).await;
    println!(
        "  peer, a serenity bot:          {}",
        serenity.window.describe()
    );
    println!(
        "        serenity's RSS growth once every guild was absorbed: {} per guild",
        support::kib(serenity.rss_per_guild)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let discordjs = measure_peer(sim, guilds, PeerKind::DiscordJs).await;
    println!(
        "  peer, a discord.js bot:        {}",
        discordjs.window.describe()
    );
    println!(
        "        discord.js's RSS growth once every guild was absorbed: {} per guild",
        support::kib(discordjs.rss_per_guild)
    );
    Peers {
        all_types,
        bot_types,
        serenity,
        discordjs,
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Ok(spec) = std::env::var(PEER_ENV) {
        peer(PeerSpec::decode(&spec)).await;
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut numbers = args.iter().filter_map(|a| a.parse::<f64>().ok());
    let runs = numbers.next().map_or(3, |n| n as usize).max(1);
    let rate = numbers.next().unwrap_or(20_000.0);
    let guilds = numbers.next().map_or(GUILDS, |n| n as u32);
    let with_peers = !args.iter().any(|a| a == "bot-only");
    let binary = protonn_tests::processes::protonn_binary();
    println!(
        "B1 throughput: {runs} runs, {rate:.0} events/s asked, {SHARDS} shards, {guilds} guilds, \
         zstd-stream transport compression{}",
        if with_peers { "" } else { ", bot only" }
    );
    println!("machine: {}", support::machine());
    println!("allocator: {}", std::any::type_name::<support::Allocator>());

    let mut counters = NodeCounters::default();
    let mut results = Vec::new();
    for run in 1..=runs {
        println!("run {run} (load average {}):", support::load_average());
        results.push(one_run(&binary, rate, guilds, with_peers, &mut counters).await);
    }

    // One line per figure: its value in every run, then the median, which it returns.
    let row = |label: &str, decimals: usize, f: &dyn Fn(&Run) -> f64| -> f64 {
        let mut values: Vec<f64> = results.iter().map(f).collect();
        let listed = values
            .iter()
            .map(|v| format!("{v:.decimals$}"))
            .collect::<Vec<_>>()
            .join(", ");
        let median = median(&mut values);
        println!("{label:<32} {listed} -> median {median:.decimals$}");
        median
    };
    println!(
        "--- B1 (median of {runs}; targets: like-for-like ratio (the bot's types) >= 1.0, >= 3x \
         serenity, >= 100k events per CPU-second on Intel) ---"
    );
    row("bot events per CPU-second:", 0, &|r| {
        r.bot.window.per_cpu_second()
    });
    row("bot CPU per dispatch, us:", 2, &|r| {
        r.bot.window.cpu_per_dispatch_us()
    });
    row("bytes per dispatch:", 1, &|r| {
        r.bot.window.bytes_per_dispatch()
    });
    row("rate held for the bot, /s:", 0, &|r| r.bot.window.rate());
    if with_peers {
        row("peer, every type:", 0, &|r| {
            r.peers().all_types.window.per_cpu_second()
        });
        row("peer, the bot's types:", 0, &|r| {
            r.peers().bot_types.window.per_cpu_second()
        });
        row("peer, a serenity bot:", 0, &|r| {
            r.peers().serenity.window.per_cpu_second()
        });
        row("peer, a discord.js bot:", 0, &|r| {
            r.peers().discordjs.window.per_cpu_second()
        });
        row("ratio bot / peer (every type):", 3, &|r| {
            r.bot.window.per_cpu_second() / r.peers().all_types.window.per_cpu_second()
        });
        row("ratio bot / peer (bot's types):", 3, &|r| {
            r.bot.window.per_cpu_second() / r.peers().bot_types.window.per_cpu_second()
        });
        row("ratio bot / serenity:", 3, &|r| {
            r.bot.window.per_cpu_second() / r.peers().serenity.window.per_cpu_second()
        });
        // B2's comparison in B1's world (15 roles and 10 emojis per guild, messages flowing).
        let serenity_rss = row("serenity RSS per guild (bytes):", 0, &|r| {
            r.peers().serenity.rss_per_guild
        });
        let discordjs_rss = row("discord.js RSS per guild (bytes):", 0, &|r| {
            r.peers().discordjs.rss_per_guild
        });
        let bot_rss = results[0].bot.rss_per_guild;
        println!(
            "RSS growth per guild once absorbed: bot (first run) {}, serenity median {}, \
             discord.js median {} (B2 target <= 16 KiB)",
            support::kib(bot_rss),
            support::kib(serenity_rss),
            support::kib(discordjs_rss)
        );
    }
    let drops: f64 = results.iter().map(|r| r.bot.counters.drops()).sum();
    let missing: u64 = results.iter().map(|r| r.bot.missing_messages).sum();
    println!(
        "over all runs: {drops} events shed; {missing} MESSAGE_CREATEs still unhandled {} s \
         after the window (a backlog when the bot falls behind, not a loss)",
        CATCH_UP.as_secs()
    );
}
