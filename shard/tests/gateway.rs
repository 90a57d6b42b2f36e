//! The shard layer against the simulator: real twilight shards, a recording sink.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use protonn_shard::metrics::REPLAYED_DUPLICATES;
use protonn_shard::{EventSink, ExportedSession, ShardError, ShardPhase, SupervisorMsg};
use protonn_sim::{Fault, GatewayEventKind, IdentifyOutcome, SimConfig, SimHandle};
use ractor::ActorRef;
use twilight_model::gateway::ShardId;
use twilight_model::gateway::event::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_session_resumed_elsewhere_loses_and_identifies_nothing() {
    let sim = start_sim(2).await;
    let old_sink = Arc::new(Recorder::default());
    let new_sink = Arc::new(Recorder::default());
    let old = start_supervisor(&sim, vec![0, 1], Arc::clone(&old_sink)).await;
    let new = start_supervisor(&sim, vec![], Arc::clone(&new_sink)).await;
    wait_until("shard 0 is ready on the old owner", || async {
        phase(&old, 0).await == Some(ShardPhase::Ready)
    })
    .await;

    let mut sent = chat(&sim, 0, 50);
    let session = ractor::call_t!(
        old,
        |reply| SupervisorMsg::Drain {
            shard: ShardId::new(0, 2),
            reply
        },
        10_000
    )
    .unwrap()
    .expect("a ready shard exports its session");
    assert_eq!(session.shard_id, 0);
    wait_until("the old owner let go of the shard", || async {
        phase(&old, 0).await.is_none()
    })
    .await;
    // Nobody owns shard 0 now: Discord keeps these for the resume.
    sent.extend(chat(&sim, 0, 50));

    ractor::call_t!(
        new,
        |reply| SupervisorMsg::Adopt {
            shard: ShardId::new(0, 2),
            session: Some(session),
            seen_up_to: None,
            reply
        },
        10_000
    )
    .unwrap()
    .unwrap();
    wait_until("shard 0 is ready on the new owner", || async {
        phase(&new, 0).await == Some(ShardPhase::Ready)
    })
    .await;
    sent.extend(chat(&sim, 0, 50));
    assert_eq!(sent.len(), 150);

    wait_until("every message reached one of the owners", || async {
        let (old, new) = (old_sink.counts(), new_sink.counts());
        sent.iter()
            .all(|id| old.contains_key(id) || new.contains_key(id))
    })
    .await;
    let (old_seen, new_seen) = (old_sink.counts(), new_sink.counts());
    for id in &sent {
        let times = old_seen.get(id).unwrap_or(&0) + new_seen.get(id).unwrap_or(&0);
        assert_eq!(
            times, 1,
            "message {id} handled {times} times across the handoff"
        );
    }
    assert!(!new_seen.is_empty(), "the new owner took over");
    let identifies = gateway_count(&sim, 0, |k| *k == GatewayEventKind::Identified);
    assert_eq!(identifies, 1, "the handoff spent no IDENTIFY");
    let resumes = gateway_count(&sim, 0, |k| matches!(k, GatewayEventKind::Resumed { .. }));
    assert_eq!(resumes, 1);

    // Shard 1 never noticed.
    assert_eq!(phase(&old, 1).await, Some(ShardPhase::Ready));
    old.stop(None);
    new.stop(None);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_a_shard_twice_or_draining_an_unknown_one_is_refused() {
    let sim = start_sim(2).await;
    let supervisor = start_supervisor(&sim, vec![0], Arc::new(Recorder::default())).await;

    let twice = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Adopt {
            shard: ShardId::new(0, 2),
            session: None,
            seen_up_to: None,
            reply
        },
        5_000
    )
    .unwrap();
    assert!(twice.unwrap_err().to_string().contains("already running"));
    // Shard 0 of another count is another shard: a resharding's new set runs beside the old.
    let beside = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Adopt {
            shard: ShardId::new(0, 4),
            session: None,
            seen_up_to: None,
            reply
        },
        5_000
    )
    .unwrap();
    assert!(beside.is_ok(), "{beside:?}");
    let statuses = ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000).unwrap();
    let keys: Vec<(u32, u32)> = statuses
        .iter()
        .map(|status| (status.shard_id, status.shard_count))
        .collect();
    assert_eq!(keys, vec![(0, 2), (0, 4)]);
    let unknown = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Drain {
            shard: ShardId::new(1, 2),
            reply
        },
        5_000
    )
    .unwrap();
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("not run by this node")
    );

    supervisor.stop(None);
    sim.shutdown().await;
}

/// A sink that fails at once: its shard's runner fails, and waits in restart back-off.
struct Failing;

impl EventSink for Failing {
    fn deliver(
        &self,
        _shard: ShardId,
        _events: Vec<Event>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        panic!("a sink that fails");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_in_restart_back_off_can_still_be_drained_and_stays_gone() {
    let sim = start_sim(1).await;
    let supervisor = start_supervisor(&sim, vec![0], Arc::new(Failing)).await;
    let runs = |supervisor: ActorRef<SupervisorMsg>| async move {
        ractor::call_t!(supervisor, SupervisorMsg::Statuses, 5_000)
            .unwrap()
            .into_iter()
            .find(|s| s.shard_id == 0)
            .map(|s| s.running)
    };
    // Events make the forwarder deliver, the sink panic, and the runner fail.
    wait_until("the runner failed and waits to restart", || {
        chat(&sim, 0, 1);
        let supervisor = supervisor.clone();
        async move { runs(supervisor).await == Some(false) }
    })
    .await;
    let drained = ractor::call_t!(
        supervisor,
        |reply| SupervisorMsg::Drain {
            shard: ShardId::new(0, 1),
            reply
        },
        5_000
    )
    .unwrap();
    // The failed runner never delivered a batch: no checkpoint to hand over.
    assert!(
        matches!(drained, Ok(_) | Err(ShardError::NoSession(0))),
        "{drained:?}"
    );
    assert_eq!(runs(supervisor.clone()).await, None, "the shard left");
    // Proving an absence takes time: past the first back-off (1 s), nothing restarted it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        runs(supervisor.clone()).await,
        None,
        "no restart after a drain"
    );

    supervisor.stop(None);
    sim.shutdown().await;
}

/// Faults that leave the session resumable, and op 9 false, which does not.
const STORM: [Fault; 6] = [
    Fault::Close { code: 4000 },
    Fault::Reconnect,
    Fault::InvalidSession { resumable: true },
    Fault::InvalidSession { resumable: false },
    Fault::HalfOpen,
    Fault::Drop,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_storm_loses_nothing_and_identifies_only_when_it_must() {
    const SHARDS: u32 = 4;
    let sim = start_sim_with(SimConfig {
        shards: SHARDS,
        max_concurrency: SHARDS,
        guilds: 40,
        time_scale: 0.02,
        // Short heartbeats so that a half-open connection is noticed within a second; long
        // session life so that only op 9 false can make a resume impossible.
        heartbeat_interval_ms: 300,
        session_ttl_ms: 3_000_000,
        ..SimConfig::default()
    })
    .await;
    let sink = Arc::new(Recorder::default());
    let supervisor = start_supervisor(&sim, (0..SHARDS).collect(), Arc::clone(&sink)).await;
    wait_until("all shards are ready", || all_ready(&supervisor)).await;

    // Three seconds of chat at ~150 messages/s while ~10 faults/s hit random shards.
    let guilds = sim.guilds();
    let mut sent = Vec::new();
    let mut invalidated = [0usize; SHARDS as usize];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let storm_end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while tokio::time::Instant::now() < storm_end {
        tick.tick().await;
        for _ in 0..3 {
            let guild = &guilds[next() as usize % guilds.len()];
            let author = guild.member_ids[0];
            sent.extend(sim.send_message(guild.id, guild.channel_ids[0], author, "storm"));
        }
        if next() % 5 == 0 {
            let shard = (next() % u64::from(SHARDS)) as u32;
            let fault = STORM[next() as usize % STORM.len()].clone();
            let invalidates = fault == Fault::InvalidSession { resumable: false };
            if sim.inject(shard, fault) && invalidates {
                invalidated[shard as usize] += 1;
            }
        }
    }
    assert!(
        sent.len() > 300,
        "the storm carried traffic: {}",
        sent.len()
    );
    wait_until("every shard is back", || all_ready(&supervisor)).await;

    // Everything Discord delivered was handled, exactly once.
    let delivered = || -> std::collections::HashSet<u64> {
        sim.ledger()
            .dispatches
            .iter()
            .filter(|d| d.event == "MESSAGE_CREATE")
            .filter_map(|d| d.entity_id)
            .collect()
    };
    wait_until("every delivered message reached the sink", || async {
        let seen = sink.counts();
        delivered().iter().all(|id| seen.contains_key(id))
    })
    .await;
    // Discord may still be delivering after that check passed, so the reverse inclusion is
    // read with the sink first: whatever it holds was delivered before it was read.
    let seen = sink.counts();
    assert!(
        seen.values().all(|&n| n == 1),
        "a message was handled twice"
    );
    let delivered_since = delivered();
    assert!(
        seen.keys().all(|id| delivered_since.contains(id)),
        "the sink holds a message Discord never delivered"
    );

    // A shard identified once at start and once per invalidated session, never to replace
    // a session it could have resumed.
    let ledger = sim.ledger();
    assert!(
        ledger
            .identifies
            .iter()
            .all(|i| i.outcome == IdentifyOutcome::Accepted)
    );
    for shard in 0..SHARDS {
        let identifies = ledger
            .identifies
            .iter()
            .filter(|i| i.shard == shard)
            .count();
        assert_eq!(identifies, 1 + invalidated[shard as usize], "shard {shard}");
    }
    let resumes = ledger
        .gateway
        .iter()
        .filter(|r| matches!(r.kind, GatewayEventKind::Resumed { .. }))
        .count();
    println!(
        "storm: {} messages sent, {} delivered, {} resumes, {} re-identifies",
        sent.len(),
        seen.len(),
        resumes,
        invalidated.iter().sum::<usize>()
    );
    assert!(resumes > 0);
    supervisor.stop(None);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_follows_delivery_and_never_runs_ahead_of_the_gateway() {
    let sim = start_sim(1).await;
    let sink = Arc::new(Recorder::default());
    let supervisor = start_supervisor(&sim, vec![0], Arc::clone(&sink)).await;
    wait_until("shard 0 is ready", || async {
        phase(&supervisor, 0).await == Some(ShardPhase::Ready)
    })
    .await;

    let mut samples = Vec::new();
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let sent = chat(&sim, 0, 40);
        // Sampled while the messages flow to the sink.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            samples.push(
                checkpoint(&supervisor, 0)
                    .await
                    .expect("READY was delivered"),
            );
            let seen = sink.counts();
            if sent.iter().all(|id| seen.contains_key(id)) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "messages lost");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let done = caught_up(&sim, &supervisor, &sent).await;
        samples.push(done.clone());
        rounds.push(done);
    }

    let session = &samples[0].session_id;
    assert!(samples.iter().all(|cp| &cp.session_id == session));
    assert!(
        samples.is_sorted_by_key(|cp| cp.sequence),
        "the checkpoint went back"
    );
    assert!(
        rounds.is_sorted_by(|a, b| a.sequence < b.sequence),
        "each round of traffic moved the checkpoint"
    );
    // Each checkpoint is a dispatch the gateway sent in that session (the simulator
    // records a dispatch just after writing it, hence the wait).
    wait_until("the ledger shows every checkpoint's dispatch", || async {
        let sent: HashSet<u64> = sim
            .ledger()
            .dispatches
            .iter()
            .filter(|d| d.shard == 0 && &d.session == session)
            .map(|d| d.seq)
            .collect();
        samples.iter().all(|cp| sent.contains(&cp.sequence))
    })
    .await;
    supervisor.stop(None);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_from_an_older_checkpoint_counts_the_replayed_duplicates() {
    let prometheus = prometheus();
    let sim = start_sim(1).await;
    // The crashing node runs on a runtime of its own: dropping it drops its connection
    // without a close frame, as a crash does, and leaves no task behind.
    let node = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let crashing = node
        .spawn({
            let sim = sim.clone();
            async move { start_supervisor(&sim, vec![0], Arc::new(Recorder::default())).await }
        })
        .await
        .unwrap();
    wait_until("shard 0 is ready on the crashing node", || async {
        phase(&crashing, 0).await == Some(ShardPhase::Ready)
    })
    .await;

    // The coordinator resumes from an older checkpoint but heard of a later one.
    let older = caught_up(&sim, &crashing, &chat(&sim, 0, 30)).await;
    let between = chat(&sim, 0, 30);
    let seen = caught_up(&sim, &crashing, &between).await;
    assert_eq!(older.session_id, seen.session_id);
    let in_flight = chat(&sim, 0, 20);
    node.shutdown_background();
    wait_until("the gateway saw the connection go", || async {
        sim.ledger().gateway.iter().any(|r| {
            r.session.as_ref() == Some(&older.session_id)
                && r.kind == GatewayEventKind::Disconnected
        })
    })
    .await;
    let missed = chat(&sim, 0, 20);

    let sink = Arc::new(Recorder::default());
    let adopter = start_supervisor(&sim, vec![], Arc::clone(&sink)).await;
    ractor::call_t!(
        adopter,
        |reply| SupervisorMsg::Adopt {
            shard: ShardId::new(0, 1),
            session: Some(older.clone()),
            seen_up_to: Some(seen.sequence),
            reply
        },
        10_000
    )
    .unwrap()
    .unwrap();
    let expected: Vec<u64> = [between, in_flight, missed].concat();
    wait_until(
        "every message after the older checkpoint reached the adopter",
        || async {
            let seen = sink.counts();
            expected.iter().all(|id| seen.contains_key(id))
        },
    )
    .await;

    let ledger = sim.ledger();
    let replayed_up_to_seen = ledger
        .dispatches
        .iter()
        .filter(|d| d.shard == 0 && d.session == older.session_id && d.replayed)
        .filter(|d| d.seq <= seen.sequence && d.event == "MESSAGE_CREATE")
        .count();
    assert_eq!(
        replayed_up_to_seen, 30,
        "the messages between both checkpoints"
    );
    // Counted before each batch is delivered, so complete by now.
    assert_eq!(
        duplicates_counted(&prometheus, 0),
        replayed_up_to_seen as u64
    );
    let resumes = gateway_count(&sim, 0, |k| matches!(k, GatewayEventKind::Resumed { .. }));
    assert_eq!(resumes, 1, "the adopter resumed the crashed session");
    let cp = checkpoint(&adopter, 0).await.unwrap();
    assert_eq!(cp.session_id, older.session_id);
    assert!(cp.sequence > seen.sequence);
    adopter.stop(None);
    sim.shutdown().await;
}

/// Waits until the gateway has sent every message of `sent` on shard 0 and the checkpoint
/// covers them; returns that checkpoint.
async fn caught_up(
    sim: &SimHandle,
    supervisor: &ActorRef<SupervisorMsg>,
    sent: &[u64],
) -> ExportedSession {
    let last_sent = || {
        let ledger = sim.ledger();
        let messages: Vec<_> = ledger
            .dispatches
            .iter()
            .filter(|d| d.shard == 0 && d.entity_id.is_some_and(|id| sent.contains(&id)))
            .map(|d| (d.seq, d.session.clone()))
            .collect();
        (messages.len() >= sent.len())
            .then(|| messages.into_iter().max())
            .flatten()
    };
    wait_until("the gateway sent every message", || async {
        last_sent().is_some()
    })
    .await;
    let (seq, session) = last_sent().unwrap();
    wait_until("the checkpoint covers every message", || async {
        checkpoint(supervisor, 0)
            .await
            .is_some_and(|cp| cp.session_id == session && cp.sequence >= seq)
    })
    .await;
    checkpoint(supervisor, 0).await.unwrap()
}

/// The test binary's metrics, installed once.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone()
}

fn duplicates_counted(prometheus: &PrometheusHandle, shard: u32) -> u64 {
    let series = format!("{REPLAYED_DUPLICATES}{{shard=\"{shard}\"}} ");
    prometheus
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.parse().unwrap())
}
