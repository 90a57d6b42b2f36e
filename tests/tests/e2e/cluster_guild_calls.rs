//! Guild calls routed across an in-process cluster of three nodes: guild → shard → node
//! from the leader's shard map, also right after the shard moved.

use std::collections::HashSet;
use std::time::Duration;

use protonn_actors::{
    CallSource, Caller, GuildCall, GuildCallError, GuildCalls, GuildRequest, GuildResponse,
};
use protonn_cluster::{ClusterGuildCalls, ClusterToken};
use protonn_storage::GuildConfig;
use protonn_tests::*;

use crate::cluster::{
    TOKEN, membership, operator, placed_for_good, running, start_coordinator, start_node,
};

fn change(guild_id: u64, prefix: &str, expected_version: u64, key: &str) -> GuildCall {
    GuildCall {
        guild_id,
        caller: Caller {
            user_id: Some(7),
            source: CallSource::Dashboard,
        },
        idempotency_key: Some(key.to_owned()),
        deadline: Duration::from_secs(20),
        request: GuildRequest::ChangeConfig {
            config: GuildConfig {
                prefix: prefix.to_owned(),
                ..GuildConfig::default()
            },
            expected_version,
        },
    }
}

fn summary(guild_id: u64) -> GuildCall {
    GuildCall {
        guild_id,
        caller: Caller {
            user_id: None,
            source: CallSource::Cli,
        },
        idempotency_key: None,
        deadline: Duration::from_secs(20),
        request: GuildRequest::Summary,
    }
}

/// The node whose actor answered: the summary names it.
async fn answering_node(calls: &ClusterGuildCalls, guild_id: u64) -> String {
    match calls.call(summary(guild_id)).await {
        Ok(GuildResponse::Summary(summary)) => summary.node,
        other => panic!("no summary: {other:?}"),
    }
}

async fn pong_after(sim: &protonn_sim::SimHandle, guild: &protonn_sim::GuildInfo, prefix: &str) {
    let channel = guild.channel_ids[0];
    let before = channel_replies(sim, channel).len();
    sim.send_message(
        guild.id,
        channel,
        guild.member_ids[0],
        &format!("{prefix}ping"),
    )
    .unwrap();
    assert_eq!(
        reply_in(sim, channel, before).await,
        "pong",
        "{prefix} is live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_reaches_the_guilds_node_also_right_after_its_shard_moved() {
    let sim = start_sim(small_world(6, 36)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;
    let a = start_node(&sim, dir.path(), membership(&coordinator, "node-a")).await;
    let b = start_node(&sim, dir.path(), membership(&coordinator, "node-b")).await;
    let c = start_node(&sim, dir.path(), membership(&coordinator, "node-c")).await;
    let nodes = [("node-a", &a), ("node-b", &b), ("node-c", &c)];
    wait_until("the six shards are spread over the three nodes", || async {
        let settled = placed_for_good(&client).await;
        let mut counts = Vec::new();
        for (_, node) in &nodes {
            counts.push(running(node).await.len());
        }
        settled && counts == [2, 2, 2]
    })
    .await;

    // A caller outside every node, with the dashboard's credentials, as the dashboard is.
    let coordinators = vec![format!("http://{}", coordinator.addr())];
    let calls = ClusterGuildCalls::new(
        coordinators.clone(),
        ClusterToken::new(WEB_TOKEN).unwrap(),
        None,
    );
    let guilds = sim.guilds();
    let mut reached = HashSet::new();
    for (name, node) in &nodes {
        let shards = running(node).await;
        let guild = guilds
            .iter()
            .find(|g| shards.contains(&g.shard))
            .expect("every node runs a shard with guilds");
        wait_until("the guild is cached on its node", || async {
            node.cached_guild(guild.id).is_some()
        })
        .await;
        let answer = calls
            .call(change(guild.id, "$", 0, &format!("first-{}", guild.id)))
            .await;
        assert!(
            matches!(answer, Ok(GuildResponse::Config(ref saved)) if saved.version == 1),
            "{answer:?}"
        );
        assert_eq!(answering_node(&calls, guild.id).await, *name);
        pong_after(&sim, guild, "$").await;
        reached.insert(*name);
    }
    assert_eq!(reached.len(), 3, "each node answered for its own guilds");

    // A node's own token may not change guilds: node-a refuses it, and nothing changes.
    let on_a = running(&a).await;
    let guild = guilds.iter().find(|g| on_a.contains(&g.shard)).unwrap();
    let with_node_token = ClusterGuildCalls::new(
        coordinators.clone(),
        ClusterToken::new(TOKEN).unwrap(),
        None,
    );
    let refused = with_node_token
        .call(change(
            guild.id,
            "?",
            1,
            &format!("node-token-{}", guild.id),
        ))
        .await;
    assert!(
        matches!(refused, Err(GuildCallError::Unavailable { ref message }) if message.contains("refused")),
        "{refused:?}"
    );
    let from_dashboard = calls
        .call(change(
            guild.id,
            "?",
            1,
            &format!("from-dashboard-{}", guild.id),
        ))
        .await;
    assert!(
        matches!(from_dashboard, Ok(GuildResponse::Config(ref saved)) if saved.version == 2),
        "{from_dashboard:?}"
    );

    // A change whose answer the caller did not see, then node-a's shards move away.
    let retried = change(guild.id, "+", 2, "retried-across-the-move");
    let first = calls.call(retried.clone()).await.unwrap();
    assert_eq!(operator(&coordinator).drain("node-a").await.unwrap(), 2);
    // Right after the move: the retry reaches the new owner and is not applied again.
    let again = calls.call(retried).await;
    assert_eq!(again, Ok(first), "applied once, answered as the first time");
    let new_owner = answering_node(&calls, guild.id).await;
    assert!(
        new_owner == "node-b" || new_owner == "node-c",
        "{new_owner}"
    );
    let next = calls.call(change(guild.id, "%", 3, "after-the-move")).await;
    assert!(
        matches!(next, Ok(GuildResponse::Config(ref saved)) if saved.version == 4),
        "{next:?}"
    );
    pong_after(&sim, guild, "%").await;

    // A stale version is a conflict wherever the guild runs; id 0 is no guild.
    assert_eq!(
        calls.call(change(guild.id, "!", 1, "stale")).await,
        Err(GuildCallError::Conflict { current: 4 })
    );
    assert_eq!(
        calls.call(summary(0)).await,
        Err(GuildCallError::UnknownGuild)
    );

    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
    drop(coordinator);
}
