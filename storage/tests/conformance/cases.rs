//! The conformance cases: one behaviour for every backend. `main.rs` runs them against the
//! embedded store and ScyllaDB; the cluster crate runs them against the coordinator's store
//! over gRPC (`cluster/tests/remote_store.rs`) by including this file.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use protonn_storage::{
    Account, AuditEntry, AuditWriter, Case, ExportDocument, GuildConfig, LeaderAnnouncement,
    NodeRecord, Plan, PremiumSlot, PreparedExport, PrivacyFlags, PrivacyRequest, PromoCode,
    RequestKind, ReshardPhase, Resharding, Retention, SessionCheckpoint, StorageError, Store,
    Subscription, SubscriptionStatus, Ticket, TicketQuery, Timer, Timestamp, TranscriptAttachment,
    TranscriptMessage, UsageAggregator, UsageCount, WebSession, Workflow, WorkflowRun,
    WorkflowVariable, WriterConfig, privacy,
};

/// Distinctive ids, so a scan for their digits finds nothing by accident.
const USER: u64 = 731_918_266_405_175_297;
const OTHER_USER: u64 = 613_004_512_977_338_369;
const GUILD: u64 = 882_207_451_335_696_417;
const OTHER_GUILD: u64 = 550_102_774_213_889_025;

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);

fn prefix(p: &str) -> GuildConfig {
    GuildConfig {
        prefix: p.to_owned(),
        ..GuildConfig::default()
    }
}

fn audit(guild_id: u64, at: Timestamp, id: u64, actor_id: u64, target: Option<u64>) -> AuditEntry {
    AuditEntry {
        guild_id,
        at,
        id,
        actor_id,
        target_id: target,
        action: "member.ban".into(),
        details: format!("entry {id}"),
    }
}

fn ticket(guild_id: u64, ticket_id: u64, opener_id: u64, opened_at: Timestamp) -> Ticket {
    Ticket {
        guild_id,
        ticket_id,
        opener_id,
        channel_id: 4242,
        subject: "help".into(),
        category: None,
        opened_at,
        closed_at: None,
        claimed_at: None,
        first_response_at: None,
        close_reason: None,
        place: protonn_storage::TicketPlace::Thread,
    }
}

fn message(guild_id: u64, ticket_id: u64, message_id: u64, author_id: u64) -> TranscriptMessage {
    TranscriptMessage {
        guild_id,
        ticket_id,
        message_id,
        author_id,
        author_name: format!("user {author_id}"),
        at: Timestamp::now(),
        content: format!("message {message_id}"),
        attachments: vec![TranscriptAttachment {
            filename: "a.png".into(),
            url: format!("https://cdn.example/{message_id}/a.png"),
        }],
        edited_at: None,
        earlier_texts: Vec::new(),
        deleted_at: None,
    }
}

fn workflow(guild_id: u64, workflow_id: u64, created_by: u64) -> Workflow {
    Workflow {
        guild_id,
        workflow_id,
        name: "greet".into(),
        created_by: Some(created_by),
        enabled: true,
        definition: r#"{"trigger":"member.join"}"#.into(),
        updated_at: Timestamp::now(),
    }
}

fn variable(guild_id: u64, user_id: Option<u64>, name: &str, value: &str) -> WorkflowVariable {
    WorkflowVariable {
        guild_id,
        user_id,
        name: name.into(),
        value: value.into(),
        updated_at: Timestamp::now(),
    }
}

fn run(guild_id: u64, workflow_id: u64, slot: u32, user_id: Option<u64>) -> WorkflowRun {
    WorkflowRun {
        guild_id,
        workflow_id,
        slot,
        user_id,
        at: Timestamp::now(),
        trace: r#"{"steps":[{"at":"actions[0]","detail":"send"}]}"#.into(),
    }
}

fn subscription(id: u64, user_id: u64, guild_id: u64) -> Subscription {
    Subscription {
        subscription_id: id,
        user_id,
        guild_id: Some(guild_id),
        plan: "premium".into(),
        status: SubscriptionStatus::Active,
        current_period_end: Timestamp::now().saturating_add(30 * DAY),
        updated_at: Timestamp::now(),
        slots: 1,
        provider_ref: format!("sub_{id}"),
        status_since: Timestamp::now(),
    }
}

pub(crate) async fn config_versions_history_and_rollback<S: Store + Clone>(store: S) {
    assert_eq!(store.load(GUILD).await.unwrap(), None);
    assert!(store.history(GUILD).await.unwrap().is_empty());
    assert_eq!(store.save(GUILD, 0, &prefix("?")).await.unwrap(), 1);
    assert_eq!(store.save(GUILD, 1, &prefix("$")).await.unwrap(), 2);
    let err = store.save(GUILD, 1, &prefix("%")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Conflict {
                expected: 1,
                current: 2
            }
        ),
        "{err}"
    );
    let loaded = store.load(GUILD).await.unwrap().unwrap();
    assert_eq!((loaded.version, loaded.config.prefix.as_str()), (2, "$"));
    assert_eq!(store.load(OTHER_GUILD).await.unwrap(), None);

    let versions: Vec<u64> = store
        .history(GUILD)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [2, 1]);

    assert_eq!(store.rollback(GUILD, 2, 1).await.unwrap(), 3);
    let current = store.load(GUILD).await.unwrap().unwrap();
    assert_eq!((current.version, current.config.prefix.as_str()), (3, "?"));
    assert!(matches!(
        store.rollback(GUILD, 2, 1).await,
        Err(StorageError::Conflict { .. })
    ));
    assert!(matches!(
        store.rollback(GUILD, 3, 99).await,
        Err(StorageError::NotFound(_))
    ));
}

pub(crate) async fn concurrent_saves_have_one_winner<S: Store + Clone>(store: S) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.save(GUILD, 0, &prefix(&i.to_string())).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(version) => {
                assert_eq!(version, 1);
                won += 1;
            }
            Err(StorageError::Conflict {
                expected: 0,
                current: 1,
            }) => {}
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1);
}

pub(crate) async fn audit_lists_by_guild_and_time<S: Store + Clone>(store: S) {
    let t0 = Timestamp::now().saturating_sub(10 * DAY);
    let entries: Vec<AuditEntry> = (0..50)
        .map(|i| {
            audit(
                GUILD,
                t0.saturating_add(i * DAY / 10),
                i.into(),
                USER,
                Some(OTHER_USER),
            )
        })
        .collect();
    store.append_audit(&entries).await.unwrap();
    // Re-appending is idempotent.
    store.append_audit(&entries[..10]).await.unwrap();
    store
        .append_audit(&[audit(OTHER_GUILD, t0, 1, USER, None)])
        .await
        .unwrap();

    let all = store
        .list_audit(GUILD, t0, Timestamp::now(), 1_000)
        .await
        .unwrap();
    assert_eq!(all, entries);
    let window = store
        .list_audit(GUILD, entries[10].at, entries[20].at, 1_000)
        .await
        .unwrap();
    assert_eq!(window, entries[10..20]);
    assert_eq!(
        store
            .list_audit(GUILD, t0, Timestamp::now(), 5)
            .await
            .unwrap(),
        entries[..5]
    );
}

pub(crate) async fn audit_writer_batches_and_acknowledges<S: Store + Clone>(store: S) {
    let (writer, task) = AuditWriter::spawn(
        Arc::new(store.clone()),
        WriterConfig {
            max_batch: 64,
            ..WriterConfig::default()
        },
    );
    let t0 = Timestamp::now().saturating_sub(DAY);
    let mut acks = Vec::new();
    for i in 0..300 {
        acks.push(
            writer
                .log(audit(
                    GUILD,
                    t0.saturating_add(Duration::from_millis(i)),
                    i,
                    USER,
                    None,
                ))
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.durable().await.unwrap();
    }
    writer.try_log(audit(GUILD, t0, 1_000, USER, None)).unwrap();
    writer.flush().await.unwrap();
    drop(writer);
    task.await.unwrap();
    let listed = store
        .list_audit(GUILD, t0, Timestamp::now(), 10_000)
        .await
        .unwrap();
    assert_eq!(listed.len(), 301);
}

pub(crate) async fn usage_is_aggregated_then_flushed<S: Store + Clone>(store: S) {
    let usage = UsageAggregator::new(Arc::new(store.clone()));
    // Yesterday 10:00 (UTC) and today 10:00: inside the usage retention.
    let today = Timestamp::now().day();
    let day = Timestamp::from_days(today - 1).saturating_add(10 * HOUR);
    let hour = day.hour();
    for _ in 0..5 {
        usage.record(GUILD, "ping", 1, day);
    }
    usage.record(GUILD, "ping", 2, day);
    usage.record(GUILD, "help", 1, day.saturating_add(HOUR));
    usage.record(GUILD, "ping", 1, day.saturating_add(DAY));
    usage.record(OTHER_GUILD, "ping", 1, day);
    assert_eq!(usage.pending(), 5);
    assert_eq!(usage.flush().await.unwrap(), 5);
    assert_eq!(usage.flush().await.unwrap(), 0);
    usage.record(GUILD, "ping", 1, day);
    usage.flush().await.unwrap();

    let counts: Vec<(u32, String, u64, u64)> = store
        .usage(GUILD, today - 1, today)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.hour, c.command, c.channel_id, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            (hour, "ping".to_owned(), 1, 6),
            (hour, "ping".to_owned(), 2, 1),
            (hour + 1, "help".to_owned(), 1, 1),
            (hour + 24, "ping".to_owned(), 1, 1),
        ]
    );
    assert_eq!(store.usage(GUILD, today, today).await.unwrap().len(), 1);
    assert!(
        store
            .usage(GUILD, today - 30, today - 2)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Counters older than the usage retention are gone after a sweep (the embedded store's
/// sweeper; ScyllaDB's TTL, which does not even write a day already past it).
pub(crate) async fn usage_past_its_retention_is_gone<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    let retention = Retention::POLICY.usage;
    let old = now.saturating_sub(retention).saturating_sub(2 * DAY);
    let usage = UsageAggregator::new(Arc::new(store.clone()));
    usage.record(GUILD, "ping", 1, old);
    usage.record(GUILD, "ping", 1, now);
    usage.flush().await.unwrap();
    store.sweep_expired(now).await.unwrap();
    let days: Vec<u32> = store
        .usage(GUILD, old.day(), now.day())
        .await
        .unwrap()
        .iter()
        .map(UsageCount::day)
        .collect();
    assert_eq!(days, [now.day()]);
}

pub(crate) async fn accounts_track_last_activity<S: Store + Clone>(store: S) {
    let t0 = Timestamp::now().saturating_sub(10 * DAY);
    store.touch_account(USER, t0).await.unwrap();
    let created = store.account(USER).await.unwrap().unwrap();
    assert_eq!((created.created_at, created.last_active), (t0, t0));
    store
        .touch_account(USER, t0.saturating_add(DAY))
        .await
        .unwrap();
    store.touch_account(USER, t0).await.unwrap();
    let touched = store.account(USER).await.unwrap().unwrap();
    assert_eq!(
        touched.last_active,
        t0.saturating_add(DAY),
        "never backwards"
    );
    assert_eq!(touched.created_at, t0);

    let replaced = Account {
        locale: Some("fr".into()),
        announcements_consent: true,
        ..touched
    };
    store.put_account(&replaced).await.unwrap();
    assert_eq!(store.account(USER).await.unwrap(), Some(replaced));
    assert_eq!(store.account(OTHER_USER).await.unwrap(), None);
}

pub(crate) async fn tickets_keep_transcripts<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    let err = store
        .append_transcript(&[message(GUILD, 1, 10, USER)])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");

    store
        .put_ticket(&ticket(GUILD, 2, USER, now))
        .await
        .unwrap();
    store
        .put_ticket(&ticket(GUILD, 1, USER, now))
        .await
        .unwrap();
    let transcript = vec![
        message(GUILD, 1, 11, OTHER_USER),
        message(GUILD, 1, 10, USER),
    ];
    store.append_transcript(&transcript).await.unwrap();
    store.append_transcript(&transcript[..1]).await.unwrap();
    let read = store.transcript(GUILD, 1).await.unwrap();
    assert_eq!(read, [transcript[1].clone(), transcript[0].clone()]);
    assert!(store.transcript(GUILD, 2).await.unwrap().is_empty());

    let mut closed = ticket(GUILD, 1, USER, now);
    closed.closed_at = Some(now.saturating_add(DAY));
    store.put_ticket(&closed).await.unwrap();
    assert_eq!(store.ticket(GUILD, 1).await.unwrap(), Some(closed));
    let ids: Vec<u64> = store
        .tickets(GUILD)
        .await
        .unwrap()
        .iter()
        .map(|t| t.ticket_id)
        .collect();
    assert_eq!(ids, [1, 2]);
    assert!(store.tickets(OTHER_GUILD).await.unwrap().is_empty());
}

pub(crate) async fn tickets_are_listed_by_filter_and_transcripts_read_by_page<S: Store + Clone>(
    store: S,
) {
    let now = Timestamp::now();
    // Tickets 1..=7: odd ones USER's, every third closed.
    for number in 1..=7 {
        let opener = if number % 2 == 1 { USER } else { OTHER_USER };
        let mut t = ticket(GUILD, number, opener, now);
        if number % 3 == 0 {
            t.closed_at = Some(now.saturating_add(HOUR));
        }
        store.put_ticket(&t).await.unwrap();
    }
    store
        .put_ticket(&ticket(OTHER_GUILD, 8, USER, now))
        .await
        .unwrap();
    let numbers = |query: TicketQuery| {
        let store = store.clone();
        async move {
            store
                .list_tickets(GUILD, &query)
                .await
                .unwrap()
                .iter()
                .map(|t| t.ticket_id)
                .collect::<Vec<u64>>()
        }
    };
    let page = |limit| TicketQuery {
        limit,
        ..TicketQuery::default()
    };
    assert_eq!(numbers(page(3)).await, [7, 6, 5], "newest first");
    assert_eq!(
        numbers(TicketQuery {
            before: Some(5),
            ..page(3)
        })
        .await,
        [4, 3, 2],
        "the next page"
    );
    assert_eq!(
        numbers(TicketQuery {
            open: Some(false),
            ..page(10)
        })
        .await,
        [6, 3]
    );
    assert_eq!(
        numbers(TicketQuery {
            open: Some(true),
            opener_id: Some(USER),
            ..page(2)
        })
        .await,
        [7, 5],
        "the limit counts matches"
    );
    assert!(numbers(page(0)).await.is_empty());
    assert!(
        numbers(TicketQuery {
            before: Some(1),
            ..page(10)
        })
        .await
        .is_empty()
    );

    let lines: Vec<TranscriptMessage> = (1..=25).map(|n| message(GUILD, 1, n * 10, USER)).collect();
    store.append_transcript(&lines).await.unwrap();
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = store.transcript_page(GUILD, 1, after, 10).await.unwrap();
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = last.message_id;
        read.extend(page);
    }
    assert_eq!(read, lines, "every line once, in order, attachments kept");
    assert!(
        store
            .transcript_page(GUILD, 2, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn tickets_are_numbered_once_and_limited_per_opener<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    // Concurrent opens by different members: every number once, from 1.
    let opens: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let ticket = ticket(GUILD, 0, 100 + n, now);
            tokio::spawn(async move { store.open_ticket(&ticket, 1).await })
        })
        .collect();
    let mut numbers = Vec::new();
    for open in opens {
        numbers.push(open.await.unwrap().unwrap().expect("under the limit"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<u64>>());

    // The opener's limit counts open tickets only; a refused open stores nothing.
    let number = store
        .open_ticket(&ticket(GUILD, 0, USER, now), 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(number, 9);
    assert_eq!(
        store
            .open_ticket(&ticket(GUILD, 0, USER, now), 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.tickets(GUILD).await.unwrap().len(), 9);
    let mut closed = store.ticket(GUILD, 9).await.unwrap().unwrap();
    assert_eq!((closed.opener_id, closed.ticket_id), (USER, 9));
    closed.closed_at = Some(now);
    closed.close_reason = Some("solved".into());
    closed.place = protonn_storage::TicketPlace::Channel;
    store.put_ticket(&closed).await.unwrap();
    assert_eq!(
        store.ticket(GUILD, 9).await.unwrap().unwrap().place,
        protonn_storage::TicketPlace::Channel,
        "a channel ticket stays one"
    );
    assert_eq!(
        store
            .open_ticket(&ticket(GUILD, 0, USER, now), 1)
            .await
            .unwrap(),
        Some(10)
    );
    assert_eq!(
        store
            .open_ticket(&ticket(GUILD, 0, USER, now), 2)
            .await
            .unwrap(),
        Some(11),
        "a higher limit takes a second"
    );
    assert_eq!(
        store
            .open_ticket(&ticket(OTHER_GUILD, 0, USER, now), 1)
            .await
            .unwrap(),
        Some(1),
        "numbers are per guild"
    );
}

/// Workflows' variables: the server's and each member's, replaced by name, refused (all of
/// a batch) when malformed, not written past retention, gone when it passes, listed in a
/// member's export and erased with them, the server's kept.
pub(crate) async fn workflow_variables_are_kept_replaced_and_erased<S: Store + Clone>(store: S) {
    store
        .put_workflow_variables(&[
            variable(GUILD, None, "count", "1"),
            variable(GUILD, Some(USER), "score", "5"),
            variable(GUILD, Some(OTHER_USER), "score", "7"),
            variable(OTHER_GUILD, None, "count", "9"),
        ])
        .await
        .unwrap();
    store
        .put_workflow_variables(&[variable(GUILD, None, "count", "2")])
        .await
        .unwrap();
    let values = |variables: Vec<WorkflowVariable>| {
        let mut values: Vec<(Option<u64>, String, String)> = variables
            .into_iter()
            .map(|v| (v.user_id, v.name, v.value))
            .collect();
        values.sort();
        values
    };
    let expected = vec![
        (None, "count".to_owned(), "2".to_owned()),
        (Some(OTHER_USER), "score".to_owned(), "7".to_owned()),
        (Some(USER), "score".to_owned(), "5".to_owned()),
    ];
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(
        values(store.workflow_variables(GUILD).await.unwrap()),
        sorted
    );

    // Refused whole: nothing of a bad batch is written.
    let long = "x".repeat(protonn_storage::WORKFLOW_VARIABLE_MAX_BYTES + 1);
    for bad in [
        vec![
            variable(GUILD, None, "fresh", "1"),
            variable(GUILD, None, "", "1"),
        ],
        vec![variable(GUILD, None, "fresh", &long)],
        vec![variable(GUILD, Some(0), "fresh", "1")],
        vec![variable(GUILD, None, &"n".repeat(33), "1")],
        vec![
            variable(GUILD, None, "fresh", "1");
            protonn_storage::WORKFLOW_VARIABLES_PER_WRITE + 1
        ],
    ] {
        assert!(matches!(
            store.put_workflow_variables(&bad).await,
            Err(StorageError::Invalid(_))
        ));
    }
    assert_eq!(
        values(store.workflow_variables(GUILD).await.unwrap()),
        sorted
    );

    // Past retention: not written; a few seconds from it: gone when they pass.
    let retention = Retention::POLICY.workflow_variables;
    let now = Timestamp::now();
    let mut stale = variable(GUILD, Some(USER), "stale", "1");
    stale.updated_at = now.saturating_sub(retention);
    let mut fading = variable(GUILD, Some(USER), "fading", "1");
    fading.updated_at = now
        .saturating_sub(retention)
        .saturating_add(Duration::from_secs(2));
    store
        .put_workflow_variables(&[stale, fading])
        .await
        .unwrap();
    let names = |variables: Vec<WorkflowVariable>| {
        variables.into_iter().map(|v| v.name).collect::<Vec<_>>()
    };
    assert!(!names(store.workflow_variables(GUILD).await.unwrap()).contains(&"stale".into()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while names(store.workflow_variables(GUILD).await.unwrap()).contains(&"fading".into()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a variable outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.sweep_expired(Timestamp::now()).await.unwrap();

    let export = store.export_user(USER).await.unwrap();
    assert_eq!(names(export.workflow_variables), ["score"]);
    store.delete_user(USER).await.unwrap();
    assert!(
        store
            .export_user(USER)
            .await
            .unwrap()
            .workflow_variables
            .is_empty()
    );
    let left = values(store.workflow_variables(GUILD).await.unwrap());
    assert_eq!(
        left,
        [
            (None, "count".to_owned(), "2".to_owned()),
            (Some(OTHER_USER), "score".to_owned(), "7".to_owned()),
        ]
    );
    store.delete_guild(GUILD).await.unwrap();
    assert!(store.workflow_variables(GUILD).await.unwrap().is_empty());
    assert!(
        store
            .export_user(OTHER_USER)
            .await
            .unwrap()
            .workflow_variables
            .is_empty()
    );
    assert_eq!(
        store.workflow_variables(OTHER_GUILD).await.unwrap().len(),
        1
    );
}

/// Runs' traces: a slot written again holds the newer run (and its member), bad ones are
/// refused, one past retention is not kept, and a deleted workflow takes its runs along.
pub(crate) async fn workflow_runs_keep_a_ring_of_slots_and_go_with_their_workflow<
    S: Store + Clone,
>(
    store: S,
) {
    store
        .put_workflow(&workflow(GUILD, 1, OTHER_USER))
        .await
        .unwrap();
    for (slot, user) in [(0, Some(USER)), (1, Some(OTHER_USER)), (2, None)] {
        store
            .put_workflow_run(&run(GUILD, 1, slot, user))
            .await
            .unwrap();
    }
    store
        .put_workflow_run(&run(GUILD, 2, 0, Some(USER)))
        .await
        .unwrap();
    store
        .put_workflow_run(&run(OTHER_GUILD, 1, 0, Some(USER)))
        .await
        .unwrap();
    let slots = |runs: Vec<WorkflowRun>| {
        let mut slots: Vec<(u64, u32, Option<u64>)> = runs
            .into_iter()
            .map(|r| (r.workflow_id, r.slot, r.user_id))
            .collect();
        slots.sort();
        slots
    };
    assert_eq!(
        slots(store.workflow_runs(GUILD).await.unwrap()),
        [
            (1, 0, Some(USER)),
            (1, 1, Some(OTHER_USER)),
            (1, 2, None),
            (2, 0, Some(USER)),
        ]
    );
    assert_eq!(
        store.export_user(USER).await.unwrap().workflow_runs.len(),
        3
    );
    // Slot 0 now holds another member's run: it is no longer the first member's.
    store
        .put_workflow_run(&run(GUILD, 1, 0, Some(OTHER_USER)))
        .await
        .unwrap();
    assert_eq!(
        store.export_user(USER).await.unwrap().workflow_runs.len(),
        2
    );
    assert_eq!(
        store
            .export_user(OTHER_USER)
            .await
            .unwrap()
            .workflow_runs
            .len(),
        2
    );

    let mut bad = run(GUILD, 1, protonn_storage::WORKFLOW_RUNS_KEPT, None);
    assert!(matches!(
        store.put_workflow_run(&bad).await,
        Err(StorageError::Invalid(_))
    ));
    bad.slot = 3;
    bad.trace = "x".repeat(protonn_storage::WORKFLOW_TRACE_MAX_BYTES + 1);
    assert!(matches!(
        store.put_workflow_run(&bad).await,
        Err(StorageError::Invalid(_))
    ));
    let mut stale = run(GUILD, 1, 3, Some(USER));
    stale.at = Timestamp::now().saturating_sub(Retention::POLICY.workflow_runs);
    store.put_workflow_run(&stale).await.unwrap();
    assert_eq!(store.workflow_runs(GUILD).await.unwrap().len(), 4);

    assert!(store.delete_workflow(GUILD, 1).await.unwrap());
    assert_eq!(
        slots(store.workflow_runs(GUILD).await.unwrap()),
        [(2, 0, Some(USER))]
    );
    assert!(
        store
            .export_user(OTHER_USER)
            .await
            .unwrap()
            .workflow_runs
            .is_empty()
    );
    store.delete_user(USER).await.unwrap();
    assert!(store.workflow_runs(GUILD).await.unwrap().is_empty());
    assert!(store.workflow_runs(OTHER_GUILD).await.unwrap().is_empty());
}

pub(crate) async fn workflows_crud<S: Store + Clone>(store: S) {
    store.put_workflow(&workflow(GUILD, 2, USER)).await.unwrap();
    store.put_workflow(&workflow(GUILD, 1, USER)).await.unwrap();
    let mut edited = workflow(GUILD, 1, OTHER_USER);
    edited.enabled = false;
    store.put_workflow(&edited).await.unwrap();
    assert_eq!(store.workflow(GUILD, 1).await.unwrap(), Some(edited));
    let ids: Vec<u64> = store
        .workflows(GUILD)
        .await
        .unwrap()
        .iter()
        .map(|w| w.workflow_id)
        .collect();
    assert_eq!(ids, [1, 2]);
    assert!(store.delete_workflow(GUILD, 2).await.unwrap());
    assert!(!store.delete_workflow(GUILD, 2).await.unwrap());
    assert_eq!(store.workflows(GUILD).await.unwrap().len(), 1);
}

pub(crate) async fn subscriptions_and_promo_codes<S: Store + Clone>(store: S) {
    store
        .put_subscription(&subscription(7, USER, GUILD))
        .await
        .unwrap();
    store
        .put_subscription(&subscription(5, USER, OTHER_GUILD))
        .await
        .unwrap();
    let mut cancelled = subscription(7, USER, GUILD);
    cancelled.status = SubscriptionStatus::Cancelled;
    store.put_subscription(&cancelled).await.unwrap();
    assert_eq!(store.subscription(7).await.unwrap(), Some(cancelled));
    let ids: Vec<u64> = store
        .subscriptions_of_user(USER)
        .await
        .unwrap()
        .iter()
        .map(|s| s.subscription_id)
        .collect();
    assert_eq!(ids, [5, 7]);

    let now = Timestamp::now();
    let promo = PromoCode {
        code: "LAUNCH".into(),
        percent_off: 20,
        max_redemptions: 2,
        expires_at: now.saturating_add(DAY),
        premium_days: 0,
        slots: 0,
        new_users_only: false,
    };
    store.create_promo(&promo).await.unwrap();
    assert!(matches!(
        store.create_promo(&promo).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(store.redeem_promo("LAUNCH", USER, now).await.unwrap(), 1);
    assert!(matches!(
        store.redeem_promo("LAUNCH", USER, now).await,
        Err(StorageError::PromoRejected { .. })
    ));
    assert_eq!(
        store.redeem_promo("LAUNCH", OTHER_USER, now).await.unwrap(),
        2
    );
    assert!(matches!(
        store.redeem_promo("LAUNCH", 3, now).await,
        Err(StorageError::PromoRejected {
            reason: "exhausted",
            ..
        })
    ));
    assert!(matches!(
        store.redeem_promo("NOPE", 3, now).await,
        Err(StorageError::PromoRejected { .. })
    ));
    let late = PromoCode {
        code: "OLD".into(),
        expires_at: now,
        ..promo
    };
    store.create_promo(&late).await.unwrap();
    assert!(matches!(
        store.redeem_promo("OLD", USER, now).await,
        Err(StorageError::PromoRejected {
            reason: "expired",
            ..
        })
    ));
    assert_eq!(store.promo("LAUNCH").await.unwrap().unwrap().1, 2);
    let listed: Vec<(String, u32)> = store
        .promos(10)
        .await
        .unwrap()
        .into_iter()
        .map(|(promo, redeemed)| (promo.code, redeemed))
        .collect();
    assert_eq!(listed, [("LAUNCH".to_owned(), 2), ("OLD".to_owned(), 0)]);
    assert_eq!(store.promos(1).await.unwrap().len(), 1, "at most the limit");
    let redemptions = store.redemptions_of_user(USER).await.unwrap();
    assert_eq!(redemptions.len(), 1);
    assert_eq!(redemptions[0].code, "LAUNCH");
}

pub(crate) async fn cluster_tables_fence_by_epoch<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    for id in [2, 1] {
        store
            .put_node(&NodeRecord {
                node_id: id,
                address: format!("10.0.0.{id}:7000"),
                last_heartbeat: now,
                draining: false,
            })
            .await
            .unwrap();
    }
    let ids: Vec<u64> = store
        .nodes()
        .await
        .unwrap()
        .iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(ids, [1, 2]);
    store.remove_node(2).await.unwrap();
    assert_eq!(store.nodes().await.unwrap().len(), 1);

    store.claim_assignments(1).await.unwrap();
    let first = store.assign_shard(3, 1, 0, 1).await.unwrap();
    assert_eq!(first.epoch, 1);
    assert!(matches!(
        store.assign_shard(3, 2, 0, 1).await,
        Err(StorageError::Conflict {
            expected: 0,
            current: 1
        })
    ));
    let moved = store.assign_shard(3, 2, 1, 1).await.unwrap();
    assert_eq!((moved.node_id, moved.epoch), (2, 2));
    store.assign_shard(0, 1, 0, 1).await.unwrap();
    let shards: Vec<(u32, u64)> = store
        .assignments()
        .await
        .unwrap()
        .iter()
        .map(|a| (a.shard_id, a.epoch))
        .collect();
    assert_eq!(shards, [(0, 1), (3, 2)]);

    let checkpoint = |epoch, sequence| SessionCheckpoint {
        shard_id: 3,
        epoch,
        session_id: format!("s{epoch}"),
        sequence,
        resume_url: "wss://resume".into(),
        at: now,
    };
    store.save_checkpoint(&checkpoint(2, 10)).await.unwrap();
    store.save_checkpoint(&checkpoint(2, 11)).await.unwrap();
    assert!(matches!(
        store.save_checkpoint(&checkpoint(1, 99)).await,
        Err(StorageError::Fenced {
            presented: 1,
            current: 2
        })
    ));
    assert_eq!(store.checkpoint(3).await.unwrap(), Some(checkpoint(2, 11)));
    assert_eq!(store.checkpoint(4).await.unwrap(), None);
}

/// A leader that froze past its lease wakes with an old epoch: once a newer leader has
/// claimed the assignments, it can neither assign (a new shard or a move) nor claim back.
pub(crate) async fn assignments_are_written_only_by_the_newest_leader<S: Store + Clone>(store: S) {
    // Epochs above any a running leader has (over gRPC, the serving coordinator claimed
    // with its own). An epoch that did not claim may not assign.
    assert!(matches!(
        store.assign_shard(0, 1, 0, 10).await,
        Err(StorageError::Fenced { .. })
    ));
    store.claim_assignments(10).await.unwrap();
    store.claim_assignments(10).await.unwrap(); // again: a no-op
    store.assign_shard(0, 1, 0, 10).await.unwrap();

    store.claim_assignments(11).await.unwrap();
    let before = store.assignments().await.unwrap();
    for stale in [
        store.assign_shard(0, 2, 1, 10).await,
        store.assign_shard(1, 2, 0, 10).await,
    ] {
        assert!(
            matches!(
                stale,
                Err(StorageError::Fenced {
                    presented: 10,
                    current: 11
                })
            ),
            "{stale:?}"
        );
    }
    assert!(matches!(
        store.claim_assignments(10).await,
        Err(StorageError::Fenced {
            presented: 10,
            current: 11
        })
    ));
    assert_eq!(store.assignments().await.unwrap(), before);
    // The new leader carries on from the stored epochs.
    let moved = store.assign_shard(0, 2, 1, 11).await.unwrap();
    assert_eq!((moved.node_id, moved.epoch), (2, 2));
    let shards: Vec<u32> = store
        .assignments()
        .await
        .unwrap()
        .iter()
        .map(|a| a.shard_id)
        .collect();
    assert_eq!(shards, [0], "the claim is not an assignment");
}

/// The leader's announcement: the newest write is read back whole (over gRPC the serving
/// coordinator does not announce itself: it is on the embedded store).
pub(crate) async fn the_leader_announcement_is_the_newest_written<S: Store + Clone>(store: S) {
    assert_eq!(store.leader_announcement().await.unwrap(), None);
    for epoch in [3, 4] {
        let announcement = LeaderAnnouncement {
            epoch,
            id: format!("coordinator-{epoch}"),
            address: format!("http://10.0.0.{epoch}:7070"),
        };
        store.announce_leader(&announcement).await.unwrap();
        assert_eq!(
            store.leader_announcement().await.unwrap(),
            Some(announcement)
        );
    }
}

pub(crate) async fn leases_fence_stale_holders<S: Store + Clone>(store: S) {
    let ttl = Duration::from_secs(10);
    let t0 = Timestamp::now();
    let a = store
        .acquire_lease("conformance-leader", 1, t0, ttl)
        .await
        .unwrap();
    assert_eq!(a.epoch, 1);
    assert!(matches!(
        store.acquire_lease("conformance-leader", 2, t0, ttl).await,
        Err(StorageError::LeaseHeld { holder: 1, .. })
    ));
    let renewed = store
        .renew_lease("conformance-leader", 1, 1, t0.saturating_add(ttl / 2), ttl)
        .await
        .unwrap();
    assert!(renewed.expires_at > a.expires_at);
    let lapsed = renewed.expires_at;
    let b = store
        .acquire_lease("conformance-leader", 2, lapsed, ttl)
        .await
        .unwrap();
    assert_eq!((b.holder, b.epoch), (2, 2));
    assert!(matches!(
        store
            .renew_lease("conformance-leader", 1, 1, lapsed, ttl)
            .await,
        Err(StorageError::Fenced { .. })
    ));
    store
        .release_lease("conformance-leader", 1, 1)
        .await
        .unwrap();
    assert_eq!(
        store.lease("conformance-leader").await.unwrap(),
        Some(b.clone())
    );
    store
        .release_lease("conformance-leader", 2, 2)
        .await
        .unwrap();
    let c = store
        .acquire_lease("conformance-leader", 1, lapsed, ttl)
        .await
        .unwrap();
    assert_eq!(c.epoch, 3);
    assert_eq!(store.lease("other").await.unwrap(), None);
}

/// The shard count is written once, when the cluster forms: whoever proposes another later
/// (a second coordinator racing, a leader with another config) is answered the stored one.
pub(crate) async fn the_shard_count_is_fixed_once<S: Store + Clone>(store: S) {
    // Over a coordinator's remote store, the coordinator has formed the cluster already.
    let formed = store.shard_count().await.unwrap();
    let (a, b) = tokio::join!(store.fix_shard_count(16), store.fix_shard_count(24));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "two proposals at once: one count wins for both");
    match formed {
        Some(formed) => assert_eq!(a, formed),
        None => assert!(a == 16 || a == 24, "{a}"),
    }
    assert_eq!(store.shard_count().await.unwrap(), Some(a));
    assert_eq!(store.fix_shard_count(32).await.unwrap(), a);
    assert_eq!(store.shard_count().await.unwrap(), Some(a));
}

/// After formation the shard count changes only by a resharding that completes: each step a
/// compare-and-set on the record's version, a bad step refused with nothing changed, an abort
/// keeping the count.
pub(crate) async fn a_resharding_is_the_only_way_the_shard_count_changes<S: Store + Clone>(
    store: S,
) {
    let from = store.fix_shard_count(4).await.unwrap();
    let to = from * 2;
    assert_eq!(store.resharding().await.unwrap(), None);
    let at = Timestamp(1_000);
    let wrong = Resharding::start(from + 1, to, None, at);
    assert!(matches!(
        store.put_resharding(&wrong).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(store.resharding().await.unwrap(), None);

    // Two leaders starting at once (a failover midway): one record wins.
    let (first, second) = (
        Resharding::start(from, to, None, at),
        Resharding::start(from, to + 1, None, at),
    );
    let (a, b) = tokio::join!(store.put_resharding(&first), store.put_resharding(&second));
    let running = match (a, b) {
        (Ok(won), Err(StorageError::Conflict { .. }))
        | (Err(StorageError::Conflict { .. }), Ok(won)) => won,
        other => panic!("one start wins: {other:?}"),
    };
    assert_eq!(running.version, 1);
    assert_eq!(store.resharding().await.unwrap().as_ref(), Some(&running));
    let to = running.to;

    let all: Vec<u32> = (0..to).collect();
    let ready = store
        .put_resharding(&Resharding {
            ready: all.clone(),
            switched: vec![0],
            updated_at: Timestamp(2_000),
            ..running.clone()
        })
        .await
        .unwrap();
    assert_eq!((ready.version, ready.switched.as_slice()), (2, &[0][..]));
    // A write made from an older version changes nothing.
    assert!(matches!(
        store
            .put_resharding(&Resharding {
                switched: vec![],
                ..running.clone()
            })
            .await,
        Err(StorageError::Conflict {
            expected: 1,
            current: 2
        })
    ));
    // Completing before every new shard is switched is refused, and the count stays.
    assert!(matches!(
        store
            .put_resharding(&Resharding {
                phase: ReshardPhase::Completed,
                ..ready.clone()
            })
            .await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(store.shard_count().await.unwrap(), Some(from));

    let completed = store
        .put_resharding(&Resharding {
            phase: ReshardPhase::Completed,
            switched: all,
            ..ready.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.shard_count().await.unwrap(), Some(to));
    assert_eq!(store.fix_shard_count(from).await.unwrap(), to);
    assert_eq!(store.resharding().await.unwrap(), Some(completed.clone()));

    // The next one starts from the new count; an abort keeps it.
    assert!(matches!(
        store
            .put_resharding(&Resharding::start(from, to, Some(&completed), at))
            .await,
        Err(StorageError::Invalid(_))
    ));
    let back = store
        .put_resharding(&Resharding::start(to, from, Some(&completed), at))
        .await
        .unwrap();
    // The counts the cluster had are kept from record to record: rows written under `from`
    // are still read in its partitions.
    assert_eq!(back.earlier, Some(vec![from]));
    let aborted = store
        .put_resharding(&Resharding {
            phase: ReshardPhase::Aborted,
            ..back
        })
        .await
        .unwrap();
    assert_eq!(aborted.phase, ReshardPhase::Aborted);
    assert_eq!(store.shard_count().await.unwrap(), Some(to));
    let stored = store.resharding().await.unwrap();
    assert_eq!(
        protonn_storage::earlier_counts(stored.as_ref(), to),
        Some(vec![from])
    );
}

/// Rows past retention are gone after a sweep at "now"; fresh ones stay.
pub(crate) async fn retention_removes_expired_rows<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    let old_audit = now.saturating_sub(366 * DAY);
    let old_ticket = now.saturating_sub(3 * 366 * DAY);
    store
        .append_audit(&[
            audit(GUILD, old_audit, 1, USER, None),
            audit(GUILD, now.saturating_sub(DAY), 2, USER, None),
        ])
        .await
        .unwrap();
    store
        .put_ticket(&ticket(GUILD, 1, USER, old_ticket))
        .await
        .unwrap();
    store
        .put_ticket(&ticket(GUILD, 2, USER, now))
        .await
        .unwrap();
    store
        .touch_account(USER, now.saturating_sub(2 * 366 * DAY))
        .await
        .unwrap();
    store.touch_account(OTHER_USER, now).await.unwrap();
    store.sweep_expired(now).await.unwrap();

    let ids: Vec<u64> = store
        .list_audit(GUILD, Timestamp(0), now, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [2]);
    assert_eq!(store.ticket(GUILD, 1).await.unwrap(), None);
    assert!(store.ticket(GUILD, 2).await.unwrap().is_some());
    assert_eq!(store.account(USER).await.unwrap(), None);
    assert!(store.account(OTHER_USER).await.unwrap().is_some());
}

/// Fills every table with rows about USER and GUILD, and rows about others that must survive.
/// A moderation case of `guild` by `moderator`, about `target` (a channel action without).
fn case(guild: u64, moderator: u64, target: Option<u64>, reason: &str, at: Timestamp) -> Case {
    Case {
        guild_id: guild,
        number: 0,
        action: if target.is_some() { "warn" } else { "lock" }.into(),
        moderator_id: moderator,
        target_id: target,
        channel_id: None,
        reason: reason.into(),
        duration_ms: None,
        at,
    }
}

async fn populate<S: Store + Clone>(store: &S) {
    let now = Timestamp::now();
    // Cases: #1 about USER (by OTHER_USER, naming USER in the reason), #2 a channel lock
    // by OTHER_USER, and in the other guild #1 by USER about OTHER_USER.
    for case in [
        case(
            GUILD,
            OTHER_USER,
            Some(USER),
            &format!("spam by {USER}"),
            now,
        ),
        case(GUILD, OTHER_USER, None, "raid", now),
        case(OTHER_GUILD, USER, Some(OTHER_USER), "rude", now),
    ] {
        store.create_case(&case).await.unwrap();
    }
    store.save(GUILD, 0, &prefix("?")).await.unwrap();
    store.save(GUILD, 1, &prefix("$")).await.unwrap();
    store.save(OTHER_GUILD, 0, &prefix("?")).await.unwrap();
    store
        .append_audit(&[
            audit(GUILD, now, 1, USER, Some(OTHER_USER)),
            audit(GUILD, now, 2, OTHER_USER, Some(USER)),
            audit(OTHER_GUILD, now, 3, USER, None),
            audit(OTHER_GUILD, now, 4, OTHER_USER, None),
        ])
        .await
        .unwrap();
    let usage = UsageAggregator::new(Arc::new(store.clone()));
    usage.record(GUILD, "ping", 1, now);
    usage.record(OTHER_GUILD, "ping", 1, now);
    usage.flush().await.unwrap();
    store.touch_account(USER, now).await.unwrap();
    store.touch_account(OTHER_USER, now).await.unwrap();
    store
        .put_ticket(&ticket(GUILD, 1, USER, now))
        .await
        .unwrap();
    store
        .put_ticket(&ticket(OTHER_GUILD, 2, OTHER_USER, now))
        .await
        .unwrap();
    store
        .append_transcript(&[
            message(GUILD, 1, 10, USER),
            message(GUILD, 1, 11, OTHER_USER),
            message(OTHER_GUILD, 2, 12, USER),
            message(OTHER_GUILD, 2, 13, OTHER_USER),
        ])
        .await
        .unwrap();
    store.put_workflow(&workflow(GUILD, 1, USER)).await.unwrap();
    store
        .put_workflow(&workflow(OTHER_GUILD, 2, USER))
        .await
        .unwrap();
    store
        .put_workflow(&workflow(OTHER_GUILD, 3, OTHER_USER))
        .await
        .unwrap();
    store
        .put_workflow_variables(&[
            variable(GUILD, None, "visits", "3"),
            variable(GUILD, Some(USER), "score", "5"),
            variable(OTHER_GUILD, Some(OTHER_USER), "score", "\"gold\""),
        ])
        .await
        .unwrap();
    store
        .put_workflow_run(&run(GUILD, 1, 0, Some(USER)))
        .await
        .unwrap();
    store
        .put_workflow_run(&run(OTHER_GUILD, 2, 0, Some(OTHER_USER)))
        .await
        .unwrap();
    store
        .put_subscription(&subscription(1, USER, OTHER_GUILD))
        .await
        .unwrap();
    store
        .put_subscription(&subscription(2, OTHER_USER, GUILD))
        .await
        .unwrap();
    store
        .put_subscription(&subscription(3, OTHER_USER, OTHER_GUILD))
        .await
        .unwrap();
    store
        .create_promo(&PromoCode {
            code: "WELCOME".into(),
            percent_off: 10,
            max_redemptions: 10,
            expires_at: now.saturating_add(DAY),
            premium_days: 0,
            slots: 0,
            new_users_only: false,
        })
        .await
        .unwrap();
    store.redeem_promo("WELCOME", USER, now).await.unwrap();
    store
        .redeem_promo("WELCOME", OTHER_USER, now)
        .await
        .unwrap();
    for (name, user) in [("mine", USER), ("theirs", OTHER_USER)] {
        store
            .put_web_session(&dashboard_session(name, user, now))
            .await
            .unwrap();
    }
    for (request_id, user) in [(REQUEST, USER), (OTHER_REQUEST, OTHER_USER)] {
        store
            .put_privacy_request(&PrivacyRequest::new(
                user,
                request_id,
                RequestKind::Objection,
                "dashboard",
                now,
            ))
            .await
            .unwrap();
        let flags = PrivacyFlags {
            objects: true,
            ..PrivacyFlags::default()
        };
        store.set_privacy_flags(user, &flags).await.unwrap();
        store
            .put_export(&PreparedExport {
                user_id: user,
                created_at: now,
                expires_at: now.saturating_add(DAY),
                json: format!("{{\"user\":{user}}}"),
            })
            .await
            .unwrap();
    }
    // The user's premium slot on the other user's guild.
    store
        .put_slot(&PremiumSlot {
            guild_id: OTHER_GUILD,
            user_id: USER,
            assigned_at: now,
            plan: Plan::Premium,
            until: now.saturating_add(DAY),
        })
        .await
        .unwrap();
    // A parked workflow run of the user's message, and the other user's temporary ban.
    for (guild, id, user, outlives_erasure) in [
        (GUILD, "wait:1:ab".to_owned(), USER, false),
        (OTHER_GUILD, format!("unban:{OTHER_USER}"), OTHER_USER, true),
    ] {
        store
            .put_timer(&Timer {
                guild_id: guild,
                shard_id: 0,
                id,
                due: now.saturating_add(HOUR),
                feature: "workflows".into(),
                payload: format!(r#"{{"user_id":{user},"content":"see you later"}}"#),
                claimed_by: None,
                claimed_until: Timestamp(0),
                users: vec![user],
                outlives_erasure,
            })
            .await
            .unwrap();
    }
    // A service announcement DMed to USER and one to OTHER_USER (both consented).
    let campaign = protonn_storage::Campaign {
        id: 9,
        title: None,
        message: "Maintenance tonight".into(),
        created_at: now,
        cancelled_at: None,
        dm: true,
    };
    store.create_campaign(&campaign).await.unwrap();
    for user in [USER, OTHER_USER] {
        let mut dm = protonn_storage::DmDelivery {
            campaign_id: 9,
            shard_id: 0,
            user_id: user,
            state: protonn_storage::DeliveryState::Claimed,
            reason: None,
            claimed_by: "node-a#1".into(),
            at: now,
            channel_id: None,
            message_id: None,
        };
        assert!(store.claim_dm_delivery(&dm, None).await.unwrap());
        dm.state = protonn_storage::DeliveryState::Sent;
        dm.channel_id = Some(77);
        dm.message_id = Some(78);
        assert!(store.finish_dm_delivery(&dm).await.unwrap());
    }
}

/// Request ids whose digits appear nowhere else.
const REQUEST: u64 = 404_551_239_870_112;
const OTHER_REQUEST: u64 = 404_551_239_870_113;

pub(crate) async fn privacy_requests_are_logged_and_anonymised_at_erasure<S: Store + Clone>(
    store: S,
) {
    let t0 = Timestamp::now();
    let later = t0.saturating_add(Duration::from_secs(60));
    store
        .put_privacy_request(&PrivacyRequest::new(
            USER,
            REQUEST,
            RequestKind::Export,
            "dashboard",
            t0,
        ))
        .await
        .unwrap();
    let deletion =
        PrivacyRequest::new(USER, REQUEST + 1, RequestKind::Deletion, "dashboard", later);
    store.put_privacy_request(&deletion).await.unwrap();
    store
        .put_privacy_request(&PrivacyRequest::new(
            OTHER_USER,
            OTHER_REQUEST,
            RequestKind::Access,
            "operator",
            t0,
        ))
        .await
        .unwrap();
    // Answering replaces the entry.
    store
        .put_privacy_request(
            &PrivacyRequest::new(USER, REQUEST, RequestKind::Export, "dashboard", t0)
                .done(later, "export prepared"),
        )
        .await
        .unwrap();
    let mine = store.privacy_requests_of(USER).await.unwrap();
    let ids: Vec<u64> = mine.iter().map(|r| r.request_id).collect();
    assert_eq!(ids, [REQUEST + 1, REQUEST], "newest first");
    assert_eq!(mine[1].done_at, Some(later));
    assert_eq!(mine[0].due_at, later.saturating_add(privacy::ANSWER_WITHIN));
    let window = store
        .privacy_requests(t0, t0.saturating_add(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(window.len(), 2, "the operators' view of a time window");
    // Flags: defaults until set, one read.
    assert_eq!(
        store.privacy_flags(USER).await.unwrap(),
        PrivacyFlags::default()
    );
    let restricted = PrivacyFlags {
        restricted: true,
        email_consent: true,
        ..PrivacyFlags::default()
    };
    store.set_privacy_flags(USER, &restricted).await.unwrap();
    assert_eq!(store.privacy_flags(USER).await.unwrap(), restricted);
    let export = store.export_user(USER).await.unwrap();
    assert_eq!(export.privacy_requests.len(), 2);
    assert_eq!(export.privacy_flags, Some(restricted));

    store.delete_user(USER).await.unwrap();
    assert!(store.privacy_requests_of(USER).await.unwrap().is_empty());
    assert_eq!(
        store.privacy_flags(USER).await.unwrap(),
        PrivacyFlags::default()
    );
    assert_eq!(rows_mentioning(&store, USER).await, Vec::<String>::new());
    // The log keeps that the requests were made, and when, without naming the user.
    let mut kept: Vec<u64> = store
        .privacy_requests_of(privacy::ERASED_USER)
        .await
        .unwrap()
        .iter()
        .map(|r| r.request_id)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, [REQUEST, REQUEST + 1]);
    assert_eq!(
        store.privacy_requests_of(OTHER_USER).await.unwrap().len(),
        1
    );
}

pub(crate) async fn an_export_is_downloaded_once_until_it_expires<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    let export = PreparedExport {
        user_id: USER,
        created_at: now,
        expires_at: now.saturating_add(DAY),
        json: "{\"schema\":\"x\"}".into(),
    };
    assert_eq!(store.export_status(USER, now).await.unwrap(), None);
    store.put_export(&export).await.unwrap();
    assert_eq!(
        store.export_status(USER, now).await.unwrap(),
        Some((export.created_at, export.expires_at))
    );
    // Two downloads at once: one gets the file.
    let (a, b) = tokio::join!(store.take_export(USER, now), store.take_export(USER, now));
    let got: Vec<PreparedExport> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(got, vec![export.clone()]);
    assert_eq!(store.take_export(USER, now).await.unwrap(), None);
    assert_eq!(store.export_status(USER, now).await.unwrap(), None);
    // Past its window it cannot be had, even before the sweep.
    store.put_export(&export).await.unwrap();
    let after = export.expires_at.saturating_add(Duration::from_secs(1));
    assert_eq!(store.export_status(USER, after).await.unwrap(), None);
    assert_eq!(store.take_export(USER, after).await.unwrap(), None);
}

pub(crate) async fn a_browser_clearing_mark_is_spent_once<S: Store + Clone>(store: S) {
    let until = Timestamp::now().saturating_add(DAY);
    store
        .mark_browsers_for_clearing(&["hash-a".into(), "hash-b".into()], until)
        .await
        .unwrap();
    assert!(store.take_browser_clearing("hash-a").await.unwrap());
    assert!(!store.take_browser_clearing("hash-a").await.unwrap());
    assert!(!store.take_browser_clearing("hash-c").await.unwrap());
    assert!(store.take_browser_clearing("hash-b").await.unwrap());
}

pub(crate) async fn old_privacy_records_expire<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    let retention = protonn_storage::Retention::POLICY;
    let old = now.saturating_sub(retention.privacy_requests + DAY);
    store
        .put_privacy_request(&PrivacyRequest::new(
            USER,
            REQUEST,
            RequestKind::Access,
            "dashboard",
            old,
        ))
        .await
        .unwrap();
    store
        .put_privacy_request(&PrivacyRequest::new(
            USER,
            REQUEST + 1,
            RequestKind::Access,
            "dashboard",
            now,
        ))
        .await
        .unwrap();
    let yesterday = now.saturating_sub(DAY);
    store
        .mark_browsers_for_clearing(&["gone".into()], yesterday)
        .await
        .unwrap();
    store.sweep_expired(now).await.unwrap();
    let left: Vec<u64> = store
        .privacy_requests_of(USER)
        .await
        .unwrap()
        .iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(left, [REQUEST + 1], "requests go after the log's retention");
    assert!(!store.take_browser_clearing("gone").await.unwrap());
}

/// A breach over some tables touches the users with rows there by its end, not later ones.
pub(crate) async fn a_breach_lists_the_users_of_the_tables_it_touched<S: Store + Clone>(store: S) {
    populate(&store).await;
    let now = Timestamp::now();
    let end = now.saturating_add(Duration::from_secs(1));
    let tables = ["audit_log".to_owned(), "web_sessions".to_owned()];
    let affected = privacy::affected_users(&store, end, &tables).await.unwrap();
    let users: Vec<u64> = affected.iter().map(|a| a.user_id).collect();
    let mut expected = vec![USER, OTHER_USER];
    expected.sort_unstable();
    assert_eq!(users, expected);
    for user in &affected {
        assert_eq!(
            user.tables.iter().collect::<Vec<_>>(),
            ["audit_log", "web_sessions"]
        );
    }
    let before = now.saturating_sub(DAY);
    assert!(
        privacy::affected_users(&store, before, &tables)
            .await
            .unwrap()
            .is_empty(),
        "rows written after the breach"
    );
    assert!(matches!(
        privacy::affected_users(&store, end, &["secrets".to_owned()]).await,
        Err(StorageError::Invalid(_))
    ));
    let slots = ["premium_slots".to_owned()];
    let holders = privacy::affected_users(&store, end, &slots).await.unwrap();
    assert_eq!(
        holders.iter().map(|a| a.user_id).collect::<Vec<_>>(),
        [USER]
    );
    // Moderation cases name their moderator and their target.
    let affected = privacy::affected_users(&store, end, &["cases".to_owned()])
        .await
        .unwrap();
    let users: Vec<u64> = affected.iter().map(|a| a.user_id).collect();
    assert_eq!(users, expected);
    // Promo redemptions (inside the code's partition on ScyllaDB) name who redeemed.
    let affected = privacy::affected_users(&store, end, &["promo_redemptions".to_owned()])
        .await
        .unwrap();
    let users: Vec<u64> = affected.iter().map(|a| a.user_id).collect();
    assert_eq!(users, expected);
    // Durable timers name their users.
    let affected = privacy::affected_users(&store, end, &["timers".to_owned()])
        .await
        .unwrap();
    let users: Vec<u64> = affected.iter().map(|a| a.user_id).collect();
    assert_eq!(users, expected);
}

/// The background answer to export and deletion requests, over a store holding a bit of
/// everything: the export is the documented JSON of everything about the user; after the
/// deletion nothing names them and the log shows the request answered.
pub(crate) async fn export_and_deletion_requests_are_answered<S: Store + Clone>(store: S) {
    populate(&store).await;
    let now = Timestamp::now();
    let export_for = protonn_storage::Retention::POLICY.exports;
    store.take_export(USER, now).await.unwrap();
    let request = PrivacyRequest::new(USER, REQUEST + 7, RequestKind::Export, "dashboard", now);
    store.put_privacy_request(&request).await.unwrap();
    assert_eq!(
        privacy::answer_pending_requests(&store, now, export_for)
            .await
            .unwrap(),
        1
    );
    let file = store.take_export(USER, now).await.unwrap().unwrap();
    assert_eq!(file.expires_at, now.saturating_add(export_for));
    let document: ExportDocument = serde_json::from_str(&file.json).unwrap();
    assert_eq!(document.schema, privacy::EXPORT_SCHEMA);
    assert_eq!(document.data.user_id, USER);
    assert_eq!(document.data.audit.len(), 3);
    assert_eq!(document.data.tickets.len(), 1);
    assert_eq!(document.data.workflows.len(), 2);
    assert_eq!(document.data.web_sessions.len(), 1);
    assert!(document.data.account.is_some() && document.data.privacy_flags.is_some());
    let answered = store.privacy_requests_of(USER).await.unwrap();
    assert!(
        answered
            .iter()
            .any(|r| r.request_id == REQUEST + 7 && r.done_at.is_some())
    );
    // Nothing more to answer: a second pass does nothing.
    assert_eq!(
        privacy::answer_pending_requests(&store, now, export_for)
            .await
            .unwrap(),
        0
    );

    let erase = PrivacyRequest::new(USER, REQUEST + 8, RequestKind::Deletion, "dashboard", now);
    store.put_privacy_request(&erase).await.unwrap();
    privacy::answer_pending_requests(&store, now, export_for)
        .await
        .unwrap();
    assert_eq!(rows_mentioning(&store, USER).await, Vec::<String>::new());
    let log = store
        .privacy_requests_of(privacy::ERASED_USER)
        .await
        .unwrap();
    let done = log.iter().find(|r| r.request_id == REQUEST + 8).unwrap();
    assert_eq!(done.kind, RequestKind::Deletion);
    assert!(done.done_at.is_some());
    assert!(store.account(OTHER_USER).await.unwrap().is_some());
}

/// A logged-in dashboard session whose secrets all contain `secret`.
fn dashboard_session(name: &str, user: u64, now: Timestamp) -> WebSession {
    WebSession {
        id: format!("secret-hash-{name}"),
        user_id: Some(user),
        created_at: now,
        last_seen: now,
        expires_at: now.saturating_add(DAY),
        csrf_token: format!("secret-csrf-{name}"),
        login_state: None,
        return_to: None,
        sealed_tokens: Some(format!("secret-tokens-{name}")),
        label: format!("Firefox ({name})"),
    }
}

/// A member only mentioned (`<@id>`) in another's transcript line or in another's parked
/// workflow run: their export lists the line and the run, a breach listing names them, and
/// their erasure replaces the mention with `<@0>`, keeping the line and the run for the
/// others (their own line goes).
pub(crate) async fn users_only_mentioned_are_exported_anonymised_at_erasure_and_listed<S: Store>(
    store: S,
) {
    let now = Timestamp::now();
    store
        .put_ticket(&ticket(GUILD, 1, OTHER_USER, now))
        .await
        .unwrap();
    let line = |message_id: u64, author_id: u64, content: String| TranscriptMessage {
        guild_id: GUILD,
        ticket_id: 1,
        message_id,
        author_id,
        author_name: "someone".into(),
        at: now,
        content,
        attachments: Vec::new(),
        edited_at: None,
        earlier_texts: Vec::new(),
        deleted_at: None,
    };
    let mentioning = TranscriptMessage {
        earlier_texts: vec![format!("ping <@{USER}>")],
        ..line(10, OTHER_USER, format!("ask <@{USER}> or <@!{USER}>"))
    };
    let own = line(11, USER, format!("thanks <@{OTHER_USER}>"));
    store
        .append_transcript(&[mentioning.clone(), own.clone()])
        .await
        .unwrap();
    let wait = Timer {
        guild_id: GUILD,
        shard_id: 0,
        id: "wait:1:ab".into(),
        due: now.saturating_add(HOUR),
        feature: "workflows".into(),
        payload: format!(r#"{{"facts":{{"user_id":{OTHER_USER},"content":"hug <@{USER}>"}}}}"#),
        claimed_by: None,
        claimed_until: Timestamp(0),
        users: vec![OTHER_USER],
        outlives_erasure: false,
    };
    store.put_timer(&wait).await.unwrap();

    let lines_and_timers = |export: protonn_storage::UserExport| {
        let mut lines: Vec<u64> = export
            .transcript_messages
            .iter()
            .map(|m| m.message_id)
            .collect();
        lines.sort_unstable();
        let timers: Vec<String> = export.timers.into_iter().map(|t| t.id).collect();
        (lines, timers)
    };
    for user in [USER, OTHER_USER] {
        assert_eq!(
            lines_and_timers(store.export_user(user).await.unwrap()),
            (vec![10, 11], vec![wait.id.clone()]),
            "user {user}"
        );
    }
    let tables = ["transcripts".to_owned(), "timers".to_owned()];
    let listed = |affected: Vec<privacy::Affected>| -> Vec<(u64, Vec<String>)> {
        affected
            .into_iter()
            .map(|a| (a.user_id, a.tables.into_iter().collect()))
            .collect()
    };
    let both: Vec<String> = vec!["timers".to_owned(), "transcripts".to_owned()];
    let mut expected = vec![(USER, both.clone()), (OTHER_USER, both.clone())];
    expected.sort();
    assert_eq!(
        listed(privacy::affected_users(&store, now, &tables).await.unwrap()),
        expected
    );

    store.delete_user(USER).await.unwrap();
    let transcript = store.transcript(GUILD, 1).await.unwrap();
    assert_eq!(
        transcript,
        vec![TranscriptMessage {
            content: "ask <@0> or <@0>".into(),
            earlier_texts: vec!["ping <@0>".into()],
            ..mentioning
        }],
        "their own line went, the other's stays without them"
    );
    let timers = store.timers_of_guild(GUILD).await.unwrap();
    assert_eq!(
        timers,
        vec![Timer {
            payload: wait.payload.replace(&format!("<@{USER}>"), "<@0>"),
            ..wait.clone()
        }],
        "the run goes on for its author"
    );
    assert_eq!(
        lines_and_timers(store.export_user(USER).await.unwrap()),
        (vec![], vec![])
    );
    assert_eq!(
        lines_and_timers(store.export_user(OTHER_USER).await.unwrap()),
        (vec![10], vec![wait.id.clone()])
    );
    assert_eq!(rows_mentioning(&store, USER).await, Vec::<String>::new());
    assert_eq!(
        listed(privacy::affected_users(&store, now, &tables).await.unwrap()),
        vec![(OTHER_USER, both)]
    );
}

/// Setting a user's flags lists the change for the nodes to learn (what changed since a
/// time, oldest first); the listed change is in the user's export and a breach listing, and
/// goes with their erasure.
pub(crate) async fn flag_changes_are_listed_for_nodes_and_go_with_the_user<S: Store>(store: S) {
    let before = Timestamp::now().saturating_sub(Duration::from_secs(1));
    let restricted = PrivacyFlags {
        restricted: true,
        ..PrivacyFlags::default()
    };
    store.set_privacy_flags(USER, &restricted).await.unwrap();
    store
        .set_privacy_flags(OTHER_USER, &PrivacyFlags::default())
        .await
        .unwrap();
    let changes = store.privacy_flag_changes(before).await.unwrap();
    let mut users: Vec<u64> = changes.iter().map(|c| c.user_id).collect();
    users.sort_unstable();
    let mut expected = vec![USER, OTHER_USER];
    expected.sort_unstable();
    assert_eq!(users, expected);
    assert!(
        changes.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first"
    );
    assert!(changes.iter().all(|c| c.at >= before));
    let later = Timestamp::now().saturating_add(HOUR);
    assert!(store.privacy_flag_changes(later).await.unwrap().is_empty());

    let at = changes.iter().find(|c| c.user_id == USER).unwrap().at;
    assert_eq!(
        store.export_user(USER).await.unwrap().privacy_flag_changes,
        [at]
    );
    let table = ["privacy_flag_changes".to_owned()];
    let affected = privacy::affected_users(&store, Timestamp::now(), &table)
        .await
        .unwrap();
    assert_eq!(
        affected.iter().map(|a| a.user_id).collect::<Vec<_>>(),
        expected
    );

    store.delete_user(USER).await.unwrap();
    let left: Vec<u64> = store
        .privacy_flag_changes(before)
        .await
        .unwrap()
        .iter()
        .map(|c| c.user_id)
        .collect();
    assert_eq!(left, [OTHER_USER]);
    assert_eq!(rows_mentioning(&store, USER).await, Vec::<String>::new());
}

async fn rows_mentioning<S: Store>(store: &S, id: u64) -> Vec<String> {
    let needle = id.to_string();
    store
        .dump_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|row| row.text.contains(&needle))
        .map(|row| format!("{}: {}", row.table, row.text))
        .collect()
}

async fn tables_with_rows<S: Store>(store: &S) -> BTreeSet<String> {
    store
        .dump_rows()
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.table)
        .collect()
}

pub(crate) async fn export_covers_every_table<S: Store + Clone>(store: S) {
    populate(&store).await;
    let export = store.export_user(USER).await.unwrap();
    assert_eq!(export.user_id, USER);
    assert_eq!(export.account.as_ref().map(|a| a.user_id), Some(USER));
    let mut audit_ids: Vec<u64> = export.audit.iter().map(|e| e.id).collect();
    audit_ids.sort_unstable();
    assert_eq!(audit_ids, [1, 2, 3]);
    assert_eq!(export.tickets.len(), 1);
    let mut messages: Vec<u64> = export
        .transcript_messages
        .iter()
        .map(|m| m.message_id)
        .collect();
    messages.sort_unstable();
    assert_eq!(messages, [10, 12]);
    assert_eq!(export.workflows.len(), 2);
    // The user's own variables and the runs their events started; never the server's.
    let variables: Vec<(u64, &str)> = export
        .workflow_variables
        .iter()
        .map(|v| (v.guild_id, v.name.as_str()))
        .collect();
    assert_eq!(variables, [(GUILD, "score")]);
    let runs: Vec<(u64, u64)> = export
        .workflow_runs
        .iter()
        .map(|r| (r.guild_id, r.workflow_id))
        .collect();
    assert_eq!(runs, [(GUILD, 1)]);
    assert_eq!(export.subscriptions.len(), 1);
    assert_eq!(export.redemptions.len(), 1);
    // Dashboard sessions are listed without their secrets (cookie hash, CSRF, tokens).
    let labels: Vec<&str> = export
        .web_sessions
        .iter()
        .map(|s| s.label.as_str())
        .collect();
    assert_eq!(labels, ["Firefox (mine)"]);
    assert_eq!(export.privacy_requests.len(), 1);
    assert!(export.privacy_flags.is_some_and(|f| f.objects));
    let slots: Vec<u64> = export.premium_slots.iter().map(|s| s.guild_id).collect();
    assert_eq!(slots, [OTHER_GUILD]);
    // Moderation cases where the user was the member acted on or the moderator.
    let mut cases: Vec<(u64, u64)> = export
        .cases
        .iter()
        .map(|c| (c.guild_id, c.number))
        .collect();
    cases.sort_unstable();
    let mut expected = vec![(GUILD, 1), (OTHER_GUILD, 1)];
    expected.sort_unstable();
    assert_eq!(cases, expected);
    let timers: Vec<&str> = export.timers.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(timers, ["wait:1:ab"]);
    let dms: Vec<(u64, u64)> = export
        .announcement_dms
        .iter()
        .map(|d| (d.campaign_id, d.user_id))
        .collect();
    assert_eq!(dms, [(9, USER)]);
    assert!(
        !serde_json::to_string(&export.web_sessions)
            .unwrap()
            .contains("secret")
    );
    // Nothing about someone else leaks into the export, except as the other party of an
    // audit entry or in the transcript of the user's own ticket.
    assert!(export.subscriptions.iter().all(|s| s.user_id == USER));
    assert!(
        serde_json::to_string(&export)
            .unwrap()
            .contains(&USER.to_string())
    );
}

pub(crate) async fn deleting_a_user_leaves_nothing<S: Store + Clone>(store: S) {
    populate(&store).await;
    let before = tables_with_rows(&store).await;
    assert!(!rows_mentioning(&store, USER).await.is_empty());
    assert!(store.delete_user(USER).await.unwrap() > 0);
    assert_eq!(rows_mentioning(&store, USER).await, Vec::<String>::new());
    assert_eq!(store.export_user(USER).await.unwrap().account, None);
    // What belongs to others stays: their account, their audit entries (1 and 2 now with the
    // user anonymised), ticket 2 with message 13, workflows (author cleared), their
    // subscriptions and redemption.
    assert!(store.account(OTHER_USER).await.unwrap().is_some());
    let other = store.export_user(OTHER_USER).await.unwrap();
    let mut audit_ids: Vec<u64> = other.audit.iter().map(|e| e.id).collect();
    audit_ids.sort_unstable();
    assert_eq!(audit_ids, [1, 2, 4]);
    // Security audit and billing records are kept without the user (the policy keeps them).
    let erased = store.export_user(privacy::ERASED_USER).await.unwrap();
    let mut kept: Vec<u64> = erased.audit.iter().map(|e| e.id).collect();
    kept.sort_unstable();
    assert_eq!(kept, [1, 2, 3]);
    assert!(
        erased
            .audit
            .iter()
            .all(|e| e.actor_id != USER && e.target_id != Some(USER))
    );
    assert_eq!(
        erased
            .subscriptions
            .iter()
            .map(|s| s.subscription_id)
            .collect::<Vec<_>>(),
        [1]
    );
    assert!(matches!(
        store.delete_user(privacy::ERASED_USER).await,
        Err(StorageError::Invalid(_))
    ));
    // Moderation cases are kept (they protect the server's members) without the user: the
    // other moderator still finds all three, the erased user's history is empty.
    assert_eq!(other.cases.len(), 3);
    let mut kept: Vec<(u64, u64)> = erased
        .cases
        .iter()
        .map(|c| (c.guild_id, c.number))
        .collect();
    kept.sort_unstable();
    let mut expected = vec![(GUILD, 1), (OTHER_GUILD, 1)];
    expected.sort_unstable();
    assert_eq!(kept, expected);
    let about = store.case(GUILD, 1).await.unwrap().unwrap();
    assert_eq!(about.target_id, Some(privacy::ERASED_USER));
    assert_eq!(about.reason, "spam by 0");
    assert!(store.cases_about(GUILD, USER, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .cases_about(GUILD, privacy::ERASED_USER, 10)
            .await
            .unwrap(),
        [about]
    );
    assert_eq!(other.transcript_messages.len(), 1);
    assert_eq!(other.subscriptions.len(), 2);
    assert_eq!(store.workflows(OTHER_GUILD).await.unwrap().len(), 2);
    assert_eq!(
        store.workflow(GUILD, 1).await.unwrap().unwrap().created_by,
        None
    );
    assert_eq!(store.promo("WELCOME").await.unwrap().unwrap().1, 2);
    // The user's parked run went; the other user's unban is theirs still.
    assert!(store.timers_of_guild(GUILD).await.unwrap().is_empty());
    assert_eq!(other.timers.len(), 1);
    // Erasure logs the user out of the dashboard; others stay logged in.
    let now = Timestamp::now();
    assert!(store.web_sessions_of(USER, now).await.unwrap().is_empty());
    assert_eq!(
        store.web_sessions_of(OTHER_USER, now).await.unwrap().len(),
        1
    );
    assert!(before.contains("web_sessions"), "{before:?}");
    // The user's announcement DM went; the other user's is theirs still.
    assert!(before.contains("announce_dm_deliveries"), "{before:?}");
    assert_eq!(other.announcement_dms.len(), 1);
    // The scan above covered every table that had rows.
    assert!(before.len() >= 10, "{before:?}");
}

pub(crate) async fn deleting_a_guild_leaves_nothing<S: Store + Clone>(store: S) {
    populate(&store).await;
    assert!(!rows_mentioning(&store, GUILD).await.is_empty());
    assert!(store.delete_guild(GUILD).await.unwrap() > 0);
    assert_eq!(rows_mentioning(&store, GUILD).await, Vec::<String>::new());
    assert_eq!(store.load(GUILD).await.unwrap(), None);
    assert!(store.history(GUILD).await.unwrap().is_empty());
    // The other guild is untouched.
    assert_eq!(store.load(OTHER_GUILD).await.unwrap().unwrap().version, 1);
    assert_eq!(
        store
            .list_audit(OTHER_GUILD, Timestamp(0), Timestamp(u64::MAX / 2), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.transcript(OTHER_GUILD, 2).await.unwrap().len(), 2);
    assert_eq!(store.workflows(OTHER_GUILD).await.unwrap().len(), 2);
    assert!(store.subscription(3).await.unwrap().is_some());
    assert_eq!(store.export_user(USER).await.unwrap().tickets.len(), 0);
    // The guild's cases went, with their place in the users' data.
    assert!(store.cases(GUILD, None, 10).await.unwrap().is_empty());
    let cases = store.export_user(USER).await.unwrap().cases;
    assert_eq!(
        cases.iter().map(|c| c.guild_id).collect::<Vec<_>>(),
        [OTHER_GUILD]
    );
    assert_eq!(store.export_user(OTHER_USER).await.unwrap().cases.len(), 1);
}

pub(crate) async fn a_departed_guild_is_erased_when_due_unless_the_bot_returns<S: Store + Clone>(
    store: S,
) {
    populate(&store).await;
    let day = 86_400_000;
    let left = Timestamp(1_000 * day);
    store
        .schedule_guild_deletion(GUILD, Timestamp(left.0 + 30 * day))
        .await
        .unwrap();
    store
        .schedule_guild_deletion(OTHER_GUILD, Timestamp(left.0 + 30 * day))
        .await
        .unwrap();
    let mut scheduled = store.scheduled_guild_deletions().await.unwrap();
    scheduled.sort();
    let mut expected = vec![
        (GUILD, Timestamp(left.0 + 30 * day)),
        (OTHER_GUILD, Timestamp(left.0 + 30 * day)),
    ];
    expected.sort();
    assert_eq!(scheduled, expected);

    // The bot came back to the other guild: its data stays.
    assert!(store.cancel_guild_deletion(OTHER_GUILD).await.unwrap());
    assert!(
        !store.cancel_guild_deletion(OTHER_GUILD).await.unwrap(),
        "nothing left to cancel"
    );

    // Before the date nothing of the guild goes; after it, everything does.
    store
        .sweep_expired(Timestamp(left.0 + 29 * day))
        .await
        .unwrap();
    assert!(store.load(GUILD).await.unwrap().is_some());
    assert!(
        store
            .sweep_expired(Timestamp(left.0 + 31 * day))
            .await
            .unwrap()
            > 0
    );
    assert_eq!(rows_mentioning(&store, GUILD).await, Vec::<String>::new());
    assert!(store.scheduled_guild_deletions().await.unwrap().is_empty());
    assert_eq!(store.load(OTHER_GUILD).await.unwrap().unwrap().version, 1);
}

/// More rows than one page (the Scylla backend reads 1,000 rows per page): a listing returns
/// them all, in order, a limit stops inside a page, and the user's index pages too.
pub(crate) async fn listings_span_several_pages<S: Store + Clone>(store: S) {
    const ROWS: u64 = 2_500;
    let base = Timestamp::now().saturating_sub(DAY);
    let entries: Vec<AuditEntry> = (0..ROWS)
        .map(|i| audit(GUILD, Timestamp(base.0 + i), i, USER, None))
        .collect();
    store.append_audit(&entries).await.unwrap();
    let until = Timestamp::now().saturating_add(DAY);
    let all = store.list_audit(GUILD, base, until, 10_000).await.unwrap();
    assert_eq!(all.len() as u64, ROWS);
    assert!(all.windows(2).all(|w| w[0].at < w[1].at), "ordered by time");
    let some = store.list_audit(GUILD, base, until, 1_500).await.unwrap();
    assert_eq!(
        some.iter().map(|e| e.id).collect::<Vec<_>>(),
        (0..1_500).collect::<Vec<_>>()
    );
    let export = store.export_user(USER).await.unwrap();
    assert_eq!(export.audit.len() as u64, ROWS, "the user index pages too");
    // An unbounded `to` is answered, and the same.
    let unbounded = store
        .list_audit(GUILD, Timestamp(0), Timestamp(u64::MAX), 10_000)
        .await
        .unwrap();
    assert_eq!(unbounded.len() as u64, ROWS);
}

/// Retention with a real clock: an account whose two-year inactivity ends two seconds from
/// now is gone within a deadline (ScyllaDB by TTL; the embedded store by its sweep, which the
/// loop runs as `spawn_sweeper` would), while one with time left stays.
pub(crate) async fn short_lived_rows_expire_in_real_time<S: Store + Clone>(store: S) {
    let inactivity = protonn_storage::Retention::POLICY.inactive_accounts;
    let now = Timestamp::now();
    let lapsing = now
        .saturating_sub(inactivity)
        .saturating_add(Duration::from_secs(2));
    store.touch_account(USER, lapsing).await.unwrap();
    store.touch_account(OTHER_USER, now).await.unwrap();
    assert!(
        store.account(USER).await.unwrap().is_some(),
        "not expired yet"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        store.sweep_expired(Timestamp::now()).await.unwrap();
        if store.account(USER).await.unwrap().is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the account outlived its retention by 28 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(store.account(OTHER_USER).await.unwrap().is_some());
}

/// A code of limit N redeemed by many users at once is redeemed exactly N times, each count
/// given once, and every user either has a redemption or was refused: none counted without
/// being recorded, none locked out without being counted.
pub(crate) async fn a_promo_race_redeems_exactly_its_limit<S: Store + Clone>(store: S) {
    const LIMIT: u32 = 5;
    const RACERS: u64 = 24;
    let now = Timestamp::now();
    store
        .create_promo(&PromoCode {
            code: "RACE".into(),
            percent_off: 50,
            max_redemptions: LIMIT,
            expires_at: now.saturating_add(DAY),
            premium_days: 0,
            slots: 0,
            new_users_only: false,
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { (i, store.redeem_promo("RACE", 1_000 + i, now).await) })
        })
        .collect();
    let mut counts = Vec::new();
    let mut winners = BTreeSet::new();
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(count)) => {
                counts.push(count);
                winners.insert(1_000 + i);
            }
            (_, Err(StorageError::PromoRejected { reason, .. })) => {
                assert_eq!(reason, "exhausted");
            }
            (_, Err(other)) => panic!("unexpected {other}"),
        }
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=LIMIT).collect::<Vec<_>>());
    assert_eq!(store.promo("RACE").await.unwrap().unwrap().1, LIMIT);
    for user in 1_000..1_000 + RACERS {
        let redeemed = store.redemptions_of_user(user).await.unwrap();
        assert_eq!(
            redeemed.len(),
            usize::from(winners.contains(&user)),
            "user {user}"
        );
    }

    // One user racing themself redeems once.
    store
        .create_promo(&PromoCode {
            code: "SELF".into(),
            percent_off: 5,
            max_redemptions: 100,
            expires_at: now.saturating_add(DAY),
            premium_days: 0,
            slots: 0,
            new_users_only: false,
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.redeem_promo("SELF", USER, now).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(count) => {
                assert_eq!(count, 1);
                won += 1;
            }
            Err(StorageError::PromoRejected { reason, .. }) => {
                assert_eq!(reason, "already redeemed by this user");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.promo("SELF").await.unwrap().unwrap().1, 1);
}

/// Each write that names a user is found through the user at once, and a rewrite that changes
/// who it names moves the index entry with it (row and index written together).
pub(crate) async fn personal_rows_are_indexed_with_their_writes<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    store
        .put_ticket(&ticket(GUILD, 1, USER, now))
        .await
        .unwrap();
    store
        .append_transcript(&[message(GUILD, 1, 10, USER)])
        .await
        .unwrap();
    store.put_workflow(&workflow(GUILD, 1, USER)).await.unwrap();
    store
        .put_subscription(&subscription(1, USER, GUILD))
        .await
        .unwrap();
    store
        .append_audit(&[audit(GUILD, now, 1, USER, Some(OTHER_USER))])
        .await
        .unwrap();
    let export = store.export_user(USER).await.unwrap();
    assert_eq!(
        (
            export.tickets.len(),
            export.transcript_messages.len(),
            export.workflows.len(),
            export.subscriptions.len(),
            export.audit.len()
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(store.export_user(OTHER_USER).await.unwrap().audit.len(), 1);

    // The same rows rewritten naming OTHER_USER: the index follows.
    store
        .put_ticket(&ticket(GUILD, 1, OTHER_USER, now))
        .await
        .unwrap();
    store
        .put_workflow(&workflow(GUILD, 1, OTHER_USER))
        .await
        .unwrap();
    store
        .put_subscription(&subscription(1, OTHER_USER, GUILD))
        .await
        .unwrap();
    let mine = store.export_user(USER).await.unwrap();
    assert_eq!(
        (
            mine.tickets.len(),
            mine.workflows.len(),
            mine.subscriptions.len()
        ),
        (0, 0, 0)
    );
    let theirs = store.export_user(OTHER_USER).await.unwrap();
    assert_eq!(
        (
            theirs.tickets.len(),
            theirs.workflows.len(),
            theirs.subscriptions.len()
        ),
        (1, 1, 1)
    );
    assert!(store.delete_user(OTHER_USER).await.unwrap() > 0);
    assert_eq!(
        rows_mentioning(&store, OTHER_USER).await,
        Vec::<String>::new()
    );
}

fn checkpoint(shard_id: u32, epoch: u64, sequence: u64) -> SessionCheckpoint {
    SessionCheckpoint {
        shard_id,
        epoch,
        session_id: format!("session-{shard_id}-{epoch}"),
        sequence,
        resume_url: "wss://gateway.example".into(),
        at: Timestamp::now(),
    }
}

/// A node's checkpoints written in one call: those of shards it no longer owns (an epoch
/// older than the assignment) are skipped and reported, the rest stored.
pub(crate) async fn checkpoints_are_saved_in_batches_and_stale_epochs_ignored<S: Store + Clone>(
    store: S,
) {
    store.claim_assignments(1).await.unwrap();
    store.assign_shard(1, 7, 0, 1).await.unwrap();
    store.assign_shard(2, 7, 0, 1).await.unwrap();
    store.assign_shard(2, 8, 1, 1).await.unwrap(); // shard 2 moved to node 8: epoch 2
    let skipped = store
        .save_checkpoints(&[
            checkpoint(1, 1, 10),
            checkpoint(2, 1, 20),
            checkpoint(3, 1, 30),
        ])
        .await
        .unwrap();
    assert_eq!(skipped, [2]);
    assert_eq!(store.checkpoint(1).await.unwrap().unwrap().sequence, 10);
    assert_eq!(store.checkpoint(2).await.unwrap(), None);
    assert_eq!(store.checkpoint(3).await.unwrap().unwrap().sequence, 30);

    let skipped = store
        .save_checkpoints(&[checkpoint(1, 1, 11), checkpoint(2, 2, 21)])
        .await
        .unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(store.checkpoint(2).await.unwrap().unwrap().sequence, 21);
    // The old owner's late batch changes nothing.
    let skipped = store
        .save_checkpoints(&[checkpoint(2, 1, 99)])
        .await
        .unwrap();
    assert_eq!(skipped, [2]);
    let stored = store.checkpoint(2).await.unwrap().unwrap();
    assert_eq!((stored.epoch, stored.sequence), (2, 21));
    assert!(store.save_checkpoints(&[]).await.unwrap().is_empty());
}

/// A usage flush written again (a retry after an error that hid whether it applied) counts
/// once; another flush with the same counts adds to them.
pub(crate) async fn a_usage_flush_written_twice_counts_once<S: Store + Clone>(store: S) {
    let now = Timestamp::now();
    let count = |command: &str, count| UsageCount {
        guild_id: GUILD,
        hour: now.hour(),
        command: command.into(),
        channel_id: 1,
        count,
    };
    let deltas = [count("help", 1), count("ping", 3)];
    store.add_usage_flush(41, &deltas).await.unwrap();
    store.add_usage_flush(41, &deltas).await.unwrap();
    let counts = |usage: Vec<UsageCount>| -> Vec<(String, u64)> {
        usage.into_iter().map(|c| (c.command, c.count)).collect()
    };
    let today = now.day();
    assert_eq!(
        counts(store.usage(GUILD, today, today).await.unwrap()),
        [("help".to_owned(), 1), ("ping".to_owned(), 3)]
    );
    store.add_usage_flush(42, &deltas[1..]).await.unwrap();
    assert_eq!(
        counts(store.usage(GUILD, today - 1, today + 1).await.unwrap()),
        [("help".to_owned(), 1), ("ping".to_owned(), 6)]
    );
}

/// Calls `$run!` with every case name.
/// What READY compares with the guilds it lists: the configured guilds of one shard.
pub(crate) async fn stored_guilds_are_listed_by_shard<S: Store>(store: S) {
    // Shards of 2: (id >> 22) % 2.
    let (even, odd) = (4 << 22, 7 << 22);
    for guild in [even, odd] {
        store.save(guild, 0, &GuildConfig::default()).await.unwrap();
    }
    assert_eq!(store.stored_guilds(0, 2).await.unwrap(), vec![even]);
    assert_eq!(store.stored_guilds(1, 2).await.unwrap(), vec![odd]);
    let mut all = store.stored_guilds(0, 1).await.unwrap();
    all.sort();
    assert_eq!(all, vec![even, odd]);
}

macro_rules! conformance_cases {
    ($run:ident) => {
        $run!(
            config_versions_history_and_rollback,
            concurrent_saves_have_one_winner,
            audit_lists_by_guild_and_time,
            audit_writer_batches_and_acknowledges,
            usage_is_aggregated_then_flushed,
            usage_past_its_retention_is_gone,
            accounts_track_last_activity,
            tickets_keep_transcripts,
            tickets_are_numbered_once_and_limited_per_opener,
            tickets_are_listed_by_filter_and_transcripts_read_by_page,
            workflows_crud,
            workflow_variables_are_kept_replaced_and_erased,
            workflow_runs_keep_a_ring_of_slots_and_go_with_their_workflow,
            subscriptions_and_promo_codes,
            cluster_tables_fence_by_epoch,
            assignments_are_written_only_by_the_newest_leader,
            the_leader_announcement_is_the_newest_written,
            leases_fence_stale_holders,
            the_shard_count_is_fixed_once,
            a_resharding_is_the_only_way_the_shard_count_changes,
            retention_removes_expired_rows,
            export_covers_every_table,
            deleting_a_user_leaves_nothing,
            deleting_a_guild_leaves_nothing,
            a_departed_guild_is_erased_when_due_unless_the_bot_returns,
            listings_span_several_pages,
            short_lived_rows_expire_in_real_time,
            a_promo_race_redeems_exactly_its_limit,
            personal_rows_are_indexed_with_their_writes,
            checkpoints_are_saved_in_batches_and_stale_epochs_ignored,
            a_usage_flush_written_twice_counts_once,
            stored_guilds_are_listed_by_shard,
            privacy_requests_are_logged_and_anonymised_at_erasure,
            an_export_is_downloaded_once_until_it_expires,
            a_browser_clearing_mark_is_spent_once,
            old_privacy_records_expire,
            export_and_deletion_requests_are_answered,
            a_breach_lists_the_users_of_the_tables_it_touched,
            users_only_mentioned_are_exported_anonymised_at_erasure_and_listed,
            flag_changes_are_listed_for_nodes_and_go_with_the_user,
        );
    };
}
