//! Error paths of the Scylla backend against `scylla-proxy` in dry mode: a fake CQL node on
//! loopback that completes the handshake, answers PREPARE with forged metadata, and fails
//! EXECUTE with the error under test. No database is involved, so these run everywhere.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protonn_storage::{
    GuildConfig, GuildConfigRepo, ScyllaConfig, ScyllaStore, StorageError, UsageCount, UsageRepo,
};
use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule,
    ResponseFrame, ResponseOpcode, RunningProxy,
};
use tokio::sync::mpsc;

/// CQL type ids (protocol v4, section 4.2.5.2).
const BIGINT: u16 = 0x0002;
const COUNTER: u16 = 0x0005;
const INT: u16 = 0x0009;
const VARCHAR: u16 = 0x000D;

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_u16(u16::try_from(s.len()).unwrap());
    buf.put_slice(s.as_bytes());
}

/// A RESULT/Prepared body for a statement with these bind markers and no result metadata.
fn prepared_body(markers: &[(&str, u16)]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0x0004); // Prepared
    buf.put_u16(4);
    buf.put_slice(b"stmt");
    buf.put_i32(0x0001); // global table spec
    buf.put_i32(i32::try_from(markers.len()).unwrap());
    buf.put_i32(1); // partition key: the first marker
    buf.put_u16(0);
    put_string(&mut buf, "protonn");
    put_string(&mut buf, "t");
    for (name, type_id) in markers {
        put_string(&mut buf, name);
        buf.put_u16(*type_id);
    }
    buf.put_i32(0x0004); // result metadata: no metadata
    buf.put_i32(0);
    buf.freeze()
}

type Feedback = mpsc::UnboundedReceiver<(RequestFrame, Option<u16>)>;

/// A dry-mode node whose EXECUTEs all get `failure`; returns the proxy, its address and a
/// receiver that sees every EXECUTE that reached it.
async fn fake_node(
    markers: &'static [(&'static str, u16)],
    failure: RequestReaction,
) -> (RunningProxy, SocketAddr, Feedback) {
    // Port 0 cannot be handed to the proxy (it does not report the port it bound), so take
    // a free port from the OS and release it just before the proxy binds it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let rules = vec![
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Options),
            RequestReaction::forge_response(Arc::new(|frame: RequestFrame| {
                ResponseFrame::forged_supported(frame.params, &HashMap::new()).unwrap()
            })),
        ),
        RequestRule(
            Condition::or(
                Condition::RequestOpcode(RequestOpcode::Startup),
                Condition::RequestOpcode(RequestOpcode::Register),
            ),
            RequestReaction::forge_response(Arc::new(|frame: RequestFrame| {
                ResponseFrame::forged_ready(frame.params)
            })),
        ),
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Prepare),
            RequestReaction::forge_response(Arc::new(move |frame: RequestFrame| {
                ResponseFrame::new(
                    frame.params.for_response(),
                    ResponseOpcode::Result,
                    prepared_body(markers),
                )
            })),
        ),
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Execute),
            failure.with_feedback_when_performed(tx),
        ),
        // Topology and schema queries fail; the driver goes on with what it knows.
        RequestRule(
            Condition::RequestOpcode(RequestOpcode::Query),
            RequestReaction::forge().server_error(),
        ),
    ];
    let proxy = Proxy::builder()
        .with_node(
            Node::builder()
                .proxy_address(addr)
                .request_rules(rules)
                .build_dry_mode(),
        )
        .build()
        .run()
        .await
        .unwrap();
    (proxy, addr, rx)
}

async fn store(addr: SocketAddr, request_timeout: Duration) -> ScyllaStore {
    let mut config = ScyllaConfig::new(vec![addr.to_string()], "protonn".into());
    config.request_timeout = request_timeout;
    config.connection_timeout = Duration::from_secs(5);
    ScyllaStore::connect(&config).await.unwrap()
}

fn executes(feedback: &mut Feedback) -> usize {
    std::iter::from_fn(|| feedback.try_recv().ok()).count()
}

const LOAD: &[(&str, u16)] = &[("guild_id", BIGINT)];

#[tokio::test]
async fn overload_on_an_idempotent_read_is_retried_a_bounded_number_of_times() {
    let (proxy, addr, mut seen) = fake_node(LOAD, RequestReaction::forge().overloaded()).await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store.load(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                kind: "overloaded",
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(executes(&mut seen), 3);
    assert!(
        err.to_string()
            .starts_with("database temporarily unavailable (overloaded)")
    );
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn server_timeouts_and_unavailability_are_named() {
    for (reaction, kind) in [
        (RequestReaction::forge().read_timeout(), "timeout"),
        (RequestReaction::forge().unavailable(), "unavailable"),
        (RequestReaction::forge().is_bootstrapping(), "unavailable"),
    ] {
        let (proxy, addr, mut seen) = fake_node(LOAD, reaction).await;
        let store = store(addr, Duration::from_secs(10)).await;
        match store.load(1).await {
            Err(StorageError::Unavailable {
                kind: got,
                attempts: 3,
                ..
            }) => assert_eq!(got, kind),
            other => panic!("expected {kind}, got {other:?}"),
        }
        assert_eq!(executes(&mut seen), 3, "{kind}");
        let _ = proxy.finish().await;
    }
}

#[tokio::test]
async fn a_syntax_error_is_not_retried_and_not_transient() {
    let (proxy, addr, mut seen) = fake_node(LOAD, RequestReaction::forge().invalid()).await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store.load(1).await.unwrap_err();
    assert!(matches!(err, StorageError::Database(_)), "{err}");
    assert!(!err.is_transient());
    assert_eq!(executes(&mut seen), 1);
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn counter_updates_are_never_retried() {
    const ADD: &[(&str, u16)] = &[
        ("count", COUNTER),
        ("guild_id", BIGINT),
        ("day", INT),
        ("command", VARCHAR),
    ];
    let (proxy, addr, mut seen) = fake_node(ADD, RequestReaction::forge().overloaded()).await;
    let store = store(addr, Duration::from_secs(10)).await;
    let delta = UsageCount {
        guild_id: 1,
        day: 20_000,
        command: "ping".into(),
        count: 3,
    };
    let err = store.add_usage(&[delta]).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                kind: "overloaded",
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        executes(&mut seen),
        1,
        "a retried counter update could count twice"
    );
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn lwt_writes_are_never_retried() {
    const INSERT: &[(&str, u16)] = &[("guild_id", BIGINT), ("version", BIGINT), ("doc", VARCHAR)];
    let (proxy, addr, mut seen) = fake_node(INSERT, RequestReaction::forge().write_timeout()).await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store.save(1, 0, &GuildConfig::default()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                kind: "timeout",
                attempts: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(executes(&mut seen), 1);
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn a_silent_node_hits_the_client_deadline() {
    let (proxy, addr, mut seen) = fake_node(LOAD, RequestReaction::drop_frame()).await;
    let store = store(addr, Duration::from_millis(300)).await;
    let err = store.load(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Unavailable {
                kind: "timeout",
                ..
            }
        ),
        "{err}"
    );
    assert!(executes(&mut seen) >= 1);
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn nothing_listening_is_a_connection_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = ScyllaConfig::new(vec![addr.to_string()], "protonn".into());
    config.connection_timeout = Duration::from_secs(2);
    let err = ScyllaStore::connect(&config).await.unwrap_err();
    assert!(matches!(err, StorageError::Connection(_)), "{err}");
    let bad = ScyllaConfig::new(vec![addr.to_string()], "Bad-Name".into());
    assert!(matches!(
        ScyllaStore::connect(&bad).await,
        Err(StorageError::Invalid(_))
    ));
}
