//! Conformance of the privacy backfill (`protonn privacy backfill`): rows stored the old
//! way, before their table's user index, mention index or retention existed, are found by
//! export and erasure and expire once it ran. The old way is the harness's: rows are
//! written through today's API, then the harness takes away what today's write adds (the
//! index entries; on ScyllaDB the TTL too), per backend.

use std::path::Path;
use std::time::Duration;

use protonn_storage::{
    BACKFILL_PAGE_MAX, BackfillTable, Case, InboxEvent, StorageError, Store, Ticket, Timer,
    Timestamp, TranscriptMessage,
};

const GUILD: u64 = 902_611_450_873_360_441;
const OPENER: u64 = 702_519_334_118_902_273;
const AUTHOR: u64 = 611_842_007_355_201_537;
const MENTIONED: u64 = 845_130_662_790_516_769;
const MOD: u64 = 771_905_213_640_084_481;
const TARGET: u64 = 690_311_874_522_615_809;
const PAYER: u64 = 655_020_918_377_461_761;
const LIVE_TICKET: u64 = 11;
const OLD_TICKET: u64 = 12;
const DAY: Duration = Duration::from_secs(86_400);

/// The rows the cases write, as stored.
pub(crate) struct OldRows {
    lines: Vec<TranscriptMessage>,
    cases: Vec<Case>,
    events: Vec<InboxEvent>,
}

fn ago(days: u64) -> Timestamp {
    Timestamp::now().saturating_sub(DAY * u32::try_from(days).unwrap())
}

fn ticket(ticket_id: u64, opened_at: Timestamp) -> Ticket {
    Ticket {
        guild_id: GUILD,
        ticket_id,
        opener_id: OPENER,
        channel_id: 4242,
        subject: "help".into(),
        category: None,
        opened_at,
        closed_at: Some(opened_at),
        claimed_at: None,
        first_response_at: None,
        close_reason: None,
        place: protonn_storage::TicketPlace::Thread,
    }
}

fn line(ticket_id: u64, message_id: u64, content: &str, earlier: &[&str]) -> TranscriptMessage {
    TranscriptMessage {
        guild_id: GUILD,
        ticket_id,
        message_id,
        author_id: AUTHOR,
        author_name: "author".into(),
        at: Timestamp::now(),
        content: content.to_owned(),
        attachments: Vec::new(),
        edited_at: None,
        earlier_texts: earlier.iter().map(|t| (*t).to_owned()).collect(),
        deleted_at: None,
    }
}

fn case(at: Timestamp) -> Case {
    Case {
        guild_id: GUILD,
        number: 0,
        action: "warn".into(),
        moderator_id: MOD,
        target_id: Some(TARGET),
        channel_id: None,
        reason: "spam".into(),
        duration_ms: None,
        at,
    }
}

fn parked_run() -> Timer {
    Timer {
        guild_id: GUILD,
        shard_id: 0,
        id: "workflow:7:wait".into(),
        due: Timestamp::now().saturating_add(DAY),
        feature: "workflows".into(),
        payload: format!(r#"{{"content":"ping <@{MENTIONED}>"}}"#),
        claimed_by: None,
        claimed_until: Timestamp(0),
        users: vec![TARGET],
        outlives_erasure: false,
    }
}

/// Writes, through today's API: a ticket with two lines that mention `MENTIONED` (in the
/// text, in an earlier text), a ticket past its 3 years with one line, a case and a case
/// past its year, a parked run mentioning `MENTIONED`, and two processed payment events
/// about `PAYER`, one past its year.
pub(crate) async fn write_rows<S: Store>(store: &S) -> OldRows {
    store
        .put_ticket(&ticket(LIVE_TICKET, ago(2)))
        .await
        .unwrap();
    store
        .put_ticket(&ticket(OLD_TICKET, ago(4 * 365)))
        .await
        .unwrap();
    let lines = vec![
        line(LIVE_TICKET, 101, &format!("thanks <@{MENTIONED}>"), &[]),
        line(
            LIVE_TICKET,
            102,
            "fixed",
            &[&format!("<@!{MENTIONED}> look")],
        ),
        line(OLD_TICKET, 103, "an old line", &[]),
    ];
    // Rows past their retention are not written by today's API on ScyllaDB; the harness
    // writes them there itself ([`strip_scylla`]).
    let _ = store.append_transcript(&lines).await;
    let mut cases = vec![case(ago(2)), case(ago(400))];
    for case in &mut cases {
        case.number = store.create_case(case).await.unwrap();
    }
    store.put_timer(&parked_run()).await.unwrap();
    let mut events = Vec::new();
    for (id, received_at) in [
        ("evt_backfill_live", ago(2)),
        ("evt_backfill_old", ago(400)),
    ] {
        let event = InboxEvent {
            event_id: id.to_owned(),
            event_type: "subscription.updated".into(),
            occurred_at: received_at,
            received_at,
            body: Some("{}".into()),
            outcome: None,
            user_id: Some(PAYER),
        };
        store.receive_event(&event).await.unwrap();
        store.finish_event(id, "applied").await.unwrap();
        events.push(InboxEvent {
            body: None,
            outcome: Some("applied".into()),
            ..event
        });
    }
    OldRows {
        lines,
        cases,
        events,
    }
}

/// The index tags (`RowRef::bytes`) of transcript lines, cases, timers and inbox events.
const OLD_TAGS: [u8; 4] = [3, 9, 11, 12];

/// The old form on redb, with the store closed: no `user_refs` or `expiry` entry for a
/// transcript line, a case, a timer or an inbox event.
pub(crate) fn strip_embedded(data_dir: &Path) {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
    const USER_REFS: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("user_refs");
    const EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("expiry");
    let db = redb::Database::open(data_dir.join("protonn.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    for def in [USER_REFS, EXPIRY] {
        txn.open_table(def)
            .unwrap()
            .retain(|(_, row), ()| !OLD_TAGS.contains(&row[0]))
            .unwrap();
    }
    txn.commit().unwrap();
    let read = db.begin_read().unwrap();
    assert!(read.open_table(USER_REFS).unwrap().len().unwrap() > 0);
}

/// The old form on ScyllaDB: the lines', cases' and events' rows written again without TTL
/// (those past retention too), and no `user_refs` entry for a line, a case, a timer or an
/// event.
pub(crate) async fn strip_scylla(keyspace: &str, rows: &OldRows) {
    let uri = std::env::var("SCYLLA_URI").unwrap();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(uri.split(','))
        .build()
        .await
        .unwrap();
    let id = |n: u64| i64::try_from(n).unwrap();
    for user in [OPENER, AUTHOR, MENTIONED, MOD, TARGET, PAYER] {
        let refs = session
            .query_unpaged(
                format!("SELECT ref FROM {keyspace}.user_refs WHERE user_id = ?"),
                (id(user),),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        for row in refs.rows::<(String,)>().unwrap() {
            let (text,) = row.unwrap();
            let old = ["transcript", "case", "timer", "inbox_event"]
                .iter()
                .any(|t| text.starts_with(&format!(r#"{{"table":"{t}""#)));
            if old {
                session
                    .query_unpaged(
                        format!("DELETE FROM {keyspace}.user_refs WHERE user_id = ? AND ref = ?"),
                        (id(user), text),
                    )
                    .await
                    .unwrap();
            }
        }
    }
    for line in &rows.lines {
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.transcripts (guild_id, ticket_id, message_id, doc) \
                     VALUES (?, ?, ?, ?)"
                ),
                (
                    id(line.guild_id),
                    id(line.ticket_id),
                    id(line.message_id),
                    serde_json::to_string(line).unwrap(),
                ),
            )
            .await
            .unwrap();
    }
    for event in &rows.events {
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.billing_inbox (event_id, doc) VALUES (?, ?)"),
                (
                    event.event_id.as_str(),
                    serde_json::to_string(event).unwrap(),
                ),
            )
            .await
            .unwrap();
    }
    for case in &rows.cases {
        session
            .query_unpaged(
                format!("INSERT INTO {keyspace}.cases (guild_id, number, doc) VALUES (?, ?, ?)"),
                (
                    id(case.guild_id),
                    id(case.number),
                    serde_json::to_string(case).unwrap(),
                ),
            )
            .await
            .unwrap();
    }
}

/// Runs every table's backfill to its end, `page` rows at a time; the calls it took.
async fn backfill_all<S: Store>(store: &S, page: usize) -> usize {
    let mut calls = 0;
    for table in BackfillTable::ALL {
        loop {
            calls += 1;
            let progress = store.backfill(table, page, Timestamp::now()).await.unwrap();
            assert_eq!(progress.table, table);
            if progress.done() {
                break;
            }
        }
    }
    calls
}

async fn rows_mentioning<S: Store>(store: &S, id: u64) -> Vec<String> {
    let needle = id.to_string();
    let rows = store.dump_rows().await.unwrap();
    rows.into_iter()
        .filter(|row| row.text.contains(&needle))
        .map(|row| format!("{}: {}", row.table, row.text))
        .collect()
}

pub(crate) async fn backfilled_rows_are_exported_erased_and_expire<S: Store>(
    store: S,
    rows: OldRows,
) {
    // The gap: the old rows name users no index knows.
    let before = store.export_user(MENTIONED).await.unwrap();
    assert!(before.transcript_messages.is_empty() && before.timers.is_empty());
    assert!(store.export_user(MOD).await.unwrap().cases.is_empty());
    assert!(
        store
            .export_user(PAYER)
            .await
            .unwrap()
            .billing_events
            .is_empty()
    );

    backfill_all(&store, 2).await;
    let progress = |table| store.backfill(table, 1, Timestamp::now());
    let transcripts = progress(BackfillTable::Transcripts).await.unwrap();
    assert_eq!(
        (transcripts.rows, transcripts.indexed, transcripts.deleted),
        (3, 2, 1),
        "two live lines indexed, the line of the ticket past retention deleted"
    );
    let cases = progress(BackfillTable::Cases).await.unwrap();
    assert_eq!((cases.rows, cases.indexed, cases.deleted), (2, 1, 1));
    let timers = progress(BackfillTable::Timers).await.unwrap();
    assert_eq!((timers.rows, timers.indexed, timers.deleted), (1, 1, 0));
    let inbox = progress(BackfillTable::BillingInbox).await.unwrap();
    assert_eq!((inbox.rows, inbox.indexed, inbox.deleted), (2, 1, 1));
    let payer = store.export_user(PAYER).await.unwrap().billing_events;
    assert_eq!(payer, rows.events[..1].to_vec());

    let mentioned = store.export_user(MENTIONED).await.unwrap();
    let ids: Vec<u64> = mentioned
        .transcript_messages
        .iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(ids, vec![101, 102]);
    assert_eq!(mentioned.timers.len(), 1);
    let author = store.export_user(AUTHOR).await.unwrap();
    assert_eq!(author.transcript_messages, rows.lines[..2].to_vec());
    let moderator = store.export_user(MOD).await.unwrap();
    assert_eq!(moderator.cases, vec![rows.cases[0].clone()]);
    assert_eq!(store.export_user(TARGET).await.unwrap().timers.len(), 1);
    let texts = store.dump_rows().await.unwrap();
    assert!(
        texts.iter().all(|row| !row.text.contains("an old line")),
        "the line past its ticket's retention is gone"
    );

    // A second run after completion changes nothing.
    let dump = store.dump_rows().await.unwrap();
    assert_eq!(backfill_all(&store, 2).await, BackfillTable::ALL.len());
    assert_eq!(store.dump_rows().await.unwrap(), dump);
    assert_eq!(
        progress(BackfillTable::Transcripts).await.unwrap(),
        transcripts
    );

    // The erasure of a user only mentioned now reaches the old lines and the parked run.
    store.delete_user(MENTIONED).await.unwrap();
    assert_eq!(
        rows_mentioning(&store, MENTIONED).await,
        Vec::<String>::new()
    );
    let kept = store.export_user(AUTHOR).await.unwrap();
    assert_eq!(kept.transcript_messages[0].content, "thanks <@0>");
    assert_eq!(store.export_user(TARGET).await.unwrap().timers.len(), 1);
}

pub(crate) async fn an_interrupted_backfill_resumes_from_its_cursor<S: Store>(
    store: S,
    _rows: OldRows,
) {
    for bad in [0, BACKFILL_PAGE_MAX + 1] {
        let refused = store
            .backfill(BackfillTable::Cases, bad, Timestamp::now())
            .await;
        assert!(matches!(refused, Err(StorageError::Invalid(_))), "{bad}");
    }
    let first = store
        .backfill(BackfillTable::Transcripts, 1, Timestamp::now())
        .await
        .unwrap();
    assert!(!first.done() && first.cursor.is_some());
    assert!(first.rows > 0 && first.rows < 3, "{first:?}");
    // Whoever calls next (another run of the command) goes on from the stored cursor:
    // every line is walked once.
    let mut calls = 1;
    let last = loop {
        calls += 1;
        let next = store
            .backfill(BackfillTable::Transcripts, 1, Timestamp::now())
            .await
            .unwrap();
        assert!(next.rows >= first.rows);
        if next.done() {
            break next;
        }
    };
    assert!(calls >= 3, "one page per ticket at least");
    assert_eq!((last.rows, last.deleted), (3, 1));
    assert_eq!(last.cursor, None, "no cursor outlives the walk");
    let again = store
        .backfill(BackfillTable::Transcripts, 1, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(again, last);
    let mentioned = store.export_user(MENTIONED).await.unwrap();
    assert_eq!(mentioned.transcript_messages.len(), 2);
    // Other tables keep their own cursors: cases are still to walk.
    let cases = store
        .backfill(BackfillTable::Cases, BACKFILL_PAGE_MAX, Timestamp::now())
        .await
        .unwrap();
    assert_eq!((cases.rows, cases.deleted), (2, 1));
    backfill_all(&store, 1).await;
}

/// On redb the sweeper now finds the old rows' expiry entries: a year and a day on, the
/// case and the payment event are gone; three years on, the lines.
pub(crate) async fn backfilled_rows_expire_on_the_sweepers_clock(
    store: &protonn_storage::EmbeddedStore,
) {
    use protonn_storage::DataRights;
    store
        .sweep_expired(ago(0).saturating_add(DAY * 366))
        .await
        .unwrap();
    assert!(store.export_user(MOD).await.unwrap().cases.is_empty());
    assert!(
        store
            .export_user(PAYER)
            .await
            .unwrap()
            .billing_events
            .is_empty()
    );
    assert_eq!(
        store
            .export_user(AUTHOR)
            .await
            .unwrap()
            .transcript_messages
            .len(),
        2
    );
    store
        .sweep_expired(ago(0).saturating_add(DAY * 3 * 366))
        .await
        .unwrap();
    assert!(
        store
            .export_user(AUTHOR)
            .await
            .unwrap()
            .transcript_messages
            .is_empty()
    );
}

macro_rules! backfill_cases {
    ($run:ident) => {
        $run!(
            backfilled_rows_are_exported_erased_and_expire,
            an_interrupted_backfill_resumes_from_its_cursor,
        );
    };
}

/// redb, with the store closed between runs (a crash, or the command run again): the walk
/// goes on from the cursor committed with the last page, and no row is walked twice.
pub(crate) async fn a_backfill_resumes_after_the_store_is_reopened(data_dir: &Path) {
    use protonn_storage::DataRights;
    let open = || protonn_storage::EmbeddedStore::open(data_dir).unwrap();
    let first = {
        let store = open();
        store
            .backfill(BackfillTable::Transcripts, 1, Timestamp::now())
            .await
            .unwrap()
    };
    assert_eq!((first.rows, first.done()), (1, false));
    let store = open();
    let mut last = first;
    while !last.done() {
        last = store
            .backfill(BackfillTable::Transcripts, 1, Timestamp::now())
            .await
            .unwrap();
    }
    assert_eq!((last.rows, last.indexed, last.deleted), (3, 2, 1));
    backfill_all(&store, 1).await;
    assert_eq!(
        store.check_consistency().await.unwrap(),
        Vec::<String>::new()
    );
}
