//! The shard count is fixed in storage when the cluster forms: a later leader takes the
//! stored count (not Discord's recommendation of the day), and a configured count that
//! disagrees with it is refused.

use std::path::Path;
use std::time::Duration;

use protonn_cluster::{
    ClusterClient, ClusterToken, Coordinator, CoordinatorError, CoordinatorOptions,
    CoordinatorStore, DiscordEndpoint,
};
use protonn_shard::BotToken;
use protonn_sim::{SimConfig, SimHandle, Simulator};

const TOKEN: &str = "formation-test";
/// Operator credentials, apart from the nodes' token.
const OPERATOR_TOKEN: &str = "operator-token";

async fn coordinator(sim: &SimHandle, dir: &Path, shards: Option<u32>) -> Coordinator {
    Coordinator::start(CoordinatorOptions {
        shards,
        heartbeat_interval: Duration::from_millis(100),
        failure_timeout: Duration::from_secs(3),
        formation_grace: Duration::ZERO,
        lease_ttl: Duration::from_secs(1),
        ..CoordinatorOptions::loopback(
            DiscordEndpoint::Simulator(sim.rest_proxy()),
            BotToken::new(sim.config().token.clone()),
            ClusterToken::new(TOKEN).unwrap(),
            ClusterToken::new(OPERATOR_TOKEN).unwrap(),
            CoordinatorStore::Embedded(dir.to_owned()),
        )
    })
    .await
    .unwrap()
}

/// The shard count the leading `coordinator` works with, once it leads.
async fn led_shards(coordinator: &Coordinator) -> usize {
    let client = ClusterClient::new(
        vec![format!("http://{}", coordinator.addr())],
        ClusterToken::new(TOKEN).unwrap(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.status().await {
            Ok(status) => return status.shards.len(),
            Err(status) => assert!(
                tokio::time::Instant::now() < deadline,
                "the coordinator does not lead: {status}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_keeps_the_shard_count_the_cluster_formed_with() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(SimConfig::default(), listener)
        .await
        .unwrap();
    let recommended = sim.config().shards as usize;
    let formed_with = sim.config().shards + 2;
    let dir = tempfile::tempdir().unwrap();

    // Formed with a configured count other than Discord's recommendation.
    let first = coordinator(&sim, dir.path(), Some(formed_with)).await;
    assert_eq!(led_shards(&first).await, formed_with as usize);
    first.run_until(async {}).await.unwrap();

    // The next leader, with no count configured, keeps it: Discord's is not read again.
    let second = coordinator(&sim, dir.path(), None).await;
    let led = led_shards(&second).await;
    assert_ne!(led, recommended);
    assert_eq!(led, formed_with as usize);
    second.run_until(async {}).await.unwrap();

    // A leader configured with another count refuses to lead, naming both.
    let third = coordinator(&sim, dir.path(), Some(formed_with + 1)).await;
    let refused = tokio::time::timeout(Duration::from_secs(30), third.wait())
        .await
        .expect("the coordinator stops");
    match refused {
        Err(err @ CoordinatorError::ShardCountChanged { configured, stored }) => {
            assert_eq!((configured, stored), (formed_with + 1, formed_with));
            assert!(err.to_string().contains("resharding"), "{err}");
        }
        other => panic!("a changed shard count must be refused: {other:?}"),
    }

    // A configured count equal to the stored one leads.
    let fourth = coordinator(&sim, dir.path(), Some(formed_with)).await;
    assert_eq!(led_shards(&fourth).await, formed_with as usize);
    fourth.run_until(async {}).await.unwrap();
    sim.shutdown().await;
}

/// `protonn reshard`'s API: operator credentials only; a count that is not a multiple of the
/// current one, or a plan whose new set would spend the identify budget kept for recoveries,
/// is refused with nothing recorded; a started one is
/// recorded, survives a change of leader and is aborted with the shard count unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_is_planned_within_the_identify_budget_and_outlives_its_leader() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // 40 session starts a day, 2 of them (5 %) kept for recoveries: 38 for a new set.
    let config = SimConfig {
        session_start_total: 40,
        max_concurrency: 1,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, listener).await.unwrap();
    let shards = sim.config().shards;
    let dir = tempfile::tempdir().unwrap();
    let first = coordinator(&sim, dir.path(), None).await;
    led_shards(&first).await;
    let address = vec![format!("http://{}", first.addr())];
    let operator = ClusterClient::new(address.clone(), ClusterToken::new(OPERATOR_TOKEN).unwrap());
    let node = ClusterClient::new(address, ClusterToken::new(TOKEN).unwrap());

    assert_eq!(
        node.reshard(shards * 2).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let none = operator.reshard_progress().await.unwrap();
    assert_eq!((none.known, none.shard_count), (false, shards));
    // Each new shard's guilds must come from one old shard.
    let refused = operator.reshard(shards + shards / 2).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("multiple"),
        "{}",
        refused.message()
    );
    let refused = operator.reshard(shards * 10).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("38 are left"),
        "{}",
        refused.message()
    );
    assert!(!operator.reshard_progress().await.unwrap().known);

    let started = operator.reshard(shards * 2).await.unwrap();
    assert_eq!(
        (started.from, started.to, started.phase.as_str()),
        (shards, shards * 2, "running")
    );
    // One IDENTIFY per 5 s window with max_concurrency 1.
    assert_eq!(started.identify_floor_ms, u64::from(shards * 2) * 5_000);
    first.run_until(async {}).await.unwrap();

    let second = coordinator(&sim, dir.path(), None).await;
    led_shards(&second).await;
    let operator = ClusterClient::new(
        vec![format!("http://{}", second.addr())],
        ClusterToken::new(OPERATOR_TOKEN).unwrap(),
    );
    let after = operator.reshard_progress().await.unwrap();
    assert_eq!((after.to, after.phase.as_str()), (shards * 2, "running"));
    let aborted = operator.abort_reshard().await.unwrap();
    assert_eq!(
        (aborted.phase.as_str(), aborted.shard_count),
        ("aborted", shards)
    );
    assert_eq!(led_shards(&second).await, shards as usize);
    second.run_until(async {}).await.unwrap();
    sim.shutdown().await;
}
