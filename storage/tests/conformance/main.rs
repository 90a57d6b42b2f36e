//! One behaviour, two backends: every case runs against the embedded store, and against a
//! real ScyllaDB cluster when `SCYLLA_URI` is set (`cargo test -p protonn-storage -- --ignored`),
//! each Scylla case in a keyspace of its own.

#[macro_use]
mod cases;
#[macro_use]
mod moderation;
#[macro_use]
mod web_sessions;
#[macro_use]
mod premium;
#[macro_use]
mod announcements;
#[macro_use]
mod backfill;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                    super::cases::$case(store.clone()).await;
                    assert_eq!(store.check_consistency().await.unwrap(), Vec::<String>::new());
                }
            )*
        }

        mod scylla {
            $(
                #[tokio::test]
                #[ignore = "needs SCYLLA_URI"]
                async fn $case() {
                    let (store, keyspace) = super::scylla_store(stringify!($case)).await;
                    super::cases::$case(store.clone()).await;
                    store.drop_keyspace(&keyspace).await.unwrap();
                }
            )*
        }
    };
}

/// A store in a fresh keyspace on the cluster at `SCYLLA_URI`.
async fn scylla_store(case: &str) -> (protonn_storage::ScyllaStore, String) {
    let uri = std::env::var("SCYLLA_URI").expect("SCYLLA_URI is set for the Scylla suite");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let keyspace = format!(
        "t_{}_{}",
        &case[..case.len().min(20)],
        nanos % 1_000_000_000_000
    );
    let config = protonn_storage::ScyllaConfig::new(
        uri.split(',').map(str::to_owned).collect(),
        keyspace.clone(),
    );
    let store = protonn_storage::ScyllaStore::connect(&config)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, keyspace)
}

conformance_cases!(conformance);

macro_rules! web_conformance {
    ($($case:ident),* $(,)?) => {
        mod web_embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                    super::web_sessions::$case(store.clone()).await;
                    assert_eq!(store.check_consistency().await.unwrap(), Vec::<String>::new());
                }
            )*
        }

        mod web_scylla {
            $(
                #[tokio::test]
                #[ignore = "needs SCYLLA_URI"]
                async fn $case() {
                    let (store, keyspace) = super::scylla_store(stringify!($case)).await;
                    super::web_sessions::$case(store.clone()).await;
                    store.drop_keyspace(&keyspace).await.unwrap();
                }
            )*
        }
    };
}

web_session_cases!(web_conformance);

macro_rules! moderation_conformance {
    ($($case:ident),* $(,)?) => {
        mod moderation_embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                    super::moderation::$case(store.clone()).await;
                    assert_eq!(store.check_consistency().await.unwrap(), Vec::<String>::new());
                }
            )*
        }

        mod moderation_scylla {
            $(
                #[tokio::test]
                #[ignore = "needs SCYLLA_URI"]
                async fn $case() {
                    let (store, keyspace) = super::scylla_store(stringify!($case)).await;
                    super::moderation::$case(store.clone()).await;
                    store.drop_keyspace(&keyspace).await.unwrap();
                }
            )*
        }
    };
}

moderation_cases!(moderation_conformance);

macro_rules! premium_conformance {
    ($($case:ident),* $(,)?) => {
        mod premium_embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                    super::premium::$case(store.clone()).await;
                    assert_eq!(store.check_consistency().await.unwrap(), Vec::<String>::new());
                }
            )*
        }

        mod premium_scylla {
            $(
                #[tokio::test]
                #[ignore = "needs SCYLLA_URI"]
                async fn $case() {
                    let (store, keyspace) = super::scylla_store(stringify!($case)).await;
                    super::premium::$case(store.clone()).await;
                    store.drop_keyspace(&keyspace).await.unwrap();
                }
            )*
        }
    };
}

premium_cases!(premium_conformance);

macro_rules! announcement_conformance {
    ($($case:ident),* $(,)?) => {
        mod announcements_embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                    super::announcements::$case(store.clone()).await;
                    assert_eq!(store.check_consistency().await.unwrap(), Vec::<String>::new());
                }
            )*
        }

        mod announcements_scylla {
            $(
                #[tokio::test]
                #[ignore = "needs SCYLLA_URI"]
                async fn $case() {
                    let (store, keyspace) = super::scylla_store(stringify!($case)).await;
                    super::announcements::$case(store.clone()).await;
                    store.drop_keyspace(&keyspace).await.unwrap();
                }
            )*
        }
    };
}

announcement_cases!(announcement_conformance);

/// The privacy backfill: the rows are written, stripped to their old form with the store
/// closed (redb) or behind its back (ScyllaDB), then the case runs.
macro_rules! backfill_conformance {
    ($($case:ident),* $(,)?) => {
        mod backfill_embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let rows = {
                        let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                        super::backfill::write_rows(&store).await
                    };
                    super::backfill::strip_embedded(dir.path());
                    let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
                    assert!(!store.check_consistency().await.unwrap().is_empty());
                    super::backfill::$case(store.clone(), rows).await;
                    assert_eq!(store.check_consistency().await.unwrap(), Vec::<String>::new());
                    super::backfill::backfilled_rows_expire_on_the_sweepers_clock(&store).await;
                }
            )*
        }

        mod backfill_scylla {
            $(
                #[tokio::test]
                #[ignore = "needs SCYLLA_URI"]
                async fn $case() {
                    let (store, keyspace) = super::scylla_store(stringify!($case)).await;
                    let rows = super::backfill::write_rows(&store).await;
                    super::backfill::strip_scylla(&keyspace, &rows).await;
                    super::backfill::$case(store.clone(), rows).await;
                    store.drop_keyspace(&keyspace).await.unwrap();
                }
            )*
        }
    };
}

backfill_cases!(backfill_conformance);

#[tokio::test]
async fn a_backfill_resumes_after_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = protonn_storage::EmbeddedStore::open(dir.path()).unwrap();
        backfill::write_rows(&store).await;
    }
    backfill::strip_embedded(dir.path());
    backfill::a_backfill_resumes_after_the_store_is_reopened(dir.path()).await;
}
