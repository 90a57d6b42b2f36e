//! Multi-process cluster tests on the `protonn_tests::processes` harness: the simulator
//! runs in this process; coordinators and nodes are `protonn` processes on loopback, each
//! with its own data directory and ports bound to 0. Losses and duplicates are read from the simulator's ledger: every `!ping` the
//! test sends must be answered in its channel exactly once (at least once after a crash).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use protonn_actors::HandledEvent;
use protonn_cluster::{ClusterClient, ClusterToken, RemoteStore};
use protonn_sim::{GatewayEventKind, InteractionOutcome, SimConfig, SimHandle, Simulator};
use protonn_storage::{AnnouncementRepo, ClusterRepo, DataRights, GuildConfigRepo, Timestamp};
use protonn_tests::processes::*;
use protonn_tests::{WEB_TOKEN, http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const SHARDS: u32 = 32;
/// Steady, and well under Discord's global 50 requests/s: the phases here are about shards
/// moving (`three_nodes_together_stay_under_the_global_rest_limit` overloads on purpose).
const PINGS_PER_SEC: u32 = 12;
/// Pings each phase sends at least, however fast its moves are done.
const MIN_PINGS: u32 = 36;

fn world() -> SimConfig {
    SimConfig {
        shards: SHARDS,
        max_concurrency: SHARDS,
        guilds: 320,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    }
}

/// Whether the coordinator at `ops` says at `/leader` that it leads; `false` when it does not
/// answer (stopped) or knows another or no leader.
async fn says_it_leads(ops: SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(ops).await else {
        return false;
    };
    let request = format!("GET /leader HTTP/1.1\r\nHost: {ops}\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_string(&mut response).await.is_err()
    {
        return false;
    }
    response.starts_with("HTTP/1.1 200") && response.contains("\"this\":true")
}

/// A stand-in for the coordinators' Kubernetes Service: each new connection goes to one of
/// the endpoints it lists now (the ready pods), in turn; connections already made stay.
struct Service {
    /// `http://host:port`, what the nodes are configured with.
    address: String,
    endpoints: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    /// `initial` are `http://host:port` coordinator addresses.
    async fn start(initial: &[String]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let endpoints = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let listed = Arc::clone(&endpoints);
        let task = tokio::spawn(async move {
            let mut turn = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = {
                    let listed = listed.lock().unwrap();
                    if listed.is_empty() {
                        continue;
                    }
                    turn += 1;
                    listed[turn % listed.len()].clone()
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        let service = Self {
            address,
            endpoints,
            task,
        };
        service.route_to(initial);
        service
    }

    /// The endpoints new connections go to from now on.
    fn route_to(&self, endpoints: &[String]) {
        *self.endpoints.lock().unwrap() = endpoints
            .iter()
            .map(|address| address.trim_start_matches("http://").to_owned())
            .collect();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn evenly(count: usize) -> impl Fn(&BTreeMap<String, u32>) -> bool {
    move |per_node| {
        let low = SHARDS / count as u32;
        per_node.len() == count
            && per_node
                .values()
                .all(|&n| n >= low.saturating_sub(1) && n <= low + 2)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_spread_move_and_survive_node_and_leader_loss_without_losing_events() {
    let mut cluster = Cluster::start(world(), 2, 3).await;
    for name in ["node-a", "node-b", "node-c"] {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }

    // 1. Three nodes: the 32 shards spread evenly, one IDENTIFY each.
    cluster
        .settled("32 shards spread over 3 nodes", evenly(3))
        .await;
    assert_eq!(cluster.sim.stats().identifies, u64::from(SHARDS));

    // Ops: both coordinators serve (ready), only the leader says it leads, and its gauge
    // says so; a node exports no coordinator metric.
    cluster.assert_leader(0, &[0, 1]).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, metrics) = http_get(cluster.coordinator_ops[0], "/metrics").await;
        let placed = format!("protonn_coordinator_shards{{state=\"assigned\"}} {SHARDS}\n");
        if metrics.contains(&placed)
            && metrics.contains("protonn_coordinator_nodes{state=\"alive\"} 3\n")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the leader's gauges:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, metrics) = http_get(cluster.node_ops["node-a"], "/metrics").await;
    assert!(metrics.contains("protonn_shard_state_shards"), "{metrics}");
    assert!(
        !metrics.contains("protonn_coordinator_") && !metrics.contains("protonn_cluster_"),
        "a node exports coordinator metrics:\n{metrics}"
    );

    // 2 and 3. A fourth node joins, then one is drained by SIGTERM (what Kubernetes sends
    // after preStop): shards move by handoff, nothing lost or duplicated, no IDENTIFY.
    let traffic = Traffic::start(&cluster.sim, PINGS_PER_SEC);
    cluster.start_node("node-d", Some(CLUSTER_TOKEN)).await;
    let joined = cluster
        .settled("the fourth node takes its share", evenly(4))
        .await;
    assert!(
        joined.handoffs >= 6,
        "shards moved to the new node: {}",
        joined.handoffs
    );
    // Each node exports the per-shard series of the shards it runs now: those handed to the
    // new node left the old owners' `/metrics`.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = cluster.status().await.expect("the leader answers");
        let mut mismatched = Vec::new();
        for node in &status.nodes {
            let runs: BTreeSet<String> = status
                .shards
                .iter()
                .filter(|shard| shard.node_id == node.node_id)
                .map(|shard| shard.shard_id.to_string())
                .collect();
            let (_, metrics) = http_get(cluster.node_ops[&node.name], "/metrics").await;
            let exported: BTreeSet<String> = metrics
                .lines()
                .filter_map(|line| line.strip_prefix("protonn_shard_resumes_total{shard=\""))
                .filter_map(|rest| rest.split('"').next())
                .map(str::to_owned)
                .collect();
            if exported != runs {
                mismatched.push(format!(
                    "{}: runs {runs:?}, exports {exported:?}",
                    node.name
                ));
            }
        }
        if mismatched.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "per-shard series: {mismatched:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.nodes["node-b"].signal("-TERM");
    let status = cluster.nodes.get_mut("node-b").unwrap().exited().await;
    assert!(status.success(), "a drained node exits cleanly: {status}");
    cluster
        .settled("node-b's shards live elsewhere", |per_node| {
            per_node.get("node-b").is_none_or(|&n| n == 0)
        })
        .await;
    let duplicates = traffic.stop_and_count(&cluster.sim, MIN_PINGS).await;
    assert_eq!(duplicates, 0, "a handoff replays nothing twice");
    assert_eq!(
        cluster.sim.stats().identifies,
        u64::from(SHARDS),
        "handoffs spend no IDENTIFY"
    );

    // 4. A node is killed: its shards resume elsewhere from their checkpoints.
    let traffic = Traffic::start(&cluster.sim, PINGS_PER_SEC);
    cluster.nodes["node-c"].signal("-KILL");
    let killed_at = Instant::now();
    cluster
        .settled("node-c's shards resumed elsewhere", |per_node| {
            !per_node.contains_key("node-c")
        })
        .await;
    println!(
        "node loss: shards resumed {:?} after the kill",
        killed_at.elapsed()
    );

    // 5. The leading coordinator is killed: the standby takes over, no shard is identified
    // again (so none ever had two sessions).
    let before = cluster.status().await.unwrap().leader_epoch;
    cluster.coordinators[0].signal("-KILL");
    cluster
        .leader_status("the standby takes over", |status| {
            status.leader_epoch > before
        })
        .await;
    cluster
        .settled("every shard runs under the new leader", |per_node| {
            per_node.values().sum::<u32>() == SHARDS
        })
        .await;
    cluster.assert_leader(1, &[1]).await;
    let duplicates = traffic.stop_and_count(&cluster.sim, MIN_PINGS).await;
    println!(
        "after the node and leader loss: {duplicates} pings answered twice (replayed from checkpoints)"
    );
    assert_eq!(
        cluster.sim.stats().identifies,
        u64::from(SHARDS),
        "sessions resumed, never re-identified:\n{}",
        cluster.log("coordinator-1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_nothing_and_identifies_nothing() {
    let mut cluster = Cluster::start(world(), 1, 3).await;
    let names = ["node-a", "node-b", "node-c"];
    for name in names {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }
    cluster
        .settled("32 shards spread over 3 nodes", evenly(3))
        .await;
    let identifies = cluster.sim.stats().identifies;
    let resumes_before = resumes(&cluster.sim);

    // What a StatefulSet rollout does: one pod after another, SIGTERM (the node hands its
    // shards over and exits), then the new pod with the same name, which takes its share
    // back before the next one goes.
    let traffic = Traffic::start(&cluster.sim, PINGS_PER_SEC);
    for name in names {
        cluster.nodes[name].signal("-TERM");
        let status = cluster.nodes.get_mut(name).unwrap().exited().await;
        assert!(status.success(), "{name} stops cleanly: {status}");
        cluster
            .settled(&format!("{name}'s shards live elsewhere"), |per_node| {
                per_node.get(name).is_none_or(|&n| n == 0)
            })
            .await;
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
        cluster
            .settled(&format!("the restarted {name} takes its share"), evenly(3))
            .await;
    }
    let duplicates = traffic.stop_and_count(&cluster.sim, MIN_PINGS).await;
    assert_eq!(duplicates, 0, "handoffs replay nothing twice");
    assert_eq!(
        cluster.sim.stats().identifies,
        identifies,
        "every session moved by RESUME"
    );
    let handoffs = cluster.status().await.unwrap().handoffs;
    println!(
        "rolling restart: {} RESUMEs, {handoffs} handoffs in all",
        resumes(&cluster.sim) - resumes_before
    );
}

/// RESUMEs the simulator accepted so far.
fn resumes(sim: &SimHandle) -> usize {
    sim.ledger()
        .gateway
        .iter()
        .filter(|event| matches!(event.kind, GatewayEventKind::Resumed { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_cluster_token_is_rejected() {
    let cluster = Cluster::start(world(), 1, 1).await;
    for (name, token) in [("no-token", None), ("wrong-token", Some("not-the-token"))] {
        let data_dir = cluster.dir.path().join(name);
        let config = cluster.config(&data_dir, &cluster.addresses, Some(name), 1);
        let config_path = cluster.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let mut command = std::process::Command::new(protonn_binary());
        command
            .arg("--config")
            .arg(&config_path)
            .arg("node")
            .env("DISCORD_TOKEN", &cluster.sim.config().token)
            .env_remove("PROTONN_CLUSTER_TOKEN");
        if let Some(token) = token {
            command.env("PROTONN_CLUSTER_TOKEN", token);
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(!output.status.success(), "{name}: the node must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = if token.is_some() {
            "Unauthenticated"
        } else {
            "PROTONN_CLUSTER_TOKEN"
        };
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    // The token is checked before anything else, so the refusals may come before the
    // coordinator leads: wait for it to answer.
    let status = cluster
        .leader_status("the coordinator leads", |_| true)
        .await;
    assert!(status.nodes.is_empty(), "no node joined: {status:?}");
    assert_eq!(cluster.sim.stats().identifies, 0);
}

/// A rolling update stops the leader with SIGTERM: it releases its lease on the way out, so
/// the standby leads as soon as it can open the store, not a lease TTL later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_by_sigterm_releases_its_lease_for_the_standby() {
    let mut cluster = Cluster::start(world(), 2, 1).await;
    cluster.start_node("node-a", Some(CLUSTER_TOKEN)).await;
    cluster.settled("every shard runs", |_| true).await;
    let before = cluster.status().await.unwrap().leader_epoch;
    cluster.coordinators[0].signal("-TERM");
    let stopped_at = Instant::now();
    let status = cluster.coordinators[0].exited().await;
    assert!(
        status.success(),
        "a leader stops cleanly on SIGTERM: {status}"
    );
    assert!(
        cluster
            .log("coordinator-0")
            .contains("leadership lease released"),
        "{}",
        cluster.log("coordinator-0")
    );
    cluster
        .leader_status("the standby takes over", |status| {
            status.leader_epoch > before
        })
        .await;
    println!(
        "SIGTERM to the leader: the standby led {:?} later",
        stopped_at.elapsed()
    );
    cluster
        .settled("every shard still runs under the new leader", |per_node| {
            per_node.get("node-a") == Some(&SHARDS)
        })
        .await;
    assert_eq!(cluster.sim.stats().identifies, u64::from(SHARDS));
}

/// A standby answers "not leader, try X": a node and an operator's client that know only
/// the standby's address reach the leader through it, and both coordinators say who leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_sends_nodes_and_operators_to_the_leader() {
    let mut cluster = Cluster::start(world(), 2, 1).await;
    cluster.assert_leader(0, &[0, 1]).await;
    let standby_only = vec![cluster.addresses[1].clone()];
    cluster
        .start_node_at("node-a", Some(CLUSTER_TOKEN), &standby_only)
        .await;
    cluster
        .settled(
            "the node that knows only the standby runs every shard",
            |per_node| per_node.get("node-a") == Some(&SHARDS),
        )
        .await;
    let operator = ClusterClient::new(standby_only, ClusterToken::new(OPERATOR_TOKEN).unwrap());
    let status = operator
        .status()
        .await
        .expect("the standby sends the client on");
    assert_eq!(status.nodes.len(), 1, "{status:?}");
    assert!(
        cluster
            .log("node-a")
            .contains("attached to the coordinator"),
        "{}",
        cluster.log("node-a")
    );
    cluster.assert_leader(0, &[0, 1]).await;
}

/// A coordinator rollout the way the chart does it (maxSurge 1, maxUnavailable 0): a new
/// coordinator starts while the old one leads, is ready as a standby and joins the Service;
/// then the old one leaves the Service and gets SIGTERM. Never two leaders at once (each
/// coordinator's `/leader`, polled throughout); the nodes, which know only the Service,
/// follow the new leader; no shard reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_rollout_never_has_two_leaders_and_disturbs_no_shard() {
    let mut cluster = Cluster::start(world(), 1, 1).await;
    let service = Service::start(&cluster.addresses).await;
    let via_service = vec![service.address.clone()];
    for name in ["node-a", "node-b"] {
        cluster
            .start_node_at(name, Some(CLUSTER_TOKEN), &via_service)
            .await;
    }
    cluster
        .settled("two nodes run every shard", |per_node| {
            per_node.len() == 2 && per_node.values().all(|&n| n > 0)
        })
        .await;
    let before = cluster.sim.stats();

    // Every coordinator's /leader, read one after another over and over. Each observation
    // gets the next number; a coordinator's leadership is the span from its first "I lead"
    // to its last, and it may lead only once (the old one stops, the new one stays). Two
    // overlapping spans would be two leaders at once.
    let watched = Arc::new(std::sync::Mutex::new(cluster.coordinator_ops.clone()));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let watched = Arc::clone(&watched);
        let watching = Arc::clone(&watching);
        tokio::spawn(async move {
            let mut seen = 0u64;
            // Per coordinator: (first, last) observation saying it leads, and whether one
            // said it no longer did after that.
            let mut spans: Vec<(Option<(u64, u64)>, bool)> = Vec::new();
            while watching.load(Ordering::Relaxed) {
                let ops = watched.lock().unwrap().clone();
                spans.resize(ops.len(), (None, false));
                for (index, ops) in ops.iter().enumerate() {
                    let leads = says_it_leads(*ops).await;
                    seen += 1;
                    let (span, ended) = &mut spans[index];
                    match (leads, span.as_mut()) {
                        (true, Some((_, last))) => {
                            assert!(!*ended, "coordinator-{index} led a second time");
                            *last = seen;
                        }
                        (true, None) => *span = Some((seen, seen)),
                        (false, Some(_)) => *ended = true,
                        (false, None) => {}
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (
                seen,
                spans.into_iter().map(|(span, _)| span).collect::<Vec<_>>(),
            )
        })
    };

    // The rollout: a new coordinator, ready as a standby, joins the Service.
    let new = cluster.add_coordinator().await;
    watched.lock().unwrap().push(cluster.coordinator_ops[new]);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = http_get(cluster.coordinator_ops[new], "/readyz").await;
        if status == 200 && body.contains("coordinator-0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new coordinator is not ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.route_to(&cluster.addresses);
    // Let nodes and clients meet the standby through the Service for a while.
    let client = ClusterClient::new(
        via_service.clone(),
        ClusterToken::new(CLUSTER_TOKEN).unwrap(),
    );
    for _ in 0..10 {
        client
            .status()
            .await
            .expect("a standby sends the client on to the leader");
    }
    // Then the old one leaves the Service and is stopped.
    service.route_to(&cluster.addresses[new..]);
    cluster.coordinators[0].signal("-TERM");
    let exited = cluster.coordinators[0].exited().await;
    assert!(exited.success(), "{exited}");

    // The nodes follow the new leader, and every shard still runs where it ran.
    cluster.wait_leader(new, &[new]).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = client.status().await.ok();
        let followed = status.as_ref().is_some_and(|status| {
            status.nodes.len() == 2
                && status.nodes.iter().all(|node| node.shards > 0)
                && status
                    .shards
                    .iter()
                    .all(|shard| shard.node_id != 0 && !shard.moving)
        });
        if followed && cluster.sim.stats().ready_shards == SHARDS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes do not follow the new leader: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watching.store(false, Ordering::Relaxed);
    let (observations, spans) = watcher.await.unwrap();
    println!(
        "coordinator rollout: {observations} /leader observations, leadership spans {spans:?}"
    );
    let old = spans[0].expect("the old coordinator was seen leading");
    let current = spans[new].expect("the new coordinator was seen leading");
    assert!(
        old.1 < current.0,
        "two leaders at once: coordinator-0 led over {old:?}, coordinator-{new} over {current:?}"
    );

    let after = cluster.sim.stats();
    assert_eq!(
        (after.connections, after.identifies, after.resumes),
        (before.connections, before.identifies, before.resumes),
        "a coordinator rollout reconnects no shard"
    );
}

/// Each credential does only what its scope allows: a node token cannot drain a node, resume
/// REST, touch the lease and the raw store (operator credentials), change a guild or start a
/// campaign (the dashboard's); the dashboard's token cannot act as a node or an operator; the
/// operator token can do it all. A node's own drain (its
/// SIGTERM) goes through, bound to its registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_credential_does_only_what_its_scope_allows() {
    let mut cluster = Cluster::start(world(), 1, 1).await;
    cluster.start_node("node-a", Some(CLUSTER_TOKEN)).await;
    cluster.start_node("node-b", Some(CLUSTER_TOKEN)).await;
    cluster
        .settled("two nodes share the shards", |per_node| per_node.len() == 2)
        .await;

    let denied = |result: Result<(), tonic::Status>, what: &str| match result {
        Err(status) => assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{what}: {status}"
        ),
        Ok(()) => panic!("{what}: a node token must be refused"),
    };
    denied(
        cluster.client.drain("node-a").await.map(|_| ()),
        "drain another node",
    );
    denied(
        cluster.client.resume_rest().await.map(|_| ()),
        "resume REST",
    );
    let node_store = RemoteStore::connect(
        cluster.addresses.clone(),
        ClusterToken::new(CLUSTER_TOKEN).unwrap(),
        None,
    );
    let now = Timestamp::now();
    let ttl = Duration::from_secs(1);
    let refusals = [
        (
            "take the lease",
            node_store
                .acquire_lease("coordinator", 7, now, ttl)
                .await
                .err(),
        ),
        (
            "read the lease",
            node_store.lease("coordinator").await.err(),
        ),
        (
            "fix the shard count",
            node_store.fix_shard_count(7).await.err(),
        ),
        (
            "assign a shard",
            node_store.assign_shard(0, 7, 1, 1).await.err(),
        ),
        ("read the raw store", node_store.dump_rows().await.err()),
    ];
    for (what, refused) in refusals {
        let refused = refused.unwrap_or_else(|| panic!("{what}: a node token must be refused"));
        assert!(
            refused.to_string().contains("operator credentials"),
            "{what}: {refused}"
        );
    }
    // Nor may it change a guild, start a campaign or mint a dashboard session: those
    // need the dashboard's credentials.
    let node_guild_calls = ClusterClient::new(
        cluster.addresses.clone(),
        ClusterToken::new(CLUSTER_TOKEN).unwrap(),
    );
    let changed = node_guild_calls
        .configure(cluster.sim.guilds()[0].id, "prefix", "!", None)
        .await;
    assert!(
        changed
            .as_ref()
            .is_err_and(|err| err.to_string().contains("PROTONN_WEB_TOKEN")),
        "{changed:?}"
    );
    let campaign = protonn_storage::Campaign {
        id: 1,
        title: None,
        message: "from a stolen node token".to_owned(),
        created_at: Timestamp::now(),
        cancelled_at: None,
        dm: false,
    };
    let started = node_store.create_campaign(&campaign).await;
    assert!(
        started
            .as_ref()
            .is_err_and(|err| err.to_string().contains("dashboard's credentials")),
        "{started:?}"
    );
    // What a node needs still works with its token.
    node_store.load(1).await.unwrap();

    // The dashboard's token changes guilds and starts campaigns, but is neither a node nor
    // an operator.
    let dashboard = ClusterClient::new(
        cluster.addresses.clone(),
        ClusterToken::new(WEB_TOKEN).unwrap(),
    );
    let guild = cluster.sim.guilds()[0].id;
    let deadline = Instant::now() + DEADLINE;
    // Until the guild's node has it cached (its GUILD_CREATE arrived).
    let saved = loop {
        match dashboard.configure(guild, "prefix", "?", None).await {
            Ok(saved) => break saved,
            Err(err) => assert!(Instant::now() < deadline, "never configured: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(saved.config.prefix, "?");
    let web_store = RemoteStore::connect(
        cluster.addresses.clone(),
        ClusterToken::new(WEB_TOKEN).unwrap(),
        None,
    );
    web_store.create_campaign(&campaign).await.unwrap();
    denied(
        dashboard.drain("node-a").await.map(|_| ()),
        "drain as the dashboard",
    );
    let as_node = web_store.checkpoint(0).await;
    assert!(
        as_node
            .as_ref()
            .is_err_and(|err| err.to_string().contains("node credentials")),
        "{as_node:?}"
    );
    let lease = web_store.lease("coordinator").await;
    assert!(
        lease
            .as_ref()
            .is_err_and(|err| err.to_string().contains("operator credentials")),
        "{lease:?}"
    );
    let cancelled = web_store
        .cancel_campaign(1, Timestamp::now())
        .await
        .unwrap();
    assert!(cancelled.cancelled_at.is_some());

    // The operator token does what the node token may not.
    let status = cluster.operator.status().await.unwrap();
    assert_eq!(status.nodes.len(), 2);
    let rest = cluster.operator.resume_rest().await.unwrap();
    assert_eq!(rest.resumes, 1);
    assert!(cluster.operator.drain("node-a").await.unwrap() > 0);
    cluster
        .settled("node-a drained by the operator", |per_node| {
            per_node.get("node-a").is_none_or(|&n| n == 0)
        })
        .await;

    // A node drains itself with node credentials on SIGTERM: its own registration.
    cluster.start_node("node-c", Some(CLUSTER_TOKEN)).await;
    cluster
        .settled("node-c takes a share", |per_node| {
            per_node.get("node-c").is_some_and(|&n| n > 0)
        })
        .await;
    cluster.nodes["node-b"].signal("-TERM");
    let exited = cluster.nodes.get_mut("node-b").unwrap().exited().await;
    assert!(exited.success(), "{exited}");
    let log = cluster.log("node-b");
    assert!(log.contains("shards handed to other nodes"), "{log}");
    assert_eq!(cluster.sim.stats().identifies, u64::from(SHARDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_token_that_cannot_be_one_is_refused_before_any_network_call() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(world(), listener).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("run.toml");
    let config = format!(
        "[discord]\nsimulator = \"{}\"\n\n[storage]\ndata_dir = {:?}\n\n[ops]\nlisten = \"127.0.0.1:0\"\n",
        sim.rest_proxy(),
        dir.path().join("data"),
    );
    std::fs::write(&config_path, config).unwrap();
    for token in ["", "Bot sim-token", "sim-token\n"] {
        let binary = std::env::var_os("PROTONN_BIN").unwrap_or_else(|| protonn_binary().into());
        let mut command = std::process::Command::new(binary);
        command
            .arg("--config")
            .arg(&config_path)
            .arg("run")
            .env("DISCORD_TOKEN", token);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            !output.status.success(),
            "{token:?}: the node must not start"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("DISCORD_TOKEN"), "{token:?}: {stderr}");
    }
    let ledger = sim.ledger();
    assert!(
        ledger.rest.is_empty() && ledger.gateway.is_empty(),
        "a refused token reached the network: {:?}",
        ledger.rest.first()
    );
}

/// Messages the bot posted in each window of `window_ms` (by arrival at the simulator).
fn most_messages_in_any_window(sim: &SimHandle, window_ms: u64) -> usize {
    let arrivals: Vec<u64> = sim
        .ledger()
        .rest
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .map(|r| r.at_ms)
        .collect();
    let mut most = 0;
    let mut start = 0;
    for (end, &at) in arrivals.iter().enumerate() {
        while arrivals[start] + window_ms <= at {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_together_stay_under_discords_rest_limits() {
    let mut cluster = Cluster::start(world(), 1, 3).await;
    for name in ["node-a", "node-b", "node-c"] {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }
    cluster
        .settled("32 shards spread over 3 nodes", evenly(3))
        .await;
    let sim = &cluster.sim;

    // Twice Discord's global limit in commands, each answered with a message; three
    // channels get more than their bucket allows (5 per 5 s); slash commands keep coming.
    // (A guild may run 3 commands a second: the hot channels are in different guilds, and
    // so are the slash commands, 10 a second.)
    let guilds = sim.guilds();
    let hot: Vec<(u64, u64)> = guilds[..3]
        .iter()
        .map(|g| (g.id, g.channel_ids[0]))
        .collect();
    let channels: Vec<(u64, u64)> = all_channels(sim)
        .into_iter()
        .filter(|target| !hot.contains(target))
        .collect();
    let slash_targets: Vec<(u64, u64)> = guilds[3..43]
        .iter()
        .map(|g| (g.id, g.channel_ids[1]))
        .collect();
    let mut traffic = Traffic::on(sim, 100, channels);
    let mut hot_traffic = Traffic::on(sim, 4, hot);
    let slash = {
        let (sim, targets) = (sim.clone(), slash_targets);
        tokio::spawn(async move {
            let mut issued = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for (user, (guild, channel)) in (2_000_000..2_000_040).zip(targets.iter().cycle()) {
                tick.tick().await;
                issued.extend(sim.send_command_interaction(*guild, *channel, user, "ping", &[]));
            }
            issued
        })
    };
    traffic.stop_after(400).await;
    hot_traffic.stop_after(0).await;
    // Every node has a backlog now (each was asked for about 33 replies a second against a
    // share of 15): what each sends in the next 2 s is its share of the limit.
    let shares = cluster.client.status().await.unwrap().rest_shares;
    let sent_before = cluster.messages_sent_per_node().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent_after = cluster.messages_sent_per_node().await;
    let per_node: Vec<u64> = sent_after
        .iter()
        .zip(&sent_before)
        .map(|(after, before)| after - before)
        .collect();
    let duplicates = traffic.count(sim).await + hot_traffic.count(sim).await;
    let issued = slash.await.unwrap();
    assert_eq!(duplicates, 0);

    let stats = sim.stats();
    assert_eq!(
        stats.rate_limited_global, 0,
        "no global 429 at twice the limit"
    );
    // Every channel's bucket was known from its first answer: no request went into an
    // exhausted one (Discord tolerates a first 429 per bucket; none was needed).
    assert_eq!(
        stats.rate_limited_route, 0,
        "no route 429 in overloaded channels"
    );
    let most = most_messages_in_any_window(sim, 1_000);
    assert!(most <= 50, "{most} messages in one second");
    // Interaction responses are exempt from the global limit and never wait behind it.
    let ledger = sim.ledger();
    let answered: Vec<_> = ledger
        .interactions
        .iter()
        .filter(|i| issued.contains(&i.id))
        .collect();
    assert_eq!(answered.len(), issued.len());
    let slowest = answered
        .iter()
        .map(|i| i.answered_at_ms.expect("answered") - i.issued_at_ms)
        .max()
        .unwrap();
    assert!(
        answered
            .iter()
            .all(|i| i.outcome == InteractionOutcome::InTime),
        "{answered:?}"
    );

    // Every node got a fair share while all were backlogged.
    let total: u64 = per_node.iter().sum();
    assert!(
        per_node.iter().all(|&n| n * 4 >= total),
        "every node sends at least a quarter: {per_node:?}"
    );
    assert!(
        shares.len() == 3 && shares.values().all(|&share| share >= 10.0),
        "the leader's shares under overload: {shares:?}"
    );
    println!(
        "at twice the global limit: at most {most} messages in any second, 0 global and 0 \
         route 429s; while every node was backlogged, messages per node in 2 s {:?} \
         (shares {:?}/s); {} interactions answered in time (slowest {slowest} ms)",
        per_node,
        shares
            .values()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>(),
        answered.len()
    );
}

/// Whether a node's `/metrics` says its REST is halted.
async fn rest_halted(ops: SocketAddr) -> bool {
    let (_, metrics) = http_get(ops, "/metrics").await;
    metrics.contains("protonn_rest_halted 1\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_one_node_halts_rest_on_every_node_until_an_operator_resumes() {
    let mut cluster = Cluster::start(world(), 1, 2).await;
    for name in ["node-a", "node-b"] {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }
    let status = cluster.settled("shards on both nodes", evenly(2)).await;
    let sim = &cluster.sim;
    let token = sim.config().token.clone();
    // The token is revoked: one ping in a guild of node-a's gets a 401.
    sim.set_token("revoked");
    let node_a = status
        .nodes
        .iter()
        .find(|n| n.name == "node-a")
        .unwrap()
        .node_id;
    let guild = sim
        .guilds()
        .into_iter()
        .find(|g| status.shards[g.shard as usize].node_id == node_a)
        .unwrap();
    let before = sim.ledger().rest.len();
    sim.send_message(guild.id, guild.channel_ids[0], 3_000_000, "!ping")
        .unwrap();
    // The leader hears of it and halts every node, node-b included.
    let halted = cluster
        .leader_status("REST halted", |s| s.rest.as_ref().is_some_and(|r| r.halted))
        .await;
    assert_eq!(halted.rest.unwrap().resumes, 0);
    let deadline = Instant::now() + DEADLINE;
    for name in ["node-a", "node-b"] {
        while !rest_halted(cluster.node_ops[name]).await {
            assert!(Instant::now() < deadline, "{name} did not halt");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Halted, nothing more reaches Discord: one 401 and no retry.
    let others = sim
        .guilds()
        .into_iter()
        .filter(|g| status.shards[g.shard as usize].node_id != node_a)
        .take(3);
    for (user, other) in (3_000_001..).zip(others) {
        sim.send_message(other.id, other.channel_ids[0], user, "!ping")
            .unwrap();
    }
    let held = "protonn_rest_requests_total{route=\"create_message\",outcome=\"held_back\"} 3\n";
    loop {
        let (_, metrics) = http_get(cluster.node_ops["node-b"], "/metrics").await;
        if metrics.contains(held) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node-b held nothing back:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let statuses: Vec<u16> = sim.ledger().rest[before..]
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [401]);

    // The operator fixes the token and resumes: replies flow again.
    sim.set_token(&token);
    let resumed = cluster.operator.resume_rest().await.unwrap();
    assert!(!resumed.halted && resumed.resumes == 1);
    for name in ["node-a", "node-b"] {
        while rest_halted(cluster.node_ops[name]).await {
            assert!(Instant::now() < deadline, "{name} did not resume");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut traffic = Traffic::start(sim, PINGS_PER_SEC);
    traffic.stop_after(PINGS_PER_SEC).await;
    assert_eq!(traffic.count(sim).await, 0);
}

/// Answer times (ledger ms) of every channel answered at least once since `from_ms`.
fn answer_times(sim: &SimHandle, from_ms: u64) -> HashMap<u64, Vec<u64>> {
    let mut answered: HashMap<u64, Vec<u64>> = HashMap::new();
    for record in sim.ledger().rest {
        let channel = record
            .path
            .strip_prefix("/channels/")
            .and_then(|rest| rest.strip_suffix("/messages"));
        if let Some(channel) = channel
            && record.method == "POST"
            && record.status == 200
            && record.at_ms >= from_ms
        {
            answered
                .entry(channel.parse().unwrap())
                .or_default()
                .push(record.at_ms);
        }
    }
    answered
}

/// Fence before reassign: a node frozen for 15 s (SIGSTOP: no crash, no closed socket,
/// just silence) loses its shards to the other node after the failure timeout; when it
/// wakes it has been fenced since its deadline, so it hands no event to its guild actors,
/// sends no reply and resumes no session: no ping is answered by both nodes after the fence
/// deadline, and no shard is fought over (at most 2 RESUMEs each: the takeover, and the
/// rebalance back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_partitioned_node_is_fenced_before_its_shards_run_elsewhere() {
    /// The cluster config's fence deadline: two thirds of its 3 s failure timeout.
    const FENCE_MS: u64 = 2_000;
    const FROZEN: Duration = Duration::from_secs(15);
    let mut cluster = Cluster::start(world(), 1, 2).await;
    cluster.journal_events = true;
    for name in ["node-a", "node-b"] {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }
    let status = cluster.settled("32 shards over 2 nodes", evenly(2)).await;
    let node_a = status
        .nodes
        .iter()
        .find(|n| n.name == "node-a")
        .unwrap()
        .node_id;
    let moved: Vec<u32> = status
        .shards
        .iter()
        .filter(|s| s.node_id == node_a)
        .map(|s| s.shard_id)
        .collect();
    let channels = all_channels(&cluster.sim);
    // One ping per channel at most, so that every answer in a channel is to the same ping.
    let pings = u32::try_from(channels.len()).unwrap();
    let from_ms = cluster.sim_ms(Instant::now());
    let mut traffic = Traffic::on(&cluster.sim, PINGS_PER_SEC, channels);
    let deadline = Instant::now() + DEADLINE;
    while traffic.sent().await < MIN_PINGS / 2 {
        assert!(Instant::now() < deadline, "the traffic does not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.nodes["node-a"].signal("-STOP");
    let frozen_at = Instant::now();
    let deadline_ms = cluster.sim_ms(frozen_at) + FENCE_MS;
    let deadline_us = unix_us() + FENCE_MS * 1_000;
    cluster
        .settled("node-b runs every shard", |per_node| {
            per_node.get("node-b") == Some(&SHARDS)
        })
        .await;
    println!(
        "frozen node: its shards resumed on node-b {:?} after the freeze",
        frozen_at.elapsed()
    );
    // The scenario is a 15 s freeze, whatever the cluster did meanwhile.
    tokio::time::sleep_until(frozen_at + FROZEN).await;
    cluster.nodes["node-a"].signal("-CONT");
    cluster
        .settled("node-a is back and takes its share again", evenly(2))
        .await;
    traffic.stop_after(MIN_PINGS * 2).await;
    let sent: u32 = traffic.sent().await;
    assert!(sent < pings, "{sent} pings reuse a channel");
    let duplicates = traffic.count(&cluster.sim).await;

    let answers = answer_times(&cluster.sim, from_ms);
    let twice_after_deadline: Vec<(&u64, &Vec<u64>)> = answers
        .iter()
        .filter(|(_, times)| times.iter().filter(|&&t| t >= deadline_ms).count() > 1)
        .collect();
    let handled_twice = answers.values().filter(|times| times.len() > 1).count();
    println!(
        "silent partition: {sent} pings, {duplicates} answered twice (in {handled_twice} channels)"
    );
    assert!(
        twice_after_deadline.is_empty(),
        "pings answered by two nodes after the fence deadline ({deadline_ms} ms): {twice_after_deadline:?}"
    );
    // Handling, not only answers: no message, ping or not, handled by both nodes after the
    // deadline (what the woken node still held in its mailboxes is refused).
    let mut handled: BTreeMap<u64, Vec<(&str, u64)>> = BTreeMap::new();
    let journals = cluster.journals(&["node-a", "node-b"]).await;
    for line in &journals {
        if let HandledEvent::Message(message) = line.event {
            handled
                .entry(message)
                .or_default()
                .push((line.node.as_str(), line.at_us));
        }
    }
    assert!(!handled.is_empty(), "the journals hold no handled message");
    let by_both_after_deadline: Vec<(&u64, &Vec<(&str, u64)>)> = handled
        .iter()
        .filter(|(_, handlings)| {
            let late = |node: &str| {
                handlings
                    .iter()
                    .any(|&(n, at_us)| n == node && at_us >= deadline_us)
            };
            late("node-a") && late("node-b")
        })
        .collect();
    println!(
        "journals: {} messages handled, {} by two nodes after the fence deadline",
        handled.len(),
        by_both_after_deadline.len()
    );
    assert!(
        by_both_after_deadline.is_empty(),
        "messages handled by both nodes after the fence deadline: {by_both_after_deadline:?}"
    );
    let ledger = cluster.sim.ledger();
    let mut resumes: BTreeMap<u32, u32> = BTreeMap::new();
    for record in &ledger.gateway {
        if let (Some(shard), GatewayEventKind::Resumed { .. }) = (record.shard, &record.kind)
            && record.at_ms >= cluster.sim_ms(frozen_at)
        {
            *resumes.entry(shard).or_default() += 1;
        }
    }
    let fought: Vec<(u32, u32)> = moved
        .iter()
        .map(|&shard| (shard, resumes.get(&shard).copied().unwrap_or(0)))
        .filter(|&(_, n)| n > 2)
        .collect();
    println!(
        "RESUMEs after the freeze: {} over {} moved shards",
        resumes.values().sum::<u32>(),
        moved.len()
    );
    assert!(
        fought.is_empty(),
        "shards resumed more than twice: {fought:?}"
    );
    assert_eq!(
        cluster.sim.stats().identifies,
        u64::from(SHARDS),
        "a fenced node's shards start no session of their own"
    );
    assert!(
        cluster.log("node-a").contains("lease lapsed"),
        "node-a fenced itself"
    );
}

/// An HTTP answer: status, headers (names in lower case) and body.
struct HttpAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpAnswer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method url` (an absolute `http://host:port/path`) with an optional cookie and form body,
/// over a fresh connection.
async fn http_request(
    method: &str,
    url: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> HttpAnswer {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let body = form.unwrap_or_default();
    if form.is_some() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_owned()
    };
    HttpAnswer {
        status,
        headers,
        body,
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A browser of the dashboard: the session cookie it was given last.
struct WebBrowser {
    web: String,
    cookie: Option<String>,
}

impl WebBrowser {
    async fn send(&mut self, method: &str, url: &str, form: Option<&str>) -> HttpAnswer {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.web)
        };
        let ours = url.starts_with(&self.web);
        let cookie = self.cookie.clone().filter(|_| ours);
        let answer = http_request(method, &url, cookie.as_deref(), form).await;
        if ours {
            for (name, value) in &answer.headers {
                if name == "set-cookie" {
                    let pair = value.split(';').next().unwrap();
                    let secret = pair.split_once('=').map_or("", |(_, v)| v);
                    self.cookie = (!secret.is_empty()).then(|| pair.to_owned());
                }
            }
        }
        answer
    }

    /// Logs in as `user_id` through the simulator's consent page.
    async fn login(&mut self, sim: &SimHandle, user_id: u64) {
        let start = self.send("GET", "/auth/login?next=%2Fguilds", None).await;
        assert_eq!(start.status, 303, "{}", start.body);
        let authorize = start.header("location").unwrap().to_owned();
        let query = authorize.split_once('?').unwrap().1;
        let form = format!("{query}&user_id={user_id}");
        let granted = self
            .send(
                "POST",
                &format!("http://{}/oauth2/authorize", sim.addr()),
                Some(&form),
            )
            .await;
        assert_eq!(granted.status, 302, "{}", granted.body);
        let callback = granted.header("location").unwrap().to_owned();
        let done = self.send("GET", &callback, None).await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(done.header("location"), Some("/guilds"));
    }
}

/// A form body (`application/x-www-form-urlencoded`).
fn url_encoded(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `name="field" value="…"` in a page.
fn form_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {page}"));
    let rest = &page[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

const WEB_CLIENT_SECRET: &str = protonn_sim::OAUTH_CLIENT_SECRET;
/// 32 bytes of 0x2a, base64.
const WEB_SESSION_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
/// Paddle webhook secrets as during a rotation (old, new).
const PADDLE_SECRETS: &str = "pdl_ntfset_cluster_old,pdl_ntfset_cluster_new";

/// `protonn web` against `cluster`'s coordinators (a config of its own), with a browser of it
/// not yet logged in; returns the process, its ops address and the browser.
async fn start_web(cluster: &Cluster) -> (Process, SocketAddr, WebBrowser) {
    let dir = cluster.dir.path();
    let config = format!(
        "{}\n[web]\nlisten = \"127.0.0.1:0\"\nclient_id = {}\n",
        cluster.config(&dir.join("web"), &cluster.addresses, None, 1),
        cluster.sim.application_id()
    );
    let (web, announced) = Process::start(
        dir,
        "web",
        &config,
        &["web"],
        &["web ", "web ops "],
        &cluster.sim,
        &[
            ("PROTONN_WEB_TOKEN", WEB_TOKEN),
            ("PROTONN_WEB_CLIENT_SECRET", WEB_CLIENT_SECRET),
            ("PROTONN_WEB_SESSION_KEY", WEB_SESSION_KEY),
            ("PROTONN_PADDLE_WEBHOOK_SECRET", PADDLE_SECRETS),
        ],
    )
    .await;
    let browser = WebBrowser {
        web: announced[0].clone(),
        cookie: None,
    };
    (web, announced[1].parse().unwrap(), browser)
}

/// The settings page of a guild, once its node has it cached (its GUILD_CREATE arrived).
async fn settings_form(browser: &mut WebBrowser, path: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page = browser.send("GET", path, None).await;
        if page.status == 200 {
            return page.body;
        }
        assert!(
            Instant::now() < deadline,
            "settings never shown: {} {}",
            page.status,
            page.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protonn_web_logs_in_and_changes_a_guilds_prefix_on_the_node_that_runs_it() {
    let mut cluster = Cluster::start(world(), 1, 1).await;
    cluster.start_node("node-a", Some(CLUSTER_TOKEN)).await;
    cluster.settled("every shard runs", |_| true).await;

    let dir = cluster.dir.path().to_owned();
    let base = cluster.config(&dir.join("web"), &cluster.addresses, None, 1);
    // Bad config is refused naming the field, before anything is served.
    let (mut refused, _) = Process::start(
        &dir,
        "web-no-client-id",
        &format!("{base}\n[web]\nlisten = \"127.0.0.1:0\"\n"),
        &["web"],
        &[],
        &cluster.sim,
        &[
            ("PROTONN_WEB_TOKEN", WEB_TOKEN),
            ("PROTONN_WEB_CLIENT_SECRET", WEB_CLIENT_SECRET),
            ("PROTONN_WEB_SESSION_KEY", WEB_SESSION_KEY),
        ],
    )
    .await;
    assert!(!refused.exited().await.success());
    let log = cluster.log("web-no-client-id");
    assert!(log.contains("web.client_id"), "{log}");

    let config = format!(
        "{base}\n[web]\nlisten = \"127.0.0.1:0\"\nclient_id = {}\n",
        cluster.sim.application_id()
    );
    let (mut no_key, _) = Process::start(
        &dir,
        "web-no-key",
        &config,
        &["web"],
        &[],
        &cluster.sim,
        &[
            ("PROTONN_WEB_TOKEN", WEB_TOKEN),
            ("PROTONN_WEB_CLIENT_SECRET", WEB_CLIENT_SECRET),
        ],
    )
    .await;
    assert!(!no_key.exited().await.success());
    let log = cluster.log("web-no-key");
    assert!(log.contains("PROTONN_WEB_SESSION_KEY"), "{log}");
    assert!(!log.contains(WEB_CLIENT_SECRET), "{log}");

    let (_web, ops, mut browser) = start_web(&cluster).await;
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    assert_eq!(http_get(ops, "/readyz").await.0, 200);

    let guild = cluster.sim.guilds()[0].clone();
    browser.login(&cluster.sim, guild.owner_id).await;
    let picker = browser.send("GET", "/guilds", None).await;
    assert_eq!(picker.status, 200, "{}", picker.body);
    assert!(
        picker
            .body
            .contains(&format!("href=\"/guilds/{}\"", guild.id)),
        "{}",
        picker.body
    );
    let settings_path = format!("/guilds/{}/settings", guild.id);
    let form = settings_form(&mut browser, &settings_path).await;
    let csrf = form_field(&form, "csrf");
    let key = form_field(&form, "idempotency_key");
    let fields = url_encoded(&[
        ("csrf", csrf.as_str()),
        ("expected_version", "0"),
        ("idempotency_key", key.as_str()),
        ("prefix", "%"),
        ("locale", "en-US"),
    ]);
    let saved = browser.send("POST", &settings_path, Some(&fields)).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.header("location"),
        Some(format!("{settings_path}?saved=1").as_str())
    );

    // The next command in Discord sees the new prefix.
    let channel = guild.channel_ids[0];
    let before = answers_per_channel(&cluster.sim)
        .get(&channel)
        .copied()
        .unwrap_or(0);
    cluster
        .sim
        .send_message(guild.id, channel, guild.member_ids[0], "%ping")
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while answers_per_channel(&cluster.sim)
        .get(&channel)
        .copied()
        .unwrap_or(0)
        <= before
    {
        assert!(Instant::now() < deadline, "%ping was never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The audit log (in the leader's store) names the dashboard user.
    let audit = browser
        .send("GET", &format!("/guilds/{}/audit", guild.id), None)
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(
        audit.body.contains("config.change")
            && audit.body.contains(&format!("<td>{}</td>", guild.owner_id)),
        "{}",
        audit.body
    );

    // The privacy centre works with node credentials: the request log, the flags and the
    // export's state are the web's to read and write; the export itself (reading every
    // table) is the leader's, prepared by its background answerer.
    let privacy = browser.send("GET", "/privacy", None).await;
    assert_eq!(privacy.status, 200, "{}", privacy.body);
    let csrf = form_field(&privacy.body, "csrf");
    let choices = url_encoded(&[("csrf", csrf.as_str()), ("objects", "1")]);
    let saved = browser
        .send("POST", "/privacy/choices", Some(&choices))
        .await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(saved.header("location"), Some("/privacy?notice=choices"));
    let export = url_encoded(&[("csrf", csrf.as_str())]);
    let asked = browser.send("POST", "/privacy/export", Some(&export)).await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    let page = browser.send("GET", "/privacy", None).await;
    assert!(
        page.body.contains("data-request=\"objection\"")
            && page.body.contains("data-request=\"export\""),
        "{}",
        page.body
    );
    // The leader answers within its 30 s round; the file is then downloaded once.
    let deadline = Instant::now() + DEADLINE;
    while !browser
        .send("GET", "/privacy", None)
        .await
        .body
        .contains("id=\"download-export\"")
    {
        assert!(Instant::now() < deadline, "the export was never prepared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let file = browser
        .send("POST", "/privacy/export/download", Some(&export))
        .await;
    assert_eq!(file.status, 200, "{}", file.body);
    assert!(file.body.contains("protonn.user-export/1"), "{}", file.body);
    assert!(file.body.contains(&guild.owner_id.to_string()));

    let (_, metrics) = http_get(ops, "/metrics").await;
    assert!(
        metrics.contains("protonn_web_logins_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    // Its own guild calls are counted; no node's series shows up in a web pod.
    assert!(
        metrics.contains("protonn_guild_calls_total{request=\"change_config\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    for node_only in ["protonn_shard_", "protonn_actors_", "protonn_rest_"] {
        assert!(!metrics.contains(node_only), "{node_only} in\n{metrics}");
    }
    // Paddle webhooks are on (the secrets came from the environment): an unsigned delivery
    // is refused and counted, and neither secret is ever logged.
    let unsigned = browser
        .send("POST", "/webhooks/paddle", Some("{\"event_id\":\"evt_1\"}"))
        .await;
    assert_eq!(unsigned.status, 401, "{}", unsigned.body);
    let (_, metrics) = http_get(ops, "/metrics").await;
    assert!(
        metrics.contains("protonn_web_paddle_webhooks_total{outcome=\"bad_signature\"} 1"),
        "{metrics}"
    );
    let log = cluster.log("web");
    let [old, new] = [0, 1].map(|i| PADDLE_SECRETS.split(',').nth(i).unwrap());
    for secret in [WEB_CLIENT_SECRET, WEB_SESSION_KEY, CLUSTER_TOKEN, old, new] {
        assert!(!log.contains(secret), "a secret in the log: {log}");
    }
}

/// `protonn_web_rejected_total{reason}` in a `/metrics` text.
fn rejected(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("protonn_web_rejected_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protonn_web_counts_each_rejection_under_its_reason() {
    let mut cluster = Cluster::start(world(), 1, 1).await;
    cluster.start_node("node-a", Some(CLUSTER_TOKEN)).await;
    cluster.settled("every shard runs", |_| true).await;
    let (_web, ops, mut browser) = start_web(&cluster).await;
    let guilds = cluster.sim.guilds();
    let guild = guilds[0].clone();
    browser.login(&cluster.sim, guild.owner_id).await;
    let path = format!("/guilds/{}/settings", guild.id);
    let csrf = form_field(&settings_form(&mut browser, &path).await, "csrf");
    // Someone else's guild, where the user is not even a member.
    let foreign = guilds
        .iter()
        .find(|g| g.owner_id != guild.owner_id && !g.member_ids.contains(&guild.owner_id))
        .expect("a guild the user has nothing to do with");
    let foreign_path = format!("/guilds/{}/settings", foreign.id);
    let huge = "y".repeat(20_000);
    let fields = |csrf: &str, padding: Option<&str>| {
        let mut pairs = vec![
            ("csrf", csrf),
            ("expected_version", "0"),
            ("prefix", "?"),
            ("locale", "de"),
        ];
        pairs.extend(padding.map(|padding| ("padding", padding)));
        url_encoded(&pairs)
    };
    let cases = [
        ("csrf", &path, fields("not-the-token", None), 403),
        ("too_large", &path, fields(&csrf, Some(&huge)), 413),
        ("forbidden", &foreign_path, fields(&csrf, None), 403),
    ];
    let reasons = ["csrf", "too_large", "forbidden", "bad_form", "conflict"];
    for (reason, target, form, status) in cases {
        let before = http_get(ops, "/metrics").await.1;
        let answer = browser.send("POST", target, Some(&form)).await;
        assert_eq!(answer.status, status, "{reason}: {}", answer.body);
        let after = http_get(ops, "/metrics").await.1;
        for other in reasons {
            let rise = rejected(&after, other) - rejected(&before, other);
            let expected = u64::from(other == reason);
            assert_eq!(rise, expected, "{reason}: {other} rose by {rise}");
        }
    }
    // None of them saved anything.
    let form = settings_form(&mut browser, &path).await;
    assert_eq!(form_field(&form, "expected_version"), "0");
}

/// Issue #25: 8 → 16 shards on 4 nodes under `!ping` traffic. The new set runs beside the
/// old one and each guild switches to it once; then the old sessions close. Every ping is
/// answered exactly once, the new set identifies once per shard, and no old shard's session
/// closed before the new shards taking its guilds had identified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_from_8_to_16_shards_answers_every_ping_once_and_closes_the_old_set() {
    const FROM: u32 = 8;
    const TO: u32 = 16;
    let world = SimConfig {
        shards: FROM,
        max_concurrency: TO,
        guilds: 64,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    };
    let mut cluster = Cluster::start(world, 1, 4).await;
    for name in ["node-a", "node-b", "node-c", "node-d"] {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }
    cluster
        .settled("8 shards on 4 nodes", |per_node| per_node.len() == 4)
        .await;
    let traffic = Traffic::start(&cluster.sim, PINGS_PER_SEC);
    // Pings straddle the resharding: some are answered by the old set before it starts.
    protonn_tests::wait_until("the old set answers pings", || async {
        answers_per_channel(&cluster.sim).values().sum::<u32>() >= PINGS_PER_SEC
    })
    .await;

    let started = cluster.operator.reshard(TO).await.unwrap();
    assert_eq!((started.from, started.to), (FROM, TO));
    let done = reshard_over(&cluster).await;
    assert_eq!(
        (done.phase.as_str(), done.shard_count, done.shards_switched),
        ("completed", TO, TO)
    );
    let status = cluster
        .leader_status("the leader runs the new set", |status| {
            status.shards.len() == TO as usize && status.shards.iter().all(|s| s.node_id != 0)
        })
        .await;
    assert_eq!(status.nodes.len(), 4);

    // The old sessions close.
    sessions_closed(&cluster.sim, FROM, FROM).await;

    let duplicates = traffic.stop_and_count(&cluster.sim, MIN_PINGS).await;
    assert_eq!(duplicates, 0, "pings answered twice");

    let ledger = cluster.sim.ledger();
    let accepted = |shards: u32| {
        ledger
            .identifies
            .iter()
            .filter(|i| i.shards == shards && i.outcome == protonn_sim::IdentifyOutcome::Accepted)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        accepted(TO).len(),
        TO as usize,
        "one IDENTIFY per new shard"
    );
    assert_eq!(
        accepted(FROM).len(),
        FROM as usize,
        "the old set never re-identified"
    );
    // No guild without a handling shard: each old shard's session closed for good only after
    // both new shards taking its guilds had identified. (Under load a session may also
    // reconnect on its own, as at any time: that is not the resharding's.)
    for old in 0..FROM {
        let closed = ledger
            .gateway
            .iter()
            .filter(|r| r.shards == Some(FROM) && r.shard == Some(old))
            .filter(|r| matches!(r.kind, GatewayEventKind::Disconnected))
            .map(|r| r.at_ms)
            .max()
            .expect("every old session closed");
        for new in [old, old + FROM] {
            let identified = accepted(TO)
                .iter()
                .find(|i| i.shard == new)
                .map(|i| i.at_ms)
                .expect("every new shard identified");
            assert!(
                identified < closed,
                "old shard {old} closed at {closed} ms, before new shard {new} identified at {identified} ms"
            );
        }
    }
    // Every guild came to the new set.
    for guild in cluster.sim.guilds() {
        assert!(
            ledger.dispatches.iter().any(|d| d.shards == TO
                && d.event == "GUILD_CREATE"
                && d.guild_id == Some(guild.id)),
            "guild {} never joined the new set",
            guild.id
        );
    }
}

/// The resharding's status once it is over (completed or aborted).
async fn reshard_over(cluster: &Cluster) -> protonn_cluster::ReshardStatus {
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        if let Ok(progress) = cluster.operator.reshard_progress().await
            && progress.phase != "running"
        {
            return progress;
        }
        assert!(Instant::now() < deadline, "the resharding did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every session of count `shards` the simulator saw ended disconnected, and at
/// least `at_least` shards of that count had one.
async fn sessions_closed(sim: &SimHandle, shards: u32, at_least: u32) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ledger = sim.ledger();
        let mut last: BTreeMap<u32, GatewayEventKind> = BTreeMap::new();
        for record in ledger.gateway.iter().filter(|r| r.shards == Some(shards)) {
            if let Some(shard) = record.shard {
                last.insert(shard, record.kind.clone());
            }
        }
        if last.len() >= at_least as usize
            && last
                .values()
                .all(|kind| matches!(kind, GatewayEventKind::Disconnected))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "sessions of {shards} shards still open: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue #25: the leader is killed while a resharding runs. The standby carries it on from
/// the store's record; it completes, or it aborts cleanly: either way every ping is answered
/// exactly once and the sessions of the count that did not stay all close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_completes_or_aborts_cleanly_when_its_leader_is_killed_midway() {
    const FROM: u32 = 4;
    const TO: u32 = 8;
    let world = SimConfig {
        shards: FROM,
        max_concurrency: TO,
        guilds: 32,
        messages_per_sec: 0.0,
        ..SimConfig::default()
    };
    let mut cluster = Cluster::start(world, 2, 2).await;
    cluster.wait_leader(0, &[0, 1]).await;
    for name in ["node-a", "node-b"] {
        cluster.start_node(name, Some(CLUSTER_TOKEN)).await;
    }
    cluster
        .settled("4 shards on 2 nodes", |per_node| per_node.len() == 2)
        .await;
    let traffic = Traffic::start(&cluster.sim, PINGS_PER_SEC);
    cluster.operator.reshard(TO).await.unwrap();
    // Midway: some new shard has identified.
    let deadline = Instant::now() + DEADLINE;
    while !cluster
        .sim
        .ledger()
        .identifies
        .iter()
        .any(|i| i.shards == TO)
    {
        assert!(Instant::now() < deadline, "no new shard identified");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.coordinators[0].kill();
    cluster.wait_leader(1, &[1]).await;

    let done = reshard_over(&cluster).await;
    println!("the resharding {} after its leader was killed", done.phase);
    let (kept, closed) = match done.phase.as_str() {
        "completed" => (TO, FROM),
        "aborted" => (FROM, TO),
        other => panic!("the resharding ended {other}"),
    };
    assert_eq!(done.shard_count, kept);
    sessions_closed(&cluster.sim, closed, if closed == FROM { FROM } else { 1 }).await;
    let duplicates = traffic.stop_and_count(&cluster.sim, MIN_PINGS).await;
    assert_eq!(duplicates, 0, "pings answered twice ({})", done.phase);
}
