//! `kill -9` in the middle of writes loses nothing that was acknowledged.
//!
//! The test re-executes its own binary as the writer (`crash_child`, selected with
//! `--ignored --exact` and given its directory in an environment variable). The child writes
//! to every kind of table from several tasks at once and prints one `ack …` line per write
//! that returned `Ok`; the parent SIGKILLs it mid-stream, reopens the store and checks that
//! every acknowledged write is there and the store's invariants hold.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protonn_storage::{
    AccountRepo, AuditEntry, AuditRepo, AuditWriter, EmbeddedStore, GuildConfig, GuildConfigRepo,
    Ticket, TicketRepo, Timestamp, TranscriptMessage, WriterConfig,
};

const CHILD_DIR: &str = "PROTONN_STORAGE_CRASH_CHILD_DIR";
const GUILD: u64 = 77;

fn ticket(id: u64, at: Timestamp) -> Ticket {
    Ticket {
        guild_id: GUILD,
        ticket_id: id,
        opener_id: 1_000 + id,
        channel_id: 5,
        subject: format!("ticket {id}"),
        category: None,
        opened_at: at,
        closed_at: None,
        claimed_at: None,
        first_response_at: None,
        close_reason: None,
        place: protonn_storage::TicketPlace::Thread,
    }
}

fn message(id: u64, at: Timestamp) -> TranscriptMessage {
    TranscriptMessage {
        guild_id: GUILD,
        ticket_id: id,
        message_id: id * 10,
        author_id: 2_000 + id,
        author_name: format!("user{id}"),
        at,
        content: format!("hello {id}"),
        attachments: Vec::new(),
        edited_at: None,
        earlier_texts: Vec::new(),
        deleted_at: None,
    }
}

fn ack(line: String) {
    // stdout is line-buffered, so a printed line has left the process when println returns.
    println!("ack {line}");
}

#[test]
#[ignore = "the writer child of kill_minus_nine_keeps_every_acknowledged_write"]
fn crash_child() {
    let dir =
        std::env::var(CHILD_DIR).expect("run by kill_minus_nine_keeps_every_acknowledged_write");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = EmbeddedStore::open(dir.as_ref()).unwrap();
        let t0 = Timestamp::now();
        let mut tasks = tokio::task::JoinSet::new();

        let config_store = store.clone();
        tasks.spawn(async move {
            for version in 0.. {
                let config = GuildConfig {
                    prefix: format!("p{}", version + 1),
                    ..GuildConfig::default()
                };
                let saved = config_store.save(GUILD, version, &config).await.unwrap();
                ack(format!("config {saved}"));
            }
        });

        let (writer, _task) = AuditWriter::spawn(Arc::new(store.clone()), WriterConfig::default());
        tasks.spawn(async move {
            let mut pending = tokio::task::JoinSet::new();
            for id in 0_u64.. {
                let entry = AuditEntry {
                    guild_id: GUILD,
                    at: t0,
                    id,
                    actor_id: 3,
                    target_id: Some(4),
                    action: "crash.test".into(),
                    details: String::new(),
                };
                let durable = writer.log(entry).await.unwrap();
                pending.spawn(async move {
                    durable.durable().await.unwrap();
                    ack(format!("audit {id}"));
                });
                while pending.len() > 10_000 {
                    pending.join_next().await;
                }
            }
        });

        let accounts = store.clone();
        tasks.spawn(async move {
            for user in 1_u64.. {
                accounts.touch_account(user, t0).await.unwrap();
                ack(format!("account {user}"));
            }
        });

        let tickets = store.clone();
        tasks.spawn(async move {
            for id in 1_u64.. {
                tickets.put_ticket(&ticket(id, t0)).await.unwrap();
                tickets.append_transcript(&[message(id, t0)]).await.unwrap();
                ack(format!("ticket {id}"));
            }
        });
        tasks.join_next().await;
    });
}

#[derive(Default, Debug)]
struct Acked {
    config: u64,
    audit: Vec<u64>,
    accounts: Vec<u64>,
    tickets: Vec<u64>,
}

impl Acked {
    fn take(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("ack ") else {
            return;
        };
        let (kind, n) = rest.split_once(' ').expect("ack lines are `ack kind n`");
        let n: u64 = n.parse().unwrap();
        match kind {
            "config" => self.config = self.config.max(n),
            "audit" => self.audit.push(n),
            "account" => self.accounts.push(n),
            "ticket" => self.tickets.push(n),
            other => panic!("unknown ack {other}"),
        }
    }

    fn enough(&self) -> bool {
        self.config >= 20 && self.audit.len() >= 5_000 && self.tickets.len() >= 10
    }
}

#[tokio::test]
async fn kill_minus_nine_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Acked::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !acked.enough() {
        assert!(Instant::now() < deadline, "child too slow: {acked:?}");
        let line = lines
            .next()
            .expect("child ended before being killed")
            .unwrap();
        acked.take(&line);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Lines already in the pipe were acknowledged before the kill.
    for line in lines {
        acked.take(&line.unwrap());
    }

    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        store.check_consistency().await.unwrap(),
        Vec::<String>::new()
    );

    let config = store.load(GUILD).await.unwrap().unwrap();
    assert!(
        config.version == acked.config || config.version == acked.config + 1,
        "acked {} stored {}",
        acked.config,
        config.version
    );
    assert_eq!(config.config.prefix, format!("p{}", config.version));
    assert!(
        store
            .history(GUILD)
            .await
            .unwrap()
            .iter()
            .any(|v| v.version == acked.config && v.config.prefix == format!("p{}", acked.config))
    );

    let stored: std::collections::HashSet<u64> = store
        .list_audit(GUILD, Timestamp(0), Timestamp(u64::MAX / 2), usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let lost: Vec<_> = acked
        .audit
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged audit entries lost",
        lost.len()
    );

    for &user in &acked.accounts {
        assert!(
            store.account(user).await.unwrap().is_some(),
            "account {user}"
        );
    }
    for &id in &acked.tickets {
        assert!(
            store.ticket(GUILD, id).await.unwrap().is_some(),
            "ticket {id}"
        );
        assert_eq!(
            store.transcript(GUILD, id).await.unwrap().len(),
            1,
            "ticket {id}"
        );
    }
    eprintln!(
        "killed after {} config saves, {} audit entries, {} accounts, {} tickets acknowledged",
        acked.config,
        acked.audit.len(),
        acked.accounts.len(),
        acked.tickets.len()
    );
}
