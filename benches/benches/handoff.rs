//! B6: shard handoff through the coordinator, at 500 events/s per shard.
//!
//! Separate processes, as in production: one `protonn coordinator` and `protonn node`s on
//! loopback (the harness of `protonn_tests::processes`), against the simulator in this
//! process: 32 shards of 10 guilds of 10 channels, and steady traffic the bench sends itself
//! through the simulator: `events_per_shard` MESSAGE_CREATEs of 1 KB a second on every
//! shard, round robin over its channels, none a command (no REST). Every node journals each
//! event it handled (`[diagnostics] handled_events`: time, node, shard, guild, message id),
//! so the figures are about handling, not delivery. One run, traffic throughout:
//!
//! 1. `cycles` times: drain the node holding 16 shards (node-a first) to node-b
//!    (`ClusterClient::drain`), stop it (SIGTERM), and start a new node, which takes about
//!    half of node-b's shards: a cycle is two rounds of about 16 handoffs.
//! 2. crash: SIGKILL the last joined node; its shards resume on node-b once the coordinator
//!    declares it lost (the failure timeout).
//! 3. silent partition: a new node takes its half, then is frozen (SIGSTOP) for `freeze_s`;
//!    its shards resume on node-b; it wakes (SIGCONT) fenced, and takes its share back.
//!
//! Figures, from the journals (wall-clock µs; every process is on this machine):
//! - handoff gap, per shard moved: the last event handled on the old node → the first
//!   handled on the new one. Drained shards and those moved to a joining node are the moves
//!   asked for; the coordinator's balancer makes moves of its own (it weighs shards by their
//!   recent traffic), counted apart.
//! - drain: the drain call → the last drained shard's first event handled on node-b.
//! - crash: the kill → the last of its shards' first event handled on node-b.
//! - partition: events handled by two nodes both after the frozen node's fence deadline
//!   (freeze + `fence_ms`, two thirds of the failure timeout), and by two nodes at all; the
//!   RESUMEs of each shard the frozen node held (the simulator's ledger), from the freeze to
//!   the end of the run.
//! - lost (sent, in no journal) events, by the phase they were sent in; duplicated ones
//!   (handled more than once), by the phase of each later handling: the move that handled
//!   them again (a crash's takeover replays what the killed node handled in its last
//!   heartbeat interval, events sent during the join before it); IDENTIFYs (the simulator's
//!   ledger) by phase.
//!
//! Needs the `protonn` binary of the same build next to the bench's own directory:
//!
//! ```sh
//! cargo build --release -p protonn-cluster
//! cargo bench -p protonn-benches --bench handoff -- \
//!     [runs] [heartbeat_ms] [failure_timeout_ms] [events_per_shard] [cycles] [freeze_s]
//! ```
//!
//! Defaults: 3 runs, heartbeat 500 ms, failure timeout 4,000 ms (`ClusterConfig`'s),
//! 500 events/s per shard, 10 cycles, a 15 s freeze.
//!
//! `PROTONN_KEEP_TEST_DIR=1` keeps every process's config, log and journal.

#[path = "support/common.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protonn_actors::HandledEvent;
use protonn_cluster::HandledLine;
use protonn_sim::{GatewayEventKind, SimConfig, SimHandle};
use protonn_tests::processes::{CLUSTER_TOKEN, Cluster, DEADLINE, Pace, protonn_binary, unix_us};
use support::{median, percentile};

const SHARDS: u32 = 32;
/// Handoffs under way at once (the default).
const MAX_MOVES: usize = 4;
/// Steady traffic after each phase's event, so that events reach both sides of its moves.
const QUIET: Duration = Duration::from_secs(1);
/// Events the load sends at most before it yields to the connections.
const MAX_BATCH: u64 = 1_000;
/// The node every drained shard goes to.
const STAYS: &str = "node-b";

fn world() -> SimConfig {
    SimConfig {
        shards: SHARDS,
        max_concurrency: SHARDS,
        guilds: 320,
        channels_per_guild: 10,
        messages_per_sec: 0.0,
        // Only the gateway records are read; the dispatches (16k a second) are not kept.
        ledger_capacity: 100_000,
        ..SimConfig::default()
    }
}

/// An event as sent.
struct Sent {
    message: u64,
    at_us: u64,
}

/// Steady MESSAGE_CREATEs on every shard at one rate, round robin over its channels.
struct Load {
    sent: Arc<Mutex<Vec<Sent>>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(sim: &SimHandle, per_shard: u32) -> Self {
        let mut targets: Vec<Vec<(u64, u64)>> = vec![Vec::new(); SHARDS as usize];
        for guild in sim.guilds() {
            for &channel in &guild.channel_ids {
                targets[guild.shard as usize].push((guild.id, channel));
            }
        }
        // About 1 KB, as BENCHMARKS.md's messages; no prefix: nothing answers it.
        let content = "handoff traffic ".repeat(64);
        let rate = f64::from(per_shard * SHARDS);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let task = {
            let (sim, sent, running) = (sim.clone(), Arc::clone(&sent), Arc::clone(&running));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let started = Instant::now();
                let mut cursors = vec![0_usize; targets.len()];
                let mut count: u64 = 0;
                let mut batch = Vec::new();
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    // What should have gone out by now: the rate holds whatever the ticks do.
                    let due = (started.elapsed().as_secs_f64() * rate) as u64;
                    // Behind after a stall: catch up a tick at a time, yielding between.
                    let due = due.min(count + MAX_BATCH);
                    while count < due {
                        let shard = (count % u64::from(SHARDS)) as usize;
                        let (guild, channel) =
                            targets[shard][cursors[shard] % targets[shard].len()];
                        cursors[shard] += 1;
                        // Authors from a pool of 1,000 users the world does not know.
                        let author = 2_000_000 + count % 1_000;
                        let at_us = unix_us();
                        if let Some(message) = sim.send_message(guild, channel, author, &content) {
                            batch.push(Sent { message, at_us });
                        }
                        count += 1;
                    }
                    sent.lock().unwrap().append(&mut batch);
                }
            })
        };
        Self {
            sent,
            running,
            task,
        }
    }

    async fn stop(self) -> Vec<Sent> {
        self.running.store(false, Ordering::Relaxed);
        let _ = self.task.await;
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

/// The shards node `name` owns.
async fn owned_by(cluster: &Cluster, name: &str) -> Vec<u32> {
    let status = cluster
        .client
        .status()
        .await
        .expect("the coordinator answers");
    let node_id = status
        .nodes
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.node_id)
        .unwrap_or_else(|| panic!("{name} is not a member"));
    status
        .shards
        .iter()
        .filter(|s| s.node_id == node_id)
        .map(|s| s.shard_id)
        .collect()
}

/// Waits as [`Cluster::settled`] does, then until no handoff happened for two heartbeats:
/// the balancer also moves shards by their recent traffic.
async fn steady(cluster: &Cluster, what: &str, shape: impl Fn(&BTreeMap<String, u32>) -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        cluster.settled(what, &shape).await;
        let before = cluster.client.status().await.map(|s| s.handoffs).ok();
        tokio::time::sleep(Duration::from_millis(2 * cluster.pace.heartbeat_ms)).await;
        if let Ok(after) = cluster.client.status().await
            && before == Some(after.handoffs)
            && after.shards.iter().all(|s| s.node_id != 0 && !s.moving)
        {
            let per_node = after
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.shards))
                .collect();
            if shape(&per_node) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never held still"
        );
    }
}

/// Both nodes hold about half.
fn halves(joined: &str) -> impl Fn(&BTreeMap<String, u32>) -> bool {
    move |n| n.get(joined).is_some_and(|&c| c >= 12) && n.get(STAYS).is_some_and(|&b| b >= 12)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Traffic before the first drain.
    Start,
    Drain,
    Join,
    Crash,
    /// A node joins before the freeze.
    PartitionJoin,
    Partition,
}

/// A phase of a run: its event, until the next phase's event.
struct Phase {
    kind: Kind,
    from_us: u64,
    /// The node the asked-for moves leave, and the one they reach.
    from: String,
    to: String,
    /// The shards the event asked to move.
    asked: Vec<u32>,
}

/// A shard's events passing from one node to another, in the journals.
struct Move {
    shard: u32,
    from: usize,
    to: usize,
    /// The last event handled on `from` before, the first on `to`.
    last_us: u64,
    first_us: u64,
}

/// What one run measured.
#[derive(Default)]
struct Figures {
    /// Gaps of the asked-for moves of drains and joins, and of the balancer's own moves.
    asked_gaps_ms: Vec<f64>,
    other_gaps_ms: Vec<f64>,
    drain_ms: Vec<f64>,
    drained: Vec<usize>,
    crash_ms: f64,
    crash_shards: usize,
    /// Events handled by two nodes both after the fence deadline; by two nodes at all.
    twice_after_fence: usize,
    twice_in_partition: usize,
    /// RESUMEs of each shard the frozen node held, most of any, and in all.
    most_resumes: u32,
    resumes: u32,
    frozen_shards: usize,
    /// Takeover of the frozen node's shards: the freeze → the last one's first event on
    /// node-b.
    takeover_ms: f64,
    /// Per phase kind: sent and lost (by the phase sent in), duplicated (by the phase of the
    /// second handling), IDENTIFYs.
    counts: BTreeMap<&'static str, [u64; 4]>,
    /// Events per second per shard the load reached.
    rate: f64,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Drain => "drain",
            Kind::Join => "join",
            Kind::Crash => "crash",
            Kind::PartitionJoin | Kind::Partition => "partition",
        }
    }
}

struct Args {
    runs: u64,
    pace: Pace,
    per_shard: u32,
    cycles: u32,
    freeze: Duration,
}

async fn run(args: &Args) -> Figures {
    let mut cluster = Cluster::start_paced(world(), args.pace, 1, 2).await;
    cluster.journal_events = true;
    let sim_start_us = unix_us() - cluster.sim_start.elapsed().as_micros() as u64;
    cluster.start_node("node-a", Some(CLUSTER_TOKEN)).await;
    cluster.start_node(STAYS, Some(CLUSTER_TOKEN)).await;
    steady(&cluster, "16 shards on each of two nodes", |n| {
        n.get("node-a") == Some(&16) && n.get(STAYS) == Some(&16)
    })
    .await;
    let mut names = vec!["node-a".to_owned(), STAYS.to_owned()];
    let mut phases = vec![Phase {
        kind: Kind::Start,
        from_us: unix_us(),
        from: String::new(),
        to: String::new(),
        asked: Vec::new(),
    }];
    let load = Load::start(&cluster.sim, args.per_shard);
    let load_started = Instant::now();
    tokio::time::sleep(QUIET).await;

    let mut holder = "node-a".to_owned();
    for cycle in 1..=args.cycles {
        let drained = owned_by(&cluster, &holder).await;
        phases.push(Phase {
            kind: Kind::Drain,
            from_us: unix_us(),
            from: holder.clone(),
            to: STAYS.to_owned(),
            asked: drained,
        });
        cluster.operator.drain(&holder).await.expect("the drain");
        cluster
            .settled("the drained node holds nothing", |n| {
                n.get(&holder).is_none_or(|&n| n == 0)
            })
            .await;
        tokio::time::sleep(QUIET).await;
        let mut drained_node = cluster.nodes.remove(&holder).unwrap();
        drained_node.signal("-TERM");
        assert!(
            drained_node.exited().await.success(),
            "a drained node exits cleanly"
        );

        let joining = format!("node-{cycle}");
        let joined_us = unix_us();
        cluster.start_node(&joining, Some(CLUSTER_TOKEN)).await;
        steady(
            &cluster,
            "the joining node takes about half",
            halves(&joining),
        )
        .await;
        phases.push(Phase {
            kind: Kind::Join,
            from_us: joined_us,
            from: STAYS.to_owned(),
            to: joining.clone(),
            asked: owned_by(&cluster, &joining).await,
        });
        names.push(joining.clone());
        tokio::time::sleep(QUIET).await;
        holder = joining;
    }

    // The last joined node dies: its shards resume on node-b once it is declared lost.
    let crashed = owned_by(&cluster, &holder).await;
    phases.push(Phase {
        kind: Kind::Crash,
        from_us: unix_us(),
        from: holder.clone(),
        to: STAYS.to_owned(),
        asked: crashed,
    });
    cluster.nodes.get_mut(&holder).unwrap().kill();
    cluster
        .settled("the killed node's shards resumed", |n| {
            !n.contains_key(&holder)
        })
        .await;
    tokio::time::sleep(QUIET).await;

    // A node that will be frozen joins, and takes its half.
    let frozen = "node-frozen";
    phases.push(Phase {
        kind: Kind::PartitionJoin,
        from_us: unix_us(),
        from: STAYS.to_owned(),
        to: frozen.to_owned(),
        asked: Vec::new(),
    });
    cluster.start_node(frozen, Some(CLUSTER_TOKEN)).await;
    names.push(frozen.to_owned());
    steady(
        &cluster,
        "the node to freeze takes about half",
        halves(frozen),
    )
    .await;
    tokio::time::sleep(QUIET).await;
    let frozen_shards = owned_by(&cluster, frozen).await;
    let freeze_us = unix_us();
    let frozen_at = tokio::time::Instant::now();
    cluster.nodes[frozen].signal("-STOP");
    phases.push(Phase {
        kind: Kind::Partition,
        from_us: freeze_us,
        from: frozen.to_owned(),
        to: STAYS.to_owned(),
        asked: frozen_shards.clone(),
    });
    cluster
        .settled("node-b runs every shard", |n| n.get(STAYS) == Some(&SHARDS))
        .await;
    tokio::time::sleep_until(frozen_at + args.freeze).await;
    cluster.nodes[frozen].signal("-CONT");
    steady(
        &cluster,
        "the frozen node takes its share again",
        halves(frozen),
    )
    .await;
    tokio::time::sleep(QUIET).await;

    let sent = load.stop().await;
    let rate = sent.len() as f64 / load_started.elapsed().as_secs_f64() / f64::from(SHARDS);
    let end_us = unix_us();
    let journals = cluster
        .journals(&names.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let fence_us = freeze_us + args.pace.failure_timeout_ms * 2 / 3 * 1_000;
    let figures = analyse(
        &cluster,
        journals,
        &names,
        &phases,
        &sent,
        end_us,
        fence_us,
        sim_start_us,
        rate,
    );
    let Cluster {
        sim,
        nodes,
        coordinators,
        ..
    } = cluster;
    drop((nodes, coordinators));
    sim.shutdown().await;
    figures
}

/// Which phase `at_us` falls in: the last that began at or before it.
fn phase_at(phases: &[Phase], at_us: u64) -> usize {
    phases.iter().rposition(|p| p.from_us <= at_us).unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    cluster: &Cluster,
    journals: Vec<HandledLine>,
    names: &[String],
    phases: &[Phase],
    sent: &[Sent],
    end_us: u64,
    fence_us: u64,
    sim_start_us: u64,
    rate: f64,
) -> Figures {
    let node_index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    // (message, at_us, node, shard) of every message handled, from every journal.
    let mut handled: Vec<(u64, u64, usize, u32)> = Vec::new();
    for line in journals {
        if let HandledEvent::Message(message) = line.event {
            handled.push((
                message,
                line.at_us,
                node_index[line.node.as_str()],
                line.shard,
            ));
        }
    }
    assert!(!handled.is_empty(), "the journals hold no handled message");

    let mut figures = Figures {
        rate,
        ..Figures::default()
    };
    let count = |figures: &mut Figures, kind: Kind, column: usize, n: u64| {
        figures.counts.entry(kind.name()).or_insert([0; 4])[column] += n;
    };

    // Lost, by the phase each event was sent in; duplicated, by the phase each later
    // handling happened in (the move that handled it again, not the one before it).
    handled.sort_unstable_by_key(|&(message, at_us, ..)| (message, at_us));
    let mut handlings: HashMap<u64, &[(u64, u64, usize, u32)]> = HashMap::new();
    for group in handled.chunk_by(|a, b| a.0 == b.0) {
        handlings.insert(group[0].0, group);
    }
    let sent_ids: HashSet<u64> = sent.iter().map(|s| s.message).collect();
    for event in sent {
        let kind = phases[phase_at(phases, event.at_us)].kind;
        count(&mut figures, kind, 0, 1);
        match handlings.get(&event.message) {
            None => count(&mut figures, kind, 1, 1),
            Some(group) => {
                for again in &group[1..] {
                    count(&mut figures, phases[phase_at(phases, again.1)].kind, 2, 1);
                }
            }
        }
    }

    // Handled by two nodes: both after the fence deadline, and at all, in the partition.
    let partition = phases
        .iter()
        .position(|p| p.kind == Kind::Partition)
        .unwrap();
    for (message, group) in &handlings {
        if !sent_ids.contains(message) {
            continue;
        }
        let nodes: HashSet<usize> = group.iter().map(|h| h.2).collect();
        if nodes.len() < 2 || group[0].1 < phases[partition - 1].from_us {
            continue;
        }
        figures.twice_in_partition += 1;
        let late: HashSet<usize> = group
            .iter()
            .filter(|h| h.1 >= fence_us)
            .map(|h| h.2)
            .collect();
        if late.len() >= 2 {
            figures.twice_after_fence += 1;
        }
    }

    // Moves: per shard, in time order, each change of the handling node.
    handled.sort_unstable_by_key(|&(_, at_us, _, shard)| (shard, at_us));
    let mut moves = Vec::new();
    for shard in handled.chunk_by(|a, b| a.3 == b.3) {
        for pair in shard.windows(2) {
            if pair[0].2 != pair[1].2 {
                moves.push(Move {
                    shard: pair[0].3,
                    from: pair[0].2,
                    to: pair[1].2,
                    last_us: pair[0].1,
                    first_us: pair[1].1,
                });
            }
        }
    }
    let ms = |us: u64| us as f64 / 1_000.0;
    for (index, phase) in phases.iter().enumerate() {
        let until_us = phases.get(index + 1).map_or(end_us, |p| p.from_us);
        let in_phase: Vec<&Move> = moves
            .iter()
            .filter(|m| m.first_us >= phase.from_us && m.first_us < until_us)
            .collect();
        let asked = |m: &Move| {
            phase.asked.contains(&m.shard) && names[m.from] == phase.from && names[m.to] == phase.to
        };
        // Each asked shard's first move of the phase.
        let first_asked: Vec<&Move> = phase
            .asked
            .iter()
            .filter_map(|&shard| {
                in_phase
                    .iter()
                    .find(|m| m.shard == shard && asked(m))
                    .copied()
            })
            .collect();
        let all_back_ms = |what: &str| -> f64 {
            assert_eq!(
                first_asked.len(),
                phase.asked.len(),
                "{what}: shards never handled on {}",
                phase.to
            );
            first_asked
                .iter()
                .map(|m| ms(m.first_us.saturating_sub(phase.from_us)))
                .fold(0.0, f64::max)
        };
        match phase.kind {
            Kind::Drain | Kind::Join => {
                for m in &in_phase {
                    let gap = ms(m.first_us.saturating_sub(m.last_us));
                    if first_asked.iter().any(|a| std::ptr::eq(*a, *m)) {
                        figures.asked_gaps_ms.push(gap);
                    } else {
                        figures.other_gaps_ms.push(gap);
                    }
                }
                if phase.kind == Kind::Drain {
                    figures.drain_ms.push(all_back_ms("drain"));
                    figures.drained.push(phase.asked.len());
                }
            }
            Kind::Crash => {
                figures.crash_ms = all_back_ms("crash");
                figures.crash_shards = phase.asked.len();
            }
            Kind::Partition => {
                figures.takeover_ms = all_back_ms("partition");
                figures.frozen_shards = phase.asked.len();
            }
            Kind::Start | Kind::PartitionJoin => {}
        }
    }

    // IDENTIFYs by phase, and RESUMEs of the frozen node's shards from the freeze on.
    let ledger = cluster.sim.ledger();
    let mut resumes: HashMap<u32, u32> = HashMap::new();
    for record in &ledger.gateway {
        let at_us = sim_start_us + record.at_ms * 1_000;
        let kind = phases[phase_at(phases, at_us)].kind;
        match (&record.kind, record.shard) {
            (GatewayEventKind::Identified, _) if at_us >= phases[0].from_us => {
                count(&mut figures, kind, 3, 1);
            }
            (GatewayEventKind::Resumed { .. }, Some(shard))
                if at_us >= phases[partition].from_us
                    && phases[partition].asked.contains(&shard) =>
            {
                *resumes.entry(shard).or_default() += 1;
            }
            _ => {}
        }
    }
    figures.most_resumes = resumes.values().copied().max().unwrap_or(0);
    figures.resumes = resumes.values().sum();
    figures
}

/// `p50 / p99 / max` in ms, with the sample count.
fn spread(values: &[f64]) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    let mut values = values.to_vec();
    format!(
        "p50 {:.1} / p99 {:.1} / max {:.1} ms (n {})",
        percentile(&mut values, 0.5),
        percentile(&mut values, 0.99),
        percentile(&mut values, 1.0),
        values.len()
    )
}

/// The median of `values` and the values themselves.
fn median_of(values: &[f64], unit: &str) -> String {
    if values.is_empty() {
        return "none".to_owned();
    }
    let listed: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    format!(
        "{:.0} {unit} ({})",
        median(&mut values.to_vec()),
        listed.join(", ")
    )
}

fn counts_line(counts: &BTreeMap<&'static str, [u64; 4]>) -> String {
    counts
        .iter()
        .map(|(phase, [sent, lost, duplicated, identifies])| {
            format!(
                "{phase}: sent {sent} lost {lost} duplicated {duplicated} IDENTIFYs {identifies}"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn parse_args() -> Args {
    // cargo bench passes `--bench`; the numbers are ours.
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let arg = |index: usize, default: u64| numbers.get(index).copied().unwrap_or(default);
    let failure_timeout_ms = arg(2, 4_000);
    Args {
        runs: arg(0, 3),
        pace: Pace {
            heartbeat_ms: arg(1, 500),
            failure_timeout_ms,
            // ClusterConfig's ratio: 1.5 s at a 4 s failure timeout.
            lease_ttl_ms: failure_timeout_ms * 3 / 8,
            max_moves: MAX_MOVES,
        },
        per_shard: arg(3, 500) as u32,
        cycles: arg(4, 10) as u32,
        freeze: Duration::from_secs(arg(5, 15)),
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args();
    // Early, with a clear message when it is missing.
    let binary = protonn_binary();
    let pace = args.pace;
    println!(
        "B6 handoff: {SHARDS} shards, {} events/s per shard (1 KB MESSAGE_CREATE), {} runs of \
         {} drain/join cycles, a crash and a {} s freeze; heartbeat {} ms, failure timeout {} \
         ms (fence {} ms), max_moves {MAX_MOVES}; {}",
        args.per_shard,
        args.runs,
        args.cycles,
        args.freeze.as_secs(),
        pace.heartbeat_ms,
        pace.failure_timeout_ms,
        pace.failure_timeout_ms * 2 / 3,
        binary.display()
    );
    let mut results = Vec::new();
    for index in 1..=args.runs {
        let figures = run(&args).await;
        println!("run {index}: load {:.0} events/s per shard", figures.rate);
        println!(
            "  handoff gap, moves asked (drains, joins): {}",
            spread(&figures.asked_gaps_ms)
        );
        println!(
            "  handoff gap, the balancer's own moves: {}",
            spread(&figures.other_gaps_ms)
        );
        println!(
            "  drain, call → last drained shard handled on node-b: {} (shards {:?})",
            median_of(&figures.drain_ms, "ms"),
            figures.drained
        );
        println!(
            "  crash, SIGKILL → last of its {} shards handled on node-b: {:.0} ms",
            figures.crash_shards, figures.crash_ms
        );
        println!(
            "  partition, SIGSTOP → last of its {} shards handled on node-b: {:.0} ms; events \
             handled by two nodes after the fence deadline {} (by two nodes at all {}); \
             RESUMEs per moved shard: most {}, {} in all",
            figures.frozen_shards,
            figures.takeover_ms,
            figures.twice_after_fence,
            figures.twice_in_partition,
            figures.most_resumes,
            figures.resumes
        );
        println!("  {}", counts_line(&figures.counts));
        results.push(figures);
    }

    println!("summary of {} runs", args.runs);
    let pooled = |pick: fn(&Figures) -> &Vec<f64>| -> Vec<f64> {
        results.iter().flat_map(|f| pick(f).clone()).collect()
    };
    let asked = pooled(|f| &f.asked_gaps_ms);
    let every: Vec<f64> = asked
        .iter()
        .chain(&pooled(|f| &f.other_gaps_ms))
        .copied()
        .collect();
    println!(
        "  handoff gap (last handled on A → first handled on B), every move: {} (target p99 <= 250 ms)",
        spread(&every)
    );
    println!("  handoff gap, moves asked: {}", spread(&asked));
    let p99s: Vec<f64> = results
        .iter()
        .map(|f| {
            let mut gaps: Vec<f64> = f
                .asked_gaps_ms
                .iter()
                .chain(&f.other_gaps_ms)
                .copied()
                .collect();
            if gaps.is_empty() {
                0.0
            } else {
                percentile(&mut gaps, 0.99)
            }
        })
        .collect();
    println!(
        "  handoff gap p99 of each run: median {}",
        median_of(&p99s, "ms")
    );
    println!(
        "  drain of 16, call → last drained shard handled on node-b: {} (target <= 2000 ms)",
        spread(&pooled(|f| &f.drain_ms)),
    );
    println!(
        "  crash, SIGKILL → last handled on node-b: median {} (target <= 5000 ms)",
        median_of(
            &results.iter().map(|f| f.crash_ms).collect::<Vec<_>>(),
            "ms"
        )
    );
    println!(
        "  partition ({} s SIGSTOP): handled by two nodes after the fence deadline {} (target 0); \
         most RESUMEs of a moved shard {} (target <= 2); SIGSTOP → taken over: median {}",
        args.freeze.as_secs(),
        results.iter().map(|f| f.twice_after_fence).sum::<usize>(),
        results.iter().map(|f| f.most_resumes).max().unwrap_or(0),
        median_of(
            &results.iter().map(|f| f.takeover_ms).collect::<Vec<_>>(),
            "ms"
        )
    );
    let mut totals: BTreeMap<&'static str, [u64; 4]> = BTreeMap::new();
    for figures in &results {
        for (phase, columns) in &figures.counts {
            let total = totals.entry(phase).or_insert([0; 4]);
            for (t, c) in total.iter_mut().zip(columns) {
                *t += c;
            }
        }
    }
    println!("  {}", counts_line(&totals));
    println!(
        "  load reached: median {}",
        median_of(
            &results.iter().map(|f| f.rate).collect::<Vec<_>>(),
            "events/s per shard"
        )
    );
}
