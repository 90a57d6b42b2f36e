//! Data rights on ScyllaDB: every row naming a user is found through `user_refs`, every row
//! of a guild through its partition keys; retention is TTL, so the sweep has nothing to do.

use async_trait::async_trait;

use super::records::{AUDIT_BUCKET_MS, audit_users};
use super::{ScyllaStore, db_id, db_int};
use crate::row_ref::RowRef;
use crate::{
    AccountRepo, AuditEntry, AuditRepo, BackfillProgress, BackfillTable, BillingRepo, DataRights,
    ModerationRepo, PremiumRepo, Redemption, StorageError, StoredRow, Ticket, TicketRepo,
    TimerExport, TimerRepo, Timestamp, TranscriptMessage, UserExport, WebSessionExport,
    WebSessionRepo, Workflow, WorkflowRepo,
};

/// Every table, for [`DataRights::dump_rows`].
const TABLES: &[&str] = &[
    "guild_config",
    "guild_config_history",
    "audit_log",
    "usage_hourly",
    "usage_days",
    "accounts",
    "tickets",
    "transcripts",
    "workflows",
    "subscriptions",
    "subscriptions_by_guild",
    "promos",
    "user_refs",
    "nodes",
    "shard_assignments",
    "shard_checkpoints",
    "leases",
    "leader_announcement",
    "cluster_meta",
    "reshardings",
    "guild_departures",
    "web_sessions",
    "web_sessions_by_user",
    "premium_slots",
    "billing_inbox",
    "cases",
    "automod_hits",
    "announce_campaigns",
    "announce_deliveries",
    "announce_dm_deliveries",
    "timers",
    "timers_by_guild",
    "workflow_variables",
    "workflow_runs",
    "announce_schedules",
    "backfill_progress",
];

impl ScyllaStore {
    async fn audit_entry(
        &self,
        guild: u64,
        at: u64,
        id: u64,
    ) -> Result<Option<AuditEntry>, StorageError> {
        let bucket = i32::try_from(at / AUDIT_BUCKET_MS).unwrap_or(i32::MAX);
        self.one_doc(
            "SELECT doc FROM {ks}.audit_log WHERE guild_id = ? AND bucket = ? AND at = ? AND id = ?",
            "audit_log",
            (db_id(guild), bucket, db_id(at), db_id(id)),
        )
        .await
    }

    pub(super) async fn transcript_message(
        &self,
        guild: u64,
        ticket: u64,
        message: u64,
    ) -> Result<Option<TranscriptMessage>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ? \
             AND message_id = ?",
            "transcripts",
            (db_id(guild), db_id(ticket), db_id(message)),
        )
        .await
    }

    pub(super) async fn redemption(
        &self,
        code: &str,
        user: u64,
    ) -> Result<Option<Redemption>, StorageError> {
        self.one_doc(
            "SELECT doc FROM {ks}.promos WHERE code = ? AND user_id = ?",
            "promos",
            (code, db_id(user)),
        )
        .await
    }

    /// Deletes one row and every user ref pointing at it; returns the rows removed.
    pub(super) async fn remove_row(&self, row: &RowRef) -> Result<u64, StorageError> {
        match row {
            RowRef::Audit { guild, at, id } => {
                let Some(entry) = self.audit_entry(*guild, *at, *id).await? else {
                    return Ok(0);
                };
                let bucket = i32::try_from(at / AUDIT_BUCKET_MS).unwrap_or(i32::MAX);
                self.execute(
                    "DELETE FROM {ks}.audit_log WHERE guild_id = ? AND bucket = ? AND at = ? \
                     AND id = ?",
                    true,
                    (db_id(*guild), bucket, db_id(*at), db_id(*id)),
                )
                .await?;
                for user in audit_users(&entry) {
                    self.drop_ref(user, row).await?;
                }
                Ok(1)
            }
            RowRef::Ticket { guild, ticket } => {
                let Some(old) = self.ticket(*guild, *ticket).await? else {
                    return Ok(0);
                };
                let messages = self.transcript(*guild, *ticket).await?;
                for message in &messages {
                    let row = RowRef::Transcript {
                        guild: *guild,
                        ticket: *ticket,
                        message: message.message_id,
                    };
                    for user in message.users() {
                        self.drop_ref(user, &row).await?;
                    }
                }
                self.execute(
                    "DELETE FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ?",
                    true,
                    (db_id(*guild), db_id(*ticket)),
                )
                .await?;
                self.execute(
                    "DELETE FROM {ks}.tickets WHERE guild_id = ? AND ticket_id = ?",
                    true,
                    (db_id(*guild), db_id(*ticket)),
                )
                .await?;
                self.drop_ref(old.opener_id, row).await?;
                Ok(1 + messages.len() as u64)
            }
            RowRef::Transcript {
                guild,
                ticket,
                message,
            } => {
                let Some(old) = self.transcript_message(*guild, *ticket, *message).await? else {
                    return Ok(0);
                };
                self.execute(
                    "DELETE FROM {ks}.transcripts WHERE guild_id = ? AND ticket_id = ? \
                     AND message_id = ?",
                    true,
                    (db_id(*guild), db_id(*ticket), db_id(*message)),
                )
                .await?;
                for user in old.users() {
                    self.drop_ref(user, row).await?;
                }
                Ok(1)
            }
            RowRef::Workflow { guild, workflow } => {
                Ok(u64::from(self.delete_workflow(*guild, *workflow).await?))
            }
            RowRef::Subscription { id } => {
                let Some(old) = self.subscription(*id).await? else {
                    return Ok(0);
                };
                self.execute(
                    "DELETE FROM {ks}.subscriptions WHERE subscription_id = ?",
                    true,
                    (db_id(*id),),
                )
                .await?;
                if let Some(guild) = old.guild_id {
                    self.execute(
                        "DELETE FROM {ks}.subscriptions_by_guild \
                         WHERE guild_id = ? AND subscription_id = ?",
                        true,
                        (db_id(guild), db_id(*id)),
                    )
                    .await?;
                }
                self.drop_ref(old.user_id, row).await?;
                Ok(1)
            }
            RowRef::Redemption { code, user } => {
                // The table is written with LWT, so it is deleted with LWT too.
                let outcome = self
                    .lwt_resolved(
                        "DELETE FROM {ks}.promos WHERE code = ? AND user_id = ? IF EXISTS",
                        (code.as_str(), db_id(*user)),
                        || async { Ok(self.redemption(code, *user).await?.is_none()) },
                    )
                    .await?;
                self.drop_ref(*user, row).await?;
                Ok(u64::from(outcome.applied))
            }
            RowRef::Account { user } => {
                let existed = self.account(*user).await?.is_some();
                self.execute(
                    "DELETE FROM {ks}.accounts WHERE user_id = ?",
                    true,
                    (db_id(*user),),
                )
                .await?;
                Ok(u64::from(existed))
            }
            // Usage expires by TTL here, so no index names a usage day; deleting one
            // anyway removes its partition (counted as one row).
            RowRef::UsageDay { guild, day } => {
                let key = (db_id(*guild), db_int(*day));
                self.execute(
                    "DELETE FROM {ks}.usage_hourly WHERE guild_id = ? AND day = ?",
                    true,
                    key,
                )
                .await?;
                self.execute(
                    "DELETE FROM {ks}.usage_days WHERE guild_id = ? AND day = ?",
                    true,
                    key,
                )
                .await?;
                Ok(1)
            }
            // Cases are never removed for one user (they protect the server's members):
            // `delete_user` anonymises them.
            RowRef::Case { .. } => Ok(0),
            RowRef::AutomodHit {
                guild,
                message,
                rule,
            } => match self.automod_hit(*guild, *message, rule).await? {
                Some(hit) => {
                    self.delete_hit(*guild, *message, rule).await?;
                    self.drop_ref(hit.user_id, row).await?;
                    Ok(1)
                }
                None => Ok(0),
            },
            RowRef::Timer { guild, id } => Ok(u64::from(self.cancel_timer(*guild, id).await?)),
            RowRef::InboxEvent { id } => Ok(u64::from(self.remove_event(id).await?)),
            RowRef::WorkflowVariable { .. } | RowRef::WorkflowRun { .. } => {
                self.remove_workflow_row(row).await
            }
            RowRef::AnnouncementDm {
                campaign,
                shard,
                user,
            } => self.remove_dm_delivery(*campaign, *shard, *user).await,
        }
    }
}

/// The logical table of a dumped row, as the embedded store names it: a code's partition
/// in `promos` holds the code (static columns) and its redemptions (a row per user), which
/// are `promo_redemptions`, so that the breach listing finds them.
fn dumped_table<'a>(table: &'a str, text: &str) -> &'a str {
    let redemption = table == "promos"
        && serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|row| row.get("user_id").is_some_and(|user| !user.is_null()));
    if redemption {
        "promo_redemptions"
    } else {
        table
    }
}

#[async_trait]
impl DataRights for ScyllaStore {
    async fn export_user(&self, user_id: u64) -> Result<UserExport, StorageError> {
        let mut export = UserExport {
            user_id,
            account: self.account(user_id).await?,
            ..UserExport::default()
        };
        for row in self.refs_of(user_id).await? {
            match row {
                RowRef::Audit { guild, at, id } => {
                    export.audit.extend(self.audit_entry(guild, at, id).await?);
                }
                RowRef::Ticket { guild, ticket } => {
                    export.tickets.extend(self.ticket(guild, ticket).await?);
                }
                RowRef::Transcript {
                    guild,
                    ticket,
                    message,
                } => export
                    .transcript_messages
                    .extend(self.transcript_message(guild, ticket, message).await?),
                RowRef::Workflow { guild, workflow } => {
                    export
                        .workflows
                        .extend(self.workflow(guild, workflow).await?);
                }
                RowRef::Subscription { id } => {
                    export.subscriptions.extend(self.subscription(id).await?);
                }
                RowRef::Redemption { code, user } => {
                    export
                        .redemptions
                        .extend(self.redemption(&code, user).await?);
                }
                RowRef::Account { .. } | RowRef::UsageDay { .. } => {}
                RowRef::Case { guild, number } => {
                    export.cases.extend(self.case(guild, number).await?);
                }
                RowRef::AutomodHit {
                    guild,
                    message,
                    rule,
                } => {
                    export
                        .automod_hits
                        .extend(self.automod_hit(guild, message, &rule).await?);
                }
                RowRef::Timer { guild, id } => {
                    let timer = self.timer(guild, &id).await?;
                    export.timers.extend(timer.as_ref().map(TimerExport::from));
                }
                RowRef::InboxEvent { id } => {
                    export.billing_events.extend(self.inbox_doc(&id).await?);
                }
                RowRef::WorkflowVariable { guild, user, name } => export
                    .workflow_variables
                    .extend(self.workflow_variable(guild, user, &name).await?),
                RowRef::WorkflowRun {
                    guild,
                    workflow,
                    slot,
                } => export
                    .workflow_runs
                    .extend(self.workflow_run(guild, workflow, slot).await?),
                RowRef::AnnouncementDm {
                    campaign,
                    shard,
                    user,
                } => export
                    .announcement_dms
                    .extend(self.dm_delivery(campaign, shard, user).await?),
            }
        }
        // Expired sessions are gone (TTL): every stored one is listed.
        export.web_sessions = self
            .web_sessions_of(user_id, Timestamp(0))
            .await?
            .iter()
            .map(WebSessionExport::from)
            .collect();
        (export.privacy_requests, export.privacy_flags) = self.privacy_export_of(user_id).await?;
        export.privacy_flag_changes = self.flag_changes_of(user_id).await?;
        export.privacy_requests.reverse();
        export.premium_slots = self.slots_of_user(user_id).await?;
        Ok(export)
    }

    async fn delete_user(&self, user_id: u64) -> Result<u64, StorageError> {
        if user_id == crate::privacy::ERASED_USER {
            return Err(StorageError::Invalid(
                "user 0 holds the anonymised records of erased users".into(),
            ));
        }
        let mut touched = self.remove_row(&RowRef::Account { user: user_id }).await?;
        touched += self.delete_web_sessions_of(user_id).await?;
        for slot in self.slots_of_user(user_id).await? {
            touched += u64::from(self.remove_slot(user_id, slot.guild_id).await?);
        }
        self.forget_assignments(user_id).await?;
        touched += self.erase_privacy_of(user_id).await?;
        for row in self.refs_of(user_id).await? {
            touched += match &row {
                RowRef::Workflow { guild, workflow } => {
                    match self.workflow(*guild, *workflow).await? {
                        Some(workflow) => {
                            self.write_workflow(&Workflow {
                                created_by: None,
                                ..workflow
                            })
                            .await?;
                            1
                        }
                        None => 0,
                    }
                }
                // Security audit and billing records stay, without the user.
                RowRef::Audit { guild, at, id } => {
                    match self.audit_entry(*guild, *at, *id).await? {
                        Some(entry) => {
                            self.remove_row(&row).await?;
                            self.append_audit(&[crate::privacy::anonymised_audit(entry, user_id)])
                                .await?;
                            1
                        }
                        None => 0,
                    }
                }
                RowRef::Subscription { id } => match self.subscription(*id).await? {
                    Some(subscription) => {
                        self.remove_row(&row).await?;
                        self.put_subscription(&crate::privacy::anonymised_subscription(
                            subscription,
                        ))
                        .await?;
                        1
                    }
                    None => 0,
                },
                // Moderation cases stay, without the user.
                RowRef::Case { guild, number } => {
                    u64::from(self.anonymise_case(*guild, *number, user_id).await?)
                }
                // A timer that undoes something done to the user (a temporary ban's unban)
                // stays, no longer naming them, until it has run.
                RowRef::Timer { guild, id } => {
                    u64::from(self.erase_timer_user(*guild, id, user_id).await?)
                }
                // Kept for its id (a redelivery stays a duplicate), without body or user.
                RowRef::InboxEvent { id } => u64::from(self.erase_event_user(id).await?),
                // Their own line goes; another's that mentions them stays, without them
                // (written again with its ticket's TTL).
                RowRef::Transcript {
                    guild,
                    ticket,
                    message,
                } => match self.transcript_message(*guild, *ticket, *message).await? {
                    Some(line) if line.author_id != user_id => {
                        match self
                            .append_transcript(&[line.without_mentions_of(user_id)])
                            .await
                        {
                            Ok(()) => 1,
                            // A line whose ticket is gone is an orphan: it goes.
                            Err(StorageError::NotFound(_)) => self.remove_row(&row).await?,
                            Err(err) => return Err(err),
                        }
                    }
                    Some(_) => self.remove_row(&row).await?,
                    None => 0,
                },
                other => self.remove_row(other).await?,
            };
            self.drop_ref(user_id, &row).await?;
        }
        Ok(touched)
    }

    async fn delete_guild(&self, guild_id: u64) -> Result<u64, StorageError> {
        let mut touched = 0;
        let config = self
            .lwt_resolved(
                "DELETE FROM {ks}.guild_config WHERE guild_id = ? IF EXISTS",
                (db_id(guild_id),),
                || async {
                    let row: Option<(i64,)> = self
                        .serial_one(
                            "SELECT version FROM {ks}.guild_config WHERE guild_id = ?",
                            (db_id(guild_id),),
                        )
                        .await?;
                    Ok(row.is_none())
                },
            )
            .await?;
        touched += u64::from(config.applied);
        touched += self.delete_guild_cases(guild_id).await?;
        touched += self.delete_guild_hits(guild_id).await?;
        touched += self.delete_guild_workflow_data(guild_id).await?;
        touched += self.delete_guild_timers(guild_id).await?;
        touched += self.delete_guild_schedules(guild_id).await?;
        self.execute(
            "DELETE FROM {ks}.guild_config_history WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        let days: Vec<(i32,)> = self
            .select(
                "SELECT day FROM {ks}.usage_days WHERE guild_id = ?",
                (db_id(guild_id),),
            )
            .await?;
        for (day,) in days {
            self.execute(
                "DELETE FROM {ks}.usage_hourly WHERE guild_id = ? AND day = ?",
                true,
                (db_id(guild_id), day),
            )
            .await?;
        }
        // The index goes last, so an interrupted erasure is finished by the next one.
        self.execute(
            "DELETE FROM {ks}.usage_days WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        // Audit partitions exist only for buckets inside the retention window (TTL), plus
        // one ahead for clocks running early.
        let now = Timestamp::now();
        let first = now.saturating_sub(self.retention().audit).as_millis() / AUDIT_BUCKET_MS;
        let last = now.as_millis() / AUDIT_BUCKET_MS + 1;
        for bucket in first..=last {
            let bucket = i32::try_from(bucket).unwrap_or(i32::MAX);
            let entries: Vec<AuditEntry> = self
                .docs(
                    "SELECT doc FROM {ks}.audit_log WHERE guild_id = ? AND bucket = ?",
                    "audit_log",
                    (db_id(guild_id), bucket),
                )
                .await?;
            for entry in &entries {
                let row = RowRef::Audit {
                    guild: guild_id,
                    at: entry.at.0,
                    id: entry.id,
                };
                for user in audit_users(entry) {
                    self.drop_ref(user, &row).await?;
                }
            }
            self.execute(
                "DELETE FROM {ks}.audit_log WHERE guild_id = ? AND bucket = ?",
                true,
                (db_id(guild_id), bucket),
            )
            .await?;
            touched += entries.len() as u64;
        }
        let tickets: Vec<Ticket> = self.tickets(guild_id).await?;
        for ticket in &tickets {
            touched += self
                .remove_row(&RowRef::Ticket {
                    guild: guild_id,
                    ticket: ticket.ticket_id,
                })
                .await?;
        }
        let workflows: Vec<Workflow> = self.workflows(guild_id).await?;
        for workflow in &workflows {
            touched += self
                .remove_row(&RowRef::Workflow {
                    guild: guild_id,
                    workflow: workflow.workflow_id,
                })
                .await?;
        }
        let subscriptions: Vec<(i64,)> = self
            .select(
                "SELECT subscription_id FROM {ks}.subscriptions_by_guild WHERE guild_id = ?",
                (db_id(guild_id),),
            )
            .await?;
        for (id,) in subscriptions {
            let id = super::rust_id(id);
            if let Some(subscription) = self.subscription(id).await?
                && subscription.guild_id == Some(guild_id)
            {
                touched += self.remove_row(&RowRef::Subscription { id }).await?;
            }
        }
        self.execute(
            "DELETE FROM {ks}.subscriptions_by_guild WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        if let Some(slot) = self.guild_slot(guild_id).await? {
            touched += u64::from(self.remove_slot(slot.user_id, guild_id).await?);
        }
        // Last: while it exists, a sweep finishes an interrupted erasure.
        self.execute(
            "DELETE FROM {ks}.guild_departures WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        Ok(touched)
    }

    async fn schedule_guild_deletion(
        &self,
        guild_id: u64,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO {ks}.guild_departures (guild_id, delete_at) VALUES (?, ?)",
            true,
            (db_id(guild_id), at.0 as i64),
        )
        .await?;
        Ok(())
    }

    async fn cancel_guild_deletion(&self, guild_id: u64) -> Result<bool, StorageError> {
        let pending: Vec<(i64,)> = self
            .select(
                "SELECT delete_at FROM {ks}.guild_departures WHERE guild_id = ?",
                (db_id(guild_id),),
            )
            .await?;
        if pending.is_empty() {
            return Ok(false);
        }
        self.execute(
            "DELETE FROM {ks}.guild_departures WHERE guild_id = ?",
            true,
            (db_id(guild_id),),
        )
        .await?;
        Ok(true)
    }

    async fn stored_guilds(
        &self,
        shard_id: u32,
        shard_count: u32,
    ) -> Result<Vec<u64>, StorageError> {
        let mut out = Vec::new();
        let rows = self
            .rows::<(i64,), _>("SELECT guild_id FROM {ks}.guild_config", (), false)
            .await?;
        futures_util::pin_mut!(rows);
        while let Some((guild,)) = futures_util::TryStreamExt::try_next(&mut rows).await? {
            let guild = super::rust_id(guild);
            if crate::on_shard(guild, shard_id, shard_count) {
                out.push(guild);
            }
        }
        Ok(out)
    }

    async fn scheduled_guild_deletions(&self) -> Result<Vec<(u64, Timestamp)>, StorageError> {
        let rows: Vec<(i64, i64)> = self
            .select("SELECT guild_id, delete_at FROM {ks}.guild_departures", ())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(guild, at)| (super::rust_id(guild), Timestamp(at as u64)))
            .collect())
    }

    async fn sweep_expired(&self, now: Timestamp) -> Result<u64, StorageError> {
        // TTLs expire rows in the database itself; only departed guilds need a sweep, as
        // their rows span tables. The departure row goes last, so a crash mid-way retries.
        let mut total = 0;
        for (guild_id, at) in self.scheduled_guild_deletions().await? {
            if at <= now {
                total += self.delete_guild(guild_id).await?;
            }
        }
        Ok(total)
    }

    async fn backfill(
        &self,
        table: BackfillTable,
        page: usize,
        now: Timestamp,
    ) -> Result<BackfillProgress, StorageError> {
        self.backfill_page(table, page, now).await
    }

    async fn dump_rows(&self) -> Result<Vec<StoredRow>, StorageError> {
        let mut out = Vec::new();
        for table in TABLES {
            // Statements are cached by template, so each table needs its own literal.
            let rows: Vec<(String,)> = match *table {
                "guild_config" => {
                    self.select("SELECT JSON * FROM {ks}.guild_config", ())
                        .await?
                }
                "guild_config_history" => {
                    self.select("SELECT JSON * FROM {ks}.guild_config_history", ())
                        .await?
                }
                "audit_log" => self.select("SELECT JSON * FROM {ks}.audit_log", ()).await?,
                "usage_hourly" => {
                    self.select("SELECT JSON * FROM {ks}.usage_hourly", ())
                        .await?
                }
                "usage_days" => {
                    self.select("SELECT JSON * FROM {ks}.usage_days", ())
                        .await?
                }
                "accounts" => self.select("SELECT JSON * FROM {ks}.accounts", ()).await?,
                "tickets" => self.select("SELECT JSON * FROM {ks}.tickets", ()).await?,
                "transcripts" => {
                    self.select("SELECT JSON * FROM {ks}.transcripts", ())
                        .await?
                }
                "workflows" => self.select("SELECT JSON * FROM {ks}.workflows", ()).await?,
                "subscriptions" => {
                    self.select("SELECT JSON * FROM {ks}.subscriptions", ())
                        .await?
                }
                "subscriptions_by_guild" => {
                    self.select("SELECT JSON * FROM {ks}.subscriptions_by_guild", ())
                        .await?
                }
                "promos" => self.select("SELECT JSON * FROM {ks}.promos", ()).await?,
                "premium_slots" => {
                    self.select("SELECT JSON * FROM {ks}.premium_slots", ())
                        .await?
                }
                "billing_inbox" => {
                    self.select("SELECT JSON * FROM {ks}.billing_inbox", ())
                        .await?
                }
                "user_refs" => self.select("SELECT JSON * FROM {ks}.user_refs", ()).await?,
                "cases" => self.select("SELECT JSON * FROM {ks}.cases", ()).await?,
                "automod_hits" => {
                    self.select("SELECT JSON * FROM {ks}.automod_hits", ())
                        .await?
                }
                "announce_campaigns" => {
                    self.select("SELECT JSON * FROM {ks}.announce_campaigns", ())
                        .await?
                }
                "announce_deliveries" => {
                    self.select("SELECT JSON * FROM {ks}.announce_deliveries", ())
                        .await?
                }
                "announce_dm_deliveries" => {
                    self.select("SELECT JSON * FROM {ks}.announce_dm_deliveries", ())
                        .await?
                }
                "timers" => self.select("SELECT JSON * FROM {ks}.timers", ()).await?,
                "timers_by_guild" => {
                    self.select("SELECT JSON * FROM {ks}.timers_by_guild", ())
                        .await?
                }
                "workflow_variables" => {
                    self.select("SELECT JSON * FROM {ks}.workflow_variables", ())
                        .await?
                }
                "workflow_runs" => {
                    self.select("SELECT JSON * FROM {ks}.workflow_runs", ())
                        .await?
                }
                "announce_schedules" => {
                    self.select("SELECT JSON * FROM {ks}.announce_schedules", ())
                        .await?
                }
                "backfill_progress" => {
                    self.select("SELECT JSON * FROM {ks}.backfill_progress", ())
                        .await?
                }
                "nodes" => self.select("SELECT JSON * FROM {ks}.nodes", ()).await?,
                "shard_assignments" => {
                    self.select("SELECT JSON * FROM {ks}.shard_assignments", ())
                        .await?
                }
                "shard_checkpoints" => {
                    self.select("SELECT JSON * FROM {ks}.shard_checkpoints", ())
                        .await?
                }
                "leases" => self.select("SELECT JSON * FROM {ks}.leases", ()).await?,
                "leader_announcement" => {
                    self.select("SELECT JSON * FROM {ks}.leader_announcement", ())
                        .await?
                }
                "cluster_meta" => {
                    self.select("SELECT JSON * FROM {ks}.cluster_meta", ())
                        .await?
                }
                "reshardings" => {
                    self.select("SELECT JSON * FROM {ks}.reshardings", ())
                        .await?
                }
                "guild_departures" => {
                    self.select("SELECT JSON * FROM {ks}.guild_departures", ())
                        .await?
                }
                "web_sessions" => {
                    self.select("SELECT JSON * FROM {ks}.web_sessions", ())
                        .await?
                }
                "web_sessions_by_user" => {
                    self.select("SELECT JSON * FROM {ks}.web_sessions_by_user", ())
                        .await?
                }
                other => unreachable!("table {other} listed without a statement"),
            };
            out.extend(rows.into_iter().map(|(text,)| StoredRow {
                table: dumped_table(table, &text).to_owned(),
                text,
            }));
        }
        self.dump_privacy(&mut out).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::dumped_table;

    #[test]
    fn a_promo_partitions_redemption_rows_are_dumped_as_redemptions() {
        let redemption = r#"{"code": "WELCOME", "user_id": 42, "promo": "{}", "redeemed": 1, "doc": "{\"user_id\":42}"}"#;
        let code_only =
            r#"{"code": "WELCOME", "user_id": null, "promo": "{}", "redeemed": 0, "doc": null}"#;
        assert_eq!(dumped_table("promos", redemption), "promo_redemptions");
        assert_eq!(dumped_table("promos", code_only), "promos");
        assert_eq!(dumped_table("cases", redemption), "cases");
    }
}
