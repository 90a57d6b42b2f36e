//! Guilds' own scheduled announcements through the simulator: saved by guild calls (bad
//! input refused, nothing saved), sent once by a durable timer across a shard handoff and a
//! restart, repeated on their hour, held to the guild's plan after a downgrade (kept, not
//! sent, named), and run from the dashboard in Chromium as an admin does.

use std::time::Duration;

use protonn_actors::{
    GuildCallError, GuildCalls, GuildRequest, GuildResponse, RuntimeConfig, ScheduleStatus,
};
use protonn_sim::SimHandle;
use protonn_storage::{Plan, Repeat, Store, Timer, Timestamp, guild_plan};
use protonn_tests::*;

use crate::cluster::{membership, operator, placed_for_good, running, start_coordinator};
use crate::dashboard::{SignedIn, browser_installed};
use crate::workflows::call;

fn fast_timers() -> RuntimeConfig {
    RuntimeConfig {
        timer_poll_every: Duration::from_millis(100),
        // A downgrade shows at once.
        plan_recheck_every: Duration::from_millis(50),
        ..test_runtime()
    }
}

/// Creates a schedule (a new id).
async fn create(
    calls: &dyn GuildCalls,
    guild_id: u64,
    channel_id: u64,
    message: &str,
    repeat: Repeat,
) -> Result<u64, GuildCallError> {
    let request = GuildRequest::SaveAnnounceSchedule {
        schedule_id: None,
        channel_id,
        message: message.to_owned(),
        repeat,
        paused: false,
    };
    match call(calls, guild_id, request).await? {
        GuildResponse::AnnounceSchedule(saved) => Ok(saved.schedule_id),
        other => panic!("{other:?}"),
    }
}

async fn listed(calls: &dyn GuildCalls, guild_id: u64) -> Vec<ScheduleStatus> {
    match call(calls, guild_id, GuildRequest::ListAnnounceSchedules).await {
        Ok(GuildResponse::AnnounceSchedules { schedules }) => schedules,
        other => panic!("{other:?}"),
    }
}

/// The bot's posts of `text` in `channel`, from the simulator's ledger.
fn posts(sim: &SimHandle, channel: u64, text: &str) -> usize {
    channel_replies(sim, channel)
        .iter()
        .filter(|posted| *posted == text)
        .count()
}

/// The guild's schedule timers.
async fn schedule_timers(store: &dyn Store, guild_id: u64) -> Vec<Timer> {
    let timers = store.timers_of_guild(guild_id).await.unwrap();
    timers
        .into_iter()
        .filter(|t| t.id.starts_with("announce:"))
        .collect()
}

/// Makes every schedule timer of the guild due now, as if its time had come.
async fn fall_due(store: &dyn Store, guild_id: u64) {
    for timer in schedule_timers(store, guild_id).await {
        let due = Timer {
            due: Timestamp::now(),
            ..timer
        };
        store.put_timer(&due).await.unwrap();
    }
}

/// Waits until every schedule timer of the guild is due later than `after` (each was handled
/// and armed again).
async fn rearmed(store: &dyn Store, guild_id: u64, after: Timestamp) {
    wait_until("the schedules' next sends are armed", || async {
        let timers = schedule_timers(store, guild_id).await;
        !timers.is_empty() && timers.iter().all(|t| t.due > after)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_announcement_is_sent_once_across_a_handoff() {
    let sim = start_sim(small_world(4, 8)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;
    let start = |name: &'static str| {
        crate::cluster::start_node_with(
            &sim,
            dir.path(),
            membership(&coordinator, name),
            fast_timers(),
        )
    };
    let a = start("node-a").await;
    wait_until("node-a runs every shard", || async {
        running(&a).await.len() == 4
    })
    .await;
    let b = start("node-b").await;
    wait_until("two shards on each node, placed for good", || async {
        placed_for_good(&client).await
            && running(&a).await.len() == 2
            && running(&b).await.len() == 2
    })
    .await;
    let on_a = running(&a).await;
    let guild = sim
        .guilds()
        .into_iter()
        .find(|g| on_a.contains(&g.shard))
        .expect("a guild on node-a");
    wait_until("node-a has the guild cached", || async {
        a.cached_guild(guild.id).is_some()
    })
    .await;
    let calls = client.guild_calls();
    let channel = guild.channel_ids[0];

    // A one-off due in a few seconds, saved while node-a runs the guild...
    let at = Timestamp::now().saturating_add(Duration::from_secs(3));
    let text = "The server's game night starts now!";
    create(calls.as_ref(), guild.id, channel, text, Repeat::Once { at })
        .await
        .unwrap();
    assert_eq!(schedule_timers(a.store().as_ref(), guild.id).await.len(), 1);
    // ...and its shard moves to node-b while it is pending.
    assert_eq!(operator(&coordinator).drain("node-a").await.unwrap(), 2);
    wait_until("node-b runs every shard", || async {
        running(&b).await.len() == 4
    })
    .await;

    let store = b.store();
    wait_until("sent, and its timer done", || async {
        posts(&sim, channel, text) >= 1
            && schedule_timers(store.as_ref(), guild.id).await.is_empty()
    })
    .await;
    assert_eq!(posts(&sim, channel, text), 1, "sent once");
    let status = &listed(calls.as_ref(), guild.id).await[0];
    assert_eq!(status.next_send, None, "a one-off is done once sent");

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_pending_over_a_restart_is_sent_once_then_on_its_hour() {
    let sim = start_sim(small_world(1, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = sim.config().token.clone();
    let recorder = std::sync::Arc::new(Recorder::default());
    let boot = || async {
        let node = start_node_with(&sim, dir.path(), recorder.clone(), &token, fast_timers())
            .await
            .unwrap();
        wait_all_ready(&node).await;
        for guild in sim.guilds() {
            wait_until("the guild is cached", || async {
                node.cached_guild(guild.id).is_some()
            })
            .await;
        }
        node
    };
    let node = boot().await;
    let guild = some_guild(&sim, 0);
    let channel = guild.channel_ids[0];
    let text = "Hourly reminder: be kind.";
    // Premium: room for the barrier below besides this one.
    give_premium(node.store().as_ref(), guild.id, guild.owner_id).await;
    // Every hour from a few seconds from now: the first send is then.
    let from = Timestamp::now().saturating_add(Duration::from_secs(2));
    let repeat = Repeat::EveryHours { hours: 1, from };
    create(node.guild_calls().as_ref(), guild.id, channel, text, repeat)
        .await
        .unwrap();
    // The node stops before the first send and starts again on the same store.
    node.shutdown().await;
    let node = boot().await;
    let store = node.store();
    wait_until("sent after the restart", || async {
        posts(&sim, channel, text) == 1
    })
    .await;
    let next = from.saturating_add(Duration::from_secs(3_600));
    rearmed(store.as_ref(), guild.id, from).await;
    let status = &listed(node.guild_calls().as_ref(), guild.id).await[0];
    assert_eq!(status.next_send, Some(next), "the next send is on its hour");

    // Made due early (as if its hour had come): sent once more, and armed again on the
    // hour counted from its start, not from when it was sent.
    let before = Timestamp::now();
    fall_due(store.as_ref(), guild.id).await;
    wait_until("sent again", || async { posts(&sim, channel, text) == 2 }).await;
    rearmed(store.as_ref(), guild.id, before).await;
    let status = &listed(node.guild_calls().as_ref(), guild.id).await[0];
    assert_eq!(status.next_send, Some(next));
    // A restart after the sends sends nothing again: a one-off due at once is the barrier
    // (timers of a shard are handled soonest first).
    drop(store);
    node.shutdown().await;
    let node = boot().await;
    let barrier = "Barrier";
    let soon = Timestamp::now().saturating_add(Duration::from_millis(500));
    create(
        node.guild_calls().as_ref(),
        guild.id,
        channel,
        barrier,
        Repeat::Once { at: soon },
    )
    .await
    .unwrap();
    wait_until("the barrier is sent", || async {
        posts(&sim, channel, barrier) == 1
    })
    .await;
    assert_eq!(posts(&sim, channel, text), 2, "nothing sent twice");

    node.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_and_a_downgrade_keeps_those_past_the_plan_unsent() {
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), fast_timers()).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let store = node.store();
    let channel = guild.channel_ids[0];
    let daily = Repeat::Daily { minute: 9 * 60 };

    // Bad input: a clear reason, nothing saved.
    let refusals = [
        (999, "hi".to_owned(), daily, "text or announcement channel"),
        (
            channel,
            "hi".to_owned(),
            Repeat::Once {
                at: Timestamp(Timestamp::now().0 - 1_000),
            },
            "a time to come",
        ),
        (channel, "  ".to_owned(), daily, "1 to 2000 characters"),
        (channel, "x".repeat(2_001), daily, "1 to 2000 characters"),
        (
            channel,
            "hi".to_owned(),
            Repeat::EveryHours {
                hours: 0,
                from: Timestamp::now(),
            },
            "every 1 to 720 hours",
        ),
        (
            channel,
            "hi".to_owned(),
            Repeat::Daily { minute: 1_440 },
            "00:00 to 23:59",
        ),
    ];
    for (channel_id, message, repeat, reason) in refusals {
        let err = create(calls, guild.id, channel_id, &message, repeat)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(reason), "{err} (wanted: {reason})");
    }
    let err = call(
        calls,
        guild.id,
        GuildRequest::SetAnnounceSchedulePaused {
            schedule_id: 7,
            paused: true,
        },
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("no scheduled announcement 7"),
        "{err}"
    );
    assert!(listed(calls, guild.id).await.is_empty());
    assert!(schedule_timers(store.as_ref(), guild.id).await.is_empty());

    // The free plan allows one; premium more.
    create(calls, guild.id, channel, "First", daily)
        .await
        .unwrap();
    let err = create(calls, guild.id, channel, "Second", daily)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the free plan allows 1 scheduled announcements; premium allows 25"),
        "{err}"
    );
    give_premium(store.as_ref(), guild.id, guild.owner_id).await;
    wait_until("premium allows a second", || async {
        create(calls, guild.id, channel, "Second", daily)
            .await
            .is_ok()
    })
    .await;
    assert!(listed(calls, guild.id).await.iter().all(|s| !s.over_plan));

    // A downgrade: the second is kept, named as past the plan, and not sent when due.
    store.remove_slot(guild.owner_id, guild.id).await.unwrap();
    wait_until("the guild is free again", || async {
        guild_plan(store.as_ref(), guild.id, Timestamp::now())
            .await
            .unwrap()
            == Plan::Free
    })
    .await;
    wait_until("the second is past the plan", || async {
        let listed = listed(calls, guild.id).await;
        listed.len() == 2 && !listed[0].over_plan && listed[1].over_plan
    })
    .await;
    let before = Timestamp::now();
    fall_due(store.as_ref(), guild.id).await;
    wait_until("the first is sent", || async {
        posts(sim, channel, "First") == 1
    })
    .await;
    rearmed(store.as_ref(), guild.id, before).await;
    assert_eq!(posts(sim, channel, "Second"), 0, "past the plan: not sent");
    assert_eq!(listed(calls, guild.id).await.len(), 2, "kept");

    // Every change was audited.
    let audit = store
        .list_audit(guild.id, Timestamp(0), Timestamp(u64::MAX), 100)
        .await
        .unwrap();
    let created = audit
        .iter()
        .filter(|e| e.action == "announce_schedule.create" && e.actor_id == 1)
        .count();
    assert_eq!(created, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_schedules_pauses_edits_and_deletes_an_announcement_in_the_dashboard() {
    if !browser_installed() {
        return;
    }
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), fast_timers()).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let calls = calls.as_ref();
    let store = node.store();
    let channel = guild.channel_ids[0];
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());

    browser.go(&format!("{origin}/guilds/{}", guild.id)).await;
    browser
        .click(&format!("a[href=\"/guilds/{}/announcements\"]", guild.id))
        .await;
    browser.wait_for("No scheduled announcement yet.").await;
    browser
        .click(&format!("#channel option[value=\"{channel}\"]"))
        .await;
    browser.fill("#message", "Weekly meeting in voice!").await;
    // A time that is not one: refused, nothing saved.
    browser.click("#kind option[value=\"once\"]").await;
    browser.fill("#at", "tomorrow").await;
    browser.click("#save").await;
    browser
        .wait_for("Not saved: a date and time is YYYY-MM-DD HH:MM (UTC), not `tomorrow`.")
        .await;
    assert!(listed(calls, guild.id).await.is_empty());
    // Every hour from now, as typed.
    browser.click("#kind option[value=\"every_hours\"]").await;
    browser.fill("#at", "").await;
    browser.fill("#hours", "1").await;
    browser.click("#save").await;
    browser
        .wait_for("Scheduled announcement 1 saved. The bot sends it from now on.")
        .await;
    browser.screenshot("announcement-scheduled").await;
    let saved = &listed(calls, guild.id).await[0];
    assert_eq!(saved.schedule.message, "Weekly meeting in voice!");
    assert!(matches!(
        saved.schedule.repeat,
        Repeat::EveryHours { hours: 1, .. }
    ));
    assert!(saved.next_send.is_some());

    // Its time comes: the bot posts it.
    fall_due(store.as_ref(), guild.id).await;
    wait_until("the bot posts it", || async {
        posts(sim, channel, "Weekly meeting in voice!") == 1
    })
    .await;

    // Paused: kept, its timer gone; resumed: armed again.
    browser.click("#pause-1").await;
    browser
        .wait_for("Scheduled announcement 1 paused: it is kept and not sent.")
        .await;
    assert!(schedule_timers(store.as_ref(), guild.id).await.is_empty());
    browser.click("#resume-1").await;
    browser.wait_for("Scheduled announcement 1 resumed.").await;
    assert_eq!(schedule_timers(store.as_ref(), guild.id).await.len(), 1);

    // Edited in the same form: daily at a time of day.
    browser.click("#edit-1").await;
    browser.wait_for("Edit scheduled announcement 1").await;
    browser.click("#kind option[value=\"daily\"]").await;
    browser.fill("#time", "18:30").await;
    browser.click("#save").await;
    browser.wait_for("Scheduled announcement 1 saved.").await;
    browser.wait_for("daily at 18:30 UTC").await;
    assert_eq!(
        listed(calls, guild.id).await[0].schedule.repeat,
        Repeat::Daily {
            minute: 18 * 60 + 30
        }
    );

    browser.click("#delete-1").await;
    browser.wait_for("Scheduled announcement 1 deleted.").await;
    assert!(listed(calls, guild.id).await.is_empty());
    assert!(schedule_timers(store.as_ref(), guild.id).await.is_empty());
    let audit = store
        .list_audit(guild.id, Timestamp(0), Timestamp(u64::MAX), 100)
        .await
        .unwrap();
    let changes: Vec<_> = audit
        .iter()
        .filter(|e| e.action.starts_with("announce_schedule."))
        .collect();
    let actions: Vec<&str> = changes.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "announce_schedule.create",
            "announce_schedule.pause",
            "announce_schedule.resume",
            "announce_schedule.edit",
            "announce_schedule.delete"
        ]
    );
    assert!(changes.iter().all(|e| e.actor_id == guild.owner_id));

    visit.close().await;
}
