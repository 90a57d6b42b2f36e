//! Conformance cases of moderation cases and durable timers, run against both backends and,
//! by `cluster/tests/remote_store.rs`, against the leader's store over gRPC.

use std::sync::Arc;
use std::time::Duration;

use protonn_storage::{
    AUTOMOD_HIT_RETENTION, AutomodHit, AutomodRepo, Case, DataRights, ModerationRepo, StorageError,
    TIMER_USERS_MAX, Timer, TimerRepo, Timestamp, privacy,
};

const GUILD: u64 = 881_027_316_262_879_232;
const OTHER_GUILD: u64 = 881_027_316_262_879_233;
const MOD: u64 = 731_918_266_405_175_297;
const USER: u64 = 613_004_512_977_338_369;
const MINUTE: Duration = Duration::from_secs(60);

fn case(guild_id: u64, action: &str, target_id: Option<u64>) -> Case {
    Case {
        guild_id,
        number: 0,
        action: action.to_owned(),
        moderator_id: MOD,
        target_id,
        channel_id: None,
        reason: format!("{action} for testing"),
        duration_ms: None,
        at: Timestamp::now(),
    }
}

fn timer(guild_id: u64, id: &str, due: Timestamp) -> Timer {
    Timer {
        guild_id,
        shard_id: 3,
        id: id.to_owned(),
        due,
        feature: "moderation".to_owned(),
        payload: r#"{"unban":1}"#.to_owned(),
        claimed_by: None,
        claimed_until: Timestamp(0),
        users: Vec::new(),
        outlives_erasure: false,
    }
}

pub(crate) async fn case_numbers_count_up_per_guild_and_never_repeat<S>(store: S)
where
    S: ModerationRepo + Clone,
{
    let store = Arc::new(store);
    // Concurrent writers (two nodes around a handoff) still get distinct numbers.
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_case(&case(GUILD, "warn", Some(USER))).await })
        })
        .collect();
    let mut numbers = Vec::new();
    for writer in writers {
        numbers.push(writer.await.unwrap().unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<u64>>());
    assert_eq!(
        store
            .create_case(&case(OTHER_GUILD, "kick", Some(USER)))
            .await
            .unwrap(),
        1,
        "each guild counts on its own"
    );
    let channel_case = case(GUILD, "slowmode", None);
    assert_eq!(store.create_case(&channel_case).await.unwrap(), 9);

    let stored = store.case(GUILD, 9).await.unwrap().unwrap();
    assert_eq!(stored.number, 9);
    assert_eq!(stored.action, "slowmode");
    assert_eq!(store.case(GUILD, 10).await.unwrap(), None);

    let about = store.cases_about(GUILD, USER, 3).await.unwrap();
    let numbers: Vec<u64> = about.iter().map(|c| c.number).collect();
    assert_eq!(numbers, [8, 7, 6], "newest first, limited");
    let page: Vec<u64> = store
        .cases(GUILD, Some(5), 10)
        .await
        .unwrap()
        .iter()
        .map(|c| c.number)
        .collect();
    assert_eq!(page, [4, 3, 2, 1]);
    assert_eq!(store.cases(GUILD, None, 1).await.unwrap()[0].number, 9);
}

pub(crate) async fn a_case_reason_is_edited_and_checked(store: impl ModerationRepo) {
    let number = store
        .create_case(&case(GUILD, "ban", Some(USER)))
        .await
        .unwrap();
    assert!(
        store
            .set_case_reason(GUILD, number, "spam links")
            .await
            .unwrap()
    );
    assert_eq!(
        store.case(GUILD, number).await.unwrap().unwrap().reason,
        "spam links"
    );
    assert!(!store.set_case_reason(GUILD, number + 1, "x").await.unwrap());
    let long = "x".repeat(513);
    assert!(matches!(
        store.set_case_reason(GUILD, number, &long).await,
        Err(StorageError::Invalid(_))
    ));
    let mut too_long = case(GUILD, "warn", Some(USER));
    too_long.reason = long;
    assert!(matches!(
        store.create_case(&too_long).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(
        store.case(GUILD, number).await.unwrap().unwrap().reason,
        "spam links",
        "refused writes change nothing"
    );
    assert_eq!(store.cases(GUILD, None, 10).await.unwrap().len(), 1);
}

pub(crate) async fn due_timers_are_claimed_once_and_completed_by_their_claimant(
    store: impl TimerRepo,
) {
    let now = Timestamp::now();
    let due = timer(GUILD, "tempban:1", now.saturating_sub(MINUTE));
    let later = timer(GUILD, "tempban:2", now.saturating_add(60 * MINUTE));
    let other_shard = Timer {
        shard_id: 4,
        ..timer(OTHER_GUILD, "tempban:1", now.saturating_sub(MINUTE))
    };
    for t in [&due, &later, &other_shard] {
        store.put_timer(t).await.unwrap();
    }
    assert_eq!(
        store.due_timers(3, now, 10).await.unwrap(),
        vec![due.clone()]
    );
    assert_eq!(
        store.timers_of_guild(GUILD).await.unwrap(),
        vec![due.clone(), later.clone()]
    );

    let lease = now.saturating_add(MINUTE);
    assert!(store.claim_timer(&due, "node-a", now, lease).await.unwrap());
    assert!(
        !store.claim_timer(&due, "node-b", now, lease).await.unwrap(),
        "a held claim is not taken"
    );
    assert!(store.due_timers(3, now, 10).await.unwrap().is_empty());
    // The claim lapses (node-a died mid-action): node-b takes it, and node-a's late
    // completion no longer counts.
    let after = lease.saturating_add(Duration::from_millis(1));
    assert_eq!(store.due_timers(3, after, 10).await.unwrap().len(), 1);
    assert!(
        store
            .claim_timer(&due, "node-b", after, after.saturating_add(MINUTE))
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete_timer(GUILD, "tempban:1", "node-a")
            .await
            .unwrap()
    );
    assert!(
        store
            .complete_timer(GUILD, "tempban:1", "node-b")
            .await
            .unwrap()
    );
    assert!(
        !store
            .complete_timer(GUILD, "tempban:1", "node-b")
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_timer(&due, "node-c", after, lease)
            .await
            .unwrap()
    );
    assert_eq!(
        store.timers_of_guild(GUILD).await.unwrap(),
        vec![later.clone()]
    );
}

pub(crate) async fn a_timer_put_again_is_moved_and_a_cancelled_one_is_gone(store: impl TimerRepo) {
    let now = Timestamp::now();
    let first = timer(GUILD, "tempban:1", now.saturating_add(MINUTE));
    store.put_timer(&first).await.unwrap();
    let sooner = timer(GUILD, "tempban:1", now.saturating_sub(MINUTE));
    store.put_timer(&sooner).await.unwrap();
    assert_eq!(
        store.timers_of_guild(GUILD).await.unwrap(),
        vec![sooner.clone()]
    );
    assert_eq!(
        store.due_timers(3, now, 10).await.unwrap(),
        vec![sooner.clone()]
    );
    // A claim made on the old due time does not take the moved timer.
    assert!(
        !store
            .claim_timer(&first, "node-a", now, now.saturating_add(MINUTE))
            .await
            .unwrap()
    );

    assert!(store.cancel_timer(GUILD, "tempban:1").await.unwrap());
    assert!(!store.cancel_timer(GUILD, "tempban:1").await.unwrap());
    assert!(store.due_timers(3, now, 10).await.unwrap().is_empty());
    assert!(store.timers_of_guild(GUILD).await.unwrap().is_empty());

    let bad = timer(GUILD, "", now);
    assert!(matches!(
        store.put_timer(&bad).await,
        Err(StorageError::Invalid(_))
    ));
}

pub(crate) async fn a_guilds_cases_and_timers_go_with_it<S>(store: S)
where
    S: ModerationRepo + TimerRepo + protonn_storage::DataRights,
{
    let now = Timestamp::now();
    store
        .create_case(&case(GUILD, "warn", Some(USER)))
        .await
        .unwrap();
    store
        .create_case(&case(OTHER_GUILD, "warn", Some(USER)))
        .await
        .unwrap();
    store
        .put_timer(&timer(GUILD, "tempban:1", now))
        .await
        .unwrap();
    store
        .put_timer(&timer(OTHER_GUILD, "tempban:1", now))
        .await
        .unwrap();
    store.delete_guild(GUILD).await.unwrap();
    assert!(store.cases(GUILD, None, 10).await.unwrap().is_empty());
    assert!(store.cases_about(GUILD, USER, 10).await.unwrap().is_empty());
    assert!(store.timers_of_guild(GUILD).await.unwrap().is_empty());
    assert_eq!(store.cases(OTHER_GUILD, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.timers_of_guild(OTHER_GUILD).await.unwrap().len(), 1);
    assert_eq!(
        store
            .create_case(&case(GUILD, "warn", Some(USER)))
            .await
            .unwrap(),
        2,
        "a returning guild never reuses a number"
    );
}

fn hit(guild_id: u64, message_id: u64, user_id: u64, at: Timestamp) -> AutomodHit {
    AutomodHit {
        guild_id,
        message_id,
        rule: "flood".to_owned(),
        user_id,
        channel_id: 5,
        why: "4 messages within 1m".to_owned(),
        actions: "delete, timeout 10m".to_owned(),
        at,
    }
}

/// Shadow-mode hits: listed newest first by page, bad ones refused, gone after their 30
/// days (on ScyllaDB by TTL: the one written here has seconds left), with the guild, and
/// with their author's erasure, in whose export they are.
pub(crate) async fn shadow_mode_hits_are_listed_kept_a_while_and_erased<S>(store: S)
where
    S: AutomodRepo + DataRights,
{
    let now = Timestamp::now();
    for message in [10, 30, 20] {
        store
            .put_automod_hit(&hit(GUILD, message, USER, now))
            .await
            .unwrap();
    }
    store
        .put_automod_hit(&hit(OTHER_GUILD, 40, MOD, now))
        .await
        .unwrap();
    let messages = |hits: Vec<AutomodHit>| hits.iter().map(|h| h.message_id).collect::<Vec<_>>();
    assert_eq!(
        messages(store.automod_hits(GUILD, None, 2).await.unwrap()),
        [30, 20]
    );
    assert_eq!(
        messages(store.automod_hits(GUILD, Some(20), 10).await.unwrap()),
        [10]
    );
    // Written again: replaced, not doubled.
    store
        .put_automod_hit(&hit(GUILD, 30, USER, now))
        .await
        .unwrap();
    assert_eq!(store.automod_hits(GUILD, None, 10).await.unwrap().len(), 3);

    let mut bad = hit(GUILD, 50, USER, now);
    bad.rule = String::new();
    assert!(matches!(
        store.put_automod_hit(&bad).await,
        Err(StorageError::Invalid(_))
    ));
    bad.rule = "flood".to_owned();
    bad.why = "x".repeat(protonn_storage::AUTOMOD_HIT_WHY_MAX_CHARS + 1);
    assert!(matches!(
        store.put_automod_hit(&bad).await,
        Err(StorageError::Invalid(_))
    ));
    let stale = hit(GUILD, 60, USER, now.saturating_sub(AUTOMOD_HIT_RETENTION));
    store.put_automod_hit(&stale).await.unwrap();
    let almost = now
        .saturating_sub(AUTOMOD_HIT_RETENTION)
        .saturating_add(Duration::from_secs(2));
    store
        .put_automod_hit(&hit(GUILD, 70, USER, almost))
        .await
        .unwrap();
    let listed = messages(store.automod_hits(GUILD, None, 10).await.unwrap());
    assert!(!listed.contains(&60), "past retention: not stored");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while messages(store.automod_hits(GUILD, None, 10).await.unwrap()).contains(&70) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a hit outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.sweep_expired(Timestamp::now()).await.unwrap();

    assert_eq!(store.export_user(USER).await.unwrap().automod_hits.len(), 3);
    store.delete_user(USER).await.unwrap();
    assert!(
        store
            .export_user(USER)
            .await
            .unwrap()
            .automod_hits
            .is_empty()
    );
    assert!(
        store
            .automod_hits(GUILD, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.export_user(MOD).await.unwrap().automod_hits.len(), 1);
    store.delete_guild(OTHER_GUILD).await.unwrap();
    assert!(
        store
            .automod_hits(OTHER_GUILD, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .export_user(MOD)
            .await
            .unwrap()
            .automod_hits
            .is_empty()
    );
}

/// Timers that name users: indexed with their write and listed in those users' export;
/// put again naming someone else, the refs follow; at erasure a parked run's wait goes and
/// a temporary ban's unban stays, no longer naming the member, and still runs; the breach
/// listing of `timers` names the users of stored ones.
pub(crate) async fn timers_that_name_users_are_exported_erased_or_kept_and_listed<S>(store: S)
where
    S: TimerRepo + DataRights,
{
    let now = Timestamp::now();
    let due = now.saturating_add(60 * MINUTE);
    let unban = Timer {
        users: vec![USER],
        outlives_erasure: true,
        ..timer(GUILD, &format!("unban:{USER}"), due)
    };
    let wait = Timer {
        feature: "workflows".to_owned(),
        payload: format!(r#"{{"wait":{{"user_id":{USER},"content":"tea time"}}}}"#),
        users: vec![USER],
        ..timer(GUILD, "wait:1:ab", due)
    };
    let others_wait = Timer {
        users: vec![MOD],
        ..timer(OTHER_GUILD, "wait:2:cd", due)
    };
    let schedule = timer(GUILD, "schedule:3", due);
    for t in [&unban, &wait, &others_wait, &schedule] {
        store.put_timer(t).await.unwrap();
    }
    let ids = |export: protonn_storage::UserExport| {
        let mut ids: Vec<String> = export.timers.into_iter().map(|t| t.id).collect();
        ids.sort();
        ids
    };
    let export = store.export_user(USER).await.unwrap();
    let listed = export.timers.iter().find(|t| t.id == wait.id).unwrap();
    assert_eq!((listed.due, listed.feature.as_str()), (due, "workflows"));
    assert!(listed.payload.contains("tea time"), "{listed:?}");
    assert_eq!(ids(export), [unban.id.as_str(), wait.id.as_str()]);
    assert_eq!(
        ids(store.export_user(MOD).await.unwrap()),
        [others_wait.id.as_str()]
    );

    // Put again naming another user: the refs follow the users it names.
    let moved = Timer {
        users: vec![MOD],
        ..wait.clone()
    };
    store.put_timer(&moved).await.unwrap();
    assert_eq!(
        ids(store.export_user(USER).await.unwrap()),
        [unban.id.as_str()]
    );
    assert_eq!(ids(store.export_user(MOD).await.unwrap()).len(), 2);
    store.put_timer(&wait).await.unwrap();

    let mut expected = vec![USER, MOD];
    expected.sort_unstable();
    let affected = privacy::affected_users(&store, now, &["timers".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        affected.iter().map(|a| a.user_id).collect::<Vec<_>>(),
        expected
    );

    // Bad users are refused and change nothing.
    for users in [vec![0], vec![USER; TIMER_USERS_MAX + 1]] {
        let bad = Timer {
            users,
            ..timer(GUILD, "wait:9:ff", due)
        };
        assert!(matches!(
            store.put_timer(&bad).await,
            Err(StorageError::Invalid(_))
        ));
    }

    store.delete_user(USER).await.unwrap();
    let left = store.timers_of_guild(GUILD).await.unwrap();
    let ids_left: Vec<&str> = left.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        ids_left,
        [schedule.id.as_str(), unban.id.as_str()],
        "the wait went"
    );
    let kept = &left[1];
    assert!(kept.users.is_empty(), "kept without naming the member");
    assert_eq!(kept.payload, unban.payload, "what the unban needs stays");
    assert!(store.export_user(USER).await.unwrap().timers.is_empty());
    // It still runs.
    let until = now.saturating_add(MINUTE);
    assert!(store.claim_timer(kept, "node-a", now, until).await.unwrap());
    assert!(
        store
            .complete_timer(GUILD, &unban.id, "node-a")
            .await
            .unwrap()
    );
    assert!(
        store
            .cancel_timer(OTHER_GUILD, &others_wait.id)
            .await
            .unwrap()
    );
    assert!(store.export_user(MOD).await.unwrap().timers.is_empty());
    assert!(
        privacy::affected_users(&store, now, &["timers".to_owned()])
            .await
            .unwrap()
            .is_empty()
    );
}

/// Cases are kept a year from their action (`Retention::cases`): one older is gone (the
/// sweeper on redb; a TTL on ScyllaDB, where the one written here has a second left), with
/// its place in the target's cases and in its users' export; a newer one stays.
pub(crate) async fn cases_past_their_retention_are_gone<S>(store: S)
where
    S: ModerationRepo + DataRights,
{
    let now = Timestamp::now();
    let year = protonn_storage::Retention::POLICY.cases;
    let old = Case {
        at: now.saturating_sub(year),
        ..case(GUILD, "ban", Some(USER))
    };
    let old_number = store.create_case(&old).await.unwrap();
    let recent = Case {
        at: now.saturating_sub(year).saturating_add(60 * MINUTE),
        ..case(GUILD, "warn", Some(USER))
    };
    let recent_number = store.create_case(&recent).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        store.sweep_expired(Timestamp::now()).await.unwrap();
        if store.case(GUILD, old_number).await.unwrap().is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a case outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let numbers = |cases: Vec<Case>| cases.iter().map(|c| c.number).collect::<Vec<_>>();
    assert_eq!(
        numbers(store.cases_about(GUILD, USER, 10).await.unwrap()),
        [recent_number]
    );
    assert_eq!(
        numbers(store.export_user(USER).await.unwrap().cases),
        [recent_number]
    );
    assert_eq!(
        numbers(store.export_user(MOD).await.unwrap().cases),
        [recent_number]
    );
    // Numbers are never given again.
    assert_eq!(
        store
            .create_case(&case(GUILD, "warn", Some(USER)))
            .await
            .unwrap(),
        recent_number + 1
    );
}

macro_rules! moderation_cases {
    ($run:ident) => {
        $run!(
            shadow_mode_hits_are_listed_kept_a_while_and_erased,
            a_guilds_cases_and_timers_go_with_it,
            case_numbers_count_up_per_guild_and_never_repeat,
            a_case_reason_is_edited_and_checked,
            due_timers_are_claimed_once_and_completed_by_their_claimant,
            a_timer_put_again_is_moved_and_a_cancelled_one_is_gone,
            timers_that_name_users_are_exported_erased_or_kept_and_listed,
            cases_past_their_retention_are_gone,
        );
    };
}
