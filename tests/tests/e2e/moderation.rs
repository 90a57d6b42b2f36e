//! Moderation through the simulator: each command acts on simulated Discord and leaves a
//! numbered case; refusals (permissions, hierarchy, bad input) change nothing; a temporary
//! ban is lifted by its durable timer.

use std::time::Duration;

use protonn_actors::{
    CallSource, Caller, GuildCall, GuildCallError, GuildCalls, GuildRequest, GuildResponse,
    RuntimeConfig,
};
use protonn_sim::{SimConfig, SimHandle};
use protonn_tests::*;

/// REST calls of `route` the bot made, with their statuses.
fn rest_calls(sim: &SimHandle, route: &str) -> Vec<u16> {
    sim.ledger()
        .rest
        .iter()
        .filter(|r| r.route == route)
        .map(|r| r.status)
        .collect()
}

/// The actions of the guild's cases about `user`, newest first, through a guild call.
async fn actions_about(calls: &dyn GuildCalls, guild_id: u64, user: u64) -> Vec<String> {
    let call = GuildCall {
        guild_id,
        caller: Caller {
            user_id: None,
            source: CallSource::Dashboard,
        },
        idempotency_key: None,
        deadline: Duration::from_secs(10),
        request: GuildRequest::Cases {
            target_id: Some(user),
            before: None,
            limit: 100,
        },
    };
    match calls.call(call).await {
        Ok(GuildResponse::Cases { cases }) => cases.into_iter().map(|c| c.action).collect(),
        other => panic!("{other:?}"),
    }
}

/// Each temporary ban of `banned` (guild, member) was lifted once: one DELETE, and one
/// unban case. The case is stored after Discord answered the lift, so when it is there the
/// lift is in the ledger.
async fn each_ban_lifted_once(
    sim: &SimHandle,
    calls: &dyn GuildCalls,
    banned: impl IntoIterator<Item = (u64, u64)>,
) {
    for (guild_id, member) in banned {
        wait_until("the lifting is a case", || async {
            actions_about(calls, guild_id, member).await == ["unban", "tempban"]
        })
        .await;
        let path = format!("/guilds/{guild_id}/bans/{member}");
        let lifts: Vec<u16> = sim
            .ledger()
            .rest
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == path)
            .map(|r| r.status)
            .collect();
        assert_eq!(lifts, [204], "guild {guild_id} member {member}");
    }
}

const BAN: &str = "PUT /guilds/{guild_id}/bans/{user_id}";
const UNBAN: &str = "DELETE /guilds/{guild_id}/bans/{user_id}";

/// Sends `text` as the owner and returns the bot's answer (the `n`th reply in the channel).
async fn say(
    sim: &SimHandle,
    guild: &protonn_sim::GuildInfo,
    from: u64,
    text: &str,
    n: usize,
) -> String {
    let channel = guild.channel_ids[0];
    sim.send_message(guild.id, channel, from, text).unwrap();
    reply_in(sim, channel, n).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_moderation_command_acts_on_discord_and_leaves_a_case() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let owner = guild.owner_id;
    let [m1, m2, m3, m4] = [0, 1, 2, 3].map(|i| guild.member_ids[i]);
    let channel = guild.channel_ids[0];
    let mut n = 0;
    let mut next = || {
        n += 1;
        n - 1
    };

    let answer = say(sim, &guild, owner, &format!("!warn <@{m1}> spam"), next()).await;
    assert_eq!(answer, format!("Case #1: <@{m1}> was warned. Reason: spam"));

    let answer = say(
        sim,
        &guild,
        owner,
        &format!("!timeout <@{m1}> 10m calm down"),
        next(),
    )
    .await;
    assert!(
        answer.starts_with(&format!("Case #2: <@{m1}> was timed out for 10m.")),
        "{answer}"
    );
    assert!(sim.timeout_of(guild.id, m1).is_some());

    let answer = say(sim, &guild, owner, &format!("!kick {m2}"), next()).await;
    assert_eq!(answer, format!("Case #3: <@{m2}> was kicked."));
    assert!(sim.departed(guild.id, m2));

    let answer = say(
        sim,
        &guild,
        owner,
        &format!("!ban <@{m3}> delete=1d raids"),
        next(),
    )
    .await;
    assert_eq!(
        answer,
        format!("Case #4: <@{m3}> was banned. Reason: raids")
    );
    assert_eq!(sim.bans(guild.id), vec![m3]);

    let answer = say(
        sim,
        &guild,
        owner,
        &format!("!unban {m3} appeal accepted"),
        next(),
    )
    .await;
    assert_eq!(
        answer,
        format!("Case #5: <@{m3}> was unbanned. Reason: appeal accepted")
    );
    assert!(sim.bans(guild.id).is_empty());

    let answer = say(sim, &guild, owner, "!slowmode 30s", next()).await;
    assert!(answer.starts_with("Case #6:"), "{answer}");
    assert_eq!(sim.slowmode_of(channel), 30);

    let answer = say(sim, &guild, owner, "!lock raid", next()).await;
    assert!(answer.starts_with("Case #7:"), "{answer}");
    let send = 1u64 << 11;
    let denied = |sim: &SimHandle| {
        sim.overwrites_of(channel).iter().any(|o| {
            o["id"].as_str().and_then(|id| id.parse::<u64>().ok()) == Some(guild.id)
                && o["deny"]
                    .as_str()
                    .and_then(|d| d.parse::<u64>().ok())
                    .is_some_and(|d| d & send != 0)
        })
    };
    assert!(denied(sim));
    let answer = say(sim, &guild, owner, "!unlock", next()).await;
    assert!(answer.starts_with("Case #8:"), "{answer}");
    assert!(!denied(sim));

    // Purge: the member's last two messages, not the command nor others' messages.
    let mut theirs = Vec::new();
    for text in ["one", "two", "three"] {
        theirs.push(sim.send_message(guild.id, channel, m4, text).unwrap());
    }
    let answer = say(sim, &guild, owner, &format!("!purge 2 <@{m4}>"), next()).await;
    assert!(
        answer.starts_with("Case #9: deleted 2 messages"),
        "{answer}"
    );
    assert!(sim.message_exists(channel, theirs[0]));
    assert!(!sim.message_exists(channel, theirs[1]) && !sim.message_exists(channel, theirs[2]));

    let answer = say(sim, &guild, owner, "!case 4", next()).await;
    assert!(
        answer.starts_with(&format!("Case #4: ban of <@{m3}> by <@{owner}>")),
        "{answer}"
    );
    let answer = say(sim, &guild, owner, "!reason 4 raid on the 5th", next()).await;
    assert_eq!(answer, "Case #4's reason is now: raid on the 5th");
    let answer = say(sim, &guild, owner, "!case 4", next()).await;
    assert!(answer.ends_with("Reason: raid on the 5th"), "{answer}");
    let answer = say(sim, &guild, owner, &format!("!history <@{m1}>"), next()).await;
    let lines: Vec<&str> = answer.lines().skip(1).collect();
    assert!(
        lines[0].starts_with("#2 timeout (10m)") && lines[1].starts_with("#1 warn"),
        "{answer}"
    );

    // The same cases through a guild call, as the dashboard will read them.
    let cases = |target_id, before, limit| GuildCall {
        guild_id: guild.id,
        caller: Caller {
            user_id: Some(owner),
            source: CallSource::Dashboard,
        },
        idempotency_key: None,
        deadline: Duration::from_secs(10),
        request: GuildRequest::Cases {
            target_id,
            before,
            limit,
        },
    };
    let numbers = |answer: Result<GuildResponse, GuildCallError>| match answer {
        Ok(GuildResponse::Cases { cases }) => cases.iter().map(|c| c.number).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let calls = node.guild_calls();
    assert_eq!(numbers(calls.call(cases(None, None, 3)).await), [9, 8, 7]);
    assert_eq!(numbers(calls.call(cases(None, Some(3), 100)).await), [2, 1]);
    assert_eq!(
        numbers(calls.call(cases(Some(m1), None, 100)).await),
        [2, 1]
    );
    assert!(matches!(
        calls.call(cases(None, None, 0)).await,
        Err(GuildCallError::Invalid { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_bad_input_change_nothing() {
    let Bot { sim, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let owner = guild.owner_id;
    let [m1, m2] = [0, 1].map(|i| guild.member_ids[i]);

    // A member without Ban Members (and no staff role) is refused.
    let answer = say(sim, &guild, m1, &format!("!ban <@{m2}>"), 0).await;
    assert!(
        answer.starts_with("You need the Ban Members permission"),
        "{answer}"
    );
    let answer = say(sim, &guild, owner, &format!("!ban <@{owner}>"), 1).await;
    assert_eq!(answer, "You cannot ban yourself.");
    let answer = say(sim, &guild, owner, &format!("!timeout <@{m1}> 29d"), 2).await;
    assert!(answer.contains("at most 28 days"), "{answer}");
    let long = "x".repeat(513);
    let answer = say(sim, &guild, owner, &format!("!warn <@{m1}> {long}"), 3).await;
    assert!(answer.contains("at most 512 characters"), "{answer}");
    let answer = say(sim, &guild, owner, "!purge 500", 4).await;
    assert!(answer.contains("1 to 100"), "{answer}");
    let answer = say(sim, &guild, owner, "!warn 123456789", 5).await;
    assert!(answer.contains("not a member"), "{answer}");
    let answer = say(sim, &guild, owner, "!case 1", 6).await;
    assert_eq!(answer, "There is no case #1.", "nothing above made a case");

    assert!(sim.bans(guild.id).is_empty());
    assert!(
        rest_calls(sim, BAN).is_empty(),
        "no refused action reached Discord"
    );
    assert_eq!(sim.timeout_of(guild.id, m1), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_moderates_and_a_member_without_the_permission_is_refused() {
    let Bot { sim, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let member = guild.member_ids[0];
    let id = sim
        .send_command_interaction(
            guild.id,
            channel,
            guild.owner_id,
            "warn",
            &[("user", &member.to_string()), ("reason", "off topic")],
        )
        .unwrap();
    let answers = answers_to(sim, id).await;
    assert_eq!(
        answers,
        [format!(
            "Case #1: <@{member}> was warned. Reason: off topic"
        )]
    );

    let id = sim
        .send_command_interaction(
            guild.id,
            channel,
            member,
            "kick",
            &[("user", &guild.member_ids[1].to_string())],
        )
        .unwrap();
    let answers = answers_to(sim, id).await;
    assert!(
        answers[0].starts_with("You need the Kick Members permission"),
        "{answers:?}"
    );
    assert!(!sim.departed(guild.id, guild.member_ids[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_is_lifted_once_when_it_falls_due() {
    let runtime = RuntimeConfig {
        timer_poll_every: Duration::from_millis(100),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 2), runtime).await;
    let guild = some_guild(sim, 0);
    let member = guild.member_ids[0];
    let answer = say(
        sim,
        &guild,
        guild.owner_id,
        &format!("!ban <@{member}> 2s"),
        0,
    )
    .await;
    assert_eq!(answer, format!("Case #1: <@{member}> was banned for 2s."));
    assert_eq!(sim.bans(guild.id), vec![member]);
    wait_until("the temporary ban is lifted", || async {
        sim.bans(guild.id).is_empty()
    })
    .await;
    // The case is stored right after Discord lifted the ban.
    let calls = node.guild_calls();
    wait_until("the lifting is a case", || async {
        actions_about(calls.as_ref(), guild.id, member).await == ["unban", "tempban"]
    })
    .await;
    // Polls go on after the lift: by the time a second temporary ban is lifted, many have
    // passed over the first timer's place, and none lifted it again.
    let other = guild.member_ids[1];
    say(
        sim,
        &guild,
        guild.owner_id,
        &format!("!ban <@{other}> 1s"),
        1,
    )
    .await;
    wait_until("the second temporary ban is lifted", || async {
        rest_calls(sim, UNBAN).len() >= 2 && sim.bans(guild.id).is_empty()
    })
    .await;
    assert_eq!(rest_calls(sim, UNBAN), [204, 204]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_whose_shard_moves_before_it_ends_is_lifted_once_by_the_new_owner() {
    use crate::cluster::{membership, running, start_coordinator, start_node_with};

    let sim = start_sim(small_world(4, 40)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;
    let a = start_node_with(
        &sim,
        dir.path(),
        membership(&coordinator, "node-a"),
        fast_timers(),
    )
    .await;
    wait_until("node-a runs every shard", || async {
        running(&a).await.len() == 4
    })
    .await;
    // One temporary ban in a guild of each shard, so whichever shards move, one moves
    // with its ban still running.
    let mut banned = Vec::new();
    for shard in 0..4 {
        let guild = sim
            .guilds()
            .into_iter()
            .find(|g| g.shard == shard)
            .expect("a guild on every shard");
        let member = guild.member_ids[0];
        tempban(&sim, &guild, member, "15s", 0).await;
        banned.push((guild, member));
    }

    let b = node_b_takes_two_shards(&sim, dir.path(), &coordinator, &client, &a).await;
    let on_b = running(&b).await;
    let moved: Vec<_> = banned
        .iter()
        .filter(|(g, _)| on_b.contains(&g.shard))
        .collect();
    assert_eq!(moved.len(), 2);
    assert!(
        moved.iter().all(|(g, m)| sim.bans(g.id) == vec![*m]),
        "the moved guilds' bans outlast the move (15 s)"
    );

    wait_until("every temporary ban is lifted", || async {
        banned.iter().all(|(g, _)| sim.bans(g.id).is_empty())
    })
    .await;
    // Each lifted once, on the guild's node of the time (node-b for the moved ones: node-a
    // no longer holds them).
    let calls = client.guild_calls();
    each_ban_lifted_once(&sim, calls.as_ref(), banned.iter().map(|(g, m)| (g.id, *m))).await;

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}

/// Bans `member` for 30 s: the guild's `turn`-th answer in its first channel.
async fn tempban(
    sim: &SimHandle,
    guild: &protonn_sim::GuildInfo,
    member: u64,
    length: &str,
    turn: usize,
) {
    let answer = say(
        sim,
        guild,
        guild.owner_id,
        &format!("!ban <@{member}> {length}"),
        turn,
    )
    .await;
    assert_eq!(
        answer,
        format!("Case #{}: <@{member}> was banned for {length}.", turn + 1)
    );
}

/// Timers polled every 100 ms, so a lift follows its due time closely.
fn fast_timers() -> RuntimeConfig {
    RuntimeConfig {
        timer_poll_every: Duration::from_millis(100),
        ..test_runtime()
    }
}

/// Starts node-b beside node-a and waits until the balancer settled two of the four shards
/// on each.
async fn node_b_takes_two_shards(
    sim: &SimHandle,
    dir: &std::path::Path,
    coordinator: &protonn_cluster::Coordinator,
    client: &protonn_cluster::ClusterClient,
    a: &protonn_cluster::Node,
) -> protonn_cluster::Node {
    use crate::cluster::{membership, placed_for_good, running, start_node_with};
    let b = start_node_with(sim, dir, membership(coordinator, "node-b"), fast_timers()).await;
    wait_until("two shards moved to node-b", || async {
        let settled = placed_for_good(client).await;
        settled && running(&b).await.len() == 2 && running(a).await.len() == 2
    })
    .await;
    b
}

/// Issue #25: timers are partitioned by shard, and a resharding changes every guild's
/// shard without restarting the nodes. A temporary ban set before a 2 → 4 resharding, and
/// one set after it by the node that ran it, are each lifted once, by the node that runs the
/// guild's new shard, here one that joined after the resharding and took shards over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_bans_set_before_and_after_a_resharding_are_lifted_once_by_the_new_shards_owner()
{
    use crate::cluster::{membership, operator, running, start_coordinator, start_node_with};
    const FROM: u32 = 2;
    const TO: u32 = 4;

    let sim = start_sim(SimConfig {
        max_concurrency: TO,
        ..small_world(FROM, 40)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;
    let a = start_node_with(
        &sim,
        dir.path(),
        membership(&coordinator, "node-a"),
        fast_timers(),
    )
    .await;
    wait_until("node-a runs every shard", || async {
        running(&a).await.len() == FROM as usize
    })
    .await;
    // A guild on each new shard: whichever shards move to node-b, a ban moves with them.
    let guilds: Vec<_> = (0..TO)
        .map(|shard| {
            sim.guilds()
                .into_iter()
                .find(|g| protonn_storage::shard_of(g.id, TO) == shard)
                .expect("a guild on every new shard")
        })
        .collect();
    let mut banned = Vec::new();
    for guild in &guilds {
        tempban(&sim, guild, guild.member_ids[0], "30s", 0).await;
        banned.push((guild.clone(), guild.member_ids[0]));
    }

    let ops = operator(&coordinator);
    ops.reshard(TO).await.unwrap();
    wait_until("the resharding completes", || async {
        ops.reshard_progress()
            .await
            .is_ok_and(|p| p.phase == "completed")
    })
    .await;
    wait_until("node-a runs the new set only", || async {
        running(&a).await.len() == TO as usize && a.shard_statuses().await.len() == TO as usize
    })
    .await;
    // Set by node-a after the completion, without a restart: under the new count.
    for guild in &guilds {
        tempban(&sim, guild, guild.member_ids[1], "30s", 1).await;
        banned.push((guild.clone(), guild.member_ids[1]));
    }
    // Each timer stays in the partition of the count it was set under: the first batch's
    // in an old shard's, the second's in the new shard's.
    let store = a.store();
    for guild in &guilds {
        let timers = store.timers_of_guild(guild.id).await.unwrap();
        let partition_of = |member: u64| {
            timers
                .iter()
                .find(|t| t.users.contains(&member))
                .map(|t| t.shard_id)
        };
        assert_eq!(
            (
                partition_of(guild.member_ids[0]),
                partition_of(guild.member_ids[1])
            ),
            (
                Some(protonn_storage::shard_of(guild.id, FROM)),
                Some(protonn_storage::shard_of(guild.id, TO))
            ),
            "timers of guild {}: {timers:?}",
            guild.id
        );
    }

    let b = node_b_takes_two_shards(&sim, dir.path(), &coordinator, &client, &a).await;
    let on_b = running(&b).await;
    assert!(
        banned.iter().all(|(g, m)| sim.bans(g.id).contains(m)),
        "every ban outlasts the resharding and the move (30 s)"
    );

    // Each batch waited for on its own: the second falls due a few seconds after the first.
    for batch in banned.chunks(guilds.len()) {
        wait_until("a batch of temporary bans is lifted", || async {
            batch.iter().all(|(g, m)| !sim.bans(g.id).contains(m))
        })
        .await;
    }
    let calls = client.guild_calls();
    each_ban_lifted_once(&sim, calls.as_ref(), banned.iter().map(|(g, m)| (g.id, *m))).await;
    // A node fires only the timers of guilds it holds (the router drops the others), and
    // each guild is held by the node of its new shard alone: node-b lifted the moved ones.
    for (guild, _) in &banned {
        let shard = protonn_storage::shard_of(guild.id, TO);
        let moved = on_b.contains(&shard);
        assert_eq!(
            (
                a.cached_guild(guild.id).is_some(),
                b.cached_guild(guild.id).is_some()
            ),
            (!moved, moved),
            "guild {} of new shard {shard}",
            guild.id
        );
    }

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_climb_the_escalation_ladder_with_a_dm_and_a_mod_log_embed_each() {
    let Bot { sim, .. } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let owner = guild.owner_id;
    let member = guild.member_ids[0];
    let log = guild.channel_ids[1];
    for (n, setting) in [
        format!("!config set log_channel <#{log}>"),
        "!config set dm_members on".to_owned(),
        "!config set escalation 2/7d timeout 1h, 3/7d kick".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let answer = say(sim, &guild, owner, setting, n).await;
        assert!(answer.contains("is now"), "{answer}");
    }

    let answer = say(sim, &guild, owner, &format!("!warn <@{member}> first"), 3).await;
    assert_eq!(
        answer,
        format!("Case #1: <@{member}> was warned. Reason: first")
    );
    assert_eq!(sim.timeout_of(guild.id, member), None);
    let answer = say(sim, &guild, owner, &format!("!warn <@{member}> second"), 4).await;
    assert_eq!(
        answer,
        format!(
            "Case #2: <@{member}> was warned. Reason: second Case #3: <@{member}> was timed \
             out for 1h. Reason: Escalation: 2 warnings within 7 days."
        )
    );
    assert!(sim.timeout_of(guild.id, member).is_some());

    // One embed per case in the log channel, and one DM per action to the member.
    wait_until("three embeds in the mod-log", || async {
        let ledger = sim.ledger();
        ledger
            .rest
            .iter()
            .filter(|r| r.path == format!("/channels/{log}/messages") && r.status == 200)
            .filter(|r| {
                r.body
                    .as_ref()
                    .is_some_and(|b| b["embeds"][0]["title"].is_string())
            })
            .count()
            == 3
    })
    .await;
    wait_until("three DMs", || async {
        let ledger = sim.ledger();
        let dm_channels = ledger
            .rest
            .iter()
            .filter(|r| r.route == "POST /users/@me/channels" && r.status == 200)
            .count();
        let dms = ledger
            .rest
            .iter()
            .filter(|r| {
                r.route == "POST /channels/{channel_id}/messages"
                    && r.body.as_ref().is_some_and(|b| {
                        b["content"]
                            .as_str()
                            .is_some_and(|c| c.starts_with("You were"))
                    })
            })
            .count();
        dm_channels == 3 && dms == 3
    })
    .await;
}
