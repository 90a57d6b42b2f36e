//! Conformance cases of premium (the webhook inbox, ordered subscription states, slots), run
//! against both backends and, by `cluster/tests/remote_store.rs`, over gRPC.

use std::time::Duration;

use protonn_storage::{
    AssignRefused, BillingRepo, InboxEvent, Plan, PremiumRepo, PremiumSlot, Store, Subscription,
    SubscriptionStatus, Timestamp, assign_slot, guild_plan, refresh_slots,
};

const USER: u64 = 731_918_266_405_175_297;
const OTHER_USER: u64 = 613_004_512_977_338_369;
const GUILD: u64 = 41_771_983_423_143_937;
const OTHER_GUILD: u64 = 81_384_788_765_712_384;
const DAY: Duration = Duration::from_secs(86_400);

/// An event received `received_at` ms after a minute ago (processed events are kept for
/// their retention from then).
fn event(id: &str, received_at: u64) -> InboxEvent {
    let at = Timestamp::now().saturating_sub(Duration::from_secs(60)).0 + received_at;
    InboxEvent {
        event_id: id.to_owned(),
        event_type: "subscription.updated".into(),
        occurred_at: Timestamp(at - 5),
        received_at: Timestamp(at),
        body: Some(format!(r#"{{"event_id":"{id}"}}"#)),
        outcome: None,
        user_id: None,
    }
}

/// An event about `user`, received `ago` before now, its body naming them.
fn event_about(id: &str, user: u64, ago: Duration) -> InboxEvent {
    let at = Timestamp::now().saturating_sub(ago);
    InboxEvent {
        body: Some(format!(
            r#"{{"event_id":"{id}","data":{{"custom_data":{{"user_id":"{user}"}}}}}}"#
        )),
        received_at: at,
        occurred_at: at,
        user_id: Some(user),
        ..event(id, 0)
    }
}

/// Webhook events name the customer's Discord user: indexed by them, in their export (a
/// pending one with its body), listed by a breach of `billing_inbox`; their erasure keeps
/// the events without body or user (a redelivery is still a duplicate, and is not stored
/// again); processed events go after their retention, pending ones wait for processing.
pub(crate) async fn inbox_events_about_a_user_are_exported_anonymised_and_expire<S: Store>(
    store: S,
) {
    let pending = event_about("evt_u1", USER, DAY);
    let processed = event_about("evt_u2", USER, DAY);
    let others = event_about("evt_o1", OTHER_USER, DAY);
    for event in [&pending, &processed, &others] {
        assert!(store.receive_event(event).await.unwrap());
    }
    store.finish_event("evt_u2", "applied").await.unwrap();
    let export = store.export_user(USER).await.unwrap();
    let mut events: Vec<(&str, bool)> = export
        .billing_events
        .iter()
        .map(|e| (e.event_id.as_str(), e.body.is_some()))
        .collect();
    events.sort_unstable();
    assert_eq!(events, [("evt_u1", true), ("evt_u2", false)]);
    let end = Timestamp::now().saturating_add(Duration::from_secs(1));
    let tables = ["billing_inbox".to_owned()];
    let affected = protonn_storage::privacy::affected_users(&store, end, &tables)
        .await
        .unwrap();
    let mut expected = vec![USER, OTHER_USER];
    expected.sort_unstable();
    assert_eq!(
        affected.iter().map(|a| a.user_id).collect::<Vec<_>>(),
        expected
    );

    store.delete_user(USER).await.unwrap();
    assert!(
        store
            .export_user(USER)
            .await
            .unwrap()
            .billing_events
            .is_empty()
    );
    for id in ["evt_u1", "evt_u2"] {
        let kept = store.inbox_event(id).await.unwrap().unwrap();
        assert_eq!((kept.body, kept.user_id), (None, None), "{id}");
        assert!(kept.outcome.is_some(), "{id} is no longer pending");
    }
    let ids: Vec<String> = store
        .pending_events(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids, ["evt_o1"]);
    assert!(
        !store.receive_event(&pending).await.unwrap(),
        "still a duplicate"
    );
    let needle = USER.to_string();
    let naming: Vec<String> = store
        .dump_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.text.contains(&needle))
        .map(|row| format!("{}: {}", row.table, row.text))
        .collect();
    assert_eq!(naming, Vec::<String>::new());

    // A year and a day later: a processed event is gone (TTL on ScyllaDB, the sweeper on
    // redb), a pending one waits to be processed.
    let year = protonn_storage::Retention::POLICY.billing_inbox + DAY;
    let old_processed = event_about("evt_o2", OTHER_USER, year);
    let old_pending = event_about("evt_o3", OTHER_USER, year);
    for event in [&old_processed, &old_pending] {
        store.receive_event(event).await.unwrap();
    }
    store.finish_event("evt_o2", "applied").await.unwrap();
    store.sweep_expired(Timestamp::now()).await.unwrap();
    assert_eq!(store.inbox_event("evt_o2").await.unwrap(), None);
    assert!(store.inbox_event("evt_o3").await.unwrap().is_some());
    assert!(store.inbox_event("evt_o1").await.unwrap().is_some());
}

fn subscription(id: u64, status: SubscriptionStatus, at: Timestamp, slots: u32) -> Subscription {
    Subscription {
        subscription_id: id,
        user_id: USER,
        guild_id: None,
        plan: "premium".into(),
        status,
        current_period_end: at.saturating_add(30 * DAY),
        updated_at: at,
        slots,
        provider_ref: format!("sub_{id}"),
        status_since: at,
    }
}

pub(crate) async fn the_inbox_keeps_an_event_once_until_processed<S: PremiumRepo>(store: S) {
    let first = event("evt_1", 1_000);
    assert!(store.receive_event(&first).await.unwrap());
    assert!(store.receive_event(&event("evt_2", 2_000)).await.unwrap());
    // The same event id again (a retry, a replay): not stored twice.
    let again = InboxEvent {
        received_at: Timestamp(3_000),
        ..first.clone()
    };
    assert!(!store.receive_event(&again).await.unwrap());
    let pending = store.pending_events(10).await.unwrap();
    let ids: Vec<&str> = pending.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["evt_1", "evt_2"]);
    assert_eq!(pending[0], first);

    store.finish_event("evt_1", "applied").await.unwrap();
    let done = store.inbox_event("evt_1").await.unwrap().unwrap();
    assert_eq!(done.outcome.as_deref(), Some("applied"));
    assert_eq!(
        done.body, None,
        "the body names the customer: dropped once processed"
    );
    let ids: Vec<String> = store
        .pending_events(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids, ["evt_2"]);
    // Processed, its id still deduplicates.
    assert!(!store.receive_event(&first).await.unwrap());
    assert_eq!(store.pending_events(10).await.unwrap().len(), 1);
    // Finishing an unknown event is not an error.
    store.finish_event("evt_404", "applied").await.unwrap();
}

pub(crate) async fn an_older_subscription_state_never_overwrites_a_newer<
    S: PremiumRepo + BillingRepo,
>(
    store: S,
) {
    let t = Timestamp(1_700_000_000_000);
    let active = subscription(9, SubscriptionStatus::Active, t, 1);
    assert!(store.apply_subscription(&active).await.unwrap());
    let past_due = subscription(9, SubscriptionStatus::PastDue, Timestamp(t.0 + 10), 1);
    assert!(store.apply_subscription(&past_due).await.unwrap());
    // A late delivery of an older event, and the same event again: both ignored.
    let trialing = subscription(9, SubscriptionStatus::Trialing, Timestamp(t.0 - 10), 1);
    assert!(!store.apply_subscription(&trialing).await.unwrap());
    assert!(!store.apply_subscription(&past_due).await.unwrap());
    assert_eq!(store.subscription(9).await.unwrap(), Some(past_due.clone()));
    let mine = store.subscriptions_of_user(USER).await.unwrap();
    assert_eq!(mine, [past_due]);
}

pub(crate) async fn slots_follow_entitlements_and_one_user_holds_a_guild<
    S: PremiumRepo + BillingRepo,
>(
    store: S,
) {
    let now = Timestamp::now();
    assert_eq!(
        assign_slot(&store, USER, GUILD, now).await.unwrap(),
        Err(AssignRefused::NoFreeSlot)
    );
    assert!(
        store
            .apply_subscription(&subscription(3, SubscriptionStatus::Active, now, 1))
            .await
            .unwrap()
    );
    let slot = assign_slot(&store, USER, GUILD, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slot.plan, Plan::Premium);
    assert_eq!(guild_plan(&store, GUILD, now).await.unwrap(), Plan::Premium);
    // Assigning it again changes nothing; a second guild needs a second slot.
    assert_eq!(
        assign_slot(&store, USER, GUILD, now).await.unwrap(),
        Ok(slot.clone())
    );
    assert_eq!(
        assign_slot(&store, USER, OTHER_GUILD, now).await.unwrap(),
        Err(AssignRefused::NoFreeSlot)
    );
    // Another user cannot take a guild that a live slot holds.
    let theirs = PremiumSlot {
        guild_id: GUILD,
        user_id: OTHER_USER,
        assigned_at: now,
        plan: Plan::Premium,
        until: now.saturating_add(DAY),
    };
    assert!(store.put_slot(&theirs).await.is_err());
    assert_eq!(store.guild_slot(GUILD).await.unwrap(), Some(slot.clone()));

    // Moving: free the slot, give it to the other guild.
    assert!(store.remove_slot(USER, GUILD).await.unwrap());
    assert!(!store.remove_slot(USER, GUILD).await.unwrap());
    assert_eq!(guild_plan(&store, GUILD, now).await.unwrap(), Plan::Free);
    assign_slot(&store, USER, OTHER_GUILD, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.slots_of_user(USER).await.unwrap().len(), 1);

    // The subscription ends: the slot goes at the next refresh.
    let later = Timestamp(now.0 + 1);
    let cancelled = subscription(3, SubscriptionStatus::Cancelled, later, 1);
    assert!(store.apply_subscription(&cancelled).await.unwrap());
    assert!(refresh_slots(&store, USER, later).await.unwrap().is_empty());
    assert!(store.slots_of_user(USER).await.unwrap().is_empty());
    assert_eq!(
        guild_plan(&store, OTHER_GUILD, later).await.unwrap(),
        Plan::Free
    );
    assert_eq!(store.guild_slot(OTHER_GUILD).await.unwrap(), None);

    // A slot that has ended lets another user take the guild.
    let ended = PremiumSlot {
        until: now,
        ..theirs.clone()
    };
    store.put_slot(&ended).await.unwrap();
    let mine = PremiumSlot {
        user_id: USER,
        assigned_at: later,
        ..theirs
    };
    store.put_slot(&mine).await.unwrap();
    assert_eq!(store.guild_slot(GUILD).await.unwrap(), Some(mine));
    assert!(store.slots_of_user(OTHER_USER).await.unwrap().is_empty());
}

pub(crate) async fn erasure_anonymises_billing_rows_and_frees_slots<S: Store>(store: S) {
    let now = Timestamp::now();
    let mine = subscription(11, SubscriptionStatus::Active, now, 1);
    assert!(store.apply_subscription(&mine).await.unwrap());
    assign_slot(&store, USER, GUILD, now)
        .await
        .unwrap()
        .unwrap();
    store.delete_user(USER).await.unwrap();

    // The accounting row stays, without the person; their premium and index entries go.
    let kept = store.subscription(11).await.unwrap().unwrap();
    assert_eq!(kept.user_id, protonn_storage::privacy::ERASED_USER);
    assert_eq!(kept.guild_id, None);
    assert_eq!(kept.provider_ref, "sub_11");
    assert_eq!((kept.status, kept.slots), (SubscriptionStatus::Active, 1));
    assert!(store.subscriptions_of_user(USER).await.unwrap().is_empty());
    assert!(store.slots_of_user(USER).await.unwrap().is_empty());
    assert_eq!(guild_plan(&store, GUILD, now).await.unwrap(), Plan::Free);
    let needle = USER.to_string();
    let left: Vec<String> = store
        .dump_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.text.contains(&needle))
        .map(|row| format!("{}: {}", row.table, row.text))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

pub(crate) async fn erasing_a_guild_frees_its_slot<S: Store>(store: S) {
    let now = Timestamp::now();
    let mine = subscription(12, SubscriptionStatus::Active, now, 1);
    assert!(store.apply_subscription(&mine).await.unwrap());
    assign_slot(&store, USER, GUILD, now)
        .await
        .unwrap()
        .unwrap();
    store.delete_guild(GUILD).await.unwrap();
    assert_eq!(store.guild_slot(GUILD).await.unwrap(), None);
    assert!(store.slots_of_user(USER).await.unwrap().is_empty());
    // The subscription is the user's, not the guild's: it stays, and the slot is free again.
    assert_eq!(store.subscriptions_of_user(USER).await.unwrap(), [mine]);
    assign_slot(&store, USER, OTHER_GUILD, now)
        .await
        .unwrap()
        .unwrap();
}

/// Racing assignments: one user's, to more guilds than they have slots, and many users', to
/// one guild. The store's atomic `add_slot` is what keeps both within bounds.
pub(crate) async fn concurrent_assignments_never_exceed_the_slots_nor_share_a_guild<
    S: PremiumRepo + BillingRepo + Clone,
>(
    store: S,
) {
    let now = Timestamp::now();
    assert!(
        store
            .apply_subscription(&subscription(21, SubscriptionStatus::Active, now, 2))
            .await
            .unwrap()
    );
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { assign_slot(&store, USER, GUILD + i, now).await })
        })
        .collect();
    let mut assigned = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Ok(slot) => assigned.push(slot.guild_id),
            Err(refused) => assert_eq!(refused, AssignRefused::NoFreeSlot),
        }
    }
    assert_eq!(assigned.len(), 2, "two slots, two guilds: {assigned:?}");
    let mut held: Vec<u64> = store
        .slots_of_user(USER)
        .await
        .unwrap()
        .iter()
        .map(|slot| slot.guild_id)
        .collect();
    held.sort_unstable();
    assigned.sort_unstable();
    assert_eq!(held, assigned);

    let users: Vec<u64> = (1..=8).map(|i| OTHER_USER + i).collect();
    for (i, &user) in users.iter().enumerate() {
        let paid = Subscription {
            user_id: user,
            ..subscription(30 + i as u64, SubscriptionStatus::Active, now, 1)
        };
        assert!(store.apply_subscription(&paid).await.unwrap());
    }
    let tasks: Vec<_> = users
        .iter()
        .map(|&user| {
            let store = store.clone();
            tokio::spawn(async move { (user, assign_slot(&store, user, OTHER_GUILD, now).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (user, outcome) = task.await.unwrap();
        match outcome.unwrap() {
            Ok(_) => winners.push(user),
            Err(refused) => {
                assert_eq!(refused, AssignRefused::GuildTaken);
                assert!(store.slots_of_user(user).await.unwrap().is_empty());
            }
        }
    }
    assert_eq!(winners.len(), 1, "one guild, one holder: {winners:?}");
    let holder = store.guild_slot(OTHER_GUILD).await.unwrap().unwrap();
    assert_eq!(holder.user_id, winners[0]);
}

macro_rules! premium_cases {
    ($run:ident) => {
        $run!(
            erasing_a_guild_frees_its_slot,
            erasure_anonymises_billing_rows_and_frees_slots,
            the_inbox_keeps_an_event_once_until_processed,
            inbox_events_about_a_user_are_exported_anonymised_and_expire,
            an_older_subscription_state_never_overwrites_a_newer,
            slots_follow_entitlements_and_one_user_holds_a_guild,
            concurrent_assignments_never_exceed_the_slots_nor_share_a_guild,
        );
    };
}
