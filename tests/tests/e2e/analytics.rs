//! Command usage analytics end to end: members run commands in the simulator, the guild
//! actors count them (not the member who objected), the counts reach storage in a batch,
//! and the owner reads the charts and the CSV in Chromium.

use std::collections::HashMap;
use std::time::Duration;

use protonn_storage::{Plan, PremiumSlot, PrivacyFlags, Timestamp};
use protonn_tests::*;
use serde_json::Value;

use crate::dashboard::{SignedIn, browser_installed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_without_objectors_and_charted_in_chromium() {
    let Bot {
        sim,
        node,
        recorder,
        ..
    } = &Bot::start(small_world(1, 2)).await;
    let guild = some_guild(sim, 0);
    let (first, second) = (guild.channel_ids[0], guild.channel_ids[1]);
    let (objector, member) = (guild.member_ids[0], guild.member_ids[1]);
    wait_until("the guild is cached", || async {
        recorder.guilds_created().contains(&guild.id)
    })
    .await;
    let store = node.store();
    let objects = PrivacyFlags {
        objects: true,
        ..PrivacyFlags::default()
    };
    store.set_privacy_flags(objector, &objects).await.unwrap();

    let mut replies: HashMap<u64, usize> = HashMap::new();
    for (user, channel, command) in [
        (objector, first, "!ping"),
        (objector, first, "!ping"),
        (member, first, "!ping"),
        (member, first, "!ping"),
        (member, second, "!help"),
        (objector, second, "!help"),
    ] {
        sim.send_message(guild.id, channel, user, command).unwrap();
        let seen = replies.entry(channel).or_default();
        reply_in(sim, channel, *seen).await;
        *seen += 1;
    }
    let today = Timestamp::now().day();
    let counted = || async {
        let counts = store.usage(guild.id, today, today).await.unwrap();
        counts
            .iter()
            .map(|c| (c.command.clone(), c.channel_id, c.count))
            .collect::<Vec<_>>()
    };
    wait_until("the member's runs are flushed", || async {
        counted().await.iter().map(|(_, _, n)| n).sum::<u64>() == 3
    })
    .await;
    let mut counts = counted().await;
    counts.sort();
    assert_eq!(
        counts,
        [
            ("help".to_owned(), second, 1),
            ("ping".to_owned(), first, 2)
        ],
        "the objector's four runs are not counted"
    );

    if !browser_installed() {
        return;
    }
    let mut visit = SignedIn::start(sim, node, guild.owner_id).await;
    let (browser, origin) = (&mut visit.browser, visit.origin.as_str());

    // From the overview, as an admin would: the Analytics tab.
    browser.go(&format!("{origin}/guilds/{}", guild.id)).await;
    browser.wait_for("Served by shard").await;
    browser
        .click(&format!("a[href=\"/guilds/{}/analytics\"]", guild.id))
        .await;
    // A free server reads the last 7 days.
    browser.wait_for("commands run in the last 7 days").await;
    browser.screenshot("analytics").await;
    let page = browser.source().await;
    assert!(page.contains("<strong>3</strong> commands run"), "{page}");
    for chart in [
        "Commands per day",
        "Commands by hour of day (UTC)",
        "Top commands",
        "Most active channels",
    ] {
        assert!(page.contains(&format!("aria-label=\"{chart}\"")), "{chart}");
    }
    assert!(page.contains("<title>ping: 2</title>"), "{page}");
    assert!(page.contains("<title>help: 1</title>"), "{page}");
    assert!(page.contains("Last 30 days (premium)"), "{page}");
    let bars = browser
        .script("return document.querySelectorAll('.chart rect.bar').length")
        .await;
    // 7 days, 24 hours, 2 commands, 2 channels.
    assert_eq!(bars, Value::from(7 + 24 + 2 + 2));

    // Premium reads further back.
    let now = Timestamp::now();
    store
        .put_slot(&PremiumSlot {
            guild_id: guild.id,
            user_id: guild.owner_id,
            assigned_at: now,
            plan: Plan::Premium,
            until: now.saturating_add(Duration::from_secs(86_400)),
        })
        .await
        .unwrap();
    browser
        .go(&format!("{origin}/guilds/{}/analytics", guild.id))
        .await;
    browser.wait_for("commands run in the last 30 days").await;
    browser.click("a[href=\"?days=365\"]").await;
    browser.wait_for("commands run in the last 365 days").await;
    let csv = browser
        .script_async(&format!(
            "const r = await fetch('/guilds/{}/analytics.csv?days=90'); return await r.text();",
            guild.id
        ))
        .await;
    let csv = csv.as_str().unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "hour_utc,command,channel_id,count");
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].ends_with(&format!(",help,{second},1")), "{csv}");
    assert!(lines[1].ends_with(&format!(",ping,{first},2")), "{csv}");

    browser
        .go(&format!("{origin}/guilds/{}/analytics?days=8", guild.id))
        .await;
    browser
        .wait_for("the period must be 7, 30, 90 or 365 days")
        .await;

    visit.close().await;
}
