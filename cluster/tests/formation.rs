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
