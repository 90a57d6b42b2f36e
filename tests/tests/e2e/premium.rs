//! Premium end to end: Paddle webhooks through the test sender into `protonn demo`'s
//! dashboard (signed, retried, duplicated, out of order, under a rotated secret), the
//! inbox processor, the guild's plan; bad deliveries refused and nothing applied; a promo
//! code raced by many users; and a user redeeming a code and assigning the slot in Chromium.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protonn_cluster::{Config, Dashboard};
use protonn_storage::{Plan, StorageError, Store, Timestamp, assign_slot, guild_plan};
use protonn_tests::paddle::{PaddleSender, SubscriptionEvent, now_ms};
use protonn_tests::*;
use protonn_web::{PaddleConfig, Secret};

use crate::dashboard::{WebDriver, browser_installed};

const OLD_SECRET: &str = "pdl_ntfset_old_secret";
const NEW_SECRET: &str = "pdl_ntfset_new_secret";
const DAY_MS: u64 = 86_400_000;

async fn dashboard(bot: &Bot, public_url: Option<String>, secrets: &[&str]) -> Dashboard {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.web.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.web.public_url = public_url;
    config.storage.data_dir = data.path().to_owned();
    Dashboard::start_with_paddle(
        &config,
        &bot.node,
        format!("http://{}", bot.sim.addr()),
        bot.sim.application_id(),
        Secret::new(protonn_sim::OAUTH_CLIENT_SECRET),
        Some(PaddleConfig::new(
            secrets.iter().map(|s| Secret::new(*s)).collect(),
        )),
    )
    .await
    .unwrap()
}

fn event(id: &str, status: &str, occurred_at: u64, user_id: u64) -> SubscriptionEvent {
    SubscriptionEvent {
        event_id: id.to_owned(),
        event_type: format!(
            "subscription.{}",
            match status {
                "active" => "activated",
                other => other,
            }
        ),
        occurred_at,
        subscription_id: "sub_01lifecycle".into(),
        user_id,
        status: status.to_owned(),
        quantity: 1,
        period_end: matches!(status, "trialing" | "active" | "past_due")
            .then_some(occurred_at + 30 * DAY_MS),
    }
}

/// Waits until the processor has finished the event; its outcome.
async fn processed(store: &Arc<dyn Store>, event_id: &str) -> String {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let outcome = store
            .inbox_event(event_id)
            .await
            .unwrap()
            .and_then(|e| e.outcome);
        if let Some(outcome) = outcome {
            return outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{event_id} was never processed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_lifecycle_turns_a_guilds_premium_on_and_off() {
    let bot = Bot::start(small_world(1, 1)).await;
    let guild = some_guild(&bot.sim, 0);
    let user = guild.owner_id;
    let dashboard = dashboard(&bot, None, &[NEW_SECRET]).await;
    let store = bot.node.billing_store();
    // Paddle rotating its secret: every delivery carries an h1 for the old and the new.
    let paddle = PaddleSender::new(dashboard.addr(), &[OLD_SECRET, NEW_SECRET]);
    // Five days ago, so that the past-due grace (7 days) still runs now.
    let t0 = now_ms() - 5 * DAY_MS;

    // Trial: a slot to give, and the guild gets premium.
    let trial = event("evt_01trial", "trialing", t0, user).body();
    assert_eq!(paddle.deliver(&trial, 5).await, (200, "received".into()));
    assert_eq!(processed(&store, "evt_01trial").await, "applied");
    let now = Timestamp::now();
    assign_slot(store.as_ref(), user, guild.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        guild_plan(store.as_ref(), guild.id, now).await.unwrap(),
        Plan::Premium
    );

    // Delivered twice (Paddle did not see our 200): stored and applied once.
    assert_eq!(paddle.send(&trial).await, (200, "duplicate".into()));

    // Active, then past due: premium stays (the grace period).
    let active = event("evt_02active", "active", t0 + DAY_MS, user).body();
    let past_due = event("evt_03past_due", "past_due", t0 + 2 * DAY_MS, user).body();
    for body in [&active, &past_due] {
        assert_eq!(paddle.deliver(body, 5).await.0, 200);
    }
    assert_eq!(processed(&store, "evt_02active").await, "applied");
    assert_eq!(processed(&store, "evt_03past_due").await, "applied");
    let now = Timestamp::now();
    assert_eq!(
        guild_plan(store.as_ref(), guild.id, now).await.unwrap(),
        Plan::Premium
    );

    // Canceled; then a late delivery of an older "active" event (out of order) changes
    // nothing: premium is off and stays off.
    let canceled = event("evt_05canceled", "canceled", t0 + 4 * DAY_MS, user).body();
    assert_eq!(paddle.deliver(&canceled, 5).await.0, 200);
    assert_eq!(processed(&store, "evt_05canceled").await, "applied");
    let late = event("evt_04active_late", "active", t0 + 3 * DAY_MS, user).body();
    assert_eq!(paddle.deliver(&late, 5).await.0, 200);
    assert_eq!(processed(&store, "evt_04active_late").await, "stale");
    let now = Timestamp::now();
    assert_eq!(
        guild_plan(store.as_ref(), guild.id, now).await.unwrap(),
        Plan::Free
    );
    assert!(store.slots_of_user(user).await.unwrap().is_empty());
    let subscriptions = store.subscriptions_of_user(user).await.unwrap();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(
        subscriptions[0].updated_at.0 / 1_000,
        (t0 + 4 * DAY_MS) / 1_000
    );

    dashboard.shutdown().await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhooks_get_a_clear_status_and_change_nothing() {
    let bot = Bot::start(small_world(1, 1)).await;
    let dashboard = dashboard(&bot, None, &[NEW_SECRET]).await;
    let store = bot.node.billing_store();
    let paddle = PaddleSender::new(dashboard.addr(), &[NEW_SECRET]);
    let user = 4_242;
    let body = event("evt_bad", "active", now_ms(), user).body();
    let ts = now_ms() / 1_000;

    // No signature, a wrong secret, a tampered body.
    assert_eq!(paddle.post(None, body.as_bytes()).await.0, 401);
    let stranger = PaddleSender::new(dashboard.addr(), &["pdl_ntfset_wrong"]);
    assert_eq!(stranger.send(&body).await.0, 401);
    let signature = paddle.signature(ts, body.as_bytes());
    let tampered = body.replace("4242", "4343");
    assert_eq!(
        paddle.post(Some(&signature), tampered.as_bytes()).await.0,
        401
    );
    // A captured delivery replayed a minute later: stale.
    let old = paddle.signature(ts - 60, body.as_bytes());
    let (status, text) = paddle.post(Some(&old), body.as_bytes()).await;
    assert_eq!((status, text.contains("tolerance")), (401, true), "{text}");
    // Signed but not an event we apply, or not JSON at all.
    let unknown = body.replace("subscription.activated", "transaction.completed");
    assert_eq!(paddle.send(&unknown).await.0, 422);
    assert_eq!(paddle.send("{\"event_id\":").await.0, 400);
    let no_user = body.replace(r#""user_id":"4242""#, r#""someone":"x""#);
    assert_eq!(paddle.send(&no_user).await.0, 400);
    // Larger than any real event.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    assert_eq!(paddle.send(&huge).await.0, 413);

    assert_eq!(store.inbox_event("evt_bad").await.unwrap(), None);
    assert!(store.pending_events(10).await.unwrap().is_empty());
    assert!(store.subscriptions_of_user(user).await.unwrap().is_empty());

    // The genuine delivery still goes through, once.
    assert_eq!(paddle.send(&body).await, (200, "received".into()));
    assert_eq!(paddle.send(&body).await, (200, "duplicate".into()));
    assert_eq!(processed(&store, "evt_bad").await, "applied");
    assert_eq!(store.subscriptions_of_user(user).await.unwrap().len(), 1);

    // Every refusal was counted, by reason.
    let (_, metrics) = http_get(bot.node.ops_addr(), "/metrics").await;
    for (outcome, at_least) in [
        ("bad_signature", 3),
        ("stale", 1),
        ("unknown_type", 1),
        ("malformed", 2),
        ("too_large", 1),
        ("received", 1),
        ("duplicate", 1),
    ] {
        let series = format!("protonn_web_paddle_webhooks_total{{outcome=\"{outcome}\"}}");
        let count = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} is exported"));
        assert!(count >= at_least as f64, "{series} = {count}");
    }

    dashboard.shutdown().await;
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promo_code_raced_by_many_users_gives_exactly_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(protonn_storage::EmbeddedStore::open(dir.path()).unwrap());
    let now = Timestamp::now();
    protonn_storage::create_promo_code(
        store.as_ref(),
        &protonn_storage::NewPromo {
            code: "RACE".into(),
            days: 30,
            slots: 1,
            limit: 7,
            valid_for: Duration::from_secs(3_600),
            new_users_only: false,
        },
        0,
        now,
    )
    .await
    .unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for user in 1..=64u64 {
        let store = Arc::clone(&store);
        racers.spawn(async move {
            // Each user tries twice: never twice for one user either.
            let first = store.redeem_promo("RACE", user, now).await;
            let second = store.redeem_promo("RACE", user, now).await;
            (first, second)
        });
    }
    let mut won = 0;
    while let Some(outcome) = racers.join_next().await {
        let (first, second) = outcome.unwrap();
        match first {
            Ok(_) => won += 1,
            Err(StorageError::PromoRejected { .. }) => {}
            Err(other) => panic!("{other}"),
        }
        assert!(matches!(second, Err(StorageError::PromoRejected { .. })));
    }
    assert_eq!(won, 7);
    assert_eq!(store.promo("RACE").await.unwrap().unwrap().1, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_redeems_a_code_and_gives_the_slot_to_a_server_in_chromium() {
    if !browser_installed() {
        return;
    }
    let bot = Bot::start(small_world(1, 2)).await;
    let guild = some_guild(&bot.sim, 0);
    wait_until("the guild is cached", || async {
        bot.recorder.guilds_created().contains(&guild.id)
    })
    .await;
    let dashboard = dashboard(&bot, None, &[NEW_SECRET]).await;
    let origin = dashboard.url().to_owned();
    let store = bot.node.billing_store();
    protonn_storage::create_promo_code(
        store.as_ref(),
        &protonn_storage::NewPromo {
            code: "WELCOME".into(),
            days: 30,
            slots: 1,
            limit: 10,
            valid_for: Duration::from_secs(3_600),
            new_users_only: true,
        },
        0,
        Timestamp::now(),
    )
    .await
    .unwrap();

    let profile = tempfile::tempdir().unwrap();
    let mut browser = WebDriver::start(profile.path()).await;
    browser.go(&format!("{origin}/login")).await;
    browser.wait_for("Log in with Discord").await;
    browser.click("#login").await;
    browser.wait_for("Pick a simulated user").await;
    browser
        .click(&format!("button[data-user-id=\"{}\"]", guild.owner_id))
        .await;
    browser.wait_for("Servers you manage").await;

    browser.go(&format!("{origin}/premium")).await;
    browser
        .wait_for("You have 0 premium slot(s), 0 free.")
        .await;
    browser.screenshot("premium-empty").await;
    browser.fill("#code", "WELCOME").await;
    browser.click("#redeem").await;
    browser
        .wait_for("You have 1 premium slot(s), 1 free.")
        .await;
    browser.screenshot("premium-redeemed").await;

    browser.click("#assign").await;
    browser
        .wait_for(&format!("data-slot-guild=\"{}\"", guild.id))
        .await;
    browser
        .wait_for("You have 1 premium slot(s), 0 free.")
        .await;
    browser.screenshot("premium-assigned").await;
    let now = Timestamp::now();
    assert_eq!(
        guild_plan(store.as_ref(), guild.id, now).await.unwrap(),
        Plan::Premium
    );

    // The same code again: refused, with the reason on the page.
    browser.go(&format!("{origin}/premium")).await;
    browser.wait_for("Redeem a code").await;
    browser.fill("#code", "WELCOME").await;
    browser.click("#redeem").await;
    browser.wait_for("new subscribers only").await;

    // Free the slot: the server is back on the free plan.
    browser.go(&format!("{origin}/premium")).await;
    browser.wait_for("Free this slot").await;
    browser
        .click("form[action=\"/premium/remove\"] button")
        .await;
    browser
        .wait_for("You have 1 premium slot(s), 1 free.")
        .await;
    assert_eq!(
        guild_plan(store.as_ref(), guild.id, Timestamp::now())
            .await
            .unwrap(),
        Plan::Free
    );
    let audit = store
        .list_audit(guild.id, Timestamp(0), Timestamp(u64::MAX), 100)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"premium.assign") && actions.contains(&"premium.remove"),
        "{actions:?}"
    );

    browser.quit().await;
    dashboard.shutdown().await;
    bot.stop().await;
}

/// A free server is held to its plan's limits (automod rules, workflows, steps), told what
/// premium allows, and nothing is saved; premium lifts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_server_is_held_to_its_plans_limits_and_premium_lifts_them() {
    use protonn_storage::{AutomodAction, Trigger};

    let runtime = protonn_actors::RuntimeConfig {
        // The downgrade below shows in what runs at once.
        plan_recheck_every: Duration::from_millis(50),
        ..test_runtime()
    };
    let Bot { sim, node, .. } = &Bot::with_runtime(small_world(1, 1), runtime).await;
    let guild = some_guild(sim, 0);
    let calls = node.guild_calls();
    let free = Plan::Free.limits();
    let rules = |n: u32| {
        (0..n)
            .map(|i| {
                let trigger = Trigger::Keywords {
                    words: vec![format!("word{i}")],
                };
                crate::automod::rule(&format!("rule {i}"), trigger, vec![AutomodAction::Delete])
            })
            .collect::<Vec<_>>()
    };
    let too_many = free.automod_rules + 1;
    let err = crate::automod::configure(node, guild.id, |config| {
        config.automod.rules = rules(too_many);
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("free plan allows 5 automod rules"),
        "{err}"
    );
    let workflow =
        r#"{"trigger": {"command": {"name": "hi"}}, "actions": [{"reply": {"text": "hi"}}]}"#;
    for id in 1..=u64::from(free.workflows) {
        crate::workflows::save(calls.as_ref(), guild.id, id, workflow)
            .await
            .unwrap();
    }
    let err = crate::workflows::save(calls.as_ref(), guild.id, 99, workflow)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("free plan allows 3 workflows"),
        "{err}"
    );

    give_premium(node.store().as_ref(), guild.id, guild.owner_id).await;
    crate::automod::configure(node, guild.id, |config| {
        config.automod.rules = rules(too_many);
    })
    .await
    .unwrap();
    crate::workflows::save(calls.as_ref(), guild.id, 99, workflow)
        .await
        .unwrap();

    // The last rule runs on premium...
    let (channel, author) = (guild.channel_ids[0], guild.member_ids[0]);
    let last = format!("word{}", too_many - 1);
    let send = |content: &str| {
        sim.send_message(guild.id, channel, author, content)
            .unwrap()
    };
    let deleted = send(&last);
    wait_until("the last rule deletes on premium", || async {
        !sim.message_exists(channel, deleted)
    })
    .await;
    // ...and after a downgrade it is kept but off (once the actor has read the plan again):
    // its word stays, while the first rule's word, sent after it (so handled after it), goes.
    node.store()
        .remove_slot(guild.owner_id, guild.id)
        .await
        .unwrap();
    wait_until("the guild is free again", || async {
        guild_plan(node.store().as_ref(), guild.id, Timestamp::now())
            .await
            .unwrap()
            == Plan::Free
    })
    .await;
    wait_until(
        "a rule past the free plan's limit no longer runs",
        || async {
            let kept = send(&last);
            let first = send("word0");
            wait_until("the first rule still deletes", || async {
                !sim.message_exists(channel, first)
            })
            .await;
            sim.message_exists(channel, kept)
        },
    )
    .await;
    let config = node.store().load(guild.id).await.unwrap().unwrap();
    assert_eq!(
        config.config.automod.rules.len(),
        too_many as usize,
        "the downgrade kept every rule"
    );
}

/// The tests' runtime with the simulator's app subscriptions granting premium.
fn selling_premium(sim: &protonn_sim::SimHandle) -> protonn_actors::RuntimeConfig {
    protonn_actors::RuntimeConfig {
        premium_skus: Arc::new(sim.skus().map(|sku| (sku, Plan::Premium)).into()),
        // Renewals and refunds are read from Discord's list (their events are not parsed).
        entitlement_reconcile_every: Duration::from_millis(200),
        ..test_runtime()
    }
}

/// Waits until `user`'s Discord subscription `entitlement` is stored as `check` wants it.
async fn discord_subscription(
    store: &Arc<dyn Store>,
    user: u64,
    entitlement: u64,
    what: &str,
    check: impl Fn(&protonn_storage::Subscription) -> bool,
) {
    let provider_ref = format!("discord:{entitlement}");
    wait_until(what, || async {
        store
            .subscriptions_of_user(user)
            .await
            .unwrap()
            .iter()
            .any(|s| s.provider_ref == provider_ref && check(s))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_app_subscriptions_bought_renewed_and_refunded_move_a_guilds_premium() {
    let sim = start_sim(small_world(2, 4)).await;
    let [guild_sku, user_sku] = sim.skus();
    let guild = some_guild(&sim, 1);
    let buyer = guild.owner_id;
    // Bought while no node listened: READY of shard 0 catches it up from the REST list.
    let missed = sim.subscribe(buyer, None, user_sku, 30).unwrap();
    let runtime = selling_premium(&sim);
    let bot = Bot::on_sim(sim, runtime, Arc::new(protonn_tests::Recorder::default())).await;
    let store = bot.node.billing_store();
    discord_subscription(
        &store,
        buyer,
        missed,
        "the missed purchase is caught up",
        |s| s.status == protonn_storage::SubscriptionStatus::Active && s.guild_id.is_none(),
    )
    .await;

    // A guild subscription: its event gives the guild premium with one of the buyer's slots.
    let bought = bot
        .sim
        .subscribe(buyer, Some(guild.id), guild_sku, 30)
        .unwrap();
    wait_until("the guild has premium", || async {
        guild_plan(store.as_ref(), guild.id, Timestamp::now())
            .await
            .unwrap()
            == Plan::Premium
    })
    .await;

    // Renewed: the slot's end moves with the period.
    let renewed_to = now_ms() + 60 * DAY_MS;
    assert!(bot.sim.set_entitlement_end(bought, renewed_to));
    discord_subscription(&store, buyer, bought, "the renewal is stored", |s| {
        s.current_period_end.0 == renewed_to
    })
    .await;
    wait_until("the slot follows the renewal", || async {
        store
            .guild_slot(guild.id)
            .await
            .unwrap()
            .is_some_and(|slot| slot.until.0 > renewed_to)
    })
    .await;

    // Refunded (ENTITLEMENT_DELETE): the renewed period is gone; the guild's slot is now
    // paid by the buyer's other subscription (slots are the user's, whatever the source),
    // so it ends with that one's month.
    assert!(bot.sim.refund_entitlement(bought));
    discord_subscription(&store, buyer, bought, "the refund is stored", |s| {
        s.status == protonn_storage::SubscriptionStatus::Cancelled
    })
    .await;
    wait_until(
        "the guild's slot ends with the other subscription's month",
        || async {
            let slots = store.slots_of_user(buyer).await.unwrap();
            slots.len() == 1 && slots[0].until.0 <= now_ms() + 31 * DAY_MS
        },
    )
    .await;

    // Discord refunds once, and sells only the application's SKUs.
    assert!(!bot.sim.refund_entitlement(bought), "refunded once only");
    assert_eq!(
        bot.sim.subscribe(buyer, None, 42, 30).unwrap_err(),
        "unknown SKU 42"
    );
    let ledger = bot.sim.ledger();
    assert!(
        ledger
            .rest
            .iter()
            .any(|r| r.route == "GET /applications/{application_id}/entitlements"),
        "the catch-up read the entitlement list"
    );
    bot.stop().await;
}
