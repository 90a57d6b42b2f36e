//! Conformance cases of the dashboard's sessions, run against both backends and, by
//! `cluster/tests/remote_store.rs`, against the leader's store over gRPC.

use std::time::Duration;

use protonn_storage::{Timestamp, WebSession, WebSessionRepo};

const USER: u64 = 731_918_266_405_175_297;
const OTHER_USER: u64 = 613_004_512_977_338_369;
const HOUR: Duration = Duration::from_secs(3_600);

fn session(id: &str, user_id: Option<u64>, now: Timestamp) -> WebSession {
    WebSession {
        id: id.to_owned(),
        user_id,
        created_at: now,
        last_seen: now,
        expires_at: now.saturating_add(HOUR),
        csrf_token: format!("csrf-{id}"),
        login_state: None,
        return_to: None,
        sealed_tokens: None,
        label: "test browser".into(),
    }
}

pub(crate) async fn web_sessions_expire_and_list_by_user(store: impl WebSessionRepo) {
    let now = Timestamp::now();
    let a = session("aa", Some(USER), now);
    let b = session("bb", Some(USER), now.saturating_add(Duration::from_secs(1)));
    let other = session("cc", Some(OTHER_USER), now);
    let anonymous = session("dd", None, now);
    for s in [&a, &b, &other, &anonymous] {
        store.put_web_session(s).await.unwrap();
    }
    assert_eq!(store.web_session("aa", now).await.unwrap(), Some(a.clone()));
    assert_eq!(store.web_session("zz", now).await.unwrap(), None);
    // Past its end a session is gone, whatever the backend keeps on disk.
    let later = now.saturating_add(HOUR * 2);
    assert_eq!(store.web_session("aa", later).await.unwrap(), None);
    assert!(store.web_sessions_of(USER, later).await.unwrap().is_empty());

    let listed = store.web_sessions_of(USER, now).await.unwrap();
    assert_eq!(listed, vec![a.clone(), b.clone()]);

    // Logging in moves an anonymous session to its user.
    let logged_in = WebSession {
        user_id: Some(OTHER_USER),
        ..anonymous.clone()
    };
    store.put_web_session(&logged_in).await.unwrap();
    assert_eq!(
        store.web_sessions_of(OTHER_USER, now).await.unwrap().len(),
        2
    );

    store.delete_web_session("aa").await.unwrap();
    store.delete_web_session("aa").await.unwrap();
    assert_eq!(store.web_session("aa", now).await.unwrap(), None);
    assert_eq!(store.web_sessions_of(USER, now).await.unwrap(), vec![b]);

    assert_eq!(store.delete_web_sessions_of(OTHER_USER).await.unwrap(), 2);
    assert_eq!(store.web_session("cc", now).await.unwrap(), None);
    assert_eq!(store.web_session("dd", now).await.unwrap(), None);
    assert_eq!(
        store.web_session("bb", now).await.unwrap().unwrap().id,
        "bb"
    );
}

pub(crate) async fn a_login_state_is_used_once(store: impl WebSessionRepo) {
    let now = Timestamp::now();
    let pending = WebSession {
        login_state: Some("state-hash".into()),
        return_to: Some("/guilds".into()),
        ..session("ee", None, now)
    };
    store.put_web_session(&pending).await.unwrap();
    let done = WebSession {
        user_id: Some(USER),
        login_state: None,
        return_to: None,
        ..pending.clone()
    };
    assert!(store.replace_web_session(&pending, &done).await.unwrap());
    // The same state presented again finds the session changed: refused, nothing written.
    let replay = WebSession {
        user_id: Some(OTHER_USER),
        ..done.clone()
    };
    assert!(!store.replace_web_session(&pending, &replay).await.unwrap());
    assert_eq!(
        store.web_session("ee", now).await.unwrap(),
        Some(done.clone())
    );
    assert_eq!(store.web_sessions_of(USER, now).await.unwrap(), vec![done]);
    assert!(
        store
            .web_sessions_of(OTHER_USER, now)
            .await
            .unwrap()
            .is_empty()
    );
    // A vanished session is not resurrected.
    store.delete_web_session("ee").await.unwrap();
    assert!(!store.replace_web_session(&pending, &replay).await.unwrap());
    assert_eq!(store.web_session("ee", now).await.unwrap(), None);
}

pub(crate) async fn expired_web_sessions_are_swept(store: impl WebSessionRepo) {
    let now = Timestamp::now();
    let short = WebSession {
        expires_at: now.saturating_add(Duration::from_secs(1)),
        ..session("ff", Some(USER), now)
    };
    let long = session("gg", Some(USER), now);
    store.put_web_session(&short).await.unwrap();
    store.put_web_session(&long).await.unwrap();
    store
        .sweep_web_sessions(now.saturating_add(Duration::from_secs(2)))
        .await
        .unwrap();
    let after = now.saturating_add(Duration::from_secs(2));
    assert_eq!(store.web_session("ff", after).await.unwrap(), None);
    assert_eq!(
        store.web_sessions_of(USER, after).await.unwrap(),
        vec![long]
    );
}

macro_rules! web_session_cases {
    ($run:ident) => {
        $run!(
            web_sessions_expire_and_list_by_user,
            a_login_state_is_used_once,
            expired_web_sessions_are_swept,
        );
    };
}
