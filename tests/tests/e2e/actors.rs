//! The guild actor runtime: passivation, eviction, crash retries, dead letters, cooldowns,
//! config from outside Discord, deferred interactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use protonn_actors::{ConfigChangeError, EventObserver, HandledEvent, RuntimeConfig};
use protonn_cluster::{HandledJournal, NodeError, read_journal};
use protonn_sim::GatewayEventKind;
use protonn_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_guilds_passivate_and_rehydrate_with_their_config() {
    let runtime = RuntimeConfig {
        idle_after: Duration::from_millis(200),
        sweep_every: Duration::from_millis(50),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 8), runtime).await;
    let guild = some_guild(sim, 2);
    let channel = guild.channel_ids[0];
    sim.send_message(guild.id, channel, guild.owner_id, "!config set prefix >")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "`prefix` is now `>`.");

    wait_until("every guild actor is passivated", || async {
        node.router_stats().await.active_guilds == 0
    })
    .await;
    // The one guild that had work had the one actor.
    assert!(node.router_stats().await.passivated >= 1);

    // The next event rehydrates the actor, which finds its config in storage.
    sim.send_message(guild.id, channel, guild.member_ids[0], ">config get prefix")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 1).await, "`prefix` is `>`.");
    assert_eq!(node.router_stats().await.active_guilds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resident_cap_evicts_the_least_recently_active() {
    let runtime = RuntimeConfig {
        max_resident: 10,
        sweep_every: Duration::from_millis(50),
        ..test_runtime()
    };
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::with_runtime(small_world(1, 30), runtime).await;
    wait_until("every guild was created", || async {
        recorder.guilds_created().len() == 30
    })
    .await;
    // Chat (no command) is work for each guild's actor.
    for index in 0..30 {
        let guild = some_guild(sim, index);
        sim.send_message(guild.id, guild.channel_ids[0], guild.member_ids[0], "hello")
            .unwrap();
    }
    wait_until("every guild's message was handled", || async {
        recorder.messages().len() == 30
    })
    .await;
    wait_until("the cap holds", || async {
        node.router_stats().await.active_guilds <= 10
    })
    .await;

    // A guild that just spoke is resident; it survives the next sweeps while idle ones go.
    let guild = some_guild(sim, 0);
    sim.send_message(guild.id, guild.channel_ids[0], guild.owner_id, "!ping")
        .unwrap();
    assert_eq!(reply_in(sim, guild.channel_ids[0], 0).await, "pong");
    assert!(node.router_stats().await.active_guilds <= 11);
    let (_, metrics) = http_get(node.ops_addr(), "/metrics").await;
    assert!(metrics.contains("protonn_actors_passivations_total{reason=\"evicted\"}"));
}

/// Panics while handling the n-th distinct message of the test, a chosen number of times.
/// (Message ids are made by the simulator at send time, so they are chosen by order: one
/// guild's events are handled in gateway order.)
struct Poison {
    panics_by_ordinal: Vec<u32>,
    seen: Mutex<Vec<u64>>,
    handled: Mutex<HashMap<u64, u32>>,
}

impl EventObserver for Poison {
    fn handled(&self, _guild_id: u64, _: u32, event: HandledEvent) {
        let HandledEvent::Message(id) = event else {
            return;
        };
        let tries = {
            let mut handled = self.handled.lock().unwrap();
            let tries = handled.entry(id).or_default();
            *tries += 1;
            *tries
        };
        let ordinal = {
            let mut seen = self.seen.lock().unwrap();
            if !seen.contains(&id) {
                seen.push(id);
            }
            seen.iter().position(|seen| *seen == id).unwrap()
        };
        if tries <= self.panics_by_ordinal.get(ordinal).copied().unwrap_or(0) {
            panic!("poisoned message {id}, try {tries}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_event_is_retried_then_dead_lettered_and_nothing_else_is_lost() {
    // The first message panics once, the second on every try, the third never.
    let poison = Arc::new(Poison {
        panics_by_ordinal: vec![1, u32::MAX, 0],
        seen: Mutex::default(),
        handled: Mutex::default(),
    });
    let runtime = RuntimeConfig {
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        ..test_runtime()
    };
    let observer = Arc::clone(&poison) as Arc<dyn EventObserver>;
    let Bot { sim, node, .. } = &Bot::with_observer(small_world(1, 4), runtime, observer).await;
    let guild = some_guild(sim, 1);
    let channel = guild.channel_ids[0];
    let author = guild.member_ids[0];

    let recovers = sim
        .send_message(guild.id, channel, author, "!help")
        .unwrap();
    let doomed = sim
        .send_message(guild.id, channel, author, "!ping")
        .unwrap();
    let healthy = sim
        .send_message(guild.id, channel, author, "!config get prefix")
        .unwrap();

    wait_until("both surviving commands are answered", || async {
        channel_replies(sim, channel).len() >= 2
    })
    .await;
    let replies = channel_replies(sim, channel);
    assert!(
        replies.iter().any(|r| r.starts_with("Commands:")),
        "{replies:?}"
    );
    assert!(
        replies.contains(&"`prefix` is `!`.".to_owned()),
        "{replies:?}"
    );
    assert!(
        !replies.contains(&"pong".to_owned()),
        "the poisoned command never completed"
    );

    let letters = node.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entity_id, Some(doomed));
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].event, "MESSAGE_CREATE");
    let handled = poison.handled.lock().unwrap().clone();
    assert_eq!(handled[&recovers], 2, "retried once");
    assert_eq!(handled[&doomed], 3, "tried three times, then set aside");
    assert_eq!(handled[&healthy], 1);
    assert_eq!(
        node.router_stats().await.failures,
        0,
        "the actor itself never died"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooldowns_keep_one_user_from_flooding_replies() {
    let runtime = RuntimeConfig {
        user_cooldown: Duration::from_secs(60),
        ..RuntimeConfig::default()
    };
    let Bot { sim, .. } = &Bot::with_runtime(small_world(1, 4), runtime).await;
    let guild = some_guild(sim, 0);
    let channel = guild.channel_ids[0];
    let (spammer, other) = (guild.member_ids[0], guild.member_ids[1]);

    for _ in 0..3 {
        sim.send_message(guild.id, channel, spammer, "!ping")
            .unwrap();
    }
    // Another user's command is a barrier: the spammer's were handled before it.
    sim.send_message(guild.id, channel, other, "!config get prefix")
        .unwrap();
    wait_until("the barrier is answered", || async {
        channel_replies(sim, channel).contains(&"`prefix` is `!`.".to_owned())
    })
    .await;
    let pongs = channel_replies(sim, channel)
        .iter()
        .filter(|r| *r == "pong")
        .count();
    assert_eq!(pongs, 1, "text commands on cooldown are not answered");

    // An interaction must be answered: it is told to wait.
    let interaction = sim
        .send_command_interaction(guild.id, channel, spammer, "ping", &[])
        .unwrap();
    let answers = answers_to(sim, interaction).await;
    assert!(
        answers[0].starts_with("Slow down: try again in"),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_from_outside_discord_is_live_at_once_and_versioned() {
    let Bot { sim, node, .. } = &Bot::start(small_world(1, 4)).await;
    let guild = some_guild(sim, 3);
    let channel = guild.channel_ids[0];

    let stored = node.configure(guild.id, "prefix", "$", None).await.unwrap();
    assert_eq!((stored.version, stored.config.prefix.as_str()), (1, "$"));
    sim.send_message(guild.id, channel, guild.member_ids[0], "$ping")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "pong", "live at once");

    // An editor that saw version 0 loses to the one that saved version 1.
    let stale = node.configure(guild.id, "prefix", "%", Some(0)).await;
    assert_eq!(
        stale.unwrap_err(),
        ConfigChangeError::Conflict { current: 1 }
    );
    let bad = node
        .configure(guild.id, "prefix", "much too long", Some(1))
        .await;
    assert!(matches!(bad, Err(ConfigChangeError::Invalid(_))), "{bad:?}");
    let unknown = node.configure(guild.id, "colour", "red", None).await;
    assert!(
        matches!(unknown, Err(ConfigChangeError::Invalid(_))),
        "{unknown:?}"
    );

    let staff = node
        .configure(guild.id, "staff_roles", "<@&123> 456", Some(1))
        .await
        .unwrap();
    assert_eq!(staff.config.staff_roles, [123, 456]);
    let stored = node
        .configure(guild.id, "staff_roles", "none", Some(2))
        .await
        .unwrap();
    assert!(stored.config.staff_roles.is_empty());

    // The command path sees the same document and version.
    let stored = node
        .configure(guild.id, "locale", "de", Some(3))
        .await
        .unwrap();
    assert_eq!(stored.version, 4);
    assert_eq!(stored.config.prefix, "$", "other keys are kept");
    sim.send_message(guild.id, channel, guild.member_ids[0], "$config get locale")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 1).await, "`locale` is `de`.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_interactions_are_deferred_then_answered_by_an_edit() {
    // Zero defers every interaction: the path a slow command takes, made deterministic.
    let runtime = RuntimeConfig {
        defer_after: Duration::ZERO,
        ..test_runtime()
    };
    let Bot { sim, .. } = &Bot::with_runtime(small_world(1, 4), runtime).await;
    let guild = some_guild(sim, 0);
    let interaction = sim
        .send_command_interaction(
            guild.id,
            guild.channel_ids[0],
            guild.member_ids[0],
            "ping",
            &[],
        )
        .unwrap();

    let edits = || {
        sim.ledger()
            .rest
            .into_iter()
            .filter(|r| {
                r.route == "PATCH /webhooks/{application_id}/{interaction_token}/messages/@original"
            })
            .collect::<Vec<_>>()
    };
    wait_until("the deferred answer is edited in", || async {
        !edits().is_empty()
    })
    .await;
    let ledger = sim.ledger();
    let callbacks: Vec<_> = ledger
        .rest
        .iter()
        .filter(|r| r.path.starts_with(&format!("/interactions/{interaction}/")))
        .collect();
    assert_eq!(callbacks.len(), 1, "one first response");
    assert_eq!(callbacks[0].status, 204);
    assert_eq!(
        callbacks[0].body.as_ref().unwrap()["type"],
        5,
        "deferred: thinking…"
    );
    let edit = &edits()[0];
    assert_eq!(edit.status, 200);
    assert_eq!(edit.body.as_ref().unwrap()["content"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_guild_keeps_its_data_through_the_grace_and_a_return_cancels_the_erasure() {
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(1, 4)).await;
    let (kept, erased) = (some_guild(sim, 0), some_guild(sim, 1));
    for guild in [&kept, &erased] {
        node.configure(guild.id, "prefix", "?", None).await.unwrap();
    }

    // Both are removed; one comes back.
    assert!(sim.remove_guild(kept.id) && sim.remove_guild(erased.id));
    let scheduled = || async {
        let mut guilds: Vec<u64> = node
            .scheduled_guild_deletions()
            .await
            .into_iter()
            .map(|(g, _)| g)
            .collect();
        guilds.sort();
        guilds
    };
    let mut both = vec![kept.id, erased.id];
    both.sort();
    wait_until("both removals are scheduled", || async {
        scheduled().await == both
    })
    .await;
    let (_, at) = node.scheduled_guild_deletions().await[0];
    let grace = at.0 - protonn_storage::Timestamp::now().0;
    assert!(
        grace > 29 * 86_400_000,
        "a month of grace by default, got {grace} ms"
    );

    assert!(sim.restore_guild(kept.id));
    wait_until("the returning guild's erasure is cancelled", || async {
        scheduled().await == [erased.id]
    })
    .await;
    assert_eq!(recorder.counts()[&(kept.id, HandledEvent::GuildCreate)], 2);

    // Its data was kept all along: the prefix still works.
    let channel = kept.channel_ids[0];
    sim.send_message(kept.id, channel, kept.member_ids[0], "?ping")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "pong");
}

/// Holds the first message of one guild in its handler until opened, so that the guild's
/// later events wait in its mailbox. (It blocks a runtime thread: the tests using it run on
/// two.)
#[derive(Default)]
struct Gate {
    guild: std::sync::atomic::AtomicU64,
    open: Mutex<bool>,
    opened: Condvar,
    held: AtomicBool,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl EventObserver for Gate {
    fn handled(&self, guild_id: u64, _: u32, event: HandledEvent) {
        if guild_id != self.guild.load(Ordering::Acquire)
            || !matches!(event, HandledEvent::Message(_))
        {
            return;
        }
        self.held.store(true, Ordering::Release);
        // Blocks its worker thread: tokio is told, so the tasks queued on that thread (the
        // router's, say) move to another instead of waiting for the gate.
        tokio::task::block_in_place(|| {
            let open = self.open.lock().unwrap();
            let _ = self
                .opened
                .wait_timeout_while(open, DEADLINE, |open| !*open)
                .unwrap();
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_node_answers_every_message_its_guild_mailboxes_hold() {
    let gate = Arc::new(Gate::default());
    let mut world = small_world(1, 3);
    // Replies leave as fast as the node's global share lets them.
    world.rest_limits.channel_messages.limit = 1_000;
    let observer = Arc::clone(&gate) as Arc<dyn EventObserver>;
    let Bot { sim, node, .. } = Bot::with_observer(world, test_runtime(), observer).await;
    let guild = some_guild(&sim, 1);
    let channel = guild.channel_ids[0];
    gate.guild.store(guild.id, Ordering::Release);

    const QUEUED: usize = 40;
    for _ in 0..QUEUED {
        sim.send_message(guild.id, channel, guild.member_ids[0], "!ping")
            .unwrap();
    }
    // The first is held in its handler, the others wait in the guild's mailbox.
    wait_until("every message is in the guild's mailbox", || async {
        gate.held.load(Ordering::Acquire) && node.router_stats().await.queued == QUEUED as u64
    })
    .await;
    assert!(channel_replies(&sim, channel).is_empty());

    let stopping = tokio::spawn(node.shutdown());
    // The shards are closed (no event can arrive any more) while the mailbox still holds
    // all but one message: only now may the guild go on.
    wait_until("the node closed its shard", || async {
        sim.ledger()
            .gateway
            .iter()
            .any(|r| matches!(r.kind, GatewayEventKind::Disconnected))
    })
    .await;
    gate.open();
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("the node stops within the deadline")
        .unwrap();

    // Every reply reached Discord before the node was done stopping.
    let replies = channel_replies(&sim, channel);
    assert_eq!(replies.len(), QUEUED, "{replies:?}");
    assert!(replies.iter().all(|reply| reply == "pong"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_guild_router_makes_the_node_unready_and_failed() {
    let Bot { sim, node, .. } = Bot::start(small_world(1, 2)).await;
    let ops = node.ops_addr();
    assert_eq!(http_get(ops, "/readyz").await.0, 200);

    node.guild_router().kill();
    let failed = tokio::time::timeout(DEADLINE, node.failed())
        .await
        .expect("the node reports its failure");
    assert!(
        matches!(failed, NodeError::ActorStopped("guild router")),
        "{failed}"
    );
    let (status, body) = http_get(ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("guild router stopped"), "{body}");
    node.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_channels_cached_replies_are_checked_against_the_bots_permissions_and_sent() {
    // The simulator's bot may post everywhere: the check, fed by READY (the bot's id),
    // GUILD_CREATE (its roles) and the cached channels, must find so and send.
    let runtime = RuntimeConfig {
        cache_resources: protonn_actors::cache_resources(&["guild", "role", "channel"]).unwrap(),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 3), runtime).await;
    let guild = some_guild(sim, 2);
    let channel = guild.channel_ids[0];
    wait_until("the guild's channel is cached", || async {
        node.cached_guild(guild.id).is_some()
    })
    .await;
    sim.send_message(guild.id, channel, guild.member_ids[0], "!ping")
        .unwrap();
    assert_eq!(reply_in(sim, channel, 0).await, "pong");
    let (_, metrics) = http_get(node.ops_addr(), "/metrics").await;
    assert!(
        metrics.contains("protonn_rest_sends_skipped_total 0"),
        "described, registered and nothing skipped"
    );
}

/// `[diagnostics] handled_events`: one journal line per event a guild actor handled, with
/// the guild's shard, the node's name and the time it was handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handled_events_journal_records_each_event_handled_with_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handled.tsv");
    let journal = Arc::new(HandledJournal::open(&path, "local").unwrap());
    let started_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let observer = Arc::clone(&journal) as Arc<dyn EventObserver>;
    let Bot { sim, .. } = &Bot::with_observer(small_world(2, 6), test_runtime(), observer).await;
    let mut sent = Vec::new();
    for guild in sim.guilds() {
        for text in ["hello", "!ping"] {
            let id = sim
                .send_message(guild.id, guild.channel_ids[0], guild.member_ids[0], text)
                .unwrap();
            sent.push((id, guild.id));
        }
    }
    let journaled = |id: u64| {
        move |line: &&protonn_cluster::HandledLine| line.event == HandledEvent::Message(id)
    };
    wait_until("every message is in the journal", || async {
        journal.flush();
        let lines = read_journal(&path).unwrap();
        sent.iter()
            .all(|&(id, _)| lines.iter().any(|line| journaled(id)(&line)))
    })
    .await;

    let lines = read_journal(&path).unwrap();
    for &(id, guild_id) in &sent {
        let handled: Vec<_> = lines.iter().filter(journaled(id)).collect();
        assert_eq!(handled.len(), 1, "message {id} handled once: {handled:?}");
        let line = handled[0];
        assert_eq!(
            (line.guild_id, line.shard, line.node.as_str()),
            (guild_id, sim.shard_of(guild_id), "local")
        );
        assert!(line.at_us >= started_us, "{line}");
    }
    for guild in sim.guilds() {
        let created = lines
            .iter()
            .filter(|l| l.guild_id == guild.id && l.event == HandledEvent::GuildCreate)
            .count();
        assert_eq!(created, 1, "guild {}'s GUILD_CREATE", guild.id);
    }
}
