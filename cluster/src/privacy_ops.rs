//! `protonn privacy …`: the operators' privacy procedures. The children's-data erasure, the
//! users a breach touched (with draft notices: `docs/breach-response.md`), and the log of
//! data-subject requests with their legal due dates.
//!
//! They work on the store the config names: ScyllaDB directly; the embedded store directly
//! when no process holds it, else through the cluster's coordinators with the operators'
//! token (`PROTONN_OPERATOR_TOKEN`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use protonn_storage::BackfillTable;
use protonn_storage::privacy::{self, Affected, BREACH_TABLES};
use protonn_storage::{EmbeddedStore, StorageError, Store, Timestamp};
use protonn_storage::{PrivacyRequest, RequestKind};

use crate::{Config, RemoteStore, StorageBackend, store};

#[derive(Debug, Subcommand)]
pub(crate) enum PrivacyCommand {
    /// Answers an access or portability request received outside the dashboard (email,
    /// support): writes the user's export (docs/privacy-export.md) to FILE, which must not
    /// exist, and logs the request as answered.
    Export {
        #[arg(long)]
        user: u64,
        /// Where to write the JSON document.
        #[arg(long)]
        out: PathBuf,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Answers a deletion request received outside the dashboard: erases the user (audit
    /// and billing records kept anonymised) and logs the request as answered.
    Erase {
        #[arg(long)]
        user: u64,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Erases everything about a user reported under the minimum age, and has every browser
    /// that held one of their dashboard sessions clear its site data at its next visit.
    EraseChild {
        /// The user's Discord id.
        #[arg(long)]
        user: u64,
        /// Coordinator address, repeatable; `cluster.coordinators` when omitted.
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Lists the users whose data in TABLES a breach between FROM and TO touched, and
    /// drafts a notice for each (72 hours: see docs/breach-response.md).
    Affected {
        /// Start of the breach: `2026-12-01T08:00:00Z`, `2026-12-01`, or milliseconds.
        #[arg(long, value_parser = parse_instant)]
        from: Timestamp,
        /// End of the breach, same forms.
        #[arg(long, value_parser = parse_instant)]
        to: Timestamp,
        /// Comma-separated tables: accounts, audit_log, tickets, transcripts, workflows,
        /// subscriptions, promo_redemptions, web_sessions, privacy_requests, privacy_flags,
        /// privacy_exports; `all` for every one.
        #[arg(long, value_delimiter = ',', required = true)]
        tables: Vec<String>,
        /// Writes one draft notice per user into this directory (created; must be empty).
        #[arg(long)]
        notices: Option<PathBuf>,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Logs a request received by support (email, the support server) that is not answered
    /// yet, so that it is counted against the 48-hour aim and the 30-day deadline. Export,
    /// access and deletion requests are then answered in the background within a minute;
    /// the others with `protonn privacy answer`.
    Log {
        #[arg(long)]
        user: u64,
        /// access, export, correction, deletion, restriction, objection or
        /// consent_withdrawal.
        #[arg(long, value_parser = parse_kind)]
        kind: RequestKind,
        /// When support received it (same forms as --from); now when omitted.
        #[arg(long, value_parser = parse_instant)]
        received: Option<Timestamp>,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Records the answer to a logged request (its id is in `protonn privacy requests`).
    Answer {
        #[arg(long)]
        request: u64,
        /// What was done, in a sentence the user and operators read.
        #[arg(long)]
        outcome: String,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// Gives the rows stored before their table's user index, mention index or retention
    /// existed what a write gives a row today (docs/privacy.md): ticket transcript lines,
    /// moderation cases, durable timers and payment webhook events get their users' refs
    /// and their expiry; a row already past its retention is deleted. Each table is walked in pages from a cursor
    /// the store keeps, so a run that stops (a crash, Ctrl-C, --max-pages) is taken up
    /// where it stopped by the next; a finished table is not walked again.
    Backfill {
        /// Rows per page (ScyllaDB: partitions, a ticket's lines or a guild's cases or
        /// timers), 1 to 10000: one store call, one redb write transaction.
        #[arg(long, default_value_t = 500)]
        page_size: usize,
        /// Pause between pages, in milliseconds: how hard a live cluster's store is used.
        #[arg(long, default_value_t = 200)]
        pause_ms: u64,
        /// Stop after this many pages (the next run goes on from there).
        #[arg(long)]
        max_pages: Option<u64>,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
    /// The data-subject requests of the last DAYS days, oldest first, with their ids and due
    /// dates (30 days after the request); unanswered ones are marked LATE after 48 hours
    /// (the policy's aim) and OVERDUE after 30 days.
    Requests {
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long = "coordinator")]
        coordinators: Vec<String>,
    },
}

pub(crate) async fn run(config: Config, command: PrivacyCommand) -> anyhow::Result<()> {
    match command {
        PrivacyCommand::Export {
            user,
            out,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            println!("{}", export_to(store.as_ref(), user, &out).await?);
        }
        PrivacyCommand::Erase {
            user,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            println!("{}", erase(store.as_ref(), user).await?);
        }
        PrivacyCommand::EraseChild {
            user,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            println!("{}", erase_child(store.as_ref(), user).await?);
        }
        PrivacyCommand::Affected {
            from,
            to,
            tables,
            notices,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            print!(
                "{}",
                affected(store.as_ref(), from, to, &tables, notices.as_deref()).await?
            );
        }
        PrivacyCommand::Log {
            user,
            kind,
            received,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            let now = Timestamp::now();
            println!(
                "{}",
                log_request(store.as_ref(), user, kind, received.unwrap_or(now), now).await?
            );
        }
        PrivacyCommand::Answer {
            request,
            outcome,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            println!(
                "{}",
                answer(store.as_ref(), request, &outcome, Timestamp::now()).await?
            );
        }
        PrivacyCommand::Backfill {
            page_size,
            pause_ms,
            max_pages,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            let pace = Pace {
                page_size,
                pause: std::time::Duration::from_millis(pause_ms),
                max_pages: max_pages.unwrap_or(u64::MAX),
            };
            let said = backfill(store.as_ref(), pace, |line| println!("{line}")).await?;
            println!("{said}");
        }
        PrivacyCommand::Requests {
            days,
            coordinators: c,
        } => {
            let store = operator_store(&config, c).await?;
            print!(
                "{}",
                requests(store.as_ref(), days, Timestamp::now()).await?
            );
        }
    }
    Ok(())
}

/// The store the config names, opened for an operator: the embedded one if no process holds
/// it, else the leader's through the `given` coordinators (the config's when none are given).
pub(crate) async fn operator_store(
    config: &Config,
    given: Vec<String>,
) -> anyhow::Result<Arc<dyn Store>> {
    let coordinators = if given.is_empty() {
        config.cluster.coordinators.clone()
    } else {
        given
    };
    if config.storage.backend == StorageBackend::Scylla {
        return Ok(Arc::new(store::open_scylla(config).await?));
    }
    let data_dir = &config.storage.data_dir;
    // Never create a store by looking for one.
    let held = store_exists(data_dir)
        && match EmbeddedStore::open_with(data_dir, config.retention.retention()) {
            Ok(store) => return Ok(Arc::new(store)),
            Err(StorageError::Locked(_)) => true,
            Err(err) => return Err(err.into()),
        };
    if coordinators.is_empty() {
        if held {
            bail!(
                "the store in {} is held by a running process: run this against the cluster's coordinators (--coordinator), or stop the process",
                data_dir.display()
            );
        }
        bail!(
            "no store in {} and no coordinator given",
            data_dir.display()
        );
    }
    let token = crate::cli::operator_token()?;
    let tls = crate::cli::cluster_tls(config)?;
    Ok(Arc::new(RemoteStore::connect(coordinators, token, tls)))
}

fn store_exists(data_dir: &Path) -> bool {
    std::fs::metadata(data_dir.join("protonn.redb")).is_ok_and(|m| m.len() > 0)
}

async fn export_to(store: &dyn Store, user: u64, out: &Path) -> anyhow::Result<String> {
    let now = Timestamp::now();
    let document = privacy::ExportDocument {
        schema: privacy::EXPORT_SCHEMA.to_owned(),
        generated_at: now,
        data: store.export_user(user).await?,
    };
    let json = serde_json::to_string_pretty(&document)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
    std::io::Write::write_all(&mut file, json.as_bytes())?;
    file.sync_all()?;
    let request = PrivacyRequest::new(user, random_id(), RequestKind::Access, "operator", now)
        .done(now, "export written by an operator for delivery");
    store.put_privacy_request(&request).await?;
    Ok(format!(
        "export of user {user} written to {} ({} bytes); send it to the user and delete your copy",
        out.display(),
        json.len()
    ))
}

async fn erase(store: &dyn Store, user: u64) -> anyhow::Result<String> {
    let now = Timestamp::now();
    let request = PrivacyRequest::new(user, random_id(), RequestKind::Deletion, "operator", now);
    store.put_privacy_request(&request).await?;
    privacy::answer_request(store, &request, now, std::time::Duration::ZERO).await?;
    Ok(format!(
        "user {user} erased; audit and billing records kept without them; the request is logged as answered"
    ))
}

/// How `protonn privacy backfill` walks.
struct Pace {
    page_size: usize,
    pause: std::time::Duration,
    max_pages: u64,
}

/// Runs the backfill of every table to its end (or `max_pages`), telling `progress` after
/// each page; what it did, in a sentence.
async fn backfill(
    store: &dyn Store,
    pace: Pace,
    mut progress: impl FnMut(String),
) -> anyhow::Result<String> {
    let started = Timestamp::now();
    let mut pages = 0;
    for table in BackfillTable::ALL {
        loop {
            if pages == pace.max_pages {
                return Ok(format!(
                    "stopped after {pages} pages; run it again to go on from where it stopped"
                ));
            }
            let now = Timestamp::now();
            let done = store
                .backfill(table, pace.page_size, now)
                .await
                .with_context(|| format!("backfilling {}", table.as_str()))?;
            if done.finished_at.is_some_and(|at| at < started) {
                break;
            }
            pages += 1;
            progress(format!(
                "{}: {} rows walked, {} given index entries or expiry, {} deleted past retention{}",
                table.as_str(),
                done.rows,
                done.indexed,
                done.deleted,
                if done.done() { "; done" } else { "" }
            ));
            if done.done() {
                break;
            }
            tokio::time::sleep(pace.pause).await;
        }
    }
    Ok(if pages == 0 {
        "the backfill was complete already: nothing to do".to_owned()
    } else {
        "backfill complete: every table walked".to_owned()
    })
}

/// A request id: random, never 0.
fn random_id() -> u64 {
    rand::random::<u64>().max(1)
}

async fn erase_child(store: &dyn Store, user: u64) -> anyhow::Result<String> {
    let rows = privacy::erase_child(store, user, random_id(), Timestamp::now())
        .await
        .context("erasing the user")?;
    Ok(format!(
        "user {user} erased ({rows} rows); their browsers clear this site's data at their next visit; the request is logged (anonymised) as answered"
    ))
}

/// The report of `protonn privacy affected`, and the notices written to `notices`.
async fn affected(
    store: &dyn Store,
    from: Timestamp,
    to: Timestamp,
    tables: &[String],
    notices: Option<&Path>,
) -> anyhow::Result<String> {
    if from >= to {
        bail!("--from must be before --to");
    }
    let tables: Vec<String> = if tables.iter().any(|t| t == "all") {
        BREACH_TABLES
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .collect()
    } else {
        tables.to_vec()
    };
    let users: Vec<Affected> = privacy::affected_users(store, to, &tables).await?;
    if let Some(dir) = notices {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if std::fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} is not empty: notices go into an empty directory",
                dir.display()
            );
        }
        for user in &users {
            let file = dir.join(format!("{}.txt", user.user_id));
            std::fs::write(&file, privacy::breach_notice(user, from, to))
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    let mut out = format!(
        "{} users affected in {} between {} and {} (ms)\n",
        users.len(),
        tables.join(", "),
        from.as_millis(),
        to.as_millis()
    );
    for user in &users {
        let tables: Vec<&str> = user.tables.iter().map(String::as_str).collect();
        out.push_str(&format!("{}\t{}\n", user.user_id, tables.join(",")));
    }
    if let Some(dir) = notices {
        out.push_str(&format!("draft notices in {}\n", dir.display()));
    }
    Ok(out)
}

/// Logs a request support received at `received`, unanswered.
async fn log_request(
    store: &dyn Store,
    user: u64,
    kind: RequestKind,
    received: Timestamp,
    now: Timestamp,
) -> anyhow::Result<String> {
    if user == privacy::ERASED_USER {
        bail!("--user must be the requester's Discord id");
    }
    if received > now {
        bail!("--received is in the future");
    }
    let request = PrivacyRequest::new(user, random_id(), kind, "support", received);
    store.put_privacy_request(&request).await?;
    Ok(format!(
        "request {} logged: {} by user {user}, aim {} (48 h), due {}",
        request.request_id,
        kind.as_str(),
        received.saturating_add(privacy::RESPONSE_AIM).as_millis(),
        request.due_at.as_millis()
    ))
}

/// Marks the unanswered request `request_id` answered with `outcome`.
async fn answer(
    store: &dyn Store,
    request_id: u64,
    outcome: &str,
    now: Timestamp,
) -> anyhow::Result<String> {
    if outcome.trim().is_empty() {
        bail!("--outcome must say what was done");
    }
    let Some(request) = privacy::unanswered_requests(store, now)
        .await?
        .into_iter()
        .find(|r| r.request_id == request_id)
    else {
        bail!("no unanswered request {request_id} (see protonn privacy requests)");
    };
    let late = request.past_response_aim(now);
    store
        .put_privacy_request(&request.done(now, outcome.trim()))
        .await?;
    Ok(format!(
        "request {request_id} answered{}",
        if late { " (after the 48-hour aim)" } else { "" }
    ))
}

fn parse_kind(name: &str) -> Result<RequestKind, String> {
    RequestKind::parse(name).ok_or_else(|| {
        let kinds: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("{name:?}: one of {}", kinds.join(", "))
    })
}

/// The request log for operators: one line per request, late and overdue ones flagged.
async fn requests(store: &dyn Store, days: u32, now: Timestamp) -> anyhow::Result<String> {
    let since = now.saturating_sub(std::time::Duration::from_secs(u64::from(days) * 86_400));
    let log = store
        .privacy_requests(since, now.saturating_add(std::time::Duration::from_secs(1)))
        .await?;
    let late = log.iter().filter(|r| r.past_response_aim(now)).count();
    let mut out = format!(
        "{} requests in the last {days} days, {late} unanswered after 48 hours\n",
        log.len()
    );
    for r in &log {
        let state = match r.done_at {
            Some(at) => format!("answered {}", at.as_millis()),
            None if r.overdue(now) => "OVERDUE".to_owned(),
            None if r.past_response_aim(now) => "LATE (no answer after 48 h)".to_owned(),
            None => "open".to_owned(),
        };
        let user = if r.user_id == privacy::ERASED_USER {
            "(erased)".to_owned()
        } else {
            r.user_id.to_string()
        };
        out.push_str(&format!(
            "{}\t{}\t{user}\t{}\t{}\tdue {}\t{state}\t{}\n",
            r.requested_at.as_millis(),
            r.request_id,
            r.kind.as_str(),
            r.channel,
            r.due_at.as_millis(),
            r.outcome
        ));
    }
    Ok(out)
}

/// `2026-12-01T08:00:00Z` (seconds optional), `2026-12-01` (midnight UTC) or milliseconds
/// since 1970.
fn parse_instant(text: &str) -> Result<Timestamp, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Timestamp).map_err(|e| e.to_string());
    }
    let full = match text.split_once('T') {
        None => format!("{text}T00:00:00Z"),
        Some((_, time)) if time.matches(':').count() == 1 => text.replacen('Z', ":00Z", 1),
        Some(_) => text.to_owned(),
    };
    Timestamp::parse_rfc3339(&full).ok_or_else(|| {
        format!("{text:?}: expected 2026-12-01T08:00:00Z, 2026-12-01 or milliseconds")
    })
}

#[cfg(test)]
mod tests {
    use protonn_storage::{
        AuditEntry, AuditRepo, DataRights, PrivacyRepo, WebSession, WebSessionRepo,
    };

    use super::*;

    #[test]
    fn instants_are_read_as_utc() {
        assert_eq!(parse_instant("1970-01-01"), Ok(Timestamp(0)));
        assert_eq!(
            parse_instant("2023-11-14T22:13:20Z"),
            Ok(Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            parse_instant("1700000000000"),
            Ok(Timestamp(1_700_000_000_000))
        );
        for bad in [
            "2023-13-01",
            "2023-11-14T22:13:20",
            "yesterday",
            "",
            "2023-11-14T25:00Z",
        ] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
    }

    /// A request support received and logged: flagged LATE once 48 hours pass without an
    /// answer, then answered by its id; bad input changes nothing.
    #[tokio::test]
    async fn support_requests_unanswered_after_48_hours_are_flagged_until_answered() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = Timestamp::now();
        let hours = |h: u64| now.saturating_sub(std::time::Duration::from_secs(h * 3_600));
        let said = log_request(&store, 42, RequestKind::Correction, hours(50), now)
            .await
            .unwrap();
        let id: u64 = said
            .strip_prefix("request ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        log_request(&store, 43, RequestKind::Objection, hours(2), now)
            .await
            .unwrap();
        let log = requests(&store, 7, now).await.unwrap();
        assert!(log.contains("1 unanswered after 48 hours"), "{log}");
        let late: Vec<&str> = log.lines().filter(|l| l.contains("LATE")).collect();
        assert_eq!(late.len(), 1, "{log}");
        assert!(
            late[0].contains(&format!("\t{id}\t42\tcorrection\tsupport")),
            "{log}"
        );

        for refused in [
            log_request(
                &store,
                44,
                RequestKind::Access,
                hours(0).saturating_add(std::time::Duration::from_secs(3_600)),
                now,
            )
            .await,
            log_request(&store, privacy::ERASED_USER, RequestKind::Access, now, now).await,
            answer(&store, id, "  ", now).await,
            answer(&store, id.wrapping_add(1), "done", now).await,
        ] {
            assert!(refused.is_err());
        }
        assert_eq!(
            store
                .privacy_requests(
                    Timestamp(0),
                    now.saturating_add(std::time::Duration::from_secs(1))
                )
                .await
                .unwrap()
                .len(),
            2
        );

        let said = answer(&store, id, "name corrected from Discord", now)
            .await
            .unwrap();
        assert!(said.contains("after the 48-hour aim"), "{said}");
        let log = requests(&store, 7, now).await.unwrap();
        assert!(log.contains("0 unanswered after 48 hours"), "{log}");
        assert!(log.contains("name corrected from Discord"), "{log}");
        assert!(
            answer(&store, id, "again", now).await.is_err(),
            "answered once"
        );
        assert!(
            parse_kind("erase")
                .unwrap_err()
                .contains("consent_withdrawal")
        );
    }

    fn entry(guild: u64, id: u64, actor: u64, at: Timestamp) -> AuditEntry {
        AuditEntry {
            guild_id: guild,
            at,
            id,
            actor_id: actor,
            target_id: None,
            action: "config.set".into(),
            details: String::new(),
        }
    }

    /// A breach window over the audit log lists whose entries were there by its end, and
    /// drafts one notice each; the children's erasure leaves nothing of the user.
    #[tokio::test]
    async fn affected_users_get_draft_notices_and_a_child_is_erased() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = Timestamp::now();
        let hour = std::time::Duration::from_secs(3_600);
        let (early, late, child) = (1_111_000_111, 2_222_000_222, 3_333_000_333);
        store
            .append_audit(&[
                entry(9, 1, early, now.saturating_sub(2 * hour)),
                entry(9, 2, late, now),
            ])
            .await
            .unwrap();
        let notices = dir.path().join("notices");
        let report = affected(
            &store,
            now.saturating_sub(3 * hour),
            now.saturating_sub(hour),
            &["audit_log".into()],
            Some(&notices),
        )
        .await
        .unwrap();
        assert!(
            report.starts_with("1 users affected in audit_log"),
            "{report}"
        );
        assert!(report.contains(&format!("{early}\taudit_log")), "{report}");
        assert!(
            !report.contains(&late.to_string()),
            "written after the breach"
        );
        let notice = std::fs::read_to_string(notices.join(format!("{early}.txt"))).unwrap();
        assert!(
            notice.contains("Data about you was in: audit_log"),
            "{notice}"
        );
        assert_eq!(std::fs::read_dir(&notices).unwrap().count(), 1);
        let err = affected(&store, now, now, &["audit_log".into()], None).await;
        assert!(err.is_err(), "an empty window");
        let err = affected(&store, Timestamp(0), now, &["passwords".into()], None).await;
        assert!(err.unwrap_err().to_string().contains("unknown table"));

        // The children's-data erasure: the row, the session, and a mark for the browser.
        store
            .append_audit(&[entry(9, 3, child, now)])
            .await
            .unwrap();
        store
            .put_web_session(&WebSession {
                id: "hash-of-the-childs-cookie".into(),
                user_id: Some(child),
                created_at: now,
                last_seen: now,
                expires_at: now.saturating_add(hour),
                csrf_token: "csrf".into(),
                login_state: None,
                return_to: None,
                sealed_tokens: None,
                label: "Chrome".into(),
            })
            .await
            .unwrap();
        let said = erase_child(&store, child).await.unwrap();
        assert!(said.starts_with(&format!("user {child} erased")), "{said}");
        let rows = store.dump_rows().await.unwrap();
        assert!(rows.iter().all(|r| !r.text.contains(&child.to_string())));
        assert!(
            store
                .take_browser_clearing("hash-of-the-childs-cookie")
                .await
                .unwrap()
        );
        let log = requests(&store, 1, Timestamp::now()).await.unwrap();
        assert!(log.contains("(erased)\tdeletion\toperator"), "{log}");
        assert!(log.contains("answered"), "{log}");

        // Requests received by email: an export written to a file, then an erasure.
        let out = dir.path().join("export.json");
        let said = export_to(&store, early, &out).await.unwrap();
        assert!(said.contains("written to"), "{said}");
        let document: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(document["schema"], privacy::EXPORT_SCHEMA);
        assert_eq!(document["data"]["audit"][0]["actor_id"], early);
        assert!(
            export_to(&store, early, &out).await.is_err(),
            "never overwrites"
        );
        erase(&store, early).await.unwrap();
        let rows = store.dump_rows().await.unwrap();
        assert!(rows.iter().all(|r| !r.text.contains(&early.to_string())));
        let log = requests(&store, 1, Timestamp::now()).await.unwrap();
        assert!(log.contains("(erased)\taccess\toperator"), "{log}");
        assert_eq!(log.matches("\tdeletion\toperator").count(), 2, "{log}");
    }
}
