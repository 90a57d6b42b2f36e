//! Mutual TLS on the cluster's gRPC: only peers with a certificate of the cluster's CA get
//! through, and the token is still required on top.

use std::time::Duration;

use protonn_cluster::{
    ClusterClient, ClusterTls, ClusterToken, Coordinator, CoordinatorOptions, CoordinatorStore,
    DiscordEndpoint,
};
use protonn_shard::BotToken;
use protonn_sim::{SimConfig, Simulator};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const TOKEN: &str = "tls-test";
/// Operator credentials, apart from the nodes' token.
const OPERATOR_TOKEN: &str = "operator-token";

/// A CA and a function issuing certificates for loopback signed by it.
struct Authority {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Authority {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Certificate and key for a process on loopback, trusting this CA.
    fn issue(&self) -> ClusterTls {
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        ClusterTls {
            ca: self.ca.pem().into_bytes(),
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_peers_with_a_certificate_of_the_cluster_ca_get_in() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::start(SimConfig::default(), listener)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = Authority::new();
    let coordinator = Coordinator::start(CoordinatorOptions {
        tls: Some(cluster_ca.issue()),
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
    let https = vec![format!("https://127.0.0.1:{}", coordinator.addr().port())];
    let http = vec![format!("http://127.0.0.1:{}", coordinator.addr().port())];
    let token = || ClusterToken::new(TOKEN).unwrap();

    let member = ClusterClient::new(https.clone(), token()).with_tls(cluster_ca.issue());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Err(status) = member.status().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a member cannot get in: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stranger = ClusterClient::new(https.clone(), token()).with_tls(Authority::new().issue());
    assert!(
        stranger.status().await.is_err(),
        "a certificate of another CA is refused"
    );
    let plain = ClusterClient::new(http, token());
    assert!(plain.status().await.is_err(), "plain HTTP/2 is refused");
    let wrong_token =
        ClusterClient::new(https, ClusterToken::new("nope").unwrap()).with_tls(cluster_ca.issue());
    assert_eq!(
        wrong_token.status().await.unwrap_err().code(),
        tonic::Code::Unauthenticated,
        "the certificate does not replace the token"
    );
    sim.shutdown().await;
}
