//! The storage conformance suite against the coordinator's store as a cluster node uses it:
//! every repository call over gRPC, answered by a leading coordinator's embedded store.

use std::time::Duration;

use protonn_cluster::{
    ClusterClient, ClusterToken, Coordinator, CoordinatorOptions, CoordinatorStore,
    DiscordEndpoint, RemoteStore,
};
use protonn_shard::BotToken;
use protonn_sim::{SimConfig, SimHandle, Simulator};
use protonn_storage::{BackfillTable, Case, DataRights, ModerationRepo, Timestamp};

#[macro_use]
#[path = "../../storage/tests/conformance/cases.rs"]
mod cases;
#[macro_use]
#[path = "../../storage/tests/conformance/web_sessions.rs"]
mod web_sessions;
#[macro_use]
#[path = "../../storage/tests/conformance/moderation.rs"]
mod moderation;
#[macro_use]
#[path = "../../storage/tests/conformance/announcements.rs"]
mod announcements;
#[macro_use]
#[path = "../../storage/tests/conformance/premium.rs"]
mod premium;

const TOKEN: &str = "remote-store-test";
/// Operator credentials, apart from the nodes' token.
const OPERATOR_TOKEN: &str = "operator-token";

/// What must outlive the store: the simulator the coordinator asked for gateway settings,
/// the coordinator and its data directory.
struct Leader {
    /// The coordinator's address, as `--coordinator` takes it.
    coordinator: String,
    _sim: SimHandle,
    _coordinator: Coordinator,
    _dir: tempfile::TempDir,
}

async fn remote_store() -> (RemoteStore, Leader) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(SimConfig::default(), listener)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(CoordinatorOptions {
        name: "coordinator-0".to_owned(),
        heartbeat_interval: Duration::from_millis(100),
        failure_timeout: Duration::from_secs(3),
        formation_grace: Duration::ZERO,
        lease_ttl: Duration::from_secs(1),
        ..CoordinatorOptions::loopback(
            DiscordEndpoint::Simulator(sim.rest_proxy()),
            BotToken::new(sim.config().token.clone()),
            ClusterToken::new(TOKEN).unwrap(),
            ClusterToken::new(OPERATOR_TOKEN).unwrap(),
            CoordinatorStore::Embedded(dir.path().to_owned()),
        )
    })
    .await
    .unwrap();
    let coordinators = vec![format!("http://{}", coordinator.addr())];
    // The conformance suite touches the lease and the cluster tables: operator credentials.
    let token = ClusterToken::new(OPERATOR_TOKEN).unwrap();
    // Calls to a coordinator that does not lead yet are retried, but waiting here keeps
    // each case's own timing clean.
    let client = ClusterClient::new(coordinators.clone(), token.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.status().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator does not lead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = Leader {
        coordinator: coordinators[0].clone(),
        _sim: sim,
        _coordinator: coordinator,
        _dir: dir,
    };
    (RemoteStore::connect(coordinators, token, None), leader)
}

macro_rules! over_grpc {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _leader) = remote_store().await;
                cases::$case(store).await;
            }
        )*
    };
}

conformance_cases!(over_grpc);

/// The dashboard's sessions, which `protonn web` keeps in the leader's store when the
/// cluster has no ScyllaDB.
macro_rules! web_sessions_over_grpc {
    ($($case:ident),* $(,)?) => {
        mod web {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _leader) = super::remote_store().await;
                    super::web_sessions::$case(store).await;
                }
            )*
        }
    };
}

web_session_cases!(web_sessions_over_grpc);

/// Moderation cases and durable timers, which nodes keep in the leader's store when the
/// cluster has no ScyllaDB.
macro_rules! moderation_over_grpc {
    ($($case:ident),* $(,)?) => {
        mod moderation_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _leader) = super::remote_store().await;
                    super::moderation::$case(store).await;
                }
            )*
        }
    };
}

moderation_cases!(moderation_over_grpc);

/// Premium's inbox and slots, which `protonn web` keeps in the leader's store when the
/// cluster has no ScyllaDB.
macro_rules! premium_over_grpc {
    ($($case:ident),* $(,)?) => {
        mod premium_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _leader) = super::remote_store().await;
                    super::premium::$case(store).await;
                }
            )*
        }
    };
}

premium_cases!(premium_over_grpc);

/// Announcements, which nodes claim and decide in the leader's store when the cluster has
/// no ScyllaDB.
macro_rules! announcements_over_grpc {
    ($($case:ident),* $(,)?) => {
        mod announcement_cases {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _leader) = super::remote_store().await;
                    super::announcements::$case(store).await;
                }
            )*
        }
    };
}

announcement_cases!(announcements_over_grpc);

/// `protonn privacy backfill [ARGS]` against the leader with the operators' token, from a
/// directory without a store: its output, and whether it succeeded.
async fn backfill_cli(leader: &Leader, args: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_protonn"))
        .args(["privacy", "backfill", "--coordinator", &leader.coordinator])
        .args(args)
        .current_dir(dir.path())
        .env_remove("PROTONN_CLUSTER_TOKEN")
        .env_remove("PROTONN_WEB_TOKEN")
        .env("PROTONN_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The operators' backfill through the coordinator: a case past its retention that the
/// sweeper never saw is deleted, a live one kept; a run stopped after a page is taken up
/// by the next from the stored cursor; once complete, a run does nothing and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protonn_privacy_backfill_walks_every_table_once_through_the_coordinator() {
    let (store, leader) = remote_store().await;
    let guild = 881_027_316_262_879_232;
    let day = Duration::from_secs(86_400);
    let case = |at: Timestamp| Case {
        guild_id: guild,
        number: 0,
        action: "warn".into(),
        moderator_id: 731_918_266_405_175_297,
        target_id: Some(613_004_512_977_338_369),
        channel_id: None,
        reason: "spam".into(),
        duration_ms: None,
        at,
    };
    let old = store
        .create_case(&case(Timestamp::now().saturating_sub(day * 400)))
        .await
        .unwrap();
    let live = store.create_case(&case(Timestamp::now())).await.unwrap();

    let (ok, said) = backfill_cli(&leader, &["--page-size", "0"]).await;
    assert!(
        !ok && said.contains("a backfill page is 1 to 10000 rows, not 0"),
        "{said}"
    );

    let (ok, said) = backfill_cli(&leader, &["--page-size", "1", "--max-pages", "2"]).await;
    assert!(ok, "{said}");
    assert!(said.contains("transcripts: 0 rows walked"), "{said}");
    assert!(
        said.contains(
            "cases: 1 rows walked, 0 given index entries or expiry, 1 deleted past retention\n"
        ),
        "{said}"
    );
    assert!(said.contains("stopped after 2 pages"), "{said}");
    let cases = store.backfill(BackfillTable::Cases, 1, Timestamp::now());
    let progress = cases.await.unwrap();
    assert_eq!((progress.rows, progress.done()), (2, false), "{progress:?}");

    let (ok, said) = backfill_cli(&leader, &["--pause-ms", "0"]).await;
    assert!(ok, "{said}");
    assert!(
        said.contains(
            "cases: 2 rows walked, 0 given index entries or expiry, 1 deleted past retention; done"
        ),
        "{said}"
    );
    assert!(said.contains("timers: 0 rows walked"), "{said}");
    assert!(said.contains("billing_inbox: 0 rows walked"), "{said}");
    assert!(said.contains("backfill complete"), "{said}");
    assert_eq!(store.case(guild, old).await.unwrap(), None);
    assert!(store.case(guild, live).await.unwrap().is_some());

    // The data, without the coordinator's lease, which it renews meanwhile.
    let data = || async {
        let rows = store.dump_rows().await.unwrap();
        rows.into_iter()
            .filter(|row| row.table != "leases")
            .collect::<Vec<_>>()
    };
    let dump = data().await;
    let (ok, said) = backfill_cli(&leader, &[]).await;
    assert!(ok, "{said}");
    assert_eq!(
        said.trim(),
        "the backfill was complete already: nothing to do"
    );
    assert_eq!(data().await, dump);
}
