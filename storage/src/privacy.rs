//! The privacy centre's records: the log of data-subject requests, the per-user privacy
//! flags (restriction, objection, consents) and prepared data exports.
//!
//! Hook points for processing that the flags govern (see `docs/privacy.md`):
//! - workflows: skip a user for whom [`PrivacyFlags::may_process`] is false;
//! - analytics: skip a user for whom [`PrivacyFlags::may_analyse`] is false;
//! - announcements: send only where [`PrivacyFlags::may_announce`] is true.
//!
//! Moderation is not governed by the flags: it protects other members (legal obligation and
//! legitimate interest that restriction does not override), so cases and timers apply to a
//! restricted or objecting user as to anyone.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{DataRights, StorageError, Timestamp, UserExport};

/// The legal deadline of a request: answered within 30 days of being made.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30 * 86_400);

/// Who a request belongs to once its user was erased: the log keeps that a request was made
/// and answered, not by whom.
pub const ERASED_USER: u64 = 0;

/// An audit entry kept for security after `user_id` was erased: the user is replaced by
/// [`ERASED_USER`] as actor or target, and in the details.
pub(crate) fn anonymised_audit(entry: crate::AuditEntry, user_id: u64) -> crate::AuditEntry {
    let erase = |id: u64| if id == user_id { ERASED_USER } else { id };
    crate::AuditEntry {
        actor_id: erase(entry.actor_id),
        target_id: entry.target_id.map(erase),
        details: entry
            .details
            .replace(&user_id.to_string(), &ERASED_USER.to_string()),
        ..entry
    }
}

/// A moderation case kept after `user_id` was erased (it protects the server's other
/// members): the user is replaced by [`ERASED_USER`] as moderator or target.
pub(crate) fn anonymised_case(case: crate::Case, user_id: u64) -> crate::Case {
    let erase = |id: u64| if id == user_id { ERASED_USER } else { id };
    crate::Case {
        moderator_id: erase(case.moderator_id),
        target_id: case.target_id.map(erase),
        reason: case
            .reason
            .replace(&user_id.to_string(), &ERASED_USER.to_string()),
        ..case
    }
}

/// A billing record kept for tax and accounting after its user was erased.
pub(crate) fn anonymised_subscription(subscription: crate::Subscription) -> crate::Subscription {
    crate::Subscription {
        user_id: ERASED_USER,
        // The server their premium went to says who they were to anyone who saw it.
        guild_id: None,
        ..subscription
    }
}

/// What a user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// A copy of their data (shown, and given as an export).
    Access,
    /// Their data as a JSON file (portability).
    Export,
    /// Profile fields refreshed from Discord, or edited.
    Correction,
    /// Erasure of everything held about them.
    Deletion,
    /// Data kept but not processed (restriction on) or processed again (off).
    Restriction,
    /// Objection to processing based on legitimate interest (analytics, announcements).
    Objection,
    /// Consent withdrawn (or given again) for a consent-based feature.
    ConsentWithdrawal,
}

impl RequestKind {
    pub const ALL: [RequestKind; 7] = [
        RequestKind::Access,
        RequestKind::Export,
        RequestKind::Correction,
        RequestKind::Deletion,
        RequestKind::Restriction,
        RequestKind::Objection,
        RequestKind::ConsentWithdrawal,
    ];

    /// The name in the log, the CLI and the export: `consent_withdrawal`, …
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Export => "export",
            RequestKind::Correction => "correction",
            RequestKind::Deletion => "deletion",
            RequestKind::Restriction => "restriction",
            RequestKind::Objection => "objection",
            RequestKind::ConsentWithdrawal => "consent_withdrawal",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// One data-subject request: what, when, and when it was answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyRequest {
    /// [`ERASED_USER`] once the user was erased.
    pub user_id: u64,
    /// Chosen at random by whoever records the request; unique across users, so an
    /// anonymised request keeps its id.
    pub request_id: u64,
    pub kind: RequestKind,
    pub requested_at: Timestamp,
    /// [`ANSWER_WITHIN`] after `requested_at`.
    pub due_at: Timestamp,
    pub done_at: Option<Timestamp>,
    /// Where it was made: `dashboard`, `discord` or `operator`.
    pub channel: String,
    /// What was done, in a sentence the user and operators read.
    pub outcome: String,
}

impl PrivacyRequest {
    /// A request made now, not yet answered.
    pub fn new(
        user_id: u64,
        request_id: u64,
        kind: RequestKind,
        channel: &str,
        now: Timestamp,
    ) -> Self {
        Self {
            user_id,
            request_id,
            kind,
            requested_at: now,
            due_at: now.saturating_add(ANSWER_WITHIN),
            done_at: None,
            channel: channel.to_owned(),
            outcome: String::new(),
        }
    }

    /// The same request, answered at `now`.
    pub fn done(self, now: Timestamp, outcome: impl Into<String>) -> Self {
        Self {
            done_at: Some(now),
            outcome: outcome.into(),
            ..self
        }
    }

    /// Not answered and past its legal deadline.
    pub fn overdue(&self, now: Timestamp) -> bool {
        self.done_at.is_none() && self.due_at <= now
    }
}

/// A user's choices about processing; the defaults (nothing set) are what a user who never
/// visited the privacy centre gets: processed normally, no consent given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyFlags {
    /// Restriction: the data is kept but not processed by workflows or analytics.
    pub restricted: bool,
    /// Objection to processing based on legitimate interest: analytics and announcements
    /// skip the user.
    pub objects: bool,
    /// Consent to announcement DMs.
    pub announcements_consent: bool,
    /// Consent to optional email.
    pub email_consent: bool,
}

impl PrivacyFlags {
    /// Whether workflows may act on the user's data.
    pub fn may_process(&self) -> bool {
        !self.restricted
    }

    /// Whether the user's activity may be counted by analytics.
    pub fn may_analyse(&self) -> bool {
        !self.restricted && !self.objects
    }

    /// Whether announcements may be sent to the user (a DM needs consent).
    pub fn may_announce(&self) -> bool {
        self.announcements_consent && !self.objects && !self.restricted
    }
}

/// A user's data export, prepared in the background, downloadable once until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedExport {
    pub user_id: u64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The document: [`ExportDocument`] as JSON.
    pub json: String,
}

/// The export file's top level (documented in `docs/privacy-export.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportDocument {
    /// `protonn.user-export/1`; a new version changes the number.
    pub schema: String,
    pub generated_at: Timestamp,
    pub data: UserExport,
}

pub const EXPORT_SCHEMA: &str = "protonn.user-export/1";

/// The privacy centre's tables. Every row names one user and goes with
/// [`DataRights::delete_user`] (requests are anonymised, not erased).
#[async_trait]
pub trait PrivacyRepo: Send + Sync + 'static {
    /// Creates or replaces the request (by user and request id).
    async fn put_privacy_request(&self, request: &PrivacyRequest) -> Result<(), StorageError>;

    /// The user's requests, newest first.
    async fn privacy_requests_of(&self, user_id: u64) -> Result<Vec<PrivacyRequest>, StorageError>;

    /// Every request made in `[from, to)`, oldest first: the operators' view. Reads the
    /// whole log (small: requests are rare); never on a hot path.
    async fn privacy_requests(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<PrivacyRequest>, StorageError>;

    /// The user's flags; the defaults when never set. One key read: cheap enough for every
    /// workflow run or analytics event.
    async fn privacy_flags(&self, user_id: u64) -> Result<PrivacyFlags, StorageError>;

    async fn set_privacy_flags(
        &self,
        user_id: u64,
        flags: &PrivacyFlags,
    ) -> Result<(), StorageError>;

    /// Stores the user's export, replacing an earlier one.
    async fn put_export(&self, export: &PreparedExport) -> Result<(), StorageError>;

    /// When the user's export was prepared and until when it can be downloaded, if one is
    /// waiting at `now`.
    async fn export_status(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<(Timestamp, Timestamp)>, StorageError>;

    /// The user's export, removed as it is read: a second call (or a concurrent one) gets
    /// `None`.
    async fn take_export(
        &self,
        user_id: u64,
        now: Timestamp,
    ) -> Result<Option<PreparedExport>, StorageError>;

    /// Marks the dashboard sessions `session_ids` (the stored hashes) so that the browser
    /// holding one is told to clear all site data on its next visit (children's data);
    /// the mark names no user and is forgotten at `until`.
    async fn mark_browsers_for_clearing(
        &self,
        session_ids: &[String],
        until: Timestamp,
    ) -> Result<(), StorageError>;

    /// Whether `session_id` was marked; the mark is spent.
    async fn take_browser_clearing(&self, session_id: &str) -> Result<bool, StorageError>;
}

/// Sets a user's choices, and logs each change as an answered request (restriction,
/// objection, each consent given or withdrawn); returns the changes in words ("objection
/// on"), empty when nothing changed (then nothing is written). The dashboard and the
/// `/privacy` command both choose through here. `new_id` gives each logged request its id.
pub async fn change_choices<S>(
    store: &S,
    user_id: u64,
    wanted: PrivacyFlags,
    channel: &str,
    now: Timestamp,
    mut new_id: impl FnMut() -> u64,
) -> Result<Vec<String>, StorageError>
where
    S: PrivacyRepo + ?Sized,
{
    let current = store.privacy_flags(user_id).await?;
    if wanted == current {
        return Ok(Vec::new());
    }
    store.set_privacy_flags(user_id, &wanted).await?;
    let on_off = |on: bool| if on { "on" } else { "off" };
    let given = |on: bool| if on { "given" } else { "withdrawn" };
    let changes = [
        (
            RequestKind::Restriction,
            current.restricted != wanted.restricted,
            format!("restriction {}", on_off(wanted.restricted)),
        ),
        (
            RequestKind::Objection,
            current.objects != wanted.objects,
            format!("objection {}", on_off(wanted.objects)),
        ),
        (
            RequestKind::ConsentWithdrawal,
            current.announcements_consent != wanted.announcements_consent,
            format!(
                "consent to announcement DMs {}",
                given(wanted.announcements_consent)
            ),
        ),
        (
            RequestKind::ConsentWithdrawal,
            current.email_consent != wanted.email_consent,
            format!("consent to optional email {}", given(wanted.email_consent)),
        ),
    ];
    let mut said = Vec::new();
    for (kind, changed, outcome) in changes {
        if changed {
            let request =
                PrivacyRequest::new(user_id, new_id(), kind, channel, now).done(now, &outcome);
            store.put_privacy_request(&request).await?;
            said.push(outcome);
        }
    }
    Ok(said)
}

/// Answers the requests that need the whole store (export, access, deletion) and are not
/// answered yet; returns how many it answered. Run in the background by the process that
/// sweeps the store; the dashboard also calls [`answer_request`] at once where its store
/// allows. An export is downloadable for `export_for`.
pub async fn answer_pending_requests<S>(
    store: &S,
    now: Timestamp,
    export_for: Duration,
) -> Result<u64, StorageError>
where
    S: PrivacyRepo + DataRights + ?Sized,
{
    let window_start = now.saturating_sub(ANSWER_WITHIN.saturating_mul(12));
    let pending: Vec<PrivacyRequest> = store
        .privacy_requests(window_start, now.saturating_add(Duration::from_secs(1)))
        .await?
        .into_iter()
        .filter(|r| r.done_at.is_none() && r.user_id != ERASED_USER)
        .collect();
    let mut answered = 0;
    for request in pending {
        if answer_request(store, &request, now, export_for).await? {
            answered += 1;
        }
    }
    Ok(answered)
}

/// Answers one request if it is of a kind the store answers by itself (export, access,
/// deletion): prepares the export, or erases the user and anonymises their log. Returns
/// whether it did.
pub async fn answer_request<S>(
    store: &S,
    request: &PrivacyRequest,
    now: Timestamp,
    export_for: Duration,
) -> Result<bool, StorageError>
where
    S: PrivacyRepo + DataRights + ?Sized,
{
    match request.kind {
        RequestKind::Access | RequestKind::Export => {
            let document = ExportDocument {
                schema: EXPORT_SCHEMA.to_owned(),
                generated_at: now,
                data: store.export_user(request.user_id).await?,
            };
            let json = serde_json::to_string_pretty(&document)
                .map_err(|err| StorageError::Invalid(err.to_string()))?;
            let expires_at = now.saturating_add(export_for);
            store
                .put_export(&PreparedExport {
                    user_id: request.user_id,
                    created_at: now,
                    expires_at,
                    json,
                })
                .await?;
            store
                .put_privacy_request(&request.clone().done(
                    now,
                    "export prepared: downloadable once from the privacy centre",
                ))
                .await?;
            Ok(true)
        }
        RequestKind::Deletion => {
            // Recorded as done first: erasure anonymises the log, this entry included.
            store
                .put_privacy_request(&request.clone().done(now, "erased"))
                .await?;
            store.delete_user(request.user_id).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The operators' erasure of a user reported under the minimum age: every browser that
/// held one of their dashboard sessions is marked to clear all site data on its next visit,
/// then everything about them is erased (the request `request_id`, a random id, logged,
/// answered and anonymised). Returns the rows erased.
pub async fn erase_child<S>(
    store: &S,
    user_id: u64,
    request_id: u64,
    now: Timestamp,
) -> Result<u64, StorageError>
where
    S: crate::Store + ?Sized,
{
    // Every stored session, expired ones too: their browsers may still hold data.
    let sessions: Vec<String> = store
        .web_sessions_of(user_id, Timestamp(0))
        .await?
        .into_iter()
        .map(|session| session.id)
        .collect();
    let marks_until = now.saturating_add(Duration::from_millis(crate::WEB_SESSION_MAX_AGE_MS));
    store
        .mark_browsers_for_clearing(&sessions, marks_until)
        .await?;
    let request = PrivacyRequest::new(user_id, request_id, RequestKind::Deletion, "operator", now)
        .done(
            now,
            "erased: reported under the minimum age (children's data)",
        );
    store.put_privacy_request(&request).await?;
    store.delete_user(user_id).await
}

/// Tables with rows about users a breach notice can name, with the fields of each row's
/// document that hold user ids and the one that dates the row (its creation, or the latest
/// change where that is all a row keeps).
pub const BREACH_TABLES: &[(&str, &[&str], Option<&str>)] = &[
    ("accounts", &["user_id"], Some("created_at")),
    ("audit_log", &["actor_id", "target_id"], Some("at")),
    ("tickets", &["opener_id"], Some("opened_at")),
    ("transcripts", &["author_id"], Some("at")),
    ("workflows", &["created_by"], Some("updated_at")),
    ("subscriptions", &["user_id"], Some("updated_at")),
    ("promo_redemptions", &["user_id"], Some("at")),
    ("web_sessions", &["user_id"], Some("created_at")),
    ("privacy_requests", &["user_id"], Some("requested_at")),
    ("privacy_flags", &["user_id"], None),
    ("privacy_exports", &["user_id"], Some("created_at")),
    ("premium_slots", &["user_id"], Some("assigned_at")),
    ("cases", &["moderator_id", "target_id"], Some("at")),
    ("automod_hits", &["user_id"], Some("at")),
    ("billing_inbox", &["user_id"], Some("received_at")),
    // Timers keep no creation time: one stored now was stored during any breach.
    ("timers", &["users"], None),
    ("workflow_variables", &["user_id"], Some("updated_at")),
    ("workflow_runs", &["user_id"], Some("at")),
    ("announce_dm_deliveries", &["user_id"], Some("at")),
];

/// One user a breach touches, and which of the tables hold their data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Affected {
    pub user_id: u64,
    pub tables: std::collections::BTreeSet<String>,
}

/// The users whose rows in `tables` (names of [`BREACH_TABLES`]) existed during a breach
/// that ended at `to`: every stored row dated at or before `to` (a row written later was
/// not there to be taken). Rows erased since cannot be listed: the notice then goes to
/// the users still known. Reads every row ([`DataRights::dump_rows`]): an operator's tool.
pub async fn affected_users<S>(
    store: &S,
    to: Timestamp,
    tables: &[String],
) -> Result<Vec<Affected>, StorageError>
where
    S: DataRights + ?Sized,
{
    for table in tables {
        if !BREACH_TABLES.iter().any(|(name, _, _)| name == table) {
            return Err(StorageError::Invalid(format!(
                "unknown table {table:?}; one of: {}",
                BREACH_TABLES
                    .iter()
                    .map(|(name, _, _)| *name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut users = std::collections::BTreeMap::<u64, std::collections::BTreeSet<String>>::new();
    for row in store.dump_rows().await? {
        let Some((_, fields, dated_by)) = BREACH_TABLES
            .iter()
            .find(|(name, _, _)| *name == row.table && tables.contains(&row.table))
        else {
            continue;
        };
        let (outer, document) = row_documents(&row.text);
        let at = dated_by.and_then(|field| document.get(field)?.as_u64());
        if at.is_some_and(|at| at > to.0) {
            continue;
        }
        for field in *fields {
            let value = document.get(*field).or_else(|| outer.get(*field));
            let mut ids: Vec<u64> = match value {
                // A list of users (a timer's).
                Some(serde_json::Value::Array(items)) => items.iter().filter_map(id_of).collect(),
                other => other.and_then(id_of).into_iter().collect(),
            };
            if ids.is_empty() && *field == "user_id" {
                ids.extend(leading_number(&row.text));
            }
            for id in ids.into_iter().filter(|&id| id != ERASED_USER) {
                users.entry(id).or_default().insert(row.table.clone());
            }
        }
    }
    Ok(users
        .into_iter()
        .map(|(user_id, tables)| Affected { user_id, tables })
        .collect())
}

/// A dumped row's outer JSON (ScyllaDB's `SELECT JSON`, or what follows the key on redb)
/// and its document (the `doc` column's JSON where there is one, else the outer JSON).
fn row_documents(text: &str) -> (serde_json::Value, serde_json::Value) {
    let outer: serde_json::Value = text
        .find('{')
        .and_then(|start| serde_json::from_str(&text[start..]).ok())
        .unwrap_or_default();
    let document = outer
        .get("doc")
        .and_then(|doc| serde_json::from_str(doc.as_str()?).ok())
        .unwrap_or_else(|| outer.clone());
    (outer, document)
}

/// A user id stored as a JSON number, or as a string (ScyllaDB's JSON of a bigint key).
fn id_of(value: &serde_json::Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}

/// The number a redb row's text starts with: its key, where the key is the user id.
fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The notice for one affected user, for the operators to review and send (the runbook
/// `docs/breach-response.md` says who and when).
pub fn breach_notice(affected: &Affected, from: Timestamp, to: Timestamp) -> String {
    let tables: Vec<&str> = affected.tables.iter().map(String::as_str).collect();
    format!(
        "To: Discord user {user}\n\
         Subject: A security incident affected your Pro-tonn data\n\n\
         Between {from} and {to} (milliseconds since 1970, UTC) an incident gave unauthorised \
         access to part of the data Pro-tonn keeps. Data about you was in: {tables}.\n\n\
         What happened: [operators: one paragraph, the cause as known now].\n\
         What we did: the access was stopped and is being investigated; we reported the \
         incident to the authorities where the law requires it.\n\
         What you can do: log out of the dashboard everywhere (Account page) and log in \
         again; you can also export or delete your data in the privacy centre.\n\
         Questions: support@pro-tonn.dev or our support system.\n",
        user = affected.user_id,
        from = from.as_millis(),
        to = to.as_millis(),
        tables = tables.join(", "),
    )
}

/// Runs [`answer_pending_requests`] every `every` until `shutdown` resolves: the
/// background half of the privacy centre, next to the retention sweeper.
pub fn spawn_request_answerer(
    store: std::sync::Arc<dyn crate::Store>,
    every: Duration,
    export_for: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(crate::writer::every_until(every, shutdown, move || {
        let store = std::sync::Arc::clone(&store);
        async move {
            match answer_pending_requests(store.as_ref(), Timestamp::now(), export_for).await {
                Ok(0) => {}
                Ok(answered) => tracing::info!(answered, "privacy requests answered"),
                Err(err) => tracing::warn!(%err, "answering privacy requests failed"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/privacy-export.md` is the export's schema: it names every field.
    #[test]
    fn the_documented_export_schema_names_every_field() {
        let doc = include_str!("../../docs/privacy-export.md");
        assert!(doc.contains(EXPORT_SCHEMA));
        let document = ExportDocument {
            schema: EXPORT_SCHEMA.to_owned(),
            generated_at: Timestamp(0),
            data: UserExport::default(),
        };
        let json = serde_json::to_value(&document).unwrap();
        let mut fields: Vec<&String> = json.as_object().unwrap().keys().collect();
        fields.extend(json["data"].as_object().unwrap().keys());
        for field in fields {
            assert!(
                doc.contains(&format!("| `{field}` |")),
                "{field} is not documented"
            );
        }
        for kind in RequestKind::ALL {
            assert!(doc.contains(&format!("`{}`", kind.as_str())), "{kind:?}");
        }
    }

    /// Every `.rs` file under `dir`, skipping build output.
    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `docs/privacy.md` names, for each promise, the test that proves it: each one named
    /// there must exist, so the table cannot point at a test that was renamed or removed.
    #[test]
    fn every_test_named_in_the_promise_table_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let table = std::fs::read_to_string(root.join("docs/privacy.md")).unwrap();
        let mut files = Vec::new();
        sources(&root, &mut files);
        let code: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let mut named = 0;
        for row in table
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| Promise"))
        {
            let columns: Vec<&str> = row.split(" | ").collect();
            let Some(tests) = columns.get(2) else {
                continue;
            };
            for name in tests.split('`').skip(1).step_by(2) {
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name:?} in the test column is not a test name"
                );
                assert!(
                    code.contains(&format!("fn {name}(")) || code.contains(&format!("fn {name}<")),
                    "{name} is named in docs/privacy.md but no such test exists"
                );
                named += 1;
            }
        }
        assert!(named >= 30, "the table names {named} tests");
    }

    /// The background half: a request the dashboard could not answer is answered by the
    /// task running beside the sweeper, and the task stops at shutdown.
    #[tokio::test]
    async fn the_answerer_prepares_pending_exports_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::EmbeddedStore::open(dir.path()).unwrap());
        let now = Timestamp::now();
        store
            .put_privacy_request(&PrivacyRequest::new(
                9,
                1,
                RequestKind::Export,
                "discord",
                now,
            ))
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_request_answerer(
            store.clone(),
            Duration::from_millis(10),
            Duration::from_secs(3_600),
            async {
                let _ = stopped.await;
            },
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // The export is stored first, then the request marked answered.
        while store.privacy_requests_of(9).await.unwrap()[0]
            .done_at
            .is_none()
        {
            assert!(tokio::time::Instant::now() < deadline, "never answered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            store
                .export_status(9, Timestamp::now())
                .await
                .unwrap()
                .is_some()
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in RequestKind::ALL {
            assert_eq!(RequestKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(RequestKind::parse("erase"), None);
    }

    #[test]
    fn flags_gate_each_kind_of_processing() {
        let none = PrivacyFlags::default();
        assert!(none.may_process() && none.may_analyse() && !none.may_announce());
        let consenting = PrivacyFlags {
            announcements_consent: true,
            ..none
        };
        assert!(consenting.may_announce());
        let objecting = PrivacyFlags {
            objects: true,
            ..consenting
        };
        assert!(objecting.may_process() && !objecting.may_analyse() && !objecting.may_announce());
        let restricted = PrivacyFlags {
            restricted: true,
            ..consenting
        };
        assert!(!restricted.may_process() && !restricted.may_analyse());
        assert!(!restricted.may_announce());
    }

    #[test]
    fn a_request_is_due_thirty_days_after_it_was_made() {
        let now = Timestamp::from_days(20_000);
        let request = PrivacyRequest::new(5, 1, RequestKind::Export, "dashboard", now);
        assert_eq!(request.due_at, Timestamp::from_days(20_030));
        assert!(!request.overdue(Timestamp::from_days(20_029)));
        assert!(request.overdue(Timestamp::from_days(20_030)));
        assert!(
            !request
                .done(now, "ok")
                .overdue(Timestamp::from_days(20_031))
        );
    }
}
