//! Service announcements through the simulator: a campaign reaches every opted-in guild's
//! channel once, from the node that runs the guild, and none other; an interrupted delivery
//! (a node killed between its claim and its outcome) is resolved without a second post; a
//! restarted node does not send again; a cancelled campaign stops. By DM, a campaign reaches
//! each consenting user once across a crash and a restart, and nobody who did not consent or
//! withdrew consent. Counted in the ledger.

use std::time::Duration;

use protonn_cluster::{DiscordEndpoint, Node, NodeOptions};
use protonn_shard::BotToken;
use protonn_storage::{
    AnnouncementRepo, Campaign, CampaignProgress, Delivery, DeliveryState, DmDelivery,
    EmbeddedStore, PrivacyFlags, Store, Timestamp,
};
use protonn_tests::*;

use crate::cluster::{
    dashboard_store, membership, placed_for_good, running, start_coordinator, start_node_with,
};

fn campaign(id: u64) -> Campaign {
    Campaign {
        id,
        title: Some("Maintenance".to_owned()),
        message: format!("Campaign {id}: the bot restarts tonight."),
        created_at: Timestamp::now(),
        cancelled_at: None,
        dm: false,
    }
}

/// The text campaign `id` posts, marker included.
fn announcement(id: u64) -> String {
    format!(
        "**Maintenance**\nCampaign {id}: the bot restarts tonight.\n{}",
        marker(id)
    )
}

fn marker(id: u64) -> String {
    format!("-# Service announcement {id}")
}

/// The bot's posts of campaign `id` in `channel`, from the ledger.
fn posts(sim: &protonn_sim::SimHandle, channel: u64, id: u64) -> usize {
    channel_replies(sim, channel)
        .iter()
        .filter(|text| text.ends_with(&marker(id)))
        .count()
}

async fn progress(store: &dyn Store, id: u64) -> CampaignProgress {
    CampaignProgress::of(&store.deliveries(id, None).await.unwrap())
}

/// Waits until campaign `id` has decided `decided` deliveries and holds no claim.
async fn finished(store: &dyn Store, id: u64, decided: u64) {
    wait_until(
        "the campaign is decided for every opted-in guild",
        || async {
            let p = progress(store, id).await;
            let total = p.sent + p.skipped.values().sum::<u64>() + p.failed.values().sum::<u64>();
            p.in_flight == 0 && total == decided
        },
    )
    .await;
}

fn fast_announcements() -> protonn_actors::RuntimeConfig {
    protonn_actors::RuntimeConfig {
        announce_poll_every: Duration::from_millis(100),
        ..test_runtime()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_reaches_each_opted_in_guild_once_over_a_two_node_cluster() {
    let sim = start_sim(small_world(4, 12)).await;
    let dir = tempfile::tempdir().unwrap();
    let (coordinator, client) = start_coordinator(&sim, dir.path()).await;
    let a = start_node_with(
        &sim,
        dir.path(),
        membership(&coordinator, "node-a"),
        fast_announcements(),
    )
    .await;
    let b = start_node_with(
        &sim,
        dir.path(),
        membership(&coordinator, "node-b"),
        fast_announcements(),
    )
    .await;
    let guilds = sim.guilds();
    wait_until(
        "both nodes run two shards with their guilds cached",
        || async {
            placed_for_good(&client).await
                && running(&a).await.len() == 2
                && running(&b).await.len() == 2
                && guilds
                    .iter()
                    .all(|g| a.cached_guild(g.id).is_some() || b.cached_guild(g.id).is_some())
        },
    )
    .await;

    // Two guilds in three opt in, through the cluster's guild calls.
    let opted: Vec<_> = guilds
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, g)| g)
        .collect();
    for guild in &opted {
        let channel = guild.channel_ids[1].to_string();
        client
            .configure(guild.id, "announce_channel", &channel, None)
            .await
            .unwrap();
    }
    // Operators start campaigns from the admin page: the dashboard's credentials (a node's
    // may not start one).
    let store = dashboard_store(&coordinator);
    store.create_campaign(&campaign(1_000)).await.unwrap();
    finished(store.as_ref(), 1_000, opted.len() as u64).await;
    // A second campaign as a barrier: once it is through, rounds have passed over the first.
    store.create_campaign(&campaign(2_000)).await.unwrap();
    finished(store.as_ref(), 2_000, opted.len() as u64).await;

    for guild in &guilds {
        let in_channel = posts(&sim, guild.channel_ids[1], 1_000);
        let anywhere: usize = guild
            .channel_ids
            .iter()
            .map(|&c| posts(&sim, c, 1_000))
            .sum();
        if opted.iter().any(|g| g.id == guild.id) {
            assert_eq!((in_channel, anywhere), (1, 1), "guild {}", guild.id);
        } else {
            assert_eq!(anywhere, 0, "guild {} did not opt in", guild.id);
        }
    }
    let deliveries = store.deliveries(1_000, None).await.unwrap();
    assert!(deliveries.iter().all(|d| d.state == DeliveryState::Sent));
    for node in ["node-a#", "node-b#"] {
        assert!(
            deliveries.iter().any(|d| d.claimed_by.starts_with(node)),
            "each node delivers to the guilds it runs: {deliveries:?}"
        );
    }
    assert_eq!(
        progress(store.as_ref(), 1_000).await.summary(),
        "sent 8, in flight 0, skipped 0, failed 0"
    );

    b.shutdown().await;
    a.shutdown().await;
    sim.shutdown().await;
}

async fn slow_node(sim: &protonn_sim::SimHandle, dir: &std::path::Path) -> Node {
    let node = Node::start(NodeOptions {
        discord: DiscordEndpoint::Simulator(sim.rest_proxy()),
        token: BotToken::new(sim.config().token.clone()),
        // A standalone node sends 90 % of it: 3.6 messages a second, so a cancel lands
        // while a campaign to 20 guilds is under way.
        rest_global_per_sec: 4.0,
        shards: None,
        shard_ids: None,
        data_dir: dir.to_owned(),
        ops_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        runtime: protonn_actors::RuntimeConfig {
            // A claim older than this is a dead sender's.
            timer_lease: Duration::from_secs(2),
            ..fast_announcements()
        },
        observer: None,
        cluster: None,
    })
    .await
    .unwrap();
    wait_all_ready(&node).await;
    for guild in sim.guilds() {
        wait_until("every guild is in the node cache", || async {
            node.cached_guild(guild.id).is_some()
        })
        .await;
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_campaign_resumes_once_per_guild_across_a_restart_and_a_cancel_stops_one() {
    let sim = start_sim(small_world(2, 20)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = slow_node(&sim, dir.path()).await;
    let guilds = sim.guilds();
    for guild in &guilds {
        node.configure(
            guild.id,
            "announce_channel",
            &guild.channel_ids[0].to_string(),
            None,
        )
        .await
        .unwrap();
    }
    let store = node.store();

    // Guild 3 opts out; its index entry is left behind (as a crash between the two writes
    // would): the campaign skips it by the config.
    node.configure(guilds[3].id, "announce_channel", "none", None)
        .await
        .unwrap();
    store
        .set_announce_opt_in(
            guilds[3].shard,
            guilds[3].id,
            Some(guilds[3].channel_ids[0]),
        )
        .await
        .unwrap();

    // A node died during campaign 3000: it had claimed guilds 0 and 1, and posted in guild 0
    // without recording it; it had finished guild 2. Written while this node is stopped, so
    // that its rounds find the campaign as the dead node left it. (The post is made while a
    // node runs: the simulator delivers it to the guild's shard.)
    sim.send_message(
        guilds[0].id,
        guilds[0].channel_ids[0],
        guilds[0].owner_id,
        &announcement(3_000),
    )
    .unwrap();
    drop(store);
    node.shutdown().await;
    let offline = EmbeddedStore::open(dir.path()).unwrap();
    offline.create_campaign(&campaign(3_000)).await.unwrap();
    let stale = |guild: &protonn_sim::GuildInfo, state| Delivery {
        campaign_id: 3_000,
        shard_id: guild.shard,
        guild_id: guild.id,
        channel_id: guild.channel_ids[0],
        state,
        reason: None,
        claimed_by: "dead-node#1".to_owned(),
        at: Timestamp(Timestamp::now().0 - 10_000),
        message_id: None,
    };
    for guild in &guilds[..3] {
        assert!(
            offline
                .claim_delivery(&stale(guild, DeliveryState::Claimed), None)
                .await
                .unwrap()
        );
    }
    assert!(
        offline
            .finish_delivery(&stale(&guilds[2], DeliveryState::Sent))
            .await
            .unwrap()
    );
    drop(offline);
    let node = slow_node(&sim, dir.path()).await;
    let store = node.store();
    finished(store.as_ref(), 3_000, 20).await;
    assert_eq!(
        progress(store.as_ref(), 3_000).await.summary(),
        "sent 19, in flight 0, skipped 1 (not_opted_in: 1), failed 0"
    );
    assert!(
        store
            .announce_opt_ins(guilds[3].shard)
            .await
            .unwrap()
            .iter()
            .all(|(g, _)| *g != guilds[3].id),
        "the stale entry is dropped"
    );
    assert_eq!(
        posts(&sim, guilds[0].channel_ids[0], 3_000),
        0,
        "found, not posted again"
    );
    assert_eq!(
        posts(&sim, guilds[2].channel_ids[0], 3_000),
        0,
        "decided before the crash"
    );
    for guild in &guilds[1..] {
        if guild.id != guilds[2].id && guild.id != guilds[3].id {
            assert_eq!(
                posts(&sim, guild.channel_ids[0], 3_000),
                1,
                "guild {}",
                guild.id
            );
        }
    }
    let recovered = store
        .deliveries(3_000, Some(guilds[0].shard))
        .await
        .unwrap();
    let recovered = recovered
        .iter()
        .find(|d| d.guild_id == guilds[0].id)
        .unwrap();
    assert_eq!(recovered.state, DeliveryState::Sent);
    assert!(
        recovered.message_id.is_some(),
        "the message found in the channel"
    );

    // Restarted on the same store, the node sends nothing of campaign 3000 again.
    drop(store);
    node.shutdown().await;
    let node = slow_node(&sim, dir.path()).await;
    let store = node.store();

    // Campaign 4000 is cancelled once it has begun: it stops short of the 20 guilds.
    store.create_campaign(&campaign(4_000)).await.unwrap();
    wait_until("campaign 4000 has begun", || async {
        progress(store.as_ref(), 4_000).await.sent >= 1
    })
    .await;
    store
        .cancel_campaign(4_000, Timestamp::now())
        .await
        .unwrap();

    // Campaign 5000 as a barrier: once it is through, rounds have passed over both.
    store.create_campaign(&campaign(5_000)).await.unwrap();
    finished(store.as_ref(), 5_000, 19).await;

    for guild in &guilds[1..] {
        if guild.id != guilds[2].id && guild.id != guilds[3].id {
            assert_eq!(
                posts(&sim, guild.channel_ids[0], 3_000),
                1,
                "guild {}",
                guild.id
            );
        }
    }
    let cancelled = progress(store.as_ref(), 4_000).await;
    assert_eq!(posts(&sim, guilds[3].channel_ids[0], 3_000), 0, "opted out");
    let reached: usize = guilds
        .iter()
        .map(|g| posts(&sim, g.channel_ids[0], 4_000))
        .sum();
    assert_eq!(
        reached as u64, cancelled.sent,
        "every post recorded, none twice"
    );
    assert!(
        cancelled.sent < 19,
        "the cancel stopped the campaign: {}",
        cancelled.summary()
    );

    node.shutdown().await;
    sim.shutdown().await;
}

/// The bot's DMs of campaign `id` to `user`, from the ledger.
fn dms(sim: &protonn_sim::SimHandle, user: u64, id: u64) -> usize {
    sim.dm_channel_of(user)
        .map_or(0, |channel| posts(sim, channel, id))
}

async fn dm_progress(store: &dyn Store, id: u64) -> CampaignProgress {
    CampaignProgress::of_dms(&store.dm_deliveries(id, None).await.unwrap())
}

/// Waits until campaign `id` has decided `decided` DMs and holds no claim.
async fn dms_finished(store: &dyn Store, id: u64, decided: u64) {
    wait_until("the campaign's DMs are decided", || async {
        let p = dm_progress(store, id).await;
        let total = p.sent + p.skipped.values().sum::<u64>() + p.failed.values().sum::<u64>();
        p.in_flight == 0 && total == decided
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_campaign_reaches_each_consenting_user_once_across_a_crash_and_nobody_else() {
    let sim = start_sim(small_world(2, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = slow_node(&sim, dir.path()).await;
    let store = node.store();
    // Users on both shards, by id: 12 consent; then one who never chose, one who chose
    // email only, one who consented but objects, and (highest, so reached last) one who
    // consents now and withdraws once the campaign is under way.
    let users: Vec<u64> = (1..=16_u64).map(|i| ((1_000_000 + i) << 22) | i).collect();
    let consent = PrivacyFlags {
        announcements_consent: true,
        ..PrivacyFlags::default()
    };
    let (consenting, others) = users.split_at(12);
    let withdrawing = others[3];
    for &user in consenting.iter().chain([&withdrawing]) {
        store.set_privacy_flags(user, &consent).await.unwrap();
    }
    let email_only = PrivacyFlags {
        email_consent: true,
        ..PrivacyFlags::default()
    };
    store
        .set_privacy_flags(others[1], &email_only)
        .await
        .unwrap();
    let objecting = PrivacyFlags {
        objects: true,
        ..consent
    };
    store
        .set_privacy_flags(others[2], &objecting)
        .await
        .unwrap();

    // A node crashed during campaign 6000: it had claimed the first two users' DMs, and
    // sent the first without recording it. Written while this node is stopped.
    drop(store);
    node.shutdown().await;
    let offline = EmbeddedStore::open(dir.path()).unwrap();
    offline
        .create_campaign(&Campaign {
            dm: true,
            ..campaign(6_000)
        })
        .await
        .unwrap();
    for &user in &consenting[..2] {
        let stale = DmDelivery {
            campaign_id: 6_000,
            shard_id: protonn_storage::shard_of(user, 2),
            user_id: user,
            state: DeliveryState::Claimed,
            reason: None,
            claimed_by: "dead-node#1".to_owned(),
            at: Timestamp(Timestamp::now().0 - 10_000),
            channel_id: None,
            message_id: None,
        };
        assert!(offline.claim_dm_delivery(&stale, None).await.unwrap());
    }
    drop(offline);
    sim.bot_dm_sent_before(consenting[0], &announcement(6_000));

    let node = slow_node(&sim, dir.path()).await;
    let store = node.store();
    wait_until("the campaign's DMs are under way", || async {
        dm_progress(store.as_ref(), 6_000).await.sent >= 2
    })
    .await;
    // Withdrawn through the privacy centre's path, after the campaign read its recipients.
    let withdrawn = protonn_storage::privacy::change_choices(
        store.as_ref(),
        withdrawing,
        PrivacyFlags::default(),
        "dashboard",
        Timestamp::now(),
        || 1,
    )
    .await
    .unwrap();
    assert_eq!(withdrawn, ["consent to announcement DMs withdrawn"]);
    dms_finished(store.as_ref(), 6_000, 13).await;
    assert_eq!(
        dm_progress(store.as_ref(), 6_000).await.summary(),
        "sent 12, in flight 0, skipped 1 (no_consent: 1), failed 0"
    );
    assert_eq!(
        dms(&sim, consenting[0], 6_000),
        0,
        "found in the DM channel, not sent again"
    );
    for &user in &consenting[1..] {
        assert_eq!(dms(&sim, user, 6_000), 1, "user {user}");
    }
    for &user in others {
        assert_eq!(dms(&sim, user, 6_000), 0, "user {user} did not consent");
    }
    let decided = store.dm_deliveries(6_000, None).await.unwrap();
    let of = |user: u64| decided.iter().find(|d| d.user_id == user).unwrap();
    assert!(of(consenting[0]).message_id.is_some(), "the DM found");
    assert_eq!(of(withdrawing).reason.as_deref(), Some("no_consent"));

    // Restarted on the same store, the node sends nothing of campaign 6000 again; campaign
    // 7000 is the barrier (the withdrawn user is no longer a recipient).
    drop(store);
    node.shutdown().await;
    let node = slow_node(&sim, dir.path()).await;
    let store = node.store();
    store
        .create_campaign(&Campaign {
            dm: true,
            ..campaign(7_000)
        })
        .await
        .unwrap();
    dms_finished(store.as_ref(), 7_000, 12).await;
    for &user in &consenting[1..] {
        assert_eq!(dms(&sim, user, 6_000), 1, "user {user}");
    }
    for &user in others {
        assert_eq!(dms(&sim, user, 7_000), 0, "user {user}");
    }
    assert_eq!(
        dm_progress(store.as_ref(), 7_000).await.summary(),
        "sent 12, in flight 0, skipped 0, failed 0"
    );

    node.shutdown().await;
    sim.shutdown().await;
}
