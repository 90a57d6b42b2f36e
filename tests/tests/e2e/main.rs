//! End-to-end: simulated Discord → shards → guild actors → replies and storage.
//!
//! Each test starts its own simulator and node(s) on port 0 with its own data directory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use protonn_cluster::NodeError;
use protonn_shard::ShardPhase;
use protonn_sim::GatewayEventKind;
use protonn_tests::*;

mod actors;
mod analytics;
mod announcements;
mod automod;
mod cluster;
mod cluster_guild_calls;
mod compression;
mod dashboard;
mod guild_calls;
mod moderation;

mod ops;
mod premium;
mod privacy;
mod rest;
mod schedules;
mod tickets;
mod workflows;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_gets_ready_and_every_guild_reaches_the_node_without_an_actor() {
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(3, 150)).await;
    let expected: HashSet<u64> = sim.guilds().iter().map(|g| g.id).collect();
    assert_eq!(expected.len(), 150);
    let shards_used: HashSet<u32> = sim.guilds().iter().map(|g| g.shard).collect();
    assert_eq!(
        shards_used.len(),
        3,
        "real snowflakes spread guilds over every shard"
    );
    wait_until("every GUILD_CREATE reached the router", || async {
        recorder.guilds_created() == expected
    })
    .await;
    let twice: Vec<_> = recorder
        .counts()
        .into_iter()
        .filter(|(_, count)| *count != 1)
        .collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    // Every guild is in the cache, and none has an actor: a GUILD_CREATE is no work.
    let stats = node.router_stats().await;
    assert_eq!((stats.cached_guilds, stats.active_guilds), (150, 0));

    // The slash commands were registered once, by bulk overwrite, and Discord accepted them.
    let ledger = sim.ledger();
    let registrations: Vec<_> = ledger
        .rest
        .iter()
        .filter(|r| r.route == "PUT /applications/{application_id}/commands")
        .collect();
    assert_eq!(registrations.len(), 1);
    assert_eq!(registrations[0].status, 200);
    let names: Vec<&str> = registrations[0]
        .body
        .as_ref()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|command| command["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "ping", "help", "config", "warn", "timeout", "kick", "ban", "unban", "purge",
            "slowmode", "lock", "unlock", "case", "reason", "history", "ticket", "privacy"
        ]
    );

    let ops = node.ops_addr();
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    let (status, body) = http_get(ops, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "protonn_shard_state_shards",
        "protonn_shard_events_received_total",
        "protonn_shard_fatal_closes_total",
        "protonn_shard_dispatches_total",
        "protonn_shard_reconnects_total",
        "protonn_shard_resumes_total",
        "protonn_shard_identifies_total",
        "protonn_shard_identify_wait_seconds",
        "protonn_shard_identify_budget_remaining",
        "protonn_shard_identify_blocked_requests",
        "protonn_shard_events_shed_total",
        "protonn_shard_buffer_stalls_total",
        "protonn_actors_guilds_active",
        "protonn_actors_commands_handled_total",
        "protonn_actors_guild_failures_total",
        "protonn_rest_requests_total",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} is not described"
        );
    }
    assert!(metrics.contains("protonn_shard_events_received_total{event=\"GUILD_CREATE\"}"));
    assert!(
        metrics.contains("protonn_shard_identify_wait_seconds_bucket{le=\"5\"}"),
        "a histogram with buckets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_slash_ping_each_get_exactly_one_reply() {
    let Bot { sim, recorder, .. } = &Bot::start(small_world(2, 20)).await;
    let guild = some_guild(sim, 3);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    wait_until("the guild is known to its actor", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;

    let ping = sim
        .send_message(guild.id, channel, member, "!ping")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "pong");

    let interaction = sim
        .send_command_interaction(guild.id, channel, member, "ping", &[])
        .unwrap();
    assert_eq!(answers_to(sim, interaction).await, ["pong"]);

    // A later command's reply is a barrier: by then a duplicate of the first would show.
    sim.send_message(guild.id, channel, member, "!help")
        .unwrap();
    assert!(reply_in(sim, channel, 1).await.contains("!ping"));
    assert_eq!(
        channel_replies(sim, channel)
            .iter()
            .filter(|c| *c == "pong")
            .count(),
        1
    );
    assert_eq!(interaction_replies(sim, interaction).len(), 1);
    assert_eq!(recorder.messages()[&ping], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_takes_effect_at_once_and_survives_a_restart() {
    let sim = start_sim(small_world(2, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let guild = some_guild(&sim, 0);
    let channel = guild.channel_ids[0];

    let node = start_node(&sim, dir.path(), &recorder).await;
    wait_all_ready(&node).await;
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;
    sim.send_message(guild.id, channel, guild.owner_id, "!config set prefix ?")
        .unwrap();
    assert_eq!(reply_in(&sim, channel, 0).await, "`prefix` is now `?`.");
    sim.send_message(guild.id, channel, guild.owner_id, "?ping")
        .unwrap();
    assert_eq!(
        reply_in(&sim, channel, 1).await,
        "pong",
        "the new prefix works at once"
    );
    node.shutdown().await;

    let node = start_node(&sim, dir.path(), &recorder).await;
    wait_all_ready(&node).await;
    sim.send_message(guild.id, channel, guild.member_ids[0], "?config get prefix")
        .unwrap();
    assert_eq!(reply_in(&sim, channel, 2).await, "`prefix` is `?`.");

    // The slash command reads the same stored document.
    let interaction = sim
        .send_command_interaction(
            guild.id,
            channel,
            guild.member_ids[0],
            "config",
            &[("key", "prefix")],
        )
        .unwrap();
    assert_eq!(answers_to(&sim, interaction).await, ["`prefix` is `?`."]);

    node.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_help_and_change_nothing() {
    let Bot { sim, recorder, .. } = &Bot::start(small_world(1, 5)).await;
    let guild = some_guild(sim, 1);
    let channel = guild.channel_ids[0];
    let (owner, member) = (guild.owner_id, guild.member_ids[0]);
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;

    let cases = [
        (
            member,
            "!frobnicate",
            "Unknown command `!frobnicate`. Try `!help`.",
        ),
        (
            member,
            "!config set prefix ?",
            "Changing the configuration needs the Manage Server permission.",
        ),
        (
            owner,
            "!config set prefix waytoolong",
            "A prefix has 1 to 5 characters.",
        ),
        (
            owner,
            "!config set colour red",
            "Unknown config key `colour`. Keys: `prefix`, `locale`, `log_channel`, `staff_roles`, `dm_members`, `escalation`, `automod`, `announce_channel`.",
        ),
        (owner, "!config get prefix", "`prefix` is `!`."),
    ];
    for (index, (author, content, expected)) in cases.into_iter().enumerate() {
        sim.send_message(guild.id, channel, author, content)
            .unwrap();
        assert_eq!(
            reply_in(sim, channel, index).await,
            expected,
            "for {content:?}"
        );
    }

    // A member without Manage Server is refused by the slash command too, privately.
    let interaction = sim
        .send_command_interaction(
            guild.id,
            channel,
            member,
            "config",
            &[("key", "prefix"), ("value", "?")],
        )
        .unwrap();
    assert_eq!(
        answers_to(sim, interaction).await,
        ["Changing the configuration needs the Manage Server permission."]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_shard_loses_and_duplicates_no_message() {
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(2, 40)).await;
    let guilds = sim.guilds();
    wait_until("every guild is known", || async {
        recorder.guilds_created().len() == guilds.len()
    })
    .await;

    // Chat in every guild before, during and after two drops of shard 0's connection (4000):
    // what is sent while it is down is buffered by the simulator and replayed on RESUME.
    let mut sent = Vec::new();
    let mut chat = |sim: &protonn_sim::SimHandle, from: usize, to: usize| {
        for round in from..to {
            let guild = &guilds[round % guilds.len()];
            let author = guild.member_ids[round % guild.member_ids.len()];
            let content = format!("chat line {round}");
            sent.extend(sim.send_message(guild.id, guild.channel_ids[0], author, &content));
        }
    };
    chat(sim, 0, 100);
    for drop in 1..=2 {
        assert!(sim.close_shard(0, 4000), "shard 0 has a live connection");
        chat(sim, drop * 100, drop * 100 + 100);
        wait_until("shard 0 resumed", || async { resumes(sim, 0) == drop }).await;
    }
    chat(sim, 300, 400);
    assert_eq!(sent.len(), 400, "every message was sequenced for a session");

    wait_until("every message sent was delivered and handled", || async {
        let handled = recorder.messages();
        sent.iter().all(|id| handled.contains_key(id))
    })
    .await;
    wait_all_ready(node).await;

    // The ledger is Discord's side of the story: every MESSAGE_CREATE it delivered (first
    // deliveries and replays alike) was handled exactly once.
    let ledger = sim.ledger();
    let delivered: HashSet<u64> = ledger
        .dispatches
        .iter()
        .filter(|d| d.event == "MESSAGE_CREATE")
        .filter_map(|d| d.entity_id)
        .collect();
    let handled: HashMap<u64, u32> = recorder.messages();
    assert_eq!(delivered, handled.keys().copied().collect::<HashSet<_>>());
    assert_eq!(delivered, sent.iter().copied().collect::<HashSet<_>>());
    let duplicates: Vec<_> = handled.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        duplicates.is_empty(),
        "handled more than once: {duplicates:?}"
    );

    // Resuming is free: each shard identified exactly once.
    for shard in 0..2 {
        let identifies = ledger
            .gateway
            .iter()
            .filter(|r| r.shard == Some(shard) && r.kind == GatewayEventKind::Identified)
            .count();
        assert_eq!(
            identifies, 1,
            "shard {shard} re-identified instead of resuming"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_fails_fast_without_spending_an_identify() {
    let sim = start_sim(small_world(1, 5)).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());

    let err = try_start_node(&sim, dir.path(), &recorder, "not-the-token")
        .await
        .err()
        .expect("a node with a wrong token must not start");
    assert!(matches!(err, NodeError::BadToken), "{err}");
    assert!(err.to_string().contains("DISCORD_TOKEN"), "{err}");
    let identifies = sim
        .ledger()
        .gateway
        .iter()
        .filter(|r| r.kind == GatewayEventKind::Identified)
        .count();
    assert_eq!(identifies, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_4004_stops_the_shard_for_good_with_a_clear_error() {
    let sim = start_sim(small_world(2, 10)).await;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let node = start_node(&sim, dir.path(), &recorder).await;
    wait_all_ready(&node).await;

    // The operator resets the token: the shard's next RESUME is refused with 4004.
    sim.set_token("a-new-token");
    assert!(sim.close_shard(0, 4000));
    wait_until("shard 0 stopped for good", || async {
        node.shard_statuses().await.iter().any(|s| {
            s.shard_id == 0 && matches!(s.phase, ShardPhase::Fatal { code: 4004, .. }) && !s.running
        })
    })
    .await;
    let statuses = node.shard_statuses().await;
    let ShardPhase::Fatal { reason, .. } = &statuses[0].phase else {
        unreachable!()
    };
    assert!(reason.contains("DISCORD_TOKEN"), "{reason}");
    assert_eq!(
        statuses[0].restarts, 0,
        "a fatal close is not a crash to restart"
    );

    let (status, body) = http_get(node.ops_addr(), "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("shard 0: fatal close 4004"), "{body}");
    let (_, metrics) = http_get(node.ops_addr(), "/metrics").await;
    assert!(
        metrics.contains("protonn_shard_fatal_closes_total{code=\"4004\"}"),
        "{metrics}"
    );

    // With its runner gone the shard cannot reconnect: exactly one refused attempt.
    let ledger = sim.ledger();
    let closes_4004 = ledger
        .gateway
        .iter()
        .filter(|r| r.kind == GatewayEventKind::ClosedByServer { code: 4004 })
        .count();
    assert_eq!(closes_4004, 1);

    node.shutdown().await;
    sim.shutdown().await;
}
