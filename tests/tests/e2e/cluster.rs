//! A cluster in one process: the coordinator and two nodes as library objects, so that the
//! test can look inside each node's cache. (`tests/tests/processes.rs` runs separate
//! processes for node and coordinator loss.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protonn_actors::ConfigChangeError;
use protonn_cluster::{
    ClusterClient, ClusterMembership, ClusterToken, Coordinator, CoordinatorOptions,
    CoordinatorStore, DiscordEndpoint, Node, NodeOptions, RemoteStore,
};
use protonn_shard::BotToken;
use protonn_tests::*;

pub(crate) const TOKEN: &str = "in-process-cluster";
/// Operator credentials (drains), apart from the nodes' token.
pub(crate) const OPERATOR_TOKEN: &str = "in-process-operator";

pub(crate) fn membership(coordinator: &Coordinator, name: &str) -> ClusterMembership {
    ClusterMembership {
        coordinators: vec![format!("http://{}", coordinator.addr())],
        token: ClusterToken::new(TOKEN).unwrap(),
        web_token: ClusterToken::new(WEB_TOKEN),
        tls: None,
        name: name.to_owned(),
        guild_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        guild_advertise: None,
        drain_timeout: Duration::from_secs(60),
    }
}

pub(crate) async fn start_node(
    sim: &protonn_sim::SimHandle,
    dir: &std::path::Path,
    cluster: ClusterMembership,
) -> Node {
    start_node_with(sim, dir, cluster, test_runtime()).await
}

pub(crate) async fn start_node_with(
    sim: &protonn_sim::SimHandle,
    dir: &std::path::Path,
    cluster: ClusterMembership,
    runtime: protonn_actors::RuntimeConfig,
) -> Node {
    Node::start(NodeOptions {
        discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(sim.config().token.clone()),
        rest_global_per_sec: 50.0,
        shards: None,
        shard_ids: None,
        data_dir: dir.join(&cluster.name),
        ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        runtime,
        observer: Some(Arc::new(Recorder::default())),
        cluster: Some(cluster),
    })
    .await
    .unwrap()
}

pub(crate) async fn start_coordinator(
    sim: &protonn_sim::SimHandle,
    dir: &std::path::Path,
) -> (Coordinator, ClusterClient) {
    let coordinator = Coordinator::start(CoordinatorOptions {
        name: "coordinator-0".to_owned(),
        ..coordinator_options(
            sim,
            CoordinatorStore::Embedded(dir.join("coordinator")),
            TOKEN,
            OPERATOR_TOKEN,
        )
    })
    .await
    .unwrap();
    let client = dashboard_client(vec![format!("http://{}", coordinator.addr())]);
    (coordinator, client)
}

/// The leader's store as the dashboard reaches it (`protonn web` on the embedded store).
pub(crate) fn dashboard_store(coordinator: &Coordinator) -> Arc<dyn protonn_storage::Store> {
    Arc::new(RemoteStore::connect(
        vec![format!("http://{}", coordinator.addr())],
        ClusterToken::new(WEB_TOKEN).unwrap(),
        None,
    ))
}

/// An operator's client (drains), with the operator token the nodes do not have.
pub(crate) fn operator(coordinator: &Coordinator) -> ClusterClient {
    ClusterClient::new(
        vec![format!("http://{}", coordinator.addr())],
        ClusterToken::new(OPERATOR_TOKEN).unwrap(),
    )
}

/// Whether the coordinator has placed every shard and has no move under way.
pub(crate) async fn placed_for_good(client: &ClusterClient) -> bool {
    client.status().await.is_ok_and(|s| {
        s.shards
            .iter()
            .all(|shard| shard.node_id != 0 && !shard.moving)
    })
}

pub(crate) async fn running(node: &Node) -> Vec<u32> {
    node.shard_statuses()
        .await
        .iter()
        .filter(|s| s.phase == protonn_shard::ShardPhase::Ready)
        .map(|s| s.shard_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_shard_takes_its_cached_guilds_and_finds_their_config_on_the_new_owner() {
    let sim = start_sim(small_world(4, 40)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;

    let a = start_node(&sim, dir.path(), membership(&coordinator, "node-a")).await;
    let guilds = sim.guilds();
    wait_until(
        "node-a runs every shard with every guild cached",
        || async {
            running(&a).await.len() == 4 && guilds.iter().all(|g| a.cached_guild(g.id).is_some())
        },
    )
    .await;
    let before: Vec<_> = guilds
        .iter()
        .map(|g| a.cached_guild(g.id).unwrap())
        .collect();
    assert!(
        before
            .iter()
            .all(|g| g["roles"].as_array().is_some_and(|r| r.len() >= 3)),
        "the cache holds the roles the permission checks read"
    );

    // Every guild's config is written through node-a, into the coordinator's store.
    for guild in &guilds {
        let saved = a.configure(guild.id, "prefix", "?", None).await.unwrap();
        assert_eq!(saved.version, 1);
    }

    let b = start_node(&sim, dir.path(), membership(&coordinator, "node-b")).await;
    wait_until("two shards moved to node-b", || async {
        let settled = placed_for_good(&client).await;
        settled && running(&b).await.len() == 2 && running(&a).await.len() == 2
    })
    .await;

    let on_b = running(&b).await;
    for (guild, cached_on_a) in guilds.iter().zip(&before) {
        if on_b.contains(&guild.shard) {
            assert_eq!(
                b.cached_guild(guild.id).as_ref(),
                Some(cached_on_a),
                "guild {} on node-b",
                guild.id
            );
            assert!(
                a.cached_guild(guild.id).is_none(),
                "node-a let go of guild {}",
                guild.id
            );
            // The config followed the guild: node-b continues from version 1.
            let saved = b
                .configure(guild.id, "locale", "de", Some(1))
                .await
                .unwrap();
            assert_eq!((saved.version, saved.config.prefix.as_str()), (2, "?"));
        } else {
            assert_eq!(a.cached_guild(guild.id).as_ref(), Some(cached_on_a));
            assert!(b.cached_guild(guild.id).is_none());
        }
    }
    assert_eq!(sim.stats().identifies, 4, "the moved shards resumed");

    // The dashboard's path: a change through the cluster reaches the guild's node and is
    // live there at once, whichever node that is.
    for guild in [
        guilds.iter().find(|g| on_b.contains(&g.shard)),
        guilds.iter().find(|g| !on_b.contains(&g.shard)),
    ] {
        let guild = guild.expect("both nodes run shards with guilds");
        let current = client
            .configure(guild.id, "prefix", "%", None)
            .await
            .unwrap();
        let stale = client
            .configure(guild.id, "prefix", "&", Some(current.version - 1))
            .await;
        assert!(
            matches!(stale, Err(ConfigChangeError::Conflict { current: c }) if c == current.version),
            "{stale:?}"
        );
        let bad = client.configure(guild.id, "no_such_key", "x", None).await;
        assert!(matches!(bad, Err(ConfigChangeError::Invalid(_))), "{bad:?}");
        sim.send_message(guild.id, guild.channel_ids[0], 7, "%ping")
            .unwrap();
        wait_until("the new prefix is live on the guild's node", || async {
            sim.ledger().rest.iter().any(|r| {
                r.path == format!("/channels/{}/messages", guild.channel_ids[0])
                    && r.body
                        .as_ref()
                        .is_some_and(|b| b.to_string().contains("pong"))
            })
        })
        .await;
    }

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_that_left_on_one_node_and_returns_on_another_keeps_its_data() {
    let sim = start_sim(small_world(4, 40)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;
    let a = start_node(&sim, dir.path(), membership(&coordinator, "node-a")).await;
    let b = start_node(&sim, dir.path(), membership(&coordinator, "node-b")).await;
    // Settled as the coordinator sees it too: no move under way, so the drain moves two.
    wait_until("two shards on each node, placed for good", || async {
        let settled = placed_for_good(&client).await;
        settled && running(&a).await.len() == 2 && running(&b).await.len() == 2
    })
    .await;
    // Guilds of node-a's shards leave: node-a schedules their data for deletion; node-b,
    // running since before, does not see them leave.
    let on_a = running(&a).await;
    let leaving: Vec<u64> = sim
        .guilds()
        .into_iter()
        .filter(|g| on_a.contains(&g.shard))
        .take(3)
        .map(|g| g.id)
        .collect();
    for &guild in &leaving {
        assert!(sim.remove_guild(guild));
    }
    wait_until("their deletions are scheduled", || async {
        a.scheduled_guild_deletions().await.len() == leaving.len()
    })
    .await;

    // node-a's shards move to node-b, and the guilds come back there.
    assert_eq!(operator(&coordinator).drain("node-a").await.unwrap(), 2);
    wait_until("node-b runs every shard", || async {
        running(&b).await.len() == 4
    })
    .await;
    for &guild in &leaving {
        assert!(sim.restore_guild(guild));
    }
    wait_until("every returned guild's deletion is cancelled", || async {
        b.scheduled_guild_deletions().await.is_empty()
    })
    .await;

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guild_that_moves_away_and_back_acts_on_the_config_it_got_elsewhere() {
    let sim = start_sim(small_world(4, 40)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, _client) = start_coordinator(&sim, dir.path()).await;
    let a = start_node(&sim, dir.path(), membership(&coordinator, "node-a")).await;
    wait_until("node-a runs every shard", || async {
        running(&a).await.len() == 4
    })
    .await;
    // Every guild's actor on node-a holds its config (version 1).
    let guilds = sim.guilds();
    for guild in &guilds {
        a.configure(guild.id, "prefix", "?", None).await.unwrap();
    }

    let b = start_node(&sim, dir.path(), membership(&coordinator, "node-b")).await;
    wait_until("two shards moved to node-b", || async {
        running(&b).await.len() == 2 && running(&a).await.len() == 2
    })
    .await;
    let on_b = running(&b).await;
    let guild = guilds
        .iter()
        .find(|g| on_b.contains(&g.shard))
        .expect("a guild on a moved shard");
    // Changed while node-b runs it; node-a's actor of the guild is still resident.
    let changed = b.configure(guild.id, "prefix", "%", Some(1)).await.unwrap();
    assert_eq!(changed.version, 2);

    // The shard comes back to node-a.
    assert_eq!(operator(&coordinator).drain("node-b").await.unwrap(), 2);
    wait_until("node-a runs every shard again", || async {
        running(&a).await.len() == 4
    })
    .await;
    sim.send_message(guild.id, guild.channel_ids[0], guild.member_ids[0], "%ping")
        .unwrap();
    assert_eq!(
        reply_in(&sim, guild.channel_ids[0], 0).await,
        "pong",
        "the prefix set on node-b is live on node-a"
    );
    let next = a.configure(guild.id, "locale", "de", Some(2)).await;
    assert_eq!(next.map(|c| c.version), Ok(3), "node-a builds on version 2");

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}
