//! Conformance cases of service announcements (opt-ins by shard, campaigns, one delivery per
//! campaign and guild or consenting user, their retention), run against both backends and, by
//! `cluster/tests/remote_store.rs`, against the leader's store over gRPC.

use std::collections::BTreeSet;
use std::time::Duration;

use protonn_storage::{
    AnnounceSchedule, AnnouncementRepo, CAMPAIGN_MESSAGE_MAX_CHARS, Campaign, CampaignProgress,
    DataRights, Delivery, DeliveryState, DmDelivery, PrivacyFlags, PrivacyRepo, Repeat, Retention,
    SCHEDULE_MESSAGE_MAX_CHARS, StorageError, Timestamp,
};

const GUILD: u64 = 881_027_316_262_879_232;
const OTHER_GUILD: u64 = 881_027_316_262_879_233;
const CHANNEL: u64 = 881_027_316_262_879_300;

fn campaign(id: u64) -> Campaign {
    Campaign {
        id,
        title: Some("Maintenance".to_owned()),
        message: "The bot restarts at 02:00 UTC.".to_owned(),
        created_at: Timestamp::now(),
        cancelled_at: None,
        dm: false,
    }
}

fn dm_claim(campaign_id: u64, user_id: u64, claimant: &str) -> DmDelivery {
    DmDelivery {
        campaign_id,
        shard_id: protonn_storage::shard_of(user_id, 4),
        user_id,
        state: DeliveryState::Claimed,
        reason: None,
        claimed_by: claimant.to_owned(),
        at: Timestamp(1_000),
        channel_id: None,
        message_id: None,
    }
}

fn claim(campaign_id: u64, guild_id: u64, claimant: &str) -> Delivery {
    Delivery {
        campaign_id,
        shard_id: 2,
        guild_id,
        channel_id: CHANNEL,
        state: DeliveryState::Claimed,
        reason: None,
        claimed_by: claimant.to_owned(),
        at: Timestamp(1_000),
        message_id: None,
    }
}

pub(crate) async fn opt_ins_are_listed_by_shard_and_withdrawn(store: impl AnnouncementRepo) {
    store
        .set_announce_opt_in(2, GUILD, Some(CHANNEL))
        .await
        .unwrap();
    store
        .set_announce_opt_in(2, OTHER_GUILD, Some(CHANNEL + 1))
        .await
        .unwrap();
    store
        .set_announce_opt_in(3, GUILD + 7, Some(CHANNEL))
        .await
        .unwrap();
    assert_eq!(
        store.announce_opt_ins(2).await.unwrap(),
        vec![(GUILD, CHANNEL), (OTHER_GUILD, CHANNEL + 1)]
    );
    // A new channel replaces the old; withdrawing removes the guild; withdrawing twice is fine.
    store
        .set_announce_opt_in(2, GUILD, Some(CHANNEL + 2))
        .await
        .unwrap();
    store
        .set_announce_opt_in(2, OTHER_GUILD, None)
        .await
        .unwrap();
    store
        .set_announce_opt_in(2, OTHER_GUILD, None)
        .await
        .unwrap();
    assert_eq!(
        store.announce_opt_ins(2).await.unwrap(),
        vec![(GUILD, CHANNEL + 2)]
    );
    assert_eq!(
        store.announce_opt_ins(3).await.unwrap(),
        vec![(GUILD + 7, CHANNEL)]
    );
    assert!(store.announce_opt_ins(4).await.unwrap().is_empty());
}

pub(crate) async fn campaigns_are_created_once_listed_newest_first_and_cancelled(
    store: impl AnnouncementRepo,
) {
    store.create_campaign(&campaign(10)).await.unwrap();
    store.create_campaign(&campaign(20)).await.unwrap();
    assert!(matches!(
        store.create_campaign(&campaign(10)).await,
        Err(StorageError::Conflict { .. })
    ));
    let mut empty = campaign(30);
    empty.message = "  ".to_owned();
    let mut long = campaign(31);
    long.message = "x".repeat(CAMPAIGN_MESSAGE_MAX_CHARS + 1);
    let mut two_lines = campaign(32);
    two_lines.title = Some("a\nb".to_owned());
    for bad in [empty, long, two_lines, campaign(0)] {
        assert!(
            matches!(
                store.create_campaign(&bad).await,
                Err(StorageError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    let ids: Vec<u64> = store
        .campaigns()
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [20, 10], "newest first; refused ones not stored");

    let cancelled = store.cancel_campaign(10, Timestamp(500)).await.unwrap();
    assert_eq!(cancelled.cancelled_at, Some(Timestamp(500)));
    let again = store.cancel_campaign(10, Timestamp(900)).await.unwrap();
    assert_eq!(
        again.cancelled_at,
        Some(Timestamp(500)),
        "the first cancel stands"
    );
    assert!(matches!(
        store.cancel_campaign(99, Timestamp(500)).await,
        Err(StorageError::NotFound(_))
    ));
    let stored = store.campaigns().await.unwrap();
    assert_eq!(stored[1].cancelled_at, Some(Timestamp(500)));
    assert_eq!(stored[0].cancelled_at, None);
}

pub(crate) async fn a_guild_is_claimed_once_per_campaign_and_decided_by_its_claimant(
    store: impl AnnouncementRepo,
) {
    assert!(
        matches!(
            store.claim_delivery(&claim(1, GUILD, "node-a"), None).await,
            Err(StorageError::NotFound(_))
        ),
        "a delivery is of a stored campaign"
    );
    store.create_campaign(&campaign(1)).await.unwrap();
    store.create_campaign(&campaign(2)).await.unwrap();
    assert!(
        store
            .claim_delivery(&claim(1, GUILD, "node-a"), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_delivery(&claim(1, GUILD, "node-b"), None)
            .await
            .unwrap(),
        "a second claim loses"
    );
    // Another campaign, or another guild, is a claim of its own.
    assert!(
        store
            .claim_delivery(&claim(2, GUILD, "node-b"), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_delivery(&claim(1, OTHER_GUILD, "node-b"), None)
            .await
            .unwrap()
    );

    // Only the claimant decides, and only once.
    let mut sent = claim(1, GUILD, "node-b");
    sent.state = DeliveryState::Sent;
    sent.message_id = Some(77);
    assert!(
        !store.finish_delivery(&sent).await.unwrap(),
        "not node-b's claim"
    );
    sent.claimed_by = "node-a".to_owned();
    assert!(store.finish_delivery(&sent).await.unwrap());
    assert!(
        !store.finish_delivery(&sent).await.unwrap(),
        "decided already"
    );
    assert!(
        !store
            .claim_delivery(&claim(1, GUILD, "node-c"), Some("node-a"))
            .await
            .unwrap(),
        "a decided delivery cannot be taken over"
    );

    // A claim left by a dead node is taken over by naming it, once.
    assert!(
        !store
            .claim_delivery(&claim(1, OTHER_GUILD, "node-c"), Some("node-a"))
            .await
            .unwrap(),
        "not node-a's claim"
    );
    assert!(
        store
            .claim_delivery(&claim(1, OTHER_GUILD, "node-c"), Some("node-b"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_delivery(&claim(1, OTHER_GUILD, "node-d"), Some("node-b"))
            .await
            .unwrap(),
        "taken over already"
    );
    let mut skipped = claim(1, OTHER_GUILD, "node-c");
    skipped.state = DeliveryState::Skipped;
    skipped.reason = Some("channel_gone".to_owned());
    assert!(store.finish_delivery(&skipped).await.unwrap());

    // Bad input changes nothing.
    assert!(matches!(
        store
            .finish_delivery(&claim(1, OTHER_GUILD, "node-c"))
            .await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        store.claim_delivery(&sent, None).await,
        Err(StorageError::Invalid(_))
    ));

    let of_shard = store.deliveries(1, Some(2)).await.unwrap();
    assert_eq!(of_shard, vec![sent.clone(), skipped.clone()]);
    assert!(store.deliveries(1, Some(3)).await.unwrap().is_empty());
    assert_eq!(store.deliveries(1, None).await.unwrap(), of_shard);
    let progress = CampaignProgress::of(&store.deliveries(1, None).await.unwrap());
    assert_eq!(
        progress.summary(),
        "sent 1, in flight 0, skipped 1 (channel_gone: 1), failed 0"
    );
    assert_eq!(
        CampaignProgress::of(&store.deliveries(2, None).await.unwrap()).in_flight,
        1
    );
}

fn schedule(guild_id: u64, schedule_id: u64) -> AnnounceSchedule {
    AnnounceSchedule {
        guild_id,
        schedule_id,
        channel_id: CHANNEL,
        message: "Game night at 20:00!".to_owned(),
        repeat: Repeat::Weekly {
            weekday: 4,
            minute: 19 * 60,
        },
        paused: false,
        updated_at: Timestamp(1_000),
    }
}

pub(crate) async fn schedules_are_kept_per_guild_replaced_deleted_and_checked<S>(store: S)
where
    S: AnnouncementRepo + DataRights,
{
    store
        .put_announce_schedule(&schedule(GUILD, 2))
        .await
        .unwrap();
    store
        .put_announce_schedule(&schedule(GUILD, 1))
        .await
        .unwrap();
    store
        .put_announce_schedule(&schedule(OTHER_GUILD, 1))
        .await
        .unwrap();
    let ids = |list: Vec<AnnounceSchedule>| list.iter().map(|s| s.schedule_id).collect::<Vec<_>>();
    assert_eq!(ids(store.announce_schedules(GUILD).await.unwrap()), [1, 2]);

    // Saving the same id replaces it.
    let paused = AnnounceSchedule {
        paused: true,
        repeat: Repeat::EveryHours {
            hours: 6,
            from: Timestamp(5_000),
        },
        ..schedule(GUILD, 2)
    };
    store.put_announce_schedule(&paused).await.unwrap();
    assert_eq!(store.announce_schedules(GUILD).await.unwrap()[1], paused);

    // A malformed schedule is refused and nothing changes.
    for bad in [
        AnnounceSchedule {
            message: " ".into(),
            ..schedule(GUILD, 3)
        },
        AnnounceSchedule {
            message: "x".repeat(SCHEDULE_MESSAGE_MAX_CHARS + 1),
            ..schedule(GUILD, 3)
        },
        AnnounceSchedule {
            repeat: Repeat::Daily { minute: 24 * 60 },
            ..schedule(GUILD, 3)
        },
        schedule(GUILD, 0),
    ] {
        let refused = store.put_announce_schedule(&bad).await;
        assert!(
            matches!(refused, Err(StorageError::Invalid(_))),
            "{refused:?}"
        );
    }
    assert_eq!(ids(store.announce_schedules(GUILD).await.unwrap()), [1, 2]);

    assert!(store.delete_announce_schedule(GUILD, 1).await.unwrap());
    assert!(!store.delete_announce_schedule(GUILD, 1).await.unwrap());
    assert_eq!(ids(store.announce_schedules(GUILD).await.unwrap()), [2]);

    // The bot leaving a guild erases its schedules, and only its.
    store.delete_guild(GUILD).await.unwrap();
    assert!(store.announce_schedules(GUILD).await.unwrap().is_empty());
    assert_eq!(
        ids(store.announce_schedules(OTHER_GUILD).await.unwrap()),
        [1]
    );
}

/// Users with consent (and no objection or restriction) are the recipients, found a page at a
/// time without a duplicate; each gets one claim per campaign, decided by its claimant; the
/// record is in the user's export and goes with their erasure.
pub(crate) async fn consenting_users_are_paged_and_each_dm_is_claimed_once<S>(store: S)
where
    S: AnnouncementRepo + PrivacyRepo + DataRights,
{
    let consent = PrivacyFlags {
        announcements_consent: true,
        ..PrivacyFlags::default()
    };
    let mut expected = BTreeSet::new();
    for i in 0..11_u64 {
        let user = GUILD + 1_000 + (i << 22);
        let flags = match i % 4 {
            0 | 1 => consent,
            2 => PrivacyFlags {
                objects: true,
                ..consent
            },
            _ => PrivacyFlags {
                restricted: true,
                email_consent: true,
                ..PrivacyFlags::default()
            },
        };
        if flags.may_announce() {
            expected.insert(user);
        }
        store.set_privacy_flags(user, &flags).await.unwrap();
    }
    let mut found = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.dm_recipients(after, 3).await.unwrap();
        found.extend(page.users);
        pages += 1;
        assert!(pages <= 5, "11 users in pages of 3 end by the fifth page");
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<u64> = found.iter().copied().collect();
    assert_eq!(unique.len(), found.len(), "no user twice: {found:?}");
    assert_eq!(unique, expected);

    let user = *expected.first().unwrap();
    assert!(
        matches!(
            store
                .claim_dm_delivery(&dm_claim(7, user, "node-a"), None)
                .await,
            Err(StorageError::NotFound(_))
        ),
        "a DM is of a stored campaign"
    );
    store.create_campaign(&campaign(7)).await.unwrap();
    assert!(
        store
            .claim_dm_delivery(&dm_claim(7, user, "node-a"), None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_dm_delivery(&dm_claim(7, user, "node-b"), None)
            .await
            .unwrap(),
        "a second claim loses"
    );
    let mut sent = dm_claim(7, user, "node-b");
    sent.state = DeliveryState::Sent;
    sent.channel_id = Some(CHANNEL);
    sent.message_id = Some(77);
    assert!(
        !store.finish_dm_delivery(&sent).await.unwrap(),
        "not node-b's"
    );
    // A dead claimant's claim is taken over by naming it, then decided by the new claimant.
    assert!(
        store
            .claim_dm_delivery(&dm_claim(7, user, "node-b"), Some("node-a"))
            .await
            .unwrap()
    );
    assert!(store.finish_dm_delivery(&sent).await.unwrap());
    assert!(
        !store.finish_dm_delivery(&sent).await.unwrap(),
        "decided already"
    );
    assert!(matches!(
        store.finish_dm_delivery(&dm_claim(7, user, "node-b")).await,
        Err(StorageError::Invalid(_))
    ));
    let other = *expected.last().unwrap();
    assert!(
        store
            .claim_dm_delivery(&dm_claim(7, other, "node-a"), None)
            .await
            .unwrap()
    );
    let all = store.dm_deliveries(7, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        store.dm_deliveries(7, Some(sent.shard_id)).await.unwrap(),
        all.iter()
            .filter(|d| d.shard_id == sent.shard_id)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        CampaignProgress::of_dms(&all).summary(),
        "sent 1, in flight 1, skipped 0, failed 0"
    );
    assert!(
        store.deliveries(7, None).await.unwrap().is_empty(),
        "DMs are apart"
    );

    assert_eq!(
        store.export_user(user).await.unwrap().announcement_dms,
        [sent]
    );
    store.delete_user(user).await.unwrap();
    assert!(
        store
            .export_user(user)
            .await
            .unwrap()
            .announcement_dms
            .is_empty()
    );
    let left = store.dm_deliveries(7, None).await.unwrap();
    assert_eq!(left.iter().map(|d| d.user_id).collect::<Vec<_>>(), [other]);
    let trace = user.to_string();
    let rows = store.dump_rows().await.unwrap();
    assert!(
        rows.iter().all(|row| !row.text.contains(&trace)),
        "the erased user is in no row"
    );
}

/// A campaign and its deliveries (to guilds and by DM) go once `campaigns` has passed since
/// its creation: swept on redb, by TTL on ScyllaDB. A younger campaign stays with its own.
pub(crate) async fn campaigns_go_with_their_deliveries_at_their_retention<S>(store: S)
where
    S: AnnouncementRepo + DataRights,
{
    let period = Retention::POLICY.campaigns;
    let ending = Campaign {
        created_at: Timestamp::now()
            .saturating_sub(period)
            .saturating_add(Duration::from_secs(2)),
        ..campaign(40)
    };
    let staying = Campaign {
        created_at: Timestamp::now()
            .saturating_sub(period)
            .saturating_add(Duration::from_secs(3_600)),
        ..campaign(41)
    };
    let gone = Campaign {
        created_at: Timestamp::now().saturating_sub(period),
        ..campaign(42)
    };
    for c in [&ending, &staying, &gone] {
        store.create_campaign(c).await.unwrap();
    }
    let user = GUILD + 5;
    for id in [40, 41] {
        assert!(
            store
                .claim_delivery(&claim(id, GUILD, "node-a"), None)
                .await
                .unwrap()
        );
        assert!(
            store
                .claim_dm_delivery(&dm_claim(id, user, "node-a"), None)
                .await
                .unwrap()
        );
    }
    let ids = |campaigns: Vec<Campaign>| campaigns.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.campaigns().await.unwrap()),
        [41, 40],
        "42 is past it"
    );
    assert!(matches!(
        store
            .claim_delivery(&claim(42, GUILD, "node-a"), None)
            .await,
        Err(StorageError::NotFound(_))
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.campaigns().await.unwrap().len() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a campaign outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.sweep_expired(Timestamp::now()).await.unwrap();
    }
    store.sweep_expired(Timestamp::now()).await.unwrap();
    assert_eq!(ids(store.campaigns().await.unwrap()), [41]);
    assert!(store.deliveries(40, None).await.unwrap().is_empty());
    assert!(store.dm_deliveries(40, None).await.unwrap().is_empty());
    assert_eq!(store.deliveries(41, None).await.unwrap().len(), 1);
    let kept: Vec<u64> = store
        .export_user(user)
        .await
        .unwrap()
        .announcement_dms
        .iter()
        .map(|d| d.campaign_id)
        .collect();
    assert_eq!(kept, [41], "the user's export lists only what is kept");
}

macro_rules! announcement_cases {
    ($run:ident) => {
        $run!(
            consenting_users_are_paged_and_each_dm_is_claimed_once,
            campaigns_go_with_their_deliveries_at_their_retention,
            opt_ins_are_listed_by_shard_and_withdrawn,
            campaigns_are_created_once_listed_newest_first_and_cancelled,
            a_guild_is_claimed_once_per_campaign_and_decided_by_its_claimant,
            schedules_are_kept_per_guild_replaced_deleted_and_checked,
        );
    };
}
