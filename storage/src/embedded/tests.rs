use std::time::Duration;

use super::*;
use crate::{AccountRepo, DataRights, ModerationRepo, PremiumRepo, TicketRepo};

fn custom(prefix: &str) -> GuildConfig {
    GuildConfig {
        prefix: prefix.to_owned(),
        ..GuildConfig::default()
    }
}

#[tokio::test]
async fn writes_survive_reopening_and_the_file_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.save(3, 0, &custom("%")).await.unwrap();

    let second = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(second, StorageError::Locked(_)), "{second}");

    drop(store);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(reopened.load(3).await.unwrap().unwrap().config.prefix, "%");
    assert_eq!(
        reopened.check_consistency().await.unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn documents_missing_new_fields_still_load() {
    let old = br#"{"version":4,"config":{"prefix":"?"}}"#;
    let loaded = decode_config(9, old).unwrap();
    assert_eq!(loaded.version, 4);
    assert_eq!(loaded.config.prefix, "?");
    assert_eq!(loaded.config.locale, "en-US");
}

#[tokio::test]
async fn history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for version in 0..CONFIG_HISTORY_LEN + 10 {
        store
            .save(1, version, &custom(&version.to_string()))
            .await
            .unwrap();
    }
    let history = store.history(1).await.unwrap();
    assert_eq!(history.len() as u64, CONFIG_HISTORY_LEN);
    assert_eq!(history[0].version, CONFIG_HISTORY_LEN + 10);
    assert_eq!(history.last().unwrap().version, 11);
    let err = store
        .rollback(1, CONFIG_HISTORY_LEN + 10, 3)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
}

/// Time moved by the caller: an account idle for two years is purged by the sweep at that
/// moment and not a day earlier, and activity pushes the purge back.
#[tokio::test]
async fn the_sweeper_purges_at_the_policy_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let t0 = Timestamp::now();
    store.touch_account(1, t0).await.unwrap();
    store.touch_account(2, t0).await.unwrap();
    let audit = AuditEntry {
        guild_id: 5,
        at: t0,
        id: 1,
        actor_id: 1,
        target_id: None,
        action: "config.set".into(),
        details: String::new(),
    };
    store.append_audit(&[audit]).await.unwrap();

    let day = Duration::from_secs(86_400);
    let policy = Retention::POLICY;
    // Account 2 is active a year later.
    store
        .touch_account(2, t0.saturating_add(policy.audit))
        .await
        .unwrap();

    assert_eq!(
        store
            .sweep_expired(t0.saturating_add(policy.audit - day))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .sweep_expired(t0.saturating_add(policy.audit))
            .await
            .unwrap(),
        1,
        "the audit entry goes after a year"
    );
    let two_years = t0.saturating_add(policy.inactive_accounts);
    assert_eq!(store.sweep_expired(two_years).await.unwrap(), 1);
    assert!(store.account(1).await.unwrap().is_none());
    assert!(store.account(2).await.unwrap().is_some());
    assert_eq!(
        store.check_consistency().await.unwrap(),
        Vec::<String>::new()
    );
}

/// The periods come from configuration: a store opened with shorter ones purges each kind
/// of record at its own configured deadline (time moved by the caller), not the policy's.
#[tokio::test]
async fn configured_retention_periods_are_what_the_sweeper_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(86_400);
    let retention = Retention {
        audit: 10 * day,
        tickets: 20 * day,
        inactive_accounts: 30 * day,
        cases: 40 * day,
        billing_inbox: 50 * day,
        ..Retention::POLICY
    };
    let store = EmbeddedStore::open_with(dir.path(), retention).unwrap();
    let t0 = Timestamp::now();
    let case = store
        .create_case(&crate::Case {
            guild_id: 5,
            number: 0,
            action: "warn".into(),
            moderator_id: 2,
            target_id: Some(1),
            channel_id: None,
            reason: String::new(),
            duration_ms: None,
            at: t0,
        })
        .await
        .unwrap();
    let event = crate::InboxEvent {
        event_id: "evt_1".into(),
        event_type: "subscription.updated".into(),
        occurred_at: t0,
        received_at: t0,
        body: Some("{}".into()),
        outcome: None,
        user_id: Some(1),
    };
    store.receive_event(&event).await.unwrap();
    store.finish_event("evt_1", "applied").await.unwrap();
    store.touch_account(1, t0).await.unwrap();
    store
        .append_audit(&[AuditEntry {
            guild_id: 5,
            at: t0,
            id: 1,
            actor_id: 1,
            target_id: None,
            action: "config.set".into(),
            details: String::new(),
        }])
        .await
        .unwrap();
    store
        .put_ticket(&crate::Ticket {
            guild_id: 5,
            ticket_id: 9,
            opener_id: 1,
            channel_id: 3,
            subject: "help".into(),
            category: None,
            opened_at: t0,
            closed_at: None,
            claimed_at: None,
            first_response_at: None,
            close_reason: None,
            place: crate::TicketPlace::Thread,
        })
        .await
        .unwrap();
    let at = |days: u32| t0.saturating_add(day * days);
    assert_eq!(store.sweep_expired(at(9)).await.unwrap(), 0);
    assert_eq!(
        store.sweep_expired(at(10)).await.unwrap(),
        1,
        "audit at 10 days"
    );
    assert_eq!(store.sweep_expired(at(19)).await.unwrap(), 0);
    assert_eq!(
        store.sweep_expired(at(20)).await.unwrap(),
        1,
        "ticket at 20 days"
    );
    assert!(store.ticket(5, 9).await.unwrap().is_none());
    assert!(store.account(1).await.unwrap().is_some());
    assert_eq!(
        store.sweep_expired(at(30)).await.unwrap(),
        1,
        "account at 30 days"
    );
    assert!(store.account(1).await.unwrap().is_none());
    assert_eq!(store.sweep_expired(at(39)).await.unwrap(), 0);
    assert_eq!(
        store.sweep_expired(at(40)).await.unwrap(),
        1,
        "case at 40 days"
    );
    assert!(store.case(5, case).await.unwrap().is_none());
    assert_eq!(store.sweep_expired(at(49)).await.unwrap(), 0);
    assert_eq!(
        store.sweep_expired(at(50)).await.unwrap(),
        1,
        "processed webhook event at 50 days"
    );
    assert!(store.inbox_event("evt_1").await.unwrap().is_none());
    assert_eq!(
        store.check_consistency().await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_backup_taken_under_writes_is_consistent_and_restores_into_a_free_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for guild in 1..=20 {
        store
            .save(guild, 0, &custom(&format!("g{guild}-")))
            .await
            .unwrap();
    }
    // A writer keeps committing (config, its history and indexes in one transaction each)
    // while the backup reads.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for version in 0..40 {
                store
                    .save(7, version + 1, &custom(&format!("v{version}")))
                    .await
                    .unwrap();
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    let backup = out.path().join("protonn.backup");
    let rows = store.backup(&backup).await.unwrap();
    writer.await.unwrap();
    assert!(rows >= 40, "{rows} rows");

    let again = store.backup(&backup).await.unwrap_err();
    assert!(matches!(again, StorageError::Invalid(_)), "{again}");

    // Restoring over the directory in use is refused, and changes nothing.
    let refused = EmbeddedStore::restore(&backup, dir.path()).unwrap_err();
    assert!(matches!(refused, StorageError::Locked(_)), "{refused}");
    assert_eq!(store.load(7).await.unwrap().unwrap().version, 41);

    let restored_dir = tempfile::tempdir().unwrap();
    let fresh = EmbeddedStore::open(restored_dir.path()).unwrap();
    fresh.save(99, 0, &custom("gone-")).await.unwrap();
    drop(fresh);
    assert_eq!(
        EmbeddedStore::restore(&backup, restored_dir.path()).unwrap(),
        rows
    );
    let restored = EmbeddedStore::open(restored_dir.path()).unwrap();
    for guild in (1..=20).filter(|&g| g != 7) {
        let config = restored.load(guild).await.unwrap().unwrap();
        assert_eq!(config.config.prefix, format!("g{guild}-"));
    }
    // Guild 7 is as one commit left it: its config and history agree.
    let seven = restored.load(7).await.unwrap().unwrap();
    let history = restored.history(7).await.unwrap();
    assert_eq!(
        history.first().map(|h| h.version),
        Some(seven.version),
        "{history:?}"
    );
    assert_eq!(
        restored.load(99).await.unwrap(),
        None,
        "the restore replaced the old store"
    );
    assert_eq!(
        restored.check_consistency().await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_backup_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.save(3, 0, &custom("%")).await.unwrap();
    drop(store);
    let junk = dir.path().join("junk.backup");
    std::fs::write(&junk, b"not a database").unwrap();
    let err = EmbeddedStore::restore(&junk, dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::Invalid(_)), "{err}");
    let missing = EmbeddedStore::restore(&dir.path().join("none"), dir.path()).unwrap_err();
    assert!(matches!(missing, StorageError::Invalid(_)), "{missing}");
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.load(3).await.unwrap().unwrap().config.prefix, "%");
}
