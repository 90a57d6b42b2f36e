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
    /// The data-subject requests of the last DAYS days, oldest first, with their due dates
    /// (30 days after the request); unanswered ones past due are marked OVERDUE.
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

/// The request log for operators: one line per request, overdue ones flagged.
async fn requests(store: &dyn Store, days: u32, now: Timestamp) -> anyhow::Result<String> {
    let since = now.saturating_sub(std::time::Duration::from_secs(u64::from(days) * 86_400));
    let log = store
        .privacy_requests(since, now.saturating_add(std::time::Duration::from_secs(1)))
        .await?;
    let mut out = format!("{} requests in the last {days} days\n", log.len());
    for r in &log {
        let state = match r.done_at {
            Some(at) => format!("answered {}", at.as_millis()),
            None if r.overdue(now) => "OVERDUE".to_owned(),
            None => "open".to_owned(),
        };
        let user = if r.user_id == privacy::ERASED_USER {
            "(erased)".to_owned()
        } else {
            r.user_id.to_string()
        };
        out.push_str(&format!(
            "{}\t{user}\t{}\t{}\tdue {}\t{state}\t{}\n",
            r.requested_at.as_millis(),
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
