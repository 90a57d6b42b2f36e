//! Error paths of the Scylla backend against `scylla-proxy` in dry mode: a fake CQL node on
//! loopback that completes the handshake, answers PREPARE with forged metadata, and fails
//! EXECUTE with the error under test. No database is involved, so these run everywhere.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protonn_storage::{
    AuditEntry, AuditRepo, ClusterRepo, DataRights, GuildConfig, GuildConfigRepo, Lease,
    Replication, ReshardPhase, Resharding, ScyllaConfig, ScyllaStore, StorageError, Timestamp,
    UsageCount, UsageRepo,
};
use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule,
    ResponseFrame, ResponseOpcode, RunningProxy,
};
use tokio::sync::mpsc;

/// CQL type ids (protocol v4, section 4.2.5.2).
const BIGINT: u16 = 0x0002;
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
    let (tx, rx) = mpsc::unbounded_channel();
    let mut rules = handshake();
    rules.extend([
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
    ]);
    let (proxy, addr) = run_node(rules).await;
    (proxy, addr, rx)
}

async fn store(addr: SocketAddr, request_timeout: Duration) -> ScyllaStore {
    let mut config = ScyllaConfig::new(vec![addr.to_string()], "protonn".into());
    config.request_timeout = request_timeout;
    config.connection_timeout = Duration::from_secs(5);
    // Speculation would add EXECUTEs on a slow machine and blur the counts below.
    config.speculative_delay = None;
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
async fn usage_flushes_are_plain_idempotent_writes_and_are_retried() {
    // The first statement of a flush (the day index) takes the forged metadata below; its
    // failure stops the flush before any row is written.
    const DAYS: &[(&str, u16)] = &[("guild_id", BIGINT), ("day", INT), ("[ttl]", INT)];
    let (proxy, addr, mut seen) = fake_node(DAYS, RequestReaction::forge().overloaded()).await;
    let store = store(addr, Duration::from_secs(10)).await;
    // A recent hour: a day past the usage retention would not be written at all.
    let delta = UsageCount {
        guild_id: 1,
        hour: protonn_storage::Timestamp::now().hour(),
        command: "ping".into(),
        channel_id: 5,
        count: 3,
    };
    let err = store.add_usage_flush(7, &[delta]).await.unwrap_err();
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
    assert_eq!(
        executes(&mut seen),
        3,
        "a flush keyed by its id can be retried without counting twice"
    );
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

// ---------------------------------------------------------------------------------------
// A scripted node: each statement the backend prepares gets its own prepared id, so the
// reaction to an EXECUTE can depend on the statement, and SELECTs can be answered with rows.

const BOOLEAN: u16 = 0x0004;

/// A statement the fake node knows: recognised in PREPARE by `text`, executed as `id`.
struct Stmt {
    text: &'static str,
    id: &'static str,
    markers: &'static [(&'static str, u16)],
}

fn prepared_with_id(id: &str, markers: &[(&str, u16)]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0x0004); // Prepared
    put_string(&mut buf, id);
    buf.put_i32(0x0001); // global table spec
    buf.put_i32(i32::try_from(markers.len()).unwrap());
    if markers.is_empty() {
        buf.put_i32(0);
    } else {
        buf.put_i32(1); // partition key: the first marker
        buf.put_u16(0);
    }
    put_string(&mut buf, "protonn");
    put_string(&mut buf, "t");
    for (name, type_id) in markers {
        put_string(&mut buf, name);
        buf.put_u16(*type_id);
    }
    buf.put_i32(0x0004); // result metadata: none (sent with each result)
    buf.put_i32(0);
    buf.freeze()
}

/// A cell's bytes.
enum Cell {
    Bool(bool),
    BigInt(i64),
    Text(&'static str),
}

/// A RESULT/Rows body.
fn rows_body(columns: &[(&str, u16)], rows: &[Vec<Cell>]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0x0002); // Rows
    buf.put_i32(0x0001); // global table spec
    buf.put_i32(i32::try_from(columns.len()).unwrap());
    put_string(&mut buf, "protonn");
    put_string(&mut buf, "t");
    for (name, type_id) in columns {
        put_string(&mut buf, name);
        buf.put_u16(*type_id);
    }
    buf.put_i32(i32::try_from(rows.len()).unwrap());
    for row in rows {
        for cell in row {
            match cell {
                Cell::Bool(v) => {
                    buf.put_i32(1);
                    buf.put_u8(u8::from(*v));
                }
                Cell::BigInt(v) => {
                    buf.put_i32(8);
                    buf.put_i64(*v);
                }
                Cell::Text(v) => {
                    buf.put_i32(i32::try_from(v.len()).unwrap());
                    buf.put_slice(v.as_bytes());
                }
            }
        }
    }
    buf.freeze()
}

fn void_body() -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i32(0x0001);
    buf.freeze()
}

fn answer(body: Bytes) -> RequestReaction {
    RequestReaction::forge_response(Arc::new(move |frame: RequestFrame| {
        ResponseFrame::new(
            frame.params.for_response(),
            ResponseOpcode::Result,
            body.clone(),
        )
    }))
}

fn executes_stmt(id: &str) -> Condition {
    Condition::RequestOpcode(RequestOpcode::Execute)
        .and(Condition::BodyContainsCaseSensitive(id.as_bytes().into()))
}

/// A node that prepares `statements`, reacts to requests by `rules` (first match wins) and
/// reports every EXECUTE, BATCH and QUERY it reacted to through the receiver.
async fn scripted_node(
    statements: &'static [Stmt],
    rules: Vec<(Condition, RequestReaction)>,
) -> (RunningProxy, SocketAddr, Feedback) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut all = handshake();
    for stmt in statements {
        let body = prepared_with_id(stmt.id, stmt.markers);
        all.push(RequestRule(
            Condition::RequestOpcode(RequestOpcode::Prepare).and(
                Condition::BodyContainsCaseSensitive(stmt.text.as_bytes().into()),
            ),
            RequestReaction::forge_response(Arc::new(move |frame: RequestFrame| {
                ResponseFrame::new(
                    frame.params.for_response(),
                    ResponseOpcode::Result,
                    body.clone(),
                )
            })),
        ));
    }
    for (condition, reaction) in rules {
        all.push(RequestRule(
            condition,
            reaction.with_feedback_when_performed(tx.clone()),
        ));
    }
    // Topology and schema queries fail; the driver goes on with what it knows. Anything
    // else unscripted fails at once (and is reported) instead of leaving the driver waiting.
    all.push(RequestRule(
        Condition::RequestOpcode(RequestOpcode::Query),
        RequestReaction::forge().server_error(),
    ));
    all.push(RequestRule(
        Condition::True,
        RequestReaction::forge_response(Arc::new(|frame: RequestFrame| {
            let text = String::from_utf8_lossy(&frame.body);
            if !text.contains("system") {
                eprintln!("unscripted {:?}: {text}", frame.opcode);
            }
            ResponseFrame::forged_error(
                frame.params,
                scylla::errors::DbError::Invalid,
                Some("unscripted request"),
            )
            .unwrap()
        })),
    ));
    let (proxy, addr) = run_node(all).await;
    (proxy, addr, rx)
}

/// What every dry-mode node answers first: OPTIONS, then STARTUP and REGISTER.
fn handshake() -> Vec<RequestRule> {
    vec![
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
    ]
}

/// Starts a dry-mode node with `rules` on a free loopback port.
async fn run_node(rules: Vec<RequestRule>) -> (RunningProxy, SocketAddr) {
    // Port 0 cannot be handed to the proxy (it does not report the port it bound), so take
    // a free port from the OS and release it just before the proxy binds it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
    (proxy, addr)
}

/// The frames a scripted node reacted to: (opcode, body).
fn seen(feedback: &mut Feedback) -> Vec<(RequestOpcode, Bytes)> {
    std::iter::from_fn(|| feedback.try_recv().ok())
        .map(|(frame, _)| (frame.opcode, frame.body))
        .collect()
}

fn count(frames: &[(RequestOpcode, Bytes)], id: &str) -> usize {
    frames
        .iter()
        .filter(|(op, body)| {
            *op == RequestOpcode::Execute && body.windows(id.len()).any(|w| w == id.as_bytes())
        })
        .count()
}

/// The consistency an EXECUTE of statement `id` was sent at (protocol v4: the body is the
/// prepared id as [short bytes], then the consistency as [short]).
fn consistency_of(frames: &[(RequestOpcode, Bytes)], id: &str) -> Vec<u16> {
    frames
        .iter()
        .filter(|(op, body)| *op == RequestOpcode::Execute && body[2..].starts_with(id.as_bytes()))
        .map(|(_, body)| u16::from_be_bytes([body[2 + id.len()], body[3 + id.len()]]))
        .collect()
}

const LOCAL_SERIAL: u16 = 0x0009;

static CONFIG_STATEMENTS: &[Stmt] = &[
    Stmt {
        text: "INSERT INTO protonn.guild_config (",
        id: "ins_cfg",
        markers: &[("guild_id", BIGINT), ("version", BIGINT), ("doc", VARCHAR)],
    },
    Stmt {
        text: "SELECT version, doc FROM protonn.guild_config WHERE",
        id: "sel_cfg",
        markers: &[("guild_id", BIGINT)],
    },
    Stmt {
        text: "INSERT INTO protonn.guild_config_history",
        id: "ins_hist",
        markers: &[("guild_id", BIGINT), ("version", BIGINT), ("doc", VARCHAR)],
    },
];

const CONFIG_ROW: &[(&str, u16)] = &[("version", BIGINT), ("doc", VARCHAR)];

fn default_config_doc() -> &'static str {
    Box::leak(
        serde_json::to_string(&GuildConfig::default())
            .unwrap()
            .into_boxed_str(),
    )
}

#[tokio::test]
async fn an_lwt_that_times_out_is_resolved_by_a_serial_read() {
    // The write timed out but had applied: the SERIAL read finds our version and document.
    let ours = rows_body(
        CONFIG_ROW,
        &[vec![Cell::BigInt(1), Cell::Text(default_config_doc())]],
    );
    let (proxy, addr, mut feedback) = scripted_node(
        CONFIG_STATEMENTS,
        vec![
            (
                executes_stmt("ins_cfg"),
                RequestReaction::forge().write_timeout(),
            ),
            (executes_stmt("sel_cfg"), answer(ours)),
            (executes_stmt("ins_hist"), answer(void_body())),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    assert_eq!(store.save(1, 0, &GuildConfig::default()).await.unwrap(), 1);
    let frames = seen(&mut feedback);
    assert_eq!(count(&frames, "ins_cfg"), 1, "an LWT is sent once");
    assert_eq!(consistency_of(&frames, "sel_cfg"), [LOCAL_SERIAL]);
    assert_eq!(
        count(&frames, "ins_hist"),
        1,
        "the applied save wrote its history"
    );
    let _ = proxy.finish().await;

    // It had not applied: another writer's row is there, so the save is a conflict.
    let theirs = rows_body(CONFIG_ROW, &[vec![Cell::BigInt(1), Cell::Text("{}")]]);
    let (proxy, addr, _feedback) = scripted_node(
        CONFIG_STATEMENTS,
        vec![
            (
                executes_stmt("ins_cfg"),
                RequestReaction::forge().write_timeout(),
            ),
            (executes_stmt("sel_cfg"), answer(theirs)),
        ],
    )
    .await;
    let store = self::store(addr, Duration::from_secs(10)).await;
    let err = store.save(1, 0, &GuildConfig::default()).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Conflict {
                expected: 0,
                current: 1
            }
        ),
        "{err}"
    );
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn an_lwt_whose_outcome_cannot_be_read_is_unknown_not_retryable() {
    let (proxy, addr, mut feedback) = scripted_node(
        CONFIG_STATEMENTS,
        vec![
            (
                executes_stmt("ins_cfg"),
                RequestReaction::forge().write_timeout(),
            ),
            (
                executes_stmt("sel_cfg"),
                RequestReaction::forge().read_timeout(),
            ),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store.save(1, 0, &GuildConfig::default()).await.unwrap_err();
    assert!(matches!(err, StorageError::OutcomeUnknown { .. }), "{err}");
    assert!(!err.is_transient(), "a blind retry could apply it twice");
    let frames = seen(&mut feedback);
    assert_eq!(
        count(&frames, "ins_cfg"),
        1,
        "the LWT itself is never retried"
    );
    assert_eq!(count(&frames, "sel_cfg"), 3, "the idempotent read is");
    let _ = proxy.finish().await;
}

static LEASE_STATEMENTS: &[Stmt] = &[
    Stmt {
        text: "SELECT holder, epoch, expires_at FROM protonn.leases",
        id: "sel_lease",
        markers: &[("name", VARCHAR)],
    },
    Stmt {
        text: "INSERT INTO protonn.leases",
        id: "ins_lease",
        markers: &[
            ("name", VARCHAR),
            ("holder", BIGINT),
            ("epoch", BIGINT),
            ("expires_at", BIGINT),
        ],
    },
];

const LEASE_ROW: &[(&str, u16)] = &[
    ("holder", BIGINT),
    ("epoch", BIGINT),
    ("expires_at", BIGINT),
];

#[tokio::test]
async fn a_lease_lwt_timeout_is_resolved_to_won_or_held() {
    let now = Timestamp(1_800_000_000_000);
    let ttl = Duration::from_secs(10);
    let expires = i64::try_from(now.0).unwrap() + 10_000;
    for (holder_seen, expect_won) in [(7, true), (9, false)] {
        let (proxy, addr, mut feedback) = scripted_node(
            LEASE_STATEMENTS,
            vec![
                // The first SERIAL read finds no lease; later ones see the outcome.
                (
                    executes_stmt("sel_lease").and(Condition::TrueForLimitedTimes(1)),
                    answer(rows_body(LEASE_ROW, &[])),
                ),
                (
                    executes_stmt("sel_lease"),
                    answer(rows_body(
                        LEASE_ROW,
                        &[vec![
                            Cell::BigInt(holder_seen),
                            Cell::BigInt(1),
                            Cell::BigInt(expires),
                        ]],
                    )),
                ),
                (
                    executes_stmt("ins_lease"),
                    RequestReaction::forge().write_timeout(),
                ),
            ],
        )
        .await;
        let store = store(addr, Duration::from_secs(10)).await;
        let outcome = store.acquire_lease("coordinator", 7, now, ttl).await;
        if expect_won {
            assert_eq!(
                outcome.unwrap(),
                Lease {
                    name: "coordinator".into(),
                    holder: 7,
                    epoch: 1,
                    expires_at: Timestamp(now.0 + 10_000),
                }
            );
        } else {
            let err = outcome.unwrap_err();
            assert!(
                matches!(
                    err,
                    StorageError::LeaseHeld {
                        holder: 9,
                        epoch: 1,
                        ..
                    }
                ),
                "{err}"
            );
        }
        let frames = seen(&mut feedback);
        assert_eq!(count(&frames, "ins_lease"), 1, "the lease LWT is sent once");
        assert!(
            consistency_of(&frames, "sel_lease")
                .iter()
                .all(|&c| c == LOCAL_SERIAL),
            "lease reads are SERIAL"
        );
        let _ = proxy.finish().await;
    }
}

static MIGRATION_STATEMENTS: &[Stmt] = &[
    Stmt {
        text: "SELECT version, name, checksum FROM protonn.schema_versions",
        id: "sel_versions",
        markers: &[],
    },
    Stmt {
        text: "INSERT INTO protonn.schema_lock",
        id: "ins_lock",
        markers: &[("holder", VARCHAR), ("taken_at", BIGINT), ("[ttl]", INT)],
    },
    Stmt {
        text: "UPDATE protonn.schema_lock",
        id: "upd_lock",
        markers: &[
            ("[ttl]", INT),
            ("holder", VARCHAR),
            ("taken_at", BIGINT),
            ("holder", VARCHAR),
        ],
    },
    Stmt {
        text: "DELETE FROM protonn.schema_lock",
        id: "del_lock",
        markers: &[("holder", VARCHAR)],
    },
    Stmt {
        text: "SELECT holder FROM protonn.schema_lock",
        id: "sel_lock",
        markers: &[],
    },
];

fn lwt_answer(applied: bool, holder: Option<&'static str>) -> RequestReaction {
    let mut row = vec![Cell::Bool(applied)];
    let mut columns = vec![("[applied]", BOOLEAN)];
    if let Some(holder) = holder {
        row.push(Cell::Text(holder));
        columns.push(("holder", VARCHAR));
    }
    answer(rows_body(&columns, &[row]))
}

#[tokio::test]
async fn a_migrator_that_loses_its_lock_stops_before_the_next_migration() {
    let (proxy, addr, mut feedback) = scripted_node(
        MIGRATION_STATEMENTS,
        vec![
            (
                Condition::RequestOpcode(RequestOpcode::Query).and(
                    Condition::BodyContainsCaseSensitive(b"CREATE ".as_slice().into()),
                ),
                answer(void_body()),
            ),
            (
                executes_stmt("sel_versions"),
                answer(rows_body(
                    &[("version", INT), ("name", VARCHAR), ("checksum", VARCHAR)],
                    &[],
                )),
            ),
            (executes_stmt("ins_lock"), lwt_answer(true, None)),
            // Before the first file the lock is found taken over (it expired meanwhile).
            (executes_stmt("upd_lock"), lwt_answer(false, Some("other"))),
            (executes_stmt("del_lock"), lwt_answer(false, Some("other"))),
            (
                executes_stmt("sel_lock"),
                answer(rows_body(
                    &[("holder", VARCHAR)],
                    &[vec![Cell::Text("other")]],
                )),
            ),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store
        .migrate_with(&Replication::Simple(1), "me", false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::MigrationLockLost { holder } if holder == "me"),
        "{err}"
    );
    let frames = seen(&mut feedback);
    let queries: Vec<String> = frames
        .iter()
        .filter(|(op, _)| *op == RequestOpcode::Query)
        .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
        .collect();
    assert!(
        queries
            .iter()
            .any(|q| q.contains("CREATE KEYSPACE IF NOT EXISTS protonn")),
        "{queries:?}"
    );
    assert!(
        !queries.iter().any(|q| q.contains("guild_config")),
        "no migration statement ran without the lock: {queries:?}"
    );
    assert_eq!(count(&frames, "ins_lock"), 1);
    assert_eq!(count(&frames, "upd_lock"), 1);
    let _ = proxy.finish().await;
}

#[tokio::test]
async fn a_second_migrator_is_refused_while_the_lock_is_held() {
    let (proxy, addr, mut feedback) = scripted_node(
        MIGRATION_STATEMENTS,
        vec![
            (
                Condition::RequestOpcode(RequestOpcode::Query).and(
                    Condition::BodyContainsCaseSensitive(b"CREATE ".as_slice().into()),
                ),
                answer(void_body()),
            ),
            (
                executes_stmt("ins_lock"),
                lwt_answer(false, Some("deploy-41")),
            ),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store
        .migrate_with(&Replication::Simple(1), "deploy-42", false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::MigrationLocked { holder } if holder == "deploy-41"),
        "{err}"
    );
    assert_eq!(count(&seen(&mut feedback), "sel_versions"), 0);
    let _ = proxy.finish().await;
}

static AUDIT_STATEMENTS: &[Stmt] = &[
    Stmt {
        text: "INSERT INTO protonn.audit_log",
        id: "ins_audit",
        markers: &[
            ("guild_id", BIGINT),
            ("bucket", INT),
            ("at", BIGINT),
            ("id", BIGINT),
            ("doc", VARCHAR),
            ("[ttl]", INT),
        ],
    },
    Stmt {
        text: "INSERT INTO protonn.user_refs (user_id, ref) VALUES (?, ?) USING TTL",
        id: "ins_ref",
        markers: &[("user_id", BIGINT), ("ref", VARCHAR), ("[ttl]", INT)],
    },
];

#[tokio::test]
async fn a_row_and_its_user_index_entry_are_one_batch_that_fails_whole() {
    let (proxy, addr, mut feedback) = scripted_node(
        AUDIT_STATEMENTS,
        vec![
            (
                Condition::RequestOpcode(RequestOpcode::Batch),
                RequestReaction::forge().overloaded(),
            ),
            (
                Condition::RequestOpcode(RequestOpcode::Execute),
                answer(void_body()),
            ),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let entry = AuditEntry {
        guild_id: 1,
        at: Timestamp::now(),
        id: 1,
        actor_id: 2,
        target_id: Some(3),
        action: "member.ban".into(),
        details: String::new(),
    };
    let err = store.append_audit(&[entry]).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let frames = seen(&mut feedback);
    let batches: Vec<&Bytes> = frames
        .iter()
        .filter(|(op, _)| *op == RequestOpcode::Batch)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(batches.len(), 3, "an idempotent batch is retried, bounded");
    // Each batch carries the row and both users' index entries; nothing went on its own.
    let batch = batches[0];
    let has = |id: &str| {
        batch
            .windows(id.len())
            .filter(|w| *w == id.as_bytes())
            .count()
    };
    assert_eq!(
        (batch[0], has("ins_audit"), has("ins_ref")),
        (0, 1, 2),
        "logged batch"
    );
    assert_eq!(
        frames
            .iter()
            .filter(|(op, _)| *op == RequestOpcode::Execute)
            .count(),
        0,
        "no row or index entry was written outside the batch"
    );
    let _ = proxy.finish().await;
}

static RESHARD_STATEMENTS: &[Stmt] = &[
    Stmt {
        text: "SELECT record FROM protonn.reshardings",
        id: "sel_reshard",
        markers: &[],
    },
    Stmt {
        text: "SELECT value FROM protonn.cluster_meta",
        id: "sel_count",
        markers: &[("name", VARCHAR)],
    },
    Stmt {
        text: "UPDATE protonn.cluster_meta SET value",
        id: "upd_count",
        markers: &[("value", BIGINT), ("name", VARCHAR), ("value", BIGINT)],
    },
    Stmt {
        text: "UPDATE protonn.reshardings",
        id: "upd_reshard",
        markers: &[
            ("version", BIGINT),
            ("record", VARCHAR),
            ("version", BIGINT),
        ],
    },
];

/// A resharding from 2 to 4 shards whose every new shard is switched, stored at version 3.
fn all_switched_2_to_4() -> Resharding {
    Resharding {
        ready: vec![0, 1, 2, 3],
        switched: vec![0, 1, 2, 3],
        version: 3,
        ..Resharding::start(2, 4, None, Timestamp(1))
    }
}

/// The node's answer to the read of the resharding record: `record`.
fn stored_record(record: &Resharding) -> RequestReaction {
    let text: &'static str = Box::leak(serde_json::to_string(record).unwrap().into_boxed_str());
    answer(rows_body(&[("record", VARCHAR)], &[vec![Cell::Text(text)]]))
}

/// A completion writes the shard count first, by LWT on the count it started from: when
/// someone else changed the count, it is a conflict and the record is not written.
#[tokio::test]
async fn a_completion_whose_shard_count_changed_meanwhile_writes_no_record() {
    let running = all_switched_2_to_4();
    let (proxy, addr, mut feedback) = scripted_node(
        RESHARD_STATEMENTS,
        vec![
            (executes_stmt("sel_reshard"), stored_record(&running)),
            (
                executes_stmt("sel_count"),
                answer(rows_body(&[("value", BIGINT)], &[vec![Cell::BigInt(2)]])),
            ),
            (
                executes_stmt("upd_count"),
                answer(rows_body(
                    &[("[applied]", BOOLEAN), ("value", BIGINT)],
                    &[vec![Cell::Bool(false), Cell::BigInt(6)]],
                )),
            ),
            (executes_stmt("upd_reshard"), answer(void_body())),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let err = store
        .put_resharding(&Resharding {
            phase: ReshardPhase::Completed,
            ..running
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Conflict {
                expected: 2,
                current: 6
            }
        ),
        "{err}"
    );
    let frames = seen(&mut feedback);
    assert_eq!(
        count(&frames, "upd_count"),
        1,
        "the count's LWT is sent once"
    );
    assert_eq!(
        count(&frames, "upd_reshard"),
        0,
        "no record after a refused count"
    );
    let _ = proxy.finish().await;
}

/// A completion that stopped after the count's LWT and before the record's is finished by
/// writing it again (a new leader does, `Control::load`): the count is `to` already, so
/// only the record is written.
#[tokio::test]
async fn a_completion_whose_count_is_stored_already_writes_the_record_only() {
    let running = all_switched_2_to_4();
    let (proxy, addr, mut feedback) = scripted_node(
        RESHARD_STATEMENTS,
        vec![
            (executes_stmt("sel_reshard"), stored_record(&running)),
            (
                executes_stmt("sel_count"),
                answer(rows_body(&[("value", BIGINT)], &[vec![Cell::BigInt(4)]])),
            ),
            (executes_stmt("upd_count"), answer(void_body())),
            (
                executes_stmt("upd_reshard"),
                answer(rows_body(
                    &[("[applied]", BOOLEAN)],
                    &[vec![Cell::Bool(true)]],
                )),
            ),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let done = store
        .put_resharding(&Resharding {
            phase: ReshardPhase::Completed,
            ..running.clone()
        })
        .await
        .unwrap();
    assert_eq!((done.phase, done.version), (ReshardPhase::Completed, 4));
    // Anything but finishing it is refused, and writes nothing.
    let err = store
        .put_resharding(&Resharding {
            phase: ReshardPhase::Aborted,
            ..running
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Invalid(_)), "{err}");
    let frames = seen(&mut feedback);
    assert_eq!(
        count(&frames, "upd_count"),
        0,
        "the count is not written again"
    );
    assert_eq!(count(&frames, "upd_reshard"), 1, "the record's LWT, once");
    let _ = proxy.finish().await;
}

static BACKFILL_STATEMENTS: &[Stmt] = &[
    Stmt {
        text: "SELECT doc FROM protonn.backfill_progress",
        id: "bf_prog_sel",
        markers: &[("table_name", VARCHAR)],
    },
    Stmt {
        text: "INSERT INTO protonn.backfill_progress",
        id: "bf_prog_ins",
        markers: &[("table_name", VARCHAR), ("doc", VARCHAR)],
    },
    Stmt {
        text: "SELECT DISTINCT guild_id, token(guild_id) FROM protonn.cases",
        id: "bf_guilds",
        markers: &[("token", BIGINT)],
    },
    // Before the guild's whole-partition read, which its text starts like.
    Stmt {
        text: "SELECT doc FROM protonn.cases WHERE guild_id = ? AND number = ?",
        id: "bf_one",
        markers: &[("guild_id", BIGINT), ("number", BIGINT)],
    },
    Stmt {
        text: "SELECT doc FROM protonn.cases WHERE guild_id = ?",
        id: "bf_docs",
        markers: &[("guild_id", BIGINT)],
    },
    Stmt {
        text: "INSERT INTO protonn.user_refs (user_id, ref) VALUES (?, ?) USING TTL",
        id: "bf_ref_ins",
        markers: &[("user_id", BIGINT), ("ref", VARCHAR), ("[ttl]", INT)],
    },
    Stmt {
        text: "DELETE FROM protonn.user_refs WHERE",
        id: "bf_ref_del",
        markers: &[("user_id", BIGINT), ("ref", VARCHAR)],
    },
    Stmt {
        text: "INSERT INTO protonn.cases_by_target",
        id: "bf_target_ins",
        markers: &[
            ("guild_id", BIGINT),
            ("target_id", BIGINT),
            ("number", BIGINT),
            ("[ttl]", INT),
        ],
    },
    Stmt {
        text: "DELETE FROM protonn.cases_by_target",
        id: "bf_target_del",
        markers: &[
            ("guild_id", BIGINT),
            ("target_id", BIGINT),
            ("number", BIGINT),
        ],
    },
    Stmt {
        text: "UPDATE protonn.cases USING TTL",
        id: "bf_cas",
        markers: &[
            ("[ttl]", INT),
            ("doc", VARCHAR),
            ("guild_id", BIGINT),
            ("number", BIGINT),
            ("doc", VARCHAR),
        ],
    },
];

/// The backfill writes a case again (with its TTL) by compare-and-set on the document it
/// read: when the case changed meanwhile (here an erasure removed it), it is not put back,
/// and the refs and target index row the walk had added for it are dropped again.
#[tokio::test]
async fn a_backfill_never_puts_back_a_row_changed_since_it_was_read() {
    let case = protonn_storage::Case {
        guild_id: 7,
        number: 1,
        action: "warn".into(),
        moderator_id: 2,
        target_id: Some(3),
        channel_id: None,
        reason: "spam".into(),
        duration_ms: None,
        at: Timestamp::now(),
    };
    let doc: &'static str = Box::leak(serde_json::to_string(&case).unwrap().into_boxed_str());
    let (proxy, addr, mut feedback) = scripted_node(
        BACKFILL_STATEMENTS,
        vec![
            (
                executes_stmt("bf_prog_sel"),
                answer(rows_body(&[("doc", VARCHAR)], &[])),
            ),
            (
                executes_stmt("bf_guilds"),
                answer(rows_body(
                    &[("guild_id", BIGINT), ("system.token(guild_id)", BIGINT)],
                    &[vec![Cell::BigInt(7), Cell::BigInt(42)]],
                )),
            ),
            (
                executes_stmt("bf_docs"),
                answer(rows_body(&[("doc", VARCHAR)], &[vec![Cell::Text(doc)]])),
            ),
            (executes_stmt("bf_cas"), lwt_answer(false, None)),
            (
                executes_stmt("bf_one"),
                answer(rows_body(&[("doc", VARCHAR)], &[])),
            ),
            (
                Condition::RequestOpcode(RequestOpcode::Batch),
                answer(void_body()),
            ),
            (
                Condition::RequestOpcode(RequestOpcode::Execute),
                answer(void_body()),
            ),
        ],
    )
    .await;
    let store = store(addr, Duration::from_secs(10)).await;
    let progress = store
        .backfill(protonn_storage::BackfillTable::Cases, 10, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(
        (progress.rows, progress.indexed, progress.deleted),
        (1, 0, 0),
        "walked, left as the erasure made it"
    );
    assert!(progress.done() && progress.cursor.is_none());
    let frames = seen(&mut feedback);
    let batches = |id: &str| {
        frames
            .iter()
            .filter(|(op, body)| {
                *op == RequestOpcode::Batch && body.windows(id.len()).any(|w| w == id.as_bytes())
            })
            .count()
    };
    assert_eq!(
        count(&frames, "bf_cas"),
        1,
        "one compare-and-set, not retried"
    );
    assert_eq!(batches("bf_ref_ins"), 2, "moderator and target");
    assert_eq!(batches("bf_ref_del"), 2, "both dropped again");
    assert_eq!(count(&frames, "bf_target_ins"), 1);
    assert_eq!(count(&frames, "bf_target_del"), 1);
    assert_eq!(count(&frames, "bf_prog_ins"), 1, "the progress is stored");
    let _ = proxy.finish().await;
}
