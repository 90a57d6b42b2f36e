use std::time::Duration;

use super::*;
use crate::{AccountRepo, DataRights};

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
